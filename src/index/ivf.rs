//! Training and the IVF layout: k-means over the index's own (decrypted)
//! vectors, the centroids, every item moved into the chunks of its nearest
//! centroid's list, and the automatic list and probe counts. (The probe
//! loop of queries is in `read.rs`.) The centroids are a sealed object like
//! any other; the store sees neither them nor which list a chunk is in.

use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::access::Need;
use zeroize::Zeroizing;

use super::chunk::{item_encoded_len, Chunk, ChunkBuilder, WipedFloats};
use super::codes::{packer_for, packing_for, Coder};
use super::commit::{Plan, SealedBucket, SealedChunk};
use super::directory::{applied, group_by_bucket, remove_run};
use super::manifest::{ChunkMeta, Manifest};
use super::snapshot::Snapshot;
use super::{Access, Env, Index, IndexType, TrainingState};
use crate::codec::{Reader, Writer};
use crate::crypto::Token;
use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::kmeans::{self, KMeansParams, SplitMix};
use crate::parallel::{self, MIN_PARALLEL_CHEAP};
use crate::rabitq::Padding;
use crate::store::WriteBatch;
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
    /// IVF_RABITQ: the coder of the training that made them (built on
    /// first use, then kept as long as they are cached).
    coder: OnceLock<Arc<Coder>>,
    /// What `assign` needs of them (k · dim floats more; counted in `mem_size`).
    prepared: kmeans::Prepared,
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
        Ok(Centroids::new(k, dim, WipedFloats(data)))
    }

    pub fn new(k: usize, dim: usize, data: WipedFloats) -> Centroids {
        let prepared = kmeans::Prepared::new(&data.0, dim);
        Centroids { k, dim, data, coder: OnceLock::new(), prepared }
    }

    /// The coder of a trained IVF_RABITQ index with these centroids: the
    /// same `bits` and rotation (seed, padding) for a given set of
    /// centroids, as all are committed with them.
    pub fn coder(&self, metric: Metric, bits: u32, rotation: (u64, Padding)) -> Arc<Coder> {
        self.coder.get_or_init(|| Arc::new(Coder::new(self, metric, bits, rotation))).clone()
    }

    pub fn mem_size(&self) -> usize {
        64 + self.data.0.len() * 4 + self.prepared.mem_size()
    }

    /// The centroids' mean, which the expanded distance forms centre on
    /// (`kmeans::mean`).
    pub fn mean(&self) -> &[f32] {
        self.prepared.mean()
    }

    /// Centroid `c` less `mean`.
    pub fn centred(&self, c: usize) -> &[f32] {
        self.prepared.centred(c)
    }

    pub fn row(&self, c: usize) -> &[f32] {
        &self.data.0[c * self.dim..(c + 1) * self.dim]
    }

    /// Lists nearest to `v`, best first, at most `count`. Cosine indexes
    /// cluster unit vectors, so ranking by L2 to the centroid is right for
    /// every metric but inner product, which ranks by the dot product.
    /// L2 ranks by the centred form writes assign with
    /// (`kmeans::Prepared::scores`), in one pass of dots.
    pub fn nearest(&self, metric: Metric, v: &[f32], count: usize) -> Vec<u32> {
        let mut scores = vec![0f32; self.k];
        match metric {
            Metric::InnerProduct => {
                distance::dots(v, &self.data.0, &mut scores);
                scores.iter_mut().for_each(|s| *s = -*s);
            }
            Metric::Cosine => self.prepared.scores(&normalized(v), &mut scores),
            Metric::Euclidean | Metric::SquaredEuclidean => self.prepared.scores(v, &mut scores),
        }
        let mut scored: Vec<(f32, u32)> = scores.into_iter().zip(0..).collect();
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
            return parallel::map(pool, vectors, MIN_PARALLEL_CHEAP, |v| self.nearest(metric, v, 1)[0]);
        }
        let mut flat = WipedFloats(Vec::with_capacity(vectors.len() * self.dim));
        for v in vectors {
            if metric == Metric::Cosine {
                flat.0.extend(normalized(v));
            } else {
                flat.0.extend_from_slice(v);
            }
        }
        kmeans::assign_prepared(pool, &flat.0, &self.prepared).into_iter().map(|(c, _)| c).collect()
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
    /// Soft cap in MiB on the training sample and centroids, and (a quarter
    /// of it each) on the chunks one step of the pass over the index decrypts
    /// and on the objects it writes ahead per store batch; 0 = none.
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
/// The same for the filtered probe counts, with a margin: calibrated at
/// 0.95 on the index's own points, 1M × 128 reached 0.9455 on held-out
/// queries with a 0.1% filter (docs/BENCHMARKS.md, "Filters").
const FILTERED_CALIBRATION_RECALL: f64 = 0.97;
/// Points of the index whose exact neighbours calibrate the probe count.
const CALIBRATION_POINTS: usize = 200;
const CALIBRATION_K: usize = 10;

