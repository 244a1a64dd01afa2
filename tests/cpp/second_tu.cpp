// A second translation unit including vx.hpp: links only if every function
// in the header is inline.
#include "vx.hpp"

int second_tu_probe() {
    vx::QueryOptions o;
    return static_cast<int>(o.params().top_k);
}
