//! vx-bench: measures vx on a dataset of .fvecs files and prints one JSON
//! object per measurement (bench/run.sh puts them beside FAISS's).
//!
//! usage: vx-bench DATASET_DIR NAME [--threads 1,2] [--queries N] [--scratch DIR]
//!                 [--only flat|ivf|add|stores|security|space|all] [--index ...] (for --only add too) [--ivf-lists N] [--ivf-iters N] [--ivf-probes 1,2,4]
//!                 [--pg postgres://...]   (for --only stores: also the PostgreSQL store)
//!                 [--only scale] [--cache-mib N] [--index ivf-flat|ivf-rabitq|ivf-rabitq-4bit]   (see scale.rs; the first of --threads)
//!                 [--only curves] [--run ID]   (recall/QPS of IVF_FLAT and IVF_RABITQ, see curves.rs)
//!                 [--only filters]   (filtered and metadata-only queries, see filters.rs)
//!                 [--only text]   (keyword and hybrid search on /usr/share/doc, see text.rs)
//!                 [--only writes]   (what a one-item write stores as the index grows; needs
//!                                    `--features store-stats`, see writes.rs)
//!   DATASET_DIR holds base.fvecs, query.fvecs and gt.ivecs (ids of the exact
//!   neighbours by L2, nearest first).

// One copy of the scaffolding the integration tests use too.
mod curves;
mod filters;
#[path = "../../tests/common/fixtures.rs"]
mod fixtures;
mod scale;
mod text;
#[cfg(feature = "store-stats")]
mod writes;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fixtures::{as_root, file_uri, ids, items, key, upsert_in_batches, with_table, Dataset};
use vx::{Access, Client, ClientOptions, IndexConfig, QueryParams, TrainParams, DEFAULT_CACHE_BYTES};

const KEY: u8 = 0x42;

/// One measurement of vx on `ds` as a JSON line: the engine, dataset and
/// bench fields that report.py keys on, then `fields`.
fn emit(ds: &Dataset, bench: &str, fields: &[(&str, String)]) {
    emit_named(&ds.name, bench, fields);
}

/// `emit` for a dataset that is not loaded into memory (--only scale).
fn emit_named(dataset: &str, bench: &str, fields: &[(&str, String)]) {
    let head = [("engine", s("vx")), ("dataset", s(dataset)), ("bench", s(bench))];
    let body: Vec<String> = head.iter().chain(fields).map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!("{{{}}}", body.join(", "));
}

fn s(v: &str) -> String {
    format!("\"{v}\"")
}

/// Upserts base row i under `names[i]` for every name, in batches;
/// returns vectors per second.
fn fill(index: &vx::Index, ds: &Dataset, names: &[String], batch: usize) -> f64 {
    let t = Instant::now();
    upsert_in_batches(index, items(names, &ds.base, ds.dim, None), batch, Access::default()).unwrap();
    names.len() as f64 / t.elapsed().as_secs_f64()
}

fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(dir).unwrap().fold((0, 0), |(len, disk), e| {
        let m = e.unwrap().metadata().unwrap();
        (len + m.len(), disk + m.blocks() * 512)
    })
}

