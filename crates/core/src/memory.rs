//! How much memory the machine can give us, so sizes are checked before allocating (an
//! allocation failure aborts the process instead of returning an error).

/// Bytes the kernel reports as available (`MemAvailable` in /proc/meminfo); None where unknown.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
