//! The IVF_RABITQ layout. Untrained, such an index is stored as IVF_FLAT
//! is. Once trained, every chunk is stored as
//!
//! * a **head** (the object the manifest's chunk stamp pins): the RaBitQ
//!   code of each row's residual to its list's centroid (`crate::rabitq`)
//!   and the row's metadata. This is what a query decrypts and scans: at
//!   d = 128 with 2-bit codes, ~44 bytes a row instead of 512;
//! * **units** of a few rows each (~4 KiB): their full vectors and ids,
//!   what the exact rerank decrypts, a few KiB per candidate instead of a
//!   64 KiB chunk. A unit has no stamp of its own: its token (so its
//!   associated data) names its head's digest and its number, so it opens
//!   only beside the head it was sealed with and in its place
//!   (`Tokens::of`). A chunk's sealed units are stored back to back as one
//!   object, its **unit pack**, and the head says where each ends
//!   (`UnitPlaces`): a rerank reads one unit's bytes of it, a write or a
//!   training all of it at once. (0.11 stored each unit under a key of its
//!   own; such chunks are read as they are until rewritten.) One object
//!   instead of ~35 a chunk saves each unit's key, record header and index
//!   entry in the store: 0.05x the raw vectors at d = 128.
//!
//! A query scans the heads of its lists, keeps the candidates the codes'
//! error bounds cannot rule out (or the `rerank_mult × top_k` best
//! estimates), and reranks them against the full vectors, nearest lower
//! bound first, stopping once no candidate left can beat the k-th exact
//! distance. Returned distances are always computed on the full vectors.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, RwLock};

use rayon::prelude::*;
use serde_json::Value;
use zeroize::Zeroizing;

use super::chunk::{parse_metadata, Chunk, ChunkBuilder, Packer, Packing, RowMetadata, WipedFloats};
use super::ivf::Centroids;
use super::manifest::{ChunkMeta, Manifest, Stamp};
use super::objects::{ChunkShape, Obj, Prefetched};
use super::search::{Candidate, Hit, Queries, Row, TopK, Work};
use super::types::Precision;
use super::Index;
use crate::codec::{Reader, Writer};
use crate::crypto::SEAL_OVERHEAD;
use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::kmeans;
use crate::rabitq::{block_sums, ex_scale, pack, Factors, Padding, Quantizer, QueryLut, BLOCK, EPS0_99};
use crate::store::{part_of, ValuePart};

/// Plaintext bytes a unit aims at: what a rerank decrypts for one
/// candidate, just under 4 KiB with its seal.
const UNIT_TARGET_BYTES: usize = 4096 - 256;
/// count u32, dim u32, precision u8, bits u8, 6 zero bytes.
const HEAD_HEADER_BYTES: usize = 16;
// `Packer` bounds a head as it bounds a chunk stored whole.
const _: () = assert!(HEAD_HEADER_BYTES == super::chunk::CHUNK_HEADER_BYTES);
/// Without `rerank_mult`, a query keeps at most this many candidates per
/// result row whose bounds leave them in doubt (the nearest lower bounds).
const MAX_DOUBTFUL_PER_ROW: usize = 64;

/// Where a coded chunk's sealed units are stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum UnitPlaces {
    /// Each under a key of its own (chunks sealed by 0.11 and before).
    #[default]
    Apart,
    /// Back to back in the chunk's unit pack, unit u ending at byte `ends[u]`.
    Packed(Box<[u32]>),
}

impl UnitPlaces {
    /// The bytes of unit `u` in the pack: (start, length); `None` if apart
    /// (or past the last unit, which no row names).
    pub fn part(&self, u: u32) -> Option<(u64, u32)> {
        let UnitPlaces::Packed(ends) = self else { return None };
        let start = if u == 0 { 0 } else { *ends.get(u as usize - 1)? };
        Some((start as u64, ends.get(u as usize)? - start))
    }

    /// The length of the pack (`None`: apart).
    fn pack_len(&self) -> Option<usize> {
        match self {
            UnitPlaces::Packed(ends) => Some(ends.last().copied().unwrap_or(0) as usize),
            UnitPlaces::Apart => None,
        }
    }

    /// The places of units sealed from these plaintexts, in this order.
    fn packed(plains: &[Zeroizing<Vec<u8>>]) -> UnitPlaces {
        let ends = plains.iter().scan(0u32, |end, p| {
            *end += (p.len() + SEAL_OVERHEAD) as u32;
            Some(*end)
        });
        UnitPlaces::Packed(ends.collect())
    }

    fn write(&self, w: &mut Writer) {
        if let UnitPlaces::Packed(ends) = self {
            ends.iter().for_each(|&e| w.u32(e));
        }
    }

    /// The places of a head of `shape`, after its metadata.
    fn read(r: &mut Reader<'_>, shape: &CodeShape) -> Result<UnitPlaces> {
        if !shape.packed {
            return Ok(UnitPlaces::Apart);
        }
        let n = shape.count.div_ceil(rows_per_unit(shape.dim, shape.precision));
        let ends: Box<[u32]> = (0..n).map(|_| r.u32()).collect::<Result<_>>()?;
        // Each unit at least a seal long (so none is empty, and none ends before it starts).
        let mut start = 0u32;
        for &end in ends.iter() {
            if end.checked_sub(start).is_none_or(|len| (len as usize) < SEAL_OVERHEAD) {
                return Err(Error::integrity("a chunk head's unit places are out of order"));
            }
            start = end;
        }
        Ok(UnitPlaces::Packed(ends))
    }
}

/// Rows per unit of an index of this shape.
pub fn rows_per_unit(dim: usize, precision: Precision) -> usize {
    (UNIT_TARGET_BYTES / (dim * precision.bytes_per_value() + 16)).max(1)
}

/// The units of a chunk of `count` rows: (unit number, rows in it).
pub fn units_of(count: usize, dim: usize, precision: Precision) -> impl Iterator<Item = (u32, usize)> {
    let per = rows_per_unit(dim, precision);
    (0..count.div_ceil(per)).map(move |u| (u as u32, per.min(count - u * per)))
}

/// The object and stamp of unit `u` of the chunk `meta` names: what it is
/// sealed and cached as (and, apart, stored under).
pub fn unit_obj(meta: &ChunkMeta, u: u32) -> (Obj, Stamp) {
    (Obj::ChunkUnit(meta.no, u, meta.stamp.digest), meta.stamp)
}

/// The object and stamp the unit pack of the chunk `meta` names is stored under.
pub fn pack_obj(meta: &ChunkMeta) -> (Obj, Stamp) {
    (Obj::UnitPack(meta.no, meta.stamp.digest), meta.stamp)
}

/// The objects chunk `meta`'s units are stored as in `m` (a coded chunk).
pub fn stored_units<'m>(m: &Manifest, meta: &'m ChunkMeta) -> Box<dyn Iterator<Item = (Obj, Stamp)> + 'm> {
    if m.units_packed(meta) {
        return Box::new(std::iter::once(pack_obj(meta)));
    }
    let (dim, precision) = (m.config.dimension as usize, m.config.precision);
    Box::new(units_of(meta.count as usize, dim, precision).map(move |(u, _)| unit_obj(meta, u)))
}

/// The packer of a write or a training into an index whose trained layout
/// is `coder`'s (`None`: chunks stored whole). A coded chunk ends at a
/// whole block of rows where it can: a scan takes a head `BLOCK` rows at a
/// time, and pads it to whole blocks in memory.
pub fn packer_for(coder: Option<&Coder>) -> Packer {
    Packer::new(coder.map_or(1, |_| BLOCK))
}

/// What an item of `bytes` encoded bytes costs a chunk of that layout.
pub fn packing_for(coder: Option<&Coder>, bytes: usize, metadata_len: Option<usize>) -> Packing {
    coder.map_or(Packing::whole(bytes), |coder| coder.packing(bytes, metadata_len))
}

/// What a head must hold, and (L2) its list's rotated centroid, which
/// its rows' `CodeChunk::fixed` terms are derived from.
pub(crate) struct CodeShape<'a> {
    pub dim: usize,
    pub precision: Precision,
    pub bits: u32,
    pub sign_bytes: usize,
    pub ex_bytes: usize,
    pub count: usize,
    pub centre: Option<&'a [f32]>,
    /// Whether its units are packed (the head then says where each ends).
    pub packed: bool,
}

/// A decrypted head: the codes and metadata of a chunk's rows. Wiped on
/// drop (a code is a coarse copy of its vector).
///
/// In memory the codes are re-packed for the FastScan kernel (blocks of
/// `rabitq::BLOCK` rows, `rabitq::pack`; the stored layout is unchanged)
/// and each row's factors kept as the scan uses them, one array per term
/// (padded to whole blocks with zeros), so a block's bounds are computed
/// in SIMD lanes.
///
/// A row's score is estimated as `base + fixed + sign · w · scale`, within
/// `bound_scale · err` (plus rounding), where `base` and `sign` are the
/// query's and list's (`ListQuery`) and w is the weighted dot of the row's
/// whole code (all its planes, `Quantizer::weighted_dots`) with the
/// query's table. Only the B-bit estimate is kept: its bound is the
/// tighter, and three terms a row (12 bytes) instead of seven keep a head
/// at 44 bytes a row at d = 128 with 2 bits (0.092× the raw vectors with
/// the blocks' padding, measured on 1M × 128; was 0.125×).
pub struct CodeChunk {
    len: usize,
    /// Sign plane and extended planes, packed (`rabitq::pack`).
    packed: Zeroizing<Vec<u8>>,
    /// L2 only (empty otherwise, for 0): |r|^2 + 2 w_c' · scale, where
    /// w_c' is the row's weighted dot with c' = P·(c - μ), its list's
    /// centroid centred on the centroids' mean and rotated (`Coder`). So
    /// one table of the query's q' = P·(q - μ) serves every list: the
    /// score's -2 <r, q' - c'> is -2 (w_q' - w_c') · scale.
    fixed: Vec<f32>,
    /// `rabitq::ex_scale` (for 1 bit, `Factors::scale`).
    scale: Vec<f32>,
    /// `Factors::ex_err` (for 1 bit, `Factors::err`).
    err: Vec<f32>,
    /// The units of this head a rerank decrypted, for as long as something
    /// else (the cache, a query) holds them: the next rerank finds them here
    /// instead of by a cache lookup, which cost more than the rest of a
    /// candidate's rerank (a lock and several cache misses in its lists).
    /// They stay the cache's to count and evict; one found here is not
    /// marked as used in the cache's order.
    units: Mutex<Vec<Weak<Chunk>>>,
    /// Where its units are stored.
    pub places: UnitPlaces,
    /// Each row's metadata; empty when no row has any (24 bytes a row
    /// otherwise, over a quarter of a head's memory at d = 128).
    metadata: Vec<Option<String>>,
    parsed: OnceLock<Vec<Option<Value>>>,
}

impl Drop for CodeChunk {
    fn drop(&mut self) {
        for terms in [&mut self.fixed, &mut self.scale, &mut self.err] {
            crate::crypto::wipe(bytemuck::cast_slice_mut(terms));
        }
        self.metadata.iter_mut().flatten().for_each(zeroize::Zeroize::zeroize);
    }
}

