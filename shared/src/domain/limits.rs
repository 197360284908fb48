//! What an engine can take: the size of a launch's command and environment,
//! checked once for every path that makes one (a definition's create and
//! update, an execute, a template's render), so that a launch never fails
//! at the engine for something a request could have been told.
//!
//! The same goes for a launch's size: on ECS every task runs on Fargate,
//! which takes only some cpu and memory pairs ([`crate::domain::fargate`])
//! and has no GPUs, so a definition, template or execute asking for another
//! is refused when it is saved or sent, not when its task is launched. A
//! local process takes any size.
//!
//! No NUL byte is taken anywhere: neither a process's arguments and
//! environment nor most stores can hold one.

use crate::domain::EnvVar;
use crate::domain::fargate;
use crate::domain::spec::Resources;

/// Largest single argument, or `NAME=value` environment string, Linux
/// passes to a program (`MAX_ARG_STRLEN`, 32 pages, less its final NUL).
pub const LOCAL_MAX_ARGUMENT_BYTES: usize = 32 * 4096 - 1;
/// Most bytes a local launch's command and environment may have together:
/// half of Linux's usual 2 MiB `ARG_MAX`, leaving the rest to the server's
/// own environment, which runs inherit.
pub const LOCAL_MAX_TOTAL_BYTES: usize = 1024 * 1024;
/// Most characters ECS takes in a RunTask's overrides, command and
/// environment included, counted as JSON
/// (<https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TaskOverride.html>).
pub const ECS_MAX_OVERRIDE_BYTES: usize = 8192;

/// Longest name-like field: a group, an owner, a tag, a label's key, an
/// idempotence key, a cluster or tier asked for.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest image reference: a registry, a 255-character name, a tag and a
/// digest fit.
pub const MAX_IMAGE_BYTES: usize = 1024;
/// Longest free text: a description, an avatar URI, a label's value.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Most items of one list field: tags, labels, ports, env variables.
pub const MAX_ITEMS: usize = 256;
/// Largest JSON document kept with a template or a run: a template's
/// source, schema or defaults, a run's template payload.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The problem with `value` of `field` being longer than `max` bytes, if it is.
pub fn length_problem(field: &str, value: &str, max: usize) -> Option<String> {
    (value.len() > max).then(|| {
        format!(
            "{field} is {} bytes, more than the {max} it may be: shorten it",
            value.len()
        )
    })
}

/// The problem with list `field` having more than `max` items, if it has.
pub fn count_problem(field: &str, count: usize, max: usize) -> Option<String> {
    (count > max).then(|| format!("{field} has {count} items, more than the {max} it may have"))
}

/// The problem with JSON `value` of `field` being larger than
/// [`MAX_DOCUMENT_BYTES`] written out, if it is.
pub fn document_problem(field: &str, value: &serde_json::Value) -> Option<String> {
    let bytes = serde_json::to_vec(value).map_or(0, |v| v.len());
    (bytes > MAX_DOCUMENT_BYTES).then(|| {
        format!("{field} is {bytes} bytes as JSON, more than the {MAX_DOCUMENT_BYTES} it may be: send less")
    })
}

/// The problems of a list of names: too many, or one too long or holding a NUL.
pub fn names_problems(field: &str, names: &[String]) -> Vec<String> {
    let mut problems: Vec<String> = count_problem(field, names.len(), MAX_ITEMS)
        .into_iter()
        .collect();
    for name in names {
        problems.extend(length_problem(
            &format!("{field} item"),
            name,
            MAX_NAME_BYTES,
        ));
        problems.extend(nul_problem(&format!("{field} item"), name));
    }
    problems
}

/// The engine whose limits a launch must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchLimits {
    /// A local process: `bash -c <command>` with the environment.
    Local,
    /// An ECS task: the command and the environment as container overrides.
    Ecs,
    /// A Kubernetes Job's container: `bash -c <command>` with the
    /// environment, as a local process takes them, at any size the
    /// cluster's nodes have (GPUs too).
    Kubernetes,
}

