/*
 * Part of the vx Python package (see hits.c). setup.py preprocesses this
 * header (and through it vx.h) into the package's cffi declarations.
 */
#ifndef VX_PYTHON_HITS_H
#define VX_PYTHON_HITS_H

#include "vx.h"

typedef size_t (*vxpy_len_fn)(const vx_results *r, size_t query);
typedef const char *(*vxpy_id_fn)(const vx_results *r, size_t query, size_t rank);
typedef float (*vxpy_distance_fn)(const vx_results *r, size_t query, size_t rank);

void vxpy_bind(vxpy_len_fn len, vxpy_id_fn id, vxpy_distance_fn distance);

size_t vxpy_count(const vx_results *r, size_t nq, size_t *counts, size_t *id_bytes);

void vxpy_copy(const vx_results *r, size_t nq, size_t stride, float *distances, char *ids);

#endif
