//! One opened index: authorization, the snapshot of its manifest, and every
//! data operation. Reads work on an immutable snapshot (`Arc<Snapshot>`)
//! without locks; writes are serialised by a writer lock, build a new
//! manifest and commit it with a compare-and-set, so a failed write leaves
//! the stored index and this handle exactly as they were.

pub(crate) mod chunk;
pub(crate) mod ivf;
mod keyring;
pub(crate) mod manifest;
pub(crate) mod search;
mod write;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::cache::{CacheKey, Cached};
use crate::client::ClientShared;
use crate::crypto::{DataKeys, ObjectKind, SecretKey, Token, USER_ID_LEN};
use crate::distance::Metric;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::store::WriteBatch;
use chunk::{Bucket, Chunk};
use keyring::{Header, PERMISSION_ROOT};
use manifest::{ChunkMeta, Manifest};

pub use ivf::{TrainParams, TrainReport, DEFAULT_SEED};
pub use keyring::UserEntry;

/// Permission bits of user keys (the C ABI's VX_PERMISSION_*).
pub const PERMISSION_READ: u32 = keyring::PERMISSION_READ as u32;
pub const PERMISSION_WRITE: u32 = keyring::PERMISSION_WRITE as u32;
pub use manifest::{IndexConfig, IndexType, Precision, TrainingState};

pub const MAX_ID_BYTES: usize = 1024;
pub const MAX_CONTENTS_BYTES: usize = 64 << 20;
pub const MAX_METADATA_BYTES: usize = 1 << 20;
pub const MAX_DIMENSION: usize = 1 << 16;
pub const MAX_TOP_K: usize = 1 << 16;
pub const MAX_NAME_BYTES: usize = 255;
/// Most sealed chunks one query reads ahead in one store call (~256 MiB).
const PREFETCH_CHUNKS: usize = 4096;
/// How often a read restarts on a newer state when writes keep landing under it.
const READ_ATTEMPTS: usize = 5;

/// What an operation needs (SPEC §7): READ for query, get, list_ids,
/// num_vectors and the getters; WRITE for upsert, delete and train; the root
/// key for user management, delete_index and rotate_key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    Root,
}

impl Need {
    fn granted_by(self, perms: u8) -> bool {
        match self {
            Need::Read => perms & keyring::PERMISSION_READ != 0,
            Need::Write => perms & keyring::PERMISSION_WRITE != 0,
            Need::Root => perms == PERMISSION_ROOT,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Need::Read => "the READ permission",
            Need::Write => "the WRITE permission",
            Need::Root => "the root key",
        }
    }
}

/// The credentials a handle was created or loaded with, and the key record
/// they were last checked against (re-checked whenever it changes, so a
/// deleted user or a rotated root key stops working on open handles too).
struct Bound {
    key: SecretKey,
    user: Option<[u8; USER_ID_LEN]>,
    checked: Vec<u8>,
    /// Generation of `checked`: if the handle has since seen a newer record
    /// (through another call's key), `checked` coming back is a rollback.
    checked_generation: u32,
    perms: u8,
}

/// The credentials of one call: `key = None` means the key the handle was
/// created or loaded with; a user id needs a key.
#[derive(Clone, Copy, Default)]
pub struct Access<'a> {
    pub key: Option<&'a SecretKey>,
    pub user: Option<&'a [u8; USER_ID_LEN]>,
}

/// What `get` and `query` return besides the id.
pub mod include {
    pub const DISTANCE: u32 = 1;
    pub const METADATA: u32 = 2;
    pub const CONTENTS: u32 = 4;
    pub const VECTOR: u32 = 8;
    pub const ALL: u32 = DISTANCE | METADATA | CONTENTS | VECTOR;
}

/// One item to upsert, borrowed from the caller.
#[derive(Clone, Copy, Debug)]
pub struct ItemRef<'a> {
    pub id: &'a str,
    pub vector: &'a [f32],
    pub metadata: Option<&'a str>,
    pub contents: Option<&'a [u8]>,
}

/// An item as `get` returns it. Wiped on drop.
#[derive(Clone, Debug, Default, Zeroize, ZeroizeOnDrop)]
pub struct Item {
    pub id: String,
    pub vector: Option<Vec<f32>>,
    pub metadata: Option<String>,
    pub contents: Option<Vec<u8>>,
}

/// One query result row. Wiped on drop.
#[derive(Clone, Debug, Default, Zeroize, ZeroizeOnDrop)]
pub struct Hit {
    pub id: String,
    pub distance: f32,
    pub metadata: Option<String>,
    pub contents: Option<Vec<u8>>,
    pub vector: Option<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct QueryParams<'a> {
    pub top_k: usize,
    /// 0 = automatic (used once the index is trained).
    pub n_probes: u32,
    pub filter: Option<&'a str>,
    pub include: u32,
    pub greedy: bool,
}

