//! A bounded cache weighed in bytes, shared between threads. It knows
//! nothing of what it holds: the index decides the keys (which must name an
//! object's version, so a rewritten object is never served stale) and the
//! values. Evicted values are dropped outside the lock, so a value that wipes
//! itself on drop does not stall other threads while it does.
//!
//! The policy is a segmented LRU (SLRU): a value enters a *probation*
//! segment and moves to a *protected* one (at most [`PROTECTED_SHARE`] of the
//! budget) the first time it is found again; eviction takes probation's least
//! recently used value first. What a query reads once (a compressed index's
//! rerank units, a pass over cold lists) thus cycles through probation and
//! cannot push out what every query reuses (its lists' heads, the hot
//! chunks), which a plain LRU lets any pass larger than the budget do.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;

/// What a cached value costs, in bytes, against the budget.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// The share of the budget values found again may hold (as in Caffeine's
/// and Ristretto's SLRU); the rest is left to new values to prove reuse.
const PROTECTED_SHARE: f64 = 0.8;

pub struct Cache<K: Hash + Eq, V> {
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
    /// Values inserted so far (`inserts`).
    inserts: AtomicU64,
}

struct Inner<K: Hash + Eq, V> {
    probation: Segment<K, V>,
    protected: Segment<K, V>,
}

/// One LRU list and the bytes its values weigh.
struct Segment<K: Hash + Eq, V> {
    lru: LruCache<K, (V, usize)>,
    bytes: usize,
}

impl<K: Hash + Eq, V> Segment<K, V> {
    fn new() -> Self {
        Segment { lru: LruCache::unbounded(), bytes: 0 }
    }

    /// Adds `value` as the most recently used, returning the value it replaced.
    fn put(&mut self, key: K, value: V, size: usize) -> Option<V> {
        self.bytes += size;
        let (old, old_size) = self.lru.put(key, (value, size))?;
        self.bytes -= old_size;
        Some(old)
    }

    fn pop(&mut self, key: &K) -> Option<(V, usize)> {
        let r = self.lru.pop(key)?;
        self.bytes -= r.1;
        Some(r)
    }

    fn pop_lru(&mut self) -> Option<(K, V, usize)> {
        let (k, (v, s)) = self.lru.pop_lru()?;
        self.bytes -= s;
        Some((k, v, s))
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Weigh> Cache<K, V> {
    /// `capacity` in bytes; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            inner: Mutex::new(Inner { probation: Segment::new(), protected: Segment::new() }),
            inserts: AtomicU64::new(0),
        }
    }

    /// How many values were inserted so far: a caller that keeps a value
    /// found here without marking it used each time can tell from this how
    /// far the cache's order has moved since it last did.
    pub fn inserts(&self) -> u64 {
        self.inserts.load(Ordering::Relaxed)
    }

    /// The value of `key`, marked used: a value found for the first time
    /// since it was inserted moves to the protected segment.
    pub fn get(&self, key: &K) -> Option<V> {
        if self.capacity == 0 {
            return None;
        }
        let mut demoted = Vec::new();
        let found = {
            let mut inner = self.inner.lock();
            if let Some((v, _)) = inner.protected.lru.get(key) {
                return Some(v.clone());
            }
            let (v, size) = inner.probation.pop(key)?;
            let found = v.clone();
            demoted.extend(inner.protected.put(key.clone(), v, size));
            // Protected's overflow goes back to probation, as its most
            // recently used: it gets one more chance to be found.
            let cap = (self.capacity as f64 * PROTECTED_SHARE) as usize;
            while inner.protected.bytes > cap {
                let Some((k, v, s)) = inner.protected.pop_lru() else { break };
                demoted.extend(inner.probation.put(k, v, s));
            }
            found
        };
        drop(demoted);
        Some(found)
    }

