//! `--only scale`: how vx's costs grow with the index (bench/scale.sh runs
//! it beside bench/faiss_scale.py on the same files).
//!
//! Streams base.fvecs from disk into a `file:` index, one batch in memory
//! at a time, and at every tenth of the rows reports the upsert rate over
//! that tenth, one-item upsert latency and disk use. Then trains (time,
//! peak RSS), adds into the trained index, compacts, and measures
//! single-query recall@10 and QPS with a cache smaller than the raw vectors
//! and with the default one. Base row `i` is stored under the id `i`, as
//! `fixtures::ids("", n)` names them. The index is IVF_FLAT unless
//! `--index ivf-rabitq` asks for the compressed one (`ivf-rabitq-4bit`: with
//! `quantizer_bits` 4).

use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use vx::{Access, Client, ClientOptions, Hit, IndexConfig, IndexType, QueryParams, TrainParams, DEFAULT_CACHE_BYTES};

use crate::fixtures::{as_root, file_uri, ids, items, key, read_fvecs, read_ivecs};
use crate::{dir_size, emit_named, peak_rss, proc_status_bytes, s, KEY};

/// Rows per upsert call.
const BATCH: usize = 10_000;
/// One-item upserts timed at each tenth: enough for a 99th percentile that
/// is not simply the slowest (0.5 timed 20).
const ONE_ITEM_SAMPLES: usize = 100;
/// Rows added into the trained index (the first ones again, under new ids).
const ADDED: usize = 100_000;
/// Untimed queries that bring the cache to its steady state before a sweep.
const WARM_QUERIES: usize = 200;

pub struct ScaleOptions {
    /// The client's worker threads, for every phase (FAISS gets the same).
    pub threads: usize,
    /// The cache while filling, training and adding.
    pub cache_bytes: usize,
    /// 0 = round(sqrt(N)).
    pub n_lists: u32,
    pub iters: u32,
    /// Explicit n_probes measured besides the automatic one.
    pub probes: Vec<u32>,
    pub nq_limit: usize,
    /// The index measured (`--index`: IVF_FLAT by default).
    pub config: IndexConfig,
}

/// The rows of an .fvecs file, read in order a batch at a time.
struct Fvecs {
    reader: BufReader<File>,
    dim: usize,
    rows: usize,
    bytes: Vec<u8>,
}

impl Fvecs {
    fn open(path: &Path) -> Fvecs {
        let mut file = File::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut head = [0; 4];
        file.read_exact(&mut head).unwrap();
        file.rewind().unwrap();
        let dim = u32::from_le_bytes(head) as usize;
        let len = file.metadata().unwrap().len() as usize;
        let row = 4 + dim * 4;
        assert_eq!(len % row, 0, "{} is not a .fvecs file", path.display());
        Fvecs { reader: BufReader::new(file), dim, rows: len / row, bytes: Vec::new() }
    }

    /// The next `n` rows into `out` (replacing what it held), end to end.
    fn read(&mut self, n: usize, out: &mut Vec<f32>) {
        let row = 4 + self.dim * 4;
        self.bytes.resize(n * row, 0);
        self.reader.read_exact(&mut self.bytes).unwrap();
        out.clear();
        for r in self.bytes.chunks_exact(row) {
            assert_eq!(r[..4], (self.dim as u32).to_le_bytes(), "rows differ in dimension");
            out.extend(r[4..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())));
        }
    }
}

/// The queries, their exact neighbours and where the runs write.
struct Setup<'a> {
    name: &'a str,
    /// The index type measured, as `--index` names it.
    index: &'a str,
    dir: &'a Path,
    scratch: &'a Path,
    store: &'a Path,
    n: usize,
    dim: usize,
    queries: Vec<f32>,
    nq: usize,
    gt: Vec<u32>,
    gt_k: usize,
}

impl Setup<'_> {
    fn emit(&self, phase: &str, fields: &[(&str, String)]) {
        let mut all = vec![("phase", s(phase)), ("index", s(self.index))];
        all.extend_from_slice(fields);
        emit_named(self.name, "scale", &all);
    }

    fn raw_bytes(&self, rows: usize) -> u64 {
        (rows * self.dim * 4) as u64
    }

    fn disk_bytes(&self) -> u64 {
        dir_size(self.store).1
    }
}

