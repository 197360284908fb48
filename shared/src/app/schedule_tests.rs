//! Schedules fired in-process against SQLite with a manual clock: the
//! attacks on "one run per fire" (racing passes, a crash between the run
//! and its record, a run that failed before the fire was recorded) and on
//! catching up after an outage.

use chrono::Duration;

use crate::domain::identity::Caller;
use crate::domain::query::RunQuery;
use crate::domain::schedule::{CatchUp, ScheduleInput, ScheduledLaunch};
use crate::error::AppError;
use crate::ports::{EngineChange, EngineUpdate};
use crate::testing::app::TestApp;

fn hourly(alias: &str) -> ScheduleInput {
    ScheduleInput {
        alias: Some(alias.into()),
        cron: Some("0 * * * *".into()),
        time_zone: Some("UTC".into()),
        ..ScheduleInput::default()
    }
}

fn as_ann() -> ScheduledLaunch {
    ScheduledLaunch {
        request: TestApp::request("ann"),
        ..ScheduledLaunch::default()
    }
}

/// An app with task `nightly` scheduled hourly by ann, and its first fire.
async fn nightly_for_ann() -> (
    TestApp,
    crate::domain::schedule::Schedule,
    chrono::DateTime<chrono::Utc>,
) {
    let t = TestApp::new();
    t.define("nightly", "echo hi").await;
    let schedule = t
        .app
        .create_schedule(hourly("nightly"), as_ann(), &Caller::user("ann"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = schedule
        .next_fire_at
        .unwrap_or_else(|| panic!("a next fire"));
    (t, schedule, first)
}

async fn runs_of(t: &TestApp) -> Vec<crate::domain::run::Run> {
    t.app
        .runs
        .list(&RunQuery::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
}

#[tokio::test]
async fn a_due_fire_makes_one_run_however_many_passes_race_for_it() {
    let (t, schedule, first) = nightly_for_ann().await;
    assert_eq!(
        t.app.fire_due_schedules().await.map(|o| o.fired.len()).ok(),
        Some(0),
        "not due yet"
    );
    t.clock.set(first + Duration::seconds(2));
    let mut passes = Vec::new();
    for _ in 0..20 {
        let app = t.app.clone();
        passes.push(tokio::spawn(async move { app.fire_due_schedules().await }));
    }
    let mut fired = 0;
    for pass in passes {
        let outcome = pass
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        fired += outcome.fired.len();
    }
    let runs = runs_of(&t).await;
    assert_eq!(runs.len(), 1, "one run for the fire");
    assert!(fired >= 1, "a pass says it fired");
    let run = &runs[0];
    assert_eq!(run.spec.owner, "ann");
    assert_eq!(
        run.spec.labels.get(super::schedules::SCHEDULE_LABEL),
        Some(&schedule.schedule_id)
    );
    assert_eq!(
        run.spec
            .labels
            .get(super::schedules::FIRE_LABEL)
            .map(String::as_str),
        Some(
            first
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .as_str()
        )
    );
    let after = t
        .app
        .schedule(&schedule.schedule_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.fires, 1);
    assert_eq!(after.pending, None);
    assert_eq!(after.last_run_id.as_deref(), Some(run.spec.run_id.as_str()));
    assert_eq!(after.next_fire_at, Some(first + Duration::hours(1)));
}

#[tokio::test]
async fn a_fire_found_pending_after_a_crash_launches_no_second_run_even_if_the_first_failed() {
    let (t, schedule, first) = nightly_for_ann().await;
    t.clock.set(first);
    t.app
        .fire_due_schedules()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let runs = runs_of(&t).await;
    assert_eq!(runs.len(), 1);
    let run_id = runs[0].spec.run_id.clone();
    // The run fails at once (a failed run gives up its idempotence key to a
    // new request) ...
    t.submit_next().await;
    t.app
        .record_engine_update(EngineUpdate {
            run_id: run_id.clone(),
            attempt: 1,
            change: EngineChange::Exited {
                exit_code: Some(1),
                reason: None,
                usage: None,
            },
            engine_version: None,
            at: first,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // ... and the process had died before it recorded the fire as done:
    // the fire is pending again.
    let mut crashed = t
        .app
        .schedule(&schedule.schedule_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let version = crashed.version;
    crashed.pending = Some(crate::domain::schedule::Fire {
        at: first,
        skipped: 0,
    });
    crashed.fires = 0;
    assert!(
        t.app
            .schedules
            .save_schedule(&crashed, version)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let outcome = t
        .app
        .fire_due_schedules()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.fired.len(), 1, "{outcome:?}");
    assert_eq!(
        runs_of(&t).await.len(),
        1,
        "the fire's key names its run: no second run"
    );
    let after = t
        .app
        .schedule(&schedule.schedule_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.pending, None);
    assert_eq!(after.last_run_id, Some(run_id));
}

#[tokio::test]
async fn after_an_outage_one_run_catches_up_the_newest_missed_time_or_none_with_catch_up_none() {
    let t = TestApp::new();
    t.define("nightly", "echo hi").await;
    t.define("strict", "echo hi").await;
    let ann = Caller::user("ann");
    let latest = t
        .app
        .create_schedule(hourly("nightly"), as_ann(), &ann)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let none = t
        .app
        .create_schedule(
            ScheduleInput {
                catch_up: Some(CatchUp::None),
                ..hourly("strict")
            },
            as_ann(),
            &ann,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = latest.next_fire_at.unwrap_or_else(|| panic!("a next fire"));
    // Down for five hours and twenty minutes.
    t.clock.set(first + Duration::minutes(5 * 60 + 20));
    t.app
        .fire_due_schedules()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let runs = runs_of(&t).await;
    assert_eq!(runs.len(), 1, "one run in all");
    assert_eq!(runs[0].spec.alias, "nightly");
    assert_eq!(
        runs[0]
            .spec
            .labels
            .get(super::schedules::FIRE_LABEL)
            .map(String::as_str),
        Some(
            (first + Duration::hours(5))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .as_str()
        ),
        "the newest missed time"
    );
    let caught = t
        .app
        .schedule(&latest.schedule_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((caught.fires, caught.missed), (1, 5));
    let skipped = t
        .app
        .schedule(&none.schedule_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((skipped.fires, skipped.missed), (0, 6));
    assert_eq!(skipped.next_fire_at, Some(first + Duration::hours(6)));
}

#[tokio::test]
async fn a_fire_whose_definition_is_gone_is_recorded_as_refused_and_the_schedule_goes_on() {
    let t = TestApp::new();
    let definition = t.define("doomed", "echo hi").await;
    let ann = Caller::user("ann");
    let schedule = t
        .app
        .create_schedule(hourly("doomed"), as_ann(), &ann)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.app
        .delete_definition(&definition.definition_id, &Caller::Anyone)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = schedule
        .next_fire_at
        .unwrap_or_else(|| panic!("a next fire"));
    t.clock.set(first);
    let outcome = t
        .app
        .fire_due_schedules()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.refused.len(), 1, "{outcome:?}");
    assert!(runs_of(&t).await.is_empty());
    let after = t
        .app
        .schedule(&schedule.schedule_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        after
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no longer exists")),
        "{after:?}"
    );
    assert_eq!(after.pending, None);
    assert_eq!(after.next_fire_at, Some(first + Duration::hours(1)));
}

#[tokio::test]
async fn a_schedule_is_checked_as_its_runs_will_be_and_only_its_owner_may_change_it() {
    let t = TestApp::new();
    t.define("nightly", "echo hi").await;
    let ann = Caller::user("ann");
    let bad = ScheduleInput {
        cron: Some("every night".into()),
        time_zone: Some("Moon/Base".into()),
        ..ScheduleInput::default()
    };
    let Err(AppError::Invalid(refused)) = t.app.create_schedule(bad, as_ann(), &ann).await else {
        panic!("refused");
    };
    let fields: Vec<&str> = refused
        .problems
        .iter()
        .map(|p| p.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(fields, ["cron", "time_zone", "alias"], "{refused:?}");
    let mut launch = as_ann();
    launch.request.cluster = Some("no-such-cluster".into());
    launch.request.resources.memory = Some(0);
    let Err(AppError::Invalid(refused)) =
        t.app.create_schedule(hourly("nightly"), launch, &ann).await
    else {
        panic!("a launch its runs would be refused is refused");
    };
    assert!(
        refused.problems.iter().all(|p| p.starts_with("launch.")),
        "{refused:?}"
    );
    let as_bob = t
        .app
        .create_schedule(
            hourly("nightly"),
            ScheduledLaunch {
                request: TestApp::request("bob"),
                ..ScheduledLaunch::default()
            },
            &ann,
        )
        .await;
    assert!(matches!(as_bob, Err(AppError::NotOwner(_))), "{as_bob:?}");

    let schedule = t
        .app
        .create_schedule(hourly("nightly"), as_ann(), &ann)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bob = Caller::user("bob");
    assert!(matches!(
        t.app
            .set_schedule_enabled(&schedule.schedule_id, false, &bob)
            .await,
        Err(AppError::NotOwner(_))
    ));
    assert!(matches!(
        t.app.delete_schedule(&schedule.schedule_id, &bob).await,
        Err(AppError::NotOwner(_))
    ));
    let paused = t
        .app
        .set_schedule_enabled(&schedule.schedule_id, false, &ann)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((paused.enabled, paused.next_fire_at), (false, None));
    t.clock.advance(Duration::hours(3));
    t.app
        .fire_due_schedules()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        runs_of(&t).await.is_empty(),
        "a paused schedule fires nothing"
    );
    let resumed = t
        .app
        .set_schedule_enabled(&schedule.schedule_id, true, &Caller::admin("root"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        resumed.next_fire_at.is_some_and(|next| next > t.app.now()),
        "a resumed schedule does not catch up what it missed while paused"
    );
    t.app
        .delete_schedule(&schedule.schedule_id, &ann)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        t.app.schedule(&schedule.schedule_id).await,
        Err(AppError::NotFound(_))
    ));
}
