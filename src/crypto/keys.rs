//! Key types and the key hierarchy.
//!
//! ```text
//! index key (root KEK, caller's, never stored)
//!   └─ HKDF(salt = index id) ──> wrap key ──AES-GCM──> root wrap (stored): data key,
//!                           │                          writer seed, root secret
//!                           └──> key-check value (stored; tells WRONG_KEY from INTEGRITY)
//! user key (a user's KEK, never stored)
//!   └─ HKDF(salt = index id) ──> wrap key ──AES-GCM──> one wrap per permission (stored):
//!                           │                          READ: data key; WRITE: + writer seed
//!                           └──> locator key: where each wrap is filed
//! data key of generation g (random, 32 bytes; a new one after every revocation)
//!   └─ HKDF(salt = index id) ──> AEAD key per key version (rotated before 2^31 encryptions)
//! data key of generation 1 ──> a token key per purpose (ids, chunk and bucket numbers)
//! writer seed ──> Ed25519 key that signs manifests; root secret ──> Ed25519 key that signs
//!                 the key record, and the key that seals each user's wrap and locator keys
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use parking_lot::{Mutex, RwLock};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{
    cipher_for, derive_key, open_into, open_with, random_bytes, seal_with, PublicKey, Token, Tokenizer, SEAL_OVERHEAD,
};
use crate::error::Result;

pub const KEY_LEN: usize = 32;
pub const USER_ID_LEN: usize = 16;
const KCV_LEN: usize = 16;

/// Encryptions allowed under one AEAD key before the writer moves to the next
/// key version. Random 96-bit nonces stay safe far below 2^32 messages; 2^31
/// leaves a margin for the one batch that crosses the line.
pub const MAX_ENCRYPTIONS_PER_KEY: u64 = 1 << 31;

/// 32 secret bytes, wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    pub fn zero() -> SecretKey {
        SecretKey([0u8; KEY_LEN])
    }

    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> SecretKey {
        SecretKey(*bytes)
    }

    pub fn random() -> Result<SecretKey> {
        let mut k = SecretKey::zero();
        random_bytes(&mut k.0)?;
        Ok(k)
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; KEY_LEN] {
        &mut self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// What a wrapped data key is bound to: a wrap opens only for the index,
/// name, principal (zeros for the root), permission and data-key version it
/// was made for, so a wrap copied to another index, name, user or permission
/// fails authentication.
pub struct WrapContext<'a> {
    pub index_id: &'a [u8; 16],
    pub name: &'a str,
    pub principal: &'a [u8; USER_ID_LEN],
    pub perms: u8,
    /// The data-key generation the wrap holds.
    pub generation: u32,
    /// The signing keys the record names: a wrap opens only beside the
    /// public keys the root bound it to, so whoever opens it can trust them.
    pub root_public: &'a PublicKey,
    pub writer_public: &'a PublicKey,
}

impl WrapContext<'_> {
    fn ad(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(128 + self.name.len());
        ad.extend_from_slice(b"vx1 wrapped keys");
        ad.extend_from_slice(self.index_id);
        ad.extend_from_slice(&(self.name.len() as u64).to_le_bytes());
        ad.extend_from_slice(self.name.as_bytes());
        ad.extend_from_slice(self.principal);
        ad.push(self.perms);
        ad.extend_from_slice(&self.generation.to_le_bytes());
        ad.extend_from_slice(self.root_public);
        ad.extend_from_slice(self.writer_public);
        ad
    }
}

/// The keys one key-encryption key (a root key or a user's key) yields for
/// one index: a wrap key, a key-check value (tells `WRONG_KEY` from
/// `INTEGRITY` for the root) and a locator key (lets a user find its wraps
/// without the store learning the user id).
pub struct Kek {
    wrap_key: SecretKey,
    locator_key: SecretKey,
    wrap: Aes256Gcm,
    kcv: [u8; KCV_LEN],
    locators: Tokenizer,
}

/// Bytes of [`Kek::export`].
pub const KEK_EXPORT_LEN: usize = 2 * KEY_LEN;

impl Kek {
    pub fn new(kek: &SecretKey, index_id: &[u8; 16]) -> Kek {
        let kcv_full = derive_key(kek.bytes(), index_id, &[b"vx1 key check value"]);
        let mut kcv = [0u8; KCV_LEN];
        kcv.copy_from_slice(&kcv_full.bytes()[..KCV_LEN]);
        let wrap_key = derive_key(kek.bytes(), index_id, &[b"vx1 wrap key"]);
        let locator_key = derive_key(kek.bytes(), index_id, &[b"vx1 user locator"]);
        Kek::from_parts(wrap_key, locator_key, kcv)
    }

    fn from_parts(wrap_key: SecretKey, locator_key: SecretKey, kcv: [u8; KCV_LEN]) -> Kek {
        Kek { wrap: cipher_for(&wrap_key), locators: Tokenizer::new(&locator_key), wrap_key, locator_key, kcv }
    }

