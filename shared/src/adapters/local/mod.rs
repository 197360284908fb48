//! The local engine and log source behind `flotilla serve`.
//!
//! [`LocalEngine`] runs each attempt under a supervisor of its own
//! (`flotilla supervise`, [`supervisor`]) that outlives the server: kill the
//! server at any moment and its jobs keep running. The engine and the
//! supervisor speak through the attempt's directory ([`attempt`]):
//!
//! - a launch starts a supervisor and hands it the launch on its stdin (so
//!   resolved secrets never touch the disk); the supervisor
//!   claims the attempt before it starts the command, and exactly one claim
//!   can ever exist, so an attempt runs at most once however often it is
//!   launched (a redelivered ticket, a restart that launches it again, two
//!   supervisors racing);
//! - launching an attempt that was claimed already adopts it: the engine
//!   follows that supervisor to its end instead of starting anything. This is
//!   how a restarted server re-attaches to the runs it left running, and
//!   learns the real exit code of those that ended while it was down;
//! - an attempt starts only once every earlier attempt of its run has ended,
//!   so only one attempt of a run is alive at a time;
//! - a stop is SIGTERM to the supervisor, which stops the whole tree (every
//!   descendant, `setsid` and double forks included: it is their subreaper)
//!   and reports the exit code the command really had;
//! - the run's memory (and cpu) is enforced in a cgroup per attempt where
//!   the machine allows one ([`cgroup`]), else as `ulimit -v`; which one
//!   applies is reported with the launch, for the run's timeline.
//!
//! - with a container runtime (docker or podman, [`container`]), the
//!   supervisor runs the attempt in its image instead: it pulls the image when
//!   it must, starts `<runtime> run … bash -c <command>` and stops it with
//!   `<runtime> stop`; its notes (the image looked for and pulled, the
//!   container started) reach the run's timeline as the attempt goes from
//!   PENDING to RUNNING. A container whose supervisor is gone is found by
//!   name and followed to its end.
//!
//! Every end is reported as an [`EngineUpdate`] on the engine's update
//! channel, which the local runtime feeds to the same use case the ECS status
//! function uses. Without a container runtime the run's image is recorded but
//! not used, nor are the registry credentials that would pull it; neither
//! engine uses the spot or on-demand lifecycle. [`LocalLogs`] reads the
//! attempts' logs back, and [`webhook`] posts the server's alerts.

pub mod attempt;
pub mod cgroup;
pub mod container;
mod logs;
pub mod supervisor;
mod tree;
pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tracing::warn;

use crate::domain::launch::{ATTEMPT_VAR, RUN_ID_VAR};
use crate::error::EngineError;
use crate::ports::{Clock, EngineChange, EngineUpdate, ExecutionEngine, LaunchSpec, Launched};

use attempt::{AttemptDir, CLAIMED_ELSEWHERE, Launch, LimitPlan, Note, ProcessId};
use cgroup::CgroupRoot;
use container::{ContainerPlan, ContainerRuntime};

pub use logs::{LOG_PAGE_BYTES, LocalLogs};

/// How often an adopted supervisor (not a child of this server) is looked at.
const ADOPTED_POLL: Duration = Duration::from_millis(100);
/// How often an attempt's notes are looked at while its supervisor runs.
const NOTES_POLL: Duration = Duration::from_millis(100);
/// How often a container whose supervisor is gone is looked at.
const ADOPTED_CONTAINER_POLL: Duration = Duration::from_millis(500);

/// The attempt this engine follows for a run.
#[derive(Debug, Clone)]
struct Task {
    attempt: u32,
    task_id: String,
}

/// Runs attempts under supervisors, on this machine.
pub struct LocalEngine {
    runs_dir: PathBuf,
    host: String,
    stop_grace: Duration,
    updates: mpsc::UnboundedSender<EngineUpdate>,
    clock: Arc<dyn Clock>,
    supervisor: Vec<std::ffi::OsString>,
    shell: PathBuf,
    cgroups: Option<CgroupRoot>,
    tasks: Arc<Mutex<HashMap<String, Task>>>,
    inherited: Vec<(String, String)>,
    secrets: Option<Arc<HashMap<String, String>>>,
    container: Option<ContainerRuntime>,
}

