//! The use cases in-process, in milliseconds: a [`TestApp`] over SQLite in a
//! temporary directory, a recording engine and a manual clock. Each test
//! stages one of the paths that only the binary or moto reached before: a
//! lost write race, a stop racing a launch, a lost enqueue, an idempotence
//! race, the last attempt, a deadline.

use std::sync::Arc;

use chrono::Duration;

use crate::app::SubmitOutcome;
use crate::domain::run::{RunCommand, RunStatus};
use crate::error::{AppError, Conflict};
use crate::ports::{Clock, EngineChange, EngineUpdate};
use crate::testing::app::{LaunchAnswer, TestApp};

fn exited(
    run_id: &str,
    attempt: u32,
    code: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> EngineUpdate {
    EngineUpdate {
        run_id: run_id.into(),
        attempt,
        change: EngineChange::Exited {
            usage: None,
            exit_code: Some(code),
            reason: None,
        },
        engine_version: None,
        at,
    }
}

fn infra_failure(run_id: &str, attempt: u32, at: chrono::DateTime<chrono::Utc>) -> EngineUpdate {
    EngineUpdate {
        run_id: run_id.into(),
        attempt,
        change: EngineChange::InfrastructureFailure {
            reason: "CannotPullContainerError: pull access denied".into(),
        },
        engine_version: None,
        at,
    }
}

#[tokio::test]
async fn a_report_that_loses_a_write_race_is_decided_again_on_the_state_that_won() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let run = t.execute("job").await;
    let run_id = run.spec.run_id.clone();
    t.submit_next().await;
    assert_eq!(t.run(&run_id).await.status, RunStatus::Running);

    // A stop request lands between the exit report's read and its append.
    t.runs.cut_in_before_next_append(RunCommand::RequestStop {
        by: "ann".into(),
        reason: None,
        now: t.clock.now(),
    });
    let after = t
        .app
        .record_engine_update(exited(&run_id, 1, 0, t.clock.now()))
        .await
        .unwrap();

    assert_eq!(after.status, RunStatus::Stopped);
    assert_eq!(after.exit_code, Some(0));
    assert_eq!(
        after.exit_reason.as_deref(),
        Some("stopped by ann"),
        "the exit was decided again, on the state holding the stop request"
    );
    assert_eq!(
        t.event_names(&run_id).await,
        [
            "RunQueued",
            "RunSubmitted",
            "RunStarted",
            "RunStopRequested",
            "RunUsageRecorded",
            "RunStopped"
        ],
        "both writers' facts are recorded, once each"
    );
}

#[tokio::test]
async fn a_stop_that_lands_while_the_engine_launches_leaves_no_task_behind() {
    let t = TestApp::new();
    t.define("job", "sleep 100").await;
    let run = t.execute("job").await;
    let run_id = run.spec.run_id.clone();

    t.engine.hold_next_launch();
    let submitting = {
        let (app, store, clock) = (Arc::clone(&t.app), t.store.clone(), Arc::clone(&t.clock));
        tokio::spawn(async move {
            let claimed = store.claim(None, clock.now(), &[]).await.unwrap().unwrap();
            app.submit(&claimed.ticket).await
        })
    };
    t.engine.launch_started().await;
    let stopped = t.app.stop(&run_id, "ann").await.unwrap();
    assert_eq!(
        stopped.status,
        RunStatus::Stopped,
        "a QUEUED run stops at once"
    );
    t.engine.resume();

    let outcome = submitting.await.unwrap().unwrap();
    assert_eq!(outcome, SubmitOutcome::Skipped);
    assert_eq!(
        t.engine.stops(),
        [(run_id.clone(), "task-1".to_owned())],
        "the task launched for a stopped run is stopped"
    );
    let run = t.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Stopped);
    assert_eq!(
        run.exit_reason.as_deref(),
        Some("stopped by ann before it was launched")
    );
    assert!(
        !t.event_names(&run_id).await.contains(&"RunSubmitted"),
        "the stopped run never records a launch"
    );
}

