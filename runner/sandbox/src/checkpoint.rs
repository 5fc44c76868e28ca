//! A task's checkpoint: everything a run carries from one segment to the next, as bytes that
//! travel between runners by their BLAKE3 like any blob.
//!
//! A segment ends when the guest saves its state (renames a file to `/ckpt/state`). The next
//! segment starts the module afresh with what the checkpoint holds: the saved state in
//! `/ckpt/state`, `/out` as it was, standard output and error so far, the fuel used (the
//! segment gets the rest), and the positions of the virtual clock and the random stream. A run
//! in one go passes through the very same checkpoints, so a run in pieces on several runners
//! gives the same outputs, digest and total fuel by construction.
//!
//! The encoding is Helio's own, versioned, with every length checked against what is left:
//! a checkpoint may come from a runner that lies, and decoding one never panics or allocates
//! more than its bytes. What a checkpoint claims is then held to the task's limits as it is
//! put back (see [`crate::vfs::Vfs::restore`]).

use helio_sdk::{Blake3Hash, TaskManifest};
use serde_json::json;

pub use crate::vfs::{SavedKind, SavedNode};
use crate::wasi::{STDERR_CAP, STDOUT_CAP};

/// The first bytes of every checkpoint, with the encoding's version.
const MAGIC: &[u8; 16] = b"helio-ckpt-v1\0\0\0";

/// What one segment of a run hands to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The task it belongs to ([`task_key`]): a checkpoint resumes no other.
    pub task: Blake3Hash,
    /// How many checkpoints the run has saved, this one included.
    pub saved: u32,
    /// Fuel used by the segments before it, together.
    pub fuel_used: u64,
    /// Virtual nanoseconds the guest has slept.
    pub slept_ns: u64,
    /// Bytes drawn from the `random_get` stream.
    pub random_drawn: u64,
    /// Standard output so far.
    pub stdout: Vec<u8>,
    /// Standard error so far.
    pub stderr: Vec<u8>,
    /// The state the guest saved.
    pub state: Vec<u8>,
    /// `/out` as it was.
    pub out: Vec<SavedNode>,
}

/// Binds checkpoints to a task: the BLAKE3 of everything that decides its result (its name,
/// module, arguments, environment, inputs, outputs, fuel and memory limits, seed and
/// checkpoint size), and of nothing that does not (where its bytes are fetched from, its
/// tier, its wall-clock bound).
pub fn task_key(task: &TaskManifest) -> Blake3Hash {
    let inputs: Vec<_> = task
        .inputs
        .iter()
        .map(|i| json!([i.name, i.blake3]))
        .collect();
    let key = json!({
        "name": task.name,
        "module": task.module.blake3,
        "args": task.args,
        "env": task.env,
        "inputs": inputs,
        "outputs": task.outputs,
        "fuel": task.limits.fuel,
        "memory_bytes": task.limits.memory_bytes,
        "seed": task.seed,
        "checkpoint": task.checkpoint.map(|c| c.max_bytes),
    });
    let mut hasher = blake3::Hasher::new_derive_key("helio checkpoint task key v1");
    hasher.update(&serde_json::to_vec(&key).expect("a JSON value always serializes"));
    hasher.finalize().into()
}

