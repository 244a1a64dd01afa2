//! Membership filters over the directory's buckets and run stripes, kept
//! by a handle so that looking up an id a bucket or a run does not hold
//! (every new id a write adds, at every level) costs a few bits instead of
//! a search. At 10M items a batch of 10,000 new ids touched ~9,000 of the
//! ~39,000 buckets, each a cache lookup and a binary search through ~16 KiB
//! of decoded entries (a fifth of the fill's time), and galloped through a
//! stripe of each of ~10 runs (a tenth, once the buckets were filtered;
//! BENCHMARKS.md, "0.10.3").
//!
//! An object's filter is built from its entries when the handle seals it
//! (kept once the commit lands: see `commit.rs`'s `Plan`) or else the first
//! time the handle reads it, and kept beside the stamp of the object it came
//! from: a rewritten bucket has a new stamp, so a filter only ever answers
//! for the object it was built from, whatever other writers did since.
//! Filters are never stored; they cost the handle [`BITS_PER_TOKEN`] bits
//! per entry (~12 MB at 10M items, plus the runs' ~N/8 entries), outside
//! the decrypted cache's budget.

use std::collections::HashMap;

use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};

use super::manifest::{Manifest, Stamp};
use crate::crypto::Token;

/// Filter bits per token: with [`PROBES`] probes a Bloom filter then says
/// "may hold" of ~0.85% of the tokens it does not hold.
const BITS_PER_TOKEN: usize = 10;
const PROBES: u32 = 6;

/// A Bloom filter over id tokens. Tokens are keyed hashes, so their bits are
/// uniform already and the probes are taken from them, not hashed again.
pub(super) struct Filter {
    words: Box<[u64]>,
}

