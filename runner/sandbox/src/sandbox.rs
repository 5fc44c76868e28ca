//! The sandbox: one wasmtime [`Engine`] configured for Helio's determinism profile, the
//! compiled-module caches, and [`Sandbox::run`], which turns a task into a [`RunOutput`].

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helio_sdk::{
    Blake3Hash, DETERMINISM_PROFILE, Name, Outcome, OutputRecord, RunReport, TaskManifest,
};
use wasmtime::{
    Config, Enabled, Engine, ExternType, Global, InstanceAllocationStrategy, InstancePre, Linker,
    Memory, Module, OptLevel, PoolingAllocationConfig, Store, Trap, Val,
};

use crate::Rejection;
use crate::bounds::CompileBounds;
use crate::cache::DiskCache;
use crate::checkpoint::{self, Checkpoint};
use crate::instrument::{self, FUEL_EXPORT, INTERRUPT_EXPORT, Pause, STOP_EXPORT};
use crate::nan::NanMode;
use crate::throttle::{Paused, Throttle};
use crate::vfs::{Data, Kind, Vfs};
use crate::wasi::{self, Host, Pausing, Stop};
use crate::watchdog::{Progress, Watchdog};

/// Linear memory a pooled slot keeps resident between tasks (reset with memset).
const KEEP_RESIDENT: usize = 4 << 20;
/// The guest's stack: the same on every runner, so that deep recursion fails the same way.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// How to build a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Where compiled modules are kept between runs; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Instance slots of the pooling allocator; 0 allocates on demand instead. Pooling pays
    /// when many short tasks run one after another (see BENCHMARKS.md).
    pub pool_slots: u32,
    /// How NaNs are made deterministic.
    pub nan: NanMode,
    /// Whether running tasks can be paused (by [`Sandbox::throttle`]): the volunteer's CPU
    /// cap and holds need it; it costs float kernels speed, so it is off by default.
    pub pause: Pause,
    /// The most a module may ask of the compiler.
    pub bounds: CompileBounds,
    /// The disk limit the compiled modules are kept within (with the runner's other
    /// caches), if any.
    pub disk_limit: Option<crate::disk_limit::DiskLimit>,
}

/// A module compiled, checked against the contract, and ready to instantiate quickly.
pub struct Prepared {
    pre: InstancePre<Host>,
}

/// One run's report together with the bytes it produced.
#[derive(Debug)]
pub struct RunOutput {
    /// What the runner reports (outcome, fuel, digest, ...).
    pub report: RunReport,
    /// The declared outputs that exist, in name order.
    pub outputs: Vec<OutputFile>,
    /// Captured standard output (at most 1 MiB).
    pub stdout: Vec<u8>,
    /// Captured standard error (at most 64 KiB).
    pub stderr: Vec<u8>,
    /// The most host memory the guest's files, nodes, names and symlink targets held at once
    /// (never more than the declared outputs' `max_bytes` and the host budget together).
    pub host_peak_bytes: u64,
}

/// One declared output as the run left it: in memory, or in an unlinked temporary file when
/// it outgrew what the sandbox keeps in memory.
#[derive(Debug)]
pub struct OutputFile {
    /// The output's declared name.
    pub name: Name,
    data: Data,
}

impl OutputFile {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.data.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes its bytes to `sink`.
    pub fn copy_to(&self, sink: &mut impl std::io::Write) -> std::io::Result<()> {
        self.data.for_each_block(|block| sink.write_all(block))
    }

    /// Its bytes, all in memory.
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len() as usize);
        self.copy_to(&mut out)?;
        Ok(out)
    }

    /// The BLAKE3 of its bytes.
    pub fn blake3(&self) -> std::io::Result<Blake3Hash> {
        let mut hasher = blake3::Hasher::new();
        self.data.for_each_block(|block| {
            hasher.update(block);
            Ok(())
        })?;
        Ok(hasher.finalize().into())
    }
}

/// Prepared modules a sandbox keeps in memory: at most this many, the most recently used
/// (compiled code takes memory, and a scheduler prepares every module submitted to it).
pub const PREPARED_HELD: usize = 64;

