//! RaBitQ (Gao & Long, SIGMOD 2024) with the extended codes of Gao et al.
//! (SIGMOD 2025): a residual r = x - c is randomly rotated, stored as one
//! sign bit per dimension (plus, optionally, B - 1 more bits per dimension)
//! and three scalars, and its inner product with a query-side vector v is
//! estimated straight from the code, with a probabilistic error bound that
//! tells the scan which candidates are worth re-ranking exactly.
//!
//! D is always the padded dimension. Dimension i of a sign code is bit
//! i % 8 of byte i / 8; an extended code is a little-endian bit stream of
//! B - 1 bits per dimension. The sign bit and the extended bits of a
//! dimension together are its B-bit code k (sign bit on top), which stands
//! for the grid point k - (2^B - 1) / 2: the 1-bit code is the B-bit code's
//! sign, so the scan can prune on signs alone and refine only candidates.

use crate::kmeans::SplitMix;

/// Randomised Hadamard rounds. One is not enough: on zero-padded inputs
/// (dim 16 in 64) the errors' 99th percentile was 5 standard deviations of
/// the model the bound assumes instead of 2.5. Two already matched it in the
/// tests; four, as the RaBitQ library uses, is margin for inputs more
/// structured than the tests' at O(D log D) per extra round.
const ROUNDS: usize = 4;

/// Smallest padded dimension: below it the estimator's error (~1/sqrt(D))
/// would be too loose to prune anything, and 64 bits cost only 8 bytes.
const MIN_PADDED: usize = 64;

/// The paper's confidence constant: the bound is EPS0 standard deviations
/// of the estimator. The error is close to Gaussian, so 1.9 covers ~94% of
/// (vector, query) pairs; pruning only fails on the one side that overrates
/// a distance, and only matters for true neighbours, hence the paper's choice.
#[cfg(test)]
pub(crate) const EPS0: f32 = 1.9;

/// A confidence constant for a bound that holds for >= 99% of pairs (2.58
/// would be exactly 99% for a Gaussian error; 2.8 is 99.5%, a margin for
/// data less kind than the tests').
pub(crate) const EPS0_99: f32 = 2.8;

/// How a rotation pads the dimension: fixed per trained index (its
/// manifest says which), since codes are only read with the rotation they
/// were made with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// To the next power of two >= max(dim, 64): what indexes trained
    /// before 0.9 use.
    #[default]
    PowerOfTwo = 0,
    /// To the next multiple of 64 >= max(dim, 64): at d = 384 a code has
    /// 384 bits, not 512 (a quarter less to store, hold and scan). Equal to
    /// `PowerOfTwo` where that multiple is a power of two (d <= 128,
    /// 193-256, 449-512, ...).
    Multiple64 = 1,
}

impl Padding {
    pub fn from_u8(v: u8) -> Option<Padding> {
        match v {
            0 => Some(Padding::PowerOfTwo),
            1 => Some(Padding::Multiple64),
            _ => None,
        }
    }

    fn padded(self, dim: usize) -> usize {
        let d = dim.max(MIN_PADDED);
        match self {
            Padding::PowerOfTwo => d.next_power_of_two(),
            Padding::Multiple64 => d.next_multiple_of(MIN_PADDED),
        }
    }
}

/// Random orthogonal rotation of R^dim into R^padded (`Padding`): ROUNDS
/// times a random sign flip followed by a normalised fast Walsh-Hadamard
/// transform. A dense Gaussian rotation would need D^2 floats (16 GiB at
/// 65536); this needs ROUNDS * D and O(D log D) time.
///
/// Where padded is not a power of two (384 = 256 + 128), each round
/// transforms the largest power-of-two block T it holds, the first T
/// coordinates in even rounds and the last T in odd ones, then mixes the
/// two halves with a Kac walk step ((a + b, a - b) / sqrt 2 for a
/// coordinate and the one padded/2 after it), as the RaBitQ library's
/// `FhtKacRotator` does: still orthogonal, and every coordinate reaches
/// every other within two rounds.
pub(crate) struct Rotation {
    dim: usize,
    padded: usize,
    /// The power-of-two block each round transforms (= padded when padded
    /// is a power of two).
    block: usize,
    /// ROUNDS blocks of `padded` factors: the sign flip, with the
    /// transform's normalisation 1/sqrt(block) folded into the coordinates
    /// the round transforms.
    diag: Vec<f32>,
}

impl Rotation {
    pub fn new(dim: usize, seed: u64, padding: Padding) -> Rotation {
        assert!(dim > 0, "rotation of a 0-dimensional space");
        let padded = padding.padded(dim);
        let block = if padded.is_power_of_two() { padded } else { padded.next_power_of_two() / 2 };
        let scale = (1.0 / (block as f64).sqrt()) as f32;
        let mut rng = SplitMix::new(seed);
        let mut bits = 0;
        let diag = (0..ROUNDS * padded)
            .map(|i| {
                if i % 64 == 0 {
                    bits = rng.next_u64();
                }
                let (round, at) = (i / padded, i % padded);
                let magnitude = if Self::transforms(padded, block, round).contains(&at) { scale } else { 1.0 };
                if (bits >> (i % 64)) & 1 == 1 {
                    -magnitude
                } else {
                    magnitude
                }
            })
            .collect();
        Rotation { dim, padded, block, diag }
    }

    /// The coordinates round `round` transforms.
    fn transforms(padded: usize, block: usize, round: usize) -> std::ops::Range<usize> {
        if round.is_multiple_of(2) {
            0..block
        } else {
            padded - block..padded
        }
    }

    #[cfg(test)]
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn padded(&self) -> usize {
        self.padded
    }

    /// out = P·(v zero-padded); out.len() == padded. Preserves norms and inner products.
    pub fn apply(&self, v: &[f32], out: &mut [f32]) {
        assert_eq!(v.len(), self.dim, "Rotation::apply: input length");
        assert_eq!(out.len(), self.padded, "Rotation::apply: output length");
        out[..self.dim].copy_from_slice(v);
        out[self.dim..].fill(0.0);
        for (round, diag) in self.diag.chunks_exact(self.padded).enumerate() {
            for (o, s) in out.iter_mut().zip(diag) {
                *o *= s;
            }
            fwht(&mut out[Self::transforms(self.padded, self.block, round)]);
            if self.block < self.padded {
                let (lo, hi) = out.split_at_mut(self.padded / 2);
                for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (s, d) = (*a + *b, *a - *b);
                    *a = s * std::f32::consts::FRAC_1_SQRT_2;
                    *b = d * std::f32::consts::FRAC_1_SQRT_2;
                }
            }
        }
    }
}

/// Unnormalised in-place Walsh-Hadamard transform; x.len() is a power of two.
fn fwht(x: &mut [f32]) {
    let n = x.len();
    // The first two stages fused: their 2-wide butterflies do not vectorise.
    if n >= 4 {
        for q in x.chunks_exact_mut(4) {
            let (a, b, c, d) = (q[0] + q[1], q[0] - q[1], q[2] + q[3], q[2] - q[3]);
            q[0] = a + c;
            q[1] = b + d;
            q[2] = a - c;
            q[3] = b - d;
        }
    }
    let mut h = if n >= 4 { 4 } else { 1 };
    while h < n {
        for block in x.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                let (s, d) = (*a + *b, *a - *b);
                *a = s;
                *b = d;
            }
        }
        h *= 2;
    }
}

/// Per-vector correction factors stored beside a code.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub(crate) struct Factors {
    /// |r|.
    pub norm: f32,
    /// <x̄, u'> for the sign code, u' = P·r/|r|: in [1/sqrt(D), 1], 1 for a zero residual.
    pub quality: f32,
    /// <ȳ, u'>/|ȳ| for the full B-bit code ȳ (= `quality` when bits == 1).
    pub ex_quality: f32,
}

// Stored factors may be cast from bytes in bulk: no padding.
const _: () = assert!(std::mem::size_of::<Factors>() == Factors::BYTES);

impl Factors {
    pub const BYTES: usize = 12;

    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.norm.to_le_bytes());
        out[4..8].copy_from_slice(&self.quality.to_le_bytes());
        out[8..12].copy_from_slice(&self.ex_quality.to_le_bytes());
    }

    pub fn read(b: &[u8]) -> Factors {
        let f = |i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Factors { norm: f(0), quality: f(4), ex_quality: f(8) }
    }

    /// sqrt(1 - q^2)/q: the bound's dependence on how well the code fits.
    #[inline(always)]
    fn spread(quality: f32) -> f32 {
        (1.0 - quality * quality).max(0.0).sqrt() / quality
    }
}

impl Factors {
    /// |r| / quality: the 1-bit estimate is the code's sign dot times this.
    #[inline]
    pub fn scale(&self) -> f32 {
        self.norm / self.quality
    }

    /// |r| spread(quality): the 1-bit bound is this times the table's bound
    /// scale (a scan bounds the B-bit estimate, `ex_err`).
    #[cfg(test)]
    pub fn err(&self) -> f32 {
        self.norm * Factors::spread(self.quality)
    }

    /// |r| spread(ex_quality): the B-bit bound over the table's bound scale.
    #[inline]
    pub fn ex_err(&self) -> f32 {
        self.norm * Factors::spread(self.ex_quality)
    }
}

/// sqrt(D) |r| / (ex_quality |2ȳ|) for a code of `bits` bits a dimension
/// (D = sign.len() * 8): the B-bit estimate is its planes' weighted sign
/// dots (`Quantizer::weighted_dots`) times this. Derived once, when a head
/// is decoded: |2ȳ| takes popcounts of plane pairs.
pub(crate) fn ex_scale(bits: u32, sign: &[u8], ex: &[u8], f: &Factors) -> f32 {
    if f.norm == 0.0 {
        return 0.0;
    }
    if bits == 1 {
        return f.scale();
    }
    let d = sign.len() * 8;
    // |2ȳ|^2 for ȳ = k - (2^B - 1)/2 (planes: the extended ones low bit
    // first, the sign bit on top).
    let offset = (1i64 << bits) - 1;
    let planes: Vec<&[u8]> = ex.chunks_exact(sign.len()).chain([sign]).collect();
    let (mut k_sum, mut k_sq) = (0i64, 0i64);
    for (b, plane) in planes.iter().enumerate() {
        k_sum += (1i64 << b) * popcount(plane);
        for (b2, other) in planes.iter().enumerate() {
            k_sq += (1i64 << (b + b2)) * popcount_and(plane, other);
        }
    }
    let sq = 4 * k_sq - 4 * offset * k_sum + d as i64 * offset * offset;
    ((d as f64).sqrt() * f.norm as f64 / (f.ex_quality as f64 * (sq as f64).sqrt())) as f32
}

pub(crate) struct Quantizer {
    rotation: Rotation,
    bits: u32,
}

/// Query-side state for estimating <r, v> against every code of one list.
#[derive(Default)]
pub(crate) struct QueryLut {
    /// Per sign-code byte j, nibbles[2j][b & 15] + nibbles[2j + 1][b >> 4] =
    /// sum over bits k of b of ±v'_{8j+k}/sqrt(D) (+ when set): the byte's
    /// share of <x̄, v'>. Cheap to build (16 entries a nibble).
    nibbles: Vec<[f32; 16]>,
    /// The same per whole byte (tables[j][b]), so a code costs D/8 lookups
    /// instead of D/4; built only for lists with enough codes to pay for
    /// its 256 entries a byte (empty otherwise).
    tables: Vec<[f32; 256]>,
    /// sum_i v'_i, so a table sum turns into the sum of v' over a code's set bits.
    sum: f32,
    /// |v|.
    norm: f32,
    /// |v| · eps0 / sqrt(D - 1): a code's bound is this times |r| · spread(quality).
    bound_scale: f32,
    /// The nibble tables quantized to u8 for the FastScan kernel
    /// (`block_sums`): nibbles[t][b] ≈ min_t + delta · quant[t][b], so a
    /// plane's sign dot ≈ `quant_offset` + `quant_delta` × its block sum,
    /// within `quant_margin` of what the float tables give. Empty when the
    /// tables are not finite (the scan then takes every code the float way).
    quant: Vec<[u8; 16]>,
    quant_offset: f32,
    quant_delta: f32,
    quant_margin: f32,
}

