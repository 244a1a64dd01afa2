/*
 * Part of the vx Python package: copies the ids and distances of a
 * vx_results into flat buffers in one call, so Python pays one foreign call
 * per query batch instead of two per hit. It only reads libvx's public
 * accessors (handed over by vxpy_bind as function pointers, so this object
 * links to nothing and needs no Python headers: the wheel stays
 * py3-none-<platform>). Compiled by setup.py with the C compiler Rust uses.
 */
#include "hits.h"

#include <string.h>

static vxpy_len_fn results_len;
static vxpy_id_fn results_id;
static vxpy_distance_fn results_distance;

/* Binds the accessors of the libvx the package loaded. */
void vxpy_bind(vxpy_len_fn len, vxpy_id_fn id, vxpy_distance_fn distance) {
    results_len = len;
    results_id = id;
    results_distance = distance;
}

/*
 * Counts the hits of queries 0..nq-1 of `r`: counts[q] = hits of query q,
 * *id_bytes = the bytes their ids take with a NUL after each. Returns the
 * total number of hits.
 */
size_t vxpy_count(const vx_results *r, size_t nq, size_t *counts, size_t *id_bytes) {
    size_t total = 0, bytes = 0;
    for (size_t q = 0; q < nq; q++) {
        size_t n = results_len(r, q);
        counts[q] = n;
        total += n;
        for (size_t i = 0; i < n; i++) bytes += strlen(results_id(r, q, i)) + 1;
    }
    *id_bytes = bytes;
    return total;
}

/*
 * Copies every hit of queries 0..nq-1: hit i of query q's distance to
 * distances[q * stride + i] (stride 0: hit after hit, distances[j] for the
 * j-th hit overall) and its id, followed by a NUL, query after query, to
 * `ids`. The buffers hold what vxpy_count said.
 */
void vxpy_copy(const vx_results *r, size_t nq, size_t stride, float *distances, char *ids) {
    size_t j = 0;
    for (size_t q = 0; q < nq; q++) {
        size_t n = results_len(r, q);
        float *row = stride ? distances + q * stride : distances + j;
        for (size_t i = 0; i < n; i++) {
            row[i] = results_distance(r, q, i);
            const char *id = results_id(r, q, i);
            size_t len = strlen(id) + 1;
            memcpy(ids, id, len);
            ids += len;
        }
        j += n;
    }
}
