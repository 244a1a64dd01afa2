//! The public value types of an index (configuration, items, hits, query
//! parameters, credentials) and the validation of what callers pass in.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::{SecretKey, USER_ID_LEN};
use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::text::Bm25;

pub const MAX_ID_BYTES: usize = 1024;
pub const MAX_CONTENTS_BYTES: usize = 64 << 20;
pub const MAX_METADATA_BYTES: usize = 1 << 20;
pub const MAX_DIMENSION: usize = 1 << 16;
pub const MAX_TOP_K: usize = 1 << 16;
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Precision {
    F32 = 0,
    F16 = 1,
}

impl Precision {
    pub fn from_u32(v: u32) -> Result<Precision> {
        match v {
            0 => Ok(Precision::F32),
            1 => Ok(Precision::F16),
            _ => Err(Error::invalid(format!("unknown storage precision {v} (expected 0 = F32 or 1 = F16)"))),
        }
    }
    pub fn bytes_per_value(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IndexType {
    /// Full vectors in the lists.
    IvfFlat = 0,
    /// RaBitQ codes in the lists, scanned first, then an exact rerank
    /// against the full vectors (see `rabitq_layout.rs`).
    IvfRabitq = 2,
}

impl IndexType {
    pub fn from_u32(v: u32) -> Result<IndexType> {
        match v {
            0 => Ok(IndexType::IvfFlat),
            1 => Err(Error::invalid("index type IVF_PQ is not supported yet (use IVF_FLAT or IVF_RABITQ)")),
            2 => Ok(IndexType::IvfRabitq),
            _ => Err(Error::invalid(format!("unknown index type {v} (expected 0 = IVF_FLAT or 2 = IVF_RABITQ)"))),
        }
    }
}

/// Bits per dimension of an IVF_RABITQ code: 1 (the sign) up to 8 (the
/// sign and 7 extended bits).
pub const MAX_QUANTIZER_BITS: u32 = 8;
/// What `quantizer_bits = 0` means for IVF_RABITQ (see docs/BENCHMARKS.md,
/// "Compressed index"; chosen by measurement).
pub const DEFAULT_QUANTIZER_BITS: u32 = 2;
/// Most candidates per result row a query may ask to rerank.
pub const MAX_RERANK_MULT: u32 = 1 << 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum TrainingState {
    #[default]
    Untrained = 0,
    Training = 1,
    Trained = 2,
}

/// What a caller chooses at create time.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexConfig {
    /// 0 = fixed by the first upsert.
    pub dimension: u32,
    pub metric: Metric,
    pub index_type: IndexType,
    pub precision: Precision,
    /// IVF_RABITQ only: bits per dimension of the codes, 1 to
    /// [`MAX_QUANTIZER_BITS`]; 0 = [`DEFAULT_QUANTIZER_BITS`].
    pub quantizer_bits: u32,
    /// Metadata fields (dot-paths) whose values vx keeps an in-memory index
    /// of, so filters on them are answered without a scan (`fields.rs`).
    /// At most [`MAX_FILTERABLE_FIELDS`], each 1 to [`MAX_FIELD_PATH_BYTES`].
    pub filterable: Vec<String>,
    /// Metadata fields (dot-paths) holding text (a string or an array of
    /// strings) that keyword and hybrid queries search with BM25
    /// (`terms.rs`). Same limits as `filterable`.
    pub text_fields: Vec<String>,
    /// BM25's parameters for the text fields.
    pub bm25: Bm25,
}

/// Most fields an index may declare filterable (and, separately, text).
pub const MAX_FILTERABLE_FIELDS: usize = 64;
/// Longest path of a filterable or text field.
pub const MAX_FIELD_PATH_BYTES: usize = 256;

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            dimension: 0,
            metric: Metric::Euclidean,
            index_type: IndexType::IvfFlat,
            precision: Precision::F32,
            quantizer_bits: 0,
            filterable: Vec::new(),
            text_fields: Vec::new(),
            bm25: Bm25::default(),
        }
    }
}

impl IndexConfig {
    /// Checks a caller's configuration and fills in what 0 means.
    pub(crate) fn resolved(mut self) -> Result<IndexConfig> {
        validate_dimension(self.dimension as usize)?;
        match self.index_type {
            IndexType::IvfFlat if self.quantizer_bits != 0 => {
                return Err(Error::invalid(format!(
                    "quantizer_bits is {} but applies to IVF_RABITQ only (use 0 with IVF_FLAT)",
                    self.quantizer_bits
                )))
            }
            IndexType::IvfFlat => {}
            IndexType::IvfRabitq => match self.quantizer_bits {
                0 => self.quantizer_bits = DEFAULT_QUANTIZER_BITS,
                1..=MAX_QUANTIZER_BITS => {}
                b => {
                    return Err(Error::invalid(format!(
                        "quantizer_bits must be 1 to {MAX_QUANTIZER_BITS} (0 = default), got {b}"
                    )))
                }
            },
        }
        validate_paths("filterable", &self.filterable)?;
        validate_paths("text", &self.text_fields)?;
        self.bm25.validate()?;
        Ok(self)
    }
}