impl Quantizer {
    pub fn new(dim: usize, bits: u32, seed: u64, padding: Padding) -> Quantizer {
        debug_assert!((1..=8).contains(&bits), "RaBitQ bits {bits} not in 1..=8");
        Quantizer { rotation: Rotation::new(dim, seed, padding), bits }
    }

    pub fn rotation(&self) -> &Rotation {
        &self.rotation
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Bytes of one vector's 1-bit (sign) code: padded / 8.
    pub fn sign_bytes(&self) -> usize {
        self.rotation.padded / 8
    }

    /// Bytes of one vector's extended code: bits - 1 bit planes, each laid out as the sign code; 0 when bits == 1.
    pub fn ex_bytes(&self) -> usize {
        self.rotation.padded * (self.bits as usize - 1) / 8
    }

    /// Encodes residual r = x - c ALREADY ROTATED (rotated_r.len() == padded). Writes the sign code
    /// and the ex code, returns the factors. A zero residual gets norm 0 and quality 1.
    pub fn encode(&self, rotated_r: &[f32], sign: &mut [u8], ex: &mut [u8]) -> Factors {
        let d = self.rotation.padded;
        assert_eq!(rotated_r.len(), d, "Quantizer::encode: residual length");
        assert_eq!(sign.len(), self.sign_bytes(), "Quantizer::encode: sign code length");
        assert_eq!(ex.len(), self.ex_bytes(), "Quantizer::encode: ex code length");
        sign.fill(0);
        ex.fill(0);
        // f64: squares of 1e20 (or of 1e-30) are out of f32's range.
        let norm = rotated_r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        if norm == 0.0 {
            // Every code and quality then estimates 0 exactly; 1 keeps the bound at 0.
            return Factors { norm: 0.0, quality: 1.0, ex_quality: 1.0 };
        }
        for (byte, chunk) in sign.iter_mut().zip(rotated_r.chunks_exact(8)) {
            *byte = chunk.iter().enumerate().fold(0u8, |b, (k, &x)| b | (((x > 0.0) as u8) << k));
        }
        let l1: f64 = rotated_r.iter().map(|&x| x.abs() as f64).sum();
        let quality = (l1 / norm / (d as f64).sqrt()).min(1.0) as f32;
        let ex_quality = if self.bits > 1 { self.encode_ex(rotated_r, norm, ex) } else { quality };
        // Only a vector near f32::MAX could have a norm beyond it, and its exact distances overflow too.
        Factors { norm: (norm as f32).min(f32::MAX), quality, ex_quality }
    }

    /// Writes the B - 1 extended bits of each dimension and returns the B-bit quality.
    fn encode_ex(&self, r: &[f32], norm: f64, ex: &mut [u8]) -> f32 {
        let ex_bits = self.bits - 1;
        let top = (1u32 << ex_bits) - 1;
        let abs: Vec<f32> = r.iter().map(|&x| (x.abs() as f64 / norm) as f32).collect();
        let mags = best_magnitudes(&abs, top);
        let (mut ip, mut sq) = (0f64, 0f64);
        for (&m, &a) in mags.iter().zip(&abs) {
            let y = m as f64 + 0.5;
            ip += y * a as f64;
            sq += y * y;
        }
        // Bit planes, each laid out as the sign code, so the estimate sums
        // each plane with the query's sign-code tables.
        let sb = self.sign_bytes();
        for (i, (&m, &x)) in mags.iter().zip(r).enumerate() {
            // A negative dimension's B-bit code k = top - m puts it at -(m + 0.5) on the grid.
            let e = if x > 0.0 { m } else { top - m };
            for b in 0..ex_bits as usize {
                ex[b * sb + i / 8] |= (((e >> b) & 1) as u8) << (i % 8);
            }
        }
        (ip / sq.sqrt()).min(1.0) as f32
    }

    /// Prepares a query-side lookup for estimating <r, v> for every code of one list, given
    /// rotated_v = P·v (v = q - c for L2 metrics, v = q for inner-product metrics; the caller decides).
    /// Its bounds are at EPS0_99: what the index reranks must hold the true neighbours.
    /// `codes` is how many codes it will estimate (it decides which tables pay).
    #[cfg(test)]
    pub fn prepare(&self, rotated_v: &[f32], codes: usize) -> QueryLut {
        self.prepare_with_eps0(rotated_v, EPS0_99, codes)
    }

    /// `prepare` with the bound at `eps0` standard deviations instead of EPS0.
    #[cfg(test)]
    pub fn prepare_with_eps0(&self, rotated_v: &[f32], eps0: f32, codes: usize) -> QueryLut {
        let mut lut = QueryLut::default();
        self.prepare_into(rotated_v, eps0, codes, &mut lut);
        lut
    }

    /// `prepare_with_eps0` into `lut`, reusing its tables' memory (a scan
    /// prepares a table per list and query).
    pub fn prepare_into(&self, rotated_v: &[f32], eps0: f32, codes: usize, lut: &mut QueryLut) {
        assert_eq!(rotated_v.len(), self.rotation.padded, "Quantizer::prepare: query length");
        lut.prepare(rotated_v, eps0, codes);
    }

    /// For n codes stored contiguously (signs: n * sign_bytes, factors: n), writes the 1-bit
    /// estimate of <r_i, v> into est[i] and a bound err[i] such that |<r_i,v> - est[i]| <= err[i]
    /// holds with high probability: err = |r| |v| eps0 sqrt((1 - q^2)/q^2) / sqrt(D - 1), eps0
    /// as the lut was prepared with (EPS0: ~94% of pairs; EPS0_99: >= 99%).
    #[cfg(test)]
    pub fn estimate(&self, lut: &QueryLut, signs: &[u8], factors: &[Factors], est: &mut [f32], err: &mut [f32]) {
        let n = factors.len();
        assert!(
            signs.len() >= n * self.sign_bytes() && est.len() >= n && err.len() >= n,
            "Quantizer::estimate: {n} codes need {} sign bytes and {n} outputs",
            n * self.sign_bytes()
        );
        let (est, err) = (&mut est[..n], &mut err[..n]);
        lut.sign_dots(&signs[..n * self.sign_bytes()], est);
        // A separate pass so the divisions and square roots vectorise.
        for ((e, b), f) in est.iter_mut().zip(err.iter_mut()).zip(factors) {
            let scale = f.norm / f.quality;
            *e *= scale;
            *b = f.norm * lut.bound_scale * Factors::spread(f.quality);
        }
    }

    /// Writes the sign dot <x̄, v'> of each of n consecutive sign codes
    /// into dots (the scan scales them with each code's `Factors::scale`).
    #[cfg(test)]
    pub fn sign_dots(&self, lut: &QueryLut, signs: &[u8], dots: &mut [f32]) {
        assert_eq!(signs.len(), dots.len() * self.sign_bytes(), "Quantizer::sign_dots: code bytes");
        lut.sign_dots(signs, dots);
    }

    /// What `estimate_ex` scales into its estimate, from the sign dot the
    /// 1-bit pass computed: the B-bit code's <ȳ, v'> times |2ȳ|/sqrt(D) is
    /// the sum of its planes' sign dots weighted 2^b (the sign plane on
    /// top), the offset's share cancelling out, so only the B - 1 extended
    /// planes are summed here. Times `ex_scale`, the estimate;
    /// linear in v', as the sign dot is.
    #[cfg(test)]
    pub fn weighted_dots(&self, lut: &QueryLut, sign_dot: f32, ex: &[u8]) -> f32 {
        let sb = self.sign_bytes();
        debug_assert_eq!(ex.len(), self.ex_bytes());
        let mut weighted = sign_dot * (1u32 << (self.bits - 1)) as f32;
        for (b, plane) in ex.chunks_exact(sb).enumerate() {
            weighted += lut.dot_one(plane) * (1u32 << b) as f32;
        }
        weighted
    }

    /// A table's bound scale (`QueryLut::bound_scale`) for a vector v of
    /// norm `norm` at EPS0_99, for a caller that sums tables of other vectors.
    pub fn bound_scale(&self, norm: f32) -> f32 {
        let d = self.rotation.padded;
        (norm as f64 * EPS0_99 as f64 / ((d - 1) as f64).sqrt()).min(f32::MAX as f64) as f32
    }

    /// An upper bound on the rounding error of a sign dot computed from the
    /// tables of v' with |v'|_1 = `l1` (each entry is a signed sum of at
    /// most 8 of v'/sqrt(D), and a code sums D/8 of them in 4 chains): when
    /// the caller subtracts two sign dots of vectors much longer than their
    /// difference, this is what the subtraction can no longer hide.
    pub fn rounding(&self, l1: f32) -> f32 {
        let d = self.rotation.padded;
        // Entries: ~12 roundings of sums within 3 sum|v_k|/sqrt(D) of the
        // byte; the code's sum: D/32 more in each chain. Twice that, for margin.
        let steps = (d / 32 + 40) as f32;
        2.0 * steps * f32::EPSILON * l1 / (d as f32).sqrt()
    }

    /// The refined estimate of <r, v> for one vector from its ex code (bits > 1), with its
    /// (tighter) bound; with bits == 1 this is the 1-bit estimate.
    #[cfg(test)]
    pub fn estimate_ex(&self, lut: &QueryLut, sign: &[u8], ex: &[u8], f: &Factors) -> (f32, f32) {
        let d = self.rotation.padded;
        assert_eq!(sign.len(), self.sign_bytes(), "Quantizer::estimate_ex: sign code length");
        assert_eq!(ex.len(), self.ex_bytes(), "Quantizer::estimate_ex: ex code length");
        let bound = f.norm * lut.bound_scale * Factors::spread(f.ex_quality);
        if f.norm == 0.0 {
            return (0.0, 0.0);
        }
        if self.bits == 1 {
            let mut dot = [0f32];
            lut.sign_dots(sign, &mut dot);
            return (dot[0] * (f.norm / f.quality), bound);
        }
        // With k the B-bit code, 2ȳ = 2k - (2^B - 1): its planes (the sign
        // bit is the top one) are bit vectors, so <k, v'> is a weighted sum
        // of table sums and |2ȳ|^2 one of popcounts of plane pairs.
        let ex_bits = self.bits as usize - 1;
        let sb = self.sign_bytes();
        let planes: Vec<&[u8]> = ex.chunks_exact(sb).chain([sign]).collect();
        let sqrt_d = (d as f32).sqrt();
        // Sum of v' over a plane's set bits, from its table sum (2S - sum)/sqrt(D).
        let set_sum = |plane: &[u8]| {
            let mut t = [0f32];
            lut.sign_dots(plane, &mut t);
            (t[0] * sqrt_d + lut.sum) / 2.0
        };
        let offset = (1i64 << self.bits) - 1;
        let mut k_dot = 0f64;
        let mut k_sum = 0i64; // sum of k_i
        let mut k_sq = 0i64; // sum of k_i^2
        for (b, plane) in planes.iter().enumerate() {
            k_dot += (1u64 << b) as f64 * set_sum(plane) as f64;
            k_sum += (1i64 << b) * popcount(plane);
            for (b2, other) in planes.iter().enumerate() {
                k_sq += (1i64 << (b + b2)) * popcount_and(plane, other);
            }
        }
        debug_assert_eq!(planes.len(), ex_bits + 1);
        let dot = 2.0 * k_dot - offset as f64 * lut.sum as f64;
        let sq = 4 * k_sq - 4 * offset * k_sum + d as i64 * offset * offset;
        let dot = dot / (sq as f64).sqrt(); // <ȳ, v'>/|ȳ|
        ((dot * f.norm as f64 / f.ex_quality as f64) as f32, bound)
    }
}

/// From this many codes to estimate, whole-byte tables pay for their 256
/// entries a byte (they save one lookup a byte a code).
const WHOLE_BYTE_TABLES_FROM: usize = 256;

/// The tables are an exact image of the vector they were built from (a
/// query, or a list's centroid): wiped on drop, including what a reused
/// table's earlier, longer contents left in its capacity.
impl Drop for QueryLut {
    fn drop(&mut self) {
        fn wipe_all<T: bytemuck::Pod>(v: &mut Vec<T>) {
            v.resize(v.capacity(), T::zeroed());
            crate::crypto::wipe(bytemuck::cast_slice_mut(v));
        }
        wipe_all(&mut self.nibbles);
        wipe_all(&mut self.tables);
        wipe_all(&mut self.quant);
        (self.sum, self.norm) = (0.0, 0.0);
    }
}

impl QueryLut {
    /// The tables of a rotated vector of the padded dimension (see
    /// `Quantizer::prepare_into`), for a caller without the quantizer.
    pub fn prepare(&mut self, rotated_v: &[f32], eps0: f32, codes: usize) {
        let d = rotated_v.len();
        let inv_sqrt_d = (1.0 / (d as f64).sqrt()) as f32;
        let whole = codes >= WHOLE_BYTE_TABLES_FROM;
        self.nibbles.clear();
        self.tables.clear();
        for v in rotated_v.chunks_exact(8) {
            // Setting bit k flips v_k's sign. Built per nibble, each
            // entry on its own (a chain through the table, entry from
            // entry, was a tenth of a query), then all 256 low + high
            // pairs: independent, vectorised adds.
            let w: [f32; 8] = std::array::from_fn(|k| 2.0 * v[k] * inv_sqrt_d);
            let base = -v.iter().sum::<f32>() * inv_sqrt_d;
            let nibble = |w: &[f32], b: usize| (0..4).map(|k| w[k] * ((b >> k) & 1) as f32).sum::<f32>();
            let lo: [f32; 16] = std::array::from_fn(|b| base + nibble(&w[..4], b));
            let hi: [f32; 16] = std::array::from_fn(|b| nibble(&w[4..], b));
            self.nibbles.extend([lo, hi]);
            if whole {
                let mut t = [0f32; 256];
                for (row, h) in t.chunks_exact_mut(16).zip(hi) {
                    for (e, l) in row.iter_mut().zip(lo) {
                        *e = h + l;
                    }
                }
                self.tables.push(t);
            }
        }
        self.quantize();
        let norm = rotated_v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        let bound_scale = norm * eps0 as f64 / ((d - 1) as f64).sqrt();
        self.sum = rotated_v.iter().sum();
        self.norm = (norm as f32).min(f32::MAX);
        self.bound_scale = (bound_scale as f32).min(f32::MAX);
    }