    /// The derived keys that wrap for this principal and file its wraps: what
    /// the root keeps (sealed) to re-wrap a user's keys without its key.
    pub fn export(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(KEK_EXPORT_LEN));
        out.extend_from_slice(self.wrap_key.bytes());
        out.extend_from_slice(self.locator_key.bytes());
        out
    }

    /// The `Kek` of an [`Kek::export`] (without a key-check value, which
    /// only the root's needs).
    pub fn import(bytes: &[u8]) -> Option<Kek> {
        if bytes.len() != KEK_EXPORT_LEN {
            return None;
        }
        let wrap_key = SecretKey::from_bytes(bytes[..KEY_LEN].try_into().ok()?);
        let locator_key = SecretKey::from_bytes(bytes[KEY_LEN..].try_into().ok()?);
        Some(Kek::from_parts(wrap_key, locator_key, [0; KCV_LEN]))
    }

    pub fn check_value(&self) -> [u8; KCV_LEN] {
        self.kcv
    }

    pub fn matches(&self, stored_kcv: &[u8]) -> bool {
        stored_kcv.len() == KCV_LEN && bool::from(self.kcv.ct_eq(stored_kcv))
    }

    /// Where a user's wrap for one permission is filed: only the holder of
    /// the user's key (and the root, who keeps it in the sealed registry)
    /// can link it to the user.
    pub fn locator(&self, user_id: &[u8; USER_ID_LEN], perm: u8) -> Token {
        self.locators.token(&[user_id, &[perm]])
    }

    /// Seals `keys` (one or more 32-byte secrets) for this principal.
    pub fn wrap(&self, keys: &[&SecretKey], ctx: &WrapContext<'_>) -> Result<Vec<u8>> {
        let mut plain = Zeroizing::new(Vec::with_capacity(keys.len() * KEY_LEN));
        keys.iter().for_each(|k| plain.extend_from_slice(k.bytes()));
        let mut sealed = Vec::new();
        seal_with(&self.wrap, &ctx.ad(), &plain, &mut sealed)?;
        Ok(sealed)
    }

    /// The 32-byte secrets of a wrap; `None` if it does not open under this
    /// key and context.
    pub fn unwrap(&self, ctx: &WrapContext<'_>, sealed: &[u8]) -> Option<Vec<SecretKey>> {
        let plain = open_with(&self.wrap, &ctx.ad(), sealed)?;
        if plain.is_empty() || plain.len() % KEY_LEN != 0 {
            return None;
        }
        Some(plain.chunks_exact(KEY_LEN).map(|k| SecretKey::from_bytes(k.try_into().unwrap())).collect())
    }
}

/// The working keys of one index, derived from its data keys: token keys by
/// purpose (from the first generation's) and one AEAD key per key version
/// (from the generation that version belongs to). What the objects are is
/// the index's business; here an object is a domain byte, a token and a
/// version, all bound into the associated data.
pub struct DataKeys {
    index_id: [u8; 16],
    /// Every data-key generation, oldest first: the first AEAD key version
    /// sealed under it, and the key.
    generations: RwLock<Vec<(u32, SecretKey)>>,
    ciphers: Mutex<HashMap<u32, Arc<Aes256Gcm>>>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKeys([redacted])")
    }
}

impl DataKeys {
    /// `generations`: (first key version, data key) of each generation,
    /// oldest first, the first starting at key version 0.
    pub fn new(generations: Vec<(u32, SecretKey)>, index_id: [u8; 16]) -> DataKeys {
        assert!(generations.first().is_some_and(|g| g.0 == 0), "generation 1 starts at key version 0");
        DataKeys { ciphers: Mutex::new(HashMap::new()), index_id, generations: RwLock::new(generations) }
    }

    /// The token generator for one purpose (e.g. `b"id token"`): from the
    /// first generation's key, so object names never change.
    pub fn tokenizer(&self, purpose: &[u8]) -> Tokenizer {
        Tokenizer::new(&derive_key(self.generations.read()[0].1.bytes(), &self.index_id, &[b"vx1 ", purpose]))
    }

    /// Whether `other` names the same first data key (the same index).
    pub fn same_index(&self, other: &[(u32, SecretKey)]) -> bool {
        other.first().is_some_and(|g| *g == self.generations.read()[0])
    }

    /// Takes the generations a newer key record holds; `false` (nothing
    /// changes) unless they extend the ones known.
    pub fn extend(&self, generations: &[(u32, SecretKey)]) -> bool {
        let mut known = self.generations.write();
        if generations.len() < known.len() || known.iter().zip(generations).any(|(a, b)| a != b) {
            return false;
        }
        let have = known.len();
        known.extend(generations[have..].iter().map(|(v, k)| (*v, k.clone())));
        true
    }

