//! The key record of an index (`n/<name>`): the one record the store can
//! read without a key, and the only one that key management changes.
//!
//! ```text
//! record = magic, format, index id, generation,
//!          root public key, writer public key,
//!          data-key generations: first AEAD key version of each,
//!          key chain: each older data key sealed under the next,
//!          root key-check value, root wrap,
//!          user wraps: (locator, wrap) sorted by locator,
//!          registry: AES-GCM under a key derived from the newest data key,
//!                    plaintext = (user id, permissions, locators, root box) of every user,
//!                    associated data = every byte of the record before it,
//!          signature: Ed25519 by the root over every byte before it
//! ```
//!
//! * A wrap seals, for one principal, the newest data key and, with WRITE or
//!   for the root, the writer seed (the Ed25519 key that signs manifests);
//!   the root wrap also holds the root secret (the Ed25519 key that signs
//!   this record, and the key of the root boxes). Each wrap is bound to the
//!   index, name, principal, permission, data-key generation and both public
//!   keys, so whoever opens its wrap knows the public keys are the root's.
//! * The key-check value tells a wrong root key (`WRONG_KEY`) from an
//!   altered record (`INTEGRITY`).
//! * A user holds one wrap per permission (READ, WRITE): a read-only user
//!   has no write wrap and so no writer seed. Wraps are filed under
//!   locators derived from the user's key, so the store learns neither user
//!   ids nor which wraps belong together.
//! * The signature makes the record the root's: a principal who holds the
//!   data key (a READ user) still cannot add a wrap, grant itself WRITE,
//!   replace the root wrap or move the generation. The registry tells every
//!   principal that no wrap was added, dropped, swapped or edited, and lets
//!   the root list users and re-wrap them: a root box seals each user's
//!   wrap and locator keys under a key only the root secret yields.
//! * Removing a user (or replacing its keys) starts a new data-key
//!   generation and a new writer key: what is written afterwards is sealed
//!   under a key the removed user never held and signed by a key it cannot
//!   use. Older generations stay readable to current principals through the
//!   key chain. What the removed user read before, it keeps.
//! * Every change bumps the record's generation, so a handle that saw a
//!   newer record refuses an older one put back.

use crate::codec::{Reader, Writer};
use crate::crypto::{
    cipher_for, derive_key, open_with, seal_with, verify, Kek, PublicKey, SecretKey, Signature, Signer, Token,
    WrapContext, PUBLIC_KEY_LEN, SIGNATURE_LEN, USER_ID_LEN,
};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"VXH1";
/// Layout version of the key record (the manifest has its own).
const RECORD_FORMAT: u32 = 3;

pub const PERMISSION_READ: u8 = 1;
pub const PERMISSION_WRITE: u8 = 2;
/// The root holds every permission, including user management.
pub const PERMISSION_ROOT: u8 = 0xff;
const ROOT_PRINCIPAL: [u8; USER_ID_LEN] = [0; USER_ID_LEN];
/// Bounds the key record, which every call with a per-call key reads.
pub const MAX_USERS: usize = 4096;
/// Bounds the key chain (one generation per revocation).
const MAX_GENERATIONS: usize = 1 << 16;

/// One user as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    pub user_id: [u8; USER_ID_LEN],
    pub perms: u8,
    /// Where the READ and WRITE wraps are filed (zeros where not granted),
    /// so the root, who does not have the user's key, can find them.
    locators: [Token; 2],
    /// The user's wrap and locator keys sealed under the root's box key.
    boxed: Vec<u8>,
}

impl UserEntry {
    fn filed(&self) -> impl Iterator<Item = &Token> + '_ {
        each_perm(self.perms).map(|p| &self.locators[slot(p)])
    }
}

fn slot(perm: u8) -> usize {
    usize::from(perm == PERMISSION_WRITE)
}

fn each_perm(perms: u8) -> impl Iterator<Item = u8> {
    [PERMISSION_READ, PERMISSION_WRITE].into_iter().filter(move |p| perms & p != 0)
}

/// The secrets a key opens.
#[derive(Clone)]
pub struct Secrets {
    /// Every data-key generation, oldest first: (first AEAD key version, key).
    pub data_keys: Vec<(u32, SecretKey)>,
    /// The seed of the writer signing key (WRITE and the root).
    pub writer: Option<SecretKey>,
    /// The root secret (the root only).
    root: Option<SecretKey>,
}

impl Secrets {
    fn newest(&self) -> &SecretKey {
        &self.data_keys.last().expect("at least one generation").1
    }