    /// |v|, for the caller's distance formulas.
    #[cfg(test)]
    pub fn norm(&self) -> f32 {
        self.norm
    }

    /// |v| eps0 / sqrt(D - 1): a code's bound is this times its `Factors::err` (or `ex_err`).
    pub fn bound_scale(&self) -> f32 {
        self.bound_scale
    }

    /// Quantizes the nibble tables into `quant` (one step for all tables,
    /// each table from its own minimum) and sets the margin: each entry is
    /// within delta/2 of its table's float entry, plus the float rounding of
    /// both ways of summing (generously: 4 (n + 8) eps of the sum of the
    /// tables' largest magnitudes, n the number of tables).
    fn quantize(&mut self) {
        self.quant.clear();
        let finite = self.nibbles.iter().flatten().all(|x| x.is_finite());
        let range = |t: &[f32; 16]| {
            let (lo, hi) = t.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
            (lo, hi - lo)
        };
        let widest = self.nibbles.iter().map(|t| range(t).1).fold(0f32, f32::max);
        let delta = widest / 255.0;
        if !finite || !widest.is_finite() {
            self.quant_margin = f32::INFINITY;
            return;
        }
        let (mut offset, mut magnitude) = (0f64, 0f64);
        // Steps of 1/delta rounded half up: `x + 0.5` then a saturating
        // truncation, which vectorises (`f32::round` is a libm call per
        // entry: 2% of a query). Both roundings move an entry by at most a
        // few ulps of 255 beyond half a step: inside the margin's 1e-3.
        // Tables so small that 1/delta overflows are not quantized.
        let inv_delta = if delta > 0.0 { 1.0 / delta } else { 0.0 };
        if !inv_delta.is_finite() {
            self.quant_margin = f32::INFINITY;
            return;
        }
        for t in &self.nibbles {
            let (lo, _) = range(t);
            offset += lo as f64;
            magnitude += t.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
            self.quant.push(std::array::from_fn(|b| ((t[b] - lo) * inv_delta + 0.5) as u8));
        }
        let n = self.nibbles.len() as f64;
        let eps = f32::EPSILON as f64;
        let margin = n * delta as f64 * 0.5 * (1.0 + 1e-3) + 4.0 * (n + 8.0) * eps * magnitude;
        self.quant_offset = offset as f32;
        self.quant_delta = delta;
        self.quant_margin =
            if margin.is_finite() && (offset as f32).is_finite() { margin as f32 } else { f32::INFINITY };
    }

    /// Whether the quantized tables can stand for the float ones (see `quant`).
    #[inline]
    pub fn quantized(&self) -> bool {
        self.quant_margin.is_finite() && !self.quant.is_empty()
    }

    /// The quantized tables, for `block_sums`.
    #[inline]
    pub fn quant(&self) -> &[[u8; 16]] {
        &self.quant
    }

    /// (offset, delta, margin): a plane's sign dot is within margin of
    /// offset + delta × its `block_sums` sum.
    #[inline]
    pub fn quant_terms(&self) -> (f32, f32, f32) {
        (self.quant_offset, self.quant_delta, self.quant_margin)
    }

    /// <x̄, v'> for row `t` of a plane packed as `pack` lays it out (the
    /// plane's `sign_bytes` × BLOCK bytes): the float tables in the same
    /// order as `sign_dots`, `nibble_dots` and `dot_one`, so the same sum.
    #[inline]
    pub fn packed_dot(&self, plane: &[u8], t: usize) -> f32 {
        let at = |j: usize| plane[j * BLOCK + t];
        if self.tables.is_empty() {
            return self.packed_nibble_dot(at);
        }
        let sb = self.tables.len();
        let group_len = if sb <= 16 { 16 } else { 8 };
        let mut out = 0f32;
        for (g, group) in self.tables.chunks(group_len).enumerate() {
            let first = g * group_len;
            let mut acc = [0f32; 4];
            for (c, t4) in group.chunks_exact(4).enumerate() {
                for k in 0..4 {
                    acc[k] += t4[k][at(first + 4 * c + k) as usize];
                }
            }
            out += (acc[0] + acc[1]) + (acc[2] + acc[3]);
        }
        out
    }

    /// The ex planes' share of `Quantizer::weighted_dots` for row `t` of a
    /// packed block (`planes`: the extended planes, `sign_bytes` × BLOCK
    /// bytes each, low bit first), the same sum as `dot_one` gives.
    #[inline]
    pub fn packed_weighted(&self, sign_dot: f32, bits: u32, planes: &[u8], t: usize) -> f32 {
        let mut weighted = sign_dot * (1u32 << (bits - 1)) as f32;
        if bits > 1 {
            for (b, plane) in planes.chunks_exact(planes.len() / (bits as usize - 1)).enumerate() {
                weighted += self.packed_dot_one(plane, t) * (1u32 << b) as f32;
            }
        }
        weighted
    }

