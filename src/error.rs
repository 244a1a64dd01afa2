//! The one error type of the crate. Core modules return `Result<_, Error>`;
//! only `src/ffi` turns an error into a C status code and a message.
//!
//! Messages are one line, carry context (numbers, positions, names) and never
//! contain key bytes, vectors, contents or metadata values.

use thiserror::Error as ThisError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Status codes shared by the Rust API and the C ABI. Grouped in ranges;
/// values are only ever appended, never renumbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    // 100..: the caller passed something wrong.
    NullArgument = 100,
    InvalidArgument = 101,
    DimensionMismatch = 102,
    InvalidUtf8 = 103,
    InvalidJson = 104,
    InvalidFilter = 105,
    BufferTooSmall = 106,
    // 200..: the state of the index does not allow it.
    NotFound = 200,
    AlreadyExists = 201,
    NotEnoughVectors = 202,
    Poisoned = 203,
    Cancelled = 204,
    // 300..: keys, permissions, integrity.
    WrongKey = 300,
    PermissionDenied = 301,
    Integrity = 302,
    RngFailed = 303,
    // 400..: resources and storage.
    MemoryLimit = 400,
    OutOfMemory = 401,
    Io = 402,
    Storage = 403,
    // 500..: bugs.
    Internal = 500,
    Panic = 999,
}

impl Status {
    /// Every status, in declaration order (used by tests and bindings).
    pub const ALL: [Status; 23] = [
        Status::Ok,
        Status::NullArgument,
        Status::InvalidArgument,
        Status::DimensionMismatch,
        Status::InvalidUtf8,
        Status::InvalidJson,
        Status::InvalidFilter,
        Status::BufferTooSmall,
        Status::NotFound,
        Status::AlreadyExists,
        Status::NotEnoughVectors,
        Status::Poisoned,
        Status::Cancelled,
        Status::WrongKey,
        Status::PermissionDenied,
        Status::Integrity,
        Status::RngFailed,
        Status::MemoryLimit,
        Status::OutOfMemory,
        Status::Io,
        Status::Storage,
        Status::Internal,
        Status::Panic,
    ];

    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as i32 == code)
    }

    /// A static, NUL-terminated description (what `vx_status_str` returns).
    pub fn description(self) -> &'static std::ffi::CStr {
        match self {
            Status::Ok => c"ok",
            Status::NullArgument => c"a required pointer argument was NULL",
            Status::InvalidArgument => c"invalid argument",
            Status::DimensionMismatch => c"vector dimension does not match the index",
            Status::InvalidUtf8 => c"string is not valid UTF-8",
            Status::InvalidJson => c"text is not valid JSON of the expected shape",
            Status::InvalidFilter => c"invalid metadata filter",
            Status::BufferTooSmall => c"buffer too small",
            Status::NotFound => c"not found",
            Status::AlreadyExists => c"already exists",
            Status::NotEnoughVectors => c"not enough vectors",
            Status::Poisoned => c"handle poisoned by an earlier panic",
            Status::Cancelled => c"cancelled",
            Status::WrongKey => c"wrong key",
            Status::PermissionDenied => c"permission denied",
            Status::Integrity => c"integrity check failed: stored data was altered or is corrupt",
            Status::RngFailed => c"the operating system's random number generator failed",
            Status::MemoryLimit => c"memory limit too small",
            Status::OutOfMemory => c"out of memory",
            Status::Io => c"I/O error",
            Status::Storage => c"storage error",
            Status::Internal => c"internal error",
            Status::Panic => c"internal panic (caught at the C boundary)",
        }
    }
}

/// Every failure vx reports. The text is the one-line message callers see.
#[derive(Debug, ThisError)]
pub enum Error {
    #[error("{0} is NULL")]
    NullArgument(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    DimensionMismatch(String),
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("{0}")]
    BufferTooSmall(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotEnoughVectors(String),
    #[error("handle is poisoned: an earlier call panicked while changing it; free it and load the index again")]
    Poisoned,
    #[error("{0}")]
    Cancelled(String),
    #[error("{0}")]
    WrongKey(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("random number generator failed: {0}")]
    RngFailed(String),
    #[error("{0}")]
    MemoryLimit(String),
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn status(&self) -> Status {
        match self {
            Error::NullArgument(_) => Status::NullArgument,
            Error::InvalidArgument(_) => Status::InvalidArgument,
            Error::DimensionMismatch(_) => Status::DimensionMismatch,
            Error::InvalidUtf8(_) => Status::InvalidUtf8,
            Error::InvalidJson(_) => Status::InvalidJson,
            Error::InvalidFilter(_) => Status::InvalidFilter,
            Error::BufferTooSmall(_) => Status::BufferTooSmall,
            Error::NotFound(_) => Status::NotFound,
            Error::AlreadyExists(_) => Status::AlreadyExists,
            Error::NotEnoughVectors(_) => Status::NotEnoughVectors,
            Error::Poisoned => Status::Poisoned,
            Error::Cancelled(_) => Status::Cancelled,
            Error::WrongKey(_) => Status::WrongKey,
            Error::PermissionDenied(_) => Status::PermissionDenied,
            Error::Integrity(_) => Status::Integrity,
            Error::RngFailed(_) => Status::RngFailed,
            Error::MemoryLimit(_) => Status::MemoryLimit,
            Error::OutOfMemory(_) => Status::OutOfMemory,
            Error::Io(_) => Status::Io,
            Error::Storage(_) => Status::Storage,
            Error::Internal(_) => Status::Internal,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn integrity(msg: impl Into<String>) -> Error {
        Error::Integrity(msg.into())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
