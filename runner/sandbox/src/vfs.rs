//! The guest's file system: `/in` (read-only, the verified inputs) and `/out` (the only
//! writable place), held in memory by the runner.
//!
//! Everything the guest can observe is a function of the task alone: entries list in name
//! order, inode numbers count up in creation order, every time stamp is the fixed instant of
//! the virtual clock unless the guest set it, link counts are 1. Nothing here touches the
//! host's file system, so no path, symlink or `..` can lead out of the sandbox, and every byte
//! written to `/out` is counted against the declared outputs' `max_bytes` as it is written.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::errno::Errno;

/// Index of a node in [`Vfs::nodes`].
pub type NodeId = usize;

/// The root of `/in`.
pub const IN_ROOT: NodeId = 0;
/// The root of `/out`.
pub const OUT_ROOT: NodeId = 1;

/// How many symlinks one path lookup may follow.
const MAX_SYMLINK_HOPS: usize = 32;
/// The longest name of one directory entry.
const MAX_NAME_BYTES: usize = 255;
/// The most nodes the guest may create in `/out`.
const MAX_OUT_NODES: usize = 4096;

/// A file the guest writes moves from memory to disk once it grows past this many bytes.
pub const SPILL_BYTES: u64 = 8 << 20;

/// What a file holds.
#[derive(Debug)]
pub enum Data {
    /// An input: verified bytes shared with the runner, never written.
    Shared(Arc<[u8]>),
    /// A file the guest writes, in memory.
    Owned(Vec<u8>),
    /// A file the guest writes that outgrew [`SPILL_BYTES`]: an unlinked temporary file,
    /// so nothing is left on disk whatever happens to the runner.
    Spilled { file: File, len: u64 },
}

impl Data {
    pub fn len(&self) -> u64 {
        match self {
            Data::Shared(b) => b.len() as u64,
            Data::Owned(v) => v.len() as u64,
            Data::Spilled { len, .. } => *len,
        }
    }

    /// Up to `max` bytes from `offset` (fewer at the end of the file).
    pub fn read_at(&self, offset: u64, max: usize) -> io::Result<Cow<'_, [u8]>> {
        let len = self.len();
        let n = (len.saturating_sub(offset)).min(max as u64) as usize;
        Ok(match self {
            Data::Shared(b) => Cow::Borrowed(&b[offset.min(len) as usize..][..n]),
            Data::Owned(v) => Cow::Borrowed(&v[offset.min(len) as usize..][..n]),
            Data::Spilled { file, .. } => {
                let mut buf = vec![0u8; n];
                file.read_exact_at(&mut buf, offset)?;
                Cow::Owned(buf)
            }
        })
    }

    /// Writes `bufs` at `offset`; the file must already be long enough.
    fn write_at(&mut self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        let mut at = offset;
        for b in bufs {
            match self {
                Data::Owned(v) => v[at as usize..][..b.len()].copy_from_slice(b),
                Data::Spilled { file, .. } => file.write_all_at(b, at)?,
                Data::Shared(_) => return Err(io::Error::other("inputs are read-only")),
            }
            at += b.len() as u64;
        }
        Ok(())
    }

    /// Sets the length to `len` (zero-filled when growing), moving to disk past
    /// [`SPILL_BYTES`].
    fn resize(&mut self, len: u64) -> io::Result<()> {
        if let Data::Owned(v) = self
            && len > SPILL_BYTES
        {
            let file = tempfile::tempfile()?;
            file.write_all_at(v, 0)?;
            *self = Data::Spilled {
                file,
                len: v.len() as u64,
            };
        }
        match self {
            Data::Owned(v) => v.resize(len as usize, 0),
            Data::Spilled { file, len: l } => {
                file.set_len(len)?;
                *l = len;
            }
            Data::Shared(_) => return Err(io::Error::other("inputs are read-only")),
        }
        Ok(())
    }

    /// Feeds every byte to `sink`, in order, a block at a time.
    pub fn for_each_block(&self, mut sink: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        const BLOCK: usize = 1 << 16;
        let mut at = 0;
        while at < self.len() {
            let block = self.read_at(at, BLOCK)?;
            sink(&block)?;
            at += block.len() as u64;
        }
        Ok(())
    }
}

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
}

/// Why a write to `/out` ends the task: it broke the output contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputOverflow(pub String);

