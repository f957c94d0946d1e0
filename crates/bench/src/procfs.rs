//! CPU time and peak memory of processes, read from Linux `/proc` (proc(5)).
//! Elsewhere every reading is `None` and the report says "n/a".
use std::sync::OnceLock;

/// CPU time (user + system, all threads) of a process in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat)
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: field 3 (state) is index 0, so utime (14) is index 11
    // and stime (15) follows it.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy CPU time of the whole machine (all CPUs) in clock ticks, from
/// `/proc/stat`.
pub fn machine_busy_ticks() -> Option<u64> {
    parse_machine_busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Busy ticks from the text of `/proc/stat`: the `cpu` line's user, nice,
/// system, irq, softirq and steal (idle and iowait are not busy; guest time
/// is already inside user).
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    (f.len() >= 4).then(|| at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// Peak resident set size (`VmHWM`) of a process, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, "VmHWM")
}

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmHWM:    12345 kB`.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Resets the peak RSS of a process to its current RSS (writing `5` to
/// `/proc/<pid>/clear_refs`, Linux 4.0+), so a later [`peak_rss_kib`] is the
/// peak of what ran in between. Returns whether the reset took effect; it
/// needs the right to write the file (the process's owner).
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of
/// [`cpu_ticks`]. Read once with `getconf CLK_TCK` (this crate has no unsafe
/// code to call sysconf); when that fails, 100, the value of every mainstream
/// Linux architecture (USER_HZ is fixed at 100 in the kernel's ABI for x86,
/// x86_64 and arm64).
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &u64| *t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_yields_utime_plus_stime_even_with_odd_names() {
        // A real line (Linux 6.x), with a command name holding ") (".
        let line = "4242 (rapport) (x) S 1 4242 4242 0 -1 4194560 2510 0 0 0 \
                    1234 567 0 0 20 0 5 0 123456 123456789 2345 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(1234 + 567));
        assert_eq!(parse_stat_cpu_ticks("4242 (rapport) S 1"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(
            parse_machine_busy_ticks(stat),
            Some(100 + 5 + 50 + 3 + 2 + 1)
        );
        assert_eq!(parse_machine_busy_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn status_fields_parse_in_kib() {
        let status =
            "Name:\trapport\nVmPeak:\t  900000 kB\nVmHWM:\t   52344 kB\nVmRSS:\t   50000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(52_344));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(50_000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn own_process_is_readable_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(peak_rss_kib(me).is_some_and(|k| k > 0));
        assert!(clock_ticks_per_second() > 0);
    }
}
