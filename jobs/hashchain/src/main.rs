//! `hashchain --rounds N [--start HEX]`: the BLAKE3 chain of N rounds from HEX (64 hex
//! digits), or from the first 32 bytes of the task's random stream (its `seed`). Writes the
//! last link to `/out/digest.txt` and to standard output.
use hashchain::{chain, hex, parse_hex32};
use helio_guest::{Error, params, seed_bytes, write_output};

fn main() {
    helio_guest::run(|| {
        let params = params();
        let rounds: u64 = params.get("rounds")?;
        let start = match params.get_or::<String>("start", String::new())? {
            s if s.is_empty() => seed_bytes(),
            s => parse_hex32(&s).ok_or_else(|| {
                Error::msg(format!("parameter --start: {s:?} is not 64 hex digits"))
            })?,
        };
        params.finish()?;
        let line = format!("{}\n", hex(&chain(start, rounds)));
        write_output("digest.txt", line.as_bytes())?;
        print!("{line}");
        Ok(())
    })
}
