//! `file:/dir`: the embedded, durable default store: a redb database file
//! and, beside it, the value log (`log.rs`) that holds the large values.
//! redb gives atomic, crash-safe transactions; every write makes its values
//! durable, then commits with immediate durability (fsync), before it
//! returns.

mod log;

use std::collections::HashMap;
use std::path::Path;

use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use self::log::{Files, Locator, Segments, SEGMENT_BYTES};
use super::{Op, Store, WriteBatch};
use crate::error::{Error, Result};

/// Values smaller than [`INLINE_MAX`] bytes, where a page holds several
/// (and every value of a store written before 0.10).
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vx_objects");
/// Where each larger value lies in the value log.
const LOCATIONS: TableDefinition<&[u8], Locator> = TableDefinition::new("vx_locations");
/// Each segment of the value log: (committed length, live bytes).
const SEGMENTS: TableDefinition<u32, (u64, u64)> = TableDefinition::new("vx_segments");

pub const DB_FILE: &str = "vx.redb";
/// vx keeps its own cache of decrypted objects; redb's page cache would
/// hold the same data a second time, encrypted. With the large values in
/// the value log, what it caches is the locators and small values.
const REDB_CACHE_BYTES: usize = 32 << 20;
/// Values of at least this many bytes go to the value log: chunks, heads,
/// units, directory stripes and buckets, manifest pages. The manifest's
/// root, the version hint, key records and small contents stay in redb.
const INLINE_MAX: usize = 2048;

pub struct FileStore {
    /// Compaction needs the database alone (no transaction open): it takes
    /// the write side, every read and write the read side.
    db: RwLock<Database>,
    segments: Segments,
    /// [`SEGMENT_BYTES`]; smaller in tests, so they cross segments.
    segment_bytes: u64,
}

/// redb reports structural corruption of its own file as `Corrupted`: that is
/// tampering or media failure, i.e. `INTEGRITY`; the rest is storage trouble.
fn map_err(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(m) => Error::Integrity(format!("store file is corrupt: {m}")),
        redb::Error::Io(io) => Error::Io(io.to_string()),
        redb::Error::DatabaseAlreadyOpen => {
            Error::Storage("the store directory is already open (by another client or process)".into())
        }
        other => Error::Storage(other.to_string()),
    }
}

/// redb answers some structural corruption of its file by panicking (its
/// "unreachable" states). A corrupt file is tampering or media failure, not a
/// bug of ours: turn such a panic into `INTEGRITY` here, at the one place
/// that calls redb, so the index above only ever sees errors.
fn guarded<T>(op: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(op))
        .unwrap_or_else(|_| Err(Error::Integrity("store file is corrupt (the embedded store refused it)".into())))
}

/// A segment's committed length and the bytes of it still named by a
/// locator; at most half live, it is collected.
#[derive(Clone, Copy)]
struct Usage {
    end: u64,
    live: u64,
}

impl FileStore {
    pub fn open(dir: &Path) -> Result<FileStore> {
        guarded(|| Self::open_unguarded(dir, SEGMENT_BYTES))
    }

    fn open_unguarded(dir: &Path, segment_bytes: u64) -> Result<FileStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create store directory {}: {e}", dir.display())))?;
        // Verify every page's checksum at open: a file altered while closed
        // then fails with `Corrupted` (INTEGRITY) instead of reaching code
        // paths that panic, some of them in destructors, which would abort
        // the host process. Costs one read of the file per open.
        let db = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .set_cache_size(REDB_CACHE_BYTES)
            .create(dir.join(DB_FILE))
            .map_err(map_err)?;
        // Create the tables up front so readers never see "table missing".
        let w = db.begin_write().map_err(map_err)?;
        w.open_table(OBJECTS).map_err(map_err)?;
        w.open_table(LOCATIONS).map_err(map_err)?;
        let committed = usage(&w.open_table(SEGMENTS).map_err(map_err)?)?;
        w.commit().map_err(map_err)?;
        let ends = committed.iter().map(|(&no, u)| (no, u.end)).collect();
        let segments = Segments::open(dir, &ends)?;
        Ok(FileStore { db: RwLock::new(db), segments, segment_bytes })
    }
}

