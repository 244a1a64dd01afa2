//! PostgreSQL-specific failures against a real server (`VX_TEST_POSTGRES_URL`;
//! scripts/test-all.sh starts a throw-away one): the server killing vx's
//! connections in the middle of batches, and connection errors.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::{as_root, child_test, ids, items, key, postgres_table, uniform, Rng};
use vx::{include, Access, Client, ClientOptions, IndexConfig, ItemRef, Status};

const DIM: usize = 32;
const KEY: u8 = 8;

fn upsert_round(client: &Client, round: u64, n: usize) -> vx::Result<()> {
    let index = client.load_index("k", as_root(&key(KEY)))?;
    let (names, v) = (ids(&format!("r{round}-"), n), uniform(n, DIM, round));
    let blob = vec![round as u8; 4096];
    let batch: Vec<ItemRef<'_>> =
        items(&names, &v, DIM, None).map(|item| ItemRef { contents: Some(&blob), ..item }).collect();
    index.upsert(&batch, Access::default())
}

/// How many of round `round`'s items the store holds, read by a new client.
fn landed(url: &str, round: u64, n: usize) -> usize {
    let client = Client::open(url, ClientOptions::default()).unwrap();
    let index = client.load_index("k", as_root(&key(KEY))).unwrap();
    let names = ids(&format!("r{round}-"), n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let items = index.get(&refs, include::CONTENTS, Access::default()).unwrap();
    for item in items.iter().flatten() {
        assert_eq!(item.contents.as_deref(), Some(&vec![round as u8; 4096][..]), "round {round}: a torn item");
    }
    items.iter().filter(|i| i.is_some()).count()
}

/// While a client upserts a large batch, the server terminates every vx
/// connection one to three times at random moments. The upsert either succeeds or fails with
/// STORAGE; either way the round's items are all there or none is, earlier
/// rounds are intact, and the same client works again at once.
#[test]
fn killing_connections_mid_batch_never_tears_a_write() {
    let Some((url, mut admin)) = postgres_table("vx_test_kill") else { return };
    // Its own application name, so the kills hit this test's connections only.
    let url = format!("{url}&application_name=vx_kill_test");
    let client = Client::open(&url, ClientOptions { threads: 2, ..Default::default() }).unwrap();
    client.create_index("k", &key(KEY), IndexConfig::default()).unwrap();
    const N: usize = 3000;
    let rounds: u64 = std::env::var("VX_PG_KILL_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let (mut ok, mut failed, mut whole, mut absent) = (0, 0, 0, 0);
    let mut total = 0usize;
    let mut rng = Rng::new(1);
    for round in 0..rounds {
        let seed = rng.next_u64();
        let delay = Duration::from_millis(seed % 250);
        let result = std::thread::scope(|s| {
            let writer = s.spawn(|| upsert_round(&client, round, N));
            std::thread::sleep(delay);
            // One to three kills at random moments while the write runs.
            for k in 0..1 + seed % 3 {
                if writer.is_finished() {
                    break;
                }
                admin
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = 'vx_kill_test'",
                        &[],
                    )
                    .unwrap();
                std::thread::sleep(Duration::from_millis((seed >> (8 * k)) % 120));
            }
            writer.join().unwrap()
        });
        match &result {
            Ok(()) => ok += 1,
            Err(e) => {
                assert_eq!(e.status(), Status::Storage, "round {round}: {e}");
                failed += 1;
            }
        }
        let n = landed(&url, round, N);
        assert!(n == 0 || n == N, "round {round}: {n} of {N} items landed ({result:?})");
        if result.is_ok() {
            assert_eq!(n, N, "round {round}: acknowledged but not there");
        }
        if n == N {
            whole += 1;
            total += N;
        } else {
            absent += 1;
        }
        // The client recovers by itself: the next call gets a new connection.
        let index = client.load_index("k", as_root(&key(KEY))).unwrap();
        assert_eq!(index.num_vectors(Access::default()).unwrap(), total as u64, "round {round}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "connection kills: {rounds} rounds of {N} items: {ok} acknowledged, {failed} failed with STORAGE; \
         {whole} landed whole, {absent} absent, 0 torn"
    );
}

#[test]
fn connection_errors_are_storage_errors_without_credentials() {
    let Some((url, _admin)) = postgres_table("vx_test_errors") else { return };
    let with_password = url.replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let bad_db = with_password.replacen("/postgres?", "/no_such_db?", 1);
    let e = Client::open(&bad_db, ClientOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.status(), Status::Storage, "{msg}");
    assert!(msg.contains("no_such_db") && !msg.contains("hunter2"), "{msg}");
    let e = Client::open(&format!("{with_password}&table=Bad-Name"), ClientOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(!e.to_string().contains("hunter2"));
    // The same URL with a password opens fine (trust authentication).
    Client::open(&with_password, ClientOptions::default()).unwrap();
}

/// The other process of `another_process_sees_writes_and_training`: opens
/// the index once, then for every line on stdin prints what it sees now.
#[test]
fn pg_reader_child() {
    let Ok(url) = std::env::var("VX_PG_CHILD_URL") else { return };
    let client = Client::open(&url, ClientOptions::default()).unwrap();
    let index = client.load_index("k", as_root(&key(KEY))).unwrap();
    let mut out = std::io::stdout().lock();
    for _ in std::io::stdin().lock().lines() {
        let n = index.num_vectors(Access::default()).unwrap();
        let lists = index.n_lists().unwrap();
        let got = index.get(&["r0-0"], include::CONTENTS, Access::default()).unwrap().remove(0);
        let first = got.and_then(|i| i.contents.clone()).map_or(-1, |c| i64::from(c[0]));
        writeln!(out, "\nSEES {n} {lists} {first}").unwrap();
        out.flush().unwrap();
    }
}

/// A second process with the index open sees the first one's writes,
/// overwrites and training at its next call, without refreshing.
#[test]
fn another_process_sees_writes_and_training() {
    let Some((url, _admin)) = postgres_table("vx_test_processes") else { return };
    let client = Client::open(&url, ClientOptions::default()).unwrap();
    let index = client.create_index("k", &key(KEY), IndexConfig::default()).unwrap();
    upsert_round(&client, 0, 100).unwrap();
    let mut child = child_test("pg_reader_child").env("VX_PG_CHILD_URL", &url).stdin(Stdio::piped()).spawn().unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = || -> String {
        writeln!(to_child, "?").unwrap();
        to_child.flush().unwrap();
        loop {
            let line = from_child.next().expect("the reader process answered").unwrap();
            if let Some(seen) = line.strip_prefix("SEES ") {
                return seen.to_owned();
            }
        }
    };
    assert_eq!(ask(), "100 0 0");
    upsert_round(&client, 1, 11_000).unwrap();
    assert_eq!(ask(), "11100 0 0", "the other process missed an upsert");
    // Overwrite r0-0's contents (round 0 -> contents byte 7).
    let v = vec![1.0f32; DIM];
    let blob = [7u8; 4];
    index
        .upsert(&[ItemRef { id: "r0-0", vector: &v, metadata: None, contents: Some(&blob) }], Access::default())
        .unwrap();
    assert_eq!(ask(), "11100 0 7", "the other process served a stale object");
    index.train(vx::TrainParams { n_lists: 20, max_iters: 3, ..Default::default() }, Access::default()).unwrap();
    assert_eq!(ask(), "11100 20 7", "the other process missed the training");
    drop(to_child);
    child.wait().unwrap();
}

/// TLS, `sslmode` as libpq: with the test server's CA as `sslrootcert` the
/// certificate is verified and every connection encrypted (the server says
/// so); `verify-full` without that CA does not trust the server and nothing
/// connects; `prefer` (the default) and `require` encrypt without
/// verifying; `disable` is in clear.
#[test]
fn tls_connections_verify_the_server() {
    let Some((url, mut admin)) = postgres_table("vx_test_tls") else { return };
    let Ok(ca) = std::env::var("VX_TEST_POSTGRES_CA") else {
        let _ = writeln!(std::io::stderr(), "skipped: postgres TLS test (VX_TEST_POSTGRES_CA is not set)");
        return;
    };
    let mut ssl_of = |app: &str| -> Vec<bool> {
        admin
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
                &[&app],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let tls = format!("{url}&sslmode=require&sslrootcert={ca}&application_name=vx_tls_test");
    let client = Client::open(&tls, ClientOptions::default()).unwrap();
    let index = client.create_index("k", &key(KEY), IndexConfig::default()).unwrap();
    assert_eq!(index.num_vectors(Access::default()).unwrap(), 0);
    let seen = ssl_of("vx_tls_test");
    assert!(!seen.is_empty() && seen.iter().all(|&ssl| ssl), "connections not encrypted: {seen:?}");

    let untrusted = format!("{url}&sslmode=verify-full&application_name=vx_tls_untrusted");
    let e = Client::open(&untrusted, ClientOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::Storage);
    assert!(e.to_string().contains("TLS"), "{e}");
    for (mode, app) in [("require", "vx_tls_require"), ("prefer", "vx_tls_prefer")] {
        let c =
            Client::open(&format!("{url}&sslmode={mode}&application_name={app}"), ClientOptions::default()).unwrap();
        c.load_index("k", as_root(&key(KEY))).unwrap();
        assert_eq!(ssl_of(app), [true], "sslmode={mode}");
    }

    let clear = format!("{url}&sslmode=disable&application_name=vx_tls_clear");
    let client = Client::open(&clear, ClientOptions::default()).unwrap();
    client.load_index("k", as_root(&key(KEY))).unwrap();
    assert_eq!(ssl_of("vx_tls_clear"), [false]);
    let e = Client::open(&format!("{url}&sslrootcert=/no/such/ca.pem"), ClientOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
}
