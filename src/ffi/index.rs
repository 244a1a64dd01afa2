//! `vx_index`: lifecycle, getters and data operations.

use std::ffi::c_char;

use super::args::{
    c_str, covers, field, init_params, key_arg, opt_c_str, read_params, size_before, slice, user_arg, Params,
};
use super::boundary::{boundary, free_box, guard, handle, into_c, out_param, Handle};
use super::client::vx_client;
use super::results::{vx_items, vx_string_list, CText};
use super::{vx_status, VX_EPOCH_LEN};
use crate::crypto::SecretKey;
use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::index::{Access, Epoch, Index, IndexConfig, IndexType, ItemRef, Precision, TrainingState};
use crate::text::Bm25;

/// Euclidean distance (the default).
pub const VX_METRIC_EUCLIDEAN: u32 = 0;
/// Squared Euclidean distance.
pub const VX_METRIC_SQUARED_EUCLIDEAN: u32 = 1;
/// Cosine distance, 1 - cos(a, b).
pub const VX_METRIC_COSINE: u32 = 2;
/// Inner product, reported as -dot(a, b) so smaller is closer.
pub const VX_METRIC_INNER_PRODUCT: u32 = 3;

/// Inverted lists of full vectors (the default).
pub const VX_INDEX_TYPE_IVF_FLAT: u32 = 0;
/// Reserved: product-quantised lists (not supported yet: INVALID_ARGUMENT).
pub const VX_INDEX_TYPE_IVF_PQ: u32 = 1;
/// Inverted lists of RaBitQ codes (vx_index_config.quantizer_bits bits per
/// dimension) scanned first, then the best candidates reranked exactly
/// against the full vectors (vx_query_params.rerank_mult). The codes are
/// built by vx_index_train: until then queries are exact exhaustive
/// searches, as with IVF_FLAT. Since 0.6.0.
pub const VX_INDEX_TYPE_IVF_RABITQ: u32 = 2;

/// Most bits per dimension of vx_index_config.quantizer_bits. Since 0.6.0.
pub const VX_MAX_QUANTIZER_BITS: u32 = 8;

/// Vectors stored as 32-bit floats (the default).
pub const VX_PRECISION_F32: u32 = 0;
/// Vectors stored as 16-bit floats (half the storage, ~3 significant digits).
pub const VX_PRECISION_F16: u32 = 1;

/// Not trained: queries are exact encrypted exhaustive searches.
pub const VX_TRAINING_UNTRAINED: u32 = 0;
/// A training run is under way; queries use the previous state.
pub const VX_TRAINING_TRAINING: u32 = 1;
/// Trained: queries are encrypted IVF searches.
pub const VX_TRAINING_TRAINED: u32 = 2;

/// Bits of the `include` masks of vx_index_get and vx_query_params.
pub const VX_INCLUDE_DISTANCE: u32 = 1;
/// Return metadata JSON.
pub const VX_INCLUDE_METADATA: u32 = 2;
/// Return contents bytes.
pub const VX_INCLUDE_CONTENTS: u32 = 4;
/// Return vectors.
pub const VX_INCLUDE_VECTOR: u32 = 8;

/// An opened index. Opaque; free with vx_index_free.
pub struct vx_index {
    pub(crate) inner: Index,
    name: CText,
}

impl Handle for vx_index {
    const NAME: &'static str = "index";
    fn usable(&self) -> Result<()> {
        if self.inner.is_poisoned() {
            return Err(Error::Poisoned);
        }
        Ok(())
    }
}

impl vx_index {
    /// Marks a call that changes the index: a panic while the returned guard
    /// lives poisons the handle, since the change may have stopped halfway.
    pub(crate) fn writing(&self) -> Writing<'_> {
        Writing(&self.inner)
    }
}

pub(crate) struct Writing<'a>(&'a Index);

impl std::ops::Deref for Writing<'_> {
    type Target = Index;
    fn deref(&self) -> &Index {
        self.0
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison();
        }
    }
}

