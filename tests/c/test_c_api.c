/*
 * The C API as a C program sees it: every status code reachable from C is
 * provoked, results are checked against a brute-force reference, a file:
 * index is reopened with identical answers, and bytes of the store file are
 * flipped expecting INTEGRITY (never a wrong answer, never a crash).
 *
 * usage: test_c_api SCRATCH_DIR
 */
#define _POSIX_C_SOURCE 200809L
#include "vx.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

static const char *last_error(void) {
    static char buf[1024];
    size_t len = 0;
    (void)vx_last_error_message(buf, sizeof buf, &len);
    return buf;
}

/* Checks a call's status and that a failure left a message (and success none). */
#define EXPECT(call, want)                                                       \
    do {                                                                         \
        vx_status got_ = (call);                                                 \
        checks++;                                                                \
        if (got_ != (want)) {                                                    \
            failures++;                                                          \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d: %s\n", __FILE__, __LINE__, #call, \
                    got_, vx_status_str(got_), (want), last_error());            \
        } else {                                                                 \
            size_t len_ = 0;                                                     \
            (void)vx_last_error_message(NULL, 0, &len_);                         \
            if ((want) == VX_STATUS_OK ? len_ != 0 : len_ == 0) {                \
                failures++;                                                      \
                fprintf(stderr, "%s:%d: message length %zu after status %d\n", __FILE__, __LINE__, len_, got_); \
            }                                                                    \
        }                                                                        \
    } while (0)

static uint8_t ROOT_KEY[VX_KEY_LEN];
static uint8_t OTHER_KEY[VX_KEY_LEN];

static uint64_t rng_state = 42;
static float frand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static uint64_t num_vectors(vx_index *ix) {
    uint64_t n = UINT64_MAX;
    EXPECT(vx_index_num_vectors(ix, NULL, NULL, &n), VX_STATUS_OK);
    return n;
}

enum { N = 2000, DIM = 16, NQ = 12, K = 10 };
static float base[N * DIM];
static char id_text[N][16];
static const char *ids[N];
static char meta_text[N][64];
static const char *metas[N];

static void make_data(void) {
    for (int i = 0; i < N * DIM; i++) base[i] = frand();
    for (int i = 0; i < N; i++) {
        snprintf(id_text[i], sizeof id_text[i], "v%d", i);
        ids[i] = id_text[i];
        snprintf(meta_text[i], sizeof meta_text[i], "{\"group\": %d, \"name\": \"n%d\"}", i % 5, i);
        metas[i] = meta_text[i];
    }
}

/* Brute-force top-K by squared L2 among items with (group filter or all). */
static void brute_top(const float *q, int group, int *out_idx, float *out_d) {
    for (int r = 0; r < K; r++) { out_idx[r] = -1; out_d[r] = INFINITY; }
    for (int i = 0; i < N; i++) {
        if (group >= 0 && i % 5 != group) continue;
        float d = 0;
        for (int j = 0; j < DIM; j++) { float t = q[j] - base[i * DIM + j]; d += t * t; }
        d = sqrtf(d);
        if (d >= out_d[K - 1]) continue;
        int r = K - 1;
        while (r > 0 && out_d[r - 1] > d) { out_d[r] = out_d[r - 1]; out_idx[r] = out_idx[r - 1]; r--; }
        out_d[r] = d; out_idx[r] = i;
    }
}

static void check_against_brute(vx_index *ix, const float *queries, int group) {
    vx_query_params p;
    vx_query_params_init(&p);
    p.top_k = K;
    p.include = VX_INCLUDE_DISTANCE | VX_INCLUDE_METADATA;
    char filter[64];
    if (group >= 0) {
        snprintf(filter, sizeof filter, "{\"group\": {\"$eq\": %d.0}}", group);
        p.filter_json = filter;
    }
    vx_results *r = NULL;
    EXPECT(vx_index_query(ix, queries, NQ, DIM, &p, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_num_queries(r) == NQ);
    for (int qi = 0; qi < NQ; qi++) {
        int want[K]; float wd[K];
        brute_top(queries + qi * DIM, group, want, wd);
        CHECK(vx_results_len(r, qi) == K);
        for (int k = 0; k < K; k++) {
            char expect_id[16];
            snprintf(expect_id, sizeof expect_id, "v%d", want[k]);
            float d = vx_results_distance(r, qi, k);
            CHECK(fabsf(d - wd[k]) < 1e-3f);
            if (strcmp(vx_results_id(r, qi, k), expect_id) != 0) {
                /* only acceptable for a tie */
                CHECK(fabsf(d - wd[k]) < 1e-5f);
            }
            const char *m = vx_results_metadata(r, qi, k);
            CHECK(m != NULL && strstr(m, "\"group\"") != NULL);
        }
        CHECK(isnan(vx_results_distance(r, qi, K)));
        CHECK(vx_results_id(r, qi, K) == NULL);
    }
    vx_results_free(r);
}

static void test_version_and_errors(void) {
    CHECK(vx_version_number() == VX_VERSION_NUMBER);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", VX_VERSION_MAJOR, VX_VERSION_MINOR, VX_VERSION_PATCH);
    CHECK(strcmp(vx_version_string(), want) == 0);
    const vx_status all[] = {VX_STATUS_OK, VX_STATUS_NULL_ARGUMENT, VX_STATUS_INVALID_ARGUMENT,
        VX_STATUS_DIMENSION_MISMATCH, VX_STATUS_INVALID_UTF8, VX_STATUS_INVALID_JSON,
        VX_STATUS_INVALID_FILTER, VX_STATUS_BUFFER_TOO_SMALL, VX_STATUS_NOT_FOUND,
        VX_STATUS_ALREADY_EXISTS, VX_STATUS_NOT_ENOUGH_VECTORS, VX_STATUS_POISONED,
        VX_STATUS_CANCELLED, VX_STATUS_WRONG_KEY, VX_STATUS_PERMISSION_DENIED, VX_STATUS_INTEGRITY,
        VX_STATUS_RNG_FAILED, VX_STATUS_MEMORY_LIMIT, VX_STATUS_OUT_OF_MEMORY, VX_STATUS_IO,
        VX_STATUS_STORAGE, VX_STATUS_INTERNAL, VX_STATUS_PANIC};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = vx_status_str(all[i]);
        CHECK(s != NULL && strlen(s) > 0);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, vx_status_str(all[j])) != 0);
    }
    CHECK(strcmp(vx_status_str(12345), "unknown status code") == 0);

    /* A failure sets a one-line message; the next call clears it. */
    vx_client *c = NULL;
    EXPECT(vx_client_open(NULL, NULL, &c), VX_STATUS_NULL_ARGUMENT);
    CHECK(c == NULL);
    size_t len = 0;
    CHECK(vx_last_error_message(NULL, 0, &len) == VX_STATUS_OK);
    CHECK(len > 0);
    char small[5];
    CHECK(vx_last_error_message(small, sizeof small, &len) == VX_STATUS_BUFFER_TOO_SMALL);
    CHECK(strlen(small) == 4);
    CHECK(vx_last_error_message(NULL, 3, &len) == VX_STATUS_NULL_ARGUMENT);
    char full[256];
    CHECK(vx_last_error_message(full, sizeof full, NULL) == VX_STATUS_OK);
    CHECK(strchr(full, '\n') == NULL && strstr(full, "storage_uri") != NULL);
    EXPECT(vx_client_open("memory:", NULL, &c), VX_STATUS_OK);
    vx_client_free(c);

#ifdef VX_TEST_HOOKS
    EXPECT(vx_debug_panic(NULL), VX_STATUS_PANIC);
    CHECK(strstr(last_error(), "panic") != NULL);
#endif
}

