//! Schedules: a definition, or a pinned template version, launched with a
//! fixed launch body at the times of a cron expression in a time zone.
//!
//! The expression is parsed by `croner` (5 fields, or 6 with seconds first;
//! `@daily` and the like) and evaluated in the schedule's IANA time zone
//! (`chrono-tz`), with Vixie cron's rules across daylight-saving changes: a
//! fixed time that a spring-forward skips fires at the first time after the
//! gap, and a wall-clock time that a fall-back repeats fires once, at its
//! first occurrence (an interval too: `*/30 * * * *` does not run the
//! repeated hour twice).
//!
//! A schedule is *due* once its `next_fire_at` has come ([`Schedule::due`]).
//! When fires were missed (the server was down), `catch_up` decides: `latest`
//! (the default) launches one run, for the newest missed time; `none`
//! launches nothing for a time more than [`ON_TIME_SECONDS`] old. Each fire
//! is first recorded on the schedule as `pending` (with the schedule's
//! version as condition, so one of two racing tickers takes it), then
//! launched with the idempotence key [`Fire::key`] (the schedule and the
//! fire time), then cleared; a fire found pending after a crash is launched
//! again under the same key, which finds the run already made.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ValidationError;

/// How many coming fire times a schedule shows.
pub const NEXT_FIRES_SHOWN: usize = 5;
/// A fire this recent counts as on time, even with `catch_up: none` (the
/// AWS retry function ticks every minute).
pub const ON_TIME_SECONDS: i64 = 90;
/// The longest schedule name.
pub const MAX_NAME_CHARS: usize = 128;
/// The longest cron expression.
pub const MAX_CRON_CHARS: usize = 256;

/// What a schedule does about fires it missed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// One run, for the newest missed time.
    #[default]
    Latest,
    /// No run for a missed time.
    None,
}

/// What a schedule launches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A definition.
    Definition {
        /// Its id.
        definition_id: String,
        /// Its alias when the schedule was saved.
        alias: String,
    },
    /// A template version.
    Template {
        /// The template's name.
        template_name: String,
        /// The version, pinned when the schedule was saved.
        template_version: u32,
        /// That version's id.
        template_id: String,
    },
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl CronSpec {
    /// Parses `cron` in the IANA `time_zone`, refusing one that never fires
    /// after `now`; every problem at once, each naming its field.
    pub fn parse(cron: &str, time_zone: &str, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        let mut problems = Vec::new();
        let parsed = if cron.trim().is_empty() {
            problems.push("cron: give a cron expression, e.g. \"0 2 * * *\" (02:00 every day) or \"*/10 * * * * *\" (every 10 seconds)".to_owned());
            None
        } else if cron.chars().count() > MAX_CRON_CHARS {
            problems.push(format!(
                "cron: at most {MAX_CRON_CHARS} characters, got {}",
                cron.chars().count()
            ));
            None
        } else {
            match cron.parse::<croner::Cron>() {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    problems.push(format!(
                        "cron: \"{cron}\" is not a cron expression ({e}); give 5 fields (minute hour day month weekday) or 6 with seconds first"
                    ));
                    None
                }
            }
        };
        let zone = match time_zone.parse::<chrono_tz::Tz>() {
            Ok(zone) => Some(zone),
            Err(_) => {
                problems.push(format!(
                    "time_zone: \"{time_zone}\" is not an IANA time zone; give one such as \"UTC\", \"Europe/Paris\" or \"America/New_York\""
                ));
                None
            }
        };
        match (parsed, zone) {
            (Some(cron), Some(zone)) if problems.is_empty() => {
                let spec = Self { cron, zone };
                // An expression that never matches (the 31st of February)
                // would never fire: refuse it now.
                match spec.next_after(now) {
                    Some(_) => Ok(spec),
                    None => Err(ValidationError::new(format!(
                        "cron: \"{}\" never fires; check its day and month fields",
                        cron_text(&spec)
                    ))),
                }
            }
            _ => Err(ValidationError { problems }),
        }
    }

    /// The first fire time strictly after `after` (fire times are whole
    /// seconds).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = after.trunc_subsecs(0);
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The newest fire time at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = at.trunc_subsecs(0);
        self.cron
            .find_previous_occurrence(&at.with_timezone(&self.zone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The `n` first fire times strictly after `after`.
    pub fn next_fires(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(n);
        let mut from = after;
        while fires.len() < n {
            let Some(next) = self.next_after(from) else {
                break;
            };
            fires.push(next);
            from = next;
        }
        fires
    }
}

fn cron_text(spec: &CronSpec) -> String {
    spec.cron.pattern.to_string()
}

/// A fire being launched: recorded on the schedule before its run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Fire {
    /// The fire time.
    pub at: DateTime<Utc>,
    /// How many earlier fire times were missed and not launched.
    #[serde(default)]
    pub skipped: u64,
}

