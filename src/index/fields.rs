//! The index of filterable fields: for each field an index declares
//! filterable at creation, which rows of which chunks hold each value, so a
//! filter on those fields finds its rows without evaluating every item.
//! Derived in memory from the sealed rows and never stored (`derived.rs`).
//!
//! It answers a filter with the rows that may match ([`Candidates`]):
//! exactly its matches when every part of it is an equality, `$in` or range
//! on a declared field (what the index holds), else a superset on which the
//! caller evaluates the whole filter. A filter it cannot narrow at all (no
//! declared field, or only `$ne`, `$exists`, `$regex` ...) gets `None` and is
//! evaluated row by row as before.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;

use super::derived::RowIndex;
use super::manifest::Manifest;
use super::{Index, IndexConfig};
use crate::error::Result;
use crate::filter::{CmpOp, Cond, Filter};

/// A value as the index keys it. Numbers compare by value, as filters do
/// (`20` = `20.0`, `-0.0` = `0.0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Num(Num),
    Str(Text),
    Bool(bool),
}

/// A string value of a row, decrypted metadata: wiped when dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Text(pub(super) String);

impl Drop for Text {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// An f64 with a total order, -0.0 folded into 0.0 (JSON has no NaN).
#[derive(Clone, Copy, Debug)]
struct Num(f64);

impl Num {
    fn new(x: f64) -> Num {
        Num(if x == 0.0 { 0.0 } else { x })
    }
}
impl PartialEq for Num {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0).is_eq()
    }
}
impl Eq for Num {}
impl std::hash::Hash for Num {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.to_bits().hash(h)
    }
}
impl PartialOrd for Num {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Num {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

impl Key {
    /// The key of a scalar filter operand or stored value; None for null,
    /// arrays and objects, which the index does not hold.
    fn of(v: &Value) -> Option<Key> {
        match v {
            Value::Number(n) => n.as_f64().map(|x| Key::Num(Num::new(x))),
            Value::String(s) => Some(Key::Str(Text(s.clone()))),
            Value::Bool(b) => Some(Key::Bool(*b)),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }
}

/// The position of a row: chunk number << 32 | slot.
pub(super) type Pos = u64;

pub(super) fn pos(no: u32, slot: usize) -> Pos {
    (no as u64) << 32 | slot as u64
}

pub(super) fn chunk_of(p: Pos) -> u32 {
    (p >> 32) as u32
}

pub(super) fn slot_of(p: Pos) -> usize {
    (p & 0xffff_ffff) as usize
}

/// Candidate rows: their positions, ascending (so grouped by chunk), and
/// whether they are exactly the filter's matches (every part of it was
/// narrowed by the index) rather than a superset. Shared with the index's
/// own list when a filter names one value (no copy per query).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidates(pub(super) Arc<Vec<Pos>>, pub(super) bool);

impl Default for Candidates {
    fn default() -> Self {
        Candidates(Arc::default(), true)
    }
}

impl Candidates {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when these are exactly the rows the filter matches, so it need
    /// not be evaluated on them.
    pub fn exact(&self) -> bool {
        self.1
    }

    /// The chunks with candidates, ascending, each with its slots.
    pub fn chunks(&self) -> impl Iterator<Item = (u32, impl Iterator<Item = usize> + '_)> + '_ {
        self.0.chunk_by(|a, b| chunk_of(*a) == chunk_of(*b)).map(|g| (chunk_of(g[0]), slots(g)))
    }

    /// How many chunks hold candidates.
    pub fn chunk_count(&self) -> usize {
        self.0.chunk_by(|a, b| chunk_of(*a) == chunk_of(*b)).count()
    }

    /// The candidate slots of chunk `no`.
    pub fn of(&self, no: u32) -> impl Iterator<Item = usize> + '_ {
        slots(&self.0[range_of(&self.0, no)])
    }

