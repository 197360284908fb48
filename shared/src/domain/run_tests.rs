//! Scenarios and properties of the run aggregate.

use proptest::prelude::*;

use super::*;
use crate::testing::scenario::*;
use crate::testing::strategy::any_command;

#[test]
fn queueing_a_new_run_records_run_queued() {
    RunScenario::given([])
        .when(RunCommand::Queue {
            spec: Box::new(spec("r-1")),
            now: t(0),
        })
        .then_events([queued()])
        .then_status(RunStatus::Queued);
}

#[test]
fn queueing_the_same_run_twice_is_refused() {
    RunScenario::given([queued()])
        .when(RunCommand::Queue {
            spec: Box::new(spec("r-1")),
            now: t(0),
        })
        .then_error(DomainError::RunAlreadyExists {
            run_id: "r-1".into(),
        });
}

#[test]
fn a_command_on_a_run_that_does_not_exist_is_refused() {
    RunScenario::given([])
        .when(stop("me"))
        .then_error(DomainError::RunNotFound);
}

#[test]
fn a_run_goes_queued_pending_running_stopped_with_its_exit_code() {
    let outcome = RunScenario::given([queued(), submitted(1), started(1)])
        .when(exited(1, 3))
        .then_status(RunStatus::Stopped);
    let run = outcome.run();
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.started_at, Some(t(2)));
    assert_eq!(run.finished_at, Some(t(4)));
    assert_eq!(run.task_id.as_deref(), Some("task-1"));
}

#[test]
fn a_duplicate_submission_changes_nothing() {
    RunScenario::given([queued(), submitted(1)])
        .when(RunCommand::RecordLaunched {
            limits: None,
            attempt: 1,
            task_id: "task-1".into(),
            running_on: None,
            now: t(1),
        })
        .then_nothing();
}

#[test]
fn a_start_reported_after_the_run_stopped_changes_nothing() {
    RunScenario::given([queued(), submitted(1), started(1), stopped(1, Some(0))])
        .when(RunCommand::RecordStarted {
            engine_version: None,
            attempt: 1,
            task_id: None,
            host: None,
            now: t(9),
        })
        .then_nothing();
}

#[test]
fn a_start_reported_before_the_submission_moves_the_run_to_running() {
    RunScenario::given([queued()])
        .when(RunCommand::RecordStarted {
            engine_version: None,
            attempt: 1,
            task_id: Some("task-1".into()),
            host: None,
            now: t(2),
        })
        .then_status(RunStatus::Running);
}

#[test]
fn a_report_about_an_earlier_attempt_changes_nothing() {
    RunScenario::given([
        queued(),
        submitted(1),
        needs_retry(1),
        RunEvent::RunRequeued {
            attempt: 2,
            resources: None,
            resources_note: None,
            node_lifecycle: None,
            lifecycle_note: None,
            at: t(5),
        },
    ])
    .when(exited(1, 0))
    .then_nothing();
}

#[test]
fn stopping_a_queued_run_ends_it_at_once() {
    let outcome = RunScenario::given([queued()])
        .when(stop("jane@example.com"))
        .then_status(RunStatus::Stopped);
    let reason = outcome.run().exit_reason.unwrap_or_default();
    assert!(reason.contains("stopped by jane@example.com"), "{reason}");
    assert!(reason.contains("before it was launched"), "{reason}");
}

#[test]
fn stopping_a_running_run_asks_the_engine_and_the_exit_says_who_stopped_it() {
    let given = [queued(), submitted(1), started(1)];
    RunScenario::given(given.clone())
        .when(stop("jane"))
        .then_events([RunEvent::RunStopRequested {
            reason: None,
            by: "jane".into(),
            at: t(5),
        }])
        .then_status(RunStatus::Running);
    let requested = RunEvent::RunStopRequested {
        reason: None,
        by: "jane".into(),
        at: t(5),
    };
    let outcome = RunScenario::given(given.into_iter().chain([requested]))
        .when(exited(1, 143))
        .then_status(RunStatus::Stopped);
    assert_eq!(
        outcome.run().exit_reason.as_deref(),
        Some("stopped by jane")
    );
}

#[test]
fn stopping_a_stopped_run_changes_nothing() {
    RunScenario::given([queued(), stopped(1, Some(0))])
        .when(stop("jane"))
        .then_nothing();
}

#[test]
fn an_infrastructure_failure_needs_a_retry_and_the_sweep_queues_attempt_two() {
    RunScenario::given([queued(), submitted(1)])
        .when(infra_failure(1))
        .then_status(RunStatus::NeedsRetry);
    let outcome = RunScenario::given([queued(), submitted(1), needs_retry(1)])
        .when(requeue(3))
        .then_events([RunEvent::RunRequeued {
            attempt: 2,
            resources: None,
            resources_note: None,
            node_lifecycle: None,
            lifecycle_note: None,
            at: t(6),
        }])
        .then_status(RunStatus::Queued);
    assert_eq!(outcome.run().attempt, 2);
    assert_eq!(outcome.run().task_id, None);
}

#[test]
fn the_sweep_gives_up_once_the_attempts_are_used() {
    let outcome = RunScenario::given([queued(), submitted(1), needs_retry(1)])
        .when(requeue(1))
        .then_status(RunStatus::Stopped);
    let reason = outcome.run().exit_reason.unwrap_or_default();
    assert!(reason.contains("gave up after 1 attempts"), "{reason}");
    assert!(reason.contains("CannotPullContainerError"), "{reason}");
}

#[test]
fn an_infrastructure_failure_after_the_code_exited_changes_nothing() {
    RunScenario::given([queued(), submitted(1), started(1), stopped(1, Some(1))])
        .when(infra_failure(1))
        .then_nothing();
}