/// The secrets of a secrets file: `KEY=value` lines (the value is the rest
/// of the line, `=` and all); blank lines and `#` comments are skipped.
pub fn parse_secrets(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// The server's variables a run gets unless told otherwise: enough for a
/// shell and its tools to work, nothing that could be a secret.
pub const DEFAULT_PASS_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "USER"];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LocalEngine {
    /// An engine keeping attempt directories under `runs_dir`, starting
    /// supervisors with the command `supervisor` (followed by the attempt's
    /// directory), and reporting on `updates` with the times of `clock`.
    pub fn new(
        runs_dir: PathBuf,
        stop_grace: Duration,
        updates: mpsc::UnboundedSender<EngineUpdate>,
        clock: Arc<dyn Clock>,
        supervisor: Vec<std::ffi::OsString>,
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
            clock,
            supervisor,
            shell: container::find_on_path("bash").unwrap_or_else(|| PathBuf::from("bash")),
            container: None,
            cgroups: CgroupRoot::detect(),
            tasks: Arc::new(Mutex::new(HashMap::new())),
            inherited: Vec::new(),
            secrets: None,
        }
    }

    /// Secrets resolve from `secrets` (a secrets file's keys and values)
    /// only. Without a secrets file they resolve from the server's
    /// environment variable named by `value_from` (the laptop case: the
    /// user's own environment); with one, the server's environment is never
    /// read, so nobody can name a variable of it to read it.
    pub fn with_secrets(mut self, secrets: Option<HashMap<String, String>>) -> Self {
        self.secrets = secrets.map(Arc::new);
        self
    }

    /// The values of `spec`'s secrets, or which one has none.
    fn resolve_secrets(&self, spec: &LaunchSpec) -> Result<Vec<(String, String)>, EngineError> {
        spec.secrets
            .iter()
            .map(|s| {
                let value = match &self.secrets {
                    Some(file) => file.get(&s.value_from).cloned(),
                    None => std::env::var(&s.value_from).ok(),
                };
                let place = if self.secrets.is_some() {
                    "a key of the server's secrets file"
                } else {
                    "a variable of the server's environment (pass --secrets-file to keep secrets in a file)"
                };
                value
                    .map(|value| (s.name.clone(), value))
                    .ok_or_else(|| EngineError::Permanent {
                        message: format!("secret {}: `{}` is not {place}", s.name, s.value_from),
                        source: None,
                    })
            })
            .collect()
    }

    /// Runs execute in their image with `runtime` (else as host commands).
    pub fn with_container_runtime(mut self, runtime: Option<ContainerRuntime>) -> Self {
        self.container = runtime;
        self
    }

    /// The container runtime runs execute with, if any.
    pub fn container_runtime(&self) -> Option<&ContainerRuntime> {
        self.container.as_ref()
    }

    /// The container plan of `spec` on `runtime`, or why it cannot run there.
    fn container_plan(
        &self,
        runtime: &ContainerRuntime,
        spec: &LaunchSpec,
    ) -> Result<ContainerPlan, EngineError> {
        let gpus = spec.resources.gpu.unwrap_or(0);
        if gpus > 0 && !runtime.gpus {
            return Err(EngineError::Permanent {
                message: format!(
                    "the run asks for {gpus} GPUs and {} on this machine has none (no CDI spec for nvidia.com/gpu, no nvidia runtime); drop gpu or run it where GPUs are",
                    runtime.kind.program()
                ),
                source: None,
            });
        }
        Ok(ContainerPlan {
            runtime: runtime.clone(),
            image: spec.image.clone(),
            name: container::container_name(&spec.run_id, spec.attempt),
            labels: vec![
                format!("{}={}", container::RUN_LABEL, spec.run_id),
                format!("{}={}", container::ATTEMPT_LABEL, spec.attempt),
                format!("flotilla.definition_id={}", spec.definition_id),
            ],
            cpus: spec.resources.cpu.map(|units| units as f64 / 1024.0),
            memory_mb: spec.resources.memory,
            gpus,
            ports: spec.ports.clone(),
        })
    }

    /// Runs get the server's variables named in `names` (those it has, as
    /// they are now), and no other of its variables.
    pub fn passing_env(mut self, names: &[String]) -> Self {
        self.inherited = names
            .iter()
            .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)))
            .collect();
        self
    }

    /// Whether memory limits are enforced in cgroups (else as `ulimit -v`).
    pub fn has_cgroups(&self) -> bool {
        self.cgroups.is_some()
    }

    /// Attempts this engine follows that have not ended yet.
    pub fn running(&self) -> usize {
        lock(&self.tasks).len()
    }

    /// Whether the engine follows an attempt of `run_id` now.
    pub fn follows(&self, run_id: &str) -> bool {
        lock(&self.tasks).contains_key(run_id)
    }

    /// `(run_id, task_id)` of every attempt not ended yet.
    pub fn live_tasks(&self) -> Vec<(String, String)> {
        lock(&self.tasks)
            .iter()
            .map(|(run_id, task)| (run_id.clone(), task.task_id.clone()))
            .collect()
    }

    fn limits(&self, spec: &LaunchSpec) -> (LimitPlan, Option<String>) {
        let Some(mb) = spec.resources.memory else {
            return (LimitPlan::None, None);
        };
        if self.cgroups.is_some() {
            let cpu = spec
                .resources
                .cpu
                .map(|units| format!(", cpu to {:.2} cores", units as f64 / 1024.0))
                .unwrap_or_default();
            let note = format!("memory limited to {mb} MB{cpu} by a cgroup");
            (LimitPlan::Cgroup, Some(note))
        } else {
            let note = format!(
                "memory limited to {mb} MB of address space (ulimit -v): no cgroup can be made on this machine"
            );
            (LimitPlan::AddressSpace, Some(note))
        }
    }

    /// Follows attempt `attempt` of `run_id` until it ends, then reports its
    /// ending; `child` is the supervisor this engine started, if it did.
    /// The notes of an attempt in a container are reported as they come.
    fn follow(
        &self,
        run_id: &str,
        attempt: u32,
        task_id: String,
        child: Option<tokio::process::Child>,
    ) {
        {
            let mut tasks = lock(&self.tasks);
            if child.is_none() && tasks.get(run_id).is_some_and(|t| t.attempt == attempt) {
                return; // Followed already.
            }
            tasks.insert(run_id.to_owned(), Task { attempt, task_id });
        }
        let dir = AttemptDir::new(&self.runs_dir, run_id, attempt);
        let (tasks, updates, clock) = (
            Arc::clone(&self.tasks),
            self.updates.clone(),
            Arc::clone(&self.clock),
        );
        let run_id = run_id.to_owned();
        let notes = Notes {
            dir: dir.clone(),
            offset: 0,
            run_id: run_id.clone(),
            attempt,
            host: self.host.clone(),
            updates: updates.clone(),
            enabled: self.container.is_some(),
        };
        let runtime = self.container.clone();
        tokio::spawn(async move {
            let mut notes = notes;
            if let Some(mut child) = child {
                let status = loop {
                    tokio::select! {
                        status = child.wait() => break status,
                        () = tokio::time::sleep(NOTES_POLL) => notes.report(),
                    }
                };
                if status.is_ok_and(|s| s.code() == Some(CLAIMED_ELSEWHERE)) {
                    // Another supervisor runs this attempt: follow that one.
                    if let Ok(Some(claimant)) = dir.claimant() {
                        until_gone(claimant, &mut notes).await;
                    }
                }
            } else if let Ok(Some(claimant)) = dir.claimant() {
                until_gone(claimant, &mut notes).await;
            }
            notes.report();
            let change = match dir.read_status() {
                Ok(Some(ending)) if ending.retryable => (
                    EngineChange::InfrastructureFailure {
                        reason: ending
                            .reason
                            .unwrap_or_else(|| "the attempt failed to start".into()),
                    },
                    ending.ended_at,
                ),
                Ok(Some(ending)) => (
                    EngineChange::Exited {
                        exit_code: ending.exit_code,
                        reason: ending.reason,
                        usage: ending.usage,
                    },
                    ending.ended_at,
                ),
                _ => {
                    let adopted = match &runtime {
                        Some(runtime) if dir.claimant().ok().flatten().is_some() => {
                            adopt_container(runtime.clone(), &run_id, attempt).await
                        }
                        _ => None,
                    };
                    match adopted {
                        Some((exit_code, reason)) => (
                            EngineChange::Exited {
                                exit_code,
                                reason,
                                usage: None,
                            },
                            clock.now(),
                        ),
                        None => {
                            // The supervisor is gone without saying how the
                            // attempt ended (killed itself): nothing of the
                            // attempt may run on.
                            let marker = [
                                (RUN_ID_VAR.to_owned(), run_id.clone()),
                                (ATTEMPT_VAR.to_owned(), attempt.to_string()),
                            ];
                            let left = tree::marked(&marker);
                            tree::signal_all(&left, Signal::SIGKILL);
                            let reason = if dir.claimant().ok().flatten().is_some() {
                                "the attempt's supervisor was killed before it could record how the attempt ended; every process of the attempt was killed"
                            } else {
                                "the attempt was stopped before it started"
                            };
                            (
                                EngineChange::Exited {
                                    exit_code: None,
                                    reason: Some(reason.to_owned()),
                                    usage: None,
                                },
                                clock.now(),
                            )
                        }
                    }
                }
            };
            {
                let mut tasks = lock(&tasks);
                if tasks.get(&run_id).is_some_and(|t| t.attempt == attempt) {
                    tasks.remove(&run_id);
                }
            }
            let (change, at) = change;
            let _ = updates.send(EngineUpdate {
                run_id,
                attempt,
                change,
                engine_version: None,
                at,
            });
        });
    }
}

