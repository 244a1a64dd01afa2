//! k-means for the IVF lists: k-means++ seeding on a subsample, then Lloyd
//! iterations (full batch) or mini-batch updates (Sculley 2010), both with
//! the assignment step done as blocked SGEMM (|x|^2 + |c|^2 - 2 x.c, all
//! moved by the centroids' mean) on the client's pool, and empty clusters
//! repaired by splitting the largest one. Deterministic for a seed.

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::distance;
use crate::error::{Error, Result};
use crate::parallel;

/// Points assigned per SGEMM block (one task of the pool).
const BLOCK: usize = 256;
/// Points per centroid k-means++ seeds from (a subsample of the points
/// given, copied: a sixteenth of a training sample of 256 per list).
pub const PLUS_PLUS_POINTS_PER_CENTROID: usize = 16;

/// Centroids per SGEMM of a block: a block's products with this many (1 MiB
/// of them) are scored and reduced to a running nearest while they are in
/// the core's cache. With all 3,162 centroids of a 10M index in one product
/// (1,024 points: 13 MB), the SGEMM ran ~25% slower and the scoring pass
/// read its output back from memory (see `assign_prepared`).
const CENTROID_TILE: usize = 1024;

#[derive(Clone, Copy, Debug)]
pub struct KMeansParams {
    pub k: usize,
    pub max_iters: u32,
    /// Stop when the objective's relative change falls below this.
    pub tolerance: f64,
    /// 0 = full batch; else points per mini-batch iteration.
    pub batch_size: usize,
    pub seed: u64,
}

pub struct KMeansResult {
    pub centroids: Vec<f32>,
    /// Mean squared distance of the training points to their centroid.
    pub objective: f64,
    pub iterations: u32,
}

/// A small, fast, seedable generator (SplitMix64): deterministic sampling
/// without a dependency; not for anything secret.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `count` distinct indices below `n`, in random order (partial Fisher-Yates).
pub fn sample_indices(n: usize, count: usize, rng: &mut SplitMix) -> Vec<usize> {
    let count = count.min(n);
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..count {
        let j = i + rng.below(n - i);
        all.swap(i, j);
    }
    all.truncate(count);
    all
}

/// The mean of `rows` (`dim` floats each; zeros for none), summed in f64:
/// the point the expanded distance forms centre on. Far from the origin,
/// |x|² + |c|² - 2 x·c rounds away the gaps between neighbours (with every
/// coordinate near 5,000 at d = 64, `assign` put points in lists at
/// random); moved by a mean of the data, its rounding follows the data's
/// spread (`distance::expanded_error`).
pub fn mean(rows: &[f32], dim: usize) -> Zeroizing<Vec<f32>> {
    let mut sums = Zeroizing::new(vec![0f64; dim]);
    let n = rows.len() / dim.max(1);
    for row in rows.chunks_exact(dim.max(1)) {
        sums.iter_mut().zip(row).for_each(|(s, &x)| *s += x as f64);
    }
    Zeroizing::new(sums.iter().map(|s| (s / n.max(1) as f64) as f32).collect())
}

/// Appends each row of `rows` less `mean` to `out`.
pub fn centre_into(rows: &[f32], mean: &[f32], out: &mut Vec<f32>) {
    for row in rows.chunks_exact(mean.len().max(1)) {
        out.extend(row.iter().zip(mean).map(|(x, m)| x - m));
    }
}

/// Centroids as `assign` uses them: moved by their mean, with their norms
/// (worth keeping where the same centroids assign many batches).
pub struct Prepared {
    dim: usize,
    mean: Zeroizing<Vec<f32>>,
    centred: Zeroizing<Vec<f32>>,
    norms: Zeroizing<Vec<f32>>,
}

impl Prepared {
    pub fn new(centroids: &[f32], dim: usize) -> Prepared {
        let mean = mean(centroids, dim);
        let mut centred = Zeroizing::new(Vec::with_capacity(centroids.len()));
        centre_into(centroids, &mean, &mut centred);
        let norms = Zeroizing::new(centred.chunks_exact(dim).map(|c| distance::dot(c, c)).collect());
        Prepared { dim, mean, centred, norms }
    }

