//! Forgeries by principals who hold keys: a READ user with raw write access
//! to the store, and a revoked user who saved its data key. They need the
//! crate's own sealing code, so they live here rather than in tests/.

use std::sync::Arc;

use super::keyring::KeyRecord;
use super::manifest::{ChunkMeta, Manifest, Opener, Stamp};
use super::objects::{key_record_key, Layout, Obj, ObjectKind, Tokens};
use super::{Access, Index, IndexConfig, ItemRef, QueryParams, PERMISSION_READ};
use crate::crypto::{DataKeys, PublicKey, SecretKey, Signer};
use crate::error::{Result, Status};
use crate::store::{Store, WriteBatch};
use crate::{Client, ClientOptions};

const NAME: &str = "forged";
const READER: [u8; 16] = [0xA1; 16];

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes(&[b; 32])
}

fn reader() -> Access<'static> {
    static READER_KEY: std::sync::OnceLock<SecretKey> = std::sync::OnceLock::new();
    Access { key: Some(READER_KEY.get_or_init(|| key(7))), user: Some(&READER) }
}

fn upsert(index: &Index, ids: &[&str]) {
    let v = [1.0f32, 0.0];
    let items: Vec<ItemRef<'_>> =
        ids.iter().map(|id| ItemRef { id, vector: &v, metadata: None, contents: None }).collect();
    index.upsert(&items, Access::default()).unwrap();
}

/// An index with two items and a READ user; the client and its store.
fn setup() -> (Client, Arc<dyn Store>, Index) {
    let client = Client::open("memory:", ClientOptions::default()).unwrap();
    let index = client.create_index(NAME, &key(1), IndexConfig::default()).unwrap();
    upsert(&index, &["a", "b"]);
    index.create_user_keys(&READER, &key(7), PERMISSION_READ, None).unwrap();
    let store = client.raw_store();
    (client, store, index)
}

/// What the READ user's key opens: the record and the data keys.
fn reader_view(store: &dyn Store) -> (KeyRecord, DataKeys) {
    let record = KeyRecord::decode(&store.get(&key_record_key(NAME)).unwrap().unwrap(), NAME).unwrap();
    let unlocked = record.unlock(NAME, &key(7), Some(&READER)).unwrap();
    assert!(unlocked.secrets.writer.is_none(), "a READ user holds no writer seed");
    let keys = DataKeys::new(unlocked.secrets.data_keys, record.index_id);
    (record, keys)
}

/// The stored manifest (root and pages) as `keys` open it, signed by `writer`.
fn open_manifest(store: &dyn Store, index_id: [u8; 16], keys: &DataKeys, writer: &PublicKey) -> Result<Manifest> {
    let stored = store.get(&Layout { index_id }.manifest()).unwrap().unwrap();
    let tokens = Tokens::new(keys);
    let at = Opener { store, keys, tokens: &tokens, layout: Layout { index_id }, name: NAME };
    Manifest::open(&at, u32::MAX, &stored, writer, None)
}

/// The stored manifest as the READ user reads it (its data key opens it).
fn reader_manifest(store: &dyn Store, record: &KeyRecord, keys: &DataKeys) -> Manifest {
    open_manifest(store, record.index_id, keys, &record.writer_public).unwrap()
}

fn put(store: &dyn Store, key: Vec<u8>, value: Vec<u8>) {
    let mut batch = WriteBatch::default();
    batch.put(key, value);
    assert!(store.write(batch).unwrap());
}

/// What a fresh client (no cache, no handle state) gets from a query.
fn fresh_query(store: &Arc<dyn Store>) -> Result<Vec<String>> {
    let client = Client::over_store(store.clone(), ClientOptions::default())?;
    let index = client.load_index(NAME, Access { key: Some(&key(1)), user: None })?;
    let hits = index.query(&[1.0, 0.0], 1, 2, &QueryParams::default(), Access::default())?;
    Ok(hits[0].iter().map(|h| h.id.clone()).collect())
}

/// The READ user opens the manifest (its data key does), changes it and
/// seals it again: without the writer's key its signature cannot be made.
#[test]
fn a_read_user_cannot_forge_a_manifest() {
    let (_client, store, _index) = setup();
    let (record, keys) = reader_view(&*store);
    let layout = Layout { index_id: record.index_id };
    let mut m = reader_manifest(&*store, &record, &keys);
    m.version += 1;
    m.num_vectors = 1_000_000;
    let own = Signer::from_seed(&key(99));
    put(&*store, layout.manifest(), m.seal(&keys.sealer(m.key_version), &own, &record.index_id).unwrap());
    put(&*store, layout.version_hint(), m.version.to_le_bytes().to_vec());
    assert_eq!(fresh_query(&store).unwrap_err().status(), Status::Integrity);
}

