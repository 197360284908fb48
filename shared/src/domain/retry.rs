//! Retry policies: which ended attempts of a run are run again, after how
//! long, and with how much memory.
//!
//! A definition and a launch may each carry a [`RetryPolicy`] (the launch's
//! replaces the definition's). When the run is queued the policy is
//! resolved into a [`RunRetry`], fixed on the run's spec with its defaults
//! and its memory cap filled in, so every later decision about the run reads
//! only the run.
//!
//! What runs again:
//! - an infrastructure failure (the engine failed before the user's code
//!   ran: image pull, capacity, spot reclaim), as without a policy, up to
//!   the policy's attempts;
//! - an exit code listed in `on_exit_codes`;
//! - an attempt that ran out of memory, when `on_reasons` has
//!   `"out of memory"`: the next attempt gets `memory_multiplier` times the
//!   memory (1.5 by default), never more than the cap (the definition's
//!   `max_memory`, else the server's); at the cap, the run stops;
//! - an image that could not be pulled because it was not found, when
//!   `on_reasons` has `"image pull"` (an image still being pushed).
//!
//! Nothing else runs again: an exit code not listed stands.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::domain::limits::MAX_ITEMS;

/// What an engine's exit reason starts with when an attempt ran out of
/// memory (both local engines and ECS say it so).
pub const OUT_OF_MEMORY: &str = "out of memory";
/// What an engine's exit reason starts with when an image could not be
/// pulled and trying again cannot help by itself (it was not found, or its
/// name is not one).
pub const IMAGE_PULL_FAILED: &str = "image pull failed";
/// Most attempts a policy may allow.
pub const MAX_POLICY_ATTEMPTS: u32 = 10;
/// How much more memory an attempt gets after one ran out, by default.
pub const DEFAULT_MEMORY_MULTIPLIER: f64 = 1.5;
/// How the reason of an attempt whose spot capacity was reclaimed begins.
pub const SPOT_INTERRUPTION: &str = "spot interruption";

/// Largest memory multiplier a policy may give.
pub const MAX_MEMORY_MULTIPLIER: f64 = 4.0;
/// Longest wait a backoff may give, in seconds (one day).
pub const MAX_BACKOFF_SECONDS: u64 = 86_400;
/// A backoff's `max` when it gives none, in seconds.
pub const DEFAULT_BACKOFF_MAX_SECONDS: u64 = 600;
/// A backoff's `multiplier` when it gives none.
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;

/// A failure a policy may name in `on_reasons`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RetryReason {
    /// The attempt ran out of memory; the next one gets more.
    #[serde(rename = "out of memory")]
    OutOfMemory,
    /// The capacity was reclaimed (ECS `SpotInterruption`); retried as an
    /// infrastructure failure even when not named.
    #[serde(rename = "spot interruption")]
    SpotInterruption,
    /// The image could not be pulled because it was not found.
    #[serde(rename = "image pull")]
    ImagePull,
}

impl RetryReason {
    /// Every reason.
    pub const ALL: [RetryReason; 3] = [Self::OutOfMemory, Self::SpotInterruption, Self::ImagePull];
}

/// How long to wait before each retry: `initial` seconds before the first,
/// then `multiplier` times longer each time, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Backoff {
    /// Seconds before the first retry.
    pub initial: u64,
    /// Most seconds before any retry (600 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// How much longer each wait is than the one before (2 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

/// A retry policy as a definition or a launch gives it. Every field is
/// optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RetryPolicy {
    /// Attempts in all, 1 to 10; the server's default (`--max-attempts`,
    /// 3) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Exit codes of the command that run it again (1 to 255).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_exit_codes: Vec<i64>,
    /// Failures that run it again: `"out of memory"`, `"spot interruption"`,
    /// `"image pull"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_reasons: Vec<RetryReason>,
    /// The wait before each retry; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_seconds: Option<Backoff>,
    /// How much more memory the attempt after one that ran out of memory
    /// gets (more than 1, at most 4; 1.5 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_multiplier: Option<f64>,
}

