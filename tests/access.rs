//! Access control through the Rust API: the permission matrix (src/index/access.rs) for
//! the root and read, write and read+write users, through handles loaded
//! with each key and through per-call keys; revocation, rotation, stale
//! handles, and tampering with the stored key record.
#![cfg(feature = "test-hooks")]

mod common;

use common::{as_root, ids, items, key, memory_client, uniform, upsert_in_batches};
use vx::{
    Access, Client, Index, IndexConfig, QueryParams, SecretKey, Status, TrainParams, WriteBatch, PERMISSION_READ,
    PERMISSION_WRITE,
};

const DIM: usize = 4;
const N: usize = 10_000; // enough to train

const ROOT: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Root,
    Reader,
    Writer,
    ReadWriter,
}

impl Who {
    const ALL: [Who; 4] = [Who::Root, Who::Reader, Who::Writer, Who::ReadWriter];

    fn user(self) -> Option<[u8; 16]> {
        match self {
            Who::Root => None,
            Who::Reader => Some([0xA1; 16]),
            Who::Writer => Some([0xA2; 16]),
            Who::ReadWriter => Some([0xA3; 16]),
        }
    }

    fn key(self) -> SecretKey {
        match self {
            Who::Root => key(ROOT),
            Who::Reader => key(11),
            Who::Writer => key(12),
            Who::ReadWriter => key(13),
        }
    }

    fn can_read(self) -> bool {
        self != Who::Writer
    }

    fn can_write(self) -> bool {
        self != Who::Reader
    }
}

fn upsert(index: &Index, prefix: &str, n: usize, access: Access<'_>) -> vx::Result<()> {
    let (names, v) = (ids(prefix, n), uniform(n, DIM, prefix.len() as u64));
    upsert_in_batches(index, items(&names, &v, DIM, None), n, access)
}

/// An index with N items and the three users.
fn setup(client: &Client, name: &str) -> Index {
    let config = IndexConfig { text_fields: vec!["title".into()], ..Default::default() };
    let index = client.create_index(name, &key(ROOT), config).unwrap();
    upsert(&index, "x", N, Access::default()).unwrap();
    let grants = [(Who::Reader, PERMISSION_READ), (Who::Writer, PERMISSION_WRITE)];
    for (who, perms) in grants.into_iter().chain([(Who::ReadWriter, PERMISSION_READ | PERMISSION_WRITE)]) {
        index.create_user_keys(&who.user().unwrap(), &who.key(), perms, None).unwrap();
    }
    index
}

fn status<T>(r: vx::Result<T>) -> Status {
    match r {
        Ok(_) => Status::Ok,
        Err(e) => e.status(),
    }
}

fn expect(r: vx::Result<impl Sized>, allowed: bool, what: &str, who: Who) {
    let want = if allowed { Status::Ok } else { Status::PermissionDenied };
    assert_eq!(status(r), want, "{what} as {who:?}");
}

/// What the root sees: the state that a refused call must leave untouched.
fn state(root: &Index) -> (u64, Vec<String>, usize) {
    let n = root.num_vectors(Access::default()).unwrap();
    let ids = root.list_ids(0, 0, Access::default()).unwrap();
    (n, ids, root.list_user_keys(None).unwrap().len())
}

/// Writes `bytes` as index `name`'s key record, straight into the store
/// (as an attacker with the store would, putting an older one back).
fn put_record(store: &std::sync::Arc<dyn vx::Store>, name: &str, bytes: Vec<u8>) {
    let mut b = WriteBatch::default();
    b.put(format!("n/{name}").into_bytes(), bytes);
    assert!(store.write(b).unwrap());
}

