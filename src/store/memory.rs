//! `memory:`: an in-process store for tests and caches, gone when the client
//! is freed.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use super::{part_of, Op, Store, WriteBatch};
use crate::error::Result;

#[derive(Default)]
pub struct MemoryStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn get_part(&self, key: &[u8], start: u64, len: u32) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).and_then(|v| part_of(v, start, len)).map(<[u8]>::to_vec))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let map = self.map.read();
        Ok(map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let map = self.map.read();
        Ok(map.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect())
    }

    fn write(&self, batch: WriteBatch) -> Result<bool> {
        let mut map = self.map.write();
        if batch.expects.iter().any(|(key, expected)| map.get(key) != expected.as_ref()) {
            return Ok(false);
        }
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    map.insert(k, v);
                }
                Op::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance(&super::MemoryStore::default());
    }
}
