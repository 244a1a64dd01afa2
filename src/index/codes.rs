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
//!   associated data) names its head's digest, so it opens only beside the
//!   head it was sealed with (`Tokens::of`).
//!
//! A query scans the heads of its lists, keeps the candidates the codes'
//! error bounds cannot rule out (or the `rerank_mult × top_k` best
//! estimates), and reranks them against the full vectors, nearest lower
//! bound first, stopping once no candidate left can beat the k-th exact
//! distance. Returned distances are always computed on the full vectors.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use serde_json::Value;
use zeroize::Zeroizing;

use super::chunk::{parse_metadata, Chunk, ChunkBuilder, WipedFloats};
use super::ivf::Centroids;
use super::manifest::{ChunkMeta, Manifest, Stamp};
use super::objects::{ChunkShape, Obj, Prefetched};
use super::search::{Candidate, Hit, Queries, TopK, Work};
use super::types::Precision;
use super::Index;
use crate::codec::{Reader, Writer};
use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::rabitq::{Factors, Quantizer, QueryLut};

/// Plaintext bytes a unit aims at: with the seal and the store's key and
/// page overhead, just under a 4 KiB page.
const UNIT_TARGET_BYTES: usize = 4096 - 256;
/// count u32, dim u32, precision u8, bits u8, 6 zero bytes.
const HEAD_HEADER_BYTES: usize = 16;
/// Without `rerank_mult`, a query keeps at most this many candidates per
/// result row whose bounds leave them in doubt (the nearest lower bounds).
const MAX_DOUBTFUL_PER_ROW: usize = 64;

/// Rows per unit of an index of this shape.
pub fn rows_per_unit(dim: usize, precision: Precision) -> usize {
    (UNIT_TARGET_BYTES / (dim * precision.bytes_per_value() + 16)).max(1)
}

/// The units of a chunk of `count` rows: (unit number, rows in it).
pub fn units_of(count: usize, dim: usize, precision: Precision) -> impl Iterator<Item = (u32, usize)> {
    let per = rows_per_unit(dim, precision);
    (0..count.div_ceil(per)).map(move |u| (u as u32, per.min(count - u * per)))
}

/// The object and stamp unit `u` of the chunk `meta` names is stored under.
pub fn unit_obj(meta: &ChunkMeta, u: u32) -> (Obj, Stamp) {
    (Obj::ChunkUnit(meta.no, u, meta.stamp.digest), meta.stamp)
}

/// What a head must hold.
pub(crate) struct CodeShape {
    pub dim: usize,
    pub precision: Precision,
    pub bits: u32,
    pub sign_bytes: usize,
    pub ex_bytes: usize,
    pub count: usize,
}

/// A decrypted head: the codes and metadata of a chunk's rows. Wiped on
/// drop (a code is a coarse copy of its vector).
pub struct CodeChunk {
    len: usize,
    signs: Zeroizing<Vec<u8>>,
    ex: Zeroizing<Vec<u8>>,
    factors: Vec<Factors>,
    pub metadata: Vec<Option<String>>,
    parsed: OnceLock<Vec<Option<Value>>>,
}

impl Drop for CodeChunk {
    fn drop(&mut self) {
        self.factors.iter_mut().for_each(|f| *f = Factors::default());
        self.metadata.iter_mut().flatten().for_each(zeroize::Zeroize::zeroize);
    }
}

impl CodeChunk {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn parsed_metadata(&self, slot: usize) -> Option<&Value> {
        self.parsed.get_or_init(|| parse_metadata(&self.metadata)).get(slot)?.as_ref()
    }

    pub fn mem_size(&self) -> usize {
        let meta: usize = self.metadata.iter().flatten().map(String::len).sum();
        std::mem::size_of::<CodeChunk>()
            + self.signs.len()
            + self.ex.len()
            + self.factors.len() * std::mem::size_of::<Factors>()
            + self.len * 24
            + meta * 3
    }

