//! The guest's file system: `/in` (read-only, the verified inputs) and `/out` (the only
//! writable place), held in memory by the runner.
//!
//! Everything the guest can observe is a function of the task alone: entries list in name
//! order, inode numbers count up in creation order, every time stamp is the fixed instant of
//! the virtual clock unless the guest set it, link counts are 1. Nothing here touches the
//! host's file system, so no path, symlink or `..` can lead out of the sandbox, and every byte
//! written to `/out` is counted against the declared outputs' `max_bytes` as it is written.
//!
//! Host memory is bounded too. File contents draw on the declared outputs' `max_bytes`; the
//! rest the guest makes the host hold (nodes, names, symlink targets) draws on a fixed
//! [`META_BUDGET`] and is given back when the node is freed, which happens as soon as it is
//! unlinked and no descriptor holds it. Paths and symlink targets are at most
//! [`MAX_PATH_BYTES`], one lookup follows at most [`MAX_SYMLINK_HOPS`] symlinks in all, and
//! every step of a lookup or a listing is counted in [`Vfs::take_work`], which the caller
//! prices in fuel.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use crate::errno::Errno;

mod data;
mod saved;

pub use data::{Data, SPILL_BYTES};
pub use saved::{SavedKind, SavedNode};

/// A node's identity: they count up from 0 in creation order and are never reused.
pub type NodeId = usize;

/// The root of `/in`.
pub const IN_ROOT: NodeId = 0;
/// The root of `/out`.
pub const OUT_ROOT: NodeId = 1;

/// How many symlinks one path lookup may follow, in all.
pub const MAX_SYMLINK_HOPS: usize = 32;
/// The longest name of one directory entry.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest path a guest may pass, and the longest symlink target it may make.
pub const MAX_PATH_BYTES: usize = 4096;
/// The most nodes the guest may have in `/out` at once.
pub const MAX_OUT_NODES: usize = 4096;
/// Host bytes the guest's nodes, names and symlink targets may hold together.
pub const META_BUDGET: u64 = 4 << 20;
/// What one node costs the host beyond its name and target: the node, its map slots.
pub const NODE_BYTES: u64 = 160;

#[derive(Debug)]
pub enum Kind {
    Dir {
        entries: BTreeMap<String, NodeId>,
        /// `None` for a root: `..` at a root is refused.
        parent: Option<NodeId>,
    },
    File {
        data: Data,
        /// The `max_bytes` of the declared output this file is, if it is one.
        limit: Option<(String, u64)>,
    },
    Symlink {
        target: String,
    },
}

#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    pub writable: bool,
    pub times: [u64; 2],
    /// Open descriptors, so that an unlinked file lives until its last close.
    pub open: u32,
    pub linked: bool,
}

impl Node {
    pub fn ino(id: NodeId) -> u64 {
        id as u64 + 1
    }

    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::Dir { entries, .. } => entries.len() as u64,
            Kind::File { data, .. } => data.len(),
            Kind::Symlink { target } => target.len() as u64,
        }
    }

    /// The host bytes this node holds beyond its contents and its name.
    fn meta_bytes(&self) -> u64 {
        NODE_BYTES
            + match &self.kind {
                Kind::Symlink { target } => target.len() as u64,
                _ => 0,
            }
    }
}

/// Why a write to `/out` ends the task: it broke the output contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputOverflow(pub String);

/// The result of a change that may overflow a declared output or the host budget.
pub enum WriteError {
    Errno(Errno),
    Overflow(OutputOverflow),
    /// The guest would make the host hold more than [`META_BUDGET`]: the task ends with
    /// `memory_limit`.
    Budget(String),
    /// The runner could not write its spill file (a fault of the machine, not the task).
    Io(io::Error),
}

impl From<Errno> for WriteError {
    fn from(e: Errno) -> Self {
        WriteError::Errno(e)
    }
}