/// The result of a write that may overflow a declared output.
pub enum WriteError {
    Errno(Errno),
    Overflow(OutputOverflow),
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
    nodes: Vec<Node>,
    /// Declared outputs: name → max_bytes.
    declared: BTreeMap<String, u64>,
    /// Bytes held by files in `/out`, and the most they may hold together.
    out_bytes: u64,
    out_budget: u64,
    out_nodes: usize,
    epoch_ns: u64,
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
            nodes: Vec::new(),
            out_budget: declared.values().copied().fold(0u64, u64::saturating_add),
            declared,
            out_bytes: 0,
            out_nodes: 0,
            epoch_ns,
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
        self.nodes.push(Node {
            kind,
            writable,
            times: [self.epoch_ns; 2],
            open: 0,
            linked: true,
        });
        self.nodes.len() - 1
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    fn dir_entries_mut(&mut self, id: NodeId) -> &mut BTreeMap<String, NodeId> {
        match &mut self.nodes[id].kind {
            Kind::Dir { entries, .. } => entries,
            _ => unreachable!("node {id} is not a directory"),
        }
    }

    /// The entries of a directory as the guest lists them: `.`, `..`, then names in order.
    pub fn list(&self, dir: NodeId) -> Result<Vec<(String, NodeId)>, Errno> {
        let Kind::Dir { entries, parent } = &self.nodes[dir].kind else {
            return Err(Errno::Notdir);
        };
        let mut out = Vec::with_capacity(entries.len() + 2);
        out.push((".".to_string(), dir));
        out.push(("..".to_string(), parent.unwrap_or(dir)));
        out.extend(entries.iter().map(|(n, id)| (n.clone(), *id)));
        Ok(out)
    }

    /// Looks `path` up from directory `start`. `follow` says whether a symlink in the last
    /// step is followed. Absolute paths, `..` above a root and symlinks that lead out are
    /// refused with `NOTCAPABLE`.
    pub fn resolve(&self, start: NodeId, path: &str, follow: bool) -> Result<NodeId, Errno> {
        let (parent, last) = self.resolve_parent(start, path)?;
        match last {
            None => Ok(parent),
            Some(name) => self.step(parent, &name, follow, 0),
        }
    }

    /// Looks up everything but the last step of `path`; returns the directory and the last
    /// name (`None` when the path ends in `.` or `..`, or is `.`).
    pub fn resolve_parent(
        &self,
        start: NodeId,
        path: &str,
    ) -> Result<(NodeId, Option<String>), Errno> {
        self.walk(start, path, 0)
    }

    fn walk(
        &self,
        start: NodeId,
        path: &str,
        hops: usize,
    ) -> Result<(NodeId, Option<String>), Errno> {
        if path.is_empty() {
            return Err(Errno::Noent);
        }
        if path.starts_with('/') {
            return Err(Errno::Notcapable);
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut dir = start;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if part.len() > MAX_NAME_BYTES {
                return Err(Errno::Nametoolong);
            }
            match *part {
                "." => {}
                ".." => dir = self.parent(dir)?,
                name if last => {
                    // A trailing slash means the last step must be a directory.
                    if path.ends_with('/') {
                        let id = self.step(dir, name, true, hops)?;
                        if !matches!(self.nodes[id].kind, Kind::Dir { .. }) {
                            return Err(Errno::Notdir);
                        }
                    }
                    return Ok((dir, Some(name.to_string())));
                }
                name => {
                    let id = self.step(dir, name, true, hops)?;
                    if !matches!(self.nodes[id].kind, Kind::Dir { .. }) {
                        return Err(Errno::Notdir);
                    }
                    dir = id;
                }
            }
        }
        Ok((dir, None))
    }

    fn parent(&self, dir: NodeId) -> Result<NodeId, Errno> {
        match &self.nodes[dir].kind {
            Kind::Dir {
                parent: Some(p), ..
            } => Ok(*p),
            Kind::Dir { parent: None, .. } => Err(Errno::Notcapable),
            _ => Err(Errno::Notdir),
        }
    }

