//! Fargate's task sizes: the cpu and memory pairs a Linux Fargate task may
//! have, and how a run's size is chosen from the cpu and memory it asks for
//! (<https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size>).
//!
//! A missing value is chosen from the one given: memory alone gets the
//! smallest cpu that takes it (memory 4096 runs with cpu 512), cpu alone the
//! smallest memory it takes, and neither the smallest task, cpu 256 with
//! memory 512. A pair Fargate does not take is refused with the sizes that
//! would do.

use std::fmt::Write as _;

/// The memory sizes one cpu takes, in MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// These sizes.
    Listed(&'static [u64]),
    /// From `min` to `max` in steps of `step`.
    Stepped { min: u64, max: u64, step: u64 },
}

impl Memory {
    fn min(self) -> u64 {
        match self {
            Self::Listed(sizes) => sizes.first().copied().unwrap_or_default(),
            Self::Stepped { min, .. } => min,
        }
    }

    fn takes(self, memory: u64) -> bool {
        match self {
            Self::Listed(sizes) => sizes.contains(&memory),
            Self::Stepped { min, max, step } => {
                (min..=max).contains(&memory) && (memory - min) % step == 0
            }
        }
    }

    fn sizes(self) -> Vec<u64> {
        match self {
            Self::Listed(sizes) => sizes.to_vec(),
            Self::Stepped { min, max, step } => (min..=max)
                .step_by(usize::try_from(step).unwrap_or(usize::MAX))
                .collect(),
        }
    }

    /// "512, 1024 or 2048 MB", or "2048 to 8192 MB in steps of 1024" when
    /// listing them all would be long.
    fn describe(self) -> String {
        match self {
            Self::Stepped { min, max, step } if (max - min) / step >= 4 => {
                format!("{min} to {max} MB in steps of {step}")
            }
            other => format!("{} MB", or_list(&other.sizes())),
        }
    }
}

/// Fargate's cpu sizes (CPU units, 1024 to a vCPU), smallest first, with
/// the memory each takes.
const SIZES: [(u64, Memory); 7] = [
    (256, Memory::Listed(&[512, 1024, 2048])),
    (
        512,
        Memory::Stepped {
            min: 1024,
            max: 4096,
            step: 1024,
        },
    ),
    (
        1024,
        Memory::Stepped {
            min: 2048,
            max: 8192,
            step: 1024,
        },
    ),
    (
        2048,
        Memory::Stepped {
            min: 4096,
            max: 16384,
            step: 1024,
        },
    ),
    (
        4096,
        Memory::Stepped {
            min: 8192,
            max: 30720,
            step: 1024,
        },
    ),
    (
        8192,
        Memory::Stepped {
            min: 16384,
            max: 61440,
            step: 4096,
        },
    ),
    (
        16384,
        Memory::Stepped {
            min: 32768,
            max: 122880,
            step: 8192,
        },
    ),
];

/// A task size Fargate takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSize {
    /// CPU units.
    pub cpu: u64,
    /// Memory in MB.
    pub memory: u64,
}

/// The smallest task: what a run that names neither cpu nor memory gets.
pub const SMALLEST: TaskSize = TaskSize {
    cpu: 256,
    memory: 512,
};

/// Every cpu Fargate takes, smallest first.
pub fn cpus() -> impl Iterator<Item = u64> {
    SIZES.iter().map(|(cpu, _)| *cpu)
}

/// Whether Fargate takes `cpu` with `memory`.
pub fn takes(cpu: u64, memory: u64) -> bool {
    memory_of(cpu).is_some_and(|m| m.takes(memory))
}

/// The Fargate size for memory grown to `target` MB from a task of `cpu`:
/// the smallest size with at least `target` MB and at least `cpu`, else the
/// largest with more than `from` MB; never more than `cap` MB. `None` when
/// no size has more than `from` MB within the cap.
pub fn grown(cpu: u64, from: u64, target: u64, cap: u64) -> Option<TaskSize> {
    let sizes: Vec<TaskSize> = SIZES
        .iter()
        .filter(|(c, _)| *c >= cpu)
        .flat_map(|(c, m)| {
            m.sizes()
                .into_iter()
                .map(|memory| TaskSize { cpu: *c, memory })
        })
        .filter(|s| s.memory > from && s.memory <= cap)
        .collect();
    let smallest_enough = sizes
        .iter()
        .filter(|s| s.memory >= target)
        .min_by_key(|s| (s.memory, s.cpu));
    smallest_enough
        .or_else(|| sizes.iter().max_by_key(|s| (s.memory, u64::MAX - s.cpu)))
        .copied()
}

/// The cpus that take `memory`, smallest first.
pub fn cpus_for(memory: u64) -> Vec<u64> {
    SIZES
        .iter()
        .filter(|(_, m)| m.takes(memory))
        .map(|(cpu, _)| *cpu)
        .collect()
}

fn memory_of(cpu: u64) -> Option<Memory> {
    SIZES.iter().find(|(c, _)| *c == cpu).map(|(_, m)| *m)
}

