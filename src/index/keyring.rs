//! The key record of an index (`n/<name>`): the one record the store can
//! read without a key, and the only one that key management changes.
//!
//! ```text
//! record = magic, format, index id, generation, data-key version,
//!          root key-check value, root wrap,
//!          user wraps: (locator, wrap) sorted by locator,
//!          registry: AES-GCM under a key derived from the data key,
//!                    plaintext = (user id, permissions, locators) of every user,
//!                    associated data = every byte of the record before it
//! ```
//!
//! * The root wrap is the data key under the root key. The key-check value
//!   tells a wrong root key (`WRONG_KEY`) from an altered record
//!   (`INTEGRITY`).
//! * A user holds one wrap per permission (READ, WRITE): a read-only user
//!   has no write wrap. Each wrap is bound to the index, name, user id,
//!   permission and data-key version; it is filed under a locator derived
//!   from the user's key, so the store learns neither user ids nor which wraps
//!   belong together.
//! * The registry authenticates the whole record: whoever unwraps the data
//!   key (root or user) checks that no wrap was added, dropped, swapped or
//!   edited, and that the user's wraps are exactly the permissions the root
//!   granted. It is also how the root lists users and finds a user's wraps to
//!   delete them.
//! * `rotate_key` re-wraps the data key under a new root key; user wraps do
//!   not change (they wrap the same data key).
//! * Every change bumps the record's generation, so a handle that saw a
//!   newer record refuses an older one put back (a revoked user's wraps, an
//!   old root wrap).

use crate::codec::{Reader, Writer};
use crate::crypto::{cipher_for, derive_key, open_with, seal_with, Kek, SecretKey, Token, WrapContext, USER_ID_LEN};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"VXH1";
/// Layout version of the key record (the manifest has its own).
const RECORD_FORMAT: u32 = 2;
/// The data key is never replaced (that would mean re-encrypting every
/// object), so every wrap is of version 1; the field keeps the format open.
const DATA_KEY_VERSION: u32 = 1;

pub const PERMISSION_READ: u8 = 1;
pub const PERMISSION_WRITE: u8 = 2;
/// The root holds every permission, including user management.
pub const PERMISSION_ROOT: u8 = 0xff;
const ROOT_PRINCIPAL: [u8; USER_ID_LEN] = [0; USER_ID_LEN];
/// Bounds the key record, which every call with a per-call key reads.
pub const MAX_USERS: usize = 4096;

/// One user as the registry lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserEntry {
    pub user_id: [u8; USER_ID_LEN],
    pub perms: u8,
    /// Where the READ and WRITE wraps are filed (zeros where not granted),
    /// so the root, who does not have the user's key, can find them.
    locators: [Token; 2],
}

impl UserEntry {
    fn filed(&self) -> impl Iterator<Item = &Token> + '_ {
        each_perm(self.perms).map(|p| &self.locators[slot(p)])
    }
}

fn slot(perm: u8) -> usize {
    usize::from(perm == PERMISSION_WRITE)
}

/// What a key opened: the data key, the permissions it carries, and (for the
/// root, who may change it) the list of users.
pub struct Unlocked {
    pub data_key: SecretKey,
    pub perms: u8,
    pub users: Vec<UserEntry>,
}

#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub index_id: [u8; 16],
    /// Bumped by every change; a handle refuses to go back.
    pub generation: u32,
    root_kcv: Vec<u8>,
    root_wrap: Vec<u8>,
    wraps: Vec<(Token, Vec<u8>)>,
    registry: Vec<u8>,
}

fn each_perm(perms: u8) -> impl Iterator<Item = u8> {
    [PERMISSION_READ, PERMISSION_WRITE].into_iter().filter(move |p| perms & p != 0)
}

impl KeyRecord {
    /// A new index's record: the data key wrapped for the root, no users.
    pub fn new(index_id: [u8; 16], name: &str, root: &SecretKey, data_key: &SecretKey) -> Result<KeyRecord> {
        let mut h = KeyRecord {
            index_id,
            generation: 1,
            root_kcv: Vec::new(),
            root_wrap: Vec::new(),
            wraps: Vec::new(),
            registry: Vec::new(),
        };
        h.wrap_for_root(name, root, data_key)?;
        h.seal_registry(name, data_key, &[])?;
        Ok(h)
    }

    fn wrap_for_root(&mut self, name: &str, root: &SecretKey, data_key: &SecretKey) -> Result<()> {
        let kek = Kek::new(root, &self.index_id);
        self.root_kcv = kek.check_value().to_vec();
        self.root_wrap = kek.wrap(data_key, &self.context(name, &ROOT_PRINCIPAL, PERMISSION_ROOT))?;
        Ok(())
    }