impl RetryPolicy {
    /// What is wrong with the policy given as `field`, each problem saying
    /// what to send instead.
    pub fn problems(&self, field: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(attempts) = self.attempts
            && !(1..=MAX_POLICY_ATTEMPTS).contains(&attempts)
        {
            problems.push(format!(
                "{field}.attempts is {attempts}: give 1 to {MAX_POLICY_ATTEMPTS} (attempts in all, the first included)"
            ));
        }
        if self.on_exit_codes.len() > MAX_ITEMS {
            problems.push(format!(
                "{field}.on_exit_codes has {} items, more than the {MAX_ITEMS} it may have",
                self.on_exit_codes.len()
            ));
        }
        for code in &self.on_exit_codes {
            if !(1..=255).contains(code) {
                problems.push(format!(
                    "{field}.on_exit_codes holds {code}: exit codes that retry are 1 to 255 (0 is success)"
                ));
            }
        }
        if let Some(backoff) = &self.backoff_seconds {
            let max = backoff.max.unwrap_or(DEFAULT_BACKOFF_MAX_SECONDS);
            if backoff.initial > MAX_BACKOFF_SECONDS {
                problems.push(format!(
                    "{field}.backoff_seconds.initial is {}: give at most {MAX_BACKOFF_SECONDS} (one day)",
                    backoff.initial
                ));
            }
            if max > MAX_BACKOFF_SECONDS {
                problems.push(format!(
                    "{field}.backoff_seconds.max is {max}: give at most {MAX_BACKOFF_SECONDS} (one day)"
                ));
            }
            if backoff.max.is_some() && max < backoff.initial {
                problems.push(format!(
                    "{field}.backoff_seconds.max ({max}) is less than its initial ({}): give a max of at least the initial wait",
                    backoff.initial
                ));
            }
            if let Some(m) = backoff.multiplier
                && !(m.is_finite() && (1.0..=10.0).contains(&m))
            {
                problems.push(format!(
                    "{field}.backoff_seconds.multiplier is {m}: give 1 to 10 (1 waits the same each time)"
                ));
            }
        }
        if let Some(m) = self.memory_multiplier
            && !(m.is_finite() && m > 1.0 && m <= MAX_MEMORY_MULTIPLIER)
        {
            problems.push(format!(
                "{field}.memory_multiplier is {m}: give more than 1 and at most {MAX_MEMORY_MULTIPLIER}"
            ));
        }
        problems
    }
}

/// A run's retry policy as resolved when it was queued: fixed with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRetry {
    /// Attempts in all.
    pub attempts: u32,
    /// Exit codes that run it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_exit_codes: Vec<i64>,
    /// Failures that run it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_reasons: Vec<RetryReason>,
    /// The wait before each retry, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_seconds: Option<Backoff>,
    /// How much more memory an attempt gets after one ran out.
    pub memory_multiplier: f64,
    /// The most memory (MB) any attempt may get: the definition's
    /// `max_memory`, else the server's cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
}

/// What becomes of an attempt that ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It is run again, for this reason.
    Retry(String),
    /// It stands; the note, when there is one, says why it is not retried
    /// although the policy names its failure.
    Stands(Option<String>),
}

impl RunRetry {
    /// The policy of a run: `policy` (the launch's, else the definition's)
    /// with its defaults, `default_attempts` (the server's) among them, and
    /// its memory cap, the lower of `max_memory` (the definition's) and
    /// `server_max_memory`. `None` when neither gives a policy: the run is
    /// retried only after infrastructure failures, as the server says.
    pub fn resolve(
        policy: Option<&RetryPolicy>,
        max_memory: Option<u64>,
        server_max_memory: Option<u64>,
        default_attempts: u32,
    ) -> Option<RunRetry> {
        let policy = policy?;
        let cap = match (max_memory, server_max_memory) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some(RunRetry {
            attempts: policy
                .attempts
                .unwrap_or(default_attempts)
                .clamp(1, MAX_POLICY_ATTEMPTS.max(default_attempts)),
            on_exit_codes: policy.on_exit_codes.clone(),
            on_reasons: policy.on_reasons.clone(),
            backoff_seconds: policy.backoff_seconds,
            memory_multiplier: policy
                .memory_multiplier
                .unwrap_or(DEFAULT_MEMORY_MULTIPLIER),
            max_memory: cap,
        })
    }

