//! Per-user keys and root-key rotation (the permission table is in src/index/access.rs).

use super::args::{key_arg, user_arg};
use super::boundary::{boundary, free_box, guard, handle, into_c, out_param};
use super::index::vx_index;
use super::vx_status;
use crate::error::Error;
use crate::index::UserEntry;

/// Permission bit: query, get, list_ids, num_vectors and the getters.
pub const VX_PERMISSION_READ: u32 = 1;
/// Permission bit: upsert, delete and train.
pub const VX_PERMISSION_WRITE: u32 = 2;

/// The users that hold keys to an index. Opaque; free with vx_user_list_free.
pub struct vx_user_list {
    users: Vec<UserEntry>,
}

/// Gives a user its own key to the index, with `permissions`
/// (VX_PERMISSION_READ, VX_PERMISSION_WRITE or both). A user that already
/// has keys gets the new key and permissions in their place, atomically.
/// The user then opens the index with vx_index_load(client, name, user_kek,
/// user_id) or passes (user_kek, user_id) as any call's key and user id.
///
/// @param user_id   VX_USER_ID_LEN bytes, not all zero (reserved for the root).
/// @param user_kek  VX_KEY_LEN bytes: the user's key-encryption key; copied,
///                  never stored; must differ from the root key.
/// @param root_key  VX_KEY_LEN bytes, or NULL for the handle's own key (which
///                  must then be the root key).
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT (bad permissions, zero
///         user id, user key = root key, too many users), NOT_FOUND, WRONG_KEY,
///         PERMISSION_DENIED (the handle is a user's), POISONED, INTEGRITY, IO,
///         STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle; concurrent
/// key changes from other handles or processes are serialised by a
/// compare-and-set on the key record. Since 0.2.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_create_user_keys(
    index: *const vx_index,
    user_id: *const u8,
    user_kek: *const u8,
    permissions: u32,
    root_key: *const u8,
) -> vx_status {
    boundary(|| {
        let ix = handle(index)?.writing();
        let (user, user_key, root) = (user_arg(user_id), key_arg(user_kek), key_arg(root_key));
        let user = user.ok_or_else(|| Error::NullArgument("user_id".into()))?;
        let user_key = user_key.ok_or_else(|| Error::NullArgument("user_kek".into()))?;
        ix.create_user_keys(&user, &user_key, permissions, root.as_ref())
    })
}

/// Deletes every key of a user: its key stops working at once, also through
/// handles already open with it (see THREAT_MODEL.md for what revocation
/// does not undo). Deleting a user without keys is OK (idempotent).
///
/// @param root_key  VX_KEY_LEN bytes, or NULL for the handle's own key (the root key).
/// @return VX_STATUS_OK, NULL_ARGUMENT, NOT_FOUND, WRONG_KEY, PERMISSION_DENIED,
///         POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: as vx_index_create_user_keys. Since 0.2.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_delete_user_keys(
    index: *const vx_index,
    user_id: *const u8,
    root_key: *const u8,
) -> vx_status {
    boundary(|| {
        let ix = handle(index)?.writing();
        let (user, root) = (user_arg(user_id), key_arg(root_key));
        let user = user.ok_or_else(|| Error::NullArgument("user_id".into()))?;
        ix.delete_user_keys(&user, root.as_ref()).map(|_| ())
    })
}

/// Lists the users that hold keys, ordered by user id.
///
/// @param root_key   VX_KEY_LEN bytes, or NULL for the handle's own key (the root key).
/// @param out_users  receives the list (free with vx_user_list_free); NULL on failure.
/// @return VX_STATUS_OK, NULL_ARGUMENT, NOT_FOUND, WRONG_KEY, PERMISSION_DENIED,
///         POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: safe concurrently with any call on the handle. Since 0.2.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_list_user_keys(
    index: *const vx_index,
    root_key: *const u8,
    out_users: *mut *mut vx_user_list,
) -> vx_status {
    boundary(|| {
        let out = out_param(out_users, "out_users")?;
        let users = handle(index)?.inner.list_user_keys(key_arg(root_key).as_ref())?;
        *out = into_c(vx_user_list { users });
        Ok(())
    })
}

/// Re-wraps the index's data key under `new_root_key`, atomically and
/// without touching any data. Afterwards `old_root_key` gets
/// VX_STATUS_WRONG_KEY everywhere (handles bound to it included, except this
/// one, which moves to the new key if it was bound to the old), and user keys
/// keep working.
///
/// @param old_root_key  VX_KEY_LEN bytes: the current root key (required).
/// @param new_root_key  VX_KEY_LEN bytes, different from the old one.
/// @return VX_STATUS_OK, NULL_ARGUMENT, INVALID_ARGUMENT (same key), NOT_FOUND,
///         WRONG_KEY, POISONED, INTEGRITY, IO, STORAGE, PANIC.
///
/// Thread safety: as vx_index_create_user_keys. Since 0.2.0.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn vx_index_rotate_key(
    index: *const vx_index,
    old_root_key: *const u8,
    new_root_key: *const u8,
) -> vx_status {
    boundary(|| {
        let ix = handle(index)?.writing();
        let (old, new) = (key_arg(old_root_key), key_arg(new_root_key));
        let old = old.ok_or_else(|| Error::NullArgument("old_root_key".into()))?;
        let new = new.ok_or_else(|| Error::NullArgument("new_root_key".into()))?;
        ix.rotate_key(&old, &new)
    })
}

/// Number of users; 0 for NULL.
///
/// Thread safety: safe from any thread while the list lives. Since 0.2.0.
#[no_mangle]
pub unsafe extern "C" fn vx_user_list_len(list: *const vx_user_list) -> usize {
    guard(|| list.as_ref().map_or(0, |l| l.users.len()))
}

/// The i-th user's id (VX_USER_ID_LEN bytes, valid until the list is freed);
/// NULL if out of range.
///
/// Thread safety: safe from any thread while the list lives. Since 0.2.0.
#[no_mangle]
pub unsafe extern "C" fn vx_user_list_user_id(list: *const vx_user_list, i: usize) -> *const u8 {
    guard(|| list.as_ref().and_then(|l| l.users.get(i)).map_or(std::ptr::null(), |u| u.user_id.as_ptr()))
}

/// The i-th user's permissions (VX_PERMISSION_* bits); 0 if out of range.
///
/// Thread safety: safe from any thread while the list lives. Since 0.2.0.
#[no_mangle]
pub unsafe extern "C" fn vx_user_list_permissions(list: *const vx_user_list, i: usize) -> u32 {
    guard(|| list.as_ref().and_then(|l| l.users.get(i)).map_or(0, |u| u32::from(u.perms)))
}

/// Frees the list; NULL is a no-op.
///
/// Thread safety: must not race other calls on the same list. Since 0.2.0.
#[no_mangle]
pub unsafe extern "C" fn vx_user_list_free(list: *mut vx_user_list) {
    free_box(list)
}
