//! Metadata-only queries (`Index::query_metadata`, src/index/listing.rs):
//! the matches of a filter in the order of one field then id, paged, the
//! same on every index type trained or not, in step with writes, needing
//! READ, refusing bad arguments, and detecting tampered chunks.

mod common;

use common::{clustered, key, TempDir};
use vx::{include, Access, Client, ClientOptions, IndexConfig, IndexType, ItemRef, MetadataQuery, Status, TrainParams};

const DIM: usize = 8;
const N: usize = 10_000; // training needs 10k
const KEY: u8 = 6;

fn client(uri: &str) -> Client {
    Client::open(uri, ClientOptions { threads: 2, ..Default::default() }).unwrap()
}

/// Item i's metadata: a tenant, a date (missing on every 7th item, a
/// string on every 50th), a nested score; every 11th item has none.
fn metadata(i: usize) -> Option<String> {
    if i.is_multiple_of(11) {
        return None;
    }
    let date = match i {
        _ if i.is_multiple_of(7) => String::new(),
        _ if i.is_multiple_of(50) => format!(r#", "date": "d{}""#, i % 3),
        _ => format!(r#", "date": {}"#, (i * 7919) % 1000),
    };
    Some(format!(r#"{{"tenant": {}, "doc": {{"score": {}}}{date}}}"#, i % 4, (i * 31) % 97))
}

fn id(i: usize) -> String {
    format!("item-{i:05}")
}

fn filled(c: &Client, index_type: IndexType) -> vx::Index {
    let index = c
        .create_index("m", &key(KEY), IndexConfig { index_type, dimension: DIM as u32, ..Default::default() })
        .unwrap();
    let vectors = clustered(N, DIM, 2);
    let (ids, metas): (Vec<String>, Vec<Option<String>>) = (0..N).map(|i| (id(i), metadata(i))).unzip();
    let contents: Vec<Vec<u8>> = (0..N).map(|i| format!("contents {i}").into_bytes()).collect();
    let items: Vec<ItemRef<'_>> = (0..N)
        .map(|i| ItemRef {
            id: &ids[i],
            vector: &vectors[i * DIM..(i + 1) * DIM],
            metadata: metas[i].as_deref(),
            contents: i.is_multiple_of(2).then_some(&contents[i][..]),
        })
        .collect();
    index.upsert(&items, Access::default()).unwrap();
    index
}

/// What the index holds, as the test knows it: (id, metadata) per item.
fn model() -> Vec<(String, Option<serde_json::Value>)> {
    (0..N).map(|i| (id(i), metadata(i).map(|m| serde_json::from_str(&m).unwrap()))).collect()
}

/// The reference order, written independently of the library: matches of
/// `keep`, ordered by the date (missing/null < numbers < strings; the
/// direction reversed for descending) then by id.
fn reference(
    items: &[(String, Option<serde_json::Value>)],
    keep: &dyn Fn(&serde_json::Value) -> bool,
    asc: bool,
) -> Vec<String> {
    #[derive(PartialEq, PartialOrd)]
    enum K {
        Missing,
        Num(f64),
        Str(String),
    }
    let key = |m: &Option<serde_json::Value>| match m.as_ref().and_then(|m| m.get("date")) {
        Some(serde_json::Value::Number(n)) => K::Num(n.as_f64().unwrap()),
        Some(serde_json::Value::String(s)) => K::Str(s.clone()),
        _ => K::Missing,
    };
    let mut v: Vec<(K, &String)> =
        items.iter().filter(|(_, m)| m.as_ref().is_some_and(keep)).map(|(id, m)| (key(m), id)).collect();
    v.sort_by(|a, b| {
        let o = a.0.partial_cmp(&b.0).unwrap();
        (if asc { o } else { o.reverse() }).then(a.1.cmp(b.1))
    });
    v.into_iter().map(|(_, id)| id.clone()).collect()
}

fn ids_of(hits: &[vx::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

fn page(index: &vx::Index, q: &MetadataQuery<'_>) -> Vec<String> {
    ids_of(&index.query_metadata(q, Access::default()).unwrap())
}

/// Every page of `q` (by `size`), concatenated, and the answer with top_k 0.
fn all_pages(index: &vx::Index, q: &MetadataQuery<'_>, size: usize) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let p = page(index, &MetadataQuery { offset: out.len(), top_k: size, ..q.clone() });
        assert!(p.len() <= size);
        let done = p.len() < size;
        out.extend(p);
        if done {
            break;
        }
    }
    assert_eq!(out, page(index, &MetadataQuery { offset: 0, top_k: 0, ..q.clone() }), "top_k 0 is every match");
    out
}

fn check_orders(index: &vx::Index, what: &str) {
    let items = model();
    let tenant1 = MetadataQuery { filter: Some(r#"{"tenant": 1}"#), order_by: Some("date"), ..Default::default() };
    for asc in [true, false] {
        let q = MetadataQuery { ascending: asc, ..tenant1.clone() };
        let want = reference(&items, &|m| m["tenant"] == 1, asc);
        assert!(want.len() > 2000);
        assert_eq!(all_pages(index, &q, 37), want, "{what}: tenant 1 by date, ascending {asc}");
        // The first page alone, and one from the middle.
        assert_eq!(page(index, &MetadataQuery { top_k: 10, ..q.clone() }), want[..10], "{what}");
        assert_eq!(page(index, &MetadataQuery { top_k: 10, offset: 400, ..q.clone() }), want[400..410], "{what}");
        assert!(page(index, &MetadataQuery { top_k: 10, offset: want.len(), ..q.clone() }).is_empty());
    }
    // No order: by id; no filter: every item.
    let mut every: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
    every.sort();
    assert_eq!(page(index, &MetadataQuery::default()), every, "{what}: everything by id");
    assert_eq!(page(index, &MetadataQuery { top_k: 5, offset: 7, ..Default::default() }), every[7..12], "{what}");
    let descending = page(index, &MetadataQuery { top_k: 5, ascending: false, ..Default::default() });
    assert_eq!(descending, every.iter().rev().take(5).cloned().collect::<Vec<_>>(), "{what}: by id, descending");
    // A nested field, a range filter, descending.
    let q = MetadataQuery {
        filter: Some(r#"{"doc.score": {"$gte": 90}}"#),
        order_by: Some("doc.score"),
        ascending: false,
        top_k: 20,
        ..Default::default()
    };
    let hits = index.query_metadata(&q, Access::default()).unwrap();
    let scores: Vec<i64> = hits
        .iter()
        .map(|h| {
            let i: usize = h.id[5..].parse().unwrap();
            ((i * 31) % 97) as i64
        })
        .collect();
    assert_eq!(hits.len(), 20, "{what}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] == 96, "{what}: {scores:?}");
    // A filter nothing matches.
    assert!(page(index, &MetadataQuery { filter: Some(r#"{"tenant": 9}"#), ..Default::default() }).is_empty());
}

#[test]
fn pages_follow_the_order_on_every_index_type_trained_or_not() {
    for index_type in [IndexType::IvfFlat, IndexType::IvfRabitq] {
        let c = client("memory:");
        let index = filled(&c, index_type);
        check_orders(&index, &format!("{index_type:?} untrained"));
        index.train(TrainParams { n_lists: 12, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
        check_orders(&index, &format!("{index_type:?} trained"));
    }
}

#[test]
fn include_returns_what_was_stored() {
    for index_type in [IndexType::IvfFlat, IndexType::IvfRabitq] {
        let c = client("memory:");
        let index = filled(&c, index_type);
        index.train(TrainParams { n_lists: 12, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
        let vectors = clustered(N, DIM, 2);
        let q = MetadataQuery {
            filter: Some(r#"{"tenant": {"$in": [2, 3]}}"#),
            top_k: 50,
            include: include::METADATA | include::VECTOR | include::CONTENTS,
            ..Default::default()
        };
        let hits = index.query_metadata(&q, Access::default()).unwrap();
        assert_eq!(hits.len(), 50);
        for h in &hits {
            let i: usize = h.id[5..].parse().unwrap();
            assert_eq!(h.metadata, metadata(i), "{index_type:?} {}", h.id);
            assert_eq!(h.vector.as_deref(), Some(&vectors[i * DIM..(i + 1) * DIM]), "{index_type:?} {}", h.id);
            let want = i.is_multiple_of(2).then(|| format!("contents {i}").into_bytes());
            assert_eq!(h.contents, want, "{index_type:?} {}", h.id);
            assert!(h.distance.is_nan());
        }
        // Without include bits only ids come back.
        let bare = index.query_metadata(&MetadataQuery { include: 0, ..q }, Access::default()).unwrap();
        assert!(bare.iter().all(|h| h.metadata.is_none() && h.vector.is_none() && h.contents.is_none()));
        assert_eq!(ids_of(&bare), ids_of(&hits));
    }
}

#[test]
fn writes_show_in_the_next_query() {
    let c = client("memory:");
    let index = filled(&c, IndexType::IvfRabitq);
    index.train(TrainParams { n_lists: 12, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
    let q = MetadataQuery {
        filter: Some(r#"{"tenant": 1, "date": {"$exists": true}}"#),
        order_by: Some("date"),
        top_k: 3,
        ..Default::default()
    };
    let first = page(&index, &q);
    // Delete the first, move another in front with an overwrite, add a new one.
    index.delete(&[first[0].as_str()], Access::default()).unwrap();
    let v = clustered(2, DIM, 9);
    let items = [
        ItemRef { id: "item-00002", vector: &v[..DIM], metadata: Some(r#"{"tenant": 1, "date": -5}"#), contents: None },
        ItemRef { id: "new", vector: &v[DIM..], metadata: Some(r#"{"tenant": 1, "date": -5}"#), contents: None },
    ];
    index.upsert(&items, Access::default()).unwrap();
    let now = page(&index, &q);
    assert_eq!(now[..2], ["item-00002".to_string(), "new".to_string()], "ties broken by id");
    assert!(!now.contains(&first[0]));
    // And item-00002 left tenant 2.
    assert!(!page(&index, &MetadataQuery { filter: Some(r#"{"tenant": 2}"#), ..Default::default() })
        .contains(&"item-00002".to_string()));
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let c = client("memory:");
    let index = filled(&c, IndexType::IvfFlat);
    let status = |q: MetadataQuery<'_>| index.query_metadata(&q, Access::default()).unwrap_err();
    let e = status(MetadataQuery { include: include::DISTANCE, ..Default::default() });
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.to_string().contains("VX_INCLUDE_DISTANCE"), "{e}");
    assert_eq!(status(MetadataQuery { include: 1 << 9, ..Default::default() }).status(), Status::InvalidArgument);
    assert_eq!(status(MetadataQuery { filter: Some("{bad"), ..Default::default() }).status(), Status::InvalidFilter);
    let e = status(MetadataQuery { order_by: Some("a..b"), ..Default::default() });
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.to_string().contains("order_by"), "{e}");
    // An empty index answers nothing, an offset past the end nothing.
    let empty = c.create_index("empty", &key(KEY), IndexConfig::default()).unwrap();
    assert!(empty.query_metadata(&MetadataQuery::default(), Access::default()).unwrap().is_empty());
    assert!(page(&index, &MetadataQuery { offset: usize::MAX, top_k: usize::MAX, ..Default::default() }).is_empty());
}

#[test]
fn needs_read_and_the_right_key() {
    let c = client("memory:");
    let index = filled(&c, IndexType::IvfFlat);
    let (reader, writer) = ([1u8; 16], [2u8; 16]);
    index.create_user_keys(&reader, &key(21), vx::PERMISSION_READ, None).unwrap();
    index.create_user_keys(&writer, &key(22), vx::PERMISSION_WRITE, None).unwrap();
    let q = MetadataQuery { top_k: 3, ..Default::default() };
    let as_user = |u: &[u8; 16], k: u8| {
        let k = key(k);
        index.query_metadata(&q, Access { key: Some(&k), user: Some(u) }).map(|h| h.len()).map_err(|e| e.status())
    };
    assert_eq!(as_user(&reader, 21), Ok(3));
    assert_eq!(as_user(&writer, 22), Err(Status::PermissionDenied));
    assert_eq!(as_user(&reader, 23), Err(Status::WrongKey));
}

/// Defence: the listing reads sealed chunks (or heads) through the same
/// loader as queries, so an altered one is INTEGRITY, never a wrong page.
#[cfg(feature = "test-hooks")]
#[test]
fn a_tampered_chunk_is_detected() {
    for index_type in [IndexType::IvfFlat, IndexType::IvfRabitq] {
        let c = client("memory:");
        let index = filled(&c, index_type);
        index.train(TrainParams { n_lists: 12, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
        let fresh = common::with_a_tampered_chunk(&c);
        let k = key(KEY);
        let reopened = fresh.load_index("m", Access { key: Some(&k), user: None }).unwrap();
        let got = reopened.query_metadata(
            &MetadataQuery { filter: Some(r#"{"tenant": 0}"#), ..Default::default() },
            Access::default(),
        );
        assert_eq!(got.map(|_| ()).unwrap_err().status(), Status::Integrity, "{index_type:?}");
    }
}

#[test]
fn a_reopened_file_index_answers_the_same() {
    let dir = TempDir::new("listing");
    let q = MetadataQuery { filter: Some(r#"{"tenant": 3}"#), order_by: Some("date"), top_k: 25, ..Default::default() };
    let before = {
        let c = client(&dir.uri());
        let index = filled(&c, IndexType::IvfRabitq);
        index.train(TrainParams { n_lists: 12, max_iters: 4, ..Default::default() }, Access::default()).unwrap();
        page(&index, &q)
    };
    let c = client(&dir.uri());
    let k = key(KEY);
    let index = c.load_index("m", Access { key: Some(&k), user: None }).unwrap();
    assert_eq!(page(&index, &q), before);
    assert_eq!(before, reference(&model(), &|m| m["tenant"] == 3, true)[..25]);
}
