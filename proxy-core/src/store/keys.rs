//! Every series' key (`family{a="x"}`), stored once: the keys laid out in
//! exposition order in one shared text (what a scrape reads, sequentially
//! and without the store's lock), the keys added since in a tail, and an
//! open-addressing index of series ids by key that holds no key itself.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::series::SeriesId;

/// An empty slot of the index.
const EMPTY: u32 = u32::MAX;

#[derive(Debug)]
pub(super) struct Keys {
    /// Keys in exposition order as of the last [`Keys::seal`], shared
    /// with the render layout.
    sealed: Arc<str>,
    /// Keys added since, in the order added.
    tail: String,
    /// Where each series' key starts: below `sealed.len()` in `sealed`,
    /// else in `tail` (minus that length).
    starts: Vec<usize>,
    lens: Vec<u32>,
    /// Series ids by hash of their key; a power of two, at most half full.
    index: Vec<u32>,
    /// Random keys, so that peers cannot choose colliding names.
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            sealed: Arc::from(""),
            tail: String::new(),
            starts: Vec::new(),
            lens: Vec::new(),
            index: Vec::new(),
            hasher: Default::default(),
        }
    }
}

impl Keys {
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// The key of series `sid`.
    pub(super) fn get(&self, sid: SeriesId) -> &str {
        let (start, len) = (self.starts[sid as usize], self.lens[sid as usize] as usize);
        let sealed = self.sealed.len();
        if start < sealed {
            &self.sealed[start..start + len]
        } else {
            &self.tail[start - sealed..start - sealed + len]
        }
    }

    fn slot(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize & (self.index.len() - 1)
    }

    /// The series whose key is `key`.
    pub(super) fn find(&self, key: &str) -> Option<SeriesId> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut i = self.slot(key);
        loop {
            match self.index[i] {
                EMPTY => return None,
                sid if self.get(sid) == key => return Some(sid),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `key` (not present yet) for the next series id.
    pub(super) fn push(&mut self, key: &str) -> SeriesId {
        let sid = self.starts.len() as SeriesId;
        self.starts.push(self.sealed.len() + self.tail.len());
        self.lens.push(key.len() as u32);
        self.tail.push_str(key);
        if (self.starts.len()) * 2 > self.index.len() {
            self.rehash((self.index.len() * 2).max(64));
        } else {
            self.place(sid);
        }
        sid
    }

    fn place(&mut self, sid: SeriesId) {
        let mask = self.index.len() - 1;
        let mut i = self.slot(self.get(sid));
        while self.index[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.index[i] = sid;
    }

    fn rehash(&mut self, slots: usize) {
        self.index = vec![EMPTY; slots];
        for sid in 0..self.starts.len() as SeriesId {
            self.place(sid);
        }
    }

    /// Lays every key out again in `order` (every series once), in one
    /// new shared text, and returns it with where each key ends in it.
    pub(super) fn seal(&mut self, order: &[SeriesId]) -> (Arc<str>, Vec<usize>) {
        let total = self.sealed.len() + self.tail.len();
        let mut text = String::with_capacity(total);
        let mut starts = vec![0; self.starts.len()];
        let mut ends = Vec::with_capacity(order.len());
        for &sid in order {
            starts[sid as usize] = text.len();
            text.push_str(self.get(sid));
            ends.push(text.len());
        }
        let sealed: Arc<str> = Arc::from(text);
        self.sealed = sealed.clone();
        self.tail = String::new();
        self.starts = starts;
        (sealed, ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_before_and_after_sealing() {
        let mut k = Keys::default();
        let names: Vec<String> = (0..1000).map(|i| format!("x_total{{i=\"{i}\"}}")).collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(k.find(n), None);
            assert_eq!(k.push(n), i as SeriesId);
        }
        let check = |k: &Keys| {
            for (i, n) in names.iter().enumerate() {
                assert_eq!(k.find(n), Some(i as SeriesId));
                assert_eq!(k.get(i as SeriesId), n);
            }
            assert_eq!(k.find("x_total"), None);
        };
        check(&k);
        let order: Vec<SeriesId> = (0..1000).rev().collect();
        let (text, ends) = k.seal(&order);
        assert!(text.starts_with("x_total{i=\"999\"}x_total{i=\"998\"}"));
        assert_eq!(ends.len(), 1000);
        assert_eq!(*ends.last().unwrap(), text.len());
        check(&k);
        assert_eq!(k.push("y"), 1000);
        assert_eq!(k.find("y"), Some(1000));
        assert_eq!(k.get(1000), "y");
        assert_eq!(k.get(5), "x_total{i=\"5\"}");
    }
}
