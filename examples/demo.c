/*
 * vx end-to-end demo through the C API on the embedded file: store.
 *
 *   demo [DIR] [N]     (default DIR ./vx-demo-data, N 100000)
 *
 * Creates an encrypted index on disk, upserts N vectors with metadata,
 * runs filtered, keyword (BM25) and hybrid queries, gets and deletes items, closes, reopens and gets
 * the same answers, shows that a wrong key is refused, gives a read-only
 * user its own key, revokes it, and rotates the root key. Every step
 * prints what it did and how long it took.
 */
#define _POSIX_C_SOURCE 200809L
#include <vx.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DIM = 128, BATCH = 10000, NQ = 1000, K = 10 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, vx_status s) {
    char msg[512];
    (void)vx_last_error_message(msg, sizeof msg, NULL);
    fprintf(stderr, "%s failed: %s (%d): %s\n", what, vx_status_str(s), s, msg);
    exit(1);
}
#define TRY(what, call) do { vx_status s_ = (call); if (s_ != VX_STATUS_OK) die(what, s_); } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

static const char *CATEGORIES[] = {"manual", "faq", "blog", "api", "changelog"};
/* Titles: the text field that keyword and hybrid queries search. */
static const char *TOPICS[] = {"rotating encryption keys", "running vector search", "the index of filterable fields",
                               "training inverted lists", "sealed chunks and manifests", "keyword search with BM25",
                               "reading users and permissions"};

static int show_progress(void *user_data, uint32_t iteration, uint32_t max_iters, double objective) {
    (void)user_data;
    if (iteration == 1 || iteration % 5 == 0)
        printf("          k-means iteration %3u/%u  objective %.4f\n", iteration, max_iters, objective);
    return 0; /* non-zero would cancel */
}

/* Upserts the n items in batches of BATCH. */
static void upsert_all(vx_index *index, size_t n, const char **ids, const float *vectors, const char **metas) {
    for (size_t off = 0; off < n; off += BATCH) {
        size_t m = n - off < BATCH ? n - off : BATCH;
        TRY("vx_index_upsert", vx_index_upsert(index, m, ids + off, vectors + off * DIM, DIM, NULL, NULL, metas + off, NULL, NULL));
    }
}

/* The first 100 queries one at a time (returns queries/s), then as a batch
   against the exhaustive answer: recall@10, and whether every top hit that
   is the exact one carries the exact distance. */
