//! Running an attempt in its image with docker or podman, driven through
//! their command line (the same flags on both, no daemon socket needed for
//! podman, and whatever configuration the user's `docker`/`podman` already
//! has, contexts and `containers.conf` included).
//!
//! This module owns the choice of a runtime at start-up ([`choose`]), the
//! [`ContainerPlan`] the engine hands to an attempt's supervisor, the
//! `<runtime> run` command line made from it, and the reading of what a
//! runtime says: whether an image is there, why a pull failed
//! ([`classify_pull_failure`]), and how a container ended ([`inspect`]).
//! The supervisor ([`super::supervisor`]) runs the steps; the engine
//! ([`super::LocalEngine`]) adopts containers whose supervisor is gone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::retry::IMAGE_PULL_FAILED;

/// Label naming the run a container belongs to.
pub const RUN_LABEL: &str = "flotilla.run_id";
/// Label naming the attempt a container runs.
pub const ATTEMPT_LABEL: &str = "flotilla.attempt";

/// How long start-up waits for a runtime to answer before passing it over.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The container runtimes this engine drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// `docker` (Docker Engine, Docker Desktop, or anything that speaks its CLI).
    Docker,
    /// `podman`.
    Podman,
}

impl RuntimeKind {
    /// The program's name.
    pub fn program(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Podman => "podman",
        }
    }
}

/// What `flotilla serve --runtime` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeRequest {
    /// podman, else docker, when one is installed and answers; else `process`.
    #[default]
    Auto,
    /// Docker, or fail at start-up.
    Docker,
    /// Podman, or fail at start-up.
    Podman,
    /// Commands run on the host, images ignored.
    Process,
}

/// A container runtime found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRuntime {
    /// Which one.
    pub kind: RuntimeKind,
    /// Its program, found on PATH at start-up.
    pub program: PathBuf,
    /// Its version, as it reports it.
    pub version: String,
    /// Whether it puts containers below a cgroup flotilla makes
    /// (`--cgroup-parent`, podman's cgroupfs manager): the memory limit is
    /// then set there, where flotilla can count out-of-memory kills itself.
    pub cgroup_parent: bool,
    /// Whether it can give a container GPUs (a CDI spec for
    /// `nvidia.com/gpu`, or Docker's nvidia runtime).
    pub gpus: bool,
}

/// The runtime start-up settled on, and why, for its log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The container runtime, or `None` for host processes.
    pub runtime: Option<ContainerRuntime>,
    /// Why, in a sentence.
    pub why: String,
}

/// `program`'s path on PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `program args` with a bound on its time; its stdout when it
/// succeeds, else what went wrong.
async fn output(program: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(format!("gave no answer in {} s", timeout.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(Ok(out)) => Err(last_line(&String::from_utf8_lossy(&out.stderr))
            .unwrap_or_else(|| format!("exited with {}", out.status))),
    }
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Whether a CDI spec on this machine names NVIDIA GPUs (what podman's
/// `--device nvidia.com/gpu=all` needs).
fn cdi_has_gpus() -> bool {
    ["/etc/cdi", "/var/run/cdi"].iter().any(|dir| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                std::fs::read_to_string(entry.path()).is_ok_and(|t| t.contains("nvidia.com/gpu"))
            })
        })
    })
}

/// Asks `kind` whether it is installed and answers.
pub async fn probe(kind: RuntimeKind) -> Result<ContainerRuntime, String> {
    let program =
        find_on_path(kind.program()).ok_or_else(|| format!("{} is not on PATH", kind.program()))?;
    match kind {
        RuntimeKind::Podman => {
            let answer = output(
                &program,
                &[
                    "info",
                    "--format",
                    "{{.Version.Version}}|{{.Host.CgroupManager}}",
                ],
                PROBE_TIMEOUT,
            )
            .await
            .map_err(|e| format!("`podman info` failed: {e}"))?;
            let (version, manager) = answer.split_once('|').unwrap_or((&answer, ""));
            Ok(ContainerRuntime {
                kind,
                program,
                version: version.to_owned(),
                cgroup_parent: manager == "cgroupfs",
                gpus: cdi_has_gpus(),
            })
        }
        RuntimeKind::Docker => {
            let answer = output(
                &program,
                &[
                    "info",
                    "--format",
                    "{{.ServerVersion}}|{{range $name, $_ := .Runtimes}}{{$name}} {{end}}",
                ],
                PROBE_TIMEOUT,
            )
            .await
            .map_err(|e| format!("`docker info` failed (is the daemon running?): {e}"))?;
            let (version, runtimes) = answer.split_once('|').unwrap_or((&answer, ""));
            Ok(ContainerRuntime {
                kind,
                program,
                version: version.to_owned(),
                cgroup_parent: false,
                gpus: runtimes.split_whitespace().any(|r| r == "nvidia"),
            })
        }
    }
}