/// A head as it is stored: each row's sign code, extended code and
/// factors, one row after another, and the rows' metadata. What a write
/// copies a kept row's code from when it repacks the row into a new chunk
/// instead of encoding its vector again (most of an add's work otherwise):
/// a code depends only on its vector, its list's centroid and the
/// quantizer, none of which a write changes. (With F16 storage a row's
/// code stays that of the f32 vector first written, as it always was for
/// rows never repacked; training codes the stored, rounded vector.) Its
/// factors and metadata are wiped on drop.
pub(crate) struct StoredCodes {
    signs: Zeroizing<Vec<u8>>,
    ex: Zeroizing<Vec<u8>>,
    factors: Vec<Factors>,
    metadata: Vec<Option<String>>,
    pub places: UnitPlaces,
}

impl StoredCodes {
    pub fn decode(bytes: &[u8], shape: &CodeShape) -> Result<StoredCodes> {
        let mut r = Reader::new(bytes, "chunk head");
        let n = r.u32()? as usize;
        if n != shape.count {
            return Err(Error::integrity(format!("a chunk head holds {n} rows, the manifest says {}", shape.count)));
        }
        let (dim, p, bits) = (r.u32()? as usize, r.u8()?, r.u8()? as u32);
        r.raw(HEAD_HEADER_BYTES - 10)?;
        if dim != shape.dim || p != shape.precision as u8 || bits != shape.bits {
            return Err(Error::integrity("chunk head shape does not match the index"));
        }
        let too_long = || Error::integrity("chunk head length overflows");
        let signs = Zeroizing::new(r.raw(n.checked_mul(shape.sign_bytes).ok_or_else(too_long)?)?.to_vec());
        let ex = Zeroizing::new(r.raw(n.checked_mul(shape.ex_bytes).ok_or_else(too_long)?)?.to_vec());
        let factors = r.raw(n.checked_mul(Factors::BYTES).ok_or_else(too_long)?)?;
        let factors: Vec<Factors> = factors.chunks_exact(Factors::BYTES).map(Factors::read).collect();
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            metadata.push(match r.opt_bytes()? {
                None => None,
                Some(b) => Some(
                    String::from_utf8(b.to_vec()).map_err(|_| Error::integrity("chunk head metadata is not UTF-8"))?,
                ),
            });
        }
        let places = UnitPlaces::read(&mut r, shape)?;
        r.finish()?;
        Ok(StoredCodes { signs, ex, factors, metadata, places })
    }
}

impl Drop for StoredCodes {
    fn drop(&mut self) {
        wipe_factors(std::mem::take(&mut self.factors));
        self.metadata.iter_mut().flatten().for_each(zeroize::Zeroize::zeroize);
    }
}

impl RowMetadata for StoredCodes {
    fn metadata_at(&self, slot: usize) -> Option<&String> {
        self.metadata.get(slot)?.as_ref()
    }
}

/// Where a row's code can be copied from instead of encoded: the stored
/// codes of the chunk the row was in, and its slot there.
pub(crate) type KnownCode<'a> = Option<(&'a StoredCodes, usize)>;

impl RowMetadata for CodeChunk {
    fn metadata_at(&self, slot: usize) -> Option<&String> {
        self.metadata.get(slot)?.as_ref()
    }
}

impl CodeChunk {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Unit `u` of this head, if still held (see `units`).
    fn held_unit(&self, u: usize) -> Option<Arc<Chunk>> {
        self.units.lock().get(u)?.upgrade()
    }

    /// Starts loading what a scan reads first: the first block's codes and
    /// terms.
    fn prefetch_first_block(&self) {
        for terms in [&self.fixed, &self.scale, &self.err] {
            prefetch_line(terms.as_ptr().cast());
        }
        // A block's planes, up to 2 KiB (1 KiB at d = 128 with 2 bits).
        let block = self.packed.len() / (self.padded() / BLOCK).max(1);
        for line in self.packed[..block.min(2048)].chunks(64) {
            prefetch_line(line.as_ptr());
        }
    }

    /// Starts loading block `b`'s codes and terms (`block_bytes` of codes a
    /// block), if the head has it: a scan asks a few blocks ahead, as a
    /// head's four streams (its codes and three terms) are each too short
    /// for the hardware's prefetcher to get far ahead.
    #[inline]
    fn prefetch_block(&self, b: usize, block_bytes: usize) {
        let Some(codes) = self.packed.get(b * block_bytes..(b + 1) * block_bytes) else {
            return;
        };
        codes.chunks(64).for_each(|line| prefetch_line(line.as_ptr()));
        for terms in [&self.fixed, &self.scale, &self.err] {
            if let Some(lanes) = terms.get(b * BLOCK..(b + 1) * BLOCK) {
                lanes.chunks(16).for_each(|line| prefetch_line(line.as_ptr().cast()));
            }
        }
    }

    /// Starts loading the header of unit `u` (its reference counts and its
    /// `Chunk`, where its vectors' address is) if held: a hint, no effect on
    /// results, for a rerank a few candidates ahead of `held_unit`.
    fn prefetch_unit(&self, u: usize) {
        if let Some(unit) = self.units.lock().get(u) {
            prefetch_weak(unit, 2);
        }
    }

    fn hold_unit(&self, u: usize, unit: &Arc<Chunk>) {
        let mut units = self.units.lock();
        if units.len() <= u {
            units.resize(u + 1, Weak::new());
        }
        units[u] = Arc::downgrade(unit);
    }

    /// Rows, padded to whole blocks: the length of each term array.
    fn padded(&self) -> usize {
        self.scale.len()
    }

    pub fn parsed_metadata(&self, slot: usize) -> Option<&Value> {
        self.parsed.get_or_init(|| parse_metadata(&self.metadata)).get(slot)?.as_ref()
    }

    pub fn mem_size(&self) -> usize {
        let meta: usize = self.metadata.iter().flatten().map(String::len).sum();
        std::mem::size_of::<CodeChunk>()
            + self.packed.len()
            + (self.fixed.len() + self.scale.len() + self.err.len()) * 4
            + self.units.lock().len() * std::mem::size_of::<Weak<Chunk>>()
            + self.metadata.len() * std::mem::size_of::<Option<String>>()
            + meta * 3
    }

    /// The stored form of a head (`decode` reads it back): header, sign
    /// codes, extended codes, factors, metadata, where its units end.
    fn encode(
        (dim, bits, precision): (usize, u32, Precision),
        (signs, ex, factors): (&[u8], &[u8], &[Factors]),
        metadata: &[Option<String>],
        places: &UnitPlaces,
    ) -> Zeroizing<Vec<u8>> {
        let meta: usize = metadata.iter().map(|m| 1 + m.as_ref().map_or(0, |m| 4 + m.len())).sum();
        let ends = match places {
            UnitPlaces::Packed(ends) => ends.len() * 4,
            UnitPlaces::Apart => 0,
        };
        let mut w = Writer::with_capacity(
            HEAD_HEADER_BYTES + signs.len() + ex.len() + factors.len() * Factors::BYTES + meta + ends,
        );
        w.u32(factors.len() as u32);
        w.u32(dim as u32);
        w.u8(precision as u8);
        w.u8(bits as u8);
        w.raw(&[0u8; HEAD_HEADER_BYTES - 10]);
        w.raw(signs);
        w.raw(ex);
        let mut f = [0u8; Factors::BYTES];
        for factors in factors {
            factors.write(&mut f);
            w.raw(&f);
        }
        for m in metadata {
            w.opt_bytes(m.as_deref().map(str::as_bytes));
        }
        places.write(&mut w);
        Zeroizing::new(w.buf)
    }

    pub fn decode(bytes: &[u8], shape: &CodeShape) -> Result<CodeChunk> {
        let mut stored = StoredCodes::decode(bytes, shape)?;
        let metadata = std::mem::take(&mut stored.metadata);
        Ok(CodeChunk::assemble(
            (shape.bits, shape.sign_bytes, shape.ex_bytes),
            rows_per_unit(shape.dim, shape.precision),
            (&stored.signs, &stored.ex, &stored.factors),
            shape.centre,
            (metadata, std::mem::take(&mut stored.places)),
        ))
    }

    /// A head from its rows' codes, factors and metadata, with what is
    /// derived from them in memory (`(bits, sign bytes, ex bytes)` per code;
    /// `centre`: L2's rotated centroid of the head's list).
    fn assemble(
        (bits, sb, eb): (u32, usize, usize),
        rows_per_unit: usize,
        (signs, ex, factors): (&[u8], &[u8], &[Factors]),
        centre: Option<&[f32]>,
        (metadata, places): (Vec<Option<String>>, UnitPlaces),
    ) -> CodeChunk {
        let n = factors.len();
        let padded = n.div_ceil(BLOCK) * BLOCK;
        // Each at its final length at once (a reallocation would leave a copy unwiped).
        let terms = |f: &dyn Fn(usize, &Factors) -> f32| {
            let mut v = Vec::with_capacity(padded);
            v.extend(factors.iter().enumerate().map(|(s, x)| f(s, x)));
            v.resize(padded, 0.0);
            v
        };
        let scale = terms(&|s, f| ex_scale(bits, &signs[s * sb..(s + 1) * sb], &ex[s * eb..(s + 1) * eb], f));
        // A row's extended code is its planes one after another (eb bytes):
        // each plane of all rows first, then all planes packed.
        let ex_planes: Vec<Zeroizing<Vec<u8>>> = (0..eb / sb)
            .map(|b| Zeroizing::new(ex.chunks_exact(eb).flat_map(|row| &row[b * sb..(b + 1) * sb]).copied().collect()))
            .collect();
        let planes: Vec<&[u8]> = [signs].into_iter().chain(ex_planes.iter().map(|p| p.as_slice())).collect();
        let packed = Zeroizing::new(pack(&planes, sb, n));
        let fixed = match centre {
            None => Vec::new(),
            Some(c) => {
                let mut lut = QueryLut::default();
                lut.prepare(c, EPS0_99, n);
                let (plane, block_len) = (sb * BLOCK, sb * BLOCK * planes.len());
                let centred = |s: usize| {
                    let (block, t) = (&packed[(s / BLOCK) * block_len..][..block_len], s % BLOCK);
                    lut.packed_weighted(lut.packed_dot(&block[..plane], t), bits, &block[plane..], t)
                };
                terms(&|s, f| f.norm * f.norm + 2.0 * centred(s) * scale[s])
            }
        };
        CodeChunk {
            len: n,
            packed,
            fixed,
            scale,
            err: terms(&|_, f| f.ex_err()),
            units: no_units(n.div_ceil(rows_per_unit)),
            places,
            metadata: if metadata.iter().all(Option::is_none) { Vec::new() } else { metadata },
            parsed: OnceLock::new(),
        }
    }
}

/// Factors are a coarse copy of their vectors too: wiped once used.
fn wipe_factors(mut factors: Vec<Factors>) {
    factors.iter_mut().for_each(|f| *f = Factors::default());
    std::hint::black_box(&factors);
}

/// A head's `units` before any is held: `n` empty pointers (no allocation each).
fn no_units(n: usize) -> Mutex<Vec<Weak<Chunk>>> {
    Mutex::new((0..n).map(|_| Weak::new()).collect())
}

