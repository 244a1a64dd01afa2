//! Who may do what: the credentials of a handle and of each call, checked
//! against the stored key record on every call, and the root's operations
//! on that record (user keys, rotation, deleting the index).
//!
//! | needs | operations |
//! | --- | --- |
//! | READ | query, get, list_ids, num_vectors, epoch, refresh and the getters |
//! | WRITE | upsert, delete, train |
//! | the root key | create/delete/list user keys, rotate_key, delete_index |
//!
//! A deleted user's key opens nothing (`WRONG_KEY`); a key that opens the
//! record without the permission a call needs is `PERMISSION_DENIED`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use super::keyring::{self, KeyRecord, Secrets, Unlocked};
use super::snapshot::READ_ATTEMPTS;
use super::{key_record_key, Access, Index, UserEntry};
use crate::crypto::{PublicKey, SecretKey, Signer, Token, Tokenizer, USER_ID_LEN};
use crate::error::{Error, Result};
use crate::store::WriteBatch;

pub(super) use keyring::PERMISSION_ROOT;

/// What an operation needs (the table above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Need {
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
pub(super) struct Bound {
    key: SecretKey,
    user: Option<[u8; USER_ID_LEN]>,
    checked: Vec<u8>,
    /// Generation of `checked`: if the handle has since seen a newer record
    /// (through another call's key), `checked` coming back is a rollback.
    checked_generation: u32,
    perms: u8,
}

impl Bound {
    pub fn new(key: SecretKey, user: Option<[u8; USER_ID_LEN]>, checked: Vec<u8>, generation: u32, perms: u8) -> Bound {
        Bound { key, user, checked, checked_generation: generation, perms }
    }
}

/// The last key record a handle decoded (its root signature checked).
pub(super) struct LastRecord {
    bytes: Vec<u8>,
    record: KeyRecord,
    /// Counts the records decoded: a new one gets a new serial, so the
    /// serial names these exact bytes.
    serial: u64,
}

/// Credentials given with single calls (`Access::key`) that opened the
/// stored key record on this handle, so that a caller who passes the same
/// key with every call pays for opening the record (key unwraps, two
/// Ed25519 derivations for a root key, the users' registry) once per record,
/// not once per call. An entry is a keyed tag of (key, user id) with the
/// permissions they opened in the record of one [`LastRecord::serial`]: no
/// key material is kept, and any change to the record (a user deleted or
/// re-permissioned, a rotation) is a new record with a new serial, so the
/// entry misses.
pub(super) struct CallCredentials {
    /// Keyed by a random key of this handle: the tags say nothing about the
    /// keys outside it.
    tagger: Tokenizer,
    /// Tag -> (permissions, the record's serial and generation).
    opened: Mutex<HashMap<Token, (u8, u64, u32)>>,
    /// Entries remembered, each after the record was opened in full for
    /// per-call credentials (tests count the memo's misses with it).
    #[cfg(feature = "test-hooks")]
    misses: std::sync::atomic::AtomicUsize,
}

/// Entries a handle remembers; past it, it forgets them all (callers with
/// that many distinct keys pay as before).
const CALL_CREDENTIALS_KEPT: usize = 64;

impl CallCredentials {
    pub fn new() -> Result<CallCredentials> {
        Ok(CallCredentials {
            tagger: Tokenizer::new(&SecretKey::random()?),
            opened: Mutex::new(HashMap::new()),
            #[cfg(feature = "test-hooks")]
            misses: Default::default(),
        })
    }

    fn tag(&self, key: &SecretKey, user: Option<&[u8; USER_ID_LEN]>) -> Token {
        let user: &[u8] = user.map_or(&[], |u| u);
        self.tagger.token(&[key.bytes(), user])
    }

    /// The permissions `tag` opened in the record of `serial`, unless that
    /// record is older than `newest_seen` (an older one coming back is a
    /// rollback: the full check decides).
    fn get(&self, tag: &Token, serial: u64, newest_seen: u32) -> Option<u8> {
        let opened = self.opened.lock();
        let (perms, s, generation) = *opened.get(tag)?;
        (s == serial && generation >= newest_seen).then_some(perms)
    }

