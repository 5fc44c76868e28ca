//! The process, `poll_oneoff` (which never blocks: a sleep moves the virtual clock), and the
//! socket functions, which are refused.

use super::*;

pub(super) fn add_proc_poll_sock(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Caller<'_, Host>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(Stop::Exit(code)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proc_raise",
        |mut c: Caller<'_, Host>, _sig: i32| call(&mut c, |_, _| Err(Errno::Nosys.into())),
    )?;
    linker.func_wrap(MODULE, "sched_yield", |mut c: Caller<'_, Host>| {
        call(&mut c, |_, _| Ok(0))
    })?;
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut c: Caller<'_, Host>, subs: i32, events: i32, n: i32, out: i32| {
            call(&mut c, |m, h| poll_oneoff(m, h, subs, events, n, out))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_accept",
        |mut c: Caller<'_, Host>, _fd: i32, _flags: i32, _out: i32| {
            call(&mut c, |_, _| Err(Errno::Notsup.into()))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_recv",
        |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            call(&mut c, |_, _| Err(Errno::Notsup.into()))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_send",
        |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32| {
            call(&mut c, |_, _| Err(Errno::Notsup.into()))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_shutdown",
        |mut c: Caller<'_, Host>, _: i32, _: i32| call(&mut c, |_, _| Err(Errno::Notsup.into())),
    )?;
    Ok(())
}

/// Waits for nothing: descriptors are always ready, and a clock subscription advances the
/// virtual monotonic clock to its deadline at once.
pub(super) fn poll_oneoff(
    m: &mut Mem<'_>,
    h: &mut Host,
    subs: i32,
    events: i32,
    n: i32,
    out: i32,
) -> HostResult {
    if n <= 0 {
        return Err(Errno::Inval.into());
    }
    let mut ready: Vec<[u8; 32]> = Vec::new();
    let mut clocks: Vec<(u64, u64)> = Vec::new(); // (userdata, wait ns)
    for i in 0..n {
        let at = subs.wrapping_add(i.wrapping_mul(48));
        let userdata = m.read_u64(at)?;
        let tag = m.slice(at.wrapping_add(8), 1)?[0];
        let mut event = [0u8; 32];
        event[0..8].copy_from_slice(&userdata.to_le_bytes());
        event[10] = tag;
        match tag {
            0 => {
                let id = m.read_u32(at.wrapping_add(16))? as i32;
                let timeout = m.read_u64(at.wrapping_add(24))?;
                let flags =
                    u16::from_le_bytes(m.slice(at.wrapping_add(40), 2)?.try_into().unwrap());
                match h.clock_now(id) {
                    Ok(now) => {
                        let wait = if flags & 1 != 0 {
                            timeout.saturating_sub(now)
                        } else {
                            timeout
                        };
                        clocks.push((userdata, wait));
                    }
                    Err(e) => {
                        event[8..10].copy_from_slice(&(e as u16).to_le_bytes());
                        ready.push(event);
                    }
                }
            }
            1 | 2 => {
                let fd = m.read_u32(at.wrapping_add(16))? as i32;
                let nbytes = match h.fd(fd) {
                    Ok(Fd::File { node, pos, .. }) if tag == 1 => {
                        h.vfs.node(*node).size().saturating_sub(*pos)
                    }
                    Ok(Fd::Stdin) => {
                        event[24..26].copy_from_slice(&1u16.to_le_bytes()); // hangup
                        0
                    }
                    Ok(_) => 0,
                    Err(e) => {
                        event[8..10].copy_from_slice(&(e as u16).to_le_bytes());
                        0
                    }
                };
                event[16..24].copy_from_slice(&nbytes.to_le_bytes());
                ready.push(event);
            }
            _ => return Err(Errno::Inval.into()),
        }
    }
    if ready.is_empty() {
        let wait = clocks.iter().map(|c| c.1).min().unwrap_or(0);
        h.slept_ns = h.slept_ns.saturating_add(wait);
        for (userdata, w) in clocks {
            if w == wait {
                let mut event = [0u8; 32];
                event[0..8].copy_from_slice(&userdata.to_le_bytes());
                ready.push(event);
            }
        }
    }
    for (i, e) in ready.iter().enumerate() {
        m.put(events.wrapping_add(32 * i as i32), e)?;
    }
    m.put_u32(out, ready.len() as u32)?;
    Ok(0)
}
