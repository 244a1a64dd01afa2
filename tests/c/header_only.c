/* vx.h must compile on its own, warning-free, in C99 and C11. */
#include "vx.h"
#include "vx.h" /* and survive a second include */

int vx_header_only_probe(void);
int vx_header_only_probe(void) {
    vx_index_config cfg;
    vx_index_config_init(&cfg);
    return (int)cfg.metric + VX_STATUS_OK + VX_KEY_LEN;
}
