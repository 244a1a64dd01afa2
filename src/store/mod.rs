//! Backing stores. Every store holds opaque bytes under opaque keys; what
//! they mean (and their encryption) is the index's business. All stores
//! offer the same small contract, so the index code never knows which one
//! it talks to.

mod file;
mod memory;
mod postgres;

use std::sync::Arc;

use crate::error::{Error, Result};

pub use file::FileStore;
pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// Part of a stored value: (key, first byte, length). See [`Store::get_part`].
pub type ValuePart = (Vec<u8>, u64, u32);

/// One change inside an atomic batch.
#[derive(Clone, Debug)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// An atomic set of changes, guarded by compare-and-sets: the batch applies
/// only if each expected key currently holds exactly the value given
/// (`None` = absent). Either every op is visible afterwards or none is.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
    pub expects: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// Applies the batch only if `key` holds `value` (`None` = absent).
    pub fn expect(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.expects.push((key, value));
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put(key, value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(Op::Delete(key));
    }
}

/// The contract every backing store implements. A successful `write` is
/// durable on return (for durable stores) and atomic.
pub trait Store: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// `len` bytes of `key`'s value from byte `start`: `None` if `key` is
    /// absent or its value ends before `start + len`. What the index reads
    /// one sealed unit of a chunk's unit pack with (a few KiB of a value of
    /// hundreds); a store that cannot read part of a value reads all of it.
    fn get_part(&self, key: &[u8], start: u64, len: u32) -> Result<Option<Vec<u8>>> {
        Ok(self.get(key)?.and_then(|v| part_of(&v, start, len).map(<[u8]>::to_vec)))
    }

    /// [`Store::get_part`] of each `(key, start, len)`, in order.
    fn get_parts(&self, parts: &[ValuePart]) -> Result<Vec<Option<Vec<u8>>>> {
        parts.iter().map(|(k, start, len)| self.get_part(k, *start, *len)).collect()
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Every key that starts with `prefix`, in order, without the values.
    fn scan_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self.scan_prefix(prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    /// Applies the batch atomically and returns `true`, or returns `false`
    /// and changes nothing when `expect` does not hold.
    fn write(&self, batch: WriteBatch) -> Result<bool>;

    /// Whether one `get_many` is much cheaper than many `get`s (every read
    /// is a network round trip), so readers should fetch ahead.
    fn prefers_batched_reads(&self) -> bool {
        false
    }

    /// Gives the space of deleted and overwritten values back to the system
    /// where the store keeps it (the `file:` store's free pages); a no-op
    /// where it is given back already (`memory:`, and PostgreSQL, whose
    /// autovacuum reuses dead rows' space).
    fn compact(&self) -> Result<()> {
        Ok(())
    }

    /// Returns once the space of what was deleted so far is given back
    /// where the store gives it back in the background (the `file:` store
    /// unlinks emptied segments on a thread of its own); a no-op elsewhere.
    fn settle(&self) {}
}

/// `len` bytes of `value` from `start`, if it holds them.
pub(crate) fn part_of(value: &[u8], start: u64, len: u32) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    value.get(start..start.checked_add(len as usize)?)
}

/// Opens the store a URI names: `memory:`, `file:/dir` or a plain path,
/// `postgres://user@host:port/db?table=name`.
pub fn open(uri: &str) -> Result<Arc<dyn Store>> {
    if uri.is_empty() {
        return Err(Error::invalid("storage URI is empty"));
    }
    if uri == "memory:" {
        return Ok(Arc::new(MemoryStore::default()));
    }
    if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(uri)?));
    }
    let path = uri.strip_prefix("file:").unwrap_or(uri);
    if path.is_empty() {
        return Err(Error::invalid("file: URI has no directory path"));
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        return Err(Error::invalid(format!(
            "unknown storage scheme '{scheme}://' (use memory:, file:/dir or postgres://)"
        )));
    }
    Ok(Arc::new(FileStore::open(std::path::Path::new(path))?))
}

/// The test server's URL (from `VX_TEST_POSTGRES_URL`) with a fresh, empty
/// `table`; `None`, with a visible "skipped" line, when there is none.
#[cfg(test)]
pub(crate) fn test_postgres_url(table: &str) -> Option<String> {
    use std::io::Write;
    let Ok(url) = std::env::var("VX_TEST_POSTGRES_URL") else {
        // Written to the stream itself, past the test harness's capture.
        let _ = writeln!(std::io::stderr(), "skipped: postgres test '{table}' (VX_TEST_POSTGRES_URL is not set)");
        return None;
    };
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("VX_TEST_POSTGRES_URL server");
    client.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}table={table}"))
}

