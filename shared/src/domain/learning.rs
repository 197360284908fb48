//! What the runs of a job teach its next runs: a job (a definition and the
//! MD5 of its command, as Flotilla keys it) whose attempt ran out of memory
//! in the last [`MEMORY_WINDOW_HOURS`] starts its new runs with the memory
//! its retry policy would have grown to; one whose attempt lost its spot
//! capacity in the last [`SPOT_WINDOW_HOURS`] starts its new runs on
//! on-demand capacity.
//!
//! Only a run with a command has a job key: no learning is ever keyed on a
//! missing command, so runs of unrelated jobs never share one (Flotilla's
//! own incident: a null command hash gave 50 MB jobs 350 GB). A learned
//! size applies only to a run whose policy grows memory after an out of
//! memory ("out of memory" in `on_reasons`) and whose launch does not set
//! the memory itself, and it is never above the policy's cap. Each run
//! that starts differently says why (`resources_note`, `lifecycle_note`).
//!
//! Lessons merge: of two out-of-memory lessons the larger memory stands
//! (the newer one once the older is outside its window), and of two spot
//! lessons the newer, so a lesson recorded twice (an at-least-once
//! delivery, a retried write) changes nothing.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::event::RunEvent;
use crate::domain::limits::LaunchLimits;
use crate::domain::retry::{OUT_OF_MEMORY, RetryReason, SPOT_INTERRUPTION};
use crate::domain::run::Run;
use crate::domain::spec::{NodeLifecycle, RunSpec};

/// How long an attempt that ran out of memory sizes new runs of its job.
pub const MEMORY_WINDOW_HOURS: i64 = 72;
/// How long an attempt that lost its spot capacity keeps new runs of its
/// job on on-demand capacity.
pub const SPOT_WINDOW_HOURS: i64 = 12;

/// Lower-case hex MD5 of a command, as Flotilla's `command_hash`.
pub fn command_hash(command: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(command.as_bytes()))
}

/// Successful runs of a job whose durations its usual duration is taken
/// over.
pub const DURATION_HISTORY: usize = 20;
/// Successful runs a job needs before its usual duration is trusted.
pub const MIN_DURATION_HISTORY: usize = 5;
/// Successful runs the right-sizing hint looks at.
pub const SIZING_HISTORY: usize = 10;
/// A job whose runs' peak memory stayed under this share of what they asked
/// for is given a right-sizing hint.
pub const SIZING_SHARE: f64 = 0.25;
/// The default minimum a run runs before it may be flagged as running long.
pub const LONG_RUN_MINIMUM_MINUTES: i64 = 5;
/// How long a job's history of successful runs is kept after its newest.
pub const HISTORY_DAYS: i64 = 90;

/// A job, as its runs' lessons are kept: a definition and the hash of a
/// command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobKey {
    /// The definition's id.
    pub definition_id: String,
    /// [`command_hash`] of the run's command.
    pub command_hash: String,
}

impl JobKey {
    /// The job of a run with `spec`; `None` when it has no command (or an
    /// empty one), so that nothing is ever learned under a missing key.
    pub fn of(spec: &RunSpec) -> Option<Self> {
        let command = spec.command.as_deref().filter(|c| !c.trim().is_empty())?;
        (!spec.definition_id.is_empty()).then(|| Self {
            definition_id: spec.definition_id.clone(),
            command_hash: command_hash(command),
        })
    }
}

/// An attempt of a job that ran out of memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLesson {
    /// The memory (MB) it ran out with.
    pub memory: u64,
    /// Its run.
    pub run_id: String,
    /// When it ended.
    pub at: DateTime<Utc>,
}

/// An attempt of a job whose spot capacity was reclaimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotLesson {
    /// Its run.
    pub run_id: String,
    /// When it ended.
    pub at: DateTime<Utc>,
}

/// A run of a job that succeeded (exited 0): how long its last attempt
/// ran, and how much memory it held of what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// Its run.
    pub run_id: String,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// How long its last attempt ran, in milliseconds.
    pub duration_ms: u64,
    /// Its peak memory in MB, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_mb: Option<u64>,
    /// The memory it asked for, in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

