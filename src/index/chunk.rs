//! The two kinds of sealed data objects.
//!
//! * A **chunk** holds a run of items of one list, column by column: all
//!   vectors contiguous (what the scan reads), then ids, then metadata. One
//!   ciphertext per chunk, not per vector, so decryption streams at AES-GCM
//!   speed. Chunks are filled up to [`CHUNK_TARGET_BYTES`], just under a
//!   power of two, because the embedded store allocates power-of-two pages.
//! * A **bucket** is one shard of the id directory: id token -> chunk number
//!   and contents version, so `get`/`delete`/overwrite find an item without a
//!   scan while the store sees neither ids nor which chunk holds what. A
//!   stripe of a directory run (see `directory.rs`) has the same form, and
//!   may also hold tombstones.

use std::sync::OnceLock;

use half::f16;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use super::manifest::Stamp;
use super::objects::SealedObject;
use super::types::Precision;
use crate::codec::{Reader, Writer};
use crate::crypto::{wipe, Token, SEAL_OVERHEAD, TOKEN_LEN};
use crate::distance::inv_norm;
use crate::error::{Error, Result};

/// 64 KiB less room for the store's page header, the key and the seal: the
/// embedded store packs values up to 64 KiB tightly but wastes up to 70% on
/// larger ones (measured: 1.03x vs 1.70x file size per stored byte).
pub const CHUNK_TARGET_BYTES: usize = (64 << 10) - 512 - SEAL_OVERHEAD;
/// count u32, dim u32, precision u8, 7 zero bytes: keeps the vectors that
/// follow 16-byte aligned, so they are decrypted straight into place.
pub(super) const CHUNK_HEADER_BYTES: usize = 16;

/// Plaintext bytes one item adds to a chunk.
pub fn item_encoded_len(dim: usize, precision: Precision, id_len: usize, metadata_len: Option<usize>) -> usize {
    dim * precision.bytes_per_value() + 4 + id_len + 1 + metadata_len.map_or(0, |m| 4 + m)
}

/// Each row's metadata parsed (for filters; checked as JSON when written).
pub fn parse_metadata(metadata: &[Option<String>]) -> Vec<Option<Value>> {
    metadata.iter().map(|m| m.as_deref().and_then(|t| serde_json::from_str(t).ok())).collect()
}

/// What holds rows' metadata, by slot: a chunk holds its own; a compressed
/// index's units hold none, their head does.
pub trait RowMetadata: Send + Sync {
    fn metadata_at(&self, slot: usize) -> Option<&String>;
}

impl RowMetadata for Chunk {
    fn metadata_at(&self, slot: usize) -> Option<&String> {
        self.metadata[slot].as_ref()
    }
}

/// Floats wiped (at memset speed) when dropped.
pub struct WipedFloats(pub Vec<f32>);

impl Drop for WipedFloats {
    fn drop(&mut self) {
        wipe(bytemuck::cast_slice_mut(&mut self.0));
    }
}

/// A decrypted chunk as the scan and the cache hold it. Wiped on drop.
pub struct Chunk {
    pub dim: usize,
    /// The vectors, row-major, at `storage[start..start + len * dim]`. A
    /// chunk opened from the store keeps its whole decrypted buffer here
    /// (the vectors were decrypted in place and never copied).
    storage: WipedFloats,
    start: usize,
    /// |x|^2 per vector (the SGEMM form of L2) and 1/|x| (cosine).
    pub sq_norms: Vec<f32>,
    pub inv_norms: Vec<f32>,
    pub ids: Vec<String>,
    pub metadata: Vec<Option<String>>,
    parsed: OnceLock<Vec<Option<Value>>>,
}

impl Chunk {
    #[cfg(test)]
    pub fn new(dim: usize, vectors: Vec<f32>, ids: Vec<String>, metadata: Vec<Option<String>>) -> Chunk {
        Self::from_storage(dim, WipedFloats(vectors), 0, ids, metadata)
    }

    fn from_storage(
        dim: usize,
        storage: WipedFloats,
        start: usize,
        ids: Vec<String>,
        metadata: Vec<Option<String>>,
    ) -> Chunk {
        debug_assert!(storage.0.len() >= start + ids.len() * dim);
        debug_assert_eq!(metadata.len(), ids.len());
        let vectors = &storage.0[start..start + ids.len() * dim];
        let rows = || vectors.chunks_exact(dim.max(1)).take(ids.len());
        let sq_norms = rows().map(|v| crate::distance::dot(v, v)).collect();
        let inv_norms = rows().map(inv_norm).collect();
        Chunk { dim, storage, start, sq_norms, inv_norms, ids, metadata, parsed: OnceLock::new() }
    }

