//! The two records that describe an index.
//!
//! * The **key record** (`n/<name>`, readable without a key; see
//!   `keyring.rs`): the index id and the wrapped data keys. Index names are
//!   the one thing the store sees in clear (so `list_indexes` works without keys).
//! * The **manifest** (sealed): configuration, counts, key-version
//!   bookkeeping, the key-record generation it was committed under, and the
//!   [`Stamp`] (version and digest of the sealed bytes) of every chunk,
//!   directory bucket and the centroids; the directory holds the stamps of
//!   contents. Every object is authenticated against its stamp, so an old
//!   chunk replayed, a chunk dropped, a bucket swapped or an object from
//!   another branch of the history spliced in (same version, other bytes)
//!   is detected, and the manifest's own digest names the whole state.

use super::objects::ObjectKind;
use super::types::{IndexConfig, IndexType, Precision, TrainingState};
use crate::codec::{Reader, Writer};
use crate::crypto::{digest, verify, DataKeys, Digest, PublicKey, Sealer, Signer, Token, DIGEST_LEN, SIGNATURE_LEN};
use crate::distance::Metric;
use crate::error::{Error, Result};

const MANIFEST_TOKEN: Token = [0u8; 16];
/// Layout version of the manifest's plaintext.
const MANIFEST_FORMAT: u8 = 3;

/// What pins one stored object: the version it was sealed at (part of its
/// associated data) and the digest of its sealed bytes. Version 0 = none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    pub version: u64,
    pub digest: Digest,
}

impl Stamp {
    pub fn of(version: u64, sealed: &[u8]) -> Stamp {
        Stamp { version, digest: digest(sealed) }
    }

    pub fn is_none(&self) -> bool {
        self.version == 0
    }

    pub fn write(&self, w: &mut Writer) {
        w.u64(self.version);
        w.raw(&self.digest);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Stamp> {
        Ok(Stamp { version: r.u64()?, digest: r.raw(DIGEST_LEN)?.try_into().unwrap() })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub no: u32,
    pub list: u32,
    pub count: u32,
    /// Encoded plaintext size, to decide whether appends still fit.
    pub bytes: u32,
    pub stamp: Stamp,
}

/// The sealed description of an index's whole state at one version.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub version: u64,
    pub name: String,
    pub config: IndexConfig,
    pub num_vectors: u64,
    pub next_chunk: u32,
    /// AEAD key version in use and how many encryptions it has done.
    pub key_version: u32,
    pub encryptions: u64,
    pub training: TrainingState,
    pub n_lists: u32,
    /// The probe count calibrated at training (0 = untrained).
    pub auto_n_probes: u32,
    pub centroids: Stamp,
    /// The key record's generation when this state was committed: a key
    /// record older than that (restored from a backup) is refused.
    pub key_generation: u32,
    /// Chunks ordered by (list, no).
    pub chunks: Vec<ChunkMeta>,
    /// Each directory bucket; version 0 = empty (no object stored).
    pub buckets: Vec<Stamp>,
}

pub const INITIAL_BUCKETS: usize = 64;

impl Manifest {
    pub fn new(name: &str, config: IndexConfig) -> Manifest {
        Manifest {
            version: 0,
            name: name.to_owned(),
            config,
            num_vectors: 0,
            next_chunk: 0,
            key_version: 0,
            encryptions: 0,
            training: TrainingState::Untrained,
            n_lists: 0,
            auto_n_probes: 0,
            centroids: Stamp::default(),
            key_generation: 0,
            chunks: Vec::new(),
            buckets: vec![Stamp::default(); INITIAL_BUCKETS],
        }
    }

    fn encode_plain(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128 + self.chunks.len() * 56 + self.buckets.len() * 40);
        w.u8(MANIFEST_FORMAT);
        w.bytes(self.name.as_bytes());
        w.u32(self.config.dimension);
        w.u8(self.config.metric as u8);
        w.u8(self.config.index_type as u8);
        w.u8(self.config.precision as u8);
        w.u64(self.num_vectors);
        w.u32(self.next_chunk);
        w.u32(self.key_version);
        w.u64(self.encryptions);
        w.u8(self.training as u8);
        w.u32(self.n_lists);
        w.u32(self.auto_n_probes);
        self.centroids.write(&mut w);
        w.u32(self.key_generation);
        w.u32(self.chunks.len() as u32);
        for c in &self.chunks {
            w.u32(c.no);
            w.u32(c.list);
            w.u32(c.count);
            w.u32(c.bytes);
            c.stamp.write(&mut w);
        }
        w.u32(self.buckets.len() as u32);
        for b in &self.buckets {
            b.write(&mut w);
        }
        w.buf
    }