/// Checks a list of declared field paths (`what`: which list).
fn validate_paths(what: &str, paths: &[String]) -> Result<()> {
    if paths.len() > MAX_FILTERABLE_FIELDS {
        return Err(Error::invalid(format!("at most {MAX_FILTERABLE_FIELDS} {what} fields, got {}", paths.len())));
    }
    for (i, path) in paths.iter().enumerate() {
        if path.is_empty()
            || path.len() > MAX_FIELD_PATH_BYTES
            || path.split('.').any(|p| p.is_empty() || p.starts_with('$'))
        {
            return Err(Error::invalid(format!(
                "{what} field {i} ('{path}'): a dot-path of 1 to {MAX_FIELD_PATH_BYTES} bytes, no empty segment, none starting with '$'"
            )));
        }
        if paths[..i].contains(path) {
            return Err(Error::invalid(format!("{what} field '{path}' is declared twice")));
        }
    }
    Ok(())
}

/// The credentials of one call: `key = None` means the key the handle was
/// created or loaded with; a user id needs a key.
#[derive(Clone, Copy, Default)]
pub struct Access<'a> {
    pub key: Option<&'a SecretKey>,
    pub user: Option<&'a [u8; USER_ID_LEN]>,
}

/// What `get` and `query` return besides the id.
pub mod include {
    pub const DISTANCE: u32 = 1;
    pub const METADATA: u32 = 2;
    pub const CONTENTS: u32 = 4;
    pub const VECTOR: u32 = 8;
    pub const ALL: u32 = DISTANCE | METADATA | CONTENTS | VECTOR;
}

/// One item to upsert, borrowed from the caller.
#[derive(Clone, Copy, Debug)]
pub struct ItemRef<'a> {
    pub id: &'a str,
    pub vector: &'a [f32],
    pub metadata: Option<&'a str>,
    pub contents: Option<&'a [u8]>,
}

/// An item as `get` returns it. Wiped on drop.
#[derive(Clone, Debug, Default, Zeroize, ZeroizeOnDrop)]
pub struct Item {
    pub id: String,
    pub vector: Option<Vec<f32>>,
    pub metadata: Option<String>,
    pub contents: Option<Vec<u8>>,
}

/// One query result row. Wiped on drop.
#[derive(Clone, Debug, Default, Zeroize, ZeroizeOnDrop)]
pub struct Hit {
    pub id: String,
    /// The exact distance to the query vector; NaN without one (a
    /// metadata-only query).
    pub distance: f32,
    /// A keyword query's BM25 score, or a hybrid query's fused score
    /// (higher is better); NaN for a query without text.
    pub score: f32,
    pub metadata: Option<String>,
    pub contents: Option<Vec<u8>>,
    pub vector: Option<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct QueryParams<'a> {
    pub top_k: usize,
    /// 0 = automatic (used once the index is trained).
    pub n_probes: u32,
    pub filter: Option<&'a str>,
    pub include: u32,
    pub greedy: bool,
    /// IVF_RABITQ: candidates reranked exactly = rerank_mult × top_k;
    /// 0 = as many as the codes' error bounds leave in doubt.
    pub rerank_mult: u32,
    /// Hybrid search: query text matched with BM25 against the index's text
    /// fields, its ranking fused with the vector ranking (see `Fusion`).
    pub text: Option<&'a str>,
    pub fusion: Fusion,
}

impl Default for QueryParams<'_> {
    fn default() -> Self {
        QueryParams {
            top_k: 100,
            n_probes: 0,
            filter: None,
            include: include::DISTANCE,
            greedy: false,
            rerank_mult: 0,
            text: None,
            fusion: Fusion::default(),
        }
    }
}

/// How a hybrid query fuses its two rankings, by weighted reciprocal-rank
/// fusion: an item ranked r_v by vector and r_t by text (1 = first) scores
/// alpha / (rrf_k + r_v) + (1 - alpha) / (rrf_k + r_t), a ranking it is
/// missing from adding nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fusion {
    /// Weight of the vector ranking, 0 to 1 (text: 1 - alpha).
    pub alpha: f32,
    /// Damping of the ranks; 0 = [`DEFAULT_RRF_K`].
    pub rrf_k: u32,
    /// Items each ranking contributes, 1 to 65536; 0 = automatic
    /// (max(2 top_k, 50)).
    pub vector_depth: u32,
    pub text_depth: u32,
}