/// Decrypted chunk bytes one step of a training pass holds at most:
/// training reads the index in steps, so its memory does not grow with the
/// index. A quarter of `max_memory`, when that is less.
const TRAINING_STEP_BYTES: usize = 128 << 20;
/// Sealed bytes a training run holds written ahead of its commit at most
/// (two store batches of half this: one being written, one filling); a
/// quarter of `max_memory`, when that is less.
const WRITE_AHEAD_BYTES: usize = 64 << 20;

/// Points a training pass assigns (and calibrates against) per SGEMM.
const ASSIGN_BLOCK: usize = 16_384;

/// How much a training pass holds at once (see the constants above).
#[derive(Clone, Copy)]
struct Steps {
    read: usize,
    write: usize,
}

impl Steps {
    fn within(max_memory_mib: usize) -> Steps {
        let quarter = match max_memory_mib {
            0 => usize::MAX,
            mib => (mib << 20) / 4,
        };
        Steps { read: TRAINING_STEP_BYTES.min(quarter), write: WRITE_AHEAD_BYTES.min(quarter) }
    }
}

/// The calibration of the automatic probe count, fed the index's points as
/// training streams through them: for each of [`CALIBRATION_POINTS`] points
/// of the index, the lists of its exact 10 nearest other points; then the
/// smallest n_probes at which the points find [`CALIBRATION_RECALL`] of
/// them. So the automatic probe count comes from the data, not a fixed
/// share of the lists. Costs `CALIBRATION_POINTS` exact scans of the index,
/// one SGEMM per block of [`ASSIGN_BLOCK`] points.
///
/// The same for filters: each of [`FILTER_MODULI`] simulates a filter that
/// matches 1 in that many items, picked by a hash of their ids (so
/// independent of where they lie), and gets the smallest n_probes at which
/// the points find that share of their 10 nearest matching items. A
/// filtered query's k nearest matches lie among its ~k/share nearest items,
/// which span more lists; how many more depends on the data, so it is
/// measured here rather than assumed.
struct Calibration {
    metric: Metric,
    dim: usize,
    /// The points (unit vectors for cosine; for L2 less `mean`) and their ids.
    points: WipedFloats,
    /// L2: the centroids' mean, which points and items are moved by (empty otherwise).
    mean: Zeroizing<Vec<f32>>,
    ids: Vec<Zeroizing<String>>,
    norms: Vec<f32>,
    /// Rank (by centroid) of each list, per point.
    rank_of: Vec<Vec<u32>>,
    /// Per point: its best (score, list) so far, ascending; then the same
    /// among the items each simulated filter matches.
    best: Vec<Vec<(f32, u32)>>,
    filtered: Vec<[Vec<(f32, u32)>; 3]>,
}

/// The filters the probe count is calibrated for: 1 in 10, 100 and 1000
/// items (10%, 1% and 0.1%).
pub(crate) const FILTER_MODULI: [u64; 3] = [10, 100, 1000];

/// An item is matched by the simulated filter of a modulus when this fixed
/// hash of its id (FNV-1a, then mixed) is a multiple of it.
fn simulated_filter_hash(id: &str) -> u64 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// What an item must be below to enter a full `best` (+inf while not full).
fn threshold(best: &[(f32, u32)]) -> f32 {
    if best.len() < CALIBRATION_K {
        f32::INFINITY
    } else {
        best[best.len() - 1].0
    }
}

/// Whether an item scoring `s` enters `best`: any while it is not full.
fn wanted(best: &[(f32, u32)], s: f32) -> bool {
    best.len() < CALIBRATION_K || s < best[best.len() - 1].0
}

