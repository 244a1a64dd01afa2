//! `vx_index_query` and its parameters.

use std::ffi::c_char;

use super::args::{covers, field, init_params, opt_c_str, read_params, size_before, slice, Params};
use super::boundary::{boundary, handle, out_param};
use super::index::{vx_index, Creds, VX_INCLUDE_DISTANCE};
use super::results::vx_results;
use super::vx_status;
use crate::error::Error;
use crate::index::{Fusion, MetadataQuery, QueryParams};

/// Parameters of vx_index_query. Fill with vx_query_params_init first;
/// fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct vx_query_params {
    /// sizeof(vx_query_params), set by vx_query_params_init; a size this
    /// library did not publish is refused (VX_STATUS_INVALID_ARGUMENT).
    pub struct_size: u32,
    /// Hits per query, 1 to 65536; default 100.
    pub top_k: u32,
    /// Lists probed once trained; 0 (default) = automatic: the count
    /// calibrated at training (vx_index_auto_n_probes), more for a filter on
    /// filterable fields that matches few items; n_lists gives exactly the
    /// exhaustive answer.
    pub n_probes: u32,
    /// VX_INCLUDE_* bits; default VX_INCLUDE_DISTANCE (the id always comes back).
    pub include: u32,
    /// MongoDB-style filter on metadata (NUL-terminated JSON), or NULL (default).
    pub filter_json: *const c_char,
    /// Once trained: keep probing the next-nearest lists until top_k hits are
    /// found or every list is scanned (for selective filters); default false.
    pub greedy: bool,
    /// IVF_RABITQ once trained: how many candidates per hit the codes pass on
    /// to be reranked exactly (rerank_mult * top_k), 1 to VX_MAX_RERANK_MULT;
    /// 0 (default) = automatic, as many as the codes' error bounds leave in
    /// doubt. Ignored by IVF_FLAT and before training; above
    /// VX_MAX_RERANK_MULT is VX_STATUS_INVALID_ARGUMENT. Since 0.6.0: a
    /// struct_size of 0.5 is accepted and reads it as 0 (on 64-bit targets
    /// 0.5's size already covered it, as padding: vx_query_params_init
    /// zeroes it).
    pub rerank_mult: u32,
    /// Hybrid search: NUL-terminated UTF-8 text matched with BM25 against the
    /// index's text fields (vx_index_config.text_fields_json), or NULL
    /// (default: vector search only). Each query's vector ranking (its
    /// vector_depth nearest) and the text ranking (the text_depth best
    /// BM25 matches; both pass the filter) are fused by weighted
    /// reciprocal rank: alpha / (rrf_k + vector rank) + (1 - alpha) /
    /// (rrf_k + text rank), ranks from 1, a ranking an item is missing from
    /// adding nothing; hits come by fused score (vx_results_score), highest
    /// first, each with its exact distance. The same text serves every
    /// query of a batch. Text on an index without text fields is
    /// VX_STATUS_INVALID_ARGUMENT. Since 0.8.0: a struct_size of 0.7 or
    /// older (which end before this field) is accepted and reads it and the
    /// fields after it as their defaults.
    pub text: *const c_char,
    /// Weight of the vector ranking in the fusion, 0 to 1 (the text's is 1 -
    /// alpha); default 0.5. Since 0.8.0.
    pub alpha: f32,
    /// Rank damping of the fusion; 0 (default) = 60. Since 0.8.0.
    pub rrf_k: u32,
    /// Items the vector ranking contributes to the fusion, up to 65536; 0
    /// (default) = max(2 * top_k, 50). Since 0.8.0.
    pub vector_depth: u32,
    /// Items the text ranking contributes, up to 65536; 0 (default) =
    /// max(2 * top_k, 50). Since 0.8.0.
    pub text_depth: u32,
}

/// Most candidates per hit vx_query_params.rerank_mult may ask for. Since 0.6.0.
pub const VX_MAX_RERANK_MULT: u32 = 4096;

