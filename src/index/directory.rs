//! The id directory: id token -> the chunk that holds the item and its
//! contents' stamp, so `get`, `delete` and overwrites find an item without
//! a scan. It is a log-structured merge tree of two levels:
//!
//! * **Runs**, the newest entries: each write adds its entries (and a
//!   tombstone per deleted id) as one sorted run, striped by token into
//!   sealed stripes of ~60 KiB, so the write stores O(batch) bytes in
//!   O(batch / stripe) objects whatever the index's size. The newest run is
//!   merged with the one before it while that one is less than twice its
//!   size (a binary counter: O(log) runs, each entry rewritten O(log)
//!   times). The root names every run's stripes.
//! * **Buckets**, the rest: entries hashed into buckets of about
//!   [`ENTRIES_PER_BUCKET`] by linear hashing (`manifest::bucket_of`),
//!   grown one split at a time by the folds (below).
//! * **The fold**: once the runs hold more than 1/[`FOLD_SHARE`] of the
//!   items, a write merges them into one run striped by bucket (ranges of
//!   the buckets there are then) and starts folding it into the buckets;
//!   the writes after it fold the buckets in step with the runs filling
//!   up again (a share of the buckets for each share of the room), so the
//!   fold ends as they fill. A fold reaches the
//!   buckets in the order linear hashing splits them, and splits each it
//!   reaches while the directory is due to grow, so a split costs no
//!   rewrite of its own. Every bucket is rewritten once per fold, paid for
//!   by the ~N/8 entries folded, so an entry costs O(1) bucket bytes, and
//!   no write rewrites the directory (0.10's folds rewrote every bucket in
//!   one write: ~3 s at 10M items).
//!
//! A lookup reads the runs newest first, then the fold's run, then the
//! bucket: the first entry found wins, and a tombstone there means the id
//! is gone. The fold's run still answers for the buckets already folded
//! (with what they hold), so a lookup needs no cursor. Training folds the
//! runs into the buckets it rewrites anyway.

use std::collections::HashMap;
use std::sync::Arc;

use super::chunk::{Bucket, Entry};
use super::commit::{Plan, SealedEntries};
use super::manifest::{bucket_of, fold_order, split_partner, token_stripe, Fold, Manifest, RunMeta, Stamp, Striping};
use super::objects::{Cached, Obj};
use super::presence::{Filter, Learned};
use super::Index;
use crate::crypto::Token;
use crate::error::Result;
use crate::parallel::{self, MIN_PARALLEL_OBJECTS};

/// The directory grows while its buckets average more entries than this.
/// A bucket is rewritten only when runs are folded into it, ~N/8 entries
/// at a time, so a bucket's size trades a cold lookup's decryption (one
/// bucket, ~5-15 KiB) against the number of objects a fold rewrites.
const ENTRIES_PER_BUCKET: u64 = 256;

/// The runs are folded into the buckets once they hold more entries than
/// the index has items / `FOLD_SHARE` (and at least [`FOLD_MIN`]).
const FOLD_SHARE: u64 = 8;
const FOLD_MIN: u64 = 4096;

/// Encoded bytes per run stripe, at most (about; a power of two of stripes).
const STRIPE_BYTES: usize = 60 << 10;

/// A token [`Index::lookup_all`] still looks for, with its place in the answer.
type Sought = (Token, usize);
/// An entry [`Index::lookup_all`] found, with its place in the answer.
type Found = (usize, Entry);

impl Index {
    /// The entry of `token` in the directory `m` names (`None`: no such id).
    pub(super) fn lookup(&self, m: &Manifest, token: &Token) -> Result<Option<Entry>> {
        for run in m.directory_runs().rev() {
            let s = run.stripe_of(token);
            if run.stripes[s].is_none() || self.filters.run(run.no).may_hold(s, &run.stripes[s], token) == Some(false) {
                continue;
            }
            if let Some(e) = self.run_stripe(m, run, s)?.find(token) {
                return Ok(Some(*e).filter(|e| !e.is_tombstone()));
            }
        }
        let b = m.bucket_of(token);
        let stamp = m.bucket(b);
        if stamp.is_none() || self.filters.buckets().may_hold(b, &stamp, token) == Some(false) {
            return Ok(None);
        }
        Ok(self.bucket(m, b)?.find(token).copied())
    }

