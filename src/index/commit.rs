//! The one commit path of every change to an index's data. A write builds a
//! [`Plan`] from a snapshot without touching the store: the next manifest
//! (version + 1, on a new AEAD key version when the current one reached its
//! encryption limit), every new object sealed at that version, every object
//! it replaces or removes, and the cache changes that go with them. The
//! plan is committed in one atomic batch guarded by a compare-and-set on the
//! manifest, so a failure anywhere before the commit changes nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::access::Signing;
use super::chunk::{Bucket, Chunk};
use super::codes::{pack_obj, stored_units, unit_obj, units_of, Coder, Encoded, KnownCode};
use super::ivf::Centroids;
use super::keyring::KeyRecord;
use super::manifest::{ChunkMeta, ListChanges, Manifest, Stamp};
use super::objects::{CacheKey, Cached, Obj};
use super::presence::{Filter, Learned};
use super::snapshot::{backoff, Snapshot};
use super::types::Precision;
use super::{key_record_key, Index};
use crate::crypto::{DataKeys, Sealer, SecretKey, Signer, Token, MAX_ENCRYPTIONS_PER_KEY, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::parallel::{self, MIN_PARALLEL_OBJECTS};
use crate::store::WriteBatch;

/// Compare-and-set attempts of one write before it reports a conflict; each
/// lost race waits a random, growing pause so competing writers spread out.
const COMMIT_ATTEMPTS: u32 = 10;

/// Everything one write will store, ready to commit.
pub(super) struct Plan<'a> {
    index: &'a Index,
    /// The manifest the commit makes current; its version is the plan's.
    pub manifest: Manifest,
    /// Shared with the [`ChunkSealing`]s it hands out (one count of encryptions).
    sealer: Arc<Sealer<'a>>,
    batch: WriteBatch,
    cache_put: Vec<(CacheKey, Cached)>,
    cache_drop: Vec<CacheKey>,
    /// How the chunks this plan seals are coded: `Some` when the state it
    /// commits is a trained IVF_RABITQ one (`codes.rs`).
    pub coder: Option<Arc<Coder>>,
    /// Whether the chunks of the state it replaces were stored coded (so
    /// removing one removes its units).
    replaces_coded: bool,
    /// The membership filters of the buckets and run stripes it seals,
    /// which the handle keeps once the plan is committed (`presence.rs`):
    /// a lookup then reads none of them for an id they do not hold, where
    /// it used to decrypt each once to learn its filter (after a training
    /// run, every bucket; after each fold step, the buckets it reached).
    learned_buckets: Vec<Learned>,
    learned_runs: Vec<(u32, Vec<Learned>)>,
}

/// A bucket or a run stripe as sealed: its entries (for the cache), the
/// sealed bytes, and its membership filter (for the handle).
pub(super) type SealedEntries = (Arc<Bucket>, Vec<u8>, Filter);

/// A directory bucket sealed for a plan (`None`: it is now empty).
pub(super) struct SealedBucket {
    b: usize,
    sealed: Option<SealedEntries>,
}

/// A chunk sealed for a plan (built in parallel, recorded with
/// [`Plan::put_chunk`]).
pub(super) struct SealedChunk {
    meta: ChunkMeta,
    cached: Cached,
    sealed: Vec<u8>,
    /// The objects a coded chunk's units are stored as: its unit pack (or,
    /// in tests of 0.11's layout, each unit).
    units: Vec<(Obj, Vec<u8>)>,
}

/// Seals chunks for a [`Plan`] without borrowing it (from
/// [`Plan::chunk_sealing`]): the plan's sealer, coder and version.
pub(super) struct ChunkSealing<'a> {
    index: &'a Index,
    sealer: Arc<Sealer<'a>>,
    coder: Option<Arc<Coder>>,
    version: u64,
    /// Units packed, unless a test seals as 0.11 did (the stamp's version is the plan's).
    packed: bool,
}

