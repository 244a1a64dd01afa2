//! The records that describe an index.
//!
//! * The **key record** (`n/<name>`, readable without a key; see
//!   `keyring.rs`): the index id and the wrapped data keys. Index names are
//!   the one thing the store sees in clear (so `list_indexes` works without keys).
//! * The **manifest root** (sealed, signed by the writer key, the target of
//!   every write's compare-and-set): configuration, counts, key-version
//!   bookkeeping, the key-record generation it was committed under, the
//!   [`Stamp`] of the centroids, the stamp of every stripe of the
//!   directory's runs and of the fold under way (`directory.rs`), and the
//!   stamp of every **page** of the two tables that name the rest: chunk
//!   metadata by chunk number and directory bucket stamps by bucket number.
//!   A page is a sealed object like any other, so a write re-seals only the
//!   pages it touches plus the root.
//! * Those lists of stamps (the tables' page stamps, each run's stripe
//!   stamps) grow with the index, so the root holds a list of more than
//!   [`INLINE_STAMPS`] through sealed **list pages** of [`LIST_PAGE`] stamps
//!   ([`StampList`]): a write re-seals the list pages whose stamps changed,
//!   and the root grows by 44 bytes per 128 pages or stripes instead of per
//!   page or stripe: ~1 KB at 10M items, ~6 KB at 100M, ~40 KB at 1B, where
//!   it was 52 KB at 10M and 520 KB at 100M (see docs/SCALING.md).
//!
//! Every object is authenticated against the stamp (version and digest of
//! its sealed bytes) its parent names, root to page to chunk or bucket to
//! contents, so an old object replayed, one dropped, swapped, or spliced in
//! from another branch of the history (same version, other bytes) is
//! detected, and the root's digest names the whole state.

use std::collections::{BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::objects::{Layout, Obj, ObjectKind, Tokens};
use super::types::{IndexConfig, IndexType, Precision, TrainingState, MAX_FILTERABLE_FIELDS};
use crate::codec::{Reader, Writer};
use crate::crypto::{digest, verify, DataKeys, Digest, PublicKey, Sealer, Signer, Token, DIGEST_LEN, SIGNATURE_LEN};
use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::rabitq::Padding;
use crate::store::Store;
use crate::text::Bm25;

const MANIFEST_TOKEN: Token = [0u8; 16];
/// Layout version of the root's plaintext (12: 0.13, long stamp lists in
/// list pages).
const MANIFEST_FORMAT: u8 = 12;
/// 0.12's root: format 12 with every stamp list in the root (read, never
/// written; from its next commit on the long ones go to list pages).
const MANIFEST_FORMAT_0_12: u8 = 11;
/// 0.11's root: format 11 less the packed units' version (read, never
/// written: each of its units was an object of its own).
const MANIFEST_FORMAT_0_11: u8 = 10;
/// 0.9's and 0.10's root: format 10 less the fold (read, never written:
/// their folds finished within a write).
const MANIFEST_FORMAT_0_9: u8 = 9;
/// 0.8's root: format 9 less the padding (read, never written; its codes
/// were padded to powers of two).
const MANIFEST_FORMAT_0_8: u8 = 8;
/// 0.7's root: format 8 less the text fields and BM25 (read, never written).
const MANIFEST_FORMAT_0_7: u8 = 7;
/// 0.6's root: format 7 less the filterable fields (read, never written).
const MANIFEST_FORMAT_0_6: u8 = 6;
/// 0.5's root: format 6 less the quantizer fields (read, never written).
const MANIFEST_FORMAT_0_5: u8 = 5;
/// Most stripes one run may have (a sanity bound on a decrypted root).
const MAX_RUN_STRIPES: usize = 1 << 20;

/// Chunk metadata per page (~33 KiB of plaintext).
pub const CHUNK_PAGE: usize = 512;
/// Bucket stamps per page (~42 KiB of plaintext).
pub const BUCKET_PAGE: usize = 1024;
/// Stamps per list page (~5.6 KiB of plaintext): what a write that changes
/// one stamp of a long list re-seals.
pub const LIST_PAGE: usize = 128;
/// A stamp list this long or shorter is written into the root itself
/// (~700 bytes at most): small indexes, and the small runs most writes
/// add, store no list pages.
pub const INLINE_STAMPS: usize = 16;
/// The high bit of a stamp list's length in the root: the list is in
/// list pages, whose stamps follow.
const PAGED_LIST: u32 = 1 << 31;

/// What pins one stored object: the version it was sealed at (part of its
/// associated data and of its store key) and the digest of its sealed
/// bytes. Version 0 = none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub version: u64,
    pub digest: Digest,
}

impl Stamp {
    pub fn of(version: u64, sealed: &[u8]) -> Stamp {
        Stamp { version, digest: digest(sealed) }
    }

    pub fn is_none(&self) -> bool {
        self.version == 0
    }

    pub fn write(&self, w: &mut Writer) {
        w.u64(self.version);
        w.raw(&self.digest);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Stamp> {
        Ok(Stamp { version: r.u64()?, digest: r.raw(DIGEST_LEN)?.try_into().unwrap() })
    }
}

/// One chunk as the manifest names it; `stamp.version == 0` = no chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkMeta {
    pub no: u32,
    pub list: u32,
    pub count: u32,
    /// Encoded plaintext size, to decide whether appends still fit.
    pub bytes: u32,
    pub stamp: Stamp,
}

/// One run of the directory's newest level (see `directory.rs`): the
/// entries of one or more writes, sorted, striped so a lookup decrypts one
/// stripe. A stripe with no entries is not stored (none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMeta {
    /// Numbers every run of the index's history once (from `next_run`).
    pub no: u32,
    /// Entries (tombstones included) across its stripes.
    pub entries: u32,
    pub stripes: StampList,
    pub striping: Striping,
}

/// How a run's entries are split into its stripes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Striping {
    /// By the token's bits 32..64 among a power of two of stripes, so
    /// stripes and buckets (bits 0..32) split tokens independently: the
    /// runs writes add and merge.
    Token,
    /// By the token's bucket among `n_buckets`, `per_stripe` buckets a
    /// stripe in [`fold_order`]: the run a fold folds into the buckets a
    /// range at a time.
    Buckets { n_buckets: u32, per_stripe: u32 },
}

impl Striping {
    /// The stripe `token` is in among `stripes`.
    pub fn stripe_of(&self, token: &Token, stripes: usize) -> usize {
        match *self {
            Striping::Token => token_stripe(token, stripes),
            Striping::Buckets { n_buckets, per_stripe } => {
                let n = n_buckets as usize;
                fold_order(bucket_of(token, n), n) / per_stripe as usize
            }
        }
    }
}

impl RunMeta {
    /// The stripe `token` is in.
    pub fn stripe_of(&self, token: &Token) -> usize {
        self.striping.stripe_of(token, self.stripes.len())
    }

    fn write(&self, w: &mut Writer) {
        w.u32(self.no);
        w.u32(self.entries);
        if let Striping::Buckets { n_buckets, per_stripe } = self.striping {
            w.u32(n_buckets);
            w.u32(per_stripe);
        }
        self.stripes.write(w);
    }

    /// A run as [`RunMeta::write`] wrote it; `n_buckets` bounds a
    /// bucket-striped run's (`None`: a token-striped run). A paged list of
    /// stripes (`paged`: the root's format has them) is loaded later.
    fn read(r: &mut Reader<'_>, n_buckets: Option<u32>, paged: bool) -> Result<RunMeta> {
        let invalid = || Error::integrity("manifest names an invalid directory run");
        let (no, entries) = (r.u32()?, r.u32()?);
        let striping = match n_buckets {
            None => Striping::Token,
            Some(max) => {
                let (n_buckets, per_stripe) = (r.u32()?, r.u32()?);
                if n_buckets == 0 || n_buckets > max || per_stripe == 0 {
                    return Err(invalid());
                }
                Striping::Buckets { n_buckets, per_stripe }
            }
        };
        let stripes = StampList::read(r, MAX_RUN_STRIPES, paged)?;
        let n = stripes.len();
        let expected = match striping {
            Striping::Token => n.is_power_of_two(),
            Striping::Buckets { n_buckets, per_stripe } => n == n_buckets.div_ceil(per_stripe) as usize,
        };
        if !expected || entries == 0 {
            return Err(invalid());
        }
        Ok(RunMeta { no, entries, stripes, striping })
    }
}

/// A fold under way (see `directory.rs`): the runs as they were when it
/// began, merged into one run striped by bucket among the buckets then,
/// and how far it has come: the entries of that run's buckets before
/// `cursor` in [`fold_order`] are in the buckets, its stripes wholly
/// before it removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    pub run: RunMeta,
    pub cursor: u32,
}

impl Fold {
    /// The bucket count the fold's run is striped by, and buckets a stripe.
    pub fn striping(&self) -> (usize, usize) {
        match self.run.striping {
            Striping::Buckets { n_buckets, per_stripe } => (n_buckets as usize, per_stripe as usize),
            Striping::Token => unreachable!("a fold's run is striped by bucket (checked when read)"),
        }
    }

    /// Buckets (among [`Fold::striping`]'s) still to fold.
    pub fn remaining(&self) -> usize {
        self.striping().0 - self.cursor as usize
    }

    fn write(&self, w: &mut Writer) {
        self.run.write(w);
        w.u32(self.cursor);
    }

    fn read(r: &mut Reader<'_>, n_buckets: u32, paged: bool) -> Result<Fold> {
        let run = RunMeta::read(r, Some(n_buckets), paged)?;
        Ok(Fold { run, cursor: r.u32()? })
    }