#[test]
fn a_stopped_run_without_exit_code_may_still_need_a_retry() {
    RunScenario::given([queued(), submitted(1), stopped(1, None)])
        .when(infra_failure(1))
        .then_status(RunStatus::NeedsRetry);
}

#[test]
fn an_infrastructure_failure_after_a_stop_request_ends_the_run_instead_of_retrying() {
    let requested = RunEvent::RunStopRequested {
        reason: None,
        by: "jane".into(),
        at: t(2),
    };
    RunScenario::given([queued(), submitted(1), requested])
        .when(infra_failure(1))
        .then_status(RunStatus::Stopped);
}

#[test]
fn abandoning_an_in_flight_run_stops_it_with_the_reason() {
    let outcome = RunScenario::given([queued(), submitted(1), started(1)])
        .when(RunCommand::Abandon {
            reason: "server restarted".into(),
            now: t(7),
        })
        .then_status(RunStatus::Stopped);
    assert_eq!(
        outcome.run().exit_reason.as_deref(),
        Some("server restarted")
    );
    assert_eq!(outcome.run().exit_code, None);
}

#[test]
fn only_a_queued_run_of_the_current_attempt_is_launchable() {
    let run = RunScenario::given([queued()]).when(stop("x")).run();
    assert!(!run.is_launchable(1));
    let state = replay(&[queued()]);
    let run = state.run.unwrap_or_else(|| panic!("queued run"));
    assert!(run.is_launchable(1));
    assert!(!run.is_launchable(2));
}

// ----- properties ------------------------------------------------------------

/// Applies commands one by one, keeping every event decided.
fn run_commands(commands: Vec<RunCommand>) -> (Vec<RunEvent>, Vec<RunState>) {
    let mut state = RunState::default();
    let mut events = Vec::new();
    let mut states = vec![state.clone()];
    for command in commands {
        if let Ok(new_events) = decide(&state, command) {
            for event in new_events {
                state = evolve(state, &event);
                events.push(event);
                states.push(state.clone());
            }
        }
    }
    (events, states)
}

proptest! {
    #[test]
    fn no_command_sequence_makes_decide_or_evolve_panic(commands in prop::collection::vec(any_command(), 0..40)) {
        let (events, states) = run_commands(commands);
        prop_assert_eq!(states.last().map(|s| s.version), Some(events.len() as u64));
    }

    #[test]
    fn evolve_never_panics_on_arbitrary_event_sequences(commands in prop::collection::vec(any_command(), 0..40), order in prop::collection::vec(0usize..100, 0..40)) {
        // Events decided in one history, replayed shuffled: evolve must cope.
        let (mut events, _) = run_commands(commands);
        for (i, j) in order.into_iter().enumerate() {
            if !events.is_empty() {
                let (a, b) = (i % events.len(), j % events.len());
                events.swap(a, b);
            }
        }
        let state = replay(&events);
        prop_assert_eq!(state.version, events.len() as u64);
    }

    #[test]
    fn stopped_is_absorbing_except_for_needs_retry(commands in prop::collection::vec(any_command(), 0..40)) {
        let (_, states) = run_commands(commands);
        for pair in states.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            if let (Some(b), Some(a)) = (&before.run, &after.run)
                && b.status == RunStatus::Stopped
            {
                prop_assert!(
                    a.status == RunStatus::Stopped || a.status == RunStatus::NeedsRetry,
                    "STOPPED became {}", a.status
                );
            }
        }
    }

    #[test]
    fn no_attempt_past_the_policys_runs_and_memory_grows_only_after_running_out_and_never_past_the_cap(
        commands in prop::collection::vec(any_command(), 0..60)
    ) {
        let (events, states) = run_commands(commands);
        for (event, pair) in events.iter().zip(states.windows(2)) {
            let (Some(before), Some(after)) = (&pair[0].run, &pair[1].run) else { continue };
            let Some(retry) = &after.spec.retry else { continue };
            if matches!(event, RunEvent::RunSubmitted { .. } | RunEvent::RunStarted { .. }) {
                prop_assert!(after.attempt <= retry.attempts, "attempt {} of {}", after.attempt, retry.attempts);
            }
            let memory = after.resources().memory.unwrap_or_default();
            prop_assert!(retry.max_memory.is_none_or(|cap| memory <= cap), "{memory} MB over the cap");
            if after.resources() != before.resources() {
                prop_assert!(matches!(event, RunEvent::RunRequeued { .. }), "changed by {}", event.name());
                prop_assert!(
                    before.exit_reason.as_deref().is_some_and(|r| r.starts_with("out of memory")),
                    "grew after {:?}", before.exit_reason
                );
                prop_assert!(memory > before.resources().memory.unwrap_or_default());
            }
        }
    }

    #[test]
    fn status_never_moves_backwards_except_through_needs_retry(commands in prop::collection::vec(any_command(), 0..40)) {
        let (events, states) = run_commands(commands);
        for (event, pair) in events.iter().zip(states.windows(2)) {
            if let (Some(b), Some(a)) = (&pair[0].run, &pair[1].run) {
                let allowed = a.status.rank() >= b.status.rank()
                    || a.status == RunStatus::NeedsRetry
                    || matches!(event, RunEvent::RunRequeued { .. });
                prop_assert!(allowed, "{} -> {} by {}", b.status, a.status, event.name());
            }
        }
    }

    #[test]
    fn deciding_the_same_command_twice_produces_nothing_the_second_time(commands in prop::collection::vec(any_command(), 1..30), repeat in any_command()) {
        let (events, _) = run_commands(commands);
        let mut state = replay(&events);
        if let Ok(first) = decide(&state, repeat.clone()) {
            for e in &first { state = evolve(state, e); }
            if let Ok(second) = decide(&state, repeat.clone()) {
                // Stop, exit, start and submit reports are idempotent; only a
                // requeue may legitimately act again (a new attempt may fail again).
                if !matches!(repeat, RunCommand::Requeue { .. }) {
                    prop_assert!(second.is_empty(), "second {:?} produced {:?}", repeat, second);
                }
            }
        }
    }
}

