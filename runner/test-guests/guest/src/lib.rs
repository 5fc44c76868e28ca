//! Helpers shared by the test guests.

pub mod kernels;

/// The task's arguments after `argv[0]`.
pub fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn path_symlink(old: *const u8, old_len: usize, fd: u32, new: *const u8, new_len: usize)
    -> u16;
    fn path_filestat_get(fd: u32, flags: u32, path: *const u8, len: usize, out: *mut u8) -> u16;
    fn random_get(buf: *mut u8, len: usize) -> u16;
    fn clock_time_get(id: u32, precision: u64, out: *mut u64) -> u16;
}

/// Eight bytes of the task's `random_get` stream.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    assert_eq!(unsafe { random_get(buf.as_mut_ptr(), 8) }, 0, "random_get");
    u64::from_le_bytes(buf)
}

/// The monotonic clock's reading in nanoseconds (std's `Instant` hides it).
pub fn monotonic_ns() -> u64 {
    let mut ns = 0u64;
    assert_eq!(
        unsafe { clock_time_get(1, 1, &mut ns) },
        0,
        "clock_time_get"
    );
    ns
}

/// The descriptor of the `/in` preopen.
pub const IN_FD: u32 = 3;

/// The raw 64-byte WASI `filestat` of `name` in the preopen `fd` (dev, ino, filetype, nlink,
/// size, atim, mtim, ctim), since std exposes only part of it on stable Rust.
pub fn raw_filestat(fd: u32, name: &str) -> [u64; 8] {
    let mut buf = [0u8; 64];
    let errno = unsafe { path_filestat_get(fd, 0, name.as_ptr(), name.len(), buf.as_mut_ptr()) };
    assert_eq!(errno, 0, "path_filestat_get {name}");
    let mut out = [0u64; 8];
    for (i, v) in out.iter_mut().enumerate() {
        *v = u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
    }
    out
}

/// The descriptor of the `/out` preopen.
pub const OUT_FD: u32 = 4;

/// Creates `/out/<name>` as a symbolic link to `target` (std has no stable call for it).
pub fn symlink_in_out(target: &str, name: &str) -> std::io::Result<()> {
    let errno = unsafe {
        path_symlink(
            target.as_ptr(),
            target.len(),
            OUT_FD,
            name.as_ptr(),
            name.len(),
        )
    };
    if errno == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(errno as i32))
    }
}
