//! The term index of text fields: for each term of the fields an index
//! declares as text at creation, which rows hold it and how often, with
//! every row's length in terms, so a keyword query is ranked by BM25
//! (`text.rs`) without reading the rows. Derived in memory from the sealed
//! rows and never stored (`derived.rs`): the store holds no term index,
//! posting list or collection statistic, sealed or not.
//!
//! A row's document is the concatenated text of its declared fields (a
//! string, or the strings of an array); a row without any is an empty
//! document, which still counts in N and the average length.

use std::borrow::Borrow;
use std::collections::HashMap;

use serde_json::Value;

use super::derived::{Derived, RowIndex};
use super::fields::{chunk_of, pos, slot_of, Pos, Text};
use super::manifest::Manifest;
use super::{Index, IndexConfig};
use crate::error::{Error, Result};
use crate::text::{tokenize, Bm25};

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[derive(Default)]
pub(super) struct TermIndex {
    declared: Vec<Vec<String>>,
    /// Each term's number; a term no row holds any more gives its number
    /// back (to `free`).
    ids: HashMap<Text, u32>,
    /// By term number: the term, and the rows holding it with its
    /// frequency there, by position.
    terms: Vec<(Text, Vec<(Pos, u32)>)>,
    free: Vec<u32>,
    /// Per chunk indexed: each row's length in terms, and the numbers of
    /// the terms its rows hold (to take them out again).
    chunks: HashMap<u32, (Vec<u32>, Vec<u32>)>,
    /// Documents (rows) and their total length, for BM25's N and average.
    docs: u64,
    total_len: u64,
}

impl RowIndex for TermIndex {
    fn new(config: &IndexConfig) -> Self {
        let declared = config.text_fields.iter().map(|f| f.split('.').map(str::to_owned).collect()).collect();
        TermIndex { declared, ..TermIndex::default() }
    }

    fn insert(&mut self, no: u32, rows: &[Option<&Value>], sorted: bool) {
        let mut lens = Vec::with_capacity(rows.len());
        let mut by_term: HashMap<u32, Vec<(Pos, u32)>> = HashMap::new();
        for (slot, md) in rows.iter().enumerate() {
            let mut counts: HashMap<u32, u32> = HashMap::new();
            let mut len = 0u32;
            for term in md.map(|md| self.terms_of(md)).unwrap_or_default() {
                *counts.entry(self.number(term)).or_default() += 1;
                len += 1;
            }
            lens.push(len);
            for (term, tf) in counts {
                by_term.entry(term).or_default().push((pos(no, slot), tf));
            }
        }
        let mut held = Vec::with_capacity(by_term.len());
        for (term, mut rows) in by_term {
            rows.sort_unstable();
            let list = &mut self.terms[term as usize].1;
            let at = if sorted { list.len() } else { list.partition_point(|&(p, _)| chunk_of(p) < no) };
            list.splice(at..at, rows);
            held.push(term);
        }
        self.docs += lens.len() as u64;
        self.total_len += lens.iter().map(|&l| l as u64).sum::<u64>();
        self.chunks.insert(no, (lens, held));
    }

    fn remove(&mut self, no: u32) {
        let Some((lens, held)) = self.chunks.remove(&no) else { return };
        self.docs -= lens.len() as u64;
        self.total_len -= lens.iter().map(|&l| l as u64).sum::<u64>();
        for term in held {
            let (text, list) = &mut self.terms[term as usize];
            let lo = list.partition_point(|&(p, _)| chunk_of(p) < no);
            let hi = lo + list[lo..].partition_point(|&(p, _)| chunk_of(p) == no);
            list.drain(lo..hi);
            if list.is_empty() {
                *list = Vec::new();
                self.ids.remove(&*text);
                *text = Text(String::new());
                self.free.push(term);
            }
        }
    }
}

impl TermIndex {
    /// The number of `term`, given one if new.
    fn number(&mut self, term: String) -> u32 {
        if let Some(&id) = self.ids.get(term.as_str()) {
            return id;
        }
        let term = Text(term);
        let id = match self.free.pop() {
            Some(id) => {
                self.terms[id as usize].0 = term.clone();
                id
            }
            None => {
                self.terms.push((term.clone(), Vec::new()));
                (self.terms.len() - 1) as u32
            }
        };
        self.ids.insert(term, id);
        id
    }

    /// The terms of a row's declared text fields, in order.
    fn terms_of(&self, md: &Value) -> Vec<String> {
        let mut terms = Vec::new();
        for path in &self.declared {
            let mut found = Vec::new();
            crate::filter::resolve(md, path, &mut found);
            for v in found {
                match v {
                    Value::String(s) => terms.extend(tokenize(s)),
                    Value::Array(items) => {
                        items.iter().filter_map(Value::as_str).for_each(|s| terms.extend(tokenize(s)))
                    }
                    _ => {}
                }
            }
        }
        terms
    }

