//! `file:/dir`: the embedded, durable default store: a redb database file
//! and, beside it, the value log (`log.rs`) that holds the large values.
//! redb gives atomic, crash-safe transactions; every write makes its values
//! durable, then commits with immediate durability (fsync), before it
//! returns.

mod log;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use parking_lot::RwLock;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use self::log::{Appender, Files, Locator, Segments, SEGMENT_BYTES};
use super::{part_of, Op, Store, ValuePart, WriteBatch};
use crate::error::{Error, Result};

/// Values smaller than [`INLINE_MAX`] bytes, where a page holds several
/// (and every value of a store written before 0.10).
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vx_objects");
/// Where each larger value lies in the value log.
const LOCATIONS: TableDefinition<&[u8], Locator> = TableDefinition::new("vx_locations");
/// Each segment of the value log: (committed length, live bytes).
const SEGMENTS: TableDefinition<u32, (u64, u64)> = TableDefinition::new("vx_segments");
/// Under [`CURSOR`], the segment being collected and how many of its bytes
/// have been: collection goes a bounded step per write.
const COLLECTING: TableDefinition<&str, (u32, u64)> = TableDefinition::new("vx_collecting");
const CURSOR: &str = "cursor";

pub const DB_FILE: &str = "vx.redb";
/// vx keeps its own cache of decrypted objects; redb's page cache would
/// hold the same data a second time, encrypted. With the large values in
/// the value log, what it caches is the locators and small values.
const REDB_CACHE_BYTES: usize = 32 << 20;
/// Values of at least this many bytes go to the value log: chunks, heads,
/// units, directory stripes and buckets, manifest pages. The manifest's
/// root, the version hint, key records and small contents stay in redb.
const INLINE_MAX: usize = 2048;
/// A batch whose values add up to at most this many bytes stays in redb
/// whole (a one-item write: its chunk, the pages it changes and the root,
/// ~10 KB at 3M items and up to ~60 KB at 10M), so it is one commit and one
/// fsync instead of an append and two, and takes no step of the log's
/// collection. Vectors written in bulk still go to the log.
const SMALL_BATCH_BYTES: usize = 128 << 10;
/// A write reads at most this many times the bytes it appends of the
/// segment being collected (at least [`COLLECT_MIN_BYTES`]; `compact`: all
/// of it), so a small write that appends never waits for a whole segment's copy. The
/// segment is at most half live, so each step frees at least what the write
/// appended, on average, and dead bytes stay within the live ones.
const COLLECT_SHARE: u64 = 2;
const COLLECT_MIN_BYTES: u64 = 256 << 10;

pub struct FileStore {
    /// Compaction needs the database alone (no transaction open): it takes
    /// the write side, every read and write the read side.
    db: RwLock<Database>,
    segments: Segments,
    /// [`SEGMENT_BYTES`]; smaller in tests, so they cross segments.
    segment_bytes: u64,
    /// [`SMALL_BATCH_BYTES`]; 0 in tests of the log, so that every large
    /// value goes there.
    small_batch_bytes: usize,
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
        guarded(|| Self::open_unguarded(dir, (SEGMENT_BYTES, SMALL_BATCH_BYTES)))
    }

    fn open_unguarded(dir: &Path, (segment_bytes, small_batch_bytes): (u64, usize)) -> Result<FileStore> {
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
        // The segments are checked before anything is written.
        let committed = match db.begin_read().map_err(map_err)?.open_table(SEGMENTS) {
            Ok(t) => usage(&t)?,
            Err(redb::TableError::TableDoesNotExist(_)) => HashMap::new(),
            Err(e) => return Err(map_err(e)),
        };
        let ends = committed.iter().map(|(&no, u)| (no, u.end)).collect();
        let segments = Segments::open(dir, &ends)?;
        // Create the tables up front so readers never see "table missing".
        let w = db.begin_write().map_err(map_err)?;
        w.open_table(OBJECTS).map_err(map_err)?;
        w.open_table(LOCATIONS).map_err(map_err)?;
        w.open_table(COLLECTING).map_err(map_err)?;
        w.open_table(SEGMENTS).map_err(map_err)?;
        w.commit().map_err(map_err)?;
        Ok(FileStore { db: RwLock::new(db), segments, segment_bytes, small_batch_bytes })
    }
}