/// The problem with `value` of `field` holding a NUL byte, if it does.
pub fn nul_problem(field: &str, value: &str) -> Option<String> {
    value
        .contains('\0')
        .then(|| format!("{field} holds a NUL byte, which no process or store can take: remove it"))
}

impl LaunchLimits {
    /// What is wrong with `resources` on this engine: on ECS, a cpu and
    /// memory pair Fargate does not take (saying which would do), or a gpu.
    /// `cluster` names where the launch goes, when that is known. A local
    /// process takes any size.
    pub fn resource_problems(self, resources: &Resources, cluster: Option<&str>) -> Vec<String> {
        let mut problems = Vec::new();
        if matches!(self, Self::Local | Self::Kubernetes) {
            return problems;
        }
        // A zero is refused on its own (see `Resources::problems`).
        if resources.cpu != Some(0)
            && resources.memory != Some(0)
            && let Err(problem) = fargate::size(resources.cpu, resources.memory)
        {
            problems.push(problem);
        }
        if let Some(gpu) = resources.gpu.filter(|g| *g > 0) {
            problems.push(match cluster.filter(|c| !c.is_empty()) {
                Some(cluster) => format!(
                    "gpu {gpu}: cluster \"{cluster}\" has no GPUs, as its tasks run on Fargate, which has none: leave gpu out or set it to 0"
                ),
                None => format!(
                    "gpu {gpu}: this deployment's clusters have no GPUs, as their tasks run on Fargate, which has none: leave gpu out or set it to 0"
                ),
            });
        }
        problems
    }

    /// `resources` as this engine runs them: on ECS, cpu and memory both
    /// set to the Fargate size they choose ([`fargate::size`]), when there
    /// is one; a local process runs what it was given.
    pub fn sized(self, resources: Resources) -> Resources {
        match self {
            Self::Local | Self::Kubernetes => resources,
            Self::Ecs => match fargate::size(resources.cpu, resources.memory) {
                Ok(size) => Resources {
                    cpu: Some(size.cpu),
                    memory: Some(size.memory),
                    ..resources
                },
                Err(_) => resources,
            },
        }
    }

    /// `resources` with memory grown to `target` MB, as this engine runs
    /// them, never more than `cap` MB: a local process gets `target`; on
    /// ECS, the Fargate size [`fargate::grown`] picks. `None` when the
    /// memory cannot grow within the cap.
    pub fn grown(self, resources: Resources, target: u64, cap: u64) -> Option<Resources> {
        let from = resources.memory.unwrap_or(0);
        match self {
            Self::Local | Self::Kubernetes => {
                (target > from && target <= cap).then_some(Resources {
                    memory: Some(target),
                    ..resources
                })
            }
            Self::Ecs => {
                let cpu = resources.cpu.unwrap_or(fargate::SMALLEST.cpu);
                fargate::grown(cpu, from, target, cap).map(|size| Resources {
                    cpu: Some(size.cpu),
                    memory: Some(size.memory),
                    ..resources
                })
            }
        }
    }

