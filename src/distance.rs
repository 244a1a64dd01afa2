//! Distance kernels. Per-pair kernels use AVX2+FMA when the CPU has them
//! (detected at run time) and portable Rust otherwise; many-against-many
//! goes through a blocked SGEMM (`matrixmultiply`), as FAISS does with BLAS.

use crate::error::{Error, Result};

/// Similarity metric of an index. Every metric is reported as a distance:
/// smaller is closer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Metric {
    /// sqrt(sum (a-b)^2)
    Euclidean = 0,
    /// sum (a-b)^2
    SquaredEuclidean = 1,
    /// 1 - cos(a, b); a zero vector has cosine 0 to everything
    Cosine = 2,
    /// -dot(a, b)
    InnerProduct = 3,
}

impl Metric {
    pub fn from_u32(v: u32) -> Result<Metric> {
        Ok(match v {
            0 => Metric::Euclidean,
            1 => Metric::SquaredEuclidean,
            2 => Metric::Cosine,
            3 => Metric::InnerProduct,
            _ => return Err(Error::invalid(format!("unknown metric {v} (expected 0..=3)"))),
        })
    }

    /// Turns the internal score (what the scan ranks by) into the reported distance.
    #[inline]
    pub fn finish(self, score: f32) -> f32 {
        match self {
            Metric::Euclidean => score.max(0.0).sqrt(),
            Metric::SquaredEuclidean => score.max(0.0),
            _ => score,
        }
    }
}

const LANES: usize = 16;

#[inline(always)]
fn l2_sq_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        s += d * d;
    }
    s
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// The first position of the smallest `norms[j] - 2 dots[j]`, and that
/// value; `(0, +inf)` when none is below +inf (a NaN never is). One pass:
/// each of `LANES` lanes keeps its smallest score and where it was (the
/// first there, by strict `<`), so the loop is branch-free and vectorizes;
/// of the lanes that end on the minimum, the lowest position is the first.
/// The scores are computed exactly as `kmeans::Prepared::scores` computes
/// them (no fused multiply-add), so a batch and a lone vector rank alike.
#[inline(always)]
fn nearest_score_portable(dots: &[f32], norms: &[f32]) -> (usize, f32) {
    let n = dots.len().min(norms.len());
    let full = n - n % LANES;
    let mut best = [f32::INFINITY; LANES];
    let mut at = [0u32; LANES];
    for (k, (d, c)) in dots[..full].chunks_exact(LANES).zip(norms[..full].chunks_exact(LANES)).enumerate() {
        let base = (k * LANES) as u32;
        for l in 0..LANES {
            let s = c[l] - 2.0 * d[l];
            let better = s < best[l];
            best[l] = if better { s } else { best[l] };
            at[l] = if better { base + l as u32 } else { at[l] };
        }
    }
    let mut min = best.iter().fold(f32::INFINITY, |m, &x| if x < m { x } else { m });
    let mut pos = best.iter().zip(&at).filter(|(&b, _)| b == min).map(|(_, &a)| a as usize).min().unwrap_or(0);
    for (j, (d, c)) in dots[full..n].iter().zip(&norms[full..n]).enumerate() {
        let s = c - 2.0 * d;
        if s < min {
            (min, pos) = (s, full + j);
        }
    }
    if min == f32::INFINITY {
        return (0, min); // nothing below +inf: not the first +inf's position
    }
    (pos, min)
}