#[tokio::test]
async fn a_run_whose_enqueue_was_lost_is_enqueued_by_the_sweep_once_it_is_stale() {
    let t = TestApp::new();
    t.define("job", "true").await;
    t.queue.lose_next_enqueue();
    let run = t.execute("job").await;
    assert_eq!(
        run.status,
        RunStatus::Queued,
        "the run is recorded all the same"
    );
    assert_eq!(t.queued_tickets().await, 0, "its ticket was lost");

    let requeue_after = Duration::seconds(60);
    let early = t.app.retry_tick(requeue_after).await.unwrap();
    assert!(early.reenqueued.is_empty(), "a fresh run is left alone");

    t.clock.advance(Duration::seconds(61));
    let swept = t.app.retry_tick(requeue_after).await.unwrap();
    assert_eq!(swept.reenqueued, std::slice::from_ref(&run.spec.run_id));
    assert_eq!(t.queued_tickets().await, 1);
    assert!(matches!(
        t.submit_next().await,
        Some(SubmitOutcome::Launched { .. })
    ));
    assert_eq!(t.run(&run.spec.run_id).await.status, RunStatus::Running);
}

#[tokio::test]
async fn twenty_executes_racing_with_one_idempotence_key_make_one_run() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let requests = (0..20).map(|_| {
        let app = Arc::clone(&t.app);
        tokio::spawn(async move {
            let mut request = TestApp::request("tester");
            request.idempotence_key = Some("nightly-2026-12-01".into());
            app.execute(
                crate::app::DefinitionRef::Alias("job"),
                crate::domain::launch::OwnerRule::OwnerId,
                request,
                &crate::domain::identity::Caller::Anyone,
            )
            .await
        })
    });
    let answers: Vec<_> = futures_join(requests).await;

    let runs = t.all_runs().await;
    assert_eq!(runs.len(), 1, "one run, whatever the interleaving");
    let run_id = &runs[0].spec.run_id;
    for answer in answers {
        match answer {
            Ok(run) => assert_eq!(&run.spec.run_id, run_id, "every answer names the one run"),
            Err(other) => panic!("a request that lost the race must get the run, not: {other}"),
        }
    }
    assert_eq!(t.queued_tickets().await, 1, "one ticket for the one run");
}

#[tokio::test]
async fn an_idempotence_key_belongs_to_its_owner() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let keyed = |owner: &str| {
        let mut request = TestApp::request(owner);
        request.idempotence_key = Some("nightly".into());
        request
    };
    let ana = t.execute_with("job", keyed("ana")).await.unwrap();
    let bo = t.execute_with("job", keyed("bo")).await.unwrap();
    assert_ne!(
        ana.spec.run_id, bo.spec.run_id,
        "another owner's key of the same name makes that owner a run of their own"
    );
    assert_eq!(bo.spec.owner, "bo");
    let again = t.execute_with("job", keyed("ana")).await.unwrap();
    assert_eq!(again.spec.run_id, ana.spec.run_id);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_run_failing_in_the_infrastructure_is_retried_then_given_up_after_its_last_attempt() {
    let t = TestApp::with_max_attempts(3);
    t.define("job", "true").await;
    let run_id = t.execute("job").await.spec.run_id;
    for attempt in 1..=3 {
        assert!(matches!(
            t.submit_next().await,
            Some(SubmitOutcome::Launched { .. })
        ));
        let failed = t
            .app
            .record_engine_update(infra_failure(&run_id, attempt, t.clock.now()))
            .await
            .unwrap();
        assert_eq!(failed.status, RunStatus::NeedsRetry);
        let swept = t.app.retry_tick(Duration::minutes(5)).await.unwrap();
        if attempt < 3 {
            assert_eq!(
                swept.requeued,
                std::slice::from_ref(&run_id),
                "attempt {attempt} is retried"
            );
            assert_eq!(t.run(&run_id).await.attempt, attempt + 1);
        } else {
            assert_eq!(swept.gave_up, std::slice::from_ref(&run_id));
        }
    }
    let run = t.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Stopped);
    assert!(
        run.exit_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("gave up after 3 attempts")),
        "{:?}",
        run.exit_reason
    );
    assert_eq!(t.engine.launches().len(), 3, "one launch per attempt");
    assert_eq!(t.submit_next().await, None, "nothing is left to launch");
}

