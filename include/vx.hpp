// vx.hpp: header-only C++17 wrapper of the vx C API.
//
// Move-only RAII types own the C handles (std::unique_ptr with the C
// destructor); every call that returns a vx_status in C throws vx::Error
// carrying the status code and the one-line message when it fails. The
// getters (Index::dimension() ...) are noexcept and answer as in C: 0 when
// they fail, with the reason in vx_last_error_message. get()/release()
// reach the C handle. Keys are std::array<uint8_t, 32>; wipe them when done.
//
//   vx::Client client("file:/var/lib/app/vx");
//   vx::Index index = client.create_index("docs", key);
//   index.upsert({"a", "b"}, vectors, dim);
//   vx::Results r = index.query(q, 1, dim, vx::QueryOptions{}.top_k(10));
#ifndef VX_HPP
#define VX_HPP

#include "vx.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vx {

using Key = std::array<uint8_t, VX_KEY_LEN>;
using UserId = std::array<uint8_t, VX_USER_ID_LEN>;
using Epoch = std::array<uint8_t, VX_EPOCH_LEN>;

/// A failed vx call: code() is the VX_STATUS_* value, what() the message.
class Error : public std::runtime_error {
public:
    Error(vx_status code, const std::string &message) : std::runtime_error(message), code_(code) {}
    vx_status code() const noexcept { return code_; }

private:
    vx_status code_;
};

namespace detail {

inline std::string last_message(vx_status code) {
    size_t len = 0;
    (void)vx_last_error_message(nullptr, 0, &len);
    std::string msg(len, '\0');
    if (len > 0) (void)vx_last_error_message(msg.data(), len + 1, &len);
    std::string prefix = vx_status_str(code);
    return msg.empty() ? prefix : prefix + ": " + msg;
}

inline void check(vx_status code) {
    if (code != VX_STATUS_OK) throw Error(code, last_message(code));
}

/// `s` as a JSON string literal (quotes, backslashes and control
/// characters escaped; other bytes, UTF-8 included, as they are).
inline std::string json_string(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

template <typename T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};

template <typename T, void (*Free)(T *)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;

/// Per-call credentials: nullptr = the handle's key.
struct Creds {
    const uint8_t *key = nullptr;
    const uint8_t *user = nullptr;
};

/// `paths` as a JSON array of strings (`["a","b.c"]`).
inline std::string json_array(const std::vector<std::string> &paths) {
    std::string json = "[";
    for (const std::string &p : paths) {
        if (json.size() > 1) json += ',';
        json += json_string(p);
    }
    return json + "]";
}

inline std::vector<const char *> c_strings(const std::vector<std::string> &v) {
    std::vector<const char *> out;
    out.reserve(v.size());
    for (const auto &s : v) out.push_back(s.c_str());
    return out;
}

}  // namespace detail

/// Per-call key override (and user id) for any data call.
class Credentials {
public:
    Credentials() = default;
    explicit Credentials(const Key &key) : key_(&key) {}
    Credentials(const Key &key, const UserId &user) : key_(&key), user_(&user) {}
    const uint8_t *key() const noexcept { return key_ ? key_->data() : nullptr; }
    const uint8_t *user() const noexcept { return user_ ? user_->data() : nullptr; }

private:
    const Key *key_ = nullptr;
    const UserId *user_ = nullptr;
};

/// A list of strings (index names, ids).
class StringList {
public:
    explicit StringList(vx_string_list *raw) : h_(raw) {}
    size_t size() const noexcept { return vx_string_list_len(h_.get()); }
    std::string operator[](size_t i) const {
        const char *s = vx_string_list_get(h_.get(), i);
        return s ? s : "";
    }
    std::vector<std::string> to_vector() const {
        std::vector<std::string> out;
        for (size_t i = 0; i < size(); i++) out.push_back((*this)[i]);
        return out;
    }
    vx_string_list *get() const noexcept { return h_.get(); }
    vx_string_list *release() noexcept { return h_.release(); }

private:
    detail::Handle<vx_string_list, vx_string_list_free> h_;
};

