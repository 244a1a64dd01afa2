//! `file:/dir`: the embedded, durable default store, one redb database file
//! in a directory. redb gives atomic, crash-safe transactions; every write
//! commits with immediate durability (fsync) before returning.

use std::path::Path;

use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Op, Store, WriteBatch};
use crate::error::{Error, Result};

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vx_objects");
pub const DB_FILE: &str = "vx.redb";
const REDB_CACHE_BYTES: usize = 32 << 20;

pub struct FileStore {
    /// Compaction needs the database alone (no transaction open): it takes
    /// the write side, every read and write the read side.
    db: RwLock<Database>,
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

impl FileStore {
    pub fn open(dir: &Path) -> Result<FileStore> {
        guarded(|| Self::open_unguarded(dir))
    }

    fn open_unguarded(dir: &Path) -> Result<FileStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create store directory {}: {e}", dir.display())))?;
        // Verify every page's checksum at open: a file altered while closed
        // then fails with `Corrupted` (INTEGRITY) instead of reaching code
        // paths that panic, some of them in destructors, which would abort
        // the host process. Costs one read of the file per open.
        // vx keeps its own cache of decrypted chunks; redb's page cache would
        // hold the same data a second time, encrypted: keep it small.
        let db = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .set_cache_size(REDB_CACHE_BYTES)
            .create(dir.join(DB_FILE))
            .map_err(map_err)?;
        // Create the table up front so readers never see "table missing".
        let w = db.begin_write().map_err(map_err)?;
        w.open_table(OBJECTS).map_err(map_err)?;
        w.commit().map_err(map_err)?;
        Ok(FileStore { db: RwLock::new(db) })
    }
}

impl Store for FileStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        guarded(|| self.get_many(&[key.to_vec()]).map(|mut v| v.pop().flatten()))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        guarded(|| {
            let db = self.db.read(); // held until the transaction ends
            let r = db.begin_read().map_err(map_err)?;
            let t = r.open_table(OBJECTS).map_err(map_err)?;
            keys.iter().map(|k| Ok(t.get(k.as_slice()).map_err(map_err)?.map(|v| v.value().to_vec()))).collect()
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        guarded(|| self.scan_unguarded(prefix, <[u8]>::to_vec))
    }

    fn scan_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        guarded(|| Ok(self.scan_unguarded(prefix, |_| ())?.into_iter().map(|(k, ())| k).collect()))
    }

    fn write(&self, batch: WriteBatch) -> Result<bool> {
        guarded(|| self.write_unguarded(batch))
    }

    /// redb keeps freed pages for reuse and never shrinks its file by
    /// itself; compaction moves live pages down and truncates the file.
    fn compact(&self) -> Result<()> {
        guarded(|| {
            let mut db = self.db.write();
            while db.compact().map_err(|e| Error::Storage(format!("cannot compact the store file: {e}")))? {}
            Ok(())
        })
    }
}

impl FileStore {
    /// `(key, f(value))` of every key under `prefix`.
    fn scan_unguarded<T>(&self, prefix: &[u8], f: impl Fn(&[u8]) -> T) -> Result<Vec<(Vec<u8>, T)>> {
        let db = self.db.read(); // held until the transaction ends
        let r = db.begin_read().map_err(map_err)?;
        let t = r.open_table(OBJECTS).map_err(map_err)?;
        let mut out = Vec::new();
        for entry in t.range(prefix..).map_err(map_err)? {
            let (k, v) = entry.map_err(map_err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), f(v.value())));
        }
        Ok(out)
    }

    fn write_unguarded(&self, batch: WriteBatch) -> Result<bool> {
        let db = self.db.read(); // held until the transaction ends
        let w = db.begin_write().map_err(map_err)?;
        {
            let mut t = w.open_table(OBJECTS).map_err(map_err)?;
            for (key, expected) in &batch.expects {
                let current = t.get(key.as_slice()).map_err(map_err)?.map(|v| v.value().to_vec());
                if current != *expected {
                    drop(t);
                    w.abort().map_err(map_err)?;
                    return Ok(false);
                }
            }
            for op in &batch.ops {
                match op {
                    Op::Put(k, v) => {
                        t.insert(k.as_slice(), v.as_slice()).map_err(map_err)?;
                    }
                    Op::Delete(k) => {
                        t.remove(k.as_slice()).map_err(map_err)?;
                    }
                }
            }
        }
        w.commit().map_err(map_err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance_and_durability() {
        use crate::store::Store;
        let dir = std::env::temp_dir().join(format!("vx-file-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = super::FileStore::open(&dir).unwrap();
            super::super::conformance(&s);
            // A second open of the same directory is refused while the first lives.
            assert!(super::FileStore::open(&dir).is_err());
        }
        let s = super::FileStore::open(&dir).unwrap();
        assert_eq!(s.get(b"p/3").unwrap().as_deref(), Some(&b"three"[..]));
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
