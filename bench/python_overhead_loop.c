/*
 * The C side of bench/python_overhead.py: the same queries on the same
 * vx_index handle (passed from Python), timed in C, doing what a C caller
 * does with the answer (read every hit's id and distance, free it). Built
 * as a shared object linked to the libvx the Python package loaded.
 */
#define _POSIX_C_SOURCE 200809L
#include "vx.h"

#include <stdint.h>
#include <time.h>

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Reads every hit as a caller would; the checksum keeps it from being optimised away. */
static uint64_t read_hits(const vx_results *r, size_t nq) {
    uint64_t sum = 0;
    for (size_t q = 0; q < nq; q++) {
        size_t n = vx_results_len(r, q);
        for (size_t i = 0; i < n; i++) {
            sum += (unsigned char)vx_results_id(r, q, i)[0];
            sum += (uint64_t)(vx_results_distance(r, q, i) * 1000.0f);
        }
    }
    return sum;
}

/* `count` single-query calls over rows 0..count-1 of `queries`; returns the
 * total nanoseconds, or -status on failure. */
int64_t vxb_single(const vx_index *ix, const float *queries, size_t count, size_t dim, const vx_query_params *p,
                   uint64_t *checksum) {
    int64_t t = now_ns();
    for (size_t i = 0; i < count; i++) {
        vx_results *r = NULL;
        vx_status s = vx_index_query(ix, queries + i * dim, 1, dim, p, NULL, NULL, &r);
        if (s != VX_STATUS_OK) return -(int64_t)s;
        *checksum += read_hits(r, 1);
        vx_results_free(r);
    }
    return now_ns() - t;
}

/* One call with all `nq` queries; returns nanoseconds, or -status. */
int64_t vxb_batch(const vx_index *ix, const float *queries, size_t nq, size_t dim, const vx_query_params *p,
                  uint64_t *checksum) {
    int64_t t = now_ns();
    vx_results *r = NULL;
    vx_status s = vx_index_query(ix, queries, nq, dim, p, NULL, NULL, &r);
    if (s != VX_STATUS_OK) return -(int64_t)s;
    *checksum += read_hits(r, nq);
    vx_results_free(r);
    return now_ns() - t;
}
