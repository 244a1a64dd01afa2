//! Fault injection: a store wrapper that fails the n-th store operation, for
//! n = 0, 1, 2, ... until the call succeeds, on every write path (create,
//! upsert before and after training, delete, train, user keys, rotation,
//! delete_index) and on reads. After each failure the index must be exactly
//! as before. A second mode applies a write and then reports failure (the
//! acknowledgement lost, as when a connection dies during COMMIT): the
//! index must then be wholly the old state or wholly the new one.
#![cfg(feature = "test-hooks")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{as_root, ids, items, key, uniform, upsert_in_batches};
use vx::{
    include, Access, Client, ClientOptions, Error, Index, IndexConfig, ItemRef, QueryParams, Result, SecretKey, Status,
    Store, TrainParams, WriteBatch, PERMISSION_READ,
};

const DIM: usize = 4;
const ROOT: u8 = 1;

/// Fails store operation number `fail_at` (counting every get, scan and
/// write since it was armed) with an I/O error; or, with `lose_next_commit`,
/// applies the next commit (a write guarded by a compare-and-set, not a
/// training run's objects written ahead of it) and then reports an I/O error.
struct FaultyStore {
    inner: Arc<dyn Store>,
    ops: AtomicUsize,
    fail_at: AtomicUsize,
    lose_next_commit: AtomicBool,
    /// Fails the next commit without applying it.
    fail_next_commit: AtomicBool,
}

impl FaultyStore {
    fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore {
            inner,
            ops: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(usize::MAX),
            lose_next_commit: AtomicBool::new(false),
            fail_next_commit: AtomicBool::new(false),
        }
    }

    fn arm(&self, at: usize) {
        self.ops.store(0, Ordering::SeqCst);
        self.fail_at.store(at, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.fail_at.store(usize::MAX, Ordering::SeqCst);
        self.lose_next_commit.store(false, Ordering::SeqCst);
    }

    fn fail_now(&self) -> Result<()> {
        if self.ops.fetch_add(1, Ordering::SeqCst) == self.fail_at.load(Ordering::SeqCst) {
            return Err(Error::Io("injected fault".into()));
        }
        Ok(())
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.fail_now()?;
        self.inner.get(key)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.fail_now()?;
        self.inner.get_many(keys)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.fail_now()?;
        self.inner.scan_prefix(prefix)
    }

    fn write(&self, batch: WriteBatch) -> Result<bool> {
        self.fail_now()?;
        if !batch.expects.is_empty() && self.fail_next_commit.swap(false, Ordering::SeqCst) {
            return Err(Error::Io("injected fault before the commit".into()));
        }
        if !batch.expects.is_empty() && self.lose_next_commit.swap(false, Ordering::SeqCst) {
            self.inner.write(batch)?;
            return Err(Error::Io("injected fault after the write was applied".into()));
        }
        self.inner.write(batch)
    }
}

/// Everything observable about the index, read through a separate client
/// straight from the underlying store (no shared cache, no faults).
#[derive(Debug, PartialEq)]
struct State {
    ids: Vec<String>,
    vectors: Vec<Vec<f32>>,
    n_lists: u32,
    answer: Vec<String>,
    users: usize,
}

fn observe(inner: &Arc<dyn Store>, key: &SecretKey) -> Option<State> {
    let client = Client::over_store(inner.clone(), ClientOptions { threads: 2, ..Default::default() }).unwrap();
    let index = match client.load_index("f", as_root(key)) {
        Ok(ix) => ix,
        Err(e) if e.status() == Status::NotFound => return None,
        Err(e) => panic!("the index is unreadable after a fault: {e}"),
    };
    let ids = index.list_ids(0, 0, Access::default()).unwrap();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let items = index.get(&refs, include::VECTOR, Access::default()).unwrap();
    let n_lists = index.n_lists().unwrap();
    let p = QueryParams { top_k: 5, n_probes: n_lists.max(1), ..Default::default() };
    let answer =
        index.query(&[0.5; DIM], 1, DIM, &p, Access::default()).unwrap()[0].iter().map(|h| h.id.clone()).collect();
    Some(State {
        vectors: items.into_iter().map(|i| i.unwrap().vector.clone().unwrap()).collect(),
        ids,
        n_lists,
        answer,
        users: index.list_user_keys(None).unwrap().len(),
    })
}