    fn root(&self) -> Result<&SecretKey> {
        self.root.as_ref().ok_or_else(|| Error::Internal("a root operation without the root secret".into()))
    }

    fn writer(&self) -> Result<&SecretKey> {
        self.writer.as_ref().ok_or_else(|| Error::Internal("the root's wrap lacks the writer seed".into()))
    }
}

/// What a key opened: its secrets, the permissions it carries, and (for
/// the root, who may change it) the list of users and the root's KEK.
pub struct Unlocked {
    pub secrets: Secrets,
    pub perms: u8,
    pub users: Vec<UserEntry>,
    root_kek: Option<Kek>,
}

impl Unlocked {
    fn root_kek(&self) -> Result<&Kek> {
        self.root_kek.as_ref().ok_or_else(|| Error::Internal("a root operation without the root key".into()))
    }
}

#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub index_id: [u8; 16],
    /// Bumped by every change; a handle refuses to go back.
    pub generation: u32,
    root_public: PublicKey,
    pub writer_public: PublicKey,
    /// First AEAD key version of each data-key generation (the first is 0).
    key_versions: Vec<u32>,
    /// `chain[i]` is generation `i + 1`'s data key sealed under generation `i + 2`'s.
    chain: Vec<Vec<u8>>,
    root_kcv: Vec<u8>,
    root_wrap: Vec<u8>,
    wraps: Vec<(Token, Vec<u8>)>,
    registry: Vec<u8>,
    signature: Signature,
}

fn root_signer(root: &SecretKey, index_id: &[u8; 16]) -> Signer {
    Signer::from_seed(&derive_key(root.bytes(), index_id, &[b"vx1 root signing key"]))
}

fn box_cipher(root: &SecretKey, index_id: &[u8; 16]) -> aes_gcm::Aes256Gcm {
    cipher_for(&derive_key(root.bytes(), index_id, &[b"vx1 user box key"]))
}

fn chain_cipher(newer: &SecretKey, index_id: &[u8; 16]) -> aes_gcm::Aes256Gcm {
    cipher_for(&derive_key(newer.bytes(), index_id, &[b"vx1 key chain"]))
}

impl KeyRecord {
    /// A new index's record, with fresh secrets: one data-key generation,
    /// a writer key, the root's, no users.
    pub fn new(index_id: [u8; 16], name: &str, root: &SecretKey) -> Result<(KeyRecord, Secrets)> {
        let secrets = Secrets {
            data_keys: vec![(0, SecretKey::random()?)],
            writer: Some(SecretKey::random()?),
            root: Some(SecretKey::random()?),
        };
        let mut r = KeyRecord {
            index_id,
            generation: 1,
            root_public: root_signer(secrets.root()?, &index_id).public(),
            writer_public: Signer::from_seed(secrets.writer()?).public(),
            key_versions: vec![0],
            chain: Vec::new(),
            root_kcv: Vec::new(),
            root_wrap: Vec::new(),
            wraps: Vec::new(),
            registry: Vec::new(),
            signature: [0; SIGNATURE_LEN],
        };
        r.wrap_for_root(name, &Kek::new(root, &index_id), &secrets)?;
        r.seal_and_sign(name, &secrets, &[])?;
        Ok((r, secrets))
    }

    fn data_key_generation(&self) -> u32 {
        self.key_versions.len() as u32
    }

