//! `/ckpt`, where a task that may checkpoint saves its state, and what of the file system a
//! checkpoint carries into the next segment: `/out` as it was and the saved state.
//!
//! `/ckpt` holds at most two regular files, [`CKPT_NEXT`] and [`CKPT_STATE`], each within the
//! task's `checkpoint.max_bytes`; anything else there is refused with `ENOTCAPABLE`. Renaming
//! a file to `/ckpt/state` is what saves a checkpoint (the host ends the segment there).

use std::collections::BTreeMap;
use std::io;

use super::{Data, Kind, NodeId, OUT_ROOT, Vfs, WriteError};
use crate::errno::Errno;

/// The file a guest writes its state to before saving it.
pub const CKPT_NEXT: &str = "next";
/// The saved state: renaming a file here saves a checkpoint, and the next segment finds the
/// state here.
pub const CKPT_STATE: &str = "state";

/// One node of `/out` as a checkpoint carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedNode {
    /// Its path under `/out`, `/`-separated; parents come before their children.
    pub path: String,
    /// Its access and modification times.
    pub times: [u64; 2],
    /// What it is.
    pub kind: SavedKind,
}

/// What a saved node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedKind {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symbolic link and its target.
    Symlink(String),
}

impl Vfs {
    /// Adds `/ckpt` (after the inputs, so their inode numbers stay as they were), each of
    /// whose two files may hold `max_bytes`. Returns its root.
    pub fn add_ckpt(&mut self, max_bytes: u64) -> NodeId {
        let root = self.push(
            Kind::Dir {
                entries: BTreeMap::new(),
                parent: None,
            },
            true,
        );
        self.out_budget = self.out_budget.saturating_add(max_bytes.saturating_mul(2));
        self.ckpt = Some((root, max_bytes));
        root
    }

    /// The root of `/ckpt`, in a task that may checkpoint.
    pub fn ckpt_root(&self) -> Option<NodeId> {
        self.ckpt.map(|(root, _)| root)
    }

    /// Whether `name` in `dir` is the saved state's place.
    pub fn is_ckpt_state(&self, dir: NodeId, name: &str) -> bool {
        self.ckpt_root() == Some(dir) && name == CKPT_STATE
    }

    /// Refuses any name in `/ckpt` but its two files'.
    pub(super) fn check_ckpt_name(&self, dir: NodeId, name: &str) -> Result<(), Errno> {
        if self.ckpt_root() == Some(dir) && name != CKPT_NEXT && name != CKPT_STATE {
            return Err(Errno::Notcapable);
        }
        Ok(())
    }

    /// Refuses anything but a regular file in `/ckpt`.
    pub(super) fn check_ckpt_file(&self, dir: NodeId) -> Result<(), Errno> {
        if self.ckpt_root() == Some(dir) {
            return Err(Errno::Notcapable);
        }
        Ok(())
    }

    /// `/out` as it is now: every linked node, parents first, entries in name order.
    pub fn save_out(&self) -> io::Result<Vec<SavedNode>> {
        let mut saved = Vec::new();
        let mut stack = vec![(OUT_ROOT, String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let Kind::Dir { entries, .. } = &self.node(dir).kind else {
                continue;
            };
            let mut dirs = Vec::new();
            for (name, &id) in entries {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let node = self.node(id);
                let kind = match &node.kind {
                    Kind::Dir { .. } => {
                        dirs.push((id, path.clone()));
                        SavedKind::Dir
                    }
                    Kind::File { data, .. } => SavedKind::File(bytes_of(data)?),
                    Kind::Symlink { target } => SavedKind::Symlink(target.clone()),
                };
                saved.push(SavedNode {
                    path,
                    times: node.times,
                    kind,
                });
            }
            // Depth-first, in name order: the first subdirectory is taken next.
            stack.extend(dirs.into_iter().rev());
        }
        Ok(saved)
    }

    /// The bytes of `/ckpt/state`, if the guest saved any.
    pub fn ckpt_state(&self) -> io::Result<Option<Vec<u8>>> {
        let Some(root) = self.ckpt_root() else {
            return Ok(None);
        };
        match self.lookup(root, CKPT_STATE).map(|id| &self.node(id).kind) {
            Some(Kind::File { data, .. }) => Ok(Some(bytes_of(data)?)),
            _ => Ok(None),
        }
    }

    /// Puts back what a checkpoint carries: `/out`'s nodes and the saved state, each held to
    /// the same limits as when the guest wrote it. An error names what does not fit.
    pub fn restore(&mut self, out: &[SavedNode], state: &[u8]) -> Result<(), String> {
        let root = self
            .ckpt_root()
            .ok_or("the task declares no checkpoint, so it cannot resume from one")?;
        let fail = |what: &str, e: WriteError| match e {
            WriteError::Errno(e) => format!("{what}: {e:?}"),
            WriteError::Overflow(o) => format!("{what}: {}", o.0),
            WriteError::Budget(why) => format!("{what}: {why}"),
            WriteError::Io(e) => format!("{what}: {e}"),
        };
        for node in out {
            let (parent, name) = self.saved_parent(&node.path)?;
            let what = format!("/out/{}", node.path);
            let id = match &node.kind {
                SavedKind::Dir => {
                    self.create_dir(parent, name).map_err(|e| fail(&what, e))?;
                    self.lookup(parent, name).expect("just made")
                }
                SavedKind::File(bytes) => {
                    let id = self.create_file(parent, name).map_err(|e| fail(&what, e))?;
                    self.write(id, 0, &[bytes]).map_err(|e| fail(&what, e))?;
                    id
                }
                SavedKind::Symlink(target) => {
                    self.create_symlink(parent, name, target)
                        .map_err(|e| fail(&what, e))?;
                    self.lookup(parent, name).expect("just made")
                }
            };
            self.node_mut(id).times = node.times;
        }
        let id = self
            .create_file(root, CKPT_STATE)
            .map_err(|e| fail("/ckpt/state", e))?;
        self.write(id, 0, &[state])
            .map_err(|e| fail("/ckpt/state", e))?;
        Ok(())
    }

    /// The directory a saved path's last name goes in, and that name.
    fn saved_parent<'p>(&self, path: &'p str) -> Result<(NodeId, &'p str), String> {
        let bad = || format!("the checkpoint holds a path that /out cannot: {path:?}");
        let mut names = path.split('/').collect::<Vec<_>>();
        let last = names.pop().ok_or_else(bad)?;
        let mut dir = OUT_ROOT;
        for name in names.iter().chain([&last]) {
            if name.is_empty() || *name == "." || *name == ".." {
                return Err(bad());
            }
        }
        for name in names {
            dir = match self.lookup(dir, name) {
                Some(id) if matches!(self.node(id).kind, Kind::Dir { .. }) => id,
                _ => return Err(bad()),
            };
        }
        if self.lookup(dir, last).is_some() {
            return Err(bad());
        }
        Ok((dir, last))
    }
}

/// A file's bytes, all in memory.
fn bytes_of(data: &Data) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() as usize);
    data.for_each_block(|block| {
        out.extend_from_slice(block);
        Ok(())
    })?;
    Ok(out)
}
