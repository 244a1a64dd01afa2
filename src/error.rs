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

/// Declares `Error` and maps each variant to the `Status` of the same name
/// (or the one named after `as`), so the mapping needs no second list (a
/// variant without a status does not compile).
macro_rules! errors {
    (@status $variant:ident) => { Status::$variant };
    (@status $variant:ident $status:ident) => { Status::$status };
    ($($(#[doc = $doc:literal])* #[error($($message:tt)*)] $variant:ident $(($field:ty))? $(as $status:ident)?,)*) => {
        /// Every failure vx reports. The text is the one-line message callers see.
        #[derive(Debug, ThisError)]
        pub enum Error {
            $($(#[doc = $doc])* #[error($($message)*)] $variant $(($field))?,)*
        }

        impl Error {
            pub fn status(&self) -> Status {
                match self {
                    $(Error::$variant { .. } => errors!(@status $variant $($status)?),)*
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
    /// An object the state being read names is not in the store: tampering
    /// if that state is still the newest, else a race with a commit that
    /// deleted it. (An object that is there is the one its state names or
    /// an alteration: its key holds its version and digest, so no commit
    /// can leave other bytes under it.) Reported as `INTEGRITY`.
    #[error("integrity check failed: {0}")]
    Missing(String) as Integrity,
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

    /// Whether a commit that deleted what a read needed can explain this
    /// error: only an object that is missing can (see `Missing`).
    pub(crate) fn may_be_race(&self) -> bool {
        matches!(self, Error::Missing(_))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
