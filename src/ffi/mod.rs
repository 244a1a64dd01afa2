//! The C ABI. This module tree is the only place with `extern "C"` and raw
//! pointers. Every exported function runs its body through
//! `boundary::boundary`, which clears the thread's last error, catches
//! panics and turns `Error`s into status codes and one-line messages; the
//! calls that must leave the last error alone (reading it, accessors of
//! result objects, `_init`, `_free`) run through its panic guard only. The three
//! functions that return constants (`vx_status_str`, `vx_version_*`) have
//! nothing that could fail or panic.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // each function documents its contract for C callers

mod args;
mod boundary;
mod client;
mod index;
mod keys;
mod query;
mod results;
mod status;
mod train;

use std::ffi::c_char;

use boundary::{guard, with_last_error};

pub use client::*;
pub use index::*;
pub use keys::*;
pub use query::*;
pub use results::*;
pub use status::*;
pub use train::*;

/// A status code as it crosses the boundary. The header's `vx_status` is the
/// typedef cbindgen emits for [`Status`]; in Rust it stays an `i32`, since C
/// may pass any number back and a Rust enum may only hold its variants.
pub type vx_status = i32;

/// Length of every key: the index (root) key and user keys.
pub const VX_KEY_LEN: usize = 32;
/// Length of a user id.
pub const VX_USER_ID_LEN: usize = 16;
/// Length of an epoch (vx_index_epoch, vx_index_require_epoch).
pub const VX_EPOCH_LEN: usize = 40;

/// Major version of this library.
pub const VX_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const VX_VERSION_MINOR: u32 = 13;
/// Patch version of this library.
pub const VX_VERSION_PATCH: u32 = 3;
/// MAJOR * 1000000 + MINOR * 1000 + PATCH; compare with vx_version_number().
pub const VX_VERSION_NUMBER: u32 = 13003;
/// ABI version: the SONAME is libvx.so.<VX_ABI_VERSION>.
pub const VX_ABI_VERSION: u32 = 0;

/// Returns a static, NUL-terminated description of any status code
/// (unknown codes included). Never NULL.
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[no_mangle]
pub extern "C" fn vx_status_str(code: vx_status) -> *const c_char {
    match Status::from_code(code) {
        Some(s) => s.description().as_ptr(),
        None => c"unknown status code".as_ptr(),
    }
}

/// Copies the calling thread's last error message (one line, empty if the
/// last call succeeded) into `buf` with snprintf semantics: at most
/// `buf_len - 1` bytes and a NUL. `*out_len` (if not NULL) receives the full
/// length without the NUL; `buf = NULL, buf_len = 0` only asks the length.
/// Unlike every other function, this one does not clear the message.
///
/// @return VX_STATUS_OK; VX_STATUS_BUFFER_TOO_SMALL if the message was
///         truncated; VX_STATUS_NULL_ARGUMENT if buf is NULL and buf_len > 0.
///
/// Thread safety: reads only the calling thread's message. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_last_error_message(buf: *mut c_char, buf_len: usize, out_len: *mut usize) -> vx_status {
    guard(|| {
        with_last_error(|msg| {
            if let Some(len) = out_len.as_mut() {
                *len = msg.len();
            }
            if buf_len == 0 {
                return VX_STATUS_OK; // a length query
            }
            if buf.is_null() {
                return VX_STATUS_NULL_ARGUMENT;
            }
            let mut n = msg.len().min(buf_len - 1);
            while !msg.is_char_boundary(n) {
                n -= 1;
            }
            std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
            if n < msg.len() {
                VX_STATUS_BUFFER_TOO_SMALL
            } else {
                VX_STATUS_OK
            }
        })
    })
}

/// The library's version as "MAJOR.MINOR.PATCH" (static, never NULL).
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[no_mangle]
pub extern "C" fn vx_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The library's version as MAJOR * 1000000 + MINOR * 1000 + PATCH; equals
/// VX_VERSION_NUMBER when the header matches the library.
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[no_mangle]
pub extern "C" fn vx_version_number() -> u32 {
    VX_VERSION_NUMBER
}