#[test]
fn an_engine_report_not_newer_than_the_last_one_applied_changes_nothing() {
    let started_v3 = RunEvent::RunStarted {
        limits: None,
        attempt: 1,
        engine_version: Some(3),
        task_id: None,
        host: None,
        at: t(2),
    };
    let report = |version| RunCommand::RecordExited {
        usage: None,
        attempt: 1,
        engine_version: Some(version),
        exit_code: Some(0),
        reason: None,
        now: t(4),
    };
    RunScenario::given([queued(), submitted(1), started_v3.clone()])
        .when(report(3))
        .then_nothing();
    RunScenario::given([queued(), submitted(1), started_v3.clone()])
        .when(report(2))
        .then_nothing();
    let outcome = RunScenario::given([queued(), submitted(1), started_v3])
        .when(report(4))
        .then_status(RunStatus::Stopped);
    assert_eq!(outcome.run().engine_version, Some(4));
}

#[test]
fn a_new_attempt_forgets_the_previous_tasks_engine_version() {
    let failed_v9 = RunEvent::RunNeedsRetry {
        attempt: 1,
        engine_version: Some(9),
        reason: "CannotPullContainerError".into(),
        exit_code: None,
        retry_at: None,
        at: t(3),
    };
    let requeued = RunEvent::RunRequeued {
        attempt: 2,
        resources: None,
        resources_note: None,
        node_lifecycle: None,
        lifecycle_note: None,
        at: t(4),
    };
    RunScenario::given([queued(), submitted(1), failed_v9, requeued])
        .when(RunCommand::RecordStarted {
            attempt: 2,
            engine_version: Some(2),
            task_id: Some("task-2".into()),
            host: None,
            now: t(5),
        })
        .then_status(RunStatus::Running);
}

#[test]
fn a_step_of_preparing_is_recorded_while_the_attempt_is_pending_and_changes_no_status() {
    let progress = |attempt, now| RunCommand::RecordProgress {
        attempt,
        message: "pulling image python:3.12".into(),
        now: t(now),
    };
    RunScenario::given([queued(), submitted(1)])
        .when(progress(1, 2))
        .then_events([RunEvent::RunPreparing {
            attempt: 1,
            message: "pulling image python:3.12".into(),
            at: t(2),
        }])
        .then_status(RunStatus::Pending);
    RunScenario::given([queued(), submitted(1), started(1)])
        .when(progress(1, 3))
        .then_nothing();
    RunScenario::given([queued(), submitted(1)])
        .when(progress(2, 3))
        .then_nothing();
    RunScenario::given([queued()])
        .when(progress(1, 3))
        .then_nothing();
    // Said again after a restart: recorded once.
    RunScenario::given([
        queued(),
        submitted(1),
        RunEvent::RunPreparing {
            attempt: 1,
            message: "pulling image python:3.12".into(),
            at: t(2),
        },
    ])
    .when(progress(1, 2))
    .then_nothing();
    // A step stamped before the launch was recorded still counts: the
    // engine's clock and the record's need not agree.
    RunScenario::given([queued(), submitted(1)])
        .when(progress(1, 0))
        .then_status(RunStatus::Pending)
        .then_events([RunEvent::RunPreparing {
            attempt: 1,
            message: "pulling image python:3.12".into(),
            at: t(0),
        }]);
}

#[test]
fn an_attempt_records_at_most_the_cap_of_preparing_steps_however_many_its_engine_reports() {
    use crate::domain::run::MAX_PREPARING_STEPS;
    let step = |attempt, i: i64| RunEvent::RunPreparing {
        attempt,
        message: format!("FailedScheduling: 0/3 nodes are available ({i})"),
        at: t(10) + chrono::Duration::milliseconds(i),
    };
    let mut events = vec![queued(), submitted(1)];
    events.extend((0..i64::from(MAX_PREPARING_STEPS)).map(|i| step(1, i)));
    RunScenario::given(events.clone())
        .when(RunCommand::RecordProgress {
            attempt: 1,
            message: "one more".into(),
            now: t(20),
        })
        .then_nothing();
    // The next attempt starts counting again.
    let mut retried = events;
    retried.push(RunEvent::RunNeedsRetry {
        attempt: 1,
        engine_version: None,
        reason: "pod evicted".into(),
        exit_code: None,
        retry_at: None,
        at: t(21),
    });
    retried.push(RunEvent::RunRequeued {
        attempt: 2,
        at: t(22),
        resources: None,
        resources_note: None,
        node_lifecycle: None,
        lifecycle_note: None,
    });
    retried.push(submitted(2));
    RunScenario::given(retried)
        .when(RunCommand::RecordProgress {
            attempt: 2,
            message: "Scheduled".into(),
            now: t(30),
        })
        .then_events([RunEvent::RunPreparing {
            attempt: 2,
            message: "Scheduled".into(),
            at: t(30),
        }]);
}

/// A run of 64 MB queued with `policy` (resolved with a 200 MB cap).
fn queued_with(policy: serde_json::Value) -> RunEvent {
    let policy: crate::domain::retry::RetryPolicy = serde_json::from_value(policy).unwrap();
    let mut spec = spec("r-1");
    spec.resources.memory = Some(64);
    spec.retry = crate::domain::retry::RunRetry::resolve(Some(&policy), Some(200), None, 3);
    RunEvent::RunQueued {
        spec: Box::new(spec),
        at: t(0),
    }
}

fn out_of_memory(attempt: u32, now: i64) -> RunCommand {
    RunCommand::RecordExited {
        usage: None,
        attempt,
        engine_version: None,
        exit_code: Some(137),
        reason: Some("out of memory (limit 64 MB)".into()),
        now: t(now),
    }
}