/// Every segment's usage, as `table` records it.
fn usage(table: &impl ReadableTable<u32, (u64, u64)>) -> Result<HashMap<u32, Usage>> {
    let mut out = HashMap::new();
    for entry in table.iter().map_err(map_err)? {
        let (no, usage) = entry.map_err(map_err)?;
        let (end, live) = usage.value();
        if live > end {
            return Err(wrong_usage(no.value()));
        }
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

/// `len` bytes of `key`'s value from `start` (see `Store::get_part`): one
/// `pread` of just those bytes when the value is in the log.
fn part_of_value(
    files: &Files<'_>,
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    locations: &impl ReadableTable<&'static [u8], Locator>,
    (key, start, len): &ValuePart,
) -> Result<Option<Vec<u8>>> {
    if let Some(at) = locations.get(key.as_slice()).map_err(map_err)? {
        let (no, offset, value_len) = at.value();
        if start.checked_add(*len as u64).is_none_or(|end| end > value_len as u64) {
            return Ok(None);
        }
        return files.read((no, offset + start, *len)).map(Some);
    }
    let value = objects.get(key.as_slice()).map_err(map_err)?;
    Ok(value.and_then(|v| part_of(v.value(), *start, *len).map(<[u8]>::to_vec)))
}

/// Where a read finds values: the value log's segments and redb's two tables.
type ReadAt<'r, 'f> =
    (&'r Files<'f>, &'r ReadOnlyTable<&'static [u8], &'static [u8]>, &'r ReadOnlyTable<&'static [u8], Locator>);

impl FileStore {
    /// `read` of each of `wanted`, in one read transaction (the segments it
    /// names kept until it ends).
    fn read_each<W, T>(&self, wanted: &[W], read: impl Fn(ReadAt<'_, '_>, &W) -> Result<T>) -> Result<Vec<T>> {
        guarded(|| {
            let db = self.db.read(); // held until the transaction ends
            let files = self.segments.files(); // before the transaction begins
            let r = db.begin_read().map_err(map_err)?;
            let objects = r.open_table(OBJECTS).map_err(map_err)?;
            let locations = r.open_table(LOCATIONS).map_err(map_err)?;
            wanted.iter().map(|w| read((&files, &objects, &locations), w)).collect()
        })
    }
}

impl Store for FileStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        guarded(|| self.get_many(&[key.to_vec()]).map(|mut v| v.pop().flatten()))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.read_each(keys, |at, key| value_of(at.0, at.1, at.2, key))
    }

    fn get_part(&self, key: &[u8], start: u64, len: u32) -> Result<Option<Vec<u8>>> {
        self.get_parts(&[(key.to_vec(), start, len)]).map(|mut v| v.pop().flatten())
    }

    fn get_parts(&self, parts: &[ValuePart]) -> Result<Vec<Option<Vec<u8>>>> {
        self.read_each(parts, |at, part| part_of_value(at.0, at.1, at.2, part))
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
    fn settle(&self) {
        self.segments.settle();
    }

    fn compact(&self) -> Result<()> {
        guarded(|| {
            self.collect_all()?;
            self.segments.settle();
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
    /// The segments whose usage this write changed.
    changed: HashSet<u32>,
    /// The segment appended to, the newest (`None`: nothing is appended).
    newest: Option<u32>,
}

/// Bytes a record of this key and value takes in a segment.
fn record_bytes(key_len: usize, (_, _, value_len): Locator) -> u64 {
    log::RECORD_HEADER_BYTES + key_len as u64 + value_len as u64
}

/// How much of the value log a write collects.
#[derive(Clone, Copy)]
enum Collect {
    /// A bounded step ([`COLLECT_SHARE`]), if it appends anyway.
    Step,
    /// All of this segment (`compact`).
    Whole(u32),
}

impl LogWrite {
    fn read(segments: &impl ReadableTable<u32, (u64, u64)>) -> Result<LogWrite> {
        Ok(LogWrite { usage: usage(segments)?, changed: HashSet::new(), newest: None })
    }

    /// The highest segment number. It is never deleted, so a number is
    /// never reused: a write that rolls over while another deletes what
    /// its commit stopped naming cannot meet a file of the same number.
    fn highest(&self) -> Option<u32> {
        self.usage.keys().max().copied()
    }

    /// Starts segment `no`, the new newest.
    fn started(&mut self, no: u32) {
        self.changed.extend(self.highest());
        self.usage.insert(no, Usage { end: 0, live: 0 });
        self.changed.insert(no);
        self.newest = Some(no);
    }

    /// The record of `key` at `at` was appended.
    fn appended(&mut self, key: &[u8], at: Locator) {
        self.usage.get_mut(&at.0).expect("appended to a known segment").live += record_bytes(key.len(), at);
        self.changed.insert(at.0);
    }

    /// The record of `key` at `at` is no longer live.
    fn dropped(&mut self, key: &[u8], at: Locator) -> Result<()> {
        let bytes = record_bytes(key.len(), at);
        let u = self.usage.get_mut(&at.0).filter(|u| u.live >= bytes).ok_or_else(|| wrong_usage(at.0))?;
        u.live -= bytes;
        self.changed.insert(at.0);
        Ok(())
    }

    /// The segment a [`Collect::Step`] starts on: the least live of those
    /// at most half live (with a live byte: one without goes as it is),
    /// never the one appended to.
    fn victim(&self) -> Option<u32> {
        self.usage
            .iter()
            .filter(|&(&no, u)| Some(no) != self.newest && u.live > 0 && 2 * u.live <= u.end)
            .min_by_key(|&(&no, u)| (u.live, no))
            .map(|(&no, _)| no)
    }

    /// Records the changed usage in `table`; returns the segments it stops
    /// naming (no live byte, not the highest), to delete after the commit.
    fn store(&self, table: &mut redb::Table<u32, (u64, u64)>) -> Result<Vec<u32>> {
        let highest = self.highest();
        let mut doomed = Vec::new();
        for &no in &self.changed {
            let u = self.usage[&no];
            if u.live == 0 && Some(no) != highest {
                table.remove(no).map_err(map_err)?;
                doomed.push(no);
            } else {
                table.insert(no, (u.end, u.live)).map_err(map_err)?;
            }
        }
        Ok(doomed)
    }
}

fn wrong_usage(no: u32) -> Error {
    Error::Integrity(format!("store file is corrupt: value log {no}'s usage is wrong"))
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
        let doomed = self.apply(&w, &batch.ops, Collect::Step)?;
        w.commit().map_err(map_err)?;
        self.segments.delete(&doomed);
        Ok(true)
    }

    /// Collects every segment that holds a dead byte as `compact` begins,
    /// each in a transaction of its own (segments that writers running
    /// meanwhile fill with dead bytes wait for the next one).
    fn collect_all(&self) -> Result<()> {
        let dead: Vec<u32> = {
            let db = self.db.read();
            let r = db.begin_read().map_err(map_err)?;
            let mut dead: Vec<u32> = usage(&r.open_table(SEGMENTS).map_err(map_err)?)?
                .into_iter()
                .filter(|(_, u)| u.live < u.end)
                .map(|(no, _)| no)
                .collect();
            // The highest first: collecting it starts a new segment, which
            // the others' live records then join (copied once, not twice).
            dead.sort_unstable_by(|a, b| b.cmp(a));
            dead
        };
        for victim in dead {
            let db = self.db.read();
            let w = db.begin_write().map_err(map_err)?;
            if !usage(&w.open_table(SEGMENTS).map_err(map_err)?)?.contains_key(&victim) {
                w.abort().map_err(map_err)?;
                continue;
            }
            let doomed = self.apply(&w, &[], Collect::Whole(victim))?;
            w.commit().map_err(map_err)?;
            self.segments.delete(&doomed);
        }
        Ok(())
    }

    /// Applies `ops` in `w`, appending their large values to the value log
    /// (durable before this returns), and collects as `collect` says.
    /// Returns the segments the commit stops naming, to delete after it.
    fn apply(&self, w: &WriteTransaction, ops: &[Op], collect: Collect) -> Result<Vec<u32>> {
        let mut segments = w.open_table(SEGMENTS).map_err(map_err)?;
        let mut log = LogWrite::read(&segments)?;
        let whole = match collect {
            Collect::Whole(victim) => Some(victim),
            Collect::Step => None,
        };
        let put_bytes: usize = ops.iter().map(|op| if let Op::Put(_, v) = op { v.len() } else { 0 }).sum();
        let logged = |v: &[u8]| put_bytes > self.small_batch_bytes && v.len() >= INLINE_MAX;
        if whole.is_some() || ops.iter().any(|op| matches!(op, Op::Put(_, v) if logged(v))) {
            match log.highest().map(|no| (no, log.usage[&no])) {
                Some((no, u)) if u.end < self.segment_bytes && Some(no) != whole => log.newest = Some(no),
                highest => {
                    let no =
                        highest.map_or(Some(1), |(no, _)| no.checked_add(1)).ok_or_else(|| wrong_usage(u32::MAX))?;
                    self.segments.create(no)?;
                    log.started(no);
                }
            }
        }
        let mut objects = w.open_table(OBJECTS).map_err(map_err)?;
        let mut locations = w.open_table(LOCATIONS).map_err(map_err)?;
        let files = self.segments.files();
        let start = log.newest.map_or(0, |no| log.usage[&no].end);
        let mut appender = match log.newest {
            Some(no) => Some(files.appender(no, start)?),
            None => None,
        };
        for op in ops {
            let (Op::Put(key, _) | Op::Delete(key)) = op;
            if let Some(at) = locations.remove(key.as_slice()).map_err(map_err)? {
                log.dropped(key, at.value())?;
            }
            objects.remove(key.as_slice()).map_err(map_err)?;
            match op {
                Op::Put(k, v) if logged(v) => {
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
        if let Some(appender) = appender.as_mut() {
            let mut collecting = w.open_table(COLLECTING).map_err(map_err)?;
            let cursor = collecting.get(CURSOR).map_err(map_err)?.map(|c| c.value());
            // A cursor on a segment deleted meanwhile (its values all
            // overwritten) is done with; else it is resumed.
            let resumed = cursor.filter(|(no, _)| log.usage.contains_key(no) && Some(*no) != log.newest);
            let (target, budget) = match whole {
                Some(victim) => (Some((victim, resumed.filter(|c| c.0 == victim).map_or(0, |c| c.1))), u64::MAX),
                None => {
                    let step = (COLLECT_SHARE * (appender.len() - start)).max(COLLECT_MIN_BYTES);
                    (resumed.or_else(|| Some((log.victim()?, 0))), step)
                }
            };
            if cursor.is_some() && resumed.is_none() {
                collecting.remove(CURSOR).map_err(map_err)?;
            }
            if let Some((victim, from)) = target {
                match self.collect(&files, &mut locations, &mut log, appender, (victim, from), budget) {
                    Ok(at) if at < log.usage[&victim].end => {
                        collecting.insert(CURSOR, (victim, at)).map_err(map_err)?;
                    }
                    Ok(_) => {
                        if resumed.is_some_and(|c| c.0 == victim) {
                            collecting.remove(CURSOR).map_err(map_err)?;
                        }
                    }
                    // A write's step of collection is housekeeping: a
                    // segment it cannot read (nothing was moved) does not
                    // fail the write; `compact` reports it.
                    // It starts over from the segment's first byte next time.
                    Err(Error::Integrity(_)) if whole.is_none() => {
                        collecting.remove(CURSOR).map_err(map_err)?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if let (Some(appender), Some(no)) = (appender, log.newest) {
            log.usage.get_mut(&no).expect("the newest segment").end = appender.finish()?;
        }
        drop(files);
        log.store(&mut segments)
    }

    /// Moves the live records of segment `victim` from byte `from` on to
    /// `appender`, reading at least `budget` bytes of it (a record begun is
    /// finished), to its end, or until every live record is found; returns
    /// how far it got (the end once nothing live is left). The records are
    /// found before anything moves, so a segment that cannot be read (an
    /// altered header or usage record) fails here with nothing changed.
    fn collect(
        &self,
        files: &Files<'_>,
        locations: &mut redb::Table<&'static [u8], Locator>,
        log: &mut LogWrite,
        appender: &mut Appender<'_>,
        (victim, from): (u32, u64),
        budget: u64,
    ) -> Result<u64> {
        let Usage { end, live } = log.usage[&victim];
        let mut records = files.records(victim, from, end)?;
        let (mut found, mut found_bytes) = (Vec::new(), 0);
        while found_bytes < live && records.position() - from < budget {
            let Some((key, at)) = records.next_record()? else { break };
            if locations.get(key.as_slice()).map_err(map_err)?.is_some_and(|l| l.value() == at) {
                found_bytes += record_bytes(key.len(), at);
                found.push((key, at));
            }
        }
        // At the end, every live byte must have been found: more counted
        // live means the recorded usage is wrong (and collecting again
        // would never end).
        let done = found_bytes == live;
        if !done && (records.position() == end || found_bytes > live) {
            return Err(wrong_usage(victim));
        }
        for (key, at) in found {
            let moved = appender.append(&key, &files.read(at)?)?;
            locations.insert(key.as_slice(), moved).map_err(map_err)?;
            log.appended(&key, moved);
            log.dropped(&key, at)?;
        }
        log.changed.insert(victim);
        Ok(if done { end } else { records.position() })
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
        guarded(|| FileStore::open_unguarded(&dir.0, (SMALL_SEGMENTS, 0))).unwrap()
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
        assert!(write(store, b));
    }

    /// `store.write(b)`, then the segments it freed are gone (they are
    /// unlinked on a thread of their own).
    fn write(store: &FileStore, b: WriteBatch) -> bool {
        let done = store.write(b).unwrap();
        store.segments.settle();
        done
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

    fn cursor_of(store: &FileStore) -> Option<(u32, u64)> {
        let db = store.db.read();
        let r = db.begin_read().unwrap();
        let t = r.open_table(COLLECTING).unwrap();
        t.get(CURSOR).unwrap().map(|c| c.value())
    }

    /// Each segment's recorded live bytes against a recount of the records
    /// its locators name, and its committed length against its file.
    fn assert_usage_consistent(store: &FileStore, dir: &Dir) {
        let db = store.db.read();
        let r = db.begin_read().unwrap();
        let recorded = usage(&r.open_table(SEGMENTS).unwrap()).unwrap();
        let mut counted: HashMap<u32, u64> = HashMap::new();
        for entry in r.open_table(LOCATIONS).unwrap().iter().unwrap() {
            let (k, at) = entry.unwrap();
            *counted.entry(at.value().0).or_default() += record_bytes(k.value().len(), at.value());
        }
        for (no, u) in &recorded {
            assert_eq!(u.live, counted.get(no).copied().unwrap_or(0), "live bytes of segment {no}");
            let len = std::fs::metadata(dir.0.join(format!("values-{no:08}.vxlog"))).unwrap().len();
            assert_eq!(u.end, len, "committed length of segment {no}");
        }
        assert!(counted.keys().all(|no| recorded.contains_key(no)), "a locator names an unrecorded segment");
        assert_eq!(dir.segment_files().len(), recorded.len(), "segment files no usage names");
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
            assert!(!write(&store, b.clone()), "a stale expectation must fail");
            b.expects.clear();
            b.expect(key(3), Some(value(3, 1, 5000)));
            assert!(write(&store, b));
            expected.remove(&key(1));
            assert_holds(&store, &expected);
        }
        let store = open(&dir);
        assert_holds(&store, &expected);
        let (end, live) = usage_of(&store);
        assert!(live <= end && live > 24 * 5000, "usage ({end}, {live})");
    }

    /// A segment no commit names is unlinked off the writer's thread; it is
    /// gone once `settle` returns, and once the store is dropped, and the
    /// store reopens whole.
    #[test]
    fn freed_segments_are_unlinked_by_settle_and_by_closing() {
        let dir = Dir::new("unlink");
        let store = open(&dir);
        // Three writes of over 1 MiB each: three segments.
        (0..3).for_each(|w| put_all(&store, (100 * w..100 * (w + 1)).map(|k| (key(k), value(k, 0, 11_000)))));
        let files = dir.segment_files();
        let named = |store: &FileStore| {
            let db = store.db.read();
            let r = db.begin_read().unwrap();
            usage(&r.open_table(SEGMENTS).unwrap()).unwrap().len()
        };
        for (w, settle) in [(0, true), (1, false)] {
            let before = named(&store);
            let mut b = WriteBatch::default();
            (100 * w..100 * (w + 1)).for_each(|k| b.delete(key(k)));
            assert!(store.write(b).unwrap()); // not `write`: no waiting here
            assert!(named(&store) < before, "write {w} freed no segment");
            if settle {
                Store::settle(&store);
                assert!(!files[w].exists(), "settle returned before a freed segment was unlinked");
            }
        }
        drop(store);
        assert!(!files[1].exists(), "a freed segment outlived its store");
        let store = open(&dir);
        assert_holds(&store, &(200..300).map(|k| (key(k), value(k, 0, 11_000))).collect());
        assert_usage_consistent(&store, &dir);
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
        assert!(write(&store, b));
        expected.insert(key(2), value(2, 1, 8000));
        expected.remove(&key(3));
        assert_holds(&store, &expected);
        drop(store);
        assert_holds(&open(&dir), &expected);
    }

    /// Live bytes stay exact through the cases a batch can mix: a key put
    /// twice, put then deleted, moved between redb and the log, and a key
    /// of the batch whose old record the same write is collecting.
    #[test]
    fn live_bytes_stay_exact_whatever_a_batch_mixes() {
        let dir = Dir::new("accounting");
        let store = open(&dir);
        put_all(&store, (0..200).map(|k| (key(k), value(k, 0, 10_000))));
        assert_usage_consistent(&store, &dir);
        let mut b = WriteBatch::default();
        b.put(key(1), value(1, 1, 9000));
        b.put(key(1), value(1, 2, 7000)); // twice
        b.put(key(2), value(2, 1, 9000));
        b.delete(key(2)); // put, then deleted
        b.put(key(3), value(3, 1, 10)); // into redb
        b.put(key(500), value(500, 1, 10));
        assert!(write(&store, b));
        assert_usage_consistent(&store, &dir);
        let mut b = WriteBatch::default();
        b.put(key(500), value(500, 2, 9000)); // back to the log
        b.delete(key(3));
        assert!(write(&store, b));
        assert_usage_consistent(&store, &dir);
        // Overwrite most of the first segment, then keys it still holds
        // while the write collects it.
        for round in 1..=3 {
            put_all(&store, (10..200).filter(|k| k % 4 != 0).map(|k| (key(k), value(k, round, 10_000))));
            assert_usage_consistent(&store, &dir);
        }
        for round in 4..=12 {
            let mut b = WriteBatch::default();
            for k in (0..200).filter(|k| k % 4 == 0).take(3) {
                b.put(key(k), value(k, round, 10_000));
            }
            b.delete(key(round * 4 + 100));
            assert!(write(&store, b));
            assert_usage_consistent(&store, &dir);
        }
        store.compact().unwrap();
        assert_usage_consistent(&store, &dir);
        let (end, live) = usage_of(&store);
        assert_eq!(end, live);
    }

    /// A write collects a bounded step of the segment being collected (not
    /// the whole of it), and the next writes, after a reopen too, go on
    /// where it stopped until the segment is gone.
    #[test]
    fn collection_goes_a_bounded_step_per_write() {
        let dir = Dir::new("step");
        let store = open(&dir);
        put_all(&store, (0..400).map(|k| (key(k), value(k, 0, 10_000))));
        let first = dir.segment_files()[0].clone();
        // Seven eighths of the first segment dead, by a write that appends
        // nothing (so collects nothing): a victim for the writes after.
        let mut b = WriteBatch::default();
        (0..400).filter(|k| k % 8 != 0).for_each(|k| b.delete(key(k)));
        assert!(write(&store, b));
        let len = 3000;
        let (mut steps, mut store) = (0, store);
        while first.exists() {
            let (before, cursor) = (dir.bytes(), cursor_of(&store));
            put_all(&store, [(key(1000 + steps), value(1000 + steps, 0, len))]);
            let grew = dir.bytes() as i64 - before as i64;
            assert!(grew <= (COLLECT_MIN_BYTES + 2 * 10_100) as i64, "one small write appended {grew} bytes");
            if let Some((_, at)) = cursor_of(&store) {
                let read = at - cursor.map_or(0, |c| c.1);
                assert!(read <= COLLECT_MIN_BYTES + 10_100, "one small write read {read} bytes of the segment");
            }
            assert_usage_consistent(&store, &dir);
            steps += 1;
            assert!(steps < 100, "collection never finished");
            if steps == 2 {
                let cursor = cursor_of(&store);
                assert!(cursor.is_some_and(|c| c.1 > 0), "no cursor after two steps");
                drop(store);
                store = open(&dir);
                assert_eq!(cursor_of(&store), cursor, "the cursor did not survive a reopen");
            }
        }
        assert!(steps > 2, "one write collected the whole segment ({steps} steps)");
        let expected: BTreeMap<_, _> = (0..400)
            .filter(|k| k % 8 == 0)
            .map(|k| (key(k), value(k, 0, 10_000)))
            .chain((0..steps).map(|s| (key(1000 + s), value(1000 + s, 0, len))))
            .collect();
        assert_holds(&store, &expected);
    }

    /// A batch of at most `SMALL_BATCH_BYTES` stays in redb, large values
    /// too: nothing appended, no step of collection, one fsync; a value
    /// it replaces in the log is dead there. A larger batch appends.
    #[test]
    fn small_batches_stay_in_redb() {
        let dir = Dir::new("small");
        let open =
            |dir: &Dir| guarded(|| FileStore::open_unguarded(&dir.0, (SMALL_SEGMENTS, SMALL_BATCH_BYTES))).unwrap();
        let store = open(&dir);
        put_all(&store, (0..100).map(|k| (key(k), value(k, 0, 10_000))));
        let mut b = WriteBatch::default();
        (0..100).filter(|k| k % 2 == 0).for_each(|k| b.delete(key(k)));
        assert!(write(&store, b)); // half the segment dead: a victim
        let (before, usage, cursor) = (dir.bytes(), usage_of(&store), cursor_of(&store));
        let small = [(key(1), value(1, 1, 9000)), (key(500), value(500, 1, 9000)), (key(501), value(501, 1, 100))];
        put_all(&store, small.clone());
        assert_eq!(dir.bytes(), before, "a small batch appended to the log");
        assert_eq!(cursor_of(&store), cursor, "a small batch took a step of collection");
        let (end, live) = usage_of(&store);
        assert_eq!(
            (end, live),
            (usage.0, usage.1 - record_bytes(key(1).len(), (0, 0, 10_000))),
            "key 1's record is dead"
        );
        let mut expected: BTreeMap<_, _> =
            (0..100).filter(|k| k % 2 == 1).map(|k| (key(k), value(k, 0, 10_000))).collect();
        expected.extend(small);
        assert_holds(&store, &expected);
        let large: Vec<_> = (0..4).map(|k| (key(600 + k), value(600 + k, 0, SMALL_BATCH_BYTES / 3))).collect();
        put_all(&store, large.clone());
        assert!(dir.bytes() > before, "a larger batch stayed in redb");
        expected.extend(large);
        drop(store);
        let store = open(&dir);
        assert_holds(&store, &expected);
        assert_usage_consistent(&store, &dir);
    }

    /// Writers race: one empties the newest segment with delete-only
    /// batches while the other rolls over to new segments. No acknowledged
    /// value is lost and the store reopens (a number once deleted and
    /// started again by the other writer lost its values).
    #[test]
    fn racing_writers_lose_nothing_as_segments_come_and_go() {
        let dir = Dir::new("race");
        let store = guarded(|| FileStore::open_unguarded(&dir.0, (64 << 10, 0))).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..150 {
                    let doomed: Vec<_> = (0..3).map(|k| format!("a/{round}/{k}").into_bytes()).collect();
                    put_all(&store, doomed.iter().map(|k| (k.clone(), value(0, round, 20_000))));
                    let mut b = WriteBatch::default();
                    doomed.into_iter().for_each(|k| b.delete(k));
                    assert!(write(&store, b));
                }
            });
            s.spawn(|| {
                for round in 0..150 {
                    put_all(&store, [(key(round), value(round, 0, 30_000))]);
                }
            });
        });
        assert_usage_consistent(&store, &dir);
        drop(store);
        let store = open(&dir);
        let expected: BTreeMap<_, _> = (0..150).map(|k| (key(k), value(k, 0, 30_000))).collect();
        assert_holds(&store, &expected);
    }

    /// A locator is not authenticated: one altered to name an unknown
    /// segment, a length past the end or a huge one reads as INTEGRITY
    /// (before anything is allocated for it).
    #[test]
    fn an_altered_locator_is_corruption() {
        let dir = Dir::new("locator");
        let store = open(&dir);
        put_all(&store, [(key(1), value(1, 0, 5000))]);
        let (no, offset, len) = {
            let db = store.db.read();
            let r = db.begin_read().unwrap();
            let t = r.open_table(LOCATIONS).unwrap();
            t.get(key(1).as_slice()).unwrap().unwrap().value()
        };
        for forged in [(no + 7, offset, len), (no, offset + 100, len), (no, offset, u32::MAX), (no, u64::MAX - 2, len)]
        {
            {
                let db = store.db.read();
                let w = db.begin_write().unwrap();
                w.open_table(LOCATIONS).unwrap().insert(key(1).as_slice(), forged).unwrap();
                w.commit().unwrap();
            }
            let e = store.get(&key(1)).unwrap_err();
            assert_eq!(e.status(), crate::Status::Integrity, "{forged:?}: {e}");
        }
    }

    /// A directory whose redb file and segments disagree (a segment short)
    /// is refused before anything in it is changed: no file removed or
    /// truncated.
    #[test]
    fn a_disagreeing_directory_is_refused_untouched() {
        let dir = Dir::new("disagree");
        {
            let store = open(&dir);
            put_all(&store, (0..120).map(|k| (key(k), value(k, 0, 10_000))));
            put_all(&store, (200..220).map(|k| (key(k), value(k, 0, 3000))));
        }
        let segments = dir.segment_files();
        assert_eq!(segments.len(), 2);
        // The first longer than committed, the second shorter.
        let mut first = std::fs::read(&segments[0]).unwrap();
        first.extend_from_slice(&[0xee; 100]);
        std::fs::write(&segments[0], &first).unwrap();
        let second = std::fs::read(&segments[1]).unwrap();
        std::fs::write(&segments[1], &second[..second.len() - 10]).unwrap();
        let stray = dir.0.join("values-00000042.vxlog");
        std::fs::write(&stray, [7u8; 64]).unwrap();
        assert_eq!(FileStore::open(&dir.0).err().unwrap().status(), crate::Status::Integrity);
        assert!(stray.exists(), "an unnamed segment was removed before the refusal");
        assert_eq!(std::fs::read(&segments[0]).unwrap(), first, "a segment was truncated before the refusal");
        assert_eq!(std::fs::read(&segments[1]).unwrap(), second[..second.len() - 10]);
    }

    /// A segment whose dead records cannot be read (an altered header) does
    /// not fail the writes that would collect a step of it; `compact`
    /// reports it.
    #[test]
    fn an_unreadable_segment_fails_compaction_not_writes() {
        let dir = Dir::new("unreadable");
        {
            // 1.2 MB: the next write that appends starts a second segment,
            // and the first, one record live (its last), is collected.
            let store = open(&dir);
            put_all(&store, (0..120).map(|k| (key(k), value(k, 0, 10_000))));
            let mut b = WriteBatch::default();
            (0..119).for_each(|k| b.delete(key(k)));
            assert!(write(&store, b));
        }
        // The second record (key 1, dead) claims a key longer than the file.
        let first = dir.segment_files()[0].clone();
        let mut bytes = std::fs::read(&first).unwrap();
        let second = 8 + key(0).len() + 10_000;
        bytes[second..second + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&first, &bytes).unwrap();
        let store = open(&dir);
        for k in 0..5 {
            put_all(&store, [(key(500 + k), value(500 + k, 0, 3000))]);
            assert_eq!(cursor_of(&store), None);
        }
        assert!(first.exists());
        let mut expected: BTreeMap<_, _> = (500..505).map(|k| (key(k), value(k, 0, 3000))).collect();
        expected.insert(key(119), value(119, 0, 10_000));
        assert_holds(&store, &expected);
        assert_eq!(store.compact().unwrap_err().status(), crate::Status::Integrity);
        assert_holds(&store, &expected);
    }

    /// A usage record that counts more live bytes than a segment's records
    /// hold (an altered redb file) is corruption when the segment is
    /// collected, not a compaction that never ends.
    #[test]
    fn a_wrong_usage_record_is_corruption() {
        let dir = Dir::new("usage");
        {
            let store = open(&dir);
            put_all(&store, (0..20).map(|k| (key(k), value(k, 0, 3000))));
            put_all(&store, (0..10).map(|k| (key(k), value(k, 1, 3000))));
            let db = store.db.read();
            let w = db.begin_write().unwrap();
            let mut t = w.open_table(SEGMENTS).unwrap();
            let (end, live) = t.get(1).unwrap().unwrap().value();
            t.insert(1, (end, live + 1)).unwrap();
            drop(t);
            w.commit().unwrap();
        }
        let e = open(&dir).compact().unwrap_err();
        assert_eq!(e.status(), crate::Status::Integrity, "{e}");
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
