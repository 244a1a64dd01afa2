// vx.h must compile on its own, warning-free, in C++11 and C++17.
#include "vx.h"
#include "vx.h"

int vx_header_only_probe_cxx();
int vx_header_only_probe_cxx() {
    vx_query_params p;
    vx_query_params_init(&p);
    return static_cast<int>(p.top_k) + VX_STATUS_OK;
}