    /// [`Index::lookup`] of each token. Each level is read once for the
    /// batch: a run stripe or a bucket only if its filter (`presence.rs`)
    /// does not rule out every token sought there, its filter learned if
    /// the handle had none. A run stripe is matched against its sorted
    /// tokens by galloping, a near-sequential pass (a binary search per
    /// token per run missed the CPU cache at every step: 16% of a write's
    /// time before).
    pub(super) fn lookup_all(&self, m: &Manifest, tokens: &[&Token]) -> Result<Vec<Option<Entry>>> {
        let mut found: Vec<Option<Entry>> = vec![None; tokens.len()];
        let mut pending: Vec<Sought> = tokens.iter().enumerate().map(|(i, t)| (**t, i)).collect();
        for run in m.directory_runs().rev() {
            if pending.is_empty() {
                break;
            }
            // The tokens each stripe may hold, and whether its filter is known.
            let n = run.stripes.len();
            let mut by_stripe: Vec<(bool, Vec<Sought>)> = vec![(false, Vec::new()); n];
            let mut ruled_out = Vec::new();
            {
                let filters = self.filters.run(run.no);
                for p in pending.drain(..) {
                    let s = run.stripe_of(&p.0);
                    match (run.stripes[s].is_none(), filters.may_hold(s, &run.stripes[s], &p.0)) {
                        (true, _) | (_, Some(false)) => ruled_out.push(p),
                        (false, known) => {
                            by_stripe[s].0 = known.is_some();
                            by_stripe[s].1.push(p);
                        }
                    }
                }
            }
            let sought: Vec<(usize, (bool, Vec<Sought>))> =
                by_stripe.into_iter().enumerate().filter(|(_, (_, group))| !group.is_empty()).collect();
            let matched: Vec<(Vec<Found>, Vec<Sought>, Option<Learned>)> =
                parallel::try_map(&self.env.pool, sought, MIN_PARALLEL_OBJECTS, |(s, (known, mut group))| {
                    let stripe = self.run_stripe(m, run, s)?;
                    let learned =
                        (!known).then(|| (s, run.stripes[s], Filter::of(stripe.entries.iter().map(|e| &e.token))));
                    group.sort_unstable();
                    let (mut hits, mut misses, mut at) = (Vec::new(), Vec::new(), 0);
                    for (token, i) in group {
                        at = lower_bound_from(&stripe.entries, at, &token);
                        match stripe.entries.get(at) {
                            Some(e) if e.token == token => hits.push((i, *e)),
                            _ => misses.push((token, i)),
                        }
                    }
                    Ok((hits, misses, learned))
                })?;
            pending = ruled_out;
            let mut learned = Vec::new();
            for (hits, misses, filter) in matched {
                for (i, e) in hits {
                    found[i] = Some(e).filter(|e| !e.is_tombstone());
                }
                pending.extend(misses);
                learned.extend(filter);
            }
            self.filters.learn_run(run.no, learned, m);
        }
        // Each bucket to read, with its stamp, whether its filter is known,
        // and the tokens sought there.
        let mut by_bucket: HashMap<usize, (Stamp, bool, Vec<Sought>)> = HashMap::new();
        {
            let filters = self.filters.buckets();
            for (token, i) in pending {
                let b = m.bucket_of(&token);
                let stamp = m.bucket(b);
                if stamp.is_none() {
                    continue; // an empty bucket
                }
                match filters.may_hold(b, &stamp, &token) {
                    Some(false) => {}
                    known => {
                        by_bucket.entry(b).or_insert_with(|| (stamp, known.is_some(), Vec::new())).2.push((token, i))
                    }
                }
            }
        }
        let matched: Vec<(Vec<Found>, Option<Learned>)> =
            parallel::try_map(&self.env.pool, by_bucket, MIN_PARALLEL_OBJECTS, |(b, (stamp, known, group))| {
                let bucket = self.bucket(m, b)?;
                let learned = (!known).then(|| (b, stamp, Filter::of(bucket.entries.iter().map(|e| &e.token))));
                let hits = group.into_iter().filter_map(|(token, i)| Some((i, *bucket.find(&token)?))).collect();
                Ok((hits, learned))
            })?;
        let mut learned = Vec::new();
        for (hits, filter) in matched {
            for (i, e) in hits {
                found[i] = Some(e);
            }
            learned.extend(filter);
        }
        self.filters.learn_buckets(learned);
        Ok(found)
    }