    fn remember(&self, tag: Token, perms: u8, serial: u64, generation: u32) {
        #[cfg(feature = "test-hooks")]
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut opened = self.opened.lock();
        if opened.len() >= CALL_CREDENTIALS_KEPT {
            opened.clear();
        }
        opened.insert(tag, (perms, serial, generation));
    }
}

/// The writer key as the newest key record a handle opened names it.
pub(super) struct Signing {
    /// Generation of that record.
    generation: u32,
    pub writer_public: PublicKey,
    /// Present once credentials holding the writer seed (WRITE or the
    /// root) opened that record on this handle.
    signer: Option<Arc<Signer>>,
}

impl Signing {
    pub fn new(record: &KeyRecord, secrets: &Secrets) -> Signing {
        let signer = secrets.writer.as_ref().map(|seed| Arc::new(Signer::from_seed(seed)));
        Signing { generation: record.generation, writer_public: record.writer_public, signer }
    }

    /// The key that signs this handle's commits.
    pub fn signer(&self) -> Result<Arc<Signer>> {
        self.signer
            .clone()
            .ok_or_else(|| Error::PermissionDenied("this handle holds no writer key for the current key record".into()))
    }
}

impl Index {
    pub(super) fn read_key_record(&self) -> Result<Vec<u8>> {
        let gone = || Error::NotFound(format!("index '{}' was deleted", self.name));
        if self.deleted.load(Ordering::Acquire) {
            return Err(gone());
        }
        self.env.store.get(&key_record_key(&self.name))?.ok_or_else(gone)
    }

    /// Opens the stored key record with `key` (and `user`) and checks that it
    /// is this handle's index (the same first data key) and not older than
    /// one already seen, and learns what it holds (see [`Index::learn`]).
    /// Returns the record bytes it opened: a record
    /// older than one seen is read again first, since a call that read it
    /// just before a concurrent key change holds a stale copy, not a
    /// rollback; only a record still older in the store is `INTEGRITY`.
    fn open_key_record(
        &self,
        mut encoded: Vec<u8>,
        key: &SecretKey,
        user: Option<&[u8; USER_ID_LEN]>,
    ) -> Result<(Vec<u8>, KeyRecord, Unlocked)> {
        let mut record = self.decode_key_record(&encoded)?;
        for attempt in 0..=READ_ATTEMPTS {
            let seen = self.generation.load(Ordering::Acquire);
            if record.generation >= seen {
                break;
            }
            if attempt == READ_ATTEMPTS {
                return Err(Error::integrity(format!(
                    "key record of index '{}' went back from generation {seen} to {}",
                    self.name, record.generation
                )));
            }
            encoded = self.read_key_record()?;
            record = self.decode_key_record(&encoded)?;
        }
        if record.index_id != self.layout.index_id {
            return Err(Error::NotFound(format!("index '{}' was deleted and created again", self.name)));
        }
        // Seen, whether or not these credentials open it (the root signed
        // it): an older record put back afterwards is a rollback even when
        // the call that read this one was refused.
        self.generation.fetch_max(record.generation, Ordering::AcqRel);
        let unlocked = record.unlock(&self.name, key, user)?;
        self.learn(&record, &unlocked.secrets)?;
        Ok((encoded, record, unlocked))
    }

    /// Parses a stored key record, checking the root's signature only when
    /// the bytes differ from the last record checked: calls with per-call
    /// keys read the record every time, and it rarely changes.
    fn decode_key_record(&self, encoded: &[u8]) -> Result<KeyRecord> {
        let mut last = self.last_record.lock();
        if let Some(l) = last.as_ref().filter(|l| l.bytes == encoded) {
            return Ok(l.record.clone());
        }
        let record = KeyRecord::decode(encoded, &self.name)?;
        let serial = last.as_ref().map_or(0, |l| l.serial + 1);
        *last = Some(LastRecord { bytes: encoded.to_vec(), record: record.clone(), serial });
        Ok(record)
    }

