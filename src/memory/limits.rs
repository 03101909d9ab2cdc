//! The memory the environment allows this process, read (never changed) from where schedulers
//! and containers put it: Slurm's job variables, the cgroup v2 `memory.max` and the cgroup v1
//! `memory.limit_in_bytes` of this process's cgroup and its ancestors, and, where nothing sets a
//! limit, the machine's available memory (`sysinfo`). The run's default ceiling never exceeds
//! it minus [`margin`], and an explicit `--max-memory` above it is refused.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::memory::format_bytes;

/// Share of an environment limit kept out of the ceiling (10 %), with at least
/// [`MARGIN_MIN`]. What the limit counts besides our process tree: the job script's shell and
/// `srun` (a few MiB under Slurm, whose `jobacct_gather/linux` sums the RSS of every process of
/// the job), and under a cgroup the kernel memory charged to it (page tables, socket buffers,
/// dirty pages of the dataset being written) — about 1-2 % of RSS on our runs, more on
/// page-cache-heavy ones. Our own monitor keeps the tree under the ceiling between its samples;
/// the margin covers what it cannot see.
const MARGIN_PER_MILLE: u64 = 100;

/// Smallest margin (8 MiB): a job script's bash plus Slurm's step helper.
const MARGIN_MIN: u64 = 8 << 20;

/// cgroup files report "no limit" as a huge number (v1: 2^63 rounded to a page); anything from
/// here up means unlimited.
const UNLIMITED: u64 = 1 << 60;

/// A limit on this process's memory and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvLimit {
    pub(crate) bytes: u64,
    /// In a user's words: `Slurm SLURM_MEM_PER_NODE=100`, `cgroup v2 memory.max of /sys/...`.
    source: String,
    /// A scheduler or container limit (true), or just the machine's available memory (false).
    enforced: bool,
}

/// The margin kept below `limit` (see [`MARGIN_PER_MILLE`]).
pub(crate) fn margin(limit: u64) -> u64 {
    (limit / 1000 * MARGIN_PER_MILLE).max(MARGIN_MIN)
}

/// The run's ceiling and, in a user's words, why it is that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ceiling {
    pub(crate) bytes: u64,
    pub(crate) source: String,
}

/// The smallest limit among the scheduler's (`get` reads an environment variable) and the
/// cgroups' (files read from `/proc/self` and the cgroup mounts).
fn enforced_limit(get: impl Fn(&str) -> Option<String>) -> Option<EnvLimit> {
    let mut limits = Vec::new();
    limits.extend(slurm_limit(&get));
    limits.extend(cgroup_limits(
        &read_text(Path::new("/proc/self/cgroup")).unwrap_or_default(),
        &read_text(Path::new("/proc/self/mountinfo")).unwrap_or_default(),
        &|p| read_text(p),
    ));
    limits.into_iter().min_by_key(|l| l.bytes)
}

/// The environment's limit, or the machine's available memory where nothing sets one.
pub(crate) fn environment_limit() -> Option<EnvLimit> {
    enforced_limit(|k| std::env::var(k).ok()).or_else(|| {
        let mut sys = sysinfo::System::new().ok()?;
        sys.refresh_memory();
        let available = sys.available_memory();
        (available > 0).then(|| EnvLimit {
            bytes: available,
            source: "the machine's available memory".into(),
            enforced: false,
        })
    })
}

