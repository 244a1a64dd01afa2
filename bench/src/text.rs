//! --only text: keyword (BM25) and hybrid search on a real English corpus
//! built from this machine's documentation (issue 15.3), and the reference
//! check: every keyword query's scores are written, with the corpus's and
//! the queries' terms, to `<scratch>/bm25-check.json` for
//! bench/bm25_reference.py, which scores the same terms with the `bm25s`
//! package (bench/text.sh runs both).
//!
//! The corpus: the paragraphs (5 to 300 words) of the plain-text files
//! under /usr/share/doc, in path order, one document each, up to as many as
//! the dataset has vectors; document i gets base vector i (the vectors are
//! MiniLM embeddings of other sentences: the pairing measures cost, not
//! relevance). Queries: two or three terms of a document's own text.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::emit;
use crate::fixtures::{upsert_in_batches, Dataset};
use vx::{
    tokenize, Access, Bm25, Client, ClientOptions, IndexConfig, ItemRef, MetadataQuery, QueryParams, TrainParams,
};

const DOC_ROOT: &str = "/usr/share/doc";
const QUERIES: usize = 200;

/// (package, paragraph) of the plain-text documentation, in path order.
fn corpus(limit: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    walk(Path::new(DOC_ROOT), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue }; // binary, compressed
        let package = path.strip_prefix(DOC_ROOT).unwrap().iter().next().unwrap().to_string_lossy().into_owned();
        for para in text.split("\n\n") {
            let words = para.split_whitespace().count();
            if (5..=300).contains(&words) {
                docs.push((package.clone(), para.split_whitespace().collect::<Vec<_>>().join(" ")));
                if docs.len() == limit {
                    return docs;
                }
            }
        }
    }
    docs
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let (path, kind) = (e.path(), e.file_type());
        match kind {
            Ok(k) if k.is_dir() => walk(&path, out),
            Ok(k) if k.is_file() && path.extension().is_none_or(|x| x != "gz") => out.push(path),
            _ => {}
        }
    }
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

