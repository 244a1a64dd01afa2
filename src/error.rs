//! The one error type of the crate. Core modules return `Result<_, Error>`;
//! only `src/ffi` turns an error into a C status code and a message.
//!
//! Messages are one line, carry context (numbers, positions, names) and never
//! contain key bytes, vectors, contents or metadata values.

use thiserror::Error as ThisError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Status codes shared by the Rust API and the C ABI. The enum lives in
/// `ffi` because the header is generated from that module tree alone.
pub use crate::ffi::Status;

/// Declares `Error` and maps each variant to the `Status` of the same name,
/// so the mapping needs no second list (a variant without a status does not
/// compile).
macro_rules! errors {
    ($(#[error($($message:tt)*)] $variant:ident $(($field:ty))?,)*) => {
        /// Every failure vx reports. The text is the one-line message callers see.
        #[derive(Debug, ThisError)]
        pub enum Error {
            $(#[error($($message)*)] $variant $(($field))?,)*
        }

        impl Error {
            pub fn status(&self) -> Status {
                match self {
                    $(Error::$variant { .. } => Status::$variant,)*
                }
            }
        }
    };
}

errors! {
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