/// The answer of Index::get: one row per id asked, in order.
class Items {
public:
    explicit Items(vx_items *raw) : h_(raw) {}
    size_t size() const noexcept { return vx_items_len(h_.get()); }
    bool found(size_t i) const noexcept { return vx_items_found(h_.get(), i); }
    std::string id(size_t i) const {
        const char *s = vx_items_id(h_.get(), i);
        return s ? s : "";
    }
    std::vector<float> vector(size_t i) const {
        size_t dim = 0;
        const float *v = vx_items_vector(h_.get(), i, &dim);
        return v ? std::vector<float>(v, v + dim) : std::vector<float>{};
    }
    std::optional<std::string> metadata(size_t i) const {
        const char *m = vx_items_metadata(h_.get(), i);
        return m ? std::optional<std::string>(m) : std::nullopt;
    }
    std::optional<std::vector<uint8_t>> contents(size_t i) const {
        size_t len = 0;
        const uint8_t *c = vx_items_contents(h_.get(), i, &len);
        return c ? std::optional<std::vector<uint8_t>>(std::vector<uint8_t>(c, c + len)) : std::nullopt;
    }
    vx_items *get() const noexcept { return h_.get(); }
    vx_items *release() noexcept { return h_.release(); }

private:
    detail::Handle<vx_items, vx_items_free> h_;
};

/// The answer of Index::query: per query, hits by ascending distance (by
/// descending score() with QueryOptions::text).
class Results {
public:
    explicit Results(vx_results *raw) : h_(raw) {}
    size_t num_queries() const noexcept { return vx_results_num_queries(h_.get()); }
    size_t size(size_t query) const noexcept { return vx_results_len(h_.get(), query); }
    std::string id(size_t query, size_t rank) const {
        const char *s = vx_results_id(h_.get(), query, rank);
        return s ? s : "";
    }
    float distance(size_t query, size_t rank) const noexcept { return vx_results_distance(h_.get(), query, rank); }
    /// Higher is better: the BM25 score of a keyword search (MetadataQuery::text),
    /// the fused score of a hybrid search (QueryOptions::text); NaN otherwise. Since 0.8.
    float score(size_t query, size_t rank) const noexcept { return vx_results_score(h_.get(), query, rank); }
    std::optional<std::string> metadata(size_t query, size_t rank) const {
        const char *m = vx_results_metadata(h_.get(), query, rank);
        return m ? std::optional<std::string>(m) : std::nullopt;
    }
    std::optional<std::vector<uint8_t>> contents(size_t query, size_t rank) const {
        size_t len = 0;
        const uint8_t *c = vx_results_contents(h_.get(), query, rank, &len);
        return c ? std::optional<std::vector<uint8_t>>(std::vector<uint8_t>(c, c + len)) : std::nullopt;
    }
    std::vector<float> vector(size_t query, size_t rank) const {
        size_t dim = 0;
        const float *v = vx_results_vector(h_.get(), query, rank, &dim);
        return v ? std::vector<float>(v, v + dim) : std::vector<float>{};
    }
    vx_results *get() const noexcept { return h_.get(); }
    vx_results *release() noexcept { return h_.release(); }

private:
    detail::Handle<vx_results, vx_results_free> h_;
};

/// Query parameters with the C defaults; setters chain.
class QueryOptions {
public:
    QueryOptions() { vx_query_params_init(&p_); }
    QueryOptions &top_k(uint32_t k) { p_.top_k = k; return *this; }
    QueryOptions &n_probes(uint32_t n) { p_.n_probes = n; return *this; }
    QueryOptions &include(uint32_t bits) { p_.include = bits; return *this; }
    QueryOptions &greedy(bool g) { p_.greedy = g; return *this; }
    /// IVF_RABITQ once trained: candidates reranked exactly per hit, up to
    /// VX_MAX_RERANK_MULT (0 = automatic). Since 0.6.
    QueryOptions &rerank_mult(uint32_t m) { p_.rerank_mult = m; return *this; }
    QueryOptions &filter(std::string json) { filter_ = std::move(json); return *this; }
    /// Hybrid search: this text's BM25 ranking over the index's text fields
    /// (IndexConfig::text_fields) fused with the vector ranking by weighted
    /// reciprocal rank; hits by descending Results::score, each with its
    /// exact distance. Since 0.8.
    QueryOptions &text(std::string t) { text_ = std::move(t); return *this; }
    /// Weight of the vector ranking in the fusion, 0 to 1 (the text's is 1 - alpha; default 0.5). Since 0.8.
    QueryOptions &alpha(float a) { p_.alpha = a; return *this; }
    /// Rank damping of the fusion (0 = default, 60). Since 0.8.
    QueryOptions &rrf_k(uint32_t k) { p_.rrf_k = k; return *this; }
    /// Items the vector ranking contributes, up to 65536 (0 = default, max(2 * top_k, 50)). Since 0.8.
    QueryOptions &vector_depth(uint32_t d) { p_.vector_depth = d; return *this; }
    /// Items the text ranking contributes, up to 65536 (0 = default, max(2 * top_k, 50)). Since 0.8.
    QueryOptions &text_depth(uint32_t d) { p_.text_depth = d; return *this; }
    /// The C struct; its filter_json and text point into this object.
    vx_query_params params() const {
        vx_query_params p = p_;
        p.filter_json = filter_ ? filter_->c_str() : nullptr;
        p.text = text_ ? text_->c_str() : nullptr;
        return p;
    }

private:
    vx_query_params p_{};
    std::optional<std::string> filter_, text_;
};

