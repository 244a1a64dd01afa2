//! The one way across the C boundary, after rustls-ffi's
//! `ffi_panic_boundary!`, `try_ref_from_ptr!` and `free_box`: [`boundary`]
//! runs a body, [`handle`] reaches a handle, [`out_param`] takes an output
//! and [`free_box`] gives an object back.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{vx_status, Status, VX_STATUS_OK};
use crate::error::{Error, Result};

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(msg: &str) {
    // One line, no NUL: the message is handed to C as a C string.
    let clean: String = msg.chars().map(|c| if c == '\0' || c == '\n' || c == '\r' { ' ' } else { c }).collect();
    LAST_ERROR.with(|e| *e.borrow_mut() = clean);
}

/// Lends the calling thread's last error message.
pub(super) fn with_last_error<R>(f: impl FnOnce(&str) -> R) -> R {
    LAST_ERROR.with(|e| f(&e.borrow()))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal panic caught at the C boundary: {}", what.lines().next().unwrap_or(""))
}

/// What an exported function returns to C, and what it returns instead
/// when its body failed (the message then says why).
pub(crate) trait Returned {
    /// What a successful body yields.
    type Value;
    fn succeeded(value: Self::Value) -> Self;
    fn failed(status: Status) -> Self;
}

impl Returned for vx_status {
    type Value = ();
    fn succeeded((): ()) -> Self {
        VX_STATUS_OK
    }
    fn failed(status: Status) -> Self {
        status as vx_status
    }
}

/// The `_free` functions: C gets nothing back either way.
impl Returned for () {
    type Value = ();
    fn succeeded((): ()) {}
    fn failed(_: Status) {}
}

/// Value-returning functions answer zero (or NaN, NULL, false) on failure;
/// each one's doc names that fallback.
macro_rules! returned_value {
    ($($t:ty => $fallback:expr),* $(,)?) => {$(
        impl Returned for $t {
            type Value = $t;
            fn succeeded(value: $t) -> $t {
                value
            }
            fn failed(_: Status) -> $t {
                $fallback
            }
        }
    )*};
}

returned_value!(u32 => 0, usize => 0, bool => false, f32 => f32::NAN);

impl<T> Returned for *const T {
    type Value = *const T;
    fn succeeded(value: *const T) -> *const T {
        value
    }
    fn failed(_: Status) -> *const T {
        std::ptr::null()
    }
}

/// Runs the body of every fallible function: clears the calling thread's
/// last error, then turns an `Error` into its message and a status (or the
/// return type's fallback) and a panic as [`guard`] does.
pub(crate) fn boundary<R: Returned>(body: impl FnOnce() -> Result<R::Value>) -> R {
    LAST_ERROR.with(|e| e.borrow_mut().clear());
    guard(|| match body() {
        Ok(value) => R::succeeded(value),
        Err(e) => {
            set_last_error(&e.to_string());
            R::failed(e.status())
        }
    })
}

/// Catches a panic so it never unwinds into C: the message says what
/// panicked and C gets `VX_STATUS_PANIC` or the fallback. On its own (without
/// [`boundary`]'s clearing) for the calls that must leave the last error
/// alone: reading it, accessors of result objects, `_free`.
pub(crate) fn guard<R: Returned>(body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        set_last_error(&panic_message(payload.as_ref()));
        R::failed(Status::Panic)
    })
}

/// An opaque object C holds a pointer to.
pub(crate) trait Handle {
    /// The parameter's name in messages.
    const NAME: &'static str;
    /// Refuses a handle that may no longer be used.
    fn usable(&self) -> Result<()> {
        Ok(())
    }
}

/// The one way to reach a handle C passed in: NULL gives NULL_ARGUMENT, an
/// unusable (poisoned) handle its error.
pub(crate) unsafe fn handle<'a, H: Handle>(p: *const H) -> Result<&'a H> {
    let h = p.as_ref().ok_or_else(|| Error::NullArgument(H::NAME.into()))?;
    h.usable()?;
    Ok(h)
}

/// What a failed call leaves in an out-param: a pointer becomes NULL (so
/// `_free(*out)` is always safe), a scalar is untouched.
pub(crate) trait OutParam {
    fn reset(&mut self);
}

impl<T> OutParam for *mut T {
    fn reset(&mut self) {
        *self = std::ptr::null_mut();
    }
}

impl OutParam for u64 {
    fn reset(&mut self) {}
}

impl OutParam for [u8; super::VX_EPOCH_LEN] {
    fn reset(&mut self) {}
}

/// The one way to take a required out-param; call it first in the body, so
/// the reset happens whatever fails next.
pub(crate) unsafe fn out_param<'a, T: OutParam>(p: *mut T, name: &str) -> Result<&'a mut T> {
    let out = p.as_mut().ok_or_else(|| Error::NullArgument(name.to_owned()))?;
    out.reset();
    Ok(out)
}

/// Hands an object to C; [`free_box`] takes it back.
pub(crate) fn into_c<T>(object: T) -> *mut T {
    Box::into_raw(Box::new(object))
}

/// The body of every `_free`: NULL is a no-op, and a panicking destructor
/// stays on this side (the last error then says so).
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    if !p.is_null() {
        guard(|| drop(Box::from_raw(p)))
    }
}