/// How one trained IVF_RABITQ index codes vectors: its quantizer and its
/// centroids rotated once (kept with the centroids, see `Centroids::coder`).
///
/// Its rotated centroids are centred on the centroids' mean μ: a row's
/// residual P·(x - c) is coded from P·(x - μ) - P·(c - μ), and an L2 scan's
/// one table of the query is of P·(q - μ) (see `CodeChunk::fixed`). So the
/// float rounding of the scan's differences of dots and the kernel's
/// quantization step scale with the spread of the data, not with its
/// distance from the origin: uncentred, L2 queries on data moved by 20,000
/// on every axis (d = 64) ran 2.6-4.6x slower and reranked 12% more bytes.
/// (Inner product and cosine tables are of q itself: their estimates are of
/// <r, q>, whose error grows with |q| whatever the centring.)
pub struct Coder {
    quantizer: Quantizer,
    metric: Metric,
    /// μ, the mean of the centroids (`dim` floats).
    mean: Zeroizing<Vec<f32>>,
    /// P·(c - μ) for every centroid c, `padded` floats each.
    rotated: WipedFloats,
    /// |P·(c - μ)|_1 for every centroid c (the rounding of dots with it).
    l1: Vec<f32>,
    /// The heads this coder's scans found, by chunk number (`Index::scan_head`).
    held: RwLock<Vec<Option<HeldHead>>>,
    /// Rows encoded (not copied) so far: what a test of copying counts.
    #[cfg(test)]
    encoded: std::sync::atomic::AtomicUsize,
}

/// A head a scan found, for the next scan of the same chunk to take
/// without the cache's lock and lookup (several hundred ns a head, and
/// a query scans tens to hundreds of heads), for as long as something else
/// (the cache, a query) holds it. It stays the cache's to count and evict:
/// once `TOUCH_AFTER_INSERTS` values went into the cache since it was last
/// marked used there, the next scan takes it from the cache again, so a head
/// in use keeps its place (and its protected segment) in a full cache.
struct HeldHead {
    stamp: Stamp,
    head: Weak<CodeChunk>,
    /// `Cache::inserts` when it was last taken from the cache.
    touched: u64,
}

/// See [`HeldHead`].
const TOUCH_AFTER_INSERTS: u64 = 64;

impl Coder {
    pub fn new(centroids: &Centroids, metric: Metric, bits: u32, (seed, padding): (u64, Padding)) -> Coder {
        let (dim, k) = (centroids.dim, centroids.k);
        let quantizer = Quantizer::new(dim, bits, seed, padding);
        let padded = quantizer.rotation().padded();
        let mean = Zeroizing::new(centroids.mean().to_vec());
        let mut rotated = WipedFloats(vec![0f32; k * padded]);
        for (c, out) in rotated.0.chunks_exact_mut(padded).enumerate() {
            quantizer.rotation().apply(centroids.centred(c), out);
        }
        let l1 = rotated.0.chunks_exact(padded).map(|c| c.iter().map(|x| x.abs()).sum()).collect();
        Coder {
            quantizer,
            metric,
            mean,
            rotated,
            l1,
            held: RwLock::new(Vec::new()),
            #[cfg(test)]
            encoded: Default::default(),
        }
    }

    fn padded(&self) -> usize {
        self.quantizer.rotation().padded()
    }

    /// The head of `meta` if a scan held it and it is still alive and
    /// fresh in the cache's order (`now`: `Cache::inserts`).
    fn held_head(&self, meta: &ChunkMeta, now: u64) -> Option<Arc<CodeChunk>> {
        let held = self.held.read();
        let h = held.get(meta.no as usize)?.as_ref()?;
        if h.stamp != meta.stamp || now.wrapping_sub(h.touched) > TOUCH_AFTER_INSERTS {
            return None;
        }
        h.head.upgrade()
    }

    /// Starts loading the held slots of `metas`' heads (see `search_codes`).
    fn prefetch_held<'a>(&self, metas: impl Iterator<Item = &'a ChunkMeta>) {
        let held = self.held.read();
        for meta in metas {
            if let Some(slot) = held.get(meta.no as usize) {
                prefetch_line((slot as *const Option<HeldHead>).cast());
            }
        }
    }

    /// Starts loading the reference count and fields of `meta`'s held head.
    fn prefetch_held_head(&self, meta: &ChunkMeta) {
        if let Some(Some(h)) = self.held.read().get(meta.no as usize) {
            prefetch_weak(&h.head, 4);
        }
    }

    fn hold_head(&self, meta: &ChunkMeta, head: &Arc<CodeChunk>, now: u64) {
        let mut held = self.held.write();
        let no = meta.no as usize;
        if held.len() <= no {
            held.resize_with(no + 1, || None);
        }
        held[no] = Some(HeldHead { stamp: meta.stamp, head: Arc::downgrade(head), touched: now });
    }

    /// P·(c - μ) for `list`'s centroid c.
    fn rotated_centroid(&self, list: u32) -> &[f32] {
        let p = self.padded();
        &self.rotated.0[list as usize * p..(list as usize + 1) * p]
    }

    /// What an item of `bytes` encoded bytes, `metadata_len` of them its
    /// metadata, costs a chunk of this layout (`Packer`): charged half its
    /// bytes against `CHUNK_TARGET_BYTES` (the size the store keeps tight),
    /// or its row of the head if that is more; its head row is what the
    /// chunk's largest object, the head, grows by.
    ///
    /// Such a chunk is never stored whole (its vectors go to ~4 KiB units),
    /// and larger ones scan faster: a query scores a head 32 rows at a time,
    /// so a head of 41 rows (a full 64 KiB chunk at d = 384, and MiniLM's
    /// lists end in partial ones) costs as much as one of 64, plus the fixed
    /// work per head. Twice the rows halves both (and `Packer` may add up to
    /// a block more). Not more, because a delete or overwrite reseals its
    /// item's whole chunk and training holds an open chunk per list. The
    /// head's own bound keeps it within the target when metadata or wide
    /// codes make rows large.
    pub fn packing(&self, bytes: usize, metadata_len: Option<usize>) -> Packing {
        let head = self.quantizer.sign_bytes()
            + self.quantizer.ex_bytes()
            + Factors::BYTES
            + 1
            + metadata_len.map_or(0, |m| 4 + m);
        Packing { charge: bytes.div_ceil(2).max(head), head }
    }

    /// The shape of a head of `count` rows in `list` (`packed`: with its units' places).
    pub fn shape(&self, dim: usize, precision: Precision, (count, list): (usize, u32), packed: bool) -> CodeShape<'_> {
        CodeShape {
            packed,
            dim,
            precision,
            bits: self.quantizer.bits(),
            sign_bytes: self.quantizer.sign_bytes(),
            ex_bytes: self.quantizer.ex_bytes(),
            count,
            centre: self.centre(list),
        }
    }

    /// L2: `list`'s centred rotated centroid, which its heads' scores are centred on
    /// (`CodeChunk::fixed`); `None` for the other metrics.
    fn centre(&self, list: u32) -> Option<&[f32]> {
        matches!(self.metric, Metric::Euclidean | Metric::SquaredEuclidean).then(|| self.rotated_centroid(list))
    }

    /// The head of `chunk`, a chunk of `list` whose units are at `places`:
    /// each row's residual to the list's centroid (cosine: of the unit
    /// vector), rotated and coded; and its stored form.
    fn code(
        &self,
        (list, chunk): (u32, &Chunk),
        known: &[KnownCode<'_>],
        precision: Precision,
        places: UnitPlaces,
    ) -> (CodeChunk, Zeroizing<Vec<u8>>) {
        let (q, padded) = (&self.quantizer, self.padded());
        let (sb, eb) = (q.sign_bytes(), q.ex_bytes());
        let n = chunk.len();
        let mut signs = Zeroizing::new(vec![0u8; n * sb]);
        let mut ex = Zeroizing::new(vec![0u8; n * eb]);
        let mut factors = Vec::with_capacity(n);
        let mut rotated = WipedFloats(vec![0f32; padded]);
        let mut centred = WipedFloats(vec![0f32; chunk.dim]);
        let c = self.rotated_centroid(list);
        for s in 0..n {
            let (sign, extended) = (&mut signs[s * sb..(s + 1) * sb], &mut ex[s * eb..(s + 1) * eb]);
            if let Some(&Some((stored, slot))) = known.get(s) {
                sign.copy_from_slice(&stored.signs[slot * sb..(slot + 1) * sb]);
                extended.copy_from_slice(&stored.ex[slot * eb..(slot + 1) * eb]);
                factors.push(stored.factors[slot]);
                continue;
            }
            #[cfg(test)]
            self.encoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let x = chunk.vector(s);
            let scale = if self.metric == Metric::Cosine { chunk.inv_norms[s] } else { 1.0 };
            for ((y, &x), &m) in centred.0.iter_mut().zip(x).zip(self.mean.iter()) {
                *y = x * scale - m;
            }
            q.rotation().apply(&centred.0, &mut rotated.0);
            for (r, &c) in rotated.0.iter_mut().zip(c) {
                *r -= c;
            }
            factors.push(q.encode(&rotated.0, sign, extended));
        }
        let plain =
            CodeChunk::encode((chunk.dim, q.bits(), precision), (&signs, &ex, &factors), &chunk.metadata, &places);
        let per_unit = rows_per_unit(chunk.dim, precision);
        let head = CodeChunk::assemble(
            (q.bits(), sb, eb),
            per_unit,
            (&signs, &ex, &factors),
            self.centre(list),
            (chunk.metadata.clone(), places),
        );
        wipe_factors(factors);
        (head, plain)
    }

    /// The plaintexts to seal for `chunk`: its head and its units, to be
    /// packed (or, `packed` false, stored apart). Row s's code is copied
    /// from `known[s]` where that names one (a shorter `known` leaves the
    /// rest to encode).
    pub fn encode(
        &self,
        list: u32,
        chunk: &Chunk,
        known: &[KnownCode<'_>],
        (precision, packed): (Precision, bool),
    ) -> Encoded {
        let mut units = Vec::new();
        let mut at = 0;
        for (_, rows) in units_of(chunk.len(), chunk.dim, precision) {
            let mut unit = ChunkBuilder::with_capacity(chunk.dim, rows);
            (at..at + rows).for_each(|s| unit.push(chunk.vector(s), chunk.ids[s].clone(), None));
            units.push(unit.finish().encode(precision));
            at += rows;
        }
        let places = if packed { UnitPlaces::packed(&units) } else { UnitPlaces::Apart };
        let (head, plain) = self.code((list, chunk), known, precision, places);
        Encoded { head: Arc::new(head), plain, units }
    }
}

/// A coded chunk ready to seal: the decrypted head (for the cache), its
/// plaintext, and each unit's plaintext in order (sealed, they are packed
/// at the places the head names).
pub struct Encoded {
    pub head: Arc<CodeChunk>,
    pub plain: Zeroizing<Vec<u8>>,
    pub units: Vec<Zeroizing<Vec<u8>>>,
}

/// One query's view of one list: what turns an estimate of <r, v> into a
/// score and a bound (the table of q' is in the query's `Scratch`).
#[derive(Clone, Copy)]
struct ListQuery {
    /// Score = base + sign * <r, v>, where r is a row's coded residual; v
    /// is q - c for L2, whose scan takes <r, q> from the query's table of
    /// q' and the rest from the row's `CodeChunk::fixed`.
    base: f32,
    sign: f32,
    /// Of the table of v (`QueryLut::bound_scale`), times |sign|.
    bound_scale: f32,
    /// L2: what rounding can add to a sign dot with q' - c' taken as a
    /// difference of dots (`Quantizer::rounding`), times |sign|.
    rounding: f32,
}

impl Coder {
    /// The rotated query into `out`, once per query: for L2 of q - μ (the
    /// table then stands for every list, see `CodeChunk::fixed`), for
    /// inner product of q, for cosine of the unit query.
    fn rotate_query(&self, q: &[f32], inv_q: f32, centred: &mut Vec<f32>, out: &mut Vec<f32>) {
        out.resize(self.padded(), 0.0);
        match self.metric {
            Metric::Euclidean | Metric::SquaredEuclidean => {
                centred.clear();
                kmeans::centre_into(q, &self.mean, centred);
                self.quantizer.rotation().apply(centred, out);
            }
            Metric::InnerProduct => self.quantizer.rotation().apply(q, out),
            Metric::Cosine => {
                self.quantizer.rotation().apply(q, out);
                out.iter_mut().for_each(|x| *x *= inv_q);
            }
        }
    }

    /// The score of a row at the list's centroid (r = 0): the estimate
    /// every row of the list starts from, and which lists are nearest.
    /// `lut` is the query's table (of q'), `q_l1` = |q'|_1.
    fn list_query(
        &self,
        centroids: &Centroids,
        list: u32,
        qv: (&[f32], f32),
        rotated_q: &[f32],
        lut: &QueryLut,
        q_l1: f32,
    ) -> ListQuery {
        let (q, inv_q) = qv;
        match self.metric {
            // |v|^2 with v = q - c, rotated.
            Metric::Euclidean | Metric::SquaredEuclidean => {
                // (In lanes: a plain sum of floats does not vectorise.)
                let base = distance::l2_sq(rotated_q, self.rotated_centroid(list));
                ListQuery {
                    base,
                    sign: -2.0,
                    bound_scale: 2.0 * self.quantizer.bound_scale(base.sqrt()),
                    rounding: 2.0 * self.quantizer.rounding(q_l1 + self.l1[list as usize]),
                }
            }
            // -<x, q> = -<c, q> - <r, q>
            Metric::InnerProduct => ListQuery {
                base: -distance::dot(centroids.row(list as usize), q),
                sign: -1.0,
                bound_scale: lut.bound_scale(),
                rounding: 0.0,
            },
            // 1 - <x/|x|, q/|q|> = 1 - <c, q/|q|> - <r, q/|q|>
            Metric::Cosine => ListQuery {
                base: 1.0 - distance::dot(centroids.row(list as usize), q) * inv_q,
                sign: -1.0,
                bound_scale: lut.bound_scale(),
                rounding: 0.0,
            },
        }
    }
}

/// One query's candidates for the rerank.
enum Shortlist {
    /// The `rerank_mult × top_k` best estimates.
    Best(TopK),
    /// Automatic: the k best upper bounds, and every candidate whose lower
    /// bound was below the k-th of them when it was seen.
    Doubtful { upper: TopK, doubtful: Vec<Candidate>, cap: usize },
}

impl Shortlist {
    fn new(k: usize, rerank_mult: u32) -> Shortlist {
        match rerank_mult {
            0 => Shortlist::Doubtful { upper: TopK::new(k), doubtful: Vec::new(), cap: k * MAX_DOUBTFUL_PER_ROW },
            r => Shortlist::Best(TopK::new(k * r as usize)),
        }
    }

    /// Whether candidates are kept by their lower bounds (automatic rerank).
    fn is_doubtful(&self) -> bool {
        matches!(self, Shortlist::Doubtful { .. })
    }

    /// Below this a candidate's lower bound must be to be worth refining.
    fn gate(&self) -> f32 {
        match self {
            Shortlist::Best(top) => top.threshold(),
            Shortlist::Doubtful { upper, .. } => upper.threshold(),
        }
    }

    fn offer(&mut self, at: u64, estimate: f32, bound: f32) {
        match self {
            Shortlist::Best(top) => {
                top.push(Candidate { score: estimate, at });
            }
            Shortlist::Doubtful { upper, doubtful, cap } => {
                upper.push(Candidate { score: estimate + bound, at });
                // Kept unless ruled out: a NaN bound rules nothing out.
                let ruled_out = estimate - bound >= upper.threshold();
                if !ruled_out {
                    let lower = estimate - bound;
                    doubtful.push(Candidate { score: lower, at });
                    if doubtful.len() >= 2 * *cap {
                        Self::prune(upper, doubtful, *cap);
                    }
                }
            }
        }
    }

    /// Drops what the k-th upper bound rules out, and past `cap` the
    /// candidates with the largest lower bounds.
    fn prune(upper: &TopK, doubtful: &mut Vec<Candidate>, cap: usize) {
        let t = upper.threshold();
        doubtful.retain(|c| {
            let ruled_out = c.score >= t;
            !ruled_out
        });
        if doubtful.len() > cap {
            doubtful.select_nth_unstable(cap);
            doubtful.truncate(cap);
        }
    }

    /// The candidates to rerank, most promising first, and whether the
    /// rerank may stop at the first whose (lower bound) score cannot beat
    /// the k-th exact distance.
    fn finish(self) -> (Vec<Candidate>, bool) {
        match self {
            Shortlist::Best(top) => {
                let mut v = top.into_vec();
                v.sort_unstable();
                (v, false)
            }
            Shortlist::Doubtful { upper, mut doubtful, cap } => {
                Self::prune(&upper, &mut doubtful, cap);
                doubtful.sort_unstable();
                (doubtful, true)
            }
        }
    }
}

/// A worker's buffers, reused from query to query.
#[derive(Default)]
struct Scratch {
    /// The query less the centroids' mean (L2), then rotated.
    centred: Vec<f32>,
    rotated: Vec<f32>,
    lut: QueryLut,
    /// The query's lists: (its view of the list, work item).
    order: Vec<(ListQuery, u32)>,
}

/// The shape of chunk `meta`'s head in `m`.
fn head_shape<'c>(m: &Manifest, coder: &'c Coder, meta: &ChunkMeta) -> CodeShape<'c> {
    let (dim, precision) = (m.config.dimension as usize, m.config.precision);
    coder.shape(dim, precision, (meta.count as usize, meta.list), m.units_packed(meta))
}