    /// `dot_one` of row `t` of a packed plane (whole-byte tables: one group).
    #[inline]
    fn packed_dot_one(&self, plane: &[u8], t: usize) -> f32 {
        let at = |j: usize| plane[j * BLOCK + t];
        if self.tables.is_empty() {
            return self.packed_nibble_dot(at);
        }
        let mut acc = [0f32; 4];
        for (c, t4) in self.tables.chunks_exact(4).enumerate() {
            for k in 0..4 {
                acc[k] += t4[k][at(4 * c + k) as usize];
            }
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }

    /// The nibble tables' sum for a packed row whose byte j is `at(j)`, in
    /// `dot_one`'s order (so the same sum).
    #[inline]
    fn packed_nibble_dot(&self, at: impl Fn(usize) -> u8) -> f32 {
        let mut acc = [0f32; 4];
        for (j, n) in self.nibbles.chunks_exact(4).enumerate() {
            let (b0, b1) = (at(2 * j), at(2 * j + 1));
            acc[0] += n[0][(b0 & 15) as usize];
            acc[1] += n[1][(b0 >> 4) as usize];
            acc[2] += n[2][(b1 & 15) as usize];
            acc[3] += n[3][(b1 >> 4) as usize];
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }

    /// <x̄, v'> for one sign code (or one bit plane laid out as one).
    #[cfg(test)]
    fn dot_one(&self, code: &[u8]) -> f32 {
        let mut acc = [0f32; 4];
        if self.tables.is_empty() {
            for (t, b) in self.nibbles.chunks_exact(4).zip(code.chunks_exact(2)) {
                acc[0] += t[0][(b[0] & 15) as usize];
                acc[1] += t[1][(b[0] >> 4) as usize];
                acc[2] += t[2][(b[1] & 15) as usize];
                acc[3] += t[3][(b[1] >> 4) as usize];
            }
        } else {
            for (t, b) in self.tables.chunks_exact(4).zip(code.chunks_exact(4)) {
                for k in 0..4 {
                    acc[k] += t[k][b[k] as usize];
                }
            }
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }

    /// out[i] = <x̄_i, v'> for consecutive sign codes.
    #[cfg(test)]
    fn sign_dots(&self, codes: &[u8], out: &mut [f32]) {
        if self.tables.is_empty() {
            nibble_dots(&self.nibbles, codes, out);
        } else {
            sign_dots(&self.tables, codes, out);
        }
    }
}

/// As [`sign_dots`], with two nibble lookups a byte.
#[cfg(test)]
fn nibble_dots(nibbles: &[[f32; 16]], codes: &[u8], out: &mut [f32]) {
    let sb = nibbles.len() / 2;
    debug_assert!(codes.len() == sb * out.len());
    for (code, o) in codes.chunks_exact(sb).zip(out.iter_mut()) {
        let mut acc = [0f32; 4];
        for (t, b) in nibbles.chunks_exact(4).zip(code.chunks_exact(2)) {
            acc[0] += t[0][(b[0] & 15) as usize];
            acc[1] += t[1][(b[0] >> 4) as usize];
            acc[2] += t[2][(b[1] & 15) as usize];
            acc[3] += t[3][(b[1] >> 4) as usize];
        }
        *o = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
}

/// out[i] = <x̄_i, v'> for consecutive sign codes of tables.len() bytes each.
///
/// The tables take 128·D bytes, more than L1 from D = 512 on, so codes are
/// taken a block at a time and each block is swept once per group of tables
/// small enough to stay in L1 (measured: D = 4096 1.6x faster, D = 128 the
/// same as a plain loop). Groups of 8 KiB: at D = 512, 19.7 ns a code
/// against 27 with 16 KiB groups; 16 KiB (D = 128 in one pass) is 8% faster
/// where it holds the whole code.
#[cfg(test)]
fn sign_dots(tables: &[[f32; 256]], codes: &[u8], out: &mut [f32]) {
    const BLOCK: usize = 128;
    let sb = tables.len();
    let group_len = if sb <= 16 { 16 } else { 8 };
    debug_assert!(sb.is_multiple_of(4) && codes.len() == sb * out.len());
    for (codes, out) in codes.chunks(BLOCK * sb).zip(out.chunks_mut(BLOCK)) {
        out.fill(0.0);
        for (g, group) in tables.chunks(group_len).enumerate() {
            let first = g * group_len;
            for (code, o) in codes.chunks_exact(sb).zip(out.iter_mut()) {
                // Four chains of adds in flight instead of one.
                let mut acc = [0f32; 4];
                for (t, b) in group.chunks_exact(4).zip(code[first..first + group.len()].chunks_exact(4)) {
                    for k in 0..4 {
                        acc[k] += t[k][b[k] as usize];
                    }
                }
                *o += (acc[0] + acc[1]) + (acc[2] + acc[3]);
            }
        }
    }
}

/// Rows of a packed block: the FastScan kernel scores this many codes at once.
pub(crate) const BLOCK: usize = 32;

/// Lays out the codes of `n` rows for the FastScan kernel: `planes[p]` is
/// plane p of every row (sign plane first, then the extended planes low
/// bit first; `sb` bytes a row, rows one after another). The result holds,
/// per block of BLOCK rows, per plane, per byte position j, the block's
/// rows' byte j (BLOCK bytes); rows past `n` in the last block are zero.
pub(crate) fn pack(planes: &[&[u8]], sb: usize, n: usize) -> Vec<u8> {
    let np = planes.len();
    let mut out = vec![0u8; n.div_ceil(BLOCK) * np * sb * BLOCK];
    for (p, plane) in planes.iter().enumerate() {
        debug_assert_eq!(plane.len(), n * sb);
        for (r, code) in plane.chunks_exact(sb).enumerate() {
            let base = ((r / BLOCK) * np + p) * sb * BLOCK + r % BLOCK;
            for (j, &b) in code.iter().enumerate() {
                out[base + j * BLOCK] = b;
            }
        }
    }
    out
}

/// The FastScan kernel: for each plane p of a packed block (`pack`) and
/// each row t of it, sums[p * BLOCK + t] = the sum over byte positions j
/// of quant[2j][low nibble] + quant[2j + 1][high nibble] of the row's byte
/// j. Exact integers; AVX-512 BW (two byte positions a shuffle) or AVX2 (one)
/// where the CPU has them.
pub(crate) fn block_sums(quant: &[[u8; 16]], block: &[u8], planes: usize, sums: &mut [u32]) {
    assert!(block.len() == planes * quant.len() / 2 * BLOCK && sums.len() >= planes * BLOCK);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512 BW (and so F; checked just above); the lengths were checked.
        unsafe { block_sums_avx512(quant, block, planes, sums) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); the lengths were checked.
        unsafe { block_sums_avx2(quant, block, planes, sums) };
        return;
    }
    block_sums_scalar(quant, block, planes, sums);
}

fn block_sums_scalar(quant: &[[u8; 16]], block: &[u8], planes: usize, sums: &mut [u32]) {
    let sb = quant.len() / 2;
    for (plane, out) in block.chunks_exact(sb * BLOCK).zip(sums.chunks_exact_mut(BLOCK)).take(planes) {
        out.fill(0);
        for (bytes, t2) in plane.chunks_exact(BLOCK).zip(quant.chunks_exact(2)) {
            add_position(out, bytes, t2);
        }
    }
}

/// Adds one byte position's lookups (`bytes`: the block's rows' bytes at
/// it, `t2`: its two nibble tables) to the rows' sums.
#[inline]
fn add_position(out: &mut [u32], bytes: &[u8], t2: &[[u8; 16]]) {
    for (o, &x) in out.iter_mut().zip(bytes) {
        *o += t2[0][(x & 15) as usize] as u32 + t2[1][(x >> 4) as usize] as u32;
    }
}

/// Adds a SIMD kernel's u16 lanes to the rows' sums: each 16 lanes of `a`
/// and `b` are one sum of the block's 32 rows (see `block_sums_avx2`).
#[cfg(target_arch = "x86_64")]
#[inline]
fn flush_lanes(out: &mut [u32], a: &[u16], b: &[u16]) {
    for (a, b) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            out[2 * i] += a[i].wrapping_sub(b[i] << 8) as u32;
            out[2 * i + 1] += b[i] as u32;
        }
    }
}

/// `block_sums` with AVX2: a byte position of a plane is one 32-byte load
/// (the block's 32 rows), its two nibbles two shuffles of the broadcast
/// 16-entry tables. The u8 results are summed in u16 lanes as FAISS does:
/// `a` takes each 16-bit lane whole (even row + 256 × odd row, wrapping),
/// `b` the odd row alone; even = a - 256 b. Flushed every 128 byte
/// positions, before an even row's sum (at most 256 × 255) could pass 65535.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_sums_avx2(quant: &[[u8; 16]], block: &[u8], planes: usize, sums: &mut [u32]) {
    use std::arch::x86_64::*;
    const FLUSH: usize = 128;
    let sb = quant.len() / 2;
    let nibble = _mm256_set1_epi8(0x0f);
    for (plane, out) in block.chunks_exact(sb * BLOCK).zip(sums.chunks_exact_mut(BLOCK)).take(planes) {
        out.fill(0);
        let mut j0 = 0;
        while j0 < sb {
            let j1 = (j0 + FLUSH).min(sb);
            let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for j in j0..j1 {
                // SAFETY: byte position j < sb of a plane of sb * BLOCK bytes,
                // tables 2j + 1 < quant.len() = 2 sb; unaligned loads.
                let (x, lo_t, hi_t) = unsafe {
                    (
                        _mm256_loadu_si256(plane.as_ptr().add(j * BLOCK).cast()),
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(quant.as_ptr().add(2 * j).cast())),
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(quant.as_ptr().add(2 * j + 1).cast())),
                    )
                };
                let lo = _mm256_and_si256(x, nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), nibble);
                let r1 = _mm256_shuffle_epi8(lo_t, lo);
                let r2 = _mm256_shuffle_epi8(hi_t, hi);
                a = _mm256_add_epi16(a, _mm256_add_epi16(r1, r2));
                b = _mm256_add_epi16(b, _mm256_add_epi16(_mm256_srli_epi16::<8>(r1), _mm256_srli_epi16::<8>(r2)));
            }
            let (mut la, mut lb) = ([0u16; 16], [0u16; 16]);
            // SAFETY: 32-byte stores into 32-byte arrays.
            unsafe {
                _mm256_storeu_si256(la.as_mut_ptr().cast(), a);
                _mm256_storeu_si256(lb.as_mut_ptr().cast(), b);
            }
            flush_lanes(out, &la, &lb);
            j0 = j1;
        }
    }
}

/// `block_sums` with AVX-512 BW: two byte positions of a plane a 64-byte
/// load (the block's 32 rows at j, then at j + 1), their tables four in one
/// load, each 128-bit lane's pair picked out by a lane shuffle; otherwise
/// `block_sums_avx2`, each register half summing its own byte positions
/// (so each half reaches at most half the AVX2 kernel's sums before a flush).
/// An odd last byte position is summed by the scalar kernel's rule.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn block_sums_avx512(quant: &[[u8; 16]], block: &[u8], planes: usize, sums: &mut [u32]) {
    use std::arch::x86_64::*;
    const FLUSH: usize = 128;
    let sb = quant.len() / 2;
    let nibble = _mm512_set1_epi8(0x0f);
    for (plane, out) in block.chunks_exact(sb * BLOCK).zip(sums.chunks_exact_mut(BLOCK)).take(planes) {
        out.fill(0);
        let mut j0 = 0;
        while j0 < sb {
            let j1 = (j0 + FLUSH).min(sb);
            let (mut a, mut b) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            let mut j = j0;
            while j + 2 <= j1 {
                // SAFETY: byte positions j + 1 < sb of a plane of sb * BLOCK
                // bytes, tables 2j + 3 < quant.len() = 2 sb; unaligned loads.
                let (x, t) = unsafe {
                    (
                        _mm512_loadu_si512(plane.as_ptr().add(j * BLOCK).cast()),
                        _mm512_loadu_si512(quant.as_ptr().add(2 * j).cast()),
                    )
                };
                // Lanes 0-1 (position j) take tables 2j and 2j + 1, lanes 2-3
                // (position j + 1) tables 2j + 2 and 2j + 3.
                let lo_t = _mm512_shuffle_i64x2::<0b10_10_00_00>(t, t);
                let hi_t = _mm512_shuffle_i64x2::<0b11_11_01_01>(t, t);
                let lo = _mm512_and_si512(x, nibble);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(x), nibble);
                let r1 = _mm512_shuffle_epi8(lo_t, lo);
                let r2 = _mm512_shuffle_epi8(hi_t, hi);
                a = _mm512_add_epi16(a, _mm512_add_epi16(r1, r2));
                b = _mm512_add_epi16(b, _mm512_add_epi16(_mm512_srli_epi16::<8>(r1), _mm512_srli_epi16::<8>(r2)));
                j += 2;
            }
            let (mut la, mut lb) = ([0u16; 32], [0u16; 32]);
            // SAFETY: 64-byte stores into 64-byte arrays.
            unsafe {
                _mm512_storeu_si512(la.as_mut_ptr().cast(), a);
                _mm512_storeu_si512(lb.as_mut_ptr().cast(), b);
            }
            flush_lanes(out, &la, &lb);
            if j < j1 {
                add_position(out, &plane[j * BLOCK..(j + 1) * BLOCK], &quant[2 * j..2 * j + 2]);
            }
            j0 = j1;
        }
    }
}

fn popcount(bits: &[u8]) -> i64 {
    bits.iter().map(|b| b.count_ones() as i64).sum()
}

fn popcount_and(a: &[u8], b: &[u8]) -> i64 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones() as i64).sum()
}

#[cfg(test)]
fn put_bits(out: &mut [u8], pos: usize, n: u32, value: u32) {
    let v = (value & ((1 << n) - 1)) << (pos % 8);
    out[pos / 8] |= v as u8;
    if (pos % 8) as u32 + n > 8 {
        out[pos / 8 + 1] |= (v >> 8) as u8;
    }
}

#[cfg(test)]
fn get_bits(b: &[u8], pos: usize, n: u32) -> u32 {
    let lo = b[pos / 8] as u32;
    let hi = if (pos % 8) as u32 + n > 8 { (b[pos / 8 + 1] as u32) << 8 } else { 0 };
    ((lo | hi) >> (pos % 8)) & ((1 << n) - 1)
}

