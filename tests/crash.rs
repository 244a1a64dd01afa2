//! The kill -9 loop on the `file:` store: a child process commits batches in
//! a loop and reports each acknowledged one; the parent kills it (SIGKILL)
//! at a random moment, reopens the store and checks that every acknowledged
//! batch is there whole, that the one batch in flight is there whole or not
//! at all, and that nothing else is. `VX_CRASH_ITERATIONS` sets the number of
//! kills (default 25; docs/RELIABILITY.md has a long run).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::{as_root, child_test, file_uri, ids, items, key, uniform, Rng, TempDir};
use vx::{include, Access, Client, ClientOptions, IndexConfig, ItemRef};

const PER_BATCH: usize = 40;
const DIM: usize = 16;
const KEY: u8 = 4;

fn batch_ids(b: u64) -> Vec<String> {
    ids(&format!("b{b}-"), PER_BATCH)
}

/// The child: commits batch after batch, each with its items and an
/// overwrite of the "last" item naming the batch, and prints `ACK b` after
/// each commit returns. Runs only when the parent sets VX_CRASH_DIR.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("VX_CRASH_DIR") else { return };
    let start: u64 = std::env::var("VX_CRASH_START").unwrap().parse().unwrap();
    let client = Client::open(&file_uri(dir.as_ref()), ClientOptions { threads: 1, ..Default::default() }).unwrap();
    let index = match client.load_index("c", as_root(&key(KEY))) {
        Ok(ix) => ix,
        Err(_) => client.create_index("c", &key(KEY), IndexConfig::default()).unwrap(),
    };
    let mut out = std::io::stdout().lock();
    for b in start.. {
        let ids = batch_ids(b);
        let v = uniform(PER_BATCH + 1, DIM, b);
        let meta = format!(r#"{{"batch": {b}}}"#);
        let mut batch: Vec<ItemRef<'_>> =
            items(&ids, &v, DIM, None).map(|item| ItemRef { metadata: Some(&meta), ..item }).collect();
        batch.push(ItemRef { id: "last", vector: &v[..DIM], metadata: Some(&meta), contents: Some(b"x") });
        index.upsert(&batch, Access::default()).unwrap();
        writeln!(out, "ACK {b}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_minus_9_never_loses_an_acknowledged_batch() {
    let iterations: usize = std::env::var("VX_CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(25);
    let dir = TempDir::new("crash");
    let mut rng = Rng::new(u64::from(std::process::id()));
    let mut next = 0u64; // first batch the next child commits
    let (mut acked_total, mut in_flight_landed, mut in_flight_absent) = (0u64, 0u64, 0u64);
    for iteration in 0..iterations {
        let mut child = child_test("crash_child")
            .env("VX_CRASH_DIR", dir.path())
            .env("VX_CRASH_START", next.to_string())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                // The harness writes "test crash_child ... " before the
                // test runs, so the first ACK shares its line.
                .filter_map(|l| l.rsplit_once("ACK ").and_then(|(_, n)| n.trim().parse::<u64>().ok()))
                .last()
        });
        std::thread::sleep(Duration::from_millis(80 + rng.below(400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last_ack = reader.join().unwrap();

        // Reopen and check.
        let client = Client::open(&dir.uri(), ClientOptions::default()).unwrap();
        let Ok(index) = client.load_index("c", as_root(&key(KEY))) else {
            assert!(last_ack.is_none() && next == 0, "iteration {iteration}: the index vanished after acks");
            continue;
        };
        let acked_upto = last_ack.map_or(next, |a| a + 1); // batches < acked_upto were acknowledged
        let last = index.get(&["last"], include::METADATA, Access::default()).unwrap().remove(0);
        let landed_upto = match last.and_then(|i| i.metadata.clone()) {
            Some(m) => {
                let b: u64 = m.trim_start_matches(r#"{"batch": "#).trim_end_matches('}').parse().unwrap();
                b + 1
            }
            None => 0,
        };
        assert!(
            landed_upto == acked_upto || landed_upto == acked_upto + 1,
            "iteration {iteration}: acknowledged up to batch {acked_upto}, store has up to {landed_upto}"
        );
        // The batches this child touched, item by item ...
        for b in next.saturating_sub(1)..landed_upto + 2 {
            let ids = batch_ids(b);
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let found = index.get(&refs, 0, Access::default()).unwrap().iter().filter(|i| i.is_some()).count();
            let want = if b < landed_upto { PER_BATCH } else { 0 };
            assert_eq!(found, want, "iteration {iteration}: batch {b} has {found} of {PER_BATCH} items");
        }
        assert_eq!(
            index.num_vectors(Access::default()).unwrap(),
            landed_upto * PER_BATCH as u64 + u64::from(landed_upto > 0)
        );
        acked_total += acked_upto - next.min(acked_upto);
        if landed_upto > acked_upto {
            in_flight_landed += 1;
        } else {
            in_flight_absent += 1;
        }
        next = landed_upto;
    }
    let summary = format!(
        "kill -9 loop: {iterations} kills, {acked_total} batches acknowledged, {next} batches checked whole, \
         in-flight batch landed {in_flight_landed} times and was absent {in_flight_absent} times, 0 lost"
    );
    let _ = writeln!(std::io::stderr(), "{summary}");
    assert!(acked_total > 0, "the child never acknowledged a batch: {summary}");
}

const TRAIN_ITEMS: usize = 30_000;

/// The training child: fills the index once (printing `FILLED`), then
/// trains it again and again with other parameters (printing `TRAINED`
/// after each), so a kill lands before, during or after a run's writes
/// ahead of its commit. Runs only when the parent sets VX_TRAIN_CRASH_DIR.
#[test]
fn train_crash_child() {
    let Ok(dir) = std::env::var("VX_TRAIN_CRASH_DIR") else { return };
    let client = Client::open(&file_uri(dir.as_ref()), ClientOptions { threads: 1, ..Default::default() }).unwrap();
    let config = match std::env::var("VX_TRAIN_CRASH_TYPE").as_deref() {
        Ok("rabitq") => IndexConfig { index_type: vx::IndexType::IvfRabitq, ..Default::default() },
        _ => IndexConfig::default(),
    };
    let index = match client.load_index("t", as_root(&key(KEY))) {
        Ok(ix) => ix,
        Err(_) => client.create_index("t", &key(KEY), config).unwrap(),
    };
    let mut out = std::io::stdout().lock();
    if index.num_vectors(Access::default()).unwrap() == 0 {
        let names = ids("t", TRAIN_ITEMS);
        let v = uniform(TRAIN_ITEMS, DIM, 7);
        common::upsert_in_batches(&index, items(&names, &v, DIM, None), 10_000, Access::default()).unwrap();
    }
    writeln!(out, "FILLED").unwrap();
    out.flush().unwrap();
    for run in 0u32.. {
        // A small max_memory: the pass over the index takes many steps and
        // writes ahead in many batches, so kills land between them.
        let params = vx::TrainParams {
            n_lists: 32 + run % 16,
            max_iters: 8,
            max_memory_mib: 4,
            seed: u64::from(run),
            ..Default::default()
        };
        index.train(params, Access::default()).unwrap();
        writeln!(out, "TRAINED {run}").unwrap();
        out.flush().unwrap();
    }
}

/// The kill -9 loop during training: after each kill the index holds every
/// item with its vector, trained or not but whole, and answers queries; what
/// killed runs wrote ahead of their commits is garbage that `compact`
/// collects once the index has moved past it. `VX_CRASH_ITERATIONS` sets
/// the number of kills (default 8).
#[cfg(feature = "test-hooks")]
#[test]
fn kill_minus_9_during_training_leaves_the_index_whole() {
    let iterations: usize = std::env::var("VX_CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    // Kills alternate between an IVF_FLAT and an IVF_RABITQ index (whose
    // runs also write units ahead, and replace coded chunks once trained).
    let dirs = [(TempDir::new("train-crash"), "flat"), (TempDir::new("train-crash-rabitq"), "rabitq")];
    let mut rng = Rng::new(u64::from(std::process::id()) ^ 0x7472);
    let names = ids("t", TRAIN_ITEMS);
    let vectors = uniform(TRAIN_ITEMS, DIM, 7);
    let (mut trained_after_kill, mut untrained_after_kill, mut runs_completed, mut garbage) = (0, 0, 0, 0);
    for iteration in 0..iterations {
        let (dir, kind) = &dirs[iteration % 2];
        let mut child = child_test("train_crash_child")
            .env("VX_TRAIN_CRASH_DIR", dir.path())
            .env("VX_TRAIN_CRASH_TYPE", kind)
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut runs = 0;
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if line.contains("FILLED") {
                    let _ = tx.send(());
                }
                runs += usize::from(line.contains("TRAINED"));
            }
            runs
        });
        rx.recv_timeout(Duration::from_secs(120)).expect("the child filled the index");
        std::thread::sleep(Duration::from_millis(50 + rng.below(1500)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        runs_completed += reader.join().unwrap();

        let client = Client::open(&dir.uri(), ClientOptions::default()).unwrap();
        let index = client.load_index("t", as_root(&key(KEY))).unwrap();
        assert_eq!(index.num_vectors(Access::default()).unwrap(), TRAIN_ITEMS as u64, "iteration {iteration}");
        assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), TRAIN_ITEMS, "iteration {iteration}");
        for i in (0..TRAIN_ITEMS).step_by(997) {
            let got = index.get(&[names[i].as_str()], include::VECTOR, Access::default()).unwrap().remove(0);
            assert_eq!(got.unwrap().vector.as_deref(), Some(&vectors[i * DIM..(i + 1) * DIM]), "iteration {iteration}");
        }
        let params = vx::QueryParams { top_k: 5, ..Default::default() };
        let hits = index.query(&vectors[..DIM], 1, DIM, &params, Access::default()).unwrap();
        assert_eq!(hits[0].len(), 5, "iteration {iteration}");
        if index.n_lists().unwrap() > 0 {
            trained_after_kill += 1;
        } else {
            untrained_after_kill += 1;
        }
        // A commit moves the index past what a killed run wrote ahead;
        // compact then collects all of it and nothing else.
        let user = [iteration as u8 + 1; 16];
        index.create_user_keys(&user, &key(5), vx::PERMISSION_READ, None).unwrap();
        garbage += index.garbage_count().unwrap();
        index.compact(Access::default()).unwrap();
        assert_eq!(index.garbage_count().unwrap(), 0, "iteration {iteration}");
        assert_eq!(index.list_ids(0, 0, Access::default()).unwrap().len(), TRAIN_ITEMS, "iteration {iteration}");
        index.delete_user_keys(&user, None).unwrap();
    }
    let _ = writeln!(
        std::io::stderr(),
        "kill -9 during training: {iterations} kills, {runs_completed} runs completed, index trained after \
         {trained_after_kill} kills and untrained after {untrained_after_kill}, {garbage} objects written ahead \
         by killed runs collected, 0 items lost"
    );
}
