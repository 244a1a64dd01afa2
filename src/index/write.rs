//! Writes: upsert and delete. Both build a *plan* (every new object, sealed,
//! plus the next manifest) from a snapshot without touching the store, then
//! commit it in one atomic batch guarded by a compare-and-set on the
//! manifest. A failure anywhere before the commit changes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::chunk::{item_encoded_len, Bucket, Chunk, Entry, CHUNK_TARGET_BYTES};
use super::manifest::{bucket_of, ChunkMeta, Manifest};
use super::{
    check_finite, manifest_key, object_key, validate_id, version_hint_key, Access, Index, ItemRef, Need, Snapshot,
    MAX_CONTENTS_BYTES, MAX_DIMENSION, MAX_METADATA_BYTES,
};
use crate::cache::{CacheKey, Cached};
use crate::crypto::{ObjectKind, Token, MAX_ENCRYPTIONS_PER_KEY};
use crate::error::{Error, Result};

/// Directory buckets double when they average more entries than this. At
/// ~21 KiB a bucket fills its run of 4 KiB pages to ~90% and a small write
/// rewrites little; measured on 100k x 128 (bench/run.sh): 64 entries gave
/// 1.19x raw bytes on disk, 256 gave 1.16x, 1024 gives 1.15x.
const ENTRIES_PER_BUCKET: u64 = 1024;
/// A write retries this often when another writer commits first.
/// Compare-and-set attempts of one write before it reports a conflict; each
/// lost race waits a random, growing pause so competing writers spread out.
const COMMIT_ATTEMPTS: u32 = 10;

/// Everything one write will store, ready to commit.
#[derive(Default)]
pub(super) struct Plan {
    pub manifest: Manifest,
    pub batch: crate::store::WriteBatch,
    pub cache_put: Vec<(CacheKey, Cached)>,
    pub cache_drop: Vec<CacheKey>,
}

/// (chunk number, list, and unless it became empty: the chunk, its sealed
/// bytes and its plaintext size).
type RebuiltChunk = (u32, u32, Option<(Arc<Chunk>, Vec<u8>, usize)>);

/// An upsert after validation, with its token.
struct Pending<'a> {
    item: ItemRef<'a>,
    token: Token,
}