/// The magnitudes m_i in 0..=top of a B-bit code for the unit vector's
/// absolute values `a`, the grid point of dimension i being m_i + 0.5:
/// m_i = min(floor(t a_i), top) for the rescaling t that maximises the
/// code's cosine with a, <m + 0.5, a>/|m + 0.5| (extended RaBitQ, section 3.2).
///
/// The cosine only changes where some t a_i crosses an integer. Sweeping
/// all of those crossings is O(D 2^B log) per vector, so a coarse grid of t
/// finds the peak's neighbourhood first and only the crossings between the
/// best grid point's neighbours are swept exactly. One extended bit (the
/// default 2-bit codes) is swept whole, exactly and in less time.
fn best_magnitudes(a: &[f32], top: u32) -> Vec<u32> {
    if top == 1 {
        return best_top_set(a);
    }
    const GRID: usize = 32;
    // Beyond (top + SLACK)/max a_i the largest coordinates would be clipped
    // by more than SLACK steps; the exhaustive sweep of the tests never found
    // the optimum there (FAISS and the RaBitQ library use the same limit).
    const SLACK: f64 = 10.0;
    let amax = a.iter().fold(0f32, |m, &x| m.max(x)) as f64;
    debug_assert!(amax > 0.0);
    let t_end = (top as f64 + SLACK) / amax;
    let t_at = |g: usize| t_end * g as f64 / GRID as f64;
    let mags_at = |t: f64| -> Vec<u32> { a.iter().map(|&x| ((t * x as f64) as u32).min(top)).collect() };
    // t = 0 (all magnitudes 0) is the sign code itself: never worse than 1 bit.
    let scores: Vec<f64> = (0..=GRID).map(|g| grid_cosine(a, t_at(g) as f32, top as f32)).collect();
    let best = (0..=GRID).fold(0, |b, g| if scores[g] > scores[b] { g } else { b });
    let (lo, hi) = (t_at(best.saturating_sub(1)), t_at((best + 1).min(GRID)));
    let start = mags_at(lo);
    let mut events: Vec<(f64, u32)> = Vec::new();
    for (i, (&m, &x)) in start.iter().zip(a).enumerate() {
        let last = ((hi * x as f64) as u32).min(top);
        events.extend((m + 1..=last).map(|k| (k as f64 / x as f64, i as u32)));
    }
    events.sort_unstable_by(|p, q| p.0.total_cmp(&q.0));
    let mut m = start.clone();
    let (mut ip, mut sq) = m.iter().zip(a).fold((0f64, 0f64), |(ip, sq), (&m, &x)| {
        let y = m as f64 + 0.5;
        (ip + y * x as f64, sq + y * y)
    });
    let (mut best_score, mut best_count) = (ip / sq.sqrt(), 0);
    for (count, &(_, i)) in events.iter().enumerate() {
        let i = i as usize;
        // (m + 1.5)^2 - (m + 0.5)^2 = 2m + 2
        sq += 2.0 * m[i] as f64 + 2.0;
        ip += a[i] as f64;
        m[i] += 1;
        let s = ip / sq.sqrt();
        if s > best_score {
            (best_score, best_count) = (s, count + 1);
        }
    }
    let mut m = start;
    for &(_, i) in &events[..best_count] {
        m[i as usize] += 1;
    }
    m
}

/// `best_magnitudes` for one extended bit (top = 1), exactly: m_i is then
/// 1 where t a_i >= 1, so every rescaling sets the k largest a_i for some
/// k, and one sort sweeps all k. The cosine of the k largest is
/// (S/2 + P_k)/sqrt(D/4 + 2k), S the sum of a and P_k that of its k largest.
fn best_top_set(a: &[f32]) -> Vec<u32> {
    // a_i >= 0: its bits order as the floats do; the low half keeps i.
    let mut order: Vec<u64> = a.iter().enumerate().map(|(i, x)| ((x.to_bits() as u64) << 32) | i as u64).collect();
    order.sort_unstable_by(|p, q| q.cmp(p));
    let mut ip = 0.5 * a.iter().map(|&x| x as f64).sum::<f64>();
    let mut sq = 0.25 * a.len() as f64;
    let (mut best_score, mut best_k) = (ip / sq.sqrt(), 0);
    for (k, &o) in order.iter().enumerate() {
        ip += f32::from_bits((o >> 32) as u32) as f64;
        sq += 2.0;
        let s = ip / sq.sqrt();
        if s > best_score {
            (best_score, best_k) = (s, k + 1);
        }
    }
    let mut m = vec![0u32; a.len()];
    order[..best_k].iter().for_each(|&o| m[o as u32 as usize] = 1);
    m
}