    /// The serial of the key record `encoded` if it is the last one decoded.
    fn last_record_serial(&self, encoded: &[u8]) -> Option<u64> {
        self.last_record.lock().as_ref().filter(|l| l.bytes == encoded).map(|l| l.serial)
    }

    /// Takes what a newer key record holds: new data-key generations and
    /// the writer key (its secret half only if `secrets` has it).
    pub(super) fn learn(&self, record: &KeyRecord, secrets: &Secrets) -> Result<()> {
        if !self.keys.same_index(&secrets.data_keys) || !self.keys.extend(&secrets.data_keys) {
            return Err(Error::integrity("the stored key record does not match this index"));
        }
        let mut signing = self.signing.write();
        if record.generation > signing.generation {
            *signing = Signing::new(record, secrets);
        } else if record.generation == signing.generation && signing.signer.is_none() {
            signing.signer = Signing::new(record, secrets).signer;
        }
        Ok(())
    }

    /// How often credentials given with single calls opened the key record
    /// on this handle instead of being recognised (tests only).
    #[cfg(feature = "test-hooks")]
    pub fn call_key_opens(&self) -> usize {
        self.call_credentials.misses.load(Ordering::Relaxed)
    }

    /// The permissions of a call's credentials, checked against the stored
    /// key record on every call (the handle's own only when the record changed).
    pub(super) fn permissions(&self, encoded: Vec<u8>, access: Access<'_>) -> Result<u8> {
        match (access.key, access.user) {
            (None, Some(_)) => Err(Error::invalid("a user id was given without a key")),
            (Some(key), user) => {
                let (memo, tag) = (&self.call_credentials, self.call_credentials.tag(key, user));
                let seen = self.generation.load(Ordering::Acquire);
                if let Some(perms) = self.last_record_serial(&encoded).and_then(|s| memo.get(&tag, s, seen)) {
                    return Ok(perms);
                }
                // Remembered under the record it opened (a stale copy is
                // read again first), unless another call decoded another
                // record meanwhile.
                let (encoded, record, unlocked) = self.open_key_record(encoded, key, user)?;
                if let Some(serial) = self.last_record_serial(&encoded) {
                    memo.remember(tag, unlocked.perms, serial, record.generation);
                }
                Ok(unlocked.perms)
            }
            (None, None) => {
                let mut bound = self.bound.lock();
                if bound.checked != encoded || bound.checked_generation < self.generation.load(Ordering::Acquire) {
                    let (encoded, record, unlocked) = self.open_key_record(encoded, &bound.key, bound.user.as_ref())?;
                    bound.perms = unlocked.perms;
                    bound.checked = encoded;
                    bound.checked_generation = record.generation;
                }
                Ok(bound.perms)
            }
        }
    }

