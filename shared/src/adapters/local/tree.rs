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

/// Every live descendant of `root` (not `root` itself), parents first.
pub fn descendants(root: i32) -> Vec<i32> {
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
