//! `checkpointer TOTAL EVERY`: mixes TOTAL rounds of its random stream into one number,
//! saving a checkpoint every EVERY rounds, and prints the number. Each segment appends a line
//! to `/out/log.txt` and to standard output, and mixes in the monotonic clock at each save,
//! so a run resumed from a checkpoint gives the same result only if `/out`, the streams, the
//! clock and the random stream all go on where they were.
use std::fs::OpenOptions;
use std::io::Write;

use helio_guest::checkpoint;
use helio_test_guest_bins::{args, monotonic_ns, random_u64};

fn main() {
    let args = args();
    let total: u64 = args[0].parse().unwrap();
    let every: u64 = args[1].parse().unwrap();
    let (mut done, mut acc) = match checkpoint::load().unwrap() {
        Some(state) => (
            u64::from_le_bytes(state[..8].try_into().unwrap()),
            u64::from_le_bytes(state[8..16].try_into().unwrap()),
        ),
        None => (0, 0),
    };
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open("/out/log.txt")
        .unwrap();
    writeln!(log, "segment from round {done}").unwrap();
    println!("segment from round {done}");
    while done < total {
        acc = acc.rotate_left(7) ^ random_u64() ^ done.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        done += 1;
        if done % every == 0 && done < total {
            acc ^= monotonic_ns();
            let mut state = done.to_le_bytes().to_vec();
            state.extend_from_slice(&acc.to_le_bytes());
            checkpoint::save(&state).unwrap();
        }
    }
    println!("{acc:016x}");
}