impl Index {
    /// Inserts or overwrites whole items, atomically: all or none.
    pub fn upsert(&self, items: &[ItemRef<'_>], access: Access<'_>) -> Result<()> {
        self.authorize(access, Need::Write)?;
        if items.is_empty() {
            return Ok(());
        }
        let dim = items[0].vector.len();
        if dim == 0 || dim > MAX_DIMENSION {
            return Err(Error::invalid(format!("dimension must be 1 to {MAX_DIMENSION}, got {dim}")));
        }
        for (i, it) in items.iter().enumerate() {
            validate_item(i, it, dim)?;
        }
        // A later occurrence of an id in the batch wins, as if upserted in order.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            last.insert(it.id, i);
        }
        let pending: Vec<Pending<'_>> = self.client.pool.install(|| {
            items
                .par_iter()
                .enumerate()
                .filter(|(i, it)| last[it.id] == *i)
                .map(|(_, it)| Pending { item: *it, token: self.id_token(it.id) })
                .collect()
        });
        self.commit(|snap| {
            let m = &snap.manifest;
            if m.config.dimension != 0 && m.config.dimension as usize != dim {
                return Err(Error::DimensionMismatch(format!("vector dim {dim} != index dim {}", m.config.dimension)));
            }
            Ok((Some(self.plan(snap, &pending, &[])?.0), ()))
        })
    }

    /// Deletes the ids that exist; returns how many did.
    pub fn delete(&self, ids: &[&str], access: Access<'_>) -> Result<usize> {
        self.authorize(access, Need::Write)?;
        for id in ids {
            validate_id(id)?;
        }
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        let doomed: Vec<(&str, Token)> = unique.into_iter().map(|id| (id, self.id_token(id))).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        self.commit(|snap| {
            let (plan, deleted) = self.plan(snap, &[], &doomed)?;
            Ok((if deleted == 0 { None } else { Some(plan) }, deleted))
        })
    }

    /// Runs `build` on the newest snapshot and commits its plan; retries when
    /// another writer (another handle or process) committed in between.
    pub(super) fn commit<R>(&self, mut build: impl FnMut(&Snapshot) -> Result<(Option<Plan>, R)>) -> Result<R> {
        let _writer = self.write_lock.lock();
        for attempt in 0..COMMIT_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt)?;
            }
            let snap = self.current()?;
            let (plan, result) = match build(&snap) {
                // Another process committed under us and removed what the
                // snapshot names: plan again on the newer state.
                Err(Error::Integrity(msg)) => {
                    if self.current()?.manifest.version == snap.manifest.version {
                        return Err(Error::Integrity(msg));
                    }
                    continue;
                }
                other => other?,
            };
            let Some(mut plan) = plan else { return Ok(result) };
            let stored = self.seal_manifest(&mut plan.manifest)?;
            plan.batch.put(manifest_key(&self.index_id), stored.clone());
            plan.batch.put(version_hint_key(&self.index_id), plan.manifest.version.to_le_bytes().to_vec());
            plan.batch.expect = Some((manifest_key(&self.index_id), Some(snap.stored.clone())));
            if self.client.store.write(std::mem::take(&mut plan.batch))? {
                for k in &plan.cache_drop {
                    self.client.cache.remove(k);
                }
                for (k, v) in plan.cache_put {
                    self.client.cache.insert(k, v);
                }
                *self.snapshot.write() = Arc::new(Snapshot::new(plan.manifest, stored));
                return Ok(result);
            }
        }
        Err(Error::Storage(format!(
            "conflict: other writers kept changing the index; gave up after {COMMIT_ATTEMPTS} attempts, nothing was written"
        )))
    }

    fn seal_manifest(&self, m: &mut Manifest) -> Result<Vec<u8>> {
        m.encryptions += 1;
        m.seal(&self.keys.sealer(m.key_version))
    }

    /// Builds the plan for a set of upserts and deletes; returns it with the
    /// number of deleted ids that existed.
    fn plan(&self, snap: &Snapshot, upserts: &[Pending<'_>], deletes: &[(&str, Token)]) -> Result<(Plan, usize)> {
        let mut m = snap.manifest.clone();
        let version = m.version + 1;
        m.version = version;
        if m.encryptions >= MAX_ENCRYPTIONS_PER_KEY {
            m.key_version += 1;
            m.encryptions = 0;
        }
        if let Some(first) = upserts.first() {
            m.config.dimension = first.item.vector.len() as u32;
        }
        let sealer = self.keys.sealer(m.key_version);
        let mut batch = crate::store::WriteBatch::default();
        let mut cache_put = Vec::new();
        let mut cache_drop = Vec::new();

        // 1. The directory buckets this write touches (all of them when the
        //    directory grows).
        let mut buckets = self.touched_buckets(&mut m, &snap.manifest, upserts, deletes)?;

        // 2. Removals: deleted ids and the old rows of overwritten ids.
        let mut removals: HashMap<u32, HashSet<&str>> = HashMap::new();
        let mut deleted = 0usize;
        let mut count = m.num_vectors;
        for (id, token) in deletes {
            let b = bucket_of(token, m.buckets.len());
            if let Some(old) = buckets.get_mut(&b).expect("touched").remove(token) {
                removals.entry(old.chunk).or_default().insert(id);
                if old.contents_version != 0 {
                    batch.delete(object_key(&self.index_id, ObjectKind::Contents, token));
                }
                deleted += 1;
                count -= 1;
            }
        }
        for p in upserts {
            let b = bucket_of(&p.token, m.buckets.len());
            if let Some(old) = buckets[&b].find(&p.token).copied() {
                removals.entry(old.chunk).or_default().insert(p.item.id);
                if old.contents_version != 0 && p.item.contents.is_none() {
                    batch.delete(object_key(&self.index_id, ObjectKind::Contents, &p.token));
                }
                count -= 1;
            }
            count += 1;
        }

        // 3. Where each upsert goes: the open tail chunk of its list while it
        //    fits under the chunk budget, else a new chunk.
        let dim = m.config.dimension as usize;
        let mut tails: HashMap<u32, (u32, usize)> = HashMap::new();
        for c in &m.chunks {
            tails.insert(c.list, (c.no, c.bytes as usize)); // chunks are sorted, so the last one wins
        }
        // Untrained: one list (0). Trained: the nearest centroid's list.
        let centroids = match m.training {
            super::TrainingState::Trained => Some(self.load_centroids(&snap.manifest)?),
            _ => None,
        };
        let lists: Vec<u32> = match &centroids {
            None => vec![0; upserts.len()],
            Some(c) => {
                let vectors: Vec<&[f32]> = upserts.iter().map(|p| p.item.vector).collect();
                c.assign(&self.client.pool, m.config.metric, &vectors)
            }
        };
        let mut appends: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut list_of_new: HashMap<u32, u32> = HashMap::new();
        let mut assigned = Vec::with_capacity(upserts.len());
        for (i, (p, &list)) in upserts.iter().zip(&lists).enumerate() {
            let size = item_encoded_len(dim, m.config.precision, p.item.id.len(), p.item.metadata.map(str::len));
            let tail = tails.get_mut(&list).filter(|(_, bytes)| *bytes + size <= CHUNK_TARGET_BYTES);
            let no = match tail {
                Some((no, bytes)) => {
                    *bytes += size;
                    *no
                }
                None => {
                    let no = m.next_chunk;
                    m.next_chunk =
                        m.next_chunk.checked_add(1).ok_or_else(|| Error::invalid("chunk numbers exhausted"))?;
                    tails.insert(list, (no, 9 + size));
                    list_of_new.insert(no, list);
                    no
                }
            };
            appends.entry(no).or_default().push(i);
            assigned.push(no);
        }

        // 4. Rebuild and seal every affected chunk, in parallel.
        let affected: BTreeSet<u32> = removals.keys().chain(appends.keys()).copied().collect();
        let old_metas: HashMap<u32, ChunkMeta> = m.chunks.iter().map(|c| (c.no, *c)).collect();
        let rebuilt: Vec<RebuiltChunk> = self.client.pool.install(|| {
            affected
                .par_iter()
                .map(|&no| {
                    let base =
                        old_metas.get(&no).map(|meta| self.load_chunk(&snap.manifest, meta, None)).transpose()?;
                    let list = old_metas.get(&no).map_or_else(|| list_of_new[&no], |c| c.list);
                    let chunk = rebuild_chunk(dim, base.as_deref(), removals.get(&no), appends.get(&no), upserts)?;
                    if chunk.is_empty() {
                        return Ok((no, list, None));
                    }
                    let plain = chunk.encode(m.config.precision);
                    let sealed = sealer.seal(ObjectKind::Chunk, &self.chunk_token(no), version, &plain)?;
                    Ok((no, list, Some((Arc::new(chunk), sealed, plain.len()))))
                })
                .collect::<Result<_>>()
        })?;
        m.chunks.retain(|c| !affected.contains(&c.no));
        for (no, list, built) in rebuilt {
            let key = object_key(&self.index_id, ObjectKind::Chunk, &self.chunk_token(no));
            if let Some(old) = old_metas.get(&no) {
                cache_drop.push(self.cache_key(ObjectKind::Chunk, no, old.version));
            }
            match built {
                None => batch.delete(key),
                Some((chunk, sealed, bytes)) => {
                    m.chunks.push(ChunkMeta { no, list, count: chunk.len() as u32, bytes: bytes as u32, version });
                    batch.put(key, sealed);
                    cache_put.push((self.cache_key(ObjectKind::Chunk, no, version), Cached::Chunk(chunk)));
                }
            }
        }
        m.chunks.sort_unstable_by_key(|c| (c.list, c.no));

        // 5. Directory entries and contents of the upserts.
        for (p, &no) in upserts.iter().zip(&assigned) {
            let contents_version = match p.item.contents {
                Some(bytes) => {
                    let sealed = sealer.seal(ObjectKind::Contents, &p.token, version, bytes)?;
                    batch.put(object_key(&self.index_id, ObjectKind::Contents, &p.token), sealed);
                    version
                }
                None => 0,
            };
            let b = bucket_of(&p.token, m.buckets.len());
            buckets.get_mut(&b).expect("touched").upsert(Entry { token: p.token, chunk: no, contents_version });
        }

        // 6. Seal the touched buckets; an empty bucket is stored as nothing.
        for (b, bucket) in buckets {
            let key = object_key(&self.index_id, ObjectKind::Bucket, &self.bucket_token(b));
            if let Some(&old) = snap.manifest.buckets.get(b).filter(|v| **v != 0) {
                cache_drop.push(self.cache_key(ObjectKind::Bucket, b as u32, old));
            }
            if bucket.entries.is_empty() {
                m.buckets[b] = 0;
                batch.delete(key);
            } else {
                m.buckets[b] = version;
                batch.put(key, sealer.seal(ObjectKind::Bucket, &self.bucket_token(b), version, &bucket.encode())?);
                cache_put
                    .push((self.cache_key(ObjectKind::Bucket, b as u32, version), Cached::Bucket(Arc::new(bucket))));
            }
        }

        m.num_vectors = count;
        m.encryptions += sealer.encryptions();
        Ok((Plan { manifest: m, batch, cache_put, cache_drop }, deleted))
    }

    /// Loads (as owned copies) the buckets the tokens fall in. When the index
    /// outgrows its directory, doubles the bucket count in `m` and returns
    /// every bucket, redistributed.
    fn touched_buckets(
        &self,
        m: &mut Manifest,
        old: &Manifest,
        upserts: &[Pending<'_>],
        deletes: &[(&str, Token)],
    ) -> Result<HashMap<usize, Bucket>> {
        let wanted = (m.num_vectors + upserts.len() as u64).div_ceil(ENTRIES_PER_BUCKET).next_power_of_two() as usize;
        if wanted > m.buckets.len() {
            let mut all: HashMap<usize, Bucket> = (0..wanted).map(|b| (b, Bucket::default())).collect();
            for b in 0..old.buckets.len() {
                for e in &self.load_bucket(old, b)?.entries {
                    all.get_mut(&bucket_of(&e.token, wanted)).expect("in range").upsert(*e);
                }
            }
            m.buckets = vec![0; wanted];
            return Ok(all);
        }
        let tokens = upserts.iter().map(|p| &p.token).chain(deletes.iter().map(|(_, t)| t));
        let needed: BTreeSet<usize> = tokens.map(|t| bucket_of(t, m.buckets.len())).collect();
        let loaded: Vec<(usize, Bucket)> = self.client.pool.install(|| {
            needed.par_iter().map(|&b| Ok((b, (*self.load_bucket(old, b)?).clone()))).collect::<Result<_>>()
        })?;
        Ok(loaded.into_iter().collect())
    }
}

fn validate_item(i: usize, it: &ItemRef<'_>, dim: usize) -> Result<()> {
    validate_id(it.id).map_err(|e| Error::invalid(format!("item {i}: {e}")))?;
    if it.vector.len() != dim {
        return Err(Error::DimensionMismatch(format!("item {i}: vector dim {} != batch dim {dim}", it.vector.len())));
    }
    check_finite(it.vector, &format!("item {i}: vector"))?;
    if let Some(md) = it.metadata {
        if md.len() > MAX_METADATA_BYTES {
            return Err(Error::invalid(format!(
                "item {i}: metadata is {} bytes, the limit is {MAX_METADATA_BYTES}",
                md.len()
            )));
        }
        match serde_json::from_str::<serde_json::Value>(md) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(Error::InvalidJson(format!("item {i}: metadata must be a JSON object"))),
            Err(e) => return Err(Error::InvalidJson(format!("item {i}: metadata is not valid JSON: {e}"))),
        }
    }
    if let Some(c) = it.contents {
        if c.len() > MAX_CONTENTS_BYTES {
            return Err(Error::invalid(format!(
                "item {i}: contents are {} bytes, the limit is {MAX_CONTENTS_BYTES}",
                c.len()
            )));
        }
    }
    Ok(())
}

