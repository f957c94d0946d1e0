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

/// The processes listening on TCP `port` (IPv4 or IPv6, any address), found
/// as Linux's `ss -ltnp` finds them: the listening sockets' inodes from
/// `/proc/net/tcp{,6}`, then the processes holding one of them open. Only
/// processes whose `/proc/<pid>/fd` this process may read (its owner's) are
/// found; empty elsewhere. For watching a server the harness did not start
/// (e.g. the NATS server of `--nats-url`).
pub fn tcp_listener_pids(port: u16) -> Vec<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = procs
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(Result::ok).any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|target| {
                        target
                            .to_str()
                            .and_then(|t| t.strip_prefix("socket:["))
                            .and_then(|t| t.strip_suffix(']'))
                            .and_then(|t| t.parse::<u64>().ok())
                            .is_some_and(|inode| inodes.contains(&inode))
                    })
                })
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Inodes of the sockets listening on `port` in the text of
/// `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            // sl, local_address (hex addr:hex port), rem_address, st, …, inode (index 9).
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            (u16::from_str_radix(local_port, 16).ok()? == port && *f.get(3)? == LISTEN)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
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
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1092 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1092 0100007F:D3A4 01 00000000:00000000 00:00000000 00000000  1000        0 434343 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 17001 1 0000000000000000 100 0 0 10 0
";
        // 0x1092 = 4242: the listener, not the connection to it.
        assert_eq!(listening_inodes(table, 4242), vec![424_242]);
        assert_eq!(listening_inodes(table, 5432), vec![17_001]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn this_process_is_found_listening_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(tcp_listener_pids(port), vec![std::process::id()]);
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
