//! What `/proc` says about a process (its memory, its open file descriptors) and this
//! process's open-file limit: what the leak checks, the benchmark (RSS per idle tunnel) and the
//! soak tool (RSS, peak RSS and fds over a run) read off the proxy.

use std::collections::BTreeMap;

/// Memory and file descriptors of a process, from `/proc/<pid>/status` and `/proc/<pid>/fd`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStatus {
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
}

/// [`ProcStatus`] of `pid` (a number, or `self`).
pub fn proc_status(pid: &str) -> Result<ProcStatus, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/status has no {name}"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("reading /proc/{pid}/fd: {e}"))?
        .count();
    Ok(ProcStatus {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        fds,
    })
}

/// What each open fd of `pid` (a number, or `self`) is (`socket:[…]`, a file path, …), sorted.
pub fn fd_targets_of(pid: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The open fds of `pid` by kind (`socket`, `anon_inode`, a path…): a leak report.
pub fn fd_kinds_of(pid: &str) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for target in fd_targets_of(pid) {
        let kind = target.split(':').next().unwrap_or("?").to_string();
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

/// Raise this process's soft open-file limit to its hard limit (children, such as the proxy
/// a load tool starts, inherit it). Returns `(soft, hard)` as they are afterwards.
pub fn raise_fd_limit() -> Result<(u64, u64), String> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| format!("reading RLIMIT_NOFILE: {e}"))?;
    let soft = if soft < hard {
        rlimit::increase_nofile_limit(hard).map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?
    } else {
        soft
    };
    Ok((soft, hard))
}
