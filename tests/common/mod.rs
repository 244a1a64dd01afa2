//! Scaffolding shared by the integration tests (`mod common;`). The part
//! vx-bench shares too is in `fixtures`; what is here is for tests only.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

mod fixtures;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use fixtures::*;
use vx::{Client, ClientOptions};

/// A `memory:` client with the default options.
pub fn memory_client() -> Client {
    Client::open("memory:", ClientOptions::default()).unwrap()
}

/// Flips one byte in the middle of one stored chunk of `c`'s store (the
/// middle one in key order), as an attacker holding the store would, and
/// returns a new client over that store (nothing decrypted is cached).
#[cfg(feature = "test-hooks")]
pub fn with_a_tampered_chunk(c: &Client) -> Client {
    let store = c.raw_store();
    let chunks: Vec<(Vec<u8>, Vec<u8>)> =
        store.scan_prefix(b"o/").unwrap().into_iter().filter(|(k, _)| k.len() > 18 && k[18] == b'C').collect();
    assert!(!chunks.is_empty());
    let (k, mut v) = chunks[chunks.len() / 2].clone();
    let mid = v.len() / 2;
    v[mid] ^= 1;
    let mut b = vx::WriteBatch::default();
    b.put(k, v);
    assert!(store.write(b).unwrap());
    Client::over_store(store, ClientOptions::default()).unwrap()
}

/// This test binary set to run test `name` alone, its stdout piped back:
/// a test that needs a second process runs a test of its own crate as one,
/// and that test does its part only when the caller's environment says so.
pub fn child_test(name: &str) -> Command {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.args([name, "--exact", "--nocapture", "--test-threads=1"]).stdout(Stdio::piped()).stderr(Stdio::null());
    child
}

/// A directory of its own under the system's temporary directory: named
/// after the test and this process (test threads and concurrent runs never
/// share one), emptied of anything an earlier run left, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("vx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The `file:` store in this directory.
    pub fn uri(&self) -> String {
        file_uri(&self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server `VX_TEST_POSTGRES_URL` names (scripts/test-all.sh starts a
/// throw-away one), with `table` dropped so that no earlier run shows: the
/// store URL for that table, and an admin connection. None when the variable
/// is not set, said on stderr.
pub fn postgres_table(table: &str) -> Option<(String, postgres::Client)> {
    let Ok(url) = std::env::var("VX_TEST_POSTGRES_URL") else {
        // Past the harness's output capture, so the skip is visible.
        let _ = writeln!(std::io::stderr(), "skipped: postgres table '{table}' (VX_TEST_POSTGRES_URL is not set)");
        return None;
    };
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("the VX_TEST_POSTGRES_URL server");
    admin.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).unwrap();
    Some((with_table(&url, table), admin))
}
