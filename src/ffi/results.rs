//! Library-owned result objects: string lists, items, query results. Their
//! pointers stay valid until the object is freed; decrypted contents are
//! wiped when it is.

use std::ffi::c_char;

use zeroize::Zeroizing;

use super::boundary::{free_box, guard, into_c};
use crate::index::{Hit, Item};

/// A NUL-terminated copy of a string, wiped on drop.
pub(crate) struct CText(Zeroizing<Vec<u8>>);

impl CText {
    pub(crate) fn new(s: &str) -> CText {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend(s.bytes().map(|b| if b == 0 { b' ' } else { b }));
        v.push(0);
        CText(Zeroizing::new(v))
    }
    pub(crate) fn ptr(&self) -> *const c_char {
        self.0.as_ptr() as *const c_char
    }
}

/// A list of strings (index names, ids). Opaque; free with vx_string_list_free.
pub struct vx_string_list {
    items: Vec<CText>,
}

impl vx_string_list {
    pub(crate) fn boxed(items: Vec<String>) -> *mut vx_string_list {
        into_c(vx_string_list { items: items.iter().map(|s| CText::new(s)).collect() })
    }
}

/// Number of strings; 0 for NULL.
///
/// Thread safety: safe from any thread while the list lives. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_string_list_len(list: *const vx_string_list) -> usize {
    guard(|| list.as_ref().map_or(0, |l| l.items.len()))
}

/// The i-th string, valid until the list is freed; NULL if out of range.
///
/// Thread safety: safe from any thread while the list lives. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_string_list_get(list: *const vx_string_list, i: usize) -> *const c_char {
    guard(|| list.as_ref().and_then(|l| l.items.get(i)).map_or(std::ptr::null(), CText::ptr))
}

/// Frees the list; NULL is a no-op.
///
/// Thread safety: must not race other calls on the same list. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_string_list_free(list: *mut vx_string_list) {
    free_box(list)
}

struct ItemRow {
    id: CText,
    found: bool,
    vector: Option<Vec<f32>>,
    metadata: Option<CText>,
    contents: Option<Zeroizing<Vec<u8>>>,
}

/// The answer of vx_index_get: one row per requested id, in order. Opaque;
/// free with vx_items_free.
pub struct vx_items {
    rows: Vec<ItemRow>,
}

impl vx_items {
    pub(crate) fn boxed(ids: &[&str], items: Vec<Option<Item>>) -> *mut vx_items {
        let rows = ids
            .iter()
            .zip(items)
            .map(|(id, item)| match item {
                None => ItemRow { id: CText::new(id), found: false, vector: None, metadata: None, contents: None },
                Some(mut it) => ItemRow {
                    id: CText::new(id),
                    found: true,
                    vector: it.vector.take(),
                    metadata: it.metadata.as_deref().map(CText::new),
                    contents: it.contents.take().map(Zeroizing::new),
                },
            })
            .collect();
        into_c(vx_items { rows })
    }
}

impl Drop for ItemRow {
    fn drop(&mut self) {
        if let Some(v) = self.vector.as_mut() {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

/// Lends C an array the object owns: its pointer (never NULL when present,
/// even if empty) and its length through `out_len`, which may be NULL;
/// NULL and 0 when absent.
unsafe fn lend<T>(data: Option<&[T]>, out_len: *mut usize) -> *const T {
    if let Some(len) = out_len.as_mut() {
        *len = data.map_or(0, <[T]>::len);
    }
    data.map_or(std::ptr::null(), <[T]>::as_ptr)
}

unsafe fn item_row<'a>(items: *const vx_items, i: usize) -> Option<&'a ItemRow> {
    items.as_ref()?.rows.get(i)
}

/// Number of rows (= ids asked for); 0 for NULL.
///
/// Thread safety: safe from any thread while the items live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_items_len(items: *const vx_items) -> usize {
    guard(|| items.as_ref().map_or(0, |x| x.rows.len()))
}

/// Whether the i-th id was found (false if out of range).
///
/// Thread safety: safe from any thread while the items live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_items_found(items: *const vx_items, i: usize) -> bool {
    guard(|| item_row(items, i).is_some_and(|r| r.found))
}

/// The i-th id asked for; NULL if out of range.
///
/// Thread safety: safe from any thread while the items live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_items_id(items: *const vx_items, i: usize) -> *const c_char {
    guard(|| item_row(items, i).map_or(std::ptr::null(), |r| r.id.ptr()))
}

/// The i-th item's vector (`*out_dim` floats) if found and asked for
/// (VX_INCLUDE_VECTOR); else NULL and `*out_dim` = 0. `out_dim` may be NULL.
///
/// Thread safety: safe from any thread while the items live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_items_vector(items: *const vx_items, i: usize, out_dim: *mut usize) -> *const f32 {
    guard(|| lend(item_row(items, i).and_then(|r| r.vector.as_deref()), out_dim))
}

/// The i-th item's metadata JSON if it has some and it was asked for
/// (VX_INCLUDE_METADATA); else NULL.
///
/// Thread safety: safe from any thread while the items live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_items_metadata(items: *const vx_items, i: usize) -> *const c_char {
    guard(|| item_row(items, i).and_then(|r| r.metadata.as_ref()).map_or(std::ptr::null(), CText::ptr))
}