    fn context<'a>(&'a self, name: &'a str, principal: &'a [u8; USER_ID_LEN], perms: u8) -> WrapContext<'a> {
        WrapContext {
            index_id: &self.index_id,
            name,
            principal,
            perms,
            generation: self.data_key_generation(),
            root_public: &self.root_public,
            writer_public: &self.writer_public,
        }
    }

    fn wrap_for_root(&mut self, name: &str, kek: &Kek, secrets: &Secrets) -> Result<()> {
        self.root_kcv = kek.check_value().to_vec();
        let keys = [secrets.newest(), secrets.writer()?, secrets.root()?];
        self.root_wrap = kek.wrap(&keys, &self.context(name, &ROOT_PRINCIPAL, PERMISSION_ROOT))?;
        Ok(())
    }

    /// Wraps `secrets` for `user` with `kek`; returns its registry entry.
    fn wrap_for_user(
        &mut self,
        name: &str,
        secrets: &Secrets,
        user_id: &[u8; USER_ID_LEN],
        kek: &Kek,
        perms: u8,
    ) -> Result<UserEntry> {
        let mut entry = UserEntry { user_id: *user_id, perms, locators: [[0u8; 16]; 2], boxed: Vec::new() };
        for perm in each_perm(perms) {
            let keys: Vec<&SecretKey> = match perm {
                PERMISSION_WRITE => vec![secrets.newest(), secrets.writer()?],
                _ => vec![secrets.newest()],
            };
            let wrap = kek.wrap(&keys, &self.context(name, user_id, perm))?;
            entry.locators[slot(perm)] = kek.locator(user_id, perm);
            self.wraps.push((entry.locators[slot(perm)], wrap));
        }
        self.wraps.sort_by_key(|w| w.0);
        if self.wraps.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid("this user key collides with another user's; choose another key"));
        }
        seal_with(&box_cipher(secrets.root()?, &self.index_id), user_id, &kek.export(), &mut entry.boxed)?;
        Ok(entry)
    }

    /// Everything before the registry (its associated data).
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(MAGIC);
        w.u32(RECORD_FORMAT);
        w.raw(&self.index_id);
        w.u32(self.generation);
        w.raw(&self.root_public);
        w.raw(&self.writer_public);
        w.u32(self.key_versions.len() as u32);
        for v in &self.key_versions {
            w.u32(*v);
        }
        for link in &self.chain {
            w.bytes(link);
        }
        w.bytes(&self.root_kcv);
        w.bytes(&self.root_wrap);
        w.u32(self.wraps.len() as u32);
        for (locator, wrap) in &self.wraps {
            w.raw(locator);
            w.bytes(wrap);
        }
        w.buf
    }

    /// Everything the root signs.
    fn signed(&self, name: &str) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(b"vx1 key record");
        w.bytes(name.as_bytes());
        w.raw(&self.body());
        w.bytes(&self.registry);
        w.buf
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer { buf: self.body() };
        w.bytes(&self.registry);
        w.raw(&self.signature);
        w.buf
    }

    /// Parses a stored record and checks the root's signature over it
    /// (whether that root is this index's root, the wraps tell: see `unlock`).
    pub fn decode(bytes: &[u8], name: &str) -> Result<KeyRecord> {
        let bad = |what: &str| Error::integrity(format!("key record of index '{name}' {what}"));
        let mut r = Reader::new(bytes, "index key record");
        if r.raw(4)? != MAGIC {
            return Err(bad("is not a vx key record"));
        }
        let format = r.u32()?;
        if format != RECORD_FORMAT {
            return Err(bad(&format!("has unknown format version {format} (this build reads {RECORD_FORMAT})")));
        }
        let index_id = r.raw(16)?.try_into().unwrap();
        let generation = r.u32()?;
        let root_public = r.raw(PUBLIC_KEY_LEN)?.try_into().unwrap();
        let writer_public = r.raw(PUBLIC_KEY_LEN)?.try_into().unwrap();
        let n_generations = r.u32()? as usize;
        if n_generations == 0 || n_generations > MAX_GENERATIONS {
            return Err(bad("lists an impossible number of data-key generations"));
        }
        let mut key_versions = Vec::with_capacity(n_generations);
        for _ in 0..n_generations {
            key_versions.push(r.u32()?);
        }
        if key_versions[0] != 0 || key_versions.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("lists data-key generations out of order"));
        }
        let mut chain = Vec::with_capacity(n_generations - 1);
        for _ in 1..n_generations {
            chain.push(r.bytes()?.to_vec());
        }
        let root_kcv = r.bytes()?.to_vec();
        let root_wrap = r.bytes()?.to_vec();
        let n = r.u32()? as usize;
        if n > 2 * MAX_USERS {
            return Err(bad("lists too many wraps"));
        }
        let mut wraps = Vec::with_capacity(n);
        for _ in 0..n {
            wraps.push((r.raw(16)?.try_into().unwrap(), r.bytes()?.to_vec()));
        }
        let registry = r.bytes()?.to_vec();
        let signature = r.raw(SIGNATURE_LEN)?.try_into().unwrap();
        r.finish()?;
        let record = KeyRecord {
            index_id,
            generation,
            root_public,
            writer_public,
            key_versions,
            chain,
            root_kcv,
            root_wrap,
            wraps,
            registry,
            signature,
        };
        if !verify(&record.root_public, &record.signed(name), &record.signature) {
            return Err(bad("is not signed by its root"));
        }
        Ok(record)
    }

    fn registry_ad(&self, name: &str) -> Vec<u8> {
        let mut ad = b"vx1 key registry".to_vec();
        ad.extend_from_slice(&(name.len() as u64).to_le_bytes());
        ad.extend_from_slice(name.as_bytes());
        ad.extend_from_slice(&self.body());
        ad
    }

    fn registry_cipher(&self, data_key: &SecretKey) -> aes_gcm::Aes256Gcm {
        cipher_for(&derive_key(data_key.bytes(), &self.index_id, &[b"vx1 key registry"]))
    }

    /// Seals the user list with everything else in the record as associated
    /// data and signs the whole record as the root; call after every change.
    fn seal_and_sign(&mut self, name: &str, secrets: &Secrets, users: &[UserEntry]) -> Result<()> {
        self.seal_registry(name, secrets.newest(), users)?;
        self.signature = root_signer(secrets.root()?, &self.index_id).sign(&self.signed(name));
        Ok(())
    }

    fn seal_registry(&mut self, name: &str, data_key: &SecretKey, users: &[UserEntry]) -> Result<()> {
        let mut w = Writer::default();
        w.u32(users.len() as u32);
        for u in users {
            w.raw(&u.user_id);
            w.u8(u.perms);
            w.raw(&u.locators[0]);
            w.raw(&u.locators[1]);
            w.bytes(&u.boxed);
        }
        let mut sealed = Vec::new();
        seal_with(&self.registry_cipher(data_key), &self.registry_ad(name), &w.buf, &mut sealed)?;
        crate::crypto::wipe(&mut w.buf);
        self.registry = sealed;
        Ok(())
    }

    fn open_registry(&self, name: &str, data_key: &SecretKey) -> Result<Vec<UserEntry>> {
        let altered = || Error::integrity(format!("key record of index '{name}' was altered"));
        let plain =
            open_with(&self.registry_cipher(data_key), &self.registry_ad(name), &self.registry).ok_or_else(altered)?;
        let mut r = Reader::new(&plain, "key registry");
        let n = r.u32()? as usize;
        if n > MAX_USERS {
            return Err(altered());
        }
        let mut users = Vec::with_capacity(n);
        for _ in 0..n {
            users.push(UserEntry {
                user_id: r.raw(USER_ID_LEN)?.try_into().unwrap(),
                perms: r.u8()?,
                locators: [r.raw(16)?.try_into().unwrap(), r.raw(16)?.try_into().unwrap()],
                boxed: r.bytes()?.to_vec(),
            });
        }
        r.finish()?;
        // Every granted permission has exactly its wrap, and nothing else is
        // filed (the registry is authenticated, so this is what the root made).
        let mut filed: Vec<&Token> = users.iter().flat_map(UserEntry::filed).collect();
        filed.sort();
        if !filed.iter().copied().eq(self.wraps.iter().map(|(l, _)| l)) {
            return Err(altered());
        }
        Ok(users)
    }

    /// Every data-key generation from the newest, walking the key chain back.
    fn generations(&self, name: &str, newest: SecretKey) -> Result<Vec<(u32, SecretKey)>> {
        let altered = || Error::integrity(format!("key chain of index '{name}' was altered"));
        let mut keys = vec![newest];
        for (i, link) in self.chain.iter().enumerate().rev() {
            let ad = [&self.index_id[..], &(i as u32).to_le_bytes()].concat();
            let plain =
                open_with(&chain_cipher(keys.last().unwrap(), &self.index_id), &ad, link).ok_or_else(altered)?;
            keys.push(SecretKey::from_bytes(plain.as_slice().try_into().map_err(|_| altered())?));
        }
        keys.reverse();
        Ok(self.key_versions.iter().copied().zip(keys).collect())
    }

    /// Opens the record with a root key (`user = None`) or a user's key.
    ///
    /// * `WRONG_KEY`: the root key does not match the key-check value, or no
    ///   wrap is filed for this user id under this key (a wrong key, a user
    ///   that never existed and a deleted user look the same by design).
    /// * `INTEGRITY`: a wrap, the chain or the registry does not authenticate.
    pub fn unlock(&self, name: &str, key: &SecretKey, user: Option<&[u8; USER_ID_LEN]>) -> Result<Unlocked> {
        let altered = || Error::integrity(format!("key record of index '{name}' was altered"));
        let kek = Kek::new(key, &self.index_id);
        let Some(user_id) = user else {
            if !kek.matches(&self.root_kcv) {
                return Err(Error::WrongKey(format!("wrong root key for index '{name}'")));
            }
            let mut keys = kek
                .unwrap(&self.context(name, &ROOT_PRINCIPAL, PERMISSION_ROOT), &self.root_wrap)
                .filter(|k| k.len() == 3)
                .ok_or_else(altered)?;
            let (root, writer) = (keys.pop(), keys.pop());
            let newest = keys.pop().expect("three keys");
            let writer_matches = writer.as_ref().is_some_and(|w| Signer::from_seed(w).public() == self.writer_public);
            if root_signer(root.as_ref().unwrap(), &self.index_id).public() != self.root_public || !writer_matches {
                return Err(altered());
            }
            let users = self.open_registry(name, &newest)?;
            let secrets = Secrets { data_keys: self.generations(name, newest)?, writer, root };
            return Ok(Unlocked { secrets, perms: PERMISSION_ROOT, users, root_kek: Some(kek) });
        };
        let mut newest: Option<SecretKey> = None;
        let mut writer: Option<SecretKey> = None;
        let mut perms = 0u8;
        let mut locators = [[0u8; 16]; 2];
        for perm in each_perm(PERMISSION_READ | PERMISSION_WRITE) {
            locators[slot(perm)] = kek.locator(user_id, perm);
            let Some(wrap) = self.wrap_at(&locators[slot(perm)]) else { continue };
            let mut keys = kek.unwrap(&self.context(name, user_id, perm), wrap).ok_or_else(altered)?;
            let expected = if perm == PERMISSION_WRITE { 2 } else { 1 };
            if keys.len() != expected {
                return Err(altered());
            }
            if perm == PERMISSION_WRITE {
                writer = keys.pop();
            }
            let dk = keys.pop().expect("one key");
            if newest.as_ref().is_some_and(|f| *f != dk) {
                return Err(altered());
            }
            newest = Some(dk);
            perms |= perm;
        }
        let newest = newest.ok_or_else(|| {
            Error::WrongKey(format!("no keys for this user id on index '{name}' (wrong key, or the user was deleted)"))
        })?;
        if writer.as_ref().is_some_and(|w| Signer::from_seed(w).public() != self.writer_public) {
            return Err(altered());
        }
        let users = self.open_registry(name, &newest)?;
        if !users.iter().any(|u| {
            u.user_id == *user_id && u.perms == perms && u.filed().eq(each_perm(perms).map(|p| &locators[slot(p)]))
        }) {
            return Err(altered());
        }
        let secrets = Secrets { data_keys: self.generations(name, newest)?, writer, root: None };
        Ok(Unlocked { secrets, perms, users: Vec::new(), root_kek: None })
    }

    fn wrap_at(&self, locator: &Token) -> Option<&Vec<u8>> {
        self.wraps.binary_search_by(|(l, _)| l.cmp(locator)).ok().map(|i| &self.wraps[i].1)
    }

    /// A copy one generation on: every change to the record moves the
    /// generation, so a handle can refuse a record older than one it saw.
    fn successor(&self) -> Result<KeyRecord> {
        let mut next = self.clone();
        next.generation = self
            .generation
            .checked_add(1)
            .ok_or_else(|| Error::invalid("the key record was changed 2^32 times; no further change possible"))?;
        Ok(next)
    }

    /// Root-held state → a record where `user_id` holds exactly `perms` under
    /// `user_kek`. Replacing a user's keys revokes the old ones, as
    /// [`KeyRecord::without_user`] does (new data is sealed from
    /// `next_key_version` on).
    pub fn with_user(
        &self,
        name: &str,
        root: &Unlocked,
        user_id: &[u8; USER_ID_LEN],
        user_kek: &SecretKey,
        perms: u8,
        next_key_version: u32,
    ) -> Result<KeyRecord> {
        let (mut next, secrets, mut users) = match self.revoked(name, root, user_id, next_key_version)? {
            Some(revoked) => revoked,
            None => (self.successor()?, root.secrets.clone(), root.users.clone()),
        };
        if users.len() >= MAX_USERS {
            return Err(Error::invalid(format!("index '{name}' already has the maximum of {MAX_USERS} users")));
        }
        let kek = Kek::new(user_kek, &self.index_id);
        users.push(next.wrap_for_user(name, &secrets, user_id, &kek, perms)?);
        next.seal_and_sign(name, &secrets, &users)?;
        Ok(next)
    }

    /// Root-held state → a record without `user_id`'s keys; `None` if it had
    /// none (see [`KeyRecord::revoked`]).
    pub fn without_user(
        &self,
        name: &str,
        root: &Unlocked,
        user_id: &[u8; USER_ID_LEN],
        next_key_version: u32,
    ) -> Result<Option<KeyRecord>> {
        let Some((mut next, secrets, users)) = self.revoked(name, root, user_id, next_key_version)? else {
            return Ok(None);
        };
        next.seal_and_sign(name, &secrets, &users)?;
        Ok(Some(next))
    }

    /// A record one generation on without `user_id`'s keys, with the
    /// secrets and users it holds, not yet sealed and signed; `None` if the
    /// user had no keys. The removed user may have kept the data key and the
    /// writer seed, so the record moves to a new data-key generation (first
    /// used at key version `next_key_version`) and a new writer key,
    /// re-wrapped for the root and every remaining user (through their root
    /// boxes).
    fn revoked(
        &self,
        name: &str,
        root: &Unlocked,
        user_id: &[u8; USER_ID_LEN],
        next_key_version: u32,
    ) -> Result<Option<(KeyRecord, Secrets, Vec<UserEntry>)>> {
        if !root.users.iter().any(|u| u.user_id == *user_id) {
            return Ok(None);
        }
        let old = &root.secrets;
        if old.data_keys.len() >= MAX_GENERATIONS || next_key_version <= old.data_keys.last().unwrap().0 {
            return Err(Error::invalid("no further data-key generation is possible"));
        }
        let mut secrets = old.clone();
        let newest = SecretKey::random()?;
        let mut next = self.successor()?;
        let ad = [&self.index_id[..], &((old.data_keys.len() - 1) as u32).to_le_bytes()].concat();
        let mut link = Vec::new();
        seal_with(&chain_cipher(&newest, &self.index_id), &ad, old.newest().bytes(), &mut link)?;
        next.chain.push(link);
        next.key_versions.push(next_key_version);
        secrets.data_keys.push((next_key_version, newest));
        secrets.writer = Some(SecretKey::random()?);
        next.writer_public = Signer::from_seed(secrets.writer()?).public();
        next.wraps.clear();
        let boxes = box_cipher(old.root()?, &self.index_id);
        let mut users = Vec::with_capacity(root.users.len());
        for u in root.users.iter().filter(|u| u.user_id != *user_id) {
            let broken = || Error::integrity(format!("key record of index '{name}' was altered (a user's root box)"));
            let exported = open_with(&boxes, &u.user_id, &u.boxed).ok_or_else(broken)?;
            let kek = Kek::import(&exported).ok_or_else(broken)?;
            users.push(next.wrap_for_user(name, &secrets, &u.user_id, &kek, u.perms)?);
        }
        next.wrap_for_root(name, root.root_kek()?, &secrets)?;
        Ok(Some((next, secrets, users)))
    }

    /// Root-held state → the same record re-wrapped for `new_root`, one
    /// generation on. The secrets and user wraps are unchanged.
    pub fn rotated(&self, name: &str, root: &Unlocked, new_root: &SecretKey) -> Result<KeyRecord> {
        let mut next = self.successor()?;
        next.wrap_for_root(name, &Kek::new(new_root, &self.index_id), &root.secrets)?;
        next.seal_and_sign(name, &root.secrets, &root.users)?;
        Ok(next)
    }
}