/// The run's ceiling: `--max-memory` when given (refused above an enforced limit), else
/// `default` capped by the environment's limit minus its margin.
pub(crate) fn choose_ceiling(
    given: Option<u64>,
    default: u64,
    env: Option<&EnvLimit>,
) -> Result<Ceiling> {
    match (given, env) {
        (Some(bytes), Some(l)) if l.enforced && bytes > l.bytes => Err(Error::Limit {
            what: format!(
                "--max-memory {} is above what this job may use: {} ({}); the run would be \
                 killed before its ceiling could stop it. Pass at most --max-memory {} (the \
                 limit minus a {} margin for the job's other processes and kernel memory), or \
                 ask the scheduler for more",
                format_bytes(bytes),
                format_bytes(l.bytes),
                l.source,
                format_bytes(l.bytes - margin(l.bytes).min(l.bytes)),
                format_bytes(margin(l.bytes)),
            ),
        }),
        (Some(bytes), _) => Ok(Ceiling {
            bytes,
            source: "--max-memory".into(),
        }),
        (None, Some(l)) if l.bytes.saturating_sub(margin(l.bytes)) < default => {
            let bytes = l.bytes.saturating_sub(margin(l.bytes));
            Ok(Ceiling {
                bytes,
                source: format!(
                    "default {} capped by {} ({}) minus a {} margin",
                    format_bytes(default),
                    l.source,
                    format_bytes(l.bytes),
                    format_bytes(margin(l.bytes))
                ),
            })
        }
        (None, Some(l)) if l.enforced => Ok(Ceiling {
            bytes: default,
            source: format!("default (within {}: {})", l.source, format_bytes(l.bytes)),
        }),
        (None, _) => Ok(Ceiling {
            bytes: default,
            source: "default".into(),
        }),
    }
}

fn read_text(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Slurm's job memory: `SLURM_MEM_PER_NODE` (MiB), or `SLURM_MEM_PER_CPU` (MiB) times the CPUs
/// of the job on this node (`SLURM_CPUS_ON_NODE`, else `SLURM_CPUS_PER_TASK`, else 1).
fn slurm_limit(get: &impl Fn(&str) -> Option<String>) -> Option<EnvLimit> {
    let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(mb) = num("SLURM_MEM_PER_NODE").filter(|v| *v > 0) {
        return Some(EnvLimit {
            bytes: mb << 20,
            source: format!("Slurm SLURM_MEM_PER_NODE={mb}"),
            enforced: true,
        });
    }
    let per_cpu = num("SLURM_MEM_PER_CPU").filter(|v| *v > 0)?;
    let (cpus, from) = match (num("SLURM_CPUS_ON_NODE"), num("SLURM_CPUS_PER_TASK")) {
        (Some(c), _) if c > 0 => (c, format!(" x SLURM_CPUS_ON_NODE={c}")),
        (_, Some(c)) if c > 0 => (c, format!(" x SLURM_CPUS_PER_TASK={c}")),
        _ => (1, String::new()),
    };
    Some(EnvLimit {
        bytes: (per_cpu * cpus) << 20,
        source: format!("Slurm SLURM_MEM_PER_CPU={per_cpu}{from}"),
        enforced: true,
    })
}

/// A cgroup mount: where it is mounted, the cgroup path it shows there, and its version.
struct Mount {
    point: PathBuf,
    root: String,
    v2: bool,
}

/// cgroup mounts from `/proc/self/mountinfo`: cgroup2, and cgroup v1 with the memory
/// controller.
fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (root, point) = (*f.get(3)?, *f.get(4)?);
            let v2 = match *r.first()? {
                "cgroup2" => true,
                "cgroup" if r.get(2)?.split(',').any(|o| o == "memory") => false,
                _ => return None,
            };
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                root: unescape(root),
                v2,
            })
        })
        .collect()
}