fn bench_exhaustive(ds: &Dataset, threads: &[usize], nq_limit: usize) {
    let names = ids("", ds.n());
    let nq = ds.nq().min(nq_limit);
    let queries = &ds.queries[..nq * ds.dim];
    for &t in threads {
        for (cache, cache_bytes) in [("warm", vx::DEFAULT_CACHE_BYTES * 4), ("off", 0)] {
            let client = Client::open("memory:", ClientOptions { threads: t, cache_bytes }).unwrap();
            let index = client.create_index("bench", &key(KEY), IndexConfig::default()).unwrap();
            fill(&index, ds, &names, 10_000);
            let params = QueryParams { top_k: 10, ..Default::default() };
            // Warm-up (fills the cache when it is on).
            index.query(&queries[..ds.dim], 1, ds.dim, &params, Access::default()).unwrap();
            let t0 = Instant::now();
            let hits = index.query(queries, nq, ds.dim, &params, Access::default()).unwrap();
            let batched = nq as f64 / t0.elapsed().as_secs_f64();
            let recall = ds.recall_at_10(&hits);
            let single_n = if cache == "off" { nq.min(50) } else { nq.min(300) };
            let t0 = Instant::now();
            for qi in 0..single_n {
                index.query(&queries[qi * ds.dim..(qi + 1) * ds.dim], 1, ds.dim, &params, Access::default()).unwrap();
            }
            let single = single_n as f64 / t0.elapsed().as_secs_f64();
            emit(
                ds,
                "exhaustive",
                &[
                    ("cache", s(cache)),
                    ("threads", t.to_string()),
                    ("qps_batch", format!("{batched:.1}")),
                    ("qps_single", format!("{single:.1}")),
                    ("recall_at_10", format!("{recall:.4}")),
                ],
            );
        }
    }
}