/// What Index::query_metadata asks; setters chain:
/// MetadataQuery{}.filter("{\"tenant\": 7}").order_by("date", false).top_k(20).offset(40).
/// The default: every item by id, with its metadata. Since 0.7.
class MetadataQuery {
public:
    /// MongoDB-style filter JSON (default: every item).
    MetadataQuery &filter(std::string json) { filter_ = std::move(json); return *this; }
    /// Keyword search: only the matches holding a term of this text in the
    /// index's text fields (IndexConfig::text_fields), by descending BM25
    /// score (Results::score) unless order_by is given. Since 0.8.
    MetadataQuery &text(std::string t) { text_ = std::move(t); return *this; }
    /// Items at most (0, the default = every match from offset).
    MetadataQuery &top_k(size_t k) { top_k_ = k; return *this; }
    /// Dot-path of the metadata field to order by, then by id (default: by id).
    MetadataQuery &order_by(std::string path, bool ascending = true) {
        order_by_ = std::move(path);
        ascending_ = ascending;
        return *this;
    }
    /// Direction of the order (without order_by: of the ids).
    MetadataQuery &ascending(bool a) { ascending_ = a; return *this; }
    /// Matches skipped first.
    MetadataQuery &offset(size_t n) { offset_ = n; return *this; }
    /// VX_INCLUDE_METADATA (default), _CONTENTS, _VECTOR; not _DISTANCE.
    MetadataQuery &include(uint32_t bits) { include_ = bits; return *this; }

private:
    friend class Index;
    std::optional<std::string> filter_, text_, order_by_;
    size_t top_k_ = 0, offset_ = 0;
    bool ascending_ = true;
    uint32_t include_ = VX_INCLUDE_METADATA;
};

/// Configuration of Client::create_index with the C defaults; setters chain:
/// IndexConfig{}.dimension(768).index_type(VX_INDEX_TYPE_IVF_RABITQ).quantizer_bits(4).
class IndexConfig {
public:
    IndexConfig() { vx_index_config_init(&c_); }
    /// Vector width (0 = fixed by the first upsert).
    IndexConfig &dimension(uint32_t d) { c_.dimension = d; return *this; }
    /// One of VX_METRIC_*.
    IndexConfig &metric(uint32_t m) { c_.metric = m; return *this; }
    /// VX_INDEX_TYPE_IVF_FLAT (default) or VX_INDEX_TYPE_IVF_RABITQ.
    IndexConfig &index_type(uint32_t t) { c_.index_type = t; return *this; }
    /// One of VX_PRECISION_*.
    IndexConfig &storage_precision(uint32_t p) { c_.storage_precision = p; return *this; }
    /// IVF_RABITQ only: 1 to VX_MAX_QUANTIZER_BITS bits per dimension (0 = default). Since 0.6.
    IndexConfig &quantizer_bits(uint32_t b) { c_.quantizer_bits = b; return *this; }
    /// Metadata fields (dot-paths) vx keeps an in-memory index of, so filters
    /// on them are answered without a scan. Since 0.7.
    IndexConfig &filterable_fields(const std::vector<std::string> &paths) {
        fields_json_ = detail::json_array(paths);
        return *this;
    }
    /// Metadata fields (dot-paths) holding text (a string or an array of
    /// strings) for keyword search (MetadataQuery::text) and hybrid search
    /// (QueryOptions::text), ranked by BM25. Since 0.8.
    IndexConfig &text_fields(const std::vector<std::string> &paths) {
        text_fields_json_ = detail::json_array(paths);
        return *this;
    }
    /// BM25's term-frequency saturation, 0 to VX_MAX_BM25_K1 (default 1.2). Since 0.8.
    IndexConfig &bm25_k1(float k1) { c_.bm25_k1 = k1; return *this; }
    /// BM25's document-length normalisation, 0 (none) to 1 (full; default 0.75). Since 0.8.
    IndexConfig &bm25_b(float b) { c_.bm25_b = b; return *this; }
    /// The C struct; its filterable_fields_json and text_fields_json point into this object.
    vx_index_config config() const noexcept {
        vx_index_config c = c_;
        c.filterable_fields_json = fields_json_ ? fields_json_->c_str() : nullptr;
        c.text_fields_json = text_fields_json_ ? text_fields_json_->c_str() : nullptr;
        return c;
    }

private:
    vx_index_config c_{};
    std::optional<std::string> fields_json_, text_fields_json_;
};