/// The i-th item's contents (`*out_len` bytes) if it has some and they were
/// asked for (VX_INCLUDE_CONTENTS); else NULL and `*out_len` = 0. Empty
/// contents give a non-NULL pointer and length 0. `out_len` may be NULL.
///
/// Thread safety: safe from any thread while the items live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_items_contents(items: *const vx_items, i: usize, out_len: *mut usize) -> *const u8 {
    guard(|| lend(item_row(items, i).and_then(|r| r.contents.as_ref().map(|c| c.as_slice())), out_len))
}

/// Frees the items, wiping decrypted data; NULL is a no-op.
///
/// Thread safety: must not race other calls on the same items. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_items_free(items: *mut vx_items) {
    free_box(items)
}

struct ResultRow {
    id: CText,
    distance: f32,
    score: f32,
    metadata: Option<CText>,
    contents: Option<Zeroizing<Vec<u8>>>,
    vector: Option<Zeroizing<Vec<f32>>>,
}

/// The answer of vx_index_query: per query, hits by ascending distance.
/// Opaque; free with vx_results_free.
pub struct vx_results {
    queries: Vec<Vec<ResultRow>>,
}

impl vx_results {
    pub(crate) fn boxed(hits: Vec<Vec<Hit>>) -> *mut vx_results {
        let queries = hits
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|mut h| ResultRow {
                        id: CText::new(&h.id),
                        distance: h.distance,
                        score: h.score,
                        metadata: h.metadata.as_deref().map(CText::new),
                        contents: h.contents.take().map(Zeroizing::new),
                        vector: h.vector.take().map(Zeroizing::new),
                    })
                    .collect()
            })
            .collect();
        into_c(vx_results { queries })
    }
}

unsafe fn result_row<'a>(r: *const vx_results, query: usize, rank: usize) -> Option<&'a ResultRow> {
    r.as_ref()?.queries.get(query)?.get(rank)
}

/// Number of queries answered; 0 for NULL.
///
/// Thread safety: safe from any thread while the results live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_num_queries(r: *const vx_results) -> usize {
    guard(|| r.as_ref().map_or(0, |r| r.queries.len()))
}

/// Number of hits of one query (at most top_k); 0 if out of range.
///
/// Thread safety: safe from any thread while the results live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_len(r: *const vx_results, query: usize) -> usize {
    guard(|| r.as_ref().and_then(|r| r.queries.get(query)).map_or(0, Vec::len))
}

/// The id of a hit; NULL if out of range.
///
/// Thread safety: safe from any thread while the results live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_id(r: *const vx_results, query: usize, rank: usize) -> *const c_char {
    guard(|| result_row(r, query, rank).map_or(std::ptr::null(), |x| x.id.ptr()))
}

/// The distance of a hit (smaller is closer: Euclidean, squared Euclidean,
/// 1 - cosine, or -dot for inner product); NaN if out of range.
///
/// Thread safety: safe from any thread while the results live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_distance(r: *const vx_results, query: usize, rank: usize) -> f32 {
    guard(|| result_row(r, query, rank).map_or(f32::NAN, |x| x.distance))
}

/// The score of a hit, higher is better: its BM25 score in a keyword search
/// (vx_index_query_metadata with text), its fused score in a hybrid search
/// (vx_query_params.text); NaN otherwise or if out of range.
///
/// Thread safety: safe from any thread while the results live. Since 0.8.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_score(r: *const vx_results, query: usize, rank: usize) -> f32 {
    guard(|| result_row(r, query, rank).map_or(f32::NAN, |x| x.score))
}

/// The metadata JSON of a hit if it has some and VX_INCLUDE_METADATA was
/// asked; else NULL.
///
/// Thread safety: safe from any thread while the results live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_metadata(r: *const vx_results, query: usize, rank: usize) -> *const c_char {
    guard(|| result_row(r, query, rank).and_then(|x| x.metadata.as_ref()).map_or(std::ptr::null(), CText::ptr))
}

/// The contents of a hit (`*out_len` bytes) if it has some and
/// VX_INCLUDE_CONTENTS was asked; else NULL, `*out_len` = 0. `out_len` may be NULL.
///
/// Thread safety: safe from any thread while the results live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_contents(
    r: *const vx_results,
    query: usize,
    rank: usize,
    out_len: *mut usize,
) -> *const u8 {
    guard(|| lend(result_row(r, query, rank).and_then(|x| x.contents.as_ref().map(|c| c.as_slice())), out_len))
}

/// The vector of a hit (`*out_dim` floats) if VX_INCLUDE_VECTOR was asked;
/// else NULL, `*out_dim` = 0. `out_dim` may be NULL.
///
/// Thread safety: safe from any thread while the results live. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_vector(
    r: *const vx_results,
    query: usize,
    rank: usize,
    out_dim: *mut usize,
) -> *const f32 {
    guard(|| lend(result_row(r, query, rank).and_then(|x| x.vector.as_ref().map(|v| v.as_slice())), out_dim))
}

/// Frees the results, wiping decrypted data; NULL is a no-op.
///
/// Thread safety: must not race other calls on the same results. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_results_free(r: *mut vx_results) {
    free_box(r)
}
