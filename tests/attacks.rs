//! Attacks by insiders and store operators (docs/THREAT_MODEL.md): each test
//! performs one and shows it is detected or fruitless. Every test here
//! failed on the code before the defence it names.

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

    b.require_epoch(epoch).expect("the stored state is not older than the epoch");
    upsert(&b, "b", &[0.0, 1.0, 0.0, 0.0]);
    assert_eq!(b.num_vectors(Access::default()).unwrap(), 2);
    assert_eq!(b.epoch(Access::default()).unwrap(), epoch + 1);
}
