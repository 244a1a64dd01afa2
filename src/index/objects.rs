//! Where an index's objects live in the store and how one is read: the key
//! layout, the keyed tokens that name objects, the decrypted-object cache's
//! keys and values, read-ahead, and one loader for every sealed kind.
//!
//! ```text
//! n/<name>                          key record (clear text; keyring.rs)
//! o/<index id>M                     manifest (sealed; manifest.rs)
//! o/<index id>V                     manifest version in clear: a hint to reload, never trusted
//! o/<index id><kind><version><token><tag>  chunk C, directory bucket B, directory run stripe R,
//!                                          contents X, centroids K, manifest page P (chunks) or Q (buckets),
//!                                          page L of a stamp list the root names through pages
//! ```
//!
//! Tokens are HMACs under keys derived from the data key, so the store sees
//! neither ids nor chunk, bucket or page numbers. An object is stored under
//! the stamp that pins it (its version, big-endian, and the first 8 bytes of
//! its digest): a write never overwrites a stored object, it stores the new
//! one and deletes the old in the same atomic batch. The version comes
//! before the token, so the objects one commit stores are neighbours in the
//! store's ordered key space: a B-tree store (redb, PostgreSQL's index)
//! appends them at one edge instead of dirtying a random leaf per object,
//! which kept costs growing with the index. The store learns nothing new
//! from the order: the version is in the key either way. So objects written ahead
//! of a commit (a training run's) stay invisible until a root names them and
//! can never land on a key a committed state uses (another writer's objects
//! at the same version have other digests), and those a crash or a lost race
//! leaves behind are told apart by their version (see `Index::collect_garbage`).

use std::collections::HashMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::chunk::{Bucket, Chunk};
use super::codes::{CodeChunk, CodeShape, StoredCodes};
use super::ivf::Centroids;
use super::manifest::{ChunkMeta, Manifest, RunMeta, Stamp, StampListId};
use super::types::Precision;
use super::Index;
use crate::cache::{Cache, Weigh};
use crate::crypto::{digest, DataKeys, Digest, Token, Tokenizer, TOKEN_LEN};
use crate::error::{Error, Result};

/// Kinds of stored objects; part of every object's associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ObjectKind {
    Manifest = b'M',
    Chunk = b'C',
    Bucket = b'B',
    RunStripe = b'R',
    Contents = b'X',
    Centroids = b'K',
    ChunkPage = b'P',
    BucketPage = b'Q',
    ListPage = b'L',
    ChunkUnit = b'U',
    UnitPack = b'N',
}

/// One stored object of an index (the manifest aside, which is read before
/// anything else and has its own path in `snapshot.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Obj {
    Chunk(u32),
    Bucket(u32),
    /// Stripe `.1` of directory run `.0`.
    RunStripe(u32, u32),
    Centroids,
    /// An item's contents, named by the item's id token.
    Contents(Token),
    /// A page of the manifest's chunk table or bucket table.
    ChunkPage(u32),
    BucketPage(u32),
    /// Page `.1` of a stamp list the root names through pages (see
    /// `manifest.rs`'s `StampList`).
    ListPage(StampListId, u32),
    /// Unit `.1` of IVF_RABITQ chunk `.0` (its full vectors and ids; see
    /// `codes.rs`), bound to the digest `.2` of the chunk's sealed head.
    ChunkUnit(u32, u32, Digest),
    /// The sealed units of IVF_RABITQ chunk `.0`, back to back (not sealed
    /// as a whole: each unit is), for the head of digest `.1`.
    UnitPack(u32, Digest),
}

const CENTROIDS_TOKEN: Token = *b"vx1 centroids\0\0\0";

impl Obj {
    pub fn kind(self) -> ObjectKind {
        match self {
            Obj::Chunk(_) => ObjectKind::Chunk,
            Obj::Bucket(_) => ObjectKind::Bucket,
            Obj::RunStripe(..) => ObjectKind::RunStripe,
            Obj::Centroids => ObjectKind::Centroids,
            Obj::Contents(_) => ObjectKind::Contents,
            Obj::ChunkPage(_) => ObjectKind::ChunkPage,
            Obj::BucketPage(_) => ObjectKind::BucketPage,
            Obj::ListPage(..) => ObjectKind::ListPage,
            Obj::ChunkUnit(..) => ObjectKind::ChunkUnit,
            Obj::UnitPack(..) => ObjectKind::UnitPack,
        }
    }