/// The usual reciprocal-rank-fusion constant (Cormack et al., 2009).
pub const DEFAULT_RRF_K: u32 = 60;
pub const DEFAULT_ALPHA: f32 = 0.5;

impl Default for Fusion {
    fn default() -> Self {
        Fusion { alpha: DEFAULT_ALPHA, rrf_k: 0, vector_depth: 0, text_depth: 0 }
    }
}

impl Fusion {
    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::invalid(format!("alpha must be 0 to 1, got {}", self.alpha)));
        }
        for (what, depth) in [("vector_depth", self.vector_depth), ("text_depth", self.text_depth)] {
            if depth as usize > MAX_TOP_K {
                return Err(Error::invalid(format!("{what} must be 0 (automatic) to {MAX_TOP_K}, got {depth}")));
            }
        }
        Ok(())
    }

    pub(crate) fn rrf_k(&self) -> f64 {
        (if self.rrf_k == 0 { DEFAULT_RRF_K } else { self.rrf_k }) as f64
    }

    /// How many items each ranking contributes to `top_k` results.
    pub(crate) fn depths(&self, top_k: usize) -> (usize, usize) {
        let auto = (2 * top_k).clamp(50, MAX_TOP_K);
        let pick = |d: u32| if d == 0 { auto } else { d as usize };
        (pick(self.vector_depth), pick(self.text_depth))
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(format!("index name must be 1 to {MAX_NAME_BYTES} bytes, got {}", name.len())));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("index name contains a control character"));
    }
    Ok(())
}

pub(crate) fn validate_dimension(dim: usize) -> Result<()> {
    if dim > MAX_DIMENSION {
        return Err(Error::invalid(format!("dimension {dim} exceeds the maximum {MAX_DIMENSION}")));
    }
    Ok(())
}

pub(crate) fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!("id must be 1 to {MAX_ID_BYTES} bytes, got {}", id.len())));
    }
    if id.contains('\0') {
        return Err(Error::invalid("id contains a NUL character"));
    }
    Ok(())
}

pub(crate) fn check_include(include: u32) -> Result<()> {
    if include & !include::ALL != 0 {
        return Err(Error::invalid(format!("unknown include bits 0x{:x}", include & !include::ALL)));
    }
    Ok(())
}

pub(crate) fn check_finite(v: &[f32], what: &str) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::invalid(format!("{what} value at position {i} is not finite (NaN or infinity)"))),
    }
}

/// Checks one upsert of a batch whose vectors are `dim` wide.
pub(crate) fn validate_item(i: usize, it: &ItemRef<'_>, dim: usize) -> Result<()> {
    validate_id(it.id).map_err(|e| Error::invalid(format!("item {i}: {e}")))?;
    if it.vector.len() != dim {
        return Err(Error::DimensionMismatch(format!("item {i}: vector dim {} != batch dim {dim}", it.vector.len())));
    }
    check_finite(it.vector, &format!("item {i}: vector"))?;
    if let Some(md) = it.metadata {
        if md.len() > MAX_METADATA_BYTES {
            return Err(Error::invalid(format!(
                "item {i}: metadata is {} bytes, the limit is {MAX_METADATA_BYTES}",
                md.len()
            )));
        }
        match serde_json::from_str::<serde_json::Value>(md) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(Error::InvalidJson(format!("item {i}: metadata must be a JSON object"))),
            Err(e) => return Err(Error::InvalidJson(format!("item {i}: metadata is not valid JSON: {e}"))),
        }
    }
    if let Some(c) = it.contents {
        if c.len() > MAX_CONTENTS_BYTES {
            return Err(Error::invalid(format!(
                "item {i}: contents are {} bytes, the limit is {MAX_CONTENTS_BYTES}",
                c.len()
            )));
        }
    }
    Ok(())
}

/// Checks a query batch: the include bits, `top_k`, and `nq * dim` finite floats.
pub(crate) fn validate_query(queries: &[f32], nq: usize, dim: usize, params: &QueryParams<'_>) -> Result<()> {
    check_include(params.include)?;
    if params.top_k == 0 || params.top_k > MAX_TOP_K {
        return Err(Error::invalid(format!("top_k must be 1 to {MAX_TOP_K}, got {}", params.top_k)));
    }
    if params.rerank_mult > MAX_RERANK_MULT {
        return Err(Error::invalid(format!(
            "rerank_mult must be 0 (automatic) to {MAX_RERANK_MULT}, got {}",
            params.rerank_mult
        )));
    }
    params.fusion.validate()?;
    let expected = nq.checked_mul(dim).ok_or_else(|| Error::invalid("nq * dim overflows"))?;
    if queries.len() != expected {
        return Err(Error::invalid(format!("{} query floats given, nq * dim = {expected}", queries.len())));
    }
    check_finite(queries, "query")
}