/// `n` items `{prefix}{i}`, all with the same metadata, every 100th with
/// contents.
fn upsert(index: &Index, prefix: &str, n: usize, seed: u64) -> Result<()> {
    let (names, v) = (ids(prefix, n), uniform(n, DIM, seed));
    let batch: Vec<ItemRef<'_>> = items(&names, &v, DIM, None)
        .enumerate()
        .map(|(i, item)| ItemRef {
            metadata: Some(r#"{"a": 1}"#),
            contents: (i % 100 == 0).then_some(b"c".as_slice()),
            ..item
        })
        .collect();
    index.upsert(&batch, Access::default())
}

type Op = Box<dyn Fn(&Client, &Index) -> Result<()>>;

/// Runs `op` with a fault at every store operation in turn until it
/// succeeds; returns how many faults were injected.
fn every_fault(
    name: &str,
    faulty: &Arc<FaultyStore>,
    client: &Client,
    index: &Index,
    op: &Op,
    key: &SecretKey,
) -> usize {
    let inner = faulty.inner.clone();
    let mut injected = 0;
    for at in 0.. {
        let before = observe(&inner, key);
        faulty.arm(at);
        let result = op(client, index);
        faulty.disarm();
        match result {
            Ok(()) => return injected,
            Err(e) => {
                assert_eq!(e.status(), Status::Io, "{name}: fault at op {at} gave {e}");
                assert_eq!(observe(&inner, key), before, "{name}: a fault at store op {at} changed the index");
                injected += 1;
            }
        }
        assert!(at < 10_000, "{name}: never succeeded");
    }
    unreachable!()
}

#[test]
fn a_failed_store_operation_changes_nothing_on_any_write_path() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(vx::MemoryStore::default())));
    let client = Client::over_store(faulty.clone(), ClientOptions { threads: 2, ..Default::default() }).unwrap();
    // Creation itself.
    let create: Op = Box::new(|c, _| c.create_index("f", &key(ROOT), IndexConfig::default()).map(|_| ()));
    let probe = client.create_index("probe", &key(ROOT), IndexConfig::default()).unwrap();
    let n_create = every_fault("create_index", &faulty, &client, &probe, &create, &key(ROOT));
    let index = client.load_index("f", as_root(&key(ROOT))).unwrap();
    upsert(&index, "base", 10_000, 1).unwrap();

    let user = [9u8; 16];
    let paths: Vec<(&str, Op)> = vec![
        ("upsert (untrained)", Box::new(|_, ix| upsert(ix, "u", 300, 2))),
        ("overwrite (untrained)", Box::new(|_, ix| upsert(ix, "base", 50, 3))),
        ("delete", Box::new(|_, ix| ix.delete(&["base1", "base2", "u3"], Access::default()).map(|_| ()))),
        (
            "train",
            Box::new(|_, ix| {
                ix.train(TrainParams { n_lists: 8, max_iters: 3, seed: 1, ..Default::default() }, Access::default())
                    .map(|_| ())
            }),
        ),
        ("upsert (trained)", Box::new(|_, ix| upsert(ix, "t", 200, 4))),
        ("delete (trained)", Box::new(|_, ix| ix.delete(&["t1", "base9"], Access::default()).map(|_| ()))),
        ("create_user_keys", Box::new(move |_, ix| ix.create_user_keys(&user, &key(5), PERMISSION_READ, None))),
        ("delete_user_keys", Box::new(move |_, ix| ix.delete_user_keys(&user, None).map(|_| ()))),
    ];
    let mut report = vec![("create_index", n_create)];
    for (name, op) in &paths {
        report.push((name, every_fault(name, &faulty, &client, &index, op, &key(ROOT))));
    }
    // Rotation: observed with the old key until it succeeds.
    let rotate: Op = Box::new(|_, ix| ix.rotate_key(&key(ROOT), &key(2)));
    report.push(("rotate_key", every_fault("rotate_key", &faulty, &client, &index, &rotate, &key(ROOT))));
    let new_root = key(2);
    // Loading and reading without a cache (every object from the store): a
    // fault is an error, never a wrong or partial answer.
    let store: Arc<dyn Store> = faulty.clone();
    let read: Op = Box::new(move |_, _| {
        let cold = Client::over_store(store.clone(), ClientOptions { threads: 2, cache_bytes: 0 })?;
        let ix = cold.load_index("f", as_root(&key(2)))?;
        let p = QueryParams { top_k: 3, n_probes: 8, include: include::ALL, ..Default::default() };
        let hits = ix.query(&[0.2; DIM], 1, DIM, &p, Access::default())?;
        assert_eq!(hits[0].len(), 3);
        assert_eq!(ix.list_ids(0, 0, Access::default())?.len(), 10_000 + 300 + 200 - 3 - 2);
        Ok(())
    });
    report.push(("query", every_fault("query", &faulty, &client, &index, &read, &new_root)));
    let delete_index: Op = Box::new(|_, ix| ix.delete_index(Access::default()));
    report.push(("delete_index", every_fault("delete_index", &faulty, &client, &index, &delete_index, &new_root)));
    assert!(observe(&faulty.inner, &new_root).is_none());
    eprintln!("faults injected per path: {report:?}");
    assert!(report.iter().all(|(_, n)| *n > 0), "{report:?}");
}

