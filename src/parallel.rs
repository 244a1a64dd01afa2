//! Work handed to a client's worker pool only when that pays.
//!
//! Handing work to a pool thread and waiting for it costs a wake-up on each
//! side (tens of microseconds here, more on a busy machine) and the worker's
//! spinning before it sleeps again. A one-item write used to hand each of
//! its steps to the pool (~50 futex calls and as many `sched_yield`s a
//! write, counted with strace), more than its own work. These helpers run
//! small inputs, and every input of a one-thread pool, on the calling thread
//! instead; the result is the same either way.
//!
//! Code inside `f` must not start parallel work of its own outside these
//! helpers or `pool.install`: on the calling thread, a bare `par_iter` would
//! run on rayon's global pool instead of the client's.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use rayon::prelude::*;
use rayon::ThreadPool;

use crate::error::Result;

/// Pieces that each seal or open an object (tens of µs and more): a few
/// already pay for a hand-off; a one-item write's one chunk, one or two
/// directory objects and manifest pages do not.
pub(crate) const MIN_PARALLEL_OBJECTS: usize = 4;
/// Pieces of about a microsecond (a keyed hash of an id).
pub(crate) const MIN_PARALLEL_CHEAP: usize = 256;
/// Elements of a sort.
pub(crate) const MIN_PARALLEL_SORT: usize = 4096;

/// `a` and `b` on two of the pool's threads when that is `worth` it (each
/// may start parallel work of its own through these helpers), else one
/// after the other on the calling thread.
pub(crate) fn join<A, B, RA, RB>(pool: &ThreadPool, worth: bool, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if worth && pool.current_num_threads() > 1 {
        pool.join(a, b)
    } else {
        (a(), b())
    }
}

/// A collection the pool can map over, by value or by reference, that knows
/// its length before it is consumed.
pub(crate) trait Work:
    IntoIterator<Item = <Self as IntoParallelIterator>::Item> + IntoParallelIterator + Send
{
    fn count(&self) -> usize;
}

impl<T: Send> Work for Vec<T> {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<'a, T: Sync + 'a> Work for &'a [T] {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<'a, T: Sync + 'a> Work for &'a Vec<T> {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<K: Ord + Send, V: Send> Work for BTreeMap<K, V> {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<'a, K: Ord + Sync + 'a, V: Sync + 'a> Work for &'a BTreeMap<K, V> {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<K: Hash + Eq + Send, V: Send, S: BuildHasher + Send> Work for HashMap<K, V, S> {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<'a, K: Hash + Eq + Sync + 'a, V: Sync + 'a, S: BuildHasher + Sync> Work for &'a HashMap<K, V, S> {
    fn count(&self) -> usize {
        self.len()
    }
}

/// Whether `n` pieces go to the pool: at least `min_parallel` (and two) of
/// them, and a pool of more than one thread (one thread would only add the
/// hand-off).
fn worth_it(pool: &ThreadPool, n: usize, min_parallel: usize) -> bool {
    n >= min_parallel.max(2) && pool.current_num_threads() > 1
}

/// `f` of every item, in order.
pub(crate) fn map<W, R, F>(pool: &ThreadPool, items: W, min_parallel: usize, f: F) -> Vec<R>
where
    W: Work,
    R: Send,
    F: Fn(<W as IntoParallelIterator>::Item) -> R + Sync + Send,
{
    collect(pool, items, min_parallel, f)
}

/// `f` of every item, in order, or the first error met (in parallel, not
/// necessarily the first in order).
pub(crate) fn try_map<W, R, F>(pool: &ThreadPool, items: W, min_parallel: usize, f: F) -> Result<Vec<R>>
where
    W: Work,
    R: Send,
    F: Fn(<W as IntoParallelIterator>::Item) -> Result<R> + Sync + Send,
{
    collect(pool, items, min_parallel, f)
}

/// `f` of every item collected into `C`, on the pool or on the calling thread.
fn collect<W, T, C, F>(pool: &ThreadPool, items: W, min_parallel: usize, f: F) -> C
where
    W: Work,
    T: Send,
    C: FromIterator<T> + FromParallelIterator<T> + Send,
    F: Fn(<W as IntoParallelIterator>::Item) -> T + Sync + Send,
{
    if worth_it(pool, items.count(), min_parallel) {
        pool.install(|| items.into_par_iter().map(f).collect())
    } else {
        items.into_iter().map(f).collect()
    }
}

/// Sorts `v` (not stably) on the pool when it is long.
pub(crate) fn sort_unstable_by<T, F>(pool: &ThreadPool, v: &mut [T], cmp: F)
where
    T: Send,
    F: Fn(&T, &T) -> Ordering + Sync + Send,
{
    if worth_it(pool, v.len(), MIN_PARALLEL_SORT) {
        pool.install(|| v.par_sort_unstable_by(cmp))
    } else {
        v.sort_unstable_by(cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    /// Small inputs and one-thread pools run on the calling thread; large
    /// ones on the pool's workers; the results are the same.
    #[test]
    fn small_work_stays_on_the_calling_thread() {
        let (two, one) = (pool(2), pool(1));
        let on_worker = |_: &u32| rayon::current_thread_index().is_some();
        let few: Vec<u32> = (0..3).collect();
        let many: Vec<u32> = (0..1000).collect();
        assert!(map(&two, &few, MIN_PARALLEL_OBJECTS, on_worker).iter().all(|w| !w));
        assert!(map(&two, &many, MIN_PARALLEL_OBJECTS, on_worker).iter().all(|&w| w));
        assert!(map(&one, &many, MIN_PARALLEL_OBJECTS, on_worker).iter().all(|w| !w));
        let squares = |x: &u32| x * x;
        assert_eq!(map(&two, &many, 2, squares), map(&one, &many, 2, squares));
        let tree: BTreeMap<u32, u32> = many.iter().map(|&x| (x, x + 1)).collect();
        assert_eq!(map(&two, &tree, 2, |(k, v)| k + v), many.iter().map(|x| 2 * x + 1).collect::<Vec<_>>());
    }

    #[test]
    fn try_map_returns_an_error_met_on_either_path() {
        let many: Vec<u32> = (0..1000).collect();
        let fails_at_500 = |x: &u32| if *x == 500 { Err(crate::error::Error::invalid("500")) } else { Ok(*x) };
        for p in [pool(1), pool(2)] {
            assert!(try_map(&p, &many, 2, fails_at_500).is_err());
            assert_eq!(try_map(&p, &many[..500], 2, fails_at_500).unwrap(), many[..500].to_vec());
        }
    }

    #[test]
    fn sorts_on_either_path() {
        let mut rng = crate::kmeans::SplitMix::new(3);
        let v: Vec<u64> = (0..10_000).map(|_| rng.next_u64()).collect();
        for n in [100, v.len()] {
            let mut got = v[..n].to_vec();
            sort_unstable_by(&pool(2), &mut got, |x, y| x.cmp(y));
            let mut want = v[..n].to_vec();
            want.sort_unstable();
            assert_eq!(got, want);
        }
    }
}