/// Keeps (s, list) among the best [`CALIBRATION_K`] of `best`, ascending.
fn keep_best(best: &mut Vec<(f32, u32)>, s: f32, list: u32) {
    if wanted(best, s) {
        let at = best.partition_point(|b| b.0 <= s);
        best.insert(at, (s, list));
        best.truncate(CALIBRATION_K);
    }
}

impl Calibration {
    fn new(metric: Metric, centroids: &Centroids, points: WipedFloats, ids: Vec<Zeroizing<String>>) -> Calibration {
        let dim = centroids.dim;
        let rank_of = points
            .0
            .chunks_exact(dim)
            .map(|p| {
                let mut rank_of = vec![0u32; centroids.k];
                for (r, list) in centroids.nearest(metric, p, centroids.k).into_iter().enumerate() {
                    rank_of[list as usize] = r as u32;
                }
                rank_of
            })
            .collect();
        // L2 ranks by |x|² + |p|² - 2 x·p: on points and items moved by the
        // centroids' mean (see `kmeans::mean`), or far from the origin the
        // rounding picks each point's "nearest" items at random.
        let (points, mean) = match metric {
            Metric::InnerProduct | Metric::Cosine => (points, Zeroizing::new(Vec::new())),
            _ => {
                let mean = Zeroizing::new(centroids.mean().to_vec());
                let mut centred = WipedFloats(Vec::with_capacity(points.0.len()));
                kmeans::centre_into(&points.0, &mean, &mut centred.0);
                (centred, mean)
            }
        };
        let norms = points.0.chunks_exact(dim).map(|p| distance::dot(p, p)).collect();
        let best = vec![Vec::with_capacity(CALIBRATION_K + 1); ids.len()];
        let filtered = vec![[Vec::new(), Vec::new(), Vec::new()]; ids.len()];
        Calibration { metric, dim, points, mean, ids, norms, rank_of, best, filtered }
    }

    /// Feeds points of the index, their ids and lists.
    fn observe(&mut self, pool: &rayon::ThreadPool, vectors: &[&[f32]], ids: &[&str], lists: &[u32]) {
        let (m, dim) = (self.ids.len(), self.dim);
        if m == 0 || ids.is_empty() {
            return;
        }
        let n = ids.len();
        let mut data = WipedFloats(Vec::with_capacity(n * dim));
        for v in vectors {
            match self.metric {
                Metric::Cosine => data.0.extend(normalized(v)),
                Metric::InnerProduct => data.0.extend_from_slice(v),
                _ => kmeans::centre_into(v, &self.mean, &mut data.0),
            }
        }
        let data = &data.0;
        // Point-major (`ips[p * n + i]`): each point's pass below reads its
        // own contiguous row, where item-major strode a cache line a step.
        let mut ips = vec![0f32; m * n];
        // One task per thread: each packs all of `data` for its SGEMM.
        let per_task = m.div_ceil(pool.current_num_threads().max(1));
        pool.install(|| {
            use rayon::prelude::*;
            ips.par_chunks_mut(per_task * n)
                .zip(self.points.0.par_chunks(per_task * dim))
                .for_each(|(out, points)| distance::inner_products(points, points.len() / dim, data, n, dim, out));
        });
        // Rank-equivalent to each metric's distance: s_i = x_norms[i] +
        // |p|^2 - 2 ip (L2), -ip (inner product, cosine).
        let l2 = !matches!(self.metric, Metric::InnerProduct | Metric::Cosine);
        let x_norms: Vec<f32> = match l2 {
            true => data.chunks_exact(dim).map(|x| distance::dot(x, x)).collect(),
            false => Vec::new(),
        };
        // Each simulated filter's items in this block.
        let mut members: [Vec<usize>; 3] = Default::default();
        for (i, id) in ids.iter().enumerate() {
            let h = simulated_filter_hash(id);
            for (members, modulus) in members.iter_mut().zip(FILTER_MODULI) {
                if h.is_multiple_of(modulus) {
                    members.push(i);
                }
            }
        }
        let (points, norms) = (&self.ids, &self.norms);
        pool.install(|| {
            use rayon::prelude::*;
            let work = self.best.par_iter_mut().zip(self.filtered.par_iter_mut()).enumerate();
            work.for_each_init(Vec::new, |s, (p, (best, filtered))| {
                let row = &ips[p * n..(p + 1) * n];
                s.clear();
                match l2 {
                    true => s.extend(row.iter().zip(&x_norms).map(|(ip, xn)| xn + norms[p] - 2.0 * ip)),
                    false => s.extend(row.iter().map(|ip| -ip)),
                }
                // Most items are farther than the point's 10 best so far: a
                // group of 16 is passed over on one vector compare, and only
                // an item below the threshold has its id compared.
                let offer = |best: &mut Vec<(f32, u32)>, i: usize| {
                    if ids[i] != points[p].as_str() {
                        keep_best(best, s[i], lists[i]);
                    }
                };
                for (g, group) in s.chunks(16).enumerate() {
                    let limit = threshold(best);
                    if best.len() < CALIBRATION_K || group.iter().fold(false, |any, &x| any | (x < limit)) {
                        for (t, &x) in group.iter().enumerate() {
                            if wanted(best, x) {
                                offer(best, g * 16 + t);
                            }
                        }
                    }
                }
                // Each filter's best among its own items only.
                for (best, members) in filtered.iter_mut().zip(&members) {
                    for &i in members {
                        if wanted(best, s[i]) {
                            offer(best, i);
                        }
                    }
                }
            });
        });
    }

