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
pub const VX_VERSION_MINOR: u32 = 5;
/// Patch version of this library.
pub const VX_VERSION_PATCH: u32 = 0;
/// MAJOR * 1000000 + MINOR * 1000 + PATCH; compare with vx_version_number().
pub const VX_VERSION_NUMBER: u32 = 5000;
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
        let raw = Raw::<{ std::mem::size_of::<vx_index_config>() }>::with_size(8);
        assert!(unsafe { read_params(raw.0.as_ptr() as *const vx_index_config) }.is_err());
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
}
