//! Leaderboards: what runs cost and used, by definition, owner or group,
//! over a window of days.
//!
//! When a run ends, the append that records its end also adds the run to
//! three daily tallies (its definition's, its owner's and its group's, on
//! the day it ended, UTC), in the same atomic write, so a run is counted
//! exactly once however often its end is delivered. A leaderboard reads the
//! window's daily tallies of one dimension (a row per key and day, never a
//! run) and sums them ([`Leaderboard::of`]).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::domain::run::{Run, RunStatus};

/// The most days a leaderboard's window may span.
pub const MAX_WINDOW_DAYS: u32 = 90;

/// What a leaderboard groups runs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// The run's definition (labelled with its alias).
    Definition,
    /// Who launched it.
    Owner,
    /// Its definition's group.
    Group,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 3] = [Self::Definition, Self::Owner, Self::Group];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Definition => "definition",
            Self::Owner => "owner",
            Self::Group => "group",
        }
    }

    /// Parses a wire name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == value)
    }
}

/// One ended run, as the tallies count it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTally {
    /// The day it ended (UTC).
    pub day: NaiveDate,
    /// Its key and label in each dimension.
    pub keys: Vec<(Dimension, String, String)>,
    /// Its estimated cost.
    pub cost_usd: f64,
    /// The vCPU-hours it held: its size times the time its attempts ran.
    pub cpu_hours: f64,
    /// Whether it failed (it did not exit with 0).
    pub failed: bool,
}

impl RunTally {
    /// The tally of `run`, just appended, if this append ended it (it was
    /// `previous` before): once per run, on the append that stops it.
    pub fn of(previous: Option<RunStatus>, run: &Run) -> Option<Self> {
        if run.status != RunStatus::Stopped || previous == Some(RunStatus::Stopped) {
            return None;
        }
        let day = run.finished_at?.date_naive();
        let usage = run.usage;
        let spec = &run.spec;
        let keys = vec![
            (
                Dimension::Definition,
                spec.definition_id.clone(),
                spec.alias.clone(),
            ),
            (Dimension::Owner, spec.owner.clone(), spec.owner.clone()),
            (
                Dimension::Group,
                spec.group_name.clone(),
                spec.group_name.clone(),
            ),
        ];
        Some(Self {
            day,
            keys,
            cost_usd: usage.and_then(|u| u.cost_usd).unwrap_or(0.0),
            cpu_hours: usage.map_or(0.0, |u| {
                crate::domain::usage::vcpus(run.resources()) * u.duration_s / 3600.0
            }),
            failed: run.exit_code != Some(0),
        })
    }
}

/// One key's tally on one day, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayTally {
    /// The day.
    pub day: NaiveDate,
    /// The key (definition id, owner or group).
    pub key: String,
    /// What it is shown as (a definition's alias).
    pub label: String,
    /// Estimated cost.
    pub cost_usd: f64,
    /// vCPU-hours held.
    pub cpu_hours: f64,
    /// Runs ended.
    pub runs: u64,
    /// Of which failed.
    pub failed: u64,
}

/// One row of a leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Leader {
    /// The key (definition id, owner or group).
    pub key: String,
    /// What it is shown as.
    pub label: String,
    /// Estimated cost in the window, US dollars.
    pub cost_usd: f64,
    /// vCPU-hours held in the window (the runs' sizes times the time
    /// they ran).
    pub compute_hours: f64,
    /// Runs that ended in the window.
    pub runs: u64,
    /// Of which failed.
    pub failed: u64,
    /// `failed / runs`.
    pub failure_rate: f64,
}

/// One day of the whole window, over every key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DayTotal {
    /// The day (UTC).
    pub day: NaiveDate,
    /// Estimated cost, US dollars.
    pub cost_usd: f64,
    /// vCPU-hours held.
    pub compute_hours: f64,
    /// Runs that ended.
    pub runs: u64,
}

/// A leaderboard: the most expensive keys of a window, and each day's total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Leaderboard {
    /// What it groups by.
    pub by: Dimension,
    /// The first day of the window.
    pub from: NaiveDate,
    /// The last day of the window (today, UTC).
    pub to: NaiveDate,
    /// The keys, most expensive first (then most compute hours, then most
    /// runs, then by key).
    pub top: Vec<Leader>,
    /// Every day of the window, oldest first, zeros included.
    pub days: Vec<DayTotal>,
}

