//! CPU time and memory of a local process from `/proc`, and CPU pinning (`sched_setaffinity`).

use std::io;

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// CPU seconds since the process started, all live threads: the nanosecond run times of
    /// `/proc/<pid>/task/*/schedstat` where the kernel has them, else utime + stime of
    /// `/proc/<pid>/stat` (10 ms ticks).
    pub cpu_s: f64,
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size in KiB (`VmHWM`).
    pub rss_peak_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` 0 means this process).
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let base = if pid == 0 {
        "/proc/self".to_string()
    } else {
        format!("/proc/{pid}")
    };
    let cpu_s = match schedstat_seconds(&base) {
        Some(s) => s,
        None => {
            let stat = std::fs::read_to_string(format!("{base}/stat"))?;
            cpu_seconds_from_stat(&stat).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "unparseable /proc stat")
            })?
        }
    };
    let status = std::fs::read_to_string(format!("{base}/status"))?;
    Ok(ProcSample {
        cpu_s,
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        rss_peak_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

/// CPU seconds thread `tid` of this process has used (`/proc/self/task/<tid>/schedstat`);
/// `None` when the kernel has no schedstat or the thread is gone.
pub fn thread_cpu_s(tid: i32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    Some(schedstat_ns(&text)? as f64 / 1e9)
}

/// The first field of a `schedstat` line: nanoseconds on the CPU.
fn schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Sum of the first field (time spent on the CPU, ns) of every thread's `schedstat`.
fn schedstat_seconds(base: &str) -> Option<f64> {
    let mut ns: u64 = 0;
    for entry in std::fs::read_dir(format!("{base}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may end between the listing and the read: skip it.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        ns += schedstat_ns(&text)?;
    }
    Some(ns as f64 / 1e9)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds.
pub fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Number of CPUs online.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPUs this thread may run on.
pub fn current_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the size passed is its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// Restricts thread `tid` (0: the calling thread) to `cpus`. Threads it creates afterwards inherit
/// the mask.
pub fn set_affinity(tid: i32, cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no CPU given"));
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET only touches it within bounds
    // (indexes are checked against CPU_SETSIZE); the size passed is its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "CPU out of range",
                ));
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Restricts every thread of process `pid` to `cpus` (threads it creates later inherit the mask of
/// their creator).
pub fn set_process_affinity(pid: u32, cpus: &[usize]) -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        if let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        {
            set_affinity(tid, cpus)?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (media worker) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100 0 0";
        let s = cpu_seconds_from_stat(line).unwrap();
        assert!((s - 300.0 / clock_ticks_per_second()).abs() < 1e-9);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(0).unwrap();
        assert!(s.rss_kib > 0);
        assert!(!current_affinity().unwrap().is_empty());
    }
}