    /// Unfinished (a finished fold is no fold), and no stripe it has passed
    /// still named (checked once its stripes are loaded).
    fn check(&self) -> Result<()> {
        let (n, per) = self.striping();
        let passed = self.cursor as usize / per;
        if self.cursor as usize >= n || self.run.stripes[..passed].iter().any(|s| !s.is_none()) {
            return Err(Error::integrity("manifest names an invalid directory fold"));
        }
        Ok(())
    }
}

/// Which [`StampList`] of the root a list page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StampListId {
    /// The page stamps of the chunk table.
    ChunkPages,
    /// The page stamps of the bucket table.
    BucketPages,
    /// The stripe stamps of directory run `.0` (the fold's included).
    Run(u32),
}

impl StampListId {
    pub fn describe(self) -> String {
        match self {
            StampListId::ChunkPages => "the chunk table's page list".into(),
            StampListId::BucketPages => "the directory's page list".into(),
            StampListId::Run(no) => format!("the stripe list of directory run {no}"),
        }
    }
}

/// A list of stamps the root names: written into the root while it has at
/// most [`INLINE_STAMPS`], otherwise stored in list pages of [`LIST_PAGE`]
/// stamps whose own stamps the root holds. Held whole in memory (it derefs
/// to its stamps); which list pages a commit re-seals is found by comparing
/// each page's stamps with the state it replaces
/// ([`Manifest::take_changed_lists`]), so code that changes a list needs no
/// bookkeeping of its own.
#[derive(Clone, Debug, Default)]
pub struct StampList {
    stamps: Vec<Stamp>,
    /// Where the stamps are stored: page `p` holds stamps `p * LIST_PAGE..`
    /// (none: a page of none stamps, not stored). Empty while the list is
    /// written into the root.
    pages: Vec<Stamp>,
    /// Whether `pages` store `stamps` as they are: set when read or planned
    /// ([`StampList::plan_pages`]), cleared by any change of the stamps, so
    /// a root naming stale list pages is never sealed.
    current: bool,
}

impl PartialEq for StampList {
    fn eq(&self, other: &StampList) -> bool {
        (&self.stamps, &self.pages) == (&other.stamps, &other.pages)
    }
}

impl Eq for StampList {}

impl From<Vec<Stamp>> for StampList {
    fn from(stamps: Vec<Stamp>) -> StampList {
        StampList { stamps, pages: Vec::new(), current: false }
    }
}

impl Deref for StampList {
    type Target = Vec<Stamp>;
    fn deref(&self) -> &Vec<Stamp> {
        &self.stamps
    }
}

impl DerefMut for StampList {
    fn deref_mut(&mut self) -> &mut Vec<Stamp> {
        self.current = false;
        &mut self.stamps
    }
}

impl StampList {
    /// The stamps of list page `p`.
    fn page(&self, p: usize) -> &[Stamp] {
        &self.stamps[p * LIST_PAGE..((p + 1) * LIST_PAGE).min(self.stamps.len())]
    }

    /// Whether a commit stores this list in list pages.
    fn paged(&self) -> bool {
        self.stamps.len() > INLINE_STAMPS
    }

    /// Whether the root can name this list as it is: written into it, or
    /// stored in list pages planned since its last change.
    fn ready(&self) -> bool {
        !self.paged() || (self.current && self.pages.len() == self.stamps.len().div_ceil(LIST_PAGE))
    }

    fn write(&self, w: &mut Writer) {
        if self.paged() {
            w.u32(self.stamps.len() as u32 | PAGED_LIST);
            write_sparse(w, &self.pages);
        } else {
            w.u32(self.stamps.len() as u32);
            write_sparse(w, &self.stamps);
        }
    }

    /// A list as [`StampList::write`] wrote it, of at most `limit` stamps;
    /// a paged one (only where the root's format has them: `paged`) has its
    /// page stamps and none stamps until [`Manifest::with_pages`] loads them.
    fn read(r: &mut Reader<'_>, limit: usize, paged: bool) -> Result<StampList> {
        let n = r.u32()?;
        let len = (n & !PAGED_LIST) as usize;
        if len > limit {
            return Err(Error::integrity("manifest has an invalid list length"));
        }
        match (n & PAGED_LIST != 0, paged) {
            (false, _) => return Ok(StampList { stamps: read_sparse(r, len, 0)?, pages: Vec::new(), current: true }),
            (true, false) => return Err(Error::integrity("manifest has an invalid list length")),
            (true, true) => {}
        }
        if len <= INLINE_STAMPS {
            return Err(Error::integrity("manifest names list pages of a short list"));
        }
        let pages = read_sparse(r, len.div_ceil(LIST_PAGE), 0)?;
        Ok(StampList { stamps: vec![Stamp::default(); len], pages, current: true })
    }

    /// Sets which list pages store this list at the next commit: the pages
    /// of `old` (the same list in the state the commit replaces) whose
    /// stamps are unchanged are kept; returns the pages to seal (each with
    /// its plaintext; [`Manifest::page_sealed`] records its stamp) and
    /// pushes `old`'s other pages to `gone`.
    fn plan_pages(
        &mut self,
        list: StampListId,
        old: Option<&StampList>,
        gone: &mut Vec<(Obj, Stamp)>,
    ) -> Vec<(Obj, Vec<u8>)> {
        let n_pages = if self.paged() { self.stamps.len().div_ceil(LIST_PAGE) } else { 0 };
        let mut pages = vec![Stamp::default(); n_pages];
        let mut changed = Vec::new();
        for (p, kept) in pages.iter_mut().enumerate() {
            let stamps = self.page(p);
            if stamps.iter().all(Stamp::is_none) {
                continue;
            }
            match old.filter(|old| old.pages.get(p).is_some_and(|s| !s.is_none()) && old.page(p) == stamps) {
                Some(old) => *kept = old.pages[p],
                None => {
                    let mut w = Writer::with_capacity(4 + stamps.len() * 44);
                    write_sparse(&mut w, stamps);
                    changed.push((Obj::ListPage(list, p as u32), w.buf));
                }
            }
        }
        for (p, stamp) in old.iter().flat_map(|old| old.pages.iter().enumerate()) {
            if !stamp.is_none() && pages.get(p) != Some(stamp) {
                gone.push((Obj::ListPage(list, p as u32), *stamp));
            }
        }
        self.pages = pages;
        self.current = true;
        changed
    }
}

/// What [`Manifest::take_changed_lists`] found a commit must do.
#[derive(Default)]
pub struct ListChanges {
    /// The list pages to seal, each with its plaintext.
    pub changed: Vec<(Obj, Vec<u8>)>,
    /// The list pages of the replaced state no longer named, to delete.
    pub gone: Vec<(Obj, Stamp)>,
}

/// An entry of a [`Paged`] table; one whose stamp is none is absent.
pub trait PageEntry: Copy + Default + Send + Sync {
    fn stamp(&self) -> &Stamp;
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>, slot: usize) -> Result<Self>;
}

impl PageEntry for ChunkMeta {
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
    fn write(&self, w: &mut Writer) {
        w.u32(self.list);
        w.u32(self.count);
        w.u32(self.bytes);
        self.stamp.write(w);
    }
    fn read(r: &mut Reader<'_>, no: usize) -> Result<Self> {
        Ok(ChunkMeta { no: no as u32, list: r.u32()?, count: r.u32()?, bytes: r.u32()?, stamp: Stamp::read(r)? })
    }
}

impl PageEntry for Stamp {
    fn stamp(&self) -> &Stamp {
        self
    }
    fn write(&self, w: &mut Writer) {
        Stamp::write(self, w)
    }
    fn read(r: &mut Reader<'_>, _: usize) -> Result<Self> {
        Stamp::read(r)
    }
}

/// A table numbered from 0 (chunk metadata by chunk number, bucket stamps by
/// bucket number), held in pages of `PAGE` entries. Snapshots share pages:
/// a write copies only the pages it changes and re-seals only those.
#[derive(Clone, Debug)]
pub struct Paged<T, const PAGE: usize> {
    pages: Vec<Arc<Vec<T>>>,
    /// The stored page each of `pages` was read from or sealed as (none: empty).
    stamps: StampList,
    /// Pages changed since they were sealed.
    dirty: BTreeSet<usize>,
}

impl<T, const PAGE: usize> Default for Paged<T, PAGE> {
    fn default() -> Self {
        Paged { pages: Vec::new(), stamps: StampList::default(), dirty: BTreeSet::new() }
    }
}

impl<T: PageEntry, const PAGE: usize> Paged<T, PAGE> {
    pub fn get(&self, i: usize) -> Option<&T> {
        self.pages.get(i / PAGE).map(|p| &p[i % PAGE]).filter(|e| !e.stamp().is_none())
    }

    /// Sets entry `i` (a none stamp removes it).
    pub fn set(&mut self, i: usize, entry: T) {
        let p = i / PAGE;
        while self.pages.len() <= p {
            self.pages.push(Arc::new(vec![T::default(); PAGE]));
            self.stamps.push(Stamp::default());
        }
        Arc::make_mut(&mut self.pages[p])[i % PAGE] = entry;
        self.dirty.insert(p);
    }

