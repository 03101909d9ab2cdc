//! The run's inputs: bags and recordings named one by one, directories and globs expanded,
//! files still being written or copied (changed within `--settle`) left for the next run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The bags of a run's inputs, and the files left out because they are still changing.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    /// Sorted by path, deduplicated.
    pub(crate) bags: Vec<PathBuf>,
    /// Found in a directory or by a glob, but changed within the settle time.
    pub(crate) unsettled: Vec<Unsettled>,
}

/// A file left out because it changed within the settle time.
#[derive(Debug, Clone)]
pub(crate) struct Unsettled {
    pub(crate) path: PathBuf,
    /// Seconds since its last change (size, data or metadata: the later of mtime and ctime, so
    /// a copy that sets the original mtime at its end still counts as fresh).
    pub(crate) changed_s_ago: f64,
}

/// Expands directories (their `*.bag` files, sorted) and keeps files; sorted by path.
/// Files named one by one are always taken; the others only once they have not changed for
/// `settle`.
pub(crate) fn collect_inputs(inputs: &[PathBuf], settle: Duration) -> Result<Inputs> {
    let mut out = Inputs::default();
    let keep = |f: PathBuf, out: &mut Inputs| match changed_ago(&f) {
        Some(age) if age < settle => out.unsettled.push(Unsettled {
            path: f,
            changed_s_ago: age.as_secs_f64(),
        }),
        _ => out.bags.push(f),
    };
    for p in inputs {
        if p.is_dir() && crate::ros2::is_ros2_path(p) {
            // A rosbag2 directory is one recording.
            out.bags.push(p.clone());
        } else if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    (f.is_file() && f.extension().is_some_and(|x| x == "bag"))
                        || crate::ros2::is_ros2_path(f)
                })
                .collect();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: no .bag files (nor ROS 2 recordings) in this directory",
                    p.display()
                )));
            }
            found.sort();
            for f in found {
                keep(f, &mut out);
            }
        } else if p.is_file() {
            out.bags.push(p.clone());
        } else if let Some(found) = expand_glob(p)? {
            for f in found {
                keep(f, &mut out);
            }
        } else {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    out.bags.sort();
    out.bags.dedup();
    out.unsettled.sort_by(|a, b| a.path.cmp(&b.path));
    out.unsettled.dedup_by(|a, b| a.path == b.path);
    // A file named one by one and also found by a directory is taken.
    out.unsettled
        .retain(|u| out.bags.binary_search(&u.path).is_err());
    Ok(out)
}

/// Time since the file last changed: the later of its mtime and ctime (`None` when unknown or
/// in the future).
pub(super) fn changed_ago(p: &Path) -> Option<Duration> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    let ns = |s: i64, n: i64| (s as i128) * 1_000_000_000 + n as i128;
    let last = ns(m.mtime(), m.mtime_nsec()).max(ns(m.ctime(), m.ctime_nsec()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as i128;
    (now >= last).then(|| Duration::from_nanos((now - last) as u64))
}

/// [`collect_inputs`]' bags, leaving out the files still changing within `settle`.
pub(crate) fn collect_bags(inputs: &[PathBuf], settle: Duration) -> Result<Vec<PathBuf>> {
    let found = collect_inputs(inputs, settle)?;
    if found.bags.is_empty()
        && let Some(u) = found.unsettled.first()
    {
        return Err(Error::Usage(format!(
            "every input is still being written or copied (e.g. {} changed {:.0} s ago, under \
             --settle {} s); run again later, or name the files one by one",
            u.path.display(),
            u.changed_s_ago,
            settle.as_secs()
        )));
    }
    Ok(found.bags)
}

/// Expands a quoted glob (`'/data/*/run-??.bag'`, as a cron line may pass it): `*` and `?` in
/// any path component, matched against directory entries. `None` when `p` has no wildcard;
/// an error when it matches no file.
pub(super) fn expand_glob(p: &Path) -> Result<Option<Vec<PathBuf>>> {
    let text = p.to_string_lossy();
    if !text.contains(['*', '?']) {
        return Ok(None);
    }
    let mut current: Vec<PathBuf> = vec![if p.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    }];
    for comp in p.components() {
        let part = comp.as_os_str().to_string_lossy();
        if matches!(
            comp,
            std::path::Component::RootDir | std::path::Component::CurDir
        ) {
            continue;
        }
        let mut next = Vec::new();
        for base in &current {
            if part.contains(['*', '?']) {
                let Ok(rd) = std::fs::read_dir(base) else {
                    continue;
                };
                let mut names: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok())
                    .filter(|e| wildcard_match(&part, &e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect();
                names.sort();
                next.extend(names);
            } else {
                next.push(base.join(comp.as_os_str()));
            }
        }
        current = next;
    }
    let files: Vec<PathBuf> = current.into_iter().filter(|f| f.is_file()).collect();
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "{}: the pattern matches no file",
            p.display()
        )));
    }
    Ok(Some(files))
}

/// `*` (any run of characters) and `?` (one character) matching of a whole name.
pub(super) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

pub(super) fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// Absolute path (symlinks resolved when possible), for the log and for ordering.
pub(super) fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}
