//! The C ABI. This module tree is the only place with `extern "C"` and raw
//! pointers. Every exported function runs its body through [`boundary`] (or
//! one of its variants), which clears the thread's last error, catches
//! panics and turns `Error`s into status codes and one-line messages.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // each function documents its contract for C callers

mod client;
mod index;
mod keys;
mod query;
mod results;
mod train;

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::crypto::{SecretKey, KEY_LEN, USER_ID_LEN};
use crate::error::{Error, Result, Status};

pub use client::*;
pub use index::*;
pub use keys::*;
pub use query::*;
pub use results::*;
pub use train::*;

/// Status code returned by every fallible function: 0 (`VX_STATUS_OK`) on
/// success. Codes are grouped (1xx caller errors, 2xx index state, 3xx keys
/// and integrity, 4xx resources and storage, 5xx internal, 999 panic); new
/// codes are only appended. Treat an unknown code as a generic error.
pub type vx_status = i32;

/// Success.
pub const VX_STATUS_OK: vx_status = 0;
/// A required pointer argument was NULL.
pub const VX_STATUS_NULL_ARGUMENT: vx_status = 100;
/// An argument is out of range or malformed (unknown enum value, zero dim, n*dim overflow, non-finite float, ...).
pub const VX_STATUS_INVALID_ARGUMENT: vx_status = 101;
/// A vector's dimension differs from the index's.
pub const VX_STATUS_DIMENSION_MISMATCH: vx_status = 102;
/// A string argument is not valid UTF-8.
pub const VX_STATUS_INVALID_UTF8: vx_status = 103;
/// Metadata is not valid JSON or not a JSON object.
pub const VX_STATUS_INVALID_JSON: vx_status = 104;
/// A query filter is invalid; the message says where and why.
pub const VX_STATUS_INVALID_FILTER: vx_status = 105;
/// The caller's buffer is too small (the output was truncated).
pub const VX_STATUS_BUFFER_TOO_SMALL: vx_status = 106;
/// No such index (or the index was deleted).
pub const VX_STATUS_NOT_FOUND: vx_status = 200;
/// An index of that name already exists.
pub const VX_STATUS_ALREADY_EXISTS: vx_status = 201;
/// Training needs more vectors than the index holds.
pub const VX_STATUS_NOT_ENOUGH_VECTORS: vx_status = 202;
/// The handle was poisoned by a panic in an earlier call that changed it.
pub const VX_STATUS_POISONED: vx_status = 203;
/// The operation was cancelled by the caller's callback.
pub const VX_STATUS_CANCELLED: vx_status = 204;
/// The key does not open this index (or user).
pub const VX_STATUS_WRONG_KEY: vx_status = 300;
/// The key is valid but lacks the permission the operation needs.
pub const VX_STATUS_PERMISSION_DENIED: vx_status = 301;
/// Stored data failed authentication: it was altered, replayed, truncated or lost.
pub const VX_STATUS_INTEGRITY: vx_status = 302;
/// The operating system's random number generator failed.
pub const VX_STATUS_RNG_FAILED: vx_status = 303;
/// The memory limit given is too small for the operation.
pub const VX_STATUS_MEMORY_LIMIT: vx_status = 400;
/// An allocation failed.
pub const VX_STATUS_OUT_OF_MEMORY: vx_status = 401;
/// An operating-system I/O error.
pub const VX_STATUS_IO: vx_status = 402;
/// The backing store failed or refused (locked, conflict, unreachable).
pub const VX_STATUS_STORAGE: vx_status = 403;
/// A bug in vx; please report it with the message.
pub const VX_STATUS_INTERNAL: vx_status = 500;
/// A panic inside vx was caught at the boundary; nothing unwound into the caller.
pub const VX_STATUS_PANIC: vx_status = 999;

/// Length of every key: the index (root) key and user keys.
pub const VX_KEY_LEN: usize = 32;
/// Length of a user id.
pub const VX_USER_ID_LEN: usize = 16;

/// Major version of this library.
pub const VX_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const VX_VERSION_MINOR: u32 = 2;
/// Patch version of this library.
pub const VX_VERSION_PATCH: u32 = 0;
/// MAJOR * 1000000 + MINOR * 1000 + PATCH; compare with vx_version_number().
pub const VX_VERSION_NUMBER: u32 = 2000;
/// ABI version: the SONAME is libvx.so.<VX_ABI_VERSION>.
pub const VX_ABI_VERSION: u32 = 0;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(msg: &str) {
    // One line, no NUL: the message is handed to C as a C string.
    let clean: String = msg.chars().map(|c| if c == '\0' || c == '\n' || c == '\r' { ' ' } else { c }).collect();
    LAST_ERROR.with(|e| *e.borrow_mut() = clean);
}

fn clear_last_error() {
    LAST_ERROR.with(|e| e.borrow_mut().clear());
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal panic caught at the C boundary: {}", what.lines().next().unwrap_or(""))
}

/// Runs one exported function's body: clears the last error, catches panics,
/// maps errors to codes. `on_panic` runs after a caught panic (poisoning).
fn boundary_with(f: impl FnOnce() -> Result<()>, on_panic: impl FnOnce()) -> vx_status {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => VX_STATUS_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status() as vx_status
        }
        Err(payload) => {
            on_panic();
            set_last_error(&panic_message(payload.as_ref()));
            VX_STATUS_PANIC
        }
    }
}

fn boundary(f: impl FnOnce() -> Result<()>) -> vx_status {
    boundary_with(f, || {})
}

/// For functions that return a value instead of a status: an error or a
/// panic yields `fallback` and sets the last error message; nothing escapes.
fn boundary_value<T>(fallback: T, f: impl FnOnce() -> Result<T>) -> T {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            fallback
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            fallback
        }
    }
}