    /// The first key version of the newest generation known.
    pub fn newest_key_version(&self) -> u32 {
        self.generations.read().last().expect("generation 1").0
    }

    fn cipher(&self, key_version: u32) -> Arc<Aes256Gcm> {
        let mut map = self.ciphers.lock();
        map.entry(key_version)
            .or_insert_with(|| {
                let generations = self.generations.read();
                let (_, key) = generations.iter().rev().find(|(first, _)| *first <= key_version).expect("generation 1");
                let k = derive_key(key.bytes(), &self.index_id, &[b"vx1 aead key ", &key_version.to_le_bytes()]);
                Arc::new(cipher_for(&k))
            })
            .clone()
    }

    fn object_ad(&self, domain: u8, token: &[u8], version: u64, key_version: u32) -> [u8; 49] {
        let mut ad = [0u8; 49];
        ad[..4].copy_from_slice(b"vx1\0");
        ad[4..20].copy_from_slice(&self.index_id);
        ad[20] = domain;
        let t = token.len().min(16);
        ad[21..21 + t].copy_from_slice(&token[..t]);
        ad[37..45].copy_from_slice(&version.to_le_bytes());
        ad[45..49].copy_from_slice(&key_version.to_le_bytes());
        ad
    }

    /// The AEAD key version `sealed` claims, if it is at most
    /// `max_key_version`. Checked before any key is derived, so a tampered
    /// store that presents ever new key versions cannot grow the cipher map.
    fn key_version(sealed: &[u8], max_key_version: u32) -> Option<u32> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        Some(u32::from_le_bytes(sealed[..4].try_into().unwrap())).filter(|&v| v <= max_key_version)
    }

    /// Opens an object sealed by a [`Sealer`] under a key version at most
    /// `max_key_version`; `None` on any mismatch of domain, token, version
    /// or bytes.
    pub fn open(
        &self,
        max_key_version: u32,
        domain: u8,
        token: &Token,
        version: u64,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let key_version = Self::key_version(sealed, max_key_version)?;
        let ad = self.object_ad(domain, token, version, key_version);
        open_with(&self.cipher(key_version), &ad, &sealed[4..])
    }

    /// Length of the plaintext inside a sealed object.
    pub fn plaintext_len(sealed: &[u8]) -> Option<usize> {
        sealed.len().checked_sub(SEAL_OVERHEAD)
    }

    /// As [`DataKeys::open`], decrypting into `out`, which must be exactly
    /// [`DataKeys::plaintext_len`] bytes; `false` on any mismatch.
    pub fn open_into(
        &self,
        max_key_version: u32,
        domain: u8,
        token: &Token,
        version: u64,
        sealed: &[u8],
        out: &mut [u8],
    ) -> bool {
        let Some(key_version) = Self::key_version(sealed, max_key_version) else { return false };
        let ad = self.object_ad(domain, token, version, key_version);
        open_into(&self.cipher(key_version), &ad, &sealed[4..], out)
    }

    /// A sealer for one write batch under `key_version`.
    pub fn sealer(&self, key_version: u32) -> Sealer<'_> {
        Sealer { keys: self, key_version, cipher: self.cipher(key_version), count: AtomicU64::new(0) }
    }
}

/// Seals the objects of one write batch and counts the encryptions, so the
/// manifest can move to a new key version before the nonce budget runs out.
pub struct Sealer<'a> {
    keys: &'a DataKeys,
    key_version: u32,
    cipher: Arc<Aes256Gcm>,
    count: AtomicU64,
}