/// The runtime `request` settles on: for `auto`, podman, else docker, when
/// one answers, else host processes; a named runtime that does not answer
/// is an error that says why.
pub async fn choose(request: RuntimeRequest) -> Result<Choice, String> {
    let found = |runtime: ContainerRuntime, why: String| Choice {
        why: format!(
            "{why}: {} {} ({})",
            runtime.kind.program(),
            runtime.version,
            runtime.program.display()
        ),
        runtime: Some(runtime),
    };
    match request {
        RuntimeRequest::Process => Ok(Choice {
            runtime: None,
            why: "--runtime process: commands run on this machine, images are not used".into(),
        }),
        RuntimeRequest::Docker | RuntimeRequest::Podman => {
            let kind = if request == RuntimeRequest::Docker {
                RuntimeKind::Docker
            } else {
                RuntimeKind::Podman
            };
            let runtime = probe(kind).await?;
            Ok(found(runtime, format!("--runtime {}", kind.program())))
        }
        RuntimeRequest::Auto => {
            let mut passed = Vec::new();
            for kind in [RuntimeKind::Podman, RuntimeKind::Docker] {
                match probe(kind).await {
                    Ok(runtime) => {
                        return Ok(found(
                            runtime,
                            "--runtime auto found a container runtime".into(),
                        ));
                    }
                    Err(why) => passed.push(why),
                }
            }
            Ok(Choice {
                runtime: None,
                why: format!(
                    "--runtime auto found no container runtime ({}): commands run on this machine, images are not used",
                    passed.join("; ")
                ),
            })
        }
    }
}

/// Everything an attempt's supervisor needs to run it in a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// The runtime.
    pub runtime: ContainerRuntime,
    /// The image.
    pub image: String,
    /// The container's name: [`container_name`].
    pub name: String,
    /// Labels, `key=value`.
    pub labels: Vec<String>,
    /// CPUs (`--cpus`), from the run's cpu units.
    pub cpus: Option<f64>,
    /// Memory limit, MB.
    pub memory_mb: Option<u64>,
    /// GPUs asked for.
    pub gpus: u64,
    /// Container ports to publish on the loopback address.
    pub ports: Vec<u16>,
}

/// The name of attempt `attempt` of `run_id`'s container.
pub fn container_name(run_id: &str, attempt: u32) -> String {
    format!("flotilla-{run_id}-{attempt}")
}