    /// Whether `key` is cached (without marking it used).
    pub fn contains(&self, key: &K) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let inner = self.inner.lock();
        inner.protected.lru.contains(key) || inner.probation.lru.contains(key)
    }

    /// Inserts `value` on probation, evicting probation's least recently
    /// used values (then protected's) beyond the budget, never `value`
    /// itself; a value larger than the whole budget is not kept. A value
    /// replacing one under the same key keeps that one's segment.
    pub fn insert(&self, key: K, value: V) {
        let size = value.weight();
        self.inserts.fetch_add(1, Ordering::Relaxed);
        if size > self.capacity {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            let on_probation = !inner.protected.lru.contains(&key);
            let segment = if on_probation { &mut inner.probation } else { &mut inner.protected };
            evicted.extend(segment.put(key, value, size));
            while inner.probation.bytes + inner.protected.bytes > self.capacity {
                // The new value is probation's newest: once it is all that
                // is left there, protected gives way instead (it fits the
                // budget, so what is left of protected is not all of it).
                let spare_on_probation = inner.probation.lru.len() > usize::from(on_probation);
                let oldest = if spare_on_probation { inner.probation.pop_lru() } else { inner.protected.pop_lru() };
                let Some((_, v, _)) = oldest else { break };
                evicted.push(v);
            }
        }
        drop(evicted);
    }

    pub fn remove(&self, key: &K) {
        let removed = {
            let mut inner = self.inner.lock();
            inner.protected.pop(key).or_else(|| inner.probation.pop(key))
        };
        drop(removed);
    }

    /// Removes every value whose key matches (e.g. all of a deleted index's).
    pub fn remove_where(&self, doomed: impl Fn(&K) -> bool) {
        let mut removed = Vec::new();
        {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            for segment in [&mut inner.probation, &mut inner.protected] {
                let keys: Vec<K> = segment.lru.iter().filter(|(k, _)| doomed(k)).map(|(k, _)| k.clone()).collect();
                removed.extend(keys.iter().filter_map(|k| segment.pop(k)));
            }
        }
        drop(removed);
    }

    /// What the cache holds now, as charged against its capacity.
    pub fn bytes(&self) -> usize {
        let inner = self.inner.lock();
        inner.probation.bytes + inner.protected.bytes
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

    /// A working set every query reuses survives a pass of values read once
    /// that alone would fill the budget many times; under a plain LRU the
    /// pass evicts all of it.
    #[test]
    fn reused_values_survive_a_pass_read_once() {
        let c = Cache::new(100);
        for hot in 0..6u32 {
            c.insert((0, hot), Blob(10));
        }
        for round in 0..3 {
            for hot in 0..6u32 {
                assert!(c.get(&(0, hot)).is_some(), "hot value {hot} was evicted in round {round}");
            }
            for cold in 0..50u32 {
                c.insert((1, round * 100 + cold), Blob(10));
            }
        }
        assert!((0..6).all(|hot| c.contains(&(0, hot))));
        assert_eq!(c.bytes(), 100);
        // Protected holds at most 80 bytes: of 10 values found again, the two
        // least recently found are back on probation, where new values push
        // them out.
        for v in 10..20u32 {
            c.insert((2, v), Blob(10));
            c.get(&(2, v));
        }
        for cold in 0..10u32 {
            c.insert((3, cold), Blob(10));
        }
        assert_eq!((10..20).filter(|&v| c.contains(&(2, v))).count(), 8);
        assert!(c.contains(&(2, 19)) && !c.contains(&(2, 10)) && !c.contains(&(2, 11)));
    }

    /// A new value is kept even when probation holds less than it needs:
    /// protected gives way, not the value just inserted.
    #[test]
    fn a_new_value_is_kept_when_protected_is_full() {
        let c = Cache::new(100);
        for v in 0..8u32 {
            c.insert((0, v), Blob(10));
            c.get(&(0, v)); // protected: 80 bytes
        }
        c.insert((1, 0), Blob(10));
        c.insert((1, 1), Blob(10));
        c.insert((2, 0), Blob(30));
        assert!(c.contains(&(2, 0)), "the value just inserted was evicted");
        assert_eq!(c.bytes(), 100);
        // Probation's two older values went first, then protected's oldest.
        assert!(!c.contains(&(1, 0)) && !c.contains(&(1, 1)) && !c.contains(&(0, 0)));
        assert!((1..8).all(|v| c.contains(&(0, v))));
    }
}
