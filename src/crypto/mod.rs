//! Cryptographic building blocks: zeroizing key buffers, OS randomness,
//! HKDF-SHA-256 subkeys, HMAC-SHA-256 tokens and AES-256-GCM sealing with
//! associated data. Everything above this module speaks in these terms and
//! never touches a raw cipher.

mod keys;

pub use keys::{DataKeys, Kek, Sealer, SecretKey, WrapContext, KEY_LEN, MAX_ENCRYPTIONS_PER_KEY, USER_ID_LEN};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Tokens (HMAC outputs) are truncated to 128 bits: collision-free in practice
/// for any number of items an index can hold, and half the storage of 256.
pub const TOKEN_LEN: usize = 16;
pub type Token = [u8; TOKEN_LEN];
pub const DIGEST_LEN: usize = 32;
/// SHA-256 of an object's sealed bytes: what the manifest pins it by.
pub type Digest = [u8; DIGEST_LEN];

pub fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    Sha256::digest(bytes).into()
}

pub const PUBLIC_KEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;
pub type PublicKey = [u8; PUBLIC_KEY_LEN];
pub type Signature = [u8; SIGNATURE_LEN];

/// An Ed25519 signing key made from a 32-byte secret seed (wiped on drop).
pub struct Signer(ed25519_dalek::SigningKey);

impl Signer {
    pub fn from_seed(seed: &SecretKey) -> Signer {
        Signer(ed25519_dalek::SigningKey::from_bytes(seed.bytes()))
    }

    pub fn public(&self) -> PublicKey {
        self.0.verifying_key().to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

/// Whether `signature` is `public`'s over `message` (strict verification:
/// no malleable or small-order encodings).
pub fn verify(public: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else { return false };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
}

/// Bytes a sealed object adds to its plaintext: key version, nonce, tag.
pub const SEAL_OVERHEAD: usize = 4 + NONCE_LEN + TAG_LEN;

/// Fills `buf` from the operating system's generator; failure is an error,
/// never a fallback to something weaker.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::RngFailed(e.to_string()))
}

/// HKDF-SHA-256 (salt, ikm) -> 32-byte subkey for `info`.
pub fn derive_key(ikm: &[u8], salt: &[u8], info: &[&[u8]]) -> SecretKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = SecretKey::zero();
    hk.expand_multi_info(info, out.bytes_mut()).expect("32 bytes is a valid HKDF-SHA-256 output length");
    out
}

/// A keyed HMAC-SHA-256 token generator (ids, chunk and bucket numbers).
#[derive(Clone)]
pub struct Tokenizer {
    mac: Hmac<Sha256>,
}

impl Tokenizer {
    pub fn new(key: &SecretKey) -> Tokenizer {
        Tokenizer { mac: <Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes()).expect("HMAC accepts any key length") }
    }

    pub fn token(&self, parts: &[&[u8]]) -> Token {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; TOKEN_LEN];
        t.copy_from_slice(&full[..TOKEN_LEN]);
        t
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer([redacted])")
    }
}

/// AES-256-GCM with a random 96-bit nonce: returns nonce || ciphertext || tag.
pub fn seal_with(cipher: &Aes256Gcm, ad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let ct = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: ad })
        .map_err(|_| Error::Internal("AES-GCM encryption failed".into()))?;
    out.reserve(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(())
}

/// Opens nonce || ciphertext || tag; any change to it or to `ad` is `None`.
pub fn open_with(cipher: &Aes256Gcm, ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).ok()?;
    cipher.decrypt(&nonce, Payload { msg: ct, aad: ad }).ok().map(Zeroizing::new)
}

/// Opens nonce || ciphertext || tag into `out` (exactly the plaintext's
/// length), decrypting in place; `false` on any change to it or to `ad`.
/// Lets callers decrypt straight into the buffer the data will live in.
pub fn open_into(cipher: &Aes256Gcm, ad: &[u8], sealed: &[u8], out: &mut [u8]) -> bool {
    use aes_gcm::aead::AeadInOut;
    if sealed.len() != NONCE_LEN + out.len() + TAG_LEN {
        return false;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(out.len());
    out.copy_from_slice(ct);
    let (Ok(nonce), Ok(tag)) = (Nonce::try_from(nonce), aes_gcm::Tag::try_from(tag)) else { return false };
    let ok = cipher.decrypt_inout_detached(&nonce, ad, out.into(), &tag).is_ok();
    if !ok {
        wipe(out);
    }
    ok
}

/// Overwrites secret bytes with zeros in a way the compiler may not elide,
/// at memset speed (`zeroize` writes one volatile element at a time, which
/// dominated the cost of dropping large decrypted chunks).
pub fn wipe(buf: &mut [u8]) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: the pointer and length come from a live, exclusive slice.
    unsafe {
        libc::explicit_bzero(buf.as_mut_ptr().cast(), buf.len());
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    zeroize::Zeroize::zeroize(buf);
}

pub fn cipher_for(key: &SecretKey) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(key.bytes()).expect("32-byte key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = SecretKey::from_bytes(&[7u8; 32]);
        let c = cipher_for(&key);
        let mut sealed = Vec::new();
        seal_with(&c, b"ad", b"hello", &mut sealed).unwrap();
        assert_eq!(&open_with(&c, b"ad", &sealed).unwrap()[..], b"hello");
        assert!(open_with(&c, b"other", &sealed).is_none());
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(open_with(&c, b"ad", &t).is_none(), "flip at {i} not detected");
        }
        assert!(open_with(&c, b"ad", &sealed[..sealed.len() - 1]).is_none());
    }

    /// Without the `zeroize` features of `hmac` and `sha2`, HMAC states
    /// (token keys) and HKDF intermediates were dropped unwiped; this does
    /// not compile then.
    #[test]
    fn hash_and_mac_states_wipe_themselves() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<Sha256>();
        // HMAC (and so HKDF, which holds its PRK in one) keeps its state in
        // two of these and a block buffer, which wipe themselves too.
        wiped_on_drop::<<Sha256 as hmac::EagerHash>::Core>();
    }

    #[test]
    fn signatures_verify_only_unchanged_under_their_key() {
        let s = Signer::from_seed(&SecretKey::from_bytes(&[3u8; 32]));
        let other = Signer::from_seed(&SecretKey::from_bytes(&[4u8; 32]));
        let sig = s.sign(b"message");
        assert!(verify(&s.public(), b"message", &sig));
        assert!(!verify(&s.public(), b"messagE", &sig));
        assert!(!verify(&other.public(), b"message", &sig));
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(!verify(&s.public(), b"message", &flipped));
        assert_eq!(format!("{s:?}"), "Signer([redacted])");
    }

    #[test]
    fn nonces_differ() {
        let c = cipher_for(&SecretKey::from_bytes(&[1u8; 32]));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal_with(&c, b"", b"x", &mut a).unwrap();
        seal_with(&c, b"", b"x", &mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_are_keyed_and_length_prefixed() {
        let t1 = Tokenizer::new(&SecretKey::from_bytes(&[1u8; 32]));
        let t2 = Tokenizer::new(&SecretKey::from_bytes(&[2u8; 32]));
        assert_ne!(t1.token(&[b"a"]), t2.token(&[b"a"]));
        assert_ne!(t1.token(&[b"ab", b"c"]), t1.token(&[b"a", b"bc"]));
        assert_eq!(t1.token(&[b"a"]), t1.token(&[b"a"]));
    }
}