/// Configuration of vx_index_create. Fill with vx_index_config_init first;
/// fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct vx_index_config {
    /// sizeof(vx_index_config), set by vx_index_config_init; a size this
    /// library did not publish is refused (VX_STATUS_INVALID_ARGUMENT).
    pub struct_size: u32,
    /// Vector width; 0 (default) = fixed by the first upsert.
    pub dimension: u32,
    /// One of VX_METRIC_*; default VX_METRIC_EUCLIDEAN.
    pub metric: u32,
    /// One of VX_INDEX_TYPE_*; default VX_INDEX_TYPE_IVF_FLAT.
    pub index_type: u32,
    /// One of VX_PRECISION_*; default VX_PRECISION_F32.
    pub storage_precision: u32,
    /// VX_INDEX_TYPE_IVF_RABITQ only: bits per dimension of the codes, 1 to
    /// VX_MAX_QUANTIZER_BITS; 0 (default) = the library's default (read it
    /// back with vx_index_quantizer_bits). Must be 0 with IVF_FLAT
    /// (VX_STATUS_INVALID_ARGUMENT otherwise). Since 0.6.0: a struct_size of
    /// 0.5 (which ends before this field) is accepted and reads it as 0.
    pub quantizer_bits: u32,
    /// Metadata fields to keep an index of, so filters on them are answered
    /// without a scan: a NUL-terminated JSON array of dot-paths
    /// (`["tenant", "doc.year"]`, at most 64, each 1 to 256 bytes), or NULL
    /// (default: none). Fixed at creation. Since 0.7.0: a struct_size of 0.5
    /// or 0.6 (which end before this field) is accepted and reads it as NULL.
    pub filterable_fields_json: *const c_char,
    /// Metadata fields holding text (a string, or an array of strings) for
    /// keyword search (vx_index_query_metadata's `text`) and hybrid search
    /// (vx_query_params.text), ranked by BM25: a NUL-terminated JSON array
    /// of dot-paths (`["title", "doc.body"]`, at most 64, each 1 to 256
    /// bytes), or NULL (default: none). Fixed at creation. Since 0.8.0: a
    /// struct_size of 0.7 or older (which end before this field) is
    /// accepted and reads it, bm25_k1 and bm25_b as their defaults.
    pub text_fields_json: *const c_char,
    /// BM25's term-frequency saturation, 0 to VX_MAX_BM25_K1; default 1.2.
    /// Fixed at creation. Since 0.8.0.
    pub bm25_k1: f32,
    /// BM25's document-length normalisation, 0 (none) to 1 (full); default
    /// 0.75. Fixed at creation. Since 0.8.0.
    pub bm25_b: f32,
}

/// Largest vx_index_config.bm25_k1. Since 0.8.0.
pub const VX_MAX_BM25_K1: f32 = 1000.0;
const _: () = assert!(VX_MAX_BM25_K1 == crate::text::MAX_BM25_K1);

impl Default for vx_index_config {
    fn default() -> Self {
        vx_index_config {
            struct_size: std::mem::size_of::<vx_index_config>() as u32,
            dimension: 0,
            metric: VX_METRIC_EUCLIDEAN,
            index_type: VX_INDEX_TYPE_IVF_FLAT,
            storage_precision: VX_PRECISION_F32,
            quantizer_bits: 0,
            filterable_fields_json: std::ptr::null(),
            text_fields_json: std::ptr::null(),
            bm25_k1: crate::text::DEFAULT_BM25_K1,
            bm25_b: crate::text::DEFAULT_BM25_B,
        }
    }
}

// A failed getter answers zero (the boundary's fallback for integers); the
// fallbacks its doc names must be that zero.
const _: () = assert!(VX_METRIC_EUCLIDEAN == 0 && VX_INDEX_TYPE_IVF_FLAT == 0 && VX_TRAINING_UNTRAINED == 0);