    fn describe(self) -> String {
        match self {
            Obj::Chunk(no) => format!("chunk {no}"),
            Obj::Bucket(b) => format!("directory bucket {b}"),
            Obj::RunStripe(run, s) => format!("stripe {s} of directory run {run}"),
            Obj::Centroids => "the centroids of a trained index".into(),
            Obj::Contents(_) => "an item's contents object".into(),
            Obj::ChunkPage(p) => format!("page {p} of the chunk table"),
            Obj::BucketPage(p) => format!("page {p} of the directory"),
            Obj::ListPage(list, p) => format!("page {p} of {}", list.describe()),
            Obj::ChunkUnit(no, u, _) => format!("unit {u} of chunk {no}"),
            Obj::UnitPack(no, _) => format!("the units of chunk {no}"),
        }
    }
}

/// The token keys of one index.
pub(crate) struct Tokens {
    ids: Tokenizer,
    chunks: Tokenizer,
    buckets: Tokenizer,
    runs: Tokenizer,
    pages: Tokenizer,
    /// Names this index's entries in the client's cache (see [`CacheKey`]).
    pub cache_owner: Token,
}

impl Tokens {
    pub fn new(keys: &DataKeys) -> Tokens {
        Tokens {
            ids: keys.tokenizer(b"id token"),
            chunks: keys.tokenizer(b"chunk token"),
            buckets: keys.tokenizer(b"bucket token"),
            runs: keys.tokenizer(b"run token"),
            pages: keys.tokenizer(b"page token"),
            cache_owner: keys.tokenizer(b"cache owner").token(&[]),
        }
    }

    pub fn id(&self, id: &str) -> Token {
        self.ids.token(&[id.as_bytes()])
    }

    pub fn of(&self, obj: Obj) -> Token {
        match obj {
            Obj::Chunk(no) => self.chunks.token(&[&no.to_le_bytes()]),
            Obj::Bucket(b) => self.buckets.token(&[&b.to_le_bytes()]),
            Obj::RunStripe(run, s) => self.runs.token(&[&run.to_le_bytes(), &s.to_le_bytes()]),
            Obj::Centroids => CENTROIDS_TOKEN,
            Obj::Contents(t) => t,
            Obj::ChunkPage(p) => self.pages.token(&[b"C", &p.to_le_bytes()]),
            Obj::BucketPage(p) => self.pages.token(&[b"B", &p.to_le_bytes()]),
            Obj::ListPage(list, p) => {
                let (tag, no) = match list {
                    StampListId::ChunkPages => (b'c', 0),
                    StampListId::BucketPages => (b'b', 0),
                    StampListId::Run(no) => (b'r', no),
                };
                self.pages.token(&[b"L", &[tag], &no.to_le_bytes(), &p.to_le_bytes()])
            }
            // The head's digest is in the token, so in the unit's associated
            // data: a unit opens only beside the head it was sealed with.
            Obj::ChunkUnit(no, u, head) => self.chunks.token(&[&no.to_le_bytes(), &u.to_le_bytes(), &head]),
            // Only a store key: a pack is never sealed or opened whole.
            Obj::UnitPack(no, head) => self.chunks.token(&[b"units", &no.to_le_bytes(), &head]),
        }
    }
}

/// The clear-text key of the key record of index `name`; `key_record_key("")`
/// is the prefix of every key record.
pub(crate) fn key_record_key(name: &str) -> Vec<u8> {
    let mut k = b"n/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Bytes of an object key's digest tag: enough that two objects sealed at
/// the same name and version (by writers racing) never share a key.
const STAMP_TAG_LEN: usize = 8;
/// An object key after the index prefix: kind, version, token, tag.
const OBJECT_KEY_TAIL: usize = 1 + TOKEN_LEN + 8 + STAMP_TAG_LEN;

/// The store keys of one index's objects.
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    pub index_id: [u8; 16],
}

impl Layout {
    /// The prefix of every object of the index.
    pub fn prefix(&self) -> Vec<u8> {
        let mut k = b"o/".to_vec();
        k.extend_from_slice(&self.index_id);
        k
    }