/// What one append teaches a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lesson {
    /// An attempt ran out of memory.
    OutOfMemory(MemoryLesson),
    /// An attempt lost its spot capacity.
    SpotInterruption(SpotLesson),
    /// A run succeeded.
    Finished(Finished),
}

/// How long a job's successful runs usually take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsualDuration {
    /// The 90th percentile of their durations, in seconds.
    pub p90_s: f64,
    /// How many runs it is taken over.
    pub runs: usize,
}

impl Lesson {
    /// What `events`, just appended to a run that is `run` after them,
    /// teach its job: an attempt that ended out of memory with the memory
    /// it had, or one that lost its spot capacity while on spot.
    pub fn of(run: &Run, events: &[RunEvent]) -> Option<(JobKey, Lesson)> {
        let key = JobKey::of(&run.spec)?;
        if let Some(finished) = Self::finished(run, events) {
            return Some((key, Lesson::Finished(finished)));
        }
        let (reason, at) = events.iter().rev().find_map(|e| match e {
            RunEvent::RunStopped {
                reason: Some(reason),
                at,
                ..
            }
            | RunEvent::RunNeedsRetry { reason, at, .. } => Some((reason.as_str(), *at)),
            _ => None,
        })?;
        let run_id = run.spec.run_id.clone();
        let lesson = if reason.starts_with(OUT_OF_MEMORY) {
            Lesson::OutOfMemory(MemoryLesson {
                memory: run.resources().memory?,
                run_id,
                at,
            })
        } else if reason.starts_with(SPOT_INTERRUPTION) && run.lifecycle() == NodeLifecycle::Spot {
            Lesson::SpotInterruption(SpotLesson { run_id, at })
        } else {
            return None;
        };
        Some((key, lesson))
    }
}

impl Lesson {
    /// The success `events` record, with the usage of its last attempt.
    fn finished(run: &Run, events: &[RunEvent]) -> Option<Finished> {
        let at = events.iter().find_map(|e| match e {
            RunEvent::RunStopped {
                exit_code: Some(0),
                at,
                ..
            } => Some(*at),
            _ => None,
        })?;
        let usage = events.iter().find_map(|e| match e {
            RunEvent::RunUsageRecorded { usage, .. } => Some(usage),
            _ => None,
        })?;
        Some(Finished {
            run_id: run.spec.run_id.clone(),
            at,
            duration_ms: (usage.duration_s * 1000.0).round().max(0.0) as u64,
            peak_memory_mb: usage.peak_memory_mb,
            memory_mb: run.resources().memory,
        })
    }
}

/// What a job's runs taught it so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// The largest memory an attempt ran out with, within its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_memory: Option<MemoryLesson>,
    /// The newest attempt that lost its spot capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_interruption: Option<SpotLesson>,
    /// Its newest successful runs (at most [`DURATION_HISTORY`]), oldest
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<Finished>,
}

impl Learned {
    /// `self` with `lesson` merged in, as of `lesson`'s time.
    pub fn merged(mut self, lesson: Lesson) -> Self {
        match lesson {
            Lesson::OutOfMemory(new) => {
                let keep = self.out_of_memory.as_ref().is_some_and(|old| {
                    old.memory >= new.memory
                        && new.at - old.at < Duration::hours(MEMORY_WINDOW_HOURS)
                });
                if !keep {
                    self.out_of_memory = Some(new);
                }
            }
            Lesson::SpotInterruption(new) => {
                if self
                    .spot_interruption
                    .as_ref()
                    .is_none_or(|old| old.at < new.at)
                {
                    self.spot_interruption = Some(new);
                }
            }
            Lesson::Finished(new) => {
                if !self.finished.iter().any(|f| f.run_id == new.run_id) {
                    self.finished.push(new);
                    self.finished
                        .sort_by(|a, b| a.at.cmp(&b.at).then(a.run_id.cmp(&b.run_id)));
                    let extra = self.finished.len().saturating_sub(DURATION_HISTORY);
                    self.finished.drain(..extra);
                }
            }
        }
        self
    }

