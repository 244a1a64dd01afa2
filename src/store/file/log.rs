//! The `file:` store's value log: append-only segment files beside the redb
//! database that hold its large values (WiscKey's key-value separation).
//!
//! redb keeps each value inside its B-tree's pages, so every write of a
//! 64 KiB chunk or a 4 KiB unit dirtied and rewrote whole pages, and its
//! transactions and tree grew with the index (the fill rate at 10M was
//! 0.44-0.64x the first million's, most of the difference in redb's write).
//! Here a write appends its large values to the newest segment, one
//! sequential write and one `fdatasync`, and redb commits only each value's
//! small locator. A read is a lookup in a tree of locators small enough to
//! stay in redb's cache, then one `pread`.
//!
//! A segment is a run of records `[key length u32][value length u32][key]
//! [value]` (little-endian). Which records are live is redb's to say (the
//! locator of a record's key names it); a segment's record headers are only
//! read to collect it. Nothing here is trusted for what it holds: values
//! are sealed by the index, so altered bytes fail authentication above.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::error::{Error, Result};

/// Where a value lives: segment, offset of the value's first byte, length.
pub type Locator = (u32, u64, u32);

/// A new segment is started by the first write that finds the newest one
/// holding this many bytes (one write's values all go to one segment, so a
/// large write makes a larger one). A segment is collected (its live
/// records copied to the newest, a bounded step per write) once at most
/// half of it is live.
pub const SEGMENT_BYTES: u64 = 64 << 20;

pub const RECORD_HEADER_BYTES: u64 = 8;
/// Bytes an append gathers before it writes them.
const APPEND_BUFFER_BYTES: usize = 1 << 20;

fn file_name(no: u32) -> String {
    format!("values-{no:08}.vxlog")
}

/// The segment a file name names: only the name [`file_name`] gives it,
/// so no other spelling of a number is taken for (or truncated as) one.
fn number_of(name: &str) -> Option<u32> {
    let no = name.strip_prefix("values-")?.strip_suffix(".vxlog")?.parse().ok()?;
    (file_name(no) == name).then_some(no)
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Integrity(format!("store file is corrupt: {what}"))
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::Io(format!("{what}: {e}"))
}

/// The segment files of one store directory, open.
pub struct Segments {
    dir: PathBuf,
    files: RwLock<HashMap<u32, Segment>>,
    /// The threads unlinking segments no commit names (see `delete`).
    unlinking: Mutex<Vec<JoinHandle<()>>>,
}

/// An open segment and its length as far as appends have made it durable
/// (what a read's locator is checked against; a reader of an older
/// snapshot may see it larger, which only loosens a bound it never needs).
struct Segment {
    file: File,
    len: AtomicU64,
}

impl Segment {
    fn new(file: File, len: u64) -> Segment {
        Segment { file, len: AtomicU64::new(len) }
    }
}

/// The segments as a reader sees them. A reader takes this before it
/// begins its redb transaction and keeps it until it has read its values:
/// a segment is deleted only after the commit that stopped naming it, under
/// the write side of the same lock, so a locator a reader found always has
/// its file.
pub struct Files<'a>(RwLockReadGuard<'a, HashMap<u32, Segment>>);