    fn n_probes(&self, k: usize) -> u32 {
        self.probes_finding(self.best.iter(), k, CALIBRATION_RECALL)
    }

    /// The probe counts of the simulated filters (see [`FILTER_MODULI`]).
    fn filtered_n_probes(&self, k: usize) -> [u32; 3] {
        [0, 1, 2].map(|f| self.probes_finding(self.filtered.iter().map(|b| &b[f]), k, FILTERED_CALIBRATION_RECALL))
    }

    /// The smallest n_probes at which the points find `recall` of their
    /// `best` neighbours.
    fn probes_finding<'a>(&self, best: impl Iterator<Item = &'a Vec<(f32, u32)>>, k: usize, recall: f64) -> u32 {
        let mut ranks: Vec<u32> = best
            .zip(&self.rank_of)
            .flat_map(|(best, rank_of)| best.iter().map(|&(_, list)| rank_of[list as usize]))
            .collect();
        if ranks.is_empty() {
            return 1;
        }
        ranks.sort_unstable();
        let needed = ((ranks.len() as f64 * recall).ceil() as usize).clamp(1, ranks.len());
        (ranks[needed - 1] + 1).clamp(1, k as u32)
    }
}

struct TrainingFlag<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for TrainingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// An item drawn into the sample, ranked by (hash, id); `row` is its slot.
struct Drawn {
    hash: u64,
    id: Zeroizing<String>,
    row: usize,
}

impl Drawn {
    fn rank(&self) -> (u64, &str) {
        (self.hash, self.id.as_str())
    }
}

impl PartialEq for Drawn {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Drawn {}

impl PartialOrd for Drawn {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Drawn {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// The training sample: vectors (unit vectors for cosine) and their ids,
/// ordered by the seeded hash of the id.
struct Sample {
    vectors: WipedFloats,
    ids: Vec<Zeroizing<String>>,
}

impl Index {
    /// Trains the IVF lists and moves every item into its list, atomically.
    /// Readers keep using the previous state until the new one is committed.
    /// Memory stays bounded: the sample, the centroids, one step of chunks
    /// and each list's open chunk (see docs/SCALING.md).
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
            // Centroids, f64 sums, counts, and the points k-means++ seeds from.
            let fixed = k * dim * 4 * 3 + k * 64 + kmeans::PLUS_PLUS_POINTS_PER_CENTROID * k * dim * 4;
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
        // What an earlier run that crashed or failed wrote ahead and never
        // committed goes before this one writes more.
        self.collect_garbage()?;
        let steps = Steps::within(params.max_memory_mib);
        let Sample { vectors: sample, mut ids } = self.training_sample(m, sample_n, params.seed, steps)?;
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
        // The calibration points: the sample's first, a seeded random draw.
        ids.truncate(CALIBRATION_POINTS);
        let points = WipedFloats(sample.0[..ids.len() * dim].to_vec());
        drop(sample);
        let report =
            TrainReport { n_lists, iterations: result.iterations, objective: result.objective, sample_size: sample_n };
        let centroids = Arc::new(Centroids::new(k, dim, WipedFloats(result.centroids)));
        // IVF_RABITQ: each training draws the rotation of its codes afresh.
        let quantizer_seed = match m.config.index_type {
            IndexType::IvfRabitq => {
                let mut seed = [0u8; 8];
                crate::crypto::random_bytes(&mut seed)?;
                u64::from_le_bytes(seed) | 1
            }
            IndexType::IvfFlat => 0,
        };
        let report = self.commit(|snap| {
            let calibration = Calibration::new(m.config.metric, &centroids, WipedFloats(points.0.clone()), ids.clone());
            let plan = self.plan_layout(snap, &centroids, quantizer_seed, calibration, steps)?;
            Ok((Some(plan), report))
        })?;
        // The old layout is garbage now: training returns once its space is
        // back (a `file:` store unlinks the emptied segments, ~the size of
        // the index, on a thread of its own; a few seconds at 10M).
        self.env.store.settle();
        Ok(report)
    }