#[tokio::test]
async fn a_running_run_past_its_deadline_is_stopped_and_its_task_told_to_stop() {
    let t = TestApp::new();
    t.define("job", "sleep 1000").await;
    let mut request = TestApp::request("tester");
    request.active_deadline_seconds = Some(60);
    let run_id = t.execute_with("job", request).await.unwrap().spec.run_id;
    t.submit_next().await;
    assert_eq!(t.run(&run_id).await.started_at, Some(t.clock.now()));

    t.clock.advance(Duration::seconds(60));
    assert!(
        t.app.enforce_deadlines().await.unwrap().0.is_empty(),
        "at its deadline exactly, a run still runs"
    );
    t.clock.advance(Duration::seconds(1));
    assert_eq!(
        t.app.enforce_deadlines().await.unwrap().0,
        std::slice::from_ref(&run_id)
    );

    assert_eq!(t.engine.stops(), [(run_id.clone(), "task-1".to_owned())]);
    let run = t.run(&run_id).await;
    assert_eq!(run.status, RunStatus::Stopped);
    assert_eq!(
        run.exit_reason.as_deref(),
        Some("exceeded its active_deadline_seconds (60 s) and was stopped")
    );
    assert!(
        t.app.enforce_deadlines().await.unwrap().0.is_empty(),
        "a stopped run is not stopped again"
    );
}

#[tokio::test]
async fn a_launch_the_engine_knows_is_running_is_one_append_of_its_submission_and_start() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let run_id = t.execute("job").await.spec.run_id;
    let before = t.runs.appends();
    t.submit_next().await;
    assert_eq!(t.runs.appends(), before + 1, "one launch, one write");
    assert_eq!(
        t.event_names(&run_id).await,
        ["RunQueued", "RunSubmitted", "RunStarted"]
    );
}

#[tokio::test]
async fn a_ticket_delivered_twice_launches_one_attempt() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let run = t.execute("job").await;
    let ticket = crate::ports::RunTicket::of(&run);
    let first = t.app.submit(&ticket).await.unwrap();
    let second = t.app.submit(&ticket).await.unwrap();
    assert!(matches!(first, SubmitOutcome::Launched { .. }));
    assert_eq!(second, SubmitOutcome::Skipped);
    assert_eq!(t.engine.launches().len(), 1);
}

#[tokio::test]
async fn a_launch_refused_for_now_waits_and_says_why_and_one_refused_for_good_stops_the_run() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let waiting = t.execute("job").await.spec.run_id;
    t.engine
        .answer(LaunchAnswer::Retryable("no capacity".into()));
    assert_eq!(
        t.submit_next().await,
        Some(SubmitOutcome::Deferred {
            reason: "no capacity".into()
        })
    );
    let run = t.run(&waiting).await;
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.launch_deferred.as_deref(), Some("no capacity"));

    let failing = t.execute("job").await.spec.run_id;
    t.engine
        .answer(LaunchAnswer::Permanent("no such image".into()));
    assert!(matches!(
        t.submit_next().await,
        Some(SubmitOutcome::Failed { .. })
    ));
    let run = t.run(&failing).await;
    assert_eq!(run.status, RunStatus::Stopped);
    assert_eq!(
        run.exit_reason.as_deref(),
        Some("could not launch: no such image")
    );
}

// Paused: the wait for the claimant's run passes at once.
#[tokio::test(start_paused = true)]
async fn a_key_left_by_a_request_that_died_before_recording_its_run_is_taken_over_after_a_grace() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let window = Duration::days(crate::app::execute::IDEMPOTENCE_WINDOW_DAYS);
    let now = t.clock.now();
    let claimed = t
        .app
        .idempotence
        .claim(
            &crate::app::execute::scoped_key("tester", "nightly"),
            "local-never-recorded",
            None,
            now,
            now + window,
        )
        .await
        .unwrap();
    assert!(claimed);
    let mut request = TestApp::request("tester");
    request.idempotence_key = Some("nightly".into());

    let early = t.execute_with("job", request.clone()).await;
    assert!(
        matches!(
            early,
            Err(AppError::Conflict(Conflict::IdempotenceKeyBusy(_)))
        ),
        "while the claimer may still record its run, others are told to try again: {early:?}"
    );
    t.clock.advance(Duration::seconds(
        crate::app::execute::IDEMPOTENCE_CLAIM_GRACE_SECONDS + 1,
    ));
    let run = t.execute_with("job", request.clone()).await.unwrap();
    let again = t.execute_with("job", request).await.unwrap();
    assert_eq!(
        again.spec.run_id, run.spec.run_id,
        "the key now names the new run"
    );
}