    /// How long the job's successful runs usually take: the 90th
    /// percentile (nearest rank) of its newest [`DURATION_HISTORY`], once
    /// it has [`MIN_DURATION_HISTORY`].
    pub fn usual_duration(&self) -> Option<UsualDuration> {
        if self.finished.len() < MIN_DURATION_HISTORY {
            return None;
        }
        let mut durations: Vec<u64> = self.finished.iter().map(|f| f.duration_ms).collect();
        durations.sort_unstable();
        let rank = (durations.len() * 9).div_ceil(10).max(1);
        Some(UsualDuration {
            p90_s: durations[rank - 1] as f64 / 1000.0,
            runs: durations.len(),
        })
    }

    /// A hint to ask for less memory, when each of the job's newest
    /// [`SIZING_HISTORY`] successful runs had its peak measured and held
    /// under [`SIZING_SHARE`] of what it asked for.
    pub fn sizing_hint(&self) -> Option<String> {
        let newest = self.finished.iter().rev().take(SIZING_HISTORY);
        let pairs: Vec<(u64, u64)> = newest
            .filter_map(|f| Some((f.peak_memory_mb?, f.memory_mb?)))
            .collect();
        if pairs.len() < SIZING_HISTORY
            || pairs
                .iter()
                .any(|(peak, asked)| *peak as f64 >= SIZING_SHARE * *asked as f64)
        {
            return None;
        }
        let peak = pairs.iter().map(|p| p.0).max().unwrap_or(0);
        let asked = pairs.iter().map(|p| p.1).min().unwrap_or(0);
        // Twice the peak, in whole 256 MB, leaves room for a heavier input.
        let enough = (peak * 2).div_ceil(256).max(1) * 256;
        Some(format!(
            "its last {SIZING_HISTORY} successful runs peaked at {peak} MB at most, under {}% of the {asked} MB asked for: {enough} MB would do",
            (SIZING_SHARE * 100.0) as u32
        ))
    }

    /// When the job's history may be forgotten: [`HISTORY_DAYS`] after its
    /// newest successful run.
    pub fn history_expires(&self) -> Option<DateTime<Utc>> {
        self.finished
            .iter()
            .map(|f| f.at)
            .max()
            .map(|at| at + Duration::days(HISTORY_DAYS))
    }

