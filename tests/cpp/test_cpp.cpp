// The C++ wrapper: functional checks, errors as vx::Error with the status,
// move-only handles, and (with second_tu.cpp) that every function is inline.
#include "vx.hpp"
#include "vx.hpp"  // double include

#include <cmath>
#include <cstdio>
#include <type_traits>

static_assert(!std::is_copy_constructible_v<vx::Client>, "Client is move-only");
static_assert(!std::is_copy_assignable_v<vx::Index>, "Index is move-only");
static_assert(std::is_nothrow_move_constructible_v<vx::Index>, "Index moves without throwing");
static_assert(!std::is_copy_constructible_v<vx::Results>, "Results is move-only");
static_assert(std::is_base_of_v<std::runtime_error, vx::Error>, "Error is a runtime_error");

int second_tu_probe();  // defined in second_tu.cpp with the same header

static int failures = 0;
#define CHECK(c) do { if (!(c)) { failures++; std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); } } while (0)

template <typename F>
static vx_status status_of(F f) {
    try {
        f();
        return VX_STATUS_OK;
    } catch (const vx::Error &e) {
        CHECK(std::string(e.what()).size() > 0);
        return e.code();
    }
}

int main() {
    CHECK(second_tu_probe() == 100);
    vx::Client client("memory:", vx::ClientOptions{2, std::nullopt});
    vx::Key key{};
    key[3] = 9;
    vx::Index index = client.create_index("cpp", key);
    std::vector<std::string> ids;
    std::vector<float> vectors;
    std::vector<std::optional<std::string>> meta;
    for (int i = 0; i < 300; i++) {
        ids.push_back("i" + std::to_string(i));
        vectors.push_back(static_cast<float>(i));
        vectors.push_back(static_cast<float>(i % 7));
        meta.push_back(i % 2 ? std::optional<std::string>("{\"odd\": true}") : std::nullopt);
    }
    index.upsert(ids, vectors, 2, meta);
    CHECK(index.num_vectors() == 300);
    CHECK(index.dimension() == 2);
    CHECK(index.index_type() == VX_INDEX_TYPE_IVF_FLAT && index.quantizer_bits() == 0);

    // IVF_RABITQ (0.6): created through IndexConfig; untrained, its queries are
    // the exact exhaustive search IVF_FLAT's are, whatever rerank_mult says.
    vx::Index rabitq = client.create_index(
        "cpp-rabitq", key, vx::IndexConfig{}.dimension(2).index_type(VX_INDEX_TYPE_IVF_RABITQ).quantizer_bits(4));
    CHECK(rabitq.index_type() == VX_INDEX_TYPE_IVF_RABITQ && rabitq.quantizer_bits() == 4);
    rabitq.upsert(ids, vectors, 2, meta);
    auto exact = index.query({10.2f, 3.0f, 150.3f, 1.0f}, 2, vx::QueryOptions{}.top_k(5));
    auto coded = rabitq.query({10.2f, 3.0f, 150.3f, 1.0f}, 2, vx::QueryOptions{}.top_k(5).rerank_mult(3));
    CHECK(coded.num_queries() == 2);
    for (size_t q = 0; q < 2; q++) {
        CHECK(coded.size(q) == 5 && exact.size(q) == 5);
        for (size_t i = 0; i < coded.size(q) && i < exact.size(q); i++)
            CHECK(coded.id(q, i) == exact.id(q, i) && coded.distance(q, i) == exact.distance(q, i));
    }
    CHECK(status_of([&] { rabitq.query({1, 2}, 2, vx::QueryOptions{}.rerank_mult(VX_MAX_RERANK_MULT + 1)); }) ==
          VX_STATUS_INVALID_ARGUMENT);
    CHECK(status_of([&] {
              client.create_index("bad-bits", key,
                                  vx::IndexConfig{}.index_type(VX_INDEX_TYPE_IVF_RABITQ).quantizer_bits(VX_MAX_QUANTIZER_BITS + 1));
          }) == VX_STATUS_INVALID_ARGUMENT);
    CHECK(status_of([&] { client.create_index("bad-flat", key, vx::IndexConfig{}.quantizer_bits(2)); }) ==
          VX_STATUS_INVALID_ARGUMENT);
    CHECK(vx::IndexConfig{}.config().struct_size == sizeof(vx_index_config));
    // Filterable fields: the same answers; names are JSON-escaped; bad paths refused.
    {
        vx::Index fast = client.create_index("cpp-fields", key, vx::IndexConfig{}.filterable_fields({"odd", "we\"ird\\"}));
        std::vector<std::string> few(ids.begin(), ids.begin() + 20);
        std::vector<float> few_vectors(vectors.begin(), vectors.begin() + 40);
        std::vector<std::optional<std::string>> few_meta(meta.begin(), meta.begin() + 20);
        fast.upsert(few, few_vectors, 2, few_meta);
        auto hits = fast.query({10.2f, 3.0f}, 2, vx::QueryOptions{}.top_k(3).filter("{\"odd\": true}"));
        CHECK(hits.size(0) == 3 && hits.id(0, 0) == "i11");
        CHECK(status_of([&] { client.create_index("cpp-bad", key, vx::IndexConfig{}.filterable_fields({"a..b"})); }) ==
              VX_STATUS_INVALID_ARGUMENT);
        CHECK(vx::detail::json_string("a\"b\\c\n") == "\"a\\\"b\\\\c\\u000a\"");
    }
    auto r = index.query({10.2f, 3.0f}, 2, vx::QueryOptions{}.top_k(3).filter("{\"odd\": true}").include(VX_INCLUDE_METADATA));
    CHECK(r.num_queries() == 1 && r.size(0) == 3);
    CHECK(r.id(0, 0) == "i11" || r.id(0, 0) == "i9");
    CHECK(r.metadata(0, 0).value() == "{\"odd\": true}");
    auto items = index.get({"i5", "nope"});
    CHECK(items.found(0) && !items.found(1) && items.vector(0).size() == 2);
    CHECK(index.remove({"i5", "nope"}) == 1);
    CHECK(index.list_ids(0, 10).size() == 10);
    // Metadata-only: the odd items by id descending (i99, i97, i95, i93, ...), a page of 3 from the second.
    auto listed = index.query_metadata(vx::MetadataQuery{}.filter("{\"odd\": true}").ascending(false).offset(1).top_k(3));
    CHECK(listed.num_queries() == 1 && listed.size(0) == 3);
    CHECK(listed.id(0, 0) == "i97" && listed.id(0, 2) == "i93");
    CHECK(listed.metadata(0, 0).value() == "{\"odd\": true}");
    CHECK(index.query_metadata().size(0) == index.list_ids().size());
    CHECK(status_of([&] { index.query_metadata(vx::MetadataQuery{}.include(VX_INCLUDE_DISTANCE)); }) ==
          VX_STATUS_INVALID_ARGUMENT);
    CHECK(status_of([&] { index.query_metadata(vx::MetadataQuery{}.order_by("")); }) == VX_STATUS_INVALID_ARGUMENT);

    // Text fields (0.8): keyword search ranks by BM25 (stemmed: "run" finds
    // "running"), hybrid search fuses it with the vector ranking; scores
    // come back, plain vector queries have none (NaN).
    {
        CHECK(status_of([&] { client.create_index("cpp-bad-b", key, vx::IndexConfig{}.text_fields({"title"}).bm25_b(2)); }) ==
              VX_STATUS_INVALID_ARGUMENT);
        vx::Index texts = client.create_index("cpp-text", key, vx::IndexConfig{}.text_fields({"title"}).bm25_k1(1.2f).bm25_b(0.75f));
        const char *titles[] = {"encrypted vector search", "running dogs", "the cat sat on the mat",
                                "fast approximate nearest neighbour search", "dogs and cats living together", "a quiet evening"};
        std::vector<std::string> tids;
        std::vector<float> tvectors;
        std::vector<std::optional<std::string>> tmeta;
        for (int i = 0; i < 6; i++) {
            tids.push_back("t" + std::to_string(i));
            tvectors.push_back(static_cast<float>(i));
            tvectors.push_back(0.0f);
            tmeta.push_back("{\"title\": " + vx::detail::json_string(titles[i]) + "}");
        }
        texts.upsert(tids, tvectors, 2, tmeta);
        auto kw = texts.query_metadata(vx::MetadataQuery{}.text("run"));
        CHECK(kw.num_queries() == 1 && kw.size(0) >= 1 && kw.id(0, 0) == "t1");
        CHECK(kw.score(0, 0) > 0 && std::isfinite(kw.score(0, 0)) && std::isnan(kw.distance(0, 0)));
        CHECK(kw.metadata(0, 0).value().find("running dogs") != std::string::npos);
        auto none = texts.query_metadata(vx::MetadataQuery{}.text("the and a"));  // only stop words
        CHECK(none.size(0) == 0);
        auto hybrid = texts.query({1.2f, 0.0f}, 2, vx::QueryOptions{}.top_k(6).text("dogs search").alpha(0.5f).rrf_k(60)
                                                        .vector_depth(6).text_depth(6));
        CHECK(hybrid.num_queries() == 1 && hybrid.size(0) == 6);
        for (size_t i = 0; i < hybrid.size(0); i++) {
            CHECK(std::isfinite(hybrid.distance(0, i)) && std::isfinite(hybrid.score(0, i)) && hybrid.score(0, i) > 0);
            if (i > 0) CHECK(hybrid.score(0, i) <= hybrid.score(0, i - 1));
        }
        CHECK(hybrid.id(0, 0) == "t1");  // nearest and a text match
        auto plain = texts.query({1.2f, 0.0f}, 2, vx::QueryOptions{}.top_k(3));
        CHECK(plain.size(0) == 3 && plain.id(0, 0) == "t1" && std::isnan(plain.score(0, 0)));
        CHECK(status_of([&] { index.query_metadata(vx::MetadataQuery{}.text("run")); }) == VX_STATUS_INVALID_ARGUMENT);
        CHECK(status_of([&] { index.query({1, 2}, 2, vx::QueryOptions{}.text("run")); }) == VX_STATUS_INVALID_ARGUMENT);
        CHECK(status_of([&] { texts.query({1, 2}, 2, vx::QueryOptions{}.text("run").alpha(1.5f)); }) ==
              VX_STATUS_INVALID_ARGUMENT);
        vx::QueryOptions defaults;
        CHECK(defaults.params().text == nullptr && defaults.params().alpha == 0.5f && defaults.params().rrf_k == 0);
        CHECK(vx::IndexConfig{}.config().text_fields_json == nullptr && vx::IndexConfig{}.config().bm25_b == 0.75f);
        CHECK(std::string(vx::IndexConfig{}.text_fields({"a", "b.c"}).config().text_fields_json) == "[\"a\",\"b.c\"]");
    }

    // Moves keep the handle; the moved-from object is empty.
    vx::Index moved = std::move(index);
    CHECK(moved.get() != nullptr && index.get() == nullptr);

    CHECK(status_of([&] { client.load_index("cpp", vx::Key{}); }) == VX_STATUS_WRONG_KEY);
    CHECK(status_of([&] { client.create_index("cpp", key); }) == VX_STATUS_ALREADY_EXISTS);
    CHECK(status_of([&] { moved.query({1, 2, 3}, 3); }) == VX_STATUS_DIMENSION_MISMATCH);
    CHECK(status_of([&] { moved.query({1, 2}, 2, vx::QueryOptions{}.filter("{\"$x\": 1}")); }) == VX_STATUS_INVALID_FILTER);
    CHECK(status_of([&] { moved.train(); }) == VX_STATUS_NOT_ENOUGH_VECTORS);
    CHECK(moved.auto_n_probes() == 0); // untrained
    CHECK(status_of([&] { moved.upsert({"a"}, {1, 2, 3}, 2); }) == VX_STATUS_INVALID_ARGUMENT);
    CHECK(status_of([&] { vx::Client bad("s3://nope"); }) == VX_STATUS_INVALID_ARGUMENT);

    moved.compact(); // a no-op on memory:
    vx::Epoch epoch = moved.epoch();
    moved.require_epoch(epoch);
    vx::Epoch forked = epoch;
    forked.back() ^= 1; // the same version, another state
    CHECK(status_of([&] { moved.require_epoch(forked); }) == VX_STATUS_INTEGRITY);

    // Per-user keys: a reader reads and cannot write; deleted, it gets WRONG_KEY.
    vx::UserId reader{};
    reader[0] = 7;
    vx::Key reader_key{};
    reader_key[0] = 42;
    moved.create_user_keys(reader, reader_key, VX_PERMISSION_READ);
    auto users = moved.list_user_keys();
    CHECK(users.size() == 1 && users[0].user_id == reader && users[0].permissions == VX_PERMISSION_READ);
    vx::Index as_reader = client.load_index("cpp", reader_key, reader);
    CHECK(as_reader.num_vectors() == 299 && as_reader.dimension() == 2);
    CHECK(status_of([&] { as_reader.upsert({"r"}, {1, 2}, 2); }) == VX_STATUS_PERMISSION_DENIED);
    CHECK(status_of([&] { as_reader.list_user_keys(); }) == VX_STATUS_PERMISSION_DENIED);
    CHECK(moved.num_vectors(vx::Credentials(reader_key, reader)) == 299);
    vx::Key new_key{};
    new_key[0] = 1;
    moved.rotate_key(key, new_key);
    CHECK(status_of([&] { client.load_index("cpp", key); }) == VX_STATUS_WRONG_KEY);
    CHECK(as_reader.num_vectors() == 299);
    moved.delete_user_keys(reader, &new_key);
    CHECK(status_of([&] { as_reader.num_vectors(); }) == VX_STATUS_WRONG_KEY);
    CHECK(as_reader.dimension() == 0);  // getters answer 0 without READ

    vx_index *raw = moved.release();
    CHECK(raw != nullptr && moved.get() == nullptr);
    vx_index_free(raw);
    std::printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