    /// Records `changes` (sorted by token, one per token; a tombstone
    /// deletes) in `plan`'s directory: a new run, merged with the newest
    /// runs while they are less than twice its size, the runs made a fold
    /// once they hold more than 1/[`FOLD_SHARE`] of the items, and the next
    /// range of the fold under way. `plan.manifest.num_vectors` must be the
    /// write's new count.
    pub(super) fn write_directory(&self, plan: &mut Plan<'_>, old: &Manifest, changes: Vec<Entry>) -> Result<()> {
        debug_assert!(changes.windows(2).all(|w| w[0].token < w[1].token));
        let mut touched = self.grow_directory(plan, old)?;
        let mut runs = old.runs.clone();
        // The write's entries merged with the newest runs, striped.
        let (mut merged, newest) = self.merge_newest(old, &mut runs, changes)?;
        let merging: usize = newest.iter().map(Vec::len).sum();
        let limit = FOLD_MIN.max(plan.manifest.num_vectors / FOLD_SHARE) as usize;
        let mut folding = old.folding.clone();
        let delta = runs.iter().map(|r| r.entries as usize).sum::<usize>() + merging;
        if delta > limit {
            // The pace below ends a fold before the runs fill up again,
            // unless a write larger than what was left of the room comes.
            if let Some(mut fold) = folding.take() {
                let end = fold.striping().0;
                self.fold_range(plan, old, &mut fold, end, &mut touched)?;
            }
            let mut entries = Vec::new();
            for run in &runs {
                entries = newer_wins(entries, self.run_entries(old, run)?);
            }
            let mut newest: Vec<Entry> = newest.into_iter().flatten().collect();
            parallel::sort_unstable_by(&self.env.pool, &mut newest, |a, b| a.token.cmp(&b.token));
            merged.append(&mut runs);
            // Folded from the next write on (the stripes are not stored yet).
            let run = self.put_fold_run(plan, newer_wins(entries, newest))?;
            folding = Some(Fold { run, cursor: 0 });
        } else {
            if merging > 0 {
                let stripes = newest.into_iter().map(|entries| Bucket { entries }).collect();
                runs.push(self.store_run(plan, Striping::Token, stripes)?);
            }
            if let Some(fold) = folding.as_mut() {
                // Paced by how full the runs are: the fold keeps up with
                // the share of its buckets that the runs hold of their
                // limit, so it ends as they fill up, and a small write
                // folds a bucket only when the runs pass the next one's
                // share (about one write in limit / buckets: a one-item
                // write that folded a bucket every time rewrote the bucket
                // and its 45 KB page of the bucket table at 1M items).
                let filled: usize = runs.iter().map(|r| r.entries as usize).sum();
                let total = fold.striping().0;
                let to = (total * filled).div_ceil(limit).min(total);
                self.fold_range(plan, old, fold, to, &mut touched)?;
                if fold.remaining() == 0 {
                    folding = None;
                }
            }
        }
        for run in &merged {
            remove_run(plan, run);
        }
        plan.manifest.runs = runs;
        plan.manifest.folding = folding;
        plan.put_buckets(touched.into_iter().collect())
    }

    /// Every entry of every run, the fold's included, merged (the newest
    /// wins), sorted by token.
    pub(super) fn run_entries_merged(&self, m: &Manifest) -> Result<Vec<Entry>> {
        m.directory_runs().try_fold(Vec::new(), |older, run| Ok(newer_wins(older, self.run_entries(m, run)?)))
    }

    /// The entries of one run, sorted by token.
    fn run_entries(&self, m: &Manifest, run: &RunMeta) -> Result<Vec<Entry>> {
        let stored = (0..run.stripes.len()).filter(|&s| !run.stripes[s].is_none());
        let stripes: Vec<Arc<Bucket>> = stored.map(|s| self.run_stripe(m, run, s)).collect::<Result<_>>()?;
        let mut entries: Vec<Entry> = stripes.iter().flat_map(|s| s.entries.iter().copied()).collect();
        parallel::sort_unstable_by(&self.env.pool, &mut entries, |a, b| a.token.cmp(&b.token));
        Ok(entries)
    }

