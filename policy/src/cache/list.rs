//! An index-linked doubly linked list on a slab, the queue under LRU, FIFO,
//! 2Q, ARC, S3-FIFO and SIEVE.
//!
//! Nodes live in one `Vec`; links are `u32` slot numbers, so a node handle is
//! stable until the node is removed and no `unsafe` or `Rc` is needed. Free
//! slots are chained through `next`. Head = most recently inserted.
//!
//! Invariants (`check_invariants`): walking from `head` by `next` visits
//! exactly `len` nodes and ends at `tail`; `prev` mirrors `next`.

use crate::types::ObjectId;

/// Slot number of a node.
pub type Handle = u32;
const NIL: Handle = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    id: ObjectId,
    /// Per-policy tag (visited bit, frequency, list membership).
    tag: u8,
    prev: Handle,
    next: Handle,
}

/// The list. See the module docs.
#[derive(Debug, Clone)]
pub struct List {
    nodes: Vec<Node>,
    head: Handle,
    tail: Handle,
    free: Handle,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            len: 0,
        }
    }
}

impl List {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// No node at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Insert at the head; returns the new node's handle.
    pub fn push_front(&mut self, id: ObjectId, tag: u8) -> Handle {
        let node = Node {
            id,
            tag,
            prev: NIL,
            next: self.head,
        };
        let h = if self.free != NIL {
            let h = self.free;
            self.free = self.nodes[h as usize].next;
            self.nodes[h as usize] = node;
            h
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as Handle
        };
        if self.head != NIL {
            self.nodes[self.head as usize].prev = h;
        } else {
            self.tail = h;
        }
        self.head = h;
        self.len += 1;
        h
    }
    /// Unlink `h`; returns its id. `h` must be live.
    pub fn remove(&mut self, h: Handle) -> ObjectId {
        let (prev, next, id) = {
            let n = &self.nodes[h as usize];
            (n.prev, n.next, n.id)
        };
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        let n = &mut self.nodes[h as usize];
        n.prev = NIL;
        n.next = self.free;
        self.free = h;
        self.len -= 1;
        id
    }
    /// Move live `h` to the head.
    pub fn move_to_front(&mut self, h: Handle) {
        if self.head == h {
            return;
        }
        let (id, tag) = (self.nodes[h as usize].id, self.nodes[h as usize].tag);
        self.remove(h);
        let h2 = self.push_front(id, tag);
        debug_assert_eq!(h, h2, "the freed slot is reused first");
    }
    /// Tail (oldest) node.
    pub fn back(&self) -> Option<Handle> {
        (self.tail != NIL).then_some(self.tail)
    }
    /// Remove and return the tail's id and tag.
    pub fn pop_back(&mut self) -> Option<(ObjectId, u8)> {
        let t = self.back()?;
        let tag = self.nodes[t as usize].tag;
        Some((self.remove(t), tag))
    }
    /// The node nearer the head than `h` (towards newer), if any.
    pub fn prev(&self, h: Handle) -> Option<Handle> {
        let p = self.nodes[h as usize].prev;
        (p != NIL).then_some(p)
    }
    /// Id of live `h`.
    pub fn id(&self, h: Handle) -> ObjectId {
        self.nodes[h as usize].id
    }
    /// Tag of live `h`.
    pub fn tag(&self, h: Handle) -> u8 {
        self.nodes[h as usize].tag
    }
    /// Set the tag of live `h`.
    pub fn set_tag(&mut self, h: Handle, tag: u8) {
        self.nodes[h as usize].tag = tag;
    }
    /// Ids from head to tail.
    pub fn ids(&self) -> Vec<ObjectId> {
        let mut out = Vec::with_capacity(self.len);
        let mut h = self.head;
        while h != NIL {
            out.push(self.nodes[h as usize].id);
            h = self.nodes[h as usize].next;
        }
        out
    }
    /// Panics if the links are inconsistent (see module docs).
    pub fn check_invariants(&self) {
        let mut n = 0;
        let mut prev = NIL;
        let mut h = self.head;
        while h != NIL {
            assert_eq!(self.nodes[h as usize].prev, prev, "prev mirrors next");
            prev = h;
            h = self.nodes[h as usize].next;
            n += 1;
            assert!(n <= self.len, "list longer than len");
        }
        assert_eq!(prev, self.tail, "walk ends at tail");
        assert_eq!(n, self.len, "walk visits len nodes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_remove_move() {
        let mut l = List::default();
        let a = l.push_front(1, 0);
        let _b = l.push_front(2, 0);
        let c = l.push_front(3, 0);
        assert_eq!(l.ids(), vec![3, 2, 1]);
        l.move_to_front(a);
        assert_eq!(l.ids(), vec![1, 3, 2]);
        assert_eq!(l.remove(c), 3);
        assert_eq!(l.ids(), vec![1, 2]);
        assert_eq!(l.pop_back(), Some((2, 0)));
        l.check_invariants();
        assert_eq!(l.len(), 1);
        let d = l.push_front(4, 7);
        assert_eq!(l.tag(d), 7);
        assert_eq!(l.ids(), vec![4, 1]);
        l.check_invariants();
    }
}