/// Runs every data operation as `who`, through `index` with `access`, and
/// checks each is allowed or `PERMISSION_DENIED` as the matrix says, and
/// that refused calls change nothing.
fn check_matrix(root: &Index, index: &Index, access: Access<'_>, who: Who) {
    let q = uniform(1, DIM, 7);
    let p = QueryParams { top_k: 5, ..Default::default() };
    let r = who.can_read();
    expect(index.query(&q, 1, DIM, &p, access), r, "query", who);
    expect(index.get(&["x1"], 0, access), r, "get", who);
    expect(index.list_ids(0, 10, access), r, "list_ids", who);
    expect(
        index.query_metadata(&vx::MetadataQuery { top_k: 3, ..Default::default() }, access),
        r,
        "query_metadata",
        who,
    );
    let keyword = vx::MetadataQuery { text: Some("x"), ..Default::default() };
    expect(index.query_metadata(&keyword, access), r, "keyword query_metadata", who);
    let hybrid = QueryParams { text: Some("x"), ..p.clone() };
    expect(index.query(&q, 1, DIM, &hybrid, access), r, "hybrid query", who);
    expect(index.num_vectors(access), r, "num_vectors", who);
    if access.key.is_none() {
        // Getters use the handle's own key.
        expect(index.dimension(), r, "dimension", who);
        expect(index.metric(), r, "metric", who);
        expect(index.n_lists(), r, "n_lists", who);
        expect(index.training_state(), r, "training_state", who);
    }

    let w = who.can_write();
    let before = state(root);
    expect(upsert(index, "new", 3, access), w, "upsert", who);
    expect(index.delete(&["x2"], access), w, "delete", who);
    let params = TrainParams { n_lists: 4, max_iters: 2, ..Default::default() };
    expect(index.train(params, access), w, "train", who);
    if !w {
        assert_eq!(state(root), before, "a refused write by {who:?} changed the index");
    } else {
        assert_eq!(root.num_vectors(Access::default()).unwrap(), before.0 + 2);
        assert!(root.n_lists().unwrap() == 4);
    }

    // Root-only operations. A handle's own user key is PERMISSION_DENIED;
    // a user's key offered as the root key simply is not the root key.
    let before = state(root);
    let is_root = who == Who::Root;
    // Per call, the caller offers its own key as the root key; through a
    // loaded handle it offers none (the handle's own key is used).
    let offered = access.key.map(|_| who.key());
    let denied = |r: vx::Result<()>, what: &str| {
        let want = match (is_root, access.key.is_some()) {
            (true, _) => Status::Ok,
            (false, false) => Status::PermissionDenied,
            (false, true) => Status::WrongKey,
        };
        assert_eq!(status(r), want, "{what} as {who:?} (per-call: {})", access.key.is_some());
    };
    denied(index.create_user_keys(&[0x55; 16], &key(55), PERMISSION_READ, offered.as_ref()), "create_user_keys");
    denied(index.list_user_keys(offered.as_ref()).map(|_| ()), "list_user_keys");
    denied(index.delete_user_keys(&[0x55; 16], offered.as_ref()).map(|_| ()), "delete_user_keys");
    assert_eq!(state(root), before, "user management as {who:?} left a trace");
    if !is_root {
        let e = index.rotate_key(&who.key(), &key(99));
        assert_eq!(status(e), Status::WrongKey, "rotate_key with {who:?}'s key");
        let want = if access.user.is_some() || access.key.is_none() { Status::PermissionDenied } else { Status::Ok };
        assert_eq!(status(index.delete_index(access)), want, "delete_index as {who:?}");
        assert_eq!(state(root), before);
    }
}

#[test]
fn permission_matrix_through_loaded_handles() {
    let client = memory_client();
    for who in Who::ALL {
        let name = format!("loaded-{who:?}");
        let root = setup(&client, &name);
        let k = who.key();
        let u = who.user();
        let index = client.load_index(&name, Access { key: Some(&k), user: u.as_ref() }).unwrap();
        check_matrix(&root, &index, Access::default(), who);
        if who == Who::Root {
            index.delete_index(Access::default()).unwrap();
            assert_eq!(status(root.num_vectors(Access::default())), Status::NotFound);
        }
    }
}

#[test]
fn permission_matrix_through_per_call_keys() {
    let client = memory_client();
    for who in Who::ALL {
        let name = format!("per-call-{who:?}");
        let root = setup(&client, &name);
        // Calls on the root's own handle, each overriding the key: the
        // handle's credentials must not leak into the call.
        let k = who.key();
        let u = who.user();
        check_matrix(&root, &root, Access { key: Some(&k), user: u.as_ref() }, who);
        // And on a handle loaded by a reader, overridden per call.
        let reader = client.load_index(&name, Access { key: Some(&key(11)), user: Some(&[0xA1; 16]) }).unwrap();
        expect(upsert(&reader, "p", 1, Access { key: Some(&k), user: u.as_ref() }), who.can_write(), "upsert", who);
    }
}