/// The `--index` name of `config` (the inverse of main's parsing, which
/// sets `quantizer_bits` to 0, the default, or 4).
pub fn index_kind_name(config: &IndexConfig) -> &'static str {
    match (config.index_type, config.quantizer_bits) {
        (IndexType::IvfRabitq, 4) => "ivf-rabitq-4bit",
        (IndexType::IvfRabitq, 0) => "ivf-rabitq",
        (IndexType::IvfRabitq, _) => "ivf-rabitq-other-bits",
        _ => "ivf-flat",
    }
}

pub fn run(dir: &Path, name: &str, scratch: &Path, opts: &ScaleOptions) {
    let mut base = Fvecs::open(&dir.join("base.fvecs"));
    let (queries, qdim) = read_fvecs(&dir.join("query.fvecs"));
    assert_eq!(base.dim, qdim, "{}: base and queries differ in dimension", dir.display());
    let (gt, gt_k) = read_ivecs(&dir.join("gt.ivecs"));
    let store = scratch.join(format!("scale-{name}"));
    let setup = Setup {
        name,
        index: index_kind_name(&opts.config),
        dir,
        scratch,
        store: &store,
        n: base.rows,
        dim: base.dim,
        nq: (queries.len() / base.dim).min(opts.nq_limit),
        queries,
        gt,
        gt_k,
    };
    eprintln!(
        "vx-bench scale: {} vectors of dim {}, {} queries, {} threads",
        setup.n, setup.dim, setup.nq, opts.threads
    );
    let _ = fs::remove_dir_all(&store);
    let uri = file_uri(&store);
    {
        let client =
            Client::open(&uri, ClientOptions { threads: opts.threads, cache_bytes: opts.cache_bytes }).unwrap();
        let index = client.create_index("bench", &key(KEY), opts.config.clone()).unwrap();
        fill(&index, &mut base, &setup);
        train(&index, &setup, opts);
        add_and_compact(&index, &setup);
    }
    query(&uri, &setup, opts);
    let _ = fs::remove_dir_all(&store);
}

/// Upserts every base row in batches of BATCH, timing the upsert calls
/// only (not the reads); at each tenth, reports the rate over that tenth,
/// its slowest batch (a write that reorganises the directory, if any),
/// one-item upsert latency at that size and disk use.
fn fill(index: &vx::Index, base: &mut Fvecs, setup: &Setup<'_>) {
    let (n, dim) = (setup.n, setup.dim);
    let mut rows = Vec::with_capacity(BATCH * dim);
    let mut done = 0;
    for tenth in 1..=10 {
        let (start, end) = (done, n * tenth / 10);
        if end == start {
            continue; // fewer than ten rows
        }
        let (mut busy, mut slowest) = (Duration::ZERO, Duration::ZERO);
        while done < end {
            let count = BATCH.min(end - done);
            base.read(count, &mut rows);
            let names: Vec<String> = (done..done + count).map(|i| i.to_string()).collect();
            let batch: Vec<_> = items(&names, &rows, dim, None).collect();
            let t = Instant::now();
            index.upsert(&batch, Access::default()).unwrap();
            busy += t.elapsed();
            slowest = slowest.max(t.elapsed());
            done += count;
        }
        let (p50, p99) = one_item_latency(index, &rows, dim, tenth);
        let (fsync_p50, fsync_p99) = fsync_ms(setup.scratch);
        assert_eq!(index.num_vectors(Access::default()).unwrap(), done as u64);
        setup.emit(
            "fill",
            &[
                ("tenth", tenth.to_string()),
                ("size", done.to_string()),
                ("upsert_per_s", format!("{:.0}", (end - start) as f64 / busy.as_secs_f64())),
                ("slowest_batch_ms", format!("{:.1}", slowest.as_secs_f64() * 1e3)),
                ("one_item_ms_p50", format!("{p50:.3}")),
                ("one_item_ms_p99", format!("{p99:.3}")),
                ("fsync_ms_p50", format!("{fsync_p50:.3}")),
                ("fsync_ms_p99", format!("{fsync_p99:.3}")),
                ("disk_bytes", setup.disk_bytes().to_string()),
                ("raw_vector_bytes", setup.raw_bytes(done).to_string()),
            ],
        );
    }
}

