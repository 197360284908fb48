//! Proptest strategies over the run aggregate's inputs, for this crate's
//! property tests (the domain's, and the adapters' projection-versus-replay
//! property).

use proptest::prelude::*;

use crate::domain::run::RunCommand;
use crate::testing::scenario::{infra_failure, requeue, spec, stop, t};

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
        (attempt.clone(), code).prop_map(|(attempt, exit_code)| RunCommand::RecordExited {
            engine_version: None,
            attempt,
            exit_code,
            reason: None,
            now: t(3)
        }),
        attempt.prop_map(infra_failure),
        "[a-z]{1,4}".prop_map(|by| stop(&by)),
        (1u32..4).prop_map(requeue),
        Just(RunCommand::Abandon {
            reason: "lost".into(),
            now: t(8)
        }),
    ]
}
