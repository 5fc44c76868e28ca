//! Random sequences of WASI calls with random arguments, made through the real host ABI by
//! generated modules, as a hostile guest would. A fixed list of seeds, so it is the same test
//! on every run. Each sequence must end as a task may end (never a panic or a runner fault),
//! end the same way twice, touch no host path, and keep the host memory the guest's files
//! hold within the declared outputs and the host budget.

use helio_runner::{Sandbox, SandboxConfig};
use helio_sdk::{Blake3Hash, Name, TaskManifest};
use serde_json::json;

/// Every preview 1 function but `proc_exit`, with its parameters: `i` is i32, `I` is i64.
const FUNCTIONS: &[(&str, &str)] = &[
    ("args_get", "ii"),
    ("args_sizes_get", "ii"),
    ("environ_get", "ii"),
    ("environ_sizes_get", "ii"),
    ("clock_res_get", "ii"),
    ("clock_time_get", "iIi"),
    ("fd_advise", "iIIi"),
    ("fd_allocate", "iII"),
    ("fd_close", "i"),
    ("fd_datasync", "i"),
    ("fd_fdstat_get", "ii"),
    ("fd_fdstat_set_flags", "ii"),
    ("fd_fdstat_set_rights", "iII"),
    ("fd_filestat_get", "ii"),
    ("fd_filestat_set_size", "iI"),
    ("fd_filestat_set_times", "iIIi"),
    ("fd_pread", "iiiIi"),
    ("fd_prestat_get", "ii"),
    ("fd_prestat_dir_name", "iii"),
    ("fd_pwrite", "iiiIi"),
    ("fd_read", "iiii"),
    ("fd_readdir", "iiiIi"),
    ("fd_renumber", "ii"),
    ("fd_seek", "iIii"),
    ("fd_sync", "i"),
    ("fd_tell", "ii"),
    ("fd_write", "iiii"),
    ("path_create_directory", "iii"),
    ("path_filestat_get", "iiiii"),
    ("path_filestat_set_times", "iiiiIIi"),
    ("path_link", "iiiiiii"),
    ("path_open", "iiiiiIIii"),
    ("path_readlink", "iiiiii"),
    ("path_remove_directory", "iii"),
    ("path_rename", "iiiiii"),
    ("path_symlink", "iiiii"),
    ("path_unlink_file", "iii"),
    ("poll_oneoff", "iiii"),
    ("proc_raise", "i"),
    ("sched_yield", ""),
    ("random_get", "ii"),
    ("sock_accept", "iii"),
    ("sock_recv", "iiiiii"),
    ("sock_send", "iiiii"),
    ("sock_shutdown", "ii"),
];

/// Where the data segment puts the strings, iovecs and subscriptions arguments point at.
const POOL: &[(i32, &str)] = &[
    (0, "a"),
    (16, "b/c"),
    (32, "../x"),
    (48, "/etc/passwd"),
    (300, "a/../../.."),
    (320, "result.bin"),
    (340, "in.txt"),
    (360, "l/l/l/l/a"),
    (400, "."),
];

/// Where the canary's absolute host path goes.
const CANARY_AT: i32 = 512;

/// The i32 arguments a call draws from: descriptors, pool offsets, lengths and edges.
const I32S: &[i32] = &[
    0,
    1,
    2,
    3,
    3,
    4,
    4,
    4,
    5,
    6,
    7,
    9,
    -1,
    16,
    32,
    48,
    300,
    320,
    320,
    340,
    360,
    400,
    512,
    1024,
    2048,
    8192,
    10,
    100,
    255,
    256,
    4096,
    4097,
    65535,
    131071,
    131072,
    1 << 20,
    i32::MAX,
    i32::MIN,
];

const I64S: &[i64] = &[0, 1, -1, 7, 4000, 1 << 20, 1 << 40, i64::MAX, i64::MIN];

/// A deterministic stream of choices.
struct Draw(blake3::OutputReader);

impl Draw {
    fn new(seed: u64) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"helio wasi fuzz");
        h.update(&seed.to_le_bytes());
        Draw(h.finalize_xof())
    }

    fn below(&mut self, n: usize) -> usize {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        (u64::from_le_bytes(b) % n as u64) as usize
    }

    fn i32(&mut self) -> i32 {
        match self.below(8) {
            0 => self.below(1 << 17) as i32,
            _ => I32S[self.below(I32S.len())],
        }
    }

    fn i64(&mut self) -> i64 {
        I64S[self.below(I64S.len())]
    }
}