    /// The present entries with their numbers, in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.pages
            .iter()
            .enumerate()
            .flat_map(|(p, page)| page.iter().enumerate().map(move |(s, e)| (p * PAGE + s, e)))
            .filter(|(_, e)| !e.stamp().is_none())
    }

    /// The changed pages, each with its old stamp and its plaintext (`None`
    /// when the page is now empty); marks them clean.
    pub fn take_dirty(&mut self) -> Vec<(usize, Stamp, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty.into_iter().map(|p| (p, self.stamps[p], encode_page(&self.pages[p]))).collect()
    }

    /// Records where page `p` is now stored.
    pub fn sealed_as(&mut self, p: usize, stamp: Stamp) {
        self.stamps[p] = stamp;
    }

    fn write_stamps(&self, w: &mut Writer) {
        debug_assert!(self.dirty.is_empty(), "every changed page is sealed before the root");
        self.stamps.write(w);
    }

    /// The page stamps of a root (see [`StampList::read`]); the pages are
    /// loaded by [`Manifest::with_pages`].
    fn read_stamps(r: &mut Reader<'_>, limit: usize, paged: bool) -> Result<Paged<T, PAGE>> {
        let stamps = StampList::read(r, limit, paged)?;
        let empty = Arc::new(vec![T::default(); PAGE]);
        Ok(Paged { pages: vec![empty; stamps.len()], stamps, dirty: BTreeSet::new() })
    }
}

/// The present entries of `entries` (a page, or a list of stamps):
/// their count, then each after its slot.
fn write_sparse<T: PageEntry>(w: &mut Writer, entries: &[T]) {
    let present: Vec<(usize, &T)> = entries.iter().enumerate().filter(|(_, e)| !e.stamp().is_none()).collect();
    w.u32(present.len() as u32);
    for (slot, e) in present {
        w.u32(slot as u32);
        e.write(w);
    }
}

/// What [`write_sparse`] wrote, as `len` entries (the absent ones default);
/// entry `slot` is number `first + slot`. Slots must ascend and name
/// present entries.
fn read_sparse<T: PageEntry>(r: &mut Reader<'_>, len: usize, first: usize) -> Result<Vec<T>> {
    let mut entries = vec![T::default(); len];
    let n = r.u32()? as usize;
    if n > len {
        return Err(Error::integrity("manifest has an invalid entry count"));
    }
    let mut last = None;
    for _ in 0..n {
        let slot = r.u32()? as usize;
        if slot >= len || last.is_some_and(|l| l >= slot) {
            return Err(Error::integrity("manifest has an invalid slot"));
        }
        last = Some(slot);
        let e = T::read(r, first + slot)?;
        if e.stamp().is_none() {
            return Err(Error::integrity("manifest names an empty entry"));
        }
        entries[slot] = e;
    }
    Ok(entries)
}

/// A page's plaintext (`None` if it has no entry).
fn encode_page<T: PageEntry>(page: &[T]) -> Option<Vec<u8>> {
    if page.iter().all(|e| e.stamp().is_none()) {
        return None;
    }
    let mut w = Writer::with_capacity(4 + page.len() * 8);
    write_sparse(&mut w, page);
    Some(w.buf)
}

fn decode_page<T: PageEntry>(bytes: &[u8], first: usize, page_len: usize) -> Result<Vec<T>> {
    let mut r = Reader::new(bytes, "manifest page");
    let page = read_sparse(&mut r, page_len, first)?;
    r.finish()?;
    if page.iter().all(|e: &T| e.stamp().is_none()) {
        return Err(Error::integrity("manifest page is empty"));
    }
    Ok(page)
}

/// The sealed description of an index's whole state at one version: the
/// root's fields and the two paged tables it pins.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub version: u64,
    pub name: String,
    pub config: IndexConfig,
    pub num_vectors: u64,
    pub next_chunk: u32,
    /// AEAD key version in use and how many encryptions it has done.
    pub key_version: u32,
    pub encryptions: u64,
    pub training: TrainingState,
    pub n_lists: u32,
    /// The probe count calibrated at training (0 = untrained).
    pub auto_n_probes: u32,
    /// The probe counts calibrated at training for filters matching 1 in
    /// `FILTER_MODULI[j]` items (0 = not calibrated: untrained, or trained
    /// before 0.8). See `read.rs`'s `probes_for`.
    pub filtered_n_probes: [u32; 3],
    pub centroids: Stamp,
    /// IVF_RABITQ: the seed of the codes' random rotation, drawn at each
    /// training (0 = untrained).
    pub quantizer_seed: u64,
    /// IVF_RABITQ: how that rotation pads the dimension (set at each
    /// training; indexes trained before 0.9 pad to powers of two).
    pub quantizer_padding: Padding,
    /// The key record's generation when this state was committed: a key
    /// record older than that (restored from a backup) is refused.
    pub key_generation: u32,
    /// Directory buckets in use (see [`bucket_of`]).
    pub n_buckets: u32,
    /// Chunk metadata by chunk number.
    chunks: Paged<ChunkMeta, CHUNK_PAGE>,
    /// Each directory bucket's stamp; none = empty (no object stored).
    buckets: Paged<Stamp, BUCKET_PAGE>,
    /// The directory's newest entries, oldest run first (see `directory.rs`).
    pub runs: Vec<RunMeta>,
    /// The runs being folded into the buckets, older than all of `runs`.
    pub folding: Option<Fold>,
    pub next_run: u32,
    /// Coded chunks sealed at this version or later store their units back
    /// to back in one pack (`codes.rs`); older ones (0.11 and before) each
    /// unit under a key of its own.
    pub units_packed_since: u64,
    /// The chunk numbers of each list, ascending (derived from `chunks`).
    lists: Vec<Arc<Vec<u32>>>,
}

pub const INITIAL_BUCKETS: u32 = 64;

/// Where an index's objects are and the keys that open them: what opening a
/// stored manifest (root and pages) needs.
pub struct Opener<'a> {
    pub store: &'a dyn Store,
    pub keys: &'a DataKeys,
    pub tokens: &'a Tokens,
    pub layout: Layout,
    pub name: &'a str,
}

impl Manifest {
    /// Whether chunks are stored coded (heads and units, `codes.rs`): a
    /// trained IVF_RABITQ index. Otherwise whole (IVF_FLAT, or untrained).
    pub fn coded(&self) -> bool {
        self.config.index_type == IndexType::IvfRabitq && self.training == TrainingState::Trained
    }

    /// Whether chunk `meta`'s units are in one pack (see `units_packed_since`).
    pub fn units_packed(&self, meta: &ChunkMeta) -> bool {
        meta.stamp.version >= self.units_packed_since
    }

    pub fn new(name: &str, config: IndexConfig) -> Manifest {
        Manifest {
            version: 0,
            name: name.to_owned(),
            config,
            num_vectors: 0,
            next_chunk: 0,
            key_version: 0,
            encryptions: 0,
            training: TrainingState::Untrained,
            n_lists: 0,
            auto_n_probes: 0,
            filtered_n_probes: [0; 3],
            quantizer_seed: 0,
            quantizer_padding: Padding::default(),
            centroids: Stamp::default(),
            key_generation: 0,
            n_buckets: INITIAL_BUCKETS,
            chunks: Paged::default(),
            buckets: Paged::default(),
            runs: Vec::new(),
            folding: None,
            next_run: 0,
            units_packed_since: 0,
            lists: Vec::new(),
        }
    }