impl Default for QueryParams<'_> {
    fn default() -> Self {
        QueryParams { top_k: 100, n_probes: 0, filter: None, include: include::DISTANCE, greedy: false }
    }
}

/// Sealed chunks read ahead by number (see [`Index::prefetch`]).
#[derive(Default)]
pub(crate) struct Prefetched(std::collections::HashMap<u32, Vec<u8>>);

/// The manifest a handle currently works from, with its exact stored bytes
/// (the compare-and-set guard of the next write).
pub(crate) struct Snapshot {
    pub manifest: Manifest,
    pub stored: Vec<u8>,
    /// Positions in `manifest.chunks` of each list's chunks, built on the
    /// first IVF query of this snapshot.
    lists: std::sync::OnceLock<Vec<Vec<usize>>>,
}

impl Snapshot {
    pub(crate) fn new(manifest: Manifest, stored: Vec<u8>) -> Snapshot {
        Snapshot { manifest, stored, lists: std::sync::OnceLock::new() }
    }

    fn chunks_by_list(&self) -> &[Vec<usize>] {
        self.lists.get_or_init(|| {
            let mut by_list = vec![Vec::new(); self.manifest.n_lists as usize];
            for (i, c) in self.manifest.chunks.iter().enumerate() {
                if let Some(l) = by_list.get_mut(c.list as usize) {
                    l.push(i);
                }
            }
            by_list
        })
    }
}

pub struct Index {
    client: Arc<ClientShared>,
    name: String,
    index_id: [u8; 16],
    keys: DataKeys,
    bound: Mutex<Bound>,
    /// Highest key-record generation seen; a record that goes back is refused.
    generation: AtomicU32,
    snapshot: RwLock<Arc<Snapshot>>,
    write_lock: Mutex<()>,
    poisoned: AtomicBool,
    deleted: AtomicBool,
    /// A training run of this handle is under way.
    training: AtomicBool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("name", &self.name).finish_non_exhaustive()
    }
}

pub(crate) fn header_key(name: &str) -> Vec<u8> {
    let mut k = b"n/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn index_prefix(index_id: &[u8; 16]) -> Vec<u8> {
    let mut k = b"o/".to_vec();
    k.extend_from_slice(index_id);
    k
}

fn object_key(index_id: &[u8; 16], kind: ObjectKind, token: &Token) -> Vec<u8> {
    let mut k = index_prefix(index_id);
    k.push(kind as u8);
    k.extend_from_slice(token);
    k
}

fn manifest_key(index_id: &[u8; 16]) -> Vec<u8> {
    let mut k = index_prefix(index_id);
    k.push(ObjectKind::Manifest as u8);
    k
}

/// The manifest version in clear: only a hint that tells a handle to reload
/// the (authenticated) manifest, so every call need not read the manifest.
fn version_hint_key(index_id: &[u8; 16]) -> Vec<u8> {
    let mut k = index_prefix(index_id);
    k.push(b'V');
    k
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(format!("index name must be 1 to {MAX_NAME_BYTES} bytes, got {}", name.len())));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("index name contains a control character"));
    }
    Ok(())
}

impl Index {
    pub(crate) fn create(
        client: Arc<ClientShared>,
        name: &str,
        root: &SecretKey,
        config: IndexConfig,
    ) -> Result<Index> {
        validate_name(name)?;
        if config.dimension as usize > MAX_DIMENSION {
            return Err(Error::invalid(format!("dimension {} exceeds the maximum {MAX_DIMENSION}", config.dimension)));
        }
        let hkey = header_key(name);
        if client.store.get(&hkey)?.is_some() {
            return Err(Error::AlreadyExists(format!("index '{name}' already exists")));
        }
        let mut index_id = [0u8; 16];
        crate::crypto::random_bytes(&mut index_id)?;
        let data_key = SecretKey::random()?;
        let header = Header::new(index_id, name, root, &data_key)?;
        let keys = DataKeys::new(data_key, index_id);
        let mut manifest = Manifest::new(name, config);
        manifest.version = 1;
        manifest.encryptions = 1;
        let stored = manifest.seal(&keys.sealer(manifest.key_version))?;
        let mut batch = WriteBatch::default();
        let record = header.encode();
        batch.put(hkey.clone(), record.clone());
        batch.put(manifest_key(&index_id), stored.clone());
        batch.put(version_hint_key(&index_id), manifest.version.to_le_bytes().to_vec());
        batch.expect = Some((hkey, None));
        if !client.store.write(batch)? {
            return Err(Error::AlreadyExists(format!("index '{name}' already exists")));
        }
        let bound = Bound {
            key: root.clone(),
            user: None,
            checked: record,
            checked_generation: header.generation,
            perms: PERMISSION_ROOT,
        };
        Ok(Index::from_parts(client, name, &header, keys, bound, Snapshot::new(manifest, stored)))
    }