/// mountinfo escapes blanks and backslashes as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The limits of this process's memory cgroup and its ancestors up to the mount, v2
/// (`memory.max`) and v1 (`memory.limit_in_bytes`); `read` reads a file.
fn cgroup_limits(
    proc_cgroup: &str,
    mountinfo: &str,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Vec<EnvLimit> {
    let mut out = Vec::new();
    for m in cgroup_mounts(mountinfo) {
        // `0::/path` for v2; `N:memory:/path` (or `N:cpu,memory:/path`) for v1.
        let Some(path) = proc_cgroup.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = if m.v2 {
                id == "0" && ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == "memory")
            };
            wanted.then(|| path.to_string())
        }) else {
            continue;
        };
        let rel = path
            .strip_prefix(m.root.trim_end_matches('/'))
            .unwrap_or(&path)
            .trim_start_matches('/')
            .to_string();
        let file = if m.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        let mut dir = m.point.join(&rel);
        loop {
            let f = dir.join(file);
            if let Some(v) = read(&f).and_then(|t| t.trim().parse::<u64>().ok())
                && v < UNLIMITED
            {
                out.push(EnvLimit {
                    bytes: v,
                    source: format!("cgroup {} {}", if m.v2 { "v2" } else { "v1" }, f.display()),
                    enforced: true,
                });
            }
            if dir == m.point || !dir.pop() || !dir.starts_with(&m.point) {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn slurm_memory_per_node_and_per_cpu() {
        let l = slurm_limit(&env(&[("SLURM_MEM_PER_NODE", "100")])).unwrap();
        assert_eq!(l.bytes, 100 << 20);
        let l = slurm_limit(&env(&[
            ("SLURM_MEM_PER_CPU", "64"),
            ("SLURM_CPUS_ON_NODE", "3"),
        ]))
        .unwrap();
        assert_eq!(l.bytes, 192 << 20);
        assert!(l.source.contains("SLURM_MEM_PER_CPU=64"));
        assert_eq!(slurm_limit(&env(&[])), None);
        assert_eq!(slurm_limit(&env(&[("SLURM_MEM_PER_NODE", "0")])), None);
    }

    #[test]
    fn cgroup_v1_and_v2_limits_up_the_tree() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
32 25 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
";
        let cg = "4:memory:/job/step\n1:cpu:/\n0::/slice/unit\n";
        let read = |p: &Path| -> Option<String> {
            match p.to_str()? {
                "/sys/fs/cgroup/memory/job/step/memory.limit_in_bytes" => {
                    Some("9223372036854771712\n".into())
                }
                "/sys/fs/cgroup/memory/job/memory.limit_in_bytes" => Some("209715200\n".into()),
                "/sys/fs/cgroup/unified/slice/unit/memory.max" => Some("max\n".into()),
                "/sys/fs/cgroup/unified/slice/memory.max" => Some("104857600\n".into()),
                _ => None,
            }
        };
        let mut l = cgroup_limits(cg, mountinfo, &read);
        l.sort_by_key(|l| l.bytes);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].bytes, 100 << 20);
        assert!(l[0].source.contains("v2") && l[0].source.contains("/slice/memory.max"));
        assert_eq!(l[1].bytes, 200 << 20);
        assert!(l[1].source.contains("v1"));
        // A namespaced mount shows the process's own cgroup at the mount point.
        let ns = "40 25 0:26 /job /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let read = |p: &Path| -> Option<String> {
            (p.to_str()? == "/sys/fs/cgroup/memory/step/memory.limit_in_bytes")
                .then(|| "1048576000".into())
        };
        let l = cgroup_limits("4:memory:/job/step\n", ns, &read);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].bytes, 1000 << 20);
    }

    #[test]
    fn ceiling_is_capped_and_explicit_ceilings_above_the_limit_refused() {
        let slurm = EnvLimit {
            bytes: 100 << 20,
            source: "Slurm SLURM_MEM_PER_NODE=100".into(),
            enforced: true,
        };
        let c = choose_ceiling(None, 256 << 20, Some(&slurm)).unwrap();
        assert_eq!(c.bytes, (100 << 20) - margin(100 << 20));
        assert!(c.bytes <= 100 << 20);
        assert!(c.source.contains("SLURM_MEM_PER_NODE=100"), "{}", c.source);
        let c = choose_ceiling(None, 64 << 20, Some(&slurm)).unwrap();
        assert_eq!(c.bytes, 64 << 20);
        assert!(c.source.starts_with("default"));
        let e = choose_ceiling(Some(1 << 30), 64 << 20, Some(&slurm)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("SLURM_MEM_PER_NODE=100") && msg.contains("at most"),
            "{msg}"
        );
        assert_eq!(
            choose_ceiling(Some(90 << 20), 64 << 20, Some(&slurm))
                .unwrap()
                .bytes,
            90 << 20
        );
        // The machine's available memory caps the default but does not refuse a flag.
        let machine = EnvLimit {
            bytes: 1 << 30,
            source: "the machine's available memory".into(),
            enforced: false,
        };
        assert!(choose_ceiling(Some(2 << 30), 64 << 20, Some(&machine)).is_ok());
        assert_eq!(margin(1 << 30), (1 << 30) / 1000 * 100);
        assert_eq!(margin(20 << 20), MARGIN_MIN);
    }
}