/// The call's credentials, copied out of the caller's buffers.
pub(crate) struct Creds {
    key: Option<SecretKey>,
    user: Option<[u8; 16]>,
}

impl Creds {
    pub(crate) unsafe fn read(key: *const u8, user_id: *const u8) -> Creds {
        Creds { key: key_arg(key), user: user_arg(user_id) }
    }
    pub(crate) fn access(&self) -> Access<'_> {
        Access { key: self.key.as_ref(), user: self.user.as_ref() }
    }
}

/// sizeof(vx_index_config) in 0.1 to 0.5: up to storage_precision, all
/// uint32_t.
pub(crate) const VX_INDEX_CONFIG_SIZE_0_5: usize =
    size_before(std::mem::offset_of!(vx_index_config, quantizer_bits), std::mem::align_of::<u32>());
/// sizeof(vx_index_config) in 0.6: up to quantizer_bits, all uint32_t.
pub(crate) const VX_INDEX_CONFIG_SIZE_0_6: usize =
    size_before(std::mem::offset_of!(vx_index_config, filterable_fields_json), std::mem::align_of::<u32>());
/// sizeof(vx_index_config) in 0.7: up to filterable_fields_json.
pub(crate) const VX_INDEX_CONFIG_SIZE_0_7: usize =
    size_before(std::mem::offset_of!(vx_index_config, text_fields_json), std::mem::align_of::<*const c_char>());

impl Params for vx_index_config {
    const NAME: &'static str = "vx_index_config";
    const OLDER_SIZES: &'static [(usize, &'static str)] =
        &[(VX_INDEX_CONFIG_SIZE_0_5, "0.5"), (VX_INDEX_CONFIG_SIZE_0_6, "0.6"), (VX_INDEX_CONFIG_SIZE_0_7, "0.7")];
    unsafe fn read_fields(p: *const Self, size: usize) -> Self {
        let defaults = Self::default();
        vx_index_config {
            struct_size: field!(p.struct_size),
            dimension: field!(p.dimension),
            metric: field!(p.metric),
            index_type: field!(p.index_type),
            storage_precision: field!(p.storage_precision),
            quantizer_bits: if covers!(size, Self, quantizer_bits) {
                field!(p.quantizer_bits)
            } else {
                defaults.quantizer_bits
            },
            filterable_fields_json: if covers!(size, Self, filterable_fields_json) {
                field!(p.filterable_fields_json)
            } else {
                defaults.filterable_fields_json
            },
            text_fields_json: if covers!(size, Self, text_fields_json) {
                field!(p.text_fields_json)
            } else {
                defaults.text_fields_json
            },
            bm25_k1: if covers!(size, Self, bm25_k1) { field!(p.bm25_k1) } else { defaults.bm25_k1 },
            bm25_b: if covers!(size, Self, bm25_b) { field!(p.bm25_b) } else { defaults.bm25_b },
        }
    }
}

/// Fills `cfg` with defaults (and struct_size). NULL is ignored. Writes this
/// version's sizeof(vx_index_config) (48 bytes on 64-bit targets since
/// 0.8.0, 32 in 0.7, 24 in 0.6, 20 before):
/// compile against the header of the library you run with.
///
/// Thread safety: safe from any thread. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_config_init(cfg: *mut vx_index_config) {
    init_params(cfg)
}