    /// The directory's runs, oldest first: the one being folded, then the
    /// ones writes added (a lookup reads them newest first).
    pub fn directory_runs(&self) -> impl DoubleEndedIterator<Item = &RunMeta> + '_ {
        self.folding.iter().map(|f| &f.run).chain(&self.runs)
    }

    pub fn chunk(&self, no: u32) -> Option<&ChunkMeta> {
        self.chunks.get(no as usize)
    }

    /// Every chunk, by number.
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkMeta> + '_ {
        self.chunks.iter().map(|(_, c)| c)
    }

    /// The chunk numbers of `list`, ascending (the last is its tail).
    pub fn list(&self, list: u32) -> &[u32] {
        self.lists.get(list as usize).map_or(&[], |l| &l[..])
    }

    /// Adds or replaces chunk `meta.no` (a chunk never changes list).
    pub fn set_chunk(&mut self, meta: ChunkMeta) {
        debug_assert!(!meta.stamp.is_none());
        match self.chunk(meta.no) {
            Some(old) => debug_assert_eq!(old.list, meta.list),
            None => {
                let list = meta.list as usize;
                if self.lists.len() <= list {
                    self.lists.resize_with(list + 1, Default::default);
                }
                let nos = Arc::make_mut(&mut self.lists[list]);
                let at = nos.partition_point(|&n| n < meta.no);
                nos.insert(at, meta.no);
            }
        }
        self.chunks.set(meta.no as usize, meta);
    }

    pub fn remove_chunk(&mut self, no: u32) {
        if let Some(old) = self.chunk(no).copied() {
            let nos = Arc::make_mut(&mut self.lists[old.list as usize]);
            if let Ok(at) = nos.binary_search(&no) {
                nos.remove(at);
            }
            self.chunks.set(no as usize, ChunkMeta::default());
        }
    }

    /// Directory bucket `b`'s stamp (none: empty).
    pub fn bucket(&self, b: usize) -> Stamp {
        self.buckets.get(b).copied().unwrap_or_default()
    }

    pub fn set_bucket(&mut self, b: usize, stamp: Stamp) {
        self.buckets.set(b, stamp);
    }

    pub fn bucket_of(&self, token: &Token) -> usize {
        bucket_of(token, self.n_buckets as usize)
    }

    /// The pages changed since the last commit: `(object, old stamp,
    /// plaintext or None if now empty)`; afterwards [`Manifest::page_sealed`]
    /// records each one's new stamp.
    pub fn take_dirty_pages(&mut self) -> Vec<(Obj, Stamp, Option<Vec<u8>>)> {
        let chunks = self.chunks.take_dirty().into_iter().map(|(p, s, b)| (Obj::ChunkPage(p as u32), s, b));
        let buckets = self.buckets.take_dirty().into_iter().map(|(p, s, b)| (Obj::BucketPage(p as u32), s, b));
        chunks.chain(buckets).collect()
    }

    pub fn page_sealed(&mut self, page: Obj, stamp: Stamp) {
        match page {
            Obj::ChunkPage(p) => self.chunks.sealed_as(p as usize, stamp),
            Obj::BucketPage(p) => self.buckets.sealed_as(p as usize, stamp),
            Obj::ListPage(list, p) => {
                self.stamp_list_mut(list).expect("a list of this manifest").pages[p as usize] = stamp;
            }
            _ => unreachable!("not a page"),
        }
    }

    /// After the table pages are sealed ([`Manifest::take_dirty_pages`]):
    /// the list pages this manifest must seal, each with its plaintext
    /// (then [`Manifest::page_sealed`]), and the list pages of `base` (the
    /// state it replaces) that it no longer names, to delete. Pages whose
    /// stamps did not change since `base` are kept.
    pub fn take_changed_lists(&mut self, base: &Manifest) -> ListChanges {
        let mut old: HashMap<StampListId, &StampList> = base.stamp_lists().collect();
        let mut changes = ListChanges::default();
        for (list, stamps) in self.stamp_lists_mut() {
            let changed = stamps.plan_pages(list, old.remove(&list), &mut changes.gone);
            changes.changed.extend(changed);
        }
        for (list, stamps) in old {
            for (p, stamp) in stamps.pages.iter().enumerate().filter(|(_, s)| !s.is_none()) {
                changes.gone.push((Obj::ListPage(list, p as u32), *stamp));
            }
        }
        changes
    }

    /// Every stamp list the root names.
    fn stamp_lists(&self) -> impl Iterator<Item = (StampListId, &StampList)> + '_ {
        let tables = [(StampListId::ChunkPages, &self.chunks.stamps), (StampListId::BucketPages, &self.buckets.stamps)];
        tables.into_iter().chain(self.directory_runs().map(|run| (StampListId::Run(run.no), &run.stripes)))
    }

    fn stamp_lists_mut(&mut self) -> Vec<(StampListId, &mut StampList)> {
        let mut lists = vec![
            (StampListId::ChunkPages, &mut self.chunks.stamps),
            (StampListId::BucketPages, &mut self.buckets.stamps),
        ];
        let runs = self.folding.iter_mut().map(|f| &mut f.run).chain(self.runs.iter_mut());
        lists.extend(runs.map(|run| (StampListId::Run(run.no), &mut run.stripes)));
        lists
    }

    fn stamp_list_mut(&mut self, list: StampListId) -> Option<&mut StampList> {
        self.stamp_lists_mut().into_iter().find(|(l, _)| *l == list).map(|(_, stamps)| stamps)
    }

    fn encode_root(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4096);
        w.u8(MANIFEST_FORMAT);
        w.bytes(self.name.as_bytes());
        w.u32(self.config.dimension);
        w.u8(self.config.metric as u8);
        w.u8(self.config.index_type as u8);
        w.u8(self.config.precision as u8);
        w.u8(self.config.quantizer_bits as u8);
        w.u64(self.quantizer_seed);
        w.u64(self.num_vectors);
        w.u32(self.next_chunk);
        w.u32(self.key_version);
        w.u64(self.encryptions);
        w.u8(self.training as u8);
        w.u32(self.n_lists);
        w.u32(self.auto_n_probes);
        self.centroids.write(&mut w);
        w.u32(self.key_generation);
        w.u32(self.n_buckets);
        self.chunks.write_stamps(&mut w);
        self.buckets.write_stamps(&mut w);
        w.u32(self.next_run);
        w.u32(self.runs.len() as u32);
        self.runs.iter().for_each(|run| run.write(&mut w));
        w.u32(self.config.filterable.len() as u32);
        self.config.filterable.iter().for_each(|f| w.bytes(f.as_bytes()));
        w.u32(self.config.text_fields.len() as u32);
        self.config.text_fields.iter().for_each(|f| w.bytes(f.as_bytes()));
        w.u32(self.config.bm25.k1.to_bits());
        w.u32(self.config.bm25.b.to_bits());
        self.filtered_n_probes.iter().for_each(|&p| w.u32(p));
        w.u8(self.quantizer_padding as u8);
        w.u8(self.folding.is_some() as u8);
        self.folding.iter().for_each(|f| f.write(&mut w));
        w.u64(self.units_packed_since);
        w.buf
    }

    /// The root's fields, with the page stamps but not the pages.
    fn decode_root(version: u64, bytes: &[u8]) -> Result<Manifest> {
        let mut r = Reader::new(bytes, "manifest");
        let bad = |what: &str| Error::integrity(format!("manifest has an invalid {what}"));
        let format = r.u8()?;
        let known = [
            MANIFEST_FORMAT,
            MANIFEST_FORMAT_0_12,
            MANIFEST_FORMAT_0_11,
            MANIFEST_FORMAT_0_9,
            MANIFEST_FORMAT_0_8,
            MANIFEST_FORMAT_0_7,
            MANIFEST_FORMAT_0_6,
            MANIFEST_FORMAT_0_5,
        ];
        if !known.contains(&format) {
            return Err(bad("format (written by another version of vx)"));
        }
        let name = r.string()?;
        let dimension = r.u32()?;
        let metric = Metric::from_u32(r.u8()? as u32).map_err(|_| bad("metric"))?;
        let index_type = IndexType::from_u32(r.u8()? as u32).map_err(|_| bad("index type"))?;
        let precision = Precision::from_u32(r.u8()? as u32).map_err(|_| bad("precision"))?;
        let (quantizer_bits, quantizer_seed) = match format {
            MANIFEST_FORMAT_0_5 => (0, 0),
            _ => (r.u8()? as u32, r.u64()?),
        };
        let mut config = IndexConfig { dimension, metric, index_type, precision, quantizer_bits, ..Default::default() };
        let num_vectors = r.u64()?;
        let next_chunk = r.u32()?;
        let key_version = r.u32()?;
        let encryptions = r.u64()?;
        let training = match r.u8()? {
            0 => TrainingState::Untrained,
            1 => TrainingState::Training,
            2 => TrainingState::Trained,
            _ => return Err(bad("training state")),
        };
        let n_lists = r.u32()?;
        let auto_n_probes = r.u32()?;
        if auto_n_probes > n_lists {
            return Err(bad("probe count"));
        }
        let centroids = Stamp::read(&mut r)?;
        let key_generation = r.u32()?;
        let n_buckets = r.u32()?;
        if n_buckets == 0 {
            return Err(bad("bucket count"));
        }
        let paged = format == MANIFEST_FORMAT;
        let chunks = Paged::read_stamps(&mut r, (next_chunk as usize).div_ceil(CHUNK_PAGE), paged)?;
        let buckets = Paged::read_stamps(&mut r, (n_buckets as usize).div_ceil(BUCKET_PAGE), paged)?;
        let next_run = r.u32()?;
        let n_runs = r.u32()?;
        if n_runs > next_run {
            return Err(bad("run count"));
        }
        let runs: Vec<RunMeta> = (0..n_runs).map(|_| RunMeta::read(&mut r, None, paged)).collect::<Result<_>>()?;
        let mut paths = |what: &str| -> Result<Vec<String>> {
            let n = r.u32()? as usize;
            if n > MAX_FILTERABLE_FIELDS {
                return Err(bad(&format!("{what} field count")));
            }
            (0..n).map(|_| r.string()).collect()
        };
        if format >= MANIFEST_FORMAT_0_7 {
            config.filterable = paths("filterable")?;
        }
        let mut filtered_n_probes = [0u32; 3];
        if format >= MANIFEST_FORMAT_0_8 {
            config.text_fields = paths("text")?;
            config.bm25 = Bm25 { k1: f32::from_bits(r.u32()?), b: f32::from_bits(r.u32()?) };
            for p in &mut filtered_n_probes {
                *p = r.u32()?;
                if *p > n_lists {
                    return Err(bad("filtered probe count"));
                }
            }
        }
        let quantizer_padding = match format {
            MANIFEST_FORMAT | MANIFEST_FORMAT_0_12 | MANIFEST_FORMAT_0_11 | MANIFEST_FORMAT_0_9 => {
                Padding::from_u8(r.u8()?).ok_or_else(|| bad("quantizer padding"))?
            }
            _ => Padding::PowerOfTwo,
        };
        let folding = match format {
            MANIFEST_FORMAT | MANIFEST_FORMAT_0_12 | MANIFEST_FORMAT_0_11 => match r.u8()? {
                0 => None,
                1 => Some(Fold::read(&mut r, n_buckets, paged)?),
                _ => return Err(bad("fold")),
            },
            _ => None,
        };
        // An older root's chunks each stored their units apart; every chunk
        // this build seals from the next commit on packs them.
        let units_packed_since = match format {
            MANIFEST_FORMAT | MANIFEST_FORMAT_0_12 => r.u64()?,
            _ => version + 1,
        };
        if units_packed_since > version + 1 {
            return Err(bad("packed units' version"));
        }
        r.finish()?;
        // Numbered in the order they were made (the fold's first), all
        // below `next_run`.
        let nos: Vec<u32> =
            folding.iter().map(|f| f.run.no).chain(runs.iter().map(|run| run.no)).chain([next_run]).collect();
        if nos.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("run order"));
        }
        if config.clone().resolved().ok().as_ref() != Some(&config) {
            return Err(bad("configuration"));
        }
        Ok(Manifest {
            version,
            name,
            config,
            quantizer_seed,
            quantizer_padding,
            num_vectors,
            next_chunk,
            key_version,
            encryptions,
            training,
            n_lists,
            auto_n_probes,
            filtered_n_probes,
            centroids,
            key_generation,
            n_buckets,
            chunks,
            buckets,
            runs,
            folding,
            next_run,
            units_packed_since,
            lists: Vec::new(),
        })
    }

    /// The stored root: version (clear, so it can be authenticated before
    /// decryption) || sealed body || the writer's signature over both: the
    /// data key alone (which READ users hold) cannot make a root others
    /// accept. Every changed page must have been sealed first (a long stamp
    /// list changed since its list pages were planned is `INTERNAL`).
    pub fn seal(&self, sealer: &Sealer<'_>, writer: &Signer, index_id: &[u8; 16]) -> Result<Vec<u8>> {
        if let Some((list, _)) = self.stamp_lists().find(|(_, stamps)| !stamps.ready()) {
            return Err(Error::Internal(format!("{} changed after its list pages were sealed", list.describe())));
        }
        let sealed = sealer.seal(ObjectKind::Manifest as u8, &MANIFEST_TOKEN, self.version, &self.encode_root())?;
        let mut out = Vec::with_capacity(8 + sealed.len() + SIGNATURE_LEN);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&sealed);
        let signature = writer.sign(&signed_message(index_id, &out));
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Opens a stored root signed by `writer` and sealed under a key version
    /// at most `max_key_version` (a writer moves one version at a time), and
    /// the pages it names (see [`Manifest::with_pages`]); the tests' way in
    /// (callers that tell a race from tampering take the two steps apart).
    #[cfg(test)]
    pub fn open(
        at: &Opener<'_>,
        max_key_version: u32,
        stored: &[u8],
        writer: &PublicKey,
        reuse: Option<&Manifest>,
    ) -> Result<Manifest> {
        Manifest::open_root(at, max_key_version, stored, writer)?.with_pages(at, reuse)
    }

    /// The root alone, authenticated as [`Manifest::open`] says; its pages
    /// are not loaded yet.
    pub fn open_root(at: &Opener<'_>, max_key_version: u32, stored: &[u8], writer: &PublicKey) -> Result<Manifest> {
        let name = at.name;
        if stored.len() < 8 + SIGNATURE_LEN {
            return Err(Error::integrity(format!("manifest of index '{name}' is truncated")));
        }
        let (body, signature) = stored.split_at(stored.len() - SIGNATURE_LEN);
        if !verify(writer, &signed_message(&at.layout.index_id, body), signature.try_into().unwrap()) {
            return Err(Error::integrity(format!("manifest of index '{name}' is not signed by its writer key")));
        }
        let version = u64::from_le_bytes(body[..8].try_into().unwrap());
        let plain = at
            .keys
            .open(max_key_version, ObjectKind::Manifest as u8, &MANIFEST_TOKEN, version, &body[8..])
            .ok_or_else(|| Error::integrity(format!("manifest of index '{name}' failed authentication")))?;
        let m = Manifest::decode_root(version, &plain)?;
        if m.name != name {
            return Err(Error::integrity(format!("manifest stored under index '{name}' belongs to another index")));
        }
        Ok(m)
    }

    /// Loads the pages an opened root names: those `reuse` holds at the same
    /// stamps are shared, the others read from the store in one call and
    /// authenticated. A page missing or replaced is `INTEGRITY`; right after
    /// another writer's commit (which deletes the pages it replaced) that is
    /// a race, not tampering: callers read the root again to tell.
    pub fn with_pages(mut self, at: &Opener<'_>, reuse: Option<&Manifest>) -> Result<Manifest> {
        self.load_stamp_lists(at, reuse)?;
        if let Some(fold) = &self.folding {
            fold.check()?;
        }
        self.load_pages(at, reuse)?;
        self.derive_lists()?;
        Ok(self)
    }

    /// Loads the stamps of the lists the root names through list pages:
    /// pages `reuse` has at the same stamps are copied, the others read in
    /// one call and authenticated.
    fn load_stamp_lists(&mut self, at: &Opener<'_>, reuse: Option<&Manifest>) -> Result<()> {
        let reused: HashMap<StampListId, &StampList> = reuse.map(|r| r.stamp_lists().collect()).unwrap_or_default();
        let mut wanted: Vec<(Obj, Stamp)> = Vec::new();
        for (list, stamps) in self.stamp_lists_mut() {
            for p in 0..stamps.pages.len() {
                let stamp = stamps.pages[p];
                if stamp.is_none() {
                    continue;
                }
                // Shared only where the page holds as many stamps in both:
                // the same sealed bytes then decode to the same stamps.
                let same =
                    |old: &&&StampList| old.pages.get(p) == Some(&stamp) && old.page(p).len() == stamps.page(p).len();
                match reused.get(&list).filter(same) {
                    Some(old) => {
                        let range = p * LIST_PAGE..p * LIST_PAGE + old.page(p).len();
                        stamps.stamps[range.clone()].copy_from_slice(&old.stamps[range]);
                    }
                    None => wanted.push((Obj::ListPage(list, p as u32), stamp)),
                }
            }
        }
        for (obj, plain) in fetch_pages(at, self.key_version, wanted)? {
            let Obj::ListPage(list, p) = obj else { unreachable!("only list pages are wanted") };
            let stamps = self.stamp_list_mut(list).expect("a list of this manifest");
            let (first, len) = (p as usize * LIST_PAGE, stamps.page(p as usize).len());
            let page = decode_page::<Stamp>(&plain, first, len)?;
            stamps.stamps[first..first + len].copy_from_slice(&page);
        }
        Ok(())
    }

    fn load_pages(&mut self, at: &Opener<'_>, reuse: Option<&Manifest>) -> Result<()> {
        let mut wanted: Vec<(Obj, Stamp)> = Vec::new();
        for (p, stamp) in self.chunks.stamps.iter().enumerate().filter(|(_, s)| !s.is_none()) {
            match reuse.filter(|r| r.chunks.stamps.get(p) == Some(stamp)) {
                Some(r) => self.chunks.pages[p] = r.chunks.pages[p].clone(),
                None => wanted.push((Obj::ChunkPage(p as u32), *stamp)),
            }
        }
        for (p, stamp) in self.buckets.stamps.iter().enumerate().filter(|(_, s)| !s.is_none()) {
            match reuse.filter(|r| r.buckets.stamps.get(p) == Some(stamp)) {
                Some(r) => self.buckets.pages[p] = r.buckets.pages[p].clone(),
                None => wanted.push((Obj::BucketPage(p as u32), *stamp)),
            }
        }
        for (obj, plain) in fetch_pages(at, self.key_version, wanted)? {
            match obj {
                Obj::ChunkPage(p) => {
                    let p = p as usize;
                    self.chunks.pages[p] = Arc::new(decode_page(&plain, p * CHUNK_PAGE, CHUNK_PAGE)?);
                }
                Obj::BucketPage(p) => {
                    let p = p as usize;
                    self.buckets.pages[p] = Arc::new(decode_page(&plain, p * BUCKET_PAGE, BUCKET_PAGE)?);
                }
                _ => unreachable!("only pages are wanted"),
            }
        }
        Ok(())
    }

    /// Builds each list's chunk numbers; checks every chunk is in a list and
    /// below `next_chunk`, and every bucket below `n_buckets`.
    fn derive_lists(&mut self) -> Result<()> {
        let n_lists = self.n_lists.max(1) as usize;
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n_lists];
        for (no, meta) in self.chunks.iter() {
            if no >= self.next_chunk as usize || meta.list as usize >= n_lists {
                return Err(Error::integrity("manifest names a chunk outside its lists"));
            }
            lists[meta.list as usize].push(no as u32);
        }
        if self.buckets.iter().any(|(b, _)| b >= self.n_buckets as usize) {
            return Err(Error::integrity("manifest names a bucket outside its directory"));
        }
        self.lists = lists.into_iter().map(Arc::new).collect();
        Ok(())
    }
}

