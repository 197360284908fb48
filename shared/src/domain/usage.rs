//! What an attempt used, and what that is estimated to cost.
//!
//! Every attempt that ran has a [`Usage`], recorded with its end: CPU
//! seconds, peak memory and duration. Where the engine measures its
//! processes (the local engine: the supervisor's `getrusage` of everything
//! the command started, and the attempt's cgroup peak when it has one) the
//! usage is `measured`; elsewhere (ECS, EKS, local containers) it is
//! `reserved`: the attempt's size for its duration, which is also what
//! Fargate bills, and the peak memory is unknown.
//!
//! The cost is an estimate, always labelled as one: the attempt's reserved
//! vCPUs and GB (its requested size, as Fargate bills them) times its hours
//! times the rates of a [`PriceTable`] for its region, architecture and
//! capacity. The default table ([`PriceTable::fargate`]) holds Fargate's
//! published Linux rates; `flotilla serve` prices at one configurable rate,
//! 0 unless set. A run's usage and cost are the sums over its attempts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::spec::{NodeLifecycle, Resources};

/// CPU units per vCPU (Flotilla's CPU units are 1/1024 core).
const UNITS_PER_VCPU: f64 = 1024.0;

/// How a usage was found.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UsageBasis {
    /// The processes' own accounting (CPU time, peak memory).
    Measured,
    /// The attempt's requested size for its duration.
    #[default]
    Reserved,
}

/// What an engine measured of an attempt's processes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// User and system CPU time of every process, in seconds.
    pub cpu_seconds: f64,
    /// The largest resident memory seen, in MB.
    pub peak_memory_mb: u64,
}

/// What one attempt, or a run's attempts together, used and cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// CPU seconds: measured, or the reserved vCPUs times the duration.
    pub cpu_seconds: f64,
    /// The peak memory in MB, when it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_mb: Option<u64>,
    /// Seconds from the attempt's start to its end.
    pub duration_s: f64,
    /// How the figures were found.
    pub basis: UsageBasis,
    /// The estimated cost in US dollars, when it was priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

