//! One suite, every store: the same cases on `memory:`, `file:` and
//! `postgres://` (when `VX_TEST_POSTGRES_URL` names a server; scripts/test-all.sh
//! starts a throw-away one). Two clients on one index, concurrent writers,
//! and the tamper suite: flip, truncate, swap, replay, delete one record,
//! delete many; always `INTEGRITY` or a clean error, never a wrong answer.
#![cfg(feature = "test-hooks")]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{as_root, ids, items, key, postgres_table, uniform, TempDir};
use vx::{
    include, Access, Client, ClientOptions, Hit, Index, IndexConfig, IndexType, ItemRef, QueryParams, Status,
    TrainParams, WriteBatch,
};

const DIM: usize = 8;
const KEY: u8 = 7;

/// The stores to run a case on, and the directory of the `file:` one
/// (removed when the case is done); `case` names the postgres table and
/// the directory, so cases never share state.
fn stores(case: &str) -> (TempDir, Vec<(String, String)>) {
    let dir = TempDir::new(&format!("stores-{case}"));
    let mut out = vec![("memory".to_owned(), "memory:".to_owned()), ("file".to_owned(), dir.uri())];
    if let Some((url, _)) = postgres_table(&format!("vx_test_{case}")) {
        out.push(("postgres".to_owned(), url));
    }
    (dir, out)
}