#[test]
fn user_ids_without_keys_and_wrong_keys() {
    let client = memory_client();
    let root = setup(&client, "wrong");
    let reader = [0xA1; 16];
    let a = |k: &SecretKey, u: Option<&[u8; 16]>| status(root.num_vectors(Access { key: Some(k), user: u }));
    assert_eq!(status(root.num_vectors(Access { key: None, user: Some(&reader) })), Status::InvalidArgument);
    assert_eq!(a(&key(12), Some(&reader)), Status::WrongKey, "the writer's key with the reader's id");
    assert_eq!(a(&key(11), Some(&[0xA2; 16])), Status::WrongKey, "the reader's key with the writer's id");
    assert_eq!(a(&key(11), None), Status::WrongKey, "a user key as the root key");
    assert_eq!(a(&key(ROOT), Some(&reader)), Status::WrongKey, "the root key as a user key");
    assert_eq!(a(&key(77), Some(&[0x77; 16])), Status::WrongKey, "an unknown user");
    let load =
        |k: &SecretKey, u: Option<&[u8; 16]>| status(client.load_index("wrong", Access { key: Some(k), user: u }));
    assert_eq!(load(&key(12), Some(&reader)), Status::WrongKey);
    assert_eq!(load(&key(11), Some(&reader)), Status::Ok);
    // Bad grants.
    let grant = |u: &[u8; 16], k: u8, perms: u32| status(root.create_user_keys(u, &key(k), perms, None));
    assert_eq!(grant(&[5; 16], 50, 0), Status::InvalidArgument);
    assert_eq!(grant(&[5; 16], 50, 4), Status::InvalidArgument);
    assert_eq!(grant(&[0; 16], 50, 1), Status::InvalidArgument, "the zero user id is the root's");
    assert_eq!(grant(&[5; 16], ROOT, 1), Status::InvalidArgument, "a user key equal to the root key");
    assert_eq!(status(root.create_user_keys(&[5; 16], &key(50), 1, Some(&key(9)))), Status::WrongKey);
    assert_eq!(root.list_user_keys(None).unwrap().len(), 3);
}

#[test]
fn deleted_users_lose_access_everywhere_at_once() {
    let client = memory_client();
    let root = setup(&client, "revoke");
    let rw = [0xA3; 16];
    let k = key(13);
    let open = client.load_index("revoke", Access { key: Some(&k), user: Some(&rw) }).unwrap();
    assert_eq!(open.num_vectors(Access::default()).unwrap(), N as u64);
    assert!(root.delete_user_keys(&rw, None).unwrap());
    assert!(!root.delete_user_keys(&rw, None).unwrap(), "deleting again is a no-op");
    assert_eq!(status(open.num_vectors(Access::default())), Status::WrongKey, "open handle of a deleted user");
    assert_eq!(status(upsert(&open, "z", 1, Access::default())), Status::WrongKey);
    assert_eq!(status(root.num_vectors(Access { key: Some(&k), user: Some(&rw) })), Status::WrongKey);
    assert_eq!(status(client.load_index("revoke", Access { key: Some(&k), user: Some(&rw) })), Status::WrongKey);
    let users: Vec<[u8; 16]> = root.list_user_keys(None).unwrap().iter().map(|u| u.user_id).collect();
    assert_eq!(users, [[0xA1; 16], [0xA2; 16]]);
    // Granting again brings the open handle back, with the new permissions.
    root.create_user_keys(&rw, &k, PERMISSION_READ, None).unwrap();
    assert_eq!(open.num_vectors(Access::default()).unwrap(), N as u64);
    assert_eq!(status(upsert(&open, "z", 1, Access::default())), Status::PermissionDenied);
}