    /// One step: `name` in `dir`, following a symlink if asked.
    fn step(&self, dir: NodeId, name: &str, follow: bool, hops: usize) -> Result<NodeId, Errno> {
        let Kind::Dir { entries, .. } = &self.nodes[dir].kind else {
            return Err(Errno::Notdir);
        };
        let id = *entries.get(name).ok_or(Errno::Noent)?;
        match &self.nodes[id].kind {
            Kind::Symlink { target } if follow => {
                if hops >= MAX_SYMLINK_HOPS {
                    return Err(Errno::Loop);
                }
                let (parent, last) = self.walk(dir, target, hops + 1)?;
                match last {
                    None => Ok(parent),
                    Some(n) => self.step(parent, &n, true, hops + 1),
                }
            }
            _ => Ok(id),
        }
    }

    fn check_new_name(&self, dir: NodeId, name: &str) -> Result<(), Errno> {
        if !self.nodes[dir].writable {
            return Err(Errno::Rofs);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(Errno::Nametoolong);
        }
        if self.out_nodes >= MAX_OUT_NODES {
            return Err(Errno::Nospc);
        }
        Ok(())
    }

    fn limit_for(&self, dir: NodeId, name: &str) -> Option<(String, u64)> {
        if dir != OUT_ROOT {
            return None;
        }
        self.declared.get(name).map(|max| (name.to_string(), *max))
    }

    /// Creates an empty file `name` in `dir`.
    pub fn create_file(&mut self, dir: NodeId, name: &str) -> Result<NodeId, Errno> {
        self.check_new_name(dir, name)?;
        let limit = self.limit_for(dir, name);
        let id = self.push(
            Kind::File {
                data: Data::Owned(Vec::new()),
                limit,
            },
            true,
        );
        self.out_nodes += 1;
        self.dir_entries_mut(dir).insert(name.to_string(), id);
        Ok(id)
    }

    /// Creates an empty directory `name` in `dir`.
    pub fn create_dir(&mut self, dir: NodeId, name: &str) -> Result<(), Errno> {
        self.check_new_name(dir, name)?;
        if self.lookup(dir, name).is_some() {
            return Err(Errno::Exist);
        }
        let id = self.push(
            Kind::Dir {
                entries: BTreeMap::new(),
                parent: Some(dir),
            },
            true,
        );
        self.out_nodes += 1;
        self.dir_entries_mut(dir).insert(name.to_string(), id);
        Ok(())
    }

    /// Creates a symlink `name` in `dir` pointing at `target` (which is only ever followed
    /// inside the sandbox).
    pub fn create_symlink(&mut self, dir: NodeId, name: &str, target: &str) -> Result<(), Errno> {
        self.check_new_name(dir, name)?;
        if self.lookup(dir, name).is_some() {
            return Err(Errno::Exist);
        }
        if target.is_empty() {
            return Err(Errno::Noent);
        }
        let id = self.push(
            Kind::Symlink {
                target: target.to_string(),
            },
            true,
        );
        self.out_nodes += 1;
        self.dir_entries_mut(dir).insert(name.to_string(), id);
        Ok(())
    }

    /// The entry `name` of directory `dir`, not following symlinks.
    pub fn lookup(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        match &self.nodes[dir].kind {
            Kind::Dir { entries, .. } => entries.get(name).copied(),
            _ => None,
        }
    }

    /// Removes the entry `name` from `dir`; `want_dir` says whether it must be an (empty)
    /// directory or must not be a directory.
    pub fn remove(&mut self, dir: NodeId, name: &str, want_dir: bool) -> Result<(), Errno> {
        if !self.nodes[dir].writable {
            return Err(Errno::Rofs);
        }
        let id = self.lookup(dir, name).ok_or(Errno::Noent)?;
        match (&self.nodes[id].kind, want_dir) {
            (Kind::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(Errno::Notempty);
            }
            (Kind::Dir { .. }, true) => {}
            (Kind::Dir { .. }, false) => return Err(Errno::Isdir),
            (_, true) => return Err(Errno::Notdir),
            (_, false) => {}
        }
        self.dir_entries_mut(dir).remove(name);
        self.unlink_node(id);
        Ok(())
    }

    fn unlink_node(&mut self, id: NodeId) {
        self.out_nodes -= 1;
        self.nodes[id].linked = false;
        self.release_if_dead(id);
    }

