//! --only filters: filtered queries at 0.1%, 1% and 10% selectivity and
//! metadata-only queries, on an index whose metadata fields are declared
//! filterable (issue 15.2), against the same filters evaluated row by row.
//!
//! Each item gets `{"tenant": t, "bucket": b, "group": g}` drawn from a
//! hash of its number, independent of where its vector lies: tenant has
//! 1000 values (0.1% each), bucket 100 (1%), group 10 (10%). A filter
//! `{"$nor": [{"f": {"$ne": v}}]}` matches the same items as `{"f": v}` but
//! is not one the index of fields narrows, so it measures the row-by-row
//! path on the same index in the same run. Recall@10 is against the exact
//! filtered neighbours, computed here by brute force.

use std::time::Instant;

use crate::fixtures::{ids, upsert_in_batches, Dataset};
use crate::{emit, s};
use vx::{Access, Client, ClientOptions, IndexConfig, IndexType, ItemRef, MetadataQuery, QueryParams, TrainParams};

const FIELDS: [(&str, u64); 3] = [("tenant", 1000), ("bucket", 100), ("group", 10)];

fn value(i: usize, modulus: u64) -> u64 {
    // splitmix64 of the item number: independent of the vector's cluster.
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_mul(modulus | 1);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % modulus
}

fn metadata(i: usize) -> String {
    let v: Vec<String> = FIELDS.iter().map(|(f, m)| format!(r#""{f}": {}"#, value(i, *m))).collect();
    format!("{{{}}}", v.join(", "))
}

/// The exact filtered top 10 of query `qi`: ids of the nearest base rows
/// whose `field` has value `v`.
fn exact(ds: &Dataset, qi: usize, field: usize, v: u64) -> Vec<String> {
    let q = &ds.queries[qi * ds.dim..(qi + 1) * ds.dim];
    let mut scored: Vec<(f32, usize)> = (0..ds.n())
        .filter(|&i| value(i, FIELDS[field].1) == v)
        .map(|i| {
            let x = &ds.base[i * ds.dim..(i + 1) * ds.dim];
            (x.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.iter().take(10).map(|&(_, i)| i.to_string()).collect()
}

pub fn run(ds: &Dataset, nq_limit: usize, n_lists: u32, iters: u32) {
    let nq = ds.nq().min(nq_limit).min(200);
    let types = match std::env::var("VX_FILTERS_TYPES").as_deref() {
        Ok("ivf-rabitq") => vec![IndexType::IvfRabitq],
        Ok("both") => vec![IndexType::IvfFlat, IndexType::IvfRabitq],
        _ => vec![IndexType::IvfFlat],
    };
    // Exact answers first (the same for every index type): per field, query
    // qi asks for the value qi % modulus.
    let t = Instant::now();
    let truth: Vec<Vec<Vec<String>>> =
        (0..FIELDS.len()).map(|f| (0..nq).map(|qi| exact(ds, qi, f, qi as u64 % FIELDS[f].1)).collect()).collect();
    eprintln!("vx-bench filters: exact filtered neighbours in {:.1} s", t.elapsed().as_secs_f64());
    for index_type in types {
        let kind = match index_type {
            IndexType::IvfFlat => "ivf-flat",
            _ => "ivf-rabitq",
        };
        let client = Client::open("memory:", ClientOptions { threads: 1, ..Default::default() }).unwrap();
        let filterable = FIELDS.iter().map(|(f, _)| f.to_string()).collect();
        let config = IndexConfig { index_type, filterable, ..Default::default() };
        let index = client.create_index("filters", &crate::fixtures::key(crate::KEY), config).unwrap();
        let names = ids("", ds.n()); // plain numbers, as recall_at_10 reads them
        let metas: Vec<String> = (0..ds.n()).map(metadata).collect();
        let items = (0..ds.n()).map(|i| ItemRef {
            id: &names[i],
            vector: &ds.base[i * ds.dim..(i + 1) * ds.dim],
            metadata: Some(&metas[i]),
            contents: None,
        });
        upsert_in_batches(&index, items, 10_000, Access::default()).unwrap();
        index.train(TrainParams { n_lists, max_iters: iters, ..Default::default() }, Access::default()).unwrap();
        // The first filtered call builds the index of fields: timed alone.
        let t = Instant::now();
        let first = QueryParams { top_k: 10, filter: Some(r#"{"tenant": 0}"#), ..Default::default() };
        index.query(&ds.queries[..ds.dim], 1, ds.dim, &first, Access::default()).unwrap();
        let build_s = t.elapsed().as_secs_f64();

        // VX_FILTERS_REPEAT=r: each query r times (for profiles; recall counts each time).
        let repeat: usize = std::env::var("VX_FILTERS_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
        let single = |filter: &dyn Fn(usize) -> Option<String>, truth: Option<&Vec<Vec<String>>>| {
            let t = Instant::now();
            let mut found = 0usize;
            for qi in (0..nq * repeat).map(|i| i % nq) {
                let f = filter(qi);
                let p = QueryParams { top_k: 10, filter: f.as_deref(), ..Default::default() };
                let hits = index.query(&ds.queries[qi * ds.dim..(qi + 1) * ds.dim], 1, ds.dim, &p, Access::default());
                let hits = hits.unwrap();
                if let Some(truth) = truth {
                    found += hits[0].iter().filter(|h| truth[qi].contains(&h.id)).count();
                }
            }
            let qps = (nq * repeat) as f64 / t.elapsed().as_secs_f64();
            (qps, found as f64 / (nq * repeat * 10) as f64)
        };
        let all: Vec<Vec<vx::Hit>> = {
            let p = QueryParams { top_k: 10, ..Default::default() };
            (0..nq)
                .map(|qi| {
                    let q = &ds.queries[qi * ds.dim..(qi + 1) * ds.dim];
                    index.query(q, 1, ds.dim, &p, Access::default()).unwrap().remove(0)
                })
                .collect()
        };
        let (unfiltered_qps, _) = single(&|_| None, None);
        eprintln!("vx-bench filters: unfiltered measured");
        let unfiltered_recall = ds.recall_at_10(&all);
        emit(
            ds,
            "filters",
            &[
                ("kind", s(kind)),
                ("selectivity", s("none")),
                ("qps_single", format!("{unfiltered_qps:.1}")),
                ("recall_at_10", format!("{unfiltered_recall:.4}")),
                ("fields_index_build_s", format!("{build_s:.2}")),
                ("auto_n_probes", index.auto_n_probes().unwrap().to_string()),
                ("filtered_auto_n_probes", format!("{:?}", index.filtered_auto_n_probes().unwrap())),
            ],
        );
        for (f, (field, modulus)) in FIELDS.iter().enumerate() {
            let indexed = |qi: usize| Some(format!(r#"{{"{field}": {}}}"#, qi as u64 % modulus));
            let row_by_row =
                |qi: usize| Some(format!(r#"{{"$nor": [{{"{field}": {{"$ne": {}}}}}]}}"#, qi as u64 % modulus));
            eprintln!("vx-bench filters: {field} indexed");
            let (qps, recall) = single(&indexed, Some(&truth[f]));
            let (scan_qps, scan_recall) = single(&row_by_row, Some(&truth[f]));
            emit(
                ds,
                "filters",
                &[
                    ("kind", s(kind)),
                    ("selectivity", s(&format!("{}%", 100.0 / *modulus as f64))),
                    ("qps_single", format!("{qps:.1}")),
                    ("recall_at_10", format!("{recall:.4}")),
                    ("qps_vs_unfiltered", format!("{:.2}", qps / unfiltered_qps)),
                    ("row_by_row_qps_single", format!("{scan_qps:.1}")),
                    ("row_by_row_recall_at_10", format!("{scan_recall:.4}")),
                ],
            );
        }
        // Metadata-only: 1% of the items (bucket = b), all of them, and the
        // first 10 by tenant; warm (each timed over 20 calls).
        for (what, top_k, order_by) in [("all", 0, None), ("top10-by-tenant", 10, Some("tenant"))] {
            let t = Instant::now();
            let mut n = 0;
            for b in 0..20 {
                let filter = format!(r#"{{"bucket": {b}}}"#);
                let q = MetadataQuery { filter: Some(&filter), top_k, order_by, ..Default::default() };
                n += index.query_metadata(&q, Access::default()).unwrap().len();
            }
            emit(
                ds,
                "filters",
                &[
                    ("kind", s(kind)),
                    ("query_metadata", s(what)),
                    ("selectivity", s("1%")),
                    ("rows", (n / 20).to_string()),
                    ("ms", format!("{:.2}", t.elapsed().as_secs_f64() * 1000.0 / 20.0)),
                ],
            );
        }
    }
}