    /// The chunks of `m` in steps of about `steps.read` bytes, each step's
    /// decrypted in parallel, handed to `each` in chunk order.
    fn for_each_step(
        &self,
        m: &Manifest,
        steps: Steps,
        mut each: impl FnMut(&[Arc<Chunk>]) -> Result<()>,
    ) -> Result<()> {
        let metas: Vec<&ChunkMeta> = m.chunks().collect();
        let mut start = 0;
        while start < metas.len() {
            let mut end = start;
            let mut bytes = 0usize;
            while end < metas.len() && (end == start || bytes < steps.read) {
                bytes += metas[end].bytes as usize;
                end += 1;
            }
            let chunks: Vec<Arc<Chunk>> = self.env.pool.install(|| {
                metas[start..end].par_iter().map(|meta| self.chunk_uncached(m, meta)).collect::<Result<_>>()
            })?;
            each(&chunks)?;
            start = end;
        }
        Ok(())
    }

    /// `count` vectors drawn without replacement, unit-normalised for cosine
    /// indexes, streaming through the index. The draw ranks items by a
    /// seeded hash of their id, so it depends on the seed and the index's
    /// contents, not on where items happen to be stored (which changes with
    /// every training).
    fn training_sample(&self, m: &Manifest, count: usize, seed: u64, steps: Steps) -> Result<Sample> {
        let dim = m.config.dimension as usize;
        // The `count` smallest (hash, id) so far, as a max-heap over slots of `rows`.
        let mut heap: BinaryHeap<Drawn> = BinaryHeap::with_capacity(count + 1);
        let mut rows = WipedFloats(vec![0f32; count * dim]);
        self.for_each_step(m, steps, |chunks| {
            for chunk in chunks {
                for (slot, id) in chunk.ids.iter().enumerate() {
                    let h = seeded_hash(seed, id.as_bytes());
                    let at = if heap.len() < count {
                        heap.len()
                    } else {
                        match heap.peek() {
                            Some(top) if (h, id.as_str()) < top.rank() => heap.pop().expect("full").row,
                            _ => continue,
                        }
                    };
                    let v = chunk.vector(slot);
                    let row = &mut rows.0[at * dim..(at + 1) * dim];
                    match m.config.metric {
                        Metric::Cosine => row.copy_from_slice(&normalized(v)),
                        _ => row.copy_from_slice(v),
                    }
                    heap.push(Drawn { hash: h, id: Zeroizing::new(id.clone()), row: at });
                }
            }
            Ok(())
        })?;
        let ranked = heap.into_sorted_vec();
        let mut vectors = WipedFloats(Vec::with_capacity(ranked.len() * dim));
        let mut ids = Vec::with_capacity(ranked.len());
        for Drawn { id, row, .. } in ranked {
            vectors.0.extend_from_slice(&rows.0[row * dim..(row + 1) * dim]);
            ids.push(id);
        }
        Ok(Sample { vectors, ids })
    }

