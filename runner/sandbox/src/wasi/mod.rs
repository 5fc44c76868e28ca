//! `wasi_snapshot_preview1`, implemented for Helio's deterministic profile.
//!
//! The guest sees: `argv = [name, args...]`, exactly the manifest's environment (sorted by
//! name), an empty standard input, captured standard output and error, the preopened
//! directories `/in` (fd 3) and `/out` (fd 4) served from the in-memory [`Vfs`], a realtime
//! clock fixed at [`REALTIME_EPOCH_NS`], a monotonic clock that advances by one nanosecond per
//! unit of fuel burned (plus whatever the guest "slept"), and a `random_get` stream derived
//! from the task's seed. `poll_oneoff` never blocks: a sleep advances the virtual clock at once.
//! No sockets, no signals.
//!
//! Every call costs [`HOST_CALL_FUEL`], plus one unit per [`HOST_BYTES_PER_FUEL`] bytes moved,
//! [`STEP_FUEL`] per path step or directory entry visited and [`SUBSCRIPTION_FUEL`] per
//! `poll_oneoff` subscription, so host work is metered as exactly as guest work, whatever the
//! arguments. Every [`DEADLINE_EVERY`] calls also read the wall clock, so `wall_seconds` holds
//! in host calls as it does in guest code.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Caller, Global, Linker, Memory, Trap, Val};

use crate::errno::Errno;
use crate::throttle::{Paused, Throttle};
use crate::vfs::{IN_ROOT, Kind, NodeId, OUT_ROOT, OutputOverflow, Vfs, WriteError};

mod args;
mod fd;
mod path;
mod poll;

use args::*;
use fd::*;
use path::*;
use poll::*;

/// The module name every import must come from.
pub const MODULE: &str = helio_sdk::WASI_MODULE;

/// The fixed instant the realtime clock reads: 2000-01-01T00:00:00Z.
pub const REALTIME_EPOCH_NS: u64 = 946_684_800 * 1_000_000_000;

/// Fuel charged for each host call.
pub const HOST_CALL_FUEL: u64 = 100;

/// Bytes moved across the host boundary per unit of fuel.
pub const HOST_BYTES_PER_FUEL: u64 = 8;

/// Fuel for each step of a path lookup and each directory entry listed or passed over.
pub const STEP_FUEL: u64 = 50;

/// Fuel for each subscription a `poll_oneoff` call passes, charged before it is read.
pub const SUBSCRIPTION_FUEL: u64 = 50;

/// Fuel for each entry of an iovec array.
pub const IOVEC_FUEL: u64 = 8;

/// Host calls between two looks at the wall clock. One call's work is bounded (a
/// `poll_oneoff` looks at the clock itself as it goes), so `wall_seconds` still holds to
/// within milliseconds, and a task of many small calls does not pay for a clock read each.
pub const DEADLINE_EVERY: u32 = 16;

/// The most entries one iovec array may have (Linux's `IOV_MAX`).
pub const MAX_IOVS: u32 = 1024;

/// Standard output is captured up to this many bytes.
pub const STDOUT_CAP: usize = 1 << 20;

/// Standard error is captured up to this many bytes.
pub const STDERR_CAP: usize = 64 << 10;

/// The most descriptors a guest may hold open.
const MAX_FDS: usize = 1024;

const RIGHTS_ALL: u64 = (1 << 30) - 1;

const RIGHTS_WRITE: u64 = (1 << 0) | (1 << 6) | (1 << 8) | (1 << 22); // datasync, write, allocate, filestat_set_size

const RIGHT_READ: u64 = 1 << 1;

const FDFLAG_APPEND: u16 = 1;

const OFLAG_CREAT: u16 = 1;

const OFLAG_DIRECTORY: u16 = 2;

const OFLAG_EXCL: u16 = 4;

const OFLAG_TRUNC: u16 = 8;

const LOOKUP_FOLLOW: i32 = 1;

const FILETYPE_CHAR: u8 = 2;

const FILETYPE_DIR: u8 = 3;

const FILETYPE_FILE: u8 = 4;

const FILETYPE_SYMLINK: u8 = 7;

const FST_ATIM: i32 = 1;

const FST_ATIM_NOW: i32 = 2;

const FST_MTIM: i32 = 4;

