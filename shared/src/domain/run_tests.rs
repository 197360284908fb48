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
        at: t(3),
    };
    let requeued = RunEvent::RunRequeued {
        attempt: 2,
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