/// The write reaches the store but its acknowledgement is lost: the caller
/// sees an error, and the index is wholly the old or wholly the new state.
#[test]
fn a_lost_acknowledgement_leaves_the_old_or_the_new_state_whole() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(vx::MemoryStore::default())));
    let client = Client::over_store(faulty.clone(), ClientOptions { threads: 2, ..Default::default() }).unwrap();
    let index = client.create_index("f", &key(ROOT), IndexConfig::default()).unwrap();
    upsert(&index, "base", 10_000, 1).unwrap();
    let ops: Vec<(&str, Op)> = vec![
        ("upsert", Box::new(|_, ix| upsert(ix, "u", 100, 5))),
        ("delete", Box::new(|_, ix| ix.delete(&["base5"], Access::default()).map(|_| ()))),
        (
            "train",
            Box::new(|_, ix| {
                ix.train(TrainParams { n_lists: 8, max_iters: 2, seed: 1, ..Default::default() }, Access::default())
                    .map(|_| ())
            }),
        ),
    ];
    for (name, op) in &ops {
        let before = observe(&faulty.inner, &key(ROOT));
        faulty.lose_next_commit.store(true, Ordering::SeqCst);
        let lost = op(&client, &index);
        faulty.disarm();
        assert_eq!(lost.map_err(|e| e.status()), Err(Status::Io), "{name}");
        let after = observe(&faulty.inner, &key(ROOT));
        assert_ne!(after, before, "{name}: the write was applied, the state must show it");
        // Doing it again (what a caller does after an unknown outcome)
        // lands on the same state: the first write was whole.
        op(&client, &index).unwrap();
        assert_eq!(observe(&faulty.inner, &key(ROOT)), after, "{name}: a lost acknowledgement left a partial state");
    }
}

/// Counts the ops of the last batch written through it.
struct CountingStore {
    inner: Arc<dyn Store>,
    /// Objects the last batch stored, and their bytes.
    last_batch_puts: AtomicUsize,
    last_batch_bytes: AtomicUsize,
}

impl Store for CountingStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(keys)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(prefix)
    }

    fn write(&self, batch: WriteBatch) -> Result<bool> {
        let puts = batch.ops.iter().filter_map(|op| match op {
            vx::Op::Put(_, v) => Some(v.len()),
            vx::Op::Delete(_) => None,
        });
        self.last_batch_puts.store(puts.clone().count(), Ordering::SeqCst);
        self.last_batch_bytes.store(puts.sum(), Ordering::SeqCst);
        self.inner.write(batch)
    }
}

