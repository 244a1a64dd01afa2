//! Filterable fields (src/index/fields.rs): an index that declares fields
//! filterable answers every filter exactly as its twin without them does,
//! on both index types, trained or not, through writes, deletes,
//! retraining and another handle's writes; and bad declarations are refused.

mod common;

use common::{clustered, key, TempDir};
use vx::{
    Access, Client, ClientOptions, Index, IndexConfig, IndexType, ItemRef, MetadataQuery, QueryParams, Status,
    TrainParams,
};

const DIM: usize = 16;
const N: usize = 12_000;

fn client(uri: &str) -> Client {
    Client::open(uri, ClientOptions { threads: 2, ..Default::default() }).unwrap()
}

/// Item i's metadata, `round` shifting the values so overwrites move items.
fn metadata(i: usize, round: usize) -> String {
    let j = i + round * 7;
    match j % 13 {
        0 => format!(r#"{{"tenant": {}}}"#, j % 40), // no date, no tags
        1 => r#"{"tenant": "x", "date": null}"#.to_string(),
        _ => format!(
            r#"{{"tenant": {}, "date": {}, "tags": ["t{}", "t{}"], "doc": {{"lang": "{}"}}}}"#,
            j % 40,
            (j * 7919) % 5000,
            j % 5,
            j % 11,
            ["en", "fr", "de"][j % 3]
        ),
    }
}

fn upsert(index: &Index, range: std::ops::Range<usize>, round: usize) {
    let vectors = clustered(N, DIM, 3);
    let ids: Vec<String> = range.clone().map(|i| format!("id{i}")).collect();
    let metas: Vec<String> = range.clone().map(|i| metadata(i, round)).collect();
    let items: Vec<ItemRef<'_>> = range
        .enumerate()
        .map(|(k, i)| ItemRef {
            id: &ids[k],
            vector: &vectors[i * DIM..(i + 1) * DIM],
            metadata: Some(&metas[k]),
            contents: None,
        })
        .collect();
    index.upsert(&items, Access::default()).unwrap();
}

/// The same data in an index with filterable fields and in one without.
fn twins(c: &Client, index_type: IndexType) -> (Index, Index) {
    let config = IndexConfig { index_type, dimension: DIM as u32, ..Default::default() };
    let filterable = vec!["tenant".into(), "date".into(), "tags".into(), "doc.lang".into()];
    let indexed = c.create_index("indexed", &key(1), IndexConfig { filterable, ..config.clone() }).unwrap();
    let plain = c.create_index("plain", &key(1), config).unwrap();
    for ix in [&indexed, &plain] {
        upsert(ix, 0..N, 0);
    }
    (indexed, plain)
}

const FILTERS: &[&str] = &[
    r#"{"tenant": 7}"#,
    r#"{"tenant": {"$in": [1, 2, "x"]}}"#,
    r#"{"date": {"$gte": 100, "$lt": 400}}"#,
    r#"{"date": {"$lte": 10}}"#,
    r#"{"tags": "t3"}"#,
    r#"{"doc.lang": {"$gt": "en"}}"#,
    r#"{"tenant": 3, "date": {"$gt": 2500}}"#,
    r#"{"$or": [{"tenant": 5}, {"tags": "t10"}]}"#,
    r#"{"$and": [{"tenant": {"$lt": 4}}, {"doc.lang": "fr"}]}"#,
    // Not narrowed by the index: evaluated row by row, as without it.
    r#"{"tenant": {"$ne": 3}}"#,
    r#"{"date": null}"#,
    r#"{"$or": [{"tenant": 5}, {"date": {"$exists": false}}]}"#,
    r#"{"tenant": 9, "date": {"$exists": true}}"#,
];

type Answer = Vec<Vec<(String, f32)>>;

fn answer(index: &Index, filter: &str, n_probes: u32) -> Answer {
    answer_k(index, filter, n_probes, 10)
}

fn answer_k(index: &Index, filter: &str, n_probes: u32, top_k: usize) -> Answer {
    // Queries like the items (the probe counts are calibrated on them): six
    // items' vectors, moved a little.
    let data = clustered(N, DIM, 3);
    let queries: Vec<f32> =
        (0..6).flat_map(|q| data[q * 1999 * DIM..(q * 1999 + 1) * DIM].iter().map(|x| x + 0.05)).collect();
    // IVF_RABITQ's twins have different rotations (drawn at training):
    // reranking every candidate makes their answers comparable.
    let p = QueryParams { top_k, filter: Some(filter), n_probes, rerank_mult: 4096, ..Default::default() };
    let hits = index.query(&queries, 6, DIM, &p, Access::default()).unwrap();
    hits.iter().map(|row| row.iter().map(|h| (h.id.clone(), h.distance)).collect()).collect()
}

fn listing(index: &Index, filter: &str) -> Vec<String> {
    let q = MetadataQuery { filter: Some(filter), order_by: Some("date"), top_k: 50, ..Default::default() };
    index.query_metadata(&q, Access::default()).unwrap().iter().map(|h| h.id.clone()).collect()
}

/// Every filter: the same exhaustive answer (untrained, or every list
/// probed) and the same listing, from both twins.
fn same_answers(indexed: &Index, plain: &Index, n_probes: u32, what: &str) {
    for f in FILTERS {
        assert_eq!(answer(indexed, f, n_probes), answer(plain, f, n_probes), "{what}: query {f}");
        assert_eq!(listing(indexed, f), listing(plain, f), "{what}: query_metadata {f}");
    }
}

#[test]
fn filterable_fields_change_no_answer() {
    for index_type in [IndexType::IvfFlat, IndexType::IvfRabitq] {
        let c = client("memory:");
        let (indexed, plain) = twins(&c, index_type);
        same_answers(&indexed, &plain, 0, &format!("{index_type:?} untrained"));
        let train = || TrainParams { n_lists: 24, max_iters: 4, ..Default::default() };
        for ix in [&indexed, &plain] {
            ix.train(train(), Access::default()).unwrap();
        }
        same_answers(&indexed, &plain, 24, &format!("{index_type:?} trained, every list"));
        // Overwrites that move items between values, deletes, new items.
        for ix in [&indexed, &plain] {
            upsert(ix, 0..3000, 1);
            let gone: Vec<String> = (5000..5400).map(|i| format!("id{i}")).collect();
            let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
            ix.delete(&gone, Access::default()).unwrap();
        }
        same_answers(&indexed, &plain, 24, &format!("{index_type:?} after writes"));
        // Small writes: the index is patched chunk by chunk, not rebuilt.
        for round in 2..6 {
            for ix in [&indexed, &plain] {
                upsert(ix, 100 * round..100 * round + 3, round);
                ix.delete(&[format!("id{}", 7000 + round).as_str()], Access::default()).unwrap();
            }
            for f in &FILTERS[..6] {
                let what = format!("{index_type:?} after small write {round}: {f}");
                assert_eq!(answer(&indexed, f, 24), answer(&plain, f, 24), "{what}");
                assert_eq!(listing(&indexed, f), listing(&plain, f), "{what}");
            }
        }
        for ix in [&indexed, &plain] {
            ix.train(train(), Access::default()).unwrap();
        }
        same_answers(&indexed, &plain, 24, &format!("{index_type:?} retrained"));
    }
}

/// With the automatic probe count, a selective filter on a filterable
/// field is answered exactly (from its candidate rows), where probing
/// A selective filter on declared fields probes as many lists as training
/// calibrated for its share (or scores its candidates exactly, when that is
/// cheaper), and further when the lists probed hold fewer of its matches
/// than an independent filter's would: this one's matches sit in 4 of the
/// 32 clusters (tenant = i mod 40, cluster = i mod 32), away from most
/// queries. Recall@10 ≥ 0.95 against the exhaustive answer, where probing
/// with the unfiltered count misses neighbours.
#[test]
fn selective_filters_reach_the_calibrated_recall() {
    let c = client("memory:");
    let (indexed, plain) = twins(&c, IndexType::IvfFlat);
    for ix in [&indexed, &plain] {
        ix.train(TrainParams { n_lists: 60, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
    }
    let selective = r#"{"tenant": 7, "date": {"$lt": 2500}}"#; // ~0.9% of the items
    let exhaustive = answer(&plain, selective, 60);
    let recall = |a: &Answer| {
        let found: usize = a.iter().zip(&exhaustive).map(|(a, e)| a.iter().filter(|h| e.contains(h)).count()).sum();
        found as f64 / exhaustive.iter().map(Vec::len).sum::<usize>() as f64
    };
    let (planned, alone) = (recall(&answer(&indexed, selective, 0)), recall(&answer(&plain, selective, 0)));
    assert!(planned >= 0.95, "recall {planned}");
    assert!(alone < planned, "probing alone should miss some (else this proves nothing): {alone}");
}

/// A broad filter probes as without the index (its candidate rows only
/// spare the filter's evaluation elsewhere): the same lists, the same hits.
#[test]
fn broad_filters_probe_the_same_lists() {
    for index_type in [IndexType::IvfFlat, IndexType::IvfRabitq] {
        let c = client("memory:");
        let (indexed, plain) = twins(&c, index_type);
        for ix in [&indexed, &plain] {
            ix.train(TrainParams { n_lists: 24, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
        }
        for f in [r#"{"tenant": {"$lt": 30}}"#, r#"{"tags": {"$in": ["t0", "t1", "t2", "t4"]}}"#] {
            // Deep enough that a candidate row lost from a mask would show.
            let (a, b) = (answer_k(&indexed, f, 6, 1000), answer_k(&plain, f, 6, 1000));
            assert_eq!(a, b, "{index_type:?} {f}");
            assert!(a.iter().all(|row| row.len() == 1000));
        }
    }
}

/// A second handle's writes reach the first handle's index of fields.
#[test]
fn another_handles_writes_are_seen() {
    let dir = TempDir::new("fields");
    let c = client(&dir.uri());
    let config = IndexConfig { filterable: vec!["tenant".into()], ..Default::default() };
    let first = c.create_index("f", &key(1), config).unwrap();
    upsert(&first, 0..1000, 0);
    let tenant = |ix: &Index| listing(ix, r#"{"tenant": 7}"#).len();
    let before = tenant(&first);
    let second = c.load_index("f", Access { key: Some(&key(1)), user: None }).unwrap();
    assert_eq!(second.config().unwrap().filterable, ["tenant"]);
    upsert(&second, 1000..2000, 0);
    second.delete(&["id7"], Access::default()).unwrap();
    assert_eq!(tenant(&first), tenant(&second));
    assert!(tenant(&first) > before);
}

#[test]
fn bad_declarations_are_refused() {
    let c = client("memory:");
    let bad = |fields: Vec<String>| {
        let e = c.create_index("b", &key(1), IndexConfig { filterable: fields, ..Default::default() }).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{e}");
        e.to_string()
    };
    assert!(bad(vec!["a..b".into()]).contains("filterable field 0"));
    assert!(bad(vec!["$a".into()]).contains("'$a'"));
    assert!(bad(vec!["".into()]).contains("filterable field 0"));
    assert!(bad(vec!["a".into(), "a".into()]).contains("twice"));
    assert!(bad((0..65).map(|i| format!("f{i}")).collect()).contains("at most 64"));
    assert!(bad(vec!["x".repeat(257)]).contains("256"));
    assert!(c.list_indexes().unwrap().is_empty(), "a refused create stores nothing");
}

/// On PostgreSQL (where candidate chunks are read ahead in groups), the
/// same answers as the twin without filterable fields, from a second client.
#[test]
fn on_postgres_the_answers_are_the_same() {
    let Some((url, _admin)) = common::postgres_table("vx_test_fields") else { return };
    let c = client(&url);
    let (indexed, plain) = twins(&c, IndexType::IvfRabitq);
    for ix in [&indexed, &plain] {
        ix.train(TrainParams { n_lists: 24, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
    }
    let other = client(&url);
    let indexed = other.load_index("indexed", Access { key: Some(&key(1)), user: None }).unwrap();
    for f in &FILTERS[..9] {
        assert_eq!(answer(&indexed, f, 24), answer(&plain, f, 24), "{f}");
        assert_eq!(listing(&indexed, f), listing(&plain, f), "{f}");
    }
}

/// Filtered queries probe as many lists as training calibrated for their
/// share of matches: at least the unfiltered count, more for a rarer
/// filter, and enough that filters independent of the vectors (a hash of
/// the item) keep recall@10 ≥ 0.95 on held-out queries at 10%, 1% and 0.1%.
#[test]
fn filtered_probe_counts_are_calibrated_at_training() {
    const N: usize = 40_000;
    let c = client("memory:");
    let filterable = vec!["g".into(), "b".into(), "t".into()];
    let config = IndexConfig { dimension: DIM as u32, filterable, ..Default::default() };
    let index = c.create_index("calibrated", &key(1), config).unwrap();
    let vectors = clustered(N + 100, DIM, 11);
    let (base, queries) = vectors.split_at(N * DIM);
    let hash = |i: usize| (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) % 1000;
    let ids: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let metas: Vec<String> =
        (0..N).map(|i| format!(r#"{{"g": {}, "b": {}, "t": {}}}"#, hash(i) % 10, hash(i) % 100, hash(i))).collect();
    let items: Vec<ItemRef<'_>> = (0..N)
        .map(|i| ItemRef {
            id: &ids[i],
            vector: &base[i * DIM..(i + 1) * DIM],
            metadata: Some(&metas[i]),
            contents: None,
        })
        .collect();
    index.upsert(&items, Access::default()).unwrap();
    index.train(TrainParams { n_lists: 200, max_iters: 8, ..Default::default() }, Access::default()).unwrap();
    let auto = index.auto_n_probes().unwrap();
    let [p10, p1, p01] = index.filtered_auto_n_probes().unwrap();
    assert!(0 < auto && auto <= p10 && p10 <= p1 && p1 <= p01 && p01 <= 200, "auto {auto}, {p10}, {p1}, {p01}");
    for (field, modulus) in [("g", 10u64), ("b", 100), ("t", 1000)] {
        let mut found = 0;
        for qi in 0..100 {
            let q = &queries[qi * DIM..(qi + 1) * DIM];
            let v = qi as u64 % modulus;
            let mut exact: Vec<(f32, usize)> = (0..N)
                .filter(|&i| hash(i) % modulus == v)
                .map(|i| (base[i * DIM..(i + 1) * DIM].iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want: Vec<String> = exact.iter().take(10).map(|e| e.1.to_string()).collect();
            let filter = format!(r#"{{"{field}": {v}}}"#);
            let p = QueryParams { top_k: 10, filter: Some(&filter), ..Default::default() };
            let hits = index.query(q, 1, DIM, &p, Access::default()).unwrap();
            found += hits[0].iter().filter(|h| want.contains(&h.id)).count();
        }
        let recall = found as f64 / 1000.0;
        assert!(recall >= 0.95, "{field} (1 in {modulus}): recall {recall} with probes {auto}, {p10}, {p1}, {p01}");
    }
}