/// AVX2+FMA kernels: four independent 8-lane accumulators hide the FMA
/// latency (about 20% faster than the auto-vectorised loop, which cannot
/// fuse multiply and add). The loads are the only unsafe code of the scan.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn reduce(acc: [__m256; 4]) -> f32 {
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let lo = _mm256_castps256_ps128(s);
        let hi = _mm256_extractf128_ps(s, 1);
        let x = _mm_add_ps(lo, hi);
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
        _mm_cvtss_f32(x)
    }

    /// SAFETY (both kernels): callers check AVX2+FMA; every load reads 8
    /// floats at an offset `i` with `i + 8 <= n <= len` of both slices.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, lane) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j)));
                *lane = _mm256_fmadd_ps(d, d, *lane);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
        let mut total = reduce(acc);
        for k in i..n {
            let d = a[k] - b[k];
            total += d * d;
        }
        total
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, lane) in acc.iter_mut().enumerate() {
                *lane = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j)), *lane);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let mut total = reduce(acc);
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    /// out[j] = dot(q, row j of `rows`): four rows a pass, two accumulators
    /// each (eight independent FMA chains), sharing the query's loads.
    /// SAFETY: callers check AVX2+FMA and that `rows` holds `out.len()`
    /// rows of `q.len()` floats; every load reads 8 floats at an offset
    /// `i + 8 <= dim` of the query or of one of those rows.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots(q: &[f32], rows: &[f32], out: &mut [f32]) {
        let dim = q.len();
        let (body, pair) = (dim - dim % 8, dim - dim % 16);
        let pq = q.as_ptr();
        let mut j = 0;
        while j + 4 <= out.len() {
            let p = rows.as_ptr().add(j * dim);
            let (mut a, mut b) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
            let mut i = 0;
            while i < pair {
                let (x, y) = (_mm256_loadu_ps(pq.add(i)), _mm256_loadu_ps(pq.add(i + 8)));
                for r in 0..4 {
                    a[r] = _mm256_fmadd_ps(x, _mm256_loadu_ps(p.add(r * dim + i)), a[r]);
                    b[r] = _mm256_fmadd_ps(y, _mm256_loadu_ps(p.add(r * dim + i + 8)), b[r]);
                }
                i += 16;
            }
            if i < body {
                let x = _mm256_loadu_ps(pq.add(i));
                for (r, lane) in a.iter_mut().enumerate() {
                    *lane = _mm256_fmadd_ps(x, _mm256_loadu_ps(p.add(r * dim + i)), *lane);
                }
            }
            for (r, (&lo, &hi)) in a.iter().zip(&b).enumerate() {
                let row = &rows[(j + r) * dim..(j + r + 1) * dim];
                let tail: f32 = q[body..].iter().zip(&row[body..]).map(|(x, y)| x * y).sum();
                out[j + r] = reduce([lo, hi, _mm256_setzero_ps(), _mm256_setzero_ps()]) + tail;
            }
            j += 4;
        }
        for (r, o) in out.iter_mut().enumerate().skip(j) {
            *o = dot(q, &rows[r * dim..(r + 1) * dim]);
        }
    }

    /// SAFETY: callers check AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn nearest_score_avx512(dots: &[f32], norms: &[f32]) -> (usize, f32) {
        super::nearest_score_portable(dots, norms)
    }

    /// SAFETY: callers check AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn nearest_score_avx2(dots: &[f32], norms: &[f32]) -> (usize, f32) {
        super::nearest_score_portable(dots, norms)
    }

    pub fn has_avx512() -> bool {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }

    pub fn has_avx2() -> bool {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
}

/// Squared Euclidean distance.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { x86::l2_sq(a, b) };
    }
    l2_sq_portable(a, b)
}

/// Dot product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { x86::dot(a, b) };
    }
    dot_portable(a, b)
}

/// out[j] = dot(q, row j of `rows`), rows of `q.len()` floats: one vector
/// against many (ranking centroids), four rows a pass sharing the vector's
/// loads, with no call a row.
pub fn dots(q: &[f32], rows: &[f32], out: &mut [f32]) {
    assert!(rows.len() >= out.len() * q.len(), "dots: {} rows of {} floats", out.len(), q.len());
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above); `rows`
        // holds `out.len()` rows of `q.len()` floats (asserted above).
        return unsafe { x86::dots(q, rows, out) };
    }
    let dim = q.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot_portable(q, &rows[j * dim..(j + 1) * dim]);
    }
}

/// The score one query gets against one stored vector; `inv_norms` are
/// 1/|q| and 1/|x| (only read for cosine).
#[inline]
pub fn score(metric: Metric, q: &[f32], x: &[f32], inv_q: f32, inv_x: f32) -> f32 {
    match metric {
        Metric::Euclidean | Metric::SquaredEuclidean => l2_sq(q, x),
        Metric::InnerProduct => -dot(q, x),
        Metric::Cosine => 1.0 - dot(q, x) * inv_q * inv_x,
    }
}

