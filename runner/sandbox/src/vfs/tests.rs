//! Random sequences of file-system operations, as a hostile guest would make them: the host
//! budget is never exceeded, what it counts is what the live nodes hold, freed nodes are
//! really gone, and no operation does unbounded work.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::saved::{CKPT_NEXT, CKPT_STATE};
use super::*;

/// What the declared outputs allow together.
const OUT_MAX: u64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    File(String),
    Dir(String),
    Symlink(String, String),
    Remove(String, bool),
    Rename(String, String),
    Write(String, u64, usize),
    Truncate(String, u64),
    Resolve(String, bool),
    List(String, u64),
    Open(String),
    Close(usize),
    /// Lists a held node and looks at every entry, as `fd_readdir` on a descriptor does.
    ListHeld(usize),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c", "l", "result.bin", ".", ".."])
            .prop_map(String::from),
        1 => Just("n".repeat(MAX_NAME_BYTES)),
        1 => Just("n".repeat(MAX_NAME_BYTES + 1)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::collection::vec(name(), 1..5).prop_map(|p| p.join("/")),
        1 => Just("a/".to_string()),
        1 => Just("/etc/passwd".to_string()),
        1 => Just("l/".repeat(MAX_PATH_BYTES / 2)),
        1 => Just("l/".repeat(MAX_PATH_BYTES / 2 + 1)),
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => path(),
        1 => Just("t".repeat(MAX_PATH_BYTES)),
        1 => Just("t".repeat(MAX_PATH_BYTES + 1)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => path().prop_map(Op::File),
        3 => path().prop_map(Op::Dir),
        4 => (target(), path()).prop_map(|(t, p)| Op::Symlink(t, p)),
        4 => (path(), any::<bool>()).prop_map(|(p, d)| Op::Remove(p, d)),
        2 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (path(), 0..OUT_MAX, 0..3_000usize).prop_map(|(p, o, n)| Op::Write(p, o, n)),
        1 => (path(), 0..OUT_MAX).prop_map(|(p, n)| Op::Truncate(p, n)),
        2 => (path(), any::<bool>()).prop_map(|(p, f)| Op::Resolve(p, f)),
        1 => (path(), 0..8u64).prop_map(|(p, c)| Op::List(p, c)),
        2 => path().prop_map(Op::Open),
        2 => (0..8usize).prop_map(Op::Close),
        2 => (0..8usize).prop_map(Op::ListHeld),
    ]
}

/// The most steps one operation may take: every symlink hop walks at most a whole path.
const MAX_WORK: u64 = ((MAX_SYMLINK_HOPS + 2) * (MAX_PATH_BYTES / 2 + 2)) as u64 * 2;

fn fresh(budget: u64) -> Vfs {
    let input: Arc<[u8]> = Arc::from(&b"input"[..]);
    let declared = BTreeMap::from([("result.bin".to_string(), OUT_MAX)]);
    let mut vfs = Vfs::new([("in.txt".to_string(), input)], declared, 7);
    vfs.meta_budget = budget;
    vfs
}

/// Applies `op` in `/out` as the WASI layer would; `held` are nodes a descriptor holds.
/// Returns whether the op ran out of host budget.
fn apply(vfs: &mut Vfs, held: &mut Vec<NodeId>, op: &Op) -> bool {
    let budget = |r: Result<(), WriteError>| matches!(r, Err(WriteError::Budget(_)));
    let parent = |vfs: &Vfs, p: &str| match vfs.resolve_parent(OUT_ROOT, p) {
        Ok((dir, Some(name))) => Some((dir, name)),
        _ => None,
    };
    match op {
        Op::File(p) => parent(vfs, p).is_some_and(|(d, n)| {
            vfs.lookup(d, &n).is_none() && budget(vfs.create_file(d, &n).map(|_| ()))
        }),
        Op::Dir(p) => parent(vfs, p).is_some_and(|(d, n)| budget(vfs.create_dir(d, &n))),
        Op::Symlink(t, p) => {
            parent(vfs, p).is_some_and(|(d, n)| budget(vfs.create_symlink(d, &n, t)))
        }
        Op::Remove(p, want_dir) => {
            if let Some((d, n)) = parent(vfs, p) {
                let _ = vfs.remove(d, &n, *want_dir);
            }
            false
        }
        Op::Rename(a, b) => match (parent(vfs, a), parent(vfs, b)) {
            (Some((da, na)), Some((db, nb))) => budget(vfs.rename(da, &na, db, &nb)),
            _ => false,
        },
        Op::Write(p, at, n) => {
            if let Ok(id) = vfs.resolve(OUT_ROOT, p, true) {
                let _ = vfs.write(id, *at, &[&vec![1u8; *n]]);
            }
            false
        }
        Op::Truncate(p, len) => {
            if let Ok(id) = vfs.resolve(OUT_ROOT, p, true) {
                let _ = vfs.set_size(id, *len);
            }
            false
        }
        Op::Resolve(p, follow) => {
            let _ = vfs.resolve(OUT_ROOT, p, *follow);
            false
        }
        Op::List(p, skip) => {
            if let Ok(id) = vfs.resolve(OUT_ROOT, p, true)
                && let Ok(entries) = vfs.list(id, *skip)
            {
                entries.for_each(drop);
            }
            false
        }
        Op::Open(p) => {
            if let Ok(id) = vfs.resolve(OUT_ROOT, p, true) {
                vfs.node_mut(id).open += 1;
                held.push(id);
            }
            false
        }
        Op::ListHeld(i) => {
            if let Some(&id) = held.get(*i)
                && let Ok(entries) = vfs.list(id, 0)
            {
                for (_, _, entry) in entries {
                    vfs.node(entry);
                }
            }
            false
        }
        Op::Close(i) => {
            if *i < held.len() {
                let id = held.remove(*i);
                vfs.node_mut(id).open -= 1;
                vfs.release_if_dead(id);
            }
            false
        }
    }
}