/// Creates a new, empty encrypted index named `name` in the client's store.
///
/// @param name       1 to 255 bytes of UTF-8; stored in clear (see THREAT_MODEL.md).
/// @param index_key  VX_KEY_LEN bytes: the root key. Copied at once and never stored;
///                   losing it loses the index. Wipe your copy when done.
/// @param cfg        NULL for defaults, else initialised by vx_index_config_init.
/// @param out_index  receives the index (free with vx_index_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_UTF8, INVALID_ARGUMENT (name, unknown
///         metric/type/precision, dimension too large, quantizer_bits out of range or
///         set for IVF_FLAT, a bad filterable or text field, bm25_k1 or bm25_b out of
///         range, a struct_size vx never published),
///         INVALID_JSON (filterable_fields_json, text_fields_json), INVALID_UTF8, ALREADY_EXISTS,
///         RNG_FAILED, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the client. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_create(
    client: *const vx_client,
    name: *const c_char,
    index_key: *const u8,
    cfg: *const vx_index_config,
    out_index: *mut *mut vx_index,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_index, "out_index")?;
        let client = handle(client)?;
        let name = c_str(name, "name")?;
        let key = key_arg(index_key).ok_or_else(|| Error::NullArgument("index_key".into()))?;
        let c = read_params(cfg)?;
        let config = IndexConfig {
            dimension: c.dimension,
            metric: Metric::from_u32(c.metric)?,
            index_type: IndexType::from_u32(c.index_type)?,
            precision: Precision::from_u32(c.storage_precision)?,
            quantizer_bits: c.quantizer_bits,
            filterable: field_paths(c.filterable_fields_json, "filterable_fields_json")?,
            text_fields: field_paths(c.text_fields_json, "text_fields_json")?,
            bm25: Bm25 { k1: c.bm25_k1, b: c.bm25_b },
        };
        let inner = client.inner.create_index(name, &key, config)?;
        *out = into_c(vx_index { name: CText::new(name), inner });
        Ok(())
    })
}

/// The paths of a JSON array of field paths (`what`: the config field).
unsafe fn field_paths(json: *const c_char, what: &str) -> Result<Vec<String>> {
    match opt_c_str(json, what)? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::InvalidJson(format!("{what} must be a JSON array of strings: {e}"))),
    }
}

/// Opens an existing index.
///
/// @param key        VX_KEY_LEN bytes: the root key, or a user's key (see vx_index_create_user_keys).
///                   Required here; it becomes the handle's bound key for calls given NULL.
/// @param user_id    NULL for the root key, else the user's VX_USER_ID_LEN-byte id.
/// @param out_index  receives the index; NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_UTF8, INVALID_ARGUMENT, NOT_FOUND,
///         WRONG_KEY, INTEGRITY (the key record or manifest was altered), IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the client. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_load(
    client: *const vx_client,
    name: *const c_char,
    key: *const u8,
    user_id: *const u8,
    out_index: *mut *mut vx_index,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_index, "out_index")?;
        let client = handle(client)?;
        let name = c_str(name, "name")?;
        if key.is_null() {
            return Err(Error::NullArgument("key".into()));
        }
        let creds = Creds::read(key, user_id);
        let inner = client.inner.load_index(name, creds.access())?;
        *out = into_c(vx_index { name: CText::new(name), inner });
        Ok(())
    })
}

/// Closes the handle and forgets its key. NULL is a no-op. The index
/// itself stays in the store.
///
/// Thread safety: must not race other calls on the same handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_free(index: *mut vx_index) {
    free_box(index)
}

/// Deletes the index and every object it stored, atomically. Root key only.
/// The handle then answers VX_STATUS_NOT_FOUND; free it as usual.
///
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT (user id without key), NOT_FOUND,
///         WRONG_KEY, PERMISSION_DENIED (a user key), POISONED, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with other calls on the handle (they
/// fail with NOT_FOUND afterwards). Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_delete_index(
    index: *const vx_index,
    key: *const u8,
    user_id: *const u8,
) -> vx_status {
    boundary(|| {
        let ix = handle(index)?.writing();
        ix.delete_index(Creds::read(key, user_id).access())
    })
}

/// Reloads the index's manifest from the store now. Every call already
/// picks up other handles' and processes' committed writes at its start;
/// this is for callers who want to pay that cost at a moment of their choosing.
///
/// @return VX_STATUS_OK, NULL_ARGUMENT, NOT_FOUND, WRONG_KEY (the handle's key was revoked or
///         rotated away), PERMISSION_DENIED (needs READ), POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_refresh(index: *const vx_index) -> vx_status {
    boundary(|| handle(index)?.inner.refresh())
}