/// Reads `wanted` pages (table or list pages) in one call and opens each,
/// authenticated against its stamp; returns their plaintexts.
fn fetch_pages(at: &Opener<'_>, key_version: u32, wanted: Vec<(Obj, Stamp)>) -> Result<Vec<(Obj, Zeroizing<Vec<u8>>)>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<Vec<u8>> =
        wanted.iter().map(|(obj, s)| at.layout.object(obj.kind(), &at.tokens.of(*obj), s)).collect();
    let fetched = at.store.get_many(&keys)?;
    if fetched.len() != wanted.len() {
        return Err(Error::Storage(format!("the store answered {} of {} pages", fetched.len(), wanted.len())));
    }
    wanted
        .into_iter()
        .zip(fetched)
        .map(|((obj, stamp), sealed)| {
            let missing = || Error::Missing(format!("a manifest page of index '{}' is missing", at.name));
            let sealed = sealed.ok_or_else(missing)?;
            if digest(&sealed) != stamp.digest {
                return Err(Error::integrity(format!(
                    "a manifest page of index '{}' is not the one the root names (replaced or from another history)",
                    at.name
                )));
            }
            let plain =
                at.keys.open(key_version, obj.kind() as u8, &at.tokens.of(obj), stamp.version, &sealed).ok_or_else(
                    || Error::integrity(format!("a manifest page of index '{}' failed authentication", at.name)),
                )?;
            Ok((obj, plain))
        })
        .collect()
}

fn signed_message(index_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
    [&b"vx1 manifest"[..], index_id, body].concat()
}

