//! Proptest strategies over the run aggregate's inputs, for this crate's
//! property tests (the domain's, and the adapters' projection-versus-replay
//! property).

use proptest::prelude::*;

use crate::domain::retry::{RetryPolicy, RetryReason, RunRetry};
use crate::domain::run::RunCommand;
use crate::testing::scenario::{infra_failure, requeue, spec, stop, t};

/// A run spec of 64 MB with a retry policy: 1 to 4 attempts, exit codes 1
/// and 3, out of memory (1.5 times, capped at 200 MB), maybe a backoff.
fn spec_with_policy() -> impl Strategy<Value = crate::domain::spec::RunSpec> {
    (1u32..5, prop::bool::ANY).prop_map(|(attempts, backoff)| {
        let policy = RetryPolicy {
            attempts: Some(attempts),
            on_exit_codes: vec![1, 3],
            on_reasons: vec![RetryReason::OutOfMemory],
            backoff_seconds: backoff.then_some(crate::domain::retry::Backoff {
                initial: 2,
                max: None,
                multiplier: None,
            }),
            memory_multiplier: None,
        };
        let mut spec = spec("r-1");
        spec.resources.memory = Some(64);
        spec.retry = RunRetry::resolve(Some(&policy), Some(200), None, 3);
        spec
    })
}

/// Any command a run may receive, about run `r-1`, with small attempt
/// numbers and a few exit codes, so that sequences of them reach every state.
pub fn any_command() -> impl Strategy<Value = RunCommand> {
    let attempt = 1u32..4;
    let code = prop::option::of(-1i64..256);
    prop_oneof![
        Just(RunCommand::Queue {
            spec: Box::new(spec("r-1")),
            now: t(0)
        }),
        spec_with_policy().prop_map(|spec| RunCommand::Queue {
            spec: Box::new(spec),
            now: t(0)
        }),
        (
            attempt.clone(),
            "[a-z]{1,4}",
            prop::option::of("[a-z]{1,4}")
        )
            .prop_map(
                |(attempt, task_id, running_on)| RunCommand::RecordLaunched {
                    limits: None,
                    attempt,
                    task_id,
                    running_on,
                    now: t(1),
                }
            ),
        attempt
            .clone()
            .prop_map(|attempt| RunCommand::RecordStarted {
                engine_version: None,
                attempt,
                task_id: None,
                host: None,
                now: t(2)
            }),
        (attempt.clone(), code, prop::bool::ANY).prop_map(|(attempt, exit_code, oom)| {
            RunCommand::RecordExited {
                usage: None,
                engine_version: None,
                attempt,
                exit_code,
                reason: oom.then(|| "out of memory (limit 64 MB)".to_owned()),
                now: t(3),
            }
        }),
        attempt.prop_map(infra_failure),
        "[a-z]{1,4}".prop_map(|by| stop(&by)),
        (1u32..4).prop_map(requeue),
        (6i64..30).prop_map(|now| RunCommand::Requeue {
            max_attempts: 3,
            limits: crate::domain::limits::LaunchLimits::Local,
            now: t(now),
        }),
        Just(RunCommand::Abandon {
            reason: "lost".into(),
            now: t(8)
        }),
    ]
}
