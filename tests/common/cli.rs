//! Running the binary and what it needs around it: a fresh temp dir per test, and the tools
//! and venvs whose absence makes a test print `SKIPPED` and pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bag2dataset");

/// A fresh, empty `b2d-<test crate>-<pid>-<name>` under `base`.
pub fn tmp_in(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(format!(
        "b2d-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A fresh, empty temp dir for the test `name`.
pub fn tmp(name: &str) -> PathBuf {
    tmp_in(&std::env::temp_dir(), name)
}

/// The binary, with freshly written bags taken at once (`--settle 0`).
pub fn bin_cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env("BAG2DATASET_SETTLE", "0");
    c
}

/// Runs the binary with `args` (bags taken at once).
pub fn bin(args: &[&str]) -> Output {
    bin_cmd().args(args).output().expect("runs the binary")
}

/// A run's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `ffmpeg` and `ffprobe` run; prints SKIPPED when not.
pub fn ffmpeg_present() -> bool {
    let ok = |b: &str| {
        Command::new(b)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok("ffmpeg") && ok("ffprobe") {
        return true;
    }
    eprintln!(
        "SKIPPED: ffmpeg/ffprobe not found on PATH; video tests need them (apt-get install ffmpeg)"
    );
    false
}

/// The lerobot venvs to check with: 0.4.x (`LEROBOT_PYTHON`, default /tmp/lerobotvenv) and
/// 0.6.x (`LEROBOT061_PYTHON`, default /tmp/lerobot061); those absent are reported and skipped.
pub fn lerobot_pythons() -> Vec<String> {
    let mut found = Vec::new();
    for (var, default) in [
        ("LEROBOT_PYTHON", "/tmp/lerobotvenv/bin/python"),
        ("LEROBOT061_PYTHON", "/tmp/lerobot061/bin/python"),
    ] {
        let py = std::env::var(var).unwrap_or_else(|_| default.to_string());
        if Path::new(&py).exists() {
            found.push(py);
        } else {
            eprintln!("SKIPPED for this client: no lerobot venv at {py} (set {var})");
        }
    }
    found
}

/// RSS (`VmRSS`) of a process in bytes, 0 if gone.
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Every descendant of `pid` (through `/proc/<pid>/task/*/children`).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                for c in text.split_whitespace().filter_map(|c| c.parse().ok()) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Summed `VmRSS` of `pid` and its descendants, bytes (what a Slurm `--mem` or a cgroup sees).
pub fn tree_rss(pid: u32) -> u64 {
    rss(pid) + descendants(pid).iter().map(|&k| rss(k)).sum::<u64>()
}

/// Runs `tests/<script>` with a lerobot venv's `python` on `args`, offline (the Hugging Face
/// datasets cache in `hf_cache`); whether it succeeded, and its stdout then stderr.
pub fn run_python_script(
    python: &str,
    script: &str,
    args: &[&Path],
    hf_cache: &Path,
) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let r = Command::new(python)
        .arg(&script)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_CACHE", hf_cache)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    (r.status.success(), text)
}
