//! An append-only, lock-free list of leaked values (raw pointers: `unsafe` allowed here).
//!
//! Values are boxed, leaked and pushed at the head with a compare-and-swap,
//! so adding one never blocks, a reader sees every value pushed before it
//! started, and a fork at any point leaves the child a well-formed list.
//! Nothing is ever freed: values are reused by their owner instead.

use std::sync::atomic::{AtomicPtr, Ordering};

struct Node<T: 'static> {
    value: T,
    next: AtomicPtr<Node<T>>,
}

pub(crate) struct List<T: 'static> {
    head: AtomicPtr<Node<T>>,
}

impl<T: Sync + 'static> List<T> {
    pub(crate) const fn new() -> List<T> {
        List { head: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Leaks `value` into the list and returns it.
    pub(crate) fn push(&self, value: T) -> &'static T {
        let node: &'static Node<T> = Box::leak(Box::new(Node { value, next: AtomicPtr::new(core::ptr::null_mut()) }));
        let p = node as *const Node<T> as *mut Node<T>;
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            node.next.store(head, Ordering::Relaxed);
            match self.head.compare_exchange_weak(head, p, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return &node.value,
                Err(h) => head = h,
            }
        }
    }

    /// Every value pushed so far, the latest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'static T> {
        let mut p = self.head.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            // SAFETY: the list only holds nodes leaked by `push`, fully
            // written before the release that published them.
            let node: &'static Node<T> = unsafe { p.as_ref()? };
            p = node.next.load(Ordering::Acquire);
            Some(&node.value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_values_are_listed_latest_first_from_every_thread() {
        static L: List<u32> = List::new();
        assert_eq!(L.iter().count(), 0);
        let first: &'static u32 = L.push(1);
        assert_eq!(*first, 1);
        std::thread::scope(|s| {
            for i in 0..4 {
                s.spawn(move || {
                    for j in 0..100 {
                        L.push(10 + i * 100 + j);
                    }
                });
            }
        });
        let mut all: Vec<u32> = L.iter().copied().collect();
        assert_eq!(all.len(), 401);
        assert_eq!(all.last(), Some(&1), "the first value pushed is listed last");
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 401, "every value once");
        assert!(L.iter().any(|v| std::ptr::eq(v, first)), "values are listed in place, not copied");
    }
}