/// Training parameters with the C defaults (zero = automatic).
struct TrainOptions {
    uint32_t n_lists = 0;
    size_t batch_size = 0;
    uint32_t max_iters = 0;
    double tolerance = 0;
    size_t max_memory_mib = 0;
};

/// One user that holds keys to an index (Index::list_user_keys).
struct UserKeys {
    UserId user_id;
    uint32_t permissions;  // VX_PERMISSION_* bits
};

/// An opened index. Thread-safe for concurrent calls; moving or destroying
/// it must not race other calls on it. The getters (dimension() ...) need
/// READ and return 0 otherwise, as in C; vx_last_error_message says why.
class Index {
public:
    explicit Index(vx_index *raw) : h_(raw) {}

    std::string name() const {
        const char *s = vx_index_name(h_.get());
        return s ? s : "";
    }
    uint32_t dimension() const noexcept { return vx_index_dimension(h_.get()); }
    uint32_t metric() const noexcept { return vx_index_metric(h_.get()); }
    /// VX_INDEX_TYPE_IVF_FLAT or VX_INDEX_TYPE_IVF_RABITQ.
    uint32_t index_type() const noexcept { return vx_index_type(h_.get()); }
    /// IVF_RABITQ: bits per dimension as resolved at creation; 0 for IVF_FLAT. Since 0.6.
    uint32_t quantizer_bits() const noexcept { return vx_index_quantizer_bits(h_.get()); }
    uint32_t n_lists() const noexcept { return vx_index_n_lists(h_.get()); }
    /// The probe count calibrated at training (0 until trained).
    uint32_t auto_n_probes() const noexcept { return vx_index_auto_n_probes(h_.get()); }
    uint32_t training_state() const noexcept { return vx_index_training_state(h_.get()); }
    bool is_trained() const noexcept { return vx_index_is_trained(h_.get()); }

    uint64_t num_vectors(const Credentials &c = {}) const {
        uint64_t n = 0;
        detail::check(vx_index_num_vectors(h_.get(), c.key(), c.user(), &n));
        return n;
    }

    /// Upserts ids.size() items; `vectors` holds ids.size() * dim floats.
    /// `metadata` and `contents` are empty (none) or one per id (nullopt = none).
    void upsert(const std::vector<std::string> &ids, const std::vector<float> &vectors, size_t dim,
                const std::vector<std::optional<std::string>> &metadata = {},
                const std::vector<std::optional<std::vector<uint8_t>>> &contents = {},
                const Credentials &c = {}) {
        if (vectors.size() != ids.size() * dim)
            throw Error(VX_STATUS_INVALID_ARGUMENT, "vectors.size() != ids.size() * dim");
        if ((!metadata.empty() && metadata.size() != ids.size()) || (!contents.empty() && contents.size() != ids.size()))
            throw Error(VX_STATUS_INVALID_ARGUMENT, "metadata and contents must be empty or one per id");
        auto id_ptrs = detail::c_strings(ids);
        std::vector<const char *> meta_ptrs;
        for (const auto &m : metadata) meta_ptrs.push_back(m ? m->c_str() : nullptr);
        std::vector<const uint8_t *> content_ptrs;
        std::vector<size_t> content_lens;
        static const uint8_t empty = 0;
        for (const auto &b : contents) {
            content_ptrs.push_back(b ? (b->empty() ? &empty : b->data()) : nullptr);
            content_lens.push_back(b ? b->size() : 0);
        }
        detail::check(vx_index_upsert(h_.get(), ids.size(), id_ptrs.data(), vectors.data(), dim,
                                      contents.empty() ? nullptr : content_ptrs.data(),
                                      contents.empty() ? nullptr : content_lens.data(),
                                      metadata.empty() ? nullptr : meta_ptrs.data(), c.key(), c.user()));
    }

