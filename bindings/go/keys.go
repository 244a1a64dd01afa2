//go:build cgo

package vx

/*
#include <stdlib.h>
#include <vx.h>
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Permission bits of user keys: PermissionRead allows Query, Get, ListIDs,
// NumVectors and the getters; PermissionWrite allows Upsert, Delete, Train.
const (
	PermissionRead  = uint32(C.VX_PERMISSION_READ)
	PermissionWrite = uint32(C.VX_PERMISSION_WRITE)
)

// UserKeys is one user that holds keys to an index.
type UserKeys struct {
	UserID      [UserIDLen]byte
	Permissions uint32
}

// CreateUserKeys gives user exactly perms under userKey, replacing any keys
// it had. rootKey nil = the handle's key (which must be the root key).
func (x *Index) CreateUserKeys(user, userKey []byte, perms uint32, rootKey []byte) error {
	return x.with(func(ix *C.vx_index) error {
		u, err := userPtr(user)
		if err != nil {
			return err
		}
		uk, err := keyPtr(userKey)
		if err != nil {
			return err
		}
		rk, err := keyPtr(rootKey)
		if err != nil {
			return err
		}
		defer runtime.KeepAlive(user)
		defer runtime.KeepAlive(userKey)
		defer runtime.KeepAlive(rootKey)
		return call(func() C.vx_status { return C.vx_index_create_user_keys(ix, u, uk, C.uint32_t(perms), rk) })
	})
}

// DeleteUserKeys removes every key of user; a user without keys is not an error.
func (x *Index) DeleteUserKeys(user, rootKey []byte) error {
	return x.with(func(ix *C.vx_index) error {
		u, err := userPtr(user)
		if err != nil {
			return err
		}
		rk, err := keyPtr(rootKey)
		if err != nil {
			return err
		}
		defer runtime.KeepAlive(user)
		defer runtime.KeepAlive(rootKey)
		return call(func() C.vx_status { return C.vx_index_delete_user_keys(ix, u, rk) })
	})
}

// ListUserKeys returns the users that hold keys, ordered by user id.
func (x *Index) ListUserKeys(rootKey []byte) ([]UserKeys, error) {
	var out []UserKeys
	err := x.with(func(ix *C.vx_index) error {
		rk, err := keyPtr(rootKey)
		if err != nil {
			return err
		}
		defer runtime.KeepAlive(rootKey)
		var list *C.vx_user_list
		if err := call(func() C.vx_status { return C.vx_index_list_user_keys(ix, rk, &list) }); err != nil {
			return err
		}
		defer C.vx_user_list_free(list)
		n := int(C.vx_user_list_len(list))
		out = make([]UserKeys, n)
		for i := range n {
			id := C.vx_user_list_user_id(list, C.size_t(i))
			copy(out[i].UserID[:], unsafe.Slice((*byte)(unsafe.Pointer(id)), UserIDLen))
			out[i].Permissions = uint32(C.vx_user_list_permissions(list, C.size_t(i)))
		}
		return nil
	})
	return out, err
}

// RotateKey re-wraps the index's data key under newRoot without touching
// data; oldRoot then stops working and user keys keep working.
func (x *Index) RotateKey(oldRoot, newRoot []byte) error {
	return x.with(func(ix *C.vx_index) error {
		o, err := keyPtr(oldRoot)
		if err != nil {
			return err
		}
		n, err := keyPtr(newRoot)
		if err != nil {
			return err
		}
		defer runtime.KeepAlive(oldRoot)
		defer runtime.KeepAlive(newRoot)
		return call(func() C.vx_status { return C.vx_index_rotate_key(ix, o, n) })
	})
}