    fn encode(&self, dim: usize, bits: u32, precision: Precision) -> Zeroizing<Vec<u8>> {
        let meta: usize = self.metadata.iter().map(|m| 1 + m.as_ref().map_or(0, |m| 4 + m.len())).sum();
        let mut w = Writer::with_capacity(
            HEAD_HEADER_BYTES + self.signs.len() + self.ex.len() + self.len * Factors::BYTES + meta,
        );
        w.u32(self.len as u32);
        w.u32(dim as u32);
        w.u8(precision as u8);
        w.u8(bits as u8);
        w.raw(&[0u8; HEAD_HEADER_BYTES - 10]);
        w.raw(&self.signs);
        w.raw(&self.ex);
        let mut f = [0u8; Factors::BYTES];
        for factors in &self.factors {
            factors.write(&mut f);
            w.raw(&f);
        }
        for m in &self.metadata {
            w.opt_bytes(m.as_deref().map(str::as_bytes));
        }
        Zeroizing::new(w.buf)
    }

    pub fn decode(bytes: &[u8], shape: &CodeShape) -> Result<CodeChunk> {
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
        let factors = factors.chunks_exact(Factors::BYTES).map(Factors::read).collect();
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            metadata.push(match r.opt_bytes()? {
                None => None,
                Some(b) => Some(
                    String::from_utf8(b.to_vec()).map_err(|_| Error::integrity("chunk head metadata is not UTF-8"))?,
                ),
            });
        }
        r.finish()?;
        Ok(CodeChunk { len: n, signs, ex, factors, metadata, parsed: OnceLock::new() })
    }
}

/// How one trained IVF_RABITQ index codes vectors: its quantizer and its
/// centroids rotated once (kept with the centroids, see `Centroids::coder`).
pub struct Coder {
    quantizer: Quantizer,
    metric: Metric,
    /// P·c for every centroid c, `padded` floats each.
    rotated: WipedFloats,
}

impl Coder {
    pub fn new(centroids: &Centroids, metric: Metric, bits: u32, seed: u64) -> Coder {
        let quantizer = Quantizer::new(centroids.dim, bits, seed);
        let padded = quantizer.rotation().padded();
        let mut rotated = WipedFloats(vec![0f32; centroids.k * padded]);
        for (c, out) in rotated.0.chunks_exact_mut(padded).enumerate() {
            quantizer.rotation().apply(centroids.row(c), out);
        }
        Coder { quantizer, metric, rotated }
    }

    fn padded(&self) -> usize {
        self.quantizer.rotation().padded()
    }

    fn rotated_centroid(&self, list: u32) -> &[f32] {
        let p = self.padded();
        &self.rotated.0[list as usize * p..(list as usize + 1) * p]
    }

    pub fn shape(&self, dim: usize, precision: Precision, count: usize) -> CodeShape {
        CodeShape {
            dim,
            precision,
            bits: self.quantizer.bits(),
            sign_bytes: self.quantizer.sign_bytes(),
            ex_bytes: self.quantizer.ex_bytes(),
            count,
        }
    }

    /// The head of `chunk`, a chunk of `list`: each row's residual to the
    /// list's centroid (cosine: of the unit vector), rotated and coded.
    fn code(&self, list: u32, chunk: &Chunk) -> CodeChunk {
        let (q, padded) = (&self.quantizer, self.padded());
        let (sb, eb) = (q.sign_bytes(), q.ex_bytes());
        let n = chunk.len();
        let mut signs = Zeroizing::new(vec![0u8; n * sb]);
        let mut ex = Zeroizing::new(vec![0u8; n * eb]);
        let mut factors = Vec::with_capacity(n);
        let mut rotated = WipedFloats(vec![0f32; padded]);
        let c = self.rotated_centroid(list);
        for s in 0..n {
            let x = chunk.vector(s);
            q.rotation().apply(x, &mut rotated.0);
            let scale = if self.metric == Metric::Cosine { chunk.inv_norms[s] } else { 1.0 };
            for (r, &c) in rotated.0.iter_mut().zip(c) {
                *r = *r * scale - c;
            }
            factors.push(q.encode(&rotated.0, &mut signs[s * sb..(s + 1) * sb], &mut ex[s * eb..(s + 1) * eb]));
        }
        CodeChunk { len: n, signs, ex, factors, metadata: chunk.metadata.clone(), parsed: OnceLock::new() }
    }