    /// The write's `changes` (sorted) merged with the newest of `runs`,
    /// taken from it while each holds fewer than twice the entries merged
    /// so far (a binary counter): the runs taken, newest first, and the
    /// merged entries as the stripes of a token-striped run. Stripe by
    /// stripe, in parallel: each stripe merges only the parts of its
    /// sources in its range (`merged_stripe`), so no run is gathered whole
    /// in one buffer (at 1M items those were megabytes of fresh pages a
    /// write, merged on one thread). The counts are exact (an id in two
    /// sources counts once), as the fold's trigger needs.
    fn merge_newest(
        &self,
        old: &Manifest,
        runs: &mut Vec<RunMeta>,
        changes: Vec<Entry>,
    ) -> Result<(Vec<RunMeta>, Vec<Vec<Entry>>)> {
        let pool = &self.env.pool;
        let stripes_for = |bytes: usize| bytes.div_ceil(STRIPE_BYTES).max(1).next_power_of_two();
        let mut bytes: usize = changes.iter().map(Entry::encoded_len).sum();
        let mut n = stripes_for(bytes);
        let mut newest = vec![Vec::new(); n];
        for e in changes {
            newest[token_stripe(&e.token, n)].push(e);
        }
        let (mut count, mut merged) = (newest.iter().map(Vec::len).sum::<usize>(), Vec::new());
        while runs.last().is_some_and(|r| (r.entries as usize) < 2 * count) {
            let run = runs.pop().expect("checked");
            let stored: Vec<usize> = (0..run.stripes.len()).filter(|&s| !run.stripes[s].is_none()).collect();
            let loaded: Vec<Arc<Bucket>> =
                parallel::try_map(pool, &stored, MIN_PARALLEL_OBJECTS, |&s| self.run_stripe(old, &run, s))?;
            let mut older: Vec<&[Entry]> = vec![&[]; run.stripes.len()];
            for (&s, stripe) in stored.iter().zip(&loaded) {
                older[s] = &stripe.entries;
            }
            // At most what the merge comes to: the stripes it is cut into.
            let most = bytes + loaded.iter().flat_map(|b| &b.entries).map(Entry::encoded_len).sum::<usize>();
            n = stripes_for(most).max(n);
            let sources = [older, newest.iter().map(Vec::as_slice).collect()];
            newest = parallel::map(pool, (0..n).collect::<Vec<_>>(), MIN_PARALLEL_OBJECTS, |t| {
                merged_stripe(t, n, &sources)
            });
            count = newest.iter().map(Vec::len).sum();
            bytes = newest.iter().flatten().map(Entry::encoded_len).sum();
            merged.push(run);
        }
        Ok((merged, newest))
    }

    /// Stores `entries` (sorted) as the run of a new fold: striped by
    /// ranges of `plan`'s buckets.
    fn put_fold_run(&self, plan: &mut Plan<'_>, entries: Vec<Entry>) -> Result<RunMeta> {
        let bytes: usize = entries.iter().map(Entry::encoded_len).sum();
        let wanted = bytes.div_ceil(STRIPE_BYTES).max(1);
        let n_buckets = plan.manifest.n_buckets;
        let per_stripe = n_buckets.div_ceil(wanted as u32);
        let striping = Striping::Buckets { n_buckets, per_stripe };
        let n = n_buckets.div_ceil(per_stripe) as usize;
        let mut stripes = vec![Bucket::default(); n];
        for e in entries {
            stripes[striping.stripe_of(&e.token, n)].entries.push(e);
        }
        self.store_run(plan, striping, stripes)
    }

    /// Seals `stripes` (each sorted) in parallel as a new run of `plan`
    /// striped by `striping`, and stores them and their filters.
    fn store_run(&self, plan: &mut Plan<'_>, striping: Striping, stripes: Vec<Bucket>) -> Result<RunMeta> {
        let no = plan.manifest.next_run;
        plan.manifest.next_run += 1;
        let entries = stripes.iter().map(|s| s.entries.len() as u32).sum();
        let mut run = RunMeta { no, entries, stripes: vec![Stamp::default(); stripes.len()].into(), striping };
        let numbered: Vec<(usize, Bucket)> = stripes.into_iter().enumerate().collect();
        let sealed: Vec<Option<SealedEntries>> =
            parallel::try_map(&self.env.pool, numbered, MIN_PARALLEL_OBJECTS, |(s, stripe)| {
                if stripe.entries.is_empty() {
                    return Ok(None);
                }
                let sealed = plan.seal(Obj::RunStripe(no, s as u32), &stripe.encode())?;
                let filter = Filter::of(stripe.entries.iter().map(|e| &e.token));
                Ok(Some((Arc::new(stripe), sealed, filter)))
            })?;
        let mut learned = Vec::new();
        for (s, sealed) in sealed.into_iter().enumerate() {
            if let Some((stripe, sealed, filter)) = sealed {
                run.stripes[s] = plan.put(Obj::RunStripe(no, s as u32), sealed, Some(Cached::Bucket(stripe)), None);
                learned.push((s, run.stripes[s], filter));
            }
        }
        plan.learned_run(no, learned);
        Ok(run)
    }