fn rounded(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

impl Usage {
    /// The usage of an attempt of `resources` that ran from `started` to
    /// `ended`: what was measured of it, else its reserved size.
    pub fn of_attempt(
        resources: Resources,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
        measured: Option<Measured>,
    ) -> Self {
        let duration_s = ((ended - started).num_milliseconds().max(0) as f64) / 1000.0;
        match measured {
            Some(m) => Self {
                cpu_seconds: rounded(m.cpu_seconds.max(0.0), 3),
                peak_memory_mb: Some(m.peak_memory_mb),
                duration_s,
                basis: UsageBasis::Measured,
                cost_usd: None,
            },
            None => Self {
                cpu_seconds: rounded(vcpus(resources) * duration_s, 3),
                peak_memory_mb: None,
                duration_s,
                basis: UsageBasis::Reserved,
                cost_usd: None,
            },
        }
    }

    /// The usage of two attempts together: times and costs add up, the
    /// peak is the larger, and the basis is measured only if both were.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            cpu_seconds: rounded(self.cpu_seconds + other.cpu_seconds, 3),
            peak_memory_mb: match (self.peak_memory_mb, other.peak_memory_mb) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            duration_s: rounded(self.duration_s + other.duration_s, 3),
            basis: if self.basis == UsageBasis::Measured && other.basis == UsageBasis::Measured {
                UsageBasis::Measured
            } else {
                UsageBasis::Reserved
            },
            cost_usd: match (self.cost_usd, other.cost_usd) {
                (Some(a), Some(b)) => Some(rounded(a + b, 6)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// The vCPUs of `resources` (a quarter when none were asked for, Fargate's
/// smallest size).
pub fn vcpus(resources: Resources) -> f64 {
    resources
        .cpu
        .map_or(0.25, |units| units as f64 / UNITS_PER_VCPU)
}

/// The GB of memory of `resources` (half a GB when none was asked for,
/// Fargate's smallest size).
pub fn memory_gb(resources: Resources) -> f64 {
    resources.memory.map_or(0.5, |mb| mb as f64 / 1024.0)
}

/// The rates of one region, architecture and capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// The region (`us-east-1`), or `*` for any.
    #[serde(default = "any")]
    pub region: String,
    /// The architecture (`x86_64` or `arm64`), or `*` for any.
    #[serde(default = "any")]
    pub arch: String,
    /// The capacity (`ondemand` or `spot`), or `*` for any.
    #[serde(default = "any")]
    pub capacity: String,
    /// US dollars per vCPU-hour.
    pub vcpu_hour: f64,
    /// US dollars per GB-hour of memory.
    pub gb_hour: f64,
    /// US dollars per GPU-hour.
    #[serde(default)]
    pub gpu_hour: f64,
}

fn any() -> String {
    "*".to_owned()
}

/// A price table: rates by region, architecture and capacity, the first
/// that matches winning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Where the rates come from, shown beside every estimate.
    pub source: String,
    /// The rates, most specific first.
    pub rates: Vec<Rate>,
}

/// The default table: Fargate's published Linux rates.
const FARGATE_PRICES: &str = include_str!("fargate_prices.json");

/// Why a price table file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the price table is not valid: {0}")]
pub struct PriceTableError(pub String);

impl PriceTable {
    /// Fargate's published Linux rates (the default file).
    pub fn fargate() -> Self {
        // The embedded file is checked by a test; an unreadable one prices
        // nothing rather than failing every run's end.
        Self::parse(FARGATE_PRICES).unwrap_or_else(|_| Self::flat(0.0, 0.0))
    }

    /// One rate for everything (`flotilla serve`'s `--price-vcpu-hour` and
    /// `--price-gb-hour`, 0 unless set).
    pub fn flat(vcpu_hour: f64, gb_hour: f64) -> Self {
        Self {
            source: format!(
                "the server's flat rate: ${vcpu_hour} per vCPU-hour and ${gb_hour} per GB-hour"
            ),
            rates: vec![Rate {
                region: any(),
                arch: any(),
                capacity: any(),
                vcpu_hour,
                gb_hour,
                gpu_hour: 0.0,
            }],
        }
    }

    /// Reads a table from JSON (`{"source": …, "rates": [{"region",
    /// "arch", "capacity", "vcpu_hour", "gb_hour", "gpu_hour"}]}`); every
    /// rate must be finite and not negative.
    pub fn parse(text: &str) -> Result<Self, PriceTableError> {
        let table: PriceTable =
            serde_json::from_str(text).map_err(|e| PriceTableError(e.to_string()))?;
        if table.rates.is_empty() {
            return Err(PriceTableError("it has no rates".into()));
        }
        for (i, rate) in table.rates.iter().enumerate() {
            for (name, value) in [
                ("vcpu_hour", rate.vcpu_hour),
                ("gb_hour", rate.gb_hour),
                ("gpu_hour", rate.gpu_hour),
            ] {
                if !value.is_finite() || value < 0.0 {
                    return Err(PriceTableError(format!(
                        "rates[{i}].{name} is {value}; a rate is a number of dollars, 0 or more"
                    )));
                }
            }
        }
        Ok(table)
    }

    /// The rate for `region`, `arch` and `capacity`: the first that matches
    /// (`*` matching anything); none when nothing does.
    pub fn rate(&self, region: &str, arch: &str, capacity: NodeLifecycle) -> Option<&Rate> {
        let capacity = capacity.as_str();
        let fits = |want: &str, have: &str| want == "*" || want.eq_ignore_ascii_case(have);
        self.rates
            .iter()
            .find(|r| fits(&r.region, region) && fits(&r.arch, arch) && fits(&r.capacity, capacity))
    }

    /// The estimated cost of `usage`, an attempt of `resources` on
    /// `capacity` in `region` with `arch` (`None`: x86_64): its reserved
    /// vCPUs, GB and GPUs times its hours times the rates. `None` when no
    /// rate matches.
    pub fn cost(
        &self,
        usage: &Usage,
        resources: Resources,
        region: &str,
        arch: Option<&str>,
        capacity: NodeLifecycle,
    ) -> Option<f64> {
        let rate = self.rate(region, normal_arch(arch), capacity)?;
        let hours = usage.duration_s / 3600.0;
        let gpus = resources.gpu.unwrap_or(0) as f64;
        let dollars = hours
            * (vcpus(resources) * rate.vcpu_hour
                + memory_gb(resources) * rate.gb_hour
                + gpus * rate.gpu_hour);
        Some(rounded(dollars, 6))
    }
}

/// `x86_64` or `arm64`, whichever name a run's arch was given in.
pub fn normal_arch(arch: Option<&str>) -> &'static str {
    match arch.map(str::to_ascii_lowercase).as_deref() {
        Some("arm64" | "aarch64" | "arm") => "arm64",
        _ => "x86_64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0)
            .single()
            .unwrap_or_default()
    }

    fn size(cpu: u64, memory: u64) -> Resources {
        Resources {
            cpu: Some(cpu),
            memory: Some(memory),
            ..Resources::default()
        }
    }

    #[test]
    fn an_unmeasured_attempt_uses_its_reserved_vcpus_for_its_duration() {
        let usage = Usage::of_attempt(size(2048, 4096), at(0), at(1800), None);
        assert_eq!(usage.cpu_seconds, 3600.0);
        assert_eq!(usage.duration_s, 1800.0);
        assert_eq!(usage.peak_memory_mb, None);
        assert_eq!(usage.basis, UsageBasis::Reserved);
    }

    #[test]
    fn a_measured_attempt_keeps_what_was_measured() {
        let measured = Measured {
            cpu_seconds: 1.23456,
            peak_memory_mb: 105,
        };
        let usage = Usage::of_attempt(size(1024, 512), at(0), at(10), Some(measured));
        assert_eq!(usage.cpu_seconds, 1.235);
        assert_eq!(usage.peak_memory_mb, Some(105));
        assert_eq!(usage.basis, UsageBasis::Measured);
    }

    #[test]
    fn an_end_reported_before_its_start_lasts_no_time() {
        let usage = Usage::of_attempt(size(1024, 512), at(10), at(0), None);
        assert_eq!(usage.duration_s, 0.0);
        assert_eq!(usage.cpu_seconds, 0.0);
    }

    #[test]
    fn two_attempts_add_up_and_keep_the_larger_peak() {
        let a = Usage {
            cpu_seconds: 1.5,
            peak_memory_mb: Some(100),
            duration_s: 10.0,
            basis: UsageBasis::Measured,
            cost_usd: Some(0.25),
        };
        let b = Usage {
            peak_memory_mb: Some(300),
            basis: UsageBasis::Reserved,
            ..a
        };
        let sum = a.plus(b);
        assert_eq!(sum.cpu_seconds, 3.0);
        assert_eq!(sum.duration_s, 20.0);
        assert_eq!(sum.peak_memory_mb, Some(300));
        assert_eq!(sum.cost_usd, Some(0.5));
        assert_eq!(sum.basis, UsageBasis::Reserved);
    }

    #[test]
    fn the_default_table_prices_an_hour_of_one_vcpu_and_two_gb_at_fargate_rates() {
        let table = PriceTable::fargate();
        assert!(table.source.contains("Fargate"), "{}", table.source);
        let usage = Usage::of_attempt(size(1024, 2048), at(0), at(3600), None);
        let on_demand = table.cost(
            &usage,
            size(1024, 2048),
            "us-east-1",
            None,
            NodeLifecycle::Ondemand,
        );
        assert_eq!(on_demand, Some(0.04937));
        let arm = table.cost(
            &usage,
            size(1024, 2048),
            "us-east-1",
            Some("arm64"),
            NodeLifecycle::Ondemand,
        );
        assert_eq!(arm, Some(0.03950));
        let spot = table.cost(
            &usage,
            size(1024, 2048),
            "us-east-1",
            None,
            NodeLifecycle::Spot,
        );
        assert!(spot.is_some_and(|s| s < 0.04937 / 2.0), "{spot:?}");
        // A region the file does not name falls back to its `*` rates.
        assert!(
            table
                .cost(
                    &usage,
                    size(1024, 2048),
                    "ap-south-2",
                    None,
                    NodeLifecycle::Ondemand
                )
                .is_some()
        );
    }

    #[test]
    fn a_flat_rate_of_zero_costs_nothing() {
        let usage = Usage::of_attempt(size(4096, 8192), at(0), at(7200), None);
        let cost = PriceTable::flat(0.0, 0.0).cost(
            &usage,
            size(4096, 8192),
            "local",
            None,
            NodeLifecycle::Spot,
        );
        assert_eq!(cost, Some(0.0));
    }

    #[test]
    fn a_table_with_a_negative_or_missing_rate_is_refused_saying_which() {
        let negative = r#"{"source": "x", "rates": [{"vcpu_hour": -1, "gb_hour": 0}]}"#;
        let error = PriceTable::parse(negative).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("rates[0].vcpu_hour")),
            "{error:?}"
        );
        assert!(PriceTable::parse(r#"{"source": "x", "rates": []}"#).is_err());
        assert!(PriceTable::parse(r#"{"source": "x", "rates": [{"gb_hour": 1}]}"#).is_err());
        assert!(
            PriceTable::parse(
                r#"{"source": "x", "rates": [{"vcpu_hour": 1, "gb_hour": 1, "typo": 1}]}"#
            )
            .is_err()
        );
    }
}