    fn k(&self) -> usize {
        self.norms.len()
    }

    /// The centroids' mean.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Centroid `c` less the mean.
    pub fn centred(&self, c: usize) -> &[f32] {
        &self.centred[c * self.dim..(c + 1) * self.dim]
    }

    /// |v - c|² - |v - μ|² into out[c] for every centroid c: the centroids
    /// ranked by distance to one vector, as `assign_prepared` ranks them
    /// for a batch (one pass of dots with the centred centroids).
    pub fn scores(&self, v: &[f32], out: &mut [f32]) {
        let mut centred = Zeroizing::new(Vec::with_capacity(self.dim));
        centre_into(v, &self.mean, &mut centred);
        distance::dots(&centred, &self.centred, out);
        // |x - c|² - |x - μ|² = |c - μ|² - 2 (x - μ)·(c - μ), computed as
        // `distance::nearest_score` computes it for a batch.
        out.iter_mut().zip(self.norms.iter()).for_each(|(ip, cn)| *ip = cn - 2.0 * *ip);
    }

    /// Bytes it holds.
    pub fn mem_size(&self) -> usize {
        (self.mean.len() + self.centred.len() + self.norms.len()) * 4
    }
}

/// For every point, its nearest centroid and the squared distance to it.
pub fn assign(pool: &rayon::ThreadPool, data: &[f32], dim: usize, centroids: &[f32], k: usize) -> Vec<(u32, f32)> {
    debug_assert_eq!(centroids.len(), k * dim);
    assign_prepared(pool, data, &Prepared::new(centroids, dim))
}

/// `assign` with centroids prepared once: every point and centroid moved by
/// the centroids' mean (see `mean`), then blocked SGEMMs, `BLOCK` points by
/// `CENTROID_TILE` centroids each, every tile's scores reduced to a running
/// nearest per point (the first on ties, as one pass over all would).
pub fn assign_prepared(pool: &rayon::ThreadPool, data: &[f32], prepared: &Prepared) -> Vec<(u32, f32)> {
    let (dim, k) = (prepared.dim, prepared.k());
    let blocks: Vec<&[f32]> = data.chunks(BLOCK * dim).collect();
    let nearest = parallel::map(pool, blocks, 2, |block| {
        let m = block.len() / dim;
        let mut points = Zeroizing::new(Vec::with_capacity(block.len()));
        centre_into(block, &prepared.mean, &mut points);
        let mut nearest = vec![(0u32, f32::INFINITY); m];
        let mut ips = vec![0f32; m * k.min(CENTROID_TILE)];
        for first in (0..k).step_by(CENTROID_TILE) {
            let tile = CENTROID_TILE.min(k - first);
            let centroids = &prepared.centred[first * dim..(first + tile) * dim];
            distance::inner_products(&points, m, centroids, tile, dim, &mut ips);
            let norms = &prepared.norms[first..first + tile];
            for (row, best) in ips.chunks_exact(tile).zip(&mut nearest) {
                let (c, d) = distance::nearest_score(row, norms);
                if d < best.1 {
                    *best = ((first + c) as u32, d);
                }
            }
        }
        nearest
            .into_iter()
            .zip(points.chunks_exact(dim))
            .map(|((c, d), x)| (c, (d + distance::dot(x, x)).max(0.0)))
            .collect::<Vec<_>>()
    });
    nearest.concat()
}

