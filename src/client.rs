//! A client: one backing store, one worker pool and one decrypted-object
//! cache, shared by every index it opens.

use std::sync::Arc;

use crate::cache::Cache;
use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::index::{key_record_key, validate_name, Access, Env, Index, IndexConfig};
use crate::store::{self, Store};

/// Default budget of the decrypted-object cache.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Worker threads inside one call; 0 = one per available core.
    pub threads: usize,
    /// Bytes of decrypted chunks and directory buckets kept in memory;
    /// 0 disables the cache (every read decrypts).
    pub cache_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { threads: 0, cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

pub struct Client {
    env: Arc<Env>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn check_options(options: &ClientOptions) -> Result<()> {
    const MAX_THREADS: usize = 1024;
    if options.threads > MAX_THREADS {
        return Err(Error::invalid(format!("threads must be 0 to {MAX_THREADS}, got {}", options.threads)));
    }
    Ok(())
}

impl Client {
    /// Opens the store `uri` names (`memory:`, `file:/dir` or a plain path,
    /// `postgres://user@host:port/db?table=name`).
    pub fn open(uri: &str, options: ClientOptions) -> Result<Client> {
        check_options(&options)?;
        Client::with_store(store::open(uri)?, options)
    }

    /// A client over a store the caller built (tests wrap stores to inject
    /// faults; only in builds with the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    pub fn over_store(store: Arc<dyn Store>, options: ClientOptions) -> Result<Client> {
        check_options(&options)?;
        Client::with_store(store, options)
    }

    fn with_store(store: Arc<dyn Store>, options: ClientOptions) -> Result<Client> {
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vx-worker-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
        Ok(Client { env: Arc::new(Env::new(store, pool, Cache::new(options.cache_bytes))) })
    }

    /// Names of every index in the store, sorted.
    pub fn list_indexes(&self) -> Result<Vec<String>> {
        let prefix = key_record_key("");
        self.env
            .store
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(k, _)| {
                String::from_utf8(k[prefix.len()..].to_vec())
                    .map_err(|_| Error::integrity("an index name in the store is not UTF-8"))
            })
            .collect()
    }

    pub fn create_index(&self, name: &str, index_key: &SecretKey, config: IndexConfig) -> Result<Index> {
        Index::create(self.env.clone(), name, index_key, config, None)
    }

    /// Plays an attacker with write access to the store: creates an index
    /// whose key record claims `index_id` (another index's, read from the
    /// store in clear). Only in builds with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub fn forge_index_with_id(
        &self,
        name: &str,
        index_key: &SecretKey,
        config: IndexConfig,
        index_id: [u8; 16],
    ) -> Result<Index> {
        Index::create(self.env.clone(), name, index_key, config, Some(index_id))
    }

    /// Opens an existing index with the root key (or, with `access.user`, a user's key).
    pub fn load_index(&self, name: &str, access: Access<'_>) -> Result<Index> {
        validate_name(name)?;
        Index::load(self.env.clone(), name, access)
    }

    /// The backing store itself, for tests that tamper with what vx wrote
    /// (only in builds with the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    pub fn raw_store(&self) -> Arc<dyn Store> {
        self.env.store.clone()
    }

    pub fn threads(&self) -> usize {
        self.env.pool.current_num_threads()
    }

    /// Bytes the decrypted cache holds now, as charged against
    /// `ClientOptions::cache_bytes` (what its objects take in memory).
    pub fn cached_bytes(&self) -> usize {
        self.env.cache.bytes()
    }
}