/// The index's epoch: VX_EPOCH_LEN bytes naming its committed state, the
/// state's version (which grows with every write and every change of user
/// keys) and the digest of its manifest (which pins every stored object and
/// the key record). Keep it outside the store (with your own records) and
/// pass it to vx_index_require_epoch after loading, to detect the tampering
/// nothing inside the store can reveal: a rollback of the whole store to an
/// older, genuine state, or a fork (a restored backup written on again).
/// See THREAT_MODEL.md. Changed in 0.3.0 (was a uint64_t version).
///
/// @param out_epoch  VX_EPOCH_LEN bytes, receives the epoch (untouched on failure).
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT, NOT_FOUND, WRONG_KEY,
///         PERMISSION_DENIED (needs READ), POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.2.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_epoch(
    index: *const vx_index,
    key: *const u8,
    user_id: *const u8,
    out_epoch: *mut u8,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_epoch.cast::<[u8; VX_EPOCH_LEN]>(), "out_epoch")?;
        *out = handle(index)?.inner.epoch(Creds::read(key, user_id).access())?.0;
        Ok(())
    })
}

/// Fails with VX_STATUS_INTEGRITY if the stored index is older than `epoch`
/// (the store was rolled back) or at the epoch's version but not its state
/// (the store holds another history); on success the handle also refuses
/// any older state from then on. A newer state passes. Changed in 0.3.0
/// (took a uint64_t version).
///
/// @param epoch  VX_EPOCH_LEN bytes from vx_index_epoch.
/// @return VX_STATUS_OK, NULL_ARGUMENT, NOT_FOUND, WRONG_KEY, PERMISSION_DENIED,
///         POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.2.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_require_epoch(index: *const vx_index, epoch: *const u8) -> vx_status {
    boundary(|| {
        let index = handle(index)?;
        let bytes = slice(epoch, VX_EPOCH_LEN, "epoch")?;
        index.inner.require_epoch(&Epoch(bytes.try_into().expect("VX_EPOCH_LEN bytes")))
    })
}

/// The index's name, valid until the handle is freed; NULL for NULL.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_name(index: *const vx_index) -> *const c_char {
    guard(|| index.as_ref().map_or(std::ptr::null(), |i| i.name.ptr()))
}

/// The vector width (0 until fixed by the first upsert); 0 for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_dimension(index: *const vx_index) -> u32 {
    boundary(|| handle(index)?.inner.dimension())
}

/// The index's VX_METRIC_*; VX_METRIC_EUCLIDEAN for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_metric(index: *const vx_index) -> u32 {
    boundary(|| Ok(handle(index)?.inner.metric()? as u32))
}

/// The index's VX_INDEX_TYPE_* (VX_INDEX_TYPE_IVF_RABITQ since 0.6.0);
/// VX_INDEX_TYPE_IVF_FLAT for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_type(index: *const vx_index) -> u32 {
    boundary(|| Ok(handle(index)?.inner.config()?.index_type as u32))
}

/// An IVF_RABITQ index's bits per dimension, as resolved at creation (a
/// quantizer_bits of 0 reads back as the default it stood for); 0 for an
/// IVF_FLAT index and for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.6.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_quantizer_bits(index: *const vx_index) -> u32 {
    boundary(|| Ok(handle(index)?.inner.config()?.quantizer_bits))
}

/// Number of inverted lists (0 until trained); 0 for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_n_lists(index: *const vx_index) -> u32 {
    boundary(|| handle(index)?.inner.n_lists())
}

/// The probe count a query with n_probes = 0 uses: the smallest that finds
/// 95% of the exact 10 nearest neighbours of points of the index, calibrated
/// at training and stored sealed with the index. 0 until trained; 0 for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.3.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_auto_n_probes(index: *const vx_index) -> u32 {
    boundary(|| handle(index)?.inner.auto_n_probes())
}