/// Prepared modules by hash, each with when it was last used.
#[derive(Default)]
struct PreparedCache {
    map: HashMap<Blake3Hash, (Arc<Prepared>, u64)>,
    tick: u64,
}

impl PreparedCache {
    fn get(&mut self, hash: &Blake3Hash) -> Option<Arc<Prepared>> {
        self.tick += 1;
        let (prepared, used) = self.map.get_mut(hash)?;
        *used = self.tick;
        Some(prepared.clone())
    }

    /// Keeps `prepared`, dropping the least recently used past [`PREPARED_HELD`] (a run
    /// that holds one keeps it alive until it ends).
    fn put(&mut self, hash: Blake3Hash, prepared: Arc<Prepared>) {
        self.tick += 1;
        self.map.insert(hash, (prepared, self.tick));
        if self.map.len() > PREPARED_HELD
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(h, _)| *h)
        {
            self.map.remove(&oldest);
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Runs tasks. One per process is plenty: it is `Sync`, and tasks may run on many threads.
pub struct Sandbox {
    nan: NanMode,
    pause: Pause,
    bounds: CompileBounds,
    engine: Engine,
    linker: Linker<Host>,
    disk: Option<DiskCache>,
    prepared: Mutex<PreparedCache>,
    watchdog: Arc<Watchdog>,
    throttle: Arc<Throttle>,
    /// The threads wasmtime compiles functions on ([`CompileBounds::threads`]).
    compiler: rayon::ThreadPool,
}

/// The wasmtime configuration of the determinism profile.
pub fn engine_config(pool_slots: u32, nan: NanMode) -> Config {
    let mut config = Config::new();
    // Fuel and the wall-clock deadline are checked by code the module rewrite inserts
    // (`instrument`), not by wasmtime's fuel or epochs: their checks' calls into the runtime
    // cost float code 33-41% (BENCHMARKS.md).
    config
        .cranelift_nan_canonicalization(nan == NanMode::EveryOperation)
        .relaxed_simd_deterministic(true)
        .shared_memory(false)
        // Helio tasks are wasm32: sizes of bulk operations, which fuel meters, are `i32`.
        .wasm_memory64(false)
        .max_wasm_stack(MAX_WASM_STACK)
        .cranelift_opt_level(OptLevel::Speed);
    if pool_slots > 0 {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(pool_slots)
            // Each instance has the guest's memory and the one-page interrupt memory.
            .total_memories(2 * pool_slots)
            .total_tables(pool_slots)
            // Tasks run on the thread's own stack, not fibers; the default keeps 1,000 fiber
            // stacks, each with a guard page of its own mapping, which alone took 64 runners
            // in one process to the kernel's limit of 65,530 mappings.
            .total_stacks(pool_slots)
            .max_memories_per_module(2)
            .max_tables_per_module(1)
            .max_memory_size(1 << 32)
            // Reset only the pages a task dirtied, with memset, where the kernel can say
            // which (PAGEMAP_SCAN, Linux 6.7+): madvise would shoot down the TLBs of every
            // other thread running tasks.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Sandbox {
    /// Builds the engine and starts the wall-clock watchdog.
    pub fn new(config: SandboxConfig) -> Result<Self, Rejection> {
        let engine = Engine::new(&engine_config(config.pool_slots, config.nan))
            .map_err(|e| Rejection::Sandbox(format!("cannot configure wasmtime: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)
            .map_err(|e| Rejection::Sandbox(format!("cannot define WASI: {e}")))?;
        let disk = match config.cache_dir {
            Some(dir) => Some(DiskCache::open(
                dir,
                &compatibility_key(&engine, config.nan, config.pause),
                config.disk_limit,
            )?),
            None => None,
        };
        let throttle = Arc::new(Throttle::default());
        let compiler = rayon::ThreadPoolBuilder::new()
            .num_threads(config.bounds.threads.max(1))
            .thread_name(|i| format!("helio-compile-{i}"))
            .build()
            .map_err(|e| Rejection::Sandbox(format!("cannot start the compile threads: {e}")))?;
        Ok(Sandbox {
            nan: config.nan,
            pause: config.pause,
            compiler,
            bounds: config.bounds,
            engine,
            linker,
            disk,
            prepared: Mutex::new(PreparedCache::default()),
            watchdog: Watchdog::start(throttle.clone()),
            throttle,
        })
    }

    /// The throttle its running tasks pause by, to set their duty cycle or suspend them:
    /// only a sandbox built with [`Pause::OnRequest`] has one.
    pub fn throttle(&self) -> Option<&Arc<Throttle>> {
        (self.pause == Pause::OnRequest).then_some(&self.throttle)
    }

    /// How many prepared modules it keeps in memory (at most [`PREPARED_HELD`]).
    pub fn prepared_held(&self) -> usize {
        self.prepared.lock().unwrap().len()
    }

    /// The wasmtime engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks `bytes` against `expected`, compiles them (or loads this runner's own compiled
    /// artifact from the disk cache), checks imports and exports against the contract, and
    /// prepares instantiation. Prepared modules are kept in memory by hash.
    pub fn prepare(&self, expected: &Blake3Hash, bytes: &[u8]) -> Result<Arc<Prepared>, Rejection> {
        let actual = Blake3Hash::of(bytes);
        if actual != *expected {
            return Err(Rejection::HashMismatch {
                what: "module".into(),
                expected: *expected,
                actual,
            });
        }
        if let Some(p) = self.prepared.lock().unwrap().get(expected) {
            return Ok(p);
        }
        let module = self.compile(expected, bytes)?;
        check_contract(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| Rejection::InvalidModule(format!("{e:#}")))?;
        let prepared = Arc::new(Prepared { pre });
        self.prepared
            .lock()
            .unwrap()
            .put(*expected, prepared.clone());
        Ok(prepared)
    }

    fn compile(&self, hash: &Blake3Hash, bytes: &[u8]) -> Result<Module, Rejection> {
        if let Some(disk) = &self.disk
            && let Some(module) = disk.load(&self.engine, hash)
        {
            return Ok(module);
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(Rejection::InvalidModule(
                "not a WebAssembly binary (it does not start with \\0asm)".into(),
            ));
        }
        self.bounds.check(bytes).map_err(Rejection::InvalidModule)?;
        // Validate the module as written: the rewrite adds locals, globals and a memory that
        // an invalid module could otherwise reach. Both run on the compile pool, whose size
        // bounds the functions in flight.
        let module = self.compiler.install(|| {
            Module::validate(&self.engine, bytes)
                .map_err(|e| Rejection::InvalidModule(format!("{e:#}")))?;
            let code = instrument::instrument(bytes, self.nan, self.pause)
                .map_err(Rejection::InvalidModule)?;
            Module::from_binary(&self.engine, &code)
                .map_err(|e| Rejection::InvalidModule(format!("{e:#}")))
        })?;
        if let Some(disk) = &self.disk {
            // A cache that cannot be written only costs a compile next time.
            if let Err(e) = disk.store(hash, &module) {
                tracing::warn!(error = %e, "cannot write the compiled-module cache");
            }
        }
        Ok(module)
    }

    /// Runs `task` with its prepared module and verified inputs, start to finish.
    pub fn run(
        &self,
        prepared: &Prepared,
        task: &TaskManifest,
        inputs: Vec<(Name, Arc<[u8]>)>,
    ) -> Result<RunOutput, Rejection> {
        self.run_watched(prepared, task, inputs, None)
    }

    /// [`Sandbox::run`], publishing the fuel used to `progress` about ten times a second
    /// while the guest runs. Watching changes nothing in the result.
    pub fn run_watched(
        &self,
        prepared: &Prepared,
        task: &TaskManifest,
        inputs: Vec<(Name, Arc<[u8]>)>,
        progress: Option<Arc<Progress>>,
    ) -> Result<RunOutput, Rejection> {
        self.run_from(prepared, task, inputs, progress, Instant::now())
    }

    /// [`Sandbox::run_watched`] for a task whose preparation began at `started` (before its
    /// module was compiled): the report's `wall_ms` counts from then, so that compiling shows
    /// in it. `wall_seconds` bound the run itself; compiling is bounded by the compile bounds,
    /// so that the first run of a module on a slow machine does not time out where later
    /// runs would not.
    pub fn run_from(
        &self,
        prepared: &Prepared,
        task: &TaskManifest,
        inputs: Vec<(Name, Arc<[u8]>)>,
        progress: Option<Arc<Progress>>,
        started: Instant,
    ) -> Result<RunOutput, Rejection> {
        let run = Resumable {
            progress,
            started,
            ..Resumable::default()
        };
        match self.run_resumable(prepared, task, inputs, run)? {
            Segments::Ended(output) => Ok(output),
            Segments::Stopped(_) => unreachable!("nothing asked the run to stop"),
        }
    }

    /// Runs `task` segment by segment: from `run.resume` (a checkpoint's bytes) if given,
    /// handing each checkpoint the guest saves to `run.on_checkpoint`, which may stop the run
    /// there. Without checkpoints it is [`Sandbox::run_from`]. `wall_seconds` bound the time
    /// this call runs the task, whatever it ran before.
    pub fn run_resumable(
        &self,
        prepared: &Prepared,
        task: &TaskManifest,
        inputs: Vec<(Name, Arc<[u8]>)>,
        mut run: Resumable<'_>,
    ) -> Result<Segments, Rejection> {
        let deadline = Instant::now() + Duration::from_secs(task.limits.wall_seconds);
        let mut carried = match &run.resume {
            Some(bytes) => Some(Checkpoint::decode(bytes, task).map_err(Rejection::Checkpoint)?),
            None => None,
        };
        if let Some(p) = &run.progress {
            p.begin(task.limits.fuel);
        }
        loop {
            let mut host = host_for(task, inputs.clone());
            if let Some(c) = &carried {
                host.vfs
                    .restore(&c.out, &c.state)
                    .map_err(Rejection::Checkpoint)?;
                host.resume(c.fuel_used, c.slept_ns, c.random_drawn);
                host.set_captured(&c.stdout, &c.stderr);
            }
            let before = carried.as_ref().map_or(0, |c| c.fuel_used);
            let (result, consumed, host) =
                self.segment(prepared, task, host, (before, deadline), &run.progress);
            let saved = match result {
                Err(e) if matches!(e.downcast_ref::<Stop>(), Some(Stop::Checkpoint)) => {
                    let saved = carried.as_ref().map_or(0, |c| c.saved) + 1;
                    save(task, saved, before + consumed, &host.0)?
                }
                result => {
                    let outcome = match result {
                        Ok(()) => Outcome::Exited { exit_code: 0 },
                        Err(e) => classify(e, host.1)?,
                    };
                    let output = finish(task, outcome, before + consumed, host.0, run.started)?;
                    return Ok(Segments::Ended(output));
                }
            };
            let bytes = saved.encode();
            if (run.on_checkpoint)(&bytes).is_break() {
                return Ok(Segments::Stopped(bytes));
            }
            carried = Some(saved);
        }
    }

    /// Runs one segment of `task` in `host`, from fuel `before` used, until the guest ends or
    /// saves a checkpoint. Returns how it ended, the fuel it used, and the host with the
    /// instrumented module's stop code.
    fn segment(
        &self,
        prepared: &Prepared,
        task: &TaskManifest,
        host: Host,
        (before, deadline): (u64, Instant),
        progress: &Option<Arc<Progress>>,
    ) -> (wasmtime::Result<()>, u64, (Host, i32)) {
        let total = task.limits.fuel.min(i64::MAX as u64) as i64;
        let fuel_limit = total - before.min(total as u64) as i64;
        let mut store = Store::new(&self.engine, host);
        store.data_mut().fuel_limit = fuel_limit as u64;
        store.limiter(|h| h);
        let mut meter = None;
        let result = (|| {
            let instance = prepared.pre.instantiate(&mut store)?;
            let m = Meter {
                fuel: instance
                    .get_global(&mut store, FUEL_EXPORT)
                    .ok_or_else(|| wasmtime::format_err!("no fuel global"))?,
                stop: instance
                    .get_global(&mut store, STOP_EXPORT)
                    .ok_or_else(|| wasmtime::format_err!("no stop global"))?,
                interrupt: instance
                    .get_memory(&mut store, INTERRUPT_EXPORT)
                    .ok_or_else(|| wasmtime::format_err!("no interrupt memory"))?,
            };
            m.fuel.set(&mut store, Val::I64(fuel_limit))?;
            store.data_mut().fuel = Some(m.fuel);
            store.data_mut().memory = instance.get_memory(&mut store, "memory");
            store.data_mut().deadline = Some(deadline);
            let paused = Arc::new(Paused::default());
            store.data_mut().pausing = Some(Pausing {
                throttle: self.throttle.clone(),
                resumed: Instant::now(),
                paused: paused.clone(),
            });
            // The fuel left as the guest last told it, until it first does: all of it.
            let slot = instrument::PROGRESS_FUEL as usize;
            m.interrupt.data_mut(&mut store)[slot..slot + 8]
                .copy_from_slice(&fuel_limit.to_le_bytes());
            // Progress counts the whole run's fuel: what is left of this segment's is what is
            // left of the task's.
            let watched = progress.clone().map(|p| (p, total));
            let flag = m.interrupt.data_ptr(&store);
            meter = Some(m);
            // SAFETY: the interrupt memory is one page that cannot grow, only the inserted
            // checks read it, and the store that owns it outlives the guard, which is dropped
            // at the end of this closure.
            let _watch = unsafe { self.watchdog.watch(deadline, paused, flag, watched) };
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        })();
        let (left, stop) = match &meter {
            Some(m) => (
                m.fuel.get(&mut store).i64().unwrap_or(0),
                m.stop.get(&mut store).i32().unwrap_or(0),
            ),
            None => (fuel_limit, 0),
        };
        let consumed = (fuel_limit - left).clamp(0, fuel_limit) as u64;
        (result, consumed, (store.into_data(), stop))
    }
}

/// How [`Sandbox::run_resumable`] runs a task.
pub struct Resumable<'a> {
    /// Where the run's fuel used is published while it runs.
    pub progress: Option<Arc<Progress>>,
    /// When the task's preparation began (its report's `wall_ms` counts from then).
    pub started: Instant,
    /// The bytes of the checkpoint to resume from, if any.
    pub resume: Option<Vec<u8>>,
    /// Called with each checkpoint's bytes as the guest saves it: [`ControlFlow::Break`]
    /// stops the run there.
    pub on_checkpoint: OnCheckpoint<'a>,
}

/// What a run calls with each checkpoint's bytes; [`ControlFlow::Break`] stops it there.
pub type OnCheckpoint<'a> = Box<dyn FnMut(&[u8]) -> ControlFlow<()> + 'a>;

impl Default for Resumable<'_> {
    fn default() -> Self {
        Resumable {
            progress: None,
            started: Instant::now(),
            resume: None,
            on_checkpoint: Box::new(|_| ControlFlow::Continue(())),
        }
    }
}

/// How a run segment by segment ended.
#[derive(Debug)]
pub enum Segments {
    /// The task ended, with this result.
    Ended(RunOutput),
    /// It was stopped at this checkpoint (its bytes), to go on elsewhere or later.
    Stopped(Vec<u8>),
}

/// The checkpoint the guest in `host` saved: its `saved`th, with `fuel_used` in all.
fn save(
    task: &TaskManifest,
    saved: u32,
    fuel_used: u64,
    host: &Host,
) -> Result<Checkpoint, Rejection> {
    let unreadable = |e: std::io::Error| {
        Rejection::Sandbox(format!(
            "cannot read the checkpoint's files back from disk: {e}"
        ))
    };
    let state = host
        .vfs
        .ckpt_state()
        .map_err(unreadable)?
        .expect("a checkpoint is saved by making /ckpt/state");
    let (slept_ns, random_drawn) = host.positions();
    Ok(Checkpoint {
        task: checkpoint::task_key(task),
        saved,
        fuel_used,
        slept_ns,
        random_drawn,
        stdout: host.stdout.bytes.clone(),
        stderr: host.stderr.bytes.clone(),
        state,
        out: host.vfs.save_out().map_err(unreadable)?,
    })
}

/// The host state of a run of `task`: its `/in` and `/out`, arguments, environment, seed and
/// limits.
fn host_for(task: &TaskManifest, inputs: Vec<(Name, Arc<[u8]>)>) -> Host {
    let declared: BTreeMap<String, u64> = task
        .outputs
        .iter()
        .map(|o| (o.name.to_string(), o.max_bytes))
        .collect();
    let mut vfs = Vfs::new(
        inputs.into_iter().map(|(n, b)| (n.to_string(), b)),
        declared,
        wasi::REALTIME_EPOCH_NS,
    );
    if let Some(c) = task.checkpoint {
        vfs.add_ckpt(c.max_bytes);
    }
    let argv = std::iter::once(task.name.to_string()).chain(task.args.iter().cloned());
    Host::new(
        vfs,
        argv,
        task.env.clone(),
        task.seed,
        task.limits.fuel,
        task.limits.memory_bytes,
    )
}

/// A run's end as its report and outputs: the fuel charged for `outcome` (the whole budget
/// where it may differ between machines), and the declared outputs checked.
fn finish(
    task: &TaskManifest,
    mut outcome: Outcome,
    mut fuel_consumed: u64,
    host: Host,
    started: Instant,
) -> Result<RunOutput, Rejection> {
    if outcome == Outcome::OutOfFuel {
        fuel_consumed = task.limits.fuel;
    }
    if matches!(&outcome, Outcome::Trapped { trap } if trap == "stack_overflow") {
        // How deep the native stack goes differs between architectures, so the fuel at a
        // stack overflow does too. Charging the whole budget keeps the digest the same on
        // every runner.
        fuel_consumed = task.limits.fuel;
    }
    let host_peak_bytes = host.vfs.peak_bytes();
    let (outputs, violation) = collect_outputs(task, host.vfs);
    if outcome.is_success()
        && let Some(error) = violation
    {
        outcome = Outcome::ContractViolation { error };
    }
    let records = outputs
        .iter()
        .map(|o| {
            Ok(OutputRecord {
                name: o.name.clone(),
                bytes: o.len(),
                blake3: o.blake3()?,
            })
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| Rejection::Sandbox(format!("cannot read /out back from disk: {e}")))?;
    let report = RunReport::new(
        outcome,
        fuel_consumed,
        Blake3Hash::of(&host.stdout.bytes),
        records,
        started.elapsed().as_millis() as u64,
    );
    Ok(RunOutput {
        report,
        outputs,
        stdout: host.stdout.bytes,
        stderr: host.stderr.bytes,
        host_peak_bytes,
    })
}

/// The instrumented module's fuel and interrupt state, found after instantiation.
struct Meter {
    fuel: Global,
    stop: Global,
    interrupt: Memory,
}

/// Maps the error that ended a run to its outcome; `stop` is the instrumented module's
/// account of why an inserted check trapped. Anything not caused by the guest is a runner
/// fault, not an outcome.
fn classify(error: wasmtime::Error, stop: i32) -> Result<Outcome, Rejection> {
    if let Some(stop) = error.downcast_ref::<Stop>() {
        return Ok(match stop {
            Stop::RunnerMemory(_) => return Err(Rejection::Sandbox(stop.to_string())),
            Stop::Checkpoint => {
                return Err(Rejection::Sandbox(
                    "a checkpoint ended a segment outside the segment loop".into(),
                ));
            }
            Stop::Exit(code) => Outcome::Exited { exit_code: *code },
            Stop::Output(o) => Outcome::ContractViolation { error: o.0.clone() },
            Stop::MemoryLimit | Stop::HostBudget(_) => Outcome::MemoryLimit,
            Stop::TableLimit => Outcome::Trapped {
                trap: "table_limit".into(),
            },
        });
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return Ok(match trap {
            Trap::UnreachableCodeReached if stop == instrument::STOP_OUT_OF_FUEL => {
                Outcome::OutOfFuel
            }
            Trap::UnreachableCodeReached if stop == instrument::STOP_TIMEOUT => Outcome::Timeout,
            Trap::OutOfFuel => Outcome::OutOfFuel,
            Trap::Interrupt => Outcome::Timeout,
            other => Outcome::Trapped {
                trap: trap_name(other),
            },
        });
    }
    Err(Rejection::Sandbox(format!(
        "the run failed outside the guest: {error:#}"
    )))
}

/// A stable name for a trap, independent of wasmtime's wording.
fn trap_name(trap: &Trap) -> String {
    let name = match trap {
        Trap::StackOverflow => "stack_overflow",
        Trap::MemoryOutOfBounds => "memory_out_of_bounds",
        Trap::HeapMisaligned => "heap_misaligned",
        Trap::TableOutOfBounds => "table_out_of_bounds",
        Trap::IndirectCallToNull => "indirect_call_to_null",
        Trap::BadSignature => "bad_signature",
        Trap::IntegerOverflow => "integer_overflow",
        Trap::IntegerDivisionByZero => "integer_division_by_zero",
        Trap::BadConversionToInteger => "bad_conversion_to_integer",
        Trap::UnreachableCodeReached => "unreachable",
        Trap::NullReference => "null_reference",
        Trap::AllocationTooLarge => "allocation_too_large",
        other => return format!("{other:?}").to_lowercase(),
    };
    name.to_string()
}

/// Checks what the contract asks of a module: every import a known
/// `wasi_snapshot_preview1` function, a `_start` function and a `memory` export.
fn check_contract(module: &Module) -> Result<(), Rejection> {
    for import in module.imports() {
        let known = (import.module() == wasi::MODULE && wasi::FUNCTIONS.contains(&import.name()))
            || (import.module() == instrument::PAUSE_MODULE
                && import.name() == instrument::PAUSE_NAME);
        if !known || !matches!(import.ty(), ExternType::Func(_)) {
            return Err(Rejection::ForbiddenImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    let exports: HashMap<&str, ExternType> = module.exports().map(|e| (e.name(), e.ty())).collect();
    match exports.get("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
        _ => {
            return Err(Rejection::InvalidModule(
                "the module does not export a `_start` function taking and returning nothing (is it a WASI command?)"
                    .into(),
            ));
        }
    }
    if !matches!(exports.get("memory"), Some(ExternType::Memory(_))) {
        return Err(Rejection::InvalidModule(
            "the module does not export its `memory`".into(),
        ));
    }
    Ok(())
}

/// Takes the declared outputs out of `/out` without following links, and says what breaks
/// the contract (a missing required output, an undeclared entry, an output that is not a
/// regular file).
fn collect_outputs(task: &TaskManifest, vfs: Vfs) -> (Vec<OutputFile>, Option<String>) {
    let mut outputs = Vec::new();
    let mut violation = None;
    let mut present = Vec::new();
    for (name, kind) in vfs.into_out_entries() {
        let Some(spec) = task.output(&name) else {
            violation.get_or_insert(format!("/out/{name} is not a declared output"));
            continue;
        };
        present.push(name.clone());
        match kind {
            Kind::File { data, .. } => outputs.push(OutputFile {
                name: spec.name.clone(),
                data,
            }),
            Kind::Symlink { .. } => {
                violation.get_or_insert(format!("output {name:?} is a symbolic link, not a file"));
            }
            Kind::Dir { .. } => {
                violation.get_or_insert(format!("output {name:?} is a directory, not a file"));
            }
        }
    }
    for spec in &task.outputs {
        if !spec.optional && !present.iter().any(|p| p == spec.name.as_str()) {
            violation.get_or_insert(format!("output {:?} was not written", spec.name.as_str()));
        }
    }
    outputs.sort_by(|a, b| a.name.cmp(&b.name));
    (outputs, violation)
}

/// What a cached artifact must have been compiled for: this wasmtime build and its
/// settings, the determinism profile and the module rewrite.
fn compatibility_key(engine: &Engine, nan: NanMode, pause: Pause) -> String {
    struct Blake3Writer(blake3::Hasher);
    impl Hasher for Blake3Writer {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Blake3Writer(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(DETERMINISM_PROFILE.as_bytes());
    h.0.update(format!("{nan:?} {pause:?} rewrite {}", instrument::REWRITE_VERSION).as_bytes());
    h.0.finalize().to_hex()[..32].to_string()
}
