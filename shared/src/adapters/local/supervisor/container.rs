//! The supervisor's steps for an attempt that runs in a container: find or
//! pull the image (noting each step, and classifying a failed pull), hold
//! the container to its memory in a cgroup of the attempt where the runtime
//! allows it, start `<runtime> run … bash -c <command>` with the command's
//! output in the attempt's log, stop it with `<runtime> stop -t <grace>`,
//! and read its end with `inspect` before removing it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::PollTimeout;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Wakeups, Why};
use crate::adapters::local::attempt::{AttemptDir, Ending, Launch, Note};
use crate::adapters::local::cgroup::{AttemptCgroup, CgroupRoot};
use crate::adapters::local::container::{
    self as runtime, ContainerPlan, PullFailure, classify_pull_failure,
};

/// Lines of a pull's output noted in the timeline, at most.
const MAX_PULL_NOTES: usize = 20;
/// Time after a stop's grace before the container is removed by force.
const FORCE_AFTER_GRACE: Duration = Duration::from_secs(15);

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn ending(exit_code: Option<i64>, reason: Option<String>, retryable: bool) -> Ending {
    Ending {
        exit_code,
        reason,
        ended_at: now(),
        retryable,
        usage: None,
    }
}

fn note(attempt: &AttemptDir, message: String) {
    if let Err(e) = attempt.write_note(&Note::Progress { message, at: now() }) {
        attempt.note_failure(&format!("cannot write a note: {e}"));
    }
}

/// How a pull went.
enum Pulled {
    Done,
    Stopped,
    Failed(PullFailure),
}

/// Pulls the plan's image, noting its output line by line (up to
/// [`MAX_PULL_NOTES`]); a stop asked meanwhile ends the pull.
fn pull(attempt: &AttemptDir, plan: &ContainerPlan, wakeups: &mut Wakeups) -> Pulled {
    let (reader, writer) = match nix::unistd::pipe() {
        Ok((reader, writer)) => (std::fs::File::from(reader), std::fs::File::from(writer)),
        Err(e) => {
            return Pulled::Failed(PullFailure {
                retryable: true,
                reason: format!("could not pull image {:?}: {e}", plan.image),
            });
        }
    };
    let spawned = writer.try_clone().and_then(|err| {
        Command::new(&plan.runtime.program)
            .args(["pull", &plan.image])
            .current_dir(attempt.run_dir())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(err)
            .spawn()
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return Pulled::Failed(PullFailure {
                retryable: true,
                reason: format!(
                    "could not start `{} pull`: {e}",
                    plan.runtime.kind.program()
                ),
            });
        }
    };
    let output = Arc::new(Mutex::new(String::new()));
    let lines = {
        let output = Arc::clone(&output);
        let attempt = attempt.clone();
        let image = plan.image.clone();
        std::thread::spawn(move || {
            let mut noted = 0;
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let line = line.trim().to_owned();
                if line.is_empty() {
                    continue;
                }
                if noted < MAX_PULL_NOTES {
                    note(&attempt, format!("pulling image {image}: {line}"));
                    noted += 1;
                }
                if let Ok(mut all) = output.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
            }
        })
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if wakeups.stop_asked() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = lines.join();
            return Pulled::Stopped;
        }
        wakeups.wait(PollTimeout::from(200u16));
    };
    let _ = lines.join();
    let said = output.lock().map(|o| o.clone()).unwrap_or_default();
    match status {
        Some(status) if status.success() => Pulled::Done,
        _ => Pulled::Failed(classify_pull_failure(&plan.image, &said)),
    }
}