static void test_client(const char *dir) {
    vx_client *c = NULL;
    EXPECT(vx_client_open("", NULL, &c), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_client_open("s3://bucket", NULL, &c), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_client_open("\xff\xfe", NULL, &c), VX_STATUS_INVALID_UTF8);
    EXPECT(vx_client_open("memory:", NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_client_open("file:/dev/null/cannot-be-a-dir", NULL, &c), VX_STATUS_IO);
    CHECK(c == NULL);
    vx_client_options o;
    vx_client_options_init(&o);
    o.struct_size = 0;
    EXPECT(vx_client_open("memory:", &o, &c), VX_STATUS_INVALID_ARGUMENT);
    vx_client_options_init(&o);
    o.threads = 100000;
    EXPECT(vx_client_open("memory:", &o, &c), VX_STATUS_INVALID_ARGUMENT);

    /* One directory, one open client: a second is refused with STORAGE. */
    char uri[512];
    snprintf(uri, sizeof uri, "file:%s/locked", dir);
    vx_client *a = NULL, *b = NULL;
    EXPECT(vx_client_open(uri, NULL, &a), VX_STATUS_OK);
    EXPECT(vx_client_open(uri, NULL, &b), VX_STATUS_STORAGE);
    CHECK(b == NULL);
    vx_client_free(a);
    EXPECT(vx_client_open(uri, NULL, &b), VX_STATUS_OK);
    vx_client_free(b);
    vx_client_free(NULL);
    vx_index_free(NULL);
    vx_results_free(NULL);
    vx_items_free(NULL);
    vx_string_list_free(NULL);
}

static void test_lifecycle_and_bad_input(void) {
    vx_client *c = NULL;
    EXPECT(vx_client_open("memory:", NULL, &c), VX_STATUS_OK);
    vx_index *ix = NULL;
    vx_index_config cfg;
    vx_index_config_init(&cfg);
    CHECK(cfg.metric == VX_METRIC_EUCLIDEAN && cfg.dimension == 0);
    EXPECT(vx_index_create(NULL, "a", ROOT_KEY, &cfg, &ix), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_create(c, "a", NULL, &cfg, &ix), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_create(c, "", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    cfg.metric = 77;
    EXPECT(vx_index_create(c, "a", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    vx_index_config_init(&cfg);
    cfg.index_type = VX_INDEX_TYPE_IVF_PQ;
    EXPECT(vx_index_create(c, "a", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    vx_index_config_init(&cfg);
    cfg.storage_precision = 9;
    EXPECT(vx_index_create(c, "a", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    CHECK(ix == NULL);
    vx_index_config_init(&cfg);
    cfg.dimension = DIM;
    EXPECT(vx_index_create(c, "a", ROOT_KEY, &cfg, &ix), VX_STATUS_OK);
    vx_index *dup = NULL;
    EXPECT(vx_index_create(c, "a", OTHER_KEY, &cfg, &dup), VX_STATUS_ALREADY_EXISTS);
    CHECK(dup == NULL);
    CHECK(strcmp(vx_index_name(ix), "a") == 0);
    CHECK(vx_index_dimension(ix) == DIM);
    CHECK(vx_index_metric(ix) == VX_METRIC_EUCLIDEAN);
    CHECK(vx_index_training_state(ix) == VX_TRAINING_UNTRAINED);
    CHECK(!vx_index_is_trained(ix));
    CHECK(vx_index_n_lists(ix) == 0);
    CHECK(vx_index_auto_n_probes(ix) == 0);
    CHECK(vx_index_auto_n_probes(NULL) == 0);
    CHECK(vx_index_dimension(NULL) == 0);

    vx_index *loaded = NULL;
    EXPECT(vx_index_load(c, "missing", ROOT_KEY, NULL, &loaded), VX_STATUS_NOT_FOUND);
    EXPECT(vx_index_load(c, "a", OTHER_KEY, NULL, &loaded), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_load(c, "a", NULL, NULL, &loaded), VX_STATUS_NULL_ARGUMENT);
    CHECK(loaded == NULL);

    /* Bad upserts: each its own code, and the index stays as it was. */
    const float v[2 * DIM] = {0};
    const char *two_ids[2] = {"x", "y"};
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    CHECK(num_vectors(ix) == 2);
    EXPECT(vx_index_upsert(ix, 0, NULL, NULL, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_upsert(NULL, 2, two_ids, v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_upsert(ix, 2, NULL, v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_upsert(ix, 2, two_ids, NULL, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    const char *null_id[2] = {"x", NULL};
    EXPECT(vx_index_upsert(ix, 2, null_id, v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, 0, NULL, NULL, NULL, NULL, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_upsert(ix, SIZE_MAX / 2, two_ids, v, 4, NULL, NULL, NULL, NULL, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_upsert(ix, 1, two_ids, v, DIM + 1, NULL, NULL, NULL, NULL, NULL), VX_STATUS_DIMENSION_MISMATCH);
    float nan_v[DIM] = {0};
    nan_v[3] = NAN;
    EXPECT(vx_index_upsert(ix, 1, two_ids, nan_v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_INVALID_ARGUMENT);
    nan_v[3] = INFINITY;
    EXPECT(vx_index_upsert(ix, 1, two_ids, nan_v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_INVALID_ARGUMENT);
    const char *bad_utf8[1] = {"\xc3\x28"};
    EXPECT(vx_index_upsert(ix, 1, bad_utf8, v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_INVALID_UTF8);
    const char *empty_id[1] = {""};
    EXPECT(vx_index_upsert(ix, 1, empty_id, v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_INVALID_ARGUMENT);
    const char *bad_json[2] = {"{\"ok\": 1}", "{not json"};
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, DIM, NULL, NULL, bad_json, NULL, NULL), VX_STATUS_INVALID_JSON);
    const char *not_object[2] = {NULL, "[1, 2]"};
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, DIM, NULL, NULL, not_object, NULL, NULL), VX_STATUS_INVALID_JSON);
    const uint8_t *contents[2] = {(const uint8_t *)"abc", NULL};
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, DIM, contents, NULL, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    const uint8_t user[VX_USER_ID_LEN] = {1};
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, DIM, NULL, NULL, NULL, NULL, user), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, DIM, NULL, NULL, NULL, OTHER_KEY, NULL), VX_STATUS_WRONG_KEY);
    CHECK(num_vectors(ix) == 2);
    vx_items *items = NULL;
    const char *x_only[1] = {"x"};
    EXPECT(vx_index_get(ix, 1, x_only, VX_INCLUDE_METADATA, NULL, NULL, &items), VX_STATUS_OK);
    CHECK(vx_items_found(items, 0) && vx_items_metadata(items, 0) == NULL);
    vx_items_free(items);

    /* Per-call keys: the right root key works, a wrong one is refused. */
    uint64_t n = 0;
    EXPECT(vx_index_num_vectors(ix, ROOT_KEY, NULL, &n), VX_STATUS_OK);
    EXPECT(vx_index_num_vectors(ix, OTHER_KEY, NULL, &n), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_num_vectors(ix, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);

    /* Bad queries. */
    vx_query_params p;
    vx_query_params_init(&p);
    CHECK(p.top_k == 100 && p.include == VX_INCLUDE_DISTANCE && p.filter_json == NULL);
    vx_results *r = NULL;
    EXPECT(vx_index_query(ix, v, 1, DIM + 2, &p, NULL, NULL, &r), VX_STATUS_DIMENSION_MISMATCH);
    EXPECT(vx_index_query(ix, NULL, 1, DIM, &p, NULL, NULL, &r), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_query(ix, v, 1, DIM, &p, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    p.top_k = 0;
    EXPECT(vx_index_query(ix, v, 1, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    vx_query_params_init(&p);
    p.include = 1u << 20;
    EXPECT(vx_index_query(ix, v, 1, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    vx_query_params_init(&p);
    p.filter_json = "{\"age\": {\"$gt\": [1]}}";
    EXPECT(vx_index_query(ix, v, 1, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_FILTER);
    CHECK(strstr(last_error(), "age.$gt") != NULL);
    p.filter_json = "{\"a\": {\"$unknown\": 1}}";
    EXPECT(vx_index_query(ix, v, 1, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_FILTER);
    p.filter_json = "\xff";
    EXPECT(vx_index_query(ix, v, 1, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_UTF8);
    CHECK(r == NULL);
    vx_query_params_init(&p);
    EXPECT(vx_index_query(ix, nan_v, 1, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_query(ix, v, 0, DIM, &p, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_num_queries(r) == 0);
    vx_results_free(r);

#ifdef VX_TEST_HOOKS
    /* A panic inside a call that changes the index poisons the handle. */
    EXPECT(vx_debug_panic(ix), VX_STATUS_PANIC);
    EXPECT(vx_index_num_vectors(ix, NULL, NULL, &n), VX_STATUS_POISONED);
    EXPECT(vx_index_upsert(ix, 2, two_ids, v, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_POISONED);
    vx_index_free(ix);
    EXPECT(vx_index_load(c, "a", ROOT_KEY, NULL, &ix), VX_STATUS_OK);
    CHECK(num_vectors(ix) == 2);
#endif

    /* delete_index: root only, then the handle and the name are gone. */
    vx_string_list *names = NULL;
    EXPECT(vx_client_list_indexes(c, &names), VX_STATUS_OK);
    CHECK(vx_string_list_len(names) == 1 && strcmp(vx_string_list_get(names, 0), "a") == 0);
    CHECK(vx_string_list_get(names, 1) == NULL);
    vx_string_list_free(names);
    EXPECT(vx_index_delete_index(ix, OTHER_KEY, NULL), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_delete_index(ix, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_num_vectors(ix, NULL, NULL, &n), VX_STATUS_NOT_FOUND);
    EXPECT(vx_client_list_indexes(c, &names), VX_STATUS_OK);
    CHECK(vx_string_list_len(names) == 0);
    vx_string_list_free(names);
    vx_index_free(ix);
    vx_client_free(c);
}

/* The answers a fixed set of queries gets, flattened, for comparisons. */
typedef struct {
    char ids[NQ][K][16];
    float dist[NQ][K];
} answers;

static int snapshot(vx_index *ix, const float *queries, answers *out) {
    vx_query_params p;
    vx_query_params_init(&p);
    p.top_k = K;
    p.filter_json = "{\"group\": {\"$in\": [1, 3]}}";
    vx_results *r = NULL;
    vx_status s = vx_index_query(ix, queries, NQ, DIM, &p, NULL, NULL, &r);
    if (s != VX_STATUS_OK) return s;
    memset(out, 0, sizeof *out);
    for (int q = 0; q < NQ; q++)
        for (int k = 0; k < K && k < (int)vx_results_len(r, q); k++) {
            snprintf(out->ids[q][k], 16, "%s", vx_results_id(r, q, k));
            out->dist[q][k] = vx_results_distance(r, q, k);
        }
    vx_results_free(r);
    return VX_STATUS_OK;
}

static void test_data_and_persistence(const char *dir) {
    char uri[512];
    snprintf(uri, sizeof uri, "file:%s/store", dir);
    vx_client *c = NULL;
    EXPECT(vx_client_open(uri, NULL, &c), VX_STATUS_OK);
    vx_index *ix = NULL;
    EXPECT(vx_index_create(c, "docs", ROOT_KEY, NULL, &ix), VX_STATUS_OK);
    EXPECT(vx_index_upsert(ix, N, ids, base, DIM, NULL, NULL, metas, NULL, NULL), VX_STATUS_OK);
    CHECK(num_vectors(ix) == N);
    CHECK(vx_index_dimension(ix) == DIM);

    float queries[NQ * DIM];
    for (int i = 0; i < NQ * DIM; i++) queries[i] = frand();
    check_against_brute(ix, queries, -1);
    check_against_brute(ix, queries, 2);
    /* One query at a time takes the pairwise path; check it too. */
    check_against_brute(ix, queries, -1);

    /* Contents and get. */
    const char *cid[2] = {"with-contents", "empty-contents"};
    const uint8_t *cptr[2] = {(const uint8_t *)"payload\0bytes", (const uint8_t *)""};
    const size_t clen[2] = {13, 0};
    EXPECT(vx_index_upsert(ix, 2, cid, base, DIM, cptr, clen, NULL, NULL, NULL), VX_STATUS_OK);
    const char *want[3] = {"with-contents", "nope", "v7"};
    vx_items *items = NULL;
    EXPECT(vx_index_get(ix, 3, want, VX_INCLUDE_VECTOR | VX_INCLUDE_CONTENTS | VX_INCLUDE_METADATA, NULL, NULL, &items), VX_STATUS_OK);
    CHECK(vx_items_len(items) == 3);
    size_t len = 0, dim = 0;
    const uint8_t *bytes = vx_items_contents(items, 0, &len);
    CHECK(len == 13 && memcmp(bytes, "payload\0bytes", 13) == 0);
    CHECK(!vx_items_found(items, 1) && strcmp(vx_items_id(items, 1), "nope") == 0);
    CHECK(vx_items_vector(items, 1, &dim) == NULL && dim == 0);
    const float *vec = vx_items_vector(items, 2, &dim);
    CHECK(dim == DIM && memcmp(vec, base + 7 * DIM, DIM * sizeof(float)) == 0);
    CHECK(strstr(vx_items_metadata(items, 2), "\"n7\"") != NULL);
    CHECK(vx_items_contents(items, 2, &len) == NULL && len == 0);
    vx_items_free(items);

    /* list_ids with paging, delete with a count. */
    vx_string_list *page = NULL;
    EXPECT(vx_index_list_ids(ix, 0, 0, NULL, NULL, &page), VX_STATUS_OK);
    CHECK(vx_string_list_len(page) == N + 2);
    vx_string_list_free(page);
    EXPECT(vx_index_list_ids(ix, 10, 5, NULL, NULL, &page), VX_STATUS_OK);
    CHECK(vx_string_list_len(page) == 5);
    vx_string_list_free(page);
    /* query_metadata: group 3 by name, descending, in pages of 64; each
     * page continues the last, the order holds across pages. */
    char last_name[64] = "\xff";
    size_t seen = 0;
    for (;;) {
        vx_results *r = NULL;
        EXPECT(vx_index_query_metadata(ix, "{\"group\": 3}", NULL, 64, "name", false, seen, VX_INCLUDE_METADATA, NULL,
                                       NULL, &r),
               VX_STATUS_OK);
        size_t got = vx_results_len(r, 0);
        CHECK(vx_results_num_queries(r) == 1);
        for (size_t k = 0; k < got; k++) {
            const char *m = vx_results_metadata(r, 0, k);
            const char *name = strstr(m, "\"name\": \"") + 9;
            CHECK(strstr(m, "\"group\": 3") != NULL);
            CHECK(strcmp(name, last_name) < 0);
            snprintf(last_name, sizeof last_name, "%s", name);
            CHECK(isnan(vx_results_distance(r, 0, k)));
        }
        vx_results_free(r);
        seen += got;
        if (got < 64) break;
    }
    CHECK(seen == N / 5);
    vx_results *r = NULL;
    EXPECT(vx_index_query_metadata(ix, NULL, NULL, 3, NULL, true, 0, VX_INCLUDE_DISTANCE, NULL, NULL, &r),
           VX_STATUS_INVALID_ARGUMENT);
    CHECK(r == NULL && strstr(last_error(), "VX_INCLUDE_DISTANCE") != NULL);
    EXPECT(vx_index_query_metadata(ix, NULL, NULL, 3, "a..b", true, 0, 0, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_query_metadata(ix, "{bad", NULL, 3, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_INVALID_FILTER);
    EXPECT(vx_index_query_metadata(ix, NULL, NULL, 3, NULL, true, 0, 0, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_query_metadata(NULL, NULL, NULL, 3, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_query_metadata(ix, NULL, NULL, 3, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 3 && strcmp(vx_results_id(r, 0, 0), "empty-contents") == 0);
    vx_results_free(r);

    const char *doomed[3] = {"with-contents", "empty-contents", "never-there"};
    size_t deleted = 99;
    EXPECT(vx_index_delete(ix, 3, doomed, NULL, NULL, &deleted), VX_STATUS_OK);
    CHECK(deleted == 2);
    CHECK(num_vectors(ix) == N);

    answers before, after;
    CHECK(snapshot(ix, queries, &before) == VX_STATUS_OK);
    vx_index_free(ix);
    vx_client_free(c);

    /* Reopen with the cache disabled: identical answers from disk. */
    vx_client_options o;
    vx_client_options_init(&o);
    o.cache_bytes = 0;
    EXPECT(vx_client_open(uri, &o, &c), VX_STATUS_OK);
    EXPECT(vx_index_load(c, "docs", OTHER_KEY, NULL, &ix), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_load(c, "docs", ROOT_KEY, NULL, &ix), VX_STATUS_OK);
    CHECK(num_vectors(ix) == N);
    CHECK(snapshot(ix, queries, &after) == VX_STATUS_OK);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    vx_index_free(ix);
    vx_client_free(c);

    /* Flip bytes across the store file: every outcome is the right answer or
       a clean error (INTEGRITY above all), never a wrong answer or a crash. */
    char path[600];
    snprintf(path, sizeof path, "%s/store/vx.redb", dir);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *pristine = malloc((size_t)size);
    CHECK(fread(pristine, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    int integrity = 0, unchanged = 0, other = 0;
    for (long pos = 0; pos < size; pos += size / 150 + 1) {
        pristine[pos] ^= 0x24;
        f = fopen(path, "wb");
        fwrite(pristine, 1, (size_t)size, f);
        fclose(f);
        pristine[pos] ^= 0x24;
        vx_status s = vx_client_open(uri, &o, &c);
        if (s == VX_STATUS_OK) {
            s = vx_index_load(c, "docs", ROOT_KEY, NULL, &ix);
            if (s == VX_STATUS_OK) {
                s = snapshot(ix, queries, &after);
                if (s == VX_STATUS_OK) CHECK(memcmp(&before, &after, sizeof before) == 0);
                vx_index_free(ix);
            }
            vx_client_free(c);
        }
        if (s == VX_STATUS_OK) unchanged++;
        else if (s == VX_STATUS_INTEGRITY) integrity++;
        else {
            other++;
            CHECK(s == VX_STATUS_STORAGE || s == VX_STATUS_IO || s == VX_STATUS_WRONG_KEY || s == VX_STATUS_NOT_FOUND);
        }
    }
    printf("tamper: %d integrity, %d unchanged answers, %d other clean errors\n", integrity, unchanged, other);
    CHECK(integrity > 0);
    f = fopen(path, "wb");
    fwrite(pristine, 1, (size_t)size, f);
    fclose(f);
    free(pristine);
}

static int progress_calls = 0;
static int cancel_at_two(void *user_data, uint32_t iteration, uint32_t max_iters, double objective) {
    (void)max_iters;
    CHECK(user_data == (void *)&progress_calls);
    CHECK(objective >= 0);
    progress_calls++;
    return iteration >= 2;
}

/* Filterable fields: declared at creation, the same exact answers; a bad
 * declaration is refused with the reason and creates nothing. */
static void test_filterable_fields(void) {
    vx_client *c = NULL;
    EXPECT(vx_client_open("memory:", NULL, &c), VX_STATUS_OK);
    vx_index_config cfg;
    vx_index_config_init(&cfg);
    CHECK(cfg.filterable_fields_json == NULL && cfg.struct_size == sizeof cfg);
    vx_index *ix = NULL;
    cfg.filterable_fields_json = "not json";
    EXPECT(vx_index_create(c, "f", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_JSON);
    CHECK(ix == NULL && strstr(last_error(), "filterable_fields_json") != NULL);
    cfg.filterable_fields_json = "[\"group\", \"a..b\"]";
    EXPECT(vx_index_create(c, "f", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "filterable field 1") != NULL);
    cfg.filterable_fields_json = "[\"group\", \"name\"]";
    EXPECT(vx_index_create(c, "f", ROOT_KEY, &cfg, &ix), VX_STATUS_OK);
    EXPECT(vx_index_upsert(ix, N, ids, base, DIM, NULL, NULL, metas, NULL, NULL), VX_STATUS_OK);
    float queries[NQ * DIM];
    for (int i = 0; i < NQ * DIM; i++) queries[i] = frand();
    check_against_brute(ix, queries, 3);
    check_against_brute(ix, queries, -1);
    vx_results *r = NULL;
    EXPECT(vx_index_query_metadata(ix, "{\"name\": \"n42\"}", NULL, 0, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 1 && strcmp(vx_results_id(r, 0, 0), "v42") == 0);
    vx_results_free(r);
    vx_index_free(ix);
    vx_client_free(c);
}

/* Text fields (0.8): BM25 keyword search through vx_index_query_metadata's
 * text, hybrid search through vx_query_params.text (weighted RRF of the
 * vector and text rankings), vx_results_score; bad BM25 parameters and text
 * on an index without text fields refused; 0.7-sized structs accepted. */
enum { TT = 6 };
static const char *TITLES[TT] = {"encrypted vector search", "running dogs", "the cat sat on the mat",
                                 "fast approximate nearest neighbour search", "dogs and cats living together",
                                 "a quiet evening"};

static void check_hybrid(vx_results *r, size_t q, const float *query, size_t want) {
    CHECK(vx_results_len(r, q) == want);
    for (size_t k = 0; k < vx_results_len(r, q); k++) {
        float s = vx_results_score(r, q, k), d = vx_results_distance(r, q, k);
        CHECK(isfinite(s) && s > 0 && isfinite(d));
        if (k > 0) CHECK(s <= vx_results_score(r, q, k - 1));
        /* the exact distance to item t<i> at (i, 0) */
        int i = atoi(vx_results_id(r, q, k) + 1);
        CHECK(fabsf(d - hypotf(query[0] - (float)i, query[1])) < 1e-4f);
    }
}

static void test_text_fields(void) {
    vx_client *c = NULL;
    EXPECT(vx_client_open("memory:", NULL, &c), VX_STATUS_OK);
    vx_index_config cfg;
    vx_index_config_init(&cfg);
    CHECK(cfg.struct_size == sizeof cfg && cfg.text_fields_json == NULL);
    CHECK(cfg.bm25_k1 == 1.2f && cfg.bm25_b == 0.75f);

    /* Bad declarations and parameters: refused, nothing created. */
    vx_index *ix = NULL;
    cfg.text_fields_json = "not json";
    EXPECT(vx_index_create(c, "t", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_JSON);
    CHECK(ix == NULL && strstr(last_error(), "text_fields_json") != NULL);
    cfg.text_fields_json = "[\"title\", \"a..b\"]";
    EXPECT(vx_index_create(c, "t", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    cfg.text_fields_json = "[\"title\"]";
    cfg.bm25_b = 2.0f;
    EXPECT(vx_index_create(c, "t", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    CHECK(ix == NULL && strstr(last_error(), "bm25_b") != NULL);
    cfg.bm25_b = -0.5f;
    EXPECT(vx_index_create(c, "t", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    cfg.bm25_b = NAN;
    EXPECT(vx_index_create(c, "t", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    cfg.bm25_b = 0.75f;
    cfg.bm25_k1 = (float)VX_MAX_BM25_K1 * 2;
    EXPECT(vx_index_create(c, "t", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    CHECK(ix == NULL && strstr(last_error(), "bm25_k1") != NULL);
    vx_string_list *names = NULL;
    EXPECT(vx_client_list_indexes(c, &names), VX_STATUS_OK);
    CHECK(vx_string_list_len(names) == 0);
    vx_string_list_free(names);

    cfg.bm25_k1 = 1.2f;
    EXPECT(vx_index_create(c, "t", ROOT_KEY, &cfg, &ix), VX_STATUS_OK);
    char tid_text[TT][8], tmeta_text[TT][96];
    const char *tids[TT], *tmetas[TT];
    float tvec[TT * 2];
    for (int i = 0; i < TT; i++) {
        snprintf(tid_text[i], sizeof tid_text[i], "t%d", i);
        snprintf(tmeta_text[i], sizeof tmeta_text[i], "{\"title\": \"%s\", \"n\": %d}", TITLES[i], i);
        tids[i] = tid_text[i];
        tmetas[i] = tmeta_text[i];
        tvec[2 * i] = (float)i;
        tvec[2 * i + 1] = 0;
    }
    EXPECT(vx_index_upsert(ix, TT, tids, tvec, 2, NULL, NULL, tmetas, NULL, NULL), VX_STATUS_OK);

    /* Keyword search: stemmed ("run" finds "running"), BM25 scores, NaN distances. */
    vx_results *r = NULL;
    EXPECT(vx_index_query_metadata(ix, NULL, "run", 0, NULL, true, 0, VX_INCLUDE_METADATA, NULL, NULL, &r),
           VX_STATUS_OK);
    CHECK(vx_results_num_queries(r) == 1 && vx_results_len(r, 0) == 1);
    CHECK(strcmp(vx_results_id(r, 0, 0), "t1") == 0 && strstr(vx_results_metadata(r, 0, 0), "running dogs") != NULL);
    CHECK(isfinite(vx_results_score(r, 0, 0)) && vx_results_score(r, 0, 0) > 0);
    CHECK(isnan(vx_results_distance(r, 0, 0)) && isnan(vx_results_score(r, 0, 1)) && isnan(vx_results_score(r, 1, 0)));
    vx_results_free(r);
    /* Two terms: the four items holding one, by score; the shortest title first. */
    EXPECT(vx_index_query_metadata(ix, NULL, "Dogs SEARCH", 0, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 4 && strcmp(vx_results_id(r, 0, 0), "t1") == 0);
    for (size_t k = 0; k < vx_results_len(r, 0); k++) {
        CHECK(isfinite(vx_results_score(r, 0, k)) && vx_results_score(r, 0, k) > 0);
        if (k > 0) CHECK(vx_results_score(r, 0, k) <= vx_results_score(r, 0, k - 1));
    }
    vx_results_free(r);
    /* With a filter, and ordered by a field instead of the score. */
    EXPECT(vx_index_query_metadata(ix, "{\"n\": {\"$gte\": 1}}", "dogs search", 0, "n", false, 0, 0, NULL, NULL, &r),
           VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 3 && strcmp(vx_results_id(r, 0, 0), "t4") == 0 &&
          strcmp(vx_results_id(r, 0, 1), "t3") == 0 && strcmp(vx_results_id(r, 0, 2), "t1") == 0);
    vx_results_free(r);
    /* Only stop words: nothing matches. */
    EXPECT(vx_index_query_metadata(ix, NULL, "the and a", 0, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 0);
    vx_results_free(r);

    /* Hybrid search: a batch of two queries, the same text; fused scores
     * descending, exact distances. */
    const float hq[4] = {1.2f, 0.0f, 4.9f, 0.5f};
    vx_query_params p;
    vx_query_params_init(&p);
    CHECK(p.struct_size == sizeof p && p.text == NULL && p.alpha == 0.5f && p.rrf_k == 0 && p.vector_depth == 0 &&
          p.text_depth == 0);
    p.top_k = TT;
    p.text = "dogs search";
    EXPECT(vx_index_query(ix, hq, 2, 2, &p, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_num_queries(r) == 2);
    check_hybrid(r, 0, hq, TT);
    check_hybrid(r, 1, hq + 2, TT);
    CHECK(strcmp(vx_results_id(r, 0, 0), "t1") == 0); /* nearest, and the best text match */
    CHECK(strcmp(vx_results_id(r, 1, 0), "t4") == 0); /* nearest, and a text match */
    vx_results_free(r);
    /* alpha = 1: the vector ranking alone, as a plain query orders it. */
    vx_results *plain = NULL;
    vx_query_params q0;
    vx_query_params_init(&q0);
    q0.top_k = TT;
    EXPECT(vx_index_query(ix, hq, 2, 2, &q0, NULL, NULL, &plain), VX_STATUS_OK);
    for (size_t k = 0; k < TT; k++) CHECK(isnan(vx_results_score(plain, 0, k)) && isnan(vx_results_score(plain, 1, k)));
    p.alpha = 1.0f;
    p.rrf_k = 10;
    p.vector_depth = TT;
    p.text_depth = TT;
    EXPECT(vx_index_query(ix, hq, 2, 2, &p, NULL, NULL, &r), VX_STATUS_OK);
    for (size_t q = 0; q < 2; q++) {
        check_hybrid(r, q, hq + 2 * q, TT);
        for (size_t k = 0; k < TT; k++) CHECK(strcmp(vx_results_id(r, q, k), vx_results_id(plain, q, k)) == 0);
    }
    vx_results_free(r);
    vx_results_free(plain);
    /* alpha = 0: the text ranking decides; the best text match first. */
    p.alpha = 0.0f;
    EXPECT(vx_index_query(ix, hq + 2, 1, 2, &p, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) >= 1 && strcmp(vx_results_id(r, 0, 0), "t1") == 0);
    vx_results_free(r);
    /* Out of range: alpha, depths. */
    p.alpha = 1.5f;
    EXPECT(vx_index_query(ix, hq, 1, 2, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    CHECK(r == NULL);
    p.alpha = 0.5f;
    p.text_depth = 65537;
    EXPECT(vx_index_query(ix, hq, 1, 2, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    p.text_depth = 0;
    p.vector_depth = 65537;
    EXPECT(vx_index_query(ix, hq, 1, 2, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    p.vector_depth = 0;

    /* Reloaded, the text fields are still there. */
    vx_index *again = NULL;
    EXPECT(vx_index_load(c, "t", ROOT_KEY, NULL, &again), VX_STATUS_OK);
    EXPECT(vx_index_query_metadata(again, NULL, "runs", 0, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 1 && strcmp(vx_results_id(r, 0, 0), "t1") == 0);
    vx_results_free(r);
    vx_index_free(again);

    /* An index with 0.7's vx_index_config (before text_fields_json): accepted,
     * no text fields, so text is refused. */
    struct {
        uint32_t struct_size, dimension, metric, index_type, storage_precision, quantizer_bits;
        const char *filterable_fields_json;
    } cfg_0_7;
    memset(&cfg_0_7, 0, sizeof cfg_0_7);
    cfg_0_7.struct_size = (uint32_t)sizeof cfg_0_7;
    cfg_0_7.filterable_fields_json = "[\"n\"]";
    CHECK(sizeof cfg_0_7 < sizeof(vx_index_config));
    vx_index *old = NULL;
    EXPECT(vx_index_create(c, "old", ROOT_KEY, (const vx_index_config *)(const void *)&cfg_0_7, &old), VX_STATUS_OK);
    EXPECT(vx_index_upsert(old, TT, tids, tvec, 2, NULL, NULL, tmetas, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_query_metadata(old, NULL, "run", 0, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    CHECK(r == NULL);
    p.text = "run";
    EXPECT(vx_index_query(old, hq, 1, 2, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    CHECK(r == NULL);
    EXPECT(vx_index_query_metadata(old, "{\"n\": 3}", NULL, 0, NULL, true, 0, 0, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 1 && isnan(vx_results_score(r, 0, 0)));
    vx_results_free(r);

    /* 0.7's vx_query_params (before text): accepted, a plain vector query. */
    struct {
        uint32_t struct_size, top_k, n_probes, include;
        const char *filter_json;
        bool greedy;
        uint32_t rerank_mult;
    } p_0_7;
    memset(&p_0_7, 0, sizeof p_0_7);
    p_0_7.struct_size = (uint32_t)sizeof p_0_7;
    p_0_7.top_k = 3;
    p_0_7.include = VX_INCLUDE_DISTANCE;
    CHECK(sizeof p_0_7 < sizeof(vx_query_params));
    EXPECT(vx_index_query(ix, hq, 1, 2, (const vx_query_params *)(const void *)&p_0_7, NULL, NULL, &r), VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == 3 && strcmp(vx_results_id(r, 0, 0), "t1") == 0);
    CHECK(isnan(vx_results_score(r, 0, 0)) && fabsf(vx_results_distance(r, 0, 0) - 0.2f) < 1e-5f);
    vx_results_free(r);
    CHECK(isnan(vx_results_score(NULL, 0, 0)));

    vx_index_free(old);
    vx_index_free(ix);
    vx_client_free(c);
}

static void test_training(void) {
    enum { TN = 12000, TD = 8 };
    vx_client *c = NULL;
    EXPECT(vx_client_open("memory:", NULL, &c), VX_STATUS_OK);
    vx_index *ix = NULL;
    EXPECT(vx_index_create(c, "ivf", ROOT_KEY, NULL, &ix), VX_STATUS_OK);
    static float v[TN * TD];
    static char id_buf[TN][12];
    static const char *tids[TN];
    for (int i = 0; i < TN * TD; i++) v[i] = frand() + (float)((i / TD) % 16);
    for (int i = 0; i < TN; i++) { snprintf(id_buf[i], sizeof id_buf[i], "t%d", i); tids[i] = id_buf[i]; }
    EXPECT(vx_index_upsert(ix, 9999, tids, v, TD, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_train(ix, 0, 0, 0, 0, 0, NULL, NULL), VX_STATUS_NOT_ENOUGH_VECTORS);
    CHECK(strstr(last_error(), "10000") != NULL && strstr(last_error(), "9999") != NULL);
    EXPECT(vx_index_upsert(ix, TN, tids, v, TD, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_train(ix, 7000, 0, 0, 0, 0, NULL, NULL), VX_STATUS_NOT_ENOUGH_VECTORS);
    EXPECT(vx_index_train(ix, 50, 0, 0, -1.0, 0, NULL, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_train(ix, 50, 0, 0, NAN, 0, NULL, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_train(ix, 5000, 0, 0, 0, 1, NULL, NULL), VX_STATUS_MEMORY_LIMIT);
    EXPECT(vx_index_train(ix, 50, 0, 0, 0, 0, OTHER_KEY, NULL), VX_STATUS_WRONG_KEY);
    const uint8_t user[VX_USER_ID_LEN] = {1};
    EXPECT(vx_index_train(ix, 50, 0, 0, 0, 0, NULL, user), VX_STATUS_INVALID_ARGUMENT);

    vx_train_params tp;
    vx_train_params_init(&tp);
    CHECK(tp.n_lists == 0 && tp.max_iters == 0 && tp.progress == NULL);
    tp.n_lists = 40;
    tp.max_iters = 20;
    tp.tolerance = 1e-12;
    tp.progress = cancel_at_two;
    tp.user_data = &progress_calls;
    EXPECT(vx_index_train_ex(ix, &tp, NULL, NULL), VX_STATUS_CANCELLED);
    CHECK(progress_calls == 2);
    CHECK(vx_index_training_state(ix) == VX_TRAINING_UNTRAINED);

    /* Exhaustive answers before training ... */
    float q[4 * TD];
    for (int i = 0; i < 4 * TD; i++) q[i] = frand() + 3.0f;
    vx_query_params p;
    vx_query_params_init(&p);
    p.top_k = 20;
    vx_results *before = NULL, *after = NULL;
    EXPECT(vx_index_query(ix, q, 4, TD, &p, NULL, NULL, &before), VX_STATUS_OK);
    tp.progress = NULL;
    EXPECT(vx_index_train_ex(ix, &tp, NULL, NULL), VX_STATUS_OK);
    CHECK(vx_index_is_trained(ix) && vx_index_n_lists(ix) == 40);
    CHECK(vx_index_auto_n_probes(ix) >= 1 && vx_index_auto_n_probes(ix) <= 40);
    /* ... equal IVF answers with every list probed. */
    p.n_probes = 40;
    EXPECT(vx_index_query(ix, q, 4, TD, &p, NULL, NULL, &after), VX_STATUS_OK);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 20; k++) CHECK(strcmp(vx_results_id(before, i, k), vx_results_id(after, i, k)) == 0);
    vx_results_free(before);
    vx_results_free(after);
    /* Fewer probes still answer; an upsert after training is found. */
    p.n_probes = 2;
    p.top_k = 1;
    const char *fresh[1] = {"fresh"};
    EXPECT(vx_index_upsert(ix, 1, fresh, q, TD, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_query(ix, q, 1, TD, &p, NULL, NULL, &after), VX_STATUS_OK);
    CHECK(strcmp(vx_results_id(after, 0, 0), "fresh") == 0);
    vx_results_free(after);
    CHECK(num_vectors(ix) == TN + 1);
    vx_index_free(ix);
    vx_client_free(c);
}

/* ----- per-user keys, per-call keys, rotation (permissions: src/index/access.rs) ----- */

enum { AN = 10000, AD = 4 };
enum { WHO_ROOT, WHO_READER, WHO_WRITER, WHO_READ_WRITER, WHO_COUNT };
static const char *WHO_NAME[WHO_COUNT] = {"root", "reader", "writer", "read+write"};
static uint8_t who_key[WHO_COUNT][VX_KEY_LEN];
static uint8_t who_id[WHO_COUNT][VX_USER_ID_LEN];
static const uint32_t who_perms[WHO_COUNT] = {0, VX_PERMISSION_READ, VX_PERMISSION_WRITE,
                                              VX_PERMISSION_READ | VX_PERMISSION_WRITE};
static float avec[AN * AD];
static char aid_buf[AN][12];
static const char *aids[AN];

static const uint8_t *user_of(int who) { return who == WHO_ROOT ? NULL : who_id[who]; }

static vx_index *access_setup(vx_client *c, const char *name) {
    vx_index *ix = NULL;
    EXPECT(vx_index_create(c, name, ROOT_KEY, NULL, &ix), VX_STATUS_OK);
    EXPECT(vx_index_upsert(ix, AN, aids, avec, AD, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    for (int w = WHO_READER; w < WHO_COUNT; w++)
        EXPECT(vx_index_create_user_keys(ix, who_id[w], who_key[w], who_perms[w], NULL), VX_STATUS_OK);
    return ix;
}

/* Runs every operation as `who` through `ix`: per call (key and user id
 * given) or with the handle's own key (both NULL). */
static void access_matrix(vx_index *root, vx_index *ix, int who, int per_call) {
    const uint8_t *k = per_call ? who_key[who] : NULL;
    const uint8_t *u = per_call ? user_of(who) : NULL;
    int can_read = who != WHO_WRITER, can_write = who != WHO_READER;
    vx_status r = can_read ? VX_STATUS_OK : VX_STATUS_PERMISSION_DENIED;
    vx_status w = can_write ? VX_STATUS_OK : VX_STATUS_PERMISSION_DENIED;
    fprintf(stderr, "  access matrix: %s, %s\n", WHO_NAME[who], per_call ? "per-call key" : "loaded handle");

    vx_results *res = NULL;
    EXPECT(vx_index_query(ix, avec, 1, AD, NULL, k, u, &res), r);
    CHECK((res != NULL) == can_read);
    vx_results_free(res);
    vx_items *items = NULL;
    EXPECT(vx_index_get(ix, 1, aids, VX_INCLUDE_VECTOR, k, u, &items), r);
    vx_items_free(items);
    vx_string_list *list = NULL;
    EXPECT(vx_index_list_ids(ix, 0, 5, k, u, &list), r);
    vx_string_list_free(list);
    vx_results *listed = NULL;
    EXPECT(vx_index_query_metadata(ix, NULL, NULL, 5, NULL, true, 0, 0, k, u, &listed), r);
    vx_results_free(listed);
    uint64_t n = 0;
    EXPECT(vx_index_num_vectors(ix, k, u, &n), r);
    if (!per_call) {
        CHECK(vx_index_dimension(ix) == (can_read ? AD : 0));
        CHECK((strstr(last_error(), "READ") != NULL) == !can_read);
    }

    uint64_t before = num_vectors(root);
    const char *extra[2] = {"extra-0", "extra-1"};
    size_t deleted = 0;
    EXPECT(vx_index_upsert(ix, 2, extra, avec, AD, NULL, NULL, NULL, k, u), w);
    EXPECT(vx_index_delete(ix, 1, aids, k, u, &deleted), w);
    EXPECT(vx_index_train(ix, 4, 0, 2, 0, 0, k, u), w);
    CHECK(num_vectors(root) == before + (can_write ? 1 : 0));
    CHECK(vx_index_is_trained(root) == can_write);

    /* Root only. Through a user's handle: PERMISSION_DENIED. Offering a user
     * key as the root key: WRONG_KEY. */
    const uint8_t guest[VX_USER_ID_LEN] = {0x55};
    vx_status root_only = who == WHO_ROOT ? VX_STATUS_OK : per_call ? VX_STATUS_WRONG_KEY : VX_STATUS_PERMISSION_DENIED;
    vx_user_list *users = NULL;
    EXPECT(vx_index_create_user_keys(ix, guest, OTHER_KEY, VX_PERMISSION_READ, k), root_only);
    EXPECT(vx_index_list_user_keys(ix, k, &users), root_only);
    CHECK(vx_user_list_len(users) == (who == WHO_ROOT ? 4u : 0u));
    vx_user_list_free(users);
    EXPECT(vx_index_delete_user_keys(ix, guest, k), root_only);
    if (who != WHO_ROOT) {
        uint8_t fresh_root[VX_KEY_LEN] = {9};
        EXPECT(vx_index_rotate_key(ix, who_key[who], fresh_root), VX_STATUS_WRONG_KEY);
        EXPECT(vx_index_delete_index(ix, k, u), VX_STATUS_PERMISSION_DENIED);
        CHECK(num_vectors(root) == before + (can_write ? 1 : 0));
    }
}

static void test_access(const char *dir) {
    for (int i = 0; i < AN * AD; i++) avec[i] = frand();
    for (int i = 0; i < AN; i++) { snprintf(aid_buf[i], sizeof aid_buf[i], "a%d", i); aids[i] = aid_buf[i]; }
    for (int w = 0; w < WHO_COUNT; w++)
        for (int i = 0; i < VX_KEY_LEN; i++) {
            who_key[w][i] = (uint8_t)(w == WHO_ROOT ? ROOT_KEY[i] : 17 * w + i);
            if (i < VX_USER_ID_LEN) who_id[w][i] = (uint8_t)(w * 16 + i);
        }

    vx_client *c = NULL;
    EXPECT(vx_client_open("memory:", NULL, &c), VX_STATUS_OK);
    for (int who = 0; who < WHO_COUNT; who++)
        for (int per_call = 0; per_call < 2; per_call++) {
            char name[32];
            snprintf(name, sizeof name, "m%d%d", who, per_call);
            vx_index *root = access_setup(c, name);
            vx_index *ix = NULL;
            if (per_call) {
                ix = root;
            } else {
                EXPECT(vx_index_load(c, name, who_key[who], user_of(who), &ix), VX_STATUS_OK);
            }
            access_matrix(root, ix, who, per_call);
            if (ix != root) vx_index_free(ix);
            vx_index_free(root);
        }

    /* Bad arguments of the key functions. */
    vx_index *ix = access_setup(c, "args");
    vx_user_list *users = NULL;
    const uint8_t zero_id[VX_USER_ID_LEN] = {0};
    EXPECT(vx_index_create_user_keys(NULL, who_id[1], who_key[1], 1, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_create_user_keys(ix, NULL, who_key[1], 1, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_create_user_keys(ix, who_id[1], NULL, 1, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_create_user_keys(ix, who_id[1], who_key[1], 0, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_create_user_keys(ix, who_id[1], who_key[1], 7, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_create_user_keys(ix, zero_id, who_key[1], 1, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_create_user_keys(ix, who_id[1], ROOT_KEY, 1, NULL), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_create_user_keys(ix, who_id[1], who_key[1], 1, OTHER_KEY), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_delete_user_keys(ix, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_list_user_keys(ix, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_rotate_key(ix, NULL, OTHER_KEY), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_rotate_key(ix, ROOT_KEY, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_rotate_key(ix, ROOT_KEY, ROOT_KEY), VX_STATUS_INVALID_ARGUMENT);
    EXPECT(vx_index_list_user_keys(ix, NULL, &users), VX_STATUS_OK);
    CHECK(vx_user_list_len(users) == 3);
    for (size_t i = 0; i < 3; i++) {
        CHECK(memcmp(vx_user_list_user_id(users, i), who_id[i + 1], VX_USER_ID_LEN) == 0);
        CHECK(vx_user_list_permissions(users, i) == who_perms[i + 1]);
    }
    CHECK(vx_user_list_user_id(users, 3) == NULL && vx_user_list_permissions(users, 3) == 0);
    CHECK(vx_user_list_len(NULL) == 0 && vx_user_list_user_id(NULL, 0) == NULL);
    vx_user_list_free(users);
    vx_user_list_free(NULL);
    uint64_t n = 0;
    EXPECT(vx_index_num_vectors(ix, who_key[2], who_id[1], &n), VX_STATUS_WRONG_KEY); /* keys swapped */
    vx_index_free(ix);
    vx_client_free(c);

    /* Revocation, re-grant, rotation and stale handles on a file store, then
     * everything again after reopening the store. */
    char path[600];
    snprintf(path, sizeof path, "file:%s/access", dir);
    EXPECT(vx_client_open(path, NULL, &c), VX_STATUS_OK);
    vx_index *root = access_setup(c, "keys");
    vx_index *reader = NULL, *rw = NULL, *old_root = NULL;
    EXPECT(vx_index_load(c, "keys", who_key[WHO_READER], who_id[WHO_READER], &reader), VX_STATUS_OK);
    EXPECT(vx_index_load(c, "keys", who_key[WHO_READ_WRITER], who_id[WHO_READ_WRITER], &rw), VX_STATUS_OK);
    EXPECT(vx_index_load(c, "keys", ROOT_KEY, NULL, &old_root), VX_STATUS_OK);
    EXPECT(vx_index_delete_user_keys(root, who_id[WHO_READ_WRITER], NULL), VX_STATUS_OK);
    EXPECT(vx_index_delete_user_keys(root, who_id[WHO_READ_WRITER], NULL), VX_STATUS_OK); /* idempotent */
    EXPECT(vx_index_num_vectors(rw, NULL, NULL, &n), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_num_vectors(root, who_key[WHO_READ_WRITER], who_id[WHO_READ_WRITER], &n), VX_STATUS_WRONG_KEY);
    vx_index *again = NULL;
    EXPECT(vx_index_load(c, "keys", who_key[WHO_READ_WRITER], who_id[WHO_READ_WRITER], &again), VX_STATUS_WRONG_KEY);
    CHECK(again == NULL);
    /* Re-granted read-only: the open handle reads again and cannot write. */
    EXPECT(vx_index_create_user_keys(root, who_id[WHO_READ_WRITER], who_key[WHO_READ_WRITER], VX_PERMISSION_READ, NULL),
           VX_STATUS_OK);
    EXPECT(vx_index_num_vectors(rw, NULL, NULL, &n), VX_STATUS_OK);
    EXPECT(vx_index_upsert(rw, 1, aids, avec, AD, NULL, NULL, NULL, NULL, NULL), VX_STATUS_PERMISSION_DENIED);

    uint8_t new_root[VX_KEY_LEN];
    for (int i = 0; i < VX_KEY_LEN; i++) new_root[i] = (uint8_t)(200 - i);
    EXPECT(vx_index_rotate_key(root, OTHER_KEY, new_root), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_rotate_key(root, ROOT_KEY, new_root), VX_STATUS_OK);
    EXPECT(vx_index_num_vectors(root, NULL, NULL, &n), VX_STATUS_OK); /* moved to the new key */
    CHECK(n == AN);
    EXPECT(vx_index_num_vectors(old_root, NULL, NULL, &n), VX_STATUS_WRONG_KEY); /* stale handle */
    EXPECT(vx_index_num_vectors(root, ROOT_KEY, NULL, &n), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_num_vectors(reader, NULL, NULL, &n), VX_STATUS_OK);
    vx_index_free(reader);
    vx_index_free(rw);
    vx_index_free(old_root);
    vx_index_free(root);
    vx_client_free(c);

    EXPECT(vx_client_open(path, NULL, &c), VX_STATUS_OK);
    EXPECT(vx_index_load(c, "keys", ROOT_KEY, NULL, &root), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_load(c, "keys", new_root, NULL, &root), VX_STATUS_OK);
    EXPECT(vx_index_load(c, "keys", who_key[WHO_WRITER], who_id[WHO_WRITER], &ix), VX_STATUS_OK);
    EXPECT(vx_index_upsert(ix, 1, aids, avec, AD, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_num_vectors(ix, NULL, NULL, &n), VX_STATUS_PERMISSION_DENIED);
    EXPECT(vx_index_list_user_keys(root, NULL, &users), VX_STATUS_OK);
    CHECK(vx_user_list_len(users) == 3);
    vx_user_list_free(users);
    /* Epochs: a caller-kept state name detects a store older than it, or
     * another state at its version (a fork). */
    uint8_t epoch[VX_EPOCH_LEN], epoch2[VX_EPOCH_LEN], forged[VX_EPOCH_LEN];
    EXPECT(vx_index_epoch(root, NULL, NULL, epoch), VX_STATUS_OK);
    EXPECT(vx_index_epoch(root, NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_epoch(ix, NULL, NULL, epoch2), VX_STATUS_PERMISSION_DENIED); /* the writer cannot read */
    EXPECT(vx_index_require_epoch(root, epoch), VX_STATUS_OK);
    uint64_t version;
    memcpy(forged, epoch, VX_EPOCH_LEN);
    memcpy(&version, forged, 8); /* the version, little-endian like this host */
    version += 1;
    memcpy(forged, &version, 8);
    EXPECT(vx_index_require_epoch(root, forged), VX_STATUS_INTEGRITY); /* a future state: a rollback */
    memcpy(forged, epoch, VX_EPOCH_LEN);
    forged[VX_EPOCH_LEN - 1] ^= 1; /* same version, another state */
    EXPECT(vx_index_require_epoch(root, forged), VX_STATUS_INTEGRITY);
    EXPECT(vx_index_upsert(ix, 1, aids, avec, AD, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_epoch(root, NULL, NULL, epoch2), VX_STATUS_OK);
    CHECK(memcmp(epoch, epoch2, VX_EPOCH_LEN) != 0);
    EXPECT(vx_index_require_epoch(root, epoch), VX_STATUS_OK); /* a newer state passes */
    EXPECT(vx_index_require_epoch(NULL, epoch), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_require_epoch(root, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_delete_index(ix, NULL, NULL), VX_STATUS_PERMISSION_DENIED);
    EXPECT(vx_index_delete_index(root, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_num_vectors(root, NULL, NULL, &n), VX_STATUS_NOT_FOUND);
    vx_index_free(ix);
    vx_index_free(root);
    vx_client_free(c);
}

static unsigned char *read_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc((size_t)*size);
    if (fread(bytes, 1, (size_t)*size, f) != (size_t)*size) { free(bytes); bytes = NULL; }
    fclose(f);
    return bytes;
}

static void write_file(const char *path, const unsigned char *bytes, long size) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(bytes, 1, (size_t)size, f) == (size_t)size);
    if (f) fclose(f);
}

/* Upserts one item as a fresh client would: opens the store, loads, writes,
 * returns the epoch after the write, closes (a file: store admits one client). */
static void write_one(const char *uri, const char *id, uint8_t epoch[VX_EPOCH_LEN]) {
    vx_client *c = NULL;
    vx_index *ix = NULL;
    EXPECT(vx_client_open(uri, NULL, &c), VX_STATUS_OK);
    vx_status s = vx_index_load(c, "fork", ROOT_KEY, NULL, &ix);
    if (s == VX_STATUS_NOT_FOUND) s = vx_index_create(c, "fork", ROOT_KEY, NULL, &ix);
    EXPECT(s, VX_STATUS_OK);
    const char *ids1[1] = {id};
    EXPECT(vx_index_upsert(ix, 1, ids1, base, DIM, NULL, NULL, NULL, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_epoch(ix, NULL, NULL, epoch), VX_STATUS_OK);
    vx_index_free(ix);
    vx_client_free(c);
}

static vx_status require_epoch_fresh(const char *uri, const uint8_t epoch[VX_EPOCH_LEN]) {
    vx_client *c = NULL;
    vx_index *ix = NULL;
    EXPECT(vx_client_open(uri, NULL, &c), VX_STATUS_OK);
    EXPECT(vx_index_load(c, "fork", ROOT_KEY, NULL, &ix), VX_STATUS_OK);
    vx_status s = vx_index_require_epoch(ix, epoch);
    vx_index_free(ix);
    vx_client_free(c);
    return s;
}

/* A backup of the whole store put back (a rollback), then written on (a
 * fork at the same version as the state the caller kept): both INTEGRITY
 * with the kept epoch. Before 0.3 the epoch was a counter, and the fork
 * passed. */
static void test_rollback_and_fork(const char *dir) {
    char uri[512], path[600];
    snprintf(uri, sizeof uri, "file:%s/fork", dir);
    snprintf(path, sizeof path, "%s/fork/vx.redb", dir);
    uint8_t epoch_a[VX_EPOCH_LEN], epoch_b[VX_EPOCH_LEN], epoch_c[VX_EPOCH_LEN];
    write_one(uri, "a", epoch_a);
    long size = 0;
    unsigned char *backup = read_file(path, &size);
    CHECK(backup != NULL);
    if (!backup) return;
    write_one(uri, "b", epoch_b);
    EXPECT(require_epoch_fresh(uri, epoch_b), VX_STATUS_OK);
    write_file(path, backup, size);
    EXPECT(require_epoch_fresh(uri, epoch_a), VX_STATUS_OK);
    EXPECT(require_epoch_fresh(uri, epoch_b), VX_STATUS_INTEGRITY); /* rolled back */
    write_one(uri, "c", epoch_c);
    CHECK(memcmp(epoch_b, epoch_c, 8) == 0);                        /* the same version ... */
    EXPECT(require_epoch_fresh(uri, epoch_b), VX_STATUS_INTEGRITY); /* ... another state */
    EXPECT(require_epoch_fresh(uri, epoch_c), VX_STATUS_OK);
    free(backup);

    /* Compacting gives the file's free pages back and keeps every item. */
    vx_client *c = NULL;
    vx_index *ix = NULL;
    EXPECT(vx_client_open(uri, NULL, &c), VX_STATUS_OK);
    EXPECT(vx_index_load(c, "fork", ROOT_KEY, NULL, &ix), VX_STATUS_OK);
    EXPECT(vx_index_compact(NULL, NULL, NULL), VX_STATUS_NULL_ARGUMENT);
    EXPECT(vx_index_compact(ix, OTHER_KEY, NULL), VX_STATUS_WRONG_KEY);
    EXPECT(vx_index_compact(ix, NULL, NULL), VX_STATUS_OK);
    CHECK(num_vectors(ix) == 2);
    vx_index_free(ix);
    vx_client_free(c);
}

/* IVF_RABITQ (0.6): created, filled and queried through the C ABI. Until
 * trained its queries are exact exhaustive searches, so they equal
 * IVF_FLAT's and the brute-force reference whatever rerank_mult says.
 * (Queries of a trained IVF_RABITQ index are not tested here: its training
 * is being built in the core.) Also: the 0.5-sized structs still accepted. */
static void test_ivf_rabitq(void) {
    vx_client *c = NULL;
    EXPECT(vx_client_open("memory:", NULL, &c), VX_STATUS_OK);
    vx_index_config cfg;
    vx_index_config_init(&cfg);
    CHECK(cfg.struct_size == sizeof cfg && cfg.quantizer_bits == 0 && cfg.index_type == VX_INDEX_TYPE_IVF_FLAT);

    /* Bad quantizer_bits: refused with a message naming the field; nothing created. */
    vx_index *ix = NULL;
    cfg.index_type = VX_INDEX_TYPE_IVF_RABITQ;
    cfg.quantizer_bits = VX_MAX_QUANTIZER_BITS + 1;
    EXPECT(vx_index_create(c, "rq", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    CHECK(ix == NULL && strstr(last_error(), "quantizer_bits must be 1 to 8") != NULL);
    cfg.quantizer_bits = UINT32_MAX;
    EXPECT(vx_index_create(c, "rq", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    vx_index_config_init(&cfg);
    cfg.quantizer_bits = 2; /* IVF_FLAT takes none */
    EXPECT(vx_index_create(c, "rq", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    CHECK(ix == NULL && strstr(last_error(), "IVF_RABITQ only") != NULL);
    cfg.struct_size = (uint32_t)sizeof cfg + 4;
    cfg.quantizer_bits = 0;
    EXPECT(vx_index_create(c, "rq", ROOT_KEY, &cfg, &ix), VX_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "vx_index_config.struct_size") != NULL);
    vx_string_list *names = NULL;
    EXPECT(vx_client_list_indexes(c, &names), VX_STATUS_OK);
    CHECK(vx_string_list_len(names) == 0);
    vx_string_list_free(names);

    /* Good ones: the default bits, and the most. */
    vx_index_config_init(&cfg);
    cfg.index_type = VX_INDEX_TYPE_IVF_RABITQ;
    cfg.dimension = DIM;
    EXPECT(vx_index_create(c, "rq", ROOT_KEY, &cfg, &ix), VX_STATUS_OK);
    CHECK(vx_index_type(ix) == VX_INDEX_TYPE_IVF_RABITQ);
    uint32_t bits = vx_index_quantizer_bits(ix);
    CHECK(bits >= 1 && bits <= VX_MAX_QUANTIZER_BITS);
    CHECK(vx_index_training_state(ix) == VX_TRAINING_UNTRAINED);
    vx_index *most = NULL;
    cfg.quantizer_bits = VX_MAX_QUANTIZER_BITS;
    EXPECT(vx_index_create(c, "rq8", ROOT_KEY, &cfg, &most), VX_STATUS_OK);
    CHECK(vx_index_quantizer_bits(most) == VX_MAX_QUANTIZER_BITS);
    vx_index_free(most);
    EXPECT(vx_index_load(c, "rq8", ROOT_KEY, NULL, &most), VX_STATUS_OK);
    CHECK(vx_index_type(most) == VX_INDEX_TYPE_IVF_RABITQ && vx_index_quantizer_bits(most) == VX_MAX_QUANTIZER_BITS);
    vx_index_free(most);
    CHECK(vx_index_type(NULL) == VX_INDEX_TYPE_IVF_FLAT && vx_index_quantizer_bits(NULL) == 0);

    /* An IVF_FLAT index created with 0.5's struct: its size is accepted and
     * quantizer_bits reads as 0. */
    struct {
        uint32_t struct_size, dimension, metric, index_type, storage_precision;
    } cfg_0_5;
    memset(&cfg_0_5, 0, sizeof cfg_0_5);
    cfg_0_5.struct_size = (uint32_t)sizeof cfg_0_5;
    cfg_0_5.dimension = DIM;
    CHECK(sizeof cfg_0_5 < sizeof(vx_index_config));
    vx_index *flat = NULL;
    EXPECT(vx_index_create(c, "flat", ROOT_KEY, (const vx_index_config *)(const void *)&cfg_0_5, &flat), VX_STATUS_OK);
    CHECK(vx_index_type(flat) == VX_INDEX_TYPE_IVF_FLAT && vx_index_quantizer_bits(flat) == 0);
    CHECK(vx_index_dimension(flat) == DIM);

    EXPECT(vx_index_upsert(ix, N, ids, base, DIM, NULL, NULL, metas, NULL, NULL), VX_STATUS_OK);
    EXPECT(vx_index_upsert(flat, N, ids, base, DIM, NULL, NULL, metas, NULL, NULL), VX_STATUS_OK);
    float queries[NQ * DIM];
    for (int i = 0; i < NQ * DIM; i++) queries[i] = frand();
    check_against_brute(ix, queries, -1);
    check_against_brute(ix, queries, 3);

    vx_query_params p;
    vx_query_params_init(&p);
    CHECK(p.struct_size == sizeof p && p.rerank_mult == 0);
    p.top_k = K;
    vx_results *want = NULL;
    EXPECT(vx_index_query(flat, queries, NQ, DIM, &p, NULL, NULL, &want), VX_STATUS_OK);
    const uint32_t mults[] = {0, 1, 7, VX_MAX_RERANK_MULT};
    for (size_t m = 0; m < sizeof mults / sizeof mults[0]; m++) {
        p.rerank_mult = mults[m];
        vx_results *got = NULL;
        EXPECT(vx_index_query(ix, queries, NQ, DIM, &p, NULL, NULL, &got), VX_STATUS_OK);
        for (int q = 0; q < NQ; q++) {
            CHECK(vx_results_len(got, q) == K && vx_results_len(want, q) == K);
            for (int k = 0; k < K; k++) {
                CHECK(strcmp(vx_results_id(got, q, k), vx_results_id(want, q, k)) == 0);
                CHECK(vx_results_distance(got, q, k) == vx_results_distance(want, q, k));
            }
        }
        vx_results_free(got);
    }
    p.rerank_mult = VX_MAX_RERANK_MULT + 1;
    vx_results *r = NULL;
    EXPECT(vx_index_query(ix, queries, NQ, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);
    CHECK(r == NULL && strstr(last_error(), "rerank_mult must be 0 (automatic) to 4096, got 4097") != NULL);
    EXPECT(vx_index_query(flat, queries, NQ, DIM, &p, NULL, NULL, &r), VX_STATUS_INVALID_ARGUMENT);

    /* 0.5's vx_query_params: accepted, rerank_mult reads as 0. */
    struct {
        uint32_t struct_size, top_k, n_probes, include;
        const char *filter_json;
        bool greedy;
    } p_0_5;
    memset(&p_0_5, 0, sizeof p_0_5);
    p_0_5.struct_size = (uint32_t)sizeof p_0_5;
    p_0_5.top_k = K;
    p_0_5.include = VX_INCLUDE_DISTANCE;
    EXPECT(vx_index_query(ix, queries, NQ, DIM, (const vx_query_params *)(const void *)&p_0_5, NULL, NULL, &r),
           VX_STATUS_OK);
    CHECK(vx_results_len(r, 0) == K && strcmp(vx_results_id(r, 0, 0), vx_results_id(want, 0, 0)) == 0);
    vx_results_free(r);
    r = NULL;
    p_0_5.struct_size = 12;
    EXPECT(vx_index_query(ix, queries, NQ, DIM, (const vx_query_params *)(const void *)&p_0_5, NULL, NULL, &r),
           VX_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "vx_query_params.struct_size is 12") != NULL);
    vx_results_free(want);

    vx_index_free(flat);
    vx_index_free(ix);
    vx_client_free(c);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "vx-c-test-data";
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0) return 2;
    for (int i = 0; i < VX_KEY_LEN; i++) { ROOT_KEY[i] = (uint8_t)(i * 7 + 1); OTHER_KEY[i] = (uint8_t)(i * 5 + 3); }
    make_data();

    test_version_and_errors();
    test_client(dir);
    test_lifecycle_and_bad_input();
    test_data_and_persistence(dir);
    test_filterable_fields();
    test_text_fields();
    test_training();
    test_ivf_rabitq();
    test_access(dir);
    test_rollback_and_fork(dir);

    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