    /// The plaintexts to seal for `chunk`: its head and its units.
    pub fn encode(&self, list: u32, chunk: &Chunk, precision: Precision) -> Encoded {
        let head = self.code(list, chunk);
        let plain = head.encode(chunk.dim, self.quantizer.bits(), precision);
        let mut units = Vec::new();
        let mut at = 0;
        for (_, rows) in units_of(chunk.len(), chunk.dim, precision) {
            let mut unit = ChunkBuilder::with_capacity(chunk.dim, rows);
            (at..at + rows).for_each(|s| unit.push(chunk.vector(s), chunk.ids[s].clone(), None));
            units.push(unit.finish().encode(precision));
            at += rows;
        }
        Encoded { head: Arc::new(head), plain, units }
    }
}

/// A coded chunk ready to seal: the decrypted head (for the cache), its
/// plaintext, and each unit's plaintext in order.
pub struct Encoded {
    pub head: Arc<CodeChunk>,
    pub plain: Zeroizing<Vec<u8>>,
    pub units: Vec<Zeroizing<Vec<u8>>>,
}

/// One query's view of one list: its lookup table and what turns an
/// estimate of <r, v> into a score.
struct ListQuery {
    lut: QueryLut,
    /// Score = base + sign * <r, v>, where r is a row's coded residual.
    base: f32,
    sign: f32,
    /// L2: scores are |r|^2 + |v|^2 - 2<r, v>, so the row's |r|^2 is added.
    l2: bool,
}

impl Coder {
    /// The rotated query (cosine: of the unit query), once per query.
    fn rotate_query(&self, q: &[f32], inv_q: f32) -> Vec<f32> {
        let mut out = vec![0f32; self.padded()];
        self.quantizer.rotation().apply(q, &mut out);
        if self.metric == Metric::Cosine {
            out.iter_mut().for_each(|x| *x *= inv_q);
        }
        out
    }

