//! `ByteBudget` makes room ahead of a big newcomer only for a newcomer its
//! policy would admit (review finding: Threshold and Belady refused the
//! newcomer after half the tier had been demoted for it).

use engram_policy::{ObjectId, PolicyKind, Request, annotate_next_access};

/// Ten 10-byte objects, each read twice (a 100-byte tier holds them all),
/// then a 60-byte object read once, then the ten again.
fn trace() -> Vec<Request> {
    let mut reqs = Vec::new();
    for round in 0..2 {
        for id in 0..10 {
            reqs.push(Request::read(round * 10 + id, id, 10));
        }
    }
    reqs.push(Request::read(20, 100, 60));
    for id in 0..10 {
        reqs.push(Request::read(21 + id, id, 10));
    }
    annotate_next_access(&mut reqs);
    reqs
}

#[test]
fn a_refused_newcomer_demotes_nothing() {
    for kind in [PolicyKind::Threshold, PolicyKind::Belady] {
        let reqs = trace();
        let mut p = kind.build_bytes(100, 1000).unwrap();
        let mut ev: Vec<ObjectId> = Vec::new();
        for r in &reqs[..20] {
            p.access(r, &mut ev);
        }
        assert_eq!(p.len(), 10, "{kind:?}: the ten fit");
        ev.clear();
        let out = p.access(&reqs[20], &mut ev);
        assert!(
            !out.admitted,
            "{kind:?}: a one-off 60-byte object is refused"
        );
        assert!(ev.is_empty(), "{kind:?}: refused, yet demoted {ev:?}");
        let hits = reqs[21..]
            .iter()
            .filter(|r| p.access(r, &mut ev).hit)
            .count();
        assert_eq!(hits, 10, "{kind:?}");
        p.check_invariants();
    }
}

/// A newcomer the policy admits still gets its room made.
#[test]
fn an_admitted_newcomer_gets_room() {
    let reqs = trace();
    let mut p = PolicyKind::Lru.build_bytes(100, 1000).unwrap();
    let mut ev: Vec<ObjectId> = Vec::new();
    for r in &reqs[..20] {
        p.access(r, &mut ev);
    }
    ev.clear();
    let out = p.access(&reqs[20], &mut ev);
    assert!(out.admitted);
    assert_eq!(ev.len(), 6, "LRU demotes six 10-byte objects: {ev:?}");
    assert_eq!(p.used(), 100);
    p.check_invariants();
}
