//! Metadata-only queries (`query_metadata`): the items a filter matches,
//! ordered by one metadata field and then by id (or by id alone), one page
//! at a time; with query text, only the items holding one of its terms,
//! by BM25 score unless ordered by a field (keyword search). They work
//! trained or not, on every index type, and need READ. Hybrid queries take
//! their text ranking from here too (`select`).
//!
//! The pass reads each chunk's metadata (IVF_RABITQ: its head, not its
//! vectors), or only the candidate rows the index of filterable fields
//! names for the filter (`fields.rs`), and keeps each match's sort key. Only the matches that can
//! reach the page (those not past the page's last key) are then resolved
//! to ids, which break ties so that pages are stable, and only the page's
//! own rows are materialised.

use std::sync::Arc;

use super::chunk::Chunk;
use super::codes::{rows_per_unit, CodeChunk, Coder, UnitPlaces};
use super::fields::{Candidates, Pos};
use super::manifest::{ChunkMeta, Manifest};
use super::objects::{Obj, PREFETCH_CHUNKS};
use super::search::{self, Row};
use super::types::check_include;
use super::{include, Access, Hit, Index};
use crate::error::{Error, Result};
use crate::filter::{Filter, OrderBy, SortKey};

/// What `query_metadata` is asked. The default: every item by id, with
/// its metadata.
#[derive(Clone, Debug)]
pub struct MetadataQuery<'a> {
    /// MongoDB-style filter JSON; None = every item.
    pub filter: Option<&'a str>,
    /// Items returned at most; 0 = all (from `offset`).
    pub top_k: usize,
    /// Dot-path of the metadata field to order by (ties by id, ascending);
    /// None = by id.
    pub order_by: Option<&'a str>,
    pub ascending: bool,
    /// Matches skipped before the first returned.
    pub offset: usize,
    /// `include` bits; DISTANCE is refused (there is none).
    pub include: u32,
    /// Keyword search: only items holding a term of this text (in the
    /// index's text fields), by BM25 score, highest first, unless
    /// `order_by` is given (`ascending` then applies to it only).
    pub text: Option<&'a str>,
}

impl Default for MetadataQuery<'_> {
    fn default() -> Self {
        MetadataQuery {
            filter: None,
            top_k: 0,
            order_by: None,
            ascending: true,
            offset: 0,
            include: include::METADATA,
            text: None,
        }
    }
}

/// A match: its key in the order, its BM25 score (0 without text) and
/// where it is (chunk << 32 | slot).
pub(super) struct Match {
    key: SortKey,
    pub(super) score: f64,
    pub(super) at: Pos,
    pub(super) id: String,
}

/// What a selection is ordered by; ties by id, ascending.
pub(super) enum Order<'a> {
    Field(&'a OrderBy),
    /// BM25 score, highest first.
    Score,
    Id {
        ascending: bool,
    },
}

impl Match {
    pub(super) fn chunk(&self) -> u32 {
        (self.at >> 32) as u32
    }
    pub(super) fn slot(&self) -> usize {
        (self.at & 0xffff_ffff) as usize
    }
}

/// A chunk's rows as the listing reads them.
enum Rows {
    Flat(Arc<Chunk>),
    /// The head; the rows' ids and vectors are in its units.
    Coded(Arc<CodeChunk>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Flat(c) => c.len(),
            Rows::Coded(h) => h.len(),
        }
    }

    fn metadata(&self, slot: usize) -> Option<&serde_json::Value> {
        match self {
            Rows::Flat(c) => c.parsed_metadata(slot),
            Rows::Coded(h) => h.parsed_metadata(slot),
        }
    }
}

impl Index {
    /// The items matching `q.filter`, ordered by `q.order_by` then by id
    /// (without `order_by`: by id, in `q.ascending`'s direction), from
    /// `q.offset`, at most `q.top_k` (0 = all). Hits carry NaN distances.
    pub fn query_metadata(&self, q: &MetadataQuery<'_>, access: Access<'_>) -> Result<Vec<Hit>> {
        check_include(q.include)?;
        if q.include & include::DISTANCE != 0 {
            return Err(Error::invalid("a metadata query has no distances: leave VX_INCLUDE_DISTANCE out of include"));
        }
        let filter = q.filter.map(Filter::parse).transpose()?;
        let order = q.order_by.map(|f| OrderBy::parse(f, q.ascending)).transpose()?;
        let snap = self.begin_read(access)?;
        self.read_consistent(snap, |snap| self.query_metadata_in(&snap.manifest, q, filter.as_ref(), order.as_ref()))
    }

