//! Descriptors: reading, writing, seeking, their flags and stats, and directory listings.

use super::*;

/// What an iovec array of `n` entries costs before it is read (an array past [`MAX_IOVS`]
/// is refused, and costs no more than the largest allowed).
fn iovec_fuel(n: i32) -> u64 {
    u64::from((n as u32).min(MAX_IOVS)) * IOVEC_FUEL
}

pub(super) fn write_to(
    host: &mut Host,
    fd: i32,
    bufs: &[&[u8]],
    at: Option<u64>,
) -> Result<u64, Fail> {
    let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
    match host.fd(fd)?.clone() {
        Fd::Stdout if at.is_none() => bufs.iter().for_each(|b| host.stdout.push(b)),
        Fd::Stderr if at.is_none() => bufs.iter().for_each(|b| host.stderr.push(b)),
        Fd::Stdout | Fd::Stderr => return Err(Errno::Spipe.into()),
        Fd::File {
            node,
            pos,
            write,
            append,
            ..
        } => {
            if !write {
                return Err(Errno::Badf.into());
            }
            let offset = match at {
                Some(off) => off,
                None if append => host.vfs.node(node).size(),
                None => pos,
            };
            let n = host.vfs.write(node, offset, bufs)?;
            if at.is_none()
                && let Fd::File { pos, .. } = host.fd_mut(fd)?
            {
                *pos = offset + n;
            }
        }
        Fd::Stdin => return Err(Errno::Badf.into()),
        Fd::Dir { .. } => return Err(Errno::Isdir.into()),
    }
    Ok(total)
}

pub(super) fn read_from(
    mem: &mut Mem<'_>,
    host: &mut Host,
    fd: i32,
    iovs: i32,
    count: i32,
    at: Option<u64>,
) -> Result<u64, Fail> {
    match host.fd(fd)?.clone() {
        Fd::Stdin => Ok(0),
        Fd::File {
            node, pos, read, ..
        } => {
            if !read {
                return Err(Errno::Badf.into());
            }
            let Kind::File { data, .. } = &host.vfs.node(node).kind else {
                return Err(Errno::Badf.into());
            };
            let offset = at.unwrap_or(pos);
            let want: usize = mem
                .iovs(iovs, count)?
                .iter()
                .map(|(_, l)| *l as usize)
                .sum();
            let src = data.read_at(offset, want).map_err(|e| {
                Fail::Stop(wasmtime::Error::msg(format!(
                    "cannot read /out from disk: {e}"
                )))
            })?;
            let n = mem.scatter(iovs, count, &src)?;
            if at.is_none()
                && let Fd::File { pos, .. } = host.fd_mut(fd)?
            {
                *pos = offset + n;
            }
            Ok(n)
        }
        Fd::Dir { .. } => Err(Errno::Isdir.into()),
        Fd::Stdout | Fd::Stderr => Err(Errno::Badf.into()),
    }
}

