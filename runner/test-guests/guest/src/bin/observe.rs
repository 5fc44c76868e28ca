//! Reports everything a guest can observe of its host, for the determinism tests: clocks,
//! random numbers, NaN bit patterns, its arguments and environment, directory listings and
//! file metadata, and the clock after a long sleep. Writes the report to /out/report.txt.
// 0/0 is written out on purpose: it makes the NaN the guest observes.
#![allow(clippy::eq_op)]
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

fn main() {
    let mut r = String::new();
    let start = Instant::now();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    writeln!(r, "realtime {}", now.as_nanos()).unwrap();
    let mut random = [0u8; 16];
    assert_eq!(unsafe { random_get(random.as_mut_ptr(), random.len()) }, 0);
    writeln!(r, "random {random:02x?}").unwrap();
    let zero = black_box(0.0f64);
    let nans = [
        (zero / zero).to_bits(),
        (-(zero / zero)).to_bits(),
        (black_box(-1.0f64)).sqrt().to_bits(),
        (f64::INFINITY - black_box(f64::INFINITY)).to_bits(),
        ((black_box(-1.0f32)).sqrt() as f64).to_bits(),
    ];
    writeln!(r, "nan bits {nans:016x?}").unwrap();
    writeln!(r, "args {:?}", std::env::args().collect::<Vec<_>>()).unwrap();
    writeln!(r, "env {:?}", std::env::vars().collect::<Vec<_>>()).unwrap();
    writeln!(r, "cwd {:?}", std::env::current_dir().ok()).unwrap();
    std::fs::write("/out/scratch.txt", "x").unwrap();
    for (dir, fd) in [
        ("/in", helio_test_guest_bins::IN_FD),
        ("/out", helio_test_guest_bins::OUT_FD),
    ] {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let m = entry.metadata().unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            names.push(format!(
                "{name} len={} mtime={:?} atime={:?} filestat={:?}",
                m.len(),
                m.modified()
                    .ok()
                    .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_nanos()),
                m.accessed()
                    .ok()
                    .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_nanos()),
                helio_test_guest_bins::raw_filestat(fd, &name),
            ));
        }
        writeln!(r, "listing {dir} {names:?}").unwrap();
    }
    std::fs::remove_file("/out/scratch.txt").unwrap();
    std::thread::sleep(Duration::from_secs(3600));
    writeln!(
        r,
        "slept {:?}",
        start.elapsed() >= Duration::from_secs(3600)
    )
    .unwrap();
    writeln!(r, "monotonic {:?}", start.elapsed()).unwrap();
    std::fs::write("/out/report.txt", &r).unwrap();
    print!("{r}");
}