impl Filter {
    pub fn of<'a>(tokens: impl ExactSizeIterator<Item = &'a Token>) -> Filter {
        let n_words = (tokens.len() * BITS_PER_TOKEN).div_ceil(64).max(1);
        let mut words = vec![0u64; n_words].into_boxed_slice();
        for token in tokens {
            for bit in probes(token, n_words * 64) {
                words[bit / 64] |= 1 << (bit % 64);
            }
        }
        Filter { words }
    }

    /// False only if `token` is not among the filter's tokens.
    pub fn may_hold(&self, token: &Token) -> bool {
        probes(token, self.words.len() * 64).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The filter bits of `token` among `n_bits` (at most 2^32): double hashing
/// of its bytes 8..16, mapped onto the range by a multiply and shift. Bytes
/// 0..8 choose its bucket and run stripe (`manifest::bucket_of`,
/// `stripe_of`), so within one bucket these bytes are still uniform.
fn probes(token: &Token, n_bits: usize) -> impl Iterator<Item = usize> {
    let h = u64::from_le_bytes(token[8..16].try_into().expect("16-byte token"));
    let (first, step) = (h as u32, (h >> 32) as u32 | 1);
    (0..PROBES).map(move |i| ((u64::from(first.wrapping_add(i.wrapping_mul(step))) * n_bits as u64) >> 32) as usize)
}

/// A filter learned: the number of the object it was built from (a bucket,
/// or a stripe of a run), that object's stamp, the filter.
pub(super) type Learned = (usize, Stamp, Filter);

/// The filters of numbered objects of one kind (the buckets, or one run's
/// stripes), each beside the stamp of the object it was built from.
#[derive(Default)]
pub(super) struct Filters(Vec<Option<(Stamp, Filter)>>);

/// No filter known.
const NONE_KNOWN: &Filters = &Filters(Vec::new());

impl Filters {
    /// Whether object `no`, as `stamp` pins it, may hold `token`; `None`:
    /// no filter of that very object is known.
    pub fn may_hold(&self, no: usize, stamp: &Stamp, token: &Token) -> Option<bool> {
        match self.0.get(no) {
            Some(Some((built_from, filter))) if built_from == stamp => Some(filter.may_hold(token)),
            _ => None,
        }
    }

    fn learn(&mut self, learned: Vec<Learned>) {
        for (no, stamp, filter) in learned {
            if self.0.len() <= no {
                self.0.resize_with(no + 1, || None);
            }
            self.0[no] = Some((stamp, filter));
        }
    }
}

/// The filters of the directory objects this handle has read: its buckets,
/// and the stripes of its runs by run number.
#[derive(Default)]
pub(super) struct DirectoryFilters {
    buckets: RwLock<Filters>,
    runs: RwLock<HashMap<u32, Filters>>,
}

impl DirectoryFilters {
    /// The buckets' filters as they are now, for many lookups under one lock.
    pub fn buckets(&self) -> RwLockReadGuard<'_, Filters> {
        self.buckets.read()
    }

    /// The stripes' filters of run `no` as they are now.
    pub fn run(&self, no: u32) -> MappedRwLockReadGuard<'_, Filters> {
        RwLockReadGuard::map(self.runs.read(), |runs| runs.get(&no).unwrap_or(NONE_KNOWN))
    }

    /// Keeps `learned` bucket filters, replacing what was kept for them.
    pub fn learn_buckets(&self, learned: Vec<Learned>) {
        if !learned.is_empty() {
            self.buckets.write().learn(learned);
        }
    }

    /// Keeps `learned` stripe filters of run `no`, and forgets those of the
    /// runs `live` does not name (merged or folded since: run numbers are
    /// never used again).
    pub fn learn_run(&self, no: u32, learned: Vec<Learned>, live: &Manifest) {
        if learned.is_empty() {
            return;
        }
        let mut runs = self.runs.write();
        runs.entry(no).or_default().learn(learned);
        runs.retain(|no, _| live.directory_runs().any(|run| run.no == *no));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::manifest::{Fold, RunMeta, Striping};
    use crate::index::types::IndexConfig;
    use crate::kmeans::SplitMix;

    /// Uniform tokens, as keyed hashes are.
    fn tokens(n: usize, seed: u64) -> Vec<Token> {
        let mut rng = SplitMix::new(seed);
        let mut token = || {
            let (a, b) = (rng.next_u64(), rng.next_u64());
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&a.to_le_bytes());
            t[8..].copy_from_slice(&b.to_le_bytes());
            t
        };
        (0..n).map(|_| token()).collect()
    }

    /// Every token the filter was built from is held, at every size from
    /// empty up; of tokens it was not built from, about the designed share
    /// (0.85%) is "may hold" (at most 2% allowed; a filter of fewer bits or
    /// probes than designed, or probes that ignore most bytes, fails it).
    #[test]
    fn a_filter_holds_its_tokens_and_rules_out_nearly_all_others() {
        for n in [0, 1, 7, 64, 256, 600] {
            let held = tokens(n, n as u64);
            let filter = Filter::of(held.iter());
            assert!(held.iter().all(|t| filter.may_hold(t)), "n = {n}");
        }
        let filter = Filter::of(tokens(256, 1).iter());
        let absent = tokens(200_000, 2);
        let passed = absent.iter().filter(|t| filter.may_hold(t)).count();
        let share = passed as f64 / absent.len() as f64;
        assert!(share < 0.02, "false positive share {share}");
    }

    /// A filter answers only for the object and the stamp it was built
    /// from: a bucket rewritten since (a new stamp) is not known, so a
    /// lookup reads it; a run's filters are forgotten once it is not live.
    #[test]
    fn a_filter_answers_only_for_the_stamp_it_was_built_from() {
        let held = tokens(100, 3);
        let filters = DirectoryFilters::default();
        let (old, new) = (Stamp::of(1, b"old bucket"), Stamp::of(2, b"new bucket"));
        filters.learn_buckets(vec![(5, old, Filter::of(held.iter()))]);
        let absent = tokens(1, 4)[0];
        let known = filters.buckets();
        assert_eq!(known.may_hold(5, &old, &held[0]), Some(true));
        assert_eq!(known.may_hold(5, &old, &absent), Some(false));
        assert_eq!(known.may_hold(5, &new, &held[0]), None);
        assert_eq!(known.may_hold(4, &old, &held[0]), None);
        assert_eq!(known.may_hold(99, &old, &held[0]), None);
        drop(known);

        let run = |no| RunMeta { no, entries: 1, stripes: vec![old].into(), striping: Striping::Token };
        let mut live = Manifest::new("runs", IndexConfig::default());
        live.runs = vec![run(7)];
        filters.learn_run(7, vec![(0, old, Filter::of(held.iter()))], &live);
        assert_eq!(filters.run(7).may_hold(0, &old, &absent), Some(false));
        assert_eq!(filters.run(8).may_hold(0, &old, &absent), None);
        // Run 7 being folded is still live.
        live.runs = vec![run(8)];
        let striping = Striping::Buckets { n_buckets: 1, per_stripe: 1 };
        live.folding = Some(Fold { run: RunMeta { striping, ..run(7) }, cursor: 0 });
        filters.learn_run(8, vec![(0, old, Filter::of(held.iter()))], &live);
        assert_eq!(filters.run(7).may_hold(0, &old, &absent), Some(false));
        live.folding = None;
        filters.learn_run(8, vec![(0, old, Filter::of(held.iter()))], &live);
        assert_eq!(filters.run(7).may_hold(0, &old, &absent), None, "run 7 is no longer live");
        assert_eq!(filters.run(8).may_hold(0, &old, &absent), Some(false));
    }

    /// Counts the reads of keys under the given prefixes.
    struct ReadCounting {
        inner: crate::store::MemoryStore,
        prefixes: parking_lot::Mutex<Vec<Vec<u8>>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl ReadCounting {
        fn count(&self, key: &[u8]) {
            if self.prefixes.lock().iter().any(|p| key.starts_with(p)) {
                self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }

        fn take(&self) -> usize {
            self.reads.swap(0, std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl crate::store::Store for ReadCounting {
        fn get(&self, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
            self.count(key);
            self.inner.get(key)
        }

        fn scan_prefix(&self, prefix: &[u8]) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
            self.inner.scan_prefix(prefix)
        }

        fn write(&self, batch: crate::store::WriteBatch) -> crate::Result<bool> {
            self.inner.write(batch)
        }
    }

    /// A handle keeps the filters of the buckets and run stripes it seals,
    /// so with nothing cached, a write of new ids right after a training
    /// run (which rewrote every bucket) decrypts no directory object but
    /// the few its filters let through by chance: 0-5 over 65 runs (mean
    /// 1.7; the index's keys, and so its tokens, are new each run), where a
    /// bound of 4 failed 2 of them. Learning them only by reading, it read
    /// 73 here (a bucket for nearly every new id).
    #[test]
    fn a_handle_knows_the_filters_of_what_it_wrote() {
        use crate::index::objects::ObjectKind;
        use crate::index::{Access, ItemRef, TrainParams};
        use crate::{Client, ClientOptions, SecretKey};
        let store = std::sync::Arc::new(ReadCounting {
            inner: Default::default(),
            prefixes: Default::default(),
            reads: Default::default(),
        });
        let client = Client::over_store(store.clone(), ClientOptions { threads: 2, cache_bytes: 0 }).unwrap();
        let index = client.create_index("learned", &SecretKey::from_bytes(&[3; 32]), IndexConfig::default()).unwrap();
        *store.prefixes.lock() =
            [ObjectKind::Bucket, ObjectKind::RunStripe].map(|kind| index.layout.kind_prefix(kind)).to_vec();
        let upsert = |prefix: &str, n: usize| {
            let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
            let vectors: Vec<[f32; 2]> = (0..n).map(|i| [(i % 97) as f32, (i % 89) as f32]).collect();
            let items: Vec<ItemRef<'_>> = ids
                .iter()
                .zip(&vectors)
                .map(|(id, v)| ItemRef { id, vector: v, metadata: None, contents: None })
                .collect();
            index.upsert(&items, Access::default()).unwrap();
        };
        for batch in 0..10 {
            upsert(&format!("base{batch}-"), 2_000);
        }
        index.train(TrainParams { n_lists: 8, ..Default::default() }, Access::default()).unwrap();
        store.take();
        upsert("new-", 200);
        let read = store.take();
        assert!(read <= 12, "a write right after training read {read} buckets or stripes");
    }
}
