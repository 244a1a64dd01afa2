//! Writes: upsert and delete. Each builds a plan (see `commit.rs`) from
//! the newest snapshot: the ids' current entries looked up, new items
//! packed into new chunks (with the rows of small chunks due for repacking),
//! every chunk that loses rows rebuilt, contents sealed, the write's
//! directory entries recorded (`directory.rs`), and commits it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::access::Need;
use super::chunk::{item_encoded_len, Chunk, ChunkBuilder, Entry, CHUNK_TARGET_BYTES};
use super::codes::{packer_for, packing_for, stored_units, Coder, KnownCode, StoredCodes};
use super::commit::{Plan, SealedChunk};
use super::manifest::{ChunkMeta, Manifest, Stamp};
use super::objects::{Obj, ObjectKind, Prefetched};
use super::snapshot::Snapshot;
use super::types::{validate_id, validate_item, MAX_DIMENSION};
use super::{Access, Index, ItemRef, TrainingState};
use crate::crypto::Token;
use crate::error::{Error, Result};
use crate::parallel::{self, MIN_PARALLEL_CHEAP, MIN_PARALLEL_OBJECTS};
use crate::store::WriteBatch;

/// Keys deleted per store batch when collecting garbage.
const GARBAGE_PER_BATCH: usize = 4096;

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
        let winners: Vec<&ItemRef<'_>> =
            items.iter().enumerate().filter(|(i, it)| last[it.id] == *i).map(|p| p.1).collect();
        let pending: Vec<Pending<'_>> = parallel::map(&self.env.pool, winners, MIN_PARALLEL_CHEAP, |it| Pending {
            item: *it,
            token: self.tokens.id(it.id),
        });
        self.commit(|snap| {
            let m = &snap.manifest;
            if m.config.dimension != 0 && m.config.dimension as usize != dim {
                return Err(Error::DimensionMismatch(format!("vector dim {dim} != index dim {}", m.config.dimension)));
            }
            Ok((Some(self.plan_writes(snap, &pending, &[])?.0), ()))
        })
    }

    /// Deletes the ids that exist; returns how many did.
    pub fn delete(&self, ids: &[&str], access: Access<'_>) -> Result<usize> {
        self.authorize(access, Need::Write)?;
        for id in ids {
            validate_id(id)?;
        }
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        let doomed: Vec<(&str, Token)> = unique.into_iter().map(|id| (id, self.tokens.id(id))).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        self.commit(|snap| {
            let (plan, deleted) = self.plan_writes(snap, &[], &doomed)?;
            Ok((if deleted == 0 { None } else { Some(plan) }, deleted))
        })
    }

    /// Gives the store's free space back to the system: on `file:`, the
    /// pages that deletes, overwrites and training left behind (the file
    /// never shrinks by itself); a no-op on `memory:` and PostgreSQL. Waits
    /// for this client's reads and writes in flight; WRITE permission.
    pub fn compact(&self, access: Access<'_>) -> Result<()> {
        self.authorize(access, Need::Write)?;
        self.collect_garbage()?;
        self.env.store.compact()
    }

    /// Deletes the chunks and buckets no committed state names: those a
    /// training run wrote ahead of its commit and never committed (it
    /// crashed, failed or lost a race; every other object is written in the
    /// batch that names it). Only objects at or below the current version
    /// go: a newer one may be a training run's still under way, and no later
    /// state can name an object the current one does not (a write names
    /// only what its snapshot names or what it seals). Returns how many.
    pub(super) fn collect_garbage(&self) -> Result<usize> {
        let _writer = self.write_lock.lock();
        let doomed = self.garbage()?;
        for keys in doomed.chunks(GARBAGE_PER_BATCH) {
            let mut batch = WriteBatch::default();
            keys.iter().for_each(|k| batch.delete(k.clone()));
            self.env.store.write(batch)?;
        }
        Ok(doomed.len())
    }

    /// The keys [`Index::collect_garbage`] deletes.
    fn garbage(&self) -> Result<Vec<Vec<u8>>> {
        let snap = self.reload()?;
        let m = &snap.manifest;
        let buckets = (0..m.n_buckets as usize).map(|b| (b, m.bucket(b))).filter(|(_, s)| !s.is_none());
        let units = m.chunks().filter(|_| m.coded()).flat_map(|c| stored_units(m, c));
        let live: HashSet<Vec<u8>> = m
            .chunks()
            .map(|c| self.store_key(Obj::Chunk(c.no), &c.stamp))
            .chain(units.map(|(obj, stamp)| self.store_key(obj, &stamp)))
            .chain(buckets.map(|(b, s)| self.store_key(Obj::Bucket(b as u32), &s)))
            .chain(m.directory_runs().flat_map(|run| {
                let stored = run.stripes.iter().enumerate().filter(|(_, s)| !s.is_none());
                stored.map(|(s, stamp)| self.store_key(Obj::RunStripe(run.no, s as u32), stamp))
            }))
            .collect();
        let mut doomed = Vec::new();
        let kinds =
            [ObjectKind::Chunk, ObjectKind::ChunkUnit, ObjectKind::UnitPack, ObjectKind::Bucket, ObjectKind::RunStripe];
        for kind in kinds {
            for key in self.env.store.scan_keys(&self.layout.kind_prefix(kind))? {
                if self.layout.version_of(&key).is_some_and(|v| v <= m.version) && !live.contains(&key) {
                    doomed.push(key);
                }
            }
        }
        Ok(doomed)
    }

    /// How many stored objects [`Index::compact`] would collect now (tests
    /// of what failed and killed training runs leave behind).
    #[cfg(feature = "test-hooks")]
    pub fn garbage_count(&self) -> Result<usize> {
        Ok(self.garbage()?.len())
    }

    /// Builds the plan for a set of upserts and deletes; returns it with the
    /// number of deleted ids that existed.
    fn plan_writes(
        &self,
        snap: &Snapshot,
        upserts: &[Pending<'_>],
        deletes: &[(&str, Token)],
    ) -> Result<(Plan<'_>, usize)> {
        let old = &snap.manifest;
        let mut plan = self.plan(old);
        plan.coder = self.coder(old)?.map(|(_, coder)| coder);
        if let Some(first) = upserts.first() {
            plan.manifest.config.dimension = first.item.vector.len() as u32;
        }

        // 1. Each id's entry, if it exists: deleted ids and the old rows of
        //    overwritten ids leave their chunks (and the contents an
        //    overwrite replaces or drops go).
        let tokens: Vec<&Token> = deletes.iter().map(|(_, t)| t).chain(upserts.iter().map(|p| &p.token)).collect();
        let found = self.lookup_all(old, &tokens)?;
        let (found_deleted, found_upserted) = found.split_at(deletes.len());
        let mut removals: HashMap<u32, HashSet<&str>> = HashMap::new();
        let mut changes: Vec<Entry> = Vec::with_capacity(tokens.len());
        let mut count = old.num_vectors;
        for ((id, token), was) in deletes.iter().zip(found_deleted) {
            if let Some(was) = was {
                removals.entry(was.chunk).or_default().insert(id);
                if !was.contents.is_none() {
                    plan.remove(Obj::Contents(*token), &was.contents);
                }
                changes.push(Entry::tombstone(*token));
                count -= 1;
            }
        }
        let deleted = changes.len();
        let mut old_contents: Vec<Option<Stamp>> = Vec::with_capacity(upserts.len());
        for (p, was) in upserts.iter().zip(found_upserted) {
            let mut replaced_contents = None;
            if let Some(was) = was {
                removals.entry(was.chunk).or_default().insert(p.item.id);
                if !was.contents.is_none() {
                    if p.item.contents.is_none() {
                        plan.remove(Obj::Contents(p.token), &was.contents);
                    } else {
                        replaced_contents = Some(was.contents);
                    }
                }
                count -= 1;
            }
            old_contents.push(replaced_contents);
            count += 1;
        }

        // 3. Where each upsert goes: untrained, list 0; trained, the nearest
        //    centroid's list; within the list, into new chunks: a write
        //    appends by adding chunks, never by rewriting one (a list's tail
        //    chunk, up to 64 KiB, was rewritten for every few items added).
        //    So that small chunks do not pile up, a write repacks with its
        //    items the list's newest chunks under half full while each is at
        //    most twice what it repacks so far (a binary counter per list:
        //    O(log) small chunks per list, each row rewritten O(log) times);
        //    that moves those rows' directory entries, into the write's run.
        let m = &mut plan.manifest;
        let (dim, precision) = (m.config.dimension as usize, m.config.precision);
        let lists: Vec<u32> = match m.training {
            TrainingState::Trained => {
                let vectors: Vec<&[f32]> = upserts.iter().map(|p| p.item.vector).collect();
                self.centroids(old)?.assign(&self.env.pool, m.config.metric, &vectors)
            }
            _ => vec![0; upserts.len()],
        };
        let sizes: Vec<usize> = upserts
            .iter()
            .map(|p| item_encoded_len(dim, precision, p.item.id.len(), p.item.metadata.map(str::len)))
            .collect();
        let mut added: BTreeMap<u32, usize> = BTreeMap::new();
        for (&list, &size) in lists.iter().zip(&sizes) {
            *added.entry(list).or_default() += size;
        }
        let repack: Vec<ChunkMeta> = added.iter().flat_map(|(&list, &bytes)| small_tail(old, list, bytes)).collect();
        let coder = plan.coder.clone();
        // The chunks the write rewrites (repacked, or shrunk by its deletes
        // and overwrites) come in one call where reads are round trips;
        // coded, with their stored codes, which their kept rows keep
        // instead of being encoded again (a row is repacked O(log) times).
        let repacked: HashSet<u32> = repack.iter().map(|r| r.no).collect();
        let shrinking = removals.keys().filter(|no| !repacked.contains(no)).filter_map(|&no| old.chunk(no));
        let pre = self.prefetch_rewrites(old, coder.as_deref(), repack.iter().chain(shrinking))?;
        let sources: Vec<Source> = parallel::try_map(&self.env.pool, &repack, MIN_PARALLEL_OBJECTS, |meta| {
            self.rewrite_source(old, coder.as_deref(), meta, &pre)
        })?;
        let mut packer = packer_for(coder.as_deref());
        let mut new_chunks: BTreeMap<u32, (u32, Vec<Row>)> = BTreeMap::new();
        let mut place = |list: u32, size: usize, metadata_len: Option<usize>, row: Row| -> Result<u32> {
            let (no, _) = packer.place(list, packing_for(coder.as_deref(), size, metadata_len), &mut m.next_chunk)?;
            new_chunks.entry(no).or_insert_with(|| (list, Vec::new())).1.push(row);
            Ok(no)
        };
        let mut moved: Vec<(&str, u32)> = Vec::new();
        for (k, (meta, chunk)) in repack.iter().zip(&sources).enumerate() {
            let (chunk, gone) = (&chunk.rows, removals.remove(&meta.no).unwrap_or_default());
            let kept: Vec<usize> = (0..chunk.len()).filter(|&s| !gone.contains(chunk.ids[s].as_str())).collect();
            if kept.len() + gone.len() != chunk.len() {
                return Err(Error::integrity("the directory names items their chunk does not hold"));
            }
            for s in kept {
                let metadata_len = chunk.metadata[s].as_ref().map(String::len);
                let size = item_encoded_len(dim, precision, chunk.ids[s].len(), metadata_len);
                moved.push((chunk.ids[s].as_str(), place(meta.list, size, metadata_len, Row::Kept(k, s))?));
            }
        }
        let mut assigned = Vec::with_capacity(upserts.len());
        for (i, (&list, &size)) in lists.iter().zip(&sizes).enumerate() {
            assigned.push(place(list, size, upserts[i].item.metadata.map(str::len), Row::Upsert(i))?);
        }

        // 4. The moved rows' directory entries (same contents, new chunk).
        let pool = &self.env.pool;
        let moved_tokens: Vec<Token> = parallel::map(pool, &moved, MIN_PARALLEL_CHEAP, |(id, _)| self.tokens.id(id));
        let refs: Vec<&Token> = moved_tokens.iter().collect();
        for ((token, (_, no)), was) in moved_tokens.iter().zip(&moved).zip(self.lookup_all(old, &refs)?) {
            let was = was.ok_or_else(|| Error::integrity("a chunk holds an item the directory does not name"))?;
            changes.push(Entry { token: *token, chunk: *no, contents: was.contents });
        }

        // 5. The upserts' contents, and the directory entries of the write.
        for ((p, &no), &old_contents) in upserts.iter().zip(&assigned).zip(&old_contents) {
            let contents = match p.item.contents {
                Some(bytes) => plan.put_contents(&p.token, bytes, old_contents)?,
                None => Stamp::default(),
            };
            changes.push(Entry { token: p.token, chunk: no, contents });
        }
        parallel::sort_unstable_by(pool, &mut changes, |a, b| a.token.cmp(&b.token));
        plan.manifest.num_vectors = count;

        // 6. Seal, in parallel, the new chunks and every chunk that loses
        //    rows (an emptied one is removed), while the plan takes the
        //    write's directory (which needs only where each row goes): a
        //    batch's directory work is largely one thread's, so the two
        //    together keep both of a small machine's cores busy.
        let sealing = plan.chunk_sealing();
        let worth = new_chunks.len() + removals.len() >= MIN_PARALLEL_OBJECTS;
        let seal_chunks = || -> Result<_> {
            let built: Vec<SealedChunk> =
                parallel::try_map(pool, new_chunks, MIN_PARALLEL_OBJECTS, |(no, (list, rows))| {
                    let known: Vec<KnownCode<'_>> = rows.iter().map(|row| row.known(&sources)).collect();
                    sealing.seal_chunk((no, list), build_chunk(dim, &rows, &sources, upserts), &known, precision)
                })?;
            let shrunk: Vec<(u32, Option<SealedChunk>)> =
                parallel::try_map(pool, &removals, MIN_PARALLEL_OBJECTS, |(&no, gone)| {
                    let meta = old.chunk(no).ok_or_else(|| Error::integrity("the directory names a missing chunk"))?;
                    let base = self.rewrite_source(old, coder.as_deref(), meta, &pre)?;
                    let (chunk, kept) = without(dim, &base.rows, gone)?;
                    let known: Vec<KnownCode<'_>> =
                        kept.iter().map(|&s| base.codes.as_deref().map(|c| (c, s))).collect();
                    let sealed =
                        (!chunk.is_empty()).then(|| sealing.seal_chunk((no, meta.list), chunk, &known, precision));
                    Ok((no, sealed.transpose()?))
                })?;
            Ok((built, shrunk))
        };
        let (sealed, directory) =
            parallel::join(pool, worth, seal_chunks, || self.write_directory(&mut plan, old, changes));
        let (built, shrunk) = sealed?;
        directory?;
        drop(pre);
        for meta in &repack {
            plan.remove_chunk(meta);
        }
        for (no, sealed) in shrunk {
            match sealed {
                None => plan.remove_chunk(old.chunk(no).expect("an emptied chunk existed")),
                Some(s) => plan.put_chunk(s),
            }
        }
        built.into_iter().for_each(|s| plan.put_chunk(s));
        Ok((plan, deleted))
    }
}