impl ContainerPlan {
    /// `run` and its options, up to the image: the names of `env` only (the
    /// values travel in the runtime's environment, never on a command
    /// line), and `cgroup_parent` when the limit is set on a cgroup made
    /// for the attempt.
    pub fn run_args(&self, env: &[(String, String)], cgroup_parent: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--name".into(),
            self.name.clone(),
            "--pull".into(),
            "never".into(),
            "--sig-proxy=false".into(),
        ];
        for label in &self.labels {
            args.push("--label".into());
            args.push(label.clone());
        }
        let names: BTreeSet<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
        for name in names {
            args.push("--env".into());
            args.push(name.to_owned());
        }
        match (cgroup_parent, self.memory_mb) {
            (Some(parent), _) => args.push(format!("--cgroup-parent={parent}")),
            (None, Some(mb)) => {
                args.push(format!("--memory={mb}m"));
                args.push(format!("--memory-swap={mb}m"));
            }
            (None, None) => {}
        }
        if let Some(cpus) = self.cpus {
            args.push(format!("--cpus={cpus:.3}"));
        }
        if self.gpus > 0 {
            match self.runtime.kind {
                RuntimeKind::Podman => args.push("--device=nvidia.com/gpu=all".into()),
                RuntimeKind::Docker => args.push(format!("--gpus={}", self.gpus)),
            }
        }
        for port in &self.ports {
            args.push(format!("--publish=127.0.0.1::{port}"));
        }
        args.push(self.image.clone());
        args
    }

    /// A line for the timeline on how the container is held to its size.
    pub fn limits_note(&self, in_cgroup: bool) -> String {
        let mut parts = Vec::new();
        if let Some(mb) = self.memory_mb {
            if in_cgroup {
                parts.push(format!("memory limited to {mb} MB by a cgroup"));
            } else {
                parts.push(format!("memory limited to {mb} MB"));
            }
        }
        if let Some(cpus) = self.cpus {
            parts.push(format!("{cpus:.2} cpus"));
        }
        if self.gpus > 0 {
            parts.push(format!("{} GPUs", self.gpus));
        }
        let program = self.runtime.kind.program();
        if parts.is_empty() {
            format!("container {} of {} by {program}", self.name, self.image)
        } else {
            format!(
                "container {} of {} by {program}: {}",
                self.name,
                self.image,
                parts.join(", ")
            )
        }
    }
}

/// Why a pull failed, and whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    /// `true` for a registry that could not be reached, rate-limited or
    /// failed (NEEDS_RETRY); `false` for an image that does not exist or a
    /// name that is not one (the run stops: the image name must be fixed).
    pub retryable: bool,
    /// The run's exit reason.
    pub reason: String,
}

/// Classifies what a failed `pull` of `image` printed, as ECS classifies
/// `CannotPullContainerError`s.
pub fn classify_pull_failure(image: &str, output: &str) -> PullFailure {
    let said = last_line(output).unwrap_or_else(|| "no message".into());
    let lower = output.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "invalid reference format",
        "repository name must",
        "invalid reference",
        "parsing reference",
        "short-name",
    ]) {
        return PullFailure {
            retryable: false,
            reason: format!(
                "{IMAGE_PULL_FAILED}: {image:?} is not a valid image name ({said}); fix the image name in the definition"
            ),
        };
    }
    // A registry that rate-limits or fails is worth another try; so is one
    // that cannot be reached. These are looked for before "not found",
    // which some of their messages contain.
    if has(&[
        "toomanyrequests",
        "too many requests",
        "429 too many",
        "connection refused",
        "no such host",
        "i/o timeout",
        "timeout",
        "network is unreachable",
        "connection reset",
        "tls handshake",
        "502 bad gateway",
        "503 service unavailable",
        "500 internal server error",
        "temporary failure",
        "unexpected eof",
        ": eof",
    ]) {
        return PullFailure {
            retryable: true,
            reason: format!(
                "the registry of image {image:?} could not be reached or refused for now ({said}); the run will be retried"
            ),
        };
    }
    if has(&[
        "unauthorized",
        "authentication required",
        "access denied",
        "denied",
        "forbidden",
    ]) {
        return PullFailure {
            retryable: false,
            reason: format!(
                "{IMAGE_PULL_FAILED}: the registry of {image:?} refused access ({said}); fix the image name, or give the registry's credentials"
            ),
        };
    }
    if has(&[
        "manifest unknown",
        "not found",
        "name unknown",
        "does not exist",
        "no such image",
    ]) {
        return PullFailure {
            retryable: false,
            reason: format!(
                "{IMAGE_PULL_FAILED}: image {image:?} was not found in its registry ({said}); fix the image name (or its tag) in the definition"
            ),
        };
    }
    PullFailure {
        retryable: true,
        reason: format!("image {image:?} could not be pulled ({said}); the run will be retried"),
    }
}