impl Segments {
    /// Opens the segments `committed` names (number -> committed length).
    /// A segment that is missing or shorter than its committed length is
    /// corruption, reported before anything is changed. Then what writes
    /// that never committed appended is removed: the bytes past a
    /// segment's committed length, and the segment files redb does not
    /// name (a crash between a commit and the deletion it allowed, or
    /// before the commit of a write that started a segment).
    pub fn open(dir: &Path, committed: &HashMap<u32, u64>) -> Result<Segments> {
        let listing = std::fs::read_dir(dir).map_err(|e| io(&format!("cannot list {}", dir.display()), e))?;
        let mut found = HashMap::new();
        for entry in listing {
            let entry = entry.map_err(|e| io(&format!("cannot list {}", dir.display()), e))?;
            if let Some(no) = entry.file_name().to_str().and_then(number_of) {
                found.insert(no, entry.path());
            }
        }
        let mut files = HashMap::new();
        for (&no, &end) in committed {
            let path = found.remove(&no).ok_or_else(|| corrupt(format!("value log {no} is missing")))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io(&format!("cannot open {}", path.display()), e))?;
            let len = file.metadata().map_err(|e| io(&format!("cannot read {}", path.display()), e))?.len();
            if len < end {
                return Err(corrupt(format!("value log {no} holds {len} bytes, {end} committed")));
            }
            files.insert(no, (file, path, len > end));
        }
        for path in found.values() {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(&format!("cannot remove {}", path.display()), e));
                }
                _ => {}
            }
        }
        let mut open = HashMap::new();
        for (no, (file, path, longer)) in files {
            if longer {
                file.set_len(committed[&no]).map_err(|e| io(&format!("cannot truncate {}", path.display()), e))?;
            }
            open.insert(no, Segment::new(file, committed[&no]));
        }
        Ok(Segments { dir: dir.to_path_buf(), files: RwLock::new(open), unlinking: Mutex::new(Vec::new()) })
    }

    pub fn files(&self) -> Files<'_> {
        Files(self.files.read())
    }

    /// Makes segment `no` (empty) durable in the directory. An existing file
    /// of that number holds nothing committed (a write that failed after
    /// creating it): it is emptied.
    pub fn create(&self, no: u32) -> Result<()> {
        let path = self.dir.join(file_name(no));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io(&format!("cannot create {}", path.display()), e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&format!("cannot sync {}", self.dir.display()), e))?;
        self.files.write().insert(no, Segment::new(file, 0));
        Ok(())
    }

    /// Deletes segments no commit names any more, once the readers that
    /// may still hold their locators are done, on a thread of its own:
    /// unlinking a 64 MiB segment took 30-110 ms on the VM the benchmarks
    /// run on, which the write that freed it waited for, and readers with
    /// it while the file table was locked.
    /// Best effort: the write that stopped naming them has committed, and a
    /// file left behind (a crash first) is removed at the next open.
    pub fn delete(&self, nos: &[u32]) {
        if nos.is_empty() {
            return;
        }
        let paths: Vec<PathBuf> = {
            let mut files = self.files.write();
            nos.iter()
                .map(|no| {
                    files.remove(no);
                    self.dir.join(file_name(*no))
                })
                .collect()
        };
        let unlink = |paths: &[PathBuf]| paths.iter().for_each(|p| drop(std::fs::remove_file(p)));
        let mut unlinking = self.unlinking.lock();
        unlinking.retain(|t| !t.is_finished());
        let background = paths.clone();
        match std::thread::Builder::new().name("vx-unlink".into()).spawn(move || unlink(&background)) {
            Ok(thread) => unlinking.push(thread),
            Err(_) => unlink(&paths), // no thread to be had: here, then
        }
    }

    /// Waits until the segments `delete` was given are gone (what
    /// `compact` returns after, and dropping the store).
    pub fn settle(&self) {
        let threads = std::mem::take(&mut *self.unlinking.lock());
        threads.into_iter().for_each(|t| drop(t.join()));
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        self.settle();
    }
}

impl Files<'_> {
    fn segment(&self, no: u32) -> Result<&Segment> {
        self.0.get(&no).ok_or_else(|| corrupt(format!("a value names value log {no}, which does not exist")))
    }

    /// The value at `at`. A locator is not authenticated (redb's page
    /// checksums are not a MAC): its length is checked against the file
    /// before anything is allocated for it.
    pub fn read(&self, (no, offset, len): Locator) -> Result<Vec<u8>> {
        let segment = self.segment(no)?;
        if offset.checked_add(len as u64).is_none_or(|end| end > segment.len.load(Ordering::Acquire)) {
            return Err(past_end(no));
        }
        let mut value = vec![0; len as usize];
        segment.file.read_exact_at(&mut value, offset).map_err(|e| read_error(no, e))?;
        Ok(value)
    }

    /// An appender to segment `no` from its committed length `end`
    /// (overwriting whatever an uncommitted write left there).
    pub fn appender(&self, no: u32, end: u64) -> Result<Appender<'_>> {
        let segment = self.segment(no)?;
        let buf = Vec::with_capacity(APPEND_BUFFER_BYTES);
        Ok(Appender { no, file: &segment.file, len: &segment.len, written: end, pos: end, buf })
    }

    /// The records of segment `no` from byte `from` (a record's start) to
    /// `end` (its committed length), in order.
    pub fn records(&self, no: u32, from: u64, end: u64) -> Result<Records<'_>> {
        if from > end {
            return Err(corrupt(format!("value log {no} is collected past its end")));
        }
        Ok(Records { no, file: &self.segment(no)?.file, pos: from, end })
    }
}