impl Checkpoint {
    /// The checkpoint as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::new();
        w.extend_from_slice(MAGIC);
        w.extend_from_slice(self.task.as_bytes());
        w.extend_from_slice(&self.saved.to_le_bytes());
        for n in [self.fuel_used, self.slept_ns, self.random_drawn] {
            w.extend_from_slice(&n.to_le_bytes());
        }
        for bytes in [&self.stdout, &self.stderr, &self.state] {
            put_bytes(&mut w, bytes);
        }
        w.extend_from_slice(&(self.out.len() as u64).to_le_bytes());
        for node in &self.out {
            put_bytes(&mut w, node.path.as_bytes());
            w.extend_from_slice(&node.times[0].to_le_bytes());
            w.extend_from_slice(&node.times[1].to_le_bytes());
            match &node.kind {
                SavedKind::Dir => w.push(0),
                SavedKind::File(bytes) => {
                    w.push(1);
                    put_bytes(&mut w, bytes);
                }
                SavedKind::Symlink(target) => {
                    w.push(2);
                    put_bytes(&mut w, target.as_bytes());
                }
            }
        }
        w
    }

    /// Reads a checkpoint of `task`; an error says what is wrong with the bytes.
    pub fn decode(bytes: &[u8], task: &TaskManifest) -> Result<Checkpoint, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err("not a Helio checkpoint (or one of another version)".into());
        }
        let key = Blake3Hash::from_bytes(r.take(32)?.try_into().expect("32 bytes"));
        if key != task_key(task) {
            return Err(format!(
                "the checkpoint belongs to another task (its key is {key}, this task's {})",
                task_key(task)
            ));
        }
        let saved = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
        let (fuel_used, slept_ns, random_drawn) = (r.u64()?, r.u64()?, r.u64()?);
        if fuel_used > task.limits.fuel {
            return Err(format!(
                "the checkpoint says {fuel_used} fuel was used, more than the task's {}",
                task.limits.fuel
            ));
        }
        let stdout = r.bytes("standard output", STDOUT_CAP as u64)?;
        let stderr = r.bytes("standard error", STDERR_CAP as u64)?;
        let state_max = task.checkpoint.map_or(0, |c| c.max_bytes);
        let state = r.bytes("the saved state", state_max)?;
        let count = r.u64()?;
        let mut out = Vec::new();
        for _ in 0..count {
            let path = r.bytes("a path", crate::vfs::MAX_PATH_BYTES as u64)?;
            let path = String::from_utf8(path).map_err(|_| "a path is not UTF-8")?;
            let times = [r.u64()?, r.u64()?];
            let kind = match r.take(1)?[0] {
                0 => SavedKind::Dir,
                1 => SavedKind::File(r.bytes("a file", u64::MAX)?),
                2 => {
                    let target = r.bytes("a symlink", crate::vfs::MAX_PATH_BYTES as u64)?;
                    SavedKind::Symlink(
                        String::from_utf8(target).map_err(|_| "a symlink is not UTF-8")?,
                    )
                }
                other => return Err(format!("unknown node kind {other} in /out")),
            };
            out.push(SavedNode { path, times, kind });
        }
        if r.at != bytes.len() {
            return Err(format!(
                "{} bytes follow the checkpoint's end",
                bytes.len() - r.at
            ));
        }
        Ok(Checkpoint {
            task: key,
            saved,
            fuel_used,
            slept_ns,
            random_drawn,
            stdout,
            stderr,
            state,
            out,
        })
    }
}

fn put_bytes(w: &mut Vec<u8>, bytes: &[u8]) {
    w.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    w.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or("the checkpoint is cut short")?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Length-prefixed bytes, at most `max` of them.
    fn bytes(&mut self, what: &str, max: u64) -> Result<Vec<u8>, String> {
        let len = self.u64()?;
        if len > max {
            return Err(format!("{what} holds {len} bytes, more than {max}"));
        }
        let len = usize::try_from(len).map_err(|_| "the checkpoint is cut short")?;
        Ok(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(args: &[&str]) -> TaskManifest {
        TaskManifest::from_value(json!({
            "schema_version": 1,
            "module": { "uri": "m.wasm", "blake3": Blake3Hash::of(b"m").to_string() },
            "args": args,
            "limits": { "fuel": 1000 },
            "checkpoint": { "max_bytes": 16 }
        }))
        .unwrap()
    }

    fn sample(task: &TaskManifest) -> Checkpoint {
        Checkpoint {
            task: task_key(task),
            saved: 2,
            fuel_used: 900,
            slept_ns: 5,
            random_drawn: 64,
            stdout: b"step 1\n".to_vec(),
            stderr: vec![],
            state: b"0123456789".to_vec(),
            out: vec![
                SavedNode {
                    path: "d".into(),
                    times: [1, 2],
                    kind: SavedKind::Dir,
                },
                SavedNode {
                    path: "d/f".into(),
                    times: [3, 4],
                    kind: SavedKind::File(b"bytes".to_vec()),
                },
                SavedNode {
                    path: "l".into(),
                    times: [5, 6],
                    kind: SavedKind::Symlink("d/f".into()),
                },
            ],
        }
    }

    #[test]
    fn a_checkpoint_decodes_to_what_was_encoded() {
        let t = task(&[]);
        let c = sample(&t);
        assert_eq!(Checkpoint::decode(&c.encode(), &t).unwrap(), c);
    }

    #[test]
    fn a_checkpoint_resumes_no_other_task() {
        let c = sample(&task(&["a"]));
        let err = Checkpoint::decode(&c.encode(), &task(&["b"])).unwrap_err();
        assert!(err.contains("another task"), "{err}");
    }

    #[test]
    fn every_cut_and_every_claim_past_the_limits_is_refused() {
        let t = task(&[]);
        let bytes = sample(&t).encode();
        for len in 0..bytes.len() {
            assert!(
                Checkpoint::decode(&bytes[..len], &t).is_err(),
                "cut at {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            Checkpoint::decode(&longer, &t)
                .unwrap_err()
                .contains("follow")
        );
        let mut c = sample(&t);
        c.fuel_used = 1001;
        let err = Checkpoint::decode(&c.encode(), &t).unwrap_err();
        assert!(err.contains("1001 fuel"), "{err}");
        let mut c = sample(&t);
        c.state = vec![0; 17];
        let err = Checkpoint::decode(&c.encode(), &t).unwrap_err();
        assert!(err.contains("saved state holds 17 bytes"), "{err}");
    }
}