/// How a container stands, from `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `created`, `running`, `exited`, …
    pub status: String,
    /// Its exit code, once it exited.
    pub exit_code: i64,
    /// Whether the runtime saw it killed for memory.
    pub oom_killed: bool,
}

impl Inspected {
    /// Whether it still runs (or is about to).
    pub fn is_running(&self) -> bool {
        matches!(
            self.status.as_str(),
            "running" | "paused" | "restarting" | "stopping" | "configured" | "initialized"
        )
    }
}

fn runtime_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    // Nothing the runtime leaves where it runs lands in the server's directory.
    command.stdin(Stdio::null()).current_dir("/");
    command
}

/// `inspect` of container `name`, or `None` when there is no such container.
pub fn inspect(program: &Path, name: &str) -> Option<Inspected> {
    let out = runtime_command(program)
        .args([
            "container",
            "inspect",
            "--format",
            "{{.State.Status}}|{{.State.ExitCode}}|{{.State.OOMKilled}}",
            name,
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split('|');
    Some(Inspected {
        status: parts.next()?.to_owned(),
        exit_code: parts.next()?.trim().parse().ok()?,
        oom_killed: parts.next()?.trim() == "true",
    })
}

/// Whether `image` is on this machine already.
pub fn image_present(program: &Path, image: &str) -> bool {
    runtime_command(program)
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The host addresses of the container's published ports, one per line.
pub fn published_ports(program: &Path, name: &str) -> Vec<String> {
    runtime_command(program)
        .args(["port", name])
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `stop -t <grace>` of `name` (SIGTERM, then SIGKILL after the grace),
/// without waiting for it.
pub fn start_stop(
    program: &Path,
    name: &str,
    grace: Duration,
) -> std::io::Result<std::process::Child> {
    let seconds = grace.as_millis().div_ceil(1000).max(1).to_string();
    runtime_command(program)
        .args(["stop", "-t", &seconds, name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Kills and removes `name`, waiting for the runtime to be done.
pub fn remove(program: &Path, name: &str) {
    let _ = runtime_command(program)
        .args(["rm", "-f", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The exit reason of a container that ended with `inspected` (its runtime's
/// view) and `client_code` (what `<runtime> run` exited with), when the
/// ending needs one, and its exit code: `None` when the command never ran.
pub fn ending_of(
    plan: &ContainerPlan,
    inspected: Option<&Inspected>,
    client_code: Option<i64>,
    oom_counted: bool,
) -> (Option<i64>, Option<String>) {
    let program = plan.runtime.kind.program();
    match inspected {
        None => (
            None,
            Some(format!(
                "{program} could not create the container{}; its message is at the end of the attempt's log",
                client_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default()
            )),
        ),
        Some(state) if state.status == "created" => {
            let reason = if matches!(client_code, Some(126 | 127)) {
                format!(
                    "image {:?} has no bash: flotilla runs the command as `bash -c <command>`, as ECS does; use an image with bash",
                    plan.image
                )
            } else {
                format!(
                    "{program} could not start the container{}; its message is at the end of the attempt's log",
                    client_code
                        .map(|c| format!(" (exit {c})"))
                        .unwrap_or_default()
                )
            };
            (None, Some(reason))
        }
        Some(state) => {
            let code = state.exit_code;
            let killed = code == 137;
            let reason = if killed && (oom_counted || state.oom_killed) {
                Some(format!(
                    "out of memory (limit {} MB)",
                    plan.memory_mb.unwrap_or_default()
                ))
            } else if killed {
                Some(
                    "killed by SIGKILL (out of memory, or killed from outside flotilla)".to_owned(),
                )
            } else if code > 128 && code < 160 {
                Some(format!("killed by signal {}", code - 128))
            } else {
                None
            };
            (Some(code), reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: RuntimeKind) -> ContainerPlan {
        ContainerPlan {
            runtime: ContainerRuntime {
                kind,
                program: PathBuf::from(kind.program()),
                version: "1".into(),
                cgroup_parent: false,
                gpus: true,
            },
            image: "python:3.12".into(),
            name: container_name("local-1", 2),
            labels: vec![
                "flotilla.run_id=local-1".into(),
                "flotilla.attempt=2".into(),
            ],
            cpus: Some(0.5),
            memory_mb: Some(64),
            gpus: 0,
            ports: vec![8888],
        }
    }

    #[test]
    fn the_run_command_names_variables_but_never_carries_their_values() {
        let env = vec![
            ("TOKEN".to_owned(), "s3cret".to_owned()),
            ("A".to_owned(), "1".to_owned()),
            ("TOKEN".to_owned(), "later".to_owned()),
        ];
        let args = plan(RuntimeKind::Podman).run_args(&env, None);
        assert!(
            args.iter()
                .all(|a| !a.contains("s3cret") && !a.contains("later"))
        );
        let env_names: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "--env")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(env_names, ["A", "TOKEN"], "each name once");
        for expected in [
            "--memory=64m",
            "--memory-swap=64m",
            "--cpus=0.500",
            "--publish=127.0.0.1::8888",
            "flotilla-local-1-2",
            "flotilla.attempt=2",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        assert_eq!(args.last().map(String::as_str), Some("python:3.12"));
    }

    #[test]
    fn a_cgroup_parent_replaces_the_memory_flags_and_gpus_follow_the_runtime() {
        let mut p = plan(RuntimeKind::Podman);
        p.gpus = 1;
        let args = p.run_args(&[], Some("/flotilla/local-1-2"));
        assert!(args.contains(&"--cgroup-parent=/flotilla/local-1-2".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--memory")));
        assert!(args.contains(&"--device=nvidia.com/gpu=all".to_owned()));
        let mut d = plan(RuntimeKind::Docker);
        d.gpus = 2;
        assert!(d.run_args(&[], None).contains(&"--gpus=2".to_owned()));
    }

    #[test]
    fn pull_failures_are_classified_as_ecs_classifies_them() {
        let cases = [
            (
                "Error: initializing source docker://127.0.0.1:5999/x:1: pinging container registry 127.0.0.1:5999: Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused",
                true,
            ),
            (
                "Error: reading manifest 1 in 127.0.0.1:5000/nosuch: manifest unknown: manifest unknown",
                false,
            ),
            (
                "Error: initializing source: reading manifest latest in docker.io/library/x: toomanyrequests: You have reached your pull rate limit",
                true,
            ),
            ("Error: invalid reference format", false),
            (
                "Error: parsing reference \"Not An Image\": invalid reference format: repository name must be lowercase",
                false,
            ),
            (
                "Error response from daemon: pull access denied for nosuch, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
                false,
            ),
            ("Error: something else entirely", true),
            (
                "Error: Get \"https://registry.example/v2/\": dial tcp: lookup registry.example: no such host",
                true,
            ),
        ];
        for (output, retryable) in cases {
            let failure = classify_pull_failure("img", output);
            assert_eq!(failure.retryable, retryable, "{output}: {}", failure.reason);
            if !retryable {
                assert!(
                    failure.reason.contains("fix the image name"),
                    "{}",
                    failure.reason
                );
            }
        }
    }

    #[test]
    fn an_ending_says_out_of_memory_no_bash_or_nothing_as_it_was() {
        let p = plan(RuntimeKind::Podman);
        let state = |status: &str, code, oom| Inspected {
            status: status.into(),
            exit_code: code,
            oom_killed: oom,
        };
        assert_eq!(
            ending_of(&p, Some(&state("exited", 137, false)), Some(137), true),
            (Some(137), Some("out of memory (limit 64 MB)".into()))
        );
        assert_eq!(
            ending_of(&p, Some(&state("exited", 137, true)), Some(137), false).1,
            Some("out of memory (limit 64 MB)".into())
        );
        assert_eq!(
            ending_of(&p, Some(&state("exited", 3, false)), Some(3), false),
            (Some(3), None)
        );
        let (code, reason) = ending_of(&p, Some(&state("created", 0, false)), Some(127), false);
        assert_eq!(code, None);
        assert!(reason.is_some_and(|r| r.contains("has no bash")));
        assert_eq!(ending_of(&p, None, Some(125), false).0, None);
    }
}