impl Fire {
    /// The idempotence key of `schedule_id`'s fire at this time: one run
    /// per fire, however often it is launched.
    pub fn key(&self, schedule_id: &str) -> String {
        format!(
            "schedule:{schedule_id}:{}",
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// The body that creates a schedule (every field), or changes one (the
/// fields given).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct ScheduleInput {
    /// A name to know it by (default: what it launches).
    pub name: Option<String>,
    /// The definition it launches, by id …
    pub definition_id: Option<String>,
    /// … or by alias.
    pub alias: Option<String>,
    /// Or the template it launches, by name …
    pub template_name: Option<String>,
    /// … at this version (default: the newest, pinned when saved).
    pub template_version: Option<u32>,
    /// When: 5 fields (minute hour day month weekday) or 6 with seconds
    /// first, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub cron: Option<String>,
    /// The IANA time zone `cron` is read in (default `UTC`).
    pub time_zone: Option<String>,
    /// The execute body each fire sends: `run_tags.owner_id` (default:
    /// you), `env`, `cluster`, `command`, resources, `labels`, … and, for a
    /// template, `template_payload`.
    pub launch: Option<serde_json::Value>,
    /// Whether it fires (default `true`).
    pub enabled: Option<bool>,
    /// What it does about fires missed while the service was down:
    /// `latest` (default) launches one run for the newest, `none` none.
    pub catch_up: Option<CatchUp>,
}

/// What a schedule sends at each fire: an execute body, and for a template
/// its payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduledLaunch {
    /// The template's payload (template schedules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_payload: Option<serde_json::Value>,
    /// Every other execute field.
    #[serde(flatten)]
    pub request: crate::domain::launch::LaunchRequest,
}

/// What a template schedule's fires launch, rendered once when it is saved
/// (the version is pinned and the payload fixed, so every fire's command is
/// the same): the definition made from the template version, and the
/// version and payload its runs record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RenderedTemplate {
    /// The definition each fire launches, its command rendered.
    pub definition: crate::domain::definition::Definition,
    /// The template version and payload.
    pub template: crate::domain::spec::TemplateUse,
}

/// A schedule, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Schedule {
    /// `sched-<uuid>`, assigned on create.
    pub schedule_id: String,
    /// A name to know it by.
    pub name: String,
    /// What it launches.
    pub target: Target,
    /// When, as a cron expression.
    pub cron: String,
    /// The IANA time zone `cron` is read in.
    pub time_zone: String,
    /// The execute body each fire sends (env, `run_tags.owner_id`, cluster,
    /// command, resources, `template_payload`, …).
    pub launch: serde_json::Value,
    /// For a template: what each fire launches, rendered when saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<RenderedTemplate>,
    /// Whether it fires.
    pub enabled: bool,
    /// What it does about missed fires.
    pub catch_up: CatchUp,
    /// Who its runs belong to, and who may change it.
    pub owner: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it fires next; none while paused.
    #[serde(default)]
    pub next_fire_at: Option<DateTime<Utc>>,
    /// A fire taken but whose run is not known yet.
    #[serde(default)]
    pub pending: Option<Fire>,
    /// The newest fire launched.
    #[serde(default)]
    pub last_fire_at: Option<DateTime<Utc>>,
    /// Its run.
    #[serde(default)]
    pub last_run_id: Option<String>,
    /// Why the newest fire launched no run, when it did not.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Fires launched so far.
    #[serde(default)]
    pub fires: u64,
    /// Fire times missed and not launched so far.
    #[serde(default)]
    pub missed: u64,
    /// The stored version, the condition of every write.
    #[serde(default)]
    pub version: u64,
}