    /// What is wrong with a launch of `command` with `env` (every variable
    /// the process gets, in order), each problem naming its field and limit.
    pub fn problems(self, command: Option<&str>, env: &[EnvVar]) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(command) = command {
            problems.extend(nul_problem("command", command));
        }
        for var in env {
            problems.extend(nul_problem(&format!("env {}", var.name), &var.value));
        }
        match self {
            Self::Local | Self::Kubernetes => {
                if let Some(command) = command
                    && command.len() > LOCAL_MAX_ARGUMENT_BYTES
                {
                    problems.push(format!(
                        "command is {} bytes, more than the {LOCAL_MAX_ARGUMENT_BYTES} one argument may be on Linux: put the script in a file the command runs",
                        command.len()
                    ));
                }
                for var in env {
                    let bytes = var.name.len() + 1 + var.value.len();
                    if bytes > LOCAL_MAX_ARGUMENT_BYTES {
                        problems.push(format!(
                            "env {} is {bytes} bytes, more than the {LOCAL_MAX_ARGUMENT_BYTES} one variable may be on Linux: pass a file's path instead",
                            var.name
                        ));
                    }
                }
                let total = command.map_or(0, str::len)
                    + env
                        .iter()
                        .map(|v| v.name.len() + v.value.len() + 2)
                        .sum::<usize>();
                if total > LOCAL_MAX_TOTAL_BYTES {
                    problems.push(format!(
                        "command and env are {total} bytes together, more than the {LOCAL_MAX_TOTAL_BYTES} a launch may be: make them smaller"
                    ));
                }
            }
            Self::Ecs => {
                let overrides = serde_json::json!({
                    "containerOverrides": [{
                        "name": "main",
                        "command": command.map(|c| vec!["bash", "-c", c]),
                        "environment": env.iter().map(|v| serde_json::json!({"name": v.name, "value": v.value})).collect::<Vec<_>>(),
                    }],
                    "cpu": "00000",
                    "memory": "000000",
                });
                let bytes = overrides.to_string().len();
                if bytes > ECS_MAX_OVERRIDE_BYTES {
                    problems.push(format!(
                        "command and env are {bytes} characters as ECS overrides, more than the {ECS_MAX_OVERRIDE_BYTES} ECS takes: make them smaller, or read large inputs from S3"
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_within_the_limits_has_no_problem_and_one_past_them_names_field_and_limit() {
        let env = [EnvVar::new("A", "1")];
        assert!(
            LaunchLimits::Local
                .problems(Some("echo hi"), &env)
                .is_empty()
        );
        assert!(LaunchLimits::Ecs.problems(Some("echo hi"), &env).is_empty());
        let long = "x".repeat(LOCAL_MAX_ARGUMENT_BYTES + 1);
        let problems = LaunchLimits::Local.problems(Some(&long), &env);
        assert!(
            problems[0].starts_with("command is 131072 bytes"),
            "{problems:?}"
        );
        let problems = LaunchLimits::Ecs.problems(Some(&"x".repeat(9000)), &env);
        assert!(problems[0].contains("8192"), "{problems:?}");
    }

    #[test]
    fn on_ecs_a_size_fargate_does_not_take_or_a_gpu_is_a_problem_and_locally_neither_is() {
        let big = Resources {
            memory: Some(4096),
            cpu: Some(256),
            gpu: Some(1),
            ..Resources::default()
        };
        assert!(LaunchLimits::Local.resource_problems(&big, None).is_empty());
        assert_eq!(LaunchLimits::Local.sized(big), big);
        let problems = LaunchLimits::Ecs.resource_problems(&big, Some("default"));
        assert_eq!(
            problems,
            [
                "memory 4096 MB on Fargate takes cpu 512, 1024 or 2048; cpu 256 takes memory 512, 1024 or 2048 MB",
                "gpu 1: cluster \"default\" has no GPUs, as its tasks run on Fargate, which has none: leave gpu out or set it to 0",
            ]
        );
        let saved = LaunchLimits::Ecs.resource_problems(&big, None);
        assert!(
            saved[1].contains("this deployment's clusters have no GPUs"),
            "{saved:?}"
        );
        let memory_only = Resources {
            memory: Some(4096),
            gpu: Some(0),
            ..Resources::default()
        };
        assert!(
            LaunchLimits::Ecs
                .resource_problems(&memory_only, Some("default"))
                .is_empty()
        );
        assert_eq!(LaunchLimits::Ecs.sized(memory_only).cpu, Some(512));
        assert_eq!(
            LaunchLimits::Ecs.sized(Resources::default()),
            Resources {
                cpu: Some(256),
                memory: Some(512),
                ..Resources::default()
            }
        );
        let zero = Resources {
            cpu: Some(0),
            ..Resources::default()
        };
        assert!(
            LaunchLimits::Ecs.resource_problems(&zero, None).is_empty(),
            "a zero is refused once, by Resources::problems"
        );
    }

    #[test]
    fn a_nul_byte_is_refused_in_the_command_and_in_env_values() {
        let env = [EnvVar::new("A", "a\0b")];
        let problems = LaunchLimits::Local.problems(Some("echo \0"), &env);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].starts_with("env A holds a NUL byte"));
    }
}
