//! The fixtures that the integration tests (through `common`) and vx-bench
//! (which includes this file by path) both use: keys, ids, seeded vectors,
//! items and batched upserts, and the TEXMEX files of ../shared/data. Only
//! what needs nothing beyond vx and std belongs here, so that the bench
//! builds it without the tests' other dependencies.

// Each crate that includes this file uses a different part of it.
#![allow(dead_code)]

use std::path::Path;

use vx::{Access, Hit, Index, ItemRef, SecretKey};

/// The key whose 32 bytes are all `b`: tests that need several keys tell
/// them apart by `b`.
pub fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes(&[b; 32])
}

/// Calls made with `key` as the root key (no user id).
pub fn as_root(key: &SecretKey) -> Access<'_> {
    Access { key: Some(key), user: None }
}

/// `{prefix}0`, `{prefix}1`, ... `{prefix}{n - 1}`.
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// xorshift64: reproducible without a dependency. The seed is spread by a
/// multiply so that small consecutive seeds give unrelated streams, and
/// forced odd because the all-zero state never leaves zero.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [-1, 1). The top 24 bits make every value exact in f32.
    pub fn signed(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `n` vectors of `dim` values uniform in [-1, 1), end to end. Centred on
/// the origin so that cosine and inner product order them differently from
/// Euclidean distance.
pub fn uniform(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * dim).map(|_| rng.signed()).collect()
}

/// `n` vectors of `dim` values around 32 centres (vector `i` belongs to
/// centre `i % 32`), end to end: uniform data has no clusters, so IVF lists
/// trained on it would mean nothing.
pub fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let centres: Vec<f32> = (0..32 * dim).map(|_| rng.signed() * 4.0).collect();
    (0..n)
        .flat_map(|i| (0..dim).map(|j| centres[(i % 32) * dim + j] + rng.signed() * 0.5).collect::<Vec<_>>())
        .collect()
}

/// Items `ids[i]` with row `i` of `vectors` (`dim` wide; rows past the ids
/// are not used), `metadata[i]` when there is metadata, and no contents.
/// Lazy, so that a large upsert holds one batch of items at a time.
pub fn items<'a>(
    ids: &'a [String],
    vectors: &'a [f32],
    dim: usize,
    metadata: Option<&'a [String]>,
) -> impl Iterator<Item = ItemRef<'a>> + 'a {
    ids.iter().enumerate().map(move |(i, id)| ItemRef {
        id,
        vector: &vectors[i * dim..(i + 1) * dim],
        metadata: metadata.map(|m| m[i].as_str()),
        contents: None,
    })
}

/// Upserts `items` in calls of at most `batch` items; stops at the first
/// error.
pub fn upsert_in_batches<'a>(
    index: &Index,
    items: impl IntoIterator<Item = ItemRef<'a>>,
    batch: usize,
    access: Access<'_>,
) -> vx::Result<()> {
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<ItemRef<'a>> = items.by_ref().take(batch).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        index.upsert(&chunk, access)?;
    }
}

/// The `file:` store URI of a directory.
pub fn file_uri(dir: &Path) -> String {
    format!("file:{}", dir.display())
}

/// A PostgreSQL store URL: the server's `url` with the store's `table`.
pub fn with_table(url: &str, table: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}table={table}")
}

/// The rows of a TEXMEX `.fvecs` file (each a little-endian i32 dimension,
/// then that many f32), end to end, and their dimension.
pub fn read_fvecs(path: &Path) -> (Vec<f32>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let dim = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let row = 4 + dim * 4;
    assert_eq!(bytes.len() % row, 0, "{} is not a .fvecs/.ivecs file", path.display());
    let mut out = Vec::with_capacity(bytes.len() / row * dim);
    for r in bytes.chunks_exact(row) {
        out.extend(r[4..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())));
    }
    (out, dim)
}

/// The rows of an `.ivecs` file: the `.fvecs` layout with i32 values (here
/// ids, never negative).
pub fn read_ivecs(path: &Path) -> (Vec<u32>, usize) {
    let (f, dim) = read_fvecs(path);
    (f.into_iter().map(f32::to_bits).collect(), dim)
}

/// A benchmark dataset: base vectors, queries and the ids of each query's
/// exact nearest base vectors, nearest first.
pub struct Dataset {
    pub name: String,
    pub base: Vec<f32>,
    pub queries: Vec<f32>,
    pub gt: Vec<u32>,
    pub gt_k: usize,
    pub dim: usize,
}

impl Dataset {
    /// `dir`'s base.fvecs, query.fvecs and gt.ivecs.
    pub fn load(dir: &Path, name: &str) -> Dataset {
        let (base, dim) = read_fvecs(&dir.join("base.fvecs"));
        let (queries, qdim) = read_fvecs(&dir.join("query.fvecs"));
        assert_eq!(dim, qdim, "{}: base and queries differ in dimension", dir.display());
        let (gt, gt_k) = read_ivecs(&dir.join("gt.ivecs"));
        Dataset { name: name.to_owned(), base, queries, gt, gt_k, dim }
    }

    pub fn n(&self) -> usize {
        self.base.len() / self.dim
    }

    pub fn nq(&self) -> usize {
        self.queries.len() / self.dim
    }

    /// Recall@10 of `hits` for the first `hits.len()` queries, base row `i`
    /// having been stored under the id `i`.
    pub fn recall_at_10(&self, hits: &[Vec<Hit>]) -> f64 {
        let mut total = 0usize;
        for (qi, row) in hits.iter().enumerate() {
            let gt = &self.gt[qi * self.gt_k..qi * self.gt_k + 10];
            total += row.iter().take(10).filter(|h| gt.contains(&h.id.parse::<u32>().unwrap())).count();
        }
        total as f64 / (hits.len() * 10) as f64
    }
}