/// A chunk under this many encoded bytes may be repacked by a write.
const SMALL_CHUNK_BYTES: usize = CHUNK_TARGET_BYTES / 2;

/// The chunks a write that adds `bytes` to `list` repacks: the list's
/// newest chunks under half full, newest first, while each is at most twice
/// the bytes gathered so far. New chunks are numbered upwards, so a list's
/// newest chunks are its last.
fn small_tail(m: &Manifest, list: u32, bytes: usize) -> Vec<ChunkMeta> {
    let mut gathered = bytes;
    let newest = m.list(list).iter().rev().map_while(|&no| m.chunk(no));
    newest
        .take_while(|c| {
            let take = (c.bytes as usize) < SMALL_CHUNK_BYTES && c.bytes as usize <= 2 * gathered;
            gathered += c.bytes as usize;
            take
        })
        .copied()
        .collect()
}

/// A chunk a write reseals or repacks: its rows and, if the index is
/// coded, its head's stored codes.
struct Source {
    rows: Arc<Chunk>,
    codes: Option<Arc<StoredCodes>>,
}

impl Index {
    /// Chunk `meta` as a write that repacks or reseals it needs it (its
    /// head read once, as stored: `StoredCodes::decode` checks its row
    /// count against the manifest's, so every slot of `rows` has a code).
    /// `pre`: what `prefetch_rewrites` read ahead.
    fn rewrite_source(
        &self,
        m: &Manifest,
        coder: Option<&Coder>,
        meta: &ChunkMeta,
        pre: &Prefetched,
    ) -> Result<Source> {
        Ok(match coder {
            None => Source { rows: self.chunk(m, meta, Some(pre))?, codes: None },
            Some(coder) => {
                let codes = self.stored_codes(m, coder, meta, Some(pre))?;
                Source { rows: Arc::new(self.chunk_to_rewrite(m, meta, &codes, Some(pre))?), codes: Some(codes) }
            }
        })
    }
}