    fn decode_plain(version: u64, bytes: &[u8]) -> Result<Manifest> {
        let mut r = Reader::new(bytes, "manifest");
        let bad = |what: &str| Error::integrity(format!("manifest has an invalid {what}"));
        if r.u8()? != MANIFEST_FORMAT {
            return Err(bad("format (written by another version of vx)"));
        }
        let name = r.string()?;
        let dimension = r.u32()?;
        let metric = Metric::from_u32(r.u8()? as u32).map_err(|_| bad("metric"))?;
        let index_type = IndexType::from_u32(r.u8()? as u32).map_err(|_| bad("index type"))?;
        let precision = Precision::from_u32(r.u8()? as u32).map_err(|_| bad("precision"))?;
        let num_vectors = r.u64()?;
        let next_chunk = r.u32()?;
        let key_version = r.u32()?;
        let encryptions = r.u64()?;
        let training = match r.u8()? {
            0 => TrainingState::Untrained,
            1 => TrainingState::Training,
            2 => TrainingState::Trained,
            _ => return Err(bad("training state")),
        };
        let n_lists = r.u32()?;
        let auto_n_probes = r.u32()?;
        if auto_n_probes > n_lists {
            return Err(bad("probe count"));
        }
        let centroids = Stamp::read(&mut r)?;
        let key_generation = r.u32()?;
        let n_chunks = r.u32()? as usize;
        let mut chunks = Vec::with_capacity(n_chunks.min(bytes.len() / 56));
        for _ in 0..n_chunks {
            chunks.push(ChunkMeta {
                no: r.u32()?,
                list: r.u32()?,
                count: r.u32()?,
                bytes: r.u32()?,
                stamp: Stamp::read(&mut r)?,
            });
        }
        let n_buckets = r.u32()? as usize;
        let mut buckets = Vec::with_capacity(n_buckets.min(bytes.len() / 40));
        for _ in 0..n_buckets {
            buckets.push(Stamp::read(&mut r)?);
        }
        r.finish()?;
        if buckets.is_empty() {
            return Err(bad("bucket count"));
        }
        Ok(Manifest {
            version,
            name,
            config: IndexConfig { dimension, metric, index_type, precision },
            num_vectors,
            next_chunk,
            key_version,
            encryptions,
            training,
            n_lists,
            auto_n_probes,
            centroids,
            key_generation,
            chunks,
            buckets,
        })
    }

    /// version (clear, so it can be authenticated before decryption) ||
    /// sealed body || the writer's signature over both: the data key alone
    /// (which READ users hold) cannot make a manifest others accept.
    pub fn seal(&self, sealer: &Sealer<'_>, writer: &Signer, index_id: &[u8; 16]) -> Result<Vec<u8>> {
        let sealed = sealer.seal(ObjectKind::Manifest as u8, &MANIFEST_TOKEN, self.version, &self.encode_plain())?;
        let mut out = Vec::with_capacity(8 + sealed.len() + SIGNATURE_LEN);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&sealed);
        let signature = writer.sign(&signed_message(index_id, &out));
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Opens a stored manifest signed by `writer` and sealed under a key
    /// version at most `max_key_version` (a writer moves one version at a
    /// time).
    pub fn open(
        keys: &DataKeys,
        max_key_version: u32,
        stored: &[u8],
        name: &str,
        index_id: &[u8; 16],
        writer: &PublicKey,
    ) -> Result<Manifest> {
        if stored.len() < 8 + SIGNATURE_LEN {
            return Err(Error::integrity(format!("manifest of index '{name}' is truncated")));
        }
        let (body, signature) = stored.split_at(stored.len() - SIGNATURE_LEN);
        if !verify(writer, &signed_message(index_id, body), signature.try_into().unwrap()) {
            return Err(Error::integrity(format!("manifest of index '{name}' is not signed by its writer key")));
        }
        let version = u64::from_le_bytes(body[..8].try_into().unwrap());
        let plain = keys
            .open(max_key_version, ObjectKind::Manifest as u8, &MANIFEST_TOKEN, version, &body[8..])
            .ok_or_else(|| Error::integrity(format!("manifest of index '{name}' failed authentication")))?;
        let m = Manifest::decode_plain(version, &plain)?;
        if m.name != name {
            return Err(Error::integrity(format!("manifest stored under index '{name}' belongs to another index")));
        }
        Ok(m)
    }