fn rounded(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// The days `to - days + 1 ..= to`.
pub fn window(to: NaiveDate, days: u32) -> (NaiveDate, NaiveDate) {
    (to - Duration::days(i64::from(days.max(1)) - 1), to)
}

impl Leaderboard {
    /// The leaderboard of `rows` (the window's daily tallies of `by`),
    /// keeping the `limit` most expensive keys.
    pub fn of(
        by: Dimension,
        (from, to): (NaiveDate, NaiveDate),
        rows: &[DayTally],
        limit: usize,
    ) -> Self {
        let mut keys: BTreeMap<&str, Leader> = BTreeMap::new();
        let mut days: BTreeMap<NaiveDate, DayTotal> = from
            .iter_days()
            .take_while(|d| *d <= to)
            .map(|day| {
                (
                    day,
                    DayTotal {
                        day,
                        cost_usd: 0.0,
                        compute_hours: 0.0,
                        runs: 0,
                    },
                )
            })
            .collect();
        for row in rows.iter().filter(|r| r.day >= from && r.day <= to) {
            let leader = keys.entry(&row.key).or_insert_with(|| Leader {
                key: row.key.clone(),
                label: row.label.clone(),
                cost_usd: 0.0,
                compute_hours: 0.0,
                runs: 0,
                failed: 0,
                failure_rate: 0.0,
            });
            leader.cost_usd += row.cost_usd;
            leader.compute_hours += row.cpu_hours;
            leader.runs += row.runs;
            leader.failed += row.failed;
            if !row.label.is_empty() {
                leader.label = row.label.clone();
            }
            if let Some(total) = days.get_mut(&row.day) {
                total.cost_usd += row.cost_usd;
                total.compute_hours += row.cpu_hours;
                total.runs += row.runs;
            }
        }
        let mut top: Vec<Leader> = keys
            .into_values()
            .map(|mut l| {
                l.cost_usd = rounded(l.cost_usd, 6);
                l.compute_hours = rounded(l.compute_hours, 4);
                l.failure_rate = if l.runs == 0 {
                    0.0
                } else {
                    rounded(l.failed as f64 / l.runs as f64, 4)
                };
                l
            })
            .collect();
        top.sort_by(|a, b| {
            b.cost_usd
                .total_cmp(&a.cost_usd)
                .then(b.compute_hours.total_cmp(&a.compute_hours))
                .then(b.runs.cmp(&a.runs))
                .then(a.key.cmp(&b.key))
        });
        top.truncate(limit);
        let days = days
            .into_values()
            .map(|mut d| {
                d.cost_usd = rounded(d.cost_usd, 6);
                d.compute_hours = rounded(d.compute_hours, 4);
                d
            })
            .collect();
        Self {
            by,
            from,
            to,
            top,
            days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default()
    }

    fn row(d: u32, key: &str, cost: f64, runs: u64, failed: u64) -> DayTally {
        DayTally {
            day: day(d),
            key: key.into(),
            label: format!("{key}-label"),
            cost_usd: cost,
            cpu_hours: cost * 10.0,
            runs,
            failed,
        }
    }

    #[test]
    fn a_leaderboard_orders_keys_by_cost_over_the_window_and_keeps_the_limit() {
        let rows = [
            row(1, "cheap", 0.5, 10, 0),
            row(2, "dear", 3.0, 1, 1),
            row(3, "middle", 1.0, 2, 1),
            row(4, "middle", 1.5, 2, 0),
            // Outside the window.
            row(20, "cheap", 100.0, 1, 0),
        ];
        let board = Leaderboard::of(Dimension::Definition, (day(1), day(7)), &rows, 2);
        let keys: Vec<&str> = board.top.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["dear", "middle"]);
        assert_eq!(board.top[1].cost_usd, 2.5);
        assert_eq!(board.top[1].runs, 4);
        assert_eq!(board.top[1].failure_rate, 0.25);
        assert_eq!(board.top[0].label, "dear-label");
        assert_eq!(board.days.len(), 7);
        assert_eq!(board.days[0].cost_usd, 0.5);
        assert_eq!(board.days[3].runs, 2);
        assert_eq!(board.days[6].runs, 0);
    }

    #[test]
    fn a_run_is_tallied_on_the_append_that_stops_it_and_never_again() {
        use crate::domain::run::{RunCommand, decide, replay};
        use crate::testing::scenario::{queued, started, submitted, t};
        let state = replay(&[queued(), submitted(1), started(1)]);
        let events = decide(
            &state,
            RunCommand::RecordExited {
                attempt: 1,
                engine_version: None,
                exit_code: Some(2),
                reason: None,
                usage: None,
                now: t(4),
            },
        )
        .unwrap_or_default();
        let ended = events
            .iter()
            .fold(state.clone(), crate::domain::run::evolve);
        let run = ended.run.clone().unwrap_or_else(|| panic!("a run"));
        let tally = RunTally::of(Some(RunStatus::Running), &run);
        let tally = tally.unwrap_or_else(|| panic!("the stop is tallied"));
        assert!(tally.failed, "exit code 2 is a failure");
        assert_eq!(tally.day, t(4).date_naive());
        assert_eq!(
            tally.keys.iter().map(|k| k.0).collect::<Vec<_>>(),
            Dimension::ALL
        );
        assert_eq!(
            RunTally::of(Some(RunStatus::Stopped), &run),
            None,
            "an append to a stopped run is not tallied again"
        );
        let running = state.run.unwrap_or_else(|| panic!("a run"));
        assert_eq!(RunTally::of(Some(RunStatus::Pending), &running), None);
    }

    #[test]
    fn a_window_of_seven_days_ends_today_and_starts_six_days_before() {
        assert_eq!(window(day(7), 7), (day(1), day(7)));
        assert_eq!(window(day(7), 1), (day(7), day(7)));
    }
}