    /// The plan that moves every item of `snap` into the list of its nearest
    /// centroid, streaming: one step of chunks at a time, each list's items
    /// packed into new chunks and sealed as they fill, then every directory
    /// bucket rewritten to point at its items' new chunks. The new chunks
    /// and buckets are written ahead of the commit, under keys no committed
    /// state uses, so they stay invisible until the plan's root names them
    /// (and are collected as garbage if it never does); the plan itself
    /// holds the centroids, the pages, the root and the old objects' removal.
    fn plan_layout(
        &self,
        snap: &Snapshot,
        centroids: &Arc<Centroids>,
        quantizer_seed: u64,
        mut calibration: Calibration,
        steps: Steps,
    ) -> Result<Plan<'_>> {
        let old = &snap.manifest;
        let mut plan = self.plan(old);
        plan.manifest.quantizer_seed = quantizer_seed;
        // Each training codes with the newest padding (see `Padding`).
        plan.manifest.quantizer_padding = Padding::Multiple64;
        if old.config.index_type == IndexType::IvfRabitq {
            let rotation = (quantizer_seed, plan.manifest.quantizer_padding);
            plan.coder = Some(centroids.coder(old.config.metric, old.config.quantizer_bits, rotation));
        }
        let (dim, precision, metric) = (old.config.dimension as usize, old.config.precision, old.config.metric);
        let mut ahead = WriteAhead::new(&self.env, steps)?;

        // 1. Every item to its list's open chunk; a full chunk is sealed and
        //    written ahead. `homes` records each item's new chunk.
        let coder = plan.coder.clone();
        let mut packer = packer_for(coder.as_deref());
        let mut open: HashMap<u32, (u32, ChunkBuilder)> = HashMap::new();
        let mut homes: Vec<(Token, u32)> = Vec::with_capacity(old.num_vectors as usize);
        let mut next_chunk = plan.manifest.next_chunk;
        self.for_each_step(old, steps, |chunks| {
            let rows: Vec<(usize, usize)> =
                chunks.iter().enumerate().flat_map(|(ci, c)| (0..c.len()).map(move |s| (ci, s))).collect();
            let mut full: Vec<(u32, u32, ChunkBuilder)> = Vec::new();
            // In blocks, so the buffers of the SGEMMs stay small.
            for block in rows.chunks(ASSIGN_BLOCK) {
                let vectors: Vec<&[f32]> = block.iter().map(|&(ci, s)| chunks[ci].vector(s)).collect();
                let ids: Vec<&str> = block.iter().map(|&(ci, s)| chunks[ci].ids[s].as_str()).collect();
                let lists = centroids.assign(&self.env.pool, metric, &vectors);
                calibration.observe(&self.env.pool, &vectors, &ids, &lists);
                let tokens: Vec<Token> =
                    self.env.pool.install(|| ids.par_iter().map(|id| self.tokens.id(id)).collect());
                for ((&(ci, slot), &list), token) in block.iter().zip(&lists).zip(tokens) {
                    let c = &chunks[ci];
                    let metadata_len = c.metadata[slot].as_ref().map(String::len);
                    let size = item_encoded_len(dim, precision, c.ids[slot].len(), metadata_len);
                    let (no, new) =
                        packer.place(list, packing_for(coder.as_deref(), size, metadata_len), &mut next_chunk)?;
                    if new {
                        let fresh = (no, ChunkBuilder::with_capacity(dim, 0));
                        if let Some((done, rows)) = open.insert(list, fresh) {
                            full.push((done, list, rows));
                        }
                    }
                    open.get_mut(&list).expect("opened").1.push_row(c, slot);
                    homes.push((token, no));
                }
            }
            self.write_chunks_ahead(&mut plan, &mut ahead, full)
        })?;
        let last: Vec<(u32, u32, ChunkBuilder)> = open.into_iter().map(|(list, (no, rows))| (no, list, rows)).collect();
        self.write_chunks_ahead(&mut plan, &mut ahead, last)?;
        plan.manifest.next_chunk = next_chunk;
        for meta in old.chunks() {
            plan.remove_chunk(meta);
        }