impl Index {
    /// The coder of a trained IVF_RABITQ state (`None`: stored flat).
    pub(super) fn coder(&self, m: &Manifest) -> Result<Option<(Arc<Centroids>, Arc<Coder>)>> {
        if !m.coded() {
            return Ok(None);
        }
        let centroids = self.centroids(m)?;
        let coder = centroids.coder(m.config.metric, m.config.quantizer_bits, (m.quantizer_seed, m.quantizer_padding));
        Ok(Some((centroids, coder)))
    }

    pub(super) fn head(
        &self,
        m: &Manifest,
        coder: &Coder,
        meta: &ChunkMeta,
        pre: Option<&Prefetched>,
    ) -> Result<Arc<CodeChunk>> {
        let shape = head_shape(m, coder, meta);
        self.load_object(m, Obj::Chunk(meta.no), &meta.stamp, &shape, pre)
    }

    /// Chunk `meta`'s head as stored, from `pre` or the store (never the
    /// cache, which holds heads only in their scanned form): for a write
    /// that repacks or reseals its rows.
    pub(super) fn stored_codes(
        &self,
        m: &Manifest,
        coder: &Coder,
        meta: &ChunkMeta,
        pre: Option<&Prefetched>,
    ) -> Result<Arc<StoredCodes>> {
        let shape = head_shape(m, coder, meta);
        self.load_object_with(m, Obj::Chunk(meta.no), &meta.stamp, &shape, pre, false)
    }