/// What a READ user with write access to the store can make of a record it
/// opened: everything but the root's signature (for `forgery_tests.rs`).
#[cfg(all(test, feature = "test-hooks"))]
impl KeyRecord {
    /// The record with a WRITE wrap for `user_id` (under its own key, with
    /// the data key and a writer seed of its own) and a registry saying so.
    pub fn forged_with_write_wrap(
        &self,
        name: &str,
        reader: &Unlocked,
        user_id: &[u8; USER_ID_LEN],
        user_kek: &SecretKey,
    ) -> Result<Vec<u8>> {
        let newest = reader.secrets.newest();
        let mut users = self.open_registry(name, newest)?;
        let mut forged = self.clone();
        let kek = Kek::new(user_kek, &self.index_id);
        let own_writer = SecretKey::random()?;
        let wrap = kek.wrap(&[newest, &own_writer], &self.context(name, user_id, PERMISSION_WRITE))?;
        forged.wraps.push((kek.locator(user_id, PERMISSION_WRITE), wrap));
        forged.wraps.sort_by_key(|w| w.0);
        let me = users.iter_mut().find(|u| u.user_id == *user_id).expect("the reader is listed");
        me.perms |= PERMISSION_WRITE;
        me.locators[slot(PERMISSION_WRITE)] = kek.locator(user_id, PERMISSION_WRITE);
        forged.seal_registry(name, newest, &users)?;
        Ok(forged.encode())
    }

