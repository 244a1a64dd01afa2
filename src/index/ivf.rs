//! Training and the IVF layout: k-means over the index's own (decrypted)
//! vectors, the centroids, every item moved into the chunks of its nearest
//! centroid's list, and the automatic list and probe counts. (The probe
//! loop of queries is in `read.rs`.) The centroids are a sealed object like
//! any other; the store sees neither them nor which list a chunk is in.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rayon::prelude::*;

use super::access::Need;
use super::chunk::{item_encoded_len, Bucket, Chunk, ChunkBuilder, Entry, Packer, WipedFloats};
use super::commit::{Plan, SealedChunk};
use super::manifest::{ChunkMeta, Manifest};
use super::snapshot::Snapshot;
use super::{Access, Index, TrainingState};
use crate::codec::{Reader, Writer};
use crate::crypto::Token;
use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::kmeans::{self, KMeansParams, SplitMix};
/// Training points per centroid (FAISS's default cap as well).
const POINTS_PER_CENTROID: usize = 256;
/// Below this many training points times lists times dimensions, full-batch
/// Lloyd iterations; above, mini-batches of the size that costs the same.
const FULL_BATCH_WORK: usize = 1 << 33;
pub const MIN_TRAINING_VECTORS: u64 = 10_000;

/// Decrypted centroids, one row per list.
pub struct Centroids {
    pub k: usize,
    pub dim: usize,
    pub data: WipedFloats,
}

impl Centroids {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(8 + self.data.0.len() * 4);
        w.u32(self.k as u32);
        w.u32(self.dim as u32);
        for v in &self.data.0 {
            w.raw(&v.to_le_bytes());
        }
        w.buf
    }

    pub(super) fn decode(bytes: &[u8], dim: usize) -> Result<Centroids> {
        let mut r = Reader::new(bytes, "centroids");
        let k = r.u32()? as usize;
        if r.u32()? as usize != dim {
            return Err(Error::integrity("centroids have the wrong dimension"));
        }
        let raw = r.raw(k.checked_mul(dim * 4).ok_or_else(|| Error::integrity("centroids overflow"))?)?;
        r.finish()?;
        let data = raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        Ok(Centroids { k, dim, data: WipedFloats(data) })
    }

    pub fn mem_size(&self) -> usize {
        64 + self.data.0.len() * 4
    }

    fn row(&self, c: usize) -> &[f32] {
        &self.data.0[c * self.dim..(c + 1) * self.dim]
    }

    /// Lists nearest to `v`, best first, at most `count`. Cosine indexes
    /// cluster unit vectors, so ranking by L2 to the centroid is right for
    /// every metric but inner product, which ranks by the dot product.
    pub fn nearest(&self, metric: Metric, v: &[f32], count: usize) -> Vec<u32> {
        let unit;
        let v = if metric == Metric::Cosine {
            unit = normalized(v);
            &unit[..]
        } else {
            v
        };
        let mut scored: Vec<(f32, u32)> = (0..self.k)
            .map(|c| {
                let s = match metric {
                    Metric::InnerProduct => -distance::dot(v, self.row(c)),
                    _ => distance::l2_sq(v, self.row(c)),
                };
                (s, c as u32)
            })
            .collect();
        let count = count.min(self.k);
        if count < scored.len() {
            scored.select_nth_unstable_by(count, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            scored.truncate(count);
        }
        scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, c)| c).collect()
    }
}

/// FNV-1a of the bytes, mixed with the seed (not cryptographic: it only
/// decides which items train the centroids).
fn seeded_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    SplitMix::new(h).next_u64()
}

impl Centroids {
    /// The nearest list of each vector: one blocked SGEMM pass for L2 and
    /// cosine (on unit vectors), a per-vector ranking for inner product.
    pub fn assign(&self, pool: &rayon::ThreadPool, metric: Metric, vectors: &[&[f32]]) -> Vec<u32> {
        if metric == Metric::InnerProduct {
            return pool.install(|| vectors.par_iter().map(|v| self.nearest(metric, v, 1)[0]).collect());
        }
        let mut flat = WipedFloats(Vec::with_capacity(vectors.len() * self.dim));
        for v in vectors {
            if metric == Metric::Cosine {
                flat.0.extend(normalized(v));
            } else {
                flat.0.extend_from_slice(v);
            }
        }
        kmeans::assign(pool, &flat.0, self.dim, &self.data.0, self.k).into_iter().map(|(c, _)| c).collect()
    }
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let inv = distance::inv_norm(v);
    v.iter().map(|x| x * inv).collect()
}