    /// What a write that rewrites the chunks `metas` reads of them, in one
    /// store call where each read is a round trip (`Index::prefetch`, at
    /// most `PREFETCH_OBJECTS`; the rest is read when used): a coded
    /// chunk's head, whatever the cache holds (`stored_codes`), and its
    /// unit pack (or units); a chunk stored whole.
    pub(super) fn prefetch_rewrites<'s>(
        &self,
        m: &Manifest,
        coder: Option<&Coder>,
        metas: impl Iterator<Item = &'s ChunkMeta>,
    ) -> Result<Prefetched> {
        let coded = coder.is_some();
        let wanted = metas.flat_map(|meta| {
            let units = coded.then(|| stored_units(m, meta).map(move |(obj, _)| (obj, &meta.stamp)));
            std::iter::once((Obj::Chunk(meta.no), &meta.stamp)).chain(units.into_iter().flatten())
        });
        self.prefetch_where(wanted, |obj| !coded || !matches!(obj, Obj::Chunk(_)))
    }

    /// `head` for a scan: through the coder's held heads (`HeldHead`) when it can.
    fn scan_head(
        &self,
        m: &Manifest,
        coder: &Coder,
        meta: &ChunkMeta,
        pre: Option<&Prefetched>,
    ) -> Result<Arc<CodeChunk>> {
        let now = self.env.cache.inserts();
        if let Some(head) = coder.held_head(meta, now) {
            return Ok(head);
        }
        let head = self.head(m, coder, meta, pre)?;
        coder.hold_head(meta, &head, now);
        Ok(head)
    }

    /// Unit `u` (of `rows` rows) of chunk `meta`, whose units are at
    /// `places`: from the cache, `pre`, or the store (packed: its bytes of
    /// the pack, or of the whole pack if `pre` holds that).
    pub(super) fn unit(
        &self,
        m: &Manifest,
        (meta, places): (&ChunkMeta, &UnitPlaces),
        (u, rows): (u32, usize),
        keep: bool,
        pre: Option<&Prefetched>,
    ) -> Result<Arc<Chunk>> {
        let (obj, stamp) = unit_obj(meta, u);
        let shape = ChunkShape { dim: m.config.dimension as usize, precision: m.config.precision, count: rows };
        let Some((start, len)) = places.part(u) else {
            return self.load_object_with(m, obj, &stamp, &shape, pre, keep);
        };
        let (pack, _) = pack_obj(meta);
        // A pack that is there but too short for the part is no lost race
        // (`Error::Missing`): the part is missing only if the pack is.
        let short = || Error::integrity(format!("unit {u} of chunk {} is not where its head says", meta.no));
        self.load_object_from(m, (obj, &stamp), &shape, (pre, keep), || match pre.and_then(|p| p.get(&pack)) {
            Some(whole) => Ok(Some(part_of(whole, start, len).ok_or_else(short)?.to_vec())),
            None => {
                let key = self.store_key(pack, &stamp);
                match self.env.store.get_part(&key, start, len)? {
                    None if self.env.store.get(&key)?.is_some() => Err(short()),
                    part => Ok(part),
                }
            }
        })
    }

    /// A coded chunk whole again (head and units), for `get` and training;
    /// `keep = false` leaves its units out of the cache.
    pub(super) fn assembled_chunk(&self, m: &Manifest, coder: &Coder, meta: &ChunkMeta, keep: bool) -> Result<Chunk> {
        let head = self.head(m, coder, meta, None)?;
        self.units_with(m, meta, (&*head, &head.places), keep, None)
    }

    /// A coded chunk whole again for a write that repacks or reseals it,
    /// from its head as stored (whose codes the write copies), its units
    /// left out of the cache (the write replaces them).
    pub(super) fn chunk_to_rewrite(
        &self,
        m: &Manifest,
        meta: &ChunkMeta,
        stored: &StoredCodes,
        pre: Option<&Prefetched>,
    ) -> Result<Chunk> {
        self.units_with(m, meta, (stored, &stored.places), false, pre)
    }

    /// Chunk `meta`'s units as one chunk, each row with its metadata from
    /// `head`. A pack is read whole, once, if any of its units is not cached.
    fn units_with(
        &self,
        m: &Manifest,
        meta: &ChunkMeta,
        (head, places): (&impl RowMetadata, &UnitPlaces),
        keep: bool,
        pre: Option<&Prefetched>,
    ) -> Result<Chunk> {
        let (dim, precision) = (m.config.dimension as usize, m.config.precision);
        let mut read = Prefetched::default();
        let pre = match places {
            UnitPlaces::Apart => pre,
            UnitPlaces::Packed(_) => {
                let (obj, stamp) = pack_obj(meta);
                let cached = |u| self.env.cache.contains(&self.cache_key(unit_obj(meta, u).0, &stamp));
                let whole = match pre.and_then(|p| p.get(&obj)) {
                    Some(whole) => Some(whole),
                    None if units_of(meta.count as usize, dim, precision).all(|(u, _)| cached(u)) => None,
                    None => {
                        let whole = self.env.store.get(&self.store_key(obj, &stamp))?;
                        read.insert(obj, whole.ok_or_else(|| self.missing(obj))?);
                        read.get(&obj)
                    }
                };
                // Bytes beyond its units would never be read; still, not what was sealed.
                if whole.is_some_and(|whole| Some(whole.len()) != places.pack_len()) {
                    return Err(Error::integrity(format!("the units of chunk {} are not as its head says", meta.no)));
                }
                if read.get(&obj).is_some() {
                    Some(&read)
                } else {
                    pre
                }
            }
        };
        let mut rows = ChunkBuilder::with_capacity(dim, meta.count as usize);
        let mut slot = 0;
        for (u, n) in units_of(meta.count as usize, dim, precision) {
            let unit = self.unit(m, (meta, places), (u, n), keep, pre)?;
            for s in 0..n {
                rows.push(unit.vector(s), unit.ids[s].clone(), head.metadata_at(slot).cloned());
                slot += 1;
            }
        }
        Ok(rows.finish())
    }

    /// The coded search of `work` (see the module's comment). Queries run
    /// in parallel, each scanning its lists nearest first: the k-th upper
    /// bound, which decides what is worth refining, tightens soonest so.
    pub(super) fn search_codes(
        &self,
        m: &Manifest,
        (centroids, coder): (&Centroids, &Coder),
        work: &[Work<'_>],
        q: &Queries<'_>,
        rerank_mult: u32,
    ) -> Result<Vec<Vec<Hit>>> {
        if q.n == 0 {
            return Ok(Vec::new());
        }
        // Where each read is a round trip (PostgreSQL), the heads not cached
        // come in one call.
        let pre = self.prefetch(work.iter().flat_map(|w| w.chunks.iter().map(|c| (Obj::Chunk(c.no), &c.stamp))))?;
        let mut items_of: Vec<Vec<u32>> = vec![Vec::new(); q.n];
        for (i, w) in work.iter().enumerate().filter(|(_, w)| !w.chunks.is_empty()) {
            match &w.queries {
                None => items_of.iter_mut().for_each(|v| v.push(i as u32)),
                Some(qs) => qs.iter().for_each(|&qi| items_of[qi as usize].push(i as u32)),
            }
        }
        // The filter is the same for every query: evaluated once per row,
        // by the first query to scan the chunk.
        let first_mask: Vec<usize> = work
            .iter()
            .scan(0, |at, w| {
                let first = *at;
                *at += w.chunks.len();
                Some(first)
            })
            .collect();
        let masks: Vec<OnceLock<Vec<bool>>> = match q.filter {
            None => Vec::new(),
            Some(_) => (0..work.iter().map(|w| w.chunks.len()).sum()).map(|_| OnceLock::new()).collect(),
        };
        let codes_of = |i: u32| work[i as usize].chunks.iter().map(|c| c.count as usize).sum::<usize>();
        let search = |scratch: &mut Scratch, qi: usize| -> Result<Vec<Hit>> {
            let (qv, inv_q) = (q.row(qi), q.inv_norm(qi));
            coder.rotate_query(qv, inv_q, &mut scratch.centred, &mut scratch.rotated);
            // One table for all the query's lists (for L2, see `CodeChunk::fixed`).
            let codes = items_of[qi].iter().map(|&i| codes_of(i)).sum();
            coder.quantizer.prepare_into(&scratch.rotated, EPS0_99, codes, &mut scratch.lut);
            let q_l1 = scratch.rotated.iter().map(|x| x.abs()).sum();
            let mut order = std::mem::take(&mut scratch.order);
            order.clear();
            order.extend(items_of[qi].iter().map(|&i| {
                let list = work[i as usize].chunks[0].list;
                (coder.list_query(centroids, list, (qv, inv_q), &scratch.rotated, &scratch.lut, q_l1), i)
            }));
            order.sort_unstable_by(|a, b| a.0.base.total_cmp(&b.0.base));
            let mut list = Shortlist::new(q.k, rerank_mult);
            let mut heads: Vec<(u32, Arc<CodeChunk>)> = Vec::new();
            // The heads in scan order. Those of a large index are in DRAM:
            // starting one waited on three dependent cache misses (its held
            // slot, its reference count, its first block's terms), half the
            // scan loop's time on 1M × 384. So the slots load now, each
            // head's count two heads ahead, its first block one ahead.
            let metas: Vec<(&ListQuery, usize, usize, &ChunkMeta)> = order
                .iter()
                .flat_map(|(lq, i)| {
                    let i = *i as usize;
                    work[i].chunks.iter().enumerate().map(move |(c, meta)| (lq, i, c, *meta))
                })
                .collect();
            coder.prefetch_held(metas.iter().map(|m| m.3));
            let mut ahead: Option<Arc<CodeChunk>> = None;
            for (j, &(lq, i, c, meta)) in metas.iter().enumerate() {
                let head = match ahead.take() {
                    Some(head) => head,
                    None => self.scan_head(m, coder, meta, Some(&pre))?,
                };
                if let Some(&(_, _, _, next)) = metas.get(j + 2) {
                    coder.prefetch_held_head(next);
                }
                if let Some(&(_, _, _, next)) = metas.get(j + 1) {
                    ahead = coder.held_head(next, self.env.cache.inserts());
                    ahead.as_deref().inspect(|head| head.prefetch_first_block());
                }
                let mask = q.filter.map(|_| {
                    masks[first_mask[i] + c]
                        .get_or_init(|| q.mask(meta.no, head.len(), |s| head.parsed_metadata(s)).unwrap_or_default())
                        .as_slice()
                });
                if mask.is_some_and(|m| !m.contains(&true)) {
                    continue;
                }
                let scan = Scan { coder, lut: &scratch.lut, lq, mask };
                scan.head(&mut list, meta.no, &head);
                heads.push((meta.no, head));
            }
            drop(metas);
            scratch.order = order;
            heads.sort_unstable_by_key(|h| h.0);
            self.rerank(m, q, qi, list, &heads)
        };
        // A batch's queries run in the order of the lists they probe, so
        // that queries probing the same lists run one after another on one
        // thread and find the heads the first loaded still in the CPU's
        // caches (a batch of 1,000 on 1M × 128 ran ~8% faster at 1 thread,
        // 29-48% at 2; docs/BENCHMARKS.md, "0.13.2").
        let mut by_lists: Vec<usize> = (0..q.n).collect();
        by_lists.sort_by(|&a, &b| items_of[a].cmp(&items_of[b]));
        let hits: Vec<Result<Vec<Hit>>> = if q.n == 1 || self.env.pool.current_num_threads() == 1 {
            let mut scratch = Scratch::default();
            by_lists.iter().map(|&qi| search(&mut scratch, qi)).collect()
        } else {
            self.env.pool.install(|| by_lists.par_iter().map_init(Scratch::default, |s, &qi| search(s, qi)).collect())
        };
        let mut out: Vec<Vec<Hit>> = (0..q.n).map(|_| Vec::new()).collect();
        for (&qi, hits) in by_lists.iter().zip(hits) {
            out[qi] = hits?;
        }
        Ok(out)
    }

    /// The second stage for query `qi`: exact distances for its candidates,
    /// read from their units, best k returned with their rows (metadata
    /// from `heads`, the heads the query scanned).
    fn rerank(
        &self,
        m: &Manifest,
        q: &Queries<'_>,
        qi: usize,
        list: Shortlist,
        heads: &[(u32, Arc<CodeChunk>)], // sorted by chunk number
    ) -> Result<Vec<Hit>> {
        let (dim, precision) = (m.config.dimension as usize, m.config.precision);
        let per = rows_per_unit(dim, precision);
        let (candidates, may_stop) = list.finish();
        let mut exact = TopK::new(q.k);
        // foldhash: SipHash (the default) cost more than the rest of a cached candidate's lookup.
        let mut units: foldhash::HashMap<(u32, u32), Arc<Chunk>> =
            HashMap::with_capacity_and_hasher(candidates.len().min(256), Default::default());
        let (qv, inv_q) = (q.row(qi), q.inv_norm(qi));
        // Every candidate comes from a head the query scanned.
        let head_of = |no: u32| &heads[heads.binary_search_by_key(&no, |h| h.0).expect("a scanned head")].1;
        let place = |c: &Candidate| place_of(c, per);
        // The sealed units read ahead of their use where reads are round
        // trips (see `read_units_ahead`).
        let (mut ahead, batched) = (Prefetched::default(), self.env.store.prefers_batched_reads());
        for (i, c) in candidates.iter().enumerate() {
            if may_stop && c.score >= exact.threshold() {
                break;
            }
            // A candidate's vector is rarely in the CPU's cache: the load of
            // the one AHEAD candidates on (if its unit is at hand) starts now,
            // to overlap with these distances instead of stalling its own.
            // And the header of its unit (through which its vector is found)
            // from twice as far ahead.
            if let Some(next) = candidates.get(i + 2 * RERANK_AHEAD) {
                let (no, u, _) = place(next);
                head_of(no).prefetch_unit(u as usize);
            }
            // Each unit is taken from its head once (a lock and a reference
            // count: atomic operations, each of which waits for every load
            // before it) and then borrowed from `units`.
            if let Some(next) = candidates.get(i + RERANK_AHEAD) {
                let (no, u, s) = place(next);
                let unit = match units.entry((no, u)) {
                    MapEntry::Occupied(held) => Some(held.into_mut()),
                    MapEntry::Vacant(slot) => head_of(no).held_unit(u as usize).map(|unit| slot.insert(unit)),
                };
                if let Some(unit) = unit {
                    prefetch(unit.vector(s));
                }
            }
            let (no, u, s) = place(c);
            if !units.contains_key(&(no, u)) {
                let head = head_of(no);
                let unit = match head.held_unit(u as usize) {
                    Some(unit) => unit,
                    None => {
                        let meta = m.chunk(no).ok_or_else(|| Error::integrity("a candidate names a missing chunk"))?;
                        if batched && !ahead.holds(&unit_obj(meta, u).0) {
                            let bound = may_stop.then(|| exact.threshold());
                            // This candidate's unit is read whatever the
                            // predicate says: another query's thread may
                            // hold it now and drop it before it is used.
                            let more = self.read_units_ahead(m, &candidates[i..], (bound, per), head_of, |n, v| {
                                (n, v) != (no, u)
                                    && (units.contains_key(&(n, v))
                                        || head_of(n).held_unit(v as usize).is_some()
                                        || m.chunk(n).is_some_and(|meta| ahead.holds(&unit_obj(meta, v).0)))
                            })?;
                            ahead.absorb(more);
                        }
                        let rows = per.min(meta.count as usize - u as usize * per);
                        let unit = self.unit(m, (meta, &head.places), (u, rows), true, Some(&ahead))?;
                        head.hold_unit(u as usize, &unit);
                        unit
                    }
                };
                units.insert((no, u), unit);
            }
            let unit = &units[&(no, u)];
            // A row's norm is another cache miss, read only where it counts.
            let inv_x = if matches!(q.metric, Metric::Cosine) { unit.inv_norms[s] } else { 0.0 };
            let score = distance::score(q.metric, qv, unit.vector(s), inv_q, inv_x);
            exact.push(Candidate { score, at: c.at });
        }
        let mut top = exact.into_vec();
        top.sort_unstable();
        Ok(top
            .into_iter()
            .map(|c| {
                let (no, slot) = ((c.at >> 32) as u32, (c.at & 0xffff_ffff) as usize);
                let (unit, head) = (units[&(no, (slot / per) as u32)].clone(), head_of(no).clone());
                Hit { distance: q.metric.finish(c.score), row: Row::in_unit(unit, slot % per, head, slot) }
            })
            .collect())
    }
}