fn requeue_at(now: i64) -> RunCommand {
    RunCommand::Requeue {
        max_attempts: 3,
        limits: crate::domain::limits::LaunchLimits::Local,
        now: t(now),
    }
}

#[test]
fn an_exit_code_the_policy_lists_needs_a_retry_after_its_backoff_and_another_code_stands() {
    let policy = serde_json::json!({"attempts": 3, "on_exit_codes": [3], "backoff_seconds": {"initial": 10}});
    let outcome = RunScenario::given([queued_with(policy.clone()), submitted(1), started(1)])
        .when(exited(1, 3))
        .then_status(RunStatus::NeedsRetry);
    let run = outcome.run();
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.retry_at, Some(t(14)));
    assert!(
        run.exit_reason
            .as_deref()
            .is_some_and(|r| r.contains("on_exit_codes")),
        "{run:?}"
    );
    // Not before its wait is over, then attempt 2.
    let failed = [queued_with(policy.clone()), submitted(1), started(1)];
    let mut history = failed.to_vec();
    history.push(RunEvent::RunNeedsRetry {
        attempt: 1,
        engine_version: None,
        reason: "exit code 3 is in the retry policy's on_exit_codes".into(),
        exit_code: Some(3),
        retry_at: Some(t(14)),
        at: t(4),
    });
    RunScenario::given(history.clone())
        .when(requeue_at(13))
        .then_nothing();
    RunScenario::given(history)
        .when(requeue_at(14))
        .then_status(RunStatus::Queued);
    // An exit code not listed stands, as without a policy.
    RunScenario::given([queued_with(policy), submitted(1), started(1)])
        .when(exited(1, 4))
        .then_status(RunStatus::Stopped);
}

#[test]
fn the_last_attempt_a_policy_allows_stands_and_says_why() {
    let policy = serde_json::json!({"attempts": 1, "on_exit_codes": [3]});
    let run = RunScenario::given([queued_with(policy), submitted(1), started(1)])
        .when(exited(1, 3))
        .then_status(RunStatus::Stopped)
        .run();
    assert_eq!(run.exit_code, Some(3));
    assert!(
        run.exit_reason
            .as_deref()
            .is_some_and(|r| r.contains("attempt 1 of the 1")),
        "{run:?}"
    );
}

#[test]
fn a_stop_asked_for_is_never_retried_whatever_the_policy() {
    let policy = serde_json::json!({"on_exit_codes": [143]});
    RunScenario::given([
        queued_with(policy),
        submitted(1),
        started(1),
        RunEvent::RunStopRequested {
            by: "alice".into(),
            reason: None,
            at: t(3),
        },
    ])
    .when(exited(1, 143))
    .then_status(RunStatus::Stopped);
}

#[test]
fn an_attempt_out_of_memory_is_retried_with_more_memory_up_to_the_cap_and_then_stands() {
    let policy = serde_json::json!({"attempts": 5, "on_reasons": ["out of memory"]});
    let mut history = vec![queued_with(policy), submitted(1), started(1)];
    let mut memories = vec![];
    for attempt in 1..=4 {
        let now = i64::from(attempt) * 10;
        let outcome = RunScenario::given(history.clone()).when(out_of_memory(attempt, now));
        let events = outcome.events();
        history.extend(events);
        let run = replay(&history).run.unwrap();
        if run.status == RunStatus::Stopped {
            assert!(
                run.exit_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("max_memory 200 MB")),
                "{run:?}"
            );
            break;
        }
        let requeued = RunScenario::given(history.clone()).when(requeue_at(now + 1));
        history.extend(requeued.events());
        let run = replay(&history).run.unwrap();
        assert_eq!(run.status, RunStatus::Queued, "{run:?}");
        memories.push(run.resources().memory.unwrap());
        assert!(
            run.resources_note
                .as_deref()
                .is_some_and(|n| n.contains("ran out of memory"))
        );
        history.push(RunEvent::RunSubmitted {
            attempt: attempt + 1,
            task_id: format!("task-{}", attempt + 1),
            at: t(now + 2),
        });
    }
    assert_eq!(memories, [96, 144, 200]);
}

#[test]
fn without_out_of_memory_in_its_policy_a_run_that_ran_out_stands() {
    let policy = serde_json::json!({"on_exit_codes": [1]});
    RunScenario::given([queued_with(policy), submitted(1), started(1)])
        .when(out_of_memory(1, 4))
        .then_status(RunStatus::Stopped);
}

#[test]
fn an_infrastructure_failure_waits_out_the_backoff_and_uses_the_policys_attempts() {
    let policy = serde_json::json!({"attempts": 2, "backoff_seconds": {"initial": 5}});
    let run = RunScenario::given([queued_with(policy.clone()), submitted(1)])
        .when(infra_failure(1))
        .then_status(RunStatus::NeedsRetry)
        .run();
    assert_eq!(run.retry_at, Some(t(9)));
    // Two attempts in all: the second failure gives up although the server allows 3.
    let history = [
        queued_with(policy),
        submitted(1),
        needs_retry(1),
        RunEvent::RunRequeued {
            attempt: 2,
            resources: None,
            resources_note: None,
            node_lifecycle: None,
            lifecycle_note: None,
            at: t(4),
        },
        RunEvent::RunNeedsRetry {
            attempt: 2,
            engine_version: None,
            reason: "CannotPullContainerError".into(),
            exit_code: None,
            retry_at: None,
            at: t(5),
        },
    ];
    let run = RunScenario::given(history)
        .when(requeue_at(6))
        .then_status(RunStatus::Stopped)
        .run();
    assert!(
        run.exit_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("gave up after 2 attempts")),
        "{run:?}"
    );
}

