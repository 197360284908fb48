//! The supervisor of one attempt: `flotilla-supervise <run-dir>` (or
//! `flotilla supervise <run-dir>`), started by the local engine with the
//! attempt's [`Launch`] on stdin, and outliving it.
//!
//! It leaves the server's session (so a signal to the server's terminal or
//! process group never reaches a job), becomes a child subreaper (so every
//! process the command starts, daemonised or `setsid`, stays below it),
//! claims the attempt (exactly one supervisor ever runs an attempt: see
//! [`super::attempt`]), puts itself into the attempt's cgroup when there is
//! one, and runs `bash -c <command>` with stdout and stderr in the attempt's
//! log. It enforces the deadline and stops the whole tree on SIGTERM
//! (SIGTERM to every descendant, the grace, then SIGKILL), and when the
//! command and everything it started are gone it writes the ending to
//! `status.json` and exits. Nothing here needs the server to be alive.
//!
//! Signals arrive through handlers that write to a socket the loop polls
//! (`signal-hook`), not through a blocked mask: a mask would be inherited by
//! the command, which would then ignore SIGTERM.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

use super::attempt::{AttemptDir, CLAIMED_ELSEWHERE, Ending, Launch, LimitPlan, ProcessId};
use super::cgroup::{AttemptCgroup, CgroupRoot};
use super::tree;
use crate::domain::usage::Measured;

mod container;

/// Why the supervisor is ending the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Asked to stop (SIGTERM, SIGINT or SIGHUP).
    Stopped,
    /// Past the deadline.
    TimedOut,
}

/// Exit code of a supervisor that could not run its attempt at all.
const CANNOT_RUN: i32 = 70;

/// The signals the supervisor listens to: a stop (any of SIGTERM, SIGINT,
/// SIGHUP) sets `stop`; every one, SIGCHLD included, wakes the loop.
struct Wakeups {
    stop: Arc<AtomicBool>,
    socket: UnixStream,
}

impl Wakeups {
    fn install() -> std::io::Result<Self> {
        let (socket, writer) = UnixStream::pair()?;
        socket.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [SIGTERM, SIGINT, SIGHUP] {
            signal_hook::flag::register(signal, Arc::clone(&stop))?;
        }
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] {
            signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
        }
        Ok(Self { stop, socket })
    }

    fn stop_asked(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits for a signal, or until `timeout`.
    fn wait(&mut self, timeout: PollTimeout) {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, timeout);
        let mut drain = [0u8; 64];
        while matches!(self.socket.read(&mut drain), Ok(n) if n > 0) {}
    }
}

/// Runs the attempt described on stdin, of the run whose directory is
/// `run_dir`; returns the supervisor's exit code.
pub fn supervise(run_dir: PathBuf) -> i32 {
    // Until the launch is read, failures are noted as attempt 0's.
    let mut attempt = AttemptDir::in_run_dir(run_dir.clone(), 0);
    // A stop may come at any moment from here on; it is noted and acted on.
    let mut wakeups = match Wakeups::install() {
        Ok(wakeups) => wakeups,
        Err(e) => {
            attempt.note_failure(&format!("cannot listen for signals: {e}"));
            return CANNOT_RUN;
        }
    };
    // Out of the server's session and process group: its terminal's
    // signals, and a kill of its group, do not reach the job.
    let _ = nix::unistd::setsid();
    let Some(me) = ProcessId::current() else {
        return CANNOT_RUN;
    };
    let mut input = Vec::new();
    let launch = match std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice::<Launch>(&input).map_err(|e| e.to_string()))
    {
        Ok(launch) => launch,
        Err(e) => {
            // The engine died while handing it over: the attempt was never
            // started, and the next launch of it will start it.
            attempt.note_failure(&format!("cannot read the launch on stdin: {e}"));
            return CANNOT_RUN;
        }
    };
    attempt = AttemptDir::in_run_dir(run_dir, launch.attempt);
    // A host command's every descendant stays below the supervisor; a
    // container's processes are its runtime's to keep (podman's monitor
    // leaves the tree on purpose, and must outlive the command).
    if launch.container.is_none() {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    match attempt.claim(me) {
        Ok(true) => {}
        Ok(false) => return CLAIMED_ELSEWHERE,
        Err(e) => {
            attempt.note_failure(&format!("cannot claim the attempt: {e}"));
            return CANNOT_RUN;
        }
    }
    let ending = run(&attempt, &launch, me, &mut wakeups);
    if let Some(reason) = ending
        .reason
        .as_deref()
        .filter(|_| ending.exit_code.is_none())
    {
        attempt.note_failure(reason);
    }
    if let Err(e) = attempt.write_status(&ending) {
        attempt.note_failure(&format!("cannot write the attempt's status: {e}"));
        return CANNOT_RUN;
    }
    0
}