    /// Frees an unlinked file's bytes once no descriptor holds it.
    pub fn release_if_dead(&mut self, id: NodeId) {
        let node = &mut self.nodes[id];
        if node.linked || node.open > 0 {
            return;
        }
        if let Kind::File { data, .. } = &mut node.kind
            && node.writable
        {
            self.out_bytes -= data.len();
            *data = Data::Owned(Vec::new());
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
        if !self.nodes[old_dir].writable || !self.nodes[new_dir].writable {
            return Err(Errno::Rofs.into());
        }
        if new.len() > MAX_NAME_BYTES {
            return Err(Errno::Nametoolong.into());
        }
        let id = self.lookup(old_dir, old).ok_or(Errno::Noent)?;
        let is_dir = matches!(self.nodes[id].kind, Kind::Dir { .. });
        if is_dir {
            // A directory may not move into itself.
            let mut d = new_dir;
            loop {
                if d == id {
                    return Err(Errno::Inval.into());
                }
                match self.parent(d) {
                    Ok(p) => d = p,
                    Err(_) => break,
                }
            }
        }
        if let Some(existing) = self.lookup(new_dir, new) {
            if existing == id {
                return Ok(());
            }
            match (&self.nodes[existing].kind, is_dir) {
                (Kind::Dir { entries, .. }, true) if !entries.is_empty() => {
                    return Err(Errno::Notempty.into());
                }
                (Kind::Dir { .. }, false) => return Err(Errno::Isdir.into()),
                (_, true) if !matches!(self.nodes[existing].kind, Kind::Dir { .. }) => {
                    return Err(Errno::Notdir.into());
                }
                _ => {}
            }
        }
        let limit = self.limit_for(new_dir, new);
        if let (Kind::File { data, .. }, Some((name, max))) = (&self.nodes[id].kind, &limit)
            && data.len() > *max
        {
            return Err(WriteError::Overflow(overflow(name, *max)));
        }
        if let Some(existing) = self.lookup(new_dir, new) {
            self.dir_entries_mut(new_dir).remove(new);
            self.unlink_node(existing);
        }
        self.dir_entries_mut(old_dir).remove(old);
        self.dir_entries_mut(new_dir).insert(new.to_string(), id);
        match &mut self.nodes[id].kind {
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
        let Kind::File { data, .. } = &mut self.nodes[id].kind else {
            return Err(Errno::Badf.into());
        };
        data.write_at(offset, bufs).map_err(WriteError::Io)?;
        Ok(total)
    }

    /// Sets file `id`'s size to `len`, within the output limits.
    pub fn set_size(&mut self, id: NodeId, len: u64) -> Result<(), WriteError> {
        let current = self.nodes[id].size();
        if len > current {
            self.reserve(id, len)
        } else {
            let node = &mut self.nodes[id];
            let Kind::File { data, .. } = &mut node.kind else {
                return Err(Errno::Badf.into());
            };
            if !node.writable {
                return Err(Errno::Badf.into());
            }
            data.resize(len).map_err(WriteError::Io)?;
            self.out_bytes -= current - len;
            Ok(())
        }
    }

    /// Makes file `id` at least `len` bytes long (zero-filled), or says which limit that
    /// would break.
    fn reserve(&mut self, id: NodeId, len: u64) -> Result<(), WriteError> {
        let node = &mut self.nodes[id];
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
        if self.out_bytes + grow > self.out_budget {
            return Err(WriteError::Overflow(OutputOverflow(format!(
                "the files in /out would hold more than the {} bytes the declared outputs allow together",
                self.out_budget
            ))));
        }
        data.resize(len).map_err(WriteError::Io)?;
        self.out_bytes += grow;
        Ok(())
    }

    /// What `/out` holds at the end of the run: every entry, in name order.
    pub fn into_out_entries(self) -> Vec<(String, Kind)> {
        let entries = match &self.nodes[OUT_ROOT].kind {
            Kind::Dir { entries, .. } => entries.clone(),
            _ => unreachable!("/out is a directory"),
        };
        let mut nodes: Vec<Option<Node>> = self.nodes.into_iter().map(Some).collect();
        entries
            .into_iter()
            .map(|(name, id)| (name, nodes[id].take().expect("each node has one name").kind))
            .collect()
    }
}

fn overflow(name: &str, max: u64) -> OutputOverflow {
    OutputOverflow(format!(
        "output {name:?} would grow past its max_bytes ({max})"
    ))
}