    /// How long to wait before the attempt after `attempt` (1 for the first
    /// retry): zero without a backoff.
    pub fn wait_after(&self, attempt: u32) -> Duration {
        let Some(backoff) = self.backoff_seconds else {
            return Duration::zero();
        };
        let max = backoff.max.unwrap_or(DEFAULT_BACKOFF_MAX_SECONDS) as f64;
        let multiplier = backoff.multiplier.unwrap_or(DEFAULT_BACKOFF_MULTIPLIER);
        let steps = attempt.saturating_sub(1).min(64) as i32;
        let seconds = (backoff.initial as f64 * multiplier.powi(steps)).min(max);
        Duration::milliseconds((seconds * 1000.0) as i64)
    }

    /// Whether the policy names `reason`.
    pub fn names(&self, reason: RetryReason) -> bool {
        self.on_reasons.contains(&reason)
    }

    /// What becomes of `attempt`, which ended with `exit_code` and `reason`
    /// while it had `memory` MB (when known).
    pub fn verdict(
        &self,
        attempt: u32,
        exit_code: Option<i64>,
        reason: Option<&str>,
        memory: Option<u64>,
    ) -> Verdict {
        if exit_code == Some(0) {
            return Verdict::Stands(None);
        }
        let reason = reason.unwrap_or("");
        let why = if reason.starts_with(OUT_OF_MEMORY) && self.names(RetryReason::OutOfMemory) {
            match (memory, self.max_memory) {
                (Some(memory), Some(cap)) if memory >= cap => {
                    return Verdict::Stands(Some(format!(
                        "not retried: it had {memory} MB, the most it may have (max_memory {cap} MB); raise the definition's max_memory to let it grow"
                    )));
                }
                (Some(memory), _) => format!(
                    "it ran out of memory with {memory} MB; the policy retries \"out of memory\" with more"
                ),
                (None, _) => "it ran out of memory; the policy retries \"out of memory\"".into(),
            }
        } else if reason.starts_with(IMAGE_PULL_FAILED) && self.names(RetryReason::ImagePull) {
            "its image could not be pulled; the policy retries \"image pull\"".into()
        } else if let Some(code) = exit_code.filter(|c| self.on_exit_codes.contains(c)) {
            format!("exit code {code} is in the policy's on_exit_codes")
        } else {
            return Verdict::Stands(None);
        };
        if attempt >= self.attempts {
            return Verdict::Stands(Some(format!(
                "not retried: that was attempt {attempt} of the {} its policy allows",
                self.attempts
            )));
        }
        Verdict::Retry(why)
    }

