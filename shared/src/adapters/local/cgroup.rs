//! A cgroup per attempt, where the machine allows it: the memory limit the
//! run asked for (and its cpu, where the cpu controller exists), counted for
//! every process the command starts, and a count of the out-of-memory kills
//! inside it.
//!
//! Both hierarchies are handled: cgroup v1 (a `memory` and a `cpu`
//! hierarchy, as on this project's CI machines) and v2 (one unified
//! hierarchy). The groups are made below the cgroup the server runs in,
//! under `flotilla/`, so the limits of whatever runs the server still hold.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where attempt cgroups are made: a parent directory per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    /// The memory hierarchy's parent (v1), or the unified one (v2).
    memory: PathBuf,
    /// The cpu hierarchy's parent (v1); `None` on v2 or without one.
    cpu: Option<PathBuf>,
    /// Whether `memory` is a v2 (unified) hierarchy.
    unified: bool,
}

/// One attempt's cgroup(s).
#[derive(Debug)]
pub struct AttemptCgroup {
    root: CgroupRoot,
    memory: PathBuf,
    cpu: Option<PathBuf>,
}

/// The cgroup path of this process in the hierarchy holding `controller`
/// (v1), or in the unified hierarchy (`controller` empty).
fn own_path(controller: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_owned())
    })
}

fn under(mount: &str, path: &str) -> PathBuf {
    Path::new(mount)
        .join(path.trim_start_matches('/'))
        .join("flotilla")
}

impl CgroupRoot {
    /// Where this machine lets attempt cgroups be made, if anywhere: the
    /// parent is created and a probe group made and removed in it.
    pub fn detect() -> Option<Self> {
        let v1 = Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists();
        let root = if v1 {
            let memory = under("/sys/fs/cgroup/memory", &own_path("memory")?);
            let cpu = own_path("cpu")
                .map(|p| under("/sys/fs/cgroup/cpu", &p))
                .filter(|_| Path::new("/sys/fs/cgroup/cpu/cgroup.procs").exists());
            Self {
                memory,
                cpu,
                unified: false,
            }
        } else {
            let controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").ok()?;
            if !controllers.split_whitespace().any(|c| c == "memory") {
                return None;
            }
            Self {
                memory: under("/sys/fs/cgroup", &own_path("")?),
                cpu: None,
                unified: true,
            }
        };
        let probe = AttemptCgroup::create(&root, "probe", 64, None).ok()?;
        probe.remove();
        Some(root)
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value)
}

impl AttemptCgroup {
    /// Makes the cgroup `name` under `root` with a memory limit of
    /// `memory_mb` MB (swap included where the machine counts it) and, when
    /// given and possible, a cpu quota of `cpu_units`/1024 cores.
    pub fn create(
        root: &CgroupRoot,
        name: &str,
        memory_mb: u64,
        cpu_units: Option<u64>,
    ) -> io::Result<Self> {
        let bytes = memory_mb.saturating_mul(1024 * 1024).to_string();
        if root.unified {
            // Children of `flotilla/` may only limit memory once the parent
            // hands the controller down.
            fs::create_dir_all(&root.memory)?;
            let _ = write(&root.memory, "cgroup.subtree_control", "+memory +cpu");
        }
        let memory = root.memory.join(name);
        fs::create_dir_all(&memory)?;
        let group = Self {
            root: root.clone(),
            memory: memory.clone(),
            cpu: None,
        };
        if root.unified {
            write(&memory, "memory.max", &bytes)?;
            let _ = write(&memory, "memory.swap.max", "0");
            if let Some(units) = cpu_units {
                let quota = (units * 100_000 / 1024).max(1_000);
                let _ = write(&memory, "cpu.max", &format!("{quota} 100000"));
            }
        } else {
            write(&memory, "memory.limit_in_bytes", &bytes)?;
            if memory.join("memory.memsw.limit_in_bytes").exists() {
                let _ = write(&memory, "memory.memsw.limit_in_bytes", &bytes);
            }
        }
        let mut group = group;
        if let (Some(units), Some(cpu_root)) = (cpu_units, &root.cpu) {
            let cpu = cpu_root.join(name);
            if fs::create_dir_all(&cpu).is_ok() {
                let quota = (units * 100_000 / 1024).max(1_000);
                let _ = write(&cpu, "cpu.cfs_period_us", "100000");
                let _ = write(&cpu, "cpu.cfs_quota_us", &quota.to_string());
                group.cpu = Some(cpu);
            }
        }
        Ok(group)
    }

