//! `vx_index_train`: building the IVF lists.

use std::ffi::c_void;

use super::args::{field, init_params, read_params, Params};
use super::boundary::{boundary, handle};
use super::index::{vx_index, Creds};
use super::vx_status;
use crate::error::Result;
use crate::index::{TrainParams, DEFAULT_SEED};

/// Progress callback of vx_index_train_ex, called on the calling thread
/// after every k-means iteration; return non-zero to cancel the training
/// (VX_STATUS_CANCELLED; the index stays as it was).
pub type vx_train_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, iteration: u32, max_iters: u32, objective: f64) -> i32>;

/// Parameters of vx_index_train_ex. Fill with vx_train_params_init first;
/// fields are only ever appended. Zero means "default" for the first five.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct vx_train_params {
    /// sizeof(vx_train_params), set by vx_train_params_init; a size this
    /// library did not publish is refused (VX_STATUS_INVALID_ARGUMENT).
    pub struct_size: u32,
    /// Inverted lists (k-means centroids); 0 = round(sqrt(number of vectors)).
    pub n_lists: u32,
    /// k-means mini-batch size; 0 = automatic (full batch unless very large).
    pub batch_size: usize,
    /// Iteration cap; 0 = 100.
    pub max_iters: u32,
    /// Stop when the objective's relative change is below this; 0 = 1e-6; negative or NaN is invalid.
    pub tolerance: f64,
    /// Soft cap in MiB on training memory (the sample is shrunk to fit, and the
    /// pass over the index reads and writes in steps of a quarter of it); 0 = none.
    pub max_memory: usize,
    /// Seed of the sampling and seeding; the same seed gives the same lists.
    pub seed: u64,
    /// Optional progress callback (NULL = none).
    pub progress: vx_train_progress_fn,
    /// Passed to `progress` unchanged.
    pub user_data: *mut c_void,
}

impl Default for vx_train_params {
    fn default() -> Self {
        vx_train_params {
            struct_size: std::mem::size_of::<vx_train_params>() as u32,
            n_lists: 0,
            batch_size: 0,
            max_iters: 0,
            tolerance: 0.0,
            max_memory: 0,
            seed: DEFAULT_SEED,
            progress: None,
            user_data: std::ptr::null_mut(),
        }
    }
}

impl Params for vx_train_params {
    const NAME: &'static str = "vx_train_params";
    unsafe fn read_fields(p: *const Self, _size: usize) -> Self {
        vx_train_params {
            struct_size: field!(p.struct_size),
            n_lists: field!(p.n_lists),
            batch_size: field!(p.batch_size),
            max_iters: field!(p.max_iters),
            tolerance: field!(p.tolerance),
            max_memory: field!(p.max_memory),
            seed: field!(p.seed),
            progress: field!(p.progress),
            user_data: field!(p.user_data),
        }
    }
}

/// Fills `p` with defaults (and struct_size). NULL is ignored.
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_train_params_init(p: *mut vx_train_params) {
    init_params(p)
}

/// The body both training calls share.
unsafe fn train(index: *const vx_index, p: vx_train_params, key: *const u8, user_id: *const u8) -> Result<()> {
    let ix = handle(index)?.writing();
    let creds = Creds::read(key, user_id);
    let mut callback = |iteration: u32, max_iters: u32, objective: f64| match p.progress {
        // SAFETY: the caller promised a valid function taking its own user_data.
        Some(f) => unsafe { f(p.user_data, iteration, max_iters, objective) != 0 },
        None => false,
    };
    let params = TrainParams {
        n_lists: p.n_lists,
        batch_size: p.batch_size,
        max_iters: p.max_iters,
        tolerance: p.tolerance,
        max_memory_mib: p.max_memory,
        seed: p.seed,
        progress: if p.progress.is_some() { Some(&mut callback) } else { None },
    };
    ix.train(params, creds.access()).map(|_| ())
}

/// Builds the IVF index: k-means over the stored vectors, then every item
/// moved into the list of its nearest centroid, atomically. Before it,
/// queries are exact encrypted exhaustive searches; after it, encrypted IVF
/// searches over `n_probes` lists. Re-training is allowed; queries keep
/// using the previous state until the new one is committed (state
/// VX_TRAINING_TRAINING meanwhile). Needs write permission. Zero means
/// "default" for each of the five parameters (see vx_train_params).
///
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT (tolerance, a run already under
///         way on this handle, user id without key), NOT_ENOUGH_VECTORS (fewer than
///         max(2 * n_lists, 10000), both numbers in the message), MEMORY_LIMIT, NOT_FOUND,
///         WRONG_KEY, PERMISSION_DENIED, POISONED, INTEGRITY, RNG_FAILED, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with queries and writes on the handle
/// (a write that lands during training is placed in the new lists). Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_train(
    index: *const vx_index,
    n_lists: u32,
    batch_size: usize,
    max_iters: u32,
    tolerance: f64,
    max_memory: usize,
    key_ptr: *const u8,
    user_id_ptr: *const u8,
) -> vx_status {
    let p = vx_train_params { n_lists, batch_size, max_iters, tolerance, max_memory, ..Default::default() };
    boundary(|| train(index, p, key_ptr, user_id_ptr))
}

/// vx_index_train with every parameter, a seed and a progress callback.
///
/// @param params  NULL for defaults, else initialised by vx_train_params_init.
/// @return as vx_index_train, and VX_STATUS_CANCELLED when the callback cancels.
///
/// Thread safety: as vx_index_train. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_train_ex(
    index: *const vx_index,
    params: *const vx_train_params,
    key: *const u8,
    user_id: *const u8,
) -> vx_status {
    boundary(|| train(index, read_params(params)?, key, user_id))
}