    fn under(&self, tail: &[u8]) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(tail);
        k
    }

    /// The key of the object `stamp` pins.
    pub fn object(&self, kind: ObjectKind, token: &Token, stamp: &Stamp) -> Vec<u8> {
        let mut k = self.under(&[kind as u8]);
        k.extend_from_slice(&stamp.version.to_be_bytes());
        k.extend_from_slice(token);
        k.extend_from_slice(&stamp.digest[..STAMP_TAG_LEN]);
        k
    }

    /// The prefix of every object of `kind`.
    pub fn kind_prefix(&self, kind: ObjectKind) -> Vec<u8> {
        self.under(&[kind as u8])
    }

    /// The version in an object key (`None`: not an object key).
    pub fn version_of(&self, key: &[u8]) -> Option<u64> {
        let tail = key.strip_prefix(&self.prefix()[..]).filter(|t| t.len() == OBJECT_KEY_TAIL)?;
        Some(u64::from_be_bytes(tail[1..9].try_into().unwrap()))
    }

    pub fn manifest(&self) -> Vec<u8> {
        self.under(&[ObjectKind::Manifest as u8])
    }

    /// The manifest version in clear: only a hint that tells a handle to
    /// reload the (authenticated) manifest, so every call need not read it.
    pub fn version_hint(&self) -> Vec<u8> {
        self.under(b"V")
    }
}

/// What the client's cache holds for every index.
pub(crate) type ObjectCache = Cache<CacheKey, Cached>;

/// An object as a stamp pins it: a rewritten object gets a new key, so the
/// cache never serves a stale one. `owner` is derived from the index's data
/// key, not its (clear-text) index id: a forged key record that claims
/// another index's id brings its own data key, so its entries can neither
/// read nor replace that index's decrypted objects in a shared cache.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct CacheKey {
    pub owner: Token,
    pub obj: Obj,
    pub stamp: Stamp,
}

#[derive(Clone)]
pub(crate) enum Cached {
    Chunk(Arc<Chunk>),
    Codes(Arc<CodeChunk>),
    Bucket(Arc<Bucket>),
    Centroids(Arc<Centroids>),
}

impl Weigh for Cached {
    fn weight(&self) -> usize {
        match self {
            Cached::Chunk(c) => c.mem_size(),
            Cached::Codes(c) => c.mem_size(),
            Cached::Bucket(b) => b.mem_size(),
            Cached::Centroids(c) => c.mem_size(),
        }
    }
}

/// A kind of sealed object the loader can open.
pub(crate) trait Sealed: Sized {
    /// What the manifest says the object must look like; a decrypted object
    /// that differs is `INTEGRITY`.
    /// (May borrow what it needs to derive the in-memory form, as a
    /// head's shape borrows its list's centroid.)
    type Shape<'a>;
    fn open(sealed: &SealedObject<'_>, shape: &Self::Shape<'_>) -> Result<Self>;
    /// The cache entry for it (`None`: not cached).
    fn to_cached(this: &Arc<Self>) -> Option<Cached>;
    fn from_cached(cached: Cached) -> Option<Arc<Self>>;
}

/// The `Sealed` methods of a kind cached as `Cached::$variant`.
macro_rules! cached_as {
    ($variant:ident) => {
        fn to_cached(this: &Arc<Self>) -> Option<Cached> {
            Some(Cached::$variant(this.clone()))
        }
        fn from_cached(cached: Cached) -> Option<Arc<Self>> {
            match cached {
                Cached::$variant(v) => Some(v),
                _ => None,
            }
        }
    };
}

/// One sealed object as the store holds it, with what it must authenticate
/// against: its place (kind and token), the version the manifest names, and
/// a key version no newer than the manifest's.
pub(crate) struct SealedObject<'a> {
    pub keys: &'a DataKeys,
    pub max_key_version: u32,
    pub obj: Obj,
    pub token: Token,
    pub version: u64,
    pub bytes: &'a [u8],
}