    /// Every row holding a query term, with its BM25 score for `query`
    /// (each query term counts as often as it is repeated), by position.
    fn scores(&self, bm25: &Bm25, query: &[String]) -> Vec<(Pos, f64)> {
        let avg_len = if self.docs == 0 { 0.0 } else { self.total_len as f64 / self.docs as f64 };
        let mut scores: HashMap<Pos, f64> = HashMap::new();
        for term in query {
            let Some(&id) = self.ids.get(term.as_str()) else { continue };
            let list = &self.terms[id as usize].1;
            let idf = Bm25::idf(self.docs, list.len() as u64);
            for &(p, tf) in list {
                let len = self.chunks[&chunk_of(p)].0[slot_of(p)];
                *scores.entry(p).or_default() += bm25.term_score(idf, tf, len, avg_len);
            }
        }
        let mut scores: Vec<(Pos, f64)> = scores.into_iter().collect();
        scores.sort_unstable_by_key(|&(p, _)| p);
        scores
    }
}

impl Index {
    /// The rows of `m` that hold a term of `text`, with their BM25 scores,
    /// by position. INVALID_ARGUMENT when the index declares no text field.
    pub(super) fn text_scores(&self, m: &Manifest, text: &str) -> Result<Vec<(Pos, f64)>> {
        if m.config.text_fields.is_empty() {
            return Err(no_text_fields());
        }
        let query = tokenize(text);
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let bm25 = m.config.bm25;
        let score = |index: &TermIndex| index.scores(&bm25, &query);
        match self.with_derived(&self.terms, m, score)? {
            Some(scores) => Ok(scores),
            // The handle's index is already past `m` (a concurrent call
            // read a newer state): score `m` from an index of its own.
            None => Ok(self.with_derived(&Derived::default(), m, score)?.expect("a fresh index reaches m")),
        }
    }
}

/// Query text on an index that declares no text fields.
pub(super) fn no_text_fields() -> Error {
    Error::invalid("query text given, but the index declares no text fields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declaring(fields: &[&str]) -> TermIndex {
        TermIndex::new(&IndexConfig {
            text_fields: fields.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        })
    }

    fn insert(t: &mut TermIndex, no: u32, rows: &[Value], sorted: bool) {
        let rows: Vec<Option<&Value>> = rows.iter().map(|r| Some(r).filter(|r| !r.is_null())).collect();
        t.insert(no, &rows, sorted);
    }

    /// Scores against the formula computed by hand over the documents'
    /// terms, with nested paths, arrays, a row without text and repeats.
    #[test]
    fn scores_follow_bm25_over_the_declared_fields() {
        let mut t = declaring(&["title", "doc.tags"]);
        let rows = [
            json!({"title": "Encrypted vector search", "doc": {"tags": ["search", "fast"]}}),
            json!({"title": "The search for searching", "other": "vector vector"}),
            json!(null),
            json!({"title": 7, "doc": {"tags": "vectors"}}),
        ];
        insert(&mut t, 0, &rows, true);
        // Documents: [encrypt, vector, search, search, fast], [search, search], [], [vector].
        assert_eq!((t.docs, t.total_len), (4, 8));
        let bm25 = Bm25 { k1: 1.2, b: 0.75 };
        let avg = 2.0;
        let s = t.scores(&bm25, &tokenize("search vectors search"));
        let (idf_s, idf_v) = (Bm25::idf(4, 2), Bm25::idf(4, 2));
        let want = [
            (pos(0, 0), 2.0 * bm25.term_score(idf_s, 2, 5, avg) + bm25.term_score(idf_v, 1, 5, avg)),
            (pos(0, 1), 2.0 * bm25.term_score(idf_s, 2, 2, avg)),
            (pos(0, 3), bm25.term_score(idf_v, 1, 1, avg)),
        ];
        assert_eq!(s.len(), want.len());
        for ((p, got), (q, want)) in s.iter().zip(want) {
            assert_eq!(*p, q);
            assert!((got - want).abs() < 1e-12, "{got} != {want}");
        }
        assert!(t.scores(&bm25, &tokenize("absent words")).is_empty());
    }

    /// Patching chunk by chunk leaves the index as a rebuild would, and
    /// taking a chunk out forgets its terms and lengths.
    #[test]
    fn patches_equal_a_rebuild() {
        let rows = |seed: usize| -> Vec<Value> {
            (0..12).map(|i| json!({"t": format!("w{} w{} x{}", (i + seed) % 5, (i * 3 + seed) % 7, seed)})).collect()
        };
        let build = |chunks: &[(u32, usize)]| {
            let mut t = declaring(&["t"]);
            for &(no, seed) in chunks {
                insert(&mut t, no, &rows(seed), true);
            }
            t
        };
        let mut patched = build(&[(0, 0), (1, 1), (2, 2), (4, 4)]);
        for no in [1, 4] {
            patched.remove(no);
        }
        for (no, seed) in [(4, 40), (1, 10), (3, 30)] {
            insert(&mut patched, no, &rows(seed), false);
        }
        let rebuilt = build(&[(0, 0), (1, 10), (2, 2), (3, 30), (4, 40)]);
        assert_eq!((patched.docs, patched.total_len), (rebuilt.docs, rebuilt.total_len));
        let sorted = |t: &TermIndex| {
            let mut v: Vec<(String, Vec<(Pos, u32)>)> =
                t.ids.iter().map(|(k, &id)| (k.0.clone(), t.terms[id as usize].1.clone())).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&patched), sorted(&rebuilt));
        assert!(!patched.ids.contains_key("x4"), "a removed chunk's only term stays");
        // Freed numbers are given to new terms, and no list is left empty.
        assert!(patched.terms.len() < rebuilt.terms.len() + 2);
        assert!(patched.ids.values().all(|&id| !patched.terms[id as usize].1.is_empty()));
    }
}
