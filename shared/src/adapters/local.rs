//! The local engine and log source behind `flotilla serve`.
//!
//! [`LocalEngine`] runs each attempt as `bash -c <command>` in its own process
//! group, in a working directory of its own, with the server's environment
//! overlaid by the run's (definition env, then run env, then the reserved
//! variables). stdout and stderr go to one log file per run. The engine enforces
//! `active_deadline_seconds`, stops a run on request (SIGTERM to the group, then
//! SIGKILL after a grace period), and reports every end as an
//! [`EngineUpdate`] on its update channel, which the local runtime feeds to the
//! same use case the ECS status function uses.
//!
//! The run's image is recorded but not used: this engine runs commands on the
//! host. [`LocalLogs`] reads the log files back, paging by byte offset.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{Notify, mpsc};
use tracing::warn;

use crate::domain::run::Run;
use crate::error::{EngineError, LogError};
use crate::ports::{
    Clock, EngineChange, EngineUpdate, ExecutionEngine, LaunchSpec, Launched, LogPage, LogSource,
};

/// Largest log page returned at once.
pub const LOG_PAGE_BYTES: usize = 256 * 1024;

/// Name of a run's log file inside its directory.
const LOG_FILE: &str = "output.log";

struct Task {
    run_id: String,
    stop: Arc<Notify>,
}

/// Runs commands as local processes.
pub struct LocalEngine {
    runs_dir: PathBuf,
    host: String,
    stop_grace: Duration,
    updates: mpsc::UnboundedSender<EngineUpdate>,
    tasks: Arc<Mutex<HashMap<String, Task>>>,
    clock: Arc<dyn Clock>,
}

/// The directory holding one run's working directory and log.
pub fn run_dir(runs_dir: &Path, run_id: &str) -> PathBuf {
    runs_dir.join(run_id)
}

impl LocalEngine {
    /// An engine keeping run directories under `runs_dir` and reporting on
    /// `updates`, with the times of `clock`.
    pub fn new(
        runs_dir: PathBuf,
        stop_grace: Duration,
        updates: mpsc::UnboundedSender<EngineUpdate>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            runs_dir,
            host,
            stop_grace,
            updates,
            tasks: Arc::new(Mutex::new(HashMap::new())),
            clock,
        }
    }

    /// Processes this engine started that have not ended yet.
    pub fn running(&self) -> usize {
        self.tasks.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// `(run_id, task_id)` of every live process.
    pub fn live_tasks(&self) -> Vec<(String, String)> {
        self.tasks
            .lock()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (v.run_id.clone(), k.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<(tokio::process::Child, i32), EngineError> {
        let command = spec
            .command
            .as_deref()
            .ok_or_else(|| EngineError::Permanent {
                message: "the run has no command; the local engine runs `bash -c <command>`".into(),
                source: None,
            })?;
        let dir = run_dir(&self.runs_dir, &spec.run_id);
        let work = dir.join("work");
        std::fs::create_dir_all(&work).map_err(|e| io_error("create the run's directory", e))?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))
            .map_err(|e| io_error("open the run's log file", e))?;
        if spec.attempt > 1 {
            use std::io::Write;
            let _ = writeln!(log, "----- attempt {} -----", spec.attempt);
        }
        let stderr = log
            .try_clone()
            .map_err(|e| io_error("open the run's log file", e))?;
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&work)
            .envs(spec.env.iter().map(|v| (v.name.as_str(), v.value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EngineError::Permanent {
                    message: "bash was not found on the server's PATH: the local engine runs every command with `bash -c`; install bash".into(),
                    source: Some(Box::new(e)),
                }
            } else {
                io_error("start bash", e)
            }
        })?;
        let pid = child.id().ok_or_else(|| EngineError::Retryable {
            message: "the process ended before its id could be read".into(),
            source: None,
        })?;
        Ok((child, pid as i32))
    }
}

fn io_error(what: &str, e: std::io::Error) -> EngineError {
    let retryable = matches!(
        e.raw_os_error(),
        Some(code) if code == nix::errno::Errno::EAGAIN as i32
            || code == nix::errno::Errno::ENOMEM as i32
            || code == nix::errno::Errno::EMFILE as i32
            || code == nix::errno::Errno::ENFILE as i32
    );
    let message = format!("could not {what}: {e}");
    if retryable {
        EngineError::Retryable {
            message,
            source: Some(Box::new(e)),
        }
    } else {
        EngineError::Permanent {
            message,
            source: Some(Box::new(e)),
        }
    }
}