/// The notes of one attempt not reported yet, and where they go.
struct Notes {
    dir: AttemptDir,
    offset: u64,
    run_id: String,
    attempt: u32,
    host: String,
    updates: mpsc::UnboundedSender<EngineUpdate>,
    enabled: bool,
}

impl Notes {
    /// Reports every note written since the last call.
    fn report(&mut self) {
        if !self.enabled {
            return;
        }
        let (notes, offset) = self.dir.read_notes(self.offset);
        self.offset = offset;
        for note in notes {
            let (change, at) = match note {
                Note::Progress { message, at } => (EngineChange::Progress { message }, at),
                Note::Started { at } => (
                    EngineChange::Started {
                        task_id: None,
                        host: Some(self.host.clone()),
                    },
                    at,
                ),
            };
            let _ = self.updates.send(EngineUpdate {
                run_id: self.run_id.clone(),
                attempt: self.attempt,
                change,
                engine_version: None,
                at,
            });
        }
    }
}

/// The end of attempt `attempt` of `run_id`'s container, whose supervisor is
/// gone without recording it: a container still running is followed to its
/// end, then read and removed. `None` when there is no such container.
async fn adopt_container(
    runtime: ContainerRuntime,
    run_id: &str,
    attempt: u32,
) -> Option<(Option<i64>, Option<String>)> {
    let name = container::container_name(run_id, attempt);
    loop {
        let (program, n) = (runtime.program.clone(), name.clone());
        let state = tokio::task::spawn_blocking(move || container::inspect(&program, &n))
            .await
            .ok()
            .flatten()?;
        if !state.is_running() {
            // What the run asked for is not known here: only the container's
            // own state speaks.
            let plan = ContainerPlan {
                runtime: runtime.clone(),
                image: String::new(),
                name: name.clone(),
                labels: vec![],
                cpus: None,
                memory_mb: None,
                gpus: 0,
                ports: vec![],
            };
            let (exit_code, reason) =
                container::ending_of(&plan, Some(&state), Some(state.exit_code), false);
            let program = runtime.program.clone();
            let _ = tokio::task::spawn_blocking(move || container::remove(&program, &name)).await;
            return Some((exit_code, reason));
        }
        tokio::time::sleep(ADOPTED_CONTAINER_POLL).await;
    }
}