/// <m + 0.5, a>/|m + 0.5| for m_i = min(floor(t a_i), top), a_i >= 0 and
/// a.len() a multiple of 8 (it is D).
///
/// The grid search's cost is all here, so it is f32 in lanes (it only picks
/// a neighbourhood) and floors without float-to-int conversions, which do
/// not vectorise: adding and subtracting 2^23 rounds a float in [0, 2^23) to
/// the nearest integer, one less if that overshot. Out of line and without
/// a remainder loop: otherwise it was vectorised 3x worse.
#[inline(never)]
fn grid_cosine(a: &[f32], t: f32, top: f32) -> f64 {
    const L: usize = 8;
    const ROUND: f32 = 8_388_608.0;
    debug_assert!(a.len().is_multiple_of(L));
    let (mut ip, mut sq) = ([0f32; L], [0f32; L]);
    for c in a.chunks_exact(L) {
        for k in 0..L {
            let v = (t * c[k]).min(top);
            let r = (v + ROUND) - ROUND;
            let y = r - (r > v) as u8 as f32 + 0.5;
            ip[k] += y * c[k];
            sq[k] += y * y;
        }
    }
    ip.iter().sum::<f32>() as f64 / (sq.iter().sum::<f32>() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query whose tables are so small that a step's inverse overflows
    /// is scanned on the float tables: quantized, every entry would be 0 or
    /// 255 and the bounds from them wrong.
    #[test]
    fn tables_too_small_to_quantize_are_not_quantized() {
        let q = Quantizer::new(128, 2, 7, Padding::Multiple64);
        let tiny: Vec<f32> = (0..q.rotation().padded()).map(|i| (i as f32 - 60.0) * 1e-39).collect();
        let mut lut = QueryLut::default();
        q.prepare_into(&tiny, EPS0_99, 1000, &mut lut);
        assert!(!lut.quantized());
        let normal: Vec<f32> = tiny.iter().map(|x| x * 1e30).collect();
        q.prepare_into(&normal, EPS0_99, 1000, &mut lut);
        assert!(lut.quantized());
    }

    fn gaussian(rng: &mut SplitMix) -> f32 {
        let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    fn gaussians(rng: &mut SplitMix, n: usize) -> Vec<f32> {
        (0..n).map(|_| gaussian(rng)).collect()
    }

    fn dot64(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    fn norm64(a: &[f32]) -> f64 {
        dot64(a, a).sqrt()
    }

    #[test]
    fn rotation_preserves_norms_and_inner_products() {
        let mut rng = SplitMix::new(1);
        for (dim, padding) in [1, 3, 50, 64, 100, 128, 384, 769]
            .into_iter()
            .flat_map(|d| [(d, Padding::PowerOfTwo), (d, Padding::Multiple64)])
        {
            let rot = Rotation::new(dim, 42, padding);
            assert_eq!(rot.dim(), dim);
            let padded = match padding {
                Padding::PowerOfTwo => dim.max(64).next_power_of_two(),
                Padding::Multiple64 => dim.max(64).div_ceil(64) * 64,
            };
            assert_eq!(rot.padded(), padded, "dim {dim} {padding:?}");
            let (mut pa, mut pb) = (vec![0f32; rot.padded()], vec![0f32; rot.padded()]);
            for _ in 0..10 {
                let a = gaussians(&mut rng, dim);
                let b: Vec<f32> = gaussians(&mut rng, dim).iter().zip(&a).map(|(x, y)| x + 0.5 * y).collect();
                rot.apply(&a, &mut pa);
                rot.apply(&b, &mut pb);
                let (na, nb) = (norm64(&a), norm64(&b));
                assert!((norm64(&pa) - na).abs() <= 1e-5 * na, "dim {dim}: |Pa| {} vs |a| {na}", norm64(&pa));
                assert!((norm64(&pb) - nb).abs() <= 1e-5 * nb);
                let (ip, pip) = (dot64(&a, &b), dot64(&pa, &pb));
                assert!((ip - pip).abs() <= 1e-5 * na * nb, "dim {dim}: <Pa,Pb> {pip} vs <a,b> {ip}");
            }
        }
    }

    /// Indexes trained before 0.9 were coded with this rotation (a full
    /// transform of the power-of-two padding each round): `PowerOfTwo`
    /// must keep computing exactly it, and `Multiple64` too where the two
    /// paddings agree.
    #[test]
    fn power_of_two_padding_is_the_rotation_of_indexes_before_0_9() {
        for dim in [1usize, 50, 128, 384] {
            let padded = dim.max(64).next_power_of_two();
            let scale = (1.0 / (padded as f64).sqrt()) as f32;
            let mut rng = SplitMix::new(11);
            let mut bits = 0;
            let diag: Vec<f32> = (0..ROUNDS * padded)
                .map(|i| {
                    if i % 64 == 0 {
                        bits = rng.next_u64();
                    }
                    if (bits >> (i % 64)) & 1 == 1 {
                        -scale
                    } else {
                        scale
                    }
                })
                .collect();
            let v: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin() + 0.1).collect();
            let mut expected = vec![0f32; padded];
            expected[..dim].copy_from_slice(&v);
            for round in diag.chunks_exact(padded) {
                expected.iter_mut().zip(round).for_each(|(o, s)| *o *= s);
                fwht(&mut expected);
            }
            let mut out = vec![0f32; padded];
            Rotation::new(dim, 11, Padding::PowerOfTwo).apply(&v, &mut out);
            assert_eq!(out, expected, "dim {dim}");
            if dim != 384 {
                Rotation::new(dim, 11, Padding::Multiple64).apply(&v, &mut out);
                assert_eq!(out, expected, "dim {dim}: the paddings agree");
            }
        }
        assert_eq!(Rotation::new(384, 11, Padding::Multiple64).padded(), 384);
    }

    #[test]
    fn rotation_works_at_the_largest_dimension() {
        let dim = 65536;
        let rot = Rotation::new(dim, 3, Padding::Multiple64);
        let v: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.01).sin()).collect();
        let mut out = vec![0f32; dim];
        rot.apply(&v, &mut out);
        assert!((norm64(&out) - norm64(&v)).abs() <= 1e-5 * norm64(&v));
    }

    #[test]
    fn rotation_is_deterministic_per_seed() {
        let v: Vec<f32> = (0..100).map(|i| (i as f32 * 0.7).sin()).collect();
        let run = |seed| {
            let mut out = vec![0f32; 128];
            Rotation::new(100, seed, Padding::Multiple64).apply(&v, &mut out);
            out
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert_ne!(run(0), run(1));
        // A basis vector is spread over every padded coordinate, not left in place.
        let mut out = vec![0f32; 64];
        Rotation::new(1, 9, Padding::Multiple64).apply(&[1.0], &mut out);
        assert!(out.iter().all(|x| x.abs() < 0.5), "{out:?}");
        // So is one of the coordinates the first round does not transform.
        let mut e = vec![0f32; 300];
        e[299] = 1.0;
        let mut out = vec![0f32; 320];
        Rotation::new(300, 9, Padding::Multiple64).apply(&e, &mut out);
        assert!(out.iter().all(|x| x.abs() < 0.3 && *x != 0.0), "{out:?}");
    }

    /// Residuals (and query-side vectors) of one test configuration.
    struct Data {
        dim: usize,
        r: Vec<f32>,
        v: Vec<f32>,
    }

    /// Isotropic Gaussians, no centroid: what inner-product search sees.
    fn gaussian_data(dim: usize, n: usize, nq: usize, seed: u64) -> Data {
        let mut rng = SplitMix::new(seed);
        Data { dim, r: gaussians(&mut rng, n * dim), v: gaussians(&mut rng, nq * dim) }
    }

    /// Anisotropic clusters far from the origin; residuals of points and
    /// queries to their cluster's mean, as an IVF list with L2 sees them.
    fn clustered_data(dim: usize, n: usize, nq: usize, seed: u64) -> Data {
        let mut rng = SplitMix::new(seed);
        let scales: Vec<f32> = (0..dim).map(|j| (-3.0 * j as f32 / dim as f32).exp()).collect();
        let centre: Vec<f32> = gaussians(&mut rng, dim).iter().map(|x| 10.0 * x).collect();
        let point = |rng: &mut SplitMix| -> Vec<f32> {
            // Mostly along a few shared directions, as real embeddings are.
            let t = gaussian(rng);
            (0..dim).map(|j| centre[j] + scales[j] * (gaussian(rng) + t * (j % 3) as f32)).collect::<Vec<_>>()
        };
        let points: Vec<Vec<f32>> = (0..n).map(|_| point(&mut rng)).collect();
        let queries: Vec<Vec<f32>> = (0..nq).map(|_| point(&mut rng)).collect();
        let mean: Vec<f32> = (0..dim).map(|j| points.iter().map(|p| p[j]).sum::<f32>() / n as f32).collect();
        let resid = |p: &Vec<f32>| p.iter().zip(&mean).map(|(x, c)| x - c).collect::<Vec<_>>();
        Data { dim, r: points.iter().flat_map(resid).collect(), v: queries.iter().flat_map(resid).collect() }
    }

    /// Everything about one (vector, query) pair the tests look at; the
    /// bounds are for eps0 = 1 (one standard deviation).
    struct Pair {
        truth: f64,
        est: f32,
        sigma: f32,
        ex_est: f32,
        ex_sigma: f32,
        scale: f64, // |r| |v|
    }

    fn evaluate(data: &Data, bits: u32) -> Vec<Pair> {
        let q = Quantizer::new(data.dim, bits, 77, Padding::Multiple64);
        let (d, sb, xb) = (q.rotation().padded(), q.sign_bytes(), q.ex_bytes());
        let n = data.r.len() / data.dim;
        let (mut signs, mut exs, mut factors) = (vec![0u8; n * sb], vec![0u8; n * xb], Vec::new());
        let mut rot = vec![0f32; d];
        for i in 0..n {
            q.rotation().apply(&data.r[i * data.dim..(i + 1) * data.dim], &mut rot);
            factors.push(q.encode(&rot, &mut signs[i * sb..(i + 1) * sb], &mut exs[i * xb..(i + 1) * xb]));
        }
        let mut pairs = Vec::new();
        let (mut est, mut err) = (vec![0f32; n], vec![0f32; n]);
        for v in data.v.chunks_exact(data.dim) {
            q.rotation().apply(v, &mut rot);
            let lut = q.prepare_with_eps0(&rot, 1.0, usize::MAX);
            q.estimate(&lut, &signs, &factors, &mut est, &mut err);
            for i in 0..n {
                let r = &data.r[i * data.dim..(i + 1) * data.dim];
                let (ex_est, ex_sigma) =
                    q.estimate_ex(&lut, &signs[i * sb..(i + 1) * sb], &exs[i * xb..(i + 1) * xb], &factors[i]);
                pairs.push(Pair {
                    truth: dot64(r, v),
                    est: est[i],
                    sigma: err[i],
                    ex_est,
                    ex_sigma,
                    scale: norm64(r) * norm64(v),
                });
            }
        }
        pairs
    }

    /// Mean |truth - estimate| / (|r| |v|).
    fn mean_error(pairs: &[Pair], ex: bool) -> f64 {
        let e = |p: &Pair| if ex { p.ex_est } else { p.est } as f64;
        pairs.iter().map(|p| (p.truth - e(p)).abs() / p.scale).sum::<f64>() / pairs.len() as f64
    }

    /// Fraction of pairs whose error is within the bound at `eps0`.
    fn coverage(pairs: &[Pair], ex: bool, eps0: f32) -> f64 {
        let covered = pairs
            .iter()
            .filter(|p| {
                let (e, sigma) = if ex { (p.ex_est, p.ex_sigma) } else { (p.est, p.sigma) };
                (p.truth - e as f64).abs() <= (eps0 * sigma) as f64 + 1e-6 * p.scale
            })
            .count();
        covered as f64 / pairs.len() as f64
    }

    /// The errors in standard deviations at the given quantiles.
    fn z_quantiles(pairs: &[Pair], ex: bool, at: &[f64]) -> Vec<f64> {
        let mut z: Vec<f64> = pairs
            .iter()
            .filter(|p| if ex { p.ex_sigma } else { p.sigma } > 0.0)
            .map(|p| {
                let (e, sigma) = if ex { (p.ex_est, p.ex_sigma) } else { (p.est, p.sigma) };
                (p.truth - e as f64).abs() / sigma as f64
            })
            .collect();
        z.sort_by(f64::total_cmp);
        at.iter().map(|&q| z[((q * z.len() as f64) as usize).min(z.len() - 1)]).collect()
    }

    const DIMS: [usize; 4] = [16, 50, 128, 384];

    fn one_bit_accuracy(make: fn(usize, usize, usize, u64) -> Data, what: &str) {
        let mut normalised = Vec::new();
        for (k, dim) in DIMS.into_iter().enumerate() {
            let pairs = evaluate(&make(dim, 300, 40, 10 + k as u64), 1);
            let padded = Padding::Multiple64.padded(dim) as f64;
            let error = mean_error(&pairs, false);
            let (paper, cover, tight) = (
                coverage(&pairs, false, EPS0),
                coverage(&pairs, false, EPS0_99),
                coverage(&pairs, false, EPS0_99 / 10.0),
            );
            let mean_bound =
                pairs.iter().map(|p| (EPS0_99 * p.sigma) as f64 / p.scale).sum::<f64>() / pairs.len() as f64;
            let z = z_quantiles(&pairs, false, &[0.5, 0.95, 0.99, 0.999]);
            eprintln!(
                "{what} dim {dim}: mean rel error {error:.4}; coverage at eps0 {EPS0}: {paper:.4}, at {EPS0_99}: {cover:.4}, \
                 at {}: {tight:.3}; mean bound {mean_bound:.3} |r||v|; error in sigmas at 50/95/99/99.9%: {z:.2?}",
                EPS0_99 / 10.0
            );
            assert!(paper >= 0.93, "{what} dim {dim}: the paper's bound holds for only {paper}");
            assert!(cover >= 0.99, "{what} dim {dim}: bound holds for only {cover}");
            assert!(tight < 0.6, "{what} dim {dim}: a 10x smaller bound still holds for {tight}");
            assert!(mean_bound < 0.5, "{what} dim {dim}: mean bound {mean_bound} |r||v|");
            normalised.push(error * padded.sqrt());
        }
        // error ~ c/sqrt(D): the normalised errors agree to within a factor 1.5.
        let (lo, hi) = normalised.iter().fold((f64::MAX, 0f64), |(l, h), &e| (l.min(e), h.max(e)));
        assert!(hi < 1.5 * lo, "{what}: error*sqrt(D) {normalised:?}");
    }

    #[test]
    fn one_bit_estimates_gaussian() {
        one_bit_accuracy(gaussian_data, "gaussian");
    }

    #[test]
    fn one_bit_estimates_clustered() {
        one_bit_accuracy(clustered_data, "clustered");
    }

    #[test]
    fn extended_bits_refine() {
        for make in [gaussian_data as fn(usize, usize, usize, u64) -> Data, clustered_data] {
            for dim in DIMS {
                let data = make(dim, 150, 20, 3);
                let mut last = f64::INFINITY;
                for bits in [1, 2, 4, 8] {
                    let pairs = evaluate(&data, bits);
                    let error = mean_error(&pairs, true);
                    let cover = coverage(&pairs, true, EPS0_99);
                    let total: f64 = pairs.iter().map(|p| p.truth.abs()).sum();
                    let relative = pairs.iter().map(|p| (p.truth - p.ex_est as f64).abs()).sum::<f64>() / total;
                    let z = z_quantiles(&pairs, true, &[0.5, 0.95, 0.99]);
                    eprintln!(
                        "dim {dim} bits {bits}: mean rel error {error:.5} (of |<r,v>|: {relative:.5}), \
                         coverage at {EPS0_99}: {cover:.4}, sigmas at 50/95/99%: {z:.2?}"
                    );
                    assert!(error < last, "dim {dim}: {bits} bits no better than fewer ({error} >= {last})");
                    assert!(cover >= 0.99, "dim {dim} bits {bits}: bound holds for only {cover}");
                    if bits == 8 {
                        assert!(relative < 0.01, "dim {dim}: 8 bits off by {relative} of |<r,v>|");
                    }
                    last = error;
                }
            }
        }
    }

    #[test]
    fn ranking_finds_true_neighbour() {
        let (dim, n, nq) = (128, 2000, 20);
        let data = clustered_data(dim, n, nq, 5);
        let q = Quantizer::new(dim, 1, 3, Padding::Multiple64);
        let (d, sb) = (q.rotation().padded(), q.sign_bytes());
        let mut signs = vec![0u8; n * sb];
        let mut rot = vec![0f32; d];
        let factors: Vec<Factors> = (0..n)
            .map(|i| {
                q.rotation().apply(&data.r[i * dim..(i + 1) * dim], &mut rot);
                q.encode(&rot, &mut signs[i * sb..(i + 1) * sb], &mut [])
            })
            .collect();
        let (mut est, mut err) = (vec![0f32; n], vec![0f32; n]);
        let mut found = 0;
        for v in data.v.chunks_exact(dim) {
            q.rotation().apply(v, &mut rot);
            let lut = q.prepare(&rot, 0);
            q.estimate(&lut, &signs, &factors, &mut est, &mut err);
            let vv = dot64(v, v);
            let exact: Vec<f64> = data.r.chunks_exact(dim).map(|r| dot64(r, r) + vv - 2.0 * dot64(r, v)).collect();
            let nearest = (0..n).min_by(|&a, &b| exact[a].total_cmp(&exact[b])).unwrap();
            let approx: Vec<f32> =
                (0..n).map(|i| factors[i].norm * factors[i].norm + vv as f32 - 2.0 * est[i]).collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| approx[a].total_cmp(&approx[b]));
            found += order[..50].contains(&nearest) as usize;
        }
        assert!(found * 100 >= 95 * nq, "true neighbour in the top 50 for {found} of {nq} queries");
    }

    #[test]
    fn batch_matches_single_codes() {
        // D = 320 (not a power of two): several table groups; 300 codes: a ragged last block.
        let (dim, n) = (300, 300);
        let data = gaussian_data(dim, n, 1, 8);
        let q = Quantizer::new(dim, 1, 4, Padding::Multiple64);
        let sb = q.sign_bytes();
        let mut signs = vec![0u8; n * sb];
        let mut rot = vec![0f32; q.rotation().padded()];
        let factors: Vec<Factors> = (0..n)
            .map(|i| {
                q.rotation().apply(&data.r[i * dim..(i + 1) * dim], &mut rot);
                q.encode(&rot, &mut signs[i * sb..(i + 1) * sb], &mut [])
            })
            .collect();
        q.rotation().apply(&data.v, &mut rot);
        let lut = q.prepare_with_eps0(&rot, EPS0, usize::MAX);
        let naive_lut = q.prepare_with_eps0(&rot, 1.0, 0);
        // Whole-byte tables and nibble tables: the same sums.
        let nibble_lut = q.prepare_with_eps0(&rot, EPS0, 0);
        assert!(!lut.tables.is_empty() && nibble_lut.tables.is_empty());
        for n in [0, 1, 2, 5, 127, 128, 129, 300] {
            let (mut est, mut err) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            q.estimate(&lut, &signs[..n * sb], &factors[..n], &mut est, &mut err);
            let (mut est2, mut err2) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            q.estimate(&nibble_lut, &signs[..n * sb], &factors[..n], &mut est2, &mut err2);
            for i in 0..n {
                assert!((est[i] - est2[i]).abs() <= 1e-5 * factors[i].norm * lut.norm(), "n {n} code {i}");
                assert_eq!(err[i], err2[i]);
            }
            for i in 0..n {
                let (e, b) = q.estimate_ex(&lut, &signs[i * sb..(i + 1) * sb], &[], &factors[i]);
                assert_eq!((est[i], err[i]), (e, b), "n {n} code {i}");
                // Against the definition: <x̄, v'> with x̄_i = ±1/sqrt(D).
                let dot: f64 = rot
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| if (signs[i * sb + j / 8] >> (j % 8)) & 1 == 1 { v as f64 } else { -v as f64 })
                    .sum::<f64>()
                    / (rot.len() as f64).sqrt();
                let f = factors[i];
                let want = dot * f.norm as f64 / f.quality as f64;
                assert!((e as f64 - want).abs() <= 1e-5 * f.norm as f64 * lut.norm() as f64, "{e} vs {want}");
                let (_, sigma) = q.estimate_ex(&naive_lut, &signs[i * sb..(i + 1) * sb], &[], &f);
                assert!((b - EPS0 * sigma).abs() <= 1e-6 * b, "bound {b} is not EPS0 sigma {sigma}");
            }
        }
    }

    #[test]
    fn scan_constants_match_the_estimators() {
        // What the index's scan computes (sign dots, `Factors::scale`, `ex_scale`,
        // `weighted_dots`) against `estimate` and `estimate_ex`, the definitions,
        // with both kinds of tables and a zero residual among the codes.
        let (dim, n) = (100, 200);
        let data = gaussian_data(dim, n, 1, 9);
        for bits in [1, 2, 3, 5] {
            let q = Quantizer::new(dim, bits, 6, Padding::Multiple64);
            let (sb, eb) = (q.sign_bytes(), q.ex_bytes());
            let (mut signs, mut ex) = (vec![0u8; n * sb], vec![0u8; n * eb]);
            let mut rot = vec![0f32; q.rotation().padded()];
            let factors: Vec<Factors> = (0..n)
                .map(|i| {
                    let r = if i == 7 { vec![0.0; dim] } else { data.r[i * dim..(i + 1) * dim].to_vec() };
                    q.rotation().apply(&r, &mut rot);
                    q.encode(&rot, &mut signs[i * sb..(i + 1) * sb], &mut ex[i * eb..(i + 1) * eb])
                })
                .collect();
            q.rotation().apply(&data.v, &mut rot);
            for codes in [0, usize::MAX] {
                let lut = q.prepare(&rot, codes);
                let (mut est, mut err, mut dots) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
                q.estimate(&lut, &signs, &factors, &mut est, &mut err);
                q.sign_dots(&lut, &signs, &mut dots);
                let tol = |f: &Factors| 1e-5 * f.norm * lut.norm() + 1e-30;
                for i in 0..n {
                    let (f, sign) = (&factors[i], &signs[i * sb..(i + 1) * sb]);
                    let ex_scale = ex_scale(bits, sign, &ex[i * eb..(i + 1) * eb], f);
                    assert!((dots[i] * f.scale() - est[i]).abs() <= tol(f), "bits {bits} code {i}");
                    assert!((f.err() * lut.bound_scale() - err[i]).abs() <= 1e-6 * err[i], "bits {bits} code {i}");
                    assert!((q.bound_scale(lut.norm()) - lut.bound_scale()).abs() <= 1e-6 * lut.bound_scale());
                    let (want, want_bound) = q.estimate_ex(&lut, sign, &ex[i * eb..(i + 1) * eb], f);
                    let got = if bits == 1 {
                        dots[i] * ex_scale
                    } else {
                        q.weighted_dots(&lut, dots[i], &ex[i * eb..(i + 1) * eb]) * ex_scale
                    };
                    let bound = f.ex_err() * lut.bound_scale();
                    assert!((got - want).abs() <= tol(f), "bits {bits} code {i}: {got} vs {want}");
                    assert!((bound - want_bound).abs() <= 1e-6 * want_bound, "bits {bits} code {i}");
                    if i == 7 {
                        assert_eq!((got, bound, dots[i] * f.scale()), (0.0, 0.0, 0.0));
                    }
                }
            }
        }
    }

    #[test]
    fn dots_with_a_difference_are_differences_of_dots_within_the_rounding_bound() {
        // The scan's L2 path: the dot with q' - c' taken as the dot with q'
        // minus the dot with c', c' far longer than q' - c' (a list far
        // from the origin); `rounding` must cover the difference.
        let (dim, n) = (200, 300);
        for bits in [1, 2, 4] {
            let q = Quantizer::new(dim, bits, 2, Padding::Multiple64);
            let (d, sb, eb) = (q.rotation().padded(), q.sign_bytes(), q.ex_bytes());
            let mut rng = SplitMix::new(bits as u64);
            let (mut signs, mut ex) = (vec![0u8; n * sb], vec![0u8; n * eb]);
            for i in 0..n {
                let r = gaussians(&mut rng, d);
                q.encode(&r, &mut signs[i * sb..(i + 1) * sb], &mut ex[i * eb..(i + 1) * eb]);
            }
            for far in [1.0f32, 1e3, 1e5] {
                let c: Vec<f32> = gaussians(&mut rng, d).iter().map(|x| x * far).collect();
                let v = gaussians(&mut rng, d);
                let qv: Vec<f32> = c.iter().zip(&v).map(|(c, v)| c + v).collect();
                let l1 = |x: &[f32]| x.iter().map(|x| x.abs()).sum::<f32>();
                let rounding = q.rounding(l1(&qv) + l1(&c));
                for codes in [0, usize::MAX] {
                    let luts = [&qv, &c, &v].map(|x| q.prepare_with_eps0(x, EPS0_99, codes));
                    let dots = luts.each_ref().map(|lut| {
                        let mut out = vec![0f32; n];
                        q.sign_dots(lut, &signs, &mut out);
                        out
                    });
                    for i in 0..n {
                        let err = ((dots[0][i] - dots[1][i]) - dots[2][i]).abs();
                        assert!(err <= rounding, "bits {bits} far {far}: {err} > {rounding}");
                        if bits > 1 {
                            let x = &ex[i * eb..(i + 1) * eb];
                            let w = [0, 1, 2].map(|k| q.weighted_dots(&luts[k], dots[k][i], x));
                            let err = ((w[0] - w[1]) - w[2]).abs();
                            assert!(err <= rounding * ((1 << bits) - 1) as f32, "bits {bits} far {far}: {err}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fastscan_kernels_agree_and_bound_the_float_dots() {
        // Each SIMD kernel the CPU has and the scalar one: the same integer sums (also
        // past the u16 flush at 128 byte positions); the packed float dots:
        // bit for bit those of the row-major ones; the quantized dots: within
        // the margin of the float dots, with both kinds of tables.
        let mut rng = SplitMix::new(11);
        for (dim, bits, n) in [(64, 1, 40), (128, 2, 64), (300, 3, 33), (1100, 2, 70), (2048, 1, 32)] {
            let q = Quantizer::new(dim, bits, 5, Padding::Multiple64);
            let (sb, eb) = (q.sign_bytes(), q.ex_bytes());
            let signs: Vec<u8> = (0..n * sb).map(|_| rng.next_u64() as u8).collect();
            let ex: Vec<u8> = (0..n * eb).map(|_| rng.next_u64() as u8).collect();
            let ex_planes: Vec<Vec<u8>> = (0..eb / sb)
                .map(|b| ex.chunks_exact(eb).flat_map(|row| &row[b * sb..(b + 1) * sb]).copied().collect())
                .collect();
            let planes: Vec<&[u8]> = [&signs[..]].into_iter().chain(ex_planes.iter().map(|p| &p[..])).collect();
            let packed = pack(&planes, sb, n);
            let np = bits as usize;
            let v: Vec<f32> = gaussians(&mut rng, q.rotation().padded()).iter().map(|x| x * 3.0 + 0.5).collect();
            for codes in [0, usize::MAX] {
                let lut = q.prepare(&v, codes);
                assert!(lut.quantized());
                let (offset, delta, margin) = lut.quant_terms();
                let mut dots = vec![0f32; n];
                q.sign_dots(&lut, &signs, &mut dots);
                for (b, block) in packed.chunks_exact(np * sb * BLOCK).enumerate() {
                    let fast = kernel_sums(lut.quant(), block, np, &format!("dim {dim} block {b}"));
                    for t in 0..BLOCK.min(n - b * BLOCK) {
                        let r = b * BLOCK + t;
                        let d = lut.packed_dot(&block[..sb * BLOCK], t);
                        assert_eq!(d.to_bits(), dots[r].to_bits(), "dim {dim} row {r}");
                        let w = lut.packed_weighted(d, bits, &block[sb * BLOCK..], t);
                        let want = q.weighted_dots(&lut, dots[r], &ex[r * eb..(r + 1) * eb]);
                        assert_eq!(w.to_bits(), want.to_bits(), "dim {dim} row {r}");
                        for p in 0..np {
                            let plane = &block[p * sb * BLOCK..(p + 1) * sb * BLOCK];
                            let exact = lut.packed_dot(plane, t);
                            let quantized = offset + delta * fast[p * BLOCK + t] as f32;
                            assert!(
                                (exact - quantized).abs() <= margin,
                                "dim {dim} row {r}: {exact} vs {quantized} ± {margin}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The exhaustive sweep over every crossing: what the grid search approximates.
    fn exact_best_cosine(a: &[f32], top: u32) -> f64 {
        let mut events: Vec<(f64, usize)> = Vec::new();
        for (i, &x) in a.iter().enumerate() {
            if x > 0.0 {
                events.extend((1..=top).map(|k| (k as f64 / x as f64, i)));
            }
        }
        events.sort_by(|p, q| p.0.total_cmp(&q.0));
        let mut m = vec![0u32; a.len()];
        let cosine = |m: &[u32]| {
            let ip: f64 = m.iter().zip(a).map(|(&m, &x)| (m as f64 + 0.5) * x as f64).sum();
            ip / m.iter().map(|&m| (m as f64 + 0.5).powi(2)).sum::<f64>().sqrt()
        };
        let mut best = cosine(&m);
        for (_, i) in events {
            m[i] += 1;
            best = best.max(cosine(&m));
        }
        best
    }

    /// `block_sums` of a block, checked against the scalar kernel for the
    /// dispatched kernel and every SIMD kernel the CPU has.
    fn kernel_sums(quant: &[[u8; 16]], block: &[u8], planes: usize, what: &str) -> [u32; 8 * BLOCK] {
        let (mut scalar, mut fast) = ([0u32; 8 * BLOCK], [0u32; 8 * BLOCK]);
        block_sums_scalar(quant, block, planes, &mut scalar);
        block_sums(quant, block, planes, &mut fast);
        assert_eq!(scalar[..], fast[..], "{what}");
        #[cfg(target_arch = "x86_64")]
        {
            let mut simd = [0u32; 8 * BLOCK];
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2; the shapes are `block_sums`'s.
                unsafe { block_sums_avx2(quant, block, planes, &mut simd) };
                assert_eq!(scalar[..], simd[..], "avx2: {what}");
            }
            if std::arch::is_x86_feature_detected!("avx512bw") {
                // SAFETY: the CPU has AVX-512 BW; the shapes are `block_sums`'s.
                unsafe { block_sums_avx512(quant, block, planes, &mut simd) };
                assert_eq!(scalar[..], simd[..], "avx512: {what}");
            }
        }
        scalar
    }

    /// The SIMD kernels on byte counts the quantizer never makes (odd, one
    /// either side of the u16 flush) with tables of the largest entries
    /// (255, where a u16 lane's sum is closest to wrapping): the scalar
    /// kernel's sums, every row and plane.
    #[test]
    fn fastscan_kernels_agree_on_any_byte_count() {
        let mut rng = SplitMix::new(29);
        for sb in [1usize, 2, 3, 8, 127, 128, 129, 130, 255, 257] {
            for (planes, full) in [(1, false), (2, true), (3, false)] {
                let quant: Vec<[u8; 16]> = (0..2 * sb)
                    .map(|_| std::array::from_fn(|_| if full { 255 } else { rng.next_u64() as u8 }))
                    .collect();
                let block: Vec<u8> = (0..planes * sb * BLOCK).map(|_| rng.next_u64() as u8).collect();
                kernel_sums(&quant, &block, planes, &format!("sb {sb} planes {planes}"));
            }
        }
    }

    #[test]
    fn grid_search_finds_the_best_rescaling() {
        let mut rng = SplitMix::new(2);
        for (d, top) in [(64, 1), (128, 1), (64, 3), (64, 7), (128, 15), (64, 127)] {
            for _ in 0..5 {
                let mut a: Vec<f32> = gaussians(&mut rng, d).iter().map(|x| x.abs()).collect();
                let n = norm64(&a) as f32;
                a.iter_mut().for_each(|x| *x /= n);
                let m = best_magnitudes(&a, top);
                assert!(m.iter().all(|&m| m <= top));
                let ip: f64 = m.iter().zip(&a).map(|(&m, &x)| (m as f64 + 0.5) * x as f64).sum();
                let got = ip / m.iter().map(|&m| (m as f64 + 0.5).powi(2)).sum::<f64>().sqrt();
                let want = exact_best_cosine(&a, top);
                assert!(got >= want - 1e-4, "d {d} top {top}: cosine {got} < optimum {want}");
                // One extended bit is swept exactly (`best_top_set`).
                assert!(top > 1 || got >= want - 1e-12, "d {d}: cosine {got} < optimum {want}");
            }
        }
    }

    /// `best_top_set` against a sweep of every k in sorted order, on
    /// shapes that stress it: ties, zeros, one large coordinate, values
    /// bunched together, and lengths that are not multiples of 8. (A
    /// bucketed search that skipped ranges by a bound, tried in 0.13.1,
    /// failed it; it was also slower than the sort.)
    #[test]
    fn the_top_set_is_the_best_of_every_k() {
        let mut rng = SplitMix::new(7);
        let cos = |a: &[f32], m: &[u32]| {
            let ip: f64 = m.iter().zip(a).map(|(&m, &x)| (m as f64 + 0.5) * x as f64).sum();
            ip / m.iter().map(|&m| (m as f64 + 0.5).powi(2)).sum::<f64>().sqrt()
        };
        for case in 0..3000 {
            let d = 1 + case % 200;
            let mut a: Vec<f32> = gaussians(&mut rng, d).iter().map(|x| x.abs()).collect();
            match case % 5 {
                1 => a.iter_mut().for_each(|x| *x = (*x * 4.0).round() / 4.0), // ties
                2 => a.iter_mut().step_by(3).for_each(|x| *x = 0.0),           // zeros
                3 => a[0] = 50.0,                                              // one dominates
                4 => a.iter_mut().for_each(|x| *x = 1.0 + *x * 1e-3),          // bunched
                _ => {}
            }
            let mut sorted = a.clone();
            sorted.sort_unstable_by(|x, y| y.total_cmp(x));
            let (mut ip, mut sq) = (0.5 * a.iter().map(|&x| x as f64).sum::<f64>(), 0.25 * d as f64);
            let mut want = ip / sq.sqrt();
            for &x in &sorted {
                (ip, sq) = (ip + x as f64, sq + 2.0);
                want = want.max(ip / sq.sqrt());
            }
            let m = best_top_set(&a);
            assert!(m.iter().all(|&m| m <= 1), "case {case}");
            let got = cos(&a, &m);
            assert!((got - want).abs() <= 1e-12 * want.max(1e-30), "case {case} (d {d}): {got} != {want}");
        }
        assert!(best_top_set(&[0.0; 9]).iter().all(|&m| m == 0));
    }

    #[test]
    fn factors_round_trip() {
        let f = Factors { norm: 3.5, quality: 0.8, ex_quality: 0.99 };
        let mut b = [0u8; Factors::BYTES];
        f.write(&mut b);
        assert_eq!(Factors::read(&b), f);
        assert_eq!(&b[0..4], &3.5f32.to_le_bytes());
    }

    #[test]
    fn bit_packing_round_trips() {
        for n in 1..=7u32 {
            let values: Vec<u32> = (0..64u32).map(|i| (i * 37 + 11) % (1 << n)).collect();
            let mut buf = vec![0u8; 64 * n as usize / 8];
            for (i, &v) in values.iter().enumerate() {
                put_bits(&mut buf, i * n as usize, n, v);
            }
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(get_bits(&buf, i * n as usize, n), v, "{n} bits, value {i}");
            }
        }
    }

    /// Encodes `vectors` against one query, with the 99% bound; every output must be finite.
    fn estimates(dim: usize, bits: u32, vectors: &[Vec<f32>], query: &[f32]) -> Vec<(Factors, f32, f32, f32, f32)> {
        let q = Quantizer::new(dim, bits, 1, Padding::Multiple64);
        let (d, sb, xb) = (q.rotation().padded(), q.sign_bytes(), q.ex_bytes());
        let mut rot = vec![0f32; d];
        q.rotation().apply(query, &mut rot);
        let lut = q.prepare_with_eps0(&rot, EPS0_99, 0);
        vectors
            .iter()
            .map(|x| {
                let (mut sign, mut ex) = (vec![0u8; sb], vec![0u8; xb]);
                q.rotation().apply(x, &mut rot);
                let f = q.encode(&rot, &mut sign, &mut ex);
                let (mut est, mut err) = ([0f32], [0f32]);
                q.estimate(&lut, &sign, &[f], &mut est, &mut err);
                let (ex_est, ex_err) = q.estimate_ex(&lut, &sign, &ex, &f);
                for x in [f.norm, f.quality, f.ex_quality, est[0], err[0], ex_est, ex_err] {
                    assert!(x.is_finite(), "{f:?} {est:?} {err:?} {ex_est} {ex_err}");
                }
                (f, est[0], err[0], ex_est, ex_err)
            })
            .collect()
    }

    #[test]
    fn edge_cases() {
        for bits in [1, 3, 8] {
            // A zero residual: estimate and bound exactly 0.
            for (f, est, err, ex_est, ex_err) in estimates(10, bits, &[vec![0.0; 10]], &[1.0; 10]) {
                assert_eq!((f.norm, f.quality, f.ex_quality), (0.0, 1.0, 1.0));
                assert_eq!((est, err, ex_est, ex_err), (0.0, 0.0, 0.0, 0.0));
            }
            // Dimensions 1 and 2: still within the bound.
            for (dim, x, v) in [(1, vec![3.0], vec![-2.0]), (2, vec![1.0, -2.0], vec![0.5, 4.0])] {
                let truth = dot64(&x, &v) as f32;
                let (f, est, err, ex_est, ex_err) = estimates(dim, bits, std::slice::from_ref(&x), &v)[0];
                assert!((f.norm - norm64(&x) as f32).abs() < 1e-5);
                assert!((truth - est).abs() <= err + 1e-4, "dim {dim} bits {bits}: {est} ± {err} vs {truth}");
                assert!((truth - ex_est).abs() <= ex_err + 1e-4, "dim {dim} bits {bits}: {ex_est} ± {ex_err}");
            }
            // All-equal vectors: equal codes, equal estimates.
            let same = estimates(20, bits, &vec![vec![0.25; 20]; 5], &[1.0; 20]);
            assert!(same.iter().all(|s| s.0 == same[0].0 && s.1 == same[0].1 && s.3 == same[0].3));
            assert!((same[0].3 - 5.0).abs() <= same[0].4 + 1e-4);
            // Extreme magnitudes: scale-equivariant estimates, no overflow or underflow to 0.
            let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.9).sin()).collect();
            let v: Vec<f32> = (0..40).map(|i| (i as f32 * 0.4).cos()).collect();
            let truth = dot64(&x, &v) as f32;
            let base = estimates(40, bits, std::slice::from_ref(&x), &v)[0];
            for s in [1e20f32, 1e-20, 1e-30] {
                let scaled: Vec<f32> = x.iter().map(|a| a * s).collect();
                let (f, est, err, ex_est, ex_err) = estimates(40, bits, &[scaled], &v)[0];
                assert!((f.norm / s - base.0.norm).abs() <= 1e-4 * base.0.norm, "scale {s}: {f:?}");
                assert!((f.quality - base.0.quality).abs() < 1e-4 && f.norm > 0.0);
                assert!((est / s - base.1).abs() <= 1e-3 * base.1.abs().max(1.0), "scale {s}: {est}");
                assert!((err / s - base.2).abs() <= 1e-3 * base.2, "scale {s}: {err}");
                // Rounding differs at each scale, and the B-bit code may
                // settle on another near-optimal grid point: compare to the truth.
                assert!((ex_est / s - truth).abs() <= ex_err / s, "bits {bits} scale {s}: {ex_est} ± {ex_err}");
                assert!((ex_err / s - base.4).abs() <= 0.1 * base.4, "bits {bits} scale {s}: {ex_err}");
                // The query side too: tiny v against large r.
                let small_v: Vec<f32> = v.iter().map(|a| a * 1e-20).collect();
                let large_x: Vec<f32> = x.iter().map(|a| a * 1e20).collect();
                let (_, est, _, ex_est, ex_err) = estimates(40, bits, &[large_x], &small_v)[0];
                assert!((est - base.1).abs() <= 1e-3 * base.1.abs().max(1.0));
                assert!((ex_est - truth).abs() <= ex_err, "bits {bits}: {ex_est} ± {ex_err}");
            }
        }
    }

    /// Throwaway timing (best of several runs: the build machine is shared):
    /// cargo test --release --lib rabitq::tests::timing -- --ignored --nocapture
    #[test]
    #[ignore]
    fn timing() {
        fn best_ns(reps: usize, mut f: impl FnMut()) -> f64 {
            (0..7)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        f();
                    }
                    t.elapsed().as_nanos() as f64 / reps as f64
                })
                .fold(f64::MAX, f64::min)
        }
        for dim in [128, 512] {
            let q = Quantizer::new(dim, 1, 1, Padding::Multiple64);
            let n = 4096;
            let mut rng = SplitMix::new(3);
            let signs: Vec<u8> = (0..n * q.sign_bytes()).map(|_| rng.next_u64() as u8).collect();
            let factors = vec![Factors { norm: 1.0, quality: 0.8, ex_quality: 0.8 }; n];
            let v = gaussians(&mut rng, dim);
            let mut rot = vec![0f32; dim];
            let (mut est, mut err) = (vec![0f32; n], vec![0f32; n]);
            let rotate = best_ns(200, || q.rotation().apply(&v, &mut rot));
            let prepare = best_ns(200, || {
                std::hint::black_box(q.prepare(&rot, n));
            });
            let lut = q.prepare(&rot, n);
            let per_code =
                best_ns(100, || q.estimate(&lut, std::hint::black_box(&signs), &factors, &mut est, &mut err))
                    / n as f64;
            let nibble_lut = q.prepare(&rot, 0);
            let per_code_nibbles =
                best_ns(100, || q.estimate(&nibble_lut, std::hint::black_box(&signs), &factors, &mut est, &mut err))
                    / n as f64;
            let r = gaussians(&mut rng, dim);
            let encode: Vec<String> = [1, 2, 4, 8]
                .into_iter()
                .map(|bits| {
                    let q = Quantizer::new(dim, bits, 1, Padding::Multiple64);
                    let (mut sign, mut ex) = (vec![0u8; q.sign_bytes()], vec![0u8; q.ex_bytes()]);
                    let ns = best_ns(50, || {
                        std::hint::black_box(q.encode(&r, &mut sign, &mut ex));
                    });
                    format!("{bits} bits {:.1} us", ns / 1e3)
                })
                .collect();
            eprintln!(
                "D={dim}: estimate {per_code:.2} ns/code ({per_code_nibbles:.2} with nibble tables), rotate {rotate:.0} ns, prepare {prepare:.0} ns, encode {}",
                encode.join(", ")
            );
        }
    }
}