const FST_MTIM_NOW: i32 = 8;

/// Why the guest stopped before returning from `_start`, other than a trap.
#[derive(Debug)]
pub enum Stop {
    /// The guest called `proc_exit`.
    Exit(i32),
    /// A write went past a declared output's `max_bytes`.
    Output(OutputOverflow),
    /// Linear memory would have grown past `limits.memory_bytes`.
    MemoryLimit,
    /// A table would have grown past the sandbox's table limit.
    TableLimit,
    /// The guest would have made the host hold more than its budget: ends with
    /// `memory_limit`, as linear memory does.
    HostBudget(String),
    /// This machine could not give the guest memory its limits allow (the runner's memory
    /// cap, or the machine's memory, ran out): a fault of the runner, never a result.
    RunnerMemory(String),
    /// The guest saved a checkpoint (renamed a file to `/ckpt/state`): the segment ends
    /// there, and the run goes on from it.
    Checkpoint,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Exit(code) => write!(f, "the guest exited with code {code}"),
            Stop::Output(o) => f.write_str(&o.0),
            Stop::MemoryLimit => f.write_str("linear memory would grow past limits.memory_bytes"),
            Stop::TableLimit => f.write_str("a table would grow past the sandbox's limit"),
            Stop::HostBudget(why) => f.write_str(why),
            Stop::RunnerMemory(why) => write!(
                f,
                "this runner could not give the guest memory its limits allow: {why}"
            ),
            Stop::Checkpoint => f.write_str("the guest saved a checkpoint"),
        }
    }
}

impl std::error::Error for Stop {}

/// Captured bytes of one standard stream, cut at a fixed size.
#[derive(Debug, Default)]
pub struct Capture {
    pub bytes: Vec<u8>,
    cap: usize,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Capture {
            bytes: Vec::new(),
            cap,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.cap - self.bytes.len();
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

#[derive(Debug, Clone)]
enum Fd {
    Stdin,
    Stdout,
    Stderr,
    Dir {
        node: NodeId,
        preopen: Option<&'static str>,
    },
    File {
        node: NodeId,
        pos: u64,
        read: bool,
        write: bool,
        append: bool,
    },
}

/// Everything the host functions know about one running task.
pub struct Host {
    /// The guest's exported memory, once instantiated.
    pub memory: Option<Memory>,
    /// The global the instrumented guest keeps its fuel in, once instantiated.
    pub fuel: Option<Global>,
    /// `/in` and `/out`.
    pub vfs: Vfs,
    /// Standard output.
    pub stdout: Capture,
    /// Standard error.
    pub stderr: Capture,
    /// The fuel the task started with.
    pub fuel_limit: u64,
    /// The most bytes linear memory may grow to.
    pub memory_limit: u64,
    /// When the task's `wall_seconds` run out, once it runs.
    pub deadline: Option<Instant>,
    /// Host calls made, for reading the clock every [`DEADLINE_EVERY`] of them.
    calls: u32,
    /// The growth of linear memory being attempted: `(desired, the module's maximum)`.
    growing: Option<(usize, Option<usize>)>,
    fds: Vec<Option<Fd>>,
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    rng: blake3::OutputReader,
    /// Fuel burned when the current host call began.
    fuel_now: u64,
    /// Virtual nanoseconds the guest has slept.
    slept_ns: u64,
    /// Fuel the run's earlier segments used (its monotonic clock counts it).
    fuel_before: u64,
    /// Whether the current host call saved a checkpoint, which ends the segment.
    checkpointed: bool,
    /// How the run pauses when throttled, once it runs under a throttle.
    pub pausing: Option<Pausing>,
}

/// A run's side of [`Throttle`]: when it last went on, and the time it spent paused, which
/// the watchdog adds to the wall-clock deadline as this host does to its own.
pub struct Pausing {
    /// The sandbox's throttle.
    pub throttle: Arc<Throttle>,
    /// When the task last started or went on after a pause.
    pub resumed: Instant,
    /// The time paused so far (shared with the watchdog).
    pub paused: Arc<Paused>,
}

impl Host {
    /// The guest asked to pause (the rewrite's `pause` import): rests as the throttle says,
    /// and moves the deadline on by the time rested.
    pub fn pause(&mut self) {
        let Some(p) = &mut self.pausing else { return };
        let ran = p.resumed.elapsed();
        let rested = p.paused.during(|| p.throttle.pause(ran));
        p.resumed = Instant::now();
        if let Some(deadline) = &mut self.deadline {
            *deadline += rested;
        }
    }
}

/// The table elements a guest may grow a table to.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for Host {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit {
            return Err(wasmtime::Error::new(Stop::MemoryLimit));
        }
        self.growing = Some((desired, maximum));
        Ok(true)
    }

    /// A growth the guest may make failed. Past the module's own maximum (or its type's,
    /// checked before [`Self::memory_growing`] is asked) it fails on every machine, and
    /// `memory.grow` returns -1 to the guest; otherwise the machine lacked the memory, and
    /// the run is the runner's fault, not a result.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        match self.growing.take() {
            Some((desired, maximum)) if maximum.is_none_or(|m| desired <= m) => Err(
                wasmtime::Error::new(Stop::RunnerMemory(format!("{error:#}"))),
            ),
            _ => Ok(()),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(Stop::TableLimit));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        // The guest's memory and the sandbox's interrupt flag.
        2
    }
}