/// VX_TRAINING_UNTRAINED, _TRAINING or _TRAINED; UNTRAINED for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_training_state(index: *const vx_index) -> u32 {
    boundary(|| {
        Ok(match handle(index)?.inner.training_state()? {
            TrainingState::Untrained => VX_TRAINING_UNTRAINED,
            TrainingState::Training => VX_TRAINING_TRAINING,
            TrainingState::Trained => VX_TRAINING_TRAINED,
        })
    })
}

/// Whether queries use the IVF lists (state TRAINED); false for NULL.
///
/// Like every getter, answers only a handle whose key holds READ: for NULL, a
/// poisoned handle, or a key that lacks READ (a write-only user, a deleted
/// user, a rotated-away root key) it returns the fallback named above and
/// vx_last_error_message says why.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[no_mangle]
pub unsafe extern "C" fn vx_index_is_trained(index: *const vx_index) -> bool {
    vx_index_training_state(index) == VX_TRAINING_TRAINED
}

/// Number of items in the index.
///
/// @param out_count  receives the count (untouched on failure).
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT, NOT_FOUND, WRONG_KEY,
///         PERMISSION_DENIED, POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_num_vectors(
    index: *const vx_index,
    key: *const u8,
    user_id: *const u8,
    out_count: *mut u64,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_count, "out_count")?;
        *out = handle(index)?.inner.num_vectors(Creds::read(key, user_id).access())?;
        Ok(())
    })
}

/// Reads `n` NUL-terminated ids.
unsafe fn read_ids<'a>(n: usize, ids: *const *const c_char) -> Result<Vec<&'a str>> {
    slice(ids, n, "ids")?.iter().enumerate().map(|(i, &p)| c_str(p, &format!("ids[{i}]"))).collect()
}

/// Inserts or overwrites `n` items atomically: after an error nothing of
/// the batch is stored. An existing id is replaced whole (vector, contents,
/// metadata). A later duplicate of an id in the batch wins.
///
/// @param ids            n NUL-terminated UTF-8 ids, 1 to 1024 bytes each.
/// @param vectors        n * dim floats, row-major, all finite.
/// @param dim            vector width; must equal the index's once fixed.
/// @param contents       NULL (no contents) or n pointers (NULL entry = none).
/// @param contents_len   with contents: n lengths (up to 64 MiB each).
/// @param metadata_json  NULL or n JSON-object texts (NULL entry = none; up to 1 MiB each).
/// @param key, user_id   per-call credentials (NULL = the handle's key); need write.
/// All inputs are borrowed for the call only. n == 0 is a no-op.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_UTF8, INVALID_ARGUMENT (dim 0, n*dim
///         overflow, non-finite value, bad id, oversize), DIMENSION_MISMATCH, INVALID_JSON,
///         NOT_FOUND, WRONG_KEY, PERMISSION_DENIED, POISONED, INTEGRITY, RNG_FAILED, IO,
///         STORAGE, PANIC.
///
/// Thread safety: writes to one handle are serialised; safe concurrently
/// with queries, which see the batch all at once or not at all. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_upsert(
    index: *const vx_index,
    n: usize,
    ids: *const *const c_char,
    vectors: *const f32,
    dim: usize,
    contents: *const *const u8,
    contents_len: *const usize,
    metadata_json: *const *const c_char,
    key: *const u8,
    user_id: *const u8,
) -> vx_status {
    boundary(|| {
        let ix = handle(index)?.writing();
        let creds = Creds::read(key, user_id);
        if n == 0 {
            return Ok(());
        }
        let ids = read_ids(n, ids)?;
        if dim == 0 {
            return Err(Error::invalid("dim is 0"));
        }
        let total = n.checked_mul(dim).ok_or_else(|| Error::invalid(format!("n * dim overflows ({n} * {dim})")))?;
        let vectors = slice(vectors, total, "vectors")?;
        let contents: Option<(&[*const u8], &[usize])> = if contents.is_null() {
            None
        } else {
            Some((slice(contents, n, "contents")?, slice(contents_len, n, "contents_len")?))
        };
        let metadata: Option<&[*const c_char]> =
            if metadata_json.is_null() { None } else { Some(slice(metadata_json, n, "metadata_json")?) };
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            let item_contents = match contents {
                Some((ptrs, lens)) if !ptrs[i].is_null() => Some(slice(ptrs[i], lens[i], &format!("contents[{i}]"))?),
                _ => None,
            };
            let item_metadata = match metadata {
                Some(m) if !m[i].is_null() => Some(c_str(m[i], &format!("metadata_json[{i}]"))?),
                _ => None,
            };
            items.push(ItemRef {
                id: ids[i],
                vector: &vectors[i * dim..(i + 1) * dim],
                metadata: item_metadata,
                contents: item_contents,
            });
        }
        ix.upsert(&items, creds.access())
    })
}