/// How a watched process ended.
enum Ending {
    Exited(std::io::Result<ExitStatus>),
    TimedOut(u64),
    Stopped,
}

fn exit_code(status: &ExitStatus) -> i64 {
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => 128 + i64::from(signal),
        (None, None) => -1,
    }
}

async fn terminate(
    child: &mut tokio::process::Child,
    pgid: i32,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            child.wait().await
        }
    }
}

#[async_trait]
impl ExecutionEngine for LocalEngine {
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError> {
        let (mut child, pgid) = self.spawn(spec)?;
        let task_id = pgid.to_string();
        let stop = Arc::new(Notify::new());
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(
                task_id.clone(),
                Task {
                    run_id: spec.run_id.clone(),
                    stop: Arc::clone(&stop),
                },
            );
        }
        let tasks = Arc::clone(&self.tasks);
        let updates = self.updates.clone();
        let grace = self.stop_grace;
        let clock = Arc::clone(&self.clock);
        let deadline = spec.active_deadline_seconds;
        let (run_id, attempt, watched_task) = (spec.run_id.clone(), spec.attempt, task_id.clone());
        tokio::spawn(async move {
            let timeout = async {
                match deadline {
                    Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                    None => std::future::pending().await,
                }
            };
            let ending = tokio::select! {
                status = child.wait() => Ending::Exited(status),
                () = timeout => Ending::TimedOut(deadline.unwrap_or_default()),
                () = stop.notified() => Ending::Stopped,
            };
            let (status, reason) = match ending {
                Ending::Exited(status) => (status, None),
                Ending::TimedOut(secs) => (
                    terminate(&mut child, pgid, grace).await,
                    Some(format!(
                        "exceeded its active_deadline_seconds ({secs} s) and was stopped"
                    )),
                ),
                Ending::Stopped => (terminate(&mut child, pgid, grace).await, None),
            };
            // The command is done; nothing it left behind in its group may linger.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            let (exit_code, reason) = match status {
                Ok(status) => {
                    let code = exit_code(&status);
                    let reason = reason.or_else(|| {
                        status.signal().map(|s| match s {
                            9 => {
                                "killed by SIGKILL (out of memory, or killed from outside flotilla)"
                                    .to_owned()
                            }
                            s => format!("killed by signal {s}"),
                        })
                    });
                    (Some(code), reason)
                }
                Err(e) => (None, Some(format!("lost track of the process: {e}"))),
            };
            if let Ok(mut tasks) = tasks.lock() {
                tasks.remove(&watched_task);
            }
            let _ = updates.send(EngineUpdate {
                run_id,
                attempt,
                change: EngineChange::Exited { exit_code, reason },
                engine_version: None,
                at: clock.now(),
            });
        });
        Ok(Launched {
            task_id,
            running_on: Some(self.host.clone()),
        })
    }

    async fn stop(&self, _run_id: &str, task_id: &str) -> Result<(), EngineError> {
        if let Ok(tasks) = self.tasks.lock()
            && let Some(task) = tasks.get(task_id)
        {
            task.stop.notify_one();
        }
        Ok(())
    }
}

/// After a restart, kills the process group a previous server left running for
/// `run_id`, if it is still there. The process is recognised by its
/// `FLOTILLA_RUN_ID` variable, so a recycled process id is never touched.
/// Returns whether a process was killed.
pub fn reap_orphan(run_id: &str, task_id: &str) -> bool {
    let Ok(pid) = task_id.parse::<i32>() else {
        return false;
    };
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let marker = format!("{}={run_id}", crate::domain::launch::RUN_ID_VAR);
    let ours = environ
        .split(|b| *b == 0)
        .any(|var| var == marker.as_bytes());
    if ours {
        if let Err(e) = killpg(Pid::from_raw(pid), Signal::SIGKILL) {
            warn!(run_id, pid, error = %e, "could not kill a run's leftover process group");
            return false;
        }
        return true;
    }
    false
}

