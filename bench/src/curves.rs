//! `--only curves`: recall@10 against queries per second for vx's two IVF
//! index types on one dataset, as bench/peers.py measures FAISS and hnswlib
//! (bench/curves.sh runs both and plots them together). For each index
//! type, on a `file:` store: fill, train (timed), then sweeps of n_probes
//! (and rerank_mult for IVF_RABITQ)
//!
//! * with a warm cache that holds everything (single queries on 1 thread,
//!   batches on each of --threads), and
//! * with the decrypted cache a quarter of the raw vector bytes, on fresh
//!   queries in a cache full of other queries' data (`rates_fresh`), where
//!   the bytes each query decrypts (`vx::opened_bytes`) and the process's
//!   resident memory are reported too.

use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::fixtures::{as_root, file_uri, ids, key, Dataset};
use crate::{emit, fill, proc_status_bytes, s, IvfOptions, KEY};
use vx::{Access, Client, ClientOptions, IndexConfig, IndexType, QueryParams, TrainParams};

/// Each index type measured: its name in the results and its configuration.
fn kinds() -> Vec<(&'static str, IndexConfig, Vec<u32>)> {
    let rabitq = |bits| IndexConfig { index_type: IndexType::IvfRabitq, quantizer_bits: bits, ..Default::default() };
    vec![
        ("ivf-flat", IndexConfig::default(), vec![0]),
        // Dense where the sets measured here reach recall 0.95 (rerank 3-6).
        ("ivf-rabitq", rabitq(0), vec![0, 2, 3, 4, 6, 8]),
        ("ivf-rabitq-1bit", rabitq(1), vec![0, 4, 10]),
        // Finer codes: longer heads, fewer candidates to rerank (what a
        // cache smaller than the vectors must read from the store).
        ("ivf-rabitq-4bit", rabitq(4), vec![0, 1, 2, 3, 4]),
    ]
}

struct Rates {
    recall: f64,
    qps_single: f64,
    qps_batch: f64,
    opened_per_query: f64,
}