/// A chunk's rows minus `removed` ids, plus the `appended` upserts.
fn rebuild_chunk(
    dim: usize,
    base: Option<&Chunk>,
    removed: Option<&HashSet<&str>>,
    appended: Option<&Vec<usize>>,
    upserts: &[Pending<'_>],
) -> Result<Chunk> {
    let capacity = base.map_or(0, Chunk::len) + appended.map_or(0, Vec::len);
    let mut vectors = Vec::with_capacity(capacity * dim);
    let mut ids = Vec::with_capacity(capacity);
    let mut metadata = Vec::with_capacity(capacity);
    let mut dropped = 0;
    if let Some(base) = base {
        for s in 0..base.len() {
            if removed.is_some_and(|r| r.contains(base.ids[s].as_str())) {
                dropped += 1;
                continue;
            }
            vectors.extend_from_slice(base.vector(s));
            ids.push(base.ids[s].clone());
            metadata.push(base.metadata[s].clone());
        }
    }
    if dropped != removed.map_or(0, HashSet::len) {
        return Err(Error::integrity("the directory names items their chunk does not hold"));
    }
    for &i in appended.into_iter().flatten() {
        let it = &upserts[i].item;
        vectors.extend_from_slice(it.vector);
        ids.push(it.id.to_owned());
        metadata.push(it.metadata.map(str::to_owned));
    }
    Ok(Chunk::new(dim, vectors, ids, metadata))
}

/// Sleeps a random time below 2^attempt ms (at most ~0.5 s).
fn backoff(attempt: u32) -> Result<()> {
    let mut r = [0u8; 4];
    crate::crypto::random_bytes(&mut r)?;
    let cap_us = 1000u64 << attempt.min(9);
    std::thread::sleep(std::time::Duration::from_micros(u64::from(u32::from_le_bytes(r)) % cap_us));
    Ok(())
}
