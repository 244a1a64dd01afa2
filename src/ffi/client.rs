//! `vx_client`: a backing store and its options.

use std::ffi::c_char;

use super::args::{c_str, field, init_params, read_params, Params};
use super::boundary::{boundary, free_box, handle, into_c, out_param, Handle};
use super::results::vx_string_list;
use super::vx_status;
use crate::client::{Client, ClientOptions};
use crate::error::Error;

/// An open backing store (memory:, file:/dir). Opaque; free with vx_client_free.
pub struct vx_client {
    pub(crate) inner: Client,
}

impl Handle for vx_client {
    const NAME: &'static str = "client";
}

/// Options of vx_client_open. Fill with vx_client_options_init first; fields
/// are only ever appended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct vx_client_options {
    /// sizeof(vx_client_options), set by vx_client_options_init; a size this
    /// library did not publish is refused (VX_STATUS_INVALID_ARGUMENT).
    pub struct_size: u32,
    /// Worker threads used inside one call; 0 = one per core (default).
    pub threads: u32,
    /// Bytes of decrypted data the cache may hold; default 1 GiB; 0 disables it.
    pub cache_bytes: u64,
}

impl Default for vx_client_options {
    fn default() -> Self {
        let d = ClientOptions::default();
        vx_client_options {
            struct_size: std::mem::size_of::<vx_client_options>() as u32,
            threads: d.threads as u32,
            cache_bytes: d.cache_bytes as u64,
        }
    }
}

impl Params for vx_client_options {
    const NAME: &'static str = "vx_client_options";
    unsafe fn read_fields(p: *const Self, _size: usize) -> Self {
        vx_client_options {
            struct_size: field!(p.struct_size),
            threads: field!(p.threads),
            cache_bytes: field!(p.cache_bytes),
        }
    }
}

/// Fills `opts` with defaults (and struct_size). NULL is ignored.
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_client_options_init(opts: *mut vx_client_options) {
    init_params(opts)
}

/// Opens the backing store that `storage_uri` names: "memory:" (in-process,
/// gone at free), "file:/path/dir" or a plain directory path (embedded,
/// durable; created if missing).
///
/// @param storage_uri  NUL-terminated UTF-8, borrowed for the call.
/// @param opts         NULL for defaults, else initialised by vx_client_options_init.
/// @param out_client   receives the client (free with vx_client_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_UTF8, INVALID_ARGUMENT (empty or unknown
///         URI, bad options), IO, STORAGE (for example the directory is open in another
///         process), INTEGRITY (the store file is corrupt), PANIC.
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_client_open(
    storage_uri: *const c_char,
    opts: *const vx_client_options,
    out_client: *mut *mut vx_client,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_client, "out_client")?;
        let uri = c_str(storage_uri, "storage_uri")?;
        let o = read_params(opts)?;
        let cache_bytes =
            usize::try_from(o.cache_bytes).map_err(|_| Error::invalid("cache_bytes does not fit in size_t"))?;
        let inner = Client::open(uri, ClientOptions { threads: o.threads as usize, cache_bytes })?;
        *out = into_c(vx_client { inner });
        Ok(())
    })
}

/// Closes the client. Indexes opened from it stay usable until freed.
/// NULL is a no-op.
///
/// Thread safety: must not race other calls on the same client. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_client_free(client: *mut vx_client) {
    free_box(client)
}

/// Lists the names of every index in the store, sorted (names are the one
/// thing the store keeps in clear).
///
/// @param out_names  receives a list (free with vx_string_list_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, IO, STORAGE, INTEGRITY, PANIC.
///
/// Thread safety: safe concurrently with any call. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_client_list_indexes(
    client: *const vx_client,
    out_names: *mut *mut vx_string_list,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_names, "out_names")?;
        let names = handle(client)?.inner.list_indexes()?;
        *out = vx_string_list::boxed(names);
        Ok(())
    })
}