    /// All vectors, row-major.
    pub fn vectors(&self) -> &[f32] {
        &self.storage.0[self.start..self.start + self.len() * self.dim]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn vector(&self, slot: usize) -> &[f32] {
        let at = self.start + slot * self.dim;
        &self.storage.0[at..at + self.dim]
    }

    pub fn slot_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| i == id)
    }

    /// Parsed metadata, parsed once per cached chunk (filters read it).
    pub fn parsed_metadata(&self, slot: usize) -> Option<&Value> {
        self.parsed.get_or_init(|| parse_metadata(&self.metadata)).get(slot)?.as_ref()
    }

    pub fn encoded_len(&self, precision: Precision) -> usize {
        CHUNK_HEADER_BYTES
            + (0..self.len())
                .map(|i| {
                    item_encoded_len(self.dim, precision, self.ids[i].len(), self.metadata[i].as_ref().map(String::len))
                })
                .sum::<usize>()
    }

    /// Approximate heap bytes, for the cache's budget.
    pub fn mem_size(&self) -> usize {
        let meta: usize = self.metadata.iter().flatten().map(String::len).sum();
        std::mem::size_of::<Chunk>()
            + self.storage.0.len() * 4
            + self.len() * (8 + 24 + 24)
            + self.ids.iter().map(String::len).sum::<usize>()
            + meta * 3
    }

    pub fn encode(&self, precision: Precision) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(self.encoded_len(precision));
        w.u32(self.len() as u32);
        w.u32(self.dim as u32);
        w.u8(precision as u8);
        w.raw(&[0u8; CHUNK_HEADER_BYTES - 9]);
        match precision {
            Precision::F32 => {
                for v in self.vectors() {
                    w.raw(&v.to_le_bytes());
                }
            }
            Precision::F16 => {
                for v in self.vectors() {
                    w.raw(&f16::from_f32(*v).to_le_bytes());
                }
            }
        }
        for id in &self.ids {
            w.bytes(id.as_bytes());
        }
        for m in &self.metadata {
            w.opt_bytes(m.as_deref().map(str::as_bytes));
        }
        Zeroizing::new(w.buf)
    }

    /// Authenticates and decrypts a sealed chunk straight into its float
    /// buffer, then reads ids and metadata from the rest (which is wiped).
    pub fn open(sealed: &SealedObject<'_>, dim: usize, precision: Precision) -> Result<Chunk> {
        let plain_len = sealed.plaintext_len()?;
        let mut storage = WipedFloats(vec![0f32; plain_len.div_ceil(4)]);
        let bytes = &mut bytemuck::cast_slice_mut::<f32, u8>(&mut storage.0)[..plain_len];
        sealed.open_into(bytes)?;

        let mut r = Reader::new(bytes, "chunk");
        let n = r.u32()? as usize;
        let stored_dim = r.u32()? as usize;
        let stored_precision = r.u8()?;
        r.raw(CHUNK_HEADER_BYTES - 9)?;
        if stored_dim != dim || stored_precision != precision as u8 {
            return Err(Error::integrity("chunk shape does not match the index"));
        }
        let raw_len = n.checked_mul(dim).and_then(|x| x.checked_mul(precision.bytes_per_value()));
        let raw = r.raw(raw_len.ok_or_else(|| Error::integrity("chunk length overflows"))?)?;
        let converted = match precision {
            Precision::F32 => None,
            Precision::F16 => Some(WipedFloats(
                raw.chunks_exact(2).map(|b| f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
            )),
        };
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(r.string()?);
        }
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            metadata.push(match r.opt_bytes()? {
                None => None,
                Some(b) => {
                    Some(String::from_utf8(b.to_vec()).map_err(|_| Error::integrity("chunk metadata is not UTF-8"))?)
                }
            });
        }
        r.finish()?;
        // The id and metadata bytes now live in their own strings.
        let vectors_end = CHUNK_HEADER_BYTES + raw_len.unwrap_or(0);
        wipe(&mut bytes[vectors_end..]);
        Ok(match converted {
            Some(floats) => Chunk::from_storage(dim, floats, 0, ids, metadata),
            None => {
                if cfg!(target_endian = "big") {
                    for v in &mut storage.0[CHUNK_HEADER_BYTES / 4..vectors_end / 4] {
                        *v = f32::from_bits(v.to_bits().swap_bytes());
                    }
                }
                Chunk::from_storage(dim, storage, CHUNK_HEADER_BYTES / 4, ids, metadata)
            }
        })
    }
}