impl Default for vx_query_params {
    fn default() -> Self {
        vx_query_params {
            struct_size: std::mem::size_of::<vx_query_params>() as u32,
            top_k: 100,
            n_probes: 0,
            include: VX_INCLUDE_DISTANCE,
            filter_json: std::ptr::null(),
            greedy: false,
            rerank_mult: 0,
            text: std::ptr::null(),
            alpha: crate::index::DEFAULT_ALPHA,
            rrf_k: 0,
            vector_depth: 0,
            text_depth: 0,
        }
    }
}

/// sizeof(vx_query_params) in 0.1 to 0.5: up to greedy, padded (the same
/// as 0.6's on 64-bit targets, where rerank_mult took that padding).
pub(crate) const VX_QUERY_PARAMS_SIZE_0_5: usize =
    size_before(std::mem::offset_of!(vx_query_params, rerank_mult), std::mem::align_of::<vx_query_params>());

/// sizeof(vx_query_params) in 0.6 and 0.7: up to rerank_mult, padded.
pub(crate) const VX_QUERY_PARAMS_SIZE_0_7: usize =
    size_before(std::mem::offset_of!(vx_query_params, text), std::mem::align_of::<vx_query_params>());

impl Params for vx_query_params {
    const NAME: &'static str = "vx_query_params";
    const OLDER_SIZES: &'static [(usize, &'static str)] =
        &[(VX_QUERY_PARAMS_SIZE_0_5, "0.5"), (VX_QUERY_PARAMS_SIZE_0_7, "0.7")];
    unsafe fn read_fields(p: *const Self, size: usize) -> Self {
        let defaults = Self::default();
        vx_query_params {
            struct_size: field!(p.struct_size),
            top_k: field!(p.top_k),
            n_probes: field!(p.n_probes),
            include: field!(p.include),
            filter_json: field!(p.filter_json),
            // C may store any nonzero byte for true.
            greedy: std::ptr::addr_of!((*p).greedy).cast::<u8>().read() != 0,
            rerank_mult: if covers!(size, Self, rerank_mult) { field!(p.rerank_mult) } else { defaults.rerank_mult },
            text: if covers!(size, Self, text) { field!(p.text) } else { defaults.text },
            alpha: if covers!(size, Self, alpha) { field!(p.alpha) } else { defaults.alpha },
            rrf_k: if covers!(size, Self, rrf_k) { field!(p.rrf_k) } else { defaults.rrf_k },
            vector_depth: if covers!(size, Self, vector_depth) {
                field!(p.vector_depth)
            } else {
                defaults.vector_depth
            },
            text_depth: if covers!(size, Self, text_depth) { field!(p.text_depth) } else { defaults.text_depth },
        }
    }
}

/// Fills `p` with defaults (and struct_size). NULL is ignored. Writes this
/// version's sizeof(vx_query_params): compile against the header of the
/// library you run with.
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_query_params_init(p: *mut vx_query_params) {
    init_params(p)
}