/// Every node reachable from a root or held by a descriptor.
fn live(vfs: &Vfs, held: &[NodeId]) -> BTreeSet<NodeId> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<NodeId> = [IN_ROOT, OUT_ROOT]
        .into_iter()
        .chain(held.iter().copied())
        .collect();
    while let Some(id) = todo.pop() {
        if seen.insert(id)
            && let Kind::Dir { entries, .. } = &vfs.node(id).kind
        {
            todo.extend(entries.values().copied());
        }
    }
    seen
}

/// What the guest's nodes and names hold, counted from scratch.
fn recount(vfs: &Vfs) -> (u64, u64) {
    let (mut meta, mut out) = (0, 0);
    for (id, node) in &vfs.nodes {
        if !node.writable {
            continue;
        }
        if *id != OUT_ROOT {
            meta += node.meta_bytes();
        }
        match &node.kind {
            Kind::Dir { entries, .. } => {
                meta += entries.keys().map(|n| n.len() as u64).sum::<u64>()
            }
            Kind::File { data, .. } => out += data.len(),
            Kind::Symlink { .. } => {}
        }
    }
    (meta, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_host_budget_holds_and_freed_nodes_are_gone(
        ops in prop::collection::vec(op(), 1..120),
        budget in prop::sample::select(vec![3_000u64, 20_000, META_BUDGET]),
    ) {
        let mut vfs = fresh(budget);
        let mut held = Vec::new();
        for op in &ops {
            let before = (vfs.meta_bytes, vfs.nodes.len(), vfs.out_nodes);
            let over = apply(&mut vfs, &mut held, op);
            let work = vfs.take_work();
            prop_assert!(work <= MAX_WORK, "{op:?} took {work} steps");
            prop_assert!(vfs.meta_bytes <= vfs.meta_budget, "{op:?}: {} bytes", vfs.meta_bytes);
            prop_assert_eq!(recount(&vfs), (vfs.meta_bytes, vfs.out_bytes), "after {:?}", op);
            prop_assert!(vfs.out_bytes <= OUT_MAX);
            prop_assert!(vfs.peak_bytes() <= vfs.meta_budget + OUT_MAX);
            let live = live(&vfs, &held);
            prop_assert_eq!(live.len(), vfs.nodes.len(), "after {:?}", op);
            if over {
                // A change refused for the budget changed nothing.
                prop_assert_eq!(before, (vfs.meta_bytes, vfs.nodes.len(), vfs.out_nodes));
            }
        }
        // Closing every descriptor and removing every entry gives everything back.
        for id in held.drain(..) {
            vfs.node_mut(id).open -= 1;
            vfs.release_if_dead(id);
        }
        empty(&mut vfs, OUT_ROOT);
        prop_assert_eq!(vfs.nodes.len(), 3);
        prop_assert_eq!((vfs.meta_bytes, vfs.out_bytes, vfs.out_nodes), (0, 0, 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// What a checkpoint carries of `/out` is put back as it was, whatever the guest made.
    #[test]
    fn any_out_tree_saved_is_put_back_as_it_was(
        ops in prop::collection::vec(op(), 1..80),
        budget in prop::sample::select(vec![3_000u64, META_BUDGET]),
    ) {
        let mut vfs = fresh(budget);
        let mut held = Vec::new();
        for op in &ops {
            apply(&mut vfs, &mut held, op);
        }
        let saved = vfs.save_out().unwrap();
        let mut again = fresh(budget);
        again.add_ckpt(16);
        again.restore(&saved, b"state").unwrap();
        prop_assert_eq!(again.save_out().unwrap(), saved);
        prop_assert_eq!(again.ckpt_state().unwrap(), Some(b"state".to_vec()));
    }
}

#[test]
fn ckpt_holds_its_two_files_and_nothing_else() {
    let mut vfs = fresh(META_BUDGET);
    let root = vfs.add_ckpt(4);
    fn errno<T>(r: Result<T, WriteError>) -> Option<Errno> {
        match r {
            Err(WriteError::Errno(e)) => Some(e),
            _ => None,
        }
    }
    assert_eq!(
        errno(vfs.create_file(root, "other")),
        Some(Errno::Notcapable)
    );
    assert_eq!(
        errno(vfs.create_dir(root, CKPT_NEXT)),
        Some(Errno::Notcapable)
    );
    assert_eq!(
        errno(vfs.create_symlink(root, CKPT_STATE, "x")),
        Some(Errno::Notcapable)
    );
    assert!(vfs.create_dir(OUT_ROOT, "d").is_ok());
    assert_eq!(
        errno(vfs.rename(OUT_ROOT, "d", root, CKPT_STATE)),
        Some(Errno::Notcapable)
    );
    let Ok(next) = vfs.create_file(root, CKPT_NEXT) else {
        panic!("/ckpt/next cannot be made")
    };
    assert!(matches!(
        vfs.write(next, 0, &[b"12345"]),
        Err(WriteError::Overflow(_))
    ));
    assert!(vfs.write(next, 0, &[b"1234"]).is_ok());
    assert!(!vfs.is_ckpt_state(root, CKPT_NEXT));
    assert!(vfs.rename(root, CKPT_NEXT, root, CKPT_STATE).is_ok());
    assert!(vfs.is_ckpt_state(root, CKPT_STATE));
    assert_eq!(vfs.ckpt_state().unwrap(), Some(b"1234".to_vec()));
}

fn empty(vfs: &mut Vfs, dir: NodeId) {
    let names: Vec<(String, NodeId)> = match &vfs.node(dir).kind {
        Kind::Dir { entries, .. } => entries.iter().map(|(n, id)| (n.clone(), *id)).collect(),
        _ => return,
    };
    for (name, id) in names {
        let is_dir = matches!(vfs.node(id).kind, Kind::Dir { .. });
        if is_dir {
            empty(vfs, id);
        }
        vfs.remove(dir, &name, is_dir)
            .expect("an emptied entry is removed");
    }
}

#[test]
fn a_symlink_chain_is_cut_after_the_hops_of_one_lookup() {
    let mut vfs = fresh(META_BUDGET);
    // `l` names its own directory, so every step of `l/l/l/...` follows a symlink: a lookup
    // that counted hops per level would walk 2048 symlinks here (and each hop's target
    // could be another such path).
    assert!(vfs.create_symlink(OUT_ROOT, "l", ".").is_ok());
    let path = "l/".repeat(MAX_PATH_BYTES / 2);
    assert_eq!(vfs.resolve(OUT_ROOT, &path, true), Err(Errno::Loop));
    assert!(vfs.take_work() <= (MAX_SYMLINK_HOPS as u64 + 2) * 2);
    let most = "l/".repeat(MAX_SYMLINK_HOPS - 1) + "l";
    assert_eq!(vfs.resolve(OUT_ROOT, &most, true), Ok(OUT_ROOT));
}

#[test]
fn create_and_unlink_churn_holds_nothing() {
    let mut vfs = fresh(META_BUDGET);
    let target = "t".repeat(MAX_PATH_BYTES);
    for _ in 0..10_000 {
        assert!(vfs.create_symlink(OUT_ROOT, "s", &target).is_ok());
        vfs.remove(OUT_ROOT, "s", false).unwrap();
        assert!(vfs.create_dir(OUT_ROOT, "d").is_ok());
        vfs.remove(OUT_ROOT, "d", true).unwrap();
    }
    assert_eq!((vfs.nodes.len(), vfs.meta_bytes), (3, 0));
    assert_eq!(vfs.next, 3 + 20_000, "inode numbers are never reused");
}

#[test]
fn an_open_unlinked_directory_lists_without_its_freed_parent() {
    let mut vfs = fresh(META_BUDGET);
    assert!(vfs.create_dir(OUT_ROOT, "a").is_ok());
    let a = vfs.lookup(OUT_ROOT, "a").unwrap();
    assert!(vfs.create_dir(a, "b").is_ok());
    let b = vfs.lookup(a, "b").unwrap();
    vfs.node_mut(b).open += 1;
    vfs.remove(a, "b", true).unwrap();
    vfs.remove(OUT_ROOT, "a", true).unwrap();
    assert!(!vfs.nodes.contains_key(&a), "a is freed");
    let listed: Vec<(String, NodeId)> = vfs
        .list(b, 0)
        .unwrap()
        .map(|(_, n, id)| (n.to_string(), id))
        .collect();
    assert_eq!(listed, [(".".to_string(), b), ("..".to_string(), b)]);
    for (_, id) in listed {
        vfs.node(id);
    }
    assert_eq!(vfs.resolve(b, "..", true), Err(Errno::Noent));
    assert_eq!(
        vfs.create_dir(b, "c")
            .err()
            .map(|e| matches!(e, WriteError::Errno(Errno::Noent))),
        Some(true)
    );
}