impl Sealer<'_> {
    pub fn seal(&self, domain: u8, token: &Token, version: u64, plaintext: &[u8]) -> Result<Vec<u8>> {
        let ad = self.keys.object_ad(domain, token, version, self.key_version);
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&self.key_version.to_le_bytes());
        seal_with(&self.cipher, &ad, plaintext, &mut out)?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    pub fn encryptions(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_bound_to_their_context() {
        let kek = Kek::new(&SecretKey::from_bytes(&[3u8; 32]), &[9u8; 16]);
        let dk = SecretKey::random().unwrap();
        let ctx = |name, perms| WrapContext {
            index_id: &[9u8; 16],
            name,
            principal: &[0u8; 16],
            perms,
            generation: 1,
            root_public: &[1; 32],
            writer_public: &[2; 32],
        };
        let sealed = kek.wrap(&[&dk, &dk], &ctx("n", 3)).unwrap();
        assert!(kek.unwrap(&ctx("n", 3), &sealed).unwrap() == vec![dk.clone(), dk.clone()]);
        assert!(kek.unwrap(&ctx("other", 3), &sealed).is_none());
        assert!(kek.unwrap(&ctx("n", 1), &sealed).is_none());
        let other_writer = WrapContext { writer_public: &[3; 32], ..ctx("n", 3) };
        assert!(kek.unwrap(&other_writer, &sealed).is_none());
        let imported = Kek::import(&kek.export()).unwrap();
        assert!(imported.unwrap(&ctx("n", 3), &sealed).is_some());
        assert_eq!(imported.locator(&[1; 16], 1), kek.locator(&[1; 16], 1));
        let other = Kek::new(&SecretKey::from_bytes(&[4u8; 32]), &[9u8; 16]);
        assert!(other.unwrap(&ctx("n", 3), &sealed).is_none());
        assert!(!other.matches(&kek.check_value()) && kek.matches(&kek.check_value()));
        assert_ne!(kek.locator(&[1; 16], 1), kek.locator(&[1; 16], 2));
        assert_ne!(kek.locator(&[1; 16], 1), other.locator(&[1; 16], 1));
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = SecretKey::from_bytes(&[0xAB; 32]);
        let s = format!("{k:?}");
        assert!(!s.contains("171") && !s.to_lowercase().contains("ab,"), "{s}");
        let dk = DataKeys::new(vec![(0, k)], [0; 16]);
        assert_eq!(format!("{dk:?}"), "DataKeys([redacted])");
    }

    #[test]
    fn objects_bound_to_place_and_version() {
        let dk = DataKeys::new(vec![(0, SecretKey::from_bytes(&[5u8; 32]))], [1; 16]);
        let s = dk.sealer(0);
        let t = [7u8; 16];
        let sealed = s.seal(b'C', &t, 5, b"payload").unwrap();
        assert_eq!(s.encryptions(), 1);
        assert_eq!(&dk.open(0, b'C', &t, 5, &sealed).unwrap()[..], b"payload");
        assert!(dk.open(0, b'C', &t, 4, &sealed).is_none());
        assert!(dk.open(0, b'B', &t, 5, &sealed).is_none());
        assert!(dk.open(0, b'C', &[8u8; 16], 5, &sealed).is_none());
        let other = DataKeys::new(vec![(0, SecretKey::from_bytes(&[5u8; 32]))], [2; 16]);
        assert!(other.open(0, b'C', &t, 5, &sealed).is_none());
        let mut out = vec![0u8; DataKeys::plaintext_len(&sealed).unwrap()];
        assert!(dk.open_into(0, b'C', &t, 5, &sealed, &mut out) && out == b"payload");
        assert!(!dk.open_into(0, b'C', &t, 6, &sealed, &mut out));
    }

    #[test]
    fn each_generation_seals_its_own_key_versions() {
        let g1 = SecretKey::from_bytes(&[5u8; 32]);
        let dk = DataKeys::new(vec![(0, g1.clone())], [1; 16]);
        let t = [7u8; 16];
        let old = dk.sealer(3).seal(b'C', &t, 5, b"old").unwrap();
        let tokens = dk.tokenizer(b"id token").token(&[b"a"]);
        assert!(!dk.extend(&[(0, SecretKey::from_bytes(&[6u8; 32]))]), "another index's keys");
        assert!(dk.extend(&[(0, g1), (4, SecretKey::from_bytes(&[6u8; 32]))]));
        let new = dk.sealer(4).seal(b'C', &t, 6, b"new").unwrap();
        assert_eq!(&dk.open(4, b'C', &t, 5, &old).unwrap()[..], b"old");
        assert_eq!(&dk.open(4, b'C', &t, 6, &new).unwrap()[..], b"new");
        assert_eq!(dk.tokenizer(b"id token").token(&[b"a"]), tokens);
        // Generation 1's key alone opens nothing sealed under generation 2.
        let revoked = DataKeys::new(vec![(0, SecretKey::from_bytes(&[5u8; 32]))], [1; 16]);
        assert!(revoked.open(4, b'C', &t, 6, &new).is_none());
    }

    /// A tampered store presents an object under ever new key versions:
    /// before, each one derived and kept another cipher.
    #[test]
    fn key_versions_above_the_newest_are_refused_before_any_derivation() {
        let dk = DataKeys::new(vec![(0, SecretKey::from_bytes(&[5u8; 32]))], [1; 16]);
        let t = [7u8; 16];
        let mut sealed = dk.sealer(2).seal(b'C', &t, 5, b"payload").unwrap();
        assert!(dk.open(2, b'C', &t, 5, &sealed).is_some());
        let mut out = vec![0u8; DataKeys::plaintext_len(&sealed).unwrap()];
        for forged in 3..1000u32 {
            sealed[..4].copy_from_slice(&forged.to_le_bytes());
            assert!(dk.open(2, b'C', &t, 5, &sealed).is_none());
            assert!(!dk.open_into(2, b'C', &t, 5, &sealed, &mut out));
        }
        assert_eq!(dk.ciphers.lock().len(), 1);
    }
}