impl Host {
    /// The state of a task about to start.
    pub fn new(
        mut vfs: Vfs,
        argv: impl IntoIterator<Item = String>,
        env: impl IntoIterator<Item = (String, String)>,
        seed: u64,
        fuel_limit: u64,
        memory_limit: u64,
    ) -> Self {
        let nul = |s: String| {
            let mut v = s.into_bytes();
            v.push(0);
            v
        };
        let mut rng = blake3::Hasher::new_derive_key("helio random_get stream v1");
        rng.update(&seed.to_le_bytes());
        // The preopens are descriptors like any other: the guest may close them.
        vfs.node_mut(IN_ROOT).open += 1;
        vfs.node_mut(OUT_ROOT).open += 1;
        Host {
            memory: None,
            fuel: None,
            vfs,
            stdout: Capture::new(STDOUT_CAP),
            stderr: Capture::new(STDERR_CAP),
            fuel_limit,
            memory_limit,
            deadline: None,
            pausing: None,
            calls: 0,
            growing: None,
            fds: vec![
                Some(Fd::Stdin),
                Some(Fd::Stdout),
                Some(Fd::Stderr),
                Some(Fd::Dir {
                    node: IN_ROOT,
                    preopen: Some("/in"),
                }),
                Some(Fd::Dir {
                    node: OUT_ROOT,
                    preopen: Some("/out"),
                }),
            ],
            args: argv.into_iter().map(nul).collect(),
            env: env
                .into_iter()
                .map(|(k, v)| nul(format!("{k}={v}")))
                .collect(),
            rng: rng.finalize_xof(),
            fuel_now: 0,
            slept_ns: 0,
            fuel_before: 0,
            checkpointed: false,
        }
        .with_ckpt_preopen()
    }

    /// Opens `/ckpt` as the descriptor after `/out`, in a task that may checkpoint.
    fn with_ckpt_preopen(mut self) -> Self {
        if let Some(root) = self.vfs.ckpt_root() {
            self.vfs.node_mut(root).open += 1;
            self.fds.push(Some(Fd::Dir {
                node: root,
                preopen: Some("/ckpt"),
            }));
        }
        self
    }

    /// Carries on a run from the segment before: its fuel used, virtual clock, random stream
    /// and standard streams (the checkpoint's files are put back in the [`Vfs`]).
    pub fn resume(&mut self, fuel_used: u64, slept_ns: u64, random_drawn: u64) {
        self.fuel_before = fuel_used;
        self.fuel_now = fuel_used;
        self.slept_ns = slept_ns;
        self.rng.set_position(random_drawn);
    }

    /// The virtual clock's sleep and the random stream's position, for a checkpoint.
    pub fn positions(&self) -> (u64, u64) {
        (self.slept_ns, self.rng.position())
    }

    /// Sets the standard streams captured so far (from a checkpoint).
    pub fn set_captured(&mut self, stdout: &[u8], stderr: &[u8]) {
        self.stdout.bytes.clear();
        self.stdout.push(stdout);
        self.stderr.bytes.clear();
        self.stderr.push(stderr);
    }

