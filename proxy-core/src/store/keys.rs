//! Every series' key (`family{a="x"}`), stored once: the keys laid out in
//! exposition order in one shared text (what a scrape reads, sequentially
//! and without the store's lock), the keys added since in a tail, and an
//! open-addressing index of series ids by key that holds no key itself.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::series::SeriesId;

/// An empty slot of the index.
const EMPTY: u32 = u32::MAX;
/// A slot of the index whose series was retired: probing goes on past it,
/// a new entry may take it.
const TOMBSTONE: u32 = u32::MAX - 1;

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
    /// Index slots holding [`TOMBSTONE`].
    tombstones: usize,
    /// Series ids retired and not reused yet (their key is empty).
    retired: usize,
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
            tombstones: 0,
            retired: 0,
        }
    }
}

/// Every key as of when it was taken, readable without the store: the
/// shared text, a copy of the tail and of the positions.
#[derive(Debug, Default)]
pub(crate) struct KeysView {
    sealed: Arc<str>,
    tail: String,
    starts: Vec<usize>,
    lens: Vec<u32>,
}

impl KeysView {
    /// The key of series `sid`.
    pub(crate) fn get(&self, sid: SeriesId) -> &str {
        key_at(&self.sealed, &self.tail, self.starts[sid as usize], self.lens[sid as usize])
    }
}

fn key_at<'a>(sealed: &'a str, tail: &'a str, start: usize, len: u32) -> &'a str {
    let len = len as usize;
    if start < sealed.len() {
        &sealed[start..start + len]
    } else {
        &tail[start - sealed.len()..start - sealed.len() + len]
    }
}

impl Keys {
    /// A copy of every key's position, sharing the sealed text.
    pub(super) fn view(&self) -> KeysView {
        KeysView {
            sealed: self.sealed.clone(),
            tail: self.tail.clone(),
            starts: self.starts.clone(),
            lens: self.lens.clone(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Keys of series that are not retired.
    pub(super) fn live(&self) -> usize {
        self.starts.len() - self.retired
    }

    /// The key of series `sid`.
    pub(super) fn get(&self, sid: SeriesId) -> &str {
        key_at(&self.sealed, &self.tail, self.starts[sid as usize], self.lens[sid as usize])
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
                TOMBSTONE => i = (i + 1) & mask,
                sid if self.get(sid) == key => return Some(sid),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Where `sid` sits in the index.
    fn position(&self, sid: SeriesId) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut i = self.slot(self.get(sid));
        loop {
            match self.index[i] {
                EMPTY => return None,
                s if s == sid => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Forgets the key of `sid`: it is found no more, its text goes at the
    /// next [`Keys::seal`], and `sid` waits for [`Keys::reuse`].
    pub(super) fn retire(&mut self, sid: SeriesId) {
        if let Some(i) = self.position(sid) {
            self.index[i] = TOMBSTONE;
            self.tombstones += 1;
        }
        self.lens[sid as usize] = 0;
        self.retired += 1;
    }

    /// Gives the retired `sid` the key `key` (not present).
    pub(super) fn reuse(&mut self, sid: SeriesId, key: &str) {
        self.starts[sid as usize] = self.sealed.len() + self.tail.len();
        self.lens[sid as usize] = key.len() as u32;
        self.tail.push_str(key);
        self.retired -= 1;
        if (self.live() + self.tombstones) * 2 > self.index.len() {
            self.rehash(self.index.len());
        } else {
            self.place(sid);
        }
    }

    /// Adds `key` (not present yet) for the next series id.
    pub(super) fn push(&mut self, key: &str) -> SeriesId {
        let sid = self.starts.len() as SeriesId;
        self.starts.push(self.sealed.len() + self.tail.len());
        self.lens.push(key.len() as u32);
        self.tail.push_str(key);
        if (self.live() + self.tombstones) * 2 > self.index.len() {
            self.rehash((self.index.len() * 2).max(64));
        } else {
            self.place(sid);
        }
        sid
    }

    fn place(&mut self, sid: SeriesId) {
        let mask = self.index.len() - 1;
        let mut i = self.slot(self.get(sid));
        while !matches!(self.index[i], EMPTY | TOMBSTONE) {
            i = (i + 1) & mask;
        }
        if self.index[i] == TOMBSTONE {
            self.tombstones -= 1;
        }
        self.index[i] = sid;
    }

    /// A new index of at least `slots` slots (twice the live keys at
    /// least), without tombstones.
    fn rehash(&mut self, slots: usize) {
        let slots = slots.max((self.live() * 2 + 2).next_power_of_two()).max(64);
        self.index = vec![EMPTY; slots];
        self.tombstones = 0;
        for sid in 0..self.starts.len() as SeriesId {
            if self.lens[sid as usize] > 0 {
                self.place(sid);
            }
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

    #[test]
    fn retired_keys_are_found_no_more_and_their_ids_take_new_keys() {
        let mut k = Keys::default();
        let names: Vec<String> = (0..200).map(|i| format!("x_total{{i=\"{i}\"}}")).collect();
        for n in &names {
            k.push(n);
        }
        // Many rounds of retiring and reusing: tombstones never fill the
        // index, every live key stays found.
        for round in 0..50 {
            for sid in (0..200).filter(|s| s % 3 == round % 3) {
                k.retire(sid);
                assert_eq!(k.find(&names[sid as usize]), None);
                assert_eq!(k.get(sid), "");
            }
            assert_eq!(k.live(), 200 - (0..200).filter(|s| s % 3 == round % 3).count());
            for sid in (0..200).filter(|s| s % 3 == round % 3) {
                k.reuse(sid, &names[sid as usize]);
            }
            assert_eq!(k.live(), 200);
            for (i, n) in names.iter().enumerate() {
                assert_eq!(k.find(n), Some(i as SeriesId), "round {round}");
            }
            assert!(k.tombstones + k.live() <= k.index.len() / 2 + 1, "round {round}");
        }
        k.retire(7);
        let order: Vec<SeriesId> = (0..200).filter(|&s| s != 7).collect();
        let (text, _) = k.seal(&order);
        assert!(!text.contains("x_total{i=\"7\"}"), "a retired key leaves the text");
        k.reuse(7, "y_total");
        assert_eq!(k.find("y_total"), Some(7));
        assert_eq!(k.find(&names[8]), Some(8));
    }
}
