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
            let upfront = u64::from(n.max(0) as u32) * SUBSCRIPTION_FUEL;
            call_priced(&mut c, upfront, |m, h| {
                poll_oneoff(m, h, subs, events, n, out)
            })
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

/// What one subscription asks for.
enum Sub {
    /// An event to report now: a descriptor's readiness or a clock's error.
    Ready([u8; 32]),
    /// A clock that fires after this many virtual nanoseconds.
    Clock { userdata: u64, wait: u64 },
}

/// Subscriptions between two looks at the wall clock in one `poll_oneoff`.
const POLL_CLOCK_EVERY: i32 = 1 << 16;

/// Reads subscription `i` at `subs`.
fn subscription(m: &Mem<'_>, h: &Host, subs: i32, i: i32) -> Result<Sub, Errno> {
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
            let flags = u16::from_le_bytes(m.slice(at.wrapping_add(40), 2)?.try_into().unwrap());
            match h.clock_now(id) {
                Ok(now) => {
                    let wait = if flags & 1 != 0 {
                        timeout.saturating_sub(now)
                    } else {
                        timeout
                    };
                    Ok(Sub::Clock { userdata, wait })
                }
                Err(e) => {
                    event[8..10].copy_from_slice(&(e as u16).to_le_bytes());
                    Ok(Sub::Ready(event))
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
            Ok(Sub::Ready(event))
        }
        _ => Err(Errno::Inval),
    }
}

/// Waits for nothing: descriptors are always ready, and a clock subscription advances the
/// virtual monotonic clock to its deadline at once. Two passes over the subscriptions, so the
/// host holds nothing in proportion to their number: the first finds whether any event is
/// ready now and the nearest clock, the second writes the events.
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
    let mut any_ready = false;
    let mut nearest = u64::MAX;
    for i in 0..n {
        if i % POLL_CLOCK_EVERY == POLL_CLOCK_EVERY - 1 && h.past_deadline() {
            return Err(Fail::Stop(Trap::Interrupt.into()));
        }
        match subscription(m, h, subs, i)? {
            Sub::Ready(_) => any_ready = true,
            Sub::Clock { wait, .. } => nearest = nearest.min(wait),
        }
    }
    let mut written = 0u32;
    for i in 0..n {
        let event = match subscription(m, h, subs, i)? {
            Sub::Ready(event) if any_ready => event,
            Sub::Clock { userdata, wait } if !any_ready && wait == nearest => {
                let mut event = [0u8; 32];
                event[0..8].copy_from_slice(&userdata.to_le_bytes());
                event
            }
            _ => continue,
        };
        m.put(events.wrapping_add(32 * written as i32), &event)?;
        written += 1;
    }
    m.put_u32(out, written)?;
    // The clock moves only now: the second pass read the clocks as the first did.
    if !any_ready {
        h.slept_ns = h.slept_ns.saturating_add(nearest);
    }
    Ok(0)
}
