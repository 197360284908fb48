//! Process trees, read from `/proc`: every descendant of a process (a
//! supervisor is a child subreaper, so what its command starts stays below
//! it, however it daemonises or `setsid`s), every process carrying an
//! attempt's marker in its environment (for when the supervisor itself is
//! gone), and signalling them all.

use std::collections::HashMap;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::attempt::stat;

/// Every process now, with its parent.
fn processes() -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| stat(pid).map(|(_, ppid, _)| (pid, ppid)))
        .collect()
}

/// The children of `pid`, from `/proc/<pid>/task/*/children` (each thread's
/// children); `None` where the kernel does not offer those files.
fn children(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    let mut offered = false;
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            offered = true;
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    offered.then_some(out)
}

/// Every live descendant of `root` (not `root` itself), parents first. Walks
/// the children files below `root` where the kernel has them (cheap: only the
/// subtree is read), else every process's parent.
pub fn descendants(root: i32) -> Vec<i32> {
    let Some(first) = children(root) else {
        return descendants_by_parent(root);
    };
    let mut out = Vec::new();
    let mut next = first;
    while let Some(pid) = next.pop() {
        out.push(pid);
        next.extend(children(pid).unwrap_or_default());
    }
    out
}

/// [`descendants`] from every process's parent in `/proc/<pid>/stat`.
fn descendants_by_parent(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, ppid) in processes() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            out.push(child);
            next.push(child);
        }
    }
    out
}

/// Every process whose environment holds all of `vars` (exactly `NAME=value`).
pub fn marked(vars: &[(String, String)]) -> Vec<i32> {
    let wanted: Vec<Vec<u8>> = vars
        .iter()
        .map(|(name, value)| format!("{name}={value}").into_bytes())
        .collect();
    processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
                wanted.iter().all(|w| vars.contains(&w.as_slice()))
            })
        })
        .collect()
}

/// Sends `signal` to each of `pids`; a process already gone is no error.
pub fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}
