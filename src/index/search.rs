//! The scan: distances from a batch of queries to every vector of a set of
//! chunks, kept in per-query top-k heaps, in parallel over chunks on the
//! client's pool. Filters are applied per item before scoring (pre-filter).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use rayon::prelude::*;

use super::chunk::{Chunk, RowMetadata};
use super::fields::Candidates;
use super::manifest::ChunkMeta;
use crate::distance::{self, Metric};
use crate::error::Result;
use crate::filter::Filter;

/// Below this many queries, score pair by pair; from it on, one SGEMM per
/// chunk computes every inner product at once (as FAISS switches to BLAS).
const GEMM_MIN_QUERIES: usize = 8;
/// Scans of at most this many (chunk, query) pairs stay on the calling thread.
const INLINE_SCAN_CELLS: usize = 32;

#[derive(Clone, Copy)]
pub(super) struct Candidate {
    pub score: f32,
    /// chunk number << 32 | slot
    pub at: u64,
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then(self.at.cmp(&o.at))
    }
}

/// The k best (smallest) scores seen, as a max-heap.
pub(super) struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(4096) + 1) }
    }

    pub fn into_vec(self) -> Vec<Candidate> {
        self.heap.into_vec()
    }

    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |c| c.score)
        }
    }

    #[inline]
    pub fn push(&mut self, c: Candidate) -> bool {
        if self.heap.len() < self.k {
            self.heap.push(c);
            true
        } else if let Some(mut worst) = self.heap.peek_mut().filter(|worst| c < **worst) {
            // One sift down instead of a pop's and a push's.
            *worst = c;
            true
        } else {
            false
        }
    }
}

/// The prepared queries of one call.
pub struct Queries<'a> {
    pub data: &'a [f32],
    pub n: usize,
    pub dim: usize,
    pub metric: Metric,
    pub k: usize,
    pub filter: Option<&'a Filter>,
    /// A superset of the rows `filter` matches, from the index of
    /// filterable fields (`fields.rs`); None = every row is a candidate.
    pub rows: Option<&'a Candidates>,
    sq_norms: Vec<f32>,
    inv_norms: Vec<f32>,
}

impl<'a> Queries<'a> {
    pub fn new(data: &'a [f32], n: usize, dim: usize, metric: Metric, k: usize, filter: Option<&'a Filter>) -> Self {
        let rows = || data.chunks_exact(dim).take(n);
        Queries {
            sq_norms: rows().map(|q| distance::dot(q, q)).collect(),
            inv_norms: rows().map(distance::inv_norm).collect(),
            data,
            n,
            dim,
            metric,
            k,
            filter,
            rows: None,
        }
    }

    /// The same queries, the filter's rows narrowed to `rows`.
    pub fn with_rows(self, rows: Option<&'a Candidates>) -> Self {
        Queries { rows, ..self }
    }

    /// Which of chunk `no`'s `n` rows pass the filter (None: no filter),
    /// `metadata(slot)` giving a row's parsed metadata. With candidate rows
    /// the filter is evaluated on those only (not at all when they are
    /// exactly its matches).
    pub fn mask<'m>(
        &self,
        no: u32,
        n: usize,
        metadata: impl Fn(usize) -> Option<&'m serde_json::Value>,
    ) -> Option<Vec<bool>> {
        let f = self.filter?;
        Some(match self.rows {
            None => (0..n).map(|s| f.matches(metadata(s))).collect(),
            Some(rows) => {
                let mut mask = vec![false; n];
                for s in rows.of(no) {
                    mask[s] = rows.exact() || f.matches(metadata(s));
                }
                mask
            }
        })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// 1/|q_i| (0 for a zero query).
    pub fn inv_norm(&self, i: usize) -> f32 {
        self.inv_norms[i]
    }
}

/// Per-worker scan state: a heap per query and the chunks its heaps point into.
struct ScanState {
    heaps: Vec<TopK>,
    /// Chunks (by number) that candidates point into.
    held: HashMap<u32, Arc<Chunk>>,
    products: Vec<f32>,
}

