//! Training and IVF search from the Rust API (the rules: src/index/ivf.rs), and
//! recall on the real embeddings of ../shared/data.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{clustered, ids, items, key, memory_client, upsert_in_batches, Dataset};
use vx::{
    include, Access, Client, ClientOptions, Error, IndexConfig, ItemRef, Metric, QueryParams, Status, TrainParams,
    TrainingState,
};

const KEY: u8 = 9;

fn filled(metric: Metric, n: usize, dim: usize) -> (Client, vx::Index, Vec<f32>) {
    let client = Client::open("memory:", ClientOptions { threads: 2, ..Default::default() }).unwrap();
    let index = client.create_index("t", &key(KEY), IndexConfig { metric, ..Default::default() }).unwrap();
    let base = clustered(n, dim, 1);
    let names = ids("", n);
    let metas: Vec<String> = (0..n).map(|i| format!(r#"{{"m": {}}}"#, i % 10)).collect();
    upsert_in_batches(&index, items(&names, &base, dim, Some(&metas)), 5000, Access::default()).unwrap();
    (client, index, base)
}

fn ids_of(hits: &[Vec<vx::Hit>]) -> Vec<Vec<String>> {
    hits.iter().map(|r| r.iter().map(|h| h.id.clone()).collect()).collect()
}

#[test]
fn not_enough_vectors_names_both_numbers_and_changes_nothing() {
    let (_c, index, _) = filled(Metric::Euclidean, 9_999, 4);
    let e = index.train(TrainParams::default(), Access::default()).unwrap_err();
    assert_eq!(e.status(), Status::NotEnoughVectors);
    assert!(e.to_string().contains("10000") && e.to_string().contains("9999"), "{e}");
    let e = index.train(TrainParams { n_lists: 6000, ..Default::default() }, Access::default()).unwrap_err();
    assert!(e.to_string().contains("12000"), "{e}");
    assert_eq!(index.training_state().unwrap(), TrainingState::Untrained);
    let bad = TrainParams { tolerance: -1.0, ..Default::default() };
    assert_eq!(index.train(bad, Access::default()).unwrap_err().status(), Status::InvalidArgument);
    let bad = TrainParams { tolerance: f64::NAN, ..Default::default() };
    assert_eq!(index.train(bad, Access::default()).unwrap_err().status(), Status::InvalidArgument);
}

#[test]
fn full_probe_equals_exhaustive_on_every_metric_and_later_upserts_land_in_lists() {
    for metric in [Metric::Euclidean, Metric::SquaredEuclidean, Metric::Cosine, Metric::InnerProduct] {
        let (_c, index, _) = filled(metric, 12_000, 8);
        let queries = clustered(20, 8, 99);
        let exhaustive = QueryParams { top_k: 15, filter: Some(r#"{"m": {"$lt": 5}}"#), ..Default::default() };
        let before = index.query(&queries, 20, 8, &exhaustive, Access::default()).unwrap();
        let report =
            index.train(TrainParams { n_lists: 40, max_iters: 10, ..Default::default() }, Access::default()).unwrap();
        assert_eq!(report.n_lists, 40);
        assert_eq!(index.training_state().unwrap(), TrainingState::Trained);
        assert_eq!(index.n_lists().unwrap(), 40);
        assert_eq!(index.num_vectors(Access::default()).unwrap(), 12_000);
        let all = QueryParams { n_probes: 40, ..exhaustive.clone() };
        let after = index.query(&queries, 20, 8, &all, Access::default()).unwrap();
        assert_eq!(ids_of(&before), ids_of(&after), "{metric:?}: n_probes = n_lists must equal exhaustive");
        for q in 0..20 {
            let one = index.query(&queries[q * 8..(q + 1) * 8], 1, 8, &all, Access::default()).unwrap();
            assert_eq!(ids_of(&one)[0], ids_of(&before)[q], "{metric:?}: single query {q}");
        }
        // Upserts and overwrites after training are found, and deletes vanish.
        let v = &queries[..8];
        let items = [ItemRef { id: "new", vector: v, metadata: Some(r#"{"m": 0}"#), contents: Some(b"c") }];
        index.upsert(&items, Access::default()).unwrap();
        let p = QueryParams { top_k: 1, include: include::ALL, ..Default::default() };
        let hit = &index.query(v, 1, 8, &p, Access::default()).unwrap()[0][0];
        assert_eq!((hit.id.as_str(), hit.contents.as_deref()), ("new", Some(&b"c"[..])));
        assert_eq!(index.delete(&["new", "0"], Access::default()).unwrap(), 2);
        assert_eq!(
            index.get(&["new", "0", "1"], 0, Access::default()).unwrap().iter().filter(|x| x.is_some()).count(),
            1
        );
        assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), 11_999);
    }
}

#[test]
fn training_is_deterministic_cancellable_and_retrainable() {
    let (_c, index, _) = filled(Metric::Euclidean, 11_000, 8);
    let queries = clustered(5, 8, 7);
    let p = QueryParams { top_k: 5, n_probes: 3, ..Default::default() };
    let mut seen = Vec::new();
    let mut cancel_at_3 = |it: u32, max: u32, obj: f64| {
        seen.push((it, max, obj));
        it == 3
    };
    let cancelled = TrainParams {
        n_lists: 20,
        max_iters: 50,
        tolerance: 1e-12,
        progress: Some(&mut cancel_at_3),
        ..Default::default()
    };
    let e = index.train(cancelled, Access::default()).unwrap_err();
    assert!(matches!(e, Error::Cancelled(_)));
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].1, 50);
    assert_eq!(
        index.training_state().unwrap(),
        TrainingState::Untrained,
        "a cancelled training leaves the index as it was"
    );

    let a = index.train(TrainParams { n_lists: 20, seed: 5, ..Default::default() }, Access::default()).unwrap();
    let first = index.query(&queries, 5, 8, &p, Access::default()).unwrap();
    let b = index.train(TrainParams { n_lists: 20, seed: 5, ..Default::default() }, Access::default()).unwrap();
    assert_eq!(a.objective, b.objective, "same seed, same result");
    assert_eq!(ids_of(&first), ids_of(&index.query(&queries, 5, 8, &p, Access::default()).unwrap()));
    let c = index
        .train(TrainParams { n_lists: 30, batch_size: 2000, max_iters: 20, ..Default::default() }, Access::default())
        .unwrap();
    assert_eq!((c.n_lists, index.n_lists().unwrap()), (30, 30));
    assert_eq!(index.num_vectors(Access::default()).unwrap(), 11_000);
}

#[test]
fn memory_limit_subsamples_or_refuses() {
    let (_c, index, _) = filled(Metric::Euclidean, 10_000, 64);
    let e = index.train(TrainParams { n_lists: 100, max_memory_mib: 0, ..Default::default() }, Access::default());
    assert!(e.is_ok());
    let tiny = TrainParams { n_lists: 4000, max_memory_mib: 1, ..Default::default() };
    let e = index.train(tiny, Access::default()).unwrap_err();
    assert_eq!(e.status(), Status::MemoryLimit, "{e}");
    let small = TrainParams { n_lists: 50, max_memory_mib: 1, max_iters: 5, ..Default::default() };
    let r = index.train(small, Access::default()).unwrap();
    assert!(r.sample_size < 10_000 && r.sample_size >= 50, "{}", r.sample_size);
}

#[test]
fn greedy_finds_top_k_under_a_selective_filter() {
    let (_c, index, _) = filled(Metric::Euclidean, 12_000, 8);
    index.train(TrainParams { n_lists: 60, max_iters: 10, ..Default::default() }, Access::default()).unwrap();
    let q = clustered(1, 8, 3);
    // m == 7 and id ends in 7: roughly 1 in 10 items, spread over every list.
    let p = QueryParams { top_k: 200, n_probes: 1, filter: Some(r#"{"m": 7}"#), ..Default::default() };
    let plain = index.query(&q, 1, 8, &p, Access::default()).unwrap();
    let greedy = index.query(&q, 1, 8, &QueryParams { greedy: true, ..p.clone() }, Access::default()).unwrap();
    assert!(plain[0].len() < 200);
    assert_eq!(greedy[0].len(), 200);
}

#[test]
fn queries_race_a_training_run() {
    let (_c, index, _) = filled(Metric::Euclidean, 15_000, 16);
    let index = Arc::new(index);
    let done = Arc::new(AtomicBool::new(false));
    let queries = clustered(4, 16, 11);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (index, done, queries) = (index.clone(), done.clone(), queries.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                let p = QueryParams { top_k: 10, ..Default::default() };
                while !done.load(Ordering::Acquire) || n == 0 {
                    let r = index.query(&queries, 4, 16, &p, Access::default()).unwrap();
                    assert!(r.iter().all(|row| row.len() == 10));
                    n += 1;
                }
                n
            })
        })
        .collect();
    index.train(TrainParams { n_lists: 50, max_iters: 30, ..Default::default() }, Access::default()).unwrap();
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(index.training_state().unwrap(), TrainingState::Trained);
}

#[test]
fn recall_on_real_embeddings_with_automatic_parameters() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/minilm-20k");
    if !dir.join("base.fvecs").exists() {
        eprintln!("skipped: {} not found", dir.display());
        return;
    }
    let ds = Dataset::load(&dir, "minilm-20k");
    let dim = ds.dim;
    let client = memory_client();
    let index = client.create_index("minilm", &key(KEY), IndexConfig::default()).unwrap();
    let names = ids("", ds.n());
    upsert_in_batches(&index, items(&names, &ds.base, dim, None), usize::MAX, Access::default()).unwrap();
    index.train(TrainParams::default(), Access::default()).unwrap();
    let nq = 300;
    let recall_at = |n_probes: u32| {
        let p = QueryParams { top_k: 10, n_probes, ..Default::default() };
        ds.recall_at_10(&index.query(&ds.queries[..nq * dim], nq, dim, &p, Access::default()).unwrap())
    };
    // VX_SWEEP_PROBES=8,17,32 prints the curve behind the automatic rule.
    if let Ok(list) = std::env::var("VX_SWEEP_PROBES") {
        for probes in list.split(',').map(|x| x.parse::<u32>().unwrap()) {
            eprintln!("n_probes {probes}: recall@10 {:.3}", recall_at(probes));
        }
    }
    let recall = recall_at(0); // automatic n_probes
    let auto = index.auto_n_probes().unwrap();
    eprintln!("recall@10 with automatic n_lists {} and n_probes ({auto}): {recall:.3}", index.n_lists().unwrap());
    assert!(auto >= 1 && auto <= index.n_lists().unwrap());
    assert!(recall >= 0.95, "recall@10 {recall}");
}

/// Small writes into a trained index add chunks instead of rewriting list
/// tails, and repack a list's small newest chunks as they pile up, moving
/// rows (and their directory entries) between chunks. Nothing may be lost
/// on the way: after hundreds of one- and few-item upserts, overwrites and
/// deletes, every live item reads back exactly (vector, metadata, contents),
/// a full probe finds each as its own nearest, and the chunks stay few: about
/// log2 small ones per list, not one per write.
#[test]
fn small_writes_into_a_trained_index_repack_without_losing_anything() {
    let client = Client::open("memory:", ClientOptions { threads: 2, ..Default::default() }).unwrap();
    let index = client.create_index("t", &key(KEY), IndexConfig::default()).unwrap();
    let (dim, n, lists) = (8, 10_000, 4u32);
    let base = clustered(n, dim, 3);
    let names = ids("base", n);
    upsert_in_batches(&index, items(&names, &base, dim, None), 1000, Access::default()).unwrap();
    index
        .train(TrainParams { n_lists: lists, max_iters: 4, seed: 1, ..Default::default() }, Access::default())
        .unwrap();

    // The live state the index must hold: id -> (vector, metadata, contents).
    type Held = (Vec<f32>, Option<String>, Option<Vec<u8>>);
    type Live = std::collections::BTreeMap<String, Held>;
    let mut live: Live = names
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), (base[i * dim..(i + 1) * dim].to_vec(), None, None)))
        .collect();
    let extra = clustered(2000, dim, 4);
    let mut rng = 7u64;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    for w in 0..400 {
        let batch = 1 + next() % 5;
        let mut writes: Vec<(String, Held)> = Vec::new();
        for b in 0..batch {
            let id = if next() % 4 == 0 { names[next() % n].clone() } else { format!("new{w}-{b}") };
            let row = next() % 2000;
            let meta = (next() % 2 == 0).then(|| format!(r#"{{"w": {w}}}"#));
            let contents = (next() % 2 == 0).then(|| format!("contents of {id} at {w}").into_bytes());
            writes.push((id, (extra[row * dim..(row + 1) * dim].to_vec(), meta, contents)));
        }
        let refs: Vec<ItemRef> = writes
            .iter()
            .map(|(id, (v, m, c))| ItemRef { id, vector: v, metadata: m.as_deref(), contents: c.as_deref() })
            .collect();
        index.upsert(&refs, Access::default()).unwrap();
        live.extend(writes);
        if w % 10 == 0 {
            let doomed = live.keys().nth(next() % live.len()).unwrap().clone();
            assert_eq!(index.delete(&[&doomed], Access::default()).unwrap(), 1);
            live.remove(&doomed);
        }
    }

    assert_eq!(index.num_vectors(Access::default()).unwrap(), live.len() as u64);
    let all: Vec<&str> = live.keys().map(String::as_str).collect();
    let got = index.get(&all, include::ALL, Access::default()).unwrap();
    for ((id, (v, m, c)), item) in live.iter().zip(&got) {
        let item = item.as_ref().unwrap_or_else(|| panic!("{id} is gone"));
        assert_eq!(item.vector.as_deref(), Some(&v[..]), "{id}");
        assert_eq!(&item.metadata, m, "{id}");
        assert_eq!(&item.contents, c, "{id}");
    }
    let params = QueryParams { top_k: 1, n_probes: lists, include: include::VECTOR, ..Default::default() };
    let probe: Vec<(&String, &Vec<f32>)> = live.iter().map(|(id, (v, _, _))| (id, v)).step_by(7).collect();
    let queries: Vec<f32> = probe.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let hits = index.query(&queries, probe.len(), dim, &params, Access::default()).unwrap();
    for ((id, v), h) in probe.iter().zip(&hits) {
        // Its own vector (or an equal one another id holds), whatever the
        // rounding of the batched distance.
        assert_eq!(h[0].vector.as_deref(), Some(&v[..]), "{id}: nearest is {} at {}", h[0].id, h[0].distance);
    }

    // Chunks: the full ones the items need, plus a few small ones per list.
    let chunks = client.raw_store().scan_keys(b"o/").unwrap().iter().filter(|k| k.len() > 18 && k[18] == b'C').count();
    let full = (live.len() * (dim * 4 + 16)).div_ceil(64 << 10);
    assert!(chunks <= full + lists as usize * 14, "{chunks} chunks for {} items in {lists} lists", live.len());
}