/// Training parameters; zero means "default" for the first five.
pub struct TrainParams<'a> {
    /// Number of lists; 0 = round(sqrt(n)), at least 1.
    pub n_lists: u32,
    /// Mini-batch size; 0 = automatic (full batch unless that is very large).
    pub batch_size: usize,
    /// 0 = 100.
    pub max_iters: u32,
    /// 0 = 1e-6; negative or NaN is invalid.
    pub tolerance: f64,
    /// Soft cap in MiB on the training sample and centroids; 0 = none.
    pub max_memory_mib: usize,
    pub seed: u64,
    /// Called after each iteration with (iteration, max_iters, objective);
    /// returning `true` cancels.
    pub progress: Option<&'a mut dyn FnMut(u32, u32, f64) -> bool>,
}

impl Default for TrainParams<'_> {
    fn default() -> Self {
        TrainParams {
            n_lists: 0,
            batch_size: 0,
            max_iters: 0,
            tolerance: 0.0,
            max_memory_mib: 0,
            seed: DEFAULT_SEED,
            progress: None,
        }
    }
}

pub const DEFAULT_SEED: u64 = 0x7678_5f74_7261_696e; // "vx_train"

/// What a training run did.
#[derive(Clone, Copy, Debug)]
pub struct TrainReport {
    pub n_lists: u32,
    pub iterations: u32,
    /// Mean squared distance of the training sample to its centroids.
    pub objective: f64,
    pub sample_size: usize,
}

/// The automatic list count: sqrt(n), the usual IVF rule, which keeps list
/// scans and centroid scans balanced (see docs/BENCHMARKS.md for the sweep).
pub fn auto_n_lists(n: u64) -> u32 {
    ((n as f64).sqrt().round() as u32).max(1)
}

/// Recall@10 the calibrated probe count reaches on the index's own points.
/// Measured on shared/data/minilm-20k (141 lists): 36 probes, and 0.955 on
/// its held-out queries (tests/train.rs); the fixed rule it replaces (30%
/// of the lists) probed 43 for 0.96.
const CALIBRATION_RECALL: f64 = 0.95;
/// Points of the index whose exact neighbours calibrate the probe count.
const CALIBRATION_POINTS: usize = 200;
const CALIBRATION_K: usize = 10;

/// The smallest n_probes at which points of the index find
/// [`CALIBRATION_RECALL`] of their exact 10 nearest other points, when each
/// point of `vectors` is in list `lists[i]`: the automatic probe count comes
/// from the data, not a fixed share of the lists. Costs
/// `CALIBRATION_POINTS` exact scans of the index, on the pool.
fn calibrate_n_probes(
    pool: &rayon::ThreadPool,
    metric: Metric,
    centroids: &Centroids,
    vectors: &[&[f32]],
    lists: &[u32],
) -> u32 {
    let n = vectors.len();
    let probes: Vec<usize> = (0..n).step_by((n / CALIBRATION_POINTS).max(1)).take(CALIBRATION_POINTS).collect();
    let inv: Vec<f32> = match metric {
        Metric::Cosine => pool.install(|| vectors.par_iter().map(|v| distance::inv_norm(v)).collect()),
        _ => Vec::new(),
    };
    let inv_of = |i: usize| inv.get(i).copied().unwrap_or(1.0);
    // For each probe point, the rank (by centroid) of the list of each of
    // its exact nearest neighbours.
    let mut ranks: Vec<u32> = pool.install(|| {
        probes
            .par_iter()
            .flat_map_iter(|&p| {
                let q = vectors[p];
                let mut best: Vec<(f32, usize)> = Vec::with_capacity(CALIBRATION_K + 1);
                for (j, x) in vectors.iter().enumerate() {
                    if j == p {
                        continue;
                    }
                    let s = distance::score(metric, q, x, inv_of(p), inv_of(j));
                    if best.len() < CALIBRATION_K || s < best[best.len() - 1].0 {
                        let at = best.partition_point(|b| b.0 <= s);
                        best.insert(at, (s, j));
                        best.truncate(CALIBRATION_K);
                    }
                }
                let mut rank_of = vec![0u32; centroids.k];
                for (r, list) in centroids.nearest(metric, q, centroids.k).into_iter().enumerate() {
                    rank_of[list as usize] = r as u32;
                }
                best.into_iter().map(move |(_, j)| rank_of[lists[j] as usize])
            })
            .collect()
    });
    if ranks.is_empty() {
        return 1;
    }
    ranks.sort_unstable();
    let needed = ((ranks.len() as f64 * CALIBRATION_RECALL).ceil() as usize).clamp(1, ranks.len());
    (ranks[needed - 1] + 1).clamp(1, centroids.k as u32)
}