/// What a due schedule does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Launch this fire (recorded as pending first), then fire next at
    /// `next`.
    Fire {
        /// The fire.
        fire: Fire,
        /// The next fire time.
        next: Option<DateTime<Utc>>,
    },
    /// Launch nothing (the missed times are too old for `catch_up: none`);
    /// fire next at `next`.
    Skip {
        /// Times missed.
        missed: u64,
        /// The next fire time.
        next: Option<DateTime<Utc>>,
    },
}

impl Schedule {
    /// What the schedule does at `now`, with `spec` its parsed cron: `None`
    /// when it is paused, has a fire pending, or is not due yet.
    pub fn due(&self, spec: &CronSpec, now: DateTime<Utc>) -> Option<Due> {
        let first = self.next_fire_at.filter(|at| *at <= now)?;
        if !self.enabled || self.pending.is_some() {
            return None;
        }
        let latest = spec.latest_at_or_before(now).filter(|t| *t >= first)?;
        let next = spec.next_after(now);
        // Missed: the fire times from `first` up to `latest`, `latest`
        // excluded (counted up to a bound: a per-second schedule down for a
        // day has missed many).
        let mut missed = 0u64;
        let mut at = first;
        while at < latest && missed < 100_000 {
            missed += 1;
            match spec.next_after(at) {
                Some(t) => at = t,
                None => break,
            }
        }
        let on_time = (now - latest).num_seconds() <= ON_TIME_SECONDS;
        Some(match self.catch_up {
            CatchUp::None if !on_time => Due::Skip {
                missed: missed + 1,
                next,
            },
            _ => Due::Fire {
                fire: Fire {
                    at: latest,
                    skipped: missed,
                },
                next,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .unwrap_or_default()
    }

    fn spec(cron: &str, zone: &str) -> CronSpec {
        CronSpec::parse(cron, zone, utc(2027, 1, 1, 0, 0, 0)).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_daily_time_in_a_zone_fires_at_that_wall_clock_time_across_a_dst_change() {
        // 02:30 in New York each day. 2027-03-14 springs forward at 02:00
        // (no 02:30 that day): it fires at 03:00, the first time after the
        // gap, and at 02:30 EDT again the next day.
        let s = spec("30 2 * * *", "America/New_York");
        let fires = s.next_fires(utc(2027, 3, 13, 0, 0, 0), 3);
        assert_eq!(
            fires,
            [
                utc(2027, 3, 13, 7, 30, 0), // 02:30 EST
                utc(2027, 3, 14, 7, 0, 0),  // 03:00 EDT, the gap's end
                utc(2027, 3, 15, 6, 30, 0), // 02:30 EDT
            ]
        );
    }

    #[test]
    fn a_time_a_fall_back_repeats_fires_once_for_a_fixed_time_and_an_interval_alike() {
        // 2027-11-07 falls back at 02:00 EDT to 01:00 EST: 01:30 happens
        // twice.
        let daily = spec("30 1 * * *", "America/New_York");
        let fires = daily.next_fires(utc(2027, 11, 7, 0, 0, 0), 2);
        assert_eq!(
            fires,
            [utc(2027, 11, 7, 5, 30, 0), utc(2027, 11, 8, 6, 30, 0)],
            "once, at the first 01:30"
        );
        let half_hourly = spec("*/30 * * * *", "America/New_York");
        let fires = half_hourly.next_fires(utc(2027, 11, 7, 5, 0, 0), 4);
        assert_eq!(
            fires,
            [
                utc(2027, 11, 7, 5, 30, 0), // 01:30 EDT
                utc(2027, 11, 7, 7, 0, 0),  // 02:00 EST: 01:00 and 01:30 EST are not run again
                utc(2027, 11, 7, 7, 30, 0),
                utc(2027, 11, 7, 8, 0, 0),
            ],
            "each wall-clock time once: the repeated hour is not run twice"
        );
    }

    #[test]
    fn fire_times_are_whole_seconds_whenever_they_are_asked_for() {
        let every_second = spec("* * * * * *", "UTC");
        let at = utc(2027, 1, 1, 0, 0, 5) + chrono::Duration::milliseconds(220);
        assert_eq!(every_second.next_after(at), Some(utc(2027, 1, 1, 0, 0, 6)));
        assert_eq!(
            every_second.latest_at_or_before(at),
            Some(utc(2027, 1, 1, 0, 0, 5))
        );
    }

    #[test]
    fn seconds_are_an_optional_sixth_field_and_utc_is_a_zone() {
        let s = spec("*/10 * * * * *", "UTC");
        assert_eq!(
            s.next_fires(utc(2027, 1, 1, 0, 0, 5), 2),
            [utc(2027, 1, 1, 0, 0, 10), utc(2027, 1, 1, 0, 0, 20)]
        );
        let nightly = spec("@daily", "Europe/Paris");
        assert_eq!(
            nightly.next_after(utc(2027, 1, 1, 12, 0, 0)),
            Some(utc(2027, 1, 1, 23, 0, 0))
        );
    }

    #[test]
    fn a_bad_expression_and_a_bad_zone_are_refused_together_naming_each() {
        let now = utc(2027, 1, 1, 0, 0, 0);
        let problems = CronSpec::parse("61 * * *", "Mars/Olympus", now)
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("cron: "), "{problems:?}");
        assert!(problems[1].starts_with("time_zone: "), "{problems:?}");
        let never = CronSpec::parse("0 0 31 2 *", "UTC", now)
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        assert!(never[0].contains("never fires"), "{never:?}");
        assert!(CronSpec::parse("", "UTC", now).is_err());
        assert!(CronSpec::parse(&"* ".repeat(200), "UTC", now).is_err());
    }

    fn schedule(catch_up: CatchUp, next: DateTime<Utc>) -> Schedule {
        Schedule {
            schedule_id: "sched-1".into(),
            name: "nightly".into(),
            target: Target::Definition {
                definition_id: "d".into(),
                alias: "a".into(),
            },
            cron: "0 * * * *".into(),
            time_zone: "UTC".into(),
            launch: serde_json::json!({}),
            rendered: None,
            enabled: true,
            catch_up,
            owner: "ann".into(),
            created_at: next,
            updated_at: next,
            next_fire_at: Some(next),
            pending: None,
            last_fire_at: None,
            last_run_id: None,
            last_error: None,
            fires: 0,
            missed: 0,
            version: 1,
        }
    }

    #[test]
    fn a_schedule_is_due_at_its_time_and_not_before() {
        let hourly = spec("0 * * * *", "UTC");
        let s = schedule(CatchUp::Latest, utc(2027, 1, 1, 10, 0, 0));
        assert_eq!(s.due(&hourly, utc(2027, 1, 1, 9, 59, 59)), None);
        assert_eq!(
            s.due(&hourly, utc(2027, 1, 1, 10, 0, 0)),
            Some(Due::Fire {
                fire: Fire {
                    at: utc(2027, 1, 1, 10, 0, 0),
                    skipped: 0
                },
                next: Some(utc(2027, 1, 1, 11, 0, 0)),
            })
        );
        let paused = Schedule {
            enabled: false,
            ..s.clone()
        };
        assert_eq!(paused.due(&hourly, utc(2027, 1, 1, 12, 0, 0)), None);
        let pending = Schedule {
            pending: Some(Fire {
                at: utc(2027, 1, 1, 10, 0, 0),
                skipped: 0,
            }),
            ..s
        };
        assert_eq!(pending.due(&hourly, utc(2027, 1, 1, 12, 0, 0)), None);
    }

    #[test]
    fn after_a_long_outage_latest_catches_up_with_one_run_and_none_with_no_run() {
        let hourly = spec("0 * * * *", "UTC");
        let back = utc(2027, 1, 1, 15, 20, 0);
        let latest = schedule(CatchUp::Latest, utc(2027, 1, 1, 10, 0, 0));
        assert_eq!(
            latest.due(&hourly, back),
            Some(Due::Fire {
                fire: Fire {
                    at: utc(2027, 1, 1, 15, 0, 0),
                    skipped: 5
                },
                next: Some(utc(2027, 1, 1, 16, 0, 0)),
            }),
            "one run, for 15:00; 10:00 to 14:00 were missed"
        );
        let none = schedule(CatchUp::None, utc(2027, 1, 1, 10, 0, 0));
        assert_eq!(
            none.due(&hourly, back),
            Some(Due::Skip {
                missed: 6,
                next: Some(utc(2027, 1, 1, 16, 0, 0)),
            })
        );
        // A fire a moment late is on time, even with `none`.
        assert!(matches!(
            none.due(&hourly, utc(2027, 1, 1, 10, 0, 30)),
            Some(Due::Fire { .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn any_expression_is_parsed_or_refused_without_a_panic_and_a_parsed_one_answers_its_next_fires(
            cron in "[0-9*/,LW#?@ a-zA-Z-]{0,40}",
            zone in proptest::sample::select(vec!["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu", "Pacific/Chatham", "nowhere"]),
        ) {
            let now = utc(2027, 3, 14, 6, 59, 0);
            if let Ok(spec) = CronSpec::parse(&cron, zone, now) {
                let fires = spec.next_fires(now, 3);
                proptest::prop_assert!(fires.windows(2).all(|w| w[0] < w[1]));
                proptest::prop_assert!(fires.iter().all(|f| *f > now));
            }
        }
    }

    fn cron_field() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::strategy::Just("*".to_owned()),
            proptest::strategy::Just("?".to_owned()),
            proptest::strategy::Just("L".to_owned()),
            "\\*/[0-9]{1,3}",
            "[0-9]{1,3}",
            "[0-9]{1,2}-[0-9]{1,2}",
            "[0-9]{1,2}-[0-9]{1,2}/[0-9]{1,2}",
            "[0-9]{1,2},[0-9]{1,2},[0-9]{1,2}",
            "[0-9]L",
            "[0-9]#[0-9]",
            "[0-9]{1,2}W",
            "(MON|FRI|SUN|JAN|DEC)(-(TUE|SAT))?",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn any_shape_of_fields_is_parsed_or_refused_and_a_parsed_one_fires_in_order_after_now(
            fields in proptest::collection::vec(cron_field(), 5..=7),
            zone in proptest::sample::select(vec!["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu", "Pacific/Chatham"]),
            hours in 0i64..(24 * 365 * 3),
        ) {
            let now = utc(2027, 1, 1, 0, 0, 0) + chrono::Duration::hours(hours);
            let cron = fields.join(" ");
            if let Ok(spec) = CronSpec::parse(&cron, zone, now) {
                let fires = spec.next_fires(now, 3);
                proptest::prop_assert!(!fires.is_empty(), "{cron} parsed, so it fires");
                proptest::prop_assert!(fires.windows(2).all(|w| w[0] < w[1]), "{cron}: {fires:?}");
                proptest::prop_assert!(fires.iter().all(|f| *f > now), "{cron}: {fires:?}");
            }
        }
    }

    #[test]
    fn each_fire_has_its_own_key_and_the_same_fire_the_same_key() {
        let fire = |s| Fire {
            at: utc(2027, 1, 1, 10, 0, s),
            skipped: 0,
        };
        assert_eq!(
            fire(0).key("sched-1"),
            "schedule:sched-1:2027-01-01T10:00:00Z"
        );
        assert_eq!(fire(0).key("sched-1"), fire(0).key("sched-1"));
        assert_ne!(fire(0).key("sched-1"), fire(1).key("sched-1"));
        assert_ne!(fire(0).key("sched-1"), fire(0).key("sched-2"));
    }
}