/// The stripe of `token` in a token-striped run of `stripes` stripes (a
/// power of two): the low bits of the token's bits 32..64, so a stripe of
/// a run of fewer stripes holds whole stripes of one of more.
pub fn token_stripe(token: &Token, stripes: usize) -> usize {
    u32::from_le_bytes(token[4..8].try_into().expect("4 bytes")) as usize & (stripes - 1)
}

/// The directory bucket of an id token among `n_buckets`, by linear
/// hashing: with `low <= n_buckets < 2 * low` (`low` a power of two), a token
/// goes to `h mod 2 * low`, or to `h mod low` where that bucket does not exist
/// yet. Adding bucket `n` then moves entries out of bucket `n - low` only, so
/// the directory grows one bucket at a time and no write rehashes it whole.
pub fn bucket_of(token: &Token, n_buckets: usize) -> usize {
    let h = u32::from_le_bytes(token[..4].try_into().unwrap()) as usize;
    let low = 1usize << n_buckets.ilog2();
    let b = h & (2 * low - 1);
    if b < n_buckets {
        b
    } else {
        b - low
    }
}

/// The one bucket whose entries adding bucket `n_buckets` splits.
pub fn split_partner(n_buckets: usize) -> usize {
    n_buckets - (1usize << n_buckets.ilog2())
}