/// How many blocks ahead of its scan a head's codes and terms are loaded.
const SCAN_AHEAD_BLOCKS: usize = 2;

/// How many candidates ahead a rerank starts loading vectors.
const RERANK_AHEAD: usize = 4;

/// The most units a rerank reads from the store in one call.
const UNITS_READ_AHEAD: usize = 32;

/// Candidate `c`'s chunk, unit and slot in that unit (of `per` rows).
fn place_of(c: &Candidate, per: usize) -> (u32, u32, usize) {
    let (no, slot) = ((c.at >> 32) as u32, (c.at & 0xffff_ffff) as usize);
    (no, (slot / per) as u32, slot % per)
}

impl Index {
    /// The sealed units of the candidates `rest` begins with, read in one
    /// call where each read is a round trip (PostgreSQL; see `prefetch`):
    /// up to [`UNITS_READ_AHEAD`] distinct units the cache does not hold
    /// and `at_hand(chunk, unit)` does not name (held, or read ahead
    /// already), of the candidates that may still enter the top k (a lower
    /// bound under `bound`, the current k-th exact score, when the rerank
    /// may stop early: the bound only tightens, so the rest are never read).
    /// Packed units are read as parts of their packs, at the places their
    /// heads (`head_of`) name.
    fn read_units_ahead<'h>(
        &self,
        m: &Manifest,
        rest: &[Candidate],
        (bound, per): (Option<f32>, usize),
        head_of: impl Fn(u32) -> &'h Arc<CodeChunk>,
        at_hand: impl Fn(u32, u32) -> bool,
    ) -> Result<Prefetched> {
        let mut seen = foldhash::HashSet::default();
        let mut apart: Vec<(Obj, Stamp)> = Vec::new();
        let mut parts: Vec<(Obj, ValuePart)> = Vec::new();
        for c in rest.iter().take_while(|c| bound.is_none_or(|t| c.score < t)) {
            let (no, u, _) = place_of(c, per);
            if !seen.insert((no, u)) || at_hand(no, u) {
                continue;
            }
            let meta = m.chunk(no).ok_or_else(|| Error::integrity("a candidate names a missing chunk"))?;
            let (unit, stamp) = unit_obj(meta, u);
            match head_of(no).places.part(u) {
                None => apart.push((unit, stamp)),
                Some(_) if self.env.cache.contains(&self.cache_key(unit, &stamp)) => {}
                Some((start, len)) => parts.push((unit, (self.store_key(pack_obj(meta).0, &stamp), start, len))),
            }
            if apart.len() + parts.len() == UNITS_READ_AHEAD {
                break;
            }
        }
        let mut read = self.prefetch(apart.iter().map(|(obj, stamp)| (*obj, stamp)))?;
        if !parts.is_empty() && self.env.store.prefers_batched_reads() {
            let (units, parts): (Vec<Obj>, Vec<_>) = parts.into_iter().unzip();
            for (unit, sealed) in units.into_iter().zip(self.env.store.get_parts(&parts)?) {
                sealed.into_iter().for_each(|sealed| read.insert(unit, sealed));
            }
        }
        Ok(read)
    }
}

/// Starts loading `v` into the CPU's cache (a hint: no effect on results).
#[inline]
fn prefetch(v: &[f32]) {
    for line in v.chunks(16) {
        prefetch_line(line.as_ptr().cast());
    }
}

/// Starts loading the first `lines` cache lines of what `w` points at, its
/// reference counts (16 bytes before the value) first. A Weak's pointer is
/// valid or dangling, and a prefetch faults on neither.
#[inline]
fn prefetch_weak<T>(w: &Weak<T>, lines: usize) {
    let at = w.as_ptr().cast::<u8>().wrapping_sub(16);
    for line in 0..lines {
        prefetch_line(at.wrapping_add(64 * line));
    }
}

/// Starts loading the cache line at `at`, whatever the address.
#[inline]
fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of x86_64, and a prefetch neither faults nor
        // changes memory, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// One query's scan of one list's heads.
struct Scan<'a> {
    coder: &'a Coder,
    lut: &'a QueryLut,
    lq: &'a ListQuery,
    mask: Option<&'a [bool]>,
}

impl Scan<'_> {
    /// Offers every row of `head` that passes the filter to the query's
    /// shortlist, with its estimate and bound (`CodeChunk`).
    ///
    /// A block of rows is first scored by the FastScan kernel on the
    /// quantized tables (`block_sums`), every plane at once.
    ///
    /// * With `rerank_mult` (the shortlist keeps the best estimates), those
    ///   scores are the estimates offered where the kernel's worst error
    ///   (each table entry within half a step, 1/255 of the widest table's
    ///   range) is at most `KERNEL_ERROR_SHARE` of the row's bound: the
    ///   float tables' lookups for each row the kernel passed cost more
    ///   than the kernel, and recall on minilm-20k, 1M × 128 and 1M × 384
    ///   moved by at most 0.001. Far from the origin the tables of q' span
    ///   far more than a residual, the kernel's error is not small, and the
    ///   rows are estimated on the float tables.
    /// * Automatic (candidates kept by their bounds, which must hold): only
    ///   the rows whose bounds from those scores, widened by the margin,
    ///   could still pass the gate are estimated on the float tables. The
    ///   rows offered, their estimates and bounds are the same as without
    ///   the kernel, only cheaper to find.
    fn head(&self, list: &mut Shortlist, no: u32, head: &CodeChunk) {
        let (lq, lut) = (self.lq, self.lut);
        let bits = self.coder.quantizer.bits();
        let planes = bits as usize;
        let plane = self.coder.quantizer.sign_bytes() * BLOCK;
        // The weighted sum of B planes rounds up to 2^B - 1 times as much.
        let rounding = lq.rounding * ((1u32 << bits) - 1) as f32;
        let base = (no as u64) << 32;
        let zeros = [0f32; BLOCK];
        let doubtful = list.is_doubtful();
        let bounds = lut.quantized().then(|| BlockBounds::new(lq, lut, bits, rounding, doubtful));
        let mut sums = [0u32; 8 * BLOCK];
        let mut estimates = [0f32; BLOCK];
        let block_bytes = planes * plane;
        for (b, block) in head.packed.chunks_exact(block_bytes).enumerate() {
            head.prefetch_block(b + SCAN_AHEAD_BLOCKS, block_bytes);
            let first = b * BLOCK;
            let rows = BLOCK.min(head.len - first);
            let mut keep = if rows == BLOCK { u32::MAX } else { (1u32 << rows) - 1 };
            if let Some(bounds) = &bounds {
                block_sums(lut.quant(), block, planes, &mut sums);
                fn lanes(v: &[f32], first: usize) -> &[f32; BLOCK] {
                    v[first..first + BLOCK].try_into().expect("a whole block")
                }
                let fixed = if head.fixed.is_empty() { &zeros } else { lanes(&head.fixed, first) };
                let terms = RowTerms { fixed, scale: lanes(&head.scale, first), err: lanes(&head.err, first) };
                let (pass, precise) = bounds.mask(&terms, &sums[..planes * BLOCK], list.gate(), &mut estimates);
                keep &= pass;
                if !doubtful {
                    let mut ranked = keep & precise;
                    keep &= !precise;
                    while ranked != 0 {
                        let t = ranked.trailing_zeros() as usize;
                        ranked &= ranked - 1;
                        if self.mask.is_none_or(|m| m[first + t]) {
                            list.offer(base | (first + t) as u64, estimates[t], 0.0);
                        }
                    }
                }
            }
            while keep != 0 {
                let t = keep.trailing_zeros() as usize;
                keep &= keep - 1;
                let s = first + t;
                if self.mask.is_some_and(|m| !m[s]) {
                    continue;
                }
                let dot = lut.packed_weighted(lut.packed_dot(&block[..plane], t), bits, &block[plane..], t);
                let (fixed, scale) = (head.fixed.get(s).copied().unwrap_or(0.0), head.scale[s]);
                let estimate = lq.base + fixed + lq.sign * dot * scale;
                let bound = lq.bound_scale * head.err[s] + rounding * scale;
                list.offer(base | s as u64, estimate, bound);
            }
        }
    }
}

/// A block's rows' terms (`CodeChunk`'s arrays), one lane a row.
struct RowTerms<'a> {
    fixed: &'a [f32; BLOCK],
    scale: &'a [f32; BLOCK],
    err: &'a [f32; BLOCK],
}

/// The largest share of a row's bound (`bound_scale · err` + rounding) the
/// kernel's worst quantization error may be for its estimate to rank the
/// row with `rerank_mult` (`Scan::head`).
const KERNEL_ERROR_SHARE: f32 = 0.25;

/// Relative slack for the float rounding of the bounds computed from the
/// kernel's scores against the same computed from the float tables' dots
/// (a few f32 epsilons would do; this is ~80).
const PREFILTER_SLACK: f32 = 1e-5;

/// One query's and head's constants for estimating and bounding a block's
/// rows from the kernel's quantized scores (`Scan::head`). Automatic
/// rerank: lower bounds, each at most the one the float path computes for
/// the row, so a row ruled out here is one the float path rules out too.
struct BlockBounds {
    base: f32,
    sign: f32,
    /// -sign (> 0).
    neg: f32,
    bound_scale: f32,
    rounding: f32,
    /// The kernel's score s of a plane stands for the sign dot offset + delta s, within margin.
    offset: f32,
    delta: f32,
    margin: f32,
    /// Weight of the sign plane in the weighted dot (2^(B - 1)), and of all planes (2^B - 1).
    top: f32,
    total: f32,
    planes: usize,
    /// 1 where the shortlist keeps candidates by their lower bounds (automatic rerank), else 0.
    doubtful: f32,
}

