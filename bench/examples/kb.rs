use vx::*;
fn main() {
    let dim = 384;
    let n = 20000;
    let data: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1000) as f32 * 0.001).collect();
    let q: Vec<f32> = (0..dim).map(|i| i as f32 * 0.002).collect();
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let client = Client::open(
        "memory:",
        ClientOptions {
            threads,
            cache_bytes: std::env::var("CACHE").map(|c| c.parse().unwrap()).unwrap_or(1usize << 32),
        },
    )
    .unwrap();
    let index = client.create_index("k", &SecretKey::from_bytes(&[1; 32]), IndexConfig::default()).unwrap();
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let items: Vec<ItemRef> = (0..n)
        .map(|i| ItemRef { id: &ids[i], vector: &data[i * dim..(i + 1) * dim], metadata: None, contents: None })
        .collect();
    index.upsert(&items, Access::default()).unwrap();
    let p = QueryParams { top_k: 10, ..Default::default() };
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            index.query(&q, 1, dim, &p, Access::default()).unwrap();
        }
        println!("query {:.3} ms", t.elapsed().as_secs_f64() / 20.0 * 1e3);
    }
}