    /// Whether the task's `wall_seconds` have run out (never before it runs).
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn monotonic_ns(&self) -> u64 {
        self.fuel_now.saturating_add(self.slept_ns)
    }

    fn clock_now(&self, id: i32) -> Result<u64, Errno> {
        match id {
            0 => Ok(REALTIME_EPOCH_NS),
            1..=3 => Ok(self.monotonic_ns()),
            _ => Err(Errno::Inval),
        }
    }

    fn fd(&self, fd: i32) -> Result<&Fd, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get(i))
            .and_then(|f| f.as_ref())
            .ok_or(Errno::Badf)
    }

    fn fd_mut(&mut self, fd: i32) -> Result<&mut Fd, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get_mut(i))
            .and_then(|f| f.as_mut())
            .ok_or(Errno::Badf)
    }

    fn dir_fd(&self, fd: i32) -> Result<NodeId, Errno> {
        match self.fd(fd)? {
            Fd::Dir { node, .. } => Ok(*node),
            _ => Err(Errno::Notdir),
        }
    }

    /// Gives `fd` the lowest free number; the node it names counts it as open.
    fn insert_fd(&mut self, fd: Fd) -> Result<i32, Errno> {
        let free = self.fds.iter().position(|f| f.is_none());
        if free.is_none() && self.fds.len() >= MAX_FDS {
            return Err(Errno::Mfile);
        }
        if let Fd::File { node, .. } | Fd::Dir { node, .. } = &fd {
            self.vfs.node_mut(*node).open += 1;
        }
        Ok(match free {
            Some(i) => {
                self.fds[i] = Some(fd);
                i as i32
            }
            None => {
                self.fds.push(Some(fd));
                self.fds.len() as i32 - 1
            }
        })
    }

    fn close_fd(&mut self, fd: i32) -> Result<(), Errno> {
        self.fd(fd)?;
        let old = self.fds[fd as usize].take();
        if let Some(Fd::File { node, .. } | Fd::Dir { node, .. }) = old {
            self.vfs.node_mut(node).open -= 1;
            self.vfs.release_if_dead(node);
        }
        Ok(())
    }
}

/// What a host function's body returns: bytes moved (for fuel), an errno for the guest, or
/// a reason to stop the guest.
enum Fail {
    Errno(Errno),
    Stop(wasmtime::Error),
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Self {
        Fail::Errno(e)
    }
}

impl From<WriteError> for Fail {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Errno(e) => Fail::Errno(e),
            WriteError::Overflow(o) => Fail::Stop(wasmtime::Error::new(Stop::Output(o))),
            WriteError::Budget(why) => Fail::Stop(wasmtime::Error::new(Stop::HostBudget(why))),
            WriteError::Io(e) => Fail::Stop(wasmtime::Error::msg(format!(
                "cannot write /out to disk: {e}"
            ))),
        }
    }
}

type HostResult = Result<u64, Fail>;

/// Guest linear memory, with bounds-checked access that fails with `EFAULT`.
struct Mem<'a> {
    bytes: &'a mut [u8],
    /// Bytes of paths copied out, for the call's price.
    copied: Cell<u64>,
}