#[test]
fn changed_permissions_apply_to_open_handles() {
    let client = memory_client();
    let root = setup(&client, "change");
    let reader = [0xA1; 16];
    let open = client.load_index("change", Access { key: Some(&key(11)), user: Some(&reader) }).unwrap();
    assert_eq!(status(upsert(&open, "r", 1, Access::default())), Status::PermissionDenied);
    root.create_user_keys(&reader, &key(11), PERMISSION_READ | PERMISSION_WRITE, None).unwrap();
    upsert(&open, "r", 1, Access::default()).unwrap();
    root.create_user_keys(&reader, &key(11), PERMISSION_WRITE, None).unwrap();
    assert_eq!(status(open.get(&["r0"], 0, Access::default())), Status::PermissionDenied);
    upsert(&open, "r", 2, Access::default()).unwrap();
    // A new key for the same user: the old one stops working.
    root.create_user_keys(&reader, &key(44), PERMISSION_READ, None).unwrap();
    assert_eq!(status(open.get(&["r0"], 0, Access::default())), Status::WrongKey);
    let u = root.list_user_keys(None).unwrap();
    assert_eq!(u.iter().find(|e| e.user_id == reader).unwrap().perms as u32, PERMISSION_READ);
}

#[test]
fn rotation_retires_the_old_root_key_and_keeps_users() {
    let client = memory_client();
    let root = setup(&client, "rotate");
    let other = client.load_index("rotate", as_root(&key(ROOT))).unwrap();
    let reader = client.load_index("rotate", Access { key: Some(&key(11)), user: Some(&[0xA1; 16]) }).unwrap();
    assert_eq!(status(root.rotate_key(&key(ROOT), &key(ROOT))), Status::InvalidArgument);
    assert_eq!(status(root.rotate_key(&key(2), &key(3))), Status::WrongKey);
    root.rotate_key(&key(ROOT), &key(2)).unwrap();
    // The rotating handle moved to the new key; another handle bound to the old one did not.
    assert_eq!(root.num_vectors(Access::default()).unwrap(), N as u64);
    assert_eq!(status(other.num_vectors(Access::default())), Status::WrongKey);
    assert_eq!(status(root.num_vectors(as_root(&key(ROOT)))), Status::WrongKey);
    assert_eq!(root.num_vectors(as_root(&key(2))).unwrap(), N as u64);
    assert_eq!(reader.num_vectors(Access::default()).unwrap(), N as u64);
    assert_eq!(status(client.load_index("rotate", as_root(&key(ROOT)))), Status::WrongKey);
    let fresh = client.load_index("rotate", as_root(&key(2))).unwrap();
    assert_eq!(fresh.list_user_keys(None).unwrap().len(), 3);
    // Data untouched: same answers as before the rotation.
    let hits = fresh.query(&uniform(1, DIM, 3), 1, DIM, &QueryParams::default(), Access::default()).unwrap();
    assert_eq!(hits[0].len(), 100);
    // Putting the old key record back (a rollback by someone who kept it) is
    // refused by handles that saw the new one.
    let store = client.raw_store();
    let rotated_record = store.get(b"n/rotate").unwrap().unwrap();
    fresh.rotate_key(&key(2), &key(3)).unwrap();
    assert_eq!(reader.num_vectors(Access::default()).unwrap(), N as u64); // the reader sees generation 3
    let mut batch = WriteBatch::default();
    batch.put(b"n/rotate".to_vec(), rotated_record);
    assert!(store.write(batch).unwrap());
    assert_eq!(status(fresh.num_vectors(Access::default())), Status::Integrity);
    assert_eq!(status(reader.num_vectors(Access::default())), Status::Integrity);
}

