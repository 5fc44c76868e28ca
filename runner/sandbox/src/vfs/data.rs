//! A file's bytes: an input shared with the runner, or a file the guest writes, in memory
//! until it grows past [`SPILL_BYTES`] and then in an unlinked temporary file.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

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
    pub(super) fn write_at(&mut self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
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
    pub(super) fn resize(&mut self, len: u64) -> io::Result<()> {
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
