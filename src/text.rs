//! Full text: how metadata text and query text become terms, and how BM25
//! scores a document for them. The term index that uses this lives in
//! `index/terms.rs`.
//!
//! Tokenization: Unicode word boundaries (UAX #29, words holding a letter
//! or digit), lower-cased, NLTK's English stop words dropped, then the
//! Snowball English (Porter 2) stemmer. The same function tokenizes stored
//! text and queries, so a query term matches its stored forms.

use std::collections::HashSet;
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

use crate::error::{Error, Result};

/// Lucene's and Elasticsearch's defaults.
pub const DEFAULT_BM25_K1: f32 = 1.2;
pub const DEFAULT_BM25_B: f32 = 0.75;
/// Largest k1 accepted: past a few units BM25 is plain term frequency.
pub const MAX_BM25_K1: f32 = 1000.0;

/// The terms of `text`, in order, repeats kept (a term's frequency counts).
pub fn tokenize(text: &str) -> Vec<String> {
    let (stemmer, stop) = tools();
    text.unicode_words()
        .map(str::to_lowercase)
        .filter(|w| !stop.contains(w.as_str()))
        .map(|w| stemmer.stem(&w).into_owned())
        .collect()
}

fn tools() -> &'static (Stemmer, HashSet<&'static str>) {
    static TOOLS: OnceLock<(Stemmer, HashSet<&'static str>)> = OnceLock::new();
    TOOLS.get_or_init(|| (Stemmer::create(Algorithm::English), stop_words::get("en").iter().copied().collect()))
}

/// BM25's two parameters, fixed when an index is created.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation, 0 to [`MAX_BM25_K1`] (0: a term counts once).
    pub k1: f32,
    /// Document-length normalisation, 0 (none) to 1 (full).
    pub b: f32,
}

impl Default for Bm25 {
    fn default() -> Self {
        Bm25 { k1: DEFAULT_BM25_K1, b: DEFAULT_BM25_B }
    }
}

impl Bm25 {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(0.0..=MAX_BM25_K1).contains(&self.k1) {
            return Err(Error::invalid(format!("bm25_k1 must be 0 to {MAX_BM25_K1}, got {}", self.k1)));
        }
        if !(0.0..=1.0).contains(&self.b) {
            return Err(Error::invalid(format!("bm25_b must be 0 to 1, got {}", self.b)));
        }
        Ok(())
    }

    /// Lucene's inverse document frequency of a term in `df` of `n`
    /// documents: never negative, however common the term.
    pub(crate) fn idf(n: u64, df: u64) -> f64 {
        (1.0 + (n as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln()
    }

    /// One term's share of a document's score: `idf` weighted by the term's
    /// frequency `tf` in the document, saturating (k1) and normalised by the
    /// document's length `len` against the average `avg_len` (b).
    pub(crate) fn term_score(&self, idf: f64, tf: u32, len: u32, avg_len: f64) -> f64 {
        let (k1, b, tf) = (self.k1 as f64, self.b as f64, tf as f64);
        let norm = if avg_len > 0.0 { 1.0 - b + b * len as f64 / avg_len } else { 1.0 };
        idf * tf * (k1 + 1.0) / (tf + k1 * norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_words_lowercased_stemmed_without_stop_words() {
        assert_eq!(tokenize("The Running dogs, running!"), ["run", "dog", "run"]);
        assert_eq!(tokenize("Élan vital; naïve CAFÉS"), ["élan", "vital", "naïv", "café"]);
        // Numbers are words; punctuation and stop words are not.
        assert_eq!(tokenize("it is 3.14 -- and v2"), ["3.14", "v2"]);
        assert!(tokenize("").is_empty());
        assert!(tokenize("the of and, to!").is_empty());
    }

    #[test]
    fn bm25_follows_its_formula() {
        // Hand-computed: N = 4, df = 1: idf = ln(1 + 3.5 / 1.5).
        let idf = Bm25::idf(4, 1);
        assert!((idf - (1.0f64 + 3.5 / 1.5).ln()).abs() < 1e-12);
        // A term in every document still counts a little.
        assert!(Bm25::idf(4, 4) > 0.0);
        let p = Bm25::default();
        // tf 2 in a document of average length: idf * 2 * 2.2 / (2 + 1.2).
        assert!((p.term_score(1.0, 2, 10, 10.0) - 2.0 * 2.2 / 3.2).abs() < 1e-6); // k1 is an f32
                                                                                  // Longer documents score lower for the same frequency, unless b = 0.
        assert!(p.term_score(1.0, 1, 20, 10.0) < p.term_score(1.0, 1, 5, 10.0));
        let flat = Bm25 { b: 0.0, ..p };
        assert_eq!(flat.term_score(1.0, 1, 20, 10.0), flat.term_score(1.0, 1, 5, 10.0));
        assert!(Bm25 { k1: -1.0, ..p }.validate().is_err());
        assert!(Bm25 { b: 1.5, ..p }.validate().is_err());
        assert!(Bm25 { k1: f32::NAN, ..p }.validate().is_err());
    }
}