/// A module making `calls` random calls (the same ones for the same seed).
fn module(seed: u64, calls: usize, canary: &str) -> Vec<u8> {
    let mut d = Draw::new(seed);
    let mut wat = String::from("(module\n");
    for (name, params) in FUNCTIONS {
        let params: String = params
            .chars()
            .map(|c| if c == 'i' { " i32" } else { " i64" })
            .collect();
        wat += &format!(
            "(import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param{params}) (result i32)))\n"
        );
    }
    wat += "(memory (export \"memory\") 2)\n";
    for (at, text) in POOL {
        wat += &format!("(data (i32.const {at}) \"{text}\")\n");
    }
    wat += &format!("(data (i32.const {CANARY_AT}) \"{canary}\")\n");
    // Two iovec arrays: in bounds, and one entry running off the end of memory.
    wat += "(data (i32.const 1024) \"\\00\\08\\00\\00\\10\\00\\00\\00\\00\\10\\00\\00\\64\\00\\00\\00\")\n";
    wat += "(data (i32.const 2048) \"\\00\\08\\00\\00\\10\\00\\00\\00\\00\\00\\02\\00\\88\\13\\00\\00\")\n";
    // Random bytes for subscriptions and whatever else points here.
    let mut noise = [0u8; 4096];
    d.0.fill(&mut noise);
    let escaped: String = noise.iter().map(|b| format!("\\{b:02x}")).collect();
    wat += &format!("(data (i32.const 8192) \"{escaped}\")\n");
    wat += "(func (export \"_start\")\n";
    for _ in 0..calls {
        let (name, params) = FUNCTIONS[d.below(FUNCTIONS.len())];
        let args: String = params
            .chars()
            .map(|c| {
                if c == 'i' {
                    format!(" (i32.const {})", d.i32())
                } else {
                    format!(" (i64.const {})", d.i64())
                }
            })
            .collect();
        wat += &format!("(drop (call ${name}{args}))\n");
    }
    wat += "))";
    wat::parse_str(&wat).expect("the generated module parses")
}

#[test]
fn random_wasi_calls_end_as_a_task_may_and_touch_nothing_outside() {
    let host = tempfile::tempdir().unwrap();
    let canary = host.path().join("canary");
    std::fs::write(&canary, b"untouched").unwrap();
    let canary_path = canary.to_str().unwrap().to_string();
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let max_bytes = 20_000u64;
    let mut outcomes = std::collections::BTreeMap::new();
    for seed in 0..120 {
        let bytes = module(seed, 400, &canary_path);
        let hash = Blake3Hash::of(&bytes);
        let task = TaskManifest::from_value(json!({
            "schema_version": 1,
            "module": { "uri": "m.wasm", "blake3": hash.to_string() },
            "inputs": [{ "name": "in.txt", "uri": "in.txt",
                         "blake3": Blake3Hash::of(b"input bytes").to_string() }],
            "outputs": [{ "name": "result.bin", "max_bytes": max_bytes, "optional": true }],
            "limits": { "fuel": 400_000_000u64, "wall_seconds": 60 }
        }))
        .unwrap();
        let input = || {
            vec![(
                Name::parse("in.txt").unwrap(),
                b"input bytes".to_vec().into(),
            )]
        };
        let prepared = sandbox.prepare(&hash, &bytes).unwrap();
        let first = sandbox
            .run(&prepared, &task, input())
            .unwrap_or_else(|e| panic!("seed {seed}: the runner failed: {e}"));
        let again = sandbox.run(&prepared, &task, input()).unwrap();
        let outcome = serde_json::to_value(&first.report.outcome).unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            [
                "exited",
                "out_of_fuel",
                "memory_limit",
                "contract_violation"
            ]
            .contains(&outcome.as_str()),
            "seed {seed}: {:?}",
            first.report.outcome
        );
        assert_eq!(first.report.digest, again.report.digest, "seed {seed}");
        assert!(
            first.host_peak_bytes <= max_bytes + helio_sandbox::META_BUDGET,
            "seed {seed}: the guest's files held {} bytes",
            first.host_peak_bytes
        );
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    assert_eq!(std::fs::read(&canary).unwrap(), b"untouched");
    let listed: Vec<_> = std::fs::read_dir(host.path()).unwrap().collect();
    assert_eq!(listed.len(), 1, "nothing new beside the canary");
    // The sequences reach more than one ending: they are not all cut short at once.
    assert!(outcomes.len() >= 2, "{outcomes:?}");
}