    pub(super) fn union_all(mut parts: Vec<Candidates>) -> Candidates {
        if parts.len() == 1 {
            return parts.pop().unwrap();
        }
        let exact = parts.iter().all(Candidates::exact);
        let mut all: Vec<Pos> = parts.iter().flat_map(|c| c.0.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        Candidates(Arc::new(all), exact)
    }

    pub(super) fn intersect(self, other: &Candidates) -> Candidates {
        let (mut out, mut j) = (Vec::new(), 0);
        for &p in self.0.iter() {
            j += other.0[j..].partition_point(|&q| q < p);
            if other.0.get(j) == Some(&p) {
                out.push(p);
            }
        }
        Candidates(Arc::new(out), self.1 && other.1)
    }
}

fn slots(g: &[Pos]) -> impl Iterator<Item = usize> + '_ {
    g.iter().map(|&p| slot_of(p))
}

/// Where chunk `no`'s positions are in an ascending list of positions.
pub(super) fn range_of(positions: &[Pos], no: u32) -> std::ops::Range<usize> {
    let lo = positions.partition_point(|&p| chunk_of(p) < no);
    lo..lo + positions[lo..].partition_point(|&p| chunk_of(p) == no)
}

/// Per field, per value, the positions of the rows that hold it (shared
/// with the queries using them; a write copies a list a query still holds).
type ValueMap = BTreeMap<Key, Arc<Vec<Pos>>>;

/// A handle's index of its filterable fields (empty when none are declared).
#[derive(Default)]
pub(super) struct FieldIndex {
    /// The declared fields, as declared and split into their path segments.
    declared: Vec<(String, Vec<String>)>,
    /// Each chunk indexed: the (field, value) pairs its rows hold (to take
    /// them out again).
    chunks: HashMap<u32, Vec<(usize, Key)>>,
    fields: Vec<ValueMap>,
}

/// The (field, value) → slots of one chunk's rows.
type ChunkPostings = HashMap<(usize, Key), Vec<u32>>;

impl RowIndex for FieldIndex {
    fn new(config: &IndexConfig) -> Self {
        let declared: Vec<(String, Vec<String>)> =
            config.filterable.iter().map(|f| (f.clone(), f.split('.').map(str::to_owned).collect())).collect();
        FieldIndex { fields: vec![ValueMap::new(); declared.len()], declared, chunks: HashMap::new() }
    }

    fn insert(&mut self, no: u32, rows: &[Option<&Value>], sorted: bool) {
        let postings = self.index_rows(rows);
        self.insert_postings(no, postings, sorted);
    }

    fn remove(&mut self, no: u32) {
        let Some(pairs) = self.chunks.remove(&no) else { return };
        for (field, key) in pairs {
            if let Some(positions) = self.fields[field].get_mut(&key) {
                let positions = Arc::make_mut(positions);
                positions.drain(range_of(positions, no));
                if positions.is_empty() {
                    self.fields[field].remove(&key);
                }
            }
        }
    }
}

impl FieldIndex {
    /// Adds chunk `no`; `sorted`: its positions go at the end of each list
    /// (a rebuild, chunks in ascending order), else where they belong.
    fn insert_postings(&mut self, no: u32, postings: ChunkPostings, sorted: bool) {
        let mut pairs = Vec::with_capacity(postings.len());
        for ((field, key), slots) in postings {
            let positions = Arc::make_mut(self.fields[field].entry(key.clone()).or_default());
            let at = if sorted { positions.len() } else { positions.partition_point(|&p| chunk_of(p) < no) };
            positions.splice(at..at, slots.iter().map(|&s| pos(no, s as usize)));
            pairs.push((field, key));
        }
        self.chunks.insert(no, pairs);
    }

    /// The rows of `field` whose key is in `range`.
    fn rows_in(&self, field: usize, range: (Bound<&Key>, Bound<&Key>)) -> Candidates {
        let parts = self.fields[field].range::<Key, _>(range).map(|(_, p)| Candidates(p.clone(), true)).collect();
        Candidates::union_all(parts)
    }
    fn rows_eq(&self, field: usize, key: &Key) -> Candidates {
        self.rows_in(field, (Bound::Included(key), Bound::Included(key)))
    }

    /// A superset of the rows `filter` matches; None if it cannot tell.
    fn candidates(&self, filter: &Filter) -> Option<Candidates> {
        match filter {
            Filter::And(parts) => intersect_all(parts.iter().map(|f| self.candidates(f))),
            Filter::Or(parts) => {
                Some(Candidates::union_all(parts.iter().map(|f| self.candidates(f)).collect::<Option<_>>()?))
            }
            Filter::Nor(_) => None,
            Filter::Field { path, cond } => {
                let field = self.declared.iter().position(|(_, d)| d == path)?;
                self.cond_rows(field, cond)
            }
        }
    }

