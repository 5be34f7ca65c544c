//! A small least-recently-used map: the bounded caches of the correlator (client-go keeps
//! each of its three in a `groupcache/lru` of 4096 entries).

use std::collections::{BTreeMap, HashMap};

pub(crate) struct Lru<V> {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (V, u64)>,
    /// Last-use tick → key, oldest first.
    order: BTreeMap<u64, String>,
}

impl<V> Lru<V> {
    pub(crate) fn new(capacity: usize) -> Lru<V> {
        Lru {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The entry for `key`, marked as used.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        let (value, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.to_string());
        Some(value)
    }

    /// Puts `value` under `key` as the most recently used entry, evicting the least
    /// recently used one when full.
    pub(crate) fn insert(&mut self, key: String, value: V) {
        self.tick += 1;
        if let Some((_, used)) = self.entries.remove(&key) {
            self.order.remove(&used);
        }
        if self.entries.len() >= self.capacity {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.entries.remove(&oldest);
            }
        }
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, self.tick));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = Lru::new(2);
        lru.insert("a".into(), 1);
        lru.insert("b".into(), 2);
        // Using `a` makes `b` the oldest.
        assert_eq!(lru.get_mut("a").copied(), Some(1));
        lru.insert("c".into(), 3);
        assert_eq!(lru.len(), 2);
        assert!(lru.get_mut("b").is_none());
        assert_eq!(lru.get_mut("a").copied(), Some(1));
        assert_eq!(lru.get_mut("c").copied(), Some(3));
        // Replacing a key does not evict another.
        lru.insert("c".into(), 4);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get_mut("c").copied(), Some(4));
    }
}