/// Runs the attempt in its container; see the module docs.
pub(super) fn run(
    attempt: &AttemptDir,
    launch: &Launch,
    plan: &ContainerPlan,
    wakeups: &mut Wakeups,
) -> Ending {
    let program = &plan.runtime.program;
    if runtime::image_present(program, &plan.image) {
        note(attempt, format!("image {} is on this machine", plan.image));
    } else {
        note(attempt, format!("pulling image {}", plan.image));
        match pull(attempt, plan, wakeups) {
            Pulled::Done => note(attempt, format!("pulled image {}", plan.image)),
            Pulled::Stopped => {
                return ending(None, Some("stopped before it started".into()), false);
            }
            Pulled::Failed(failure) => {
                return ending(None, Some(failure.reason), failure.retryable);
            }
        }
    }
    if wakeups.stop_asked() {
        return ending(None, Some("stopped before it started".into()), false);
    }
    let cgroup = match plan.memory_mb.filter(|_| plan.runtime.cgroup_parent) {
        Some(mb) => CgroupRoot::detect()
            .and_then(|root| AttemptCgroup::create(&root, &plan.name, mb, None).ok()),
        None => None,
    };
    let parent = cgroup.as_ref().and_then(AttemptCgroup::hierarchy_path);
    note(attempt, plan.limits_note(parent.is_some()));
    let finish = |cgroup: Option<AttemptCgroup>| {
        runtime::remove(program, &plan.name);
        if let Some(group) = cgroup {
            group.remove_as_parent();
        }
    };
    let child = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(attempt.log())
        .and_then(|log| {
            let err = log.try_clone()?;
            Command::new(program)
                .args(plan.run_args(&launch.env, parent.as_deref()))
                // The runtime's monitor may leave files where it runs (conmon
                // an `oom` marker): in the run's directory, not the server's.
                .current_dir(attempt.run_dir())
                .arg("bash")
                .arg("-c")
                .arg(&launch.command)
                .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(err))
                .spawn()
        });
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            finish(cgroup);
            return ending(
                None,
                Some(format!(
                    "could not start `{} run`: {e}",
                    plan.runtime.kind.program()
                )),
                true,
            );
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
    let mut forced = false;
    let mut ports_noted = plan.ports.is_empty();
    // RUNNING once the runtime says the container runs (or ran).
    let mut start_noted = false;
    let note_start = |noted: &mut bool| {
        if *noted {
            return;
        }
        let ran = runtime::inspect(program, &plan.name).is_some_and(|s| s.status != "created");
        if ran {
            *noted = true;
            if let Err(e) = attempt.write_note(&Note::Started { at: now() }) {
                attempt.note_failure(&format!("cannot note the start: {e}"));
            }
        }
    };
    let status = loop {
        let mut ended = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) if s.pid() == Some(main) => ended = Some(s),
                Ok(_) => {} // A `stop` this supervisor started.
            }
        }
        if let Some(status) = ended {
            break status;
        }
        note_start(&mut start_noted);
        let now = Instant::now();
        if !ports_noted && now >= started + Duration::from_millis(500) {
            ports_noted = true;
            let published = runtime::published_ports(program, &plan.name);
            if !published.is_empty() {
                note(
                    attempt,
                    format!("ports published: {}", published.join(", ")),
                );
            }
        }
        if stopping.is_none() {
            let why = if wakeups.stop_asked() {
                Some(Why::Stopped)
            } else if deadline.is_some_and(|at| now >= at) {
                Some(Why::TimedOut)
            } else {
                None
            };
            if let Some(why) = why {
                stopping = Some((why, now + grace + FORCE_AFTER_GRACE));
                if let Err(e) = runtime::start_stop(program, &plan.name, grace) {
                    attempt.note_failure(&format!("cannot stop the container: {e}"));
                }
            }
        }
        if let Some((_, force_at)) = stopping
            && now >= force_at
            && !forced
        {
            forced = true;
            runtime::remove(program, &plan.name);
            let _ = kill(main, Signal::SIGKILL);
        }
        let wake = [
            deadline.filter(|_| stopping.is_none()),
            stopping.map(|(_, at)| at).filter(|at| *at > now),
            (!ports_noted).then(|| started + Duration::from_millis(500)),
            (!start_noted).then(|| now + Duration::from_millis(50)),
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
    };
    let client_code = match status {
        WaitStatus::Exited(_, code) => Some(i64::from(code)),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i64),
        _ => None,
    };
    note_start(&mut start_noted);
    let inspected = runtime::inspect(program, &plan.name);
    let oom = cgroup.as_ref().is_some_and(AttemptCgroup::oom_killed);
    let (exit_code, mut reason) = runtime::ending_of(plan, inspected.as_ref(), client_code, oom);
    match stopping.map(|(why, _)| why) {
        Some(Why::TimedOut) => reason = Some(super::deadline_reason(launch)),
        Some(Why::Stopped) if exit_code.is_some() => reason = None,
        _ => {}
    }
    finish(cgroup);
    ending(exit_code, reason, false)
}