/// The READ user seals a chunk of its own under the data key, at the
/// chunk's name and version: the manifest pins the chunk's digest.
#[test]
fn a_read_user_cannot_forge_a_chunk() {
    let (_client, store, _index) = setup();
    let (record, keys) = reader_view(&*store);
    let layout = Layout { index_id: record.index_id };
    let m = reader_manifest(&*store, &record, &keys);
    let meta: ChunkMeta = *m.chunks().next().unwrap();
    let mut rows = super::chunk::ChunkBuilder::with_capacity(2, 2);
    rows.push(&[0.5, 0.5], "planted".into(), None);
    rows.push(&[0.5, 0.5], "planted2".into(), None);
    let plain = rows.finish().encode(m.config.precision);
    let token = Tokens::new(&keys).of(Obj::Chunk(meta.no));
    let sealed = keys.sealer(m.key_version).seal(ObjectKind::Chunk as u8, &token, meta.stamp.version, &plain).unwrap();
    assert_ne!(Stamp::of(meta.stamp.version, &sealed), meta.stamp);
    put(&*store, layout.object(ObjectKind::Chunk, &token, &meta.stamp), sealed);
    assert_eq!(fresh_query(&store).unwrap_err().status(), Status::Integrity);
}

/// A user removed from the index saved its data key (and read the store):
/// what is written after the removal is sealed under a data key it never
/// held. What was written before, it can still open (it could read it then).
#[test]
fn a_revoked_user_with_its_saved_data_key_opens_nothing_written_after() {
    let (client, store, index) = setup();
    let (record, saved) = reader_view(&*store);
    let layout = Layout { index_id: record.index_id };
    index.delete_user_keys(&READER, None).unwrap();
    upsert(&index, &["after"]);
    assert_eq!(client.load_index(NAME, reader()).unwrap_err().status(), Status::WrongKey);

    let tokens = Tokens::new(&saved);
    // The manifest itself is sealed under the new generation.
    let current = KeyRecord::decode(&store.get(&key_record_key(NAME)).unwrap().unwrap(), NAME).unwrap();
    assert!(open_manifest(&*store, record.index_id, &saved, &current.writer_public).is_err());
    // So is every chunk written since (found through the root's view).
    let root = current.unlock(NAME, &key(1), None).unwrap();
    let now = DataKeys::new(root.secrets.data_keys, record.index_id);
    let m = open_manifest(&*store, record.index_id, &now, &current.writer_public).unwrap();
    let revoked_at = m.key_version;
    let mut newer = 0;
    for meta in m.chunks() {
        let token = tokens.of(Obj::Chunk(meta.no));
        let sealed = store.get(&layout.object(ObjectKind::Chunk, &token, &meta.stamp)).unwrap().unwrap();
        let key_version = u32::from_le_bytes(sealed[..4].try_into().unwrap());
        let opened = saved.open(u32::MAX, ObjectKind::Chunk as u8, &token, meta.stamp.version, &sealed);
        if key_version >= revoked_at {
            newer += 1;
            assert!(opened.is_none(), "the saved key opened chunk {} written after the revocation", meta.no);
        }
    }
    assert!(newer > 0, "the write after the revocation sealed a chunk");
}

/// The READ user gives itself a WRITE wrap, or moves the generation to its
/// maximum so it can never be revoked: the record is no longer the root's.
/// And the root can still revoke it once the genuine record is back.
#[test]
fn a_read_user_cannot_sign_a_key_record() {
    let (client, store, index) = setup();
    let genuine = store.get(&key_record_key(NAME)).unwrap().unwrap();
    let (record, _) = reader_view(&*store);
    let reader_unlocked = record.unlock(NAME, &key(7), Some(&READER)).unwrap();
    for forged in [
        record.forged_with_write_wrap(NAME, &reader_unlocked, &READER, &key(7)).unwrap(),
        record.forged_generation(NAME, &reader_unlocked, u32::MAX).unwrap(),
    ] {
        assert_eq!(KeyRecord::decode(&forged, NAME).unwrap_err().status(), Status::Integrity);
        put(&*store, key_record_key(NAME), forged);
        assert_eq!(client.load_index(NAME, reader()).unwrap_err().status(), Status::Integrity);
        assert_eq!(index.num_vectors(Access::default()).unwrap_err().status(), Status::Integrity);
        put(&*store, key_record_key(NAME), genuine.clone());
    }
    assert!(index.delete_user_keys(&READER, None).unwrap());
    assert_eq!(client.load_index(NAME, reader()).unwrap_err().status(), Status::WrongKey);
}