    fn query_metadata_in(
        &self,
        m: &Manifest,
        q: &MetadataQuery<'_>,
        filter: Option<&Filter>,
        order: Option<&OrderBy>,
    ) -> Result<Vec<Hit>> {
        let coder = self.coder(m)?.map(|(_, coder)| coder);
        let coder = coder.as_deref();
        let scored = q.text.map(|text| self.text_scores(m, text)).transpose()?;
        let order = match (order, &scored) {
            (Some(o), _) => Order::Field(o),
            (None, Some(_)) => Order::Score,
            (None, None) => Order::Id { ascending: q.ascending },
        };
        let page = self.select(m, coder, filter, scored.as_deref(), &order, q.offset, q.top_k)?;
        page.into_iter()
            .map(|c| {
                let row = self.row(m, coder, c.chunk(), c.slot())?;
                let mut hit = self.materialize(m, search::Hit { distance: f32::NAN, row }, q.include)?;
                hit.id = c.id;
                hit.score = if scored.is_some() { c.score as f32 } else { f32::NAN };
                Ok(hit)
            })
            .collect()
    }

    /// The rows matching `filter` (and, with `scored`, holding a query term:
    /// the rows `scored` lists, with their scores, by position), ordered by
    /// `order`, from `offset`, at most `top_k` (0 = all), their ids filled.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn select(
        &self,
        m: &Manifest,
        coder: Option<&Coder>,
        filter: Option<&Filter>,
        scored: Option<&[(Pos, f64)]>,
        order: &Order<'_>,
        offset: usize,
        top_k: usize,
    ) -> Result<Vec<Match>> {
        // The candidate rows: those with a score, narrowed (or named) by
        // the index of filterable fields; None: every row.
        let fields = filter.map(|f| self.field_candidates(m, f)).transpose()?.flatten();
        let candidates = match (scored, fields) {
            (Some(scored), fields) => {
                let holding = Candidates(Arc::new(scored.iter().map(|s| s.0).collect()), true);
                Some(match fields {
                    Some(fields) => holding.intersect(&fields),
                    None => Candidates(holding.0, filter.is_none()),
                })
            }
            (None, fields) => fields,
        };
        let score_of = |at: Pos| scored.map_or(0.0, |s| s[s.partition_point(|x| x.0 < at)].1);
        let metas: Vec<(&ChunkMeta, Option<Vec<usize>>)> = match &candidates {
            Some(rows) => rows
                .chunks()
                .map(|(no, slots)| {
                    let meta = m.chunk(no).ok_or_else(|| Error::integrity("a candidate names a missing chunk"))?;
                    Ok((meta, Some(slots.collect())))
                })
                .collect::<Result<_>>()?,
            None => m.chunks().map(|c| (c, None)).collect(),
        };
        let exact = filter.is_none() || candidates.as_ref().is_some_and(Candidates::exact);
        let field = match order {
            Order::Field(o) => Some(*o),
            _ => None,
        };
        let mut matches = Vec::new();
        for group in metas.chunks(PREFETCH_CHUNKS) {
            let pre = self.prefetch(group.iter().map(|(c, _)| (Obj::Chunk(c.no), &c.stamp)))?;
            for (meta, slots) in group {
                // Exact candidates need no row read unless ordered by a field.
                let rows = if exact && field.is_none() && slots.is_some() {
                    None
                } else {
                    Some(self.rows(m, coder, meta, Some(&pre))?)
                };
                let mut consider = |slot: usize| {
                    let md = rows.as_ref().and_then(|r| r.metadata(slot));
                    if exact || filter.is_none_or(|f| f.matches(md)) {
                        let at = (meta.no as u64) << 32 | slot as u64;
                        let key = field.map_or(SortKey::Null, |o| o.key(md));
                        matches.push(Match { key, score: score_of(at), at, id: String::new() });
                    }
                };
                match slots {
                    Some(slots) => slots.iter().for_each(|&s| consider(s)),
                    None => (0..rows.as_ref().map_or(0, Rows::len)).for_each(consider),
                }
            }
        }
        let by_key = |a: &Match, b: &Match| match order {
            Order::Field(o) => o.cmp(&a.key, &b.key),
            Order::Score => b.score.total_cmp(&a.score),
            Order::Id { .. } => std::cmp::Ordering::Equal,
        };
        // Past the page's last key nothing can reach the page, whatever its id.
        let end = if top_k == 0 { matches.len() } else { offset.saturating_add(top_k) };
        if end < matches.len() && !matches!(order, Order::Id { .. }) {
            let (_, last, _) = matches.select_nth_unstable_by(end - 1, by_key);
            let (last_key, last_score) = (last.key.clone(), last.score);
            let last = Match { key: last_key, score: last_score, at: 0, id: String::new() };
            matches.retain(|c| by_key(c, &last).is_le());
        }
        self.resolve_ids(m, coder, &mut matches)?;
        match order {
            Order::Id { ascending: false } => matches.sort_unstable_by(|a, b| b.id.cmp(&a.id)),
            _ => matches.sort_unstable_by(|a, b| by_key(a, b).then_with(|| a.id.cmp(&b.id))),
        }
        matches.truncate(end);
        Ok(matches.into_iter().skip(offset).collect())
    }

    fn rows(
        &self,
        m: &Manifest,
        coder: Option<&Coder>,
        meta: &ChunkMeta,
        pre: Option<&super::objects::Prefetched>,
    ) -> Result<Rows> {
        Ok(match coder {
            Some(coder) => Rows::Coded(self.head(m, coder, meta, pre)?),
            None => Rows::Flat(self.chunk(m, meta, pre)?),
        })
    }

    /// Fills each match's id, reading each chunk (or unit) once.
    fn resolve_ids(&self, m: &Manifest, coder: Option<&Coder>, matches: &mut [Match]) -> Result<()> {
        matches.sort_unstable_by_key(|c| c.at);
        let (dim, precision) = (m.config.dimension as usize, m.config.precision);
        for group in matches.chunk_by_mut(|a, b| a.chunk() == b.chunk()) {
            let meta = m.chunk(group[0].chunk()).ok_or_else(|| Error::integrity("a match names a missing chunk"))?;
            match coder {
                None => {
                    let chunk = self.chunk(m, meta, None)?;
                    for c in group.iter_mut() {
                        c.id = chunk.ids[c.slot()].clone();
                    }
                }
                Some(coder) => {
                    let per = rows_per_unit(dim, precision);
                    let head = self.head(m, coder, meta, None)?;
                    for unit_group in group.chunk_by_mut(|a, b| a.slot() / per == b.slot() / per) {
                        let unit = self.unit_of(m, (meta, &head.places), unit_group[0].slot())?;
                        for c in unit_group.iter_mut() {
                            c.id = unit.ids[c.slot() % per].clone();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The unit of a coded chunk (its units at `places`) that holds row `slot`.
    pub(super) fn unit_of(
        &self,
        m: &Manifest,
        (meta, places): (&ChunkMeta, &UnitPlaces),
        slot: usize,
    ) -> Result<Arc<Chunk>> {
        let per = rows_per_unit(m.config.dimension as usize, m.config.precision);
        let u = slot / per;
        self.unit(m, (meta, places), (u as u32, per.min(meta.count as usize - u * per)), true, None)
    }

    /// Row `slot` of chunk `no`: in the chunk itself, or for a coded chunk
    /// (`coder` given) its vector and id in its unit, its metadata in the
    /// head.
    pub(super) fn row(&self, m: &Manifest, coder: Option<&Coder>, no: u32, slot: usize) -> Result<Row> {
        let meta = m.chunk(no).ok_or_else(|| Error::integrity("a row names a missing chunk"))?;
        let Some(coder) = coder else { return Ok(Row::of(self.chunk(m, meta, None)?, slot)) };
        let head = self.head(m, coder, meta, None)?;
        let unit = self.unit_of(m, (meta, &head.places), slot)?;
        let s = slot % rows_per_unit(m.config.dimension as usize, m.config.precision);
        Ok(Row::in_unit(unit, s, head, slot))
    }
}