    Items get(const std::vector<std::string> &ids,
              uint32_t include = VX_INCLUDE_VECTOR | VX_INCLUDE_METADATA | VX_INCLUDE_CONTENTS,
              const Credentials &c = {}) const {
        auto id_ptrs = detail::c_strings(ids);
        vx_items *out = nullptr;
        detail::check(vx_index_get(h_.get(), ids.size(), id_ptrs.data(), include, c.key(), c.user(), &out));
        return Items(out);
    }

    size_t remove(const std::vector<std::string> &ids, const Credentials &c = {}) {
        auto id_ptrs = detail::c_strings(ids);
        size_t deleted = 0;
        detail::check(vx_index_delete(h_.get(), ids.size(), id_ptrs.data(), c.key(), c.user(), &deleted));
        return deleted;
    }

    StringList list_ids(size_t offset = 0, size_t limit = 0, const Credentials &c = {}) const {
        vx_string_list *out = nullptr;
        detail::check(vx_index_list_ids(h_.get(), offset, limit, c.key(), c.user(), &out));
        return StringList(out);
    }

    Results query(const float *queries, size_t nq, size_t dim, const QueryOptions &o = {},
                  const Credentials &c = {}) const {
        vx_query_params p = o.params();
        vx_results *out = nullptr;
        detail::check(vx_index_query(h_.get(), queries, nq, dim, &p, c.key(), c.user(), &out));
        return Results(out);
    }

    Results query(const std::vector<float> &queries, size_t dim, const QueryOptions &o = {},
                  const Credentials &c = {}) const {
        if (dim == 0 || queries.size() % dim != 0)
            throw Error(VX_STATUS_INVALID_ARGUMENT, "queries.size() is not a multiple of dim");
        return query(queries.data(), queries.size() / dim, dim, o, c);
    }

    /// The items a filter matches ordered by one metadata field, a page at a
    /// time (vx_index_query_metadata): Results of one query, NaN distances;
    /// with MetadataQuery::text a keyword search (BM25 scores). Since 0.7.
    Results query_metadata(const MetadataQuery &q = {}, const Credentials &c = {}) const {
        vx_results *out = nullptr;
        detail::check(vx_index_query_metadata(h_.get(), q.filter_ ? q.filter_->c_str() : nullptr,
                                              q.text_ ? q.text_->c_str() : nullptr, q.top_k_,
                                              q.order_by_ ? q.order_by_->c_str() : nullptr, q.ascending_, q.offset_,
                                              q.include_, c.key(), c.user(), &out));
        return Results(out);
    }

    void train(const TrainOptions &o = {}, const Credentials &c = {}) {
        detail::check(vx_index_train(h_.get(), o.n_lists, o.batch_size, o.max_iters, o.tolerance, o.max_memory_mib,
                                     c.key(), c.user()));
    }

    void train_ex(const vx_train_params &p, const Credentials &c = {}) {
        detail::check(vx_index_train_ex(h_.get(), &p, c.key(), c.user()));
    }

    void refresh() { detail::check(vx_index_refresh(h_.get())); }

    /// The name of the committed state (its version and digest); keep it
    /// outside the store and pass it to require_epoch after loading to detect
    /// a rolled-back or forked store.
    Epoch epoch(const Credentials &c = {}) const {
        Epoch e{};
        detail::check(vx_index_epoch(h_.get(), c.key(), c.user(), e.data()));
        return e;
    }

    void require_epoch(const Epoch &epoch) { detail::check(vx_index_require_epoch(h_.get(), epoch.data())); }