/// Appends records to one segment. Nothing appended is committed until
/// redb commits the locators [`Appender::finish`] made durable.
pub struct Appender<'a> {
    no: u32,
    file: &'a File,
    /// The segment's durable length, moved on once the appends are.
    len: &'a AtomicU64,
    /// Bytes written to the file so far.
    written: u64,
    /// Bytes appended so far (written or buffered).
    pos: u64,
    buf: Vec<u8>,
}

impl Appender<'_> {
    /// The segment's length once what is appended is written.
    pub fn len(&self) -> u64 {
        self.pos
    }

    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Result<Locator> {
        let (key_len, value_len) = (len_u32(key.len())?, len_u32(value.len())?);
        self.buf.extend_from_slice(&key_len.to_le_bytes());
        self.buf.extend_from_slice(&value_len.to_le_bytes());
        self.buf.extend_from_slice(key);
        let at = self.pos + RECORD_HEADER_BYTES + key.len() as u64;
        self.pos = at + value.len() as u64;
        if self.buf.len() + value.len() > APPEND_BUFFER_BYTES {
            self.flush()?;
            self.write(value)?;
        } else {
            self.buf.extend_from_slice(value);
        }
        Ok((self.no, at, value_len))
    }

    /// Writes what is buffered and makes the segment's data durable.
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        self.file.sync_data().map_err(|e| io(&format!("cannot sync value log {}", self.no), e))?;
        self.len.fetch_max(self.pos, Ordering::AcqRel);
        Ok(self.pos)
    }

    fn flush(&mut self) -> Result<()> {
        let buf = std::mem::take(&mut self.buf);
        self.write(&buf)?;
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.written)
            .map_err(|e| io(&format!("cannot write value log {}", self.no), e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

fn past_end(no: u32) -> Error {
    corrupt(format!("a value lies past the end of value log {no}"))
}

fn read_error(no: u32, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => past_end(no),
        _ => io(&format!("cannot read value log {no}"), e),
    }
}

fn len_u32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::invalid(format!("a stored value of {len} bytes is too large")))
}

/// Reads a segment's records in order, for collection.
pub struct Records<'a> {
    no: u32,
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Records<'_> {
    /// The byte the next record starts at.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next record's key and its value's locator (`None`: the end).
    pub fn next_record(&mut self) -> Result<Option<(Vec<u8>, Locator)>> {
        if self.pos == self.end {
            return Ok(None);
        }
        let header = self.read_at(self.pos, RECORD_HEADER_BYTES)?;
        let key_len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let value_len = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let key = self.read_at(self.pos + RECORD_HEADER_BYTES, key_len)?;
        let at = self.pos + RECORD_HEADER_BYTES + key_len;
        if at + value_len as u64 > self.end {
            return Err(self.broken());
        }
        self.pos = at + value_len as u64;
        Ok(Some((key, (self.no, at, value_len))))
    }

    fn read_at(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        if at + len > self.end {
            return Err(self.broken());
        }
        let mut bytes = vec![0; len as usize];
        self.file.read_exact_at(&mut bytes, at).map_err(|e| read_error(self.no, e))?;
        Ok(bytes)
    }

    fn broken(&self) -> Error {
        corrupt(format!("value log {} has a broken record at byte {}", self.no, self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_other_files_are_not_segments() {
        assert_eq!(number_of(&file_name(7)), Some(7));
        assert_eq!(number_of(&file_name(u32::MAX)), Some(u32::MAX));
        for other in [
            "vx.redb",
            "values-.vxlog",
            "values-12.tmp",
            "values-x1.vxlog",
            "values-1.vxlog",
            "values-+0000001.vxlog",
            "values-000000001.vxlog",
        ] {
            assert_eq!(number_of(other), None, "{other}");
        }
    }
}