/// Sets `*out` to NULL up front, so it is NULL on every failure path.
unsafe fn clear_out<T>(out: *mut *mut T) {
    if !out.is_null() {
        *out = std::ptr::null_mut();
    }
}

unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullArgument(what.to_owned()));
    }
    CStr::from_ptr(p).to_str().map_err(|_| Error::InvalidUtf8(what.to_owned()))
}

unsafe fn opt_c_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        c_str(p, what).map(Some)
    }
}

/// A borrowed C array as a slice; `n == 0` accepts NULL.
unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::NullArgument(what.to_owned()));
    }
    if n.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid(format!("{what}: {n} elements is too many")));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// Copies a 32-byte key into a zeroizing buffer at once; NULL = None.
unsafe fn key_arg(p: *const u8) -> Option<SecretKey> {
    if p.is_null() {
        return None;
    }
    let mut bytes = [0u8; KEY_LEN];
    std::ptr::copy_nonoverlapping(p, bytes.as_mut_ptr(), KEY_LEN);
    let key = SecretKey::from_bytes(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    Some(key)
}

unsafe fn user_arg(p: *const u8) -> Option<[u8; USER_ID_LEN]> {
    if p.is_null() {
        return None;
    }
    let mut id = [0u8; USER_ID_LEN];
    std::ptr::copy_nonoverlapping(p, id.as_mut_ptr(), USER_ID_LEN);
    Some(id)
}

/// Reads a caller's parameter struct that starts with `uint32_t
/// struct_size`: fields beyond what the caller's (older, smaller) struct
/// holds keep their defaults; a size below the first version is refused.
unsafe fn read_params<T: Copy>(p: *const T, defaults: T, min_size: usize, what: &str) -> Result<T> {
    if p.is_null() {
        return Ok(defaults);
    }
    let size = std::ptr::read_unaligned(p as *const u32) as usize;
    if size < min_size {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {size}, expected at least {min_size}: call the _init function first"
        )));
    }
    let mut out = defaults;
    let n = size.min(std::mem::size_of::<T>());
    std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n);
    Ok(out)
}

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
    let result = catch_unwind(AssertUnwindSafe(|| {
        LAST_ERROR.with(|e| {
            let msg = e.borrow();
            if !out_len.is_null() {
                *out_len = msg.len();
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
    }));
    result.unwrap_or(VX_STATUS_PANIC)
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
    if index.is_null() {
        boundary(|| panic!("vx_debug_panic"))
    } else {
        index::with_index_mut(index, |_| panic!("vx_debug_panic on an index"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_constants_match_the_enum() {
        let table = [
            (VX_STATUS_OK, Status::Ok),
            (VX_STATUS_NULL_ARGUMENT, Status::NullArgument),
            (VX_STATUS_INVALID_ARGUMENT, Status::InvalidArgument),
            (VX_STATUS_DIMENSION_MISMATCH, Status::DimensionMismatch),
            (VX_STATUS_INVALID_UTF8, Status::InvalidUtf8),
            (VX_STATUS_INVALID_JSON, Status::InvalidJson),
            (VX_STATUS_INVALID_FILTER, Status::InvalidFilter),
            (VX_STATUS_BUFFER_TOO_SMALL, Status::BufferTooSmall),
            (VX_STATUS_NOT_FOUND, Status::NotFound),
            (VX_STATUS_ALREADY_EXISTS, Status::AlreadyExists),
            (VX_STATUS_NOT_ENOUGH_VECTORS, Status::NotEnoughVectors),
            (VX_STATUS_POISONED, Status::Poisoned),
            (VX_STATUS_CANCELLED, Status::Cancelled),
            (VX_STATUS_WRONG_KEY, Status::WrongKey),
            (VX_STATUS_PERMISSION_DENIED, Status::PermissionDenied),
            (VX_STATUS_INTEGRITY, Status::Integrity),
            (VX_STATUS_RNG_FAILED, Status::RngFailed),
            (VX_STATUS_MEMORY_LIMIT, Status::MemoryLimit),
            (VX_STATUS_OUT_OF_MEMORY, Status::OutOfMemory),
            (VX_STATUS_IO, Status::Io),
            (VX_STATUS_STORAGE, Status::Storage),
            (VX_STATUS_INTERNAL, Status::Internal),
            (VX_STATUS_PANIC, Status::Panic),
        ];
        assert_eq!(table.len(), Status::ALL.len());
        for (code, status) in table {
            assert_eq!(code, status as i32);
            assert_eq!(Status::from_code(code), Some(status));
        }
    }

    #[test]
    fn literal_constants_match_the_library() {
        assert_eq!(VX_KEY_LEN, KEY_LEN);
        assert_eq!(VX_USER_ID_LEN, USER_ID_LEN);
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
        set_last_error("abcdef");
        let mut buf = [0 as c_char; 4];
        let mut len = 0usize;
        let st = unsafe { vx_last_error_message(buf.as_mut_ptr(), 4, &mut len) };
        assert_eq!((st, len), (VX_STATUS_BUFFER_TOO_SMALL, 6));
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap(), "abc");
        assert_eq!(boundary(|| Ok(())), VX_STATUS_OK);
        unsafe { vx_last_error_message(std::ptr::null_mut(), 0, &mut len) };
        assert_eq!(len, 0);
        assert_eq!(boundary(|| panic!("boom")), VX_STATUS_PANIC);
        unsafe { vx_last_error_message(std::ptr::null_mut(), 0, &mut len) };
        assert!(len > 0);
    }
}
