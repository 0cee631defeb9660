//! Process figures for the status line (seed 004, "系统资源使用情况").

/// Resident memory of this process in bytes, from `/proc/self/status` (`VmRSS`). `None` where
/// that file does not exist (not Linux).
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&text)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_vm_rss_in_kib() {
        let text = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\n";
        assert_eq!(super::parse_vm_rss(text), Some(1234 * 1024));
        assert_eq!(super::parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        assert!(super::resident_memory_bytes().is_some_and(|b| b > 0));
    }
}