/// Reads run logs from the files the local engine writes.
#[derive(Debug, Clone)]
pub struct LocalLogs {
    runs_dir: PathBuf,
}

impl LocalLogs {
    /// Logs under `runs_dir`.
    pub fn new(runs_dir: PathBuf) -> Self {
        Self { runs_dir }
    }

    fn path(&self, run: &Run) -> PathBuf {
        run_dir(&self.runs_dir, &run.spec.run_id).join(LOG_FILE)
    }
}

fn log_backend(e: std::io::Error) -> LogError {
    LogError::Backend(Box::new(e))
}

/// Reads up to [`LOG_PAGE_BYTES`] from `offset`, ending on a line or at least a
/// character boundary; returns the text and the bytes consumed.
fn read_page(path: &Path, offset: u64) -> Result<(String, u64), LogError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), 0)),
        Err(e) => return Err(log_backend(e)),
    };
    let len = file.metadata().map_err(log_backend)?.len();
    if offset > len {
        return Err(LogError::BadCursor(format!(
            "last_seen {offset} is past the end of this run's log ({len} bytes): pass the last_seen of the previous page"
        )));
    }
    file.seek(SeekFrom::Start(offset)).map_err(log_backend)?;
    let mut buf = Vec::with_capacity((len - offset).min(LOG_PAGE_BYTES as u64) as usize);
    file.take(LOG_PAGE_BYTES as u64)
        .read_to_end(&mut buf)
        .map_err(log_backend)?;
    if buf.len() == LOG_PAGE_BYTES
        && let Some(last_newline) = buf.iter().rposition(|b| *b == b'\n')
    {
        buf.truncate(last_newline + 1);
    }
    let consumed = match std::str::from_utf8(&buf) {
        Ok(_) => buf.len(),
        // A character cut at the end: leave it for the next page.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => buf.len(),
    };
    buf.truncate(consumed);
    Ok((String::from_utf8_lossy(&buf).into_owned(), consumed as u64))
}

#[async_trait]
impl LogSource for LocalLogs {
    async fn page(&self, run: &Run, last_seen: Option<&str>) -> Result<LogPage, LogError> {
        let offset = match last_seen.filter(|s| !s.is_empty()) {
            None => 0,
            Some(s) => s.parse::<u64>().map_err(|_| {
                LogError::BadCursor(format!(
                    "last_seen \"{s}\" is not a cursor this server issued: pass the last_seen of the previous page, or leave it out to start from the beginning"
                ))
            })?,
        };
        let path = self.path(run);
        let (log, consumed) = tokio::task::spawn_blocking(move || read_page(&path, offset))
            .await
            .map_err(|e| LogError::Backend(Box::new(e)))??;
        Ok(LogPage {
            log,
            last_seen: (offset + consumed).to_string(),
        })
    }

    async fn all(&self, run: &Run) -> Result<String, LogError> {
        match tokio::fs::read(self.path(run)).await {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(log_backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join("log");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_page_never_splits_a_character_and_the_next_page_starts_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        // "é" is two bytes; cut the file after its first byte.
        let full = "abc é\n".as_bytes();
        let path = write(&dir, &full[..5]);
        let (text, consumed) = read_page(&path, 0).unwrap();
        assert_eq!((text.as_str(), consumed), ("abc ", 4));
        let path = write(&dir, full);
        let (text, consumed) = read_page(&path, 4).unwrap();
        assert_eq!((text.as_str(), consumed), ("é\n", 3));
    }

    #[test]
    fn a_full_page_ends_on_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let line = "x".repeat(99) + "\n";
        let body = line.repeat(LOG_PAGE_BYTES / 100 + 10);
        let path = write(&dir, body.as_bytes());
        let (text, consumed) = read_page(&path, 0).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(consumed as usize % 100, 0);
        let (rest, _) = read_page(&path, consumed).unwrap();
        assert_eq!(text.len() + rest.len(), body.len());
    }

    #[test]
    fn a_cursor_past_the_end_is_refused_and_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, b"hi\n");
        assert!(matches!(read_page(&path, 99), Err(LogError::BadCursor(_))));
        let (text, consumed) = read_page(&dir.path().join("none"), 0).unwrap();
        assert_eq!((text.as_str(), consumed), ("", 0));
    }
}