impl ScanState {
    fn new(q: &Queries<'_>) -> ScanState {
        ScanState { heaps: (0..q.n).map(|_| TopK::new(q.k)).collect(), held: HashMap::new(), products: Vec::new() }
    }

    /// Scores `chunk` against the queries `qids` (global query numbers);
    /// `subset` holds those queries' rows gathered contiguously when
    /// `qids` is not all of them.
    fn scan_chunk(&mut self, q: &Queries<'_>, qids: &[u32], subset: &[f32], no: u32, chunk: &Arc<Chunk>) {
        let n = chunk.len();
        let mask = q.mask(no, n, |s| chunk.parsed_metadata(s));
        if mask.as_ref().is_some_and(|m| !m.contains(&true)) {
            return;
        }
        let allowed = |s: usize| mask.as_ref().is_none_or(|m| m[s]);
        let base = (no as u64) << 32;
        let mut any = false;
        if qids.len() < GEMM_MIN_QUERIES {
            for &qi in qids {
                let qi = qi as usize;
                let heap = &mut self.heaps[qi];
                let qv = q.row(qi);
                let inv_q = q.inv_norms[qi];
                let mut threshold = heap.threshold();
                for s in 0..n {
                    if !allowed(s) {
                        continue;
                    }
                    let score = distance::score(q.metric, qv, chunk.vector(s), inv_q, chunk.inv_norms[s]);
                    if enters(score, threshold) && heap.push(Candidate { score, at: base | s as u64 }) {
                        any = true;
                        threshold = heap.threshold();
                    }
                }
            }
        } else {
            // One SGEMM gives every (query, row) score in the expanded form,
            // which only rules rows out: a row within the form's rounding
            // error of the threshold is scored directly, as a single query
            // scores it. So the heaps hold direct scores and the answer is
            // the single queries' one, whatever the data's distance from the
            // origin (there the expanded form's rounding outgrows the gaps
            // between neighbours and every row is scored directly).
            let m = qids.len();
            self.products.resize(m * n, 0.0);
            distance::inner_products(subset, m, chunk.vectors(), n, q.dim, &mut self.products);
            let (relative, underflow) = distance::expanded_error(q.dim);
            for (local, &qi) in qids.iter().enumerate() {
                let qi = qi as usize;
                let heap = &mut self.heaps[qi];
                let ips = &self.products[local * n..(local + 1) * n];
                let (qv, q_sq, inv_q) = (q.row(qi), q.sq_norms[qi], q.inv_norms[qi]);
                let mut threshold = heap.threshold();
                for (s, &ip) in ips.iter().enumerate() {
                    if !allowed(s) {
                        continue;
                    }
                    let (expanded, error) = match q.metric {
                        Metric::Euclidean | Metric::SquaredEuclidean => {
                            (q_sq + chunk.sq_norms[s] - 2.0 * ip, relative * (q_sq + chunk.sq_norms[s]) + underflow)
                        }
                        Metric::InnerProduct => (-ip, relative * (q_sq + chunk.sq_norms[s]) + underflow),
                        Metric::Cosine => {
                            let inv = inv_q * chunk.inv_norms[s];
                            (1.0 - ip * inv, relative + underflow * inv)
                        }
                    };
                    if expanded - error > threshold {
                        continue;
                    }
                    let score = distance::score(q.metric, qv, chunk.vector(s), inv_q, chunk.inv_norms[s]);
                    if enters(score, threshold) && heap.push(Candidate { score, at: base | s as u64 }) {
                        any = true;
                        threshold = heap.threshold();
                    }
                }
            }
        }
        if any {
            self.held.insert(no, chunk.clone());
        }
    }

