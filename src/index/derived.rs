//! In-memory indexes derived from the rows' metadata: the index of
//! filterable fields (`fields.rs`) and the term index of text fields
//! (`terms.rs`). They are built from the sealed chunks (for IVF_RABITQ,
//! their heads) and never stored, so the store learns nothing from them
//! and writes cost what they did.
//!
//! A handle brings one up to the state a call reads by re-indexing only
//! the chunks whose stamp changed (a write's chunks; every chunk after a
//! training, when it is rebuilt instead), so a cold handle pays one pass
//! over the metadata and each later write only its own chunks.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;
use serde_json::Value;

use super::manifest::{ChunkMeta, Manifest, Stamp};
use super::{Index, IndexConfig};
use crate::error::Result;

/// An index over rows, kept chunk by chunk.
pub(super) trait RowIndex {
    /// An empty index for what `config` declares.
    fn new(config: &IndexConfig) -> Self;
    /// Adds chunk `no`, its rows' metadata by slot. `sorted`: chunks arrive
    /// in ascending order (a rebuild), so its rows go after all others.
    fn insert(&mut self, no: u32, rows: &[Option<&Value>], sorted: bool);
    /// Forgets chunk `no`'s rows.
    fn remove(&mut self, no: u32);
}

/// A handle's copy of one derived index and the state it reflects.
pub(super) struct Derived<T>(RwLock<Option<State<T>>>);

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Derived(RwLock::new(None))
    }
}

struct State<T> {
    /// The manifest version this reflects.
    version: u64,
    /// The stamp of each chunk as indexed.
    stamps: HashMap<u32, Stamp>,
    index: T,
}

/// When more than this share of the chunks changed (a training), the index
/// is rebuilt rather than patched chunk by chunk.
const REBUILD_SHARE: usize = 16;

impl Index {
    /// `answer` applied to `derived` brought up to `m`; None (rarely) when
    /// a concurrent call already brought it past `m`: the caller then does
    /// without it.
    pub(super) fn with_derived<T: RowIndex, R>(
        &self,
        derived: &Derived<T>,
        m: &Manifest,
        answer: impl FnOnce(&T) -> R,
    ) -> Result<Option<R>> {
        {
            let state = derived.0.read();
            match &*state {
                Some(s) if s.version == m.version => return Ok(Some(answer(&s.index))),
                Some(s) if s.version > m.version => return Ok(None),
                _ => {}
            }
        }
        let mut state = derived.0.write();
        if state.as_ref().is_none_or(|s| s.version < m.version) {
            if let Err(e) = self.sync(m, &mut state) {
                // Half brought up to date, it must not serve its old version.
                *state = None;
                return Err(e);
            }
        }
        Ok(state.as_ref().filter(|s| s.version == m.version).map(|s| answer(&s.index)))
    }

    /// Brings `state` to `m`: re-indexes the chunks whose stamp changed, or
    /// everything when most did.
    fn sync<T: RowIndex>(&self, m: &Manifest, state: &mut Option<State<T>>) -> Result<()> {
        let mut metas: Vec<&ChunkMeta> = m.chunks().collect();
        metas.sort_unstable_by_key(|c| c.no);
        let stamps = state.as_ref().map(|s| &s.stamps);
        let changed: Vec<&ChunkMeta> =
            metas.iter().copied().filter(|c| stamps.and_then(|s| s.get(&c.no)).is_none_or(|s| *s != c.stamp)).collect();
        let rebuild = state.is_none() || changed.len() * REBUILD_SHARE > metas.len();
        let s = match state {
            Some(s) if !rebuild => {
                let live: HashSet<u32> = metas.iter().map(|c| c.no).collect();
                let gone: Vec<u32> = s.stamps.keys().filter(|no| !live.contains(no)).copied().collect();
                for no in gone.into_iter().chain(changed.iter().map(|c| c.no)) {
                    s.index.remove(no);
                    s.stamps.remove(&no);
                }
                s
            }
            _ => state.insert(State { version: 0, stamps: HashMap::new(), index: T::new(&m.config) }),
        };
        let coder = self.coder(m)?.map(|(_, coder)| coder);
        for meta in if rebuild { metas } else { changed } {
            match coder.as_deref() {
                Some(coder) => {
                    let head = self.head(m, coder, meta, None)?;
                    let rows: Vec<_> = (0..head.len()).map(|slot| head.parsed_metadata(slot)).collect();
                    s.index.insert(meta.no, &rows, rebuild);
                }
                None => {
                    let chunk = self.chunk(m, meta, None)?;
                    let rows: Vec<_> = (0..chunk.len()).map(|slot| chunk.parsed_metadata(slot)).collect();
                    s.index.insert(meta.no, &rows, rebuild);
                }
            }
            s.stamps.insert(meta.no, meta.stamp);
        }
        s.version = m.version;
        Ok(())
    }
}