/// The command's run, from spawn to the end of its last process.
fn run(attempt: &AttemptDir, launch: &Launch, me: ProcessId, wakeups: &mut Wakeups) -> Ending {
    let ended = |exit_code, reason: Option<String>| Ending {
        exit_code,
        reason,
        ended_at: chrono::Utc::now(),
        retryable: false,
        usage: None,
    };
    if wakeups.stop_asked() {
        return ended(None, Some("stopped before it started".into()));
    }
    if let Some(plan) = &launch.container {
        return container::run(attempt, launch, plan, wakeups);
    }
    let cgroup = match (launch.limits, launch.memory_mb) {
        (LimitPlan::Cgroup, Some(mb)) => CgroupRoot::detect()
            .and_then(|root| {
                let name = format!("{}-{}", launch.run_id, launch.attempt);
                AttemptCgroup::create(&root, &name, mb, launch.cpu_units).ok()
            })
            .filter(|group| group.join(std::process::id()).is_ok()),
        _ => None,
    };
    let child = match spawn(attempt, launch, cgroup.is_none()) {
        Ok(child) => child,
        Err(e) => {
            if let Some(group) = cgroup {
                group.leave_and_remove(std::process::id());
            }
            return ended(None, Some(format!("could not start bash: {e}")));
        }
    };
    let main = Pid::from_raw(child.id() as i32);
    drop(child);

    let started = Instant::now();
    let deadline = launch
        .deadline_seconds
        .map(|s| started + Duration::from_secs(s));
    let grace = Duration::from_millis(launch.stop_grace_ms);
    let mut stopping: Option<(Why, Instant)> = None;
    let mut status: Option<WaitStatus> = None;
    loop {
        // Reap every child that ended (the command, and orphans handed to us).
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => {
                    if s.pid() == Some(main) {
                        status = Some(s);
                    }
                }
            }
        }
        let rest = tree::descendants(me.pid);
        if status.is_some() {
            if rest.is_empty() {
                break;
            }
            // The command is done; nothing it left behind may linger.
            tree::signal_all(&rest, Signal::SIGKILL);
        }
        let now = Instant::now();
        if stopping.is_none() {
            if wakeups.stop_asked() {
                stopping = Some((Why::Stopped, now + grace));
                tree::signal_all(&rest, Signal::SIGTERM);
            } else if deadline.is_some_and(|at| now >= at) {
                stopping = Some((Why::TimedOut, now + grace));
                tree::signal_all(&rest, Signal::SIGTERM);
            }
        }
        if let Some((_, kill_at)) = stopping
            && now >= kill_at
        {
            tree::signal_all(&rest, Signal::SIGKILL);
        }
        let wake = [
            deadline.filter(|_| stopping.is_none()),
            stopping.map(|(_, at)| at).filter(|at| *at > now),
            // While killing leftovers or waiting past a SIGKILL, look again soon.
            (status.is_some() || stopping.is_some_and(|(_, at)| now >= at))
                .then(|| now + Duration::from_millis(20)),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match wake {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at
                    .saturating_duration_since(now)
                    .as_millis()
                    .clamp(1, 60_000);
                PollTimeout::from(u16::try_from(ms).unwrap_or(60_000))
            }
        };
        wakeups.wait(timeout);
    }

    let oom = cgroup.as_ref().is_some_and(AttemptCgroup::oom_killed);
    let usage = measured(cgroup.as_ref());
    if let Some(group) = cgroup {
        group.leave_and_remove(std::process::id());
    }
    let (exit_code, signal) = match status {
        Some(WaitStatus::Exited(_, code)) => (Some(i64::from(code)), None),
        Some(WaitStatus::Signaled(_, signal, _)) => (Some(128 + signal as i64), Some(signal)),
        _ => (None, None),
    };
    let reason = match (stopping.map(|(why, _)| why), signal) {
        (Some(Why::TimedOut), _) => Some(deadline_reason(launch)),
        (Some(Why::Stopped), _) => None,
        (None, Some(Signal::SIGKILL)) if oom => Some(format!(
            "out of memory (limit {} MB)",
            launch.memory_mb.unwrap_or_default()
        )),
        (None, Some(Signal::SIGKILL)) => {
            Some("killed by SIGKILL (out of memory, or killed from outside flotilla)".to_owned())
        }
        (None, Some(signal)) => Some(format!("killed by signal {}", signal as i32)),
        (None, None) => None,
    };
    Ending {
        usage,
        ..ended(exit_code, reason)
    }
}

