//! Keyword and hybrid search over text fields (src/index/terms.rs, the
//! fusion in src/index/read.rs): BM25 scores equal a reference computed
//! here from the formula, on both index types, trained or not, filtered,
//! paged, in step with writes, deletes and other handles; hybrid results
//! equal a weighted reciprocal-rank fusion of the two rankings computed
//! here, with exact distances; bad arguments are refused; the store holds
//! nothing more for text fields; a tampered chunk is INTEGRITY.

mod common;

use std::collections::HashMap;

use common::{clustered, key, Rng, TempDir};
use vx::{
    include, tokenize, Access, Bm25, Client, ClientOptions, Fusion, Hit, IndexConfig, IndexType, ItemRef,
    MetadataQuery, QueryParams, Status, TrainParams,
};

const DIM: usize = 8;
const N: usize = 10_000; // training needs 10k
const KEY: u8 = 9;
const BM25: Bm25 = Bm25 { k1: 0.9, b: 0.4 };

fn client(uri: &str) -> Client {
    Client::open(uri, ClientOptions { threads: 2, ..Default::default() }).unwrap()
}

const WORDS: &[&str] = &[
    "encrypted",
    "vector",
    "search",
    "searching",
    "the",
    "of",
    "index",
    "indexes",
    "key",
    "keys",
    "running",
    "runs",
    "dog",
    "dogs",
    "fast",
    "faster",
    "store",
    "stored",
    "query",
    "queries",
    "a",
    "and",
    "to",
    "library",
    "libraries",
    "cipher",
    "rust",
    "go",
    "python",
    "text",
    "Text",
    "BM25",
    "rank",
    "ranking",
    "fusion",
    "lists",
    "list",
];

