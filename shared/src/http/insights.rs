//! Insights: `GET /api/v6/insights/top`, the leaderboard of what runs cost
//! and used by definition, owner or group over a window of days.

use axum::extract::{RawQuery, State};

use crate::domain::ValidationError;
use crate::domain::insights::{Dimension, Leaderboard, MAX_WINDOW_DAYS};
use crate::http::error::ApiError;
use crate::http::input::QueryPairs;
use crate::http::routes::Operation;
use crate::http::{ApiResult, AppState, ok};

/// The most rows a leaderboard answers.
pub const MAX_LIMIT: usize = 100;

/// The insights routes.
pub fn routes() -> Vec<Operation> {
    vec![
        Operation::get("/api/v6/insights/top", top)
            .doc(
                "insights",
                "The most expensive definitions, owners or groups of a window of days (estimated cost, compute hours, runs, failure rate) and each day's totals",
            )
            .query(&["by", "window", "limit"])
            .returns::<Leaderboard>(),
    ]
}

/// What a leaderboard is asked for: `by` (definition, owner or group;
/// definition by default), `window` (`<days>d`, 7d by default, at most
/// [`MAX_WINDOW_DAYS`]) and `limit` (10 by default, at most [`MAX_LIMIT`]).
pub fn parse_top(q: &QueryPairs) -> Result<(Dimension, u32, usize), Vec<String>> {
    let mut problems = Vec::new();
    let by = match q.one("by") {
        None => Dimension::Definition,
        Some(v) => Dimension::parse(v.trim()).unwrap_or_else(|| {
            problems.push(format!(
                "by must be one of definition, owner or group, got \"{v}\""
            ));
            Dimension::Definition
        }),
    };
    let window = match q.one("window") {
        None => 7,
        Some(v) => match v
            .trim()
            .strip_suffix('d')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=MAX_WINDOW_DAYS).contains(n))
        {
            Some(n) => n,
            None => {
                problems.push(format!(
                    "window must be a number of days from 1d to {MAX_WINDOW_DAYS}d (7d, 30d), got \"{v}\""
                ));
                7
            }
        },
    };
    let limit = match q.one("limit") {
        None => 10,
        Some(v) => match v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
        {
            Some(n) => n,
            None => {
                problems.push(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, got \"{v}\""
                ));
                10
            }
        },
    };
    if problems.is_empty() {
        Ok((by, window, limit))
    } else {
        Err(problems)
    }
}

async fn top(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = QueryPairs::parse(raw.as_deref());
    let (by, days, limit) =
        parse_top(&q).map_err(|problems| ApiError::from(ValidationError { problems }))?;
    ok(app.leaderboard(by, days, limit).await?)
}