impl ChunkSealing<'_> {
    fn seal(&self, obj: Obj, plain: &[u8]) -> Result<Vec<u8>> {
        self.sealer.seal(obj.kind() as u8, &self.index.tokens.of(obj), self.version, plain)
    }

    /// Encodes and seals chunk `no` of `list` (coded if the plan has a
    /// coder, copying the codes `known` names); callable from many threads.
    pub fn seal_chunk(
        &self,
        (no, list): (u32, u32),
        chunk: Chunk,
        known: &[KnownCode<'_>],
        precision: Precision,
    ) -> Result<SealedChunk> {
        // Its rows' whole bytes either way (what a write's repack gathers);
        // a coded layout packs more of them (`Coder::packing`).
        let bytes = chunk.encoded_len(precision) as u32;
        let (count, version) = (chunk.len() as u32, self.version);
        let Some(coder) = &self.coder else {
            let sealed = self.seal(Obj::Chunk(no), &chunk.encode(precision))?;
            let meta = ChunkMeta { no, list, count, bytes, stamp: Stamp::of(version, &sealed) };
            return Ok(SealedChunk { meta, cached: Cached::Chunk(Arc::new(chunk)), sealed, units: Vec::new() });
        };
        let packed = self.packed;
        let Encoded { head, plain, units } = coder.encode(list, &chunk, known, (precision, packed));
        let sealed = self.seal(Obj::Chunk(no), &plain)?;
        let meta = ChunkMeta { no, list, count, bytes, stamp: Stamp::of(version, &sealed) };
        let bytes = units.iter().map(|plain| plain.len() + SEAL_OVERHEAD).sum();
        let units = units.iter().enumerate().map(|(u, plain)| self.seal(unit_obj(&meta, u as u32).0, plain));
        if !packed {
            let units = units.enumerate().map(|(u, sealed)| Ok((unit_obj(&meta, u as u32).0, sealed?)));
            return Ok(SealedChunk { meta, cached: Cached::Codes(head), sealed, units: units.collect::<Result<_>>()? });
        }
        let mut pack = Vec::with_capacity(bytes);
        for (u, sealed) in units.enumerate() {
            pack.extend_from_slice(&sealed?);
            if head.places.part(u as u32).is_none_or(|(start, len)| start + len as u64 != pack.len() as u64) {
                return Err(Error::Internal("a sealed unit is not where its head says".into()));
            }
        }
        let units = vec![(pack_obj(&meta).0, pack)];
        Ok(SealedChunk { meta, cached: Cached::Codes(head), sealed, units })
    }
}

impl<'a> Plan<'a> {
    pub fn version(&self) -> u64 {
        self.manifest.version
    }

    /// Seals `plain` as `obj` at the plan's version; callable from many
    /// threads at once.
    pub fn seal(&self, obj: Obj, plain: &[u8]) -> Result<Vec<u8>> {
        self.sealer.seal(obj.kind() as u8, &self.index.tokens.of(obj), self.version(), plain)
    }

    /// Stores a sealed `obj` in place of the one `old` pins, if any.
    /// Returns the stamp the manifest (or directory) must pin it by.
    pub fn put(&mut self, obj: Obj, sealed: Vec<u8>, cached: Option<Cached>, old: Option<Stamp>) -> Stamp {
        let stamp = Stamp::of(self.version(), &sealed);
        self.store(obj, &stamp, sealed, cached, old);
        stamp
    }

    /// As [`Plan::put`], for bytes whose stamp the caller has. The new
    /// object gets its own key; the one it replaces is deleted in the same
    /// batch.
    fn store(&mut self, obj: Obj, stamp: &Stamp, sealed: Vec<u8>, cached: Option<Cached>, old: Option<Stamp>) {
        self.batch.put(self.index.store_key(obj, stamp), sealed);
        if let Some(old) = old {
            self.remove(obj, &old);
        }
        if let Some(c) = cached {
            self.cache_put.push((self.index.cache_key(obj, stamp), c));
        }
    }

    /// Removes the `obj` that `stamp` pins from the store (and the cache).
    pub fn remove(&mut self, obj: Obj, stamp: &Stamp) {
        debug_assert!(!stamp.is_none() && stamp.version < self.version(), "only a committed object is removed");
        self.batch.delete(self.index.store_key(obj, stamp));
        self.cache_drop.push(self.index.cache_key(obj, stamp));
    }