    /// The record at key-record generation `generation`.
    pub fn forged_generation(&self, name: &str, reader: &Unlocked, generation: u32) -> Result<Vec<u8>> {
        let users = self.open_registry(name, reader.secrets.newest())?;
        let mut forged = self.clone();
        forged.generation = generation;
        forged.seal_registry(name, reader.secrets.newest(), &users)?;
        Ok(forged.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "idx";

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; 32])
    }

    /// A record with user 1 (READ), user 2 (READ|WRITE), user 3 (WRITE).
    fn record() -> (KeyRecord, SecretKey) {
        let (mut h, secrets) = KeyRecord::new([7; 16], NAME, &key(1)).unwrap();
        for (u, perms) in [(1u8, PERMISSION_READ), (2, PERMISSION_READ | PERMISSION_WRITE), (3, PERMISSION_WRITE)] {
            let root = h.unlock(NAME, &key(1), None).unwrap();
            h = h.with_user(NAME, &root, &[u; 16], &key(10 + u), perms, 1).unwrap();
        }
        (h, secrets.newest().clone())
    }

    fn newest(u: &Unlocked) -> &SecretKey {
        u.secrets.newest()
    }

    fn err<T>(r: Result<T>) -> Error {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn root_and_users_unlock_with_their_permissions() {
        let (h, dk) = record();
        let h = KeyRecord::decode(&h.encode(), NAME).unwrap();
        let root = h.unlock(NAME, &key(1), None).unwrap();
        assert!(*newest(&root) == dk && root.perms == PERMISSION_ROOT);
        assert!(root.secrets.writer.is_some());
        let ids: Vec<u8> = root.users.iter().map(|u| u.user_id[0]).collect();
        assert_eq!(ids, [1, 2, 3]);
        for (u, perms) in [(1u8, 1u8), (2, 3), (3, 2)] {
            let got = h.unlock(NAME, &key(10 + u), Some(&[u; 16])).unwrap();
            assert!(*newest(&got) == dk);
            assert_eq!(got.perms, perms, "user {u}");
            // Only WRITE carries the writer seed.
            assert_eq!(got.secrets.writer.is_some(), perms & PERMISSION_WRITE != 0, "user {u}");
        }
        assert!(matches!(err(h.unlock(NAME, &key(2), None)), Error::WrongKey(_)));
        // A user's key as the root key, the root key as a user's, another user's key: nothing opens.
        assert!(matches!(err(h.unlock(NAME, &key(11), None)), Error::WrongKey(_)));
        assert!(matches!(err(h.unlock(NAME, &key(1), Some(&[1; 16]))), Error::WrongKey(_)));
        assert!(matches!(err(h.unlock(NAME, &key(12), Some(&[1; 16]))), Error::WrongKey(_)));
        assert!(matches!(err(h.unlock(NAME, &key(11), Some(&[9; 16]))), Error::WrongKey(_)));
    }

    #[test]
    fn replacing_deleting_and_rotating() {
        let (h, dk) = record();
        let root = h.unlock(NAME, &key(1), None).unwrap();
        // Replace user 1's key and permissions.
        let h2 = h.with_user(NAME, &root, &[1; 16], &key(21), PERMISSION_WRITE, 5).unwrap();
        // Replacing user 1's keys revoked the old ones: a new data-key
        // generation and writer key, the old data key kept in the chain.
        let root2 = h2.unlock(NAME, &key(1), None).unwrap();
        assert_eq!(root2.secrets.data_keys.len(), 2);
        assert!(root2.secrets.data_keys[0].1 == dk && *newest(&root2) != dk);
        assert_ne!(h2.writer_public, h.writer_public);
        assert!(*newest(&h2.unlock(NAME, &key(12), Some(&[2; 16])).unwrap()) == *newest(&root2));
        assert!(matches!(err(h2.unlock(NAME, &key(11), Some(&[1; 16]))), Error::WrongKey(_)));
        assert_eq!(h2.unlock(NAME, &key(21), Some(&[1; 16])).unwrap().perms, PERMISSION_WRITE);
        assert_eq!(h2.wraps.len(), 4);
        // Delete user 2; deleting again is a no-op.
        let h3 = h2.without_user(NAME, &root2, &[2; 16], 9).unwrap().unwrap();
        assert_eq!(h3.unlock(NAME, &key(13), Some(&[3; 16])).unwrap().secrets.data_keys.len(), 3);
        assert!(matches!(err(h3.unlock(NAME, &key(12), Some(&[2; 16]))), Error::WrongKey(_)));
        let root3 = h3.unlock(NAME, &key(1), None).unwrap();
        assert!(h3.without_user(NAME, &root3, &[2; 16], 10).unwrap().is_none());
        assert_eq!(h3.wraps.len(), 2);
        // Rotate: the old root stops, the new root and the users work, the generation moves on.
        let h4 = h3.rotated(NAME, &root3, &key(5)).unwrap();
        assert_eq!(h4.generation, h3.generation + 1);
        assert!(matches!(err(h4.unlock(NAME, &key(1), None)), Error::WrongKey(_)));
        assert!(h4.unlock(NAME, &key(5), None).unwrap().secrets.data_keys[0].1 == dk);
        assert_eq!(h4.unlock(NAME, &key(13), Some(&[3; 16])).unwrap().perms, PERMISSION_WRITE);
    }

    /// Every single-byte edit of the stored record fails cleanly for the root
    /// and for every user: an error, never a key, never more permissions.
    #[test]
    fn every_byte_flip_is_refused() {
        let (h, _) = record();
        let bytes = h.encode();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            let Ok(th) = KeyRecord::decode(&t, NAME) else { continue };
            assert!(th.unlock(NAME, &key(1), None).is_err(), "root opened a record flipped at {i}");
            for u in 1..=3u8 {
                assert!(th.unlock(NAME, &key(10 + u), Some(&[u; 16])).is_err(), "user {u} opened flip at {i}");
            }
        }
    }

    #[test]
    fn added_dropped_swapped_and_replayed_wraps_are_integrity_errors() {
        let (h, _) = record();
        let integrity = |th: &KeyRecord, k: u8, user: Option<u8>| {
            let e = err(th.unlock(NAME, &key(k), user.map(|u| [u; 16]).as_ref()));
            assert!(matches!(e, Error::Integrity(_)), "{e:?}");
        };
        // Drop the WRITE wrap of user 2: both the root and user 2 see it.
        let u2 = Kek::new(&key(12), &h.index_id);
        let mut dropped = h.clone();
        dropped.wraps.retain(|(l, _)| *l != u2.locator(&[2; 16], PERMISSION_WRITE));
        assert_eq!(dropped.wraps.len(), h.wraps.len() - 1);
        integrity(&dropped, 1, None);
        integrity(&dropped, 12, Some(2));
        // Give read-only user 1 a WRITE wrap made by someone who has the data
        // key but not the registry's consent (an added wrap).
        let root = h.unlock(NAME, &key(1), None).unwrap();
        let u1 = Kek::new(&key(11), &h.index_id);
        let mut added = h.clone();
        let forged = u1.wrap(&[newest(&root)], &h.context(NAME, &[1; 16], PERMISSION_WRITE)).unwrap();
        added.wraps.push((u1.locator(&[1; 16], PERMISSION_WRITE), forged));
        added.wraps.sort_by_key(|w| w.0);
        integrity(&added, 11, Some(1));
        integrity(&added, 1, None);
        // Move user 2's WRITE wrap to user 1's WRITE locator (a swap).
        let mut swapped = h.clone();
        let w2 = swapped.wrap_at(&u2.locator(&[2; 16], PERMISSION_WRITE)).unwrap().clone();
        swapped.wraps.push((u1.locator(&[1; 16], PERMISSION_WRITE), w2));
        swapped.wraps.sort_by_key(|w| w.0);
        integrity(&swapped, 11, Some(1));
        // Replay the registry of an older record (before user 3 existed).
        let older = {
            let mut o = KeyRecord::new(h.index_id, NAME, &key(1)).unwrap().0;
            for (u, perms) in [(1u8, PERMISSION_READ), (2, PERMISSION_READ | PERMISSION_WRITE)] {
                let r = o.unlock(NAME, &key(1), None).unwrap();
                o = o.with_user(NAME, &r, &[u; 16], &key(10 + u), perms, 1).unwrap();
            }
            o
        };
        let mut replayed = h.clone();
        replayed.registry = older.registry.clone();
        integrity(&replayed, 1, None);
        integrity(&replayed, 13, Some(3));
        // The same record under another name (renamed or copied) does not open.
        assert!(h.unlock("other", &key(1), None).is_err());
        assert!(h.unlock("other", &key(11), Some(&[1; 16])).is_err());
    }

    #[test]
    fn a_wrap_copied_to_another_index_opens_nothing() {
        let (a, _) = record();
        let mut b = KeyRecord::new([8; 16], NAME, &key(1)).unwrap().0;
        // Index b's user 1 is read-only; graft index a's wraps into b.
        let root = b.unlock(NAME, &key(1), None).unwrap();
        b = b.with_user(NAME, &root, &[1; 16], &key(11), PERMISSION_READ, 1).unwrap();
        let mut grafted = b.clone();
        grafted.wraps.extend(a.wraps.iter().cloned());
        grafted.wraps.sort_by_key(|w| w.0);
        assert!(matches!(err(grafted.unlock(NAME, &key(11), Some(&[1; 16]))), Error::Integrity(_)));
        assert!(matches!(err(grafted.unlock(NAME, &key(12), Some(&[2; 16]))), Error::WrongKey(_)));
    }
}