impl Mem<'_> {
    fn slice(&self, ptr: i32, len: u32) -> Result<&[u8], Errno> {
        let start = ptr as u32 as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
        self.bytes.get(start..end).ok_or(Errno::Fault)
    }

    fn slice_mut(&mut self, ptr: i32, len: u32) -> Result<&mut [u8], Errno> {
        let start = ptr as u32 as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
        self.bytes.get_mut(start..end).ok_or(Errno::Fault)
    }

    fn read_u32(&self, ptr: i32) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.slice(ptr, 4)?.try_into().unwrap()))
    }

    fn read_u64(&self, ptr: i32) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.slice(ptr, 8)?.try_into().unwrap()))
    }

    fn put(&mut self, ptr: i32, bytes: &[u8]) -> Result<(), Errno> {
        self.slice_mut(ptr, bytes.len() as u32)?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn put_u32(&mut self, ptr: i32, v: u32) -> Result<(), Errno> {
        self.put(ptr, &v.to_le_bytes())
    }

    fn put_u64(&mut self, ptr: i32, v: u64) -> Result<(), Errno> {
        self.put(ptr, &v.to_le_bytes())
    }

    /// A path argument, refused with `NAMETOOLONG` before it is copied if it is longer than
    /// any path the file system can hold.
    fn path(&self, ptr: i32, len: i32) -> Result<String, Errno> {
        if len as u32 as usize > crate::vfs::MAX_PATH_BYTES {
            return Err(Errno::Nametoolong);
        }
        let bytes = self.slice(ptr, len as u32)?;
        self.copied.set(self.copied.get() + bytes.len() as u64);
        let text = std::str::from_utf8(bytes).map_err(|_| Errno::Ilseq)?;
        if text.contains('\0') {
            return Err(Errno::Inval);
        }
        Ok(text.to_string())
    }

    /// The `(ptr, len)` pairs of an iovec array of at most [`MAX_IOVS`] entries.
    fn iovs(&self, ptr: i32, count: i32) -> Result<Vec<(i32, u32)>, Errno> {
        let count = u32::try_from(count).map_err(|_| Errno::Inval)?;
        if count > MAX_IOVS {
            return Err(Errno::Inval);
        }
        let raw = self.slice(ptr, count.checked_mul(8).ok_or(Errno::Fault)?)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| {
                (
                    i32::from_le_bytes(c[0..4].try_into().unwrap()),
                    u32::from_le_bytes(c[4..8].try_into().unwrap()),
                )
            })
            .collect())
    }

    /// Copies the guest's iovecs out (for writes).
    fn gather(&self, ptr: i32, count: i32) -> Result<Vec<&[u8]>, Errno> {
        self.iovs(ptr, count)?
            .into_iter()
            .map(|(p, l)| self.slice(p, l))
            .collect()
    }

    /// Copies `src` into the guest's iovecs (for reads); returns the bytes copied.
    fn scatter(&mut self, ptr: i32, count: i32, mut src: &[u8]) -> Result<u64, Errno> {
        let mut copied = 0u64;
        for (p, l) in self.iovs(ptr, count)? {
            if src.is_empty() {
                break;
            }
            let n = src.len().min(l as usize);
            self.slice_mut(p, n as u32)?.copy_from_slice(&src[..n]);
            src = &src[n..];
            copied += n as u64;
        }
        Ok(copied)
    }
}

/// Takes `cost` fuel from the guest and returns the fuel left, or stops the guest with
/// `out_of_fuel`.
fn charge(caller: &mut Caller<'_, Host>, cost: u64) -> wasmtime::Result<i64> {
    let Some(global) = caller.data().fuel else {
        return Err(Trap::OutOfFuel.into());
    };
    let left = global.get(&mut *caller).i64().unwrap_or(0);
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    if left < cost {
        global.set(&mut *caller, Val::I64(0))?;
        return Err(Trap::OutOfFuel.into());
    }
    global.set(&mut *caller, Val::I64(left - cost))?;
    Ok(left - cost)
}