    fn cond_rows(&self, field: usize, cond: &Cond) -> Option<Candidates> {
        match cond {
            Cond::Eq(x) => Some(self.rows_eq(field, &Key::of(x)?)),
            Cond::In(list) => Some(Candidates::union_all(
                list.iter().map(|x| Some(self.rows_eq(field, &Key::of(x)?))).collect::<Option<_>>()?,
            )),
            Cond::Cmp(op, x) => {
                // A comparison matches values of its operand's type only.
                let key = Key::of(x).filter(|k| !matches!(k, Key::Bool(_)))?;
                let (lo, hi) = match &key {
                    Key::Num(_) => (Key::Num(Num(f64::NEG_INFINITY)), Key::Num(Num(f64::INFINITY))),
                    _ => (Key::Str(Text(String::new())), Key::Bool(false)),
                };
                let range = match op {
                    CmpOp::Gt => (Bound::Excluded(&key), Bound::Included(&hi)),
                    CmpOp::Gte => (Bound::Included(&key), Bound::Included(&hi)),
                    CmpOp::Lt => (Bound::Included(&lo), Bound::Excluded(&key)),
                    CmpOp::Lte => (Bound::Included(&lo), Bound::Included(&key)),
                };
                // Strings end where booleans begin.
                let range = match (&key, range.1) {
                    (Key::Str(_), Bound::Included(b)) if *b == hi => (range.0, Bound::Excluded(&hi)),
                    (_, end) => (range.0, end),
                };
                Some(self.rows_in(field, range))
            }
            Cond::All(conds) => intersect_all(conds.iter().map(|c| self.cond_rows(field, c))),
            Cond::Ne(_) | Cond::Nin(_) | Cond::Exists(_) | Cond::Not(_) | Cond::Contains(_) | Cond::Regex(_) => None,
        }
    }
}

/// The rows every part allows, from the parts the index narrows (None if
/// it narrows none); exact only if it narrows them all.
fn intersect_all(parts: impl Iterator<Item = Option<Candidates>>) -> Option<Candidates> {
    let parts: Vec<Option<Candidates>> = parts.collect();
    let all_narrowed = parts.iter().all(Option::is_some);
    let mut narrowed: Vec<Candidates> = parts.into_iter().flatten().collect();
    narrowed.sort_by_key(Candidates::len);
    let mut it = narrowed.into_iter();
    let first = it.next()?;
    let mut out = it.fold(first, |acc, c| acc.intersect(&c));
    out.1 &= all_narrowed;
    Some(out)
}

impl FieldIndex {
    /// The (field, key) postings of one chunk's rows.
    fn index_rows(&self, rows: &[Option<&Value>]) -> ChunkPostings {
        let mut postings = ChunkPostings::new();
        for (slot, md) in rows.iter().enumerate() {
            let Some(md) = md else { continue };
            for (field, (_, path)) in self.declared.iter().enumerate() {
                let mut found = Vec::new();
                crate::filter::resolve(md, path, &mut found);
                for v in found {
                    // An array matches by its elements, as in filters.
                    let elements = match v {
                        Value::Array(items) => items.iter().collect(),
                        v => vec![v],
                    };
                    for key in elements.into_iter().filter_map(Key::of) {
                        let slots = postings.entry((field, key)).or_default();
                        if slots.last() != Some(&(slot as u32)) {
                            slots.push(slot as u32);
                        }
                    }
                }
            }
        }
        postings
    }
}

impl Index {
    /// A superset of the rows of `m` that `filter` matches, from the index
    /// of filterable fields; None when the index has none or the filter
    /// cannot be narrowed with them (or, rarely, `m` is older than the
    /// state the index was brought up to by a concurrent call).
    pub(super) fn field_candidates(&self, m: &Manifest, filter: &Filter) -> Result<Option<Candidates>> {
        if m.config.filterable.is_empty() {
            return Ok(None);
        }
        Ok(self.with_derived(&self.fields, m, |index: &FieldIndex| index.candidates(filter))?.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declaring(fields: &[&str]) -> FieldIndex {
        FieldIndex::new(&IndexConfig {
            filterable: fields.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        })
    }

    fn rows_of(values: &[Value]) -> Vec<Option<&Value>> {
        values.iter().map(Some).collect()
    }

    /// An index of field "v" over chunks of the given metadata.
    fn state(chunks: &[Vec<Value>]) -> FieldIndex {
        let mut s = declaring(&["v"]);
        for (no, rows) in chunks.iter().enumerate() {
            s.insert(no as u32, &rows_of(rows), no % 2 == 0);
        }
        s
    }

    /// Every filter the index narrows gives a superset of the rows the
    /// filter matches, and exactly them for what it indexes.
    #[test]
    fn candidates_are_exactly_the_matches_of_indexable_filters() {
        let values = [
            json!(1),
            json!(2.0),
            json!(-0.0),
            json!("a"),
            json!("b"),
            json!(true),
            json!([3, "a"]),
            json!(null),
            json!({"x": 1}),
            json!(0),
            json!(10),
        ];
        let rows: Vec<Value> = values.iter().map(|v| json!({"v": v, "w": 1})).collect();
        let chunks = vec![rows[..6].to_vec(), rows[6..].to_vec(), vec![json!({"w": 2})]];
        let s = state(&chunks);
        let cases = [
            r#"{"v": 2}"#,
            r#"{"v": 0}"#,
            r#"{"v": "a"}"#,
            r#"{"v": true}"#,
            r#"{"v": 3}"#,
            r#"{"v": {"$in": [1, "b", 10]}}"#,
            r#"{"v": {"$gt": 1}}"#,
            r#"{"v": {"$gte": 1, "$lt": 10}}"#,
            r#"{"v": {"$lte": 0}}"#,
            r#"{"v": {"$gt": "a"}}"#,
            r#"{"v": {"$lt": "b"}}"#,
            r#"{"$or": [{"v": 1}, {"v": "b"}]}"#,
            r#"{"$and": [{"v": {"$gte": 0}}, {"w": 1}]}"#,
            r#"{"v": {"$in": [1]}, "w": {"$exists": true}}"#,
        ];
        for text in cases {
            let f = Filter::parse(text).unwrap();
            let got = s.candidates(&f).unwrap_or_else(|| panic!("{text} not narrowed"));
            let mut want = Candidates::default();
            for (no, rows) in chunks.iter().enumerate() {
                Arc::make_mut(&mut want.0)
                    .extend((0..rows.len()).filter(|&s| f.matches(Some(&rows[s]))).map(|s| pos(no as u32, s)));
            }
            // Exact unless a part is not narrowed (an undeclared field, $exists).
            want.1 = !text.contains("$exists") && !text.contains(r#""w""#);
            assert_eq!(got, want, "{text}");
        }
        // What the index does not hold, it does not narrow.
        for text in
            [r#"{"v": null}"#, r#"{"v": {"$ne": 1}}"#, r#"{"w": 1}"#, r#"{"v": [3, "a"]}"#, r#"{"$nor": [{"v": 1}]}"#]
        {
            let f = Filter::parse(text).unwrap();
            assert!(s.candidates(&f).is_none(), "{text}");
        }
        // An $or with a branch it cannot narrow is not narrowed.
        let f = Filter::parse(r#"{"$or": [{"v": 1}, {"w": 2}]}"#).unwrap();
        assert!(s.candidates(&f).is_none());
    }

    /// Patching the index chunk by chunk (a write) leaves it as a rebuild
    /// over the same chunks would.
    #[test]
    fn patches_equal_a_rebuild() {
        let rows = |seed: usize| -> Vec<Value> {
            (0..20).map(|i| json!({"v": (i * 7 + seed) % 5, "u": [format!("s{}", (i + seed) % 3)]})).collect()
        };
        let build = |chunks: &[(u32, usize)]| {
            let mut s = declaring(&["v", "u"]);
            for &(no, seed) in chunks {
                s.insert(no, &rows_of(&rows(seed)), true);
            }
            s
        };
        let mut patched = build(&[(0, 0), (1, 1), (2, 2), (3, 3), (5, 5), (7, 7)]);
        for no in [3, 5, 7] {
            patched.remove(no);
        }
        for (no, seed) in [(3, 30), (7, 70), (4, 40), (9, 90)] {
            patched.insert(no, &rows_of(&rows(seed)), false);
        }
        let rebuilt = build(&[(0, 0), (1, 1), (2, 2), (3, 30), (4, 40), (7, 70), (9, 90)]);
        assert_eq!(patched.fields, rebuilt.fields);
        assert!(patched.fields.iter().all(|f| f.values().all(|p| p.windows(2).all(|w| w[0] < w[1]))));
    }

    #[test]
    fn removing_a_chunk_forgets_its_values() {
        let mut s = state(&[vec![json!({"v": 1})], vec![json!({"v": 1}), json!({"v": 2})]]);
        s.remove(1);
        assert_eq!(s.fields[0].len(), 1);
        let f = Filter::parse(r#"{"v": {"$gte": 1}}"#).unwrap();
        assert_eq!(s.candidates(&f).unwrap().chunks().count(), 1);
    }
}