    /// Removes chunk `meta` (and a coded one's units) from the store and
    /// the manifest.
    pub fn remove_chunk(&mut self, meta: &ChunkMeta) {
        self.remove(Obj::Chunk(meta.no), &meta.stamp);
        if self.replaces_coded {
            for (obj, stamp) in stored_units(&self.manifest, meta) {
                self.batch.delete(self.index.store_key(obj, &stamp));
            }
            let (dim, precision) = (self.manifest.config.dimension as usize, self.manifest.config.precision);
            for (u, _) in units_of(meta.count as usize, dim, precision) {
                let (obj, stamp) = unit_obj(meta, u);
                self.cache_drop.push(self.index.cache_key(obj, &stamp));
            }
        }
        self.manifest.remove_chunk(meta.no);
    }

    /// What seals this plan's chunks (from many threads), apart from the
    /// plan: a write seals its chunks with it while the plan records the
    /// write's directory.
    pub fn chunk_sealing(&self) -> ChunkSealing<'a> {
        ChunkSealing {
            index: self.index,
            sealer: self.sealer.clone(),
            coder: self.coder.clone(),
            version: self.version(),
            packed: self.version() >= self.manifest.units_packed_since,
        }
    }

    /// Stores a sealed chunk and names it in the manifest, in place of the
    /// chunk of that number it replaces, if any.
    pub fn put_chunk(&mut self, s: SealedChunk) {
        if let Some(old) = self.manifest.chunk(s.meta.no).copied() {
            self.remove_chunk(&old);
        }
        self.manifest.set_chunk(s.meta);
        for (obj, stored) in s.units {
            self.batch.put(self.index.store_key(obj, &s.meta.stamp), stored);
        }
        self.store(Obj::Chunk(s.meta.no), &s.meta.stamp, s.sealed, Some(s.cached), None);
    }

    /// Names a sealed chunk (a new number) in the manifest without storing
    /// it: returns what the caller writes ahead of the commit (the chunk,
    /// then its unit pack).
    pub fn put_chunk_ahead(&mut self, s: SealedChunk) -> Vec<(Obj, Stamp, Vec<u8>)> {
        debug_assert!(self.manifest.chunk(s.meta.no).is_none(), "written ahead under a new number");
        self.manifest.set_chunk(s.meta);
        let units = s.units.into_iter().map(|(obj, stored)| (obj, s.meta.stamp, stored));
        std::iter::once((Obj::Chunk(s.meta.no), s.meta.stamp, s.sealed)).chain(units).collect()
    }

    /// Names a sealed directory bucket in the manifest in place of the one
    /// it replaces (removed at the commit) without storing it: returns what
    /// the caller writes ahead of the commit (`None`: the bucket is now empty).
    pub fn put_bucket_ahead(&mut self, s: SealedBucket) -> Option<(Obj, Stamp, Vec<u8>)> {
        let obj = Obj::Bucket(s.b as u32);
        let old = self.manifest.bucket(s.b);
        if !old.is_none() {
            self.remove(obj, &old);
        }
        let Some((_, sealed, filter)) = s.sealed else {
            self.manifest.set_bucket(s.b, Stamp::default());
            return None;
        };
        let stamp = Stamp::of(self.version(), &sealed);
        self.manifest.set_bucket(s.b, stamp);
        self.learned_buckets.push((s.b, stamp, filter));
        Some((obj, stamp, sealed))
    }

    /// Stores the centroids of a training run.
    pub fn put_centroids(&mut self, centroids: &Arc<Centroids>) -> Result<()> {
        let sealed = self.seal(Obj::Centroids, &centroids.encode())?;
        let old = Some(self.manifest.centroids).filter(|s| !s.is_none());
        self.manifest.centroids = self.put(Obj::Centroids, sealed, Some(Cached::Centroids(centroids.clone())), old);
        Ok(())
    }

    /// Encodes and seals directory bucket `b`; callable from many threads.
    pub fn seal_bucket(&self, b: usize, bucket: Bucket) -> Result<SealedBucket> {
        if bucket.entries.is_empty() {
            return Ok(SealedBucket { b, sealed: None });
        }
        let sealed = self.seal(Obj::Bucket(b as u32), &bucket.encode())?;
        let filter = Filter::of(bucket.entries.iter().map(|e| &e.token));
        Ok(SealedBucket { b, sealed: Some((Arc::new(bucket), sealed, filter)) })
    }

    /// Stores a sealed directory bucket (an empty one as nothing) in place
    /// of the one it replaces.
    pub fn put_bucket(&mut self, s: SealedBucket) {
        let old = Some(self.manifest.bucket(s.b)).filter(|s| !s.is_none());
        let obj = Obj::Bucket(s.b as u32);
        match s.sealed {
            None => {
                if let Some(old) = old {
                    self.remove(obj, &old);
                    self.manifest.set_bucket(s.b, Stamp::default());
                }
            }
            Some((bucket, sealed, filter)) => {
                let stamp = self.put(obj, sealed, Some(Cached::Bucket(bucket)), old);
                self.manifest.set_bucket(s.b, stamp);
                self.learned_buckets.push((s.b, stamp, filter));
            }
        }
    }

    /// Records the filters of the stripes of run `no` this plan stores.
    pub fn learned_run(&mut self, no: u32, learned: Vec<Learned>) {
        self.learned_runs.push((no, learned));
    }

    /// Seals `buckets` in parallel and stores them.
    pub fn put_buckets(&mut self, buckets: Vec<(usize, Bucket)>) -> Result<()> {
        let sealed: Vec<SealedBucket> =
            parallel::try_map(&self.index.env.pool, buckets, MIN_PARALLEL_OBJECTS, |(b, bucket)| {
                self.seal_bucket(b, bucket)
            })?;
        for s in sealed {
            self.put_bucket(s);
        }
        Ok(())
    }

    /// Stores an item's contents (replacing the version `old`, if any);
    /// returns the stamp to record in its directory entry.
    pub fn put_contents(&mut self, id_token: &Token, contents: &[u8], old: Option<Stamp>) -> Result<Stamp> {
        let obj = Obj::Contents(*id_token);
        let sealed = self.seal(obj, contents)?;
        Ok(self.put(obj, sealed, None, old))
    }

    /// The batch to write: the objects, the manifest sealed and signed by
    /// `writer`, the version hint and the compare-and-set against `base`.
    /// Returns it with the stored manifest bytes.
    fn seal_for_commit(&mut self, base: &Snapshot, writer: &Signer) -> Result<(WriteBatch, Vec<u8>)> {
        self.seal_pages(&base.manifest)?;
        let m = &mut self.manifest;
        m.encryptions += self.sealer.encryptions() + 1; // + the root itself
        let stored = m.seal(&self.sealer, writer, &self.index.layout.index_id)?;
        let layout = self.index.layout;
        let mut batch = std::mem::take(&mut self.batch);
        batch.put(layout.manifest(), stored.clone());
        batch.put(layout.version_hint(), m.version.to_le_bytes().to_vec());
        batch.expect(layout.manifest(), Some(base.stored.clone()));
        Ok((batch, stored))
    }
}