#[test]
fn on_ecs_grown_memory_is_a_fargate_size_and_cpu_follows() {
    let policy: crate::domain::retry::RetryPolicy =
        serde_json::from_value(serde_json::json!({"on_reasons": ["out of memory"]})).unwrap();
    let mut spec = spec("r-1");
    spec.resources.memory = Some(2048);
    spec.resources.cpu = Some(256);
    spec.retry = crate::domain::retry::RunRetry::resolve(Some(&policy), None, Some(30720), 3);
    let history = vec![
        RunEvent::RunQueued {
            spec: Box::new(spec),
            at: t(0),
        },
        submitted(1),
        started(1),
        RunEvent::RunNeedsRetry {
            attempt: 1,
            engine_version: None,
            reason: "out of memory (exit 137)".into(),
            exit_code: Some(137),
            retry_at: None,
            at: t(3),
        },
    ];
    let run = RunScenario::given(history)
        .when(RunCommand::Requeue {
            max_attempts: 3,
            limits: crate::domain::limits::LaunchLimits::Ecs,
            now: t(4),
        })
        .then_status(RunStatus::Queued)
        .run();
    // 1.5 × 2048 = 3072, which 256 cpu cannot take: 512 can.
    assert_eq!(
        (run.resources().memory, run.resources().cpu),
        (Some(3072), Some(512))
    );
}

/// Drives a run with `policy` through `outcomes`, each attempt launched,
/// started and ended with the next outcome (0: success, 1: listed exit
/// code, 2: unlisted exit code, 3: out of memory, 4: infrastructure
/// failure), the sweep asked to requeue each time; returns every state.
fn drive(policy: serde_json::Value, cap: u64, outcomes: &[u8]) -> Vec<Run> {
    let policy: crate::domain::retry::RetryPolicy = serde_json::from_value(policy).unwrap();
    let mut spec = spec("r-1");
    spec.resources.memory = Some(64);
    spec.retry = crate::domain::retry::RunRetry::resolve(Some(&policy), Some(cap), None, 3);
    let mut state = RunState::default();
    let mut runs = vec![];
    let mut now = 0;
    let apply = |state: &mut RunState, command: RunCommand| {
        for event in decide(state, command).unwrap() {
            *state = evolve(std::mem::take(state), &event);
        }
    };
    apply(
        &mut state,
        RunCommand::Queue {
            spec: Box::new(spec),
            now: t(0),
        },
    );
    for outcome in outcomes {
        let run = state.run.clone().unwrap();
        if run.status == RunStatus::Stopped {
            break;
        }
        let attempt = run.attempt;
        now += 1;
        apply(
            &mut state,
            RunCommand::RecordLaunched {
                attempt,
                task_id: format!("task-{attempt}"),
                running_on: Some("host".into()),
                limits: None,
                now: t(now),
            },
        );
        runs.push(state.run.clone().unwrap());
        now += 1;
        let (exit_code, reason) = match outcome {
            0 => (Some(0), None),
            1 => (Some(3), None),
            2 => (Some(4), None),
            3 => (Some(137), Some("out of memory (limit 64 MB)".to_owned())),
            _ => (None, None),
        };
        let command = if *outcome >= 4 {
            RunCommand::RecordInfrastructureFailure {
                attempt,
                engine_version: None,
                reason: if *outcome == 4 {
                    "CannotPullContainerError".into()
                } else {
                    "spot interruption: Your Spot Task was interrupted.".into()
                },
                now: t(now),
            }
        } else {
            RunCommand::RecordExited {
                usage: None,
                attempt,
                engine_version: None,
                exit_code,
                reason,
                now: t(now),
            }
        };
        apply(&mut state, command);
        runs.push(state.run.clone().unwrap());
        // The sweep comes by until the backoff is over.
        for _ in 0..3 {
            now += 100;
            apply(&mut state, requeue_at(now));
        }
        runs.push(state.run.clone().unwrap());
    }
    runs
}

proptest! {
    #[test]
    fn driven_through_any_outcomes_a_run_never_passes_its_attempts_or_its_memory_cap_and_leaves_spot_once(
        attempts in 1u32..=10,
        cap in 64u64..2000,
        multiplier in 1.1f64..4.0,
        outcomes in prop::collection::vec(0u8..6, 1..14),
    ) {
        let policy = serde_json::json!({
            "attempts": attempts,
            "on_exit_codes": [3],
            "on_reasons": ["out of memory"],
            "backoff_seconds": {"initial": 1},
            "memory_multiplier": multiplier,
        });
        let runs = drive(policy, cap, &outcomes);
        let mut last_memory = 64;
        let mut last_attempt = 1;
        let mut ran_out = false;
        let mut interrupted = false;
        let mut fell_back = false;
        for run in &runs {
            if run.lifecycle() == NodeLifecycle::Ondemand && !fell_back {
                prop_assert!(interrupted, "left spot without a spot interruption");
                fell_back = true;
            }
            prop_assert!(
                !fell_back || run.lifecycle() == NodeLifecycle::Ondemand,
                "went back to spot"
            );
            // The fallback is the one attempt a policy may be passed by.
            let allowed = attempts + u32::from(fell_back);
            prop_assert!(run.attempt <= allowed, "attempt {} of {allowed}", run.attempt);
            let memory = run.resources().memory.unwrap_or_default();
            prop_assert!(memory <= cap.max(64), "{memory} MB over the {cap} MB cap");
            if memory != last_memory {
                prop_assert!(ran_out, "memory grew without running out of memory");
                prop_assert!(memory > last_memory, "memory shrank");
                prop_assert!(run.attempt > last_attempt, "memory changed within an attempt");
            }
            ran_out = run.exit_reason.as_deref().is_some_and(|r| r.starts_with("out of memory"));
            interrupted = run.exit_reason.as_deref().is_some_and(|r| r.starts_with(SPOT_INTERRUPTION));
            last_memory = memory;
            last_attempt = run.attempt;
        }
        // Success and an unlisted exit code end the run at that attempt.
        let played = runs.len() / 3;
        if let Some(pos) = outcomes[..played].iter().position(|o| *o == 2 || *o == 0) {
            let last = runs.last().unwrap();
            prop_assert_eq!(last.status, RunStatus::Stopped);
            prop_assert_eq!(last.attempt as usize, pos + 1, "{:?}", last);
            prop_assert_eq!(last.exit_code, Some(if outcomes[pos] == 0 { 0 } else { 4 }));
        }
    }
}