/// With a cache that holds everything this setting reads (it is read once
/// before being timed: IVF_RABITQ's units, which the warm-up reranks few of).
fn rates(index: &vx::Index, ds: &Dataset, nq: usize, single_n: usize, params: &QueryParams<'_>) -> Rates {
    let queries = &ds.queries[..nq * ds.dim];
    // VX_CURVES_REPEAT=N runs the timed batch and the single queries N times
    // each (for a profiler, or longer timed phases on a noisy machine); the
    // quarter-cache rows (`rates_fresh`) run once whatever it says.
    let repeat: usize = std::env::var("VX_CURVES_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
    let mut hits = index.query(queries, nq, ds.dim, params, Access::default()).unwrap();
    let t0 = Instant::now();
    for _ in 0..repeat {
        hits = index.query(queries, nq, ds.dim, params, Access::default()).unwrap();
    }
    let qps_batch = (nq * repeat) as f64 / t0.elapsed().as_secs_f64();
    let opened = vx::opened_bytes();
    let t0 = Instant::now();
    for _ in 0..repeat {
        for qi in 0..single_n {
            index.query(&queries[qi * ds.dim..(qi + 1) * ds.dim], 1, ds.dim, params, Access::default()).unwrap();
        }
    }
    let qps_single = (single_n * repeat) as f64 / t0.elapsed().as_secs_f64();
    let opened_per_query = (vx::opened_bytes() - opened) as f64 / (single_n * repeat) as f64;
    Rates { recall: ds.recall_at_10(&hits), qps_single, qps_batch, opened_per_query }
}

/// With a cache smaller than what the queries read: each query's first
/// visit, in a cache already full of other queries' data (a long-running
/// process's steady state). Single queries run first, on queries
/// `0..single_n`, so each decrypts what it needs; the batch then runs on
/// the rest (none of whose reads the singles made, but for overlaps any
/// query has with another; at the second thread count, one single query
/// and the batch on the others). Recall is over all `nq` queries.
fn rates_fresh(index: &vx::Index, ds: &Dataset, nq: usize, single_n: usize, params: &QueryParams<'_>) -> Rates {
    let query = |qi: usize| &ds.queries[qi * ds.dim..(qi + 1) * ds.dim];
    let opened = vx::opened_bytes();
    let t0 = Instant::now();
    let mut hits: Vec<_> = (0..single_n)
        .map(|qi| index.query(query(qi), 1, ds.dim, params, Access::default()).unwrap().remove(0))
        .collect();
    let qps_single = single_n as f64 / t0.elapsed().as_secs_f64();
    let opened_per_query = (vx::opened_bytes() - opened) as f64 / single_n as f64;
    let rest = &ds.queries[single_n * ds.dim..nq * ds.dim];
    let t0 = Instant::now();
    hits.extend(index.query(rest, nq - single_n, ds.dim, params, Access::default()).unwrap());
    let qps_batch = (nq - single_n) as f64 / t0.elapsed().as_secs_f64();
    Rates { recall: ds.recall_at_10(&hits), qps_single, qps_batch, opened_per_query }
}

/// `FILL_QUERIES` stored vectors spread over the set, asked as queries to
/// fill a small cache with the data of other queries than the measured ones.
fn fill_queries(ds: &Dataset) -> Vec<f32> {
    let n = ds.n().min(FILL_QUERIES);
    (0..n)
        .flat_map(|k| {
            let i = k * ds.n() / n;
            ds.base[i * ds.dim..(i + 1) * ds.dim].iter().copied()
        })
        .collect()
}

/// Stored vectors asked as queries to fill a small cache before measuring.
const FILL_QUERIES: usize = 4000;

/// `run` names the invocation of bench/curves.sh (the plot keeps the newest).
pub fn run(ds: &Dataset, threads: &[usize], nq_limit: usize, opts: &IvfOptions, scratch: &Path, run: &str) {
    let names = ids("", ds.n());
    let nq = ds.nq().min(nq_limit);
    let raw = ds.n() * ds.dim * 4;
    // VX_CURVES_KINDS=ivf-rabitq,... measures only those.
    let only: Option<Vec<String>> =
        std::env::var("VX_CURVES_KINDS").ok().map(|v| v.split(',').map(String::from).collect());
    // For iterating on the search: VX_CURVES_CACHES=warm measures only that
    // cache, VX_CURVES_RERANK=0,4 only those rerank_mult values, and
    // VX_CURVES_KEEP=1 keeps the trained index for the next run to reuse
    // (its build_s is then 0).
    let list = |var: &str| -> Option<Vec<String>> {
        std::env::var(var).ok().map(|v| v.split(',').map(String::from).collect())
    };
    let caches = list("VX_CURVES_CACHES");
    let rerank_only: Option<Vec<u32>> =
        list("VX_CURVES_RERANK").map(|v| v.iter().map(|r| r.parse().unwrap()).collect());
    let keep = std::env::var("VX_CURVES_KEEP").is_ok_and(|v| v == "1");
    for (kind, config, rerank) in kinds() {
        if only.as_ref().is_some_and(|o| !o.iter().any(|k| k == kind)) {
            continue;
        }
        let rerank = rerank_only.clone().unwrap_or(rerank);
        let dir = scratch.join(format!("curves-{}-{kind}", ds.name));
        let reuse = keep && dir.exists();
        if !reuse {
            let _ = fs::remove_dir_all(&dir);
        }
        let uri = file_uri(&dir);
        let build_s = if reuse {
            0.0
        } else {
            let client = Client::open(&uri, ClientOptions { threads: threads[0], cache_bytes: raw * 2 }).unwrap();
            let index = client.create_index("bench", &key(KEY), config).unwrap();
            fill(&index, ds, &names, 50_000);
            eprintln!("curves: {kind} filled; training");
            let t0 = Instant::now();
            let params =
                TrainParams { n_lists: opts.n_lists, max_iters: opts.iters, tolerance: 1e-30, ..Default::default() };
            index.train(params, Access::default()).unwrap();
            t0.elapsed().as_secs_f64()
        };
        let fill = fill_queries(ds);
        for (cache, cache_bytes) in [("warm", raw * 2), ("quarter", raw / 4)] {
            if caches.as_ref().is_some_and(|c| !c.iter().any(|c| c == cache)) {
                continue;
            }
            for &t in threads {
                let base_rss = proc_status_bytes("VmRSS:");
                // Warm up: every list once (the quarter cache with vectors
                // that are not measured queries).
                let warm_up = match cache {
                    "warm" => ds.queries[..ds.dim * nq.min(50)].to_vec(),
                    _ => fill[..ds.dim * (fill.len() / ds.dim).min(50)].to_vec(),
                };
                let open = || {
                    let client = Client::open(&uri, ClientOptions { threads: t, cache_bytes }).unwrap();
                    let index = client.load_index("bench", as_root(&key(KEY))).unwrap();
                    let all = QueryParams { top_k: 10, n_probes: opts.n_lists, ..Default::default() };
                    index.query(&warm_up, warm_up.len() / ds.dim, ds.dim, &all, Access::default()).unwrap();
                    (client, index)
                };
                // The warm cache is shared by the settings; the quarter
                // cache is opened again for each (see `rates_fresh`), and
                // needs a query to measure besides the batch.
                if cache != "warm" && nq < 2 {
                    eprintln!("curves: the quarter cache needs 2 queries or more; skipped");
                    continue;
                }
                let warm = (cache == "warm").then(open);
                // A marker for a profiler to attach after the setup.
                eprintln!("curves: {kind} with the {cache} cache ready");
                for &p in &opts.probes {
                    for &r in &rerank {
                        let params = QueryParams { top_k: 10, n_probes: p, rerank_mult: r, ..Default::default() };
                        let single_n = if t == threads[0] { nq.min(300) } else { 0 };
                        // The quarter cache's client stays open until its
                        // resident memory is read below.
                        let (got, _quarter) = match &warm {
                            Some((_, index)) => (rates(index, ds, nq, single_n.max(1), &params), None),
                            None => {
                                let (client, index) = open();
                                index.query(&fill, fill.len() / ds.dim, ds.dim, &params, Access::default()).unwrap();
                                let got = rates_fresh(&index, ds, nq, single_n.clamp(1, nq - 1), &params);
                                (got, Some((client, index)))
                            }
                        };
                        // The quarter-cache runs are a series of their own.
                        let name = match cache {
                            "warm" => kind.to_string(),
                            _ => format!("{kind} (cache 1/4)"),
                        };
                        emit(
                            ds,
                            "curve",
                            &[
                                ("run", s(run)),
                                ("index", s(&name)),
                                ("params", format!("{{\"n_probes\": {p}, \"rerank_mult\": {r}}}")),
                                ("cache", s(cache)),
                                ("threads", t.to_string()),
                                ("recall_at_10", format!("{:.4}", got.recall)),
                                (
                                    "qps_single",
                                    if single_n > 0 { format!("{:.1}", got.qps_single) } else { "null".into() },
                                ),
                                ("qps_batch", format!("{:.1}", got.qps_batch)),
                                ("build_s", format!("{build_s:.2}")),
                                ("decrypted_bytes_per_query", format!("{:.0}", got.opened_per_query)),
                                ("memory_bytes", proc_status_bytes("VmRSS:").saturating_sub(base_rss).to_string()),
                                ("raw_vector_bytes", raw.to_string()),
                            ],
                        );
                    }
                }
            }
        }
        // Last: its heads freed, but kept by the allocator, would hide in
        // the runs' resident memory.
        resident(ds, &uri, kind, opts.n_lists, raw, run);
        if !keep {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// What the index keeps in memory to be searched: the decrypted cache after
/// one query that probes every list and reranks one candidate, so every
/// head (IVF_RABITQ: codes and terms; IVF_FLAT: whole chunks), the
/// centroids and one unit. (Not counted: the coder's rotated copy of the
/// centroids, ~0.001× the raw vectors at 1M × 128.)
fn resident(ds: &Dataset, uri: &str, kind: &str, n_lists: u32, raw: usize, run: &str) {
    let client = Client::open(uri, ClientOptions { threads: 1, cache_bytes: raw * 2 }).unwrap();
    let index = client.load_index("bench", as_root(&key(KEY))).unwrap();
    let all = QueryParams { top_k: 1, n_probes: n_lists, rerank_mult: 1, ..Default::default() };
    index.query(&ds.queries[..ds.dim], 1, ds.dim, &all, Access::default()).unwrap();
    let bytes = client.cached_bytes();
    eprintln!(
        "curves: {kind} holds {bytes} bytes searched in memory, {:.3}x its raw vectors",
        bytes as f64 / raw as f64
    );
    emit(
        ds,
        "resident",
        &[
            ("run", s(run)),
            ("index", s(kind)),
            ("cached_bytes", bytes.to_string()),
            ("raw_vector_bytes", raw.to_string()),
            ("ratio", format!("{:.4}", bytes as f64 / raw as f64)),
        ],
    );
}