/// Median and 99th percentile (of ONE_ITEM_SAMPLES) in ms
/// of one-item upserts of new ids carrying rows of `rows`, deleted again
/// afterwards so that the index keeps its size.
fn one_item_latency(index: &vx::Index, rows: &[f32], dim: usize, tenth: usize) -> (f64, f64) {
    let names = ids(&format!("one-{tenth}-"), ONE_ITEM_SAMPLES);
    let n_rows = rows.len() / dim;
    let mut ms: Vec<f64> = (0..names.len())
        .map(|i| {
            let r = i % n_rows;
            let item: Vec<_> = items(&names[i..i + 1], &rows[r * dim..(r + 1) * dim], dim, None).collect();
            let t = Instant::now();
            index.upsert(&item, Access::default()).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(index.delete(&refs, Access::default()).unwrap(), names.len());
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Median and 99th percentile ms of a 4 KiB write and fdatasync in `dir`,
/// ONE_ITEM_SAMPLES times: the disk's floor under a one-item commit (the
/// file store syncs every commit, twice: its value log and redb), measured
/// beside it because on some disks it drifts during a run (here from under
/// 1 to 4 ms), and its tail is the one-item p99's (traced on this VM:
/// redb's fdatasync 0.26 ms at the median, 54 ms at the 99th percentile).
fn fsync_ms(dir: &Path) -> (f64, f64) {
    let path = dir.join("fsync-probe");
    let mut file = File::create(&path).unwrap();
    let mut ms: Vec<f64> = (0..ONE_ITEM_SAMPLES)
        .map(|_| {
            file.write_all(&[0x5a; 4096]).unwrap();
            let t = Instant::now();
            file.sync_data().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    drop(file);
    fs::remove_file(&path).unwrap();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Trains with the default parameters but the list count and iteration
/// cap; reports the time, the peak RSS over the run and disk use after it.
fn train(index: &vx::Index, setup: &Setup<'_>, opts: &ScaleOptions) {
    let n_lists = match opts.n_lists {
        0 => ((setup.n as f64).sqrt().round() as u32).max(1),
        n => n,
    };
    let rss_before = proc_status_bytes("VmRSS:");
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+),
    // so the peak read after training is the peak of training.
    fs::write("/proc/self/clear_refs", "5").expect("cannot reset the peak RSS (/proc/self/clear_refs)");
    let t = Instant::now();
    let params = TrainParams { n_lists, max_iters: opts.iters, ..Default::default() };
    let report = index.train(params, Access::default()).unwrap();
    let train_s = t.elapsed().as_secs_f64();
    let peak = peak_rss();
    let raw = setup.raw_bytes(setup.n) as f64;
    setup.emit(
        "train",
        &[
            ("size", setup.n.to_string()),
            ("n_lists", report.n_lists.to_string()),
            ("iterations", report.iterations.to_string()),
            ("sample_size", report.sample_size.to_string()),
            ("objective", format!("{:.6}", report.objective)),
            ("train_s", format!("{train_s:.3}")),
            ("auto_n_probes", index.auto_n_probes().unwrap().to_string()),
            ("rss_before_bytes", rss_before.to_string()),
            ("peak_rss_bytes", peak.to_string()),
            ("cache_bytes", opts.cache_bytes.to_string()),
            ("raw_vector_bytes", setup.raw_bytes(setup.n).to_string()),
            ("peak_minus_cache_over_raw", format!("{:.3}", (peak as f64 - opts.cache_bytes as f64) / raw)),
            ("peak_minus_before_over_raw", format!("{:.3}", (peak as f64 - rss_before as f64) / raw)),
            ("disk_bytes", setup.disk_bytes().to_string()),
        ],
    );
}

/// Add rate into the trained index: the first ADDED base rows again under
/// new ids, in batches of BATCH, deleted again afterwards (duplicates of
/// base rows would displace the true neighbours); then disk use before and
/// after `compact`.
fn add_and_compact(index: &vx::Index, setup: &Setup<'_>) {
    let dim = setup.dim;
    let added = ADDED.min(setup.n);
    let names = ids("extra-", added);
    let mut base = Fvecs::open(&setup.dir.join("base.fvecs"));
    let mut rows = Vec::with_capacity(BATCH * dim);
    let mut busy = Duration::ZERO;
    for batch_names in names.chunks(BATCH) {
        base.read(batch_names.len(), &mut rows);
        let batch: Vec<_> = items(batch_names, &rows, dim, None).collect();
        let t = Instant::now();
        index.upsert(&batch, Access::default()).unwrap();
        busy += t.elapsed();
    }
    let add_per_s = added as f64 / busy.as_secs_f64();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(index.delete(&refs, Access::default()).unwrap(), added);
    assert_eq!(index.num_vectors(Access::default()).unwrap(), setup.n as u64);
    let disk_before = setup.disk_bytes();
    index.compact(Access::default()).unwrap();
    setup.emit(
        "add",
        &[
            ("size", setup.n.to_string()),
            ("vectors", added.to_string()),
            ("batch", BATCH.to_string()),
            ("add_per_s", format!("{add_per_s:.0}")),
            ("disk_bytes", disk_before.to_string()),
            ("disk_bytes_compacted", setup.disk_bytes().to_string()),
            ("raw_vector_bytes", setup.raw_bytes(setup.n).to_string()),
        ],
    );
}

/// Single-query recall@10 and QPS at the automatic n_probes and at each of
/// `opts.probes`, on the index reopened with a cache of a quarter of the
/// raw vectors and with the default cache.
fn query(uri: &str, setup: &Setup<'_>, opts: &ScaleOptions) {
    let quarter = setup.raw_bytes(setup.n) as usize / 4;
    for (cache, cache_bytes) in [("quarter_raw", quarter), ("default", DEFAULT_CACHE_BYTES)] {
        let client = Client::open(uri, ClientOptions { threads: opts.threads, cache_bytes }).unwrap();
        let index = client.load_index("bench", as_root(&key(KEY))).unwrap();
        let auto = index.auto_n_probes().unwrap();
        // Untimed queries at the most probes fill the cache as far as it
        // goes: the timed passes see its steady state, not a cold start.
        let most = opts.probes.iter().copied().chain([auto]).max().unwrap();
        single_queries(&index, setup, setup.nq.min(WARM_QUERIES), most);
        // n_probes 0 asks for the automatic count.
        for probes in [0].into_iter().chain(opts.probes.iter().copied()) {
            let (qps, recall) = single_queries(&index, setup, setup.nq, probes);
            setup.emit(
                "query",
                &[
                    ("size", setup.n.to_string()),
                    ("cache", s(cache)),
                    ("cache_bytes", cache_bytes.to_string()),
                    ("threads", opts.threads.to_string()),
                    ("n_probes", if probes == 0 { auto } else { probes }.to_string()),
                    ("auto", (probes == 0).to_string()),
                    ("qps_single", format!("{qps:.1}")),
                    ("recall_at_10", format!("{recall:.4}")),
                ],
            );
        }
    }
}

/// The first `nq` queries, one call each, at top-10: queries per second and
/// recall@10.
fn single_queries(index: &vx::Index, setup: &Setup<'_>, nq: usize, n_probes: u32) -> (f64, f64) {
    let params = QueryParams { top_k: 10, n_probes, ..Default::default() };
    let dim = setup.dim;
    let t = Instant::now();
    let hits: Vec<Vec<Hit>> = (0..nq)
        .map(|qi| {
            let q = &setup.queries[qi * dim..(qi + 1) * dim];
            index.query(q, 1, dim, &params, Access::default()).unwrap().pop().unwrap()
        })
        .collect();
    let qps = nq as f64 / t.elapsed().as_secs_f64();
    let found: usize = hits
        .iter()
        .enumerate()
        .map(|(qi, row)| {
            let gt = &setup.gt[qi * setup.gt_k..qi * setup.gt_k + 10];
            row.iter().filter(|h| gt.contains(&h.id.parse::<u32>().unwrap())).count()
        })
        .sum();
    (qps, found as f64 / (nq * 10) as f64)
}