/// Collects the rows of a new chunk (kept from old chunks or new), wiped
/// if dropped before it becomes one.
pub struct ChunkBuilder {
    dim: usize,
    vectors: WipedFloats,
    ids: Vec<String>,
    metadata: Vec<Option<String>>,
}

impl ChunkBuilder {
    pub fn with_capacity(dim: usize, rows: usize) -> ChunkBuilder {
        ChunkBuilder {
            dim,
            vectors: WipedFloats(Vec::with_capacity(rows * dim)),
            ids: Vec::with_capacity(rows),
            metadata: Vec::with_capacity(rows),
        }
    }

    pub fn push(&mut self, vector: &[f32], id: String, metadata: Option<String>) {
        debug_assert_eq!(vector.len(), self.dim);
        self.vectors.0.extend_from_slice(vector);
        self.ids.push(id);
        self.metadata.push(metadata);
    }

    /// Copies row `slot` of `chunk`.
    pub fn push_row(&mut self, chunk: &Chunk, slot: usize) {
        self.push(chunk.vector(slot), chunk.ids[slot].clone(), chunk.metadata[slot].clone());
    }

    pub fn finish(mut self) -> Chunk {
        let vectors = std::mem::replace(&mut self.vectors, WipedFloats(Vec::new()));
        Chunk::from_storage(self.dim, vectors, 0, std::mem::take(&mut self.ids), std::mem::take(&mut self.metadata))
    }
}

impl Drop for ChunkBuilder {
    fn drop(&mut self) {
        self.ids.zeroize();
        self.metadata.zeroize();
    }
}

/// Packs the new items of each list into new chunks: the list's open chunk
/// while the item fits under [`CHUNK_TARGET_BYTES`], else a new one (which
/// takes the item even if it alone is larger). An item is charged its
/// encoded bytes, or for a coded layout what `Coder::packing` says.
///
/// With a row quantum q > 1 (a coded layout, whose heads are scanned q rows
/// at a time and padded to whole blocks), a full chunk still takes items up
/// to its next multiple of q rows while that charges at most a quarter of
/// the target more and keeps the head within the target, judged by the
/// item at hand: at d = 384 a head of 83 rows scanned as 96 becomes one of
/// 96.
pub struct Packer {
    quantum: usize,
    /// list -> its open chunk
    tails: std::collections::HashMap<u32, Tail>,
}

/// What an item costs the chunk it is packed into: `charge` against
/// [`CHUNK_TARGET_BYTES`], and `head`, its share of the chunk's largest
/// stored object (at most `charge`).
#[derive(Clone, Copy, Debug)]
pub struct Packing {
    pub charge: usize,
    pub head: usize,
}

impl Packing {
    /// An item of a chunk stored whole, `bytes` encoded.
    pub fn whole(bytes: usize) -> Packing {
        Packing { charge: bytes, head: bytes }
    }
}

struct Tail {
    no: u32,
    charged: usize,
    head: usize,
    rows: usize,
}

/// How far past `CHUNK_TARGET_BYTES` a chunk may grow to a whole quantum.
const QUANTUM_SLACK_BYTES: usize = CHUNK_TARGET_BYTES / 4;

impl Packer {
    /// A packer whose chunks end at multiples of `quantum` rows when they
    /// can (1: wherever the target is reached).
    pub fn new(quantum: usize) -> Packer {
        Packer { quantum: quantum.max(1), tails: Default::default() }
    }

    /// The chunk an item goes to in `list`, and whether it is new; new
    /// chunks are numbered from `next_chunk`.
    pub fn place(&mut self, list: u32, item: Packing, next_chunk: &mut u32) -> Result<(u32, bool)> {
        let q = self.quantum;
        let takes = |t: &Tail| {
            let missing = (q - t.rows % q) % q;
            t.charged + item.charge <= CHUNK_TARGET_BYTES
                || (missing > 0
                    && t.charged + missing * item.charge <= CHUNK_TARGET_BYTES + QUANTUM_SLACK_BYTES
                    && t.head + missing * item.head <= CHUNK_TARGET_BYTES)
        };
        if let Some(tail) = self.tails.get_mut(&list).filter(|tail| takes(tail)) {
            tail.charged += item.charge;
            tail.head += item.head;
            tail.rows += 1;
            return Ok((tail.no, false));
        }
        let no = *next_chunk;
        *next_chunk = no.checked_add(1).ok_or_else(|| Error::invalid("chunk numbers exhausted"))?;
        let tail =
            Tail { no, charged: CHUNK_HEADER_BYTES + item.charge, head: CHUNK_HEADER_BYTES + item.head, rows: 1 };
        self.tails.insert(list, tail);
        Ok((no, true))
    }
}