impl BlockBounds {
    fn new(lq: &ListQuery, lut: &QueryLut, bits: u32, rounding: f32, doubtful: bool) -> BlockBounds {
        let (offset, delta, margin) = lut.quant_terms();
        BlockBounds {
            base: lq.base,
            sign: lq.sign,
            neg: -lq.sign,
            bound_scale: lq.bound_scale,
            rounding,
            offset,
            delta,
            margin,
            top: (1u32 << (bits - 1)) as f32,
            total: ((1u32 << bits) - 1) as f32,
            planes: bits as usize,
            doubtful: if doubtful { 1.0 } else { 0.0 },
        }
    }

    /// Bit t of the first mask set: row t of the block may pass the gate,
    /// judged from its scores `sums` (per plane), whose estimates go to
    /// `est`: its estimate (automatic, `doubtful`: less its bound), widened
    /// by the quantization's margin, is not above the gate. Of the second:
    /// that margin is at most `KERNEL_ERROR_SHARE` of the row's bound.
    fn mask(&self, rows: &RowTerms, sums: &[u32], gate: f32, est: &mut [f32; BLOCK]) -> (u32, u32) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { self.mask_avx2(rows, sums, gate, est) };
        }
        self.mask_lanes(rows, sums, gate, est)
    }

    /// `mask_lanes` compiled for AVX2 (8 lanes at a time; no FMA, so the
    /// same results).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn mask_avx2(&self, rows: &RowTerms, sums: &[u32], gate: f32, est: &mut [f32; BLOCK]) -> (u32, u32) {
        self.mask_lanes(rows, sums, gate, est)
    }

    #[inline(always)]
    fn mask_lanes(&self, r: &RowTerms, sums: &[u32], gate: f32, estimates: &mut [f32; BLOCK]) -> (u32, u32) {
        // The weighted sum of the planes' scores (exact integers in f32 up to 2^24).
        let mut w = [0f32; BLOCK];
        for (w, &s) in w.iter_mut().zip(&sums[..BLOCK]) {
            *w = s as f32 * self.top;
        }
        for p in 1..self.planes {
            let weight = (1u32 << (p - 1)) as f32;
            for (w, &s) in w.iter_mut().zip(&sums[p * BLOCK..(p + 1) * BLOCK]) {
                *w += s as f32 * weight;
            }
        }
        let (mut keep, mut precise) = ([false; BLOCK], [false; BLOCK]);
        let margin = self.margin * self.total;
        for t in 0..BLOCK {
            let (fixed, scale) = (r.fixed[t], r.scale[t]);
            let dot = self.offset * self.total + self.delta * w[t];
            let full_bound = self.bound_scale * r.err[t] + self.rounding * scale;
            let bound = self.doubtful * full_bound;
            let est = self.base + fixed + self.sign * dot * scale;
            estimates[t] = est;
            let kernel_error = self.neg * margin * scale;
            precise[t] = kernel_error <= KERNEL_ERROR_SHARE * full_bound;
            let slack = PREFILTER_SLACK * (self.base.abs() + fixed.abs() + self.neg * scale * dot.abs() + bound);
            // Widened by the quantization's margin, but for a row ranked by
            // this estimate (`rerank_mult`, precise), which is what is offered.
            let ranked = (1.0 - self.doubtful) * (precise[t] as u8 as f32);
            let lower = est - bound - (1.0 - ranked) * (kernel_error + slack);
            // A NaN bound rules nothing out (nor does `Shortlist::offer`).
            let ruled_out = lower > gate;
            keep[t] = !ruled_out;
        }
        let bits = |v: &[bool; BLOCK]| v.iter().enumerate().fold(0u32, |m, (t, &k)| m | (k as u32) << t);
        (bits(&keep), bits(&precise))
    }
}

#[cfg(test)]
mod tests {
    use super::super::chunk::{RowMetadata, CHUNK_TARGET_BYTES};
    use super::super::{Access, Index, IndexConfig, IndexType, ItemRef, TrainParams};
    use super::BLOCK;
    use crate::crypto::SecretKey;
    use crate::distance::Metric;
    use crate::{Client, ClientOptions};
    use std::sync::Arc;

    /// The largest (encoded bytes, rows) of the chunks numbered from `from`.
    fn largest_chunk(index: &Index, from: u32) -> (usize, usize) {
        let snap = index.current().unwrap();
        snap.manifest.chunks().filter(|c| c.no >= from).map(|c| (c.bytes as usize, c.count as usize)).max().unwrap()
    }

    fn next_chunk(index: &Index) -> u32 {
        index.current().unwrap().manifest.next_chunk
    }

    /// Trained IVF_RABITQ chunks, from training and from later writes, hold
    /// more than a chunk stored whole; IVF_FLAT's and untrained ones do not;
    /// and with large metadata a coded chunk's head stays within the target.
    #[test]
    fn coded_chunks_hold_more_rows_in_lean_heads() {
        let (n, dim) = (12_000, 64);
        let vectors: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1013) as f32 / 1013.0).collect();
        let ids: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        let big = format!("{{\"note\": \"{}\"}}", "x".repeat(2000));
        let client = Client::open("memory:", ClientOptions::default()).unwrap();
        for (name, index_type, metadata) in [
            ("flat", IndexType::IvfFlat, None),
            ("coded", IndexType::IvfRabitq, None),
            ("coded-metadata", IndexType::IvfRabitq, Some(big.as_str())),
        ] {
            let items: Vec<ItemRef<'_>> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| ItemRef { id, vector: &vectors[i * dim..(i + 1) * dim], metadata, contents: None })
                .collect();
            let config = IndexConfig { index_type, ..Default::default() };
            let index = client.create_index(name, &SecretKey::from_bytes(&[9; 32]), config).unwrap();
            index.upsert(&items[..n - 2000], Access::default()).unwrap();
            assert!(largest_chunk(&index, 0).0 <= CHUNK_TARGET_BYTES, "{name}: untrained");
            let params = TrainParams { n_lists: 2, max_iters: 5, ..Default::default() };
            index.train(params, Access::default()).unwrap();
            let trained = largest_chunk(&index, 0);
            let written = next_chunk(&index);
            index.upsert(&items[n - 2000..], Access::default()).unwrap();
            let added = largest_chunk(&index, written);
            for (what, (bytes, rows)) in [("trained", trained), ("added", added)] {
                match metadata {
                    None if index_type == IndexType::IvfFlat => assert!(bytes <= CHUNK_TARGET_BYTES, "{name} {what}"),
                    // Twice the rows, then up to a whole block more (`Packer`).
                    None => {
                        let most = 2 * (CHUNK_TARGET_BYTES + CHUNK_TARGET_BYTES / 4);
                        assert!(bytes > CHUNK_TARGET_BYTES && bytes <= most, "{name} {what}: {bytes}");
                        assert_eq!(rows % BLOCK, 0, "{name} {what}: a full head is whole blocks");
                    }
                    // A head row: 8 B of sign codes, 8 of extended codes
                    // (2 bits at d = 64), 12 of factors, the metadata and 5.
                    Some(m) => {
                        assert!(rows * (8 + 8 + 12 + 5 + m.len()) <= CHUNK_TARGET_BYTES, "{name} {what}: {rows} rows")
                    }
                }
            }
            assert_eq!(index.num_vectors(Access::default()).unwrap(), n as u64);
            if index_type == IndexType::IvfRabitq {
                head_memory_is_codes_and_terms(&index, metadata);
            }
        }
    }

    /// A write that repacks or reseals rows copies their stored codes
    /// (`StoredCodes`) instead of encoding them again: after many small adds
    /// (repacks), overwrites and deletes (reseals), every row was encoded
    /// once, when it was written, and every head holds exactly the codes a
    /// fresh encoding of its rows gives (F32: see `StoredCodes` for F16).
    #[test]
    fn repacked_and_resealed_rows_keep_their_codes() {
        use std::sync::atomic::Ordering::Relaxed;
        let (n, dim) = (10_000, 24);
        // Distinct for every (i, salt): an overwrite brings a new vector.
        let vector = |i: usize, salt: usize| -> Vec<f32> {
            (0..dim)
                .map(|j| {
                    let h = (((i * 31 + salt) * 64 + j) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    (h >> 40) as f32 / (1u64 << 24) as f32 - 0.3
                })
                .collect()
        };
        let client = Client::open("memory:", ClientOptions::default()).unwrap();
        for metric in [Metric::Euclidean, Metric::SquaredEuclidean, Metric::Cosine, Metric::InnerProduct] {
            let config = IndexConfig { index_type: IndexType::IvfRabitq, metric, ..Default::default() };
            let name = format!("{metric:?}");
            let index = client.create_index(&name, &SecretKey::from_bytes(&[5; 32]), config).unwrap();
            let upsert = |ids: &[usize], salt: usize| {
                let names: Vec<String> = ids.iter().map(|i| format!("v{i}")).collect();
                let vectors: Vec<Vec<f32>> = ids.iter().map(|&i| vector(i, salt)).collect();
                let metadata: Vec<String> = ids.iter().map(|i| format!("{{\"i\": {i}}}")).collect();
                let items: Vec<ItemRef<'_>> = (0..ids.len())
                    .map(|k| ItemRef {
                        id: &names[k],
                        vector: &vectors[k],
                        metadata: Some(metadata[k].as_str()),
                        contents: None,
                    })
                    .collect();
                index.upsert(&items, Access::default()).unwrap();
            };
            upsert(&(0..n).collect::<Vec<_>>(), 0);
            index.train(TrainParams { n_lists: 4, max_iters: 3, ..Default::default() }, Access::default()).unwrap();
            let first_added = next_chunk(&index);
            let coder = |index: &Index| index.coder(&index.current().unwrap().manifest).unwrap().unwrap().1;
            let before = coder(&index);
            let encoded = before.encoded.load(Relaxed);
            // 40 adds of 20 (5 a list): each repacks its lists' small chunks.
            for b in 0..40 {
                upsert(&(n + b * 20..n + (b + 1) * 20).collect::<Vec<_>>(), 0);
            }
            let snap = index.current().unwrap();
            let added = snap.manifest.chunks().filter(|c| c.no >= first_added).map(|c| c.count).max().unwrap();
            assert!(added > 40, "{name}: no add was repacked ({added} rows at most)");
            // Overwrites (new vectors, so new codes) and deletes reseal
            // trained and added chunks.
            upsert(&(100..160).collect::<Vec<_>>(), 1);
            let gone: Vec<String> = (0..n + 800).step_by(23).map(|i| format!("v{i}")).collect();
            index.delete(&gone.iter().map(String::as_str).collect::<Vec<_>>(), Access::default()).unwrap();
            let after = coder(&index);
            assert!(Arc::ptr_eq(&before, &after), "{name}: the coder was rebuilt");
            assert_eq!(after.encoded.load(Relaxed) - encoded, 800 + 60, "{name}: rows encoded besides the new ones");
            let snap = index.current().unwrap();
            let m = &snap.manifest;
            for meta in m.chunks() {
                let stored = index.stored_codes(m, &after, meta, None).unwrap();
                let rows = index.assembled_chunk(m, &after, meta, false).unwrap();
                let (_, plain) = after.code((meta.list, &rows), &[], m.config.precision, super::UnitPlaces::Apart);
                let shape = after.shape(dim, m.config.precision, (rows.len(), meta.list), false);
                let fresh = super::StoredCodes::decode(&plain, &shape).unwrap();
                assert!(stored.signs == fresh.signs && stored.ex == fresh.ex, "{name}: chunk {} codes", meta.no);
                assert_eq!(stored.factors, fresh.factors, "{name}: chunk {} factors", meta.no);
                assert_eq!(stored.metadata, fresh.metadata, "{name}: chunk {} metadata", meta.no);
            }
        }
    }

    /// A head in memory: its codes, its per-row terms and its metadata,
    /// nothing per row for metadata no row has.
    fn head_memory_is_codes_and_terms(index: &Index, metadata: Option<&str>) {
        let snap = index.current().unwrap();
        let m = &snap.manifest;
        let (_, coder) = index.coder(m).unwrap().unwrap();
        let meta = m.chunks().max_by_key(|c| c.count).unwrap();
        let head = index.head(m, &coder, meta, None).unwrap();
        // 2 bits at d = 64: 8 + 8 code bytes a row, and 3 terms (L2, the default).
        let rows = head.padded() * (16 + 3 * 4);
        let fixed = std::mem::size_of::<super::CodeChunk>() + head.units.lock().len() * 8;
        match metadata {
            None => {
                assert_eq!(head.metadata_at(0), None);
                assert_eq!(head.mem_size(), fixed + rows);
            }
            Some(m) => {
                assert_eq!(head.metadata_at(head.len() - 1).map(String::as_str), Some(m));
                assert!(head.mem_size() > fixed + rows + head.len() * m.len());
            }
        }
    }
}