#[test]
fn a_run_that_does_not_run_yet_says_why_it_waits_and_since_when() {
    let waiting = |events: Vec<RunEvent>| replay(&events).run.unwrap().waiting();
    let (reason, since) = waiting(vec![queued()]).unwrap();
    assert_eq!(reason, "waiting in cluster default's queue for a free slot");
    assert_eq!(since, t(0));
    let deferred = RunEvent::RunLaunchDeferred {
        attempt: 1,
        reason: "RESOURCE:MEMORY".into(),
        at: t(1),
    };
    let (reason, _) = waiting(vec![queued(), deferred]).unwrap();
    assert_eq!(reason, "the engine cannot take it yet: RESOURCE:MEMORY");
    let (reason, since) = waiting(vec![queued(), submitted(1)]).unwrap();
    assert!(reason.starts_with("handed to the engine at"), "{reason}");
    assert_eq!(since, t(1));
    let step = |message: &str, at| RunEvent::RunPreparing {
        attempt: 1,
        message: message.into(),
        at: t(at),
    };
    let (reason, since) = waiting(vec![
        queued(),
        submitted(1),
        step("pulling image python:3.12", 2),
        step("Copying blob 1 of 3", 5),
    ])
    .unwrap();
    assert_eq!(reason, "preparing: Copying blob 1 of 3");
    assert_eq!(since, t(2), "since the first step");
    assert_eq!(waiting(vec![queued(), submitted(1), started(1)]), None);
    let backoff = RunEvent::RunNeedsRetry {
        attempt: 1,
        engine_version: None,
        reason: "exit code 3".into(),
        exit_code: Some(3),
        retry_at: Some(t(30)),
        at: t(3),
    };
    let (reason, _) = waiting(vec![queued(), submitted(1), started(1), backoff]).unwrap();
    assert!(
        reason.contains("attempt 2 waits out its backoff until"),
        "{reason}"
    );
    assert_eq!(
        waiting(vec![queued(), submitted(1), stopped(1, Some(0))]),
        None
    );
}

fn spot_interruption(attempt: u32, now: i64) -> RunCommand {
    RunCommand::RecordInfrastructureFailure {
        attempt,
        engine_version: None,
        reason: "spot interruption: Your Spot Task was interrupted.".into(),
        now: t(now),
    }
}

#[test]
fn a_spot_interruption_retries_once_on_ondemand_even_past_the_policys_attempts() {
    let policy = serde_json::json!({"attempts": 1});
    let outcome = RunScenario::given([queued_with(policy), submitted(1)])
        .when(spot_interruption(1, 3))
        .then_status(RunStatus::NeedsRetry);
    let mut events = outcome.events();
    let mut given = vec![
        queued_with(serde_json::json!({"attempts": 1})),
        submitted(1),
    ];
    given.append(&mut events);
    let outcome = RunScenario::given(given.clone())
        .when(requeue_at(10))
        .then_status(RunStatus::Queued);
    let run = outcome.run();
    assert_eq!(run.attempt, 2, "one attempt more than the policy's one");
    assert_eq!(run.lifecycle(), NodeLifecycle::Ondemand);
    assert_eq!(
        run.spec.node_lifecycle,
        NodeLifecycle::Spot,
        "the spec keeps what was asked"
    );
    let note = run.lifecycle_note.clone().unwrap_or_default();
    assert!(note.contains("on-demand"), "{note}");
    // On on-demand, another "spot interruption" (whatever says so) is an
    // infrastructure failure like any other: the policy's attempts hold.
    given.extend(outcome.events());
    given.push(submitted(2));
    let outcome = RunScenario::given(given.clone())
        .when(spot_interruption(2, 20))
        .then_status(RunStatus::NeedsRetry);
    given.extend(outcome.events());
    let outcome = RunScenario::given(given)
        .when(requeue_at(30))
        .then_status(RunStatus::Stopped);
    assert_eq!(outcome.run().attempt, 2);
}

#[test]
fn an_ondemand_run_interrupted_is_not_moved_and_other_failures_keep_spot() {
    let mut spec = spec("r-1");
    spec.node_lifecycle = NodeLifecycle::Ondemand;
    let queued = RunEvent::RunQueued {
        spec: Box::new(spec),
        at: t(0),
    };
    let outcome = RunScenario::given([queued, submitted(1)])
        .when(spot_interruption(1, 3))
        .then_status(RunStatus::NeedsRetry);
    assert_eq!(outcome.run().lifecycle(), NodeLifecycle::Ondemand);
    let outcome = RunScenario::given([
        queued_with(serde_json::json!({})),
        submitted(1),
        needs_retry(1),
    ])
    .when(requeue_at(10))
    .then_status(RunStatus::Queued);
    assert_eq!(
        outcome.run().lifecycle(),
        NodeLifecycle::Spot,
        "an image pull failure stays on spot"
    );
    assert_eq!(outcome.run().attempt_lifecycle, None);
}