impl Plan<'_> {
    /// Seals the manifest pages this plan changed (in parallel), replacing
    /// their old versions (a page left empty is deleted), then the list
    /// pages whose stamps changed since `base`.
    fn seal_pages(&mut self, base: &Manifest) -> Result<()> {
        let dirty = self.manifest.take_dirty_pages();
        let sealed: Vec<(Obj, Stamp, Option<Vec<u8>>)> =
            parallel::try_map(&self.index.env.pool, dirty, MIN_PARALLEL_OBJECTS, |(page, old, plain)| {
                Ok((page, old, plain.map(|p| self.seal(page, &p)).transpose()?))
            })?;
        for (page, old, bytes) in sealed {
            let old = Some(old).filter(|s| !s.is_none());
            match bytes {
                Some(bytes) => {
                    let stamp = self.put(page, bytes, None, old);
                    self.manifest.page_sealed(page, stamp);
                }
                None => {
                    if let Some(old) = old {
                        self.remove(page, &old);
                    }
                    self.manifest.page_sealed(page, Stamp::default());
                }
            }
        }
        let ListChanges { changed, gone } = self.manifest.take_changed_lists(base);
        for (page, stamp) in gone {
            self.remove(page, &stamp);
        }
        for (page, plain) in changed {
            let bytes = self.seal(page, &plain)?;
            let stamp = self.put(page, bytes, None, None);
            self.manifest.page_sealed(page, stamp);
        }
        Ok(())
    }
}