/// How a chunk's units are stored: packed, read as parts of their pack;
/// 0.11's (each apart) read, mixed with packed ones, and rewritten packed;
/// and a pack's units out of their places detected.
#[cfg(test)]
mod packs {
    use super::super::objects::ObjectKind;
    use super::super::{include, Access, Index, IndexConfig, IndexType, ItemRef, QueryParams, TrainParams};
    use super::{pack_obj, stored_units, UnitPlaces};
    use crate::crypto::SecretKey;
    use crate::{Client, ClientOptions, Store, WriteBatch};
    use std::collections::HashSet;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    const DIM: usize = 16;
    /// Items first written: the fewest an index trains on.
    const N: usize = 10_000;

    /// Item i's vector as written the `version`-th time: unique (its first
    /// coordinate is i's), in 5 clusters.
    fn vector(i: usize, version: usize) -> Vec<f32> {
        let noise = |d: usize| ((i * 7919 + d * 104_729 + version * 1_299_709) % 10_007) as f32 / 10_007.0;
        (0..DIM).map(|d| if d == 0 { i as f32 / N as f32 } else { noise(d) + (i % 5) as f32 }).collect()
    }

    /// Upserts items `ids` (ids of one width, so a pack's full units are of one length).
    fn upsert(index: &Index, ids: impl Iterator<Item = usize>, version: usize) {
        let ids: Vec<(String, Vec<f32>)> = ids.map(|i| (format!("v{i:06}"), vector(i, version))).collect();
        let items: Vec<ItemRef<'_>> =
            ids.iter().map(|(id, v)| ItemRef { id, vector: v, metadata: None, contents: None }).collect();
        index.upsert(&items, Access::default()).unwrap();
    }

    fn keys_of(store: &dyn Store, index: &Index, kind: ObjectKind) -> HashSet<Vec<u8>> {
        store.scan_keys(&index.layout.kind_prefix(kind)).unwrap().into_iter().collect()
    }

    /// Every item reads back as last written (`live`: id → version), and a
    /// query for it finds it at distance 0; the store holds exactly the
    /// units the manifest names.
    fn check(index: &Index, store: &dyn Store, live: &[(usize, usize)]) {
        let ids: Vec<String> = live.iter().map(|(i, _)| format!("v{i:06}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let got = index.get(&refs, include::VECTOR, Access::default()).unwrap();
        for ((i, version), item) in live.iter().zip(got) {
            assert_eq!(item.unwrap().vector.as_deref(), Some(&vector(*i, *version)[..]), "item {i}");
        }
        let p = QueryParams { top_k: 1, n_probes: 8, rerank_mult: 1000, ..Default::default() };
        for &(i, version) in live.iter().step_by(97) {
            let hits = index.query(&vector(i, version), 1, DIM, &p, Access::default()).unwrap();
            assert_eq!((hits[0][0].id.as_str(), hits[0][0].distance), (format!("v{i:06}").as_str(), 0.0));
        }
        let snap = index.current().unwrap();
        let m = &snap.manifest;
        let named: HashSet<Vec<u8>> =
            m.chunks().flat_map(|c| stored_units(m, c)).map(|(obj, stamp)| index.store_key(obj, &stamp)).collect();
        let stored: HashSet<Vec<u8>> = keys_of(store, index, ObjectKind::ChunkUnit)
            .union(&keys_of(store, index, ObjectKind::UnitPack))
            .cloned()
            .collect();
        assert_eq!(stored, named, "units stored against units named");
    }

    /// Items 0..N written, then trained (`apart`: as 0.11 sealed, every unit apart).
    fn trained(apart: bool) -> (Index, Arc<dyn Store>) {
        let client = Client::open("memory:", ClientOptions::default()).unwrap();
        let config = IndexConfig { index_type: IndexType::IvfRabitq, ..Default::default() };
        let index = client.create_index("p", &SecretKey::from_bytes(&[4; 32]), config).unwrap();
        upsert(&index, 0..N, 0);
        index.seal_units_apart.store(apart, Relaxed);
        train(&index);
        (index, client.raw_store())
    }

    fn train(index: &Index) {
        index.train(TrainParams { n_lists: 8, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
    }

    fn open(store: &Arc<dyn Store>) -> Index {
        let client = Client::over_store(store.clone(), ClientOptions { cache_bytes: 0, ..Default::default() }).unwrap();
        client.load_index("p", Access { key: Some(&SecretKey::from_bytes(&[4; 32])), user: None }).unwrap()
    }

    #[test]
    fn units_of_0_11_are_read_mixed_with_packed_ones_and_rewritten_packed() {
        // Trained as 0.11 did: every unit apart.
        let (index, store) = trained(true);
        let mut live: Vec<(usize, usize)> = (0..N).map(|i| (i, 0)).collect();
        assert!(keys_of(&*store, &index, ObjectKind::UnitPack).is_empty());
        assert!(keys_of(&*store, &index, ObjectKind::ChunkUnit).len() > 40);
        check(&index, &*store, &live);
        // This build's writes: added rows repack some lists' chunks, an
        // overwrite and deletes reseal others; the rest stay apart.
        index.seal_units_apart.store(false, Relaxed);
        upsert(&index, N..N + 40, 0);
        live.extend((N..N + 40).map(|i| (i, 0)));
        upsert(&index, (0..N).step_by(3001), 1);
        live.iter_mut().filter(|(i, _)| i % 3001 == 0 && *i < N).for_each(|(_, v)| *v = 1);
        let gone: Vec<String> = (1..N).step_by(4001).map(|i| format!("v{i:06}")).collect();
        index.delete(&gone.iter().map(String::as_str).collect::<Vec<_>>(), Access::default()).unwrap();
        live.retain(|(i, _)| !(*i < N && i % 4001 == 1));
        let snap = index.current().unwrap();
        let packed = snap.manifest.chunks().filter(|c| snap.manifest.units_packed(c)).count();
        assert!(packed > 0 && packed < snap.manifest.chunks().count(), "{packed} chunks packed: not mixed");
        check(&index, &*store, &live);
        // A handle that opens it reads both, nothing cached.
        check(&open(&store), &*store, &live);
        // Trained again: every chunk packed, no unit apart left.
        train(&index);
        assert!(keys_of(&*store, &index, ObjectKind::ChunkUnit).is_empty());
        check(&open(&store), &*store, &live);
    }

    /// Each unit's associated data names its number: two units of a pack
    /// swapped (of one length, so each is where the head says a unit is),
    /// a pack cut short or grown are detected, by a query's rerank (which
    /// reads one unit) and by a read of the chunk whole.
    #[test]
    fn units_out_of_their_places_in_a_pack_are_detected() {
        let (index, store) = trained(false);
        let live: Vec<(usize, usize)> = (0..N).map(|i| (i, 0)).collect();
        check(&open(&store), &*store, &live);
        // A chunk with two full units, and where they are in its pack.
        let snap = index.current().unwrap();
        let m = &snap.manifest;
        let (_, coder) = index.coder(m).unwrap().unwrap();
        let (meta, places) = m
            .chunks()
            .map(|c| (*c, index.head(m, &coder, c, None).unwrap().places.clone()))
            .find(|(c, _)| c.count as usize > 2 * super::rows_per_unit(DIM, m.config.precision))
            .unwrap();
        let (a, b) = (places.part(0).unwrap(), places.part(1).unwrap());
        assert!(matches!(places, UnitPlaces::Packed(_)) && a.1 == b.1, "{a:?} {b:?}");
        let key = index.store_key(pack_obj(&meta).0, &meta.stamp);
        let pack = store.get(&key).unwrap().unwrap();
        let (a, b) = ((a.0 as usize, a.1 as usize), (b.0 as usize, b.1 as usize));
        let mut swapped = pack.clone();
        swapped[a.0..a.0 + a.1].copy_from_slice(&pack[b.0..b.0 + b.1]);
        swapped[b.0..b.0 + b.1].copy_from_slice(&pack[a.0..a.0 + a.1]);
        let first_rows = |index: &Index| {
            // The rows of the chunk's first two units, by id and by query.
            let per = super::rows_per_unit(DIM, m.config.precision);
            (0..2 * per)
                .map(|s| index.row(m, Some(&coder), meta.no, s).map(|r| r.id().clone()))
                .collect::<crate::Result<Vec<_>>>()
        };
        let whole = |index: &Index| index.assembled_chunk(m, &coder, &meta, false).map(|_| ());
        assert!(first_rows(&open(&store)).is_ok() && whole(&open(&store)).is_ok());
        let mut cut = pack.clone();
        cut.pop();
        let mut grown = pack.clone();
        grown.push(0);
        // Cut inside a unit the rows read: its part is not in the pack.
        let cut_into = pack[..(a.0 + a.1).max(b.0 + b.1) - 1].to_vec();
        let altered = [
            ("swapped", swapped, true),
            ("cut short", cut, false),
            ("grown", grown, false),
            ("cut into a unit", cut_into, true),
        ];
        for (name, bytes, by_row) in altered {
            let mut w = WriteBatch::default();
            w.put(key.clone(), bytes);
            assert!(store.write(w).unwrap());
            let reader = open(&store);
            if by_row {
                let err = first_rows(&reader).unwrap_err();
                assert_eq!(err.status(), crate::Status::Integrity, "{name}: {err}");
                // The pack is there: no commit can explain it (`Error::Missing`).
                assert!(!err.may_be_race(), "{name}: {err:?}");
            }
            let err = whole(&open(&store)).unwrap_err();
            assert_eq!(err.status(), crate::Status::Integrity, "{name}: {err}");
            assert!(!err.may_be_race(), "{name}: {err:?}");
        }
    }
}
