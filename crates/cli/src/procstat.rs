//! What `/proc` says about a process: CPU time (utime + stime of `/proc/<pid>/stat`), memory
//! (`VmRSS`, `VmHWM` of `/proc/<pid>/status`) and the CPU time of each of its threads. Linux
//! only; on other systems, or for a process that is gone, the readers answer `None`.

use std::collections::BTreeMap;

/// Clock ticks per second of the `stat` files' time fields (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions; it answers -1 for an unknown name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `(comm, utime + stime in ticks)` from the text of a `stat` file. The command name is the
/// text between the first `(` and the last `)` (it may itself hold spaces and parentheses).
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After the comm: state (field 3), ..., utime (field 14), stime (field 15).
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// User plus system CPU seconds of every thread of process `pid` so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).map(|(_, ticks)| ticks as f64 / clock_ticks_per_sec())
}

/// CPU seconds of this process so far (0 where `/proc` is not there).
pub fn own_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// A `Vm*` line of `/proc/<pid>/status`, in bytes (e.g. `VmRSS`, `VmHWM`).
pub fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resets the peak resident set size (`VmHWM`) of `pid` to its current RSS (Linux 4.0+,
/// writing 5 to `clear_refs`; needs the right to write there). True if it was reset.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU ticks of each thread of `pid` by thread id, with the thread's name.
pub fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(st) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            out.insert(tid, st);
        }
    }
    out
}

/// CPU seconds spent between two `thread_ticks` snapshots, summed by thread name, largest first.
/// Threads that started after `before` count from zero.
pub fn thread_cpu_delta(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> Vec<(String, f64)> {
    let hz = clock_ticks_per_sec();
    let mut by_name: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for (tid, (name, ticks)) in after {
        let prev = before.get(tid).map_or(0, |(_, t)| *t);
        let e = by_name.entry(name.clone()).or_default();
        e.0 += ticks.saturating_sub(prev) as f64 / hz;
        e.1 += 1;
    }
    let mut v: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(name, (secs, n))| (format!("{name} (x{n})"), secs))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "1234 (tokio (rt) w) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat(line), Some(("tokio (rt) w".to_string(), 325)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_secs(me).is_some());
        assert!(status_bytes(me, "VmRSS").unwrap() > 0);
        assert!(status_bytes(me, "VmHWM").unwrap() > 0);
        assert!(!thread_ticks(me).is_empty());
    }
}