fn bench_upsert(ds: &Dataset, scratch: &Path) {
    let names = ids("id-", ds.n());
    let raw = (ds.n() * ds.dim * 4) as u64;
    for store in ["memory", "file"] {
        let dir = scratch.join(format!("upsert-{}", ds.name));
        let _ = fs::remove_dir_all(&dir);
        let uri = if store == "memory" { "memory:".to_string() } else { file_uri(&dir) };
        let client = Client::open(&uri, ClientOptions::default()).unwrap();
        let index = client.create_index("bench", &key(KEY), IndexConfig::default()).unwrap();
        let batch: usize = std::env::var("VX_BENCH_BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(10_000);
        let rate = fill(&index, ds, &names, batch);
        let mut fields =
            vec![("store", s(store)), ("batch", "10000".to_string()), ("vectors_per_s", format!("{rate:.0}"))];
        drop(index);
        drop(client);
        if store == "file" {
            let (apparent, allocated) = dir_size(&dir);
            fields.push(("file_bytes", apparent.to_string()));
            fields.push(("disk_bytes", allocated.to_string()));
            fields.push(("raw_vector_bytes", raw.to_string()));
            fields.push(("size_ratio", format!("{:.3}", allocated as f64 / raw as f64)));
            let _ = fs::remove_dir_all(&dir);
        }
        emit(ds, "upsert", &fields);
    }
}

/// Mean single-query latency (ms) and batch throughput (q/s) at top-10.
fn latency_and_throughput(index: &vx::Index, ds: &Dataset, nq: usize, n_probes: u32) -> (f64, f64) {
    let params = QueryParams { top_k: 10, n_probes, ..Default::default() };
    let queries = &ds.queries[..nq * ds.dim];
    let t0 = Instant::now();
    for qi in 0..nq {
        index.query(&queries[qi * ds.dim..(qi + 1) * ds.dim], 1, ds.dim, &params, Access::default()).unwrap();
    }
    let latency_ms = t0.elapsed().as_secs_f64() * 1000.0 / nq as f64;
    let t0 = Instant::now();
    index.query(queries, nq, ds.dim, &params, Access::default()).unwrap();
    (latency_ms, nq as f64 / t0.elapsed().as_secs_f64())
}

/// The same index on each backing store: upsert rate, then query latency
/// and throughput with a warm cache (decrypted chunks kept) and a cold one
/// (cache off: every query reads and decrypts from the store), exhaustive
/// and after training (IVF, automatic n_probes). Each phase opens its own
/// client (a `file:` directory admits one at a time).
fn bench_stores(ds: &Dataset, scratch: &Path, pg: Option<&str>, nq_limit: usize) {
    let names = ids("", ds.n());
    let dir = scratch.join(format!("stores-{}", ds.name));
    let mut stores = vec![("file", file_uri(&dir))];
    if let Some(url) = pg {
        stores.push(("postgres", with_table(url, &format!("vx_bench_{}", ds.name.replace('-', "_")))));
    }
    let nq = ds.nq().min(nq_limit).min(200);
    let open = |uri: &str, cache_bytes: usize| {
        let client = Client::open(uri, ClientOptions { cache_bytes, ..Default::default() }).unwrap();
        let index = client.load_index("bench", as_root(&key(KEY))).unwrap();
        (client, index)
    };
    let warm = |index: &vx::Index| {
        latency_and_throughput(index, ds, nq, 0); // fills the cache
        latency_and_throughput(index, ds, nq, 0)
    };
    for (store, uri) in stores {
        let _ = fs::remove_dir_all(&dir);
        let upsert_rate = {
            let client = Client::open(&uri, ClientOptions::default()).unwrap();
            if let Ok(old) = client.load_index("bench", as_root(&key(KEY))) {
                old.delete_index(Access::default()).unwrap();
            }
            let index = client.create_index("bench", &key(KEY), IndexConfig::default()).unwrap();
            fill(&index, ds, &names, 10_000)
        };
        let warm_flat = warm(&open(&uri, DEFAULT_CACHE_BYTES).1);
        let cold_flat = {
            let (_c, index) = open(&uri, 0);
            let cold = latency_and_throughput(&index, ds, nq.min(50), 0);
            let p = TrainParams { n_lists: 0, max_iters: 10, seed: 1, ..Default::default() };
            index.train(p, Access::default()).unwrap();
            cold
        };
        let cold_ivf = latency_and_throughput(&open(&uri, 0).1, ds, nq, 0);
        let warm_ivf = warm(&open(&uri, DEFAULT_CACHE_BYTES).1);
        for (search, warm, cold) in [("exhaustive", warm_flat, cold_flat), ("ivf", warm_ivf, cold_ivf)] {
            emit(
                ds,
                "store",
                &[
                    ("store", s(store)),
                    ("search", s(search)),
                    ("upsert_per_s", format!("{upsert_rate:.0}")),
                    ("warm_ms", format!("{:.3}", warm.0)),
                    ("warm_qps_batch", format!("{:.0}", warm.1)),
                    ("cold_ms", format!("{:.3}", cold.0)),
                    ("cold_qps_batch", format!("{:.0}", cold.1)),
                ],
            );
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// A memory figure of this process from /proc/self/status (`field` with
/// its colon, e.g. "VmRSS:"), in bytes; 0 where there is none.
fn proc_status_bytes(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct IvfOptions {
    n_lists: u32,
    iters: u32,
    probes: Vec<u32>,
}

fn query_rates(index: &vx::Index, ds: &Dataset, nq: usize, probes: u32, single_n: usize) -> (f64, f64, f64) {
    let params = QueryParams { top_k: 10, n_probes: probes, ..Default::default() };
    let queries = &ds.queries[..nq * ds.dim];
    let t0 = Instant::now();
    let hits = index.query(queries, nq, ds.dim, &params, Access::default()).unwrap();
    let batched = nq as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for qi in 0..single_n {
        index.query(&queries[qi * ds.dim..(qi + 1) * ds.dim], 1, ds.dim, &params, Access::default()).unwrap();
    }
    (batched, single_n as f64 / t0.elapsed().as_secs_f64(), ds.recall_at_10(&hits))
}

/// One result line per n_probes: batched and single-query rates, recall.
fn sweep_probes(
    index: &vx::Index,
    ds: &Dataset,
    probes: &[u32],
    cache: &str,
    threads: usize,
    nq: usize,
    single_n: usize,
) {
    for &p in probes {
        let (batched, single, recall) = query_rates(index, ds, nq, p, single_n);
        emit(
            ds,
            "ivf",
            &[
                ("cache", s(cache)),
                ("threads", threads.to_string()),
                ("n_probes", p.to_string()),
                ("qps_batch", format!("{batched:.1}")),
                ("qps_single", format!("{single:.1}")),
                ("recall_at_10", format!("{recall:.4}")),
            ],
        );
    }
}

/// IVF: training time and objective, add rate into the trained index, and
/// an n_probes sweep with a warm cache and with the cache off (file: store,
/// every probed chunk decrypted per query).
fn bench_ivf(ds: &Dataset, threads: &[usize], nq_limit: usize, opts: &IvfOptions, scratch: &Path) {
    let names = ids("", ds.n());
    let nq = ds.nq().min(nq_limit);
    for &t in threads {
        let dir = scratch.join(format!("ivf-{}-{t}", ds.name));
        let _ = fs::remove_dir_all(&dir);
        let uri = file_uri(&dir);
        {
            let client =
                Client::open(&uri, ClientOptions { threads: t, cache_bytes: vx::DEFAULT_CACHE_BYTES * 8 }).unwrap();
            let index = client.create_index("bench", &key(KEY), IndexConfig::default()).unwrap();
            fill(&index, ds, &names, 50_000);
            let t0 = Instant::now();
            let params =
                TrainParams { n_lists: opts.n_lists, max_iters: opts.iters, tolerance: 1e-30, ..Default::default() };
            let report = index.train(params, Access::default()).unwrap();
            let train_s = t0.elapsed().as_secs_f64();
            // Add into the trained index: a tenth of the base again, under new ids.
            let extra = ds.n() / 10;
            let extra_ids = ids("extra-", extra);
            let add_rate = fill(&index, ds, &extra_ids, extra.max(1)); // one batch
            let extra_refs: Vec<&str> = extra_ids.iter().map(String::as_str).collect();
            index.delete(&extra_refs, Access::default()).unwrap();
            emit(
                ds,
                "ivf_train",
                &[
                    ("threads", t.to_string()),
                    ("n_lists", opts.n_lists.to_string()),
                    ("iterations", report.iterations.to_string()),
                    ("train_s", format!("{train_s:.3}")),
                    ("objective", format!("{:.6}", report.objective)),
                    ("add_per_s", format!("{add_rate:.0}")),
                ],
            );
            index
                .query(
                    &ds.queries[..ds.dim],
                    1,
                    ds.dim,
                    &QueryParams { n_probes: opts.n_lists, ..Default::default() },
                    Access::default(),
                )
                .unwrap();
            sweep_probes(&index, ds, &opts.probes, "warm", t, nq, nq.min(300));
        }
        let client = Client::open(&uri, ClientOptions { threads: t, cache_bytes: 0 }).unwrap();
        let index = client.load_index("bench", as_root(&key(KEY))).unwrap();
        sweep_probes(&index, ds, &opts.probes, "off", t, nq.min(300), nq.min(100));
        drop(index);
        drop(client);
        if t == *threads.last().unwrap() {
            // Peak memory with a full cache, measured in a fresh process.
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--rss", &uri, &ds.dim.to_string()])
                .output()
                .unwrap();
            let rss: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
            let raw = (ds.n() * ds.dim * 4) as u64;
            emit(
                ds,
                "memory",
                &[
                    ("peak_rss_bytes", rss.to_string()),
                    ("raw_vector_bytes", raw.to_string()),
                    ("rss_over_raw_plus_100mb", format!("{:.3}", rss as f64 / (raw as f64 + 100e6))),
                ],
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Add rate into a trained index: train on the base (1 iteration; quality
/// does not matter here), then upsert a tenth of the base again under new
/// ids, in batches of `batch`. `scratch` names a directory for a `file:`
/// store (removed afterwards); `None` means `memory:`, the store-independent
/// cost (list assignment, coding, chunk and directory rewrites, encryption).
fn bench_add_trained(ds: &Dataset, n_lists: u32, batch: usize, config: &IndexConfig, scratch: Option<&Path>) {
    let names = ids("", ds.n());
    let dir = scratch.map(|s| s.join(format!("add-{}", ds.name)));
    let (uri, store) = match &dir {
        Some(dir) => {
            let _ = fs::remove_dir_all(dir);
            (file_uri(dir), "file")
        }
        None => ("memory:".to_string(), "memory"),
    };
    let client = Client::open(&uri, ClientOptions::default()).unwrap();
    let index = client.create_index("bench", &key(KEY), config.clone()).unwrap();
    fill(&index, ds, &names, 50_000);
    index.train(TrainParams { n_lists, max_iters: 1, ..Default::default() }, Access::default()).unwrap();
    let extra = ds.n() / 10;
    let extra_ids = ids("extra-", extra);
    // VX_ADD_REPEAT=N adds N times as many (a longer phase for a profiler).
    let repeat: usize = std::env::var("VX_ADD_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let extra_ids: Vec<String> =
        (0..repeat).flat_map(|r| extra_ids.iter().map(move |id| format!("{id}-{r}"))).collect();
    eprintln!("add: trained; adding {} in batches of {batch} ({store})", extra_ids.len());
    let rate = fill(&index, ds, &extra_ids, batch);
    emit(
        ds,
        "add_trained",
        &[
            ("store", s(store)),
            ("index", s(scale::index_kind_name(config))),
            ("n_lists", n_lists.to_string()),
            ("vectors", extra_ids.len().to_string()),
            ("batch", batch.to_string()),
            ("add_per_s", format!("{rate:.0}")),
        ],
    );
    drop((index, client));
    if let Some(dir) = dir {
        let _ = fs::remove_dir_all(dir);
    }
}

/// `vx-bench --rss URI DIM`: opens the trained index, queries every list so
/// the whole index sits decrypted in the cache, prints peak RSS.
fn rss_probe(uri: &str, dim: usize) {
    let client = Client::open(uri, ClientOptions::default()).unwrap();
    let index = client.load_index("bench", as_root(&key(KEY))).unwrap();
    let q = vec![0.01f32; dim];
    let p = QueryParams { top_k: 10, n_probes: index.n_lists().unwrap(), ..Default::default() };
    for _ in 0..3 {
        index.query(&q, 1, dim, &p, Access::default()).unwrap();
    }
    println!("{}", peak_rss());
}

/// Disk use of a `file:` index against its live raw vector bytes, after
/// each step that leaves free pages behind, before and after `compact`.
fn bench_space(ds: &Dataset, scratch: &Path, n_lists: u32) {
    let dir = scratch.join(format!("space-{}", ds.name));
    let _ = fs::remove_dir_all(&dir);
    let client = Client::open(&file_uri(&dir), ClientOptions::default()).unwrap();
    let index = client.create_index("bench", &key(KEY), IndexConfig::default()).unwrap();
    let names = ids("id-", ds.n());
    fill(&index, ds, &names, 10_000);
    let mut fields = Vec::new();
    let mut measure = |step: &'static str, live: usize| {
        let (_, disk) = dir_size(&dir);
        fields.push((step, format!("{:.3}", disk as f64 / (live * ds.dim * 4) as f64)));
    };
    let n = ds.n();
    measure("after_upsert", n);
    index.train(TrainParams { n_lists, max_iters: 10, ..Default::default() }, Access::default()).unwrap();
    measure("after_training", n);
    index.compact(Access::default()).unwrap();
    measure("after_training_compacted", n);
    // Overwrite a quarter (same ids, same vectors), delete another quarter.
    let quarter = n / 4;
    upsert_in_batches(&index, items(&names[..quarter], &ds.base, ds.dim, None), 10_000, Access::default()).unwrap();
    let doomed: Vec<&str> = names[quarter..2 * quarter].iter().map(String::as_str).collect();
    index.delete(&doomed, Access::default()).unwrap();
    measure("after_overwrite_and_delete", n - quarter);
    index.compact(Access::default()).unwrap();
    measure("after_overwrite_and_delete_compacted", n - quarter);
    drop(index);
    drop(client);
    let _ = fs::remove_dir_all(&dir);
    fields.push(("unit", s("disk bytes / live raw vector bytes")));
    emit(ds, "space", &fields);
}

/// Mean microseconds per call of `f` over `n` calls.
fn micros(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// What authenticating writers costs (issue 11's budget: at most 5% of
/// upsert throughput, at most 50 us on a warm query): one Ed25519 signature
/// (every commit signs its manifest) and one verification (a handle checks
/// a manifest it reloads and a key record whose bytes changed), beside a
/// commit of a 10k batch and of one item, and warm queries with the
/// handle's key and with per-call keys (which read the key record every call).
fn bench_security(ds: &Dataset, nq_limit: usize) {
    use ed25519_dalek::{Signer, SigningKey};
    let signer = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; 256];
    let sig = signer.sign(&message);
    let sign_us = micros(2000, |_| {
        std::hint::black_box(signer.sign(&message));
    });
    let verify_us = micros(2000, |_| assert!(signer.verifying_key().verify_strict(&message, &sig).is_ok()));

    let client = Client::open("memory:", ClientOptions::default()).unwrap();
    let index = client.create_index("bench", &key(KEY), IndexConfig::default()).unwrap();
    let names = ids("id-", ds.n());
    let rate = fill(&index, ds, &names, 10_000);
    let batch_commit_us = 10_000.0 / rate * 1e6;
    let one = ids("one-", 200);
    let one_item_us = micros(one.len(), |i| {
        let it: Vec<_> = items(&one[i..i + 1], &ds.base[i * ds.dim..(i + 1) * ds.dim], ds.dim, None).collect();
        index.upsert(&it, Access::default()).unwrap();
    });
    let user = [0xB1; 16];
    let user_key = key(0x43);
    index.create_user_keys(&user, &user_key, vx::PERMISSION_READ, None).unwrap();
    let params = QueryParams { top_k: 10, ..Default::default() };
    let nq = ds.nq().min(nq_limit).min(200);
    let q = |i: usize| &ds.queries[(i % nq) * ds.dim..(i % nq + 1) * ds.dim];
    let root_key = key(KEY);
    // Per credentials: a warm query, and a call with no search work (the
    // fixed cost of checking the credentials against the key record).
    let accesses = [
        ("warm_query_us_handle_key", "num_vectors_us_handle_key", Access::default()),
        ("warm_query_us_per_call_root_key", "num_vectors_us_per_call_root_key", as_root(&root_key)),
        (
            "warm_query_us_per_call_user_key",
            "num_vectors_us_per_call_user_key",
            Access { key: Some(&user_key), user: Some(&user) },
        ),
    ];
    let mut fields = vec![
        ("ed25519_sign_us", format!("{sign_us:.1}")),
        ("ed25519_verify_us", format!("{verify_us:.1}")),
        ("upsert_10k_per_s", format!("{rate:.0}")),
        ("sign_share_of_10k_commit", format!("{:.5}", sign_us / batch_commit_us)),
        ("one_item_upsert_us", format!("{one_item_us:.0}")),
        ("sign_share_of_one_item_commit", format!("{:.4}", sign_us / one_item_us)),
    ];
    for (query_name, call_name, access) in accesses {
        index.query(q(0), 1, ds.dim, &params, access).unwrap(); // warm the cache
        let us = micros(nq, |i| drop(index.query(q(i), 1, ds.dim, &params, access).unwrap()));
        fields.push((query_name, format!("{us:.0}")));
        let us = micros(2000, |_| assert!(index.num_vectors(access).unwrap() > 0));
        fields.push((call_name, format!("{us:.2}")));
    }
    let per_call = ids("per-call-", 200);
    let us = micros(per_call.len(), |i| {
        let it: Vec<_> = items(&per_call[i..i + 1], &ds.base[i * ds.dim..(i + 1) * ds.dim], ds.dim, None).collect();
        index.upsert(&it, as_root(&root_key)).unwrap();
    });
    fields.push(("one_item_upsert_us_per_call_root_key", format!("{us:.0}")));
    emit(ds, "security", &fields);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--rss" {
        rss_probe(&args[2], args[3].parse().unwrap());
        return;
    }
    if args.len() < 3 {
        eprintln!("usage: vx-bench DATASET_DIR NAME [--threads 1,2] [--queries N] [--scratch DIR]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let mut threads = vec![1, 2];
    let mut nq_limit = usize::MAX;
    let mut scratch = std::env::temp_dir();
    let mut ivf = IvfOptions { n_lists: 0, iters: 10, probes: vec![1, 2, 4, 8, 16, 24, 32, 40, 48, 64] };
    let mut only = String::from("all");
    let mut pg: Option<String> = None;
    let mut cache_bytes = DEFAULT_CACHE_BYTES;
    let mut run = String::new();
    let mut scale_index = IndexConfig::default();
    let mut i = 3;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--threads" => threads = args[i + 1].split(',').map(|t| t.parse().unwrap()).collect(),
            "--queries" => nq_limit = args[i + 1].parse().unwrap(),
            "--scratch" => scratch = PathBuf::from(&args[i + 1]),
            "--ivf-lists" => ivf.n_lists = args[i + 1].parse().unwrap(),
            "--ivf-iters" => ivf.iters = args[i + 1].parse().unwrap(),
            "--ivf-probes" => ivf.probes = args[i + 1].split(',').map(|t| t.parse().unwrap()).collect(),
            "--only" => only = args[i + 1].clone(),
            "--pg" => pg = Some(args[i + 1].clone()),
            "--cache-mib" => cache_bytes = args[i + 1].parse::<usize>().unwrap() << 20,
            "--run" => run = args[i + 1].clone(),
            "--index" => {
                (scale_index.index_type, scale_index.quantizer_bits) = match args[i + 1].as_str() {
                    "ivf-flat" => (vx::IndexType::IvfFlat, 0),
                    "ivf-rabitq" => (vx::IndexType::IvfRabitq, 0),
                    // Finer codes, for a cache much smaller than the vectors.
                    "ivf-rabitq-4bit" => (vx::IndexType::IvfRabitq, 4),
                    other => panic!("unknown index type {other} (ivf-flat, ivf-rabitq or ivf-rabitq-4bit)"),
                }
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    if only == "scale" {
        // Before Dataset::load: this mode streams the base from disk.
        let opts = scale::ScaleOptions {
            threads: threads[0],
            cache_bytes,
            n_lists: ivf.n_lists,
            iters: ivf.iters,
            probes: ivf.probes,
            nq_limit,
            config: scale_index,
        };
        scale::run(&dir, &args[2], &scratch, &opts);
        return;
    }
    let ds = Dataset::load(&dir, &args[2]);
    eprintln!("vx-bench: {} vectors, {} queries, dim {}", ds.n(), ds.nq(), ds.dim);
    if ivf.n_lists == 0 {
        ivf.n_lists = ((ds.n() as f64).sqrt().round() as u32).max(1);
    }
    if only == "all" || only == "flat" {
        bench_exhaustive(&ds, &threads, nq_limit);
        bench_upsert(&ds, &scratch);
    }
    if only == "all" || only == "ivf" {
        bench_ivf(&ds, &threads, nq_limit, &ivf, &scratch);
        for batch in [10_000, 100_000] {
            bench_add_trained(&ds, ivf.n_lists, batch, &IndexConfig::default(), None);
        }
    }
    if only == "curves" {
        curves::run(&ds, &threads, nq_limit, &ivf, &scratch, &run);
    }
    if only == "filters" {
        filters::run(&ds, nq_limit, ivf.n_lists, ivf.iters);
    }
    if only == "text" {
        text::run(&ds, &scratch, ivf.n_lists, ivf.iters);
    }
    if only == "stores" {
        bench_stores(&ds, &scratch, pg.as_deref(), nq_limit);
    }
    if only == "space" {
        bench_space(&ds, &scratch, ivf.n_lists);
    }
    if only == "security" {
        bench_security(&ds, nq_limit);
    }
    if only == "writes" {
        #[cfg(feature = "store-stats")]
        writes::run(&ds);
        #[cfg(not(feature = "store-stats"))]
        panic!("--only writes needs a vx-bench built with --features store-stats");
    }
    if only == "add" {
        // The index type from --index; memory: and then file: (in --scratch).
        for store in [None, Some(scratch.as_path())] {
            for batch in [10_000, 100_000] {
                bench_add_trained(&ds, ivf.n_lists, batch, &scale_index, store);
            }
        }
    }
}