/// What the command's processes used, once every one of them has been
/// reaped: their CPU time (the supervisor's children, orphans included, as
/// it is their subreaper) and their peak memory (the cgroup's, when the
/// attempt has one and the machine keeps it; else the largest single
/// process's).
fn measured(cgroup: Option<&AttemptCgroup>) -> Option<Measured> {
    use nix::sys::resource::{UsageWho, getrusage};
    let children = getrusage(UsageWho::RUSAGE_CHILDREN).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let cpu_seconds = seconds(children.user_time()) + seconds(children.system_time());
    // Linux reports the largest resident set in KB.
    let largest_process = u64::try_from(children.max_rss()).unwrap_or(0) / 1024;
    let group = cgroup
        .and_then(AttemptCgroup::peak_memory_bytes)
        .map(|bytes| bytes / (1024 * 1024));
    Some(Measured {
        cpu_seconds,
        peak_memory_mb: group.map_or(largest_process, |g| g.max(largest_process)),
    })
}

/// The exit reason of an attempt stopped at its deadline.
fn deadline_reason(launch: &Launch) -> String {
    format!(
        "exceeded its active_deadline_seconds ({} s) and was stopped",
        launch.deadline_seconds.unwrap_or_default()
    )
}

/// Starts `bash -c <command>` in the attempt's working directory, with its
/// output in the attempt's log. Without a cgroup, a memory limit is applied
/// as `ulimit -v` by an outer bash that then `exec`s the command's bash.
fn spawn(
    attempt: &AttemptDir,
    launch: &Launch,
    limit_here: bool,
) -> std::io::Result<std::process::Child> {
    std::fs::create_dir_all(&launch.work_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(attempt.log())?;
    let stderr = log.try_clone()?;
    let mut command = Command::new(&launch.shell);
    match launch
        .memory_mb
        .filter(|_| limit_here && launch.limits != LimitPlan::None)
    {
        Some(mb) => {
            let kb = mb.saturating_mul(1024);
            command
                .arg("-c")
                .arg(format!("ulimit -v {kb} && exec \"$0\" -c \"$1\""))
                .arg(&launch.shell)
                .arg(&launch.command);
        }
        None => {
            command.arg("-c").arg(&launch.command);
        }
    }
    command
        .current_dir(&launch.work_dir)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .spawn()
}
