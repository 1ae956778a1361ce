//! Fixed-capacity indexes over table positions, so that lookups, timers and queues cost
//! O(1) or O(log N) instead of a scan of the table. Internal to the crate.

use crate::Instant;

const NIL: u16 = u16::MAX;

/// Items `0..N` linked into `N` hash buckets: each item is in at most one bucket.
#[derive(Clone, Debug)]
pub(crate) struct ChainIndex<const N: usize> {
    heads: [u16; N],
    next: [u16; N],
    bucket_of: [u16; N],
}

impl<const N: usize> ChainIndex<N> {
    pub(crate) const fn new() -> Self {
        ChainIndex {
            heads: [NIL; N],
            next: [NIL; N],
            bucket_of: [NIL; N],
        }
    }

    fn bucket(hash: u32) -> usize {
        // Fibonacci hashing spreads sequential message IDs and similar tokens.
        ((hash.wrapping_mul(0x9e37_79b1) as u64 * N as u64) >> 32) as usize
    }

    /// Links `item` under `hash`, first unlinking it from wherever it was.
    pub(crate) fn insert(&mut self, item: usize, hash: u32) {
        self.remove(item);
        let b = Self::bucket(hash);
        if let (Some(next), Some(head), Some(of)) = (
            self.next.get_mut(item),
            self.heads.get_mut(b),
            self.bucket_of.get_mut(item),
        ) {
            *next = *head;
            *head = item as u16;
            *of = b as u16;
        }
    }

    /// Unlinks `item` if it is linked.
    pub(crate) fn remove(&mut self, item: usize) {
        let Some(&b) = self.bucket_of.get(item) else {
            return;
        };
        if b == NIL {
            return;
        }
        let after = self.next[item];
        let mut at = &mut self.heads[b as usize];
        // Chains are short: expected length below one at full load.
        for _ in 0..N {
            if *at == item as u16 {
                *at = after;
                break;
            }
            if *at == NIL {
                break;
            }
            let k = *at as usize;
            at = &mut self.next[k];
        }
        self.next[item] = NIL;
        self.bucket_of[item] = NIL;
    }

    /// The items linked under `hash` (and possibly others sharing its bucket).
    pub(crate) fn candidates(&self, hash: u32) -> Candidates<'_, N> {
        Candidates {
            index: self,
            at: self.heads[Self::bucket(hash)],
            left: N,
        }
    }
}

pub(crate) struct Candidates<'a, const N: usize> {
    index: &'a ChainIndex<N>,
    at: u16,
    left: usize,
}

impl<const N: usize> Iterator for Candidates<'_, N> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.at == NIL || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = self.at as usize;
        self.at = *self.index.next.get(item)?;
        Some(item)
    }
}

/// A FIFO of distinct items `0..N`.
#[derive(Clone, Debug)]
pub(crate) struct ItemQueue<const N: usize> {
    items: [u16; N],
    queued: [bool; N],
    head: usize,
    len: usize,
}

impl<const N: usize> ItemQueue<N> {
    pub(crate) const fn new() -> Self {
        ItemQueue {
            items: [0; N],
            queued: [false; N],
            head: 0,
            len: 0,
        }
    }

    /// Appends `item` unless it is already queued.
    pub(crate) fn push(&mut self, item: usize) {
        if self.queued.get(item) != Some(&false) || self.len == N {
            return;
        }
        self.queued[item] = true;
        self.items[(self.head + self.len) % N] = item as u16;
        self.len += 1;
    }

    /// Items queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let item = self.items[self.head] as usize;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        self.queued[item] = false;
        Some(item)
    }
}

/// A min-heap of items `0..N` ordered by a deadline the caller keeps (`key`), with
/// O(log N) update and removal. The heap stores no deadlines of its own, so there is
/// one source of truth; after changing an item's deadline, call [`TimerHeap::set`].
#[derive(Clone, Debug)]
pub(crate) struct TimerHeap<const N: usize> {
    heap: [u16; N],
    pos: [u16; N],
    len: usize,
}