/// The rows of `v` as items `{prefix}{i}` with metadata, every 50th with
/// contents (its id).
fn upsert(index: &Index, prefix: &str, v: &[f32]) -> vx::Result<()> {
    let names = ids(prefix, v.len() / DIM);
    let metas: Vec<String> = (0..names.len()).map(|i| format!(r#"{{"i": {i}}}"#)).collect();
    let batch: Vec<ItemRef<'_>> = items(&names, v, DIM, Some(&metas))
        .enumerate()
        .map(|(i, item)| ItemRef { contents: (i % 50 == 0).then_some(item.id.as_bytes()), ..item })
        .collect();
    index.upsert(&batch, Access::default())
}

fn open(uri: &str) -> Client {
    Client::open(uri, ClientOptions { threads: 2, ..Default::default() }).unwrap()
}

/// Another client on the same store: its own connections for postgres (as
/// another process would have); the same store object for `memory:` (which
/// lives inside its client) and `file:` (one open per directory).
fn second_client(first: &Client, uri: &str) -> Client {
    if uri.starts_with("postgres") {
        open(uri)
    } else {
        Client::over_store(first.raw_store(), ClientOptions { threads: 2, ..Default::default() }).unwrap()
    }
}

fn load(client: &Client) -> Index {
    client.load_index("s", as_root(&key(KEY))).unwrap()
}

/// One query's hits: id, distance, metadata.
type Answer = Vec<(String, f32, Option<String>)>;

fn answers(index: &Index, q: &[f32], n_probes: u32) -> vx::Result<Vec<Answer>> {
    answers_with(index, q, &QueryParams { n_probes, ..Default::default() })
}

/// [`answers`] of a query with `params`' n_probes and rerank_mult.
fn answers_with(index: &Index, q: &[f32], params: &QueryParams<'_>) -> vx::Result<Vec<Answer>> {
    let p = QueryParams { top_k: 10, include: include::DISTANCE | include::METADATA, ..params.clone() };
    let hits: Vec<Vec<Hit>> = index.query(q, q.len() / DIM, DIM, &p, Access::default())?;
    Ok(hits.iter().map(|row| row.iter().map(|h| (h.id.clone(), h.distance, h.metadata.clone())).collect()).collect())
}

#[test]
fn same_behaviour_on_every_store() {
    let (_dir, uris) = stores("basic");
    for (store, uri) in uris {
        let client = open(&uri);
        let index = client.create_index("s", &key(KEY), IndexConfig::default()).unwrap();
        let base = uniform(12_000, DIM, 1);
        upsert(&index, "id", &base).unwrap();
        let q = uniform(5, DIM, 2);
        let exact = answers(&index, &q, 0).unwrap();
        assert_eq!(index.num_vectors(Access::default()).unwrap(), 12_000, "{store}");
        let got = index.get(&["id50", "nope"], include::ALL, Access::default()).unwrap();
        assert_eq!(got[0].as_ref().unwrap().contents.as_deref(), Some(&b"id50"[..]), "{store}");
        assert!(got[1].is_none());
        assert_eq!(index.delete(&["id1", "id2", "nope"], Access::default()).unwrap(), 2, "{store}");
        assert_eq!(index.list_ids(0, 3, Access::default()).unwrap(), ["id0", "id10", "id100"], "{store}");
        drop(index);

        // A new client sees it all (for file:, after closing and reopening
        // the store), trains, and IVF with every list probed equals the
        // exhaustive answer.
        let client = if uri.starts_with("file:") {
            drop(client);
            open(&uri)
        } else {
            second_client(&client, &uri)
        };
        assert_eq!(client.list_indexes().unwrap(), ["s"], "{store}");
        let index = load(&client);
        let exact = answers(&index, &q, 0).map(|a| (a, exact)).unwrap();
        assert_eq!(exact.0, exact.1, "{store}: the answers changed across clients (delete removed none of them)");
        index
            .train(TrainParams { n_lists: 20, max_iters: 5, seed: 1, ..Default::default() }, Access::default())
            .unwrap();
        assert_eq!(answers(&index, &q, 20).unwrap(), exact.0, "{store}: IVF with all lists != exhaustive");
        index.delete_index(Access::default()).unwrap();
        assert!(client.list_indexes().unwrap().is_empty(), "{store}");
        assert_eq!(client.raw_store().scan_prefix(b"").unwrap().len(), 0, "{store}: delete_index left objects");
    }
}

/// Writes into a trained IVF_RABITQ index rewrite chunks: adds repack the
/// lists' small chunks, an overwrite and deletes reseal chunks (their heads
/// and units read ahead in one call on postgres). With every list probed
/// and every candidate reranked, the index then answers as a brute force
/// over the live items does, on every store: the rewritten units hold the
/// right vectors and ids. (That the copied codes are right is
/// `repacked_and_resealed_rows_keep_their_codes` in src/index/codes.rs.)
#[test]
fn coded_rewrites_answer_exactly_on_every_store() {
    let (_dir, uris) = stores("coded");
    let q = uniform(5, DIM, 2);
    for (store, uri) in uris {
        let client = open(&uri);
        let config = IndexConfig { index_type: IndexType::IvfRabitq, ..Default::default() };
        let index = client.create_index("s", &key(KEY), config).unwrap();
        let mut live: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut write = |prefix: &str, v: Vec<f32>| {
            upsert(&index, prefix, &v).unwrap();
            for (i, row) in v.chunks_exact(DIM).enumerate() {
                live.insert(format!("{prefix}{i}"), row.to_vec());
            }
        };
        write("id", uniform(12_000, DIM, 3));
        index
            .train(TrainParams { n_lists: 8, max_iters: 5, seed: 1, ..Default::default() }, Access::default())
            .unwrap();
        for b in 0..12 {
            write(&format!("add{b}-"), uniform(40, DIM, 100 + b));
        }
        write("id", uniform(100, DIM, 50));
        let gone: Vec<String> = live.keys().step_by(37).cloned().collect();
        let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
        assert_eq!(index.delete(&gone, Access::default()).unwrap(), gone.len(), "{store}");
        for id in &gone {
            live.remove(*id);
        }
        assert_eq!(index.num_vectors(Access::default()).unwrap(), live.len() as u64, "{store}");

        let p =
            QueryParams { top_k: 10, n_probes: 8, rerank_mult: 4096, include: include::DISTANCE, ..Default::default() };
        let hits = index.query(&q, q.len() / DIM, DIM, &p, Access::default()).unwrap();
        for (row, query) in hits.iter().zip(q.chunks_exact(DIM)) {
            let mut exact: Vec<(f32, &String)> = live
                .iter()
                .map(|(id, v)| (v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt(), id))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let got: Vec<&String> = row.iter().map(|h| &h.id).collect();
            let want: Vec<&String> = exact[..10].iter().map(|e| e.1).collect();
            assert_eq!(got, want, "{store}: the coded index's exact answer");
            for (h, e) in row.iter().zip(&exact) {
                assert!((h.distance - e.0).abs() <= 1e-5 * e.0.max(1.0), "{store}: distance of {}", h.id);
            }
        }
    }
}

/// `memory:` as a store where every read is a round trip (PostgreSQL),
/// counting the chunks, heads and units read one at a time, and the calls
/// that read units together and how many they read.
struct RoundTrips {
    inner: Arc<dyn vx::Store>,
    single_chunk_reads: AtomicUsize,
    unit_calls: AtomicUsize,
    units_in_calls: AtomicUsize,
}

impl RoundTrips {
    fn new() -> RoundTrips {
        let inner = Arc::new(vx::MemoryStore::default());
        RoundTrips { inner, single_chunk_reads: 0.into(), unit_calls: 0.into(), units_in_calls: 0.into() }
    }
}

/// Whether `key` is an object of one of `kinds` (object keys: "o/", the
/// index's 16-byte id, the kind byte).
fn object_of_kind(key: &[u8], kinds: &[u8]) -> bool {
    key.len() > 18 && key.starts_with(b"o/") && kinds.contains(&key[18])
}

impl vx::Store for RoundTrips {
    fn get(&self, key: &[u8]) -> vx::Result<Option<Vec<u8>>> {
        if object_of_kind(key, b"CUN") {
            self.single_chunk_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get(key)
    }
    /// A unit read alone from its chunk's unit pack.
    fn get_part(&self, key: &[u8], start: u64, len: u32) -> vx::Result<Option<Vec<u8>>> {
        self.single_chunk_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_part(key, start, len)
    }
    /// Units read from their packs, several to a call.
    fn get_parts(&self, parts: &[vx::ValuePart]) -> vx::Result<Vec<Option<Vec<u8>>>> {
        if !parts.is_empty() {
            self.unit_calls.fetch_add(1, Ordering::SeqCst);
            self.units_in_calls.fetch_add(parts.len(), Ordering::SeqCst);
        }
        self.inner.get_parts(parts)
    }
    fn get_many(&self, keys: &[Vec<u8>]) -> vx::Result<Vec<Option<Vec<u8>>>> {
        let units = keys.iter().filter(|k| object_of_kind(k, b"U")).count();
        if units > 0 {
            self.unit_calls.fetch_add(1, Ordering::SeqCst);
            self.units_in_calls.fetch_add(units, Ordering::SeqCst);
        }
        self.inner.get_many(keys)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> vx::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(prefix)
    }
    fn write(&self, batch: WriteBatch) -> vx::Result<bool> {
        self.inner.write(batch)
    }
    fn prefers_batched_reads(&self) -> bool {
        true
    }
}

/// Where every read is a round trip, a write reads the chunks it rewrites
/// (repacks, reseals; for IVF_RABITQ their heads, whatever the cache
/// holds, and units) in one call ahead, not one by one.
#[test]
fn rewritten_chunks_are_read_ahead_in_one_call() {
    for index_type in [IndexType::IvfFlat, IndexType::IvfRabitq] {
        let store = Arc::new(RoundTrips::new());
        let client = Client::over_store(store.clone(), ClientOptions { threads: 2, ..Default::default() }).unwrap();
        let index = client.create_index("s", &key(KEY), IndexConfig { index_type, ..Default::default() }).unwrap();
        upsert(&index, "id", &uniform(12_000, DIM, 3)).unwrap();
        index
            .train(TrainParams { n_lists: 8, max_iters: 5, seed: 1, ..Default::default() }, Access::default())
            .unwrap();
        for b in 0..3 {
            upsert(&index, &format!("add{b}-"), &uniform(40, DIM, 10 + b)).unwrap();
        }
        for (round, cache_bytes) in [0, vx::DEFAULT_CACHE_BYTES].into_iter().enumerate() {
            let other = Client::over_store(store.clone(), ClientOptions { threads: 2, cache_bytes }).unwrap();
            let index = load(&other);
            // With a cache, a query first puts every head in it.
            answers(&index, &uniform(1, DIM, 4), 8).unwrap();
            let chunks = || -> Vec<Vec<u8>> {
                let keys = store.inner.scan_keys(b"o/").unwrap();
                keys.into_iter().filter(|k| k.len() > 18 && k[18] == b'C').collect()
            };
            let before = chunks();
            store.single_chunk_reads.store(0, Ordering::SeqCst);
            upsert(&index, &format!("more{cache_bytes}-"), &uniform(40, DIM, 20)).unwrap();
            let added = chunks();
            let repacked = before.iter().filter(|k| !added.contains(k)).count();
            assert!(repacked >= 1, "{index_type:?}, round {round}: the add repacked nothing");
            let gone = [format!("id{}", 5 + round), format!("id{}", 500 + round)];
            assert_eq!(index.delete(&[gone[0].as_str(), gone[1].as_str()], Access::default()).unwrap(), 2);
            let reads = store.single_chunk_reads.load(Ordering::SeqCst);
            assert_eq!(reads, 0, "{index_type:?}, round {round}: chunks read one by one");
            let after = chunks();
            let resealed = added.iter().filter(|k| !after.contains(k)).count();
            assert!(resealed >= 1, "{index_type:?}, round {round}: the deletes resealed nothing");
        }
    }
}

/// Where every read is a round trip, a compressed index's rerank reads the
/// units of its candidates several to a call, never one by one, and
/// answers as it did reading them one at a time: the same hits as the
/// exhaustive search when every list is probed and every candidate
/// reranked.
#[test]
fn a_rerank_reads_its_units_in_few_calls() {
    let store = Arc::new(RoundTrips::new());
    let client = Client::over_store(store.clone(), ClientOptions { threads: 2, ..Default::default() }).unwrap();
    let config = IndexConfig { index_type: IndexType::IvfRabitq, ..Default::default() };
    let index = client.create_index("s", &key(KEY), config).unwrap();
    upsert(&index, "id", &uniform(10_000, DIM, 3)).unwrap();
    let q = uniform(20, DIM, 4);
    let exhaustive = answers(&index, &q, 0).unwrap();
    index.train(TrainParams { n_lists: 8, max_iters: 5, seed: 1, ..Default::default() }, Access::default()).unwrap();
    // No cache: every unit a query reranks comes from the store.
    let cold = Client::over_store(store.clone(), ClientOptions { threads: 2, cache_bytes: 0 }).unwrap();
    let index = load(&cold);
    for rerank_mult in [0, 4, 200] {
        store.single_chunk_reads.store(0, Ordering::SeqCst);
        store.unit_calls.store(0, Ordering::SeqCst);
        store.units_in_calls.store(0, Ordering::SeqCst);
        let got = answers_with(&index, &q, &QueryParams { n_probes: 8, rerank_mult, ..Default::default() }).unwrap();
        let (calls, units) = (store.unit_calls.load(Ordering::SeqCst), store.units_in_calls.load(Ordering::SeqCst));
        assert_eq!(store.single_chunk_reads.load(Ordering::SeqCst), 0, "rerank {rerank_mult}: units read one by one");
        assert!(units >= q.len() * 2, "rerank {rerank_mult}: {units} units read for {} queries", q.len());
        assert!(calls * 4 <= units, "rerank {rerank_mult}: {units} units in {calls} calls");
        if rerank_mult == 200 {
            assert_eq!(got, exhaustive, "every list probed, every candidate reranked");
        }
    }
}

/// Two clients (two processes, as far as the store can tell) on one index:
/// each sees the other's committed writes and training at its next call,
/// and decrypted caches never serve a replaced object.
#[test]
fn two_clients_see_each_others_commits() {
    let (_dir, uris) = stores("two_clients");
    for (store, uri) in uris {
        let a_client = open(&uri);
        let a = a_client.create_index("s", &key(KEY), IndexConfig::default()).unwrap();
        upsert(&a, "id", &uniform(11_000, DIM, 3)).unwrap();
        let b_client = second_client(&a_client, &uri);
        let b = load(&b_client);
        let q = uniform(3, DIM, 4);
        assert_eq!(answers(&a, &q, 0).unwrap(), answers(&b, &q, 0).unwrap(), "{store}");
        // Overwrite an item through A: B's cached chunk must not answer.
        let moved = vec![0.5f32; DIM];
        a.upsert(
            &[ItemRef { id: "id5", vector: &moved, metadata: Some(r#"{"new": 1}"#), contents: None }],
            Access::default(),
        )
        .unwrap();
        let got = b.get(&["id5"], include::ALL, Access::default()).unwrap();
        let item = got[0].as_ref().unwrap();
        assert_eq!(item.vector.as_deref(), Some(&moved[..]), "{store}: B served a stale vector");
        assert_eq!(item.metadata.as_deref(), Some(r#"{"new": 1}"#), "{store}");
        assert_eq!(b.delete(&["id6"], Access::default()).unwrap(), 1);
        assert!(a.get(&["id6"], 0, Access::default()).unwrap()[0].is_none(), "{store}: A still sees a deleted item");
        // Training by A: B queries the trained index at its next call.
        a.train(TrainParams { n_lists: 16, max_iters: 4, seed: 2, ..Default::default() }, Access::default()).unwrap();
        assert!(b.n_lists().unwrap() == 16, "{store}");
        assert_eq!(answers(&b, &q, 16).unwrap(), answers(&a, &q, 16).unwrap(), "{store}");
    }
}

/// Writers on two clients at once, each in many small batches: every batch
/// lands (a lost compare-and-set is retried on the new state), nothing is
/// overwritten.
#[test]
fn concurrent_writers_on_two_clients_lose_nothing() {
    let (_dir, uris) = stores("writers");
    for (store, uri) in uris {
        let first = open(&uri);
        first.create_index("s", &key(KEY), IndexConfig::default()).unwrap();
        let second = second_client(&first, &uri);
        let clients = [Arc::new(first), Arc::new(second)];
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let client = clients[t % 2].clone();
                std::thread::spawn(move || {
                    let index = load(&client);
                    for batch in 0..15 {
                        upsert(&index, &format!("w{t}-{batch}-"), &uniform(20, DIM, (t * 100 + batch) as u64)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let index = load(&clients[0]);
        assert_eq!(index.num_vectors(Access::default()).unwrap(), 4 * 15 * 20, "{store}");
        assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), 4 * 15 * 20, "{store}");
    }
}

/// A store through which a victim client reads while a rival (another
/// client on the inner store) commits a write each time the victim is about
/// to read anything but the root (the version hint, manifest pages, chunks,
/// buckets): what the root the victim just read names is gone by then, as
/// when a faster process commits in the gap between two reads.
struct Rivals {
    inner: Arc<dyn vx::Store>,
    rival: Index,
    /// Rival commits still to make (one per victim read of pages or chunks).
    remaining: AtomicUsize,
    made: AtomicUsize,
    /// An attacker writing a new junk root before each read of it.
    junk_roots: AtomicBool,
    /// Rival commits only before reads of contents objects.
    only_contents: AtomicBool,
}

impl Rivals {
    /// A rival commit before any read but the root's.
    fn before_read(&self, keys: &[&[u8]]) {
        let only_contents = self.only_contents.load(Ordering::SeqCst);
        let before = |k: &[u8]| match only_contents {
            true => object_of_kind(k, b"X"),
            false => k.starts_with(b"o/") && !object_of_kind(k, b"M"),
        };
        if keys.iter().any(|k| before(k))
            && self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            let n = self.made.fetch_add(1, Ordering::SeqCst);
            upsert(&self.rival, &format!("rival{n}-"), &uniform(3, DIM, 1000 + n as u64)).unwrap();
        }
    }
}

impl vx::Store for Rivals {
    fn get(&self, key: &[u8]) -> vx::Result<Option<Vec<u8>>> {
        self.before_read(&[key]);
        if self.junk_roots.load(Ordering::SeqCst) && key.len() == 19 && object_of_kind(key, b"M") {
            let n = self.made.fetch_add(1, Ordering::SeqCst) as u64;
            let mut b = WriteBatch::default();
            b.put(key.to_vec(), uniform(40, DIM, 5000 + n).iter().flat_map(|x| x.to_le_bytes()).collect());
            assert!(self.inner.write(b).unwrap());
        }
        self.inner.get(key)
    }
    fn get_many(&self, keys: &[Vec<u8>]) -> vx::Result<Vec<Option<Vec<u8>>>> {
        self.before_read(&keys.iter().map(Vec::as_slice).collect::<Vec<_>>());
        self.inner.get_many(keys)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> vx::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(prefix)
    }
    fn write(&self, batch: WriteBatch) -> vx::Result<bool> {
        self.inner.write(batch)
    }
}

/// A writer and a reader that lose the race to a rival's commit on every
/// read for a while (the pages and chunks of the root they read deleted
/// before they read them) still finish on a newer state, losing nothing;
/// one that loses every time gives up with a retryable conflict (not a
/// false `INTEGRITY`) and writes nothing; a store that writes a junk root
/// before every read of it is `INTEGRITY` (no race). The CI once failed
/// `concurrent_writers_on_two_clients_lose_nothing` with "a manifest page is
/// missing" this way: a writer's read of the newest state gave up after
/// five lost races and the write reported it as tampering.
#[test]
fn readers_and_writers_outlast_rivals_committing_under_them() {
    let (_dir, uris) = stores("rivals");
    for (store, uri) in uris.into_iter().filter(|(s, _)| s != "postgres") {
        let owner = open(&uri);
        owner.create_index("s", &key(KEY), IndexConfig::default()).unwrap();
        let rival = load(&owner);
        upsert(&rival, "base", &uniform(40, DIM, 1)).unwrap();
        let rivals = Arc::new(Rivals {
            inner: owner.raw_store(),
            rival,
            remaining: 0.into(),
            made: 0.into(),
            junk_roots: false.into(),
            only_contents: false.into(),
        });
        let victim_client =
            Client::over_store(rivals.clone(), ClientOptions { threads: 1, ..Default::default() }).unwrap();
        let victim = load(&victim_client);
        let q = uniform(1, DIM, 5);
        let p = QueryParams { top_k: 10, ..Default::default() };

        // A write losing 20 reads in a row (more than one read's attempts:
        // the write counts a read that gave up as one lost race of its own);
        // a query losing 6.
        rivals.remaining.store(20, Ordering::SeqCst);
        upsert(&victim, "victim", &uniform(5, DIM, 2)).unwrap();
        assert_eq!(
            rivals.remaining.load(Ordering::SeqCst),
            0,
            "{store}: the rivals did not all commit under the write"
        );
        rivals.remaining.store(6, Ordering::SeqCst);
        let hits = victim.query(&q, 1, DIM, &p, Access::default()).unwrap();
        assert_eq!(hits[0].len(), 10, "{store}");
        assert_eq!(rivals.remaining.load(Ordering::SeqCst), 0, "{store}: the rivals did not all commit under the read");
        let expected = 40 + 5 + 26 * 3usize;
        assert_eq!(victim.num_vectors(Access::default()).unwrap(), expected as u64, "{store}");
        assert_eq!(load(&owner).list_ids(0, 0, Access::default()).unwrap().len(), expected, "{store}");

        // Losing every time: a clean conflict, nothing of the victim's written.
        rivals.remaining.store(usize::MAX, Ordering::SeqCst);
        let e = upsert(&victim, "lost", &uniform(5, DIM, 3)).unwrap_err();
        assert_eq!(e.status(), Status::Storage, "{store}: {e}");
        assert!(e.to_string().contains("conflict"), "{store}: {e}");
        let e = victim.query(&q, 1, DIM, &p, Access::default()).unwrap_err();
        assert_eq!(e.status(), Status::Storage, "{store}: {e}");
        let e = victim_client.load_index("s", as_root(&key(KEY))).err().unwrap();
        assert_eq!(e.status(), Status::Storage, "{store}: loading: {e}");
        rivals.remaining.store(0, Ordering::SeqCst);
        let ids = load(&owner).list_ids(0, 0, Access::default()).unwrap();
        assert!(!ids.iter().any(|id| id.starts_with("lost")), "{store}: a write that gave up left items behind");
        assert_eq!(victim.num_vectors(Access::default()).unwrap(), ids.len() as u64, "{store}");

        // An object that is there but altered is no race either, however
        // fast genuine writers commit states that name it (no commit leaves
        // other bytes under an object's key, which holds its version and
        // digest): INTEGRITY at once. (0.13.2 read again on each newer
        // state and reported the conflict.) The rival never reads the
        // contents of "base0".
        let raw = owner.raw_store();
        let altered: Vec<(Vec<u8>, Vec<u8>)> =
            raw.scan_prefix(b"o/").unwrap().into_iter().filter(|(k, _)| object_of_kind(k, b"X")).collect();
        assert!(!altered.is_empty(), "{store}: no contents objects to alter");
        let mut b = WriteBatch::default();
        for (k, v) in &altered {
            let mut v = v.clone();
            *v.last_mut().unwrap() ^= 1;
            b.put(k.clone(), v);
        }
        assert!(raw.write(b).unwrap());
        rivals.remaining.store(usize::MAX, Ordering::SeqCst);
        rivals.only_contents.store(true, Ordering::SeqCst);
        let made = rivals.made.load(Ordering::SeqCst);
        let e = victim.get(&["base0"], include::ALL, Access::default()).unwrap_err();
        assert_eq!(e.status(), Status::Integrity, "{store}: {e}");
        assert!(rivals.made.load(Ordering::SeqCst) > made, "{store}: no rival committed under the read");
        rivals.remaining.store(0, Ordering::SeqCst);
        rivals.only_contents.store(false, Ordering::SeqCst);
        let mut b = WriteBatch::default();
        altered.into_iter().for_each(|(k, v)| b.put(k, v));
        assert!(raw.write(b).unwrap());
        assert!(victim.get(&["base0"], include::ALL, Access::default()).unwrap()[0].is_some(), "{store}");

        // A root that changes at every read is no race when none of them
        // authenticates: INTEGRITY, never a conflict to retry, on reads,
        // writes and loads.
        let mut b = WriteBatch::default();
        let keys = owner.raw_store().scan_keys(b"o/").unwrap();
        let hint = keys.into_iter().find(|k| object_of_kind(k, b"V")).expect("the version hint");
        b.put(hint, u64::MAX.to_le_bytes().to_vec());
        assert!(owner.raw_store().write(b).unwrap());
        rivals.junk_roots.store(true, Ordering::SeqCst);
        let e = victim.query(&q, 1, DIM, &p, Access::default()).unwrap_err();
        assert_eq!(e.status(), Status::Integrity, "{store}: {e}");
        let e = upsert(&victim, "junk", &uniform(5, DIM, 4)).unwrap_err();
        assert_eq!(e.status(), Status::Integrity, "{store}: {e}");
        let e = victim_client.load_index("s", as_root(&key(KEY))).err().unwrap();
        assert_eq!(e.status(), Status::Integrity, "{store}: {e}");
    }
}

/// What a tampered store may answer: exactly the right answer (the edit
/// touched nothing the reads need) or a clean error. Never another answer.
/// The reader holds the index's epoch (kept outside the store), so even a
/// rollback of everything to an older genuine state is caught.
fn check_tampered(
    store: &str,
    what: &str,
    owner: &Client,
    epoch: &vx::Epoch,
    q: &[f32],
    expected: &[Answer],
) -> &'static str {
    let store_obj = owner.raw_store();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> vx::Result<_> {
        // A fresh client (a cold cache) reads every object the index names:
        // all chunks (every list probed), every directory bucket and every
        // contents object (a get of every id).
        let client = Client::over_store(store_obj.clone(), ClientOptions { threads: 2, ..Default::default() })?;
        let index = client.load_index("s", as_root(&key(KEY)))?;
        index.require_epoch(epoch)?;
        let got = answers(&index, q, LISTS)?;
        let ids = index.list_ids(0, 0, Access::default())?;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let items = index.get(&refs, include::ALL, Access::default())?;
        assert!(items.iter().all(Option::is_some), "{store}: {what}: an item vanished without an error");
        Ok(got)
    }));
    match result {
        Err(_) => panic!("{store}: {what} caused a panic"),
        Ok(Ok(got)) => {
            assert_eq!(got, expected, "{store}: {what} changed the answers without an error");
            "unchanged"
        }
        Ok(Err(e)) => match e.status() {
            Status::Integrity => "integrity",
            Status::NotFound => "not found",
            Status::WrongKey => "wrong key",
            other => panic!("{store}: {what} gave {other:?}: {e}"),
        },
    }
}

const LISTS: u32 = 12;

/// One record's new value (`None` = deleted).
type Change = (Vec<u8>, Option<Vec<u8>>);

/// Writes `changes` to `store` straight, in one batch.
fn apply_changes(store: &dyn vx::Store, changes: &[Change]) {
    let mut b = WriteBatch::default();
    for (k, v) in changes {
        match v {
            Some(v) => b.put(k.clone(), v.clone()),
            None => b.delete(k.clone()),
        }
    }
    assert!(store.write(b).unwrap());
}

/// The store key's kind byte (after `o/` and the index id), `n` for the rest.
fn kind_of(k: &[u8]) -> u8 {
    if k.starts_with(b"o/") && k.len() > 18 {
        k[18]
    } else {
        b'n'
    }
}

/// A root names long lists of stamps (the tables' page stamps, a large
/// run's stripes) through sealed list pages: a large write's run is paged,
/// the root stays small, later writes (which fold that run a range at a
/// time, changing its list) and a reload see every item, and a list page
/// flipped, truncated, deleted or put back from an older state is caught.
#[test]
fn long_stamp_lists_live_in_list_pages_that_tampering_cannot_pass() {
    let (_dir, uris) = stores("lists");
    for (store, uri) in uris {
        let client = open(&uri);
        let index = client.create_index("s", &key(KEY), IndexConfig::default()).unwrap();
        upsert(&index, "id", &uniform(60_000, DIM, 5)).unwrap();
        let raw = client.raw_store();
        let of_kind = |kind: u8| -> BTreeMap<Vec<u8>, Vec<u8>> {
            raw.scan_prefix(b"o/").unwrap().into_iter().filter(|(k, _)| kind_of(k) == kind).collect()
        };
        let old = of_kind(b'L');
        assert!(!old.is_empty(), "{store}: a 60,000-item write stored no list page");
        for round in 0..3 {
            upsert(&index, &format!("more{round}-"), &uniform(2_000, DIM, 6 + round)).unwrap();
        }
        index.delete(&["id7"], Access::default()).unwrap();
        let pristine = of_kind(b'L');
        assert!(!pristine.is_empty() && pristine != old, "{store}: the fold's list did not change");
        let roots = of_kind(b'M');
        assert!(
            roots.values().all(|root| root.len() < 1_500),
            "{store}: a root of {:?} bytes",
            roots.values().map(Vec::len)
        );
        let q = uniform(4, DIM, 7);
        let expected = answers(&index, &q, LISTS).unwrap();
        let epoch = index.epoch(Access::default()).unwrap();
        drop(index);

        // The key's token (after kind and version) names the list and page.
        let token = |k: &[u8]| k[27..43].to_vec();
        let mut edits: Vec<(String, Vec<Change>)> = Vec::new();
        for (i, (k, v)) in pristine.iter().enumerate() {
            let mut flipped = v.clone();
            flipped[v.len() / 2] ^= 0x10;
            edits.push((format!("flip list page {i}"), vec![(k.clone(), Some(flipped))]));
            edits.push((format!("truncate list page {i}"), vec![(k.clone(), Some(v[..v.len() / 2].to_vec()))]));
            edits.push((format!("delete list page {i}"), vec![(k.clone(), None)]));
            let older = old.iter().filter(|(o, b)| token(o) == token(k) && *b != v);
            for (j, (_, b)) in older.enumerate() {
                edits.push((format!("list page {i} as it was ({j})"), vec![(k.clone(), Some(b.clone()))]));
            }
        }
        assert!(edits.iter().any(|(what, _)| what.contains("as it was")), "{store}: no list page was rewritten");
        let apply = |changes: &[Change]| apply_changes(&*raw, changes);
        for (what, changes) in &edits {
            apply(changes);
            let outcome = check_tampered(&store, what, &client, &epoch, &q, &expected);
            assert_eq!(outcome, "integrity", "{store}: {what}");
            let undo: Vec<_> = changes.iter().map(|(k, _)| (k.clone(), pristine.get(k).cloned())).collect();
            apply(&undo);
        }
        assert_eq!(check_tampered(&store, "nothing (restored)", &client, &epoch, &q, &expected), "unchanged");
        let index = load(&second_client(&client, &uri));
        assert_eq!(index.num_vectors(Access::default()).unwrap(), 60_000 + 6_000 - 1, "{store}");
    }
}

#[test]
fn tampering_is_detected_on_every_store() {
    let (_dir, uris) = stores("tamper");
    for (store, uri) in uris {
        let client = open(&uri);
        let index = client.create_index("s", &key(KEY), IndexConfig::default()).unwrap();
        upsert(&index, "id", &uniform(10_500, DIM, 5)).unwrap();
        index
            .train(TrainParams { n_lists: LISTS, max_iters: 4, seed: 3, ..Default::default() }, Access::default())
            .unwrap();
        let raw = client.raw_store();
        // An older version of every object, for the replays.
        let old: BTreeMap<Vec<u8>, Vec<u8>> = raw.scan_prefix(b"o/").unwrap().into_iter().collect();
        upsert(&index, "id", &uniform(300, DIM, 6)).unwrap(); // rewrites chunks, buckets, the manifest
        index.delete(&["id7"], Access::default()).unwrap();
        let q = uniform(4, DIM, 7);
        let expected = answers(&index, &q, LISTS).unwrap();
        let epoch = index.epoch(Access::default()).unwrap();
        drop(index);

        let pristine: BTreeMap<Vec<u8>, Vec<u8>> = raw.scan_prefix(b"").unwrap().into_iter().collect();
        let kind = kind_of;
        let chunks: Vec<&Vec<u8>> = pristine.keys().filter(|k| kind(k) == b'C').collect();
        // Every record but most contents objects (thousands, all alike).
        let targets: Vec<(&Vec<u8>, &Vec<u8>)> = {
            let mut contents = 0;
            pristine
                .iter()
                .filter(|(k, _)| {
                    kind(k) != b'X' || {
                        contents += 1;
                        contents <= 5
                    }
                })
                .collect()
        };
        let mut edits: Vec<(String, Vec<Change>)> = Vec::new();
        for (i, (k, v)) in targets.iter().enumerate() {
            let label = format!("record {i} (kind '{}')", kind(k) as char);
            let mut flipped = v.to_vec();
            if let Some(b) = flipped.get_mut(v.len() / 2) {
                *b ^= 0x10;
            }
            edits.push((format!("flip in {label}"), vec![((*k).clone(), Some(flipped))]));
            edits.push((format!("truncate {label}"), vec![((*k).clone(), Some(v[..v.len() / 2].to_vec()))]));
            edits.push((format!("delete {label}"), vec![((*k).clone(), None)]));
            if let Some(o) = old.get(*k).filter(|o| o != v) {
                edits.push((format!("replay older {label}"), vec![((*k).clone(), Some(o.clone()))]));
            }
        }
        for w in chunks.windows(2) {
            edits.push((
                "swap two chunks".into(),
                vec![(w[0].clone(), Some(pristine[w[1]].clone())), (w[1].clone(), Some(pristine[w[0]].clone()))],
            ));
        }
        edits.push((
            "delete half the chunks (whole lists)".into(),
            chunks.iter().step_by(2).map(|k| ((*k).clone(), None)).collect(),
        ));
        edits.push((
            "replay every older object".into(),
            old.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
        ));

        let apply = |changes: &[Change]| apply_changes(&*raw, changes);
        let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
        for (what, changes) in &edits {
            apply(changes);
            let outcome = check_tampered(&store, what, &client, &epoch, &q, &expected);
            // Every object is read, so every edit shows, except of the
            // version hint (a clear-text cache hint that only triggers a
            // reload of the authenticated manifest).
            let hint_only = changes.iter().all(|(k, _)| kind(k) == b'V');
            assert!(hint_only || outcome != "unchanged", "{store}: {what} went unnoticed");
            *outcomes.entry(outcome).or_default() += 1;
            let undo: Vec<_> = changes.iter().map(|(k, _)| (k.clone(), pristine.get(k).cloned())).collect();
            apply(&undo);
        }
        assert_eq!(check_tampered(&store, "nothing (restored)", &client, &epoch, &q, &expected), "unchanged");
        let _ = writeln!(std::io::stderr(), "{store}: {} edits, outcomes {outcomes:?}", edits.len());

        // Without the epoch, that whole rollback is indistinguishable from
        // the older state it restores (THREAT_MODEL.md says so): it answers,
        // as of then, and the epoch it reports is the older one.
        let rollback: Vec<_> = old.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        apply(&rollback);
        let index = load(&second_client(&client, &uri));
        assert!(index.epoch(Access::default()).unwrap().version() < epoch.version(), "{store}");
        assert_eq!(index.require_epoch(&epoch).unwrap_err().status(), Status::Integrity, "{store}");
    }
}