/// Every segment's usage, as `table` records it.
fn usage(table: &impl ReadableTable<u32, (u64, u64)>) -> Result<HashMap<u32, Usage>> {
    let mut out = HashMap::new();
    for entry in table.iter().map_err(map_err)? {
        let (no, usage) = entry.map_err(map_err)?;
        let (end, live) = usage.value();
        out.insert(no.value(), Usage { end, live });
    }
    Ok(out)
}

/// The value of `key`, from the value log or inline.
fn value_of(
    files: &Files<'_>,
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    locations: &impl ReadableTable<&'static [u8], Locator>,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    if let Some(at) = locations.get(key).map_err(map_err)? {
        return files.read(at.value()).map(Some);
    }
    Ok(objects.get(key).map_err(map_err)?.map(|v| v.value().to_vec()))
}

impl Store for FileStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        guarded(|| self.get_many(&[key.to_vec()]).map(|mut v| v.pop().flatten()))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        guarded(|| {
            let db = self.db.read(); // held until the transaction ends
            let files = self.segments.files(); // before the transaction begins
            let r = db.begin_read().map_err(map_err)?;
            let objects = r.open_table(OBJECTS).map_err(map_err)?;
            let locations = r.open_table(LOCATIONS).map_err(map_err)?;
            keys.iter().map(|k| value_of(&files, &objects, &locations, k)).collect()
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        guarded(|| {
            let db = self.db.read();
            let files = self.segments.files();
            let r = db.begin_read().map_err(map_err)?;
            let mut out = in_range(&r.open_table(OBJECTS).map_err(map_err)?, prefix, |v| Ok(v.to_vec()))?;
            out.extend(in_range(&r.open_table(LOCATIONS).map_err(map_err)?, prefix, |at| files.read(at))?);
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn scan_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        guarded(|| {
            let db = self.db.read();
            let r = db.begin_read().map_err(map_err)?;
            let mut out = in_range(&r.open_table(OBJECTS).map_err(map_err)?, prefix, |_| Ok(()))?;
            out.extend(in_range(&r.open_table(LOCATIONS).map_err(map_err)?, prefix, |_| Ok(()))?);
            let mut keys: Vec<Vec<u8>> = out.into_iter().map(|(k, ())| k).collect();
            keys.sort_unstable();
            Ok(keys)
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<bool> {
        guarded(|| self.write_unguarded(batch))
    }

    /// Collects every segment with dead bytes into new ones, then lets redb
    /// move its live pages down and truncate its file.
    fn compact(&self) -> Result<()> {
        guarded(|| {
            while self.collect_one()? {}
            let mut db = self.db.write();
            while db.compact().map_err(|e| Error::Storage(format!("cannot compact the store file: {e}")))? {}
            Ok(())
        })
    }
}

/// `(key, f(value))` of every key of `table` under `prefix`.
fn in_range<V: redb::Value + 'static, T>(
    table: &impl ReadableTable<&'static [u8], V>,
    prefix: &[u8],
    f: impl Fn(V::SelfType<'_>) -> Result<T>,
) -> Result<Vec<(Vec<u8>, T)>> {
    let mut out = Vec::new();
    for entry in table.range(prefix..).map_err(map_err)? {
        let (k, v) = entry.map_err(map_err)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_vec(), f(v.value())?));
    }
    Ok(out)
}

/// What one write transaction does to the value log's segments.
struct LogWrite {
    usage: HashMap<u32, Usage>,
    /// The segment appended to, the newest (`None`: nothing is appended).
    newest: Option<u32>,
}

/// Bytes a record of this key and value takes in a segment.
fn record_bytes(key_len: usize, (_, _, value_len): Locator) -> u64 {
    log::RECORD_HEADER_BYTES + key_len as u64 + value_len as u64
}

impl LogWrite {
    fn read(segments: &impl ReadableTable<u32, (u64, u64)>) -> Result<LogWrite> {
        Ok(LogWrite { usage: usage(segments)?, newest: None })
    }

    /// The record of `key` at `at` is no longer live.
    fn dropped(&mut self, key: &[u8], at: Locator) -> Result<()> {
        let bytes = record_bytes(key.len(), at);
        let u =
            self.usage.get_mut(&at.0).filter(|u| u.live >= bytes).ok_or_else(|| {
                Error::Integrity(format!("store file is corrupt: value log {}'s usage is wrong", at.0))
            })?;
        u.live -= bytes;
        Ok(())
    }

    /// The record of `key` at `at` was appended.
    fn appended(&mut self, key: &[u8], at: Locator) {
        self.usage.get_mut(&at.0).expect("appended to a known segment").live += record_bytes(key.len(), at);
    }

    /// The segment to collect now, the least live of those that qualify:
    /// with `all_dead`, any with a dead byte; else any at most half live.
    /// Never the one appended to.
    fn victim(&self, all_dead: bool) -> Option<u32> {
        self.usage
            .iter()
            .filter(|&(&no, u)| Some(no) != self.newest && if all_dead { u.live < u.end } else { 2 * u.live <= u.end })
            .min_by_key(|&(&no, u)| (u.live, no))
            .map(|(&no, _)| no)
    }
}

impl FileStore {
    fn write_unguarded(&self, batch: WriteBatch) -> Result<bool> {
        let db = self.db.read(); // held until the transaction ends
        let w = db.begin_write().map_err(map_err)?;
        {
            let files = self.segments.files();
            let objects = w.open_table(OBJECTS).map_err(map_err)?;
            let locations = w.open_table(LOCATIONS).map_err(map_err)?;
            for (key, expected) in &batch.expects {
                if value_of(&files, &objects, &locations, key)? != *expected {
                    drop((objects, locations, files));
                    w.abort().map_err(map_err)?;
                    return Ok(false);
                }
            }
        }
        let doomed = self.apply(&w, &batch.ops, false)?;
        w.commit().map_err(map_err)?;
        self.segments.delete(&doomed)?;
        Ok(true)
    }

    /// Collects one segment that holds a dead byte, in a transaction of its
    /// own; `false` when none does.
    fn collect_one(&self) -> Result<bool> {
        let db = self.db.read();
        let w = db.begin_write().map_err(map_err)?;
        if !LogWrite::read(&w.open_table(SEGMENTS).map_err(map_err)?)?.usage.values().any(|u| u.live < u.end) {
            w.abort().map_err(map_err)?;
            return Ok(false);
        }
        let doomed = self.apply(&w, &[], true)?;
        w.commit().map_err(map_err)?;
        self.segments.delete(&doomed)?;
        Ok(true)
    }

    /// Applies `ops` in `w`, appending their large values to the value log
    /// (durable before this returns), and collects at most one segment on
    /// the way (`compacting`: one with any dead byte, starting a new segment
    /// if the newest has one; else one at most half live, and only if the
    /// write appends anyway). Returns the segments the commit stops naming,
    /// to delete after it.
    fn apply(&self, w: &WriteTransaction, ops: &[Op], compacting: bool) -> Result<Vec<u32>> {
        let mut segments = w.open_table(SEGMENTS).map_err(map_err)?;
        let mut log = LogWrite::read(&segments)?;
        let appends = compacting || ops.iter().any(|op| matches!(op, Op::Put(_, v) if v.len() >= INLINE_MAX));
        if appends {
            let newest = log.usage.iter().max_by_key(|(&no, _)| no).map(|(&no, u)| (no, *u));
            log.newest = Some(match newest {
                Some((no, u)) if u.end < self.segment_bytes && !(compacting && u.live < u.end) => no,
                _ => {
                    let no = newest.map_or(1, |(no, _)| no + 1);
                    self.segments.create(no)?;
                    log.usage.insert(no, Usage { end: 0, live: 0 });
                    no
                }
            });
        }
        let mut objects = w.open_table(OBJECTS).map_err(map_err)?;
        let mut locations = w.open_table(LOCATIONS).map_err(map_err)?;
        let files = self.segments.files();
        let mut appender = match log.newest {
            Some(no) => Some(files.appender(no, log.usage[&no].end)?),
            None => None,
        };
        for op in ops {
            let (Op::Put(key, _) | Op::Delete(key)) = op;
            if let Some(at) = locations.remove(key.as_slice()).map_err(map_err)? {
                log.dropped(key, at.value())?;
            }
            objects.remove(key.as_slice()).map_err(map_err)?;
            match op {
                Op::Put(k, v) if v.len() >= INLINE_MAX => {
                    let at = appender.as_mut().expect("a large value starts an append").append(k, v)?;
                    locations.insert(k.as_slice(), at).map_err(map_err)?;
                    log.appended(k, at);
                }
                Op::Put(k, v) => {
                    objects.insert(k.as_slice(), v.as_slice()).map_err(map_err)?;
                }
                Op::Delete(_) => {}
            }
        }
        if let (Some(appender), Some(victim)) = (appender.as_mut(), log.victim(compacting)) {
            let mut records = files.records(victim, log.usage[&victim].end)?;
            while let Some((key, at)) = records.next_record()? {
                if locations.get(key.as_slice()).map_err(map_err)?.is_some_and(|l| l.value() == at) {
                    let moved = appender.append(&key, &files.read(at)?)?;
                    locations.insert(key.as_slice(), moved).map_err(map_err)?;
                    log.appended(&key, moved);
                    log.dropped(&key, at)?;
                }
            }
        }
        if let (Some(appender), Some(no)) = (appender, log.newest) {
            log.usage.get_mut(&no).expect("the newest segment").end = appender.finish()?;
        }
        drop(files);
        let mut doomed = Vec::new();
        for (&no, u) in &log.usage {
            if Some(no) != log.newest && u.live == 0 {
                segments.remove(no).map_err(map_err)?;
                doomed.push(no);
            } else {
                segments.insert(no, (u.end, u.live)).map_err(map_err)?;
            }
        }
        Ok(doomed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("vx-file-store-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Dir(dir)
        }

        fn segment_files(&self) -> Vec<PathBuf> {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "vxlog"))
                .collect();
            files.sort();
            files
        }

        fn bytes(&self) -> u64 {
            self.segment_files().iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const SMALL_SEGMENTS: u64 = 1 << 20;

    fn open(dir: &Dir) -> FileStore {
        guarded(|| FileStore::open_unguarded(&dir.0, SMALL_SEGMENTS)).unwrap()
    }

    /// A value of `len` bytes that names its key and round.
    fn value(key: usize, round: usize, len: usize) -> Vec<u8> {
        let mut v = format!("{key}/{round}/").into_bytes();
        v.resize(len, (key * 7 + round) as u8);
        v
    }

    fn key(k: usize) -> Vec<u8> {
        format!("k/{k:05}").into_bytes()
    }

    fn put_all(store: &FileStore, values: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        let mut b = WriteBatch::default();
        for (k, v) in values {
            b.put(k, v);
        }
        assert!(store.write(b).unwrap());
    }

    /// Every value the store holds under `k/`, against what it should hold.
    fn assert_holds(store: &FileStore, expected: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let scanned: BTreeMap<Vec<u8>, Vec<u8>> = store.scan_prefix(b"k/").unwrap().into_iter().collect();
        assert_eq!(scanned.len(), expected.len());
        assert!(scanned == *expected, "scan differs");
        let keys: Vec<Vec<u8>> = expected.keys().cloned().collect();
        let got = store.get_many(&keys).unwrap();
        assert!(got.iter().zip(expected.values()).all(|(g, e)| g.as_ref() == Some(e)), "get_many differs");
        assert_eq!(store.scan_keys(b"k/").unwrap(), keys);
    }

    /// Sum of the segments' (committed length, live bytes).
    fn usage_of(store: &FileStore) -> (u64, u64) {
        let db = store.db.read();
        let r = db.begin_read().unwrap();
        let t = r.open_table(SEGMENTS).unwrap();
        usage(&t).unwrap().values().fold((0, 0), |(e, l), u| (e + u.end, l + u.live))
    }

    #[test]
    fn conformance_and_durability() {
        use crate::store::Store;
        let dir = Dir::new("conformance");
        {
            let s = FileStore::open(&dir.0).unwrap();
            super::super::conformance(&s);
            // A second open of the same directory is refused while the first lives.
            assert!(FileStore::open(&dir.0).is_err());
        }
        let s = FileStore::open(&dir.0).unwrap();
        assert_eq!(s.get(b"p/3").unwrap().as_deref(), Some(&b"three"[..]));
    }

    /// Large values go to the value log, small ones stay in redb, and a key
    /// whose value changes size moves between them; a compare-and-set on a
    /// logged value compares its bytes; all of it survives a reopen.
    #[test]
    fn large_values_live_in_the_log_and_move_as_they_change() {
        let dir = Dir::new("large");
        let mut expected = BTreeMap::new();
        {
            let store = open(&dir);
            let values: Vec<_> = (0..50).map(|k| (key(k), value(k, 0, if k % 2 == 0 { 9000 } else { 40 }))).collect();
            expected.extend(values.iter().cloned());
            put_all(&store, values);
            assert!(!dir.segment_files().is_empty());
            // Sizes swap: small ones grow past INLINE_MAX, large ones shrink.
            let values: Vec<_> = (0..50).map(|k| (key(k), value(k, 1, if k % 2 == 0 { 40 } else { 5000 }))).collect();
            expected.extend(values.iter().cloned());
            put_all(&store, values);
            assert_holds(&store, &expected);

            let mut b = WriteBatch::default();
            b.delete(key(1));
            b.expect(key(3), Some(value(3, 0, 40)));
            assert!(!store.write(b.clone()).unwrap(), "a stale expectation must fail");
            b.expects.clear();
            b.expect(key(3), Some(value(3, 1, 5000)));
            assert!(store.write(b).unwrap());
            expected.remove(&key(1));
            assert_holds(&store, &expected);
        }
        let store = open(&dir);
        assert_holds(&store, &expected);
        let (end, live) = usage_of(&store);
        assert!(live <= end && live > 24 * 5000, "usage ({end}, {live})");
    }

    /// Overwrites leave dead records; a segment at most half live is
    /// collected by the next write that appends, so the log stays within
    /// twice the live bytes and a segment; `compact` collects everything.
    #[test]
    fn overwritten_space_is_collected_as_writes_go_and_by_compaction() {
        let dir = Dir::new("collect");
        let store = open(&dir);
        let mut expected = BTreeMap::new();
        let len = 10_000;
        let initial: Vec<_> = (0..300).map(|k| (key(k), value(k, 0, len))).collect();
        expected.extend(initial.iter().cloned());
        put_all(&store, initial);
        let first = dir.segment_files()[0].clone();
        for round in 1..=40 {
            // Overwrite two thirds of the keys: the first segment keeps
            // a third live for good, and must be collected all the same.
            let batch: Vec<_> = (0..300).filter(|k| k % 3 != 0).map(|k| (key(k), value(k, round, len))).collect();
            expected.extend(batch.iter().cloned());
            put_all(&store, batch);
            let (end, live) = usage_of(&store);
            assert_eq!(end, dir.bytes(), "committed lengths and files disagree");
            assert!(end <= 2 * live + 2 * SMALL_SEGMENTS, "round {round}: {end} bytes hold {live} live");
        }
        assert!(!first.exists(), "the first segment, a third live, was never collected");
        assert_holds(&store, &expected);
        store.compact().unwrap();
        let (end, live) = usage_of(&store);
        assert_eq!(end, live, "compaction left dead bytes");
        assert_eq!(dir.bytes(), end);
        assert_holds(&store, &expected);
        drop(store);
        assert_holds(&open(&dir), &expected);
    }

    /// What a write appended before it failed to commit (a crash) is gone
    /// at the next open: the bytes past a segment's committed length, and a
    /// segment file redb never named.
    #[test]
    fn what_a_crashed_write_appended_is_removed_at_open() {
        let dir = Dir::new("crash");
        let expected: BTreeMap<_, _> = (0..20).map(|k| (key(k), value(k, 0, 3000))).collect();
        put_all(&open(&dir), expected.clone());
        let segment = dir.segment_files().pop().unwrap();
        let committed = std::fs::metadata(&segment).unwrap().len();
        std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[0xee; 5000]).unwrap();
        let stray = dir.0.join("values-00000099.vxlog");
        std::fs::write(&stray, [1u8; 100]).unwrap();
        let store = open(&dir);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), committed);
        assert!(!stray.exists());
        assert_holds(&store, &expected);
        // The next write appends where the committed bytes end.
        let mut more = expected.clone();
        more.insert(key(99), value(99, 1, 3000));
        put_all(&store, [(key(99), value(99, 1, 3000))]);
        drop(store);
        assert_holds(&open(&dir), &more);
    }

    /// A segment redb names that is missing or shorter than committed is
    /// corruption (INTEGRITY) at open, not an empty or partial answer.
    #[test]
    fn a_missing_or_short_segment_is_corruption() {
        let dir = Dir::new("missing");
        put_all(&open(&dir), (0..20).map(|k| (key(k), value(k, 0, 3000))));
        let segment = dir.segment_files().pop().unwrap();
        let bytes = std::fs::read(&segment).unwrap();
        std::fs::write(&segment, &bytes[..bytes.len() - 1]).unwrap();
        let short = FileStore::open(&dir.0).err().expect("a short segment must not open");
        assert_eq!(short.status(), crate::Status::Integrity, "{short}");
        std::fs::remove_file(&segment).unwrap();
        let missing = FileStore::open(&dir.0).err().expect("a missing segment must not open");
        assert_eq!(missing.status(), crate::Status::Integrity, "{missing}");
    }

    /// A store written before the value log (every value in `vx_objects`)
    /// reads as before; overwrites and deletes of its values work.
    #[test]
    fn a_store_from_before_the_value_log_opens() {
        let dir = Dir::new("old");
        std::fs::create_dir_all(&dir.0).unwrap();
        let mut expected: BTreeMap<_, _> = (0..10).map(|k| (key(k), value(k, 0, 8000))).collect();
        {
            let db = redb::Database::create(dir.0.join(DB_FILE)).unwrap();
            let w = db.begin_write().unwrap();
            let mut t = w.open_table(OBJECTS).unwrap();
            for (k, v) in &expected {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
            drop(t);
            w.commit().unwrap();
        }
        let store = open(&dir);
        assert_holds(&store, &expected);
        let mut b = WriteBatch::default();
        b.put(key(2), value(2, 1, 8000));
        b.delete(key(3));
        assert!(store.write(b).unwrap());
        expected.insert(key(2), value(2, 1, 8000));
        expected.remove(&key(3));
        assert_holds(&store, &expected);
        drop(store);
        assert_holds(&open(&dir), &expected);
    }

    /// Readers run while writes collect and delete segments under them: a
    /// locator a reader found always has its file.
    #[test]
    fn readers_never_lose_a_segment_to_collection() {
        let dir = Dir::new("readers");
        let store = open(&dir);
        put_all(&store, (0..100).map(|k| (key(k), value(k, 0, 10_000))));
        let keys: Vec<Vec<u8>> = (0..100).map(key).collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let got = store.get_many(&keys).unwrap();
                    assert!(got.iter().all(Option::is_some));
                    reads += 1;
                }
                reads
            });
            for round in 1..=60 {
                put_all(&store, (0..100).filter(|k| k % 2 == round % 2).map(|k| (key(k), value(k, round, 10_000))));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
    }
}
