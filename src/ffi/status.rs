//! The status codes. The enum below is the one list: cbindgen turns it into
//! the header's `VX_STATUS_*` constants (so it must stay a literal item, not
//! macro output), and `status_table!` hangs everything else off it.

use std::ffi::CStr;

use super::vx_status;

/// Status code returned by every fallible function: 0 (`VX_STATUS_OK`) on
/// success. Codes are grouped (1xx caller errors, 2xx index state, 3xx keys
/// and integrity, 4xx resources and storage, 5xx internal, 999 panic); new
/// codes are only appended. Treat an unknown code as a generic error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 100,
    /// An argument is out of range or malformed (unknown enum value, zero dim, n*dim overflow, non-finite float, ...).
    InvalidArgument = 101,
    /// A vector's dimension differs from the index's.
    DimensionMismatch = 102,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 103,
    /// Metadata is not valid JSON or not a JSON object.
    InvalidJson = 104,
    /// A query filter is invalid; the message says where and why.
    InvalidFilter = 105,
    /// The caller's buffer is too small (the output was truncated).
    BufferTooSmall = 106,
    /// No such index (or the index was deleted).
    NotFound = 200,
    /// An index of that name already exists.
    AlreadyExists = 201,
    /// Training needs more vectors than the index holds.
    NotEnoughVectors = 202,
    /// The handle was poisoned by a panic in an earlier call that changed it.
    Poisoned = 203,
    /// The operation was cancelled by the caller's callback.
    Cancelled = 204,
    /// The key does not open this index (or user).
    WrongKey = 300,
    /// The key is valid but lacks the permission the operation needs.
    PermissionDenied = 301,
    /// Stored data failed authentication: it was altered, replayed, truncated or lost.
    Integrity = 302,
    /// The operating system's random number generator failed.
    RngFailed = 303,
    /// The memory limit given is too small for the operation.
    MemoryLimit = 400,
    /// An allocation failed.
    OutOfMemory = 401,
    /// An operating-system I/O error.
    Io = 402,
    /// The backing store failed or refused (locked, conflict, unreachable).
    Storage = 403,
    /// A bug in vx; please report it with the message.
    Internal = 500,
    /// A panic inside vx was caught at the boundary; nothing unwound into the caller.
    Panic = 999,
}

/// Gives each variant its static description and its `VX_STATUS_*` name on
/// the Rust side (cbindgen does not see these constants; the header gets the
/// enum's). The generated `match` is exhaustive, so a variant missing here,
/// or named here but absent from the enum, does not compile.
macro_rules! status_table {
    ($($variant:ident => $constant:ident, $text:literal;)*) => {
        impl Status {
            /// Every status, in declaration order (used by tests and bindings).
            pub const ALL: &'static [Status] = &[$(Status::$variant),*];

            /// A static, NUL-terminated description (what `vx_status_str` returns).
            pub fn description(self) -> &'static CStr {
                match self {
                    $(Status::$variant => $text,)*
                }
            }
        }

        $(
            #[doc = concat!("`Status::", stringify!($variant), "` as the `vx_status` C callers see.")]
            pub const $constant: vx_status = Status::$variant as vx_status;
        )*

        #[cfg(test)]
        const CONSTANT_NAMES: &[(Status, &str)] = &[$((Status::$variant, stringify!($constant))),*];
    };
}

status_table! {
    Ok => VX_STATUS_OK, c"ok";
    NullArgument => VX_STATUS_NULL_ARGUMENT, c"a required pointer argument was NULL";
    InvalidArgument => VX_STATUS_INVALID_ARGUMENT, c"invalid argument";
    DimensionMismatch => VX_STATUS_DIMENSION_MISMATCH, c"vector dimension does not match the index";
    InvalidUtf8 => VX_STATUS_INVALID_UTF8, c"string is not valid UTF-8";
    InvalidJson => VX_STATUS_INVALID_JSON, c"text is not valid JSON of the expected shape";
    InvalidFilter => VX_STATUS_INVALID_FILTER, c"invalid metadata filter";
    BufferTooSmall => VX_STATUS_BUFFER_TOO_SMALL, c"buffer too small";
    NotFound => VX_STATUS_NOT_FOUND, c"not found";
    AlreadyExists => VX_STATUS_ALREADY_EXISTS, c"already exists";
    NotEnoughVectors => VX_STATUS_NOT_ENOUGH_VECTORS, c"not enough vectors";
    Poisoned => VX_STATUS_POISONED, c"handle poisoned by an earlier panic";
    Cancelled => VX_STATUS_CANCELLED, c"cancelled";
    WrongKey => VX_STATUS_WRONG_KEY, c"wrong key";
    PermissionDenied => VX_STATUS_PERMISSION_DENIED, c"permission denied";
    Integrity => VX_STATUS_INTEGRITY, c"integrity check failed: stored data was altered or is corrupt";
    RngFailed => VX_STATUS_RNG_FAILED, c"the operating system's random number generator failed";
    MemoryLimit => VX_STATUS_MEMORY_LIMIT, c"memory limit too small";
    OutOfMemory => VX_STATUS_OUT_OF_MEMORY, c"out of memory";
    Io => VX_STATUS_IO, c"I/O error";
    Storage => VX_STATUS_STORAGE, c"storage error";
    Internal => VX_STATUS_INTERNAL, c"internal error";
    Panic => VX_STATUS_PANIC, c"internal panic (caught at the C boundary)";
}

impl Status {
    pub fn from_code(code: vx_status) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as vx_status == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust constants carry the names cbindgen gives the enum's
    /// variants in the header, and the table lists each code once, in order.
    #[test]
    fn table_matches_the_header_names() {
        let mut previous = -1;
        for &(status, name) in CONSTANT_NAMES {
            let mut want = String::from("VX_STATUS");
            for c in format!("{status:?}").chars() {
                if c.is_ascii_uppercase() {
                    want.push('_');
                }
                want.push(c.to_ascii_uppercase());
            }
            assert_eq!(name, want);
            assert!(status as i32 > previous, "{name} is out of order or listed twice");
            previous = status as i32;
            assert_eq!(Status::from_code(status as i32), Some(status));
            assert!(!status.description().is_empty());
        }
        assert_eq!(CONSTANT_NAMES.len(), Status::ALL.len());
    }
}
