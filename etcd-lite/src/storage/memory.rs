//! An engine that keeps everything in memory: for unit tests, and for
//! `--storage-engine memory` runs where losing everything on exit is acceptable.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::RwLock;

use super::{Durability, Engine, EngineError, EngineKind, Op, ScanRange, Space, WriteBatch};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every [`Space`] as a `BTreeMap` behind one lock, so batches are atomic.
#[derive(Default)]
pub struct MemoryEngine {
    spaces: RwLock<HashMap<Space, Map>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

fn bounds<'a>(range: &ScanRange<'a>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let end = match range.end {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(range.start), end)
}

impl Engine for MemoryEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Memory
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        Ok(spaces.get(&space).and_then(|m| m.get(key).cloned()))
    }

    fn scan(
        &self,
        space: Space,
        range: ScanRange<'_>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, EngineError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        let Some(map) = spaces.get(&space) else {
            return Ok(Vec::new());
        };
        let limit = super::scan_limit(limit);
        let iter = map.range::<[u8], _>(bounds(&range));
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            iter.rev().take(limit).map(clone).collect()
        } else {
            iter.take(limit).map(clone).collect()
        })
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<(), EngineError> {
        let mut spaces = self.spaces.write().expect("memory engine lock poisoned");
        for op in batch.ops {
            match op {
                Op::Put { space, key, value } => {
                    spaces.entry(space).or_default().insert(key, value);
                }
                Op::Delete { space, key } => {
                    if let Some(m) = spaces.get_mut(&space) {
                        m.remove(&key);
                    }
                }
                Op::DeleteRange { space, start, end } => {
                    if let Some(m) = spaces.get_mut(&space) {
                        if start < end {
                            let doomed: Vec<Vec<u8>> =
                                m.range(start..end).map(|(k, _)| k.clone()).collect();
                            for k in doomed {
                                m.remove(&k);
                            }
                        }
                    }
                }
                Op::Clear { space } => {
                    spaces.remove(&space);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        spaces
            .values()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    /// Nothing to do: memory is given back as keys are removed.
    fn defragment(&self) -> Result<(), EngineError> {
        Ok(())
    }
}