/// Looks up `n` ids. A missing id is reported by vx_items_found = false for
/// its row, not as an error.
///
/// @param include    VX_INCLUDE_VECTOR | _METADATA | _CONTENTS (the id always comes back).
/// @param out_items  receives one row per id, in order (free with vx_items_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_UTF8, INVALID_ARGUMENT, NOT_FOUND, WRONG_KEY,
///         PERMISSION_DENIED, POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_get(
    index: *const vx_index,
    n: usize,
    ids: *const *const c_char,
    include: u32,
    key: *const u8,
    user_id: *const u8,
    out_items: *mut *mut vx_items,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_items, "out_items")?;
        let ix = handle(index)?;
        let ids = read_ids(n, ids)?;
        let items = ix.inner.get(&ids, include, Creds::read(key, user_id).access())?;
        *out = vx_items::boxed(&ids, items);
        Ok(())
    })
}

/// Deletes the ids that exist, atomically; missing ids are ignored.
///
/// @param out_deleted  receives how many ids existed and were deleted (may be NULL).
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_UTF8, INVALID_ARGUMENT, NOT_FOUND,
///         WRONG_KEY, PERMISSION_DENIED, POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: as vx_index_upsert. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_delete(
    index: *const vx_index,
    n: usize,
    ids: *const *const c_char,
    key: *const u8,
    user_id: *const u8,
    out_deleted: *mut usize,
) -> vx_status {
    boundary(|| {
        let ix = handle(index)?.writing();
        let ids = read_ids(n, ids)?;
        let deleted = ix.delete(&ids, Creds::read(key, user_id).access())?;
        if let Some(out) = out_deleted.as_mut() {
            *out = deleted;
        }
        Ok(())
    })
}

/// Deletes what training runs that failed or were killed wrote ahead of
/// their commit (once the index has moved past them), then gives the
/// store's free space back to the system: on a file: store, the pages
/// deletes, overwrites and training freed (the file never shrinks by
/// itself); nothing more on memory: and postgres:// stores. Reads and
/// writes of the same client wait while the file shrinks. Needs WRITE.
///
/// @return VX_STATUS_OK, NULL_ARGUMENT, NOT_FOUND, WRONG_KEY, PERMISSION_DENIED,
///         POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle (they wait).
/// Since 0.3.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_compact(index: *const vx_index, key: *const u8, user_id: *const u8) -> vx_status {
    boundary(|| handle(index)?.inner.compact(Creds::read(key, user_id).access()))
}

/// Lists ids in byte order, skipping `offset`, at most `limit` (0 = all).
///
/// @param out_ids  receives the page (free with vx_string_list_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT, NOT_FOUND, WRONG_KEY,
///         PERMISSION_DENIED, POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.1.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_list_ids(
    index: *const vx_index,
    offset: usize,
    limit: usize,
    key: *const u8,
    user_id: *const u8,
    out_ids: *mut *mut vx_string_list,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_ids, "out_ids")?;
        let ids = handle(index)?.inner.list_ids(offset, limit, Creds::read(key, user_id).access())?;
        *out = vx_string_list::boxed(ids);
        Ok(())
    })
}