    fn merge(mut self, other: ScanState) -> ScanState {
        for (mine, theirs) in self.heaps.iter_mut().zip(other.heaps) {
            for c in theirs.heap {
                mine.push(c);
            }
        }
        self.held.extend(other.held);
        self
    }
}

/// Whether a row scoring `score` may enter a heap whose k-th is
/// `threshold`: below it, or tied with it (the heap breaks ties by
/// position, so a batch and a single query keep the same rows), but never
/// at an infinite or NaN score.
#[inline]
fn enters(score: f32, threshold: f32) -> bool {
    score < threshold || (score == threshold && score.is_finite())
}

/// One result row before it is turned into what the caller asked for.
pub struct Hit {
    pub distance: f32,
    pub row: Row,
}

/// Where a stored row is: its vector and id at `slot` of `chunk`, and its
/// metadata there too, or, in a compressed index (whose units hold only
/// vectors and ids), at `head.1` of the head `head.0`. Referring to the
/// rows where they are costs a result no copies (copying each hit into a
/// one-row chunk took a fifth of a query's time at 10k vectors). A result
/// keeps what it refers to alive until it is materialised, whether the
/// cache still holds it or not: at most `top_k` chunks or units (and
/// heads) a query of the call.
pub struct Row {
    chunk: Arc<Chunk>,
    slot: usize,
    head: Option<(Arc<dyn RowMetadata>, usize)>,
}

impl Row {
    /// Row `slot` of `chunk`, metadata included.
    pub fn of(chunk: Arc<Chunk>, slot: usize) -> Row {
        Row { chunk, slot, head: None }
    }

    /// Row `slot` of a compressed index's `unit`, whose metadata is at
    /// `head_slot` of `head`.
    pub fn in_unit(unit: Arc<Chunk>, slot: usize, head: Arc<dyn RowMetadata>, head_slot: usize) -> Row {
        Row { chunk: unit, slot, head: Some((head, head_slot)) }
    }

    pub fn id(&self) -> &String {
        &self.chunk.ids[self.slot]
    }

    pub fn vector(&self) -> &[f32] {
        self.chunk.vector(self.slot)
    }

    pub fn inv_norm(&self) -> f32 {
        self.chunk.inv_norms[self.slot]
    }

    pub fn metadata(&self) -> Option<&String> {
        match &self.head {
            None => self.chunk.metadata_at(self.slot),
            Some((head, slot)) => head.metadata_at(*slot),
        }
    }
}

/// A unit of scanning: some chunks (a list's, or one chunk) against some
/// queries (`None` = every query).
pub struct Work<'a> {
    pub chunks: Vec<&'a ChunkMeta>,
    pub queries: Option<Vec<u32>>,
}

