//! The runner's last line of defence for the volunteer's machine: a cap on its own memory,
//! so that a fault in the sandbox's bounds cannot take the machine down with it.
//!
//! The cap is the process's data limit (`RLIMIT_DATA`): Linux counts against it every private
//! writable mapping, so the guests' linear memories and the runner's heap, but not the
//! address space wasmtime only reserves. An allocation past it fails; a guest's memory that
//! cannot grow for it makes the run a fault of this runner (the task is handed back, never
//! reported), and a host allocation that fails ends the process, which its service manager
//! restarts. Under systemd, the unit's `MemoryMax=` caps the whole service as well.

use std::fmt;
use std::str::FromStr;

/// How much memory the runner lets itself use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryCap {
    /// Three quarters of the machine's memory.
    #[default]
    Auto,
    /// No cap of the runner's own (the service manager's, if any, still holds).
    Off,
    /// At most this many bytes.
    Bytes(u64),
}

/// A size: a number of bytes with an optional `K`, `M`, `G` or `T` (powers of 1024;
/// `KiB`, `MiB`, ... and `KB`, `MB`, ... mean the same here); `None` when it is none.
pub fn size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// The most the runner's caches (downloaded blobs, compiled modules) may take on disk:
/// `off`, or a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimit(pub Option<u64>);

impl FromStr for CacheLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if matches!(s.trim().to_ascii_lowercase().as_str(), "off" | "none") {
            return Ok(CacheLimit(None));
        }
        let bytes = size(s)
            .ok_or_else(|| format!("{s:?} is not a size: say off, or a size such as 4G or 512M"))?;
        if bytes < MIN_CACHE {
            return Err(format!(
                "a cache limit of {bytes} bytes holds no module worth keeping: give at least {} MiB",
                MIN_CACHE >> 20
            ));
        }
        Ok(CacheLimit(Some(bytes)))
    }
}

impl fmt::Display for CacheLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(bytes) => write!(f, "{} MiB", bytes >> 20),
        }
    }
}

/// The smallest cache limit taken: 1 MiB.
const MIN_CACHE: u64 = 1 << 20;

impl FromStr for MemoryCap {
    type Err = String;

    /// `auto`, `off`, or a size: a number of bytes with an optional `K`, `M`, `G` or `T`
    /// (powers of 1024; `KiB`, `MiB`, ... and `KB`, `MB`, ... mean the same here).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => return Ok(MemoryCap::Auto),
            "off" | "none" => return Ok(MemoryCap::Off),
            _ => {}
        }
        let bytes = size(s).ok_or_else(|| {
            format!("{s:?} is not a size: say auto, off, or a size such as 4G or 512M")
        })?;
        if bytes < MIN_CAP {
            return Err(format!(
                "a memory cap of {bytes} bytes is too small for a runner: give at least {} MiB",
                MIN_CAP >> 20
            ));
        }
        Ok(MemoryCap::Bytes(bytes))
    }
}

impl fmt::Display for MemoryCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryCap::Auto => f.write_str("auto"),
            MemoryCap::Off => f.write_str("off"),
            MemoryCap::Bytes(b) => write!(f, "{b}"),
        }
    }
}

/// The smallest cap the runner accepts: less cannot run even a small task.
pub const MIN_CAP: u64 = 64 << 20;

impl MemoryCap {
    /// The cap in bytes on a machine of `total` bytes of memory (0 when unknown), if any.
    pub fn bytes(self, total: u64) -> Option<u64> {
        match self {
            MemoryCap::Off => None,
            MemoryCap::Bytes(b) => Some(b),
            MemoryCap::Auto if total == 0 => None,
            MemoryCap::Auto => Some((total / 4 * 3).max(MIN_CAP)),
        }
    }

    /// Applies the cap to this process (lowering, never raising, the limit it already has).
    /// Returns the limit now in force, if any.
    pub fn apply(self) -> Result<Option<u64>, String> {
        let Some(cap) = self.bytes(crate::agent::total_memory()) else {
            return Ok(current());
        };
        set(cap)?;
        Ok(current())
    }
}

/// The memory this runner may use: the machine's, or its cap in force if that is less (0
/// when neither is known).
pub fn usable() -> u64 {
    let total = crate::agent::total_memory();
    match current() {
        Some(cap) if total == 0 || cap < total => cap,
        _ => total,
    }
}

#[cfg(unix)]
#[allow(clippy::useless_conversion)] // `rlim_t` is not `u64` on every Unix
fn current() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    u64::try_from(limit.rlim_cur).ok()
}

#[cfg(unix)]
#[allow(clippy::useless_conversion)] // as in `current`
fn set(cap: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `current`.
    if unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut limit) } != 0 {
        return Err(format!(
            "cannot read the data limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    let cap = libc::rlim_t::try_from(cap).unwrap_or(libc::RLIM_INFINITY - 1);
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur <= cap {
        return Ok(());
    }
    limit.rlim_cur = if limit.rlim_max == libc::RLIM_INFINITY {
        cap
    } else {
        cap.min(limit.rlim_max)
    };
    // SAFETY: `limit` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(format!(
            "cannot cap the runner's memory at {cap} bytes: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn current() -> Option<u64> {
    None
}

#[cfg(not(unix))]
fn set(_cap: u64) -> Result<(), String> {
    Err("a memory cap needs a Unix system here; run the runner with --memory-cap off".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_say_why() {
        assert_eq!("auto".parse(), Ok(MemoryCap::Auto));
        assert_eq!("OFF".parse(), Ok(MemoryCap::Off));
        assert_eq!("512M".parse(), Ok(MemoryCap::Bytes(512 << 20)));
        assert_eq!("4 GiB".parse(), Ok(MemoryCap::Bytes(4 << 30)));
        assert_eq!("2gb".parse(), Ok(MemoryCap::Bytes(2 << 30)));
        assert_eq!("1073741824".parse(), Ok(MemoryCap::Bytes(1 << 30)));
        let small = "1M".parse::<MemoryCap>().unwrap_err();
        assert!(small.contains("at least 64 MiB"), "{small}");
        for bad in ["", "lots", "4X", "-1G", "99999999999T"] {
            let e = bad.parse::<MemoryCap>().unwrap_err();
            assert!(e.contains("not a size"), "{bad}: {e}");
        }
    }

    #[test]
    fn auto_is_three_quarters_of_the_machine() {
        assert_eq!(MemoryCap::Auto.bytes(8 << 30), Some(6 << 30));
        assert_eq!(MemoryCap::Auto.bytes(0), None);
        assert_eq!(MemoryCap::Off.bytes(8 << 30), None);
        assert_eq!(MemoryCap::Bytes(1 << 30).bytes(8 << 30), Some(1 << 30));
    }
}