/// Descriptors' advice, allocation, closing, syncing, flags, rights and stats. A flat table:
/// one registration per function.
pub(super) fn add_fd(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_advise",
        |mut c: Caller<'_, Host>, fd: i32, _off: i64, _len: i64, advice: i32| {
            call(&mut c, |_, h| {
                h.fd(fd)?;
                if !(0..=5).contains(&advice) {
                    return Err(Errno::Inval.into());
                }
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_allocate",
        |mut c: Caller<'_, Host>, fd: i32, off: i64, len: i64| {
            call(&mut c, |_, h| {
                let Fd::File { node, write, .. } = h.fd(fd)?.clone() else {
                    return Err(Errno::Badf.into());
                };
                if !write {
                    return Err(Errno::Badf.into());
                }
                let end = (off as u64).checked_add(len as u64).ok_or(Errno::Fbig)?;
                if end > h.vfs.node(node).size() {
                    h.vfs.set_size(node, end)?;
                }
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(MODULE, "fd_close", |mut c: Caller<'_, Host>, fd: i32| {
        call(&mut c, |_, h| {
            h.close_fd(fd)?;
            Ok(0)
        })
    })?;
    for name in ["fd_datasync", "fd_sync"] {
        linker.func_wrap(MODULE, name, |mut c: Caller<'_, Host>, fd: i32| {
            call(&mut c, |_, h| {
                h.fd(fd)?;
                Ok(0)
            })
        })?;
    }
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Caller<'_, Host>, fd: i32, out: i32| {
            call(&mut c, |m, h| {
                let (filetype, flags) = match h.fd(fd)? {
                    Fd::Stdin | Fd::Stdout | Fd::Stderr => (FILETYPE_CHAR, 0),
                    Fd::Dir { .. } => (FILETYPE_DIR, 0),
                    Fd::File { append, .. } => {
                        (FILETYPE_FILE, if *append { FDFLAG_APPEND } else { 0 })
                    }
                };
                let mut b = [0u8; 24];
                b[0] = filetype;
                b[2..4].copy_from_slice(&flags.to_le_bytes());
                b[8..16].copy_from_slice(&RIGHTS_ALL.to_le_bytes());
                b[16..24].copy_from_slice(&RIGHTS_ALL.to_le_bytes());
                m.put(out, &b)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_set_flags",
        |mut c: Caller<'_, Host>, fd: i32, flags: i32| {
            call(&mut c, |_, h| {
                if let Fd::File { append, .. } = h.fd_mut(fd)? {
                    *append = flags as u16 & FDFLAG_APPEND != 0;
                }
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_set_rights",
        |mut c: Caller<'_, Host>, fd: i32, _base: i64, _inheriting: i64| {
            call(&mut c, |_, h| {
                h.fd(fd)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_get",
        |mut c: Caller<'_, Host>, fd: i32, out: i32| {
            call(&mut c, |m, h| {
                m.put(out, &fd_filestat(h, fd)?)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_size",
        |mut c: Caller<'_, Host>, fd: i32, size: i64| {
            call(&mut c, |_, h| {
                let Fd::File { node, write, .. } = h.fd(fd)?.clone() else {
                    return Err(Errno::Badf.into());
                };
                if !write {
                    return Err(Errno::Badf.into());
                }
                h.vfs.set_size(node, size as u64)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_times",
        |mut c: Caller<'_, Host>, fd: i32, atim: i64, mtim: i64, flags: i32| {
            call(&mut c, |_, h| match h.fd(fd)?.clone() {
                Fd::File { node, .. } | Fd::Dir { node, .. } => {
                    set_times(h, node, atim, mtim, flags)
                }
                _ => Err(Errno::Badf.into()),
            })
        },
    )?;
    Ok(())
}

/// Reading and writing descriptors' data, their preopened names, listing directories,
/// renumbering and seeking. A flat table: one registration per function.
pub(super) fn add_fd_data(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_pread",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            call_priced(&mut c, iovec_fuel(n), |m, h| {
                let read = read_from(m, h, fd, iovs, n, Some(off as u64))?;
                m.put_u32(out, read as u32)?;
                Ok(read)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            call_priced(&mut c, iovec_fuel(n), |m, h| {
                let written = write_to(h, fd, &m.gather(iovs, n)?, Some(off as u64))?;
                m.put_u32(out, written as u32)?;
                Ok(written)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, out: i32| {
            call_priced(&mut c, iovec_fuel(n), |m, h| {
                let read = read_from(m, h, fd, iovs, n, None)?;
                m.put_u32(out, read as u32)?;
                Ok(read)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, out: i32| {
            call_priced(&mut c, iovec_fuel(n), |m, h| {
                let written = write_to(h, fd, &m.gather(iovs, n)?, None)?;
                m.put_u32(out, written as u32)?;
                Ok(written)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |mut c: Caller<'_, Host>, fd: i32, out: i32| {
            call(&mut c, |m, h| match h.fd(fd)? {
                Fd::Dir {
                    preopen: Some(name),
                    ..
                } => {
                    let mut b = [0u8; 8];
                    b[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
                    m.put(out, &b)?;
                    Ok(0)
                }
                _ => Err(Errno::Badf.into()),
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |mut c: Caller<'_, Host>, fd: i32, buf: i32, len: i32| {
            call(&mut c, |m, h| match h.fd(fd)? {
                Fd::Dir {
                    preopen: Some(name),
                    ..
                } => {
                    if (len as u32 as usize) < name.len() {
                        return Err(Errno::Nametoolong.into());
                    }
                    m.put(buf, name.as_bytes())?;
                    Ok(0)
                }
                _ => Err(Errno::Badf.into()),
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_readdir",
        |mut c: Caller<'_, Host>, fd: i32, buf: i32, len: i32, cookie: i64, out: i32| {
            call(&mut c, |m, h| {
                let node = h.dir_fd(fd).map_err(|_| Errno::Badf)?;
                let cap = len as u32 as usize;
                let mut bytes = Vec::new();
                for (next, name, id) in h.vfs.list(node, cookie as u64)? {
                    if bytes.len() >= cap {
                        break;
                    }
                    let mut head = [0u8; 24];
                    head[0..8].copy_from_slice(&next.to_le_bytes());
                    head[8..16].copy_from_slice(&crate::vfs::Node::ino(id).to_le_bytes());
                    head[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
                    head[20] = filetype(&h.vfs.node(id).kind);
                    bytes.extend_from_slice(&head);
                    bytes.extend_from_slice(name.as_bytes());
                }
                bytes.truncate(cap);
                m.put(buf, &bytes)?;
                m.put_u32(out, bytes.len() as u32)?;
                Ok(bytes.len() as u64)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_renumber",
        |mut c: Caller<'_, Host>, from: i32, to: i32| {
            call(&mut c, |_, h| {
                h.fd(from)?;
                h.fd(to)?;
                if from != to {
                    h.close_fd(to)?;
                    h.fds[to as usize] = h.fds[from as usize].take();
                }
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |mut c: Caller<'_, Host>, fd: i32, offset: i64, whence: i32, out: i32| {
            call(&mut c, |m, h| {
                let size = match h.fd(fd)? {
                    Fd::File { node, .. } => h.vfs.node(*node).size(),
                    Fd::Dir { .. } => return Err(Errno::Isdir.into()),
                    _ => return Err(Errno::Spipe.into()),
                };
                let Fd::File { pos, .. } = h.fd_mut(fd)? else {
                    unreachable!()
                };
                let base = match whence {
                    0 => 0,
                    1 => *pos as i64,
                    2 => size as i64,
                    _ => return Err(Errno::Inval.into()),
                };
                let new = base.checked_add(offset).ok_or(Errno::Overflow)?;
                if new < 0 {
                    return Err(Errno::Inval.into());
                }
                *pos = new as u64;
                m.put_u64(out, new as u64)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_tell",
        |mut c: Caller<'_, Host>, fd: i32, out: i32| {
            call(&mut c, |m, h| match h.fd(fd)? {
                Fd::File { pos, .. } => {
                    let pos = *pos;
                    m.put_u64(out, pos)?;
                    Ok(0)
                }
                _ => Err(Errno::Spipe.into()),
            })
        },
    )?;
    Ok(())
}