/// Edits of the stored key record: a flipped byte anywhere, a truncation, a
/// record from another index or an older state. Never a privilege, never a
/// panic: WRONG_KEY, INTEGRITY or NOT_FOUND for everyone, and no lasting harm.
#[test]
fn tampered_key_records_never_grant_anything() {
    let client = memory_client();
    let root = setup(&client, "tamper");
    setup(&client, "elsewhere");
    let store = client.raw_store();
    let put = |v: Vec<u8>| {
        put_record(&store, "tamper", v);
    };
    let good = store.get(b"n/tamper").unwrap().unwrap();
    let reader = Access { key: Some(&key(11)), user: Some(&[0xA1; 16]) };
    let mut outcomes = std::collections::BTreeMap::new();
    let mut variants: Vec<(String, Vec<u8>)> = (0..good.len())
        .map(|i| {
            let mut t = good.clone();
            t[i] ^= 0x20;
            (format!("flip at {i}"), t)
        })
        .collect();
    variants.push(("truncated".into(), good[..good.len() - 1].to_vec()));
    variants.push(("empty".into(), Vec::new()));
    variants.push(("another index's record".into(), store.get(b"n/elsewhere").unwrap().unwrap()));
    for (what, bytes) in variants {
        put(bytes);
        let fresh_root = status(client.load_index("tamper", as_root(&key(ROOT))));
        let on_handle = status(root.num_vectors(Access::default()));
        let read = status(root.num_vectors(reader));
        let write = status(upsert(&root, "t", 1, reader));
        for (who, s) in [("root load", fresh_root), ("root handle", on_handle), ("reader", read)] {
            assert!(matches!(s, Status::WrongKey | Status::Integrity | Status::NotFound), "{what}: {who} got {s:?}");
            *outcomes.entry(format!("{s:?}")).or_insert(0) += 1;
        }
        assert_ne!(write, Status::Ok, "{what}: the reader could write");
        put(good.clone());
        assert_eq!(root.num_vectors(Access::default()).unwrap(), N as u64, "{what}: lasting damage");
    }
    eprintln!("key record tamper outcomes: {outcomes:?}");
    assert!(outcomes.contains_key("Integrity"));
    // Dropping the whole record: the index is gone for everyone, cleanly.
    let mut b = WriteBatch::default();
    b.delete(b"n/tamper".to_vec());
    assert!(store.write(b).unwrap());
    assert_eq!(status(root.num_vectors(Access::default())), Status::NotFound);
}

/// Putting back the key record from before a user was deleted does not
/// revive the user on handles that saw the deletion.
#[test]
fn a_replayed_key_record_does_not_undo_a_revocation() {
    let client = memory_client();
    let root = setup(&client, "replay");
    let store = client.raw_store();
    let before = store.get(b"n/replay").unwrap().unwrap();
    root.delete_user_keys(&[0xA1; 16], None).unwrap();
    put_record(&store, "replay", before);
    let reader = Access { key: Some(&key(11)), user: Some(&[0xA1; 16]) };
    assert_eq!(status(root.num_vectors(reader)), Status::Integrity);
    assert_eq!(status(root.num_vectors(Access::default())), Status::Integrity);
}