struct TrainingFlag<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for TrainingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Index {
    /// Trains the IVF lists and moves every item into its list, atomically.
    /// Readers keep using the previous state until the new one is committed.
    pub fn train(&self, mut params: TrainParams<'_>, access: Access<'_>) -> Result<TrainReport> {
        self.authorize(access, Need::Write)?;
        if params.tolerance.is_nan() || params.tolerance < 0.0 {
            return Err(Error::invalid(format!("tolerance must be >= 0, got {}", params.tolerance)));
        }
        let max_iters = if params.max_iters == 0 { 100 } else { params.max_iters };
        let tolerance = if params.tolerance == 0.0 { 1e-6 } else { params.tolerance };
        if self.training.swap(true, Ordering::AcqRel) {
            return Err(Error::invalid("a training run is already in progress on this handle"));
        }
        let _flag = TrainingFlag(&self.training);

        let snap = self.current()?;
        let m = &snap.manifest;
        let n = m.num_vectors;
        let n_lists = if params.n_lists == 0 { auto_n_lists(n) } else { params.n_lists };
        let need = (2 * n_lists as u64).max(MIN_TRAINING_VECTORS);
        if n < need {
            return Err(Error::NotEnoughVectors(format!(
                "training {n_lists} lists needs at least {need} vectors (max(2 * n_lists, {MIN_TRAINING_VECTORS})); the index holds {n}"
            )));
        }
        let dim = m.config.dimension as usize;
        let k = n_lists as usize;

        // The sample: at most 256 points per list, fewer if max_memory says so.
        let mut sample_n = (n as usize).min(POINTS_PER_CENTROID * k);
        if params.max_memory_mib > 0 {
            let limit = params.max_memory_mib.saturating_mul(1 << 20);
            let fixed = k * dim * 4 * 3 + k * 64; // centroids, f64 sums, counts
            let per_point = dim * 4 + 8 + k * 4 / 64; // row, assignment, share of the SGEMM buffers
            let fits = limit.saturating_sub(fixed) / per_point;
            if fixed >= limit || fits < k {
                return Err(Error::MemoryLimit(format!(
                    "max_memory {} MiB cannot hold {k} centroids of dim {dim} and a training sample (needs at least {} MiB)",
                    params.max_memory_mib,
                    (fixed + k * per_point).div_ceil(1 << 20)
                )));
            }
            sample_n = sample_n.min(fits);
        }
        let sample = self.training_sample(m, sample_n, params.seed)?;
        let batch_size = match params.batch_size {
            0 if sample_n.saturating_mul(k).saturating_mul(dim) <= FULL_BATCH_WORK => 0,
            0 => (FULL_BATCH_WORK / (k * dim)).max(4 * k),
            b => b,
        };
        let kp = KMeansParams { k, max_iters, tolerance, batch_size, seed: params.seed };
        let mut progress = |iter: u32, objective: f64| match params.progress.as_mut() {
            Some(cb) => cb(iter, max_iters, objective),
            None => false,
        };
        let result = kmeans::kmeans(&self.env.pool, &sample.0, dim, &kp, &mut progress)?;
        drop(sample);
        let report =
            TrainReport { n_lists, iterations: result.iterations, objective: result.objective, sample_size: sample_n };
        let centroids = Arc::new(Centroids { k, dim, data: WipedFloats(result.centroids) });
        self.commit(|snap| Ok((Some(self.plan_layout(snap, &centroids)?), report)))
    }

    /// `count` vectors drawn without replacement, unit-normalised for cosine
    /// indexes. The draw ranks items by a seeded hash of their id, so it
    /// depends on the seed and the index's contents, not on where items
    /// happen to be stored (which changes with every training).
    fn training_sample(&self, m: &Manifest, count: usize, seed: u64) -> Result<WipedFloats> {
        let dim = m.config.dimension as usize;
        let chunks: Vec<Arc<Chunk>> = self.env.pool.install(|| {
            m.chunks().collect::<Vec<_>>().par_iter().map(|meta| self.chunk(m, meta, None)).collect::<Result<_>>()
        })?;
        let mut ranked: Vec<(u64, u32, u32)> = Vec::with_capacity(m.num_vectors as usize);
        for (ci, chunk) in chunks.iter().enumerate() {
            for (slot, id) in chunk.ids.iter().enumerate() {
                ranked.push((seeded_hash(seed, id.as_bytes()), ci as u32, slot as u32));
            }
        }
        if count < ranked.len() {
            ranked.select_nth_unstable(count);
            ranked.truncate(count);
        }
        ranked.sort_unstable();
        let mut out = WipedFloats(Vec::with_capacity(ranked.len() * dim));
        for (_, ci, slot) in ranked {
            let v = chunks[ci as usize].vector(slot as usize);
            if m.config.metric == Metric::Cosine {
                out.0.extend(normalized(v));
            } else {
                out.0.extend_from_slice(v);
            }
        }
        Ok(out)
    }