    /// `PERMISSION_DENIED` unless the credentials grant `need` against the
    /// key record `encoded`; `WRONG_KEY` if they open nothing.
    pub(super) fn check_permission(&self, encoded: Vec<u8>, access: Access<'_>, need: Need) -> Result<()> {
        if need.granted_by(self.permissions(encoded, access)?) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!("this operation needs {}; the key given lacks it", need.describe())))
        }
    }

    /// As [`Index::check_permission`], against the key record read now.
    pub(super) fn authorize(&self, access: Access<'_>, need: Need) -> Result<()> {
        self.check_permission(self.read_key_record()?, access, need)
    }

    /// The root key of a root-only call: the one given, else the handle's.
    fn root_key(&self, root: Option<&SecretKey>) -> SecretKey {
        match root {
            Some(k) => k.clone(),
            None => self.bound.lock().key.clone(),
        }
    }

    /// Applies `change` to the key record as the root, committed with the
    /// manifest (see [`Index::commit_key_record`]), re-reading and
    /// re-applying if another writer changed either meanwhile. `change`
    /// gets the record, what the root key opens in it, and the key version
    /// a new data-key generation would start at; it returns `None` when
    /// there is nothing to do. Returns whether a new record was written.
    /// `new_root` is the root key of the changed record when it changes.
    fn change_key_record(
        &self,
        root: Option<&SecretKey>,
        new_root: Option<&SecretKey>,
        change: impl Fn(&KeyRecord, &Unlocked, u32) -> Result<Option<KeyRecord>>,
    ) -> Result<bool> {
        self.authorize(Access { key: root, user: None }, Need::Root)?;
        let key = self.root_key(root);
        let next_key = new_root.unwrap_or(&key);
        for _ in 0..READ_ATTEMPTS {
            let (encoded, record, unlocked) = self.open_key_record(self.read_key_record()?, &key, None)?;
            let snap = self.reload_as(Access { key: Some(&key), user: None })?;
            let next_key_version = snap.manifest.key_version.checked_add(1).ok_or_else(|| {
                Error::invalid("the index has used every AEAD key version; no further key change is possible")
            })?;
            let Some(next) = change(&record, &unlocked, next_key_version)? else { return Ok(false) };
            if self.commit_key_record(encoded, &next, next_key, &snap)? {
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
        self.change_key_record(root, None, |record, unlocked, next_key_version| {
            if record.unlock(&self.name, user_key, None).is_ok() {
                return Err(Error::invalid("a user key must differ from the root key"));
            }
            record.with_user(&self.name, unlocked, user_id, user_key, perms, next_key_version).map(Some)
        })?;
        Ok(())
    }

    /// Removes every key of `user_id`; true if it had any. Root key only.
    pub fn delete_user_keys(&self, user_id: &[u8; USER_ID_LEN], root: Option<&SecretKey>) -> Result<bool> {
        self.change_key_record(root, None, |record, unlocked, next_key_version| {
            record.without_user(&self.name, unlocked, user_id, next_key_version)
        })
    }

    /// Every user with keys, by user id. Root key only.
    pub fn list_user_keys(&self, root: Option<&SecretKey>) -> Result<Vec<UserEntry>> {
        self.authorize(Access { key: root, user: None }, Need::Root)?;
        let encoded = self.read_key_record()?;
        let mut users = self.open_key_record(encoded, &self.root_key(root), None)?.2.users;
        users.sort_by_key(|u| u.user_id);
        Ok(users)
    }

    /// Re-wraps the data key under `new_root`, atomically, touching no data:
    /// `old_root` then gets `WRONG_KEY`, user keys keep working, and a handle
    /// bound to `old_root` moves to `new_root` (other handles bound to
    /// `old_root` get `WRONG_KEY` at their next call).
    pub fn rotate_key(&self, old_root: &SecretKey, new_root: &SecretKey) -> Result<()> {
        if old_root == new_root {
            return Err(Error::invalid("the new root key equals the old one"));
        }
        // Held across the change, so this handle's own calls wait and then
        // use the new key rather than meet the new record with the old one.
        // (With an explicit root key, the change never takes this lock.)
        let mut bound = self.bound.lock();
        self.change_key_record(Some(old_root), Some(new_root), |record, unlocked, _| {
            record.rotated(&self.name, unlocked, new_root).map(Some)
        })?;
        if bound.user.is_none() && bound.key == *old_root {
            bound.key = new_root.clone();
            bound.checked.clear();
        }
        Ok(())
    }

    /// Removes every object of the index; root key only. The handle answers
    /// `NOT_FOUND` afterwards.
    pub fn delete_index(&self, access: Access<'_>) -> Result<()> {
        self.authorize(access, Need::Root)?;
        let _w = self.write_lock.lock();
        let record_key = key_record_key(&self.name);
        let encoded = self
            .env
            .store
            .get(&record_key)?
            .ok_or_else(|| Error::NotFound(format!("no index named '{}'", self.name)))?;
        let mut batch = WriteBatch::default();
        for k in self.env.store.scan_keys(&self.layout.prefix())? {
            batch.delete(k);
        }
        batch.delete(record_key.clone());
        batch.expect(record_key, Some(encoded));
        if !self.env.store.write(batch)? {
            return Err(Error::Storage("the index's key record changed during delete; nothing was deleted".into()));
        }
        self.deleted.store(true, Ordering::Release);
        let owner = self.tokens.cache_owner;
        self.env.cache.remove_where(|k| k.owner == owner);
        Ok(())
    }

    /// Marks the handle unusable after a panic inside a call that changed it.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }
}
