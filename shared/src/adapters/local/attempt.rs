//! One attempt's directory, `<runs>/<run_id>/attempt-<n>/`: the protocol
//! between the local engine and the supervisor of that attempt, on disk so
//! that it outlives either of them.
//!
//! | file | written by | when |
//! | --- | --- | --- |
//! | `launch.json` | the engine | before it starts a supervisor |
//! | `claim` | the supervisor | before it starts the command; created with `link`, so exactly one supervisor ever holds it |
//! | `output.log` | the command | as it runs (stdout and stderr) |
//! | `status.json` | the supervisor | when the command and all it started have ended (written to a temporary name, then renamed) |
//!
//! The `claim` names the supervisor by process id *and* start time, so a
//! recycled process id is never mistaken for it. An attempt whose `claim`
//! exists was started, once; one without it was never started and may be
//! (it is the claim, not the engine, that decides who runs it).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Name of an attempt's launch file.
const LAUNCH: &str = "launch.json";
/// Name of an attempt's claim file.
const CLAIM: &str = "claim";
/// Name of an attempt's status file.
const STATUS: &str = "status.json";
/// Name of an attempt's log file.
pub const LOG: &str = "output.log";
/// Exit code of a supervisor that found its attempt claimed by another.
pub const CLAIMED_ELSEWHERE: i32 = 75;

/// How an attempt's memory and cpu are held to what the run asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPlan {
    /// Nothing to limit (the run asks for no memory), or no way to.
    None,
    /// A cgroup of its own: memory (and cpu, where the controller exists).
    Cgroup,
    /// `RLIMIT_AS` on the command's processes: a ceiling on address space,
    /// where no cgroup can be made.
    AddressSpace,
}

/// What the supervisor of an attempt needs, written by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The run.
    pub run_id: String,
    /// The attempt.
    pub attempt: u32,
    /// `bash -c` this.
    pub command: String,
    /// Variables set over the supervisor's environment, in order.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub work_dir: PathBuf,
    /// Memory limit in MB, when the run asks for one.
    pub memory_mb: Option<u64>,
    /// CPU in units of 1/1024 core, when the run asks for it.
    pub cpu_units: Option<u64>,
    /// How the limits are applied.
    pub limits: LimitPlan,
    /// Seconds after which the attempt is stopped.
    pub deadline_seconds: Option<u64>,
    /// Milliseconds between SIGTERM and SIGKILL when it is stopped.
    pub stop_grace_ms: u64,
}

/// How an attempt ended, written by its supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ending {
    /// The command's exit code (128 + signal when a signal ended it).
    pub exit_code: Option<i64>,
    /// Why, when there is more to say.
    pub reason: Option<String>,
    /// When the last of its processes ended.
    pub ended_at: DateTime<Utc>,
}

/// A process, by id and start time (clock ticks since boot, from
/// `/proc/<pid>/stat`), so that a recycled id is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// Process id.
    pub pid: i32,
    /// Start time.
    pub start_time: u64,
}

/// The fields of `/proc/<pid>/stat` after the command name: its state, its
/// parent, and its start time.
pub fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3rd field of the line), ppid (4th), …, starttime (22nd).
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start_time))
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<Self> {
        let pid = i32::try_from(std::process::id()).ok()?;
        Self::of(pid)
    }

    /// The process `pid` is now.
    pub fn of(pid: i32) -> Option<Self> {
        stat(pid).map(|(_, _, start_time)| Self { pid, start_time })
    }

    /// Whether this very process still runs (not gone, not a zombie, not
    /// another process with a recycled id).
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|(state, _, start)| start == self.start_time && state != 'Z')
    }

    fn encode(&self) -> String {
        format!("{} {}\n", self.pid, self.start_time)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        Some(Self {
            pid: parts.next()?.parse().ok()?,
            start_time: parts.next()?.parse().ok()?,
        })
    }
}

/// One attempt's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptDir(PathBuf);

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced,
/// then renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

impl AttemptDir {
    /// The directory of `run_id`'s attempt `attempt` under `runs_dir`.
    pub fn new(runs_dir: &Path, run_id: &str, attempt: u32) -> Self {
        Self(runs_dir.join(run_id).join(format!("attempt-{attempt}")))
    }

    /// An attempt directory at `path` (the supervisor's argument).
    pub fn at(path: PathBuf) -> Self {
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.0.join(LOG)
    }

    /// Writes the launch file (creating the directory).
    pub fn write_launch(&self, launch: &Launch) -> io::Result<()> {
        fs::create_dir_all(&self.0)?;
        let bytes = serde_json::to_vec(launch).map_err(io::Error::other)?;
        write_atomically(&self.0.join(LAUNCH), &bytes)
    }

    /// Reads the launch file.
    pub fn read_launch(&self) -> io::Result<Launch> {
        let bytes = fs::read(self.0.join(LAUNCH))?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
    }

    /// Claims the attempt for `who`: `true` when `who` now holds it, `false`
    /// when another did already. The claim appears whole or not at all.
    pub fn claim(&self, who: ProcessId) -> io::Result<bool> {
        let tmp = self.0.join(format!("{CLAIM}.tmp-{}", who.pid));
        fs::write(&tmp, who.encode())?;
        let linked = fs::hard_link(&tmp, self.0.join(CLAIM));
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Who holds the claim, if anyone ever did.
    pub fn claimant(&self) -> io::Result<Option<ProcessId>> {
        match fs::read_to_string(self.0.join(CLAIM)) {
            Ok(text) => Ok(ProcessId::decode(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records how the attempt ended.
    pub fn write_status(&self, ending: &Ending) -> io::Result<()> {
        let bytes = serde_json::to_vec(ending).map_err(io::Error::other)?;
        write_atomically(&self.0.join(STATUS), &bytes)
    }

    /// How the attempt ended, once its supervisor said so.
    pub fn read_status(&self) -> io::Result<Option<Ending>> {
        match fs::read(self.0.join(STATUS)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_claimed_once_and_its_claimant_is_known_by_pid_and_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let attempt = AttemptDir::new(dir.path(), "local-1", 1);
        fs::create_dir_all(attempt.path()).unwrap();
        assert_eq!(attempt.claimant().unwrap(), None);
        let me = ProcessId::current().unwrap();
        assert!(attempt.claim(me).unwrap());
        let other = ProcessId {
            pid: me.pid + 1,
            start_time: 1,
        };
        assert!(!attempt.claim(other).unwrap(), "a second claim fails");
        assert_eq!(attempt.claimant().unwrap(), Some(me));
        assert!(me.is_alive());
        let recycled = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !recycled.is_alive(),
            "another start time is another process"
        );
    }

    #[test]
    fn a_status_reads_back_as_written_and_none_before() {
        let dir = tempfile::tempdir().unwrap();
        let attempt = AttemptDir::new(dir.path(), "local-1", 2);
        fs::create_dir_all(attempt.path()).unwrap();
        assert_eq!(attempt.read_status().unwrap(), None);
        let ending = Ending {
            exit_code: Some(7),
            reason: None,
            ended_at: crate::testing::scenario::t(5),
        };
        attempt.write_status(&ending).unwrap();
        assert_eq!(attempt.read_status().unwrap(), Some(ending));
    }
}