    /// Folds the entries of `fold`'s buckets `fold.cursor..to` (places in
    /// [`fold_order`] among the buckets its run is striped by) into the
    /// buckets they are in now, kept in `touched` with the others this
    /// write rewrites, and removes the stripes it has then wholly folded.
    /// Every entry of the fold is folded once: the buckets a fold's bucket
    /// has split into since are folded with it. While the directory is due
    /// to grow, each bucket the range reaches in the order they split is
    /// split first, so the split costs no rewrite of its own.
    fn fold_range(
        &self,
        plan: &mut Plan<'_>,
        old: &Manifest,
        fold: &mut Fold,
        to: usize,
        touched: &mut HashMap<usize, Bucket>,
    ) -> Result<()> {
        let (n_buckets, per_stripe) = fold.striping();
        let (from, to) = (fold.cursor as usize, to.min(n_buckets));
        if from >= to {
            return Ok(());
        }
        let reached = |b: usize| b < n_buckets && (from..to).contains(&fold_order(b, n_buckets));
        while plan.manifest.n_buckets < wanted_buckets(&plan.manifest)
            && reached(split_partner(plan.manifest.n_buckets as usize))
        {
            self.split_next(plan, old, touched)?;
        }
        let n_now = plan.manifest.n_buckets as usize;
        let mut changes: HashMap<usize, Vec<Entry>> = HashMap::new();
        for s in from / per_stripe..to.div_ceil(per_stripe) {
            if fold.run.stripes[s].is_none() {
                continue;
            }
            // Sorted by token, so each bucket's changes are too.
            for e in &self.run_stripe(old, &fold.run, s)?.entries {
                if reached(bucket_of(&e.token, n_buckets)) {
                    changes.entry(bucket_of(&e.token, n_now)).or_default().push(*e);
                }
            }
        }
        let bases: Vec<(usize, Option<Bucket>, Vec<Entry>)> =
            changes.into_iter().map(|(b, changes)| (b, touched.remove(&b), changes)).collect();
        let folded: Vec<(usize, Bucket)> =
            parallel::try_map(&self.env.pool, bases, MIN_PARALLEL_OBJECTS, |(b, base, changes)| {
                let bucket = match base {
                    Some(bucket) => bucket,
                    None => self.owned_bucket(old, b)?,
                };
                Ok((b, applied(bucket, changes)))
            })?;
        touched.extend(folded);
        let mut s = from / per_stripe;
        while s < fold.run.stripes.len() && ((s + 1) * per_stripe).min(n_buckets) <= to {
            let stamp = std::mem::take(&mut fold.run.stripes[s]);
            if !stamp.is_none() {
                plan.remove(Obj::RunStripe(fold.run.no, s as u32), &stamp);
            }
            s += 1;
        }
        fold.cursor = to as u32;
        Ok(())
    }

    /// Grows `plan`'s directory at once to the buckets its count wants if
    /// they would otherwise average more than twice [`ENTRIES_PER_BUCKET`]
    /// entries: after a write about as large as the index. Otherwise folds
    /// grow it as they go (`fold_range`), lagging by at most what the
    /// items grow by in a fold's time (~1/8); returns the buckets the
    /// splits rewrote.
    fn grow_directory(&self, plan: &mut Plan<'_>, old: &Manifest) -> Result<HashMap<usize, Bucket>> {
        let mut touched: HashMap<usize, Bucket> = HashMap::new();
        let wanted = wanted_buckets(&plan.manifest);
        if plan.manifest.n_buckets.saturating_mul(2) < wanted {
            while plan.manifest.n_buckets < wanted {
                self.split_next(plan, old, &mut touched)?;
            }
        }
        Ok(touched)
    }