static double against_exact(vx_index *index, const float *queries, const vx_query_params *p, char exact_id[][K][24],
                            const float *exact_d, double *recall, int *exact_distances) {
    vx_results *r = NULL;
    double t = now();
    for (int i = 0; i < 100; i++) {
        TRY("vx_index_query", vx_index_query(index, queries + i * DIM, 1, DIM, p, NULL, NULL, &r));
        vx_results_free(r);
    }
    double qps = 100 / (now() - t);
    TRY("vx_index_query", vx_index_query(index, queries, 100, DIM, p, NULL, NULL, &r));
    int found = 0;
    *exact_distances = 1;
    for (int i = 0; i < 100; i++) {
        for (int k = 0; k < K; k++)
            for (int j = 0; j < K; j++) found += strcmp(vx_results_id(r, i, k), exact_id[i][j]) == 0;
        *exact_distances &= strcmp(vx_results_id(r, i, 0), exact_id[i][0]) != 0 || vx_results_distance(r, i, 0) == exact_d[i];
    }
    vx_results_free(r);
    *recall = found / 1000.0;
    return qps;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "vx-demo-data";
    size_t n = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 100000;
    char uri[1024], cmd[1100];
    snprintf(uri, sizeof uri, "file:%s", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    printf("vx %s demo: %zu vectors of dim %d in %s\n\n", vx_version_string(), n, DIM, uri);

    /* In production the key comes from a KMS or secret store; never log it. */
    uint8_t key[VX_KEY_LEN], wrong_key[VX_KEY_LEN];
    for (int i = 0; i < VX_KEY_LEN; i++) { key[i] = (uint8_t)(0xA5 ^ (i * 29)); wrong_key[i] = (uint8_t)i; }

    /* Clustered synthetic embeddings: 64 centres plus noise. */
    float *centres = malloc(64 * DIM * sizeof(float));
    float *vectors = malloc(n * DIM * sizeof(float));
    char (*id_buf)[24] = malloc(n * sizeof *id_buf);
    char (*meta_buf)[160] = malloc(n * sizeof *meta_buf);
    const char **ids = malloc(n * sizeof *ids), **metas = malloc(n * sizeof *metas);
    if (!centres || !vectors || !id_buf || !meta_buf || !ids || !metas) return 1;
    for (int i = 0; i < 64 * DIM; i++) centres[i] = frand() * 4.0f;
    for (size_t i = 0; i < n; i++) {
        size_t c = (size_t)(rng % 64);
        for (int j = 0; j < DIM; j++) vectors[i * DIM + j] = centres[c * DIM + j] + frand();
        snprintf(id_buf[i], sizeof id_buf[i], "doc-%zu", i);
        snprintf(meta_buf[i], sizeof meta_buf[i],
                 "{\"category\": \"%s\", \"year\": %zu, \"lang\": \"%s\", \"title\": \"%s: %s, part %zu\"}",
                 CATEGORIES[i % 5], 2015 + i % 10, i % 3 ? "en" : "de", CATEGORIES[i % 5], TOPICS[i % 7], i % 11);
        ids[i] = id_buf[i];
        metas[i] = meta_buf[i];
    }

    double t = now();
    vx_client *client = NULL;
    TRY("vx_client_open", vx_client_open(uri, NULL, &client));
    vx_index_config cfg;
    vx_index_config_init(&cfg);
    cfg.dimension = DIM;
    cfg.filterable_fields_json = "[\"category\", \"year\"]";
    cfg.text_fields_json = "[\"title\"]";
    vx_index *index = NULL;
    TRY("vx_index_create", vx_index_create(client, "articles", key, &cfg, &index));
    printf("[create]  opened store and created encrypted index 'articles'      %8.1f ms\n", (now() - t) * 1e3);

    t = now();
    upsert_all(index, n, ids, vectors, metas);
    double dt = now() - t;
    uint64_t count = 0;
    TRY("vx_index_num_vectors", vx_index_num_vectors(index, NULL, NULL, &count));
    printf("[upsert]  %llu vectors with metadata, batches of %d, fsync'd      %8.1f ms (%.0f vectors/s)\n",
           (unsigned long long)count, BATCH, dt * 1e3, (double)n / dt);

    float *queries = malloc(NQ * DIM * sizeof(float));
    for (int i = 0; i < NQ; i++)
        for (int j = 0; j < DIM; j++) queries[i * DIM + j] = vectors[(size_t)(i * 97 % n) * DIM + j] + frand() * 0.1f;

    vx_query_params p;
    vx_query_params_init(&p);
    p.top_k = K;
    p.include = VX_INCLUDE_DISTANCE | VX_INCLUDE_METADATA;
    vx_results *r = NULL;
    t = now();
    TRY("vx_index_query", vx_index_query(index, queries, 1, DIM, &p, NULL, NULL, &r));
    printf("[query]   1 query, exact encrypted search (cold: decrypts chunks) %8.1f ms\n", (now() - t) * 1e3);
    printf("          top hit %s at distance %.3f, metadata %s\n", vx_results_id(r, 0, 0), vx_results_distance(r, 0, 0), vx_results_metadata(r, 0, 0));
    vx_results_free(r);

    t = now();
    for (int i = 0; i < 100; i++) {
        TRY("vx_index_query", vx_index_query(index, queries + i * DIM, 1, DIM, &p, NULL, NULL, &r));
        vx_results_free(r);
    }
    dt = now() - t;
    printf("[query]   100 queries one at a time (warm cache)                  %8.1f ms (%.0f queries/s)\n", dt * 1e3, 100 / dt);

    t = now();
    TRY("vx_index_query", vx_index_query(index, queries, NQ, DIM, &p, NULL, NULL, &r));
    dt = now() - t;
    printf("[query]   batch of %d queries                                   %8.1f ms (%.0f queries/s)\n", NQ, dt * 1e3, NQ / dt);
    vx_results_free(r);

    p.filter_json = "{\"category\": \"faq\", \"year\": {\"$gte\": 2020}, \"lang\": {\"$ne\": \"de\"}}";
    t = now();
    TRY("vx_index_query", vx_index_query(index, queries, 1, DIM, &p, NULL, NULL, &r));
    printf("[filter]  %-58s %8.1f ms\n", p.filter_json, (now() - t) * 1e3);
    printf("          %zu hits, nearest %s %s\n", vx_results_len(r, 0), vx_results_id(r, 0, 0),
           vx_results_metadata(r, 0, 0));
    printf("          (the first filtered call also built the index of filterable fields)\n");
    vx_results_free(r);
    p.filter_json = "{\"year\": {\"$gt\": 3000}}";
    TRY("vx_index_query", vx_index_query(index, queries, 1, DIM, &p, NULL, NULL, &r));
    printf("          filter {\"year\": {\"$gt\": 3000}} matches nothing: %zu hits\n", vx_results_len(r, 0));
    vx_results_free(r);
    p.filter_json = "{\"year\": {\"$bogus\": 1}}";
    vx_status s = vx_index_query(index, queries, 1, DIM, &p, NULL, NULL, &r);
    char msg[256];
    (void)vx_last_error_message(msg, sizeof msg, NULL);
    printf("          a bad filter is refused: %s: %s\n", vx_status_str(s), msg);
    p.filter_json = NULL;

    /* Keyword search (BM25 over the title) and hybrid search (its ranking
     * fused with the vector ranking). The first text call builds the
     * in-memory term index from the sealed chunks. */
    const char *text = "rotate the keys";
    t = now();
    TRY("vx_index_query_metadata", vx_index_query_metadata(index, "{\"year\": 2024}", text, 3, NULL, true, 0,
                                                            VX_INCLUDE_METADATA, NULL, NULL, &r));
    printf("[text]    keyword \"%s\", year 2024, top 3 (builds term index) %8.1f ms\n", text, (now() - t) * 1e3);
    for (size_t i = 0; i < vx_results_len(r, 0); i++)
        printf("          %-10s BM25 %.3f  %s\n", vx_results_id(r, 0, i), vx_results_score(r, 0, i), vx_results_metadata(r, 0, i));
    vx_results_free(r);
    p.text = "searching vectors";
    p.top_k = 3;
    t = now();
    TRY("vx_index_query", vx_index_query(index, queries, 1, DIM, &p, NULL, NULL, &r));
    printf("[hybrid]  vector + \"%s\", alpha %.1f, top 3                %8.1f ms\n", p.text, p.alpha, (now() - t) * 1e3);
    for (size_t i = 0; i < vx_results_len(r, 0); i++)
        printf("          %-10s fused %.4f  distance %.3f  %s\n", vx_results_id(r, 0, i), vx_results_score(r, 0, i),
               vx_results_distance(r, 0, i), vx_results_metadata(r, 0, i));
    vx_results_free(r);
    p.text = NULL;
    p.top_k = K;

    const char *want[2] = {"doc-42", "no-such-doc"};
    vx_items *items = NULL;
    t = now();
    TRY("vx_index_get", vx_index_get(index, 2, want, VX_INCLUDE_METADATA | VX_INCLUDE_VECTOR, NULL, NULL, &items));
    size_t dim = 0;
    vx_items_vector(items, 0, &dim);
    printf("[get]     doc-42: found=%d dim=%zu %s; no-such-doc: found=%d    %8.1f ms\n", vx_items_found(items, 0), dim,
           vx_items_metadata(items, 0), vx_items_found(items, 1), (now() - t) * 1e3);
    vx_items_free(items);

    /* Train the IVF lists: from here on queries probe the nearest lists. */
    vx_query_params_init(&p);
    p.top_k = K;
    float exact_d[100];
    char exact_id[100][K][24];
    TRY("vx_index_query", vx_index_query(index, queries, 100, DIM, &p, NULL, NULL, &r));
    for (int i = 0; i < 100; i++) {
        exact_d[i] = vx_results_distance(r, i, 0);
        for (int k = 0; k < K; k++) snprintf(exact_id[i][k], sizeof exact_id[i][k], "%s", vx_results_id(r, i, k));
    }
    vx_results_free(r);
    vx_train_params tp;
    vx_train_params_init(&tp);
    tp.max_iters = 25;
    tp.progress = show_progress;
    printf("[train]   k-means over the encrypted vectors (automatic n_lists), state %u -> ...\n", vx_index_training_state(index));
    t = now();
    TRY("vx_index_train_ex", vx_index_train_ex(index, &tp, NULL, NULL));
    printf("[train]   %u lists, every vector moved into its list, state %u   %8.1f ms\n", vx_index_n_lists(index),
           vx_index_training_state(index), (now() - t) * 1e3);
    double recall;
    int exact_distances;
    double qps = against_exact(index, queries, &p, exact_id, exact_d, &recall, &exact_distances);
    printf("[ivf]     100 queries one at a time, automatic n_probes: %.0f queries/s, recall@10 vs exact %.3f\n", qps,
           recall);

    /* The compressed index beside it: RaBitQ codes scanned first, then an
       exact rerank of the candidates against the full vectors. */
    vx_index_config_init(&cfg);
    cfg.dimension = DIM;
    cfg.index_type = VX_INDEX_TYPE_IVF_RABITQ;
    vx_index *coded = NULL;
    TRY("vx_index_create", vx_index_create(client, "articles-rabitq", key, &cfg, &coded));
    upsert_all(coded, n, ids, vectors, metas);
    tp.progress = NULL;
    t = now();
    TRY("vx_index_train_ex", vx_index_train_ex(coded, &tp, NULL, NULL));
    printf("[rabitq]  IVF_RABITQ, %u-bit codes: trained %u lists            %8.1f ms\n", vx_index_quantizer_bits(coded),
           vx_index_n_lists(coded), (now() - t) * 1e3);
    qps = against_exact(coded, queries, &p, exact_id, exact_d, &recall, &exact_distances);
    printf("[rabitq]  100 queries one at a time: %.0f queries/s, recall@10 vs exact %.3f, exact distances: %s\n", qps,
           recall, exact_distances ? "yes" : "NO");
    printf("          (a code is %d bits a dimension, %.0f%% of the vector: see docs/BENCHMARKS.md)\n",
           vx_index_quantizer_bits(coded), 100.0 * vx_index_quantizer_bits(coded) / 32);
    vx_index_free(coded);

    const char *doomed[3] = {"doc-1", "doc-2", "no-such-doc"};
    size_t deleted = 0;
    t = now();
    TRY("vx_index_delete", vx_index_delete(index, 3, doomed, NULL, NULL, &deleted));
    TRY("vx_index_num_vectors", vx_index_num_vectors(index, NULL, NULL, &count));
    printf("[delete]  3 ids asked, %zu deleted, %llu remain                    %8.1f ms\n", deleted, (unsigned long long)count, (now() - t) * 1e3);

    TRY("vx_index_query", vx_index_query(index, queries, 5, DIM, &p, NULL, NULL, &r));
    char before[5][24];
    for (int i = 0; i < 5; i++) snprintf(before[i], sizeof before[i], "%s", vx_results_id(r, i, 0));
    vx_results_free(r);

    t = now();
    vx_index_free(index);
    vx_client_free(client);
    printf("[close]   index and client closed                                 %8.1f ms\n", (now() - t) * 1e3);

    t = now();
    TRY("vx_client_open", vx_client_open(uri, NULL, &client));
    s = vx_index_load(client, "articles", wrong_key, NULL, &index);
    (void)vx_last_error_message(msg, sizeof msg, NULL);
    printf("[reopen]  wrong key refused: %s (%s); index=%p\n", vx_status_str(s), msg, (void *)index);
    if (s != VX_STATUS_WRONG_KEY) return 1;
    TRY("vx_index_load", vx_index_load(client, "articles", key, NULL, &index));
    TRY("vx_index_num_vectors", vx_index_num_vectors(index, NULL, NULL, &count));
    printf("[reopen]  loaded with the right key: %llu vectors                 %8.1f ms\n", (unsigned long long)count, (now() - t) * 1e3);
    t = now();
    TRY("vx_index_query", vx_index_query(index, queries, 5, DIM, &p, NULL, NULL, &r));
    int same = 1;
    for (int i = 0; i < 5; i++) same &= strcmp(before[i], vx_results_id(r, i, 0)) == 0;
    vx_results_free(r);
    printf("[reopen]  5 queries after reopen give the same answers: %s       %8.1f ms\n", same ? "yes" : "NO", (now() - t) * 1e3);

    /* Per-user keys: a read-only analyst, then revoked; then a new root key. */
    const uint8_t analyst[VX_USER_ID_LEN] = {'a', 'n', 'a', 'l', 'y', 's', 't'};
    uint8_t analyst_key[VX_KEY_LEN], new_root[VX_KEY_LEN];
    for (int i = 0; i < VX_KEY_LEN; i++) { analyst_key[i] = (uint8_t)(0x3C ^ (i * 7)); new_root[i] = (uint8_t)(0x5A ^ (i * 13)); }
    t = now();
    TRY("vx_index_create_user_keys", vx_index_create_user_keys(index, analyst, analyst_key, VX_PERMISSION_READ, NULL));
    vx_index *as_analyst = NULL;
    TRY("vx_index_load (user)", vx_index_load(client, "articles", analyst_key, analyst, &as_analyst));
    TRY("vx_index_query (user)", vx_index_query(as_analyst, queries, 1, DIM, &p, NULL, NULL, &r));
    vx_results_free(r);
    s = vx_index_delete(as_analyst, 1, doomed, NULL, NULL, &deleted);
    printf("[users]   read-only key: query ok; delete refused: %-17s%8.1f ms\n", vx_status_str(s), (now() - t) * 1e3);
    if (s != VX_STATUS_PERMISSION_DENIED) return 1;
    TRY("vx_index_delete_user_keys", vx_index_delete_user_keys(index, analyst, NULL));
    s = vx_index_num_vectors(as_analyst, NULL, NULL, &count);
    printf("[users]   after revocation the analyst's open handle gets: %s\n", vx_status_str(s));
    if (s != VX_STATUS_WRONG_KEY) return 1;
    vx_index_free(as_analyst);
    t = now();
    TRY("vx_index_rotate_key", vx_index_rotate_key(index, key, new_root));
    vx_index *old = NULL;
    s = vx_index_load(client, "articles", key, NULL, &old);
    printf("[rotate]  root key rotated (no data touched), old key: %-13s%8.1f ms\n", vx_status_str(s), (now() - t) * 1e3);
    if (s != VX_STATUS_WRONG_KEY) return 1;

    vx_index_free(index);
    vx_client_free(client);
    /* Wipe our copies of the keys. */
    memset(key, 0, sizeof key);
    memset(analyst_key, 0, sizeof analyst_key);
    memset(new_root, 0, sizeof new_root);
    free(centres); free(vectors); free(id_buf); free(meta_buf); free(ids); free(metas); free(queries);
    printf("\ndone: the store in %s holds only ciphertext and keyed tokens.\n", dir);
    return same ? 0 : 1;
}
