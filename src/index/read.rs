//! Reads: the getters, get, list_ids and query (exhaustive before training,
//! the IVF probe loop after). Every read starts with `begin_read` (READ
//! permission, newest snapshot) and runs under `read_consistent`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::codes::rows_per_unit;
use std::collections::HashMap;

use super::codes::Coder;
use super::fields::{chunk_of, slot_of, Candidates, Pos};
use super::ivf::FILTER_MODULI;
use super::listing::{Match, Order};
use super::manifest::{ChunkMeta, Manifest};
use super::objects::{Obj, PREFETCH_CHUNKS};
use super::search::{self, Candidate, TopK};
use super::snapshot::Snapshot;
use super::types::{check_include, validate_id, validate_query};
use super::{include, Access, Hit, Index, IndexConfig, Item, QueryParams, TrainingState};
use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::filter::Filter;

impl Index {
    /// The committed state, for the getters (which need READ).
    fn readable_state(&self) -> Result<Arc<Snapshot>> {
        self.begin_read(Access::default())
    }

    pub fn config(&self) -> Result<IndexConfig> {
        Ok(self.readable_state()?.manifest.config.clone())
    }

    pub fn dimension(&self) -> Result<u32> {
        Ok(self.config()?.dimension)
    }

    pub fn metric(&self) -> Result<Metric> {
        Ok(self.config()?.metric)
    }

    pub fn n_lists(&self) -> Result<u32> {
        Ok(self.readable_state()?.manifest.n_lists)
    }

    /// The probe count a query with `n_probes = 0` uses: calibrated at
    /// training on the index's own points (0 while untrained).
    pub fn auto_n_probes(&self) -> Result<u32> {
        Ok(self.readable_state()?.manifest.auto_n_probes)
    }

    /// The probe counts calibrated at training for filters matching 10%,
    /// 1% and 0.1% of the items, which the automatic probe count of a
    /// filtered query follows (0 while untrained, or if trained before 0.8).
    pub fn filtered_auto_n_probes(&self) -> Result<[u32; 3]> {
        Ok(self.readable_state()?.manifest.filtered_n_probes)
    }

    /// `Training` while a training run of this handle is under way (queries
    /// then still use the committed state), else the committed state.
    pub fn training_state(&self) -> Result<TrainingState> {
        let committed = self.readable_state()?.manifest.training;
        Ok(if self.training.load(Ordering::Acquire) { TrainingState::Training } else { committed })
    }

    pub fn num_vectors(&self, access: Access<'_>) -> Result<u64> {
        Ok(self.begin_read(access)?.manifest.num_vectors)
    }

    /// Looks up each id; `None` where an id is not in the index.
    pub fn get(&self, ids: &[&str], include: u32, access: Access<'_>) -> Result<Vec<Option<Item>>> {
        check_include(include)?;
        for id in ids {
            validate_id(id)?;
        }
        let snap = self.begin_read(access)?;
        self.read_consistent(snap, |snap| self.get_in(&snap.manifest, ids, include))
    }

    fn get_in(&self, m: &Manifest, ids: &[&str], include: u32) -> Result<Vec<Option<Item>>> {
        ids.iter()
            .map(|id| {
                let token = self.tokens.id(id);
                let Some(entry) = self.lookup(m, &token)? else { return Ok(None) };
                let meta = m
                    .chunk(entry.chunk)
                    .ok_or_else(|| Error::integrity("directory names a chunk the manifest does not list"))?;
                let chunk = self.chunk(m, meta, None)?;
                let slot = chunk.slot_of(id).ok_or_else(|| Error::integrity("an item is missing from its chunk"))?;
                Ok(Some(Item {
                    id: (*id).to_owned(),
                    vector: (include & include::VECTOR != 0).then(|| chunk.vector(slot).to_vec()),
                    metadata: if include & include::METADATA != 0 { chunk.metadata[slot].clone() } else { None },
                    contents: if include & include::CONTENTS != 0 && !entry.contents.is_none() {
                        Some(self.contents(m, &token, &entry.contents)?)
                    } else {
                        None
                    },
                }))
            })
            .collect()
    }

    /// Every id, in byte order, from `offset`, at most `limit` (0 = all).
    pub fn list_ids(&self, offset: usize, limit: usize, access: Access<'_>) -> Result<Vec<String>> {
        let snap = self.begin_read(access)?;
        let mut ids = self.read_consistent(snap, |snap| {
            let m = &snap.manifest;
            let mut ids = Vec::with_capacity(m.num_vectors as usize);
            for meta in m.chunks() {
                ids.extend(self.chunk(m, meta, None)?.ids.iter().cloned());
            }
            Ok(ids)
        })?;
        ids.sort_unstable();
        let end = if limit == 0 { ids.len() } else { offset.saturating_add(limit).min(ids.len()) };
        Ok(ids.drain(offset.min(ids.len())..end).collect())
    }