    /// Opens an index with the root key (`access.user = None`) or a user's
    /// key; the handle is bound to those credentials.
    pub(crate) fn load(client: Arc<ClientShared>, name: &str, access: Access<'_>) -> Result<Index> {
        validate_name(name)?;
        let key = access.key.ok_or_else(|| Error::NullArgument("key".into()))?;
        let record =
            client.store.get(&header_key(name))?.ok_or_else(|| Error::NotFound(format!("no index named '{name}'")))?;
        let header = Header::decode(&record, name)?;
        let unlocked = header.unlock(name, key, access.user)?;
        let keys = DataKeys::new(unlocked.data_key, header.index_id);
        let stored = client
            .store
            .get(&manifest_key(&header.index_id))?
            .ok_or_else(|| Error::integrity(format!("manifest of index '{name}' is missing")))?;
        let manifest = Manifest::open(&keys, &stored, name)?;
        let bound = Bound {
            key: key.clone(),
            user: access.user.copied(),
            checked: record,
            checked_generation: header.generation,
            perms: unlocked.perms,
        };
        Ok(Index::from_parts(client, name, &header, keys, bound, Snapshot::new(manifest, stored)))
    }

    fn from_parts(
        client: Arc<ClientShared>,
        name: &str,
        header: &Header,
        keys: DataKeys,
        bound: Bound,
        snap: Snapshot,
    ) -> Index {
        Index {
            client,
            name: name.to_owned(),
            index_id: header.index_id,
            keys,
            bound: Mutex::new(bound),
            generation: AtomicU32::new(header.generation),
            snapshot: RwLock::new(Arc::new(snap)),
            write_lock: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            training: AtomicBool::new(false),
        }
    }

    // ----- keys and permissions ------------------------------------------------

    fn read_key_record(&self) -> Result<Vec<u8>> {
        let gone = || Error::NotFound(format!("index '{}' was deleted", self.name));
        if self.deleted.load(Ordering::Acquire) {
            return Err(gone());
        }
        self.client.store.get(&header_key(&self.name))?.ok_or_else(gone)
    }

    /// Opens the stored key record with `key` (and `user`) and checks that it
    /// is this handle's index, not older than one already seen, and wraps
    /// this handle's data key. Returns the record bytes it opened: a record
    /// older than one seen is read again first, since a call that read it
    /// just before a concurrent key change holds a stale copy, not a
    /// rollback; only a record still older in the store is `INTEGRITY`.
    fn open_key_record(
        &self,
        mut record: Vec<u8>,
        key: &SecretKey,
        user: Option<&[u8; USER_ID_LEN]>,
    ) -> Result<(Vec<u8>, Header, keyring::Unlocked)> {
        let mut header = Header::decode(&record, &self.name)?;
        for attempt in 0..=READ_ATTEMPTS {
            let seen = self.generation.load(Ordering::Acquire);
            if header.generation >= seen {
                break;
            }
            if attempt == READ_ATTEMPTS {
                return Err(Error::integrity(format!(
                    "key record of index '{}' went back from generation {seen} to {}",
                    self.name, header.generation
                )));
            }
            record = self.read_key_record()?;
            header = Header::decode(&record, &self.name)?;
        }
        if header.index_id != self.index_id {
            return Err(Error::NotFound(format!("index '{}' was deleted and created again", self.name)));
        }
        let unlocked = header.unlock(&self.name, key, user)?;
        if unlocked.data_key != *self.keys.data_key() {
            return Err(Error::integrity("the stored key record does not match this index"));
        }
        self.generation.fetch_max(header.generation, Ordering::AcqRel);
        Ok((record, header, unlocked))
    }

    /// The permissions of a call's credentials, checked against the stored
    /// key record on every call (the handle's own only when the record changed).
    fn permissions(&self, record: Vec<u8>, access: Access<'_>) -> Result<u8> {
        match (access.key, access.user) {
            (None, Some(_)) => Err(Error::invalid("a user id was given without a key")),
            (Some(key), user) => Ok(self.open_key_record(record, key, user)?.2.perms),
            (None, None) => {
                let mut bound = self.bound.lock();
                if bound.checked != record || bound.checked_generation < self.generation.load(Ordering::Acquire) {
                    let (record, header, unlocked) = self.open_key_record(record, &bound.key, bound.user.as_ref())?;
                    bound.perms = unlocked.perms;
                    bound.checked = record;
                    bound.checked_generation = header.generation;
                }
                Ok(bound.perms)
            }
        }
    }