impl SealedObject<'_> {
    /// Authenticates and decrypts it.
    pub fn open(&self) -> Result<Zeroizing<Vec<u8>>> {
        let kind = self.obj.kind();
        self.keys
            .open(self.max_key_version, kind as u8, &self.token, self.version, self.bytes)
            .ok_or_else(|| self.auth_failed())
    }

    /// Bytes of its plaintext.
    pub fn plaintext_len(&self) -> Result<usize> {
        DataKeys::plaintext_len(self.bytes).ok_or_else(|| self.auth_failed())
    }

    /// As [`SealedObject::open`], into `out` (exactly the plaintext's length).
    pub fn open_into(&self, out: &mut [u8]) -> Result<()> {
        let kind = self.obj.kind();
        match self.keys.open_into(self.max_key_version, kind as u8, &self.token, self.version, self.bytes, out) {
            true => Ok(()),
            false => Err(self.auth_failed()),
        }
    }

    fn auth_failed(&self) -> Error {
        Error::integrity(format!("{:?} object failed authentication", self.obj.kind()))
    }
}

/// What a chunk must hold: the index's vector shape and the manifest's count.
pub(crate) struct ChunkShape {
    pub dim: usize,
    pub precision: Precision,
    pub count: usize,
}

impl Sealed for Chunk {
    type Shape<'a> = ChunkShape;
    fn open(sealed: &SealedObject<'_>, shape: &ChunkShape) -> Result<Self> {
        let chunk = Chunk::open(sealed, shape.dim, shape.precision)?;
        if chunk.len() != shape.count {
            return Err(Error::integrity(format!(
                "{} holds {} items, manifest says {}",
                sealed.obj.describe(),
                chunk.len(),
                shape.count
            )));
        }
        Ok(chunk)
    }
    cached_as!(Chunk);
}

impl Sealed for CodeChunk {
    type Shape<'a> = CodeShape<'a>;
    fn open(sealed: &SealedObject<'_>, shape: &CodeShape<'_>) -> Result<Self> {
        CodeChunk::decode(&sealed.open()?, shape)
    }
    cached_as!(Codes);
}

/// A head read for its codes (a write's repack): never cached.
impl Sealed for StoredCodes {
    type Shape<'a> = CodeShape<'a>;
    fn open(sealed: &SealedObject<'_>, shape: &CodeShape<'_>) -> Result<Self> {
        StoredCodes::decode(&sealed.open()?, shape)
    }
    fn to_cached(_: &Arc<Self>) -> Option<Cached> {
        None
    }
    fn from_cached(_: Cached) -> Option<Arc<Self>> {
        None
    }
}

impl Sealed for Bucket {
    type Shape<'a> = ();
    fn open(sealed: &SealedObject<'_>, _: &()) -> Result<Self> {
        Bucket::decode(&sealed.open()?)
    }
    cached_as!(Bucket);
}

/// What the centroids must be: (dimension, number of lists).
impl Sealed for Centroids {
    type Shape<'a> = (usize, usize);
    fn open(sealed: &SealedObject<'_>, shape: &(usize, usize)) -> Result<Self> {
        let c = Centroids::decode(&sealed.open()?, shape.0)?;
        if c.k != shape.1 {
            return Err(Error::integrity("centroid count does not match the manifest"));
        }
        Ok(c)
    }
    cached_as!(Centroids);
}

/// Contents are read one item at a time and never cached.
impl Sealed for Zeroizing<Vec<u8>> {
    type Shape<'a> = ();
    fn open(sealed: &SealedObject<'_>, _: &()) -> Result<Self> {
        sealed.open()
    }
    fn to_cached(_: &Arc<Self>) -> Option<Cached> {
        None
    }
    fn from_cached(_: Cached) -> Option<Arc<Self>> {
        None
    }
}