    /// The memory (MB) of the attempt after one that ran out of memory with
    /// `memory`: `memory_multiplier` times more, rounded up, never more than
    /// the cap. `None` when it cannot grow.
    pub fn grown_memory(&self, memory: u64) -> Option<u64> {
        let grown = (memory as f64 * self.memory_multiplier).ceil() as u64;
        let grown = self.max_memory.map_or(grown, |cap| grown.min(cap));
        (grown > memory).then_some(grown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(json: serde_json::Value) -> RetryPolicy {
        serde_json::from_value(json).unwrap()
    }

    fn run_retry(json: serde_json::Value, cap: Option<u64>) -> RunRetry {
        RunRetry::resolve(Some(&policy(json)), cap, None, 3).unwrap()
    }

    #[test]
    fn a_policy_reads_its_wire_names_and_a_bad_one_says_what_to_send() {
        let p = policy(serde_json::json!({
            "attempts": 4,
            "on_exit_codes": [3, 75],
            "on_reasons": ["out of memory", "spot interruption", "image pull"],
            "backoff_seconds": {"initial": 5, "max": 60, "multiplier": 3},
            "memory_multiplier": 2
        }));
        assert!(p.problems("retry").is_empty());
        assert_eq!(p.on_reasons, RetryReason::ALL.to_vec());
        let bad = policy(serde_json::json!({
            "attempts": 11,
            "on_exit_codes": [0, 256],
            "backoff_seconds": {"initial": 90000, "max": 10, "multiplier": 0.5},
            "memory_multiplier": 1
        }));
        let problems = bad.problems("retry");
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(problems[0].contains("give 1 to 10"), "{}", problems[0]);
        assert!(
            serde_json::from_value::<RetryPolicy>(serde_json::json!({"on_reasons": ["disk full"]}))
                .is_err()
        );
    }

    #[test]
    fn no_policy_anywhere_resolves_to_none_and_the_cap_is_the_lower_of_the_two() {
        assert_eq!(RunRetry::resolve(None, Some(1024), Some(4096), 3), None);
        let p = RetryPolicy::default();
        let r = RunRetry::resolve(Some(&p), Some(8192), Some(4096), 3).unwrap();
        assert_eq!((r.attempts, r.max_memory), (3, Some(4096)));
        assert_eq!(r.memory_multiplier, DEFAULT_MEMORY_MULTIPLIER);
        let r = RunRetry::resolve(Some(&p), None, Some(4096), 5).unwrap();
        assert_eq!((r.attempts, r.max_memory), (5, Some(4096)));
    }

    #[test]
    fn the_backoff_grows_by_its_multiplier_up_to_its_max() {
        let r = run_retry(
            serde_json::json!({"backoff_seconds": {"initial": 2, "max": 10}}),
            None,
        );
        let waits: Vec<i64> = (1..=5).map(|a| r.wait_after(a).num_seconds()).collect();
        assert_eq!(waits, [2, 4, 8, 10, 10]);
        let none = run_retry(serde_json::json!({}), None);
        assert_eq!(none.wait_after(3), Duration::zero());
    }

    #[test]
    fn only_a_listed_exit_code_or_a_named_failure_is_retried() {
        let r = run_retry(
            serde_json::json!({"attempts": 3, "on_exit_codes": [3], "on_reasons": ["out of memory"]}),
            Some(1024),
        );
        assert!(matches!(
            r.verdict(1, Some(3), None, None),
            Verdict::Retry(_)
        ));
        assert_eq!(r.verdict(1, Some(4), None, None), Verdict::Stands(None));
        assert_eq!(r.verdict(1, Some(0), None, None), Verdict::Stands(None));
        let oom = Some("out of memory (limit 64 MB)");
        assert!(matches!(
            r.verdict(1, Some(137), oom, Some(64)),
            Verdict::Retry(_)
        ));
        let Verdict::Stands(Some(note)) = r.verdict(2, Some(137), oom, Some(1024)) else {
            panic!("at the cap it stands");
        };
        assert!(note.contains("max_memory 1024 MB"), "{note}");
        let Verdict::Stands(Some(note)) = r.verdict(3, Some(3), None, None) else {
            panic!("the last attempt stands");
        };
        assert!(note.contains("attempt 3 of the 3"), "{note}");
        let pull = Some("image pull failed: image \"x\" was not found");
        assert_eq!(r.verdict(1, None, pull, None), Verdict::Stands(None));
    }

    #[test]
    fn memory_grows_by_the_multiplier_rounded_up_and_stops_at_the_cap() {
        let r = run_retry(serde_json::json!({"memory_multiplier": 1.5}), Some(200));
        assert_eq!(r.grown_memory(64), Some(96));
        assert_eq!(r.grown_memory(150), Some(200));
        assert_eq!(r.grown_memory(200), None);
        assert_eq!(r.grown_memory(7), Some(11));
    }

    proptest! {
        #[test]
        fn memory_never_exceeds_the_cap_and_always_grows_when_it_may(
            memory in 1u64..200_000,
            cap in 1u64..200_000,
            multiplier in 1.01f64..4.0,
        ) {
            let r = RunRetry {
                memory_multiplier: multiplier,
                max_memory: Some(cap),
                ..run_retry(serde_json::json!({}), None)
            };
            match r.grown_memory(memory) {
                Some(grown) => {
                    prop_assert!(grown <= cap);
                    prop_assert!(grown > memory);
                }
                None => prop_assert!(memory >= cap),
            }
        }

        #[test]
        fn no_attempt_past_the_policys_is_ever_granted(
            attempts in 1u32..=10,
            attempt in 1u32..20,
            code in 1i64..=255,
        ) {
            let r = run_retry(serde_json::json!({"attempts": attempts, "on_exit_codes": [code]}), None);
            let retried = matches!(r.verdict(attempt, Some(code), None, None), Verdict::Retry(_));
            prop_assert_eq!(retried, attempt < attempts);
        }

        #[test]
        fn an_exit_code_not_listed_never_retries(code in 1i64..=255, listed in 1i64..=255) {
            prop_assume!(code != listed);
            let r = run_retry(serde_json::json!({"attempts": 10, "on_exit_codes": [listed]}), None);
            prop_assert_eq!(r.verdict(1, Some(code), None, None), Verdict::Stands(None));
        }
    }
}
