//! ROS 2 recordings convert through the same pipeline as ROS1 bags: the generated Kuavo-like
//! recordings of ../shared/testdata/ros2 convert with zero config, and a session written by
//! `gen_bag.py` as a ROS1 bag, a rosbag2 MCAP directory and a rosbag2 SQLite directory gives
//! the same dataset from all three (needs the generator venv; skipped without it); lerobot
//! 0.4.4 and 0.6.1 load the datasets made from MCAP and from .db3 (where their venvs exist).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_bag2dataset");

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("b2d-ros2-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// sha256 over the dataset's tables and metadata (relative path + bytes of every file under
/// `data/` and `meta/`, the conversion log aside: it names the input files).
fn tables_digest(ds: &Path) -> String {
    let mut files = Vec::new();
    walk(&ds.join("data"), &mut files);
    walk(&ds.join("meta"), &mut files);
    files.retain(|p| !p.ends_with("meta/conversion_log.json"));
    files.sort();
    assert!(!files.is_empty(), "{} has no tables", ds.display());
    let mut h = Sha256::new();
    for f in files {
        h.update(f.strip_prefix(ds).unwrap().to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn convert(input: &Path, out: &Path) {
    let o = Command::new(BIN)
        .args(["convert", "--quiet", "--max-memory", "256MiB"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run binary");
    assert!(
        o.status.success(),
        "convert {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn generated_ros2_recordings_convert_with_zero_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/ros2/generated");
    if !dir.is_dir() {
        eprintln!("SKIPPED: {} is absent", dir.display());
        return;
    }
    let work = tmp("generated");
    for name in ["gen__kuavo_ros2_mcap_zstd", "gen__kuavo_ros2_sqlite3"] {
        let out = work.join(name);
        convert(&dir.join(name), &out);
        let v = Command::new(BIN)
            .arg("validate")
            .arg(&out)
            .output()
            .expect("validate");
        assert!(
            v.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&v.stdout)
        );
        let info: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("meta/info.json")).expect("info.json"),
        )
        .expect("json");
        assert_eq!(info["total_episodes"], 1, "{name}");
        let feats = info["features"].as_object().expect("features");
        assert_eq!(
            feats
                .keys()
                .filter(|k| k.starts_with("observation.images."))
                .count(),
            3,
            "{name}: three cameras"
        );
        assert!(feats.contains_key("observation.state"), "{name}");
        lerobot_loads(&out);
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// lerobot 0.4.4 (/tmp/lerobotvenv) and 0.6.1 (/tmp/lerobot061), where installed, load the
/// dataset and fetch its first, middle and last items.
fn lerobot_loads(ds: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lerobot_load.py");
    for python in ["/tmp/lerobotvenv/bin/python", "/tmp/lerobot061/bin/python"] {
        if !Path::new(python).exists() {
            eprintln!("SKIPPED: no lerobot venv at {python}");
            continue;
        }
        let o = Command::new(python)
            .arg(&script)
            .arg(ds)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_DATASETS_CACHE", ds.with_extension("hf-cache"))
            .output()
            .expect("python");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "{python} cannot load {}: {text}",
            ds.display()
        );
        eprintln!("{}", text.lines().last().unwrap_or_default());
    }
}

#[test]
fn one_session_as_ros1_mcap_and_sqlite_gives_one_dataset() {
    let python = std::env::var("GEN_PYTHON").unwrap_or_else(|_| "/tmp/genvenv/bin/python".into());
    let gen_bag = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen_bag.py");
    if !Path::new(&python).exists() || !gen_bag.is_file() {
        eprintln!(
            "SKIPPED: needs the generator venv at {python} (set GEN_PYTHON) and {}",
            gen_bag.display()
        );
        return;
    }
    let work = tmp("session");
    let variants: [(&str, &[&str]); 3] = [
        ("ros1.bag", &[]),
        ("mcap", &["--ros2", "mcap", "--ros2-compression", "storage"]),
        ("sqlite", &["--ros2", "sqlite3", "--ros2-version", "8"]),
    ];
    let mut digests = Vec::new();
    for (name, extra) in variants {
        let bag = work.join(name);
        let o = Command::new(&python)
            .arg(&gen_bag)
            .arg(&bag)
            .args(["--duration", "2"])
            .args(extra)
            .output()
            .expect("gen_bag.py");
        assert!(
            o.status.success(),
            "gen_bag.py {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = work.join(format!("{name}.ds"));
        convert(&bag, &out);
        digests.push((name, tables_digest(&out)));
    }
    assert_eq!(digests[0].1, digests[1].1, "ROS1 vs MCAP: {digests:?}");
    assert_eq!(digests[0].1, digests[2].1, "ROS1 vs SQLite: {digests:?}");
    let _ = std::fs::remove_dir_all(&work);
}