    /// Sets a new run's `spec` as its job's lessons say, as of `now`: more
    /// memory (fitted to what the engine takes, within the policy's cap)
    /// when an attempt ran out of memory lately, unless `memory_asked` (the
    /// launch set its memory); on-demand capacity when one lost its spot
    /// capacity lately. Says why on the spec.
    pub fn apply(
        &self,
        spec: &mut RunSpec,
        now: DateTime<Utc>,
        limits: LaunchLimits,
        memory_asked: bool,
    ) {
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if let Some(lesson) = &self.out_of_memory
            && !memory_asked
            && now - lesson.at < Duration::hours(MEMORY_WINDOW_HOURS)
            && let Some(retry) = spec
                .retry
                .as_ref()
                .filter(|r| r.names(RetryReason::OutOfMemory))
            && let Some(memory) = spec.resources.memory
            && let Some(target) = retry.grown_memory(lesson.memory)
            && target > memory
            && let Some(grown) =
                limits.grown(spec.resources, target, retry.max_memory.unwrap_or(u64::MAX))
        {
            let to = grown.memory.unwrap_or(memory);
            spec.resources = grown;
            spec.resources_note = Some(format!(
                "memory {to} MB, not the {memory} MB asked for: run {} of this job ran out of memory with {} MB at {} (within {MEMORY_WINDOW_HOURS} h), and the retry policy grows it {} times",
                lesson.run_id,
                lesson.memory,
                at(lesson.at),
                retry.memory_multiplier
            ));
        }
        if let Some(lesson) = &self.spot_interruption
            && spec.node_lifecycle == NodeLifecycle::Spot
            && now - lesson.at < Duration::hours(SPOT_WINDOW_HOURS)
        {
            spec.node_lifecycle = NodeLifecycle::Ondemand;
            spec.lifecycle_note = Some(format!(
                "starts on on-demand capacity, not spot: run {} of this job lost its spot capacity at {} (within {SPOT_WINDOW_HOURS} h)",
                lesson.run_id,
                at(lesson.at)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::retry::{RetryPolicy, RunRetry};
    use crate::domain::run::replay;
    use crate::testing::scenario::{queued, spec, started, submitted, t};

    fn growing(cap: Option<u64>) -> Option<RunRetry> {
        let policy = RetryPolicy {
            on_reasons: vec![RetryReason::OutOfMemory],
            ..RetryPolicy::default()
        };
        RunRetry::resolve(Some(&policy), cap, None, 3)
    }

    fn ended(reason: &str, at: DateTime<Utc>) -> RunEvent {
        RunEvent::RunStopped {
            engine_version: None,
            attempt: 1,
            exit_code: Some(137),
            reason: Some(reason.into()),
            at,
        }
    }

    fn oom(memory: u64, run_id: &str, hours: i64) -> Lesson {
        Lesson::OutOfMemory(MemoryLesson {
            memory,
            run_id: run_id.into(),
            at: t(0) + Duration::hours(hours),
        })
    }

    #[test]
    fn a_run_without_a_command_has_no_job_and_teaches_nothing() {
        let mut no_command = spec("r-1");
        no_command.command = None;
        assert_eq!(JobKey::of(&no_command), None);
        no_command.command = Some("  ".into());
        assert_eq!(JobKey::of(&no_command), None);
        let run = replay(&[RunEvent::RunQueued {
            spec: Box::new(no_command),
            at: t(0),
        }])
        .run
        .unwrap();
        assert_eq!(Lesson::of(&run, &[ended("out of memory", t(3))]), None);
        let key = JobKey::of(&spec("r-1")).unwrap();
        assert_eq!(key.command_hash, command_hash("echo hello"));
    }

    #[test]
    fn an_attempt_out_of_memory_teaches_the_memory_it_had_and_a_spot_loss_only_on_spot() {
        let run = replay(&[queued(), submitted(1), started(1)]).run.unwrap();
        let events = [ended("out of memory: killed by a cgroup", t(3))];
        let after = events.iter().fold(
            replay(&[queued(), submitted(1), started(1)]),
            crate::domain::run::evolve,
        );
        let (key, lesson) = Lesson::of(after.run.as_ref().unwrap(), &events).unwrap();
        assert_eq!(key, JobKey::of(&run.spec).unwrap());
        assert_eq!(lesson, oom(512, "r-1", 0).at_time(t(3)));
        let spot = [ended("spot interruption: reclaimed", t(3))];
        assert!(matches!(
            Lesson::of(&run, &spot),
            Some((_, Lesson::SpotInterruption(_)))
        ));
        let mut ondemand = run.clone();
        ondemand.spec.node_lifecycle = NodeLifecycle::Ondemand;
        assert_eq!(Lesson::of(&ondemand, &spot), None);
        assert_eq!(Lesson::of(&run, &[ended("exit code 1", t(3))]), None);
    }

    impl Lesson {
        fn at_time(mut self, at: DateTime<Utc>) -> Self {
            match &mut self {
                Lesson::OutOfMemory(l) => l.at = at,
                Lesson::SpotInterruption(l) => l.at = at,
                Lesson::Finished(l) => l.at = at,
            }
            self
        }
    }

    fn finished(i: i64, seconds: u64, peak: Option<u64>, asked: u64) -> Lesson {
        Lesson::Finished(Finished {
            run_id: format!("ok-{i}"),
            at: t(i),
            duration_ms: seconds * 1000,
            peak_memory_mb: peak,
            memory_mb: Some(asked),
        })
    }

    #[test]
    fn a_jobs_usual_duration_is_the_p90_of_its_last_twenty_successes_once_it_has_five() {
        let mut learned = Learned::default();
        for i in 0..4 {
            learned = learned.merged(finished(i, 60, None, 512));
        }
        assert_eq!(learned.usual_duration(), None, "four runs are not enough");
        learned = learned.merged(finished(4, 60, None, 512));
        assert_eq!(learned.usual_duration().map(|u| u.p90_s), Some(60.0));
        // Thirty more: only the newest twenty count, 18 of 100 s and 2 of 1000 s.
        for i in 5..35 {
            let seconds = if i >= 33 { 1000 } else { 100 };
            learned = learned.merged(finished(i, seconds, None, 512));
        }
        assert_eq!(learned.finished.len(), DURATION_HISTORY);
        let usual = learned.usual_duration().unwrap();
        assert_eq!((usual.p90_s, usual.runs), (100.0, 20));
        // The same success recorded twice (a redelivery) changes nothing.
        let again = learned.clone().merged(finished(34, 1000, None, 512));
        assert_eq!(again, learned);
    }

    #[test]
    fn a_job_whose_last_ten_successes_used_under_a_quarter_of_their_memory_is_told_what_would_do() {
        let mut learned = Learned::default();
        for i in 0..9 {
            learned = learned.merged(finished(i, 60, Some(610), 8192));
        }
        assert_eq!(learned.sizing_hint(), None, "nine runs are not enough");
        learned = learned.merged(finished(9, 60, Some(590), 8192));
        let hint = learned.sizing_hint().unwrap_or_default();
        assert!(hint.contains("peaked at 610 MB"), "{hint}");
        assert!(hint.contains("1280 MB would do"), "{hint}");
        // One run near its request among the last ten: no hint.
        let heavy = learned.clone().merged(finished(10, 60, Some(4000), 8192));
        assert_eq!(heavy.sizing_hint(), None);
        // Peaks that were not measured (ECS): no hint.
        let mut unmeasured = Learned::default();
        for i in 0..10 {
            unmeasured = unmeasured.merged(finished(i, 60, None, 8192));
        }
        assert_eq!(unmeasured.sizing_hint(), None);
    }

    #[test]
    fn a_success_teaches_its_job_its_duration_and_peak() {
        use crate::domain::usage::{Measured, Usage};
        let run = replay(&[queued(), submitted(1), started(1)]).run.unwrap();
        let usage = Usage::of_attempt(
            run.resources(),
            t(2),
            t(12),
            Some(Measured {
                cpu_seconds: 1.0,
                peak_memory_mb: 100,
            }),
        );
        let events = [
            RunEvent::RunUsageRecorded {
                attempt: 1,
                usage,
                at: t(12),
            },
            RunEvent::RunStopped {
                engine_version: None,
                attempt: 1,
                exit_code: Some(0),
                reason: None,
                at: t(12),
            },
        ];
        let Some((_, Lesson::Finished(f))) = Lesson::of(&run, &events) else {
            panic!("a success is a lesson");
        };
        assert_eq!((f.duration_ms, f.peak_memory_mb), (10_000, Some(100)));
        let failed = [events[0].clone(), ended("exit code 1", t(12))];
        assert!(!matches!(
            Lesson::of(&run, &failed),
            Some((_, Lesson::Finished(_)))
        ));
    }

    #[test]
    fn the_largest_memory_stands_within_its_window_and_a_newer_one_replaces_it_after() {
        let learned = Learned::default()
            .merged(oom(2048, "big", 0))
            .merged(oom(512, "small", 1));
        assert_eq!(learned.out_of_memory.as_ref().unwrap().run_id, "big");
        let later = learned.merged(oom(512, "small", MEMORY_WINDOW_HOURS));
        assert_eq!(later.out_of_memory.as_ref().unwrap().run_id, "small");
        let spot = |h| {
            Lesson::SpotInterruption(SpotLesson {
                run_id: format!("s{h}"),
                at: t(0) + Duration::hours(h),
            })
        };
        let learned = Learned::default().merged(spot(2)).merged(spot(1));
        assert_eq!(learned.spot_interruption.unwrap().run_id, "s2");
    }

    #[test]
    fn a_new_run_starts_with_the_grown_memory_and_says_why_only_while_the_lesson_is_fresh() {
        let learned = Learned::default().merged(oom(512, "r-0", 0));
        let mut fresh = spec("r-1");
        fresh.retry = growing(Some(4096));
        learned.apply(
            &mut fresh,
            t(0) + Duration::hours(71),
            LaunchLimits::Local,
            false,
        );
        assert_eq!(fresh.resources.memory, Some(768));
        let note = fresh.resources_note.unwrap();
        assert!(note.starts_with("memory 768 MB, not the 512 MB asked for: run r-0 of this job ran out of memory with 512 MB"), "{note}");
        let mut stale = spec("r-1");
        stale.retry = growing(Some(4096));
        learned.apply(
            &mut stale,
            t(0) + Duration::hours(72),
            LaunchLimits::Local,
            false,
        );
        assert_eq!(
            (stale.resources.memory, stale.resources_note),
            (Some(512), None)
        );
    }

    #[test]
    fn memory_is_not_learned_by_a_run_that_sets_its_own_or_whose_policy_does_not_grow_it() {
        let learned = Learned::default().merged(oom(512, "r-0", 0));
        let mut asked = spec("r-1");
        asked.retry = growing(None);
        learned.apply(&mut asked, t(1), LaunchLimits::Local, true);
        assert_eq!(asked.resources.memory, Some(512));
        let mut no_policy = spec("r-1");
        learned.apply(&mut no_policy, t(1), LaunchLimits::Local, false);
        assert_eq!(no_policy.resources.memory, Some(512));
    }

    #[test]
    fn on_fargate_the_learned_memory_is_a_size_fargate_takes() {
        let learned = Learned::default().merged(oom(512, "r-0", 0));
        let mut run = spec("r-1");
        run.resources.cpu = Some(256);
        run.retry = growing(Some(30_720));
        learned.apply(&mut run, t(1), LaunchLimits::Ecs, false);
        assert_eq!(
            (run.resources.cpu, run.resources.memory),
            (Some(256), Some(1024))
        );
    }

    #[test]
    fn a_job_that_lost_its_spot_capacity_starts_on_ondemand_for_twelve_hours() {
        let learned = Learned::default().merged(Lesson::SpotInterruption(SpotLesson {
            run_id: "r-0".into(),
            at: t(0),
        }));
        let mut soon = spec("r-1");
        learned.apply(
            &mut soon,
            t(0) + Duration::hours(11),
            LaunchLimits::Local,
            false,
        );
        assert_eq!(soon.node_lifecycle, NodeLifecycle::Ondemand);
        assert!(
            soon.lifecycle_note
                .unwrap()
                .contains("run r-0 of this job lost its spot capacity")
        );
        let mut later = spec("r-1");
        learned.apply(
            &mut later,
            t(0) + Duration::hours(12),
            LaunchLimits::Local,
            false,
        );
        assert_eq!(
            (later.node_lifecycle, later.lifecycle_note),
            (NodeLifecycle::Spot, None)
        );
    }

    proptest! {
        /// Whatever the lessons, their order or their repetition, a learned
        /// size never exceeds the policy's cap, never shrinks what the run
        /// asked for, and only grows after an out of memory.
        #[test]
        fn learned_memory_stays_within_the_cap_and_grows_only_after_an_out_of_memory(
            lessons in prop::collection::vec((1u64..100_000, 0i64..200, any::<bool>()), 0..8),
            asked in 1u64..20_000,
            cap in 1u64..50_000,
            repeat in any::<bool>(),
        ) {
            let mut learned = Learned::default();
            let mut any_oom = false;
            for (memory, hours, is_oom) in &lessons {
                let lesson = if *is_oom {
                    any_oom = true;
                    oom(*memory, "r-0", *hours)
                } else {
                    Lesson::SpotInterruption(SpotLesson { run_id: "r-0".into(), at: t(0) + Duration::hours(*hours) })
                };
                learned = learned.clone().merged(lesson.clone());
                if repeat {
                    let again = learned.clone().merged(lesson);
                    prop_assert_eq!(&again, &learned, "a lesson recorded twice changes nothing");
                }
            }
            let mut run = spec("r-1");
            run.resources.memory = Some(asked);
            run.retry = growing(Some(cap.max(asked)));
            learned.apply(&mut run, t(0) + Duration::hours(100), LaunchLimits::Local, false);
            let memory = run.resources.memory.unwrap();
            prop_assert!(memory <= cap.max(asked));
            prop_assert!(memory >= asked);
            if memory > asked {
                prop_assert!(any_oom);
            }
        }
    }
}