/// Item i's metadata: a title of Zipf-ish words, tags on every third item,
/// a tenant; every 13th item has no text, every 17th no metadata at all.
fn metadata(i: usize, seed: u64) -> Option<String> {
    if i.is_multiple_of(17) {
        return None;
    }
    let mut rng = Rng::new(seed * 1_000_003 + i as u64);
    let mut words = |n: u64| -> Vec<&str> {
        (0..1 + rng.below(n))
            .map(|_| {
                let a = rng.below(WORDS.len() as u64);
                WORDS[rng.below(a + 1) as usize]
            })
            .collect()
    };
    let title = words(12).join(" ");
    let tags: Vec<String> = words(3).iter().map(|w| format!("\"{w}\"")).collect();
    let mut md = format!(r#"{{"tenant": {}"#, i % 5);
    if !i.is_multiple_of(13) {
        md += &format!(r#", "title": "{title}""#);
        if i.is_multiple_of(3) {
            md += &format!(r#", "tags": [{}]"#, tags.join(", "));
        }
    }
    Some(md + "}")
}

fn id(i: usize) -> String {
    format!("doc-{i:05}")
}

fn config(index_type: IndexType) -> IndexConfig {
    IndexConfig {
        index_type,
        dimension: DIM as u32,
        text_fields: vec!["title".into(), "tags".into()],
        filterable: vec!["tenant".into()],
        bm25: BM25,
        ..Default::default()
    }
}

/// Upserts items `range` with metadata of `seed`.
fn write(index: &vx::Index, range: std::ops::Range<usize>, seed: u64) {
    let vectors = clustered(range.len(), DIM, seed);
    let ids: Vec<String> = range.clone().map(id).collect();
    let metas: Vec<Option<String>> = range.clone().map(|i| metadata(i, seed)).collect();
    let items: Vec<ItemRef<'_>> = (0..range.len())
        .map(|j| ItemRef {
            id: &ids[j],
            vector: &vectors[j * DIM..(j + 1) * DIM],
            metadata: metas[j].as_deref(),
            contents: None,
        })
        .collect();
    index.upsert(&items, Access::default()).unwrap();
}

/// The index as the test knows it: id → metadata.
type Model = HashMap<String, Option<serde_json::Value>>;

fn model_of(range: std::ops::Range<usize>, seed: u64) -> Model {
    range.map(|i| (id(i), metadata(i, seed).map(|m| serde_json::from_str(&m).unwrap()))).collect()
}

/// The reference: BM25 (Lucene's idf, k1 + 1 in the numerator) of every
/// item of `model` holding a term of `text` and passing `keep`, computed
/// from the formula over the items' terms, best first, ties by id.
fn reference(model: &Model, text: &str, keep: &dyn Fn(&serde_json::Value) -> bool) -> Vec<(String, f64)> {
    let doc = |md: &Option<serde_json::Value>| -> Vec<String> {
        let Some(md) = md else { return Vec::new() };
        let mut terms = md.get("title").and_then(|t| t.as_str()).map(tokenize).unwrap_or_default();
        for tag in md.get("tags").and_then(|t| t.as_array()).into_iter().flatten() {
            terms.extend(tokenize(tag.as_str().unwrap()));
        }
        terms
    };
    let docs: Vec<(&String, Vec<String>, &Option<serde_json::Value>)> =
        model.iter().map(|(id, md)| (id, doc(md), md)).collect();
    let n = docs.len() as f64;
    let avg = docs.iter().map(|d| d.1.len()).sum::<usize>() as f64 / n;
    let query = tokenize(text);
    let df: HashMap<&String, f64> =
        query.iter().map(|t| (t, docs.iter().filter(|d| d.1.contains(t)).count() as f64)).collect();
    let (k1, b) = (BM25.k1 as f64, BM25.b as f64);
    let mut out: Vec<(String, f64)> = docs
        .iter()
        .filter(|d| query.iter().any(|t| d.1.contains(t)) && d.2.as_ref().is_some_and(keep))
        .map(|d| {
            let score = query
                .iter()
                .map(|t| {
                    let tf = d.1.iter().filter(|x| *x == t).count() as f64;
                    let idf = (1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)).ln();
                    idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * d.1.len() as f64 / avg))
                })
                .sum();
            (d.0.clone(), score)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

fn keyword(index: &vx::Index, text: &str, filter: Option<&str>, top_k: usize, offset: usize) -> Vec<Hit> {
    let q = MetadataQuery { text: Some(text), filter, top_k, offset, ..Default::default() };
    index.query_metadata(&q, Access::default()).unwrap()
}

fn assert_same(got: &[Hit], want: &[(String, f64)], what: &str) {
    let ids: Vec<&str> = got.iter().map(|h| h.id.as_str()).collect();
    let want_ids: Vec<&str> = want.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(ids, want_ids, "{what}");
    for (h, (_, s)) in got.iter().zip(want) {
        assert!(((h.score as f64) - s).abs() <= 1e-5 * s.abs().max(1.0), "{what}: {} vs {s}", h.score);
        assert!(h.distance.is_nan(), "{what}: a keyword hit has no distance");
    }
}

const QUERIES: &[&str] = &["search", "running dogs", "the Encrypted INDEX", "key keys cipher", "bm25 fusion ranking"];

/// Keyword search equals the reference on both types, before and after
/// training, with and without filters (on a declared and an undeclared
/// field), paged, and ordered by a field instead of the score.
#[test]
fn keyword_scores_equal_the_formula() {
    let model = model_of(0..N, 1);
    for index_type in [IndexType::IvfFlat, IndexType::IvfRabitq] {
        let c = client("memory:");
        let index = c.create_index("t", &key(KEY), config(index_type)).unwrap();
        write(&index, 0..N, 1);
        for trained in [false, true] {
            if trained {
                index
                    .train(TrainParams { n_lists: 16, max_iters: 4, ..Default::default() }, Access::default())
                    .unwrap();
            }
            let what = |q: &str| format!("{index_type:?} trained={trained} '{q}'");
            for text in QUERIES {
                let want = reference(&model, text, &|_| true);
                assert!(want.len() > 20, "{}: a query matching little tests little", what(text));
                assert_same(&keyword(&index, text, None, 0, 0), &want, &what(text));
                // A page is the same slice of the whole order.
                assert_same(&keyword(&index, text, None, 7, 5), &want[5..12], &what(text));
                let tenant = reference(&model, text, &|m| m["tenant"] == 2);
                assert_same(&keyword(&index, text, Some(r#"{"tenant": 2}"#), 0, 0), &tenant, &what(text));
                // An undeclared field is evaluated row by row.
                let tagged = reference(&model, text, &|m| m.get("tags").is_some());
                assert_same(&keyword(&index, text, Some(r#"{"tags": {"$exists": true}}"#), 0, 0), &tagged, &what(text));
            }
            // Ordered by a field: the same matches, by tenant then id.
            let q = MetadataQuery { text: Some("search"), order_by: Some("tenant"), ..Default::default() };
            let got = index.query_metadata(&q, Access::default()).unwrap();
            let mut want = reference(&model, "search", &|_| true);
            want.sort_by_key(|(id, _)| (model[id].as_ref().unwrap()["tenant"].as_u64(), id.clone()));
            assert_same(&got, &want, &what("search by tenant"));
            // No searchable term: nothing matches.
            assert!(keyword(&index, "the of and", None, 0, 0).is_empty());
            assert!(keyword(&index, "", None, 0, 0).is_empty());
        }
    }
}

/// Weighted reciprocal-rank fusion of the vector ranking (vector_depth
/// deep) and the keyword ranking (text_depth deep), computed here from
/// the two rankings the index returns alone; every hit's distance is exact.
#[test]
fn hybrid_fuses_both_rankings_by_weighted_reciprocal_rank() {
    let c = client("memory:");
    let index = c.create_index("h", &key(KEY), config(IndexType::IvfFlat)).unwrap();
    write(&index, 0..N, 2);
    let queries = clustered(3, DIM, 77);
    let vectors: HashMap<String, Vec<f32>> = {
        let ids: Vec<String> = (0..N).map(id).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let items = index.get(&refs, include::VECTOR, Access::default()).unwrap();
        items.into_iter().map(|it| it.unwrap()).map(|it| (it.id.clone(), it.vector.clone().unwrap())).collect()
    };
    for (alpha, rrf_k, vector_depth, text_depth, filter) in [
        (0.5, 0, 0, 0, None),
        (0.8, 10, 30, 80, None),
        (0.0, 60, 20, 20, Some(r#"{"tenant": {"$in": [1, 3]}}"#)),
        (1.0, 1, 40, 10, Some(r#"{"tags": {"$exists": true}}"#)),
    ] {
        let top_k = 15;
        let fusion = Fusion { alpha, rrf_k, vector_depth, text_depth };
        let (vd, td) = (
            if vector_depth == 0 { 50 } else { vector_depth as usize },
            if text_depth == 0 { 50 } else { text_depth as usize },
        );
        let text = "searching encrypted lists";
        let params =
            QueryParams { top_k, filter, text: Some(text), fusion, include: include::DISTANCE, ..Default::default() };
        let got = index.query(&queries, 3, DIM, &params, Access::default()).unwrap();
        let plain = QueryParams { top_k: vd, filter, ..Default::default() };
        let by_vector = index.query(&queries, 3, DIM, &plain, Access::default()).unwrap();
        let by_text = index
            .query_metadata(
                &MetadataQuery { text: Some(text), filter, top_k: td, ..Default::default() },
                Access::default(),
            )
            .unwrap();
        let k = if rrf_k == 0 { 60.0 } else { rrf_k as f64 };
        for qi in 0..3 {
            let mut fused: HashMap<&str, f64> = HashMap::new();
            for (r, h) in by_vector[qi].iter().enumerate() {
                *fused.entry(&h.id).or_default() += alpha as f64 / (k + r as f64 + 1.0);
            }
            for (r, h) in by_text.iter().enumerate() {
                *fused.entry(&h.id).or_default() += (1.0 - alpha as f64) / (k + r as f64 + 1.0);
            }
            let mut want: Vec<(&str, f64)> = fused.into_iter().collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            want.truncate(top_k);
            let what = format!("alpha {alpha} k {rrf_k} depths {vector_depth}/{text_depth} query {qi}");
            assert_eq!(
                got[qi].iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
                want.iter().map(|w| w.0).collect::<Vec<_>>(),
                "{what}"
            );
            for (h, (_, s)) in got[qi].iter().zip(&want) {
                assert!((h.score as f64 - s).abs() < 1e-6, "{what}: score {} vs {s}", h.score);
                let q = &queries[qi * DIM..(qi + 1) * DIM];
                let exact = q.iter().zip(&vectors[&h.id]).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
                assert!(
                    (h.distance as f64 - exact).abs() <= 1e-5 * exact.max(1.0),
                    "{what}: distance {} vs {exact}",
                    h.distance
                );
            }
        }
    }
    // A plain vector query has no score.
    let plain = index
        .query(&queries[..DIM], 1, DIM, &QueryParams { top_k: 3, ..Default::default() }, Access::default())
        .unwrap();
    assert!(plain[0].iter().all(|h| h.score.is_nan()));
}

/// Overwrites, deletes and another handle's writes show in the next
/// keyword query; a reopened file index and a trained one answer the same.
#[test]
fn terms_follow_writes_deletes_and_other_handles() {
    let dir = TempDir::new("text");
    let c = client(&dir.uri());
    let index = c.create_index("w", &key(KEY), config(IndexType::IvfRabitq)).unwrap();
    // Enough items to train after the deletes.
    write(&index, 0..N + 100, 3);
    let mut model = model_of(0..N + 100, 3);
    let check = |index: &vx::Index, model: &Model, what: &str| {
        for text in QUERIES {
            assert_same(
                &keyword(index, text, None, 40, 0),
                &reference(model, text, &|_| true)[..40],
                &format!("{what} '{text}'"),
            );
        }
    };
    check(&index, &model, "first");
    // A second handle warms its own term index, then
    // sees the first handle's small writes (patched chunk by chunk).
    let other = c.load_index("w", Access { key: Some(&key(KEY)), user: None }).unwrap();
    check(&other, &model, "other handle");
    write(&index, 100..140, 4); // overwrites: new text
    model.extend(model_of(100..140, 4));
    let gone: Vec<String> = (200..260).map(id).collect();
    index.delete(&gone.iter().map(String::as_str).collect::<Vec<_>>(), Access::default()).unwrap();
    gone.iter().for_each(|g| {
        model.remove(g);
    });
    check(&index, &model, "after writes");
    check(&other, &model, "other handle after writes");
    // One item overwritten with new words, another deleted: each handle
    // patches the one or two chunks that changed.
    let zebra = r#"{"tenant": 1, "title": "zebras crossing"}"#;
    let v = vec![0.25f32; DIM];
    index
        .upsert(&[ItemRef { id: &id(5000), vector: &v, metadata: Some(zebra), contents: None }], Access::default())
        .unwrap();
    model.insert(id(5000), Some(serde_json::from_str(zebra).unwrap()));
    index.delete(&[&id(7000)], Access::default()).unwrap();
    model.remove(&id(7000));
    for (h, what) in [(&index, "writer"), (&other, "other handle")] {
        assert_same(&keyword(h, "zebra", None, 0, 0), &reference(&model, "zebra", &|_| true), what);
        assert_eq!(keyword(h, "zebra", None, 0, 0).len(), 1, "{what}");
        check(h, &model, &format!("{what} after one write"));
    }
    index.train(TrainParams { n_lists: 16, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
    check(&other, &model, "after training");
    drop((index, other, c));
    let reopened = client(&dir.uri()).load_index("w", Access { key: Some(&key(KEY)), user: None }).unwrap();
    check(&reopened, &model, "reopened");
}

/// On PostgreSQL, a second client (its own term index, built from the
/// rows it reads) gives the same keyword and hybrid answers.
#[test]
fn on_postgres_a_second_client_answers_the_same() {
    let Some((url, _admin)) = common::postgres_table("vx_test_text") else { return };
    let c = client(&url);
    let index = c.create_index("pg", &key(KEY), config(IndexType::IvfRabitq)).unwrap();
    write(&index, 0..3000, 8);
    let model = model_of(0..3000, 8);
    let other = client(&url).load_index("pg", Access { key: Some(&key(KEY)), user: None }).unwrap();
    let q = clustered(1, DIM, 5);
    let hybrid = QueryParams { top_k: 10, text: Some("fast searching"), ..Default::default() };
    for text in QUERIES {
        assert_same(&keyword(&other, text, None, 30, 0), &reference(&model, text, &|_| true)[..30], text);
    }
    let ids = |hits: Vec<Vec<Hit>>| hits[0].iter().map(|h| (h.id.clone(), h.score)).collect::<Vec<_>>();
    assert_eq!(
        ids(other.query(&q, 1, DIM, &hybrid, Access::default()).unwrap()),
        ids(index.query(&q, 1, DIM, &hybrid, Access::default()).unwrap())
    );
}

#[test]
fn bad_text_arguments_are_refused() {
    let c = client("memory:");
    // Even before the first item fixes the dimension, or with no query.
    let empty = c.create_index("e", &key(KEY), IndexConfig::default()).unwrap();
    let text_only = QueryParams { top_k: 5, text: Some("search"), ..Default::default() };
    for nq in [0, 1] {
        let err = empty.query(&vec![0.5; nq * DIM], nq, DIM, &text_only, Access::default()).unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "nq {nq}");
    }
    let plain = c.create_index("p", &key(KEY), IndexConfig { dimension: DIM as u32, ..Default::default() }).unwrap();
    write(&plain, 0..50, 5);
    let q = MetadataQuery { text: Some("search"), ..Default::default() };
    let err = plain.query_metadata(&q, Access::default()).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.to_string().contains("no text fields"), "{err}");
    let v = vec![0.5f32; DIM];
    let hybrid = QueryParams { top_k: 5, text: Some("search"), ..Default::default() };
    assert_eq!(plain.query(&v, 1, DIM, &hybrid, Access::default()).unwrap_err().status(), Status::InvalidArgument);
    let index = c.create_index("t", &key(KEY), config(IndexType::IvfFlat)).unwrap();
    write(&index, 0..50, 5);
    for fusion in [
        Fusion { alpha: 1.5, ..Default::default() },
        Fusion { alpha: f32::NAN, ..Default::default() },
        Fusion { alpha: -0.1, ..Default::default() },
        Fusion { vector_depth: 65_537, ..Default::default() },
        Fusion { text_depth: 65_537, ..Default::default() },
    ] {
        let p = QueryParams { fusion, ..hybrid.clone() };
        assert_eq!(
            index.query(&v, 1, DIM, &p, Access::default()).unwrap_err().status(),
            Status::InvalidArgument,
            "{fusion:?}"
        );
    }
    for (i, bad) in [
        IndexConfig { bm25: Bm25 { k1: -1.0, b: 0.5 }, ..config(IndexType::IvfFlat) },
        IndexConfig { bm25: Bm25 { k1: 1.0, b: 1.01 }, ..config(IndexType::IvfFlat) },
        IndexConfig { bm25: Bm25 { k1: f32::INFINITY, b: 0.5 }, ..config(IndexType::IvfFlat) },
        IndexConfig { text_fields: vec!["a".into(), "a".into()], ..config(IndexType::IvfFlat) },
        IndexConfig { text_fields: vec!["a..b".into()], ..config(IndexType::IvfFlat) },
        IndexConfig { text_fields: (0..65).map(|i| format!("f{i}")).collect(), ..config(IndexType::IvfFlat) },
    ]
    .into_iter()
    .enumerate()
    {
        let err = c.create_index(&format!("bad{i}"), &key(KEY), bad).unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "{i}: {err}");
    }
}

/// The term index is derived in memory and never stored: an index with
/// text fields writes the same objects, of the same sizes, as one without
/// (but for the few bytes naming the fields in the manifest).
#[cfg(feature = "test-hooks")]
#[test]
fn the_store_holds_no_term_index() {
    let sizes = |config: IndexConfig| {
        let c = client("memory:");
        let index = c.create_index("s", &key(KEY), config).unwrap();
        write(&index, 0..3000, 6);
        assert!(!keyword_or_empty(&index).is_empty() || index.config().unwrap().text_fields.is_empty());
        let mut objects: Vec<usize> = c.raw_store().scan_prefix(b"").unwrap().iter().map(|(_, v)| v.len()).collect();
        objects.sort_unstable();
        objects
    };
    fn keyword_or_empty(index: &vx::Index) -> Vec<Hit> {
        index
            .query_metadata(&MetadataQuery { text: Some("search"), ..Default::default() }, Access::default())
            .unwrap_or_default()
    }
    let with = sizes(config(IndexType::IvfFlat));
    let without = sizes(IndexConfig { text_fields: Vec::new(), ..config(IndexType::IvfFlat) });
    assert_eq!(with.len(), without.len(), "text fields add objects to the store");
    let (a, b): (usize, usize) = (with.iter().sum(), without.iter().sum());
    assert!(a.abs_diff(b) < 64, "text fields add {} bytes to the store", a.abs_diff(b));
}

/// Keyword search reads rows through the sealed loader, so an altered
/// chunk is INTEGRITY, never a wrong answer.
#[cfg(feature = "test-hooks")]
#[test]
fn a_tampered_chunk_is_detected() {
    let c = client("memory:");
    let index = c.create_index("x", &key(KEY), config(IndexType::IvfFlat)).unwrap();
    write(&index, 0..2000, 7);
    let fresh = common::with_a_tampered_chunk(&c);
    let reopened = fresh.load_index("x", Access { key: Some(&key(KEY)), user: None }).unwrap();
    let q = MetadataQuery { text: Some("search"), ..Default::default() };
    assert_eq!(reopened.query_metadata(&q, Access::default()).unwrap_err().status(), Status::Integrity);
}