/// Sealed bytes of data objects authenticated and decrypted (cache misses)
/// by this process: what `vx::opened_bytes` reports.
static OPENED_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes of sealed objects (chunks, heads, units, directory, centroids,
/// contents; not manifests) this process has read from stores and
/// decrypted, every index and client together: what a query or write
/// costs in decryption, for benchmarks and monitoring.
pub fn opened_bytes() -> u64 {
    OPENED_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Most sealed objects one read fetches ahead in one store call (~256 MiB of chunks).
const PREFETCH_OBJECTS: usize = 4096;
/// Chunks a pass over many of them (a metadata listing, candidate rows)
/// asks a PostgreSQL store for in one round trip: ~4 MiB at most.
pub(super) const PREFETCH_CHUNKS: usize = 64;

/// Sealed objects read ahead (see [`Index::prefetch`]).
#[derive(Default)]
pub(crate) struct Prefetched(HashMap<Obj, Vec<u8>>);

impl Prefetched {
    pub fn holds(&self, obj: &Obj) -> bool {
        self.0.contains_key(obj)
    }

    /// Adds what `more` read.
    pub fn absorb(&mut self, more: Prefetched) {
        self.0.extend(more.0);
    }

    /// The stored bytes of `obj`, if read ahead.
    pub fn get(&self, obj: &Obj) -> Option<&[u8]> {
        self.0.get(obj).map(Vec::as_slice)
    }

    pub fn insert(&mut self, obj: Obj, stored: Vec<u8>) {
        self.0.insert(obj, stored);
    }
}

impl Index {
    pub(crate) fn cache_key(&self, obj: Obj, stamp: &Stamp) -> CacheKey {
        CacheKey { owner: self.tokens.cache_owner, obj, stamp: *stamp }
    }

    pub(crate) fn store_key(&self, obj: Obj, stamp: &Stamp) -> Vec<u8> {
        self.layout.object(obj.kind(), &self.tokens.of(obj), stamp)
    }

    /// `obj` as `stamp` pins it: from the cache, else from `pre`, else from
    /// the store; its sealed bytes checked against the stamp's digest, then
    /// authenticated against its version and checked against `shape`.
    pub(crate) fn load_object<T: Sealed>(
        &self,
        m: &Manifest,
        obj: Obj,
        stamp: &Stamp,
        shape: &T::Shape<'_>,
        pre: Option<&Prefetched>,
    ) -> Result<Arc<T>> {
        self.load_object_with(m, obj, stamp, shape, pre, true)
    }

    /// As [`Index::load_object`]; `keep = false` does not add it to the
    /// cache (a pass over the whole index would only evict the working set).
    pub(super) fn load_object_with<T: Sealed>(
        &self,
        m: &Manifest,
        obj: Obj,
        stamp: &Stamp,
        shape: &T::Shape<'_>,
        pre: Option<&Prefetched>,
        keep: bool,
    ) -> Result<Arc<T>> {
        self.load_object_from(m, (obj, stamp), shape, (pre, keep), || self.env.store.get(&self.store_key(obj, stamp)))
    }

    /// As [`Index::load_object_with`], its sealed bytes from `fetch` if
    /// neither the cache nor `pre` holds it (a unit: its part of a pack).
    pub(super) fn load_object_from<T: Sealed>(
        &self,
        m: &Manifest,
        (obj, stamp): (Obj, &Stamp),
        shape: &T::Shape<'_>,
        (pre, keep): (Option<&Prefetched>, bool),
        fetch: impl FnOnce() -> Result<Option<Vec<u8>>>,
    ) -> Result<Arc<T>> {
        let version = stamp.version;
        let ck = self.cache_key(obj, stamp);
        if let Some(hit) = self.env.cache.get(&ck).and_then(T::from_cached) {
            return Ok(hit);
        }
        let token = self.tokens.of(obj);
        let fetched;
        let sealed = match pre.and_then(|p| p.0.get(&obj)) {
            Some(bytes) => bytes,
            None => {
                fetched = fetch()?.ok_or_else(|| self.missing(obj))?;
                &fetched
            }
        };
        // A unit has no digest of its own: its stamp carries its head's,
        // and its token binds it to that head (see `Tokens::of`).
        if !matches!(obj, Obj::ChunkUnit(..)) && digest(sealed) != stamp.digest {
            return Err(Error::integrity(format!(
                "{} of index '{}' is not the one the manifest names (replaced or from another history)",
                obj.describe(),
                self.name
            )));
        }
        OPENED_BYTES.fetch_add(sealed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let sealed =
            SealedObject { keys: &self.keys, max_key_version: m.key_version, obj, token, version, bytes: sealed };
        let value = Arc::new(T::open(&sealed, shape)?);
        if let Some(cached) = T::to_cached(&value).filter(|_| keep) {
            self.env.cache.insert(ck, cached);
        }
        Ok(value)
    }

    /// The error for `obj` not stored (a unit: its pack not stored).
    pub(super) fn missing(&self, obj: Obj) -> Error {
        Error::Missing(format!("{} of index '{}' is missing", obj.describe(), self.name))
    }

    /// Reads the sealed objects of `wanted` that are not in the cache in one
    /// store call, when the store is one where each read is a round trip
    /// (PostgreSQL); at most [`PREFETCH_OBJECTS`] of them, the rest are read
    /// when used. Empty for local stores.
    pub(crate) fn prefetch<'s>(&self, wanted: impl Iterator<Item = (Obj, &'s Stamp)>) -> Result<Prefetched> {
        self.prefetch_where(wanted, |_| true)
    }

    /// `prefetch`, where the cache's copy serves only the objects
    /// `cached_serves` accepts (a head a write reads for its stored codes
    /// comes from the store whatever the cache holds).
    pub(crate) fn prefetch_where<'s>(
        &self,
        wanted: impl Iterator<Item = (Obj, &'s Stamp)>,
        cached_serves: impl Fn(Obj) -> bool,
    ) -> Result<Prefetched> {
        if !self.env.store.prefers_batched_reads() {
            return Ok(Prefetched::default());
        }
        let wanted: Vec<(Obj, &Stamp)> = wanted
            .filter(|&(obj, stamp)| !(cached_serves(obj) && self.env.cache.contains(&self.cache_key(obj, stamp))))
            .take(PREFETCH_OBJECTS)
            .collect();
        if wanted.is_empty() {
            return Ok(Prefetched::default()); // not a round trip for nothing
        }
        let keys: Vec<Vec<u8>> = wanted.iter().map(|&(obj, stamp)| self.store_key(obj, stamp)).collect();
        let got = self.env.store.get_many(&keys)?;
        Ok(Prefetched(wanted.into_iter().zip(got).filter_map(|((obj, _), v)| Some((obj, v?))).collect()))
    }
}

/// The loader for each kind, with the shape the manifest gives it.
impl Index {
    pub(crate) fn chunk(&self, m: &Manifest, meta: &ChunkMeta, pre: Option<&Prefetched>) -> Result<Arc<Chunk>> {
        self.chunk_with(m, meta, pre, true)
    }

    /// As [`Index::chunk`], not added to the cache (for passes over the index).
    pub(crate) fn chunk_uncached(&self, m: &Manifest, meta: &ChunkMeta) -> Result<Arc<Chunk>> {
        self.chunk_with(m, meta, None, false)
    }

    fn chunk_with(&self, m: &Manifest, meta: &ChunkMeta, pre: Option<&Prefetched>, keep: bool) -> Result<Arc<Chunk>> {
        if let Some((_, coder)) = self.coder(m)? {
            return Ok(Arc::new(self.assembled_chunk(m, &coder, meta, keep)?));
        }
        let shape =
            ChunkShape { dim: m.config.dimension as usize, precision: m.config.precision, count: meta.count as usize };
        self.load_object_with(m, Obj::Chunk(meta.no), &meta.stamp, &shape, pre, keep)
    }

    /// Directory bucket `b`; an empty bucket is stored as nothing (version 0).
    pub(crate) fn bucket(&self, m: &Manifest, b: usize) -> Result<Arc<Bucket>> {
        self.bucket_with(m, b, true)
    }

    /// As [`Index::bucket`], not added to the cache (for passes over the index).
    pub(crate) fn bucket_uncached(&self, m: &Manifest, b: usize) -> Result<Arc<Bucket>> {
        self.bucket_with(m, b, false)
    }

    fn bucket_with(&self, m: &Manifest, b: usize, keep: bool) -> Result<Arc<Bucket>> {
        match m.bucket(b) {
            stamp if stamp.is_none() => Ok(Arc::new(Bucket::default())),
            stamp => self.load_object_with(m, Obj::Bucket(b as u32), &stamp, &(), None, keep),
        }
    }

    /// Stripe `s` of directory run `run` (a stored one: its stamp is not none).
    pub(crate) fn run_stripe(&self, m: &Manifest, run: &RunMeta, s: usize) -> Result<Arc<Bucket>> {
        self.load_object(m, Obj::RunStripe(run.no, s as u32), &run.stripes[s], &(), None)
    }

    pub(crate) fn centroids(&self, m: &Manifest) -> Result<Arc<Centroids>> {
        self.load_object(m, Obj::Centroids, &m.centroids, &(m.config.dimension as usize, m.n_lists as usize), None)
    }

    pub(crate) fn contents(&self, m: &Manifest, id_token: &Token, stamp: &Stamp) -> Result<Vec<u8>> {
        Ok(self.load_object::<Zeroizing<Vec<u8>>>(m, Obj::Contents(*id_token), stamp, &(), None)?.to_vec())
    }
}