/// Runs k-means on `n` points of `dim` floats. `progress(iteration, objective)`
/// returning `true` cancels (`CANCELLED`).
pub fn kmeans(
    pool: &rayon::ThreadPool,
    data: &[f32],
    dim: usize,
    params: &KMeansParams,
    progress: &mut dyn FnMut(u32, f64) -> bool,
) -> Result<KMeansResult> {
    let n = data.len() / dim;
    let k = params.k;
    if k == 0 || n < k {
        return Err(Error::NotEnoughVectors(format!("k-means needs at least {k} points, got {n}")));
    }
    let mut rng = SplitMix::new(params.seed);
    let mut centroids = init_plus_plus(pool, data, dim, k, &mut rng);
    let mini_batch = params.batch_size > 0 && params.batch_size < n;
    let mut counts_total = vec![0u64; k]; // mini-batch per-centroid learning rates
    let mut previous = f64::INFINITY;
    let mut objective = f64::INFINITY;
    let mut iterations = 0;
    for iter in 1..=params.max_iters.max(1) {
        iterations = iter;
        if mini_batch {
            let idx = sample_indices(n, params.batch_size, &mut rng);
            let mut batch = Vec::with_capacity(idx.len() * dim);
            for &i in &idx {
                batch.extend_from_slice(&data[i * dim..(i + 1) * dim]);
            }
            let assigned = assign(pool, &batch, dim, &centroids, k);
            objective = assigned.iter().map(|(_, d)| *d as f64).sum::<f64>() / idx.len() as f64;
            for (row, (c, _)) in batch.chunks_exact(dim).zip(&assigned) {
                let c = *c as usize;
                counts_total[c] += 1;
                let eta = 1.0 / counts_total[c] as f32;
                for (cv, xv) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(row) {
                    *cv += eta * (xv - *cv);
                }
            }
        } else {
            let assigned = assign(pool, data, dim, &centroids, k);
            objective = assigned.iter().map(|(_, d)| *d as f64).sum::<f64>() / n as f64;
            let mut sums = vec![0f64; k * dim];
            let mut counts = vec![0usize; k];
            for (row, (c, _)) in data.chunks_exact(dim).zip(&assigned) {
                let c = *c as usize;
                counts[c] += 1;
                for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row) {
                    *s += *x as f64;
                }
            }
            for c in 0..k {
                if counts[c] > 0 {
                    for (cv, s) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                        *cv = (*s / counts[c] as f64) as f32;
                    }
                }
            }
            repair_empty(&mut centroids, &mut counts, dim, &mut rng);
        }
        if progress(iter, objective) {
            return Err(Error::Cancelled(format!("training cancelled by the progress callback at iteration {iter}")));
        }
        let change = (previous - objective).abs() / objective.abs().max(f64::MIN_POSITIVE);
        if previous.is_finite() && change < params.tolerance {
            break;
        }
        previous = objective;
    }
    if mini_batch {
        // Report the true objective of the final centroids on all points.
        let assigned = assign(pool, data, dim, &centroids, k);
        objective = assigned.iter().map(|(_, d)| *d as f64).sum::<f64>() / n as f64;
    }
    Ok(KMeansResult { centroids, objective, iterations })
}

/// k-means++ seeding (D^2 sampling) on a subsample of at most
/// `PLUS_PLUS_POINTS_PER_CENTROID * k` points: far fewer bad starts than
/// FAISS's uniform random pick, at a cost of O(k * 16k * dim).
fn init_plus_plus(pool: &rayon::ThreadPool, data: &[f32], dim: usize, k: usize, rng: &mut SplitMix) -> Vec<f32> {
    let n = data.len() / dim;
    let picks = sample_indices(n, (PLUS_PLUS_POINTS_PER_CENTROID * k).min(n), rng);
    // Copied together: each of the k steps reads every point, and read in
    // place, scattered through the sample, the points missed the cache
    // (two thirds of the seeding's time went to loads at 10M).
    let mut gathered = Zeroizing::new(Vec::with_capacity(picks.len() * dim));
    picks.iter().for_each(|&i| gathered.extend_from_slice(&data[i * dim..(i + 1) * dim]));
    let points: Vec<&[f32]> = gathered.chunks_exact(dim).collect();
    let mut centroids = Vec::with_capacity(k * dim);
    centroids.extend_from_slice(points[rng.below(points.len())]);
    // Per point: the squared distance to its nearest centroid so far, and
    // which one that is.
    let mut nearest: Vec<(f32, u32)> = vec![(f32::INFINITY, 0); points.len()];
    // Squared distances from the newest centroid to each earlier one.
    let mut apart: Vec<f32> = Vec::with_capacity(k);
    for c in 1..k {
        let last = &centroids[(c - 1) * dim..c * dim];
        apart.clear();
        apart.extend(centroids[..(c - 1) * dim].chunks_exact(dim).map(|e| distance::l2_sq(e, last)));
        pool.install(|| {
            nearest.par_iter_mut().zip(points.par_iter()).for_each(|((d, at), p)| {
                // By the triangle inequality, a point whose nearest centroid
                // is at distance r cannot come nearer to one at distance
                // >= 2r from that centroid: most points skip the distance
                // once a few hundred centroids are placed. (The margin
                // covers float rounding: a skipped point would at best tie.)
                if apart.get(*at as usize).is_some_and(|&a| a > 4.0 * *d * (1.0 + 1e-3)) {
                    return;
                }
                let e = distance::l2_sq(p, last);
                if e < *d {
                    *d = e;
                    *at = (c - 1) as u32;
                }
            });
        });
        let total: f64 = nearest.iter().map(|&(d, _)| d as f64).sum();
        let next = if total > 0.0 {
            let mut target = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            nearest.iter().position(|&(d, _)| {
                target -= d as f64;
                target < 0.0
            })
        } else {
            None
        };
        // Every point coincides with a centroid: any point will do.
        let pick = next.unwrap_or_else(|| rng.below(points.len()));
        centroids.extend_from_slice(points[pick]);
    }
    centroids
}