#[tokio::test]
async fn five_stale_runs_are_enqueued_again_once_per_interval_not_once_per_sweep() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(t.execute("job").await.spec.run_id);
    }
    assert_eq!(t.queued_tickets().await, 5);
    let interval = Duration::minutes(5);
    t.clock.advance(Duration::minutes(6));
    let mut sent = Vec::new();
    for _ in 0..3 {
        let swept = t.app.retry_tick(interval).await.unwrap();
        assert!(swept.failed.is_empty(), "{:?}", swept.failed);
        sent.push(swept.reenqueued.len());
        t.clock.advance(Duration::minutes(1));
    }
    assert_eq!(
        sent,
        [5, 0, 0],
        "three sweeps a minute apart send each stale ticket once"
    );
    for run_id in &runs {
        let names = t.event_names(run_id).await;
        assert_eq!(names, ["RunQueued", "RunReenqueued"], "{run_id}");
    }
    // A whole interval after the last re-enqueue, a run still not taken is
    // due once more.
    t.clock.advance(Duration::minutes(3));
    let swept = t.app.retry_tick(interval).await.unwrap();
    assert_eq!(swept.reenqueued.len(), 5);
}

#[tokio::test]
async fn a_run_queued_again_after_an_infrastructure_failure_gets_one_ticket_from_that_sweep() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let run_id = t.execute("job").await.spec.run_id;
    t.submit_next().await;
    t.clock.advance(Duration::minutes(30));
    t.app
        .record_engine_update(infra_failure(&run_id, 1, t.clock.now()))
        .await
        .unwrap();
    let swept = t.app.retry_tick(Duration::minutes(5)).await.unwrap();
    assert_eq!(swept.requeued, std::slice::from_ref(&run_id));
    assert!(
        swept.reenqueued.is_empty(),
        "its first queue time is old, but its ticket is new"
    );
    assert_eq!(t.queued_tickets().await, 1);
}

#[tokio::test]
async fn twenty_sweeps_racing_over_one_stale_run_send_its_ticket_once() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let run_id = t.execute("job").await.spec.run_id;
    t.clock.advance(Duration::minutes(6));
    let sweeps = (0..20).map(|_| {
        let app = Arc::clone(&t.app);
        tokio::spawn(async move { app.retry_tick(Duration::minutes(5)).await })
    });
    let mut sent = 0;
    for sweep in sweeps {
        sent += sweep.await.unwrap().unwrap().reenqueued.len();
    }
    assert_eq!(sent, 1);
    assert_eq!(t.event_names(&run_id).await, ["RunQueued", "RunReenqueued"]);
}

#[tokio::test]
async fn the_sweep_reaches_every_due_run_however_many_pages_they_take() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let count = 2 * crate::app::sweep::SWEEP_PAGE as usize + 17;
    for _ in 0..count {
        t.queue.lose_next_enqueue();
        t.execute("job").await;
    }
    assert_eq!(t.queued_tickets().await, 0);
    t.clock.advance(Duration::minutes(6));
    let swept = t.app.retry_tick(Duration::minutes(5)).await.unwrap();
    assert_eq!(swept.reenqueued.len(), count);
    assert_eq!(t.queued_tickets().await, count as u64);
}

#[tokio::test]
async fn a_run_the_sweep_cannot_enqueue_is_reported_and_the_sweep_goes_on() {
    let t = TestApp::new();
    t.define("job", "true").await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run_id = t.execute("job").await.spec.run_id;
        t.submit_next().await;
        runs.push(run_id);
    }
    for run_id in &runs {
        t.app
            .record_engine_update(infra_failure(run_id, 1, t.clock.now()))
            .await
            .unwrap();
    }
    t.queue.lose_next_enqueue();
    let swept = t.app.retry_tick(Duration::minutes(5)).await.unwrap();
    assert_eq!(swept.failed.len(), 1, "{:?}", swept.failed);
    let failed = runs
        .iter()
        .find(|r| swept.failed[0].starts_with(r.as_str()))
        .unwrap_or_else(|| panic!("{:?} names none of {runs:?}", swept.failed));
    let mut requeued = swept.requeued.clone();
    requeued.push(failed.clone());
    requeued.sort();
    runs.sort();
    assert_eq!(requeued, runs, "the sweep goes on past the run it failed");
}

