//! The committed state a call works from: the newest manifest (reloaded
//! only when the clear-text version hint moved), reads that stay consistent
//! while other handles and processes commit, and the caller-kept epoch that
//! detects a rollback of the whole store.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::access::Need;
use super::manifest::{Manifest, Opener};
use super::{key_record_key, Access, Index};
use crate::crypto::{digest, PublicKey, DIGEST_LEN};
use crate::error::{Error, Result};

/// How often a read restarts on a newer state when writes keep landing
/// under it, each time after a random, growing pause ([`backoff`]) so a
/// burst of commits passes (and how often a stale key record is re-read).
pub(super) const READ_ATTEMPTS: usize = 8;

/// Bytes of an epoch: the version (8, little-endian) and the SHA-256 of the
/// stored manifest (32).
pub const EPOCH_LEN: usize = 8 + DIGEST_LEN;

/// A committed state of an index, named so that no other state has the
/// same name (see [`Index::epoch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(pub [u8; EPOCH_LEN]);

impl Epoch {
    fn of(snap: &Snapshot) -> Epoch {
        let mut e = [0u8; EPOCH_LEN];
        e[..8].copy_from_slice(&snap.manifest.version.to_le_bytes());
        e[8..].copy_from_slice(&digest(&snap.stored));
        Epoch(e)
    }

    /// The state's version (a counter of commits).
    pub fn version(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().unwrap())
    }
}

/// The manifest a handle currently works from, with its root's exact stored
/// bytes (the compare-and-set guard of the next write).
pub(crate) struct Snapshot {
    pub manifest: Manifest,
    pub stored: Vec<u8>,
}

impl Snapshot {
    pub(crate) fn new(manifest: Manifest, stored: Vec<u8>) -> Snapshot {
        Snapshot { manifest, stored }
    }
}

/// What a call that lost every race to other writers reports: nothing it
/// read was wrong (each failure came with a newer committed state), and
/// nothing was written; calling again is safe.
pub(super) fn kept_changing(name: &str) -> Error {
    Error::Storage(format!(
        "conflict: other writers kept changing index '{name}' while this call read it; gave up after {READ_ATTEMPTS} attempts"
    ))
}

/// Sleeps a random time below 2^attempt ms (at most ~0.5 s): racing
/// readers and writers spread out instead of colliding again.
pub(super) fn backoff(attempt: u32) -> Result<()> {
    let mut r = [0u8; 4];
    crate::crypto::random_bytes(&mut r)?;
    let cap_us = 1000u64 << attempt.min(9);
    std::thread::sleep(std::time::Duration::from_micros(u64::from(u32::from_le_bytes(r)) % cap_us));
    Ok(())
}