        // 2. Every directory entry points at its item's new chunk.
        homes.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let home_of = |token: &Token| -> Result<u32> {
            let at = homes.binary_search_by(|h| h.0.cmp(token));
            at.map(|i| homes[i].1).map_err(|_| Error::integrity("a directory entry names an item no chunk holds"))
        };
        if homes.len() as u64 != old.num_vectors || homes.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Error::integrity("the chunks hold another number of items than the manifest says"));
        }
        //    The runs (and the fold's) are folded in on the way (and removed at
        //    the commit).
        let n_buckets = old.n_buckets as usize;
        let runs = group_by_bucket(&self.run_entries_merged(old)?, n_buckets);
        let touched: Vec<usize> =
            (0..n_buckets).filter(|&b| !old.bucket(b).is_none() || runs.contains_key(&b)).collect();
        for step in touched.chunks(4096) {
            let sealed: Vec<SealedBucket> = self.env.pool.install(|| {
                step.par_iter()
                    .map(|&b| {
                        let mut bucket = (*self.bucket_uncached(old, b)?).clone();
                        if let Some(changes) = runs.get(&b) {
                            bucket = applied(bucket, changes.clone());
                        }
                        for e in &mut bucket.entries {
                            e.chunk = home_of(&e.token)?;
                        }
                        plan.seal_bucket(b, bucket)
                    })
                    .collect::<Result<_>>()
            })?;
            for s in sealed {
                if let Some((obj, stamp, bytes)) = plan.put_bucket_ahead(s) {
                    ahead.put(self.store_key(obj, &stamp), bytes)?;
                }
            }
        }
        for run in old.directory_runs() {
            remove_run(&mut plan, run);
        }
        plan.manifest.runs.clear();
        plan.manifest.folding = None;
        ahead.finish()?;

        // 3. The centroids, the calibrated probe count, and the root that
        //    makes it all current.
        plan.put_centroids(centroids)?;
        let m = &mut plan.manifest;
        m.training = TrainingState::Trained;
        m.n_lists = centroids.k as u32;
        m.auto_n_probes = calibration.n_probes(centroids.k);
        m.filtered_n_probes = calibration.filtered_n_probes(centroids.k);
        Ok(plan)
    }

    /// Seals the chunks `(no, list, rows)` in parallel and writes them ahead.
    fn write_chunks_ahead(
        &self,
        plan: &mut Plan<'_>,
        ahead: &mut WriteAhead,
        full: Vec<(u32, u32, ChunkBuilder)>,
    ) -> Result<()> {
        let (precision, sealing) = (plan.manifest.config.precision, plan.chunk_sealing());
        let sealed: Vec<SealedChunk> = self.env.pool.install(|| {
            full.into_par_iter()
                .map(|(no, list, rows)| sealing.seal_chunk((no, list), rows.finish(), &[], precision))
                .collect::<Result<_>>()
        })?;
        for s in sealed {
            for (obj, stamp, bytes) in plan.put_chunk_ahead(s) {
                ahead.put(self.store_key(obj, &stamp), bytes)?;
            }
        }
        Ok(())
    }
}

/// Objects a training run writes to the store ahead of its commit, in
/// batches of about half the step's `write` bytes (no compare-and-set:
/// nothing committed names them). A thread of its own writes each batch
/// while the pass assigns and seals the next, so the store's work (its
/// B-tree, the copy into the file, the fsync) overlaps the pass instead of
/// stopping it. One batch is written while the next fills: the two stay
/// within the step's `write` bytes.
struct WriteAhead {
    batch: WriteBatch,
    bytes: usize,
    limit: usize,
    /// Hands batches to the writer, which stops at its first error.
    writer: Option<(SyncSender<WriteBatch>, JoinHandle<Result<()>>)>,
}

impl WriteAhead {
    fn new(env: &Env, steps: Steps) -> Result<WriteAhead> {
        let (send, batches) = sync_channel::<WriteBatch>(0);
        let store = env.store.clone();
        let writer = std::thread::Builder::new()
            .name("vx-write-ahead".into())
            .spawn(move || batches.into_iter().try_for_each(|batch| store.write(batch).map(drop)))
            .map_err(|e| Error::Storage(format!("cannot start training's writer thread: {e}")))?;
        Ok(WriteAhead { batch: WriteBatch::default(), bytes: 0, limit: steps.write / 2, writer: Some((send, writer)) })
    }

    fn put(&mut self, key: Vec<u8>, sealed: Vec<u8>) -> Result<()> {
        self.bytes += sealed.len();
        self.batch.put(key, sealed);
        if self.bytes >= self.limit {
            self.send()?;
        }
        Ok(())
    }

