//! The bounded cache of decrypted objects, shared by every index of a client.
//! Keys carry the object's version, so a rewritten object can never be served
//! stale; evicted objects are wiped when their last reader lets go (their
//! `Drop` zeroizes).

use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::index::chunk::{Bucket, Chunk};
use crate::index::ivf::Centroids;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct CacheKey {
    pub index: [u8; 16],
    pub kind: u8,
    pub number: u32,
    pub version: u64,
}

#[derive(Clone)]
pub enum Cached {
    Chunk(Arc<Chunk>),
    Bucket(Arc<Bucket>),
    Centroids(Arc<Centroids>),
}

impl Cached {
    fn mem_size(&self) -> usize {
        match self {
            Cached::Chunk(c) => c.mem_size(),
            Cached::Bucket(b) => b.mem_size(),
            Cached::Centroids(c) => c.mem_size(),
        }
    }
}

pub struct Cache {
    capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    lru: LruCache<CacheKey, (Cached, usize)>,
    bytes: usize,
}

impl Cache {
    /// `capacity` in bytes of decrypted data; 0 disables caching.
    pub fn new(capacity: usize) -> Cache {
        Cache { capacity, inner: Mutex::new(Inner { lru: LruCache::unbounded(), bytes: 0 }) }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Cached> {
        if self.capacity == 0 {
            return None;
        }
        self.inner.lock().lru.get(key).map(|(v, _)| v.clone())
    }

    /// Whether `key` is cached (without marking it used).
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.capacity != 0 && self.inner.lock().lru.contains(key)
    }

    pub fn insert(&self, key: CacheKey, value: Cached) {
        let size = value.mem_size();
        if size > self.capacity {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut inner = self.inner.lock();
            if let Some((_, old)) = inner.lru.put(key, (value, size)) {
                inner.bytes -= old;
            }
            inner.bytes += size;
            while inner.bytes > self.capacity {
                let Some((_, (v, s))) = inner.lru.pop_lru() else { break };
                inner.bytes -= s;
                evicted.push(v);
            }
        }
        drop(evicted); // wiped outside the lock
    }

    pub fn remove(&self, key: &CacheKey) {
        let removed = {
            let mut inner = self.inner.lock();
            let r = inner.lru.pop(key);
            if let Some((_, s)) = &r {
                inner.bytes -= s;
            }
            r
        };
        drop(removed);
    }

    /// Drops every object of one index (after `delete_index`).
    pub fn remove_index(&self, index: &[u8; 16]) {
        let mut removed = Vec::new();
        {
            let mut inner = self.inner.lock();
            let keys: Vec<CacheKey> = inner.lru.iter().filter(|(k, _)| &k.index == index).map(|(k, _)| *k).collect();
            for k in keys {
                if let Some((v, s)) = inner.lru.pop(&k) {
                    inner.bytes -= s;
                    removed.push(v);
                }
            }
        }
        drop(removed);
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(n: usize) -> Cached {
        let mut b = Bucket::default();
        for i in 0..n {
            b.upsert(crate::index::chunk::Entry { token: [i as u8; 16], chunk: 0, contents_version: 0 });
        }
        Cached::Bucket(Arc::new(b))
    }

    fn key(n: u32) -> CacheKey {
        CacheKey { index: [0; 16], kind: b'B', number: n, version: 1 }
    }

    #[test]
    fn evicts_to_budget_and_zero_disables() {
        let one = bucket(10).mem_size();
        let c = Cache::new(one * 3);
        for i in 0..10 {
            c.insert(key(i), bucket(10));
        }
        assert!(c.bytes() <= one * 3);
        assert!(c.get(&key(9)).is_some());
        assert!(c.get(&key(0)).is_none());
        c.remove_index(&[0; 16]);
        assert_eq!(c.bytes(), 0);
        let off = Cache::new(0);
        off.insert(key(1), bucket(1));
        assert!(off.get(&key(1)).is_none());
    }
}
