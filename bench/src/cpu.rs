//! CPU time from `/proc`, to show where a run's time goes: in `pool worker`, in
//! Postgres, or nowhere (waiting on the disk).

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds of `pid` so far; `None` when it is gone.
pub fn process_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm) ": state is field 3, utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// CPU seconds of every live `postgres` process (server and backends) on this host.
pub fn postgres_secs() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .filter_map(process_secs)
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_cpu_time() {
        assert!(super::process_secs(std::process::id()).is_some_and(|s| s >= 0.0));
    }
}
