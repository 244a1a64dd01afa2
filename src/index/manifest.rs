//! The two records that describe an index.
//!
//! * The **key record** (`n/<name>`, readable without a key; see
//!   `keyring.rs`): the index id and the wrapped data keys. Index names are
//!   the one thing the store sees in clear (so `list_indexes` works without keys).
//! * The **manifest** (sealed): configuration, counts, key-version
//!   bookkeeping and the version of every chunk and directory bucket. Every
//!   other object is authenticated against the version the manifest names, so
//!   an old chunk replayed, a chunk dropped or a bucket swapped is detected.

use super::objects::ObjectKind;
use super::types::{IndexConfig, IndexType, Precision, TrainingState};
use crate::codec::{Reader, Writer};
use crate::crypto::{DataKeys, Sealer, Token};
use crate::distance::Metric;
use crate::error::{Error, Result};

const MANIFEST_TOKEN: Token = [0u8; 16];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub no: u32,
    pub list: u32,
    pub count: u32,
    /// Encoded plaintext size, to decide whether appends still fit.
    pub bytes: u32,
    pub version: u64,
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
    pub centroids_version: u64,
    /// Chunks ordered by (list, no).
    pub chunks: Vec<ChunkMeta>,
    /// Version of each directory bucket; 0 = empty (no object stored).
    pub buckets: Vec<u64>,
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
            centroids_version: 0,
            chunks: Vec::new(),
            buckets: vec![0; INITIAL_BUCKETS],
        }
    }

    fn encode_plain(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.chunks.len() * 24 + self.buckets.len() * 8);
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
        w.u64(self.centroids_version);
        w.u32(self.chunks.len() as u32);
        for c in &self.chunks {
            w.u32(c.no);
            w.u32(c.list);
            w.u32(c.count);
            w.u32(c.bytes);
            w.u64(c.version);
        }
        w.u32(self.buckets.len() as u32);
        for b in &self.buckets {
            w.u64(*b);
        }
        w.buf
    }

    fn decode_plain(version: u64, bytes: &[u8]) -> Result<Manifest> {
        let mut r = Reader::new(bytes, "manifest");
        let bad = |what: &str| Error::integrity(format!("manifest has an invalid {what}"));
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
        let centroids_version = r.u64()?;
        let n_chunks = r.u32()? as usize;
        let mut chunks = Vec::with_capacity(n_chunks.min(bytes.len() / 24));
        for _ in 0..n_chunks {
            chunks.push(ChunkMeta {
                no: r.u32()?,
                list: r.u32()?,
                count: r.u32()?,
                bytes: r.u32()?,
                version: r.u64()?,
            });
        }
        let n_buckets = r.u32()? as usize;
        let mut buckets = Vec::with_capacity(n_buckets.min(bytes.len() / 8));
        for _ in 0..n_buckets {
            buckets.push(r.u64()?);
        }
        r.finish()?;
        if buckets.is_empty() || !buckets.len().is_power_of_two() {
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
            centroids_version,
            chunks,
            buckets,
        })
    }

    /// version (clear, so it can be authenticated before decryption) || sealed body.
    pub fn seal(&self, sealer: &Sealer<'_>) -> Result<Vec<u8>> {
        let sealed = sealer.seal(ObjectKind::Manifest as u8, &MANIFEST_TOKEN, self.version, &self.encode_plain())?;
        let mut out = Vec::with_capacity(8 + sealed.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a stored manifest sealed under a key version at most
    /// `max_key_version` (a writer moves one version at a time).
    pub fn open(keys: &DataKeys, max_key_version: u32, stored: &[u8], name: &str) -> Result<Manifest> {
        if stored.len() < 8 {
            return Err(Error::integrity(format!("manifest of index '{name}' is truncated")));
        }
        let version = u64::from_le_bytes(stored[..8].try_into().unwrap());
        let plain = keys
            .open(max_key_version, ObjectKind::Manifest as u8, &MANIFEST_TOKEN, version, &stored[8..])
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

pub fn bucket_of(token: &Token, n_buckets: usize) -> usize {
    (u32::from_le_bytes(token[..4].try_into().unwrap()) as usize) & (n_buckets - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn manifest_round_trip_and_binding() {
        let keys = DataKeys::new(SecretKey::from_bytes(&[1; 32]), [2; 16]);
        let mut m = Manifest::new("idx", IndexConfig::default());
        m.version = 7;
        m.chunks.push(ChunkMeta { no: 3, list: 0, count: 10, bytes: 100, version: 7 });
        let stored = m.seal(&keys.sealer(0)).unwrap();
        let back = Manifest::open(&keys, 0, &stored, "idx").unwrap();
        assert_eq!(back.chunks, m.chunks);
        assert_eq!(back.version, 7);
        assert!(matches!(Manifest::open(&keys, 0, &stored, "other"), Err(Error::Integrity(_))));
        let mut replay = stored.clone();
        replay[0] = 6; // claim another version
        assert!(matches!(Manifest::open(&keys, 0, &replay, "idx"), Err(Error::Integrity(_))));
        assert!(Manifest::open(&keys, 0, &stored[..5], "idx").is_err());
    }
}