    /// The plan that moves every item of `snap` into the list of its nearest
    /// centroid: new chunks per list, every directory entry rewritten, the
    /// sealed centroids, the old chunks deleted.
    fn plan_layout(&self, snap: &Snapshot, centroids: &Arc<Centroids>) -> Result<Plan<'_>> {
        let old = &snap.manifest;
        let mut plan = self.plan(old);
        let m = &mut plan.manifest;
        let (dim, precision, metric) = (m.config.dimension as usize, m.config.precision, m.config.metric);

        // 1. Every item's list.
        let metas: Vec<&ChunkMeta> = old.chunks().collect();
        let chunks: Vec<Arc<Chunk>> = self
            .env
            .pool
            .install(|| metas.par_iter().map(|meta| self.chunk(old, meta, None)).collect::<Result<_>>())?;
        let every: Vec<(usize, usize)> =
            chunks.iter().enumerate().flat_map(|(ci, c)| (0..c.len()).map(move |s| (ci, s))).collect();
        let vectors: Vec<&[f32]> = every.iter().map(|&(ci, s)| chunks[ci].vector(s)).collect();
        let lists = centroids.assign(&self.env.pool, metric, &vectors);
        let n_probes = calibrate_n_probes(&self.env.pool, metric, centroids, &vectors, &lists);
        drop(vectors);
        let mut members: Vec<Vec<(usize, usize)>> = vec![Vec::new(); centroids.k];
        for (&(ci, slot), &list) in every.iter().zip(&lists) {
            members[list as usize].push((ci, slot));
        }

        // 2. Pack each list into chunks under the chunk budget, and seal them.
        let mut packer = Packer::default();
        struct Pack {
            no: u32,
            list: u32,
            /// (position in `chunks`, slot) of each item.
            rows: Vec<(usize, usize)>,
        }
        let mut packs: Vec<Pack> = Vec::new();
        for (list, items) in members.into_iter().enumerate() {
            for (ci, slot) in items {
                let c = &chunks[ci];
                let size =
                    item_encoded_len(dim, precision, c.ids[slot].len(), c.metadata[slot].as_ref().map(String::len));
                match packer.place(list as u32, size, &mut m.next_chunk)? {
                    (no, true) => packs.push(Pack { no, list: list as u32, rows: vec![(ci, slot)] }),
                    (_, false) => packs.last_mut().expect("a list's first item opens a chunk").rows.push((ci, slot)),
                }
            }
        }
        let built: Vec<(SealedChunk, Vec<(Token, u32)>)> = self.env.pool.install(|| {
            packs
                .par_iter()
                .map(|pack| {
                    let mut rows = ChunkBuilder::with_capacity(dim, pack.rows.len());
                    let mut moved = Vec::with_capacity(pack.rows.len());
                    for &(ci, slot) in &pack.rows {
                        rows.push_row(&chunks[ci], slot);
                        moved.push((self.tokens.id(&chunks[ci].ids[slot]), pack.no));
                    }
                    Ok((plan.seal_chunk(pack.no, pack.list, rows.finish(), precision)?, moved))
                })
                .collect::<Result<_>>()
        })?;
        for meta in metas {
            plan.remove_chunk(meta);
        }
        let mut new_home: HashMap<Token, u32> = HashMap::with_capacity(old.num_vectors as usize);
        for (sealed, moved) in built {
            new_home.extend(moved);
            plan.put_chunk(sealed);
        }

        // 3. Every directory entry points at its item's new chunk.
        let mut buckets = Vec::new();
        for b in 0..old.n_buckets as usize {
            let old_bucket = self.bucket(old, b)?;
            if old_bucket.entries.is_empty() {
                continue;
            }
            let mut bucket = Bucket::default();
            for e in &old_bucket.entries {
                let chunk = *new_home.get(&e.token).ok_or_else(|| Error::integrity("a directory entry has no item"))?;
                debug_assert_eq!(old.bucket_of(&e.token), b);
                bucket.entries.push(Entry { chunk, ..*e });
            }
            buckets.push((b, bucket));
        }
        plan.put_buckets(buckets)?;

        // 4. The centroids, and the manifest that makes it all current.
        plan.put_centroids(centroids)?;
        let m = &mut plan.manifest;
        m.training = TrainingState::Trained;
        m.n_lists = centroids.k as u32;
        m.auto_n_probes = n_probes;
        Ok(plan)
    }
}
