//! A bounded LRU cache weighed in bytes, shared between threads. It knows
//! nothing of what it holds: the index decides the keys (which must name an
//! object's version, so a rewritten object is never served stale) and the
//! values. Evicted values are dropped outside the lock, so a value that wipes
//! itself on drop does not stall other threads while it does.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;

/// What a cached value costs, in bytes, against the budget.
pub trait Weigh {
    fn weight(&self) -> usize;
}

pub struct Cache<K: Hash + Eq, V> {
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
    /// Values inserted so far (`inserts`).
    inserts: AtomicU64,
}

struct Inner<K: Hash + Eq, V> {
    lru: LruCache<K, (V, usize)>,
    bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Clone + Weigh> Cache<K, V> {
    /// `capacity` in bytes; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            inner: Mutex::new(Inner { lru: LruCache::unbounded(), bytes: 0 }),
            inserts: AtomicU64::new(0),
        }
    }

    /// How many values were inserted so far: a caller that keeps a value
    /// found here without marking it used each time can tell from this how
    /// far the LRU order has moved since it last did.
    pub fn inserts(&self) -> u64 {
        self.inserts.load(Ordering::Relaxed)
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if self.capacity == 0 {
            return None;
        }
        self.inner.lock().lru.get(key).map(|(v, _)| v.clone())
    }

    /// Whether `key` is cached (without marking it used).
    pub fn contains(&self, key: &K) -> bool {
        self.capacity != 0 && self.inner.lock().lru.contains(key)
    }

    /// Inserts `value`, evicting the least recently used values beyond the
    /// budget; a value larger than the whole budget is not kept.
    pub fn insert(&self, key: K, value: V) {
        let size = value.weight();
        self.inserts.fetch_add(1, Ordering::Relaxed);
        if size > self.capacity {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut inner = self.inner.lock();
            if let Some((old, old_size)) = inner.lru.put(key, (value, size)) {
                inner.bytes -= old_size;
                evicted.push(old);
            }
            inner.bytes += size;
            while inner.bytes > self.capacity {
                let Some((_, (v, s))) = inner.lru.pop_lru() else { break };
                inner.bytes -= s;
                evicted.push(v);
            }
        }
        drop(evicted);
    }

    pub fn remove(&self, key: &K) {
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

    /// Removes every value whose key matches (e.g. all of a deleted index's).
    pub fn remove_where(&self, doomed: impl Fn(&K) -> bool) {
        let mut removed = Vec::new();
        {
            let mut inner = self.inner.lock();
            let keys: Vec<K> = inner.lru.iter().filter(|(k, _)| doomed(k)).map(|(k, _)| k.clone()).collect();
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

    #[derive(Clone)]
    struct Blob(usize);

    impl Weigh for Blob {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn evicts_to_budget_and_zero_disables() {
        let c = Cache::new(30);
        for i in 0..10u32 {
            c.insert((i % 2, i), Blob(10));
        }
        assert_eq!(c.bytes(), 30);
        assert!(c.get(&(1, 9)).is_some() && c.contains(&(0, 8)));
        assert!(c.get(&(0, 0)).is_none());
        c.insert((0, 100), Blob(31)); // larger than the budget: not kept
        assert!(!c.contains(&(0, 100)));
        c.insert((1, 9), Blob(5)); // replacing frees the old weight
        assert_eq!(c.bytes(), 25);
        c.remove_where(|k| k.0 == 1);
        assert_eq!(c.bytes(), 10);
        c.remove(&(0, 8));
        assert_eq!(c.bytes(), 0);
        let off = Cache::new(0);
        off.insert((0, 1), Blob(0));
        assert!(off.get(&(0, 1)).is_none());
    }
}
