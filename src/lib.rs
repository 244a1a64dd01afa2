//! vx: an embeddable encrypted vector index.
//!
//! Everything vx writes to its backing store is sealed with AES-256-GCM under
//! keys wrapped by a 32-byte index key; the store sees only opaque tokens and
//! ciphertext. This crate is both the Rust API (below) and, in `ffi`, the C
//! ABI that `include/vx.h` declares.
//!
//! ```
//! use vx::{Access, Client, ClientOptions, IndexConfig, ItemRef, QueryParams, SecretKey};
//! let client = Client::open("memory:", ClientOptions::default()).unwrap();
//! let key = SecretKey::from_bytes(&[7u8; 32]);
//! let index = client.create_index("docs", &key, IndexConfig::default()).unwrap();
//! let items = [ItemRef { id: "a", vector: &[1.0, 0.0], metadata: Some(r#"{"lang":"en"}"#), contents: None }];
//! index.upsert(&items, Access::default()).unwrap();
//! let params = QueryParams { top_k: 1, filter: Some(r#"{"lang":"en"}"#), ..Default::default() };
//! let hits = index.query(&[0.9, 0.1], 1, 2, &params, Access::default()).unwrap();
//! assert_eq!(hits[0][0].id, "a");
//! ```

/// Every allocation vx makes comes from mimalloc, not the C library's
/// malloc: a query over an index larger than its cache allocates and frees
/// a few buffers per object it reads, and glibc's malloc spent ~20% of such
/// a query in its free lists (`_int_malloc`, `_int_free`, consolidation);
/// with mimalloc the same queries ran 1.1-1.5x faster (docs/BENCHMARKS.md).
/// Only vx's own allocations change: what it returns through the C ABI is
/// freed by its own `vx_*_free` functions, never by the caller's `free`.
/// (Miri, which runs the FFI's unsafe code, cannot run mimalloc's C: it
/// keeps the standard allocator.)
#[cfg(all(feature = "mimalloc", not(miri)))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cache;
mod client;
mod codec;
mod crypto;
mod distance;
mod error;
pub mod ffi;
mod filter;
mod index;
mod kmeans;
mod parallel;
mod rabitq;
mod store;
mod text;

pub use client::{Client, ClientOptions, DEFAULT_CACHE_BYTES};
pub use crypto::{SecretKey, KEY_LEN, USER_ID_LEN};
pub use distance::Metric;
pub use error::{Error, Result, Status};
pub use index::{
    include, opened_bytes, Access, Epoch, Fusion, Hit, Index, IndexConfig, IndexType, Item, ItemRef, MetadataQuery,
    Precision, QueryParams, TrainParams, TrainReport, TrainingState, UserEntry, DEFAULT_ALPHA, DEFAULT_QUANTIZER_BITS,
    DEFAULT_RRF_K, EPOCH_LEN, MAX_CONTENTS_BYTES, MAX_FIELD_PATH_BYTES, MAX_FILTERABLE_FIELDS, MAX_ID_BYTES,
    MAX_METADATA_BYTES, MAX_QUANTIZER_BITS, MAX_RERANK_MULT, PERMISSION_READ, PERMISSION_WRITE,
};
#[cfg(feature = "test-hooks")]
pub use store::{MemoryStore, Op, Store, ValuePart, WriteBatch};
pub use text::{tokenize, Bm25, DEFAULT_BM25_B, DEFAULT_BM25_K1, MAX_BM25_K1};

#[cfg(all(test, feature = "mimalloc", not(miri)))]
mod tests {
    #[test]
    fn allocations_come_from_mimalloc() {
        // In the static library the `mimalloc` crate links (not exported by
        // its Rust API without its `extended` feature).
        extern "C" {
            fn mi_is_in_heap_region(p: *const std::ffi::c_void) -> bool;
        }
        let small = Box::new([1u8; 100]);
        let large = vec![1u8; 4 << 20];
        // SAFETY: a query of mimalloc's own address ranges; reads nothing.
        assert!(unsafe { mi_is_in_heap_region(small.as_ptr().cast()) && mi_is_in_heap_region(large.as_ptr().cast()) });
        let theirs = unsafe { libc::malloc(100) };
        assert!(!theirs.is_null());
        // SAFETY: as above; then freed by the allocator that made it.
        assert!(!unsafe { mi_is_in_heap_region(theirs) }, "the C library's malloc is not mimalloc's");
        unsafe { libc::free(theirs) };
    }
}
