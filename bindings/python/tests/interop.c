/*
 * The C half of test_interop.py: reads the file: index "from_python" that
 * Python wrote, checks every item, adds one, and writes an index "from_c"
 * for Python to read. The key comes as 64 hex digits on stdin (never argv).
 *
 * usage: interop DIR < key.hex     prints "ok" and exits 0 when all checks pass
 */
#define _POSIX_C_SOURCE 200809L
#include "vx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIM 4
#define N 3

static int failures = 0;

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            failures++;                                                         \
            fprintf(stderr, "interop.c:%d: CHECK failed: %s\n", __LINE__, #cond); \
        }                                                                       \
    } while (0)

static int ok(vx_status s, const char *what) {
    if (s == VX_STATUS_OK) return 1;
    char msg[512];
    (void)vx_last_error_message(msg, sizeof msg, NULL);
    fprintf(stderr, "%s: %s: %s\n", what, vx_status_str(s), msg);
    failures++;
    return 0;
}

static int read_key(uint8_t key[VX_KEY_LEN]) {
    char hex[2 * VX_KEY_LEN + 2];
    if (!fgets(hex, sizeof hex, stdin) || strlen(hex) < 2 * VX_KEY_LEN) return 0;
    for (int i = 0; i < VX_KEY_LEN; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
        key[i] = (uint8_t)v;
    }
    memset(hex, 0, sizeof hex);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: interop DIR < key.hex\n");
        return 2;
    }
    CHECK(vx_version_number() == VX_VERSION_NUMBER);
    uint8_t key[VX_KEY_LEN];
    if (!read_key(key)) {
        fprintf(stderr, "no key on stdin\n");
        return 2;
    }
    char uri[4096];
    snprintf(uri, sizeof uri, "file:%s", argv[1]);
    vx_client *client = NULL;
    if (!ok(vx_client_open(uri, NULL, &client), "vx_client_open")) return 1;

    /* 1. Python's index: p<i> has vector {i, i+1, i+2, i+3}, metadata {"n": i}, contents "c<i>". */
    vx_index *py = NULL;
    if (ok(vx_index_load(client, "from_python", key, NULL, &py), "vx_index_load")) {
        uint64_t count = 0;
        ok(vx_index_num_vectors(py, NULL, NULL, &count), "num_vectors");
        CHECK(count == N);
        CHECK(vx_index_dimension(py) == DIM);
        CHECK(vx_index_metric(py) == VX_METRIC_COSINE);
        const char *ids[N] = {"p0", "p1", "p2"};
        vx_items *items = NULL;
        if (ok(vx_index_get(py, N, ids, VX_INCLUDE_VECTOR | VX_INCLUDE_METADATA | VX_INCLUDE_CONTENTS, NULL, NULL,
                            &items),
               "vx_index_get")) {
            for (size_t i = 0; i < N; i++) {
                CHECK(vx_items_found(items, i));
                size_t dim = 0, len = 0;
                const float *v = vx_items_vector(items, i, &dim);
                CHECK(v != NULL && dim == DIM);
                for (size_t j = 0; v && j < DIM; j++) CHECK(v[j] == (float)(i + j));
                char want[64];
                snprintf(want, sizeof want, "{\"n\":%zu}", i);
                const char *meta = vx_items_metadata(items, i);
                CHECK(meta != NULL && strcmp(meta, want) == 0);
                const uint8_t *c = vx_items_contents(items, i, &len);
                snprintf(want, sizeof want, "c%zu", i);
                CHECK(c != NULL && len == strlen(want) && memcmp(c, want, len) == 0);
            }
            vx_items_free(items);
        }
        vx_query_params p;
        vx_query_params_init(&p);
        p.top_k = 1;
        p.filter_json = "{\"n\": {\"$gte\": 2}}";
        float q[DIM] = {0, 1, 2, 3}; /* p0's direction, but the filter leaves p2 */
        vx_results *r = NULL;
        if (ok(vx_index_query(py, q, 1, DIM, &p, NULL, NULL, &r), "vx_index_query")) {
            CHECK(vx_results_len(r, 0) == 1 && strcmp(vx_results_id(r, 0, 0), "p2") == 0);
            vx_results_free(r);
        }
        /* C adds an item for Python to find. */
        const char *cid[1] = {"from-c"};
        float cv[DIM] = {9, 8, 7, 6};
        const char *cmeta[1] = {"{\"writer\": \"c\"}"};
        ok(vx_index_upsert(py, 1, cid, cv, DIM, NULL, NULL, cmeta, NULL, NULL), "vx_index_upsert");
        vx_index_free(py);
    }

    /* 2. An index C creates: x<k> = {k, 0, 0, 0} with metadata {"k": k}. */
    vx_index_config cfg;
    vx_index_config_init(&cfg);
    cfg.dimension = DIM;
    vx_index *own = NULL;
    if (ok(vx_index_create(client, "from_c", key, &cfg, &own), "vx_index_create")) {
        const char *ids[5] = {"x0", "x1", "x2", "x3", "x4"};
        const char *meta[5] = {"{\"k\":0}", "{\"k\":1}", "{\"k\":2}", "{\"k\":3}", "{\"k\":4}"};
        float v[5 * DIM] = {0};
        for (int k = 0; k < 5; k++) v[k * DIM] = (float)k;
        ok(vx_index_upsert(own, 5, ids, v, DIM, NULL, NULL, meta, NULL, NULL), "upsert from_c");
        vx_index_free(own);
    }
    vx_client_free(client);
    memset(key, 0, sizeof key);
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