/// Scans every work item (chunks loaded through `load`) in parallel;
/// returns each query's hits sorted by ascending distance.
pub fn scan(
    pool: &rayon::ThreadPool,
    work: &[Work<'_>],
    load: &(dyn Fn(&ChunkMeta) -> Result<Arc<Chunk>> + Sync),
    q: &Queries<'_>,
) -> Result<Vec<Vec<Hit>>> {
    if q.n == 0 {
        return Ok(Vec::new());
    }
    let all: Vec<u32> = (0..q.n as u32).collect();
    let scan_item = |mut st: ScanState, item: &Work<'_>| -> Result<ScanState> {
        let (qids, subset): (&[u32], Vec<f32>) = match &item.queries {
            None => (&all, Vec::new()),
            Some(ids) => {
                let mut rows = Vec::new();
                if ids.len() >= GEMM_MIN_QUERIES {
                    rows.reserve(ids.len() * q.dim);
                    ids.iter().for_each(|&i| rows.extend_from_slice(q.row(i as usize)));
                }
                (ids, rows)
            }
        };
        let subset = if item.queries.is_none() { q.data } else { &subset };
        for meta in &item.chunks {
            let chunk = load(meta)?;
            st.scan_chunk(q, qids, subset, meta.no, &chunk);
        }
        Ok(st)
    };
    // Small scans, and every scan of a one-thread pool, run on the calling
    // thread: waking a worker costs more than it brings there.
    let cells: usize = work.iter().map(|w| w.chunks.len() * w.queries.as_ref().map_or(q.n, Vec::len)).sum();
    let state = if cells <= INLINE_SCAN_CELLS || pool.current_num_threads() == 1 {
        work.iter().try_fold(ScanState::new(q), scan_item)?
    } else {
        pool.install(|| {
            work.par_iter()
                .with_min_len(1)
                .try_fold(|| ScanState::new(q), scan_item)
                .try_reduce(|| ScanState::new(q), |a, b| Ok(a.merge(b)))
        })?
    };
    let ScanState { heaps, held, .. } = state;
    let place = |c: &Candidate| (&held[&((c.at >> 32) as u32)], (c.at & 0xffff_ffff) as usize);
    Ok(heaps
        .into_iter()
        .map(|h| {
            // Every score in the heaps was computed directly (see
            // `scan_chunk`): a stored vector is at distance 0 from itself
            // and a query answers the same batched or alone.
            let mut top = h.heap.into_vec();
            top.sort_unstable();
            top.iter()
                .map(|c| {
                    let (chunk, slot) = place(c);
                    Hit { distance: q.metric.finish(c.score), row: Row::of(chunk.clone(), slot) }
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(score: f32, at: u64) -> Candidate {
        Candidate { score, at }
    }

    fn sorted(top: TopK) -> Vec<(f32, u64)> {
        let mut v = top.heap.into_vec();
        v.sort_unstable();
        v.into_iter().map(|c| (c.score, c.at)).collect()
    }

    #[test]
    fn top_k_keeps_the_k_smallest_in_order() {
        let mut top = TopK::new(3);
        assert_eq!(top.threshold(), f32::INFINITY);
        for (i, s) in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5].into_iter().enumerate() {
            top.push(candidate(s, i as u64));
        }
        assert_eq!(top.threshold(), 2.0);
        assert_eq!(sorted(top), vec![(0.5, 5), (1.0, 1), (2.0, 3)]);
    }

    #[test]
    fn top_k_refuses_what_is_not_better_and_breaks_ties_by_position() {
        let mut top = TopK::new(2);
        assert!(top.push(candidate(1.0, 7)));
        assert!(top.push(candidate(1.0, 3)));
        // Same score, later position: not better than the worst kept.
        assert!(!top.push(candidate(1.0, 9)));
        // Same score, earlier position: replaces the worst kept (1.0 at 7).
        assert!(top.push(candidate(1.0, 1)));
        assert!(!top.push(candidate(f32::INFINITY, 0)));
        assert_eq!(sorted(top), vec![(1.0, 1), (1.0, 3)]);
    }

    #[test]
    fn top_k_with_fewer_candidates_than_k_keeps_them_all() {
        let mut top = TopK::new(10);
        top.push(candidate(-2.0, 1));
        top.push(candidate(3.0, 2));
        assert_eq!(top.threshold(), f32::INFINITY);
        assert_eq!(sorted(top), vec![(-2.0, 1), (3.0, 2)]);
    }

    #[test]
    fn merged_states_equal_one_scan() {
        let q = Queries::new(&[0.0, 0.0], 1, 2, Metric::SquaredEuclidean, 2, None);
        let (mut a, mut b, mut all) = (ScanState::new(&q), ScanState::new(&q), ScanState::new(&q));
        for (i, s) in [4.0, 1.0, 3.0, 2.0].into_iter().enumerate() {
            let c = candidate(s, i as u64);
            if i % 2 == 0 { &mut a } else { &mut b }.heaps[0].push(c);
            all.heaps[0].push(c);
        }
        let merged = a.merge(b);
        let as_vec = |st: ScanState| sorted(st.heaps.into_iter().next().unwrap());
        assert_eq!(as_vec(merged), as_vec(all));
    }
}