/// The in-memory file system of one task.
pub struct Vfs {
    /// Live nodes by id (a B-tree: most tasks hold a handful, where it is a short scan).
    nodes: BTreeMap<NodeId, Node>,
    next: NodeId,
    /// Declared outputs: name → max_bytes.
    declared: BTreeMap<String, u64>,
    /// Bytes held by files in `/out`, and the most they may hold together.
    out_bytes: u64,
    out_budget: u64,
    out_nodes: usize,
    /// Host bytes held by the guest's nodes, names and symlink targets, and the most they may
    /// hold ([`META_BUDGET`]).
    meta_bytes: u64,
    meta_budget: u64,
    /// The most `meta_bytes + out_bytes` has been.
    peak: u64,
    /// Lookup steps and listed entries since [`Vfs::take_work`] last ran.
    work: Cell<u64>,
    epoch_ns: u64,
    /// The root of `/ckpt` and the most bytes each of its two files may hold, in a task that
    /// may checkpoint.
    ckpt: Option<(NodeId, u64)>,
}

impl Vfs {
    /// A file system with `inputs` in `/in` and an empty `/out` whose files may hold at most
    /// the `declared` outputs' bytes. `epoch_ns` is the fixed time stamp of every node.
    pub fn new(
        inputs: impl IntoIterator<Item = (String, Arc<[u8]>)>,
        declared: BTreeMap<String, u64>,
        epoch_ns: u64,
    ) -> Self {
        let dir = |parent| Kind::Dir {
            entries: BTreeMap::new(),
            parent,
        };
        let mut vfs = Vfs {
            nodes: BTreeMap::new(),
            next: 0,
            out_budget: declared.values().copied().fold(0u64, u64::saturating_add),
            declared,
            out_bytes: 0,
            out_nodes: 0,
            meta_bytes: 0,
            meta_budget: META_BUDGET,
            peak: 0,
            work: Cell::new(0),
            epoch_ns,
            ckpt: None,
        };
        vfs.push(dir(None), false);
        vfs.push(dir(None), true);
        // Staged in name order, so inode numbers never depend on the manifest's order.
        let inputs: BTreeMap<String, Arc<[u8]>> = inputs.into_iter().collect();
        for (name, bytes) in inputs {
            let id = vfs.push(
                Kind::File {
                    data: Data::Shared(bytes),
                    limit: None,
                },
                false,
            );
            vfs.dir_entries_mut(IN_ROOT).insert(name, id);
        }
        vfs
    }

    fn push(&mut self, kind: Kind, writable: bool) -> NodeId {
        let id = self.next;
        self.next += 1;
        let node = Node {
            kind,
            writable,
            times: [self.epoch_ns; 2],
            open: 0,
            linked: true,
        };
        self.nodes.insert(id, node);
        id
    }

