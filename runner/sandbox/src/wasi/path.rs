//! Paths: opening, creating, renaming, linking and removing files and directories in `/in` and
//! `/out`.

use super::*;

/// Making directories, stats, times, hard links and opening. A flat table: one registration
/// per function.
pub(super) fn add_path(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "path_create_directory",
        |mut c: Caller<'_, Host>, fd: i32, path: i32, len: i32| {
            call(&mut c, |m, h| {
                let dir = h.dir_fd(fd)?;
                let (parent, last) = h.vfs.resolve_parent(dir, &m.path(path, len)?)?;
                let last = last.ok_or(Errno::Exist)?;
                h.vfs.create_dir(parent, &last)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_filestat_get",
        |mut c: Caller<'_, Host>, fd: i32, flags: i32, path: i32, len: i32, out: i32| {
            call(&mut c, |m, h| {
                let dir = h.dir_fd(fd)?;
                let node = h
                    .vfs
                    .resolve(dir, &m.path(path, len)?, flags & LOOKUP_FOLLOW != 0)?;
                m.put(out, &filestat(&h.vfs, node))?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_filestat_set_times",
        |mut c: Caller<'_, Host>,
         fd: i32,
         flags: i32,
         path: i32,
         len: i32,
         atim: i64,
         mtim: i64,
         fst: i32| {
            call(&mut c, |m, h| {
                let dir = h.dir_fd(fd)?;
                let node = h
                    .vfs
                    .resolve(dir, &m.path(path, len)?, flags & LOOKUP_FOLLOW != 0)?;
                set_times(h, node, atim, mtim, fst)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_link",
        |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            call(&mut c, |_, _| Err(Errno::Notsup.into()))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut c: Caller<'_, Host>,
         fd: i32,
         dirflags: i32,
         path: i32,
         len: i32,
         oflags: i32,
         base: i64,
         _inheriting: i64,
         fdflags: i32,
         out: i32| {
            call(&mut c, |m, h| {
                let opened =
                    path_open(h, fd, dirflags, &m.path(path, len)?, oflags, base, fdflags)?;
                m.put_u32(out, opened as u32)?;
                Ok(0)
            })
        },
    )?;
    Ok(())
}

/// Reading links, removing, renaming and making symbolic links. A flat table: one
/// registration per function.
pub(super) fn add_path_changes(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "path_readlink",
        |mut c: Caller<'_, Host>, fd: i32, path: i32, len: i32, buf: i32, cap: i32, out: i32| {
            call(&mut c, |m, h| {
                let dir = h.dir_fd(fd)?;
                let node = h.vfs.resolve(dir, &m.path(path, len)?, false)?;
                let Kind::Symlink { target } = &h.vfs.node(node).kind else {
                    return Err(Errno::Inval.into());
                };
                let bytes = &target.as_bytes()[..target.len().min(cap as u32 as usize)];
                m.put(buf, bytes)?;
                m.put_u32(out, bytes.len() as u32)?;
                Ok(0)
            })
        },
    )?;
    for (name, want_dir) in [("path_remove_directory", true), ("path_unlink_file", false)] {
        linker.func_wrap(
            MODULE,
            name,
            move |mut c: Caller<'_, Host>, fd: i32, path: i32, len: i32| {
                call(&mut c, |m, h| {
                    let dir = h.dir_fd(fd)?;
                    let (parent, last) = h.vfs.resolve_parent(dir, &m.path(path, len)?)?;
                    let last = last.ok_or(if want_dir { Errno::Inval } else { Errno::Isdir })?;
                    h.vfs.remove(parent, &last, want_dir)?;
                    Ok(0)
                })
            },
        )?;
    }
    linker.func_wrap(
        MODULE,
        "path_rename",
        |mut c: Caller<'_, Host>,
         fd: i32,
         old: i32,
         old_len: i32,
         new_fd: i32,
         new: i32,
         new_len: i32| {
            call(&mut c, |m, h| {
                let (old_dir, new_dir) = (h.dir_fd(fd)?, h.dir_fd(new_fd)?);
                let (op, on) = h.vfs.resolve_parent(old_dir, &m.path(old, old_len)?)?;
                let (np, nn) = h.vfs.resolve_parent(new_dir, &m.path(new, new_len)?)?;
                let (on, nn) = (on.ok_or(Errno::Inval)?, nn.ok_or(Errno::Inval)?);
                h.vfs.rename(op, &on, np, &nn)?;
                h.checkpointed = h.vfs.is_ckpt_state(np, &nn);
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        |mut c: Caller<'_, Host>, old: i32, old_len: i32, fd: i32, new: i32, new_len: i32| {
            call(&mut c, |m, h| {
                let target = m.path(old, old_len)?;
                let dir = h.dir_fd(fd)?;
                let (parent, last) = h.vfs.resolve_parent(dir, &m.path(new, new_len)?)?;
                h.vfs
                    .create_symlink(parent, &last.ok_or(Errno::Exist)?, &target)?;
                Ok(0)
            })
        },
    )?;
    Ok(())
}

pub(super) fn path_open(
    h: &mut Host,
    fd: i32,
    dirflags: i32,
    path: &str,
    oflags: i32,
    base: i64,
    fdflags: i32,
) -> Result<i32, Fail> {
    let dir = h.dir_fd(fd)?;
    let follow = dirflags & LOOKUP_FOLLOW != 0;
    let oflags = oflags as u16;
    let fdflags = fdflags as u16;
    let write = base as u64 & RIGHTS_WRITE != 0 || fdflags & FDFLAG_APPEND != 0;
    let node = if oflags & OFLAG_CREAT != 0 {
        let (parent, last) = h.vfs.resolve_parent(dir, path)?;
        let last = last.ok_or(Errno::Isdir)?;
        match h.vfs.lookup(parent, &last) {
            Some(_) if oflags & OFLAG_EXCL != 0 => return Err(Errno::Exist.into()),
            Some(_) => h.vfs.resolve(parent, &last, follow)?,
            None => h.vfs.create_file(parent, &last)?,
        }
    } else {
        h.vfs.resolve(dir, path, follow)?
    };
    let opened = match &h.vfs.node(node).kind {
        Kind::Symlink { .. } => return Err(Errno::Loop.into()),
        Kind::Dir { .. } => {
            if write || oflags & OFLAG_TRUNC != 0 {
                return Err(Errno::Isdir.into());
            }
            Fd::Dir {
                node,
                preopen: None,
            }
        }
        Kind::File { .. } => {
            if oflags & OFLAG_DIRECTORY != 0 {
                return Err(Errno::Notdir.into());
            }
            let writable = h.vfs.node(node).writable;
            if (write || oflags & OFLAG_TRUNC != 0) && !writable {
                return Err(Errno::Rofs.into());
            }
            if oflags & OFLAG_TRUNC != 0 {
                h.vfs.set_size(node, 0)?;
            }
            Fd::File {
                node,
                pos: 0,
                read: base as u64 & RIGHT_READ != 0,
                write,
                append: fdflags & FDFLAG_APPEND != 0,
            }
        }
    };
    Ok(h.insert_fd(opened)?)
}