impl Index {
    /// A plan for the state after `base`.
    pub(super) fn plan(&self, base: &Manifest) -> Plan<'_> {
        self.plan_with(base, &self.keys)
    }

    /// As [`Index::plan`], sealing under `keys`.
    fn plan_with<'a>(&'a self, base: &Manifest, keys: &'a DataKeys) -> Plan<'a> {
        let mut m = base.clone();
        m.version += 1;
        m.key_generation = m.key_generation.max(self.generation.load(Ordering::Acquire));
        if m.encryptions >= MAX_ENCRYPTIONS_PER_KEY {
            m.key_version += 1;
            m.encryptions = 0;
        }
        // As 0.11's root read by this build says of what it sealed.
        #[cfg(test)]
        if self.seal_units_apart.load(Ordering::Relaxed) {
            m.units_packed_since = m.version + 1;
        }
        Plan {
            index: self,
            sealer: Arc::new(keys.sealer(m.key_version)),
            manifest: m,
            batch: WriteBatch::default(),
            cache_put: Vec::new(),
            cache_drop: Vec::new(),
            coder: None,
            replaces_coded: base.coded(),
            learned_buckets: Vec::new(),
            learned_runs: Vec::new(),
        }
    }

    /// Runs `build` on the newest snapshot and commits its plan (`None`:
    /// nothing to write); retries when another writer (another handle or
    /// process) committed in between.
    pub(super) fn commit<'a, R>(
        &'a self,
        mut build: impl FnMut(&Snapshot) -> Result<(Option<Plan<'a>>, R)>,
    ) -> Result<R> {
        let _writer = self.write_lock.lock();
        for attempt in 0..COMMIT_ATTEMPTS {
            // After a lost compare-and-set, the stored manifest itself says
            // what won: the clear-text hint may be pinned to an old value.
            if attempt > 0 {
                backoff(attempt)?;
            }
            // Reading the newest state can itself keep losing to other
            // writers (they delete what each root read names): a lost race.
            let Some(snap) = self.newest_for_write(attempt > 0)? else { continue };
            let (plan, result) = match build(&snap) {
                // Another process committed under us and removed what the
                // snapshot names: plan again on the newer state.
                Err(e) if e.may_be_race() => match self.newest_for_write(false)? {
                    Some(now) if now.manifest.version == snap.manifest.version => return Err(e),
                    _ => continue,
                },
                other => other?,
            };
            let Some(mut plan) = plan else { return Ok(result) };
            let signer = self.signing.read().signer()?;
            let (batch, stored) = plan.seal_for_commit(&snap, &signer)?;
            if self.env.store.write(batch)? {
                for k in &plan.cache_drop {
                    self.env.cache.remove(k);
                }
                for (k, v) in plan.cache_put {
                    self.env.cache.insert(k, v);
                }
                self.filters.learn_buckets(plan.learned_buckets);
                for (no, learned) in plan.learned_runs {
                    self.filters.learn_run(no, learned, &plan.manifest);
                }
                self.install(Arc::new(Snapshot::new(plan.manifest, stored)));
                return Ok(result);
            }
        }
        Err(Error::Storage(format!(
            "conflict: other writers kept changing the index; gave up after {COMMIT_ATTEMPTS} attempts, nothing was written"
        )))
    }
}