pub fn run(ds: &Dataset, scratch: &Path, n_lists: u32, iters: u32) {
    let docs = corpus(ds.n());
    let n = docs.len();
    let terms: Vec<Vec<String>> = docs.iter().map(|(_, body)| tokenize(body)).collect();
    eprintln!("vx-bench text: {n} paragraphs from {DOC_ROOT}, {} terms", terms.iter().map(Vec::len).sum::<usize>());
    // Queries: 2 or 3 distinct terms drawn from document (7919 q mod n).
    let queries: Vec<String> = (0..QUERIES)
        .map(|q| {
            let words: Vec<&str> = docs[(q * 7919) % n].1.split(' ').filter(|w| !tokenize(w).is_empty()).collect();
            let take = 2 + q % 2;
            (0..take).map(|j| words[(j * 5 + q) % words.len()]).collect::<Vec<_>>().join(" ")
        })
        .collect();
    let bm25 = Bm25::default();
    let client = Client::open("memory:", ClientOptions { threads: 1, ..Default::default() }).unwrap();
    let config = IndexConfig {
        text_fields: vec!["body".into()],
        filterable: vec!["package".into()],
        bm25,
        ..Default::default()
    };
    let index = client.create_index("text", &crate::fixtures::key(crate::KEY), config).unwrap();
    let names: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let metas: Vec<String> =
        docs.iter().map(|(package, body)| serde_json::json!({"package": package, "body": body}).to_string()).collect();
    // Paragraph i with base vector i.
    let fill = |index: &vx::Index| {
        let items = (0..n).map(|i| ItemRef {
            id: &names[i],
            vector: &ds.base[i * ds.dim..(i + 1) * ds.dim],
            metadata: Some(&metas[i]),
            contents: None,
        });
        upsert_in_batches(index, items, 10_000, Access::default()).unwrap();
    };
    fill(&index);

    // The first keyword query builds the term index: timed alone.
    let (rss_before, t) = (rss_mib(), Instant::now());
    let keyword = |text: &str, top_k: usize| {
        let q = MetadataQuery { text: Some(text), top_k, include: 0, ..Default::default() };
        index.query_metadata(&q, Access::default()).unwrap()
    };
    keyword(&queries[0], 10);
    let build_s = t.elapsed().as_secs_f64();
    let term_index_mib = rss_mib() - rss_before;

    // The reference check: every match of every query, with its score.
    let scores: Vec<Vec<(usize, f64)>> = queries
        .iter()
        .map(|q| keyword(q, 0).iter().map(|h| (h.id.parse().unwrap(), h.score as f64)).collect())
        .collect();
    let check = scratch.join("bm25-check.json");
    let query_terms: Vec<Vec<String>> = queries.iter().map(|q| tokenize(q)).collect();
    let json = serde_json::json!({
        "k1": bm25.k1, "b": bm25.b, "docs": terms, "queries": query_terms, "scores": scores,
    });
    std::fs::write(&check, json.to_string()).unwrap();
    eprintln!("vx-bench text: wrote {}", check.display());

    let per_query_ms = |f: &dyn Fn(usize)| {
        let t = Instant::now();
        (0..QUERIES).for_each(f);
        t.elapsed().as_secs_f64() * 1000.0 / QUERIES as f64
    };
    let vector = |qi: usize| &ds.queries[(qi % ds.nq()) * ds.dim..(qi % ds.nq() + 1) * ds.dim];
    let matches = scores.iter().map(Vec::len).sum::<usize>() as f64 / QUERIES as f64;
    for trained in [false, true] {
        if trained {
            index.train(TrainParams { n_lists, max_iters: iters, ..Default::default() }, Access::default()).unwrap();
            keyword(&queries[0], 10); // the term index follows the new layout
        }
        let top10 = per_query_ms(&|qi| drop(keyword(&queries[qi], 10)));
        let all = per_query_ms(&|qi| drop(keyword(&queries[qi], 0)));
        let query = |qi: usize, text: Option<&str>| {
            let p = QueryParams { top_k: 10, text, ..Default::default() };
            index.query(vector(qi), 1, ds.dim, &p, Access::default()).unwrap();
        };
        let plain = per_query_ms(&|qi| query(qi, None));
        let hybrid = per_query_ms(&|qi| query(qi, Some(&queries[qi])));
        emit(
            ds,
            "text",
            &[
                ("docs", n.to_string()),
                ("trained", trained.to_string()),
                ("matches_per_query", format!("{matches:.0}")),
                ("term_index_build_s", format!("{build_s:.2}")),
                ("term_index_rss_mib", format!("{term_index_mib:.0}")),
                ("keyword_top10_ms", format!("{top10:.3}")),
                ("keyword_all_ms", format!("{all:.3}")),
                ("vector_top10_ms", format!("{plain:.3}")),
                ("hybrid_top10_ms", format!("{hybrid:.3}")),
            ],
        );
    }
    // What the store holds with and without text fields, same items.
    let stored = |text_fields: Vec<String>| {
        let dir = scratch.join(format!("vx-text-store-{}", text_fields.len()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            let c = Client::open(&format!("file:{}", dir.display()), ClientOptions::default()).unwrap();
            let config = IndexConfig { text_fields, ..Default::default() };
            fill(&c.create_index("t", &crate::fixtures::key(crate::KEY), config).unwrap());
        }
        let bytes: u64 = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
        std::fs::remove_dir_all(&dir).unwrap();
        bytes
    };
    let (with, without) = (stored(vec!["body".into()]), stored(Vec::new()));
    emit(
        ds,
        "text-store",
        &[
            ("docs", n.to_string()),
            ("store_bytes_text_fields", with.to_string()),
            ("store_bytes_none", without.to_string()),
        ],
    );
}
