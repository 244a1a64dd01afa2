//! One opened index. Reads work on an immutable snapshot of the manifest
//! without locks; writes are serialised by a writer lock, build a plan of new
//! sealed objects and a new manifest, and commit it with a compare-and-set,
//! so a failed write leaves the stored index and this handle as they were.
//!
//! | file | concern |
//! | --- | --- |
//! | `types.rs` | public value types and the validation of what callers pass |
//! | `access.rs` | credentials, the permission check of every call, user keys, rotation |
//! | `keyring.rs` | the key record (`n/<name>`): wraps, registry, generation |
//! | `snapshot.rs` | the committed state a call reads, consistent reads, epochs |
//! | `objects.rs` | the store's key layout, tokens, the cache's entries, one loader |
//! | `manifest.rs` | the sealed manifest: configuration, counts, every object's version |
//! | `chunk.rs` | chunks (rows of one list) and directory buckets, their packing |
//! | `directory.rs` | the id directory: runs and buckets, lookups, merges, folds |
//! | `presence.rs` | membership filters of directory buckets and runs: lookups of absent ids |
//! | `read.rs` | get, list_ids, query and the IVF probe loop |
//! | `listing.rs` | metadata-only queries: filter, order by a field, page |
//! | `derived.rs` | in-memory indexes derived from the rows, kept in step chunk by chunk |
//! | `fields.rs` | the index of filterable fields: filters' candidate rows |
//! | `terms.rs` | the term index of text fields: BM25 keyword ranking |
//! | `search.rs` | the scan: distances and per-query top-k over chunks |
//! | `commit.rs` | the one commit path: plans of sealed objects, compare-and-set |
//! | `write.rs` | upsert and delete plans |
//! | `ivf.rs` | training: k-means, centroids, re-laying out the lists |

mod access;
mod chunk;
mod codes;
mod commit;
mod derived;
mod directory;
mod fields;
#[cfg(all(test, feature = "test-hooks"))]
mod forgery_tests;
mod ivf;
mod keyring;
mod listing;
mod manifest;
mod objects;
mod presence;
mod read;
mod search;
mod snapshot;
mod terms;
mod types;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::crypto::{DataKeys, SecretKey};
use crate::error::{Error, Result};
use crate::store::{Store, WriteBatch};
use access::{Bound, CallCredentials, LastRecord, Signing, PERMISSION_ROOT};
use keyring::KeyRecord;
use manifest::{Manifest, Opener};
use objects::{Layout, Tokens};
use snapshot::Snapshot;

pub use ivf::{TrainParams, TrainReport, DEFAULT_SEED};
pub use keyring::UserEntry;
pub use listing::MetadataQuery;
pub use objects::opened_bytes;
pub(crate) use objects::{key_record_key, ObjectCache};
pub use snapshot::{Epoch, EPOCH_LEN};
pub(crate) use types::validate_name;
pub use types::{
    include, Access, Fusion, Hit, IndexConfig, IndexType, Item, ItemRef, Precision, QueryParams, TrainingState,
    DEFAULT_ALPHA, DEFAULT_QUANTIZER_BITS, DEFAULT_RRF_K, MAX_CONTENTS_BYTES, MAX_FIELD_PATH_BYTES,
    MAX_FILTERABLE_FIELDS, MAX_ID_BYTES, MAX_METADATA_BYTES, MAX_QUANTIZER_BITS, MAX_RERANK_MULT,
};

/// Permission bits of user keys (the C ABI's VX_PERMISSION_*).
pub const PERMISSION_READ: u32 = keyring::PERMISSION_READ as u32;
pub const PERMISSION_WRITE: u32 = keyring::PERMISSION_WRITE as u32;

/// What every index of one client shares: the store, the worker pool of
/// parallel calls, the decrypted-object cache and the writers' locks.
pub(crate) struct Env {
    pub store: Arc<dyn Store>,
    pub pool: rayon::ThreadPool,
    pub cache: ObjectCache,
    /// One lock per index id, shared by every handle of this client on that
    /// index: their writes take turns instead of racing each other's
    /// compare-and-sets (a slow writer could lose every race to faster
    /// handles of the same process and give up). Other clients and
    /// processes still race, and retry.
    pub writers: Mutex<HashMap<[u8; 16], Weak<Mutex<()>>>>,
}