/// The size of a task asked for `cpu` and `memory`, either of which may be
/// missing (see the module docs), or what is wrong with them, saying which
/// sizes would do.
pub fn size(cpu: Option<u64>, memory: Option<u64>) -> Result<TaskSize, String> {
    match (cpu, memory) {
        (None, None) => Ok(SMALLEST),
        (Some(cpu), memory) => {
            let Some(takes) = memory_of(cpu) else {
                return Err(format!(
                    "cpu {cpu} is not a Fargate size: use {} (1024 units are one vCPU)",
                    or_list(&cpus().collect::<Vec<_>>())
                ));
            };
            let memory = memory.unwrap_or_else(|| takes.min());
            if takes.takes(memory) {
                return Ok(TaskSize { cpu, memory });
            }
            Err(format!(
                "{}; cpu {cpu} takes memory {}",
                memory_problem(memory),
                takes.describe()
            ))
        }
        (None, Some(memory)) => cpus_for(memory)
            .first()
            .map(|&cpu| TaskSize { cpu, memory })
            .ok_or_else(|| memory_problem(memory)),
    }
}

/// What Fargate says of `memory`: the cpus that take it, or the nearest
/// sizes it has.
fn memory_problem(memory: u64) -> String {
    let cpus = cpus_for(memory);
    if !cpus.is_empty() {
        return format!("memory {memory} MB on Fargate takes cpu {}", or_list(&cpus));
    }
    let mut every: Vec<u64> = SIZES.iter().flat_map(|(_, m)| m.sizes()).collect();
    every.sort_unstable();
    every.dedup();
    let below = every.iter().rev().find(|&&m| m < memory);
    let above = every.iter().find(|&&m| m > memory);
    let mut problem = format!("memory {memory} MB is not a Fargate size: ");
    // Writing to a String cannot fail.
    let _ = match (below, above) {
        (Some(below), Some(above)) => {
            write!(problem, "the nearest are {below} and {above} MB")
        }
        (None, Some(smallest)) => write!(problem, "the smallest is {smallest} MB"),
        (Some(largest), None) => write!(problem, "the largest is {largest} MB"),
        (None, None) => Ok(()),
    };
    problem
}

/// "a", "a or b", "a, b or c".
fn or_list(values: &[u64]) -> String {
    match values {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(u64::to_string).collect();
            format!("{} or {last}", rest.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_fargates_linux_sizes_and_nothing_between_them() {
        let pairs: Vec<(u64, usize, u64, u64)> = SIZES
            .iter()
            .map(|(cpu, m)| {
                let sizes = m.sizes();
                (*cpu, sizes.len(), sizes[0], sizes[sizes.len() - 1])
            })
            .collect();
        assert_eq!(
            pairs,
            [
                (256, 3, 512, 2048),
                (512, 4, 1024, 4096),
                (1024, 7, 2048, 8192),
                (2048, 13, 4096, 16384),
                (4096, 23, 8192, 30720),
                (8192, 12, 16384, 61440),
                (16384, 12, 32768, 122880),
            ]
        );
        assert!(takes(256, 1024) && !takes(256, 1536) && !takes(256, 4096));
        assert!(takes(4096, 9216) && !takes(8192, 18432) && takes(8192, 20480));
        assert!(takes(16384, 40960) && !takes(16384, 36864));
        assert!(!takes(300, 1024), "no cpu between the sizes");
    }

    #[test]
    fn a_missing_cpu_or_memory_is_the_smallest_that_fits_the_other() {
        assert_eq!(size(None, None), Ok(SMALLEST));
        assert_eq!(
            size(None, Some(4096)),
            Ok(TaskSize {
                cpu: 512,
                memory: 4096
            })
        );
        assert_eq!(
            size(None, Some(2048)),
            Ok(TaskSize {
                cpu: 256,
                memory: 2048
            })
        );
        assert_eq!(
            size(Some(1024), None),
            Ok(TaskSize {
                cpu: 1024,
                memory: 2048
            })
        );
        assert_eq!(
            size(Some(2048), Some(16384)),
            Ok(TaskSize {
                cpu: 2048,
                memory: 16384
            })
        );
    }

    #[test]
    fn a_pair_fargate_does_not_take_is_refused_with_the_sizes_that_would_do() {
        assert_eq!(
            size(Some(256), Some(4096)).unwrap_err(),
            "memory 4096 MB on Fargate takes cpu 512, 1024 or 2048; cpu 256 takes memory 512, 1024 or 2048 MB"
        );
        assert_eq!(
            size(Some(1024), Some(1024)).unwrap_err(),
            "memory 1024 MB on Fargate takes cpu 256 or 512; cpu 1024 takes memory 2048 to 8192 MB in steps of 1024"
        );
        assert_eq!(
            size(Some(512), Some(3000)).unwrap_err(),
            "memory 3000 MB is not a Fargate size: the nearest are 2048 and 3072 MB; cpu 512 takes memory 1024, 2048, 3072 or 4096 MB"
        );
        assert_eq!(
            size(None, Some(3000)).unwrap_err(),
            "memory 3000 MB is not a Fargate size: the nearest are 2048 and 3072 MB"
        );
        assert_eq!(
            size(None, Some(100)).unwrap_err(),
            "memory 100 MB is not a Fargate size: the smallest is 512 MB"
        );
        assert_eq!(
            size(None, Some(200_000)).unwrap_err(),
            "memory 200000 MB is not a Fargate size: the largest is 122880 MB"
        );
        assert_eq!(
            size(Some(300), None).unwrap_err(),
            "cpu 300 is not a Fargate size: use 256, 512, 1024, 2048, 4096, 8192 or 16384 (1024 units are one vCPU)"
        );
    }
}