    /// `nq` queries of `dim` floats each, row-major; each gets up to `top_k`
    /// hits sorted by ascending distance.
    pub fn query(
        &self,
        queries: &[f32],
        nq: usize,
        dim: usize,
        params: &QueryParams<'_>,
        access: Access<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        validate_query(queries, nq, dim, params)?;
        let filter = params.filter.map(Filter::parse).transpose()?;
        let snap = self.begin_read(access)?;
        self.read_consistent(snap, |snap| self.query_in(snap, queries, nq, dim, params, filter.as_ref()))
    }

    fn query_in(
        &self,
        snap: &Snapshot,
        queries: &[f32],
        nq: usize,
        dim: usize,
        params: &QueryParams<'_>,
        filter: Option<&Filter>,
    ) -> Result<Vec<Vec<Hit>>> {
        let m = &snap.manifest;
        if params.text.is_some() && m.config.text_fields.is_empty() {
            return Err(super::terms::no_text_fields());
        }
        if nq == 0 {
            return Ok(Vec::new());
        }
        if dim == 0 || (m.config.dimension != 0 && dim != m.config.dimension as usize) {
            return Err(Error::DimensionMismatch(format!("query dim {dim} != index dim {}", m.config.dimension)));
        }
        if m.config.dimension == 0 {
            return Ok((0..nq).map(|_| Vec::new()).collect()); // empty index, dimension not fixed yet
        }
        // Hybrid: the text ranking (BM25 over the filter's matches) is fused
        // with each query's vector ranking, vector_depth deep.
        let text = match params.text {
            Some(text) => Some(self.text_scores(m, text)?),
            None => None,
        };
        let top_k = params.top_k;
        let hybrid;
        let params = match &text {
            Some(_) => {
                hybrid = QueryParams { top_k: params.fusion.depths(params.top_k).0, ..params.clone() };
                &hybrid
            }
            None => params,
        };
        // A filter on filterable fields names its candidate rows: scored
        // exactly when that is cheaper than the scan, else they narrow it.
        let rows = filter.map(|f| self.field_candidates(m, f)).transpose()?.flatten();
        let q = search::Queries::new(queries, nq, dim, m.config.metric, params.top_k, filter).with_rows(rows.as_ref());
        let hits = match &rows {
            Some(rows) if m.training != TrainingState::Trained || self.rows_beat_probing(m, rows, params) => {
                self.score_rows(m, &q, rows)?
            }
            _ if m.training == TrainingState::Trained => self.probe(snap, &q, params)?,
            _ => {
                let work: Vec<search::Work<'_>> =
                    m.chunks().map(|c| search::Work { chunks: vec![c], queries: None }).collect();
                self.scan(m, &work, &q)?
            }
        };
        let Some(scored) = text else {
            return hits
                .into_iter()
                .map(|row| row.into_iter().map(|h| self.materialize(m, h, params.include)).collect())
                .collect();
        };
        let coder = self.coder(m)?.map(|(_, coder)| coder);
        let (_, text_depth) = params.fusion.depths(top_k);
        let ranked = self.select(m, coder.as_deref(), filter, Some(&scored), &Order::Score, 0, text_depth)?;
        let fuse = |(qi, vector)| self.fuse(m, coder.as_deref(), (&q, qi), vector, &ranked, params, top_k);
        hits.into_iter().enumerate().map(fuse).collect()
    }