    /// A live node: one that a directory entry or a descriptor holds.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("a live node")
    }

    /// Lookup steps and listed entries since the last call, for the caller to price.
    pub fn take_work(&self) -> u64 {
        self.work.replace(0)
    }

    fn count_work(&self) {
        self.work.set(self.work.get() + 1);
    }

    /// Takes `bytes` from the host budget, or says that the task is out of it.
    fn draw(&mut self, bytes: u64) -> Result<(), WriteError> {
        if self.meta_bytes + bytes > self.meta_budget {
            return Err(WriteError::Budget(format!(
                "the guest's files, names and symlinks would hold more than the {} bytes of host memory a task may use for them",
                self.meta_budget
            )));
        }
        self.meta_bytes += bytes;
        self.note_peak();
        Ok(())
    }

    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.meta_bytes + self.out_bytes);
    }

    /// The most host memory the guest's files, nodes, names and targets have held at once.
    pub fn peak_bytes(&self) -> u64 {
        self.peak
    }

    fn dir_entries_mut(&mut self, id: NodeId) -> &mut BTreeMap<String, NodeId> {
        match &mut self.node_mut(id).kind {
            Kind::Dir { entries, .. } => entries,
            _ => unreachable!("node {id} is not a directory"),
        }
    }

    /// The entries of a directory as the guest lists them: `.`, `..`, then names in order,
    /// each with its position (the cookie of the entry after it), from position `skip`.
    /// Every entry passed over or yielded counts as work.
    pub fn list(
        &self,
        dir: NodeId,
        skip: u64,
    ) -> Result<impl Iterator<Item = (u64, &str, NodeId)>, Errno> {
        let Kind::Dir { entries, .. } = &self.node(dir).kind else {
            return Err(Errno::Notdir);
        };
        // A root's `..` is itself, and so is an unlinked directory's (its old parent may be
        // freed): where `parent` finds none.
        let dots = [(".", dir), ("..", self.parent(dir).unwrap_or(dir))];
        let all = dots
            .into_iter()
            .chain(entries.iter().map(|(n, id)| (n.as_str(), *id)));
        Ok(all
            .zip(1u64..)
            .inspect(|_| self.count_work())
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .map(|((name, id), next)| (next, name, id)))
    }

    /// Looks `path` up from directory `start`. `follow` says whether a symlink in the last
    /// step is followed. Absolute paths, `..` above a root and symlinks that lead out are
    /// refused with `NOTCAPABLE`.
    pub fn resolve(&self, start: NodeId, path: &str, follow: bool) -> Result<NodeId, Errno> {
        let mut hops = 0;
        let (parent, last) = self.walk(start, path, &mut hops)?;
        match last {
            None => Ok(parent),
            Some(name) => self.step(parent, &name, follow, &mut hops),
        }
    }

    /// Looks up everything but the last step of `path`; returns the directory and the last
    /// name (`None` when the path ends in `.` or `..`, or is `.`).
    pub fn resolve_parent(
        &self,
        start: NodeId,
        path: &str,
    ) -> Result<(NodeId, Option<String>), Errno> {
        self.walk(start, path, &mut 0)
    }

    /// `hops` counts the symlinks followed by the whole lookup, so that no nesting of
    /// symlinks makes one lookup do more than [`MAX_SYMLINK_HOPS`] walks.
    fn walk(
        &self,
        start: NodeId,
        path: &str,
        hops: &mut usize,
    ) -> Result<(NodeId, Option<String>), Errno> {
        if path.is_empty() {
            return Err(Errno::Noent);
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(Errno::Nametoolong);
        }
        if path.starts_with('/') {
            return Err(Errno::Notcapable);
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
        let mut dir = start;
        while let Some(part) = parts.next() {
            self.count_work();
            let last = parts.peek().is_none();
            if part.len() > MAX_NAME_BYTES {
                return Err(Errno::Nametoolong);
            }
            match part {
                "." => {}
                ".." => dir = self.parent(dir)?,
                name if last => {
                    // A trailing slash means the last step must be a directory.
                    if path.ends_with('/') {
                        let id = self.step(dir, name, true, hops)?;
                        if !matches!(self.node(id).kind, Kind::Dir { .. }) {
                            return Err(Errno::Notdir);
                        }
                    }
                    return Ok((dir, Some(name.to_string())));
                }
                name => {
                    let id = self.step(dir, name, true, hops)?;
                    if !matches!(self.node(id).kind, Kind::Dir { .. }) {
                        return Err(Errno::Notdir);
                    }
                    dir = id;
                }
            }
        }
        Ok((dir, None))
    }

    /// The parent of `dir`. An unlinked directory has none: its old parent may be gone.
    fn parent(&self, dir: NodeId) -> Result<NodeId, Errno> {
        let node = self.node(dir);
        match &node.kind {
            Kind::Dir { .. } if !node.linked => Err(Errno::Noent),
            Kind::Dir {
                parent: Some(p), ..
            } => Ok(*p),
            Kind::Dir { parent: None, .. } => Err(Errno::Notcapable),
            _ => Err(Errno::Notdir),
        }
    }

    /// One step: `name` in `dir`, following a symlink if asked.
    fn step(
        &self,
        dir: NodeId,
        name: &str,
        follow: bool,
        hops: &mut usize,
    ) -> Result<NodeId, Errno> {
        let Kind::Dir { entries, .. } = &self.node(dir).kind else {
            return Err(Errno::Notdir);
        };
        let id = *entries.get(name).ok_or(Errno::Noent)?;
        match &self.node(id).kind {
            Kind::Symlink { target } if follow => {
                if *hops >= MAX_SYMLINK_HOPS {
                    return Err(Errno::Loop);
                }
                *hops += 1;
                let (parent, last) = self.walk(dir, target, hops)?;
                match last {
                    None => Ok(parent),
                    Some(n) => self.step(parent, &n, true, hops),
                }
            }
            _ => Ok(id),
        }
    }

    /// Checks that `name` may be made in `dir`.
    fn check_new_name(&self, dir: NodeId, name: &str) -> Result<(), Errno> {
        let node = self.node(dir);
        if !node.writable {
            return Err(Errno::Rofs);
        }
        if !node.linked {
            return Err(Errno::Noent);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(Errno::Nametoolong);
        }
        if self.out_nodes >= MAX_OUT_NODES {
            return Err(Errno::Nospc);
        }
        self.check_ckpt_name(dir, name)
    }

    /// Draws what a new node named `name` costs the host (`extra`: a symlink's target).
    fn draw_node(&mut self, name: &str, extra: u64) -> Result<(), WriteError> {
        self.draw(NODE_BYTES + name.len() as u64 + extra)?;
        self.out_nodes += 1;
        Ok(())
    }

    /// Links a new node `id` as `name` in `dir`.
    fn link(&mut self, dir: NodeId, name: &str, kind: Kind) -> NodeId {
        let id = self.push(kind, true);
        self.dir_entries_mut(dir).insert(name.to_string(), id);
        id
    }

    fn limit_for(&self, dir: NodeId, name: &str) -> Option<(String, u64)> {
        if let Some((root, max)) = self.ckpt
            && dir == root
        {
            return Some((format!("/ckpt/{name}"), max));
        }
        if dir != OUT_ROOT {
            return None;
        }
        self.declared.get(name).map(|max| (name.to_string(), *max))
    }

    /// Creates an empty file `name` in `dir`.
    pub fn create_file(&mut self, dir: NodeId, name: &str) -> Result<NodeId, WriteError> {
        self.check_new_name(dir, name)?;
        self.draw_node(name, 0)?;
        let limit = self.limit_for(dir, name);
        let data = Data::Owned(Vec::new());
        Ok(self.link(dir, name, Kind::File { data, limit }))
    }

    /// Creates an empty directory `name` in `dir`.
    pub fn create_dir(&mut self, dir: NodeId, name: &str) -> Result<(), WriteError> {
        self.check_new_name(dir, name)?;
        self.check_ckpt_file(dir)?;
        if self.lookup(dir, name).is_some() {
            return Err(Errno::Exist.into());
        }
        self.draw_node(name, 0)?;
        let entries = BTreeMap::new();
        let parent = Some(dir);
        self.link(dir, name, Kind::Dir { entries, parent });
        Ok(())
    }

    /// Creates a symlink `name` in `dir` pointing at `target` (which is only ever followed
    /// inside the sandbox).
    pub fn create_symlink(
        &mut self,
        dir: NodeId,
        name: &str,
        target: &str,
    ) -> Result<(), WriteError> {
        self.check_new_name(dir, name)?;
        self.check_ckpt_file(dir)?;
        if self.lookup(dir, name).is_some() {
            return Err(Errno::Exist.into());
        }
        if target.is_empty() {
            return Err(Errno::Noent.into());
        }
        if target.len() > MAX_PATH_BYTES {
            return Err(Errno::Nametoolong.into());
        }
        self.draw_node(name, target.len() as u64)?;
        let target = target.to_string();
        self.link(dir, name, Kind::Symlink { target });
        Ok(())
    }

    /// The entry `name` of directory `dir`, not following symlinks.
    pub fn lookup(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        match &self.node(dir).kind {
            Kind::Dir { entries, .. } => entries.get(name).copied(),
            _ => None,
        }
    }

    /// Removes the entry `name` from `dir`; `want_dir` says whether it must be an (empty)
    /// directory or must not be a directory.
    pub fn remove(&mut self, dir: NodeId, name: &str, want_dir: bool) -> Result<(), Errno> {
        if !self.node(dir).writable {
            return Err(Errno::Rofs);
        }
        let id = self.lookup(dir, name).ok_or(Errno::Noent)?;
        match (&self.node(id).kind, want_dir) {
            (Kind::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(Errno::Notempty);
            }
            (Kind::Dir { .. }, true) => {}
            (Kind::Dir { .. }, false) => return Err(Errno::Isdir),
            (_, true) => return Err(Errno::Notdir),
            (_, false) => {}
        }
        self.unlink(dir, name);
        Ok(())
    }

    /// Takes the entry `name` out of `dir`, giving back what the name held, and frees its
    /// node if no descriptor holds it.
    fn unlink(&mut self, dir: NodeId, name: &str) {
        let id = self
            .dir_entries_mut(dir)
            .remove(name)
            .expect("the entry exists");
        self.meta_bytes -= name.len() as u64;
        self.out_nodes -= 1;
        self.node_mut(id).linked = false;
        self.release_if_dead(id);
    }

    /// Frees an unlinked node once no descriptor holds it: its bytes, and what it drew from
    /// the host budget.
    pub fn release_if_dead(&mut self, id: NodeId) {
        let node = self.node(id);
        if node.linked || node.open > 0 {
            return;
        }
        let node = self.nodes.remove(&id).expect("a live node");
        self.meta_bytes -= node.meta_bytes();
        if let Kind::File { data, .. } = &node.kind
            && node.writable
        {
            self.out_bytes -= data.len();
        }
    }

    /// Moves `old_dir/old` to `new_dir/new`, replacing a compatible target.
    pub fn rename(
        &mut self,
        old_dir: NodeId,
        old: &str,
        new_dir: NodeId,
        new: &str,
    ) -> Result<(), WriteError> {
        if !self.node(old_dir).writable || !self.node(new_dir).writable {
            return Err(Errno::Rofs.into());
        }
        if !self.node(new_dir).linked {
            return Err(Errno::Noent.into());
        }
        if new.len() > MAX_NAME_BYTES {
            return Err(Errno::Nametoolong.into());
        }
        let id = self.lookup(old_dir, old).ok_or(Errno::Noent)?;
        self.check_ckpt_name(new_dir, new)?;
        if !matches!(self.node(id).kind, Kind::File { .. }) {
            self.check_ckpt_file(new_dir)?;
        }
        let is_dir = matches!(self.node(id).kind, Kind::Dir { .. });
        if is_dir {
            // A directory may not move into itself.
            let mut d = new_dir;
            loop {
                self.count_work();
                if d == id {
                    return Err(Errno::Inval.into());
                }
                match self.parent(d) {
                    Ok(p) => d = p,
                    Err(_) => break,
                }
            }
        }
        let existing = self.lookup(new_dir, new);
        if let Some(existing) = existing {
            if existing == id {
                return Ok(());
            }
            match (&self.node(existing).kind, is_dir) {
                (Kind::Dir { entries, .. }, true) if !entries.is_empty() => {
                    return Err(Errno::Notempty.into());
                }
                (Kind::Dir { .. }, false) => return Err(Errno::Isdir.into()),
                (_, true) if !matches!(self.node(existing).kind, Kind::Dir { .. }) => {
                    return Err(Errno::Notdir.into());
                }
                _ => {}
            }
        }
        let limit = self.limit_for(new_dir, new);
        if let (Kind::File { data, .. }, Some((name, max))) = (&self.node(id).kind, &limit)
            && data.len() > *max
        {
            return Err(WriteError::Overflow(overflow(name, *max)));
        }
        // The new name is drawn before anything changes; the old one and any replaced entry
        // are given back below.
        self.draw(new.len() as u64)?;
        if existing.is_some() {
            self.unlink(new_dir, new);
        }
        self.dir_entries_mut(old_dir).remove(old);
        self.meta_bytes -= old.len() as u64;
        self.dir_entries_mut(new_dir).insert(new.to_string(), id);
        match &mut self.node_mut(id).kind {
            Kind::File { limit: l, .. } => *l = limit,
            Kind::Dir { parent, .. } => *parent = Some(new_dir),
            Kind::Symlink { .. } => {}
        }
        Ok(())
    }

    /// Writes `bufs` into file `id` at `offset`, growing it as needed, within the output
    /// limits. Returns the bytes written.
    pub fn write(&mut self, id: NodeId, offset: u64, bufs: &[&[u8]]) -> Result<u64, WriteError> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let end = offset.checked_add(total).ok_or(Errno::Fbig)?;
        self.reserve(id, end)?;
        let Kind::File { data, .. } = &mut self.node_mut(id).kind else {
            return Err(Errno::Badf.into());
        };
        data.write_at(offset, bufs).map_err(WriteError::Io)?;
        Ok(total)
    }

    /// Sets file `id`'s size to `len`, within the output limits.
    pub fn set_size(&mut self, id: NodeId, len: u64) -> Result<(), WriteError> {
        let current = self.node(id).size();
        if len > current {
            self.reserve(id, len)
        } else {
            let node = self.node_mut(id);
            if !node.writable {
                return Err(Errno::Badf.into());
            }
            let Kind::File { data, .. } = &mut node.kind else {
                return Err(Errno::Badf.into());
            };
            data.resize(len).map_err(WriteError::Io)?;
            self.out_bytes -= current - len;
            Ok(())
        }
    }

    /// Makes file `id` at least `len` bytes long (zero-filled), or says which limit that
    /// would break.
    fn reserve(&mut self, id: NodeId, len: u64) -> Result<(), WriteError> {
        let (out_bytes, out_budget) = (self.out_bytes, self.out_budget);
        let node = self.node_mut(id);
        if !node.writable {
            return Err(Errno::Badf.into());
        }
        let Kind::File { data, limit } = &mut node.kind else {
            return Err(Errno::Badf.into());
        };
        let current = data.len();
        if len <= current {
            return Ok(());
        }
        if let Some((name, max)) = limit
            && len > *max
        {
            return Err(WriteError::Overflow(overflow(name, *max)));
        }
        let grow = len - current;
        if out_bytes + grow > out_budget {
            return Err(WriteError::Overflow(OutputOverflow(format!(
                "the files in /out would hold more than the {out_budget} bytes the declared outputs allow together"
            ))));
        }
        data.resize(len).map_err(WriteError::Io)?;
        self.out_bytes += grow;
        self.note_peak();
        Ok(())
    }

    /// What `/out` holds at the end of the run: every entry, in name order.
    pub fn into_out_entries(mut self) -> Vec<(String, Kind)> {
        let entries = match &self.node(OUT_ROOT).kind {
            Kind::Dir { entries, .. } => entries.clone(),
            _ => unreachable!("/out is a directory"),
        };
        entries
            .into_iter()
            .map(|(name, id)| {
                let node = self.nodes.remove(&id).expect("each node has one name");
                (name, node.kind)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

fn overflow(name: &str, max: u64) -> OutputOverflow {
    OutputOverflow(format!(
        "output {name:?} would grow past its max_bytes ({max})"
    ))
}