    /// Adds the next bucket to `plan`'s directory, splitting one existing
    /// bucket (from `touched` if this write rewrote it already) into it.
    fn split_next(&self, plan: &mut Plan<'_>, old: &Manifest, touched: &mut HashMap<usize, Bucket>) -> Result<()> {
        let n = plan.manifest.n_buckets as usize;
        let partner = split_partner(n);
        let from = match touched.remove(&partner) {
            Some(b) => b,
            None => self.owned_bucket(old, partner)?,
        };
        let (mut stay, mut moved) = (Bucket::default(), Bucket::default());
        for e in from.entries {
            if bucket_of(&e.token, n + 1) == n { &mut moved } else { &mut stay }.entries.push(e);
        }
        plan.manifest.n_buckets += 1;
        touched.insert(partner, stay);
        touched.insert(n, moved);
        Ok(())
    }

    /// The fold under way as (buckets folded, buckets to fold), for tests
    /// of its pace.
    #[cfg(feature = "test-hooks")]
    pub fn fold_progress(&self) -> Result<Option<(u32, u32)>> {
        let snap = self.reload()?;
        Ok(snap.manifest.folding.as_ref().map(|f| (f.cursor, f.striping().0 as u32)))
    }

    /// Bucket `b` of `old` as an owned copy (empty beyond its directory).
    fn owned_bucket(&self, old: &Manifest, b: usize) -> Result<Bucket> {
        Ok(if b < old.n_buckets as usize { (*self.bucket(old, b)?).clone() } else { Bucket::default() })
    }
}

/// The buckets `m`'s count of items wants: [`ENTRIES_PER_BUCKET`] a bucket.
fn wanted_buckets(m: &Manifest) -> u32 {
    m.num_vectors.div_ceil(ENTRIES_PER_BUCKET).min(u32::MAX as u64) as u32
}

/// Run entries (sorted by token) grouped by their bucket among `n_buckets`,
/// each group still sorted.
pub(super) fn group_by_bucket(entries: &[Entry], n_buckets: usize) -> HashMap<usize, Vec<Entry>> {
    let mut groups: HashMap<usize, Vec<Entry>> = HashMap::new();
    for e in entries {
        groups.entry(bucket_of(&e.token, n_buckets)).or_default().push(*e);
    }
    groups
}

/// A bucket with run entries (sorted) applied, in one merge: an entry
/// replaces or adds the id's, a tombstone removes it.
pub(super) fn applied(bucket: Bucket, changes: Vec<Entry>) -> Bucket {
    let mut entries = newer_wins(bucket.entries, changes);
    entries.retain(|e| !e.is_tombstone());
    Bucket { entries }
}

/// The first index at or after `from` whose entry's token is not below
/// `token` (all before `from` are): steps of 1, 2, 4, ... then a binary
/// search in the last step, so close tokens cost a few sequential reads.
fn lower_bound_from(entries: &[Entry], from: usize, token: &Token) -> usize {
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < entries.len() && entries[hi].token < *token {
        lo = hi + 1;
        hi = lo + step;
        step *= 2;
    }
    let hi = hi.min(entries.len());
    lo + entries[lo..hi].partition_point(|e| e.token < *token)
}

/// Removes every stored stripe of `run` (merged into a newer run or folded).
pub(super) fn remove_run(plan: &mut Plan<'_>, run: &RunMeta) {
    for (s, stamp) in run.stripes.iter().enumerate().filter(|(_, s)| !s.is_none()) {
        plan.remove(Obj::RunStripe(run.no, s as u32), stamp);
    }
}

/// Two sorted runs as one; where both hold a token, `newer`'s entry.
fn newer_wins(older: Vec<Entry>, newer: Vec<Entry>) -> Vec<Entry> {
    if older.is_empty() {
        return newer;
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut a, mut b) = (older.into_iter().peekable(), newer.into_iter().peekable());
    loop {
        let take_older = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.token.cmp(&y.token) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => {
                    a.next();
                    false
                }
            },
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.push(if take_older { a.next() } else { b.next() }.expect("peeked"));
    }
}

