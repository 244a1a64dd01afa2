//! `--only writes` (built with `--features store-stats`): what a one-item
//! write stores as an index grows. Fills a `memory:` index with the
//! dataset's base vectors in batches of 50,000 and, at a thousandth, a
//! hundredth, a tenth and all of them, times 300 one-item writes of new ids
//! and counts what they put in the store (bytes, objects) and the size of
//! the root they leave. Counting needs a store wrapper, which only builds
//! with vx's `test-hooks` feature: hence a feature of its own, off for
//! every other measurement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::fixtures::{ids, items, key, upsert_in_batches, Dataset};
use crate::{emit, KEY};
use vx::{Access, Client, ClientOptions, IndexConfig, ItemRef, Op, Store, WriteBatch};

/// A store that counts what its writes put.
struct Counting {
    inner: Arc<dyn Store>,
    put_bytes: AtomicU64,
    put_objects: AtomicU64,
    root_bytes: AtomicU64,
}

impl Store for Counting {
    fn get(&self, key: &[u8]) -> vx::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn get_many(&self, keys: &[Vec<u8>]) -> vx::Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(keys)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> vx::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(prefix)
    }
    fn write(&self, batch: WriteBatch) -> vx::Result<bool> {
        for op in &batch.ops {
            if let Op::Put(k, v) = op {
                self.put_bytes.fetch_add(v.len() as u64, Ordering::Relaxed);
                self.put_objects.fetch_add(1, Ordering::Relaxed);
                // o/ + index id + 'M': the manifest root.
                if k.len() == 19 && k[18] == b'M' {
                    self.root_bytes.store(v.len() as u64, Ordering::Relaxed);
                }
            }
        }
        self.inner.write(batch)
    }
}

pub fn run(ds: &Dataset) {
    let inner = Client::open("memory:", ClientOptions::default()).unwrap().raw_store();
    let store = Arc::new(Counting {
        inner,
        put_bytes: AtomicU64::new(0),
        put_objects: AtomicU64::new(0),
        root_bytes: AtomicU64::new(0),
    });
    let client = Client::over_store(store.clone(), ClientOptions::default()).unwrap();
    let index = client.create_index("writes", &key(KEY), IndexConfig::default()).unwrap();
    let names = ids("", ds.n());
    let mut filled = 0;
    const WRITES: usize = 300;
    for size in [ds.n() / 1000, ds.n() / 100, ds.n() / 10, ds.n()].into_iter().filter(|&n| n > 0) {
        let (base, dim) = (&ds.base[filled * ds.dim..size * ds.dim], ds.dim);
        upsert_in_batches(&index, items(&names[filled..size], base, dim, None), 50_000, Access::default()).unwrap();
        filled = size;
        let (bytes, objects) = (store.put_bytes.load(Ordering::Relaxed), store.put_objects.load(Ordering::Relaxed));
        let t = Instant::now();
        for i in 0..WRITES {
            let (id, row) = (format!("one-{size}-{i}"), i % ds.n());
            let vector = &ds.base[row * dim..(row + 1) * dim];
            let item = ItemRef { id: &id, vector, metadata: None, contents: None };
            index.upsert(&[item], Access::default()).unwrap();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / WRITES as f64;
        let per_write = |now: &AtomicU64, before: u64| (now.load(Ordering::Relaxed) - before) as f64 / WRITES as f64;
        emit(
            ds,
            "one_item_writes",
            &[
                ("store", "\"memory\"".into()),
                ("items", size.to_string()),
                ("us_per_write", format!("{us:.1}")),
                ("bytes_stored_per_write", format!("{:.0}", per_write(&store.put_bytes, bytes))),
                ("objects_per_write", format!("{:.2}", per_write(&store.put_objects, objects))),
                ("root_bytes", store.root_bytes.load(Ordering::Relaxed).to_string()),
            ],
        );
    }
}
