//! Schedules on DynamoDB: made through the api function's router, fired by
//! the retry function's tick, once however many ticks race for a fire.

use axum::http::Method;
use serde_json::{Value, json};

use crate::{INTERVALS, stack};
use shared::lambda::retry;

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_schedule_made_through_the_api_is_fired_once_by_twenty_racing_retry_ticks() {
    let s = stack().await;
    let (code, def) = s
        .call(
            Method::POST,
            "/api/v6/task",
            json!({"alias": "nightly", "image": "ubuntu:latest", "command": "true"}),
        )
        .await;
    assert_eq!(code, 200, "{def}");
    let (code, created) = s
        .call(
            Method::POST,
            "/api/v6/schedules",
            json!({"alias": "nightly", "cron": "0 * * * *", "time_zone": "Europe/Paris",
                   "launch": {"cluster": "default", "run_tags": {"owner_id": "ann"}}}),
        )
        .await;
    assert_eq!(code, 200, "{created}");
    let id = created["schedule"]["schedule_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let next: chrono::DateTime<chrono::Utc> = created["schedule"]["next_fire_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        created["schedule"]["next_fires"].as_array().unwrap().len(),
        5
    );

    // Not due yet: a tick fires nothing.
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert!(tick.scheduled.is_empty(), "{tick:?}");

    s.clock.set(next + chrono::Duration::seconds(20));
    let mut ticks = Vec::new();
    for _ in 0..20 {
        let app = s.app.clone();
        ticks.push(tokio::spawn(
            async move { retry::tick(&app, INTERVALS).await },
        ));
    }
    let mut fired = 0;
    for tick in ticks {
        fired += tick.await.unwrap().unwrap().scheduled.len();
    }
    assert!(fired >= 1, "a tick fired it");
    let (_, runs) = s
        .call(Method::GET, "/api/v6/history?alias=nightly", Value::Null)
        .await;
    assert_eq!(runs["total"], 1, "one run for the fire: {runs}");
    assert_eq!(
        runs["history"][0]["labels"]["flotilla.schedule_id"],
        id.as_str()
    );
    assert_eq!(runs["history"][0]["user"], "ann");
    let (_, read) = s
        .call(Method::GET, &format!("/api/v6/schedules/{id}"), Value::Null)
        .await;
    assert_eq!(read["fires"], 1, "{read}");
    assert_eq!(read["pending"], Value::Null, "{read}");
    let after: chrono::DateTime<chrono::Utc> =
        read["next_fire_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(after, next + chrono::Duration::hours(1));

    // Paused through the api, it fires no more.
    let (code, paused) = s
        .call(
            Method::POST,
            &format!("/api/v6/schedules/{id}/pause"),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200, "{paused}");
    s.clock.set(next + chrono::Duration::hours(3));
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert!(tick.scheduled.is_empty(), "{tick:?}");
    let (code, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v6/schedules/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200);
}