impl<const N: usize> TimerHeap<N> {
    pub(crate) const fn new() -> Self {
        TimerHeap {
            heap: [0; N],
            pos: [NIL; N],
            len: 0,
        }
    }

    /// Inserts `item` or restores its place after its deadline changed.
    pub(crate) fn set(&mut self, item: usize, key: &impl Fn(usize) -> Instant) {
        if item >= N {
            return;
        }
        let p = match self.pos[item] {
            NIL => {
                let p = self.len;
                self.len += 1;
                self.heap[p] = item as u16;
                self.pos[item] = p as u16;
                p
            }
            p => p as usize,
        };
        let p = self.sift_up(p, key);
        self.sift_down(p, key);
    }

    /// Removes `item` if present.
    pub(crate) fn remove(&mut self, item: usize, key: &impl Fn(usize) -> Instant) {
        let Some(&p) = self.pos.get(item) else {
            return;
        };
        if p == NIL {
            return;
        }
        let p = p as usize;
        self.len -= 1;
        self.pos[item] = NIL;
        if p < self.len {
            let last = self.heap[self.len];
            self.heap[p] = last;
            self.pos[last as usize] = p as u16;
            let p = self.sift_up(p, key);
            self.sift_down(p, key);
        }
    }

    /// The item with the earliest deadline.
    pub(crate) fn peek(&self) -> Option<usize> {
        (self.len > 0).then(|| self.heap[0] as usize)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a] as usize] = a as u16;
        self.pos[self.heap[b] as usize] = b as u16;
    }

    fn sift_up(&mut self, mut p: usize, key: &impl Fn(usize) -> Instant) -> usize {
        while p > 0 {
            let parent = (p - 1) / 2;
            if key(self.heap[p] as usize) >= key(self.heap[parent] as usize) {
                break;
            }
            self.swap(p, parent);
            p = parent;
        }
        p
    }

    fn sift_down(&mut self, mut p: usize, key: &impl Fn(usize) -> Instant) {
        loop {
            let (l, r) = (2 * p + 1, 2 * p + 2);
            let mut m = p;
            if l < self.len && key(self.heap[l] as usize) < key(self.heap[m] as usize) {
                m = l;
            }
            if r < self.len && key(self.heap[r] as usize) < key(self.heap[m] as usize) {
                m = r;
            }
            if m == p {
                return;
            }
            self.swap(p, m);
            p = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_index_finds_and_forgets() {
        let mut ix: ChainIndex<4> = ChainIndex::new();
        ix.insert(0, 7);
        ix.insert(1, 7);
        ix.insert(2, 9);
        assert!(ix.candidates(7).any(|i| i == 0));
        assert!(ix.candidates(7).any(|i| i == 1));
        ix.remove(0);
        assert!(!ix.candidates(7).any(|i| i == 0));
        ix.insert(1, 9); // moves
        assert!(!ix.candidates(7).any(|i| i == 1));
        assert!(ix.candidates(9).any(|i| i == 1) && ix.candidates(9).any(|i| i == 2));
        ix.remove(3); // not linked: nothing happens
    }

    use std::vec;

    #[test]
    fn timer_heap_orders_updates_and_removals() {
        let t = Instant::from_millis;
        let mut at = [t(50), t(10), t(30), t(40), t(20)];
        let mut h: TimerHeap<5> = TimerHeap::new();
        for i in 0..5 {
            h.set(i, &|i| at[i]);
        }
        assert_eq!(h.peek(), Some(1));
        at[1] = t(60); // later
        h.set(1, &|i| at[i]);
        assert_eq!(h.peek(), Some(4));
        h.remove(4, &|i| at[i]);
        at[3] = t(5); // earlier
        h.set(3, &|i| at[i]);
        let mut order = vec![];
        while let Some(i) = h.peek() {
            order.push(i);
            h.remove(i, &|i| at[i]);
        }
        assert_eq!(order, [3, 2, 0, 1]);
    }

    #[test]
    fn item_queue_is_fifo_without_duplicates() {
        let mut q: ItemQueue<3> = ItemQueue::new();
        q.push(2);
        q.push(0);
        q.push(2);
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(2), Some(0), None));
    }
}