    /// Moves process `pid` (and what it starts from then on) into the group.
    pub fn join(&self, pid: u32) -> io::Result<()> {
        write(&self.memory, "cgroup.procs", &pid.to_string())?;
        if let Some(cpu) = &self.cpu {
            let _ = write(cpu, "cgroup.procs", &pid.to_string());
        }
        Ok(())
    }

    /// Whether the kernel's out-of-memory killer killed a process in the group.
    pub fn oom_killed(&self) -> bool {
        let file = if self.root.unified {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let counted = fs::read_to_string(self.memory.join(file))
            .ok()
            .is_some_and(|text| {
                text.lines().any(|line| {
                    line.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            });
        // v1 may count a kill, or the charges refused, in the group below
        // this one where it happened (a container's), or not at all: that
        // the group's memory reached its limit says as much.
        let number = |file: &str| {
            fs::read_to_string(self.memory.join(file))
                .ok()
                .and_then(|n| n.trim().parse::<u64>().ok())
        };
        counted
            || (!self.root.unified
                && (number("memory.failcnt").is_some_and(|n| n > 0)
                    || number("memory.memsw.failcnt").is_some_and(|n| n > 0)
                    || number("memory.max_usage_in_bytes")
                        .zip(number("memory.limit_in_bytes"))
                        .is_some_and(|(peak, limit)| peak >= limit)))
    }

    /// The most memory the group's processes held at once, in bytes, when
    /// the machine keeps that figure (v1's `memory.max_usage_in_bytes`, v2's
    /// `memory.peak`).
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        let file = if self.root.unified {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        fs::read_to_string(self.memory.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Moves process `pid` back out and removes the group (it must be
    /// empty otherwise; a group left behind is removed by the next attempt's
    /// clean-up, never reused).
    pub fn leave_and_remove(self, pid: u32) {
        let parent_of = |dir: &Path| dir.parent().and_then(Path::parent).map(Path::to_owned);
        if let Some(parent) = parent_of(&self.memory) {
            let _ = write(&parent, "cgroup.procs", &pid.to_string());
        }
        if let Some(cpu) = &self.cpu
            && let Some(parent) = parent_of(cpu)
        {
            let _ = write(&parent, "cgroup.procs", &pid.to_string());
        }
        self.remove();
    }

    /// The group's path from its hierarchy's root, as a container
    /// runtime's `--cgroup-parent` names it.
    pub fn hierarchy_path(&self) -> Option<String> {
        let mount = if self.root.unified {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/memory"
        };
        let rel = self.memory.strip_prefix(mount).ok()?;
        Some(format!("/{}", rel.to_str()?))
    }

    /// Removes the group after a container runtime used it as a parent:
    /// the groups it made below it (in every hierarchy, as the runtime makes
    /// the parent in each) go first.
    pub fn remove_as_parent(self) {
        if let Some(rel) = self.hierarchy_path() {
            let mounts: Vec<PathBuf> = if self.root.unified {
                vec![PathBuf::from("/sys/fs/cgroup")]
            } else {
                fs::read_dir("/sys/fs/cgroup")
                    .map(|dirs| dirs.flatten().map(|d| d.path()).collect())
                    .unwrap_or_default()
            };
            for mount in mounts {
                let dir = mount.join(rel.trim_start_matches('/'));
                if let Ok(children) = fs::read_dir(&dir) {
                    for child in children.flatten() {
                        if child.file_type().is_ok_and(|t| t.is_dir()) {
                            let _ = fs::remove_dir(child.path());
                        }
                    }
                }
                if dir != self.memory && self.cpu.as_ref() != Some(&dir) {
                    let _ = fs::remove_dir(&dir);
                }
            }
        }
        self.remove();
    }

    fn remove(self) {
        let _ = fs::remove_dir(&self.memory);
        if let Some(cpu) = &self.cpu {
            let _ = fs::remove_dir(cpu);
        }
    }
}