    fn context<'a>(&'a self, name: &'a str, principal: &'a [u8; USER_ID_LEN], perms: u8) -> WrapContext<'a> {
        WrapContext { index_id: &self.index_id, name, principal, perms, key_version: DATA_KEY_VERSION }
    }

    /// Everything the registry authenticates (all but the registry itself).
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(MAGIC);
        w.u32(RECORD_FORMAT);
        w.raw(&self.index_id);
        w.u32(self.generation);
        w.u32(DATA_KEY_VERSION);
        w.bytes(&self.root_kcv);
        w.bytes(&self.root_wrap);
        w.u32(self.wraps.len() as u32);
        for (locator, wrap) in &self.wraps {
            w.raw(locator);
            w.bytes(wrap);
        }
        w.buf
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer { buf: self.body() };
        w.bytes(&self.registry);
        w.buf
    }

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
        if r.u32()? != DATA_KEY_VERSION {
            return Err(bad("names an unknown data-key version"));
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
        r.finish()?;
        Ok(KeyRecord { index_id, generation, root_kcv, root_wrap, wraps, registry })
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
    /// data; call after every change to the record.
    fn seal_registry(&mut self, name: &str, data_key: &SecretKey, users: &[UserEntry]) -> Result<()> {
        let mut w = Writer::default();
        w.u32(users.len() as u32);
        for u in users {
            w.raw(&u.user_id);
            w.u8(u.perms);
            w.raw(&u.locators[0]);
            w.raw(&u.locators[1]);
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

    /// Opens the record with a root key (`user = None`) or a user's key.
    ///
    /// * `WRONG_KEY`: the root key does not match the key-check value, or no
    ///   wrap is filed for this user id under this key (a wrong key, a user
    ///   that never existed and a deleted user look the same by design).
    /// * `INTEGRITY`: a wrap or the registry does not authenticate.
    pub fn unlock(&self, name: &str, key: &SecretKey, user: Option<&[u8; USER_ID_LEN]>) -> Result<Unlocked> {
        let altered = || Error::integrity(format!("key record of index '{name}' was altered"));
        let kek = Kek::new(key, &self.index_id);
        let Some(user_id) = user else {
            if !kek.matches(&self.root_kcv) {
                return Err(Error::WrongKey(format!("wrong root key for index '{name}'")));
            }
            let data_key = kek
                .unwrap(&self.context(name, &ROOT_PRINCIPAL, PERMISSION_ROOT), &self.root_wrap)
                .ok_or_else(altered)?;
            let users = self.open_registry(name, &data_key)?;
            return Ok(Unlocked { data_key, perms: PERMISSION_ROOT, users });
        };
        let mut found: Option<SecretKey> = None;
        let mut perms = 0u8;
        let mut locators = [[0u8; 16]; 2];
        for perm in each_perm(PERMISSION_READ | PERMISSION_WRITE) {
            locators[slot(perm)] = kek.locator(user_id, perm);
            let Some(wrap) = self.wrap_at(&locators[slot(perm)]) else { continue };
            let dk = kek.unwrap(&self.context(name, user_id, perm), wrap).ok_or_else(altered)?;
            if found.as_ref().is_some_and(|f| *f != dk) {
                return Err(altered());
            }
            found = Some(dk);
            perms |= perm;
        }
        let data_key = found.ok_or_else(|| {
            Error::WrongKey(format!("no keys for this user id on index '{name}' (wrong key, or the user was deleted)"))
        })?;
        let users = self.open_registry(name, &data_key)?;
        if !users.iter().any(|u| {
            u.user_id == *user_id && u.perms == perms && u.filed().eq(each_perm(perms).map(|p| &locators[slot(p)]))
        }) {
            return Err(altered());
        }
        Ok(Unlocked { data_key, perms, users: Vec::new() })
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
    /// `user_kek` (replacing any wraps it had).
    pub fn with_user(
        &self,
        name: &str,
        root: &Unlocked,
        user_id: &[u8; USER_ID_LEN],
        user_kek: &SecretKey,
        perms: u8,
    ) -> Result<KeyRecord> {
        let mut users = root.users.clone();
        let mut next = self.without_user_wraps(root, user_id)?;
        users.retain(|u| u.user_id != *user_id);
        if users.len() >= MAX_USERS {
            return Err(Error::invalid(format!("index '{name}' already has the maximum of {MAX_USERS} users")));
        }
        let kek = Kek::new(user_kek, &self.index_id);
        let mut entry = UserEntry { user_id: *user_id, perms, locators: [[0u8; 16]; 2] };
        for perm in each_perm(perms) {
            let wrap = kek.wrap(&root.data_key, &self.context(name, user_id, perm))?;
            entry.locators[slot(perm)] = kek.locator(user_id, perm);
            next.wraps.push((entry.locators[slot(perm)], wrap));
        }
        next.wraps.sort_by_key(|w| w.0);
        if next.wraps.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid("this user key collides with another user's; choose another key"));
        }
        users.push(entry);
        next.seal_registry(name, &root.data_key, &users)?;
        Ok(next)
    }

    /// Root-held state → a record without `user_id`'s wraps; `None` if it had none.
    pub fn without_user(&self, name: &str, root: &Unlocked, user_id: &[u8; USER_ID_LEN]) -> Result<Option<KeyRecord>> {
        if !root.users.iter().any(|u| u.user_id == *user_id) {
            return Ok(None);
        }
        let mut next = self.without_user_wraps(root, user_id)?;
        let users: Vec<UserEntry> = root.users.iter().copied().filter(|u| u.user_id != *user_id).collect();
        next.seal_registry(name, &root.data_key, &users)?;
        Ok(Some(next))
    }

    /// A copy one generation on without `user_id`'s wraps (found by the
    /// locators the registry keeps); the caller reseals the registry.
    fn without_user_wraps(&self, root: &Unlocked, user_id: &[u8; USER_ID_LEN]) -> Result<KeyRecord> {
        let mut next = self.successor()?;
        if let Some(entry) = root.users.iter().find(|u| u.user_id == *user_id) {
            next.wraps.retain(|(l, _)| !entry.filed().any(|f| f == l));
        }
        Ok(next)
    }

    /// Root-held state → the same record re-wrapped for `new_root`, one
    /// generation on. The data key and user wraps are unchanged.
    pub fn rotated(&self, name: &str, root: &Unlocked, new_root: &SecretKey) -> Result<KeyRecord> {
        let mut next = self.successor()?;
        next.wrap_for_root(name, new_root, &root.data_key)?;
        next.seal_registry(name, &root.data_key, &root.users)?;
        Ok(next)
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
        let dk = SecretKey::random().unwrap();
        let mut h = KeyRecord::new([7; 16], NAME, &key(1), &dk).unwrap();
        for (u, perms) in [(1u8, PERMISSION_READ), (2, PERMISSION_READ | PERMISSION_WRITE), (3, PERMISSION_WRITE)] {
            let root = h.unlock(NAME, &key(1), None).unwrap();
            h = h.with_user(NAME, &root, &[u; 16], &key(10 + u), perms).unwrap();
        }
        (h, dk)
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
        assert!(root.data_key == dk && root.perms == PERMISSION_ROOT);
        let ids: Vec<u8> = root.users.iter().map(|u| u.user_id[0]).collect();
        assert_eq!(ids, [1, 2, 3]);
        for (u, perms) in [(1u8, 1u8), (2, 3), (3, 2)] {
            let got = h.unlock(NAME, &key(10 + u), Some(&[u; 16])).unwrap();
            assert!(got.data_key == dk);
            assert_eq!(got.perms, perms, "user {u}");
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
        let h2 = h.with_user(NAME, &root, &[1; 16], &key(21), PERMISSION_WRITE).unwrap();
        assert!(matches!(err(h2.unlock(NAME, &key(11), Some(&[1; 16]))), Error::WrongKey(_)));
        assert_eq!(h2.unlock(NAME, &key(21), Some(&[1; 16])).unwrap().perms, PERMISSION_WRITE);
        assert_eq!(h2.wraps.len(), 4);
        // Delete user 2; deleting again is a no-op.
        let root2 = h2.unlock(NAME, &key(1), None).unwrap();
        let h3 = h2.without_user(NAME, &root2, &[2; 16]).unwrap().unwrap();
        assert!(matches!(err(h3.unlock(NAME, &key(12), Some(&[2; 16]))), Error::WrongKey(_)));
        let root3 = h3.unlock(NAME, &key(1), None).unwrap();
        assert!(h3.without_user(NAME, &root3, &[2; 16]).unwrap().is_none());
        assert_eq!(h3.wraps.len(), 2);
        // Rotate: the old root stops, the new root and the users work, the generation moves on.
        let h4 = h3.rotated(NAME, &root3, &key(5)).unwrap();
        assert_eq!(h4.generation, h3.generation + 1);
        assert!(matches!(err(h4.unlock(NAME, &key(1), None)), Error::WrongKey(_)));
        assert!(h4.unlock(NAME, &key(5), None).unwrap().data_key == dk);
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
        let forged = u1.wrap(&root.data_key, &h.context(NAME, &[1; 16], PERMISSION_WRITE)).unwrap();
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
            let dk = root.data_key.clone();
            let mut o = KeyRecord::new(h.index_id, NAME, &key(1), &dk).unwrap();
            for (u, perms) in [(1u8, PERMISSION_READ), (2, PERMISSION_READ | PERMISSION_WRITE)] {
                let r = o.unlock(NAME, &key(1), None).unwrap();
                o = o.with_user(NAME, &r, &[u; 16], &key(10 + u), perms).unwrap();
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
        let dk = SecretKey::random().unwrap();
        let mut b = KeyRecord::new([8; 16], NAME, &key(1), &dk).unwrap();
        // Index b's user 1 is read-only; graft index a's wraps into b.
        let root = b.unlock(NAME, &key(1), None).unwrap();
        b = b.with_user(NAME, &root, &[1; 16], &key(11), PERMISSION_READ).unwrap();
        let mut grafted = b.clone();
        grafted.wraps.extend(a.wraps.iter().cloned());
        grafted.wraps.sort_by_key(|w| w.0);
        assert!(matches!(err(grafted.unlock(NAME, &key(11), Some(&[1; 16]))), Error::Integrity(_)));
        assert!(matches!(err(grafted.unlock(NAME, &key(12), Some(&[2; 16]))), Error::WrongKey(_)));
    }
}