#[test]
fn an_admitted_attempt_holds_its_slot_until_it_ends_waits_for_a_retry_or_is_deferred() {
    let admit = |attempt| RunCommand::Admit {
        attempt,
        cap: 2,
        now: t(1),
    };
    let outcome =
        RunScenario::given([queued()])
            .when(admit(1))
            .then_events([RunEvent::RunAdmitted {
                attempt: 1,
                cap: 2,
                at: t(1),
            }]);
    assert_eq!(outcome.run().slot, Some(2));
    assert_eq!(
        outcome.run().status,
        RunStatus::Queued,
        "admission is not a launch"
    );
    let admitted = RunEvent::RunAdmitted {
        attempt: 1,
        cap: 2,
        at: t(1),
    };
    // Admitting twice (a redelivered ticket) takes no second slot.
    RunScenario::given([queued(), admitted.clone()])
        .when(admit(1))
        .then_events([]);
    // Launched and running, it holds it.
    let run = replay(&[queued(), admitted.clone(), submitted(1), started(1)])
        .run
        .unwrap();
    assert_eq!(run.slot, Some(2));
    // An end, a retry and a deferral each give it back.
    let ended = RunScenario::given([queued(), admitted.clone(), submitted(1), started(1)])
        .when(exited(1, 0))
        .then_status(RunStatus::Stopped);
    assert_eq!(ended.run().slot, None);
    let retried = RunScenario::given([queued(), admitted.clone(), submitted(1)])
        .when(infra_failure(1))
        .then_status(RunStatus::NeedsRetry);
    assert_eq!(retried.run().slot, None);
    let deferred = RunScenario::given([queued(), admitted.clone()])
        .when(RunCommand::RecordLaunchDeferred {
            attempt: 1,
            reason: "no capacity".into(),
            now: t(2),
        })
        .then_status(RunStatus::Queued);
    assert_eq!(deferred.run().slot, None);
    let stopped = RunScenario::given([queued(), admitted])
        .when(stop("me"))
        .then_status(RunStatus::Stopped);
    assert_eq!(stopped.run().slot, None);
}

#[test]
fn a_queued_run_says_when_its_cluster_is_at_its_cap_or_the_server_has_no_free_slot() {
    let run = replay(&[queued()]).run.unwrap();
    let at_cap = Capacity {
        cluster_cap: Some((2, 2)),
        parallelism: Some((4, 1)),
        ..Capacity::default()
    };
    let (reason, since) = run.waiting_for(&at_cap).unwrap();
    assert_eq!(
        reason,
        format!("cluster {} is at its cap: 2 of 2 running", run.spec.cluster)
    );
    assert_eq!(since, t(0));
    let busy = Capacity {
        cluster_cap: Some((2, 1)),
        parallelism: Some((2, 2)),
        ..Capacity::default()
    };
    assert_eq!(
        run.waiting_for(&busy).unwrap().0,
        "waiting for a free slot: parallelism 2, 2 running"
    );
    assert_eq!(run.waiting_for(&Capacity::default()), run.waiting());
    let running = replay(&[queued(), submitted(1), started(1)]).run.unwrap();
    assert_eq!(running.waiting_for(&at_cap), None);
}

#[test]
fn a_queued_run_of_a_cluster_in_maintenance_says_so_before_anything_else() {
    let run = replay(&[queued()]).run.unwrap();
    let maintenance = Capacity {
        cluster_inactive: Some(ClusterStatus::Maintenance),
        cluster_cap: Some((2, 2)),
        parallelism: Some((2, 2)),
    };
    let (reason, since) = run.waiting_for(&maintenance).unwrap();
    assert_eq!(
        reason,
        format!(
            "cluster {} is in maintenance: its queued runs wait until it is active again",
            run.spec.cluster
        )
    );
    assert_eq!(since, t(0));
    let offline = Capacity {
        cluster_inactive: Some(ClusterStatus::Offline),
        ..Capacity::default()
    };
    assert!(run.waiting_for(&offline).unwrap().0.contains("is offline"));
    let running = replay(&[queued(), submitted(1), started(1)]).run.unwrap();
    assert_eq!(running.waiting_for(&maintenance), None);
}

#[test]
fn a_start_time_is_estimated_from_evenly_spaced_recent_starts_and_never_in_the_past() {
    let starts = [t(40), t(30), t(20), t(10)];
    assert_eq!(estimated_start(1, &starts, t(41)), Some(t(50)));
    assert_eq!(estimated_start(3, &starts, t(41)), Some(t(70)));
    assert_eq!(
        estimated_start(1, &starts, t(51)),
        None,
        "past: no rate holds"
    );
    assert_eq!(
        estimated_start(1, &[t(40)], t(40)),
        None,
        "one start is no rate"
    );
    assert_eq!(estimated_start(1, &[], t(40)), None);
    assert_eq!(
        estimated_start(u64::MAX, &starts, t(41)),
        None,
        "no overflow"
    );
}

fn usage_of(events: &[RunEvent]) -> Vec<crate::domain::usage::Usage> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::RunUsageRecorded { usage, .. } => Some(*usage),
            _ => None,
        })
        .collect()
}

#[test]
fn an_attempt_that_ran_records_its_reserved_size_for_the_time_it_ran_before_its_end() {
    // spec("r-1") asks for no cpu: a quarter vCPU; started at t(2), ended at t(4).
    let outcome = RunScenario::given([queued(), submitted(1), started(1)]).when(exited(1, 0));
    let events = outcome.events();
    let names: Vec<&str> = events.iter().map(RunEvent::name).collect();
    assert_eq!(names, ["RunUsageRecorded", "RunStopped"]);
    let usage = usage_of(&events);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].duration_s, 2.0);
    assert_eq!(usage[0].cpu_seconds, 0.5);
    assert_eq!(usage[0].basis, crate::domain::usage::UsageBasis::Reserved);
    assert_eq!(outcome.run().usage, Some(usage[0]));
}