/// A one-item write stores a handful of objects at any size (its directory
/// run, the tail chunk, the chunk page, the root and the version hint; now
/// and then a merge of runs, a split, or a bucket the fold under way
/// reaches). Once the runs hold an eighth of the items (at least 4,096
/// entries) one write merges them into a fold's run and the writes after it
/// fold its buckets a few at a time: none rewrites the directory (0.10's
/// folds rewrote every bucket in one write). Here the last batch starts a
/// fold the single writes finish, and the 4,682nd single write starts the
/// next (4,682 entries > (32,768 + 4,682) / 8).
#[cfg(feature = "test-hooks")]
#[test]
fn one_item_writes_stay_small_and_folds_keep_pace_with_the_runs() {
    let counting = Arc::new(CountingStore {
        inner: Arc::new(vx::MemoryStore::default()),
        last_batch_puts: AtomicUsize::new(0),
        last_batch_bytes: AtomicUsize::new(0),
    });
    let client = Client::over_store(counting.clone(), ClientOptions::default()).unwrap();
    let index = client.create_index("grow", &key(1), IndexConfig::default()).unwrap();
    let n = 32 * 1024;
    let (names, v) = (ids("g", n), uniform(n, 2, 3));
    upsert_in_batches(&index, items(&names, &v, 2, None), 8192, Access::default()).unwrap();
    let singles = ids("one", 5000);
    // The fold's progress before each write and after the last, and the
    // bytes each write stored.
    let (mut largest, mut progress, mut stored) = ((0, 0), vec![index.fold_progress().unwrap()], Vec::new());
    for (i, id) in singles.iter().enumerate() {
        let one = [id.clone()];
        index.upsert(&items(&one, &[0.5, i as f32], 2, None).collect::<Vec<_>>(), Access::default()).unwrap();
        let (puts, bytes) =
            (counting.last_batch_puts.load(Ordering::SeqCst), counting.last_batch_bytes.load(Ordering::SeqCst));
        largest = (largest.0.max(puts), largest.1.max(bytes));
        stored.push(bytes);
        progress.push(index.fold_progress().unwrap());
    }
    assert!(largest.0 <= 16 && largest.1 < 256 << 10, "the largest write stored (objects, bytes) {largest:?}");
    // Each fold keeps pace with the runs filling up again: one bucket each
    // time they pass another bucket's share of their limit (the index's
    // items / 8 here), so it ends as they fill, and most one-item writes
    // fold none (and store no bucket).
    let mut folds = Vec::new(); // (first write after its start, writes it took)
    let mut at = 0;
    while let Some(start) = progress[at..].iter().position(Option::is_some).map(|p| p + at) {
        // The last fold is still under way when the writes stop.
        let end = progress[start..].iter().position(Option::is_none).map_or(progress.len(), |p| start + p);
        let to_fold = progress[start].unwrap().1 as usize;
        let steps: Vec<u32> = progress[start..end].windows(2).map(|w| w[1].unwrap().0 - w[0].unwrap().0).collect();
        // (A one-item write also moves the entries of the rows its chunk
        // repack moves, so now and then one writes several entries.)
        assert!(steps.iter().all(|&s| s <= 8), "a one-item write folded {:?} buckets", steps.iter().max());
        let folding = steps.iter().filter(|&&s| s == 1).count();
        assert!(folding * 20 < steps.len(), "{folding} of {} writes folded a bucket", steps.len());
        if end < progress.len() {
            assert!(end - start <= (n + end) / 8, "{} writes to fold {to_fold} buckets", end - start);
        }
        // The folds grow the directory as they go (splitting the buckets
        // they reach), so a fold starts with buckets averaging at most
        // ~1/8 more than 256 entries: what the items grew by since the last.
        let items = n + start;
        assert!(to_fold * 320 >= items, "{to_fold} buckets for {items} items");
        folds.push((start, end - start));
        at = end;
    }
    assert_eq!(folds.len(), 2, "{folds:?}");
    assert!(progress.last().unwrap().is_some_and(|(cursor, _)| cursor > 0), "the second fold is under way");
    assert_eq!((folds[0].0, folds[1].0), (0, 4682), "{folds:?}");
    assert_eq!(progress[4682].unwrap().0, 0, "the single write that started the fold folded none of it");
    // Most write a chunk, a run stripe, a page of the chunk table and the
    // root: no bucket (~7 KiB here) and no page of the bucket table.
    stored.sort_unstable();
    assert!(
        stored[stored.len() / 2] < 4096,
        "a one-item write stored {} bytes at the median",
        stored[stored.len() / 2]
    );
    assert_eq!(index.num_vectors(Access::default()).unwrap(), (n + singles.len()) as u64);
    let all: Vec<&str> = names.iter().chain(&singles).map(String::as_str).collect();
    assert!(index.get(&all, 0, Access::default()).unwrap().iter().all(Option::is_some));
}