impl Index {
    /// Replaces the key record `old` by `next` (which `root` opens) and
    /// commits a manifest over `snap` that names `next`'s generation, sealed
    /// under `next`'s newest data key and signed with its writer key, in one
    /// batch guarded by both: so the committed state (and the epoch) covers
    /// the key record, a key record put back from a backup is older than the
    /// manifest says, and a revocation takes effect for the manifest too.
    /// `false` if either changed meanwhile (nothing was written).
    pub(super) fn commit_key_record(
        &self,
        old: Vec<u8>,
        next: &KeyRecord,
        root: &SecretKey,
        snap: &Snapshot,
    ) -> Result<bool> {
        let _writer = self.write_lock.lock();
        let unlocked = next.unlock(&self.name, root, None)?;
        let keys = DataKeys::new(unlocked.secrets.data_keys.clone(), self.layout.index_id);
        let signer = Signing::new(next, &unlocked.secrets).signer()?;
        let mut plan = self.plan_with(&snap.manifest, &keys);
        plan.manifest.key_generation = next.generation;
        let newest_key_version = unlocked.secrets.data_keys.last().expect("a generation").0;
        if plan.manifest.key_version < newest_key_version {
            plan.manifest.key_version = newest_key_version;
            plan.manifest.encryptions = 0;
            plan.sealer = Arc::new(keys.sealer(newest_key_version));
        }
        let (mut batch, stored) = plan.seal_for_commit(snap, &signer)?;
        let record_key = key_record_key(&self.name);
        batch.put(record_key.clone(), next.encode());
        batch.expect(record_key, Some(old));
        if !self.env.store.write(batch)? {
            return Ok(false);
        }
        let manifest = plan.manifest;
        self.learn(next, &unlocked.secrets)?;
        self.generation.fetch_max(next.generation, Ordering::AcqRel);
        self.install(Arc::new(Snapshot::new(manifest, stored)));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::index::{Access, IndexConfig, ItemRef};
    use crate::{Client, ClientOptions, Status};

    fn upsert(index: &Index, id: &str) {
        let item = ItemRef { id, vector: &[1.0, 0.0], metadata: None, contents: None };
        index.upsert(&[item], Access::default()).unwrap();
    }

    /// A write whose plan finds an object missing while another process
    /// commits plans again on the newer state (a lost race); one that finds
    /// an object there but wrong stops at once with `INTEGRITY`, however
    /// the state moves (0.13.2 planned again, and with writers committing
    /// all the time reported a conflict instead).
    #[test]
    fn a_write_plans_again_after_a_missing_object_and_stops_at_an_altered_one() {
        let client = Client::open("memory:", ClientOptions::default()).unwrap();
        let key = SecretKey::from_bytes(&[3; 32]);
        let index = client.create_index("races", &key, IndexConfig::default()).unwrap();
        upsert(&index, "a");
        // Another client on the store, as another process: its own writer
        // lock (one client's handles on an index share one).
        let other = Client::over_store(client.raw_store(), ClientOptions::default()).unwrap();
        let rival = other.load_index("races", Access { key: Some(&key), user: None }).unwrap();
        let plans = Cell::new(0);

        let planned_on = index
            .commit(|snap| {
                plans.set(plans.get() + 1);
                if plans.get() < 3 {
                    upsert(&rival, &format!("rival{}", plans.get()));
                    return Err(Error::Missing("chunk 1 is missing".into()));
                }
                Ok((None, snap.manifest.num_vectors))
            })
            .unwrap();
        assert_eq!((plans.get(), planned_on), (3, 3), "planned again on each newer state");

        plans.set(0);
        let e = index
            .commit(|_| -> Result<(Option<Plan<'_>>, ())> {
                plans.set(plans.get() + 1);
                upsert(&rival, &format!("rival-again{}", plans.get()));
                Err(Error::integrity("chunk 1 is not the one the manifest names"))
            })
            .unwrap_err();
        assert_eq!(e.status(), Status::Integrity, "{e}");
        assert_eq!(plans.get(), 1, "an altered object is no race to plan again after");
    }
}