/// Per-call keys open the key record once per record, not once per call
/// (the handle remembers which credentials opened which record bytes), and
/// what it remembers never outlives the record: a deletion, a permission
/// change, a new key for the user, a rotation and a replayed older record
/// all take effect at the next call, as without the memo.
#[test]
fn per_call_keys_are_remembered_only_for_the_record_they_opened() {
    let client = memory_client();
    let root = setup(&client, "memo");
    let store = client.raw_store();
    let as_who = |who: Who| (who.key(), who.user());
    let (rk, ru) = as_who(Who::Reader);
    let reader = Access { key: Some(&rk), user: ru.as_ref() };
    let (wk, wu) = as_who(Who::ReadWriter);
    let rw = Access { key: Some(&wk), user: wu.as_ref() };
    let root_key = key(ROOT);
    let as_root_call = Access { key: Some(&root_key), user: None };

    let opens = root.call_key_opens();
    for i in 0..5 {
        assert_eq!(root.num_vectors(reader).unwrap(), N as u64 + i);
        upsert(&root, &format!("m{i}-"), 1, rw).unwrap();
        assert_eq!(
            status(upsert(&root, "no", 1, reader)),
            Status::PermissionDenied,
            "a remembered READ grants no write"
        );
        root.num_vectors(as_root_call).unwrap();
    }
    assert_eq!(root.call_key_opens() - opens, 3, "each credential opened the record once");
    assert_eq!(status(root.num_vectors(Access { key: Some(&key(99)), user: ru.as_ref() })), Status::WrongKey);

    // A user deleted through another client (as another process would):
    // this handle learns of it from the record the call reads.
    let other = Client::over_store(store.clone(), Default::default()).unwrap();
    let other_root = other.load_index("memo", as_root(&key(ROOT))).unwrap();
    other_root.delete_user_keys(&ru.unwrap(), None).unwrap();
    assert_eq!(status(root.num_vectors(reader)), Status::WrongKey, "deleted by another client");
    other_root.create_user_keys(&ru.unwrap(), &rk, PERMISSION_READ, None).unwrap();
    assert_eq!(root.num_vectors(reader).unwrap(), N as u64 + 5);
    other_root.create_user_keys(&ru.unwrap(), &rk, PERMISSION_WRITE, None).unwrap();
    assert_eq!(status(root.num_vectors(reader)), Status::PermissionDenied, "changed by another client");
    other_root.create_user_keys(&ru.unwrap(), &rk, PERMISSION_READ, None).unwrap();
    let (ok, ou) = as_who(Who::Writer);
    let writer = Access { key: Some(&ok), user: ou.as_ref() };
    upsert(&root, "by-writer", 1, writer).unwrap();
    other_root.delete_user_keys(&ou.unwrap(), None).unwrap();
    assert_eq!(
        status(upsert(&root, "by-gone-writer", 1, writer)),
        Status::WrongKey,
        "a writer deleted by another client"
    );
    // Deleted by another client and the older record put back at once:
    // the manifest (committed with the deletion) is newer than the record.
    root.num_vectors(reader).unwrap();
    let kept = store.get(b"n/memo").unwrap().unwrap();
    other_root.delete_user_keys(&ru.unwrap(), None).unwrap();
    let revoked = store.get(b"n/memo").unwrap().unwrap();
    put_record(&store, "memo", kept);
    assert_eq!(status(root.num_vectors(reader)), Status::Integrity, "the record put back under a newer manifest");
    put_record(&store, "memo", revoked);
    assert_eq!(status(root.num_vectors(reader)), Status::WrongKey);
    other_root.create_user_keys(&ru.unwrap(), &rk, PERMISSION_READ, None).unwrap();
    assert_eq!(root.num_vectors(reader).unwrap(), N as u64 + 6);

    // A new user added through another client (a new record, the same
    // data keys) and the older record put back: the manifest says the
    // record is newer, as without the memo.
    root.num_vectors(reader).unwrap();
    let kept = store.get(b"n/memo").unwrap().unwrap();
    other_root.create_user_keys(&[0x55; 16], &key(55), PERMISSION_READ, None).unwrap();
    let grown = store.get(b"n/memo").unwrap().unwrap();
    put_record(&store, "memo", kept);
    for _ in 0..2 {
        assert_eq!(status(root.num_vectors(reader)), Status::Integrity, "an older record under a newer manifest");
    }
    put_record(&store, "memo", grown);

    // A replayed record the memo saw, after the handle saw a newer one.
    let before = store.get(b"n/memo").unwrap().unwrap();
    root.delete_user_keys(&wu.unwrap(), None).unwrap();
    assert_eq!(status(root.num_vectors(rw)), Status::WrongKey, "deleted");
    assert_eq!(status(upsert(&root, "gone", 1, rw)), Status::WrongKey);
    // The reader remembered against the newest record, then the replay.
    assert_eq!(root.num_vectors(reader).unwrap(), N as u64 + 6);
    let after = store.get(b"n/memo").unwrap().unwrap();
    put_record(&store, "memo", before);
    for _ in 0..2 {
        // Twice: the first call decodes the replayed record, the second
        // finds it already decoded.
        assert_eq!(status(root.num_vectors(rw)), Status::Integrity, "the replayed record");
        assert_eq!(status(root.num_vectors(reader)), Status::Integrity, "the replayed record");
    }
    put_record(&store, "memo", after);
    assert_eq!(root.num_vectors(reader).unwrap(), N as u64 + 6);

    // Permissions changed, a new key, a rotation: each at the next call.
    root.create_user_keys(&ru.unwrap(), &rk, PERMISSION_WRITE, None).unwrap();
    assert_eq!(status(root.num_vectors(reader)), Status::PermissionDenied);
    upsert(&root, "w", 1, reader).unwrap();
    root.create_user_keys(&ru.unwrap(), &key(45), PERMISSION_READ, None).unwrap();
    assert_eq!(status(root.num_vectors(reader)), Status::WrongKey, "the user's old key");
    root.num_vectors(as_root_call).unwrap();
    root.rotate_key(&key(ROOT), &key(46)).unwrap();
    assert_eq!(status(root.num_vectors(as_root_call)), Status::WrongKey, "the retired root key");
    assert_eq!(root.num_vectors(Access { key: Some(&key(46)), user: None }).unwrap(), N as u64 + 7);
}

