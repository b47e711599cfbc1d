//! How much memory the machine can give us, so sizes are checked before allocating (an
//! allocation failure aborts the process instead of returning an error).

/// Bytes the operating system reports as available to a new allocation (`sysinfo`: Linux's
/// `MemAvailable`, macOS's and Windows' own figures); None where unknown.
pub fn available_bytes() -> Option<u64> {
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_memory();
    Some(system.available_memory()).filter(|&b| b > 0)
}

#[cfg(test)]
mod tests {
    /// The figure agrees with the kernel's own where there is one (Linux).
    #[test]
    fn available_memory_matches_the_kernel() {
        let got = super::available_bytes().unwrap();
        let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
            return;
        };
        let line = text
            .lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .unwrap();
        let kernel: u64 = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024;
        // Read at two moments: allow the machine's churn.
        let diff = got.abs_diff(kernel) as f64 / kernel as f64;
        assert!(diff < 0.05, "sysinfo {got} vs /proc/meminfo {kernel}");
    }
}
