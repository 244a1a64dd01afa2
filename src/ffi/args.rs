//! Reading what C passes in: strings, arrays, keys and parameter structs,
//! each checked before Rust looks at it.

use std::ffi::{c_char, CStr};

use super::boundary::guard;
use crate::crypto::{SecretKey, KEY_LEN, USER_ID_LEN};
use crate::error::{Error, Result};

pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullArgument(what.to_owned()));
    }
    CStr::from_ptr(p).to_str().map_err(|_| Error::InvalidUtf8(what.to_owned()))
}

pub(crate) unsafe fn opt_c_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        c_str(p, what).map(Some)
    }
}

/// A borrowed C array as a slice; `n == 0` accepts NULL.
pub(crate) unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::NullArgument(what.to_owned()));
    }
    if n.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid(format!("{what}: {n} elements is too many")));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// Copies a 32-byte key into a zeroizing buffer at once; NULL = None.
pub(crate) unsafe fn key_arg(p: *const u8) -> Option<SecretKey> {
    if p.is_null() {
        return None;
    }
    let mut bytes = [0u8; KEY_LEN];
    std::ptr::copy_nonoverlapping(p, bytes.as_mut_ptr(), KEY_LEN);
    let key = SecretKey::from_bytes(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    Some(key)
}

pub(crate) unsafe fn user_arg(p: *const u8) -> Option<[u8; USER_ID_LEN]> {
    if p.is_null() {
        return None;
    }
    let mut id = [0u8; USER_ID_LEN];
    std::ptr::copy_nonoverlapping(p, id.as_mut_ptr(), USER_ID_LEN);
    Some(id)
}

/// A parameter struct that starts with `uint32_t struct_size` and that C
/// fills with its `_init` function.
pub(crate) trait Params: Default {
    /// The C type's name, for messages.
    const NAME: &'static str;
    /// The sizes earlier versions published, with the version that did: a
    /// caller compiled against that version's header passes it, and only
    /// the fields it covers are read (the later ones keep their defaults).
    const OLDER_SIZES: &'static [(usize, &'static str)] = &[];
    /// Reads a struct of a published `size` field by field, so that C's
    /// bytes never become a Rust value they are not valid for (a `bool`
    /// byte other than 0 or 1), and no field past `size` is touched.
    unsafe fn read_fields(p: *const Self, size: usize) -> Self;
}

/// The size a struct had when `first_new` (the offset of the first field a
/// later version appended) was its end: the fields before it, padded to
/// that version's alignment `align` (its widest field's), as C's `sizeof`
/// of that version's struct.
pub(crate) const fn size_before(first_new: usize, align: usize) -> usize {
    first_new.next_multiple_of(align)
}

/// The body of every `_init`: writes the defaults (over bytes that may not
/// yet be a valid struct, hence no `&mut`); NULL is ignored.
pub(crate) unsafe fn init_params<T: Params>(p: *mut T) {
    guard(|| {
        if !p.is_null() {
            p.write(T::default());
        }
    })
}

/// One field of a caller's struct, read without assuming its alignment.
macro_rules! field {
    ($p:ident . $name:ident) => {
        std::ptr::addr_of!((*$p).$name).read_unaligned()
    };
}
pub(crate) use field;

/// The size of what `_` points to (for `covers!`, which names a field only).
pub(crate) const fn pointee_size<T>(_: *const T) -> usize {
    std::mem::size_of::<T>()
}

/// Whether a struct of `size` bytes covers the field `$name` of `$t`. Asks
/// a struct of its own, never the caller's pointer: the address of a field
/// past the caller's bytes may not even be formed.
macro_rules! covers {
    ($size:expr, $t:ty, $name:ident) => {{
        let t = std::mem::MaybeUninit::<$t>::uninit();
        // The field's width, from a pointer into a struct never read.
        let width = $crate::ffi::args::pointee_size(unsafe { std::ptr::addr_of!((*t.as_ptr()).$name) });
        $size >= std::mem::offset_of!($t, $name) + width
    }};
}
pub(crate) use covers;

/// Reads a caller's parameter struct; NULL gives the defaults. Only a
/// published `struct_size` is read: today's `sizeof`, or one of
/// `T::OLDER_SIZES` (read up to where that version's struct ended); any
/// other could split a field or cover bytes the caller never wrote.
pub(crate) unsafe fn read_params<T: Params>(p: *const T) -> Result<T> {
    if p.is_null() {
        return Ok(T::default());
    }
    let size = std::ptr::read_unaligned(p as *const u32) as usize;
    let published = std::mem::size_of::<T>();
    if size != published && !T::OLDER_SIZES.iter().any(|&(s, _)| s == size) {
        let name = T::NAME;
        let older: String = T::OLDER_SIZES
            .iter()
            .filter(|&&(s, _)| s != published)
            .map(|(s, version)| format!(" or {s} ({version}'s)"))
            .collect();
        return Err(Error::invalid(format!(
            "{name}.struct_size is {size}, expected {published}{older}: fill it with {name}_init first"
        )));
    }
    Ok(T::read_fields(p, size))
}
