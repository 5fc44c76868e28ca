//! Arguments, environment, clocks and random bytes: what the manifest and the seed fix.

use super::*;

pub(super) fn add_args_env_clock_random(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    fn list_get(mem: &mut Mem<'_>, items: &[Vec<u8>], ptrs: i32, buf: i32) -> HostResult {
        let mut at = buf as u32;
        for (i, item) in items.iter().enumerate() {
            mem.put_u32(ptrs.wrapping_add(4 * i as i32), at)?;
            mem.put(at as i32, item)?;
            at += item.len() as u32;
        }
        Ok(at as u64 - buf as u32 as u64)
    }
    fn sizes_get(mem: &mut Mem<'_>, items: &[Vec<u8>], count: i32, size: i32) -> HostResult {
        mem.put_u32(count, items.len() as u32)?;
        mem.put_u32(size, items.iter().map(|a| a.len() as u32).sum())?;
        Ok(0)
    }
    linker.func_wrap(
        MODULE,
        "args_get",
        |mut c: Caller<'_, Host>, argv: i32, buf: i32| {
            call(&mut c, |m, h| list_get(m, &h.args, argv, buf))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut c: Caller<'_, Host>, n: i32, size: i32| {
            call(&mut c, |m, h| sizes_get(m, &h.args, n, size))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        |mut c: Caller<'_, Host>, env: i32, buf: i32| {
            call(&mut c, |m, h| list_get(m, &h.env, env, buf))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut c: Caller<'_, Host>, n: i32, size: i32| {
            call(&mut c, |m, h| sizes_get(m, &h.env, n, size))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Caller<'_, Host>, id: i32, out: i32| {
            call(&mut c, |m, h| {
                h.clock_now(id)?;
                m.put_u64(out, 1)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller<'_, Host>, id: i32, _precision: i64, out: i32| {
            call(&mut c, |m, h| {
                m.put_u64(out, h.clock_now(id)?)?;
                Ok(0)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller<'_, Host>, buf: i32, len: i32| {
            call(&mut c, |m, h| {
                h.rng.fill(m.slice_mut(buf, len as u32)?);
                Ok(len as u32 as u64)
            })
        },
    )?;
    Ok(())
}