    /// Fuses query `qi`'s vector ranking with the text ranking by weighted
    /// reciprocal rank (see [`super::Fusion`]); each hit gets its fused
    /// score and its exact distance (computed here for text-only hits); the
    /// best `top_k` by fused score, ties by id.
    #[allow(clippy::too_many_arguments)]
    fn fuse(
        &self,
        m: &Manifest,
        coder: Option<&Coder>,
        (q, qi): (&search::Queries<'_>, usize),
        vector: Vec<search::Hit>,
        text: &[Match],
        params: &QueryParams<'_>,
        top_k: usize,
    ) -> Result<Vec<Hit>> {
        let (k, alpha) = (params.fusion.rrf_k(), params.fusion.alpha as f64);
        let share = |weight: f64, rank: usize| weight / (k + rank as f64 + 1.0);
        // Per id: its fused score, its vector hit if the vector ranking has it, else where it is.
        struct Fused {
            score: f64,
            hit: Option<search::Hit>,
            at: Pos,
        }
        let mut fused: HashMap<String, Fused> = HashMap::new();
        for (rank, h) in vector.into_iter().enumerate() {
            let id = h.row.id().clone();
            fused.insert(id, Fused { score: share(alpha, rank), hit: Some(h), at: 0 });
        }
        for (rank, t) in text.iter().enumerate() {
            let e = fused.entry(t.id.clone()).or_insert(Fused { score: 0.0, hit: None, at: t.at });
            e.score += share(1.0 - alpha, rank);
        }
        let mut fused: Vec<(String, Fused)> = fused.into_iter().collect();
        fused.sort_unstable_by(|a, b| b.1.score.total_cmp(&a.1.score).then_with(|| a.0.cmp(&b.0)));
        fused.truncate(top_k);
        fused
            .into_iter()
            .map(|(_, Fused { score, hit, at })| {
                let hit = match hit {
                    Some(hit) => hit,
                    None => {
                        let row = self.row(m, coder, chunk_of(at), slot_of(at))?;
                        let raw = distance::score(q.metric, q.row(qi), row.vector(), q.inv_norm(qi), row.inv_norm());
                        search::Hit { distance: q.metric.finish(raw), row }
                    }
                };
                let mut out = self.materialize(m, hit, params.include)?;
                out.score = score as f32;
                Ok(out)
            })
            .collect()
    }

    /// IVF search: each query scans the lists of its `n_probes` nearest
    /// centroids; work is grouped by list so a list's chunks are read once
    /// for all the queries that probe it. With `greedy`, a query that found
    /// fewer than top_k hits (a selective filter) probes further lists until
    /// it has them or every list is scanned. A filter the index of fields
    /// narrowed probes further too while the lists probed hold too few of
    /// its matches (see `watched` below).
    fn probe(
        &self,
        snap: &Snapshot,
        q: &search::Queries<'_>,
        params: &QueryParams<'_>,
    ) -> Result<Vec<Vec<search::Hit>>> {
        let m = &snap.manifest;
        let centroids = self.centroids(m)?;
        let coder = self.coder(m)?;
        let n_lists = m.n_lists as usize;
        let n_probes = probes_for(m, q.rows, params) as usize;
        // A filter the index narrowed, at the automatic probe count: that
        // count assumes its matches lie independently of the vectors. A
        // query that has seen fewer than half the matching rows such a
        // filter would have shown in the lists probed (its matches lie away
        // from it) probes further, up to 4 rounds.
        let watched = q.rows.filter(|_| params.n_probes == 0);
        let expected = watched.map(|rows| rows.len() as f64 * n_probes as f64 / n_lists as f64 / 2.0);
        let want = match (params.greedy, watched) {
            (true, _) => n_lists,
            (false, Some(_)) => (4 * n_probes).min(n_lists),
            (false, None) => n_probes,
        };
        let rank = |i: usize| centroids.nearest(m.config.metric, &q.data[i * q.dim..(i + 1) * q.dim], want);
        let order: Vec<Vec<u32>> = if q.n == 1 {
            vec![rank(0)] // not worth waking the pool
        } else {
            self.env.pool.install(|| {
                use rayon::prelude::*;
                (0..q.n).into_par_iter().map(rank).collect()
            })
        };
        let mut hits: Vec<Vec<search::Hit>> = (0..q.n).map(|_| Vec::new()).collect();
        let mut seen = vec![0usize; q.n];
        let mut pending: Vec<u32> = (0..q.n as u32).collect();
        let mut probed = 0usize;
        while !pending.is_empty() && probed < want {
            let upto = (probed + n_probes).min(want);
            // (list, query) pairs grouped by list: each probed list once,
            // with the queries that probe it (in the order of `pending`).
            let mut pairs: Vec<(u32, u32)> = pending
                .iter()
                .flat_map(|&qi| {
                    let lists = &order[qi as usize];
                    lists[probed.min(lists.len())..upto.min(lists.len())].iter().map(move |&list| (list, qi))
                })
                .collect();
            pairs.sort_by_key(|p| p.0);
            let queries_of: Vec<(u32, Vec<u32>)> = pairs
                .chunk_by(|a, b| a.0 == b.0)
                .map(|group| (group[0].0, group.iter().map(|p| p.1).collect()))
                .collect();
            if let Some(rows) = watched {
                for (list, qs) in &queries_of {
                    let matches: usize = m.list(*list).iter().map(|&no| rows.of(no).count()).sum();
                    qs.iter().for_each(|&qi| seen[qi as usize] += matches);
                }
            }
            let work: Vec<search::Work<'_>> = queries_of
                .into_iter()
                .filter(|(list, _)| !m.list(*list).is_empty())
                .map(|(list, qs)| {
                    let chunks = m.list(list).iter().map(|&no| m.chunk(no).expect("listed")).collect();
                    search::Work { chunks, queries: Some(qs) }
                })
                .collect();
            let mut round = match &coder {
                Some((centroids, coder)) => self.search_codes(m, (centroids, coder), &work, q, params.rerank_mult)?,
                None => self.scan(m, &work, q)?,
            };
            for &qi in &pending {
                let mine = &mut hits[qi as usize];
                mine.append(&mut round[qi as usize]);
                mine.sort_by(|a, b| a.distance.total_cmp(&b.distance));
                mine.truncate(params.top_k);
            }
            probed = upto;
            pending.retain(|&qi| {
                let short = params.greedy && hits[qi as usize].len() < params.top_k;
                short || expected.is_some_and(|e| (seen[qi as usize] as f64) < e)
            });
        }
        Ok(hits)
    }

    /// Whether scoring `rows` exactly costs less than probing for them.
    /// Costs in units of one exact distance: a chunk visited costs about
    /// [`CHUNK_VISIT_COST`] (cache lookup, mask), a row probed but filtered
    /// out [`MASKED_ROW_COST`].
    fn rows_beat_probing(&self, m: &Manifest, rows: &Candidates, params: &QueryParams<'_>) -> bool {
        let n = m.num_vectors.max(1) as f64;
        let chunks = (0..m.n_lists).map(|l| m.list(l).len()).sum::<usize>().max(1) as f64;
        let probed = probes_for(m, Some(rows), params) as f64 / m.n_lists.max(1) as f64;
        let selectivity = rows.len() as f64 / n;
        let probe_cost = probed * (chunks * CHUNK_VISIT_COST + n * MASKED_ROW_COST + n * selectivity);
        // Counting a long list's chunks costs a pass over it: estimated as
        // if its rows were spread at random instead.
        let r = rows.len() as f64;
        let visits =
            if rows.len() <= 1 << 14 { rows.chunk_count() as f64 } else { chunks * (1.0 - (-r / chunks).exp()) };
        let exact_cost = visits * CHUNK_VISIT_COST + r;
        exact_cost <= probe_cost
    }

    /// Exact search over candidate rows: each query's top k among the rows
    /// of `rows` that pass the filter, on their full vectors (for
    /// IVF_RABITQ, read from their units).
    fn score_rows(&self, m: &Manifest, q: &search::Queries<'_>, rows: &Candidates) -> Result<Vec<Vec<search::Hit>>> {
        let filter = q.filter.expect("candidate rows come from a filter");
        let coder = self.coder(m)?.map(|(_, coder)| coder);
        let per = rows_per_unit(m.config.dimension as usize, m.config.precision);
        let mut tops: Vec<TopK> = (0..q.n).map(|_| TopK::new(q.k)).collect();
        let mut score = |no: u32, s: usize, v: &[f32], inv_norm: f32| {
            for (qi, top) in tops.iter_mut().enumerate() {
                let score = distance::score(q.metric, q.row(qi), v, q.inv_norm(qi), inv_norm);
                top.push(Candidate { score, at: (no as u64) << 32 | s as u64 });
            }
        };
        let chunks: Vec<(&ChunkMeta, Vec<usize>)> = rows
            .chunks()
            .map(|(no, slots)| {
                let meta = m.chunk(no).ok_or_else(|| Error::integrity("a candidate names a missing chunk"))?;
                Ok((meta, slots.collect()))
            })
            .collect::<Result<_>>()?;
        // Where each read is a round trip (PostgreSQL), a group of chunks at a time.
        for group in chunks.chunks(PREFETCH_CHUNKS) {
            let pre = self.prefetch(group.iter().map(|(c, _)| (Obj::Chunk(c.no), &c.stamp)))?;
            for (meta, slots) in group {
                let slots = slots.iter().copied();
                match coder.as_deref() {
                    None => {
                        let chunk = self.chunk(m, meta, Some(&pre))?;
                        for s in slots.filter(|&s| rows.exact() || filter.matches(chunk.parsed_metadata(s))) {
                            score(meta.no, s, chunk.vector(s), chunk.inv_norms[s]);
                        }
                    }
                    Some(coder) => {
                        let head = self.head(m, coder, meta, Some(&pre))?;
                        for s in slots.filter(|&s| rows.exact() || filter.matches(head.parsed_metadata(s))) {
                            let unit = self.unit_of(m, (meta, &head.places), s)?;
                            score(meta.no, s, unit.vector(s % per), unit.inv_norms[s % per]);
                        }
                    }
                }
            }
        }
        tops.into_iter()
            .map(|top| {
                let mut top = top.into_vec();
                top.sort_unstable();
                top.into_iter()
                    .map(|c| {
                        let (no, slot) = ((c.at >> 32) as u32, (c.at & 0xffff_ffff) as usize);
                        let row = self.row(m, coder.as_deref(), no, slot)?;
                        Ok(search::Hit { distance: q.metric.finish(c.score), row })
                    })
                    .collect()
            })
            .collect()
    }

    /// Scans `work`, its chunks read ahead in one store call where that pays.
    fn scan(&self, m: &Manifest, work: &[search::Work<'_>], q: &search::Queries<'_>) -> Result<Vec<Vec<search::Hit>>> {
        let metas = work.iter().flat_map(|w| w.chunks.iter().map(|c| (Obj::Chunk(c.no), &c.stamp)));
        let pre = self.prefetch(metas)?;
        search::scan(&self.env.pool, work, &|meta: &ChunkMeta| self.chunk(m, meta, Some(&pre)), q)
    }

    pub(super) fn materialize(&self, m: &Manifest, h: search::Hit, include: u32) -> Result<Hit> {
        let id = h.row.id().clone();
        let contents = if include & include::CONTENTS != 0 {
            let token = self.tokens.id(&id);
            match self.lookup(m, &token)? {
                Some(e) if !e.contents.is_none() => Some(self.contents(m, &token, &e.contents)?),
                _ => None,
            }
        } else {
            None
        };
        Ok(Hit {
            distance: h.distance,
            score: f32::NAN,
            metadata: if include & include::METADATA != 0 { h.row.metadata().cloned() } else { None },
            vector: (include & include::VECTOR != 0).then(|| h.row.vector().to_vec()),
            contents,
            id,
        })
    }
}

/// See [`Index::rows_beat_probing`].
const CHUNK_VISIT_COST: f64 = 30.0;
const MASKED_ROW_COST: f64 = 0.05;

/// The lists a query probes: `params.n_probes`, or the calibrated count.
/// With a filter whose candidate rows are a share s of the index, its k
/// nearest matches lie among ~k/s nearest items, which span more lists: the
/// count then follows the counts calibrated at training for filters of
/// 10%, 1% and 0.1% (`ivf.rs`), piecewise linear in log(s) from (100%,
/// automatic), and below 0.1% grows by 1/sqrt(s); an index trained before
/// 0.8 has none and grows the automatic count by 1/sqrt(s).
fn probes_for(m: &Manifest, rows: Option<&Candidates>, params: &QueryParams<'_>) -> u32 {
    match (params.n_probes, rows) {
        (0, None) => m.auto_n_probes,
        (0, Some(rows)) => filtered_probes(m, rows.len() as f64 / m.num_vectors.max(1) as f64),
        (p, _) => p.min(m.n_lists),
    }
}

/// The automatic probe count of a filter matching `share` of the items.
fn filtered_probes(m: &Manifest, share: f64) -> u32 {
    let share = share.clamp(1e-9, 1.0);
    let auto = m.auto_n_probes as f64;
    let probes = if m.filtered_n_probes.contains(&0) {
        auto / share.sqrt()
    } else {
        // (decades below 100%, probes): (0, auto), (1, 10%'s), (2, 1%'s), (3, 0.1%'s).
        let points: Vec<(f64, f64)> = std::iter::once((0.0, auto))
            .chain(FILTER_MODULI.iter().zip(m.filtered_n_probes).map(|(&m, p)| ((m as f64).log10(), p as f64)))
            .collect();
        let decades = -share.log10();
        match points.windows(2).find(|w| decades <= w[1].0) {
            Some(w) => w[0].1 + (w[1].1 - w[0].1) * (decades - w[0].0) / (w[1].0 - w[0].0),
            None => {
                let (d, p) = points[points.len() - 1];
                p * 10f64.powf((decades - d) / 2.0)
            }
        }
    };
    (probes.ceil() as u32).clamp(m.auto_n_probes, m.n_lists)
}