/// Best-effort wipe of parsed metadata: strings and keys are zeroized;
/// serde_json's number representation cannot be reached.
fn wipe_value(v: Value) {
    match v {
        Value::String(mut s) => s.zeroize(),
        Value::Array(items) => items.into_iter().for_each(wipe_value),
        Value::Object(map) => {
            for (mut k, v) in map {
                k.zeroize();
                wipe_value(v);
            }
        }
        _ => {}
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // `storage` wipes itself.
        self.sq_norms.zeroize();
        self.inv_norms.zeroize();
        self.ids.zeroize();
        self.metadata.zeroize();
        if let Some(parsed) = self.parsed.take() {
            parsed.into_iter().flatten().for_each(wipe_value);
        }
    }
}

/// One entry of the id directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub token: Token,
    pub chunk: u32,
    /// The item's contents object; version 0 = no contents.
    pub contents: Stamp,
}

impl Entry {
    /// The chunk number of a tombstone (no chunk gets it: see `Packer::place`).
    const DELETED: u32 = u32::MAX;

    /// A directory run's record that the id was deleted.
    pub fn tombstone(token: Token) -> Entry {
        Entry { token, chunk: Self::DELETED, contents: Stamp::default() }
    }

    pub fn is_tombstone(&self) -> bool {
        self.chunk == Self::DELETED
    }

    /// Bytes it takes in an encoded bucket or run stripe.
    pub fn encoded_len(&self) -> usize {
        TOKEN_LEN + 4 + 1 + if self.contents.is_none() { 0 } else { 8 + crate::crypto::DIGEST_LEN }
    }
}

/// One shard of the id directory, or one stripe of a directory run: entries
/// sorted by token.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    pub entries: Vec<Entry>,
}