    pub fn bucket_of(&self, token: &Token) -> usize {
        bucket_of(token, self.buckets.len())
    }
}

fn signed_message(index_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
    [&b"vx1 manifest"[..], index_id, body].concat()
}

/// The directory bucket of an id token among `n_buckets`, by linear
/// hashing: with `low <= n_buckets < 2 * low` (`low` a power of two), a token
/// goes to `h mod 2 * low`, or to `h mod low` where that bucket does not exist
/// yet. Adding bucket `n` then moves entries out of bucket `n - low` only, so
/// the directory grows one bucket at a time and no write rehashes it whole.
pub fn bucket_of(token: &Token, n_buckets: usize) -> usize {
    let h = u32::from_le_bytes(token[..4].try_into().unwrap()) as usize;
    let low = 1usize << n_buckets.ilog2();
    let b = h & (2 * low - 1);
    if b < n_buckets {
        b
    } else {
        b - low
    }
}

/// The one bucket whose entries adding bucket `n_buckets` splits.
pub fn split_partner(n_buckets: usize) -> usize {
    n_buckets - (1usize << n_buckets.ilog2())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    /// Growing the directory one bucket at a time moves entries only out of
    /// the split partner, into the new bucket, at every size.
    #[test]
    fn linear_hashing_moves_only_the_split_partners_entries() {
        let tokens: Vec<Token> = (0u32..5000)
            .map(|i| {
                let mut t = [0u8; 16];
                t[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
                t
            })
            .collect();
        for n in 1..300usize {
            let partner = split_partner(n);
            assert!(partner < n);
            for t in &tokens {
                let (before, after) = (bucket_of(t, n), bucket_of(t, n + 1));
                assert!(before < n && after <= n);
                if before != after {
                    assert_eq!((before, after), (partner, n), "n = {n}");
                }
            }
            if n.is_power_of_two() {
                assert!(tokens
                    .iter()
                    .all(|t| bucket_of(t, n) == (u32::from_le_bytes(t[..4].try_into().unwrap()) as usize) % n));
            }
        }
    }

    #[test]
    fn manifest_round_trip_and_binding() {
        let keys = DataKeys::new(vec![(0, SecretKey::from_bytes(&[1; 32]))], [2; 16]);
        let mut m = Manifest::new("idx", IndexConfig::default());
        m.version = 7;
        m.key_generation = 4;
        m.chunks.push(ChunkMeta { no: 3, list: 0, count: 10, bytes: 100, stamp: Stamp::of(7, b"sealed") });
        let writer = Signer::from_seed(&SecretKey::from_bytes(&[9; 32]));
        let stored = m.seal(&keys.sealer(0), &writer, &[2; 16]).unwrap();
        let open = |stored: &[u8], name| Manifest::open(&keys, 0, stored, name, &[2; 16], &writer.public());
        let back = open(&stored, "idx").unwrap();
        assert_eq!(back.chunks, m.chunks);
        assert_eq!(back.key_generation, 4);
        assert_eq!(back.version, 7);
        assert!(matches!(open(&stored, "other"), Err(Error::Integrity(_))));
        // Another writer key (a READ user's forgery) or another index.
        let forger = Signer::from_seed(&SecretKey::from_bytes(&[8; 32]));
        assert!(matches!(open(&m.seal(&keys.sealer(0), &forger, &[2; 16]).unwrap(), "idx"), Err(Error::Integrity(_))));
        assert!(matches!(open(&m.seal(&keys.sealer(0), &writer, &[3; 16]).unwrap(), "idx"), Err(Error::Integrity(_))));
        let mut replay = stored.clone();
        replay[0] = 6; // claim another version
        assert!(matches!(open(&replay, "idx"), Err(Error::Integrity(_))));
        assert!(open(&stored[..5], "idx").is_err());
    }
}
