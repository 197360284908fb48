//! One attempt's files, in its run's directory `<runs>/<run_id>/`: the
//! protocol between the local engine and the supervisor of that attempt, on
//! disk so that it outlives either of them.
//!
//! | file | written by | when |
//! | --- | --- | --- |
//! | `attempt-<n>.record` | the supervisor | its first line before it starts the command, created with `O_EXCL` so that exactly one supervisor ever holds the attempt; its second line, the ending, once the command and all it started have ended |
//! | `attempt-<n>.log` | the command | as it runs (stdout and stderr) |
//! | `attempt-<n>.notes` | the supervisor of a container | one JSON [`Note`] per line as the attempt prepares (the image looked for, pulled) and starts |
//! | `attempt-<n>.supervisor.log` | the supervisor | only if it fails |
//! | `work/` | the supervisor | the command's working directory, shared by the run's attempts |
//!
//! The record's first line names the supervisor by process id *and* start
//! time, so a recycled process id is never mistaken for it. An attempt whose
//! record exists was started, once; one without it was never started and may
//! be (it is the record, not the engine, that decides who runs it). A record
//! whose first line is not there yet belongs to a supervisor between
//! creating it and writing it, before it starts anything. The engine hands
//! the supervisor its [`Launch`] on stdin, so nothing is written before an
//! attempt is claimed.
//!
//! Nothing is written through temporary names: the ending is read only once
//! its supervisor is gone, and every file made per run costs time on the
//! file system (a run makes four: its directory, `work/`, a record, a log).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Suffix of an attempt's record.
const RECORD: &str = "record";
/// Suffix of an attempt's log file.
const LOG: &str = "log";
/// Suffix of an attempt's notes.
const NOTES: &str = "notes";
/// Name of a run's one log file before logs were kept per attempt.
pub const LEGACY_LOG: &str = "output.log";
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
    /// The bash to run it with (found on the server's PATH once).
    #[serde(default = "default_shell")]
    pub shell: PathBuf,
    /// The command's whole environment, in order: nothing of the
    /// supervisor's own is inherited.
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
    /// Run in this container instead of on the host, when the server uses a
    /// container runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<super::container::ContainerPlan>,
}

/// What the supervisor of a container says while it prepares and starts
/// it, for the run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// A step of getting ready (the image looked for, pulled, a pull's
    /// progress, how the container is held to its size).
    Progress {
        /// What happens.
        message: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The container is being started: the attempt runs.
    Started {
        /// When.
        at: DateTime<Utc>,
    },
}

fn default_shell() -> PathBuf {
    PathBuf::from("bash")
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
    /// Whether the attempt failed in the infrastructure before its command
    /// ran (a registry that could not be reached) and may be tried again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
    /// What the command's processes used, when the supervisor measured it
    /// (a host command; a container's processes are its runtime's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::domain::usage::Measured>,
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

/// One attempt's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptDir {
    run_dir: PathBuf,
    attempt: u32,
}

impl AttemptDir {
    /// The files of `run_id`'s attempt `attempt` under `runs_dir`.
    pub fn new(runs_dir: &Path, run_id: &str, attempt: u32) -> Self {
        Self::in_run_dir(runs_dir.join(run_id), attempt)
    }

    /// The files of attempt `attempt` in the run directory `run_dir`.
    pub fn in_run_dir(run_dir: PathBuf, attempt: u32) -> Self {
        Self { run_dir, attempt }
    }

    /// The run's directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.run_dir
            .join(format!("attempt-{}.{suffix}", self.attempt))
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.file(LOG)
    }

    /// Claims the attempt for `who`: `true` when `who` now holds it, `false`
    /// when another did already.
    pub fn claim(&self, who: ProcessId) -> io::Result<bool> {
        fs::create_dir_all(&self.run_dir)?;
        let created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.file(RECORD));
        match created {
            Ok(mut file) => {
                file.write_all(who.encode().as_bytes())?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The record's lines, or `None` before anyone claimed the attempt.
    fn record(&self) -> io::Result<Option<String>> {
        match fs::read_to_string(self.file(RECORD)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Who holds the claim, if anyone ever did. A claim just created, whose
    /// first line its supervisor has not written yet, is read again for up
    /// to a second; one still empty then belongs to a supervisor that died
    /// before it started anything, and reads as a claimant long gone.
    pub fn claimant(&self) -> io::Result<Option<ProcessId>> {
        for _ in 0..100 {
            let Some(text) = self.record()? else {
                return Ok(None);
            };
            if let Some(who) = text.lines().next().and_then(ProcessId::decode) {
                return Ok(Some(who));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(Some(ProcessId {
            pid: 0,
            start_time: 0,
        }))
    }

    /// Records how the attempt ended (the record's second line).
    pub fn write_status(&self, ending: &Ending) -> io::Result<()> {
        let mut line = serde_json::to_vec(ending).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(self.file(RECORD))?;
        file.write_all(&line)
    }

    /// How the attempt ended, once its supervisor said so.
    pub fn read_status(&self) -> io::Result<Option<Ending>> {
        let Some(text) = self.record()? else {
            return Ok(None);
        };
        Ok(text
            .lines()
            .nth(1)
            .and_then(|line| serde_json::from_str(line).ok()))
    }

    /// Appends `note` to the attempt's notes.
    pub fn write_note(&self, note: &Note) -> io::Result<()> {
        let mut line = serde_json::to_vec(note).map_err(io::Error::other)?;
        line.push(b'\n');
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(NOTES))?
            .write_all(&line)
    }

    /// The notes written from byte `offset` on, and the offset after the
    /// last whole line read.
    pub fn read_notes(&self, offset: u64) -> (Vec<Note>, u64) {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = Vec::new();
        let read = fs::File::open(self.file(NOTES)).and_then(|mut file| {
            file.seek(SeekFrom::Start(offset))?;
            file.read_to_end(&mut text)
        });
        if read.is_err() {
            return (Vec::new(), offset);
        }
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let notes = text[..whole]
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        (notes, offset + whole as u64)
    }

    /// Notes why the supervisor could not do its work.
    pub fn note_failure(&self, what: &str) {
        let line = format!(
            "{} flotilla-supervise: {what}\n",
            chrono::Utc::now().to_rfc3339()
        );
        if let Ok(mut file) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file("supervisor.log"))
        {
            let _ = file.write_all(line.as_bytes());
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
        assert_eq!(attempt.read_status().unwrap(), None);
        assert!(attempt.claim(ProcessId::current().unwrap()).unwrap());
        assert_eq!(attempt.read_status().unwrap(), None, "claimed, not ended");
        let ending = Ending {
            exit_code: Some(7),
            reason: None,
            ended_at: crate::testing::scenario::t(5),
            retryable: false,
            usage: None,
        };
        attempt.write_status(&ending).unwrap();
        assert_eq!(attempt.read_status().unwrap(), Some(ending));
    }
}