/// Stored chunks (and IVF_RABITQ unit packs) and directory buckets of every
/// index (kind byte after `o/` and the 16-byte index id).
#[cfg(feature = "test-hooks")]
fn chunks_and_buckets(store: &dyn Store) -> usize {
    store.scan_keys(b"o/").unwrap().iter().filter(|k| k.len() > 18 && matches!(k[18], b'C' | b'N' | b'B')).count()
}

/// A training run writes its chunks and buckets ahead of its commit. When
/// the commit fails, the state is whole and what it wrote ahead is garbage:
/// not collectable while it may be a run still under way (its version is
/// above the current one), collected by `compact` once the index has moved
/// past it, after which the store holds what it held before.
#[cfg(feature = "test-hooks")]
#[test]
fn a_failed_training_leaves_garbage_that_compact_collects() {
    // The compressed index writes ahead units too, and a retraining of it
    // replaces coded chunks.
    for config in [IndexConfig::default(), IndexConfig { index_type: vx::IndexType::IvfRabitq, ..Default::default() }] {
        failed_training_leaves_garbage_that_compact_collects(config);
    }
}

#[cfg(feature = "test-hooks")]
fn failed_training_leaves_garbage_that_compact_collects(config: IndexConfig) {
    let faulty = Arc::new(FaultyStore::new(Arc::new(vx::MemoryStore::default())));
    let client = Client::over_store(faulty.clone(), ClientOptions { threads: 2, ..Default::default() }).unwrap();
    let index = client.create_index("g", &key(ROOT), config).unwrap();
    upsert(&index, "base", 10_000, 1).unwrap();
    let (before, objects) = (observe(&faulty.inner, &key(ROOT)), chunks_and_buckets(&*faulty.inner));
    let train =
        || index.train(TrainParams { n_lists: 8, max_iters: 3, seed: 1, ..Default::default() }, Access::default());

    faulty.fail_next_commit.store(true, Ordering::SeqCst);
    assert_eq!(train().unwrap_err().status(), Status::Io);
    assert_eq!(observe(&faulty.inner, &key(ROOT)), before, "a failed training changed the index");
    assert!(chunks_and_buckets(&*faulty.inner) > objects, "training wrote its chunks ahead of the commit");
    assert_eq!(index.garbage_count().unwrap(), 0, "objects above the current version may be a run under way");

    // Any commit moves the index past them.
    index.create_user_keys(&[3; 16], &key(3), PERMISSION_READ, None).unwrap();
    assert!(index.garbage_count().unwrap() > 0);
    index.compact(Access::default()).unwrap();
    assert_eq!(index.garbage_count().unwrap(), 0);
    assert_eq!(chunks_and_buckets(&*faulty.inner), objects, "compact left garbage behind");
    assert_eq!(observe(&faulty.inner, &key(ROOT)).map(|s| s.ids), before.map(|s| s.ids));

    // Training then succeeds and collects nothing it should keep; a
    // retraining that fails leaves the trained state whole.
    train().unwrap();
    index.compact(Access::default()).unwrap();
    assert_eq!(index.garbage_count().unwrap(), 0);
    assert_eq!(index.num_vectors(Access::default()).unwrap(), 10_000);
    let trained = observe(&faulty.inner, &key(ROOT));
    faulty.fail_next_commit.store(true, Ordering::SeqCst);
    assert_eq!(train().unwrap_err().status(), Status::Io);
    assert_eq!(observe(&faulty.inner, &key(ROOT)), trained, "a failed retraining changed the index");
    index.create_user_keys(&[4; 16], &key(4), PERMISSION_READ, None).unwrap();
    index.compact(Access::default()).unwrap();
    assert_eq!(index.garbage_count().unwrap(), 0);
    assert_eq!(observe(&faulty.inner, &key(ROOT)).map(|s| s.ids), trained.map(|s| s.ids));
}