impl Env {
    pub fn new(store: Arc<dyn Store>, pool: rayon::ThreadPool, cache: ObjectCache) -> Env {
        Env { store, pool, cache, writers: Mutex::default() }
    }

    /// The write lock the handles of this client on index `id` share.
    fn write_lock(&self, id: [u8; 16]) -> Arc<Mutex<()>> {
        let mut writers = self.writers.lock();
        if let Some(lock) = writers.get(&id).and_then(Weak::upgrade) {
            return lock;
        }
        writers.retain(|_, w| w.strong_count() > 0);
        let lock = Arc::new(Mutex::new(()));
        writers.insert(id, Arc::downgrade(&lock));
        lock
    }
}

pub struct Index {
    env: Arc<Env>,
    name: String,
    layout: Layout,
    keys: DataKeys,
    tokens: Tokens,
    /// The writer key of the newest key record seen: its public half checks
    /// manifests; its secret half (with WRITE credentials) signs them.
    signing: RwLock<Signing>,
    /// The last key record whose signature was checked, with its bytes.
    last_record: Mutex<Option<LastRecord>>,
    bound: Mutex<Bound>,
    call_credentials: CallCredentials,
    /// Highest key-record generation seen; a record that goes back is refused.
    generation: AtomicU32,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Shared by this client's handles on the index (`Env::write_lock`).
    write_lock: Arc<Mutex<()>>,
    poisoned: AtomicBool,
    deleted: AtomicBool,
    /// A training run of this handle is under way.
    training: AtomicBool,
    /// The in-memory indexes derived from the rows (`derived.rs`): of the
    /// filterable fields and of the text fields' terms.
    fields: derived::Derived<fields::FieldIndex>,
    terms: derived::Derived<terms::TermIndex>,
    /// Membership filters of the directory objects this handle has read.
    filters: presence::DirectoryFilters,
    /// Tests: seal coded chunks as 0.11 did, each unit apart (set before
    /// any chunk is packed: it tells the plans no chunk is).
    #[cfg(test)]
    seal_units_apart: AtomicBool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Index {
    /// Creates an index with a random id (`claimed_id` only in tests that
    /// play an attacker who forges a record claiming another index's id).
    pub(crate) fn create(
        env: Arc<Env>,
        name: &str,
        root: &SecretKey,
        config: IndexConfig,
        claimed_id: Option<[u8; 16]>,
    ) -> Result<Index> {
        validate_name(name)?;
        let config = config.resolved()?;
        let record_key = key_record_key(name);
        if env.store.get(&record_key)?.is_some() {
            return Err(Error::AlreadyExists(format!("index '{name}' already exists")));
        }
        let index_id = match claimed_id {
            Some(id) => id,
            None => {
                let mut id = [0u8; 16];
                crate::crypto::random_bytes(&mut id)?;
                id
            }
        };
        let (record, secrets) = KeyRecord::new(index_id, name, root)?;
        let keys = DataKeys::new(secrets.data_keys.clone(), index_id);
        let signing = Signing::new(&record, &secrets);
        let mut manifest = Manifest::new(name, config);
        manifest.version = 1;
        manifest.encryptions = 1;
        manifest.key_generation = record.generation;
        let stored = manifest.seal(&keys.sealer(manifest.key_version), &*signing.signer()?, &index_id)?;
        let layout = Layout { index_id };
        let mut batch = WriteBatch::default();
        let encoded = record.encode();
        batch.put(record_key.clone(), encoded.clone());
        batch.put(layout.manifest(), stored.clone());
        batch.put(layout.version_hint(), manifest.version.to_le_bytes().to_vec());
        batch.expect(record_key, None);
        if !env.store.write(batch)? {
            return Err(Error::AlreadyExists(format!("index '{name}' already exists")));
        }
        let bound = Bound::new(root.clone(), None, encoded, record.generation, PERMISSION_ROOT);
        Index::from_parts(env, name, &record, keys, signing, bound, Snapshot::new(manifest, stored))
    }

    /// Opens an index with the root key (`access.user = None`) or a user's
    /// key; the handle is bound to those credentials.
    pub(crate) fn load(env: Arc<Env>, name: &str, access: Access<'_>) -> Result<Index> {
        validate_name(name)?;
        let key = access.key.ok_or_else(|| Error::NullArgument("key".into()))?;
        let mut attempt = 0;
        let mut previous_root: Option<Vec<u8>> = None;
        let (encoded, record, unlocked, keys, stored, manifest) = loop {
            let encoded = env
                .store
                .get(&key_record_key(name))?
                .ok_or_else(|| Error::NotFound(format!("no index named '{name}'")))?;
            let record = KeyRecord::decode(&encoded, name)?;
            let unlocked = record.unlock(name, key, access.user)?;
            let keys = DataKeys::new(unlocked.secrets.data_keys.clone(), record.index_id);
            let stored = env
                .store
                .get(&Layout { index_id: record.index_id }.manifest())?
                .ok_or_else(|| Error::integrity(format!("manifest of index '{name}' is missing")))?;
            // One open per load: no bound on the key version is needed here.
            let tokens = Tokens::new(&keys);
            let at = Opener {
                store: &*env.store,
                keys: &keys,
                tokens: &tokens,
                layout: Layout { index_id: record.index_id },
                name,
            };
            let root = Manifest::open_root(&at, u32::MAX, &stored, &record.writer_public);
            let root_authentic = root.is_ok();
            let opened = root.and_then(|root| root.with_pages(&at, None));
            // A manifest under a newer key record than the one just read: a
            // key change committed both in between, or the key record was put
            // back from a backup (or the manifest forged) if it stays so.
            attempt += 1;
            let last = attempt == snapshot::READ_ATTEMPTS;
            match opened {
                Ok(manifest) if record.generation >= manifest.key_generation => {
                    break (encoded, record, unlocked, keys, stored, manifest);
                }
                Ok(manifest) if last => {
                    return Err(Error::integrity(format!(
                        "key record of index '{name}' (generation {}) is older than its manifest says ({}): it was rolled back",
                        record.generation, manifest.key_generation
                    )));
                }
                // A page that is there but wrong under an authentic root is
                // no race (`Error::Missing`).
                Err(e) if root_authentic && !e.may_be_race() => return Err(e),
                // Pages gone under an authentic root that moved on since
                // the previous attempt, every time: other writers' commits.
                Err(_) if last && root_authentic && previous_root.as_ref() != Some(&stored) => {
                    return Err(snapshot::kept_changing(name));
                }
                // Only a race with a key change or a commit (which deletes
                // the pages an older root names) is worth another attempt.
                Err(e) if last || !matches!(e, Error::Integrity(_) | Error::Missing(_)) => return Err(e),
                _ => {
                    previous_root = Some(stored);
                    snapshot::backoff(attempt as u32)?
                }
            }
        };
        let signing = Signing::new(&record, &unlocked.secrets);
        let bound = Bound::new(key.clone(), access.user.copied(), encoded, record.generation, unlocked.perms);
        Index::from_parts(env, name, &record, keys, signing, bound, Snapshot::new(manifest, stored))
    }

    fn from_parts(
        env: Arc<Env>,
        name: &str,
        record: &KeyRecord,
        keys: DataKeys,
        signing: Signing,
        bound: Bound,
        snap: Snapshot,
    ) -> Result<Index> {
        Ok(Index {
            write_lock: env.write_lock(record.index_id),
            env,
            name: name.to_owned(),
            layout: Layout { index_id: record.index_id },
            tokens: Tokens::new(&keys),
            keys,
            signing: RwLock::new(signing),
            last_record: Mutex::new(None),
            bound: Mutex::new(bound),
            call_credentials: CallCredentials::new()?,
            generation: AtomicU32::new(record.generation),
            snapshot: RwLock::new(Arc::new(snap)),
            poisoned: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            training: AtomicBool::new(false),
            #[cfg(test)]
            seal_units_apart: AtomicBool::new(false),
            fields: Default::default(),
            terms: Default::default(),
            filters: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index id, which the key record holds in clear (tests that forge
    /// records use it; only in builds with the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    pub fn index_id(&self) -> [u8; 16] {
        self.layout.index_id
    }
}