    /// Hands the batch filled so far to the writer (waiting while it writes
    /// the one before).
    fn send(&mut self) -> Result<()> {
        self.bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        let stopped = || Error::Storage("training's writer has stopped".into());
        let Some((send, _)) = &self.writer else { return Err(stopped()) };
        if batch.ops.is_empty() || send.send(batch).is_ok() {
            return Ok(());
        }
        // The writer stopped: its error says why.
        self.stop().and(Err(stopped()))
    }

    /// Writes what is left and waits until the writer has written it all.
    fn finish(mut self) -> Result<()> {
        self.send()?;
        self.stop()
    }

    /// Closes the writer's queue and waits for it: its first error, if any.
    fn stop(&mut self) -> Result<()> {
        let Some((send, writer)) = self.writer.take() else { return Ok(()) };
        drop(send);
        writer.join().unwrap_or_else(|_| Err(Error::Storage("training's writer thread panicked".into())))
    }
}

impl Drop for WriteAhead {
    /// A training that fails stops here until its writer has stopped, so
    /// nothing it wrote ahead lands after the failure is reported (the next
    /// writer collects it as garbage).
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Calibration::observe`, fed block by block, keeps for every point
    /// what a stable sort of all items keeps: its best (score, list), and
    /// the same among each simulated filter's items, the point itself left
    /// out, the earlier item first among ties. Small integer coordinates
    /// make every score exact, and ties common.
    #[test]
    fn calibration_keeps_what_a_sort_of_all_items_keeps() {
        let (n, dim, k, m) = (5000, 8, 7, 6);
        let mut rng = SplitMix::new(11);
        let data: Vec<f32> = (0..n * dim).map(|_| (rng.next_u64() % 8) as f32).collect();
        let ids: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
        let lists: Vec<u32> = (0..n).map(|i| (rng.next_u64() % k as u64) as u32 + (i as u32 % 2)).collect();
        let centroids = Centroids::new(k + 1, dim, WipedFloats(data[..(k + 1) * dim].to_vec()));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let row = |i: usize| &data[i * dim..(i + 1) * dim];
        // The points are items 100.. of the index (each must not find itself).
        let point_ids: Vec<Zeroizing<String>> = (100..100 + m).map(|i| Zeroizing::new(ids[i].clone())).collect();
        let points = WipedFloats(data[100 * dim..(100 + m) * dim].to_vec());
        for metric in [Metric::SquaredEuclidean, Metric::InnerProduct] {
            let mut cal = Calibration::new(metric, &centroids, WipedFloats(points.0.clone()), point_ids.clone());
            for start in (0..n).step_by(1700) {
                let end = (start + 1700).min(n);
                let vectors: Vec<&[f32]> = (start..end).map(row).collect();
                let block_ids: Vec<&str> = ids[start..end].iter().map(String::as_str).collect();
                cal.observe(&pool, &vectors, &block_ids, &lists[start..end]);
            }
            for p in 0..m {
                let q = row(100 + p);
                let score = |i: usize| match metric {
                    Metric::InnerProduct => -distance::dot(row(i), q),
                    _ => row(i).iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                };
                let best_of = |keep: &dyn Fn(usize) -> bool| {
                    let mut all: Vec<(f32, u32)> =
                        (0..n).filter(|&i| i != 100 + p && keep(i)).map(|i| (score(i), lists[i])).collect();
                    all.sort_by(|a, b| a.0.total_cmp(&b.0));
                    all.truncate(CALIBRATION_K);
                    all
                };
                let ranks = |v: &[(f32, u32)]| v.iter().map(|b| b.1).collect::<Vec<u32>>();
                assert_eq!(ranks(&cal.best[p]), ranks(&best_of(&|_| true)), "{metric:?} point {p}");
                for (f, modulus) in FILTER_MODULI.into_iter().enumerate() {
                    let matched = |i: usize| simulated_filter_hash(&ids[i]).is_multiple_of(modulus);
                    assert_eq!(
                        ranks(&cal.filtered[p][f]),
                        ranks(&best_of(&matched)),
                        "{metric:?} point {p} 1/{modulus}"
                    );
                }
            }
        }
    }
}