/// Runs one host function body with the guest's memory and the host state, and turns its
/// result into the errno the guest sees or the error that stops it.
fn call(
    caller: &mut Caller<'_, Host>,
    body: impl FnOnce(&mut Mem<'_>, &mut Host) -> HostResult,
) -> wasmtime::Result<i32> {
    call_priced(caller, 0, body)
}

/// [`call`], charging `upfront` fuel (work the arguments ask for) before the body runs. What
/// the body then did (bytes moved, steps taken) is charged after it, whether it succeeded or
/// failed; the work one body can do is bounded, so charging after it is exact and safe.
fn call_priced(
    caller: &mut Caller<'_, Host>,
    upfront: u64,
    body: impl FnOnce(&mut Mem<'_>, &mut Host) -> HostResult,
) -> wasmtime::Result<i32> {
    let host = caller.data_mut();
    host.calls = host.calls.wrapping_add(1);
    if host.calls.is_multiple_of(DEADLINE_EVERY) && host.past_deadline() {
        return Err(Trap::Interrupt.into());
    }
    let left = charge(caller, HOST_CALL_FUEL.saturating_add(upfront))?;
    let consumed = caller.data().fuel_limit.saturating_sub(left as u64);
    let memory = match caller.data().memory {
        Some(m) => m,
        None => {
            let Some(m) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
                return Ok(Errno::Fault as i32);
            };
            caller.data_mut().memory = Some(m);
            m
        }
    };
    let (bytes, host) = memory.data_and_store_mut(&mut *caller);
    host.fuel_now = host.fuel_before.saturating_add(consumed);
    let mut mem = Mem {
        bytes,
        copied: Cell::new(0),
    };
    let result = body(&mut mem, host);
    let work =
        host.vfs.take_work().saturating_mul(STEP_FUEL) + mem.copied.get() / HOST_BYTES_PER_FUEL;
    let (cost, answer) = match result {
        Ok(moved) => ((moved / HOST_BYTES_PER_FUEL).saturating_add(work), 0),
        Err(Fail::Errno(e)) => (work, e as i32),
        Err(Fail::Stop(e)) => return Err(e),
    };
    if cost > 0 {
        charge(caller, cost)?;
    }
    if caller.data().checkpointed {
        // After the call is paid for: the fuel left is where the next segment starts.
        return Err(wasmtime::Error::new(Stop::Checkpoint));
    }
    Ok(answer)
}

/// The WASI file type of a node.
fn filetype(kind: &Kind) -> u8 {
    match kind {
        Kind::Dir { .. } => FILETYPE_DIR,
        Kind::File { .. } => FILETYPE_FILE,
        Kind::Symlink { .. } => FILETYPE_SYMLINK,
    }
}

fn filestat(vfs: &Vfs, node: NodeId) -> [u8; 64] {
    let n = vfs.node(node);
    stat_bytes(
        1,
        crate::vfs::Node::ino(node),
        filetype(&n.kind),
        n.size(),
        n.times,
    )
}

fn stat_bytes(dev: u64, ino: u64, filetype: u8, size: u64, times: [u64; 2]) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&dev.to_le_bytes());
    b[8..16].copy_from_slice(&ino.to_le_bytes());
    b[16] = filetype;
    b[24..32].copy_from_slice(&1u64.to_le_bytes());
    b[32..40].copy_from_slice(&size.to_le_bytes());
    b[40..48].copy_from_slice(&times[0].to_le_bytes());
    b[48..56].copy_from_slice(&times[1].to_le_bytes());
    b[56..64].copy_from_slice(&times[1].to_le_bytes());
    b
}

fn fd_filestat(host: &Host, fd: i32) -> Result<[u8; 64], Errno> {
    Ok(match host.fd(fd)? {
        Fd::Stdin | Fd::Stdout | Fd::Stderr => {
            stat_bytes(0, 0, FILETYPE_CHAR, 0, [REALTIME_EPOCH_NS; 2])
        }
        Fd::Dir { node, .. } | Fd::File { node, .. } => filestat(&host.vfs, *node),
    })
}

fn set_times(host: &mut Host, node: NodeId, atim: i64, mtim: i64, flags: i32) -> HostResult {
    if (flags & FST_ATIM != 0 && flags & FST_ATIM_NOW != 0)
        || (flags & FST_MTIM != 0 && flags & FST_MTIM_NOW != 0)
    {
        return Err(Errno::Inval.into());
    }
    let now = REALTIME_EPOCH_NS;
    let n = host.vfs.node_mut(node);
    if !n.writable {
        return Err(Errno::Rofs.into());
    }
    if flags & FST_ATIM != 0 {
        n.times[0] = atim as u64;
    } else if flags & FST_ATIM_NOW != 0 {
        n.times[0] = now;
    }
    if flags & FST_MTIM != 0 {
        n.times[1] = mtim as u64;
    } else if flags & FST_MTIM_NOW != 0 {
        n.times[1] = now;
    }
    Ok(0)
}

/// The functions a module may import from [`MODULE`]: all of preview 1.
pub const FUNCTIONS: &[&str] = helio_sdk::WASI_FUNCTIONS;

/// Adds every `wasi_snapshot_preview1` function to `linker`.
pub fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    add_args_env_clock_random(linker)?;
    add_fd(linker)?;
    add_fd_data(linker)?;
    add_path(linker)?;
    add_path_changes(linker)?;
    add_proc_poll_sock(linker)?;
    // Not WASI: the one import the module rewrite adds, for pausing a throttled task.
    linker.func_wrap(
        crate::instrument::PAUSE_MODULE,
        crate::instrument::PAUSE_NAME,
        |mut caller: Caller<'_, Host>| caller.data_mut().pause(),
    )?;
    Ok(())
}
