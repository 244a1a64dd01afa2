/* Built against an installed vx (find_package or pkg-config): create,
   upsert, query, and check the header matches the library. */
#include <vx.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    if (vx_version_number() != VX_VERSION_NUMBER) {
        fprintf(stderr, "header %d != library %u\n", VX_VERSION_NUMBER, vx_version_number());
        return 1;
    }
    uint8_t key[VX_KEY_LEN] = {7};
    vx_client *c = NULL;
    vx_index *ix = NULL;
    vx_results *r = NULL;
    const char *ids[2] = {"near", "far"};
    const float v[4] = {1, 0, 10, 10};
    const float q[2] = {1.1f, 0};
    if (vx_client_open("memory:", NULL, &c) || vx_index_create(c, "consumer", key, NULL, &ix) ||
        vx_index_upsert(ix, 2, ids, v, 2, NULL, NULL, NULL, NULL, NULL) ||
        vx_index_query(ix, q, 1, 2, NULL, NULL, NULL, &r)) {
        char msg[256];
        (void)vx_last_error_message(msg, sizeof msg, NULL);
        fprintf(stderr, "failed: %s\n", msg);
        return 1;
    }
    int ok = vx_results_len(r, 0) == 2 && strcmp(vx_results_id(r, 0, 0), "near") == 0;
    printf("vx %s: nearest is %s\n", vx_version_string(), vx_results_id(r, 0, 0));
    vx_results_free(r);
    vx_index_free(ix);
    vx_client_free(c);
    return ok ? 0 : 1;
}