/// Gives every empty cluster half of the largest one: the two centroids
/// move apart by a small symmetric perturbation (as FAISS does).
fn repair_empty(centroids: &mut [f32], counts: &mut [usize], dim: usize, rng: &mut SplitMix) {
    const EPS: f32 = 1.0 / 1024.0;
    // Steps relative to the centroids' mean, not to the origin: far from
    // it a relative step would throw both halves out of the data.
    let mean = mean(centroids, dim);
    for empty in 0..counts.len() {
        if counts[empty] != 0 {
            continue;
        }
        let largest = (0..counts.len()).max_by_key(|&c| (counts[c], std::cmp::Reverse(c))).unwrap();
        if counts[largest] < 2 {
            continue;
        }
        let src: Vec<f32> = centroids[largest * dim..(largest + 1) * dim].to_vec();
        for j in 0..dim {
            let sign = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
            let off = src[j] - mean[j];
            centroids[empty * dim + j] = mean[j] + off * (1.0 + sign * EPS);
            centroids[largest * dim + j] = mean[j] + off * (1.0 - sign * EPS);
        }
        counts[empty] = counts[largest] / 2;
        counts[largest] -= counts[empty];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Assigning through tiles of centroids picks what one pass over all
    /// of them picks: the nearest (to rounding), and of two equal ones in
    /// different tiles the first.
    #[test]
    fn assignment_across_centroid_tiles_is_the_nearest_and_first_on_ties() {
        let (dim, k, twins) = (8, 2 * CENTROID_TILE + 37, 37);
        let mut rng = SplitMix::new(21);
        // The third tile's centroids are the first tile's first 37 again,
        // at the same places in their tiles (so their scores are equal to
        // the bit), and the first points sit on them.
        let mut centroids: Vec<f32> = (0..k * dim).map(|_| rng.below(1000) as f32 / 100.0).collect();
        let copy = centroids[..twins * dim].to_vec();
        centroids[2 * CENTROID_TILE * dim..].copy_from_slice(&copy);
        let mut points: Vec<f32> = (0..(BLOCK + 50) * dim).map(|_| rng.below(1000) as f32 / 100.0).collect();
        points[..twins * dim].copy_from_slice(&copy);
        let got = assign(&pool(), &points, dim, &centroids, k);
        for (i, (p, &(c, d))) in points.chunks_exact(dim).zip(&got).enumerate() {
            let exact: Vec<f32> = centroids.chunks_exact(dim).map(|c| distance::l2_sq(p, c)).collect();
            let best = exact.iter().copied().fold(f32::INFINITY, f32::min);
            assert!(exact[c as usize] - best < 1e-3 && (d - best).abs() < 1e-3, "point {i}: {c} at {d}, best {best}");
            if i < twins {
                assert_eq!(c as usize, i, "point {i} sits on centroid {i} and its twin");
            }
        }
    }

    /// The seeding's distance skipping changes no pick: it equals the plain
    /// D² sampling that computes every distance.
    #[test]
    fn plus_plus_seeding_equals_the_plain_one() {
        let plain = |data: &[f32], dim: usize, k: usize, rng: &mut SplitMix| {
            let n = data.len() / dim;
            let picks = sample_indices(n, (16 * k).min(n), rng);
            let points: Vec<&[f32]> = picks.iter().map(|&i| &data[i * dim..(i + 1) * dim]).collect();
            let mut centroids = points[rng.below(points.len())].to_vec();
            let mut nearest = vec![f32::INFINITY; points.len()];
            for c in 1..k {
                let last = centroids[(c - 1) * dim..c * dim].to_vec();
                nearest.iter_mut().zip(&points).for_each(|(d, p)| *d = d.min(distance::l2_sq(p, &last)));
                let total: f64 = nearest.iter().map(|&d| d as f64).sum();
                let mut target = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                let pick = nearest.iter().position(|&d| {
                    target -= d as f64;
                    target < 0.0
                });
                centroids.extend_from_slice(points[pick.unwrap_or_else(|| rng.below(points.len()))]);
            }
            centroids
        };
        let (dim, k) = (8, 40);
        let mut rng = SplitMix::new(11);
        // Clustered, so that many distances are skipped.
        let data: Vec<f32> =
            (0..3000 * dim).map(|i| ((i / dim) % 7) as f32 * 10.0 + (rng.next_u64() % 1000) as f32 / 1000.0).collect();
        let ours = init_plus_plus(&pool(), &data, dim, k, &mut SplitMix::new(5));
        assert_eq!(ours, plain(&data, dim, k, &mut SplitMix::new(5)));
    }

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    /// Four well-separated blobs in 2-D.
    fn blobs() -> Vec<f32> {
        let mut rng = SplitMix::new(7);
        let centres = [(-10.0, -10.0), (10.0, -10.0), (-10.0, 10.0), (10.0, 10.0)];
        let mut out = Vec::new();
        for i in 0..4000 {
            let (cx, cy) = centres[i % 4];
            out.push(cx + (rng.below(1000) as f32 / 500.0 - 1.0));
            out.push(cy + (rng.below(1000) as f32 / 500.0 - 1.0));
        }
        out
    }

    #[test]
    fn finds_separated_clusters_deterministically() {
        let data = blobs();
        let p = KMeansParams { k: 4, max_iters: 50, tolerance: 1e-6, batch_size: 0, seed: 3 };
        let a = kmeans(&pool(), &data, 2, &p, &mut |_, _| false).unwrap();
        assert!(a.objective < 1.0, "objective {}", a.objective);
        let b = kmeans(&pool(), &data, 2, &p, &mut |_, _| false).unwrap();
        assert_eq!(a.centroids, b.centroids);
        let mb = KMeansParams { batch_size: 512, ..p };
        let m = kmeans(&pool(), &data, 2, &mb, &mut |_, _| false).unwrap();
        assert!(m.objective < 2.0, "mini-batch objective {}", m.objective);
    }

    #[test]
    fn cancels_and_needs_enough_points() {
        let data = blobs();
        let p = KMeansParams { k: 4, max_iters: 50, tolerance: 0.0, batch_size: 0, seed: 3 };
        let e = kmeans(&pool(), &data, 2, &p, &mut |it, _| it == 2).err().unwrap();
        assert!(matches!(e, Error::Cancelled(_)));
        let e = kmeans(&pool(), &data[..6], 2, &p, &mut |_, _| false).err().unwrap();
        assert!(matches!(e, Error::NotEnoughVectors(_)));
    }

    #[test]
    fn repairs_empty_clusters() {
        // Duplicate points make most initial centroids coincide: clusters go empty.
        let mut data = vec![0f32; 2 * 1000];
        data[0] = 100.0;
        data[1] = 100.0;
        let p = KMeansParams { k: 8, max_iters: 5, tolerance: 0.0, batch_size: 0, seed: 1 };
        let r = kmeans(&pool(), &data, 2, &p, &mut |_, _| false).unwrap();
        let assigned = assign(&pool(), &data, 2, &r.centroids, 8);
        assert!(assigned.iter().any(|(c, _)| assigned[0].0 != *c) || assigned[0].1 == 0.0);
        assert!(r.centroids.iter().all(|v| v.is_finite()));
    }
}
