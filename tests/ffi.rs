//! The C ABI called from Rust: the panic boundary and poisoning (needs the
//! `test-hooks` feature, as the C tests do).
#![cfg(feature = "test-hooks")]

use std::ptr;

use vx::ffi::*;

#[test]
fn panics_are_caught_and_poison_the_handle() {
    unsafe {
        assert_eq!(vx_debug_panic(ptr::null()), VX_STATUS_PANIC);
        let mut client = ptr::null_mut();
        assert_eq!(vx_client_open(c"memory:".as_ptr(), ptr::null(), &mut client), VX_STATUS_OK);
        let key = [3u8; 32];
        let mut index = ptr::null_mut();
        assert_eq!(vx_index_create(client, c"p".as_ptr(), key.as_ptr(), ptr::null(), &mut index), VX_STATUS_OK);
        let mut n = 0u64;
        assert_eq!(vx_index_num_vectors(index, ptr::null(), ptr::null(), &mut n), VX_STATUS_OK);
        assert_eq!(vx_debug_panic(index), VX_STATUS_PANIC);
        assert_eq!(vx_index_num_vectors(index, ptr::null(), ptr::null(), &mut n), VX_STATUS_POISONED);
        let mut len = 0usize;
        vx_last_error_message(ptr::null_mut(), 0, &mut len);
        assert!(len > 0);
        vx_index_free(index);
        // The stored index is intact: a fresh handle works.
        let mut again = ptr::null_mut();
        assert_eq!(vx_index_load(client, c"p".as_ptr(), key.as_ptr(), ptr::null(), &mut again), VX_STATUS_OK);
        assert_eq!(vx_index_num_vectors(again, ptr::null(), ptr::null(), &mut n), VX_STATUS_OK);
        vx_index_free(again);
        vx_client_free(client);
    }
}