    fn check_permission(&self, record: Vec<u8>, access: Access<'_>, need: Need) -> Result<()> {
        if need.granted_by(self.permissions(record, access)?) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!("this operation needs {}; the key given lacks it", need.describe())))
        }
    }

    /// `PERMISSION_DENIED` unless the call's credentials grant `need`;
    /// `WRONG_KEY` if they open nothing.
    fn authorize(&self, access: Access<'_>, need: Need) -> Result<()> {
        self.check_permission(self.read_key_record()?, access, need)
    }

    /// The start of every read: checks the credentials and returns the
    /// newest committed snapshot, reading the key record and the version
    /// hint in one store round trip (what a read costs on a remote store).
    fn begin_read(&self, access: Access<'_>) -> Result<Arc<Snapshot>> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!("index '{}' was deleted", self.name)));
        }
        let mut got = self.client.store.get_many(&[header_key(&self.name), version_hint_key(&self.index_id)])?;
        let (hint, record) = (got.pop().flatten(), got.pop().flatten());
        let record = record.ok_or_else(|| Error::NotFound(format!("index '{}' was deleted", self.name)))?;
        self.check_permission(record, access, Need::Read)?;
        self.current_with_hint(hint)
    }

    /// Applies `change` to the key record as the root, with a compare-and-set
    /// (re-reading and re-applying if another writer changed the record
    /// meanwhile). `change` returns `None` when there is nothing to do.
    /// Returns whether a new record was written.
    fn change_key_record(
        &self,
        root: Option<&SecretKey>,
        change: impl Fn(&Header, &keyring::Unlocked) -> Result<Option<Header>>,
    ) -> Result<bool> {
        self.authorize(Access { key: root, user: None }, Need::Root)?;
        let key = match root {
            Some(k) => k.clone(),
            None => self.bound.lock().key.clone(),
        };
        for _ in 0..READ_ATTEMPTS {
            let (record, header, unlocked) = self.open_key_record(self.read_key_record()?, &key, None)?;
            let Some(next) = change(&header, &unlocked)? else { return Ok(false) };
            let hkey = header_key(&self.name);
            let mut batch = WriteBatch::default();
            batch.put(hkey.clone(), next.encode());
            batch.expect = Some((hkey, Some(record)));
            if self.client.store.write(batch)? {
                self.generation.fetch_max(next.generation, Ordering::AcqRel);
                return Ok(true);
            }
        }
        Err(Error::Storage("the key record kept changing under concurrent key management; nothing was changed".into()))
    }

    /// Gives `user_id` exactly `perms` (READ, WRITE or both) under
    /// `user_key`, replacing any keys it had, atomically. Root key only.
    pub fn create_user_keys(
        &self,
        user_id: &[u8; USER_ID_LEN],
        user_key: &SecretKey,
        perms: u32,
        root: Option<&SecretKey>,
    ) -> Result<()> {
        let perms = match perms {
            1..=3 => perms as u8,
            _ => {
                return Err(Error::invalid(format!("permissions must be READ (1), WRITE (2) or both (3), got {perms}")))
            }
        };
        if user_id.iter().all(|&b| b == 0) {
            return Err(Error::invalid("the all-zero user id is reserved"));
        }
        self.change_key_record(root, |header, unlocked| {
            if header.unlock(&self.name, user_key, None).is_ok() {
                return Err(Error::invalid("a user key must differ from the root key"));
            }
            header.with_user(&self.name, unlocked, user_id, user_key, perms).map(Some)
        })?;
        Ok(())
    }

    /// Removes every key of `user_id`; true if it had any. Root key only.
    pub fn delete_user_keys(&self, user_id: &[u8; USER_ID_LEN], root: Option<&SecretKey>) -> Result<bool> {
        self.change_key_record(root, |header, unlocked| header.without_user(&self.name, unlocked, user_id))
    }

    /// Every user with keys, by user id. Root key only.
    pub fn list_user_keys(&self, root: Option<&SecretKey>) -> Result<Vec<UserEntry>> {
        self.authorize(Access { key: root, user: None }, Need::Root)?;
        let record = self.read_key_record()?;
        let key = match root {
            Some(k) => k.clone(),
            None => self.bound.lock().key.clone(),
        };
        let mut users = self.open_key_record(record, &key, None)?.2.users;
        users.sort_by_key(|u| u.user_id);
        Ok(users)
    }

    /// Re-wraps the data key under `new_root`, atomically, touching no data:
    /// `old_root` then gets `WRONG_KEY`, user keys keep working, and a handle
    /// bound to `old_root` (this one or another in this process) ...
    pub fn rotate_key(&self, old_root: &SecretKey, new_root: &SecretKey) -> Result<()> {
        if old_root == new_root {
            return Err(Error::invalid("the new root key equals the old one"));
        }
        // Held across the change, so this handle's own calls wait and then
        // use the new key rather than meet the new record with the old one.
        // (With an explicit root key, the change never takes this lock.)
        let mut bound = self.bound.lock();
        self.change_key_record(Some(old_root), |header, unlocked| {
            header.rotated(&self.name, unlocked, new_root).map(Some)
        })?;
        if bound.user.is_none() && bound.key == *old_root {
            bound.key = new_root.clone();
            bound.checked.clear();
        }
        Ok(())
    }

    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    // ----- snapshot and object access -------------------------------------

    /// The newest committed snapshot: a cheap version-hint read, and a reload
    /// of the manifest only when another handle or process has written.
    pub(crate) fn current(&self) -> Result<Arc<Snapshot>> {
        self.current_with_hint(self.client.store.get(&version_hint_key(&self.index_id))?)
    }

    /// As [`Index::current`], with the version hint already read.
    fn current_with_hint(&self, hint: Option<Vec<u8>>) -> Result<Arc<Snapshot>> {
        let snap = self.snapshot.read().clone();
        if hint.as_deref() == Some(&snap.manifest.version.to_le_bytes()[..]) {
            return Ok(snap);
        }
        let stored = self
            .client
            .store
            .get(&manifest_key(&self.index_id))?
            .ok_or_else(|| Error::integrity(format!("manifest of index '{}' is missing", self.name)))?;
        if stored == snap.stored {
            return Ok(snap);
        }
        let manifest = Manifest::open(&self.keys, &stored, &self.name)?;
        if manifest.version < snap.manifest.version {
            return Err(Error::integrity(format!(
                "manifest of index '{}' went back from version {} to {}",
                self.name, snap.manifest.version, manifest.version
            )));
        }
        let fresh = Arc::new(Snapshot::new(manifest, stored));
        let mut slot = self.snapshot.write();
        if slot.manifest.version <= fresh.manifest.version {
            *slot = fresh.clone();
        }
        Ok(fresh)
    }

    /// Runs a read on the newest snapshot. A write committed by another
    /// handle or process while the read runs can remove objects the read's
    /// snapshot names (it then fails authentication or finds them missing);
    /// if the manifest moved on meanwhile, the read runs again on the new
    /// state, so readers see one committed state or the next, never an error.
    /// An integrity failure on an unchanged manifest is real and reported.
    pub(crate) fn read_consistent<T>(&self, mut snap: Arc<Snapshot>, f: impl Fn(&Snapshot) -> Result<T>) -> Result<T> {
        for _ in 0..READ_ATTEMPTS {
            match f(&snap) {
                Err(Error::Integrity(msg)) => {
                    let fresh = self.current()?;
                    if fresh.manifest.version == snap.manifest.version {
                        return Err(Error::Integrity(msg));
                    }
                    snap = fresh;
                }
                other => return other,
            }
        }
        f(&snap)
    }

    /// Reloads the manifest now (other handles' and processes' writes are
    /// also picked up automatically at the start of every call).
    pub fn refresh(&self) -> Result<()> {
        self.begin_read(Access::default()).map(|_| ())
    }

    /// The version of the committed state this handle reads: a number that
    /// grows with every write. A caller who keeps it outside the store can
    /// hand it to [`Index::require_epoch`] later to detect a rollback of the
    /// whole store (every object genuine, just old), which nothing inside the
    /// store can reveal. READ permission.
    pub fn epoch(&self, access: Access<'_>) -> Result<u64> {
        Ok(self.begin_read(access)?.manifest.version)
    }

    /// `INTEGRITY` if the stored state is older than `epoch` (a rollback);
    /// afterwards this handle also refuses any state older than it.
    pub fn require_epoch(&self, epoch: u64) -> Result<()> {
        let have = self.begin_read(Access::default())?.manifest.version;
        if have < epoch {
            return Err(Error::integrity(format!(
                "index '{}' is at version {have}, older than the epoch {epoch} you kept: the store was rolled back",
                self.name
            )));
        }
        Ok(())
    }

    fn cache_key(&self, kind: ObjectKind, number: u32, version: u64) -> CacheKey {
        CacheKey { index: self.index_id, kind: kind as u8, number, version }
    }

    fn chunk_token(&self, no: u32) -> Token {
        self.keys.chunk_tokens.token(&[&no.to_le_bytes()])
    }

    fn bucket_token(&self, b: usize) -> Token {
        self.keys.bucket_tokens.token(&[&(b as u32).to_le_bytes()])
    }

    fn id_token(&self, id: &str) -> Token {
        self.keys.id_tokens.token(&[id.as_bytes()])
    }

    /// Reads the sealed chunks of `metas` that are not in the cache in one
    /// store call, when the store is one where each read is a round trip
    /// (PostgreSQL); at most [`PREFETCH_CHUNKS`] of them, the rest are read
    /// when scanned. Empty for local stores.
    fn prefetch(&self, metas: &[&ChunkMeta]) -> Result<Prefetched> {
        if !self.client.store.prefers_batched_reads() {
            return Ok(Prefetched::default());
        }
        let wanted: Vec<u32> = metas
            .iter()
            .filter(|c| !self.client.cache.contains(&self.cache_key(ObjectKind::Chunk, c.no, c.version)))
            .map(|c| c.no)
            .take(PREFETCH_CHUNKS)
            .collect();
        let keys: Vec<Vec<u8>> =
            wanted.iter().map(|&no| object_key(&self.index_id, ObjectKind::Chunk, &self.chunk_token(no))).collect();
        let got = self.client.store.get_many(&keys)?;
        Ok(Prefetched(wanted.into_iter().zip(got).filter_map(|(no, v)| Some((no, v?))).collect()))
    }

    pub(crate) fn load_chunk(&self, m: &Manifest, meta: &ChunkMeta, pre: Option<&Prefetched>) -> Result<Arc<Chunk>> {
        let ck = self.cache_key(ObjectKind::Chunk, meta.no, meta.version);
        if let Some(Cached::Chunk(c)) = self.client.cache.get(&ck) {
            return Ok(c);
        }
        let token = self.chunk_token(meta.no);
        let fetched;
        let sealed = match pre.and_then(|p| p.0.get(&meta.no)) {
            Some(bytes) => bytes,
            None => {
                fetched = self.client.store.get(&object_key(&self.index_id, ObjectKind::Chunk, &token))?.ok_or_else(
                    || Error::integrity(format!("chunk {} of index '{}' is missing", meta.no, self.name)),
                )?;
                &fetched
            }
        };
        let chunk =
            Chunk::open(&self.keys, &token, meta.version, sealed, m.config.dimension as usize, m.config.precision)?;
        if chunk.len() != meta.count as usize {
            return Err(Error::integrity(format!(
                "chunk {} holds {} items, manifest says {}",
                meta.no,
                chunk.len(),
                meta.count
            )));
        }
        let chunk = Arc::new(chunk);
        self.client.cache.insert(ck, Cached::Chunk(chunk.clone()));
        Ok(chunk)
    }

    pub(crate) fn load_bucket(&self, m: &Manifest, b: usize) -> Result<Arc<Bucket>> {
        let version = m.buckets[b];
        if version == 0 {
            return Ok(Arc::new(Bucket::default()));
        }
        let ck = self.cache_key(ObjectKind::Bucket, b as u32, version);
        if let Some(Cached::Bucket(x)) = self.client.cache.get(&ck) {
            return Ok(x);
        }
        let token = self.bucket_token(b);
        let sealed = self
            .client
            .store
            .get(&object_key(&self.index_id, ObjectKind::Bucket, &token))?
            .ok_or_else(|| Error::integrity(format!("directory bucket {b} of index '{}' is missing", self.name)))?;
        let plain = self.keys.open(ObjectKind::Bucket, &token, version, &sealed)?;
        let bucket = Arc::new(Bucket::decode(&plain)?);
        self.client.cache.insert(ck, Cached::Bucket(bucket.clone()));
        Ok(bucket)
    }

    fn load_contents(&self, token: &Token, version: u64) -> Result<Vec<u8>> {
        let sealed = self
            .client
            .store
            .get(&object_key(&self.index_id, ObjectKind::Contents, token))?
            .ok_or_else(|| Error::integrity("an item's contents object is missing"))?;
        Ok(self.keys.open(ObjectKind::Contents, token, version, &sealed)?.to_vec())
    }

    // ----- getters ------------------------------------------------------------

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The committed state, for the getters (READ permission, as SPEC §7 says).
    fn readable_state(&self) -> Result<Arc<Snapshot>> {
        self.begin_read(Access::default())
    }

    pub fn config(&self) -> Result<IndexConfig> {
        Ok(self.readable_state()?.manifest.config)
    }

    pub fn dimension(&self) -> Result<u32> {
        Ok(self.config()?.dimension)
    }

    pub fn metric(&self) -> Result<Metric> {
        Ok(self.config()?.metric)
    }

    pub fn n_lists(&self) -> Result<u32> {
        Ok(self.readable_state()?.manifest.n_lists)
    }

    /// `Training` while a training run of this handle is under way (queries
    /// then still use the committed state), else the committed state.
    pub fn training_state(&self) -> Result<TrainingState> {
        let committed = self.readable_state()?.manifest.training;
        Ok(if self.training.load(Ordering::Acquire) { TrainingState::Training } else { committed })
    }

    pub fn num_vectors(&self, access: Access<'_>) -> Result<u64> {
        Ok(self.begin_read(access)?.manifest.num_vectors)
    }

    // ----- reads ----------------------------------------------------------------

    /// Looks up each id; `None` where an id is not in the index.
    pub fn get(&self, ids: &[&str], include: u32, access: Access<'_>) -> Result<Vec<Option<Item>>> {
        check_include(include)?;
        for id in ids {
            validate_id(id)?;
        }
        let snap = self.begin_read(access)?;
        self.read_consistent(snap, |snap| self.get_in(&snap.manifest, ids, include))
    }

    fn get_in(&self, m: &Manifest, ids: &[&str], include: u32) -> Result<Vec<Option<Item>>> {
        ids.iter()
            .map(|id| {
                let token = self.id_token(id);
                let bucket = self.load_bucket(m, m.bucket_of(&token))?;
                let Some(entry) = bucket.find(&token).copied() else { return Ok(None) };
                let meta = m
                    .chunks
                    .iter()
                    .find(|c| c.no == entry.chunk)
                    .ok_or_else(|| Error::integrity("directory names a chunk the manifest does not list"))?;
                let chunk = self.load_chunk(m, meta, None)?;
                let slot = chunk.slot_of(id).ok_or_else(|| Error::integrity("an item is missing from its chunk"))?;
                Ok(Some(Item {
                    id: (*id).to_owned(),
                    vector: (include & include::VECTOR != 0).then(|| chunk.vector(slot).to_vec()),
                    metadata: if include & include::METADATA != 0 { chunk.metadata[slot].clone() } else { None },
                    contents: if include & include::CONTENTS != 0 && entry.contents_version != 0 {
                        Some(self.load_contents(&token, entry.contents_version)?)
                    } else {
                        None
                    },
                }))
            })
            .collect()
    }

    /// Every id, in byte order, from `offset`, at most `limit` (0 = all).
    pub fn list_ids(&self, offset: usize, limit: usize, access: Access<'_>) -> Result<Vec<String>> {
        let snap = self.begin_read(access)?;
        let mut ids = self.read_consistent(snap, |snap| {
            let m = &snap.manifest;
            let mut ids = Vec::with_capacity(m.num_vectors as usize);
            for meta in &m.chunks {
                ids.extend(self.load_chunk(m, meta, None)?.ids.iter().cloned());
            }
            Ok(ids)
        })?;
        ids.sort_unstable();
        let end = if limit == 0 { ids.len() } else { offset.saturating_add(limit).min(ids.len()) };
        Ok(ids.drain(offset.min(ids.len())..end).collect())
    }

    /// `nq` queries of `dim` floats each, row-major; each gets up to `top_k`
    /// hits sorted by ascending distance.
    pub fn query(
        &self,
        queries: &[f32],
        nq: usize,
        dim: usize,
        params: &QueryParams<'_>,
        access: Access<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        check_include(params.include)?;
        if params.top_k == 0 || params.top_k > MAX_TOP_K {
            return Err(Error::invalid(format!("top_k must be 1 to {MAX_TOP_K}, got {}", params.top_k)));
        }
        let expected = nq.checked_mul(dim).ok_or_else(|| Error::invalid("nq * dim overflows"))?;
        if queries.len() != expected {
            return Err(Error::invalid(format!("{} query floats given, nq * dim = {expected}", queries.len())));
        }
        check_finite(queries, "query")?;
        let filter = params.filter.map(Filter::parse).transpose()?;
        let snap = self.begin_read(access)?;
        self.read_consistent(snap, |snap| self.query_in(snap, queries, nq, dim, params, filter.as_ref()))
    }

    fn query_in(
        &self,
        snap: &Snapshot,
        queries: &[f32],
        nq: usize,
        dim: usize,
        params: &QueryParams<'_>,
        filter: Option<&Filter>,
    ) -> Result<Vec<Vec<Hit>>> {
        let m = &snap.manifest;
        if nq == 0 {
            return Ok(Vec::new());
        }
        if dim == 0 || (m.config.dimension != 0 && dim != m.config.dimension as usize) {
            return Err(Error::DimensionMismatch(format!("query dim {dim} != index dim {}", m.config.dimension)));
        }
        if m.config.dimension == 0 {
            return Ok((0..nq).map(|_| Vec::new()).collect()); // empty index, dimension not fixed yet
        }
        let q = search::Queries::new(queries, nq, dim, m.config.metric, params.top_k, filter);
        let hits = if m.training == TrainingState::Trained {
            self.ivf_scan(snap, &q, params)?
        } else {
            let work: Vec<search::Work<'_>> =
                m.chunks.iter().map(|c| search::Work { chunks: vec![c], queries: None }).collect();
            self.scan(m, &work, &q)?
        };
        hits.into_iter().map(|row| row.into_iter().map(|h| self.materialize(m, h, params.include)).collect()).collect()
    }

    /// IVF search: each query scans the lists of its `n_probes` nearest
    /// centroids; work is grouped by list so a list's chunks are read once
    /// for all the queries that probe it. With `greedy`, a query that found
    /// fewer than top_k hits (a selective filter) probes further lists until
    /// it has them or every list is scanned.
    fn ivf_scan(
        &self,
        snap: &Snapshot,
        q: &search::Queries<'_>,
        params: &QueryParams<'_>,
    ) -> Result<Vec<Vec<search::Hit>>> {
        let m = &snap.manifest;
        let centroids = self.load_centroids(m)?;
        let n_lists = m.n_lists;
        let n_probes = match params.n_probes {
            0 => ivf::auto_n_probes(n_lists),
            p => p.min(n_lists),
        } as usize;
        let by_list = snap.chunks_by_list();
        let want = if params.greedy { n_lists as usize } else { n_probes };
        let rank = |i: usize| centroids.nearest(m.config.metric, &q.data[i * q.dim..(i + 1) * q.dim], want);
        let order: Vec<Vec<u32>> = if q.n == 1 {
            vec![rank(0)] // not worth waking the pool
        } else {
            self.client.pool.install(|| {
                use rayon::prelude::*;
                (0..q.n).into_par_iter().map(rank).collect()
            })
        };
        let mut hits: Vec<Vec<search::Hit>> = (0..q.n).map(|_| Vec::new()).collect();
        let mut pending: Vec<u32> = (0..q.n as u32).collect();
        let mut probed = 0usize;
        while !pending.is_empty() && probed < n_lists as usize {
            let upto = (probed + n_probes).min(n_lists as usize);
            let mut queries_of: Vec<Vec<u32>> = vec![Vec::new(); n_lists as usize];
            for &qi in &pending {
                for &list in &order[qi as usize][probed..upto.min(order[qi as usize].len())] {
                    queries_of[list as usize].push(qi);
                }
            }
            let work: Vec<search::Work<'_>> = queries_of
                .into_iter()
                .enumerate()
                .filter(|(list, qs)| !qs.is_empty() && !by_list[*list].is_empty())
                .map(|(list, qs)| search::Work {
                    chunks: by_list[list].iter().map(|&i| &m.chunks[i]).collect(),
                    queries: Some(qs),
                })
                .collect();
            let round = self.scan(m, &work, q)?;
            for &qi in &pending {
                let mine = &mut hits[qi as usize];
                mine.extend(round[qi as usize].iter().map(|h| search::Hit {
                    distance: h.distance,
                    chunk: h.chunk.clone(),
                    slot: h.slot,
                }));
                mine.sort_by(|a, b| a.distance.total_cmp(&b.distance));
                mine.truncate(params.top_k);
            }
            probed = upto;
            if !params.greedy {
                break;
            }
            pending.retain(|&qi| hits[qi as usize].len() < params.top_k);
        }
        Ok(hits)
    }

    /// Scans `work`, its chunks read ahead in one store call where that pays.
    fn scan(&self, m: &Manifest, work: &[search::Work<'_>], q: &search::Queries<'_>) -> Result<Vec<Vec<search::Hit>>> {
        let metas: Vec<&ChunkMeta> = work.iter().flat_map(|w| w.chunks.iter().copied()).collect();
        let pre = self.prefetch(&metas)?;
        search::scan(&self.client.pool, work, &|meta: &ChunkMeta| self.load_chunk(m, meta, Some(&pre)), q)
    }

    fn materialize(&self, m: &Manifest, h: search::Hit, include: u32) -> Result<Hit> {
        let id = h.chunk.ids[h.slot].clone();
        let contents = if include & include::CONTENTS != 0 {
            let token = self.id_token(&id);
            let bucket = self.load_bucket(m, m.bucket_of(&token))?;
            match bucket.find(&token) {
                Some(e) if e.contents_version != 0 => Some(self.load_contents(&token, e.contents_version)?),
                _ => None,
            }
        } else {
            None
        };
        Ok(Hit {
            distance: h.distance,
            metadata: if include & include::METADATA != 0 { h.chunk.metadata[h.slot].clone() } else { None },
            vector: (include & include::VECTOR != 0).then(|| h.chunk.vector(h.slot).to_vec()),
            contents,
            id,
        })
    }

    // ----- index removal ----------------------------------------------------------

    /// Removes every object of the index; root key only. The handle answers
    /// `NOT_FOUND` afterwards.
    pub fn delete_index(&self, access: Access<'_>) -> Result<()> {
        self.authorize(access, Need::Root)?;
        let _w = self.write_lock.lock();
        let hkey = header_key(&self.name);
        let header =
            self.client.store.get(&hkey)?.ok_or_else(|| Error::NotFound(format!("no index named '{}'", self.name)))?;
        let mut batch = WriteBatch::default();
        for (k, _) in self.client.store.scan_prefix(&index_prefix(&self.index_id))? {
            batch.delete(k);
        }
        batch.delete(hkey.clone());
        batch.expect = Some((hkey, Some(header)));
        if !self.client.store.write(batch)? {
            return Err(Error::Storage("the index's key record changed during delete; nothing was deleted".into()));
        }
        self.deleted.store(true, Ordering::Release);
        self.client.cache.remove_index(&self.index_id);
        Ok(())
    }
}

fn check_include(include: u32) -> Result<()> {
    if include & !include::ALL != 0 {
        return Err(Error::invalid(format!("unknown include bits 0x{:x}", include & !include::ALL)));
    }
    Ok(())
}

pub(crate) fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!("id must be 1 to {MAX_ID_BYTES} bytes, got {}", id.len())));
    }
    if id.contains('\0') {
        return Err(Error::invalid("id contains a NUL character"));
    }
    Ok(())
}

pub(crate) fn check_finite(v: &[f32], what: &str) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::invalid(format!("{what} value at position {i} is not finite (NaN or infinity)"))),
    }
}