/// Bucket `b`'s place in the order a fold over `n_buckets` reaches them:
/// from the next to split ([`split_partner`]`(n_buckets)`) up, then round,
/// so the fold reaches buckets in the order they split and can split
/// each one it rewrites anyway.
pub fn fold_order(b: usize, n_buckets: usize) -> usize {
    (b + (1usize << n_buckets.ilog2())) % n_buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    /// A fold's order is a permutation of the buckets that starts at the
    /// next to split and reaches the next ones to split in turn, up to the
    /// buckets split last (from the lower half, after the directory doubles).
    #[test]
    fn a_folds_order_follows_the_splits() {
        for n in [1usize, 2, 3, 64, 100, 127, 128, 129, 1000] {
            let mut places: Vec<usize> = (0..n).map(|b| fold_order(b, n)).collect();
            assert_eq!(fold_order(split_partner(n), n), 0, "n = {n}");
            // The splits of a fold's time (an eighth of the buckets; here a half).
            let mut grown = n;
            while grown < n + n / 2 {
                let (p, q) = (split_partner(grown), split_partner(grown + 1));
                if q == p + 1 && q < n {
                    assert_eq!(fold_order(q, n), fold_order(p, n) + 1, "n = {n}, partner {p}");
                }
                grown += 1;
            }
            places.sort_unstable();
            assert_eq!(places, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }

    /// Growing the directory one bucket at a time moves entries only out of
    /// the split partner, into the new bucket, at every size.
    #[test]
    fn linear_hashing_moves_only_the_split_partners_entries() {
        let tokens: Vec<Token> = (0u32..5000)
            .map(|i| {
                let mut t = [0u8; 16];
                t[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
                t
            })
            .collect();
        for n in 1..300usize {
            let partner = split_partner(n);
            assert!(partner < n);
            for t in &tokens {
                let (before, after) = (bucket_of(t, n), bucket_of(t, n + 1));
                assert!(before < n && after <= n);
                if before != after {
                    assert_eq!((before, after), (partner, n), "n = {n}");
                }
            }
            if n.is_power_of_two() {
                assert!(tokens
                    .iter()
                    .all(|t| bucket_of(t, n) == (u32::from_le_bytes(t[..4].try_into().unwrap()) as usize) % n));
            }
        }
    }

    /// The data keys, tokens and an empty store the tests seal into.
    fn fixture() -> (DataKeys, Tokens, crate::store::MemoryStore) {
        let keys = DataKeys::new(vec![(0, SecretKey::from_bytes(&[1; 32]))], [2; 16]);
        let tokens = Tokens::new(&keys);
        (keys, tokens, crate::store::MemoryStore::default())
    }

    /// Seals the changed pages of `m` into `store` as a commit over `base`
    /// does (list pages after the table pages), then the root; returns the
    /// root and the pages sealed.
    fn commit_over(
        base: &Manifest,
        m: &mut Manifest,
        store: &dyn Store,
        keys: &DataKeys,
        tokens: &Tokens,
        writer: &Signer,
    ) -> (Vec<u8>, Vec<Obj>) {
        let layout = Layout { index_id: [2; 16] };
        let mut batch = crate::store::WriteBatch::default();
        let mut sealed_pages = Vec::new();
        let mut seal = |m: &mut Manifest, batch: &mut crate::store::WriteBatch, page: Obj, plain: &[u8]| {
            let sealed = keys.sealer(0).seal(page.kind() as u8, &tokens.of(page), m.version, plain).unwrap();
            let stamp = Stamp::of(m.version, &sealed);
            m.page_sealed(page, stamp);
            batch.put(layout.object(page.kind(), &tokens.of(page), &stamp), sealed);
            sealed_pages.push(page);
        };
        for (page, old, plain) in m.take_dirty_pages() {
            if !old.is_none() {
                batch.delete(layout.object(page.kind(), &tokens.of(page), &old));
            }
            match plain {
                Some(plain) => seal(m, &mut batch, page, &plain),
                None => m.page_sealed(page, Stamp::default()),
            }
        }
        let ListChanges { changed, gone } = m.take_changed_lists(base);
        for (page, old) in gone {
            batch.delete(layout.object(page.kind(), &tokens.of(page), &old));
        }
        for (page, plain) in changed {
            seal(m, &mut batch, page, &plain);
        }
        assert!(store.write(batch).unwrap());
        (m.seal(&keys.sealer(0), writer, &[2; 16]).unwrap(), sealed_pages)
    }

    /// [`commit_over`] the state `m` was cloned from (or an empty one).
    fn commit(m: &mut Manifest, store: &dyn Store, keys: &DataKeys, tokens: &Tokens, writer: &Signer) -> Vec<u8> {
        let base = Manifest::new(&m.name, m.config.clone());
        commit_over(&base, m, store, keys, tokens, writer).0
    }

    /// 0.9 reads 0.8's root (format 8: no padding, so powers of two), 0.7's
    /// (format 7: nor text fields or BM25), 0.6's
    /// (format 6: nor filterable fields) and 0.5's (format 5: nor quantizer
    /// fields, an IVF_FLAT index with quantizer_bits 0), and refuses a
    /// format it does not know.
    #[test]
    fn older_roots_are_read_and_an_unknown_format_refused() {
        let mut m = Manifest::new("old", IndexConfig { dimension: 8, ..Default::default() });
        m.n_buckets = INITIAL_BUCKETS;
        m.quantizer_padding = Padding::Multiple64;
        m.units_packed_since = 2;
        let mut root = m.encode_root();
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!((&read.config, read.quantizer_padding, &read.folding), (&m.config, Padding::Multiple64, &None));
        assert_eq!(read.units_packed_since, 2);
        // A list marked as paged: refused while short, and in 0.12's root,
        // whose lists are all in the root (otherwise the same bytes).
        let chunk_list_at = 1 + (4 + 3) + 4 + 4 + 8 + 8 + 4 + 4 + 8 + 1 + 4 + 4 + (8 + DIGEST_LEN) + 4 + 4;
        assert_eq!(root[chunk_list_at..chunk_list_at + 8], [0u8; 8], "an empty chunk list");
        root[chunk_list_at + 3] = 0x80;
        assert!(Manifest::decode_root(3, &root).unwrap_err().to_string().contains("short list"));
        root[0] = MANIFEST_FORMAT_0_12;
        assert!(Manifest::decode_root(3, &root).unwrap_err().to_string().contains("list length"));
        root[chunk_list_at + 3] = 0;
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!((&read.config, read.units_packed_since), (&m.config, 2));
        root[0] = MANIFEST_FORMAT;
        // A version from which units are packed later than the next commit's.
        assert!(Manifest::decode_root(0, &root).unwrap_err().to_string().contains("packed units"));
        // 0.11: the same less that version; its chunks' units are apart,
        // those sealed from its next commit on packed.
        assert_eq!(root.split_off(root.len() - 8), 2u64.to_le_bytes());
        root[0] = MANIFEST_FORMAT_0_11;
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!(
            (&read.config, read.quantizer_padding, read.units_packed_since),
            (&m.config, Padding::Multiple64, 4)
        );
        // 0.9 and 0.10: the same less the fold's flag (no fold under way).
        assert_eq!(root.pop(), Some(0));
        root[0] = MANIFEST_FORMAT_0_9;
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!((&read.config, read.quantizer_padding, &read.folding), (&m.config, Padding::Multiple64, &None));
        let last = root.len() - 1;
        assert_eq!(root[last], Padding::Multiple64 as u8);
        root[last] = 2;
        assert!(Manifest::decode_root(3, &root).unwrap_err().to_string().contains("quantizer padding"));
        // 0.8: the same less the padding, which is then a power of two.
        root.truncate(root.len() - 1);
        root[0] = MANIFEST_FORMAT_0_8;
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!((&read.config, read.quantizer_padding), (&m.config, Padding::PowerOfTwo));
        // 0.7: the same less the text fields' count, BM25's k1 and b and
        // the filtered probe counts.
        let tail = [0u32, 1.2f32.to_bits(), 0.75f32.to_bits(), 0, 0, 0].map(u32::to_le_bytes).concat();
        assert_eq!(root[root.len() - 24..], tail);
        root.truncate(root.len() - 24);
        root[0] = MANIFEST_FORMAT_0_7;
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!(read.config, m.config);
        // 0.6: the same less the trailing count of filterable fields.
        assert_eq!(root[root.len() - 4..], [0u8; 4]);
        root.truncate(root.len() - 4);
        root[0] = MANIFEST_FORMAT_0_6;
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!((&read.config, read.quantizer_seed), (&m.config, 0));
        // format, name (u32 length + bytes), dimension, metric, type, precision: then bits and seed.
        let quantizer_at = 1 + 4 + 3 + 4 + 3;
        assert_eq!(root[quantizer_at..quantizer_at + 9], [0u8; 9]);
        root.drain(quantizer_at..quantizer_at + 9);
        root[0] = MANIFEST_FORMAT_0_5;
        let read = Manifest::decode_root(3, &root).unwrap();
        assert_eq!((&read.config, read.quantizer_seed), (&m.config, 0));
        root[0] = MANIFEST_FORMAT + 1;
        assert!(Manifest::decode_root(3, &root).unwrap_err().to_string().contains("another version"));
    }

    #[test]
    fn declared_fields_round_trip_and_are_checked() {
        let fields = vec!["tenant".to_string(), "doc.year".to_string()];
        let text = vec!["title".to_string(), "doc.body".to_string()];
        let bm25 = Bm25 { k1: 0.9, b: 0.4 };
        let config = IndexConfig {
            dimension: 8,
            filterable: fields.clone(),
            text_fields: text.clone(),
            bm25,
            ..Default::default()
        };
        let mut m = Manifest::new("f", config.clone());
        m.n_buckets = INITIAL_BUCKETS;
        let root = m.encode_root();
        assert_eq!(Manifest::decode_root(3, &root).unwrap().config, config);
        let mut bad_b = m.clone();
        bad_b.config.bm25.b = 2.0;
        assert!(Manifest::decode_root(3, &bad_b.encode_root()).unwrap_err().to_string().contains("configuration"));
        // A root whose fields would not pass create's checks is refused.
        let mut dup = m;
        dup.config.filterable = vec!["a".into(), "a".into()];
        assert!(Manifest::decode_root(3, &dup.encode_root()).unwrap_err().to_string().contains("configuration"));
    }

    #[test]
    fn manifest_round_trip_and_binding() {
        let (keys, tokens, store) = fixture();
        let at =
            |name| Opener { store: &store, keys: &keys, tokens: &tokens, layout: Layout { index_id: [2; 16] }, name };
        let mut m = Manifest::new("idx", IndexConfig::default());
        m.version = 7;
        m.key_generation = 4;
        m.next_chunk = 2000;
        for no in [3, 1500] {
            m.set_chunk(ChunkMeta { no, list: 0, count: 10, bytes: 100, stamp: Stamp::of(7, b"sealed") });
        }
        m.set_bucket(5, Stamp::of(7, b"bucket"));
        m.next_run = 9;
        m.runs = vec![
            RunMeta {
                no: 2,
                entries: 40,
                stripes: vec![Stamp::of(5, b"s0"), Stamp::default()].into(),
                striping: Striping::Token,
            },
            RunMeta { no: 8, entries: 1, stripes: vec![Stamp::of(7, b"s")].into(), striping: Striping::Token },
        ];
        let writer = Signer::from_seed(&SecretKey::from_bytes(&[9; 32]));
        let stored = commit(&mut m, &store, &keys, &tokens, &writer);
        let open = |stored: &[u8], name| Manifest::open(&at(name), 0, stored, &writer.public(), None);
        let back = open(&stored, "idx").unwrap();
        assert_eq!(back.chunks().copied().collect::<Vec<_>>(), m.chunks().copied().collect::<Vec<_>>());
        assert_eq!(back.list(0), &[3, 1500]);
        assert_eq!(back.bucket(5), m.bucket(5));
        assert!(back.bucket(6).is_none());
        assert_eq!((back.next_run, &back.runs, &back.folding), (9, &m.runs, &m.folding));
        let refused = |bad: &Manifest, why: &str| {
            let sealed = bad.seal(&keys.sealer(0), &writer, &[2; 16]).unwrap();
            assert!(matches!(open(&sealed, "idx"), Err(Error::Integrity(_))), "{why}");
        };
        // Runs out of order, or numbered at or past `next_run`, are refused.
        for (next_run, nos) in [(9, [8, 2]), (8, [2, 8])] {
            let mut bad = m.clone();
            bad.next_run = next_run;
            bad.runs.iter_mut().zip(nos).for_each(|(run, no)| run.no = no);
            refused(&bad, &format!("runs {nos:?} below {next_run}"));
        }
        // A fold under way round-trips; one that is not older than the
        // runs, finished, still naming a stripe it passed, striped by more
        // buckets than there are or with another stripe count is refused.
        let striping = Striping::Buckets { n_buckets: 64, per_stripe: 20 };
        let stripes = vec![Stamp::default(), Stamp::of(6, b"f1"), Stamp::default(), Stamp::of(6, b"f3")];
        let fold = Fold { run: RunMeta { no: 1, entries: 70, stripes: stripes.into(), striping }, cursor: 25 };
        let mut folding = m.clone();
        folding.folding = Some(fold.clone());
        let back = open(&commit(&mut folding, &store, &keys, &tokens, &writer), "idx").unwrap();
        assert_eq!(back.folding.as_ref(), Some(&fold));
        assert_eq!(back.directory_runs().map(|r| r.no).collect::<Vec<_>>(), [1, 2, 8]);
        let mut bad = folding.clone();
        bad.folding.as_mut().unwrap().run.no = 2;
        refused(&bad, "a fold as new as a run");
        for cursor in [64, 40] {
            let mut bad = folding.clone();
            bad.folding.as_mut().unwrap().cursor = cursor;
            refused(&bad, &format!("cursor {cursor}"));
        }
        let mut bad = folding.clone();
        bad.folding.as_mut().unwrap().run.striping = Striping::Buckets { n_buckets: 65, per_stripe: 20 };
        refused(&bad, "more buckets than the directory has");
        let mut bad = folding.clone();
        bad.folding.as_mut().unwrap().run.striping = Striping::Buckets { n_buckets: 64, per_stripe: 30 };
        refused(&bad, "another stripe count");
        assert_eq!(back.key_generation, 4);
        assert_eq!(back.version, 7);
        assert!(matches!(open(&stored, "other"), Err(Error::Integrity(_))));
        // Another writer key (a READ user's forgery) or another index.
        let forger = Signer::from_seed(&SecretKey::from_bytes(&[8; 32]));
        assert!(matches!(open(&m.seal(&keys.sealer(0), &forger, &[2; 16]).unwrap(), "idx"), Err(Error::Integrity(_))));
        assert!(matches!(open(&m.seal(&keys.sealer(0), &writer, &[3; 16]).unwrap(), "idx"), Err(Error::Integrity(_))));
        let mut replay = stored.clone();
        replay[0] = 6; // claim another version
        assert!(matches!(open(&replay, "idx"), Err(Error::Integrity(_))));
        assert!(open(&stored[..5], "idx").is_err());

        // A write touches one page: the next root names a new stamp for it,
        // the reopen shares the other page, and the old root's page is gone.
        let mut next = back.clone();
        next.version = 8;
        next.remove_chunk(3);
        let stored_next = commit(&mut next, &store, &keys, &tokens, &writer);
        let reopened = Manifest::open(&at("idx"), 0, &stored_next, &writer.public(), Some(&back)).unwrap();
        assert_eq!(reopened.list(0), &[1500]);
        assert!(Arc::ptr_eq(&reopened.chunks.pages[2], &back.chunks.pages[2]));
        assert!(matches!(open(&stored, "idx"), Err(Error::Missing(_))), "the replaced page was deleted");
    }

    /// Stamps of run `run`'s `n` stripes, every fifth none.
    fn stripes(run: u32, n: usize, version: u64) -> StampList {
        let stamp = |s: usize| Stamp::of(version, &[&run.to_le_bytes()[..], &s.to_le_bytes()].concat());
        (0..n).map(|s| if s % 5 == 4 { Stamp::default() } else { stamp(s) }).collect::<Vec<_>>().into()
    }

    /// The keys of the list pages in `store`.
    fn list_page_keys(store: &dyn Store) -> usize {
        store.scan_keys(&Layout { index_id: [2; 16] }.kind_prefix(ObjectKind::ListPage)).unwrap().len()
    }

    /// Lists longer than [`INLINE_STAMPS`] (the tables' page stamps past
    /// 8,192 chunks, a large run's stripes) are named through list pages:
    /// the root stays small at any size, a write that changes one chunk
    /// re-seals that chunk's page and one list page, a list that grows past
    /// the bound moves to pages, and a run merged away takes its pages with it.
    #[test]
    fn long_lists_live_in_list_pages_and_writes_reseal_only_what_changed() {
        let (keys, tokens, store) = fixture();
        let at =
            Opener { store: &store, keys: &keys, tokens: &tokens, layout: Layout { index_id: [2; 16] }, name: "idx" };
        let writer = Signer::from_seed(&SecretKey::from_bytes(&[9; 32]));
        let empty = Manifest::new("idx", IndexConfig::default());
        let mut m = empty.clone();
        m.version = 3;
        m.next_chunk = 200_000;
        for no in (0..200_000).step_by(7) {
            m.set_chunk(ChunkMeta { no, list: 0, count: 1, bytes: 10, stamp: Stamp::of(3, &no.to_le_bytes()) });
        }
        m.n_buckets = 40_000;
        for b in (0..40_000usize).step_by(3) {
            m.set_bucket(b, Stamp::of(3, &b.to_le_bytes()));
        }
        m.next_run = 3;
        m.runs = vec![
            RunMeta { no: 1, entries: 9_000, stripes: stripes(1, 1024, 3), striping: Striping::Token },
            RunMeta { no: 2, entries: 5, stripes: stripes(2, 16, 3), striping: Striping::Token },
        ];
        let (root, sealed) = commit_over(&empty, &mut m, &store, &keys, &tokens, &writer);
        // 391 chunk pages, 40 bucket pages, 1,024 stripes: 4 + 1 + 8 list
        // pages; in the root itself these ~1,200 stamps took ~55 KB.
        let lists = |sealed: &[Obj]| sealed.iter().filter(|p| matches!(p, Obj::ListPage(..))).count();
        assert_eq!((lists(&sealed), list_page_keys(&store)), (13, 13));
        assert!(root.len() < 1_500, "a root of {} bytes", root.len());
        let back = Manifest::open(&at, 0, &root, &writer.public(), None).unwrap();
        assert_eq!(back.chunks().copied().collect::<Vec<_>>(), m.chunks().copied().collect::<Vec<_>>());
        assert!((0..40_000).all(|b| back.bucket(b) == m.bucket(b)));
        assert_eq!(back.runs, m.runs);

        // One chunk changes: its table page and one list page are sealed;
        // a reopen reads only those and shares the rest.
        let mut next = back.clone();
        next.version = 4;
        next.set_chunk(ChunkMeta { no: 70_000, list: 0, count: 2, bytes: 20, stamp: Stamp::of(4, b"new") });
        let (root_next, sealed) = commit_over(&back, &mut next, &store, &keys, &tokens, &writer);
        assert_eq!(sealed, [Obj::ChunkPage(70_000 / 512), Obj::ListPage(StampListId::ChunkPages, 70_000 / 512 / 128)]);
        assert_eq!(list_page_keys(&store), 13, "the replaced list page is deleted");
        let reopened = Manifest::open(&at, 0, &root_next, &writer.public(), Some(&back)).unwrap();
        assert_eq!(reopened.chunk(70_000).unwrap().stamp, Stamp::of(4, b"new"));
        assert_eq!(reopened.chunks().count(), m.chunks().count());
        assert!(Arc::ptr_eq(&reopened.chunks.pages[0], &back.chunks.pages[0]));
        assert!(matches!(Manifest::open(&at, 0, &root, &writer.public(), None), Err(Error::Missing(_))));

        // Run 1 merged away, run 2 grown past the bound: run 1's 8 pages go,
        // run 2 gets one.
        let mut third = reopened.clone();
        third.version = 5;
        third.runs.remove(0);
        third.runs[0].stripes = stripes(2, 32, 5);
        let (root_third, sealed) = commit_over(&reopened, &mut third, &store, &keys, &tokens, &writer);
        assert_eq!(sealed, [Obj::ListPage(StampListId::Run(2), 0)]);
        assert_eq!(list_page_keys(&store), 6);
        let back = Manifest::open(&at, 0, &root_third, &writer.public(), None).unwrap();
        assert_eq!(back.runs, third.runs);
        assert_eq!(back.runs[0].stripes[..], stripes(2, 32, 5)[..]);
        // A paged list changed after its pages were planned is never named.
        third.runs[0].stripes[1] = Stamp::of(5, b"late");
        let stale = third.seal(&keys.sealer(0), &writer, &[2; 16]);
        assert!(matches!(&stale, Err(Error::Internal(e)) if e.contains("run 2")), "{stale:?}");
    }

    /// A list page swapped for an older genuine one, for another list's,
    /// for another sealed at its name and version, flipped or deleted is
    /// refused, as is a fold whose paged stripe list still names a stripe it
    /// has passed.
    #[test]
    fn a_tampered_list_page_is_refused() {
        let (keys, tokens, store) = fixture();
        let layout = Layout { index_id: [2; 16] };
        let at = Opener { store: &store, keys: &keys, tokens: &tokens, layout, name: "idx" };
        let writer = Signer::from_seed(&SecretKey::from_bytes(&[9; 32]));
        let mut m = Manifest::new("idx", IndexConfig::default());
        m.version = 3;
        m.next_run = 3;
        m.runs = vec![
            RunMeta { no: 1, entries: 900, stripes: stripes(1, 64, 3), striping: Striping::Token },
            RunMeta { no: 2, entries: 900, stripes: stripes(2, 64, 3), striping: Striping::Token },
        ];
        let base = Manifest::new("idx", IndexConfig::default());
        commit_over(&base, &mut m, &store, &keys, &tokens, &writer);
        let key_of = |m: &Manifest, run: usize| {
            let page = Obj::ListPage(StampListId::Run(m.runs[run].no), 0);
            layout.object(page.kind(), &tokens.of(page), &m.runs[run].stripes.pages[0])
        };
        let older = store.get(&key_of(&m, 0)).unwrap().unwrap();
        let other_list = store.get(&key_of(&m, 1)).unwrap().unwrap();
        let mut next = m.clone();
        next.version = 4;
        next.runs[0].stripes[0] = Stamp::of(4, b"s");
        let (stored, _) = commit_over(&m, &mut next, &store, &keys, &tokens, &writer);
        assert!(Manifest::open(&at, 0, &stored, &writer.public(), None).is_ok());
        let key = key_of(&next, 0);
        let genuine = store.get(&key).unwrap().unwrap();
        let put = |bytes: Option<Vec<u8>>| {
            let mut b = crate::store::WriteBatch::default();
            match bytes {
                Some(bytes) => b.put(key.clone(), bytes),
                None => b.delete(key.clone()),
            }
            assert!(store.write(b).unwrap());
        };
        let page = Obj::ListPage(StampListId::Run(1), 0);
        let mut w = Writer::with_capacity(64);
        write_sparse(&mut w, &[Stamp::of(4, b"forged")]);
        let resealed = keys.sealer(0).seal(page.kind() as u8, &tokens.of(page), 4, &w.buf).unwrap();
        let mut flipped = genuine.clone();
        flipped[30] ^= 1;
        for (why, bytes) in [
            ("an older page", Some(older)),
            ("another list's page", Some(other_list)),
            ("another page sealed at its name and version", Some(resealed)),
            ("a flipped page", Some(flipped)),
            ("no page", None),
        ] {
            // Only a missing page can be a lost race; one that is there is
            // the page or tampering (`Error::Missing`).
            let missing = bytes.is_none();
            put(bytes);
            let opened = Manifest::open(&at, 0, &stored, &writer.public(), None);
            match opened {
                Err(Error::Missing(_)) if missing => {}
                Err(Error::Integrity(_)) if !missing => {}
                _ => panic!("{why}: {opened:?}"),
            }
        }
        put(Some(genuine));
        assert!(Manifest::open(&at, 0, &stored, &writer.public(), None).is_ok());

        // A fold that passed its first stripes, which its paged list still names.
        let striping = Striping::Buckets { n_buckets: 64, per_stripe: 2 };
        let mut run = RunMeta { no: 0, entries: 70, stripes: stripes(0, 32, 5), striping };
        let mut fold = next.clone();
        fold.version = 5;
        run.stripes[..2].fill(Stamp::default());
        fold.folding = Some(Fold { run: run.clone(), cursor: 4 });
        let (stored, _) = commit_over(&next, &mut fold, &store, &keys, &tokens, &writer);
        assert_eq!(Manifest::open(&at, 0, &stored, &writer.public(), None).unwrap().folding, fold.folding);
        let mut bad = fold.clone();
        bad.version = 6;
        bad.folding.as_mut().unwrap().cursor = 6;
        let (stored, _) = commit_over(&fold, &mut bad, &store, &keys, &tokens, &writer);
        let opened = Manifest::open(&at, 0, &stored, &writer.public(), None);
        assert!(matches!(&opened, Err(Error::Integrity(e)) if e.contains("fold")), "{opened:?}");
    }

    /// A page the root names, swapped for an older genuine one or tampered
    /// with, is refused.
    #[test]
    fn a_swapped_or_flipped_page_is_refused() {
        let (keys, tokens, store) = fixture();
        let layout = Layout { index_id: [2; 16] };
        let at = Opener { store: &store, keys: &keys, tokens: &tokens, layout, name: "idx" };
        let writer = Signer::from_seed(&SecretKey::from_bytes(&[9; 32]));
        let mut m = Manifest::new("idx", IndexConfig::default());
        m.version = 3;
        m.set_bucket(1, Stamp::of(3, b"b"));
        let stored = commit(&mut m, &store, &keys, &tokens, &writer);
        let page = Obj::BucketPage(0);
        let key = layout.object(page.kind(), &tokens.of(page), &m.buckets.stamps[0]);
        let genuine = store.get(&key).unwrap().unwrap();
        for i in [0, 20, genuine.len() - 1] {
            let mut flipped = genuine.clone();
            flipped[i] ^= 1;
            let mut b = crate::store::WriteBatch::default();
            b.put(key.clone(), flipped);
            assert!(store.write(b).unwrap());
            assert!(matches!(Manifest::open(&at, 0, &stored, &writer.public(), None), Err(Error::Integrity(_))));
        }
        // Another page sealed genuinely at the same name and version.
        let mut w = Writer::with_capacity(64);
        write_sparse(&mut w, &[Stamp::of(3, b"forged")]);
        let other = keys.sealer(0).seal(page.kind() as u8, &tokens.of(page), 3, &w.buf).unwrap();
        let mut b = crate::store::WriteBatch::default();
        b.put(key, other);
        assert!(store.write(b).unwrap());
        assert!(matches!(Manifest::open(&at, 0, &stored, &writer.public(), None), Err(Error::Integrity(_))));
    }
}