#[tokio::test]
async fn a_run_that_heard_nothing_is_looked_up_and_the_engines_answer_recorded() {
    use crate::ports::TaskLookup;
    let t = TestApp::new();
    t.define("job", "true").await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        t.engine.answer(LaunchAnswer::Accept { running_on: None });
        let run_id = t.execute("job").await.spec.run_id;
        t.submit_next().await;
        runs.push(run_id);
    }
    assert_eq!(t.run(&runs[0]).await.status, RunStatus::Pending);
    let quiet = Duration::minutes(10);
    t.clock.advance(Duration::minutes(9));
    let early = t.app.reconcile(quiet).await.unwrap();
    assert!(t.engine.lookups().is_empty(), "{early:?}");

    // task-1 ended with exit code 3; ECS forgot task-2; task-3 still runs.
    t.engine.on_look_up(
        "task-1",
        TaskLookup::Known {
            task_id: "task-1".into(),
            update: Some(exited(&runs[0], 1, 3, t.clock.now())),
        },
    );
    t.engine.on_look_up(
        "task-2",
        TaskLookup::Unknown {
            task_id: "task-2".into(),
            reason: "ECS answered MISSING for it".into(),
        },
    );
    t.clock.advance(Duration::minutes(2));
    let found = t.app.reconcile(quiet).await.unwrap();
    assert_eq!(
        t.engine.lookups(),
        [("default".to_owned(), 3)],
        "one lookup"
    );
    assert_eq!(found.recorded, std::slice::from_ref(&runs[0]));
    assert_eq!(found.lost, std::slice::from_ref(&runs[1]));
    let ended = t.run(&runs[0]).await;
    assert_eq!(
        (ended.status, ended.exit_code),
        (RunStatus::Stopped, Some(3))
    );
    let lost = t.run(&runs[1]).await;
    assert_eq!(lost.status, RunStatus::Stopped);
    assert_eq!(lost.exit_code, None);
    let reason = lost.exit_reason.unwrap_or_default();
    assert!(
        reason.contains("no longer knows its task task-2") && reason.contains("MISSING"),
        "{reason}"
    );
    assert_eq!(t.run(&runs[2]).await.status, RunStatus::Pending);
    let again = t.app.reconcile(quiet).await.unwrap();
    assert!(
        again.recorded.is_empty() && again.lost.is_empty(),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_queued_run_is_given_a_start_time_from_its_clusters_recent_start_rate() {
    let t = TestApp::new();
    t.define("job", "sleep 60").await;
    let first = t.execute("job").await.spec.run_id;
    let waiting = t.app.waiting(&t.run(&first).await).await.unwrap().unwrap();
    assert_eq!(
        (waiting.queue_position, waiting.estimated_start),
        (Some(1), None),
        "no start to tell a rate by yet"
    );
    t.submit_next().await;
    t.clock.advance(Duration::seconds(10));
    t.execute("job").await;
    t.submit_next().await;
    // Two starts 10 s apart: the next runs start 10 s after one another.
    let started = t.clock.now();
    let third = t.execute("job").await.spec.run_id;
    t.clock.advance(Duration::milliseconds(1));
    let fourth = t.execute("job").await.spec.run_id;
    for (run_id, position) in [(&third, 1), (&fourth, 2)] {
        let waiting = t.app.waiting(&t.run(run_id).await).await.unwrap().unwrap();
        assert_eq!(waiting.queue_position, Some(position));
        assert_eq!(
            waiting.estimated_start,
            Some(started + Duration::seconds(10 * position as i64)),
            "position {position}"
        );
    }
    // Once that time has passed with no start, the rate says nothing.
    t.clock.advance(Duration::seconds(11));
    let waiting = t.app.waiting(&t.run(&third).await).await.unwrap().unwrap();
    assert_eq!(waiting.estimated_start, None);
    // Starts older than the window do not count.
    t.clock.advance(Duration::minutes(60));
    let waiting = t.app.waiting(&t.run(&fourth).await).await.unwrap().unwrap();
    assert_eq!(waiting.estimated_start, None);
}