impl Index {
    /// What opening this index's stored manifests needs.
    pub(super) fn opener(&self) -> Opener<'_> {
        Opener {
            store: &*self.env.store,
            keys: &self.keys,
            tokens: &self.tokens,
            layout: self.layout,
            name: &self.name,
        }
    }

    /// The start of every read: checks the credentials and returns the
    /// newest committed snapshot, reading the key record and the version
    /// hint in one store round trip (what a read costs on a remote store).
    pub(super) fn begin_read(&self, access: Access<'_>) -> Result<Arc<Snapshot>> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!("index '{}' was deleted", self.name)));
        }
        let mut got = self.env.store.get_many(&[key_record_key(&self.name), self.layout.version_hint()])?;
        let (hint, record) = (got.pop().flatten(), got.pop().flatten());
        let record = record.ok_or_else(|| Error::NotFound(format!("index '{}' was deleted", self.name)))?;
        self.check_permission(record, access, Need::Read)?;
        let snap = self.current_with_hint(hint, access)?;
        // A manifest committed under a newer key record than the one just
        // checked: check again against the record now stored, which must
        // be at least that new (one put back from a backup is not).
        if self.generation.fetch_max(snap.manifest.key_generation, Ordering::AcqRel) < snap.manifest.key_generation {
            self.authorize(access, Need::Read)?;
        }
        Ok(snap)
    }

    /// The newest committed snapshot: a cheap version-hint read, and a reload
    /// of the manifest only when another handle or process has written.
    pub(super) fn current(&self) -> Result<Arc<Snapshot>> {
        self.current_with_hint(self.env.store.get(&self.layout.version_hint())?, Access::default())
    }

    /// The committed state as the stored manifest says, whatever the hint
    /// says: the hint is clear text, and one pinned to an old value by the
    /// store would otherwise freeze this handle on that state.
    pub(super) fn reload(&self) -> Result<Arc<Snapshot>> {
        self.reload_as(Access::default())
    }

    /// As [`Index::reload`], opening a newer key record (if the manifest was
    /// committed under one) with `access`'s credentials.
    pub(super) fn reload_as(&self, access: Access<'_>) -> Result<Arc<Snapshot>> {
        self.current_with_hint(None, access)
    }

    /// As [`Index::current`], with the version hint already read.
    fn current_with_hint(&self, hint: Option<Vec<u8>>, access: Access<'_>) -> Result<Arc<Snapshot>> {
        self.newest(hint, access)?.ok_or_else(|| kept_changing(&self.name))
    }

    /// The newest committed snapshot for a write's next attempt: as
    /// [`Index::current`] (`fresh`: as [`Index::reload`]), `None` when other
    /// writers' commits kept removing what each root read named (the write
    /// counts that as one more lost race).
    pub(super) fn newest_for_write(&self, fresh: bool) -> Result<Option<Arc<Snapshot>>> {
        let hint = if fresh { None } else { self.env.store.get(&self.layout.version_hint())? };
        self.newest(hint, Access::default())
    }

    /// As [`Index::current_with_hint`], `None` after [`READ_ATTEMPTS`] races
    /// lost to other writers.
    fn newest(&self, hint: Option<Vec<u8>>, access: Access<'_>) -> Result<Option<Arc<Snapshot>>> {
        let snap = self.snapshot.read().clone();
        if hint.as_deref() == Some(&snap.manifest.version.to_le_bytes()[..]) {
            return Ok(Some(snap));
        }
        let read_root = || {
            self.env
                .store
                .get(&self.layout.manifest())?
                .ok_or_else(|| Error::integrity(format!("manifest of index '{}' is missing", self.name)))
        };
        let mut stored = read_root()?;
        let mut attempt = 1;
        // A root seen on the way that did not authenticate: a store that
        // keeps writing such roots must not turn the alarm into a conflict.
        let mut unauthentic: Option<String> = None;
        let manifest = loop {
            if stored == snap.stored {
                return Ok(Some(snap));
            }
            let failure = match self.open_root(&snap, &stored, access) {
                Err(Error::Integrity(msg)) => {
                    unauthentic = Some(msg.clone());
                    msg
                }
                Err(e) => return Err(e),
                Ok(root) => match root.with_pages(&self.opener(), Some(&snap.manifest)) {
                    Ok(manifest) => break manifest,
                    // A page that is there but wrong is no race (`Error::Missing`).
                    Err(Error::Missing(msg)) => msg,
                    Err(e) => return Err(e),
                },
            };
            // A writer committed after the root was read and deleted the
            // pages it replaced: open the newer root, after a pause that
            // lets a burst of commits pass. A failure on a root that stays
            // current is tampering.
            backoff(attempt as u32)?;
            let now = read_root()?;
            if now == stored {
                return Err(Error::Integrity(failure));
            }
            if attempt == READ_ATTEMPTS {
                return unauthentic.map_or(Ok(None), |msg| Err(Error::Integrity(msg)));
            }
            (stored, attempt) = (now, attempt + 1);
        };
        if manifest.version < snap.manifest.version {
            return Err(Error::integrity(format!(
                "manifest of index '{}' went back from version {} to {}",
                self.name, snap.manifest.version, manifest.version
            )));
        }
        let fresh = Arc::new(Snapshot::new(manifest, stored));
        self.install(fresh.clone());
        Ok(Some(fresh))
    }

    /// Opens the stored root `stored` (its pages are loaded by
    /// [`Manifest::with_pages`]), reading the key record again if it was
    /// committed under a newer one.
    fn open_root(&self, snap: &Snapshot, stored: &[u8], access: Access<'_>) -> Result<Manifest> {
        let open_root = |writer: &PublicKey| {
            // A writer moves one key version at a time; a revocation starts
            // a generation at a version the key record names.
            let max_key_version = snap.manifest.key_version.saturating_add(1).max(self.keys.newest_key_version());
            Manifest::open_root(&self.opener(), max_key_version, stored, writer)
        };
        let writer = self.signing.read().writer_public;
        match open_root(&writer) {
            // Committed with a key record newer than the one this handle
            // opened (a new writer key or data-key generation): open that one.
            Err(Error::Integrity(_)) => {
                self.permissions(self.read_key_record()?, access)?;
                let writer = self.signing.read().writer_public;
                open_root(&writer)
            }
            other => other,
        }
    }

    /// Makes `snap` this handle's current state unless a newer one already is.
    pub(super) fn install(&self, snap: Arc<Snapshot>) {
        let mut slot = self.snapshot.write();
        if slot.manifest.version <= snap.manifest.version {
            *slot = snap;
        }
    }

    /// Runs a read on the newest snapshot. A write committed by another
    /// handle or process while the read runs can remove objects the read's
    /// snapshot names (it then finds them missing); if the manifest moved on
    /// meanwhile, the read runs again on the new state after a pause, so
    /// readers see one committed state or the next, never a false integrity
    /// error (after [`READ_ATTEMPTS`] lost races, a retryable conflict). A
    /// missing object under an unchanged manifest, and an object that is
    /// there but fails its checks under any manifest, are tampering and
    /// reported at once (`Error::Missing`).
    pub(super) fn read_consistent<T>(&self, mut snap: Arc<Snapshot>, f: impl Fn(&Snapshot) -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            match f(&snap) {
                Err(e) if e.may_be_race() => {
                    backoff(attempt as u32)?;
                    let fresh = self.current()?;
                    if fresh.manifest.version == snap.manifest.version {
                        return Err(e);
                    }
                    if attempt == READ_ATTEMPTS {
                        return Err(kept_changing(&self.name));
                    }
                    (snap, attempt) = (fresh, attempt + 1);
                }
                other => return other,
            }
        }
    }

    /// Reloads the manifest now (other handles' and processes' writes are
    /// also picked up automatically at the start of every call).
    pub fn refresh(&self) -> Result<()> {
        self.begin_read(Access::default()).map(|_| ())
    }

    /// The committed state this handle reads, named by its version (which
    /// grows with every write and every key-record change) and the digest of
    /// its manifest (which pins every object and the key record's
    /// generation). A caller who keeps it outside the store can hand it to
    /// [`Index::require_epoch`] later to detect a rollback or a fork of the
    /// store (every object genuine, just old or from another branch), which
    /// nothing inside the store can reveal. READ permission.
    pub fn epoch(&self, access: Access<'_>) -> Result<Epoch> {
        self.begin_read(access)?;
        Ok(Epoch::of(&*self.reload()?))
    }

    /// `INTEGRITY` if the stored state is older than `epoch` (a rollback) or
    /// at its version but another state (a fork); afterwards this handle
    /// also refuses any state older than it. A newer state passes: its
    /// descent from `epoch` cannot be checked without the states between.
    pub fn require_epoch(&self, epoch: &Epoch) -> Result<()> {
        self.begin_read(Access::default())?;
        let have = Epoch::of(&*self.reload()?);
        let (kept, now) = (epoch.version(), have.version());
        if now < kept {
            return Err(Error::integrity(format!(
                "index '{}' is at version {now}, older than the epoch {kept} you kept: the store was rolled back",
                self.name
            )));
        }
        if now == kept && have != *epoch {
            return Err(Error::integrity(format!(
                "index '{}' at version {now} is not the state of the epoch you kept: the store holds another history",
                self.name
            )));
        }
        Ok(())
    }
}