/// Where a row of a chunk a write builds comes from: one of its upserts,
/// or slot `.1` of the repacked chunk `.0`.
#[derive(Clone, Copy)]
enum Row {
    Upsert(usize),
    Kept(usize, usize),
}

impl Row {
    /// Where the row's code can be copied from (a kept row of a coded chunk).
    fn known<'a>(&self, sources: &'a [Source]) -> KnownCode<'a> {
        match *self {
            Row::Upsert(_) => None,
            Row::Kept(k, s) => sources[k].codes.as_deref().map(|c| (c, s)),
        }
    }
}

fn build_chunk(dim: usize, rows: &[Row], sources: &[Source], upserts: &[Pending<'_>]) -> Chunk {
    let mut b = ChunkBuilder::with_capacity(dim, rows.len());
    for row in rows {
        match *row {
            Row::Upsert(i) => {
                let it = &upserts[i].item;
                b.push(it.vector, it.id.to_owned(), it.metadata.map(str::to_owned));
            }
            Row::Kept(k, s) => b.push_row(&sources[k].rows, s),
        }
    }
    b.finish()
}

/// A chunk's rows minus the `removed` ids, all of which it must hold, and
/// the slots in `base` of the rows kept.
fn without(dim: usize, base: &Chunk, removed: &HashSet<&str>) -> Result<(Chunk, Vec<usize>)> {
    let kept: Vec<usize> = (0..base.len()).filter(|&s| !removed.contains(base.ids[s].as_str())).collect();
    if kept.len() + removed.len() != base.len() {
        return Err(Error::integrity("the directory names items their chunk does not hold"));
    }
    let mut rows = ChunkBuilder::with_capacity(dim, kept.len());
    kept.iter().for_each(|&s| rows.push_row(base, s));
    Ok((rows.finish(), kept))
}