/// Finds each query's nearest items: exact encrypted exhaustive search until
/// the index is trained, then an encrypted IVF search of the n_probes lists
/// nearest each query. A filter is applied before ranking, so each query
/// gets top_k hits whenever that many matching items are in the scanned
/// lists (all of them when untrained; see `greedy` once trained).
///
/// @param queries      nq * dim floats, row-major, all finite.
/// @param dim          must equal the index's dimension.
/// @param params       NULL for defaults, else initialised by vx_query_params_init.
/// @param key, user_id per-call credentials (NULL = the handle's key); need read.
/// @param out_results  receives the hits (free with vx_results_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT (top_k, include bits, rerank_mult,
///         non-finite value, nq*dim overflow, text without text fields, alpha or a
///         depth out of range, a struct_size vx never published),
///         DIMENSION_MISMATCH, INVALID_UTF8, INVALID_FILTER, NOT_FOUND, WRONG_KEY,
///         PERMISSION_DENIED, POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle; queries
/// run in parallel with each other and see whole writes only. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_query(
    index: *const vx_index,
    queries: *const f32,
    nq: usize,
    dim: usize,
    params: *const vx_query_params,
    key: *const u8,
    user_id: *const u8,
    out_results: *mut *mut vx_results,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_results, "out_results")?;
        let ix = handle(index)?;
        let p = read_params(params)?;
        let total = nq.checked_mul(dim).ok_or_else(|| Error::invalid(format!("nq * dim overflows ({nq} * {dim})")))?;
        if nq > 0 && dim == 0 {
            return Err(Error::invalid("dim is 0"));
        }
        let queries = slice(queries, total, "queries")?;
        let params = QueryParams {
            top_k: p.top_k as usize,
            n_probes: p.n_probes,
            filter: opt_c_str(p.filter_json, "filter_json")?,
            include: p.include,
            greedy: p.greedy,
            rerank_mult: p.rerank_mult,
            text: opt_c_str(p.text, "text")?,
            fusion: Fusion { alpha: p.alpha, rrf_k: p.rrf_k, vector_depth: p.vector_depth, text_depth: p.text_depth },
        };
        let hits = ix.inner.query(queries, nq, dim, &params, Creds::read(key, user_id).access())?;
        *out = vx_results::boxed(hits);
        Ok(())
    })
}

/// Lists the items a filter matches, ordered by one metadata field, a page
/// at a time, without a query vector: "tenant X's documents by date"; with
/// `text`, a keyword search. Works trained or not, on every index type. The
/// results hold one query (vx_results_num_queries = 1) whose hits have NaN
/// distances.
///
/// @param filter_json  MongoDB-style filter (as in vx_query_params), or NULL for every item.
/// @param text         NULL, or keyword search: only the matches holding a term of this
///                     UTF-8 text in the index's text fields, ordered by BM25 score
///                     (vx_results_score), highest first, unless order_by is given. Text
///                     on an index without text fields is INVALID_ARGUMENT; text without
///                     a searchable term (only stop words) matches nothing. Since 0.8.0.
/// @param top_k        hits at most; 0 = every match from `offset`.
/// @param order_by     dot-path of a metadata field ("date", "doc.year"), or NULL to order
///                     by id. Values order by type (missing and null, numbers, strings,
///                     objects and arrays, booleans), then by value; an array field by its
///                     smallest element ascending, its largest descending. Ties by id, ascending.
/// @param ascending    the order's direction (without order_by: of the ids).
/// @param offset       matches skipped first (page n of size s: offset n * s, top_k s).
/// @param include      VX_INCLUDE_METADATA | VX_INCLUDE_CONTENTS | VX_INCLUDE_VECTOR;
///                     VX_INCLUDE_DISTANCE is INVALID_ARGUMENT (there are no distances).
/// @param key, user_id per-call credentials (NULL = the handle's key); need read.
/// @param out_results  receives the hits (free with vx_results_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT (include bits, order_by path,
///         text without text fields), INVALID_UTF8, INVALID_FILTER, NOT_FOUND, WRONG_KEY,
///         PERMISSION_DENIED, POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle; sees whole
/// writes only. Since 0.7.0; `text` since 0.8.0.
#[must_use]
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature ABI.md names
pub unsafe extern "C" fn vx_index_query_metadata(
    index: *const vx_index,
    filter_json: *const c_char,
    text: *const c_char,
    top_k: usize,
    order_by: *const c_char,
    ascending: bool,
    offset: usize,
    include: u32,
    key: *const u8,
    user_id: *const u8,
    out_results: *mut *mut vx_results,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_results, "out_results")?;
        let ix = handle(index)?;
        let q = MetadataQuery {
            filter: opt_c_str(filter_json, "filter_json")?,
            top_k,
            order_by: opt_c_str(order_by, "order_by")?,
            ascending,
            offset,
            include,
            text: opt_c_str(text, "text")?,
        };
        let hits = ix.inner.query_metadata(&q, Creds::read(key, user_id).access())?;
        *out = vx_results::boxed(vec![hits]);
        Ok(())
    })
}