/// A key record that a refused call read still counts as seen: put back
/// an older one afterwards and the handle reports the rollback, even to
/// calls that never met the newer record themselves.
#[test]
fn a_record_seen_by_a_refused_call_still_counts_as_seen() {
    let client = memory_client();
    let root = setup(&client, "seen");
    let store = client.raw_store();
    let (rw, k) = (Who::ReadWriter.user().unwrap(), Who::ReadWriter.key());
    let as_rw = Access { key: Some(&k), user: Some(&rw) };
    assert_eq!(root.num_vectors(as_rw).unwrap(), N as u64);
    let before = store.get(b"n/seen").unwrap().unwrap();
    // Deleted through another client; this handle meets the new record
    // only through the deleted user's refused call.
    let other = Client::over_store(store.clone(), Default::default()).unwrap();
    other.load_index("seen", as_root(&key(ROOT))).unwrap().delete_user_keys(&rw, None).unwrap();
    assert_eq!(status(root.num_vectors(as_rw)), Status::WrongKey);
    put_record(&store, "seen", before);
    assert_eq!(status(root.list_user_keys(None)), Status::Integrity, "the registry of the older record");
    assert_eq!(status(root.num_vectors(as_rw)), Status::Integrity);
}

/// Calls on the rotating handle while it rotates never meet the new key
/// record with the old key, nor mistake a copy they read just before a
/// change for a rollback: they keep working throughout.
#[test]
fn calls_during_a_rotation_of_the_same_handle_keep_working() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let client = memory_client();
    let root = setup(&client, "busy");
    let (stop, calls) = (AtomicBool::new(false), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    assert_eq!(root.num_vectors(Access::default()).unwrap(), N as u64);
                    calls.fetch_add(1, Relaxed);
                }
            });
        }
        // A reader that failed stops counting: stop waiting, stop the
        // others, and the scope re-raises the reader's panic.
        let wait_for_calls = |n: usize| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while calls.load(Relaxed) < n {
                if std::time::Instant::now() > deadline {
                    return false;
                }
                std::thread::yield_now();
            }
            true
        };
        if wait_for_calls(10) {
            for round in 0..20u8 {
                root.rotate_key(&key(ROOT + round), &key(ROOT + round + 1)).unwrap();
                if !wait_for_calls(calls.load(Relaxed) + 2) {
                    break;
                }
            }
        }
        stop.store(true, Relaxed);
    });
    assert_eq!(status(client.load_index("busy", as_root(&key(ROOT + 20)))), Status::Ok);
}

/// Each revocation starts a new data-key generation and writer key: a
/// handle in another client that missed several of them, and writes made
/// under each, reads and writes on at its next call.
#[test]
fn handles_that_missed_several_revocations_catch_up() {
    let client = memory_client();
    let root = setup(&client, "generations");
    let other = vx::Client::over_store(client.raw_store(), vx::ClientOptions::default()).unwrap();
    let writer = other
        .load_index("generations", Access { key: Some(&Who::ReadWriter.key()), user: Who::ReadWriter.user().as_ref() })
        .unwrap();
    assert_eq!(writer.num_vectors(Access::default()).unwrap(), N as u64);
    for (who, prefix) in [(Who::Reader, "after-reader"), (Who::Writer, "after-writer")] {
        assert!(root.delete_user_keys(&who.user().unwrap(), None).unwrap());
        upsert(&root, prefix, 10, Access::default()).unwrap();
    }
    assert_eq!(writer.num_vectors(Access::default()).unwrap(), N as u64 + 20);
    upsert(&writer, "by-the-writer", 10, Access::default()).unwrap();
    assert_eq!(root.num_vectors(Access::default()).unwrap(), N as u64 + 30);
    let got = root.get(&["after-reader0", "by-the-writer0"], vx::include::VECTOR, Access::default()).unwrap();
    assert!(got.iter().all(Option::is_some));
}