    /// `codes`: how many codes of the list the query will estimate.
    fn list_query(
        &self,
        centroids: &Centroids,
        (list, codes): (u32, usize),
        q: &[f32],
        inv_q: f32,
        rotated_q: &[f32],
    ) -> ListQuery {
        match self.metric {
            Metric::Euclidean | Metric::SquaredEuclidean => {
                let v: Vec<f32> = rotated_q.iter().zip(self.rotated_centroid(list)).map(|(a, b)| a - b).collect();
                let lut = self.quantizer.prepare(&v, codes);
                ListQuery { base: lut.norm() * lut.norm(), lut, sign: -2.0, l2: true }
            }
            // -<x, q> = -<c, q> - <r, q>
            Metric::InnerProduct => ListQuery {
                lut: self.quantizer.prepare(rotated_q, codes),
                base: -distance::dot(centroids.row(list as usize), q),
                sign: -1.0,
                l2: false,
            },
            // 1 - <x/|x|, q/|q|> = 1 - <c, q/|q|> - <r, q/|q|>
            Metric::Cosine => ListQuery {
                lut: self.quantizer.prepare(rotated_q, codes),
                base: 1.0 - distance::dot(centroids.row(list as usize), q) * inv_q,
                sign: -1.0,
                l2: false,
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
                let lower = estimate - bound;
                if lower < upper.threshold() {
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
        doubtful.retain(|c| c.score < t);
        if doubtful.len() > cap {
            doubtful.select_nth_unstable(cap);
            doubtful.truncate(cap);
        }
    }

    fn merge(&mut self, other: Shortlist) {
        match (self, other) {
            (Shortlist::Best(a), Shortlist::Best(b)) => b.into_vec().into_iter().for_each(|c| {
                a.push(c);
            }),
            (Shortlist::Doubtful { upper, doubtful, cap }, Shortlist::Doubtful { upper: u2, doubtful: d2, .. }) => {
                u2.into_vec().into_iter().for_each(|c| {
                    upper.push(c);
                });
                doubtful.extend(d2);
                Self::prune(upper, doubtful, *cap);
            }
            _ => unreachable!("one mode per query"),
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

/// The per-worker state of the first stage.
struct Stage {
    lists: Vec<Shortlist>,
    est: Vec<f32>,
    err: Vec<f32>,
}

impl Index {
    /// The coder of a trained IVF_RABITQ state (`None`: stored flat).
    pub(super) fn coder(&self, m: &Manifest) -> Result<Option<(Arc<Centroids>, Arc<Coder>)>> {
        if !m.coded() {
            return Ok(None);
        }
        let centroids = self.centroids(m)?;
        let coder = centroids.coder(m.config.metric, m.config.quantizer_bits, m.quantizer_seed);
        Ok(Some((centroids, coder)))
    }

    pub(super) fn head(
        &self,
        m: &Manifest,
        coder: &Coder,
        meta: &ChunkMeta,
        pre: Option<&Prefetched>,
    ) -> Result<Arc<CodeChunk>> {
        let shape = coder.shape(m.config.dimension as usize, m.config.precision, meta.count as usize);
        self.load_object(m, Obj::Chunk(meta.no), &meta.stamp, &shape, pre)
    }

    pub(super) fn unit(&self, m: &Manifest, meta: &ChunkMeta, u: u32, rows: usize, keep: bool) -> Result<Arc<Chunk>> {
        let (obj, stamp) = unit_obj(meta, u);
        let shape = ChunkShape { dim: m.config.dimension as usize, precision: m.config.precision, count: rows };
        self.load_object_with(m, obj, &stamp, &shape, None, keep)
    }

    /// A coded chunk whole again (head and units), for writes, `get` and
    /// training; `keep = false` leaves its units out of the cache.
    pub(super) fn assembled_chunk(&self, m: &Manifest, coder: &Coder, meta: &ChunkMeta, keep: bool) -> Result<Chunk> {
        let (dim, precision) = (m.config.dimension as usize, m.config.precision);
        let head = self.head(m, coder, meta, None)?;
        let mut rows = ChunkBuilder::with_capacity(dim, meta.count as usize);
        let mut slot = 0;
        for (u, n) in units_of(meta.count as usize, dim, precision) {
            let unit = self.unit(m, meta, u, n, keep)?;
            for s in 0..n {
                rows.push(unit.vector(s), unit.ids[s].clone(), head.metadata[slot].clone());
                slot += 1;
            }
        }
        Ok(rows.finish())
    }

    /// The coded search of `work` (see the module's comment).
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
        let rotated: Vec<Vec<f32>> = (0..q.n).map(|i| coder.rotate_query(q.row(i), q.inv_norm(i))).collect();
        let all: Vec<u32> = (0..q.n as u32).collect();
        // Where each read is a round trip (PostgreSQL), the heads not cached
        // come in one call.
        let pre = self.prefetch(work.iter().flat_map(|w| w.chunks.iter().map(|c| (Obj::Chunk(c.no), &c.stamp))))?;
        let fresh = || Stage {
            lists: (0..q.n).map(|_| Shortlist::new(q.k, rerank_mult)).collect(),
            est: Vec::new(),
            err: Vec::new(),
        };
        let scan_item = |mut st: Stage, item: &Work<'_>| -> Result<Stage> {
            let qids = item.queries.as_deref().unwrap_or(&all);
            let heads: Vec<(&ChunkMeta, Arc<CodeChunk>)> = item
                .chunks
                .iter()
                .map(|meta| Ok((*meta, self.head(m, coder, meta, Some(&pre))?)))
                .collect::<Result<_>>()?;
            let Some(list) = item.chunks.first().map(|c| c.list) else { return Ok(st) };
            let codes = heads.iter().map(|(_, h)| h.len()).sum();
            // The filter is the same for every query: evaluated once per row.
            let masks: Vec<Option<Vec<bool>>> =
                heads.iter().map(|(meta, h)| q.mask(meta.no, h.len(), |s| h.parsed_metadata(s))).collect();
            for &qi in qids {
                let qi = qi as usize;
                let lq = coder.list_query(centroids, (list, codes), q.row(qi), q.inv_norm(qi), &rotated[qi]);
                for ((meta, head), mask) in heads.iter().zip(&masks) {
                    if mask.as_ref().is_some_and(|m| !m.contains(&true)) {
                        continue;
                    }
                    st.scan_head(coder, &lq, qi, meta.no, head, mask.as_deref());
                }
            }
            Ok(st)
        };
        let state = if work.len() <= 1 || self.env.pool.current_num_threads() == 1 {
            work.iter().try_fold(fresh(), scan_item)?
        } else {
            self.env.pool.install(|| {
                work.par_iter().try_fold(fresh, scan_item).try_reduce(fresh, |mut a, b| {
                    a.lists.iter_mut().zip(b.lists).for_each(|(a, b)| a.merge(b));
                    Ok(a)
                })
            })?
        };
        let rerank = |(qi, list): (usize, Shortlist)| self.rerank(m, coder, q, qi, list);
        if q.n == 1 || self.env.pool.current_num_threads() == 1 {
            state.lists.into_iter().enumerate().map(rerank).collect()
        } else {
            self.env.pool.install(|| state.lists.into_par_iter().enumerate().map(rerank).collect())
        }
    }

    /// The second stage for query `qi`: exact distances for its candidates,
    /// read from their units, best k returned with their rows.
    fn rerank(&self, m: &Manifest, coder: &Coder, q: &Queries<'_>, qi: usize, list: Shortlist) -> Result<Vec<Hit>> {
        let (dim, precision) = (m.config.dimension as usize, m.config.precision);
        let per = rows_per_unit(dim, precision);
        let (candidates, may_stop) = list.finish();
        let mut exact = TopK::new(q.k);
        let mut units: HashMap<(u32, u32), Arc<Chunk>> = HashMap::new();
        let (qv, inv_q) = (q.row(qi), q.inv_norm(qi));
        for c in candidates {
            if may_stop && c.score >= exact.threshold() {
                break;
            }
            let (no, slot) = ((c.at >> 32) as u32, (c.at & 0xffff_ffff) as usize);
            let u = (slot / per) as u32;
            let unit = match units.get(&(no, u)) {
                Some(unit) => unit.clone(),
                None => {
                    let meta = m.chunk(no).ok_or_else(|| Error::integrity("a candidate names a missing chunk"))?;
                    let rows = per.min(meta.count as usize - u as usize * per);
                    let unit = self.unit(m, meta, u, rows, true)?;
                    units.insert((no, u), unit.clone());
                    unit
                }
            };
            let s = slot % per;
            let score = distance::score(q.metric, qv, unit.vector(s), inv_q, unit.inv_norms[s]);
            exact.push(Candidate { score, at: c.at });
        }
        let mut top = exact.into_vec();
        top.sort_unstable();
        top.into_iter()
            .map(|c| {
                let (no, slot) = ((c.at >> 32) as u32, (c.at & 0xffff_ffff) as usize);
                let unit = &units[&(no, (slot / per) as u32)];
                let meta = m.chunk(no).expect("reranked");
                let head = self.head(m, coder, meta, None)?;
                let mut row = ChunkBuilder::with_capacity(dim, 1);
                let s = slot % per;
                row.push(unit.vector(s), unit.ids[s].clone(), head.metadata[slot].clone());
                Ok(Hit { distance: q.metric.finish(c.score), chunk: Arc::new(row.finish()), slot: 0 })
            })
            .collect()
    }
}

impl Stage {
    /// Offers every row of `head` that passes the filter to query `qi`'s
    /// shortlist: the 1-bit estimate for all, the extended code's for those
    /// whose 1-bit lower bound passes the gate.
    fn scan_head(
        &mut self,
        coder: &Coder,
        lq: &ListQuery,
        qi: usize,
        no: u32,
        head: &CodeChunk,
        mask: Option<&[bool]>,
    ) {
        let n = head.len();
        let quantizer = &coder.quantizer;
        self.est.resize(n, 0.0);
        self.err.resize(n, 0.0);
        quantizer.estimate(&lq.lut, &head.signs, &head.factors, &mut self.est, &mut self.err);
        let (sb, eb) = (quantizer.sign_bytes(), quantizer.ex_bytes());
        let list = &mut self.lists[qi];
        let base = (no as u64) << 32;
        let refine = eb > 0;
        // |sign| = 2 for L2, 1 otherwise: the bound on the score.
        let scale = lq.sign.abs();
        for s in 0..n {
            if mask.is_some_and(|m| !m[s]) {
                continue;
            }
            let f = &head.factors[s];
            let own = if lq.l2 { f.norm * f.norm } else { 0.0 };
            let mut estimate = lq.base + own + lq.sign * self.est[s];
            let mut bound = scale * self.err[s];
            if estimate - bound >= list.gate() {
                continue;
            }
            if refine {
                let (e, b) = quantizer.estimate_ex(
                    &lq.lut,
                    &head.signs[s * sb..(s + 1) * sb],
                    &head.ex[s * eb..(s + 1) * eb],
                    f,
                );
                estimate = lq.base + own + lq.sign * e;
                bound = scale * b;
            }
            list.offer(base | s as u64, estimate, bound);
        }
    }
}