    /// Deletes what failed or killed training runs left behind, then gives a
    /// file: store's free space back to the system (needs WRITE).
    void compact(const Credentials &c = {}) { detail::check(vx_index_compact(h_.get(), c.key(), c.user())); }

    void delete_index(const Credentials &c = {}) { detail::check(vx_index_delete_index(h_.get(), c.key(), c.user())); }

    /// Gives `user` exactly `permissions` (VX_PERMISSION_*) under `user_key`,
    /// replacing any keys it had. `root` = nullptr: the handle's key.
    void create_user_keys(const UserId &user, const Key &user_key, uint32_t permissions,
                          const Key *root = nullptr) {
        detail::check(vx_index_create_user_keys(h_.get(), user.data(), user_key.data(), permissions,
                                                root ? root->data() : nullptr));
    }

    /// Removes every key of `user` (a no-op if it has none).
    void delete_user_keys(const UserId &user, const Key *root = nullptr) {
        detail::check(vx_index_delete_user_keys(h_.get(), user.data(), root ? root->data() : nullptr));
    }

    std::vector<UserKeys> list_user_keys(const Key *root = nullptr) const {
        vx_user_list *raw = nullptr;
        detail::check(vx_index_list_user_keys(h_.get(), root ? root->data() : nullptr, &raw));
        detail::Handle<vx_user_list, vx_user_list_free> list(raw);
        std::vector<UserKeys> out(vx_user_list_len(raw));
        for (size_t i = 0; i < out.size(); i++) {
            std::copy_n(vx_user_list_user_id(raw, i), VX_USER_ID_LEN, out[i].user_id.begin());
            out[i].permissions = vx_user_list_permissions(raw, i);
        }
        return out;
    }

    /// Re-wraps the data key under `new_root`; `old_root` stops working.
    void rotate_key(const Key &old_root, const Key &new_root) {
        detail::check(vx_index_rotate_key(h_.get(), old_root.data(), new_root.data()));
    }

    vx_index *get() const noexcept { return h_.get(); }
    vx_index *release() noexcept { return h_.release(); }

private:
    detail::Handle<vx_index, vx_index_free> h_;
};

/// Options of Client (threads 0 = one per core; cache_bytes 0 disables the cache).
struct ClientOptions {
    uint32_t threads = 0;
    std::optional<uint64_t> cache_bytes;
};

/// A backing store: "memory:", "file:/dir" or a plain directory path.
class Client {
public:
    explicit Client(const std::string &uri, const ClientOptions &o = {}) {
        vx_client_options opts;
        vx_client_options_init(&opts);
        opts.threads = o.threads;
        if (o.cache_bytes) opts.cache_bytes = *o.cache_bytes;
        vx_client *raw = nullptr;
        detail::check(vx_client_open(uri.c_str(), &opts, &raw));
        h_.reset(raw);
    }

    Index create_index(const std::string &name, const Key &key, const vx_index_config *cfg = nullptr) const {
        vx_index *out = nullptr;
        detail::check(vx_index_create(h_.get(), name.c_str(), key.data(), cfg, &out));
        return Index(out);
    }

    Index create_index(const std::string &name, const Key &key, const IndexConfig &cfg) const {
        const vx_index_config c = cfg.config();
        return create_index(name, key, &c);
    }

    Index load_index(const std::string &name, const Key &key) const {
        vx_index *out = nullptr;
        detail::check(vx_index_load(h_.get(), name.c_str(), key.data(), nullptr, &out));
        return Index(out);
    }

    Index load_index(const std::string &name, const Key &key, const UserId &user) const {
        vx_index *out = nullptr;
        detail::check(vx_index_load(h_.get(), name.c_str(), key.data(), user.data(), &out));
        return Index(out);
    }

    std::vector<std::string> list_indexes() const {
        vx_string_list *out = nullptr;
        detail::check(vx_client_list_indexes(h_.get(), &out));
        return StringList(out).to_vector();
    }

    vx_client *get() const noexcept { return h_.get(); }
    vx_client *release() noexcept { return h_.release(); }

private:
    detail::Handle<vx_client, vx_client_free> h_;
};

inline std::string version() { return vx_version_string(); }

}  // namespace vx

#endif  // VX_HPP