impl Bucket {
    pub fn find(&self, token: &Token) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.token.cmp(token)).ok().map(|i| &self.entries[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4 + self.entries.iter().map(Entry::encoded_len).sum::<usize>());
        w.u32(self.entries.len() as u32);
        for e in &self.entries {
            w.raw(&e.token);
            w.u32(e.chunk);
            if e.contents.is_none() {
                w.u8(0);
            } else {
                w.u8(1);
                e.contents.write(&mut w);
            }
        }
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Bucket> {
        let mut r = Reader::new(bytes, "directory bucket");
        let n = r.u32()? as usize;
        let mut entries = Vec::with_capacity(n.min(bytes.len() / 21));
        for _ in 0..n {
            let token: Token = r.raw(TOKEN_LEN)?.try_into().unwrap();
            let chunk = r.u32()?;
            let contents = match r.u8()? {
                0 => Stamp::default(),
                1 => Stamp::read(&mut r)?,
                _ => return Err(Error::integrity("directory bucket has a bad flag")),
            };
            entries.push(Entry { token, chunk, contents });
        }
        r.finish()?;
        if entries.windows(2).any(|w| w[0].token >= w[1].token) {
            return Err(Error::integrity("directory bucket is not sorted"));
        }
        Ok(Bucket { entries })
    }

    pub fn mem_size(&self) -> usize {
        64 + self.entries.len() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKeys;
    use crate::index::objects::{Obj, ObjectKind};

    #[test]
    fn chunk_round_trip_both_precisions() {
        use crate::crypto::SecretKey;
        let keys = DataKeys::new(vec![(0, SecretKey::from_bytes(&[3; 32]))], [4; 16]);
        let token = [5u8; 16];
        let c = Chunk::new(
            2,
            vec![1.0, 2.0, 3.5, -4.0],
            vec!["a".into(), "b".into()],
            vec![None, Some("{\"k\":1}".into())],
        );
        for p in [Precision::F32, Precision::F16] {
            let enc = c.encode(p);
            assert_eq!(enc.len(), c.encoded_len(p));
            let sealed = keys.sealer(0).seal(ObjectKind::Chunk as u8, &token, 9, &enc).unwrap();
            let at = |version, bytes| SealedObject {
                keys: &keys,
                max_key_version: 0,
                obj: Obj::Chunk(0),
                token,
                version,
                bytes,
            };
            let d = Chunk::open(&at(9, &sealed), 2, p).unwrap();
            assert_eq!(d.ids, c.ids);
            assert_eq!(d.vectors(), c.vectors());
            assert_eq!(d.vector(1), &[3.5, -4.0]);
            assert_eq!(d.parsed_metadata(1).unwrap()["k"], 1);
            assert!(d.parsed_metadata(0).is_none());
            assert!(matches!(Chunk::open(&at(9, &sealed), 3, p), Err(Error::Integrity(_))));
            assert!(matches!(Chunk::open(&at(8, &sealed), 2, p), Err(Error::Integrity(_))));
            assert!(Chunk::open(&at(9, &sealed[..sealed.len() - 1]), 2, p).is_err());
        }
    }

    #[test]
    fn packer_fills_a_chunk_then_opens_the_next() {
        let mut next = 10;
        let mut p = Packer::new(1);
        assert_eq!(p.place(0, Packing::whole(CHUNK_TARGET_BYTES - 200), &mut next).unwrap(), (10, true));
        assert_eq!(p.place(0, Packing::whole(100), &mut next).unwrap(), (10, false));
        assert_eq!(p.place(0, Packing::whole(100), &mut next).unwrap(), (11, true));
        assert_eq!(p.place(1, Packing::whole(CHUNK_TARGET_BYTES * 2), &mut next).unwrap(), (12, true));
        assert_eq!(p.place(1, Packing::whole(1), &mut next).unwrap(), (13, true));
        assert_eq!(next, 14);
        let mut last = u32::MAX;
        assert!(p.place(2, Packing::whole(1), &mut last).is_err());
    }

    /// With a quantum, a full chunk takes items up to its next multiple of
    /// the quantum if that stays within the slack and keeps the head within
    /// the target, and not otherwise.
    #[test]
    fn packer_ends_chunks_at_whole_quanta_within_the_slack() {
        let mut next = 0;
        let rows_in = |p: &mut Packer, list: u32, item: Packing, next: &mut u32| {
            let mut rows = vec![0usize; 64];
            for _ in 0..200 {
                let (no, _) = p.place(list, item, next).unwrap();
                rows.resize(rows.len().max(no as usize + 1), 0);
                rows[no as usize] += 1;
            }
            rows.into_iter().filter(|&r| r > 0).collect::<Vec<_>>()
        };
        // 82 items charged 790 bytes fill the target; 14 more charge 11 KB.
        let item = Packing { charge: 790, head: 141 };
        let mut p = Packer::new(32);
        assert_eq!(rows_in(&mut p, 0, item, &mut next)[..2], [96, 96]);
        // Without a quantum, the target decides.
        let mut p = Packer::new(1);
        assert_eq!(rows_in(&mut p, 0, item, &mut next)[..2], [82, 82]);
        // 41 items charged 1,550 bytes fill it; 23 more would charge 35.6 KB,
        // over the slack.
        let mut p = Packer::new(32);
        let rows = rows_in(&mut p, 1, Packing { charge: 1550, head: 270 }, &mut next);
        assert!(rows[..2].iter().all(|&r| r < 64 && r * 1550 <= CHUNK_TARGET_BYTES), "{rows:?}");
        // Rows whose head is their charge (large metadata): the head decides.
        let mut p = Packer::new(32);
        let rows = rows_in(&mut p, 2, Packing { charge: 2100, head: 2100 }, &mut next);
        assert!(rows[..2].iter().all(|&r| r * 2100 <= CHUNK_TARGET_BYTES), "{rows:?}");
    }

    #[test]
    fn bucket_round_trip() {
        let stamped = Stamp::of(9, b"sealed contents");
        let b = Bucket {
            entries: vec![
                Entry { token: [1; 16], chunk: 2, contents: stamped },
                Entry { token: [2; 16], chunk: 3, contents: Stamp::default() },
            ],
        };
        let encoded = b.encode();
        assert_eq!(encoded.len(), 4 + 61 + 21, "Entry::encoded_len is what encode writes");
        assert_eq!(b.entries.iter().map(Entry::encoded_len).sum::<usize>(), 61 + 21);
        let d = Bucket::decode(&encoded).unwrap();
        assert_eq!(d.entries, b.entries);
        assert_eq!(d.find(&[2; 16]).unwrap().chunk, 3);
        assert_eq!(d.find(&[1; 16]).unwrap().contents, stamped);
        assert!(d.find(&[3; 16]).is_none());
        let unsorted = Bucket { entries: b.entries.iter().rev().copied().collect() };
        assert!(Bucket::decode(&unsorted.encode()).is_err());
    }
}