/// Store behaviour every implementation must show (run by each store's tests).
#[cfg(test)]
pub(crate) fn conformance(store: &dyn Store) {
    assert_eq!(store.get(b"a").unwrap(), None);
    let mut b = WriteBatch::default();
    b.put(b"p/1".to_vec(), b"one".to_vec());
    b.put(b"p/2".to_vec(), b"two".to_vec());
    b.put(b"q/1".to_vec(), b"other".to_vec());
    assert!(store.write(b).unwrap());
    assert_eq!(store.get(b"p/1").unwrap().as_deref(), Some(&b"one"[..]));
    let scan = store.scan_prefix(b"p/").unwrap();
    assert_eq!(scan.len(), 2);
    assert_eq!(scan[0].0, b"p/1");
    assert_eq!(store.scan_keys(b"p/").unwrap(), vec![b"p/1".to_vec(), b"p/2".to_vec()]);
    let many = store.get_many(&[b"p/2".to_vec(), b"zz".to_vec()]).unwrap();
    assert_eq!(many, vec![Some(b"two".to_vec()), None]);
    // Parts of values: inside, at the end, past the end, of a missing key.
    let mut b = WriteBatch::default();
    let long: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    b.put(b"r/long".to_vec(), long.clone());
    assert!(store.write(b).unwrap());
    assert_eq!(store.get_part(b"p/2", 1, 2).unwrap().as_deref(), Some(&b"wo"[..]));
    assert_eq!(store.get_part(b"r/long", 4000, 1000).unwrap().as_deref(), Some(&long[4000..]));
    assert_eq!(store.get_part(b"r/long", 4000, 1001).unwrap(), None);
    assert_eq!(store.get_part(b"r/long", u64::MAX, 1).unwrap(), None);
    assert_eq!(store.get_part(b"zz", 0, 1).unwrap(), None);
    let parts = [(b"r/long".to_vec(), 10, 7), (b"zz".to_vec(), 0, 1), (b"p/1".to_vec(), 0, 3), (b"p/1".to_vec(), 3, 1)];
    let got = store.get_parts(&parts).unwrap();
    assert_eq!(got, vec![Some(long[10..17].to_vec()), None, Some(b"one".to_vec()), None]);
    assert_eq!(store.get_parts(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    let mut b = WriteBatch::default();
    b.delete(b"r/long".to_vec());
    assert!(store.write(b).unwrap());

    // A failed compare-and-set changes nothing.
    let mut b = WriteBatch::default();
    b.delete(b"p/1".to_vec());
    b.put(b"p/3".to_vec(), b"three".to_vec());
    b.expect(b"p/2".to_vec(), Some(b"not two".to_vec()));
    assert!(!store.write(b.clone()).unwrap());
    assert!(store.get(b"p/1").unwrap().is_some());
    assert!(store.get(b"p/3").unwrap().is_none());
    // Every expectation must hold, not only one of them.
    b.expects.clear();
    b.expect(b"p/2".to_vec(), Some(b"two".to_vec()));
    b.expect(b"p/1".to_vec(), None);
    assert!(!store.write(b.clone()).unwrap());
    assert!(store.get(b"p/1").unwrap().is_some());
    // A passing one applies everything.
    b.expects.pop();
    b.expect(b"p/1".to_vec(), Some(b"one".to_vec()));
    assert!(store.write(b).unwrap());
    assert!(store.get(b"p/1").unwrap().is_none());
    assert!(store.get(b"p/3").unwrap().is_some());
    // Expecting absence.
    let mut b = WriteBatch::default();
    b.put(b"new".to_vec(), b"x".to_vec());
    b.expect(b"p/3".to_vec(), None);
    assert!(!store.write(b.clone()).unwrap());
    b.expects.clear();
    b.expect(b"absent".to_vec(), None);
    assert!(store.write(b).unwrap());
}

#[cfg(test)]
mod tests {
    #[test]
    fn uri_parsing() {
        assert!(super::open("").is_err());
        assert!(super::open("file:").is_err());
        assert!(super::open("s3://bucket").is_err());
        assert!(super::open("memory:").is_ok());
    }
}
