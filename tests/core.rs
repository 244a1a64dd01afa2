//! Integration tests of the Rust API: exact search against a brute-force
//! reference on every metric, filters, writes, persistence, keys, tampering.

mod common;

use common::{as_root, ids, items, key, memory_client, uniform, upsert_in_batches, TempDir};
use vx::{include, Access, Client, ClientOptions, Error, IndexConfig, ItemRef, Metric, QueryParams};

fn brute(
    metric: Metric,
    base: &[f32],
    q: &[f32],
    dim: usize,
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(usize, f32)> {
    let n = base.len() / dim;
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut all: Vec<(usize, f32)> = (0..n)
        .filter(|&i| keep(i))
        .map(|i| {
            let x = &base[i * dim..(i + 1) * dim];
            let dot: f32 = x.iter().zip(q).map(|(a, b)| a * b).sum();
            let l2: f32 = x.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            let d = match metric {
                Metric::Euclidean => l2.sqrt(),
                Metric::SquaredEuclidean => l2,
                Metric::InnerProduct => -dot,
                Metric::Cosine => 1.0 - dot / (norm(x) * norm(q)),
            };
            (i, d)
        })
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.truncate(k);
    all
}

fn fill(index: &vx::Index, base: &[f32], dim: usize, with_meta: bool) {
    let n = base.len() / dim;
    let names = ids("item-", n);
    let metas: Vec<String> = (0..n).map(|i| format!(r#"{{"group": {}, "even": {}}}"#, i % 7, i % 2 == 0)).collect();
    let metadata = with_meta.then_some(&metas[..]);
    upsert_in_batches(index, items(&names, base, dim, metadata), 997, Access::default()).unwrap();
}

#[allow(clippy::too_many_arguments)]
fn check_against_brute(
    index: &vx::Index,
    metric: Metric,
    base: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    filter: Option<&str>,
    keep: &dyn Fn(usize) -> bool,
) {
    let nq = queries.len() / dim;
    let params = QueryParams { top_k: k, filter, ..Default::default() };
    let got = index.query(queries, nq, dim, &params, Access::default()).unwrap();
    assert_eq!(got.len(), nq);
    for qi in 0..nq {
        let want = brute(metric, base, &queries[qi * dim..(qi + 1) * dim], dim, k, keep);
        assert_eq!(got[qi].len(), want.len(), "query {qi}: result count");
        for (r, (hit, (wi, wd))) in got[qi].iter().zip(&want).enumerate() {
            let tol = 1e-3 * (1.0 + wd.abs());
            assert!((hit.distance - wd).abs() <= tol, "{metric:?} q{qi} rank {r}: {} vs {wd}", hit.distance);
            // Ids must agree unless two distances tie within tolerance.
            if hit.id != format!("item-{wi}") {
                let i: usize = hit.id[5..].parse().unwrap();
                let d =
                    brute(metric, &base[i * dim..(i + 1) * dim], &queries[qi * dim..(qi + 1) * dim], dim, 1, |_| true)
                        [0]
                    .1;
                assert!((d - wd).abs() <= tol, "{metric:?} q{qi} rank {r}: id {} (d {d}) vs item-{wi} ({wd})", hit.id);
            }
        }
    }
}

#[test]
fn exact_search_matches_brute_force_on_every_metric() {
    let dim = 24;
    let base = uniform(3000, dim, 1);
    let client = Client::open("memory:", ClientOptions { threads: 2, ..Default::default() }).unwrap();
    for (i, metric) in
        [Metric::Euclidean, Metric::SquaredEuclidean, Metric::Cosine, Metric::InnerProduct].into_iter().enumerate()
    {
        let cfg = IndexConfig { metric, ..Default::default() };
        let index = client.create_index(&format!("m{i}"), &key(1), cfg).unwrap();
        fill(&index, &base, dim, true);
        assert_eq!(index.num_vectors(Access::default()).unwrap(), 3000);
        // One query at a time (pairwise kernel) and a batch (SGEMM path).
        check_against_brute(&index, metric, &base, &uniform(3, dim, 2), dim, 10, None, &|_| true);
        check_against_brute(&index, metric, &base, &uniform(20, dim, 3), dim, 25, None, &|_| true);
        check_against_brute(&index, metric, &base, &uniform(9, dim, 4), dim, 15, Some(r#"{"group": 3}"#), &|i| {
            i % 7 == 3
        });
    }
}

/// The distances a query returns are computed directly, whatever path chose
/// the hits: querying stored vectors in a batch (the SGEMM form |q|^2 +
/// |x|^2 - 2 q.x, off by up to ~1e-3 at d = 16 before) finds each at
/// distance exactly 0, and every query's distances batched equal its
/// distances alone to 1e-6 relative, on every metric.
#[test]
fn distances_are_exact_batched_or_alone() {
    let dim = 16;
    let base: Vec<f32> = uniform(2000, dim, 7).iter().map(|x| x * 40.0 + 100.0).collect();
    let client = Client::open("memory:", ClientOptions { threads: 2, ..Default::default() }).unwrap();
    for (i, metric) in
        [Metric::Euclidean, Metric::SquaredEuclidean, Metric::Cosine, Metric::InnerProduct].into_iter().enumerate()
    {
        let index =
            client.create_index(&format!("x{i}"), &key(1), IndexConfig { metric, ..Default::default() }).unwrap();
        fill(&index, &base, dim, false);
        let nq = 64;
        let queries = &base[..nq * dim];
        let params = QueryParams { top_k: 5, ..Default::default() };
        let batched = index.query(queries, nq, dim, &params, Access::default()).unwrap();
        for (qi, hits) in batched.iter().enumerate() {
            if matches!(metric, Metric::Euclidean | Metric::SquaredEuclidean) {
                assert_eq!(hits[0].distance, 0.0, "{metric:?}: stored vector {qi} is at {}", hits[0].distance);
            }
            let alone = index.query(&queries[qi * dim..(qi + 1) * dim], 1, dim, &params, Access::default()).unwrap();
            for (b, a) in hits.iter().zip(&alone[0]) {
                let scale = a.distance.abs().max(1e-30);
                assert!(
                    (b.distance - a.distance).abs() <= 1e-6 * scale,
                    "{metric:?} query {qi}: batched {} alone {}",
                    b.distance,
                    a.distance
                );
            }
        }
    }
}

/// A batch of queries (scored through one SGEMM a chunk) returns exactly
/// what each query returns alone, ids and distances, on every metric, for
/// data far from the origin (where |x|² + |q|² - 2 x·q rounds away the
/// gaps between neighbours) and data so small its products underflow.
#[test]
fn batched_and_alone_agree_far_from_the_origin_and_near_underflow() {
    let dim = 24;
    let client = Client::open("memory:", ClientOptions { threads: 2, ..Default::default() }).unwrap();
    type Scale = fn(f32) -> f32;
    let scales: [(&str, Scale); 2] = [("far", |x| x + 20_000.0), ("tiny", |x| x * 3e-23)];
    for (what, scale) in scales {
        let base: Vec<f32> = uniform(3000, dim, 11).iter().map(|&x| scale(x)).collect();
        for (i, metric) in
            [Metric::Euclidean, Metric::SquaredEuclidean, Metric::Cosine, Metric::InnerProduct].into_iter().enumerate()
        {
            let config = IndexConfig { metric, ..Default::default() };
            let index = client.create_index(&format!("{what}{i}"), &key(1), config).unwrap();
            fill(&index, &base, dim, false);
            let nq = 32;
            let queries: Vec<f32> = uniform(nq, dim, 12).iter().map(|&x| scale(x)).collect();
            let params = QueryParams { top_k: 10, ..Default::default() };
            let batched = index.query(&queries, nq, dim, &params, Access::default()).unwrap();
            for (qi, hits) in batched.iter().enumerate() {
                let alone =
                    index.query(&queries[qi * dim..(qi + 1) * dim], 1, dim, &params, Access::default()).unwrap();
                let rows = |h: &[vx::Hit]| h.iter().map(|h| (h.id.clone(), h.distance)).collect::<Vec<_>>();
                assert_eq!(rows(hits), rows(&alone[0]), "{what} {metric:?} query {qi}");
            }
        }
    }
}

#[test]
fn filtered_query_returns_top_k_when_that_many_match() {
    let dim = 8;
    let base = uniform(2000, dim, 5);
    let client = memory_client();
    let index = client.create_index("f", &key(1), IndexConfig::default()).unwrap();
    fill(&index, &base, dim, true);
    let q = uniform(1, dim, 6);
    let params = QueryParams {
        top_k: 50,
        filter: Some(r#"{"$and": [{"group": {"$in": [1, 2]}}, {"even": true}]}"#),
        include: include::ALL,
        ..Default::default()
    };
    let got = index.query(&q, 1, dim, &params, Access::default()).unwrap();
    assert_eq!(got[0].len(), 50);
    for h in &got[0] {
        let i: usize = h.id[5..].parse().unwrap();
        assert!(i.is_multiple_of(2) && (i % 7 == 1 || i % 7 == 2));
        assert!(h.metadata.as_deref().unwrap().contains("\"even\": true"));
        assert_eq!(h.vector.as_deref().unwrap(), &base[i * dim..(i + 1) * dim]);
    }
    // Fewer matches than top_k: all of them, no more.
    let params = QueryParams { top_k: 500, filter: Some(r#"{"group": 0, "even": false}"#), ..Default::default() };
    let got = index.query(&q, 1, dim, &params, Access::default()).unwrap();
    assert_eq!(got[0].len(), (0..2000).filter(|i| i % 7 == 0 && i % 2 == 1).count());
    let bad = QueryParams { filter: Some(r#"{"group": {"$gt": []}}"#), ..Default::default() };
    let e = index.query(&q, 1, dim, &bad, Access::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidFilter(_)) && e.to_string().contains("group.$gt"), "{e}");
}

#[test]
fn upsert_overwrites_get_delete_and_list() {
    let client = memory_client();
    let index = client.create_index("w", &key(1), IndexConfig::default()).unwrap();
    let v = [1.0f32, 2.0, 3.0];
    let items = [
        ItemRef { id: "a", vector: &v, metadata: Some(r#"{"x": 1}"#), contents: Some(b"first") },
        ItemRef { id: "b", vector: &v, metadata: None, contents: None },
        ItemRef { id: "a", vector: &[4.0, 5.0, 6.0], metadata: None, contents: Some(b"second") },
    ];
    index.upsert(&items, Access::default()).unwrap();
    assert_eq!(index.num_vectors(Access::default()).unwrap(), 2);
    let got = index.get(&["a", "zz", "b"], include::ALL, Access::default()).unwrap();
    let a = got[0].as_ref().unwrap();
    assert_eq!(a.vector.as_deref().unwrap(), &[4.0, 5.0, 6.0]);
    assert_eq!(a.contents.as_deref().unwrap(), b"second");
    assert!(a.metadata.is_none());
    assert!(got[1].is_none());
    assert!(got[2].as_ref().unwrap().contents.is_none());
    // Overwrite without contents drops the old contents.
    index.upsert(&[ItemRef { id: "a", vector: &v, metadata: None, contents: None }], Access::default()).unwrap();
    assert!(index.get(&["a"], include::CONTENTS, Access::default()).unwrap()[0].as_ref().unwrap().contents.is_none());
    assert_eq!(index.list_ids(0, 0, Access::default()).unwrap(), vec!["a", "b"]);
    assert_eq!(index.list_ids(1, 5, Access::default()).unwrap(), vec!["b"]);
    assert!(index.list_ids(7, 5, Access::default()).unwrap().is_empty());
    assert_eq!(index.delete(&["a", "nope", "a"], Access::default()).unwrap(), 1);
    assert_eq!(index.delete(&["nope"], Access::default()).unwrap(), 0);
    assert_eq!(index.num_vectors(Access::default()).unwrap(), 1);
    assert_eq!(index.list_ids(0, 0, Access::default()).unwrap(), vec!["b"]);
}

#[test]
fn failed_upsert_changes_nothing() {
    let client = memory_client();
    let index = client.create_index("atomic", &key(1), IndexConfig { dimension: 2, ..Default::default() }).unwrap();
    index
        .upsert(&[ItemRef { id: "keep", vector: &[1.0, 1.0], metadata: None, contents: None }], Access::default())
        .unwrap();
    let cases: Vec<(Vec<ItemRef<'_>>, vx::Status)> = vec![
        (
            vec![ItemRef { id: "x", vector: &[1.0, 2.0, 3.0], metadata: None, contents: None }],
            vx::Status::DimensionMismatch,
        ),
        (
            vec![ItemRef { id: "x", vector: &[1.0, f32::NAN], metadata: None, contents: None }],
            vx::Status::InvalidArgument,
        ),
        (vec![ItemRef { id: "", vector: &[1.0, 2.0], metadata: None, contents: None }], vx::Status::InvalidArgument),
        (
            vec![ItemRef { id: "x", vector: &[1.0, 2.0], metadata: Some("[1]"), contents: None }],
            vx::Status::InvalidJson,
        ),
        (
            vec![ItemRef { id: "x", vector: &[1.0, 2.0], metadata: Some("{oops"), contents: None }],
            vx::Status::InvalidJson,
        ),
        (
            vec![
                ItemRef { id: "ok", vector: &[1.0, 2.0], metadata: None, contents: None },
                ItemRef { id: "bad", vector: &[1.0], metadata: None, contents: None },
            ],
            vx::Status::DimensionMismatch,
        ),
    ];
    for (items, status) in cases {
        let e = index.upsert(&items, Access::default()).unwrap_err();
        assert_eq!(e.status(), status, "{e}");
    }
    assert_eq!(index.list_ids(0, 0, Access::default()).unwrap(), vec!["keep"]);
    let long = "x".repeat(1025);
    assert!(index
        .upsert(&[ItemRef { id: &long, vector: &[1.0, 2.0], metadata: None, contents: None }], Access::default())
        .is_err());
}

#[test]
fn keys_names_and_lifecycle() {
    let client = memory_client();
    let index = client.create_index("k", &key(1), IndexConfig::default()).unwrap();
    assert_eq!(
        client.create_index("k", &key(2), IndexConfig::default()).unwrap_err().status(),
        vx::Status::AlreadyExists
    );
    let wrong = client.load_index("k", as_root(&key(2))).unwrap_err();
    assert_eq!(wrong.status(), vx::Status::WrongKey);
    assert_eq!(client.load_index("nope", as_root(&key(1))).unwrap_err().status(), vx::Status::NotFound);
    // Per-call keys: the right one works, a wrong one is refused.
    let right = key(1);
    let bad = key(9);
    assert_eq!(index.num_vectors(Access { key: Some(&right), user: None }).unwrap(), 0);
    assert_eq!(index.num_vectors(Access { key: Some(&bad), user: None }).unwrap_err().status(), vx::Status::WrongKey);
    assert_eq!(
        index.num_vectors(Access { key: None, user: Some(&[1; 16]) }).unwrap_err().status(),
        vx::Status::InvalidArgument
    );
    client.create_index("other", &key(1), IndexConfig::default()).unwrap();
    assert_eq!(client.list_indexes().unwrap(), vec!["k", "other"]);
    index.delete_index(Access::default()).unwrap();
    assert_eq!(client.list_indexes().unwrap(), vec!["other"]);
    assert_eq!(index.num_vectors(Access::default()).unwrap_err().status(), vx::Status::NotFound);
    // The name can be used again, and the dead handle does not see the new index.
    client.create_index("k", &key(3), IndexConfig::default()).unwrap();
    assert_eq!(index.num_vectors(Access::default()).unwrap_err().status(), vx::Status::NotFound);
}

#[test]
fn dimension_fixed_by_first_upsert_and_checked() {
    let client = memory_client();
    let index = client.create_index("d", &key(1), IndexConfig::default()).unwrap();
    assert_eq!(index.dimension().unwrap(), 0);
    let got = index.query(&[1.0, 2.0], 1, 2, &QueryParams::default(), Access::default()).unwrap();
    assert!(got[0].is_empty());
    index
        .upsert(&[ItemRef { id: "a", vector: &[1.0, 2.0, 3.0], metadata: None, contents: None }], Access::default())
        .unwrap();
    assert_eq!(index.dimension().unwrap(), 3);
    let e = index.query(&[1.0, 2.0], 1, 2, &QueryParams::default(), Access::default()).unwrap_err();
    assert_eq!(e.status(), vx::Status::DimensionMismatch);
}

#[test]
fn file_store_reopens_with_identical_answers_and_sees_other_handles() {
    let dir = TempDir::new("core-reopen");
    let uri = dir.uri();
    let dim = 16;
    let base = uniform(5000, dim, 7);
    let queries = uniform(5, dim, 8);
    let params =
        QueryParams { top_k: 20, filter: Some(r#"{"even": true}"#), include: include::ALL, ..Default::default() };
    let before = {
        let client = Client::open(&uri, ClientOptions::default()).unwrap();
        let index = client.create_index("disk", &key(4), IndexConfig::default()).unwrap();
        fill(&index, &base, dim, true);
        // A second handle on the same client sees the first one's writes.
        let other = client.load_index("disk", as_root(&key(4))).unwrap();
        other.delete(&["item-0"], Access::default()).unwrap();
        assert_eq!(index.num_vectors(Access::default()).unwrap(), 4999);
        index.query(&queries, 5, dim, &params, Access::default()).unwrap()
    };
    let client = Client::open(&uri, ClientOptions { cache_bytes: 0, ..Default::default() }).unwrap();
    let index = client.load_index("disk", as_root(&key(4))).unwrap();
    let after = index.query(&queries, 5, dim, &params, Access::default()).unwrap();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        let b: Vec<_> = b.iter().map(|h| (&h.id, h.distance, &h.metadata)).collect();
        let a: Vec<_> = a.iter().map(|h| (&h.id, h.distance, &h.metadata)).collect();
        assert_eq!(a, b);
    }
}

#[test]
fn tampering_with_any_stored_object_is_detected() {
    use std::collections::BTreeMap;
    // Build an index in memory, then copy its objects into file stores with
    // one object altered each time, and check every read fails or is right.
    let dir = TempDir::new("core-tamper");
    let uri = dir.uri();
    // Batches over 128 KiB, so that the `file:` store appends to its value
    // log (it keeps smaller ones in redb).
    let dim = 32;
    let base = uniform(1200, dim, 11);
    let q = uniform(2, dim, 12);
    let params = QueryParams { top_k: 10, include: include::ALL, ..Default::default() };
    let reference = {
        let client = Client::open(&uri, ClientOptions::default()).unwrap();
        let index = client.create_index("t", &key(5), IndexConfig::default()).unwrap();
        fill(&index, &base, dim, true);
        index
            .upsert(
                &[ItemRef { id: "with-contents", vector: &base[..dim], metadata: None, contents: Some(b"secret") }],
                Access::default(),
            )
            .unwrap();
        index.query(&q, 2, dim, &params, Access::default()).unwrap()
    };
    // The store is the redb file and the value log's segments beside it.
    let pristine: BTreeMap<std::path::PathBuf, Vec<u8>> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert!(pristine.len() > 1, "the store wrote no value log: {:?}", pristine.keys());
    // Flip one byte at many positions through each file, every other file
    // put back as it was (opening a store may remove a segment that an
    // altered redb file no longer names).
    let mut outcomes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let flips = pristine.iter().flat_map(|(file, bytes)| {
        let step = (bytes.len() / 300).max(1);
        (0..bytes.len()).step_by(step).map(move |pos| (file, pos))
    });
    for (file, pos) in flips {
        for (path, bytes) in &pristine {
            let mut bytes = bytes.clone();
            if path == file {
                bytes[pos] ^= 0x5a;
            }
            std::fs::write(path, &bytes).unwrap();
        }
        let pos = format!("{pos} of {}", file.display());
        let result = std::panic::catch_unwind(|| -> vx::Result<Vec<Vec<vx::Hit>>> {
            let client = Client::open(&uri, ClientOptions { cache_bytes: 0, ..Default::default() })?;
            let index = client.load_index("t", as_root(&key(5)))?;
            let hits = index.query(&q, 2, dim, &params, Access::default())?;
            index.get(&["with-contents"], include::ALL, Access::default())?;
            index.list_ids(0, 0, Access::default())?;
            Ok(hits)
        });
        let outcome = match result {
            Err(_) => panic!("a flipped byte at {pos} caused a panic"),
            Ok(Ok(hits)) => {
                let same = hits.iter().zip(&reference).all(|(a, b)| {
                    a.len() == b.len()
                        && a.iter()
                            .zip(b)
                            .all(|(x, y)| x.id == y.id && x.distance == y.distance && x.metadata == y.metadata)
                });
                assert!(same, "a flipped byte at {pos} changed the answers without an error");
                "unchanged"
            }
            Ok(Err(e)) => match e.status() {
                vx::Status::Integrity => "integrity",
                vx::Status::WrongKey => "wrong key (key-check value altered)",
                vx::Status::NotFound => "not found (name altered)",
                vx::Status::Storage | vx::Status::Io => "storage",
                other => panic!("a flipped byte at {pos} gave {other:?}: {e}"),
            },
        };
        let kind = if file.ends_with("vx.redb") { "redb file" } else { "value log" };
        *outcomes.entry((kind, outcome)).or_default() += 1;
    }
    eprintln!("tamper outcomes: {outcomes:?}");
    for kind in ["redb file", "value log"] {
        assert!(outcomes.get(&(kind, "integrity")).copied().unwrap_or(0) > 0, "no flip in the {kind} was caught");
    }
}

#[test]
fn directory_grows_past_its_first_buckets_without_losing_items() {
    // 64 initial buckets x 1024 entries: 70k items force a doubling.
    let client = memory_client();
    let index = client.create_index("grow", &key(1), IndexConfig::default()).unwrap();
    let n = 70_000;
    let names = ids("item-", n);
    let base = uniform(n, 2, 21);
    upsert_in_batches(&index, items(&names, &base, 2, None), 20_000, Access::default()).unwrap();
    assert_eq!(index.num_vectors(Access::default()).unwrap(), n as u64);
    let probe = ["item-0", "item-33333", "item-69999"];
    let got = index.get(&probe, include::VECTOR, Access::default()).unwrap();
    assert!(got.iter().all(Option::is_some));
    assert_eq!(got[1].as_ref().unwrap().vector.as_deref().unwrap(), &base[33333 * 2..33333 * 2 + 2]);
    assert_eq!(index.delete(&probe, Access::default()).unwrap(), 3);
    assert_eq!(index.num_vectors(Access::default()).unwrap(), n as u64 - 3);
    assert!(index.get(&probe, 0, Access::default()).unwrap().iter().all(Option::is_none));
    assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), n - 3);
}

/// Overwrites and deletes find their ids whichever directory level holds
/// them, while the handle learns the membership filters of its buckets and
/// runs and the directory merges, folds and splits under them: 40k items
/// (64 buckets split into 157), every id overwritten twice in batches that
/// fold several times, then small writes that overwrite ids still in runs.
/// A filter answering for a bucket rewritten since it was built (a fold or
/// a split moves ids into it), or missing any entry of its run stripe,
/// would miss those ids, and the overwrites would add them twice.
#[test]
fn overwrites_find_their_ids_as_the_directory_folds_and_splits() {
    let client = memory_client();
    let index = client.create_index("refold", &key(1), IndexConfig::default()).unwrap();
    let n = 40_000;
    let names = ids("id-", n);
    let (first, second, third) = (uniform(n, 2, 1), uniform(n, 2, 2), uniform(n, 2, 3));
    let upsert = |range: std::ops::Range<usize>, base: &[f32]| {
        let batch = items(&names[range.clone()], &base[range.start * 2..range.end * 2], 2, None);
        upsert_in_batches(&index, batch, 2_000, Access::default()).unwrap();
    };
    upsert(0..n / 2, &first);
    upsert(0..n / 2, &second); // every bucket read (and its filter learned) here
    upsert(n / 2..n, &first); // folds that split most buckets
    upsert(0..n, &third);
    assert_eq!(index.num_vectors(Access::default()).unwrap(), n as u64);
    assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), n);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let got = index.get(&all, include::VECTOR, Access::default()).unwrap();
    for (i, item) in got.iter().enumerate() {
        assert_eq!(item.as_ref().unwrap().vector.as_deref().unwrap(), &third[i * 2..i * 2 + 2], "{}", names[i]);
    }

    // Runs that live across writes (the runs hold up to n/8 entries here):
    // each write adds 250 new ids and overwrites 250 written by the writes
    // before, most of them in runs the handle read, and learned the filters
    // of, in an earlier write.
    let extra = ids("new-", 12_500);
    let v = uniform(extra.len(), 2, 4);
    for k in 0..50 {
        let fresh = k * 250..(k + 1) * 250;
        let mut batch: Vec<ItemRef<'_>> =
            items(&extra[fresh.clone()], &v[fresh.start * 2..fresh.end * 2], 2, None).collect();
        if k > 0 {
            let old: Vec<usize> = (0..250).map(|j| (k * 7919 + j * 104_729) % fresh.start).collect();
            batch.extend(old.iter().map(|&i| ItemRef {
                id: &extra[i],
                vector: &v[i * 2..i * 2 + 2],
                metadata: None,
                contents: None,
            }));
        }
        index.upsert(&batch, Access::default()).unwrap();
    }
    assert_eq!(index.num_vectors(Access::default()).unwrap(), (n + extra.len()) as u64);
    assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), n + extra.len());

    assert_eq!(index.delete(&all[..n / 2], Access::default()).unwrap(), n / 2);
    assert_eq!(index.num_vectors(Access::default()).unwrap(), (n / 2 + extra.len()) as u64);
}

/// While a fold is under way its run answers for every id in it, folded
/// or not, and the runs written since answer before it: gets, overwrites
/// and deletes see each id's newest state at every step of the fold, a
/// reopened handle reads the fold from the root and goes on with it, and
/// training folds what is left into the buckets it rewrites anyway.
#[cfg(feature = "test-hooks")]
#[test]
fn a_fold_under_way_answers_for_its_ids_and_training_ends_it() {
    use std::collections::BTreeMap;
    let dir = TempDir::new("core-fold");
    let open = || Client::open(&dir.uri(), ClientOptions::default()).unwrap();
    let names = ids("f-", 60_000);
    let v = uniform(names.len(), 2, 5);
    // Every live id (by number) and its vector.
    let mut expected: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    let check = |index: &vx::Index, expected: &BTreeMap<usize, Vec<f32>>| {
        let probe: Vec<&str> =
            names[..expected.keys().last().map_or(0, |l| l + 1)].iter().map(String::as_str).collect();
        let got = index.get(&probe, include::VECTOR, Access::default()).unwrap();
        for (i, item) in got.into_iter().enumerate() {
            assert_eq!(item.as_ref().and_then(|it| it.vector.as_ref()), expected.get(&i), "{}", names[i]);
        }
        assert_eq!(index.num_vectors(Access::default()).unwrap(), expected.len() as u64);
    };
    // Write k: 300 new ids, 100 overwrites with new vectors and 50 deletes
    // of ids written before.
    let write = |index: &vx::Index, expected: &mut BTreeMap<usize, Vec<f32>>, k: usize| {
        let fresh = k * 300..(k + 1) * 300;
        let older: Vec<usize> = (0..150).map(|j| (k * 7919 + j * 104_729) % fresh.start.max(1)).collect();
        let mut batch: BTreeMap<usize, Vec<f32>> = fresh.clone().map(|i| (i, v[i * 2..i * 2 + 2].to_vec())).collect();
        if k > 0 {
            batch.extend(older[..100].iter().map(|&i| (i, vec![k as f32, i as f32])));
        }
        let doomed: Vec<&str> =
            older[100..].iter().filter(|i| k > 0 && !batch.contains_key(i)).map(|&i| names[i].as_str()).collect();
        let refs: Vec<ItemRef<'_>> = batch
            .iter()
            .map(|(&i, vector)| ItemRef { id: &names[i], vector, metadata: None, contents: None })
            .collect();
        index.upsert(&refs, Access::default()).unwrap();
        index.delete(&doomed, Access::default()).unwrap();
        expected.extend(batch);
        for id in doomed {
            expected.remove(&id[2..].parse::<usize>().unwrap());
        }
    };
    let client = open();
    let index = client.create_index("fold", &key(1), IndexConfig::default()).unwrap();
    let (mut k, mut seen_fold) = (0, false);
    // Until a fold that starts once there is enough to train is past a
    // third of its buckets, checking every id after each write from the
    // fold's start on.
    loop {
        write(&index, &mut expected, k);
        k += 1;
        match index.fold_progress().unwrap() {
            Some((done, all)) if seen_fold && done * 3 > all => break,
            Some((0, _)) if expected.len() >= 12_000 => seen_fold = true,
            None => assert!(!seen_fold, "the fold ended before a third of it was seen"),
            _ => {}
        }
        if seen_fold {
            check(&index, &expected);
        }
    }
    let under_way = index.fold_progress().unwrap();
    drop((index, client));
    let client = open();
    let index = client.load_index("fold", as_root(&key(1))).unwrap();
    assert_eq!(index.fold_progress().unwrap(), under_way);
    check(&index, &expected);
    while index.fold_progress().unwrap().is_some_and(|(done, all)| done * 3 < 2 * all) {
        write(&index, &mut expected, k);
        k += 1;
        check(&index, &expected);
    }
    assert!(index.fold_progress().unwrap().is_some());
    index.train(vx::TrainParams { n_lists: 16, max_iters: 3, ..Default::default() }, Access::default()).unwrap();
    assert_eq!(index.fold_progress().unwrap(), None);
    check(&index, &expected);
    write(&index, &mut expected, k);
    check(&index, &expected);
    assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), expected.len());
}

/// The folds grow the directory as they go (each bucket they reach while
/// it is due to split), so it keeps up with the items: when a fold starts,
/// its buckets average at most ~1/8 more than 256 entries (what the items
/// grew by since the last fold). 0 to 120k items in writes of 1,000.
#[cfg(feature = "test-hooks")]
#[test]
fn the_folds_grow_the_directory_with_the_items() {
    let client = memory_client();
    let index = client.create_index("grow", &key(1), IndexConfig::default()).unwrap();
    let names = ids("g-", 120_000);
    let v = uniform(names.len(), 2, 6);
    let mut starts = Vec::new();
    for (k, batch) in names.chunks(1000).enumerate() {
        let refs = items(batch, &v[k * 2000..(k + 1) * 2000], 2, None).collect::<Vec<_>>();
        index.upsert(&refs, Access::default()).unwrap();
        if let Some((0, buckets)) = index.fold_progress().unwrap() {
            starts.push(((k + 1) * 1000, buckets as usize));
        }
    }
    assert!(starts.len() >= 8, "{starts:?}");
    for &(items, buckets) in &starts {
        assert!(buckets * 300 >= items, "{buckets} buckets for {items} items: {starts:?}");
    }
    assert!(starts.last().unwrap().1 >= 350, "{starts:?}");
}

/// A `file:` store gives back by itself only what its value log collects
/// (segments at most half live): after deletes and a training run (which
/// rewrites every chunk), `compact` gives every dead byte and redb's free
/// pages back, and every item is still there. It needs WRITE; a READ key is refused.
#[test]
fn compact_gives_a_file_stores_free_space_back() {
    let dir = TempDir::new("core-compact");
    let size = || std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum::<u64>();
    let dim = 32;
    let n = 20_000;
    let base = uniform(n, dim, 11);
    let client = Client::open(&dir.uri(), ClientOptions::default()).unwrap();
    let index = client.create_index("compact", &key(4), IndexConfig::default()).unwrap();
    let names = ids("c", n);
    upsert_in_batches(&index, items(&names, &base, dim, None), 5000, Access::default()).unwrap();
    index.train(vx::TrainParams { n_lists: 50, max_iters: 5, ..Default::default() }, Access::default()).unwrap();
    let doomed: Vec<&str> = names[..n / 2].iter().map(String::as_str).collect();
    assert_eq!(index.delete(&doomed, Access::default()).unwrap(), n / 2);
    let before = size();

    let reader = [0x31; 16];
    index.create_user_keys(&reader, &key(5), vx::PERMISSION_READ, None).unwrap();
    let as_reader = Access { key: Some(&key(5)), user: Some(&reader) };
    assert_eq!(index.compact(as_reader).unwrap_err().status(), vx::Status::PermissionDenied);

    index.compact(Access::default()).unwrap();
    let after = size();
    let raw = (n / 2 * dim * 4) as u64;
    eprintln!("file: {before} bytes before compacting, {after} after; live raw vectors {raw}");
    assert!(after < before / 2, "compacting freed too little: {before} -> {after}");
    assert_eq!(index.num_vectors(Access::default()).unwrap(), (n / 2) as u64);
    let kept: Vec<&str> = names[n / 2..].iter().map(String::as_str).collect();
    assert!(index.get(&kept, include::VECTOR, Access::default()).unwrap().iter().all(Option::is_some));
    // The compacted file opens again in a new client with the same answers.
    drop(index);
    drop(client);
    let client = Client::open(&dir.uri(), ClientOptions::default()).unwrap();
    let index = client.load_index("compact", as_root(&key(4))).unwrap();
    assert_eq!(index.num_vectors(Access::default()).unwrap(), (n / 2) as u64);
}
