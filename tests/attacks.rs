//! Attacks by insiders and store operators (docs/THREAT_MODEL.md): each test
//! performs one and shows it is detected or fruitless. Every test here
//! failed on the code before the defence it names. They reach the raw
//! store, which only builds with the `test-hooks` feature expose.
#![cfg(feature = "test-hooks")]

mod common;

use common::{as_root, ids, items, key, memory_client};
use vx::{Access, Client, ClientOptions, IndexConfig, QueryParams};

fn upsert(index: &vx::Index, prefix: &str, vectors: &[f32]) {
    let ids = ids(prefix, vectors.len() / 4);
    index.upsert(&items(&ids, vectors, 4, None).collect::<Vec<_>>(), Access::default()).unwrap();
}

/// The ids a query returns, or the error status.
fn query_ids(index: &vx::Index) -> Result<Vec<String>, vx::Status> {
    let p = QueryParams { top_k: 10, ..Default::default() };
    index
        .query(&[0.0; 4], 1, 4, &p, Access::default())
        .map(|rows| rows[0].iter().map(|h| h.id.clone()).collect())
        .map_err(|e| e.status())
}

/// Defence: cache entries are owned by a value derived from the data key,
/// not by the clear-text index id.
///
/// A tenant of a multi-tenant service (one client, many indexes) who can
/// write the store forges a key record that claims the victim's index id.
/// Before, its handle read the victim's decrypted chunks from the shared
/// cache, and its own writes replaced the victim's cached chunks.
#[test]
fn a_record_claiming_another_index_id_neither_reads_nor_plants_cached_objects() {
    let service = memory_client();
    let victim = service.create_index("victim", &key(1), IndexConfig::default()).unwrap();
    upsert(&victim, "secret", &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(query_ids(&victim).unwrap().len(), 2); // now cached: chunk 0 at version 2

    // Elsewhere (no shared cache), the attacker builds a state with the same
    // shape under the victim's id: one upsert of two items, chunk 0 at version 2.
    let outside = Client::over_store(service.raw_store(), ClientOptions::default()).unwrap();
    let forged = outside.forge_index_with_id("evil", &key(9), IndexConfig::default(), victim.index_id()).unwrap();
    upsert(&forged, "planted", &[0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0]);

    // Read: the attacker loads its record in the victim's service and queries.
    let attacker = service.load_index("evil", as_root(&key(9))).unwrap();
    match query_ids(&attacker) {
        Ok(ids) => assert!(ids.iter().all(|id| id.starts_with("planted")), "attacker read the victim's data: {ids:?}"),
        Err(status) => assert_eq!(status, vx::Status::Integrity),
    }

    // Plant: the attacker's objects are now in the shared cache; the victim
    // must never serve them (its manifest was overwritten too: INTEGRITY).
    match query_ids(&victim) {
        Ok(ids) => assert!(ids.iter().all(|id| id.starts_with("secret")), "victim served planted data: {ids:?}"),
        Err(status) => assert_eq!(status, vx::Status::Integrity),
    }
}

/// Defence: a lost compare-and-set, `epoch` and `require_epoch` read the
/// stored manifest, not the clear-text version hint.
///
/// The store pins the version hint of an index to an old value after
/// another handle wrote. Before, a handle that had not seen the write kept
/// planning on its stale snapshot, lost every compare-and-set and gave up
/// with a conflict, and `require_epoch` with the writer's epoch reported a
/// rollback that never happened.
#[test]
fn a_pinned_version_hint_neither_freezes_writers_nor_fakes_a_rollback() {
    let client = memory_client();
    let a = client.create_index("pinned", &key(1), IndexConfig::default()).unwrap();
    let b = client.load_index("pinned", as_root(&key(1))).unwrap();
    let store = client.raw_store();
    let hint_key = store.scan_prefix(b"o/").unwrap().into_iter().map(|(k, _)| k).find(|k| k.ends_with(b"V")).unwrap();
    let stale_hint = store.get(&hint_key).unwrap().unwrap();

    upsert(&a, "a", &[1.0, 0.0, 0.0, 0.0]);
    let epoch = a.epoch(Access::default()).unwrap();
    let mut pin = vx::WriteBatch::default();
    pin.put(hint_key, stale_hint);
    assert!(store.write(pin).unwrap());

    b.require_epoch(&epoch).expect("the stored state is not older than the epoch");
    upsert(&b, "b", &[0.0, 1.0, 0.0, 0.0]);
    assert_eq!(b.num_vectors(Access::default()).unwrap(), 2);
    assert_eq!(b.epoch(Access::default()).unwrap().version(), epoch.version() + 1);
}

/// Defence: every key-record change commits a manifest naming the record's
/// generation, in the same atomic batch; a record older than the manifest
/// says is refused.
///
/// The store operator saves the key record, the root revokes a user and
/// writes, and the operator puts the saved record back. Before, the
/// revoked user loaded the index again and `require_epoch` with the epoch
/// taken after the write still passed.
#[test]
fn a_key_record_put_back_from_a_backup_neither_revives_a_user_nor_passes_the_epoch() {
    let client = memory_client();
    let root = client.create_index("revoked", &key(1), IndexConfig::default()).unwrap();
    let user = [7u8; 16];
    root.create_user_keys(&user, &key(2), vx::PERMISSION_READ, None).unwrap();
    let store = client.raw_store();
    let saved = store.get(b"n/revoked").unwrap().unwrap();

    root.delete_user_keys(&user, None).unwrap();
    upsert(&root, "after", &[1.0, 0.0, 0.0, 0.0]);
    let epoch = root.epoch(Access::default()).unwrap();

    let mut restore = vx::WriteBatch::default();
    restore.put(b"n/revoked".to_vec(), saved);
    assert!(store.write(restore).unwrap());

    let fresh = Client::over_store(store.clone(), ClientOptions::default()).unwrap();
    let revived = fresh.load_index("revoked", Access { key: Some(&key(2)), user: Some(&user) });
    assert_eq!(revived.map(|_| ()).unwrap_err().status(), vx::Status::Integrity);
    let status = fresh.load_index("revoked", as_root(&key(1))).and_then(|h| h.require_epoch(&epoch));
    assert_eq!(status.unwrap_err().status(), vx::Status::Integrity);
    // A handle that was open all along refuses the old record too.
    assert_eq!(root.num_vectors(Access::default()).unwrap_err().status(), vx::Status::Integrity);
}

/// Every object of the store whose kind byte (after `o/` and the 16-byte
/// index id) is `kind`.
fn objects_of_kind(store: &dyn vx::Store, kind: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.scan_prefix(b"o/").unwrap().into_iter().filter(|(k, _)| k.len() > 18 && k[18] == kind).collect()
}

fn put_all(store: &dyn vx::Store, rows: Vec<(Vec<u8>, Vec<u8>)>) {
    let mut batch = vx::WriteBatch::default();
    for (k, v) in rows {
        batch.put(k, v);
    }
    assert!(store.write(batch).unwrap());
}

/// Defence: the manifest pins every object by the digest of its sealed
/// bytes, not only by its version.
///
/// A backup restore forks the history: batch A; backup; batch B; restore;
/// batch C. The operator then copies B's chunks over C's (same chunk, same
/// version, both genuine; an object's key ends with a tag of its digest, so
/// B's bytes are put under the key of C's chunk at that name and version).
/// Before, a fresh handle answered with B's items, which the current
/// history never had.
#[test]
fn chunks_spliced_from_another_branch_of_the_history_are_detected() {
    let client = memory_client();
    let index = client.create_index("forked", &key(1), IndexConfig::default()).unwrap();
    let store = client.raw_store();
    upsert(&index, "a", &[1.0, 0.0, 0.0, 0.0]);
    let backup = store.scan_prefix(b"").unwrap();
    upsert(&index, "b", &[0.0, 1.0, 0.0, 0.0]);
    let branch_b = objects_of_kind(&*store, b'C');
    let epoch_b = index.epoch(Access::default()).unwrap();

    let mut restore = vx::WriteBatch::default();
    for (k, _) in store.scan_prefix(b"").unwrap() {
        restore.delete(k);
    }
    assert!(store.write(restore).unwrap());
    put_all(&*store, backup);
    let writer = Client::over_store(store.clone(), ClientOptions::default()).unwrap();
    let index = writer.load_index("forked", as_root(&key(1))).unwrap();
    upsert(&index, "c", &[0.0, 0.0, 1.0, 0.0]);
    // The same version as the epoch kept on branch B, another state.
    assert_eq!(index.epoch(Access::default()).unwrap().version(), epoch_b.version());
    assert_eq!(index.require_epoch(&epoch_b).unwrap_err().status(), vx::Status::Integrity);
    // o/, the index id, the kind, the version and the token: the object's
    // name and version without the digest tag.
    let name_and_version = |k: &[u8]| k[..2 + 16 + 1 + 8 + 16].to_vec();
    let branch_c = objects_of_kind(&*store, b'C');
    let spliced: Vec<(Vec<u8>, Vec<u8>)> = branch_b
        .into_iter()
        .filter_map(|(kb, vb)| {
            let (kc, _) = branch_c.iter().find(|(kc, _)| name_and_version(kc) == name_and_version(&kb))?;
            Some((kc.clone(), vb))
        })
        .collect();
    assert!(!spliced.is_empty(), "B and C wrote a chunk at the same name and version");
    put_all(&*store, spliced);

    let reader = Client::over_store(store.clone(), ClientOptions::default()).unwrap();
    let index = reader.load_index("forked", as_root(&key(1))).unwrap();
    match query_ids(&index) {
        Ok(ids) => panic!("answered from a spliced history: {ids:?}"),
        Err(status) => assert_eq!(status, vx::Status::Integrity),
    }
}