#[test]
fn an_exit_the_engine_measured_records_what_was_measured() {
    let measured = crate::domain::usage::Measured {
        cpu_seconds: 1.5,
        peak_memory_mb: 105,
    };
    let outcome =
        RunScenario::given([queued(), submitted(1), started(1)]).when(RunCommand::RecordExited {
            attempt: 1,
            engine_version: None,
            exit_code: Some(0),
            reason: None,
            usage: Some(measured),
            now: t(4),
        });
    let usage = usage_of(&outcome.events());
    assert_eq!(usage[0].cpu_seconds, 1.5);
    assert_eq!(usage[0].peak_memory_mb, Some(105));
    assert_eq!(usage[0].basis, crate::domain::usage::UsageBasis::Measured);
}

#[test]
fn a_second_delivery_of_an_end_records_no_second_usage() {
    let usage = crate::domain::usage::Usage::of_attempt(Resources::default(), t(2), t(4), None);
    RunScenario::given([
        queued(),
        submitted(1),
        started(1),
        RunEvent::RunUsageRecorded {
            attempt: 1,
            usage,
            at: t(4),
        },
        stopped(1, Some(0)),
    ])
    .when(exited(1, 0))
    .then_nothing();
}

#[test]
fn a_run_stopped_before_it_ran_records_no_usage() {
    let outcome = RunScenario::given([queued()]).when(stop("ann"));
    assert!(usage_of(&outcome.events()).is_empty());
    assert_eq!(outcome.run().usage, None);
    let pending = RunScenario::given([queued(), submitted(1)]).when(RunCommand::Abandon {
        reason: "lost".into(),
        now: t(9),
    });
    assert!(
        usage_of(&pending.events()).is_empty(),
        "an attempt that never started used nothing"
    );
}

#[test]
fn a_retried_attempts_usage_adds_to_the_next_ones_and_a_give_up_adds_nothing() {
    let first = crate::domain::usage::Usage::of_attempt(Resources::default(), t(2), t(3), None);
    let outcome = RunScenario::given([
        queued(),
        submitted(1),
        started(1),
        RunEvent::RunUsageRecorded {
            attempt: 1,
            usage: first,
            at: t(3),
        },
        needs_retry(1),
        RunEvent::RunRequeued {
            attempt: 2,
            resources: None,
            resources_note: None,
            node_lifecycle: None,
            lifecycle_note: None,
            at: t(3),
        },
        RunEvent::RunSubmitted {
            attempt: 2,
            task_id: "task-2".into(),
            at: t(3),
        },
        RunEvent::RunStarted {
            limits: None,
            engine_version: None,
            attempt: 2,
            task_id: None,
            host: None,
            at: t(3),
        },
    ])
    .when(exited(2, 0));
    let total = outcome.run().usage.unwrap_or_else(|| panic!("usage"));
    assert_eq!(total.duration_s, 2.0, "1 s of each attempt");
    assert_eq!(total.cpu_seconds, 0.5);

    let gave_up =
        RunScenario::given([queued(), submitted(1), started(1), needs_retry(1)]).when(requeue(1));
    assert!(usage_of(&gave_up.events()).is_empty());
}

fn usual(p90_s: f64) -> crate::domain::learning::UsualDuration {
    crate::domain::learning::UsualDuration { p90_s, runs: 20 }
}

#[test]
fn a_run_past_one_and_a_half_times_its_usual_duration_and_the_minimum_is_due_to_be_flagged() {
    // started(1) is at t(2); usually 400 s: the threshold is 600 s.
    let run = replay(&[queued(), submitted(1), started(1)])
        .run
        .unwrap_or_else(|| panic!("a run"));
    let minimum = Duration::minutes(5);
    assert!(!runs_long(&run, usual(400.0), minimum, t(2 + 600)));
    assert!(runs_long(&run, usual(400.0), minimum, t(2 + 601)));
    // A job that usually takes 10 s is not flagged before the minimum.
    assert!(!runs_long(&run, usual(10.0), minimum, t(2 + 299)));
    assert!(runs_long(&run, usual(10.0), minimum, t(2 + 301)));
    let pending = replay(&[queued(), submitted(1)])
        .run
        .unwrap_or_else(|| panic!("a run"));
    assert!(
        !runs_long(&pending, usual(1.0), minimum, t(10_000)),
        "not running"
    );
}

#[test]
fn a_running_attempt_is_flagged_once_and_a_new_attempt_may_be_flagged_again() {
    let flag = |attempt, now| RunCommand::FlagRunningLong {
        attempt,
        usual: usual(400.0),
        now: t(now),
    };
    let outcome = RunScenario::given([queued(), submitted(1), started(1)]).when(flag(1, 900));
    let events = outcome.events();
    assert!(
        matches!(
            events.as_slice(),
            [RunEvent::RunRunningLong {
                attempt: 1,
                running_s: 898,
                usual_s: 400,
                usual_of_runs: 20,
                ..
            }]
        ),
        "{events:?}"
    );
    let note = outcome.run().running_long.unwrap_or_default();
    assert!(note.contains("running for 14m 58s"), "{note}");
    assert!(note.contains("took up to 6m 40s"), "{note}");
    let mut flagged = vec![queued(), submitted(1), started(1)];
    flagged.extend(events);
    RunScenario::given(flagged.clone())
        .when(flag(1, 2000))
        .then_nothing();
    RunScenario::given(flagged.clone())
        .when(flag(2, 2000))
        .then_nothing();
    RunScenario::given([queued(), submitted(1), started(1), stopped(1, Some(0))])
        .when(flag(1, 2000))
        .then_nothing();
    // Requeued after a failure, the new attempt starts unflagged.
    flagged.extend([
        needs_retry(1),
        RunEvent::RunRequeued {
            attempt: 2,
            resources: None,
            resources_note: None,
            node_lifecycle: None,
            lifecycle_note: None,
            at: t(3000),
        },
    ]);
    let requeued = replay(&flagged).run.unwrap_or_else(|| panic!("a run"));
    assert_eq!(requeued.running_long, None);
}