/// 1/|v|, or 0 for a zero vector (so its cosine to anything is 0).
#[inline]
pub fn inv_norm(v: &[f32]) -> f32 {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        1.0 / n
    } else {
        0.0
    }
}

/// How far a score computed from an `inner_products` entry (L2 as
/// |q|² + |x|² - 2 q·x, inner product as -q·x, cosine as 1 - q·x / |q||x|)
/// may be from the one `score` computes directly: (relative, absolute),
/// the bound being relative × (|q|² + |x|²) + absolute (cosine: relative +
/// absolute / (|q||x|)).
///
/// A float dot of `dim` terms is within dim·eps/2 of the sum of its terms'
/// magnitudes, in any order of summation, FMA or not; |q·x| ≤ (|q|² +
/// |x|²)/2. The expanded L2 form sums three such dots and the direct one
/// squares differences, which together come to about (2 dim + 4) eps of
/// |q|² + |x|²: counted here as 4 (dim + 8) eps. Products that underflow
/// are off by up to a subnormal step each, whatever their size: the
/// absolute part, dim of them in each of the two forms, twice.
///
/// Far from the origin this is what makes the expanded form unusable on
/// its own: with every coordinate near 500 (d = 64) |x|² is 1.6e7 and one
/// rounding of it is worth more than the gaps between neighbours.
pub fn expanded_error(dim: usize) -> (f32, f32) {
    let relative = 4.0 * (dim + 8) as f32 * f32::EPSILON;
    let absolute = 4.0 * (dim + 8) as f32 * f32::from_bits(1);
    (relative, absolute)
}

/// The nearest of a row of centroids to a point, from the point's dots
/// with them and their squared norms (all centred alike): the first
/// position of the smallest `norms[j] - 2 dots[j]`, and that score;
/// `(0, +inf)` when none is below +inf. The scan of every assignment
/// (k-means, training's pass, each add into a trained index): one pass,
/// compiled for AVX-512 or AVX2 when the CPU has them (scoring in place
/// and then taking the minimum, as before 0.11.1, read the products twice
/// and was ~20% of an assignment at 3,162 lists).
pub fn nearest_score(dots: &[f32], norms: &[f32]) -> (usize, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_avx512() {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { x86::nearest_score_avx512(dots, norms) };
        }
        if x86::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked above).
            return unsafe { x86::nearest_score_avx2(dots, norms) };
        }
    }
    nearest_score_portable(dots, norms)
}