/// Stripe `t` of a token-striped run of `n` stripes merged from `sources`,
/// each the stripes of one token-striped run (or of a write's changes),
/// oldest first: a token's entry in the newest source that holds it wins.
/// A source of no more stripes than `n` gives the entries of its stripe
/// that fall in `t`; one of more gives its whole stripes that do (a token's
/// stripe is the low bits of one number, `token_stripe`). Each part is
/// sorted, so the merge is linear.
fn merged_stripe(t: usize, n: usize, sources: &[Vec<&[Entry]>]) -> Vec<Entry> {
    let mut out = Vec::new();
    for stripes in sources {
        let m = stripes.len();
        if m <= n {
            let part = stripes[t & (m - 1)].iter().filter(|e| token_stripe(&e.token, n) == t).copied().collect();
            out = newer_wins(out, part);
        } else {
            for s in (t..m).step_by(n) {
                out = newer_wins(out, stripes[s].to_vec());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: u8, chunk: u32) -> Entry {
        Entry { token: [t; 16], chunk, contents: Stamp::default() }
    }

    #[test]
    fn the_newer_run_wins_and_order_is_kept() {
        let older = vec![entry(1, 1), entry(3, 1), entry(5, 1)];
        let newer = vec![entry(2, 2), entry(3, 2), Entry::tombstone([5; 16]), entry(6, 2)];
        let merged = newer_wins(older, newer);
        let got: Vec<(u8, u32)> = merged.iter().map(|e| (e.token[0], e.chunk)).collect();
        assert_eq!(got, vec![(1, 1), (2, 2), (3, 2), (5, u32::MAX), (6, 2)]);
        assert!(merged[3].is_tombstone());
        assert_eq!(newer_wins(vec![entry(1, 1)], vec![]).len(), 1);
    }

    #[test]
    fn galloping_finds_the_lower_bound_from_any_start() {
        let entries: Vec<Entry> = (0..200u8).filter(|t| t % 3 != 0).map(|t| entry(t, 0)).collect();
        for from in [0, 1, 5, 60, entries.len()] {
            for t in 0..=255u8 {
                let token = [t; 16];
                let expected = entries.partition_point(|e| e.token < token).max(from);
                if entries[..from].iter().all(|e| e.token < token) {
                    assert_eq!(lower_bound_from(&entries, from, &token), expected, "from {from}, token {t}");
                }
            }
        }
    }

    #[test]
    fn applying_runs_replaces_adds_and_removes() {
        let b = Bucket { entries: vec![entry(1, 4), entry(3, 4), entry(5, 4)] };
        let changes = vec![entry(1, 7), Entry::tombstone([3; 16]), entry(4, 7), Entry::tombstone([9; 16])];
        assert_eq!(applied(b, changes).entries, vec![entry(1, 7), entry(4, 7), entry(5, 4)]);
    }

    #[test]
    fn stripe_by_stripe_merges_equal_one_whole_merge() {
        // Sources of 1, 8, 2 and 4 stripes, oldest first, sharing tokens:
        // every output stripe count gives, stripe by stripe, what one merge
        // of the whole runs gives, each entry in its stripe.
        let token = |i: u32| {
            let mut t = [0u8; 16];
            t[..4].copy_from_slice(&(i / 7).to_be_bytes());
            t[4..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9).to_le_bytes());
            t
        };
        let source = |ids: std::ops::Range<u32>, chunk: u32| -> Vec<Entry> {
            let mut v: Vec<Entry> = ids.map(|i| Entry { token: token(i), chunk, contents: Stamp::default() }).collect();
            v.sort_unstable_by_key(|e| e.token);
            v
        };
        let sources =
            [(source(0..300, 1), 1), (source(200..500, 2), 8), (source(100..260, 3), 2), (source(450..470, 4), 4)];
        let whole = sources.iter().fold(Vec::new(), |out, (s, _)| newer_wins(out, s.clone()));
        let striped: Vec<Vec<Vec<Entry>>> = sources
            .iter()
            .map(|(s, m)| {
                (0..*m).map(|k| s.iter().filter(|e| token_stripe(&e.token, *m) == k).copied().collect()).collect()
            })
            .collect();
        let views: Vec<Vec<&[Entry]>> = striped.iter().map(|run| run.iter().map(Vec::as_slice).collect()).collect();
        for n in [1, 2, 4, 8, 16] {
            let mut all = Vec::new();
            for t in 0..n {
                let stripe = merged_stripe(t, n, &views);
                assert!(stripe.windows(2).all(|w| w[0].token < w[1].token), "stripe {t} of {n} unsorted");
                assert!(stripe.iter().all(|e| token_stripe(&e.token, n) == t), "stripe {t} of {n} holds another's");
                all.extend(stripe);
            }
            all.sort_unstable_by_key(|e| e.token);
            assert_eq!(all, whole, "{n} stripes");
        }
        assert_eq!(whole.iter().filter(|e| e.chunk == 3).count(), 160);
    }
}