/// Waits until `process` has ended, reporting the attempt's notes.
async fn until_gone(process: ProcessId, notes: &mut Notes) {
    while process.is_alive() {
        notes.report();
        tokio::time::sleep(ADOPTED_POLL).await;
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

#[async_trait]
impl ExecutionEngine for LocalEngine {
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError> {
        let command = spec
            .command
            .as_deref()
            .ok_or_else(|| EngineError::Permanent {
                message: "the run has no command; the local engine runs `bash -c <command>`".into(),
                source: None,
            })?;
        // One attempt of a run alive at a time: an earlier one still alive is
        // stopped, and this one waits for its end.
        for earlier in 1..spec.attempt {
            let dir = AttemptDir::new(&self.runs_dir, &spec.run_id, earlier);
            if let Ok(Some(claimant)) = dir.claimant()
                && claimant.is_alive()
            {
                let _ = kill(Pid::from_raw(claimant.pid), Signal::SIGTERM);
                self.follow(&spec.run_id, earlier, claimant.pid.to_string(), None);
                return Err(EngineError::Retryable {
                    message: format!(
                        "attempt {earlier} is still stopping; attempt {} starts once it has ended",
                        spec.attempt
                    ),
                    source: None,
                });
            }
        }
        let container = match &self.container {
            Some(runtime) => Some(self.container_plan(runtime, spec)?),
            None => None,
        };
        let (plan, limits) = if container.is_some() {
            // The runtime holds the container to its size; the supervisor
            // notes how when it starts it.
            (LimitPlan::None, None)
        } else {
            self.limits(spec)
        };
        // A host process runs as soon as it is launched; a container once its
        // image is there, which its supervisor reports.
        let running_on = container.is_none().then(|| self.host.clone());
        let launched = |task_id: String| Launched {
            task_id,
            running_on: running_on.clone(),
            limits: limits.clone(),
        };
        let dir = AttemptDir::new(&self.runs_dir, &spec.run_id, spec.attempt);
        // Started already (by a server before this one, or a launch before
        // this one): follow it, start nothing.
        if let Some(claimant) = dir
            .claimant()
            .map_err(|e| io_error("read the attempt's claim", e))?
        {
            let task_id = claimant.pid.to_string();
            self.follow(&spec.run_id, spec.attempt, task_id.clone(), None);
            return Ok(launched(task_id));
        }
        if let Some(task) = lock(&self.tasks).get(&spec.run_id)
            && task.attempt == spec.attempt
        {
            return Ok(launched(task.task_id.clone()));
        }
        let secrets = self.resolve_secrets(spec)?;
        let launch = Launch {
            run_id: spec.run_id.clone(),
            attempt: spec.attempt,
            command: command.to_owned(),
            shell: self.shell.clone(),
            // A container gets its image's environment and the run's, as on
            // ECS; a host command some of the server's too.
            env: self
                .inherited
                .iter()
                .filter(|_| container.is_none())
                .filter(|(name, _)| !spec.env.iter().any(|v| &v.name == name))
                .cloned()
                .chain(spec.env.iter().map(|v| (v.name.clone(), v.value.clone())))
                .chain(secrets)
                .collect(),
            work_dir: dir.run_dir().join("work"),
            memory_mb: spec.resources.memory,
            cpu_units: spec.resources.cpu,
            limits: plan,
            deadline_seconds: spec.active_deadline_seconds,
            stop_grace_ms: u64::try_from(self.stop_grace.as_millis()).unwrap_or(u64::MAX),
            container,
        };
        let input = serde_json::to_vec(&launch).map_err(|e| EngineError::Permanent {
            message: format!("could not describe the launch: {e}"),
            source: None,
        })?;
        let (program, args) =
            self.supervisor
                .split_first()
                .ok_or_else(|| EngineError::Permanent {
                    message: "no supervisor command is configured".into(),
                    source: None,
                })?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .arg(dir.run_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| io_error("start the attempt's supervisor", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            // A launch is far smaller than a pipe's buffer: this never waits.
            if let Err(e) = stdin.write_all(&input).await {
                warn!(run_id = %spec.run_id, error = %e, "could not hand the launch to its supervisor");
            }
        }
        let pid = child.id().ok_or_else(|| EngineError::Retryable {
            message: "the supervisor ended before its id could be read".into(),
            source: None,
        })?;
        let task_id = pid.to_string();
        self.follow(&spec.run_id, spec.attempt, task_id.clone(), Some(child));
        Ok(launched(task_id))
    }

    async fn stop(&self, _cluster: &str, run_id: &str, _task_id: &str) -> Result<(), EngineError> {
        let Some(task) = lock(&self.tasks).get(run_id).cloned() else {
            return Ok(()); // Ended already.
        };
        let dir = AttemptDir::new(&self.runs_dir, run_id, task.attempt);
        let target = match dir.claimant() {
            Ok(Some(claimant)) if claimant.is_alive() => Some(claimant.pid),
            // Not claimed yet: the supervisor this engine just started.
            Ok(None) => task.task_id.parse::<i32>().ok(),
            _ => None,
        };
        match (target, &self.container) {
            (Some(pid), _) => {
                if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
                    warn!(run_id, pid, error = %e, "could not signal the attempt's supervisor");
                }
            }
            // A container adopted after its supervisor died: stop it.
            (None, Some(runtime)) => {
                let name = container::container_name(run_id, task.attempt);
                if let Err(e) = container::start_stop(&runtime.program, &name, self.stop_grace) {
                    warn!(run_id, error = %e, "could not stop the attempt's container");
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}