/// Test hook (only in builds with the `test-hooks` feature, never in release
/// artefacts): panics inside the boundary. With a non-NULL `index`, panics
/// inside a call that changes that index, which poisons the handle.
///
/// @return VX_STATUS_PANIC.
///
/// Thread safety: as the index's mutating calls. Since 0.1.0.
#[cfg(feature = "test-hooks")]
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_debug_panic(index: *const vx_index) -> vx_status {
    boundary::boundary(|| {
        if !index.is_null() {
            let _ix = boundary::handle(index)?.writing();
            panic!("vx_debug_panic on an index");
        }
        panic!("vx_debug_panic")
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::crypto::{KEY_LEN, USER_ID_LEN};

    #[test]
    fn literal_constants_match_the_library() {
        assert_eq!(VX_KEY_LEN, KEY_LEN);
        assert_eq!(VX_USER_ID_LEN, USER_ID_LEN);
        assert_eq!(VX_EPOCH_LEN, crate::EPOCH_LEN);
        use crate::index::include;
        assert_eq!(
            (VX_INCLUDE_DISTANCE, VX_INCLUDE_METADATA, VX_INCLUDE_CONTENTS, VX_INCLUDE_VECTOR),
            (include::DISTANCE, include::METADATA, include::CONTENTS, include::VECTOR)
        );
        use crate::distance::Metric;
        for (c, m) in [
            (VX_METRIC_EUCLIDEAN, Metric::Euclidean),
            (VX_METRIC_SQUARED_EUCLIDEAN, Metric::SquaredEuclidean),
            (VX_METRIC_COSINE, Metric::Cosine),
            (VX_METRIC_INNER_PRODUCT, Metric::InnerProduct),
        ] {
            assert_eq!(Metric::from_u32(c).unwrap(), m);
        }
    }

    #[test]
    fn version_constants_match_cargo() {
        let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
        let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
        let patch: u32 = env!("CARGO_PKG_VERSION_PATCH").parse().unwrap();
        assert_eq!((VX_VERSION_MAJOR, VX_VERSION_MINOR, VX_VERSION_PATCH), (major, minor, patch));
        assert_eq!(VX_VERSION_NUMBER, major * 1_000_000 + minor * 1000 + patch);
        assert_eq!(VX_ABI_VERSION, major);
    }

    #[test]
    fn last_error_is_cleared_on_entry_and_truncates() {
        let st: vx_status = boundary::boundary(|| Err(crate::error::Error::invalid("abcdef")));
        assert_eq!(st, VX_STATUS_INVALID_ARGUMENT);
        let mut buf = [0 as c_char; 4];
        let mut len = 0usize;
        let st = unsafe { vx_last_error_message(buf.as_mut_ptr(), 4, &mut len) };
        assert_eq!((st, len), (VX_STATUS_BUFFER_TOO_SMALL, 6));
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap(), "abc");
        // Reading the message left it in place.
        unsafe { vx_last_error_message(std::ptr::null_mut(), 0, &mut len) };
        assert_eq!(len, 6);
        assert_eq!(boundary::boundary::<vx_status>(|| Ok(())), VX_STATUS_OK);
        unsafe { vx_last_error_message(std::ptr::null_mut(), 0, &mut len) };
        assert_eq!(len, 0);
        assert_eq!(boundary::boundary::<vx_status>(|| panic!("boom")), VX_STATUS_PANIC);
        unsafe { vx_last_error_message(std::ptr::null_mut(), 0, &mut len) };
        assert!(len > 0);
    }

    #[test]
    fn value_returns_fall_back_and_explain() {
        let n: u32 = boundary::boundary(|| Err(crate::error::Error::Poisoned));
        assert_eq!(n, 0);
        let mut len = 0usize;
        unsafe { vx_last_error_message(std::ptr::null_mut(), 0, &mut len) };
        assert!(len > 0);
        assert!(boundary::boundary::<f32>(|| panic!("boom")).is_nan());
        assert!(boundary::boundary::<*const c_char>(|| panic!("boom")).is_null());
    }

    #[test]
    fn out_params_are_reset_first_and_free_takes_null() {
        let mut out: *mut vx_results = std::ptr::dangling_mut();
        let st = unsafe {
            vx_index_query(
                std::ptr::null(),
                std::ptr::null(),
                0,
                0,
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                &mut out,
            )
        };
        assert_eq!((st, out), (VX_STATUS_NULL_ARGUMENT, std::ptr::null_mut()));
        unsafe {
            vx_results_free(std::ptr::null_mut());
            vx_index_free(std::ptr::null_mut());
            vx_client_free(std::ptr::null_mut());
        }
    }

    /// A parameter struct as C lays it out: bytes, some of which no Rust
    /// value of the struct could hold.
    #[repr(C, align(8))]
    struct Raw<const N: usize>([u8; N]);

    impl<const N: usize> Raw<N> {
        fn with_size(size: u32) -> Self {
            let mut raw = Raw([0u8; N]);
            raw.0[..4].copy_from_slice(&size.to_ne_bytes());
            raw
        }
    }

    const QUERY_SIZE: usize = std::mem::size_of::<vx_query_params>();

    #[test]
    fn params_of_an_unpublished_size_are_refused() {
        use args::read_params;
        // 12 ends inside vx_client_options.cache_bytes (bytes 8..16).
        let raw = Raw::<16>::with_size(12);
        let e = unsafe { read_params(raw.0.as_ptr() as *const vx_client_options) }.err().unwrap();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(e.to_string().contains("vx_client_options.struct_size is 12, expected 16"), "{e}");
        for size in [0, 4, QUERY_SIZE as u32 - 1, QUERY_SIZE as u32 + 8] {
            let raw = Raw::<QUERY_SIZE>::with_size(size);
            assert!(unsafe { read_params(raw.0.as_ptr() as *const vx_query_params) }.is_err(), "size {size}");
        }
        let raw = Raw::<{ std::mem::size_of::<vx_train_params>() }>::with_size(8);
        assert!(unsafe { read_params(raw.0.as_ptr() as *const vx_train_params) }.is_err());
        for size in [8, CONFIG_SIZE as u32 - 1, CONFIG_SIZE as u32 + 4] {
            let raw = Raw::<{ CONFIG_SIZE + 8 }>::with_size(size);
            let e = unsafe { read_params(raw.0.as_ptr() as *const vx_index_config) }.err().unwrap();
            assert_eq!(e.status(), Status::InvalidArgument);
            // One line naming the size given and every size accepted.
            let want = format!(
                "vx_index_config.struct_size is {size}, expected {CONFIG_SIZE} or {} (0.5's) or {} (0.6's) \
                 or {} (0.7's): fill it with vx_index_config_init first",
                index::VX_INDEX_CONFIG_SIZE_0_5,
                index::VX_INDEX_CONFIG_SIZE_0_6,
                index::VX_INDEX_CONFIG_SIZE_0_7
            );
            assert_eq!(e.to_string(), want);
        }
    }

    /// The structs as 0.5's header declared them, to check the sizes vx
    /// derives for 0.5 against what a C compiler gave 0.5's callers.
    #[repr(C)]
    #[allow(dead_code)]
    struct IndexConfig05 {
        struct_size: u32,
        dimension: u32,
        metric: u32,
        index_type: u32,
        storage_precision: u32,
    }
    #[repr(C)]
    #[allow(dead_code)]
    struct QueryParams05 {
        struct_size: u32,
        top_k: u32,
        n_probes: u32,
        include: u32,
        filter_json: *const c_char,
        greedy: bool,
    }

    /// And 0.6's.
    #[repr(C)]
    #[allow(dead_code)]
    struct IndexConfig06 {
        base: IndexConfig05,
        quantizer_bits: u32,
    }

    /// And 0.7's.
    #[repr(C)]
    #[allow(dead_code)]
    struct IndexConfig07 {
        base: IndexConfig06,
        filterable_fields_json: *const c_char,
    }
    /// Written out rather than as `base: QueryParams05`: 0.7's `rerank_mult`
    /// sits in 0.5's tail padding, where a nested struct would not put it.
    #[repr(C)]
    #[allow(dead_code)]
    struct QueryParams07 {
        struct_size: u32,
        top_k: u32,
        n_probes: u32,
        include: u32,
        filter_json: *const c_char,
        greedy: bool,
        rerank_mult: u32,
    }

    const CONFIG_SIZE: usize = std::mem::size_of::<vx_index_config>();

    #[test]
    fn sizes_of_0_5_are_what_its_header_gave() {
        assert_eq!(index::VX_INDEX_CONFIG_SIZE_0_5, std::mem::size_of::<IndexConfig05>());
        assert_eq!(query::VX_QUERY_PARAMS_SIZE_0_5, std::mem::size_of::<QueryParams05>());
        // The config grew; the query params grew only where pointers are 32-bit
        // (on 64-bit targets rerank_mult took 0.5's tail padding).
        assert_eq!(index::VX_INDEX_CONFIG_SIZE_0_6, std::mem::size_of::<IndexConfig06>());
        assert_eq!(std::mem::offset_of!(vx_index_config, quantizer_bits), std::mem::size_of::<IndexConfig05>());
        assert_eq!(
            std::mem::offset_of!(vx_index_config, filterable_fields_json),
            std::mem::size_of::<IndexConfig06>().next_multiple_of(std::mem::align_of::<*const c_char>())
        );
        assert_eq!(index::VX_INDEX_CONFIG_SIZE_0_7, std::mem::size_of::<IndexConfig07>());
        assert_eq!(std::mem::offset_of!(vx_index_config, text_fields_json), std::mem::size_of::<IndexConfig07>());
        let align = std::mem::align_of::<vx_index_config>();
        assert_eq!(CONFIG_SIZE, (std::mem::offset_of!(vx_index_config, bm25_b) + 4).next_multiple_of(align));
        // 0.8 appended the text fields to both structs.
        assert_eq!(query::VX_QUERY_PARAMS_SIZE_0_7, std::mem::size_of::<QueryParams07>());
        assert_eq!(std::mem::offset_of!(vx_query_params, text), std::mem::size_of::<QueryParams07>());
        let align = std::mem::align_of::<vx_query_params>();
        assert_eq!(QUERY_SIZE, (std::mem::offset_of!(vx_query_params, text_depth) + 4).next_multiple_of(align));
        let tail = std::mem::offset_of!(QueryParams05, greedy) + 1;
        assert!(std::mem::offset_of!(vx_query_params, rerank_mult) >= tail);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(query::VX_QUERY_PARAMS_SIZE_0_7, std::mem::size_of::<QueryParams05>());
        #[cfg(target_pointer_width = "32")]
        assert_eq!(query::VX_QUERY_PARAMS_SIZE_0_7, std::mem::size_of::<QueryParams05>() + 4);
    }

    #[test]
    fn a_0_5_sized_config_reads_no_further_and_defaults_the_rest() {
        use args::read_params;
        // Exactly 0.5's bytes in an allocation of that size (Miri catches a
        // read past it), with the last field set.
        let mut bytes = vec![0u8; index::VX_INDEX_CONFIG_SIZE_0_5].into_boxed_slice();
        bytes[..4].copy_from_slice(&(index::VX_INDEX_CONFIG_SIZE_0_5 as u32).to_ne_bytes());
        let precision = std::mem::offset_of!(vx_index_config, storage_precision);
        bytes[precision..precision + 4].copy_from_slice(&VX_PRECISION_F16.to_ne_bytes());
        let c = unsafe { read_params(bytes.as_ptr() as *const vx_index_config) }.unwrap();
        assert_eq!((c.storage_precision, c.quantizer_bits), (VX_PRECISION_F16, 0));
        // Bytes after 0.5's end are not read even when present.
        let mut raw = Raw::<CONFIG_SIZE>::with_size(index::VX_INDEX_CONFIG_SIZE_0_5 as u32);
        let bits = std::mem::offset_of!(vx_index_config, quantizer_bits);
        raw.0[bits..bits + 4].copy_from_slice(&5u32.to_ne_bytes());
        let c = unsafe { read_params(raw.0.as_ptr() as *const vx_index_config) }.unwrap();
        assert_eq!(c.quantizer_bits, 0);
        // At 0.6's size it is read, and the filterable fields are not.
        raw.0[..4].copy_from_slice(&(index::VX_INDEX_CONFIG_SIZE_0_6 as u32).to_ne_bytes());
        let fields = std::mem::offset_of!(vx_index_config, filterable_fields_json);
        let text = c"[\"a\"]";
        raw.0[fields..fields + std::mem::size_of::<usize>()].copy_from_slice(&(text.as_ptr() as usize).to_ne_bytes());
        let c = unsafe { read_params(raw.0.as_ptr() as *const vx_index_config) }.unwrap();
        assert_eq!((c.quantizer_bits, c.filterable_fields_json), (5, std::ptr::null()));
        // At today's size both are read.
        raw.0[..4].copy_from_slice(&(CONFIG_SIZE as u32).to_ne_bytes());
        let c = unsafe { read_params(raw.0.as_ptr() as *const vx_index_config) }.unwrap();
        assert_eq!((c.quantizer_bits, c.filterable_fields_json), (5, text.as_ptr()));
    }

    #[test]
    fn a_0_5_sized_query_params_is_accepted() {
        use args::read_params;
        let mut bytes = vec![0u8; query::VX_QUERY_PARAMS_SIZE_0_5].into_boxed_slice();
        bytes[..4].copy_from_slice(&(query::VX_QUERY_PARAMS_SIZE_0_5 as u32).to_ne_bytes());
        bytes[std::mem::offset_of!(vx_query_params, top_k)] = 9;
        bytes[std::mem::offset_of!(vx_query_params, greedy)] = 1;
        let p = unsafe { read_params(bytes.as_ptr() as *const vx_query_params) }.unwrap();
        assert_eq!((p.top_k, p.greedy, p.rerank_mult), (9, true, 0));
        let mut raw = Raw::<QUERY_SIZE>::with_size(QUERY_SIZE as u32);
        let mult = std::mem::offset_of!(vx_query_params, rerank_mult);
        raw.0[mult..mult + 4].copy_from_slice(&7u32.to_ne_bytes());
        let p = unsafe { read_params(raw.0.as_ptr() as *const vx_query_params) }.unwrap();
        assert_eq!(p.rerank_mult, 7);
    }

    #[test]
    fn init_fills_the_new_fields_with_their_defaults() {
        let mut c = std::mem::MaybeUninit::<vx_index_config>::uninit();
        let mut p = std::mem::MaybeUninit::<vx_query_params>::uninit();
        let (c, p) = unsafe {
            vx_index_config_init(c.as_mut_ptr());
            vx_query_params_init(p.as_mut_ptr());
            (c.assume_init(), p.assume_init())
        };
        assert_eq!(
            (c.struct_size as usize, c.quantizer_bits, c.filterable_fields_json),
            (CONFIG_SIZE, 0, std::ptr::null())
        );
        assert_eq!((p.struct_size as usize, p.rerank_mult), (QUERY_SIZE, 0));
    }

    /// The last error message, as a String.
    fn last_error() -> String {
        let mut buf = [0 as c_char; 256];
        unsafe { vx_last_error_message(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()) };
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap().to_owned()
    }

    #[test]
    #[cfg_attr(miri, ignore = "creates indexes: sealing and the store are far too slow under Miri")]
    fn quantizer_bits_and_rerank_mult_pass_through_and_are_checked() {
        unsafe {
            let mut client = std::ptr::null_mut();
            assert_eq!(vx_client_open(c"memory:".as_ptr(), std::ptr::null(), &mut client), VX_STATUS_OK);
            let key = [5u8; VX_KEY_LEN];
            let create = |name: &CStr, index_type: u32, bits: u32| {
                let mut cfg = std::mem::MaybeUninit::<vx_index_config>::uninit();
                vx_index_config_init(cfg.as_mut_ptr());
                let mut cfg = cfg.assume_init();
                cfg.index_type = index_type;
                cfg.quantizer_bits = bits;
                let mut ix = std::ptr::dangling_mut();
                let st = vx_index_create(client, name.as_ptr(), key.as_ptr(), &cfg, &mut ix);
                (st, ix)
            };
            // Refused: each one line, naming the value.
            for (name, ty, bits, want) in [
                (c"b0", VX_INDEX_TYPE_IVF_RABITQ, VX_MAX_QUANTIZER_BITS + 1, "quantizer_bits must be 1 to 8"),
                (c"b1", VX_INDEX_TYPE_IVF_RABITQ, u32::MAX, "got 4294967295"),
                (c"b2", VX_INDEX_TYPE_IVF_FLAT, 3, "quantizer_bits is 3 but applies to IVF_RABITQ only"),
                (c"b3", VX_INDEX_TYPE_IVF_PQ, 0, "IVF_PQ is not supported yet"),
                (c"b4", 3, 0, "unknown index type 3"),
            ] {
                let (st, ix) = create(name, ty, bits);
                assert_eq!((st, ix), (VX_STATUS_INVALID_ARGUMENT, std::ptr::null_mut()), "{name:?}");
                let msg = last_error();
                assert!(msg.contains(want) && !msg.contains('\n'), "{name:?}: {msg}");
            }
            // Accepted: the type and the resolved bits read back.
            let (st, flat) = create(c"flat", VX_INDEX_TYPE_IVF_FLAT, 0);
            assert_eq!(st, VX_STATUS_OK);
            assert_eq!((vx_index_type(flat), vx_index_quantizer_bits(flat)), (VX_INDEX_TYPE_IVF_FLAT, 0));
            let (st, max) = create(c"max", VX_INDEX_TYPE_IVF_RABITQ, VX_MAX_QUANTIZER_BITS);
            assert_eq!(st, VX_STATUS_OK);
            assert_eq!((vx_index_type(max), vx_index_quantizer_bits(max)), (VX_INDEX_TYPE_IVF_RABITQ, 8));
            let (st, dflt) = create(c"default", VX_INDEX_TYPE_IVF_RABITQ, 0);
            assert_eq!(st, VX_STATUS_OK);
            let bits = vx_index_quantizer_bits(dflt);
            assert!((1..=VX_MAX_QUANTIZER_BITS).contains(&bits), "{bits}");
            assert_eq!(vx_index_quantizer_bits(std::ptr::null()), 0);
            // Reopened, the index keeps its type and bits.
            let mut again = std::ptr::null_mut();
            assert_eq!(
                vx_index_load(client, c"max".as_ptr(), key.as_ptr(), std::ptr::null(), &mut again),
                VX_STATUS_OK
            );
            assert_eq!((vx_index_type(again), vx_index_quantizer_bits(again)), (VX_INDEX_TYPE_IVF_RABITQ, 8));
            vx_index_free(again);

            // rerank_mult: up to VX_MAX_RERANK_MULT, on either type.
            let ids = [c"a".as_ptr(), c"b".as_ptr()];
            let v = [0.0f32, 1.0, 1.0, 0.0];
            for ix in [flat, max] {
                let st = vx_index_upsert(
                    ix,
                    2,
                    ids.as_ptr(),
                    v.as_ptr(),
                    2,
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                );
                assert_eq!(st, VX_STATUS_OK);
                let mut p = std::mem::MaybeUninit::<vx_query_params>::uninit();
                vx_query_params_init(p.as_mut_ptr());
                let mut p = p.assume_init();
                for (mult, want) in [
                    (0, VX_STATUS_OK),
                    (VX_MAX_RERANK_MULT, VX_STATUS_OK),
                    (VX_MAX_RERANK_MULT + 1, VX_STATUS_INVALID_ARGUMENT),
                ] {
                    p.rerank_mult = mult;
                    let mut r = std::ptr::dangling_mut();
                    let st = vx_index_query(ix, v.as_ptr(), 1, 2, &p, std::ptr::null(), std::ptr::null(), &mut r);
                    assert_eq!(st, want, "rerank_mult {mult}");
                    if st == VX_STATUS_OK {
                        // Untrained: exact, whatever the type.
                        assert_eq!(CStr::from_ptr(vx_results_id(r, 0, 0)), c"a");
                        assert_eq!(vx_results_distance(r, 0, 0), 0.0);
                    } else {
                        assert!(r.is_null());
                        assert_eq!(last_error(), "rerank_mult must be 0 (automatic) to 4096, got 4097");
                    }
                    vx_results_free(r);
                }
            }
            for ix in [flat, max, dflt] {
                vx_index_free(ix);
            }
            vx_client_free(client);
        }
    }

    #[test]
    fn a_bool_byte_other_than_one_reads_as_true() {
        let mut raw = Raw::<QUERY_SIZE>::with_size(QUERY_SIZE as u32);
        let greedy = std::mem::offset_of!(vx_query_params, greedy);
        raw.0[std::mem::offset_of!(vx_query_params, top_k)] = 7;
        for (byte, want) in [(0u8, false), (1, true), (2, true), (0xff, true)] {
            raw.0[greedy] = byte;
            let p = unsafe { args::read_params(raw.0.as_ptr() as *const vx_query_params) }.unwrap();
            assert_eq!((p.greedy, p.top_k, p.filter_json), (want, 7, std::ptr::null()), "byte {byte}");
        }
        let p = unsafe { args::read_params::<vx_query_params>(std::ptr::null()) }.unwrap();
        assert_eq!((p.top_k, p.greedy), (100, false));
    }

    #[test]
    fn the_published_limits_are_the_cores() {
        assert_eq!(VX_MAX_QUANTIZER_BITS, crate::MAX_QUANTIZER_BITS);
        assert_eq!(VX_MAX_RERANK_MULT, crate::MAX_RERANK_MULT);
    }
}