/// out[i*m + j] = dot(a_i, b_j) for row-major a (n×dim) and b (m×dim).
pub fn inner_products(a: &[f32], n: usize, b: &[f32], m: usize, dim: usize, out: &mut [f32]) {
    assert!(a.len() >= n * dim && b.len() >= m * dim && out.len() >= n * m, "inner_products: shapes");
    if n == 0 || m == 0 {
        return;
    }
    // SAFETY: the assert above guarantees every strided access stays inside
    // the three slices: a is n×dim (row stride dim), b is read as its
    // transpose dim×m (row stride 1, column stride dim), out is n×m.
    unsafe {
        matrixmultiply::sgemm(
            n,
            dim,
            m,
            1.0,
            a.as_ptr(),
            dim as isize,
            1,
            b.as_ptr(),
            1,
            dim as isize,
            0.0,
            out.as_mut_ptr(),
            m as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both builds of the scan (portable, and the dispatched one) find the
    /// first smallest score, skip NaNs, and report none below +inf as
    /// (0, +inf), at every length around the lanes.
    #[test]
    fn nearest_score_is_the_first_smallest_and_skips_nans() {
        let naive = |dots: &[f32], norms: &[f32]| {
            let scores = dots.iter().zip(norms).map(|(d, c)| c - 2.0 * d);
            scores.enumerate().fold((0usize, f32::INFINITY), |acc, (j, s)| if s < acc.1 { (j, s) } else { acc })
        };
        let both = |dots: &[f32], norms: &[f32]| {
            let got = nearest_score(dots, norms);
            assert_eq!(got, nearest_score_portable(dots, norms), "{dots:?} {norms:?}");
            got
        };
        let mut seed = 3u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in 0..70 {
            // Few distinct values, so ties are common (in one lane and across lanes).
            let norms: Vec<f32> = (0..len).map(|_| (next() % 3) as f32).collect();
            let mut dots: Vec<f32> = (0..len).map(|_| (next() % 3) as f32 * 0.5).collect();
            assert_eq!(both(&dots, &norms), naive(&dots, &norms), "{dots:?} {norms:?}");
            if len > 3 {
                dots[len / 2] = f32::NAN;
                dots[len - 1] = 10.0;
                assert_eq!(both(&dots, &norms).0, len - 1);
            }
        }
        let zeros = [0f32; 20];
        assert_eq!(both(&zeros, &[f32::NAN; 20]), (0, f32::INFINITY));
        assert_eq!(both(&zeros[..2], &[f32::NAN, f32::INFINITY]), (0, f32::INFINITY));
        assert_eq!(both(&zeros[..2], &[f32::INFINITY, f32::NEG_INFINITY]), (1, f32::NEG_INFINITY));
        // The minimum in the tail after full lanes, and tied with a lane's.
        let mut norms = vec![5f32; 37];
        norms[35] = 1.0;
        assert_eq!(both(&zeros.repeat(2)[..37], &norms), (35, 1.0));
        norms[17] = 1.0;
        assert_eq!(both(&zeros.repeat(2)[..37], &norms), (17, 1.0));
    }

    fn naive_l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn kernels_match_naive_for_all_lengths() {
        for n in 0..70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            assert!((l2_sq(&a, &b) - naive_l2(&a, &b)).abs() < 1e-4);
            let d: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - d).abs() < 1e-4);
            assert!((l2_sq_portable(&a, &b) - naive_l2(&a, &b)).abs() < 1e-4);
        }
    }

    #[test]
    fn dots_match_dot_for_all_shapes() {
        for dim in [0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 33, 64, 100, 384] {
            for rows in [0, 1, 3, 4, 5, 8, 9] {
                let q: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
                let m: Vec<f32> = (0..rows * dim).map(|i| (i as f32 * 0.11).cos()).collect();
                let mut out = vec![f32::NAN; rows];
                dots(&q, &m, &mut out);
                for (j, o) in out.iter().enumerate() {
                    let want: f32 = q.iter().zip(&m[j * dim..(j + 1) * dim]).map(|(x, y)| x * y).sum();
                    assert!((o - want).abs() <= 1e-4 * (1.0 + want.abs()), "dim {dim} row {j}: {o} vs {want}");
                }
            }
        }
    }

    #[test]
    fn gemm_matches_dot() {
        let dim = 13;
        let a: Vec<f32> = (0..3 * dim).map(|i| i as f32 * 0.5 - 4.0).collect();
        let b: Vec<f32> = (0..5 * dim).map(|i| (i as f32).sin()).collect();
        let mut out = vec![0f32; 15];
        inner_products(&a, 3, &b, 5, dim, &mut out);
        for i in 0..3 {
            for j in 0..5 {
                let d = dot(&a[i * dim..(i + 1) * dim], &b[j * dim..(j + 1) * dim]);
                assert!((out[i * 5 + j] - d).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn metric_scores() {
        let q = [1.0, 0.0];
        let x = [0.0, 2.0];
        assert_eq!(Metric::Euclidean.finish(score(Metric::Euclidean, &q, &x, 1.0, 0.5)), 5f32.sqrt());
        assert_eq!(score(Metric::InnerProduct, &q, &x, 1.0, 0.5), 0.0);
        assert!((score(Metric::Cosine, &q, &x, inv_norm(&q), inv_norm(&x)) - 1.0).abs() < 1e-6);
        assert_eq!(inv_norm(&[0.0, 0.0]), 0.0);
        assert!(Metric::from_u32(4).is_err());
    }
}
