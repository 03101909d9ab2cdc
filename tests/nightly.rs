//! Nightly runs: idempotent re-runs, appends equal to one run, failures logged and retried, the
//! output lock, interruption (SIGINT publishes what is done, exit 130), SIGKILL at many points
//! then re-run gives a byte-identical dataset, episode order, shards merged equal to one run.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bag2dataset::convert::config::ConvertConfig;
use bag2dataset::convert::merge::{MergeOptions, merge};
use bag2dataset::convert::run::{RunOptions, run};
use bag2dataset::convert::select::{Order, Shard};
use serde_json::Value;

use common::SyntheticBag;
use common::bags::{cam_and_state_config, task_bags};
use common::cli::{BIN, bin, stderr, tmp};
use common::read::{all_rows, files_bytes as snapshot, json, log_without_timings, walk};
use common::same::{INFO_TOTALS, assert_byte_identical, assert_same_tables, data_placement_column};

/// The shared synthetic bag (tests/common) with 4 joints, `seed` in its values and grey level,
/// starting `start_s` seconds after START.
fn synthetic_bag(path: &Path, seconds: u64, seed: u64, start_s: u64) {
    SyntheticBag {
        seconds,
        seed,
        start_s,
        joints: 4,
        ..SyntheticBag::default()
    }
    .write(path);
}

/// `n` bags `bag-0.bag`… of `seconds` each in `dir/in`, with a task sidecar per bag (two tasks).
fn make_bags(dir: &Path, n: u64, seconds: u64) -> Vec<PathBuf> {
    task_bags(dir, n, seconds)
}

fn config() -> ConvertConfig {
    cam_and_state_config("fps = 10\ntimeline = \"/cam/image/compressed\"")
}

fn opts(inputs: Vec<PathBuf>, output: &Path) -> RunOptions {
    RunOptions {
        inputs,
        output: output.to_path_buf(),
        config: Some(config()),
        // In-process runs share the test binary's RSS with the tests running beside them;
        // a roomy ceiling keeps them from failing on each other's memory.
        ceiling: 256 << 20,
        ..RunOptions::default()
    }
}

/// Every data row in `index` order (one batch).
fn rows(ds: &Path) -> RecordBatch {
    all_rows(ds, "data")
}

/// Same rows, episodes (but for their data file placement), tasks, totals and (within float
/// tolerance) stats.
fn assert_same_data(a: &Path, b: &Path) {
    assert_same_tables(a, b, data_placement_column, &INFO_TOTALS);
}

fn episode_indices(ds: &Path) -> Vec<i64> {
    let r = rows(ds);
    let e = r
        .column_by_name("episode_index")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut v: Vec<i64> = e.values().to_vec();
    v.dedup();
    v
}

#[test]
fn rerun_does_nothing_and_appends_equal_one_run() {
    let dir = tmp("append");
    let bags = make_bags(&dir, 4, 3);
    let all = dir.join("all");
    let r = run(&opts(vec![dir.join("in")], &all)).unwrap();
    assert_eq!((r.mode, r.episodes, r.failed), ("created", 4, 0));
    assert_eq!(r.total_episodes, 4);
    let before = snapshot(&all);
    // the same run again: nothing to do, nothing touched
    let r = run(&opts(vec![dir.join("in")], &all)).unwrap();
    assert_eq!((r.mode, r.episodes, r.skipped), ("unchanged", 0, 4));
    assert!(r.bags.iter().all(|b| b.status == "skipped"));
    assert_eq!(r.total_episodes, 4);
    assert!(
        snapshot(&all) == before,
        "an idempotent re-run changed the dataset"
    );
    // without --config, the dataset's own config is used (and matches)
    let mut o = opts(vec![dir.join("in")], &all);
    o.config = None;
    assert_eq!(run(&o).unwrap().mode, "unchanged");

    // one by one (each run also lists the earlier bags: they are skipped)
    let step = dir.join("step");
    for k in 0..bags.len() {
        let r = run(&opts(bags[..=k].to_vec(), &step)).unwrap();
        assert_eq!(r.episodes, 1);
        assert_eq!(r.skipped, k);
        assert_eq!(r.mode, if k == 0 { "created" } else { "appended" });
        assert_eq!(r.bags[k].status, if k == 0 { "ok" } else { "appended" });
        assert_eq!(r.bags[k].episode_index, Some(k));
        assert_eq!(r.total_episodes, k as u64 + 1);
        assert!(bag2dataset::dataset::validate(&step).unwrap().is_empty());
    }
    // appends went into new data files
    assert_eq!(walk(&step.join("data")).len(), 4);
    assert_same_data(&all, &step);
    assert_eq!(log_without_timings(&all), log_without_timings(&step));
    assert!(!dir.join("all.lock").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn changed_config_is_refused_unless_force() {
    let dir = tmp("config");
    make_bags(&dir, 2, 2);
    let out = dir.join("ds");
    run(&opts(vec![dir.join("in")], &out)).unwrap();
    let before = snapshot(&out);
    let mut o = opts(vec![dir.join("in")], &out);
    o.fps = Some(15);
    let e = run(&o).unwrap_err().to_string();
    assert!(
        e.contains("another configuration") && e.contains("--force"),
        "{e}"
    );
    assert!(snapshot(&out) == before);
    o.force = true;
    let r = run(&o).unwrap();
    assert_eq!((r.mode, r.episodes, r.fps), ("replaced", 2, 15));
    assert!(bag2dataset::dataset::validate(&out).unwrap().is_empty());
    // a dataset without a conversion log is not appended to
    std::fs::remove_file(out.join("meta/conversion_log.json")).unwrap();
    let e = run(&opts(vec![dir.join("in")], &out))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no conversion log"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn failed_bags_are_logged_retried_and_fail_fast_stops() {
    let dir = tmp("failures");
    let bags = make_bags(&dir, 3, 2);
    let junk = dir.join("in/bag-1.bag");
    let good = std::fs::read(&junk).unwrap();
    std::fs::write(&junk, b"not a bag at all").unwrap();
    let out = dir.join("ds");
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, config().to_toml()).unwrap();
    let (inp, o, c) = (
        dir.join("in").display().to_string(),
        out.display().to_string(),
        cfg.display().to_string(),
    );
    let log_file = dir.join("run.log");
    let r = bin(&[
        "convert",
        &inp,
        "-o",
        &o,
        "-c",
        &c,
        "--json",
        "--log-file",
        log_file.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(3), "{}", stderr(&r));
    let rep: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(rep["episodes"], 2);
    assert_eq!(rep["failed"], 1);
    assert_eq!(rep["bags"][1]["status"], "failed");
    assert!(rep["bags"][0]["peak_rss"].as_u64().unwrap() > 0);
    let log = json(&out.join("meta/conversion_log.json"));
    let failed: Vec<&Value> = log["bags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["error"].as_str().unwrap().contains("bag-1.bag"));
    // --json keeps stderr quiet, but the log file has the diagnostics, timestamped
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        logged.contains("failed") && logged.contains("bag-1.bag"),
        "{logged}"
    );
    assert!(logged.lines().all(|l| l.contains(" UTC  ")), "{logged}");
    assert!(r.stderr.is_empty(), "{}", stderr(&r));

    // --fail-fast: a failure stops the run, exit 1, the dataset untouched
    let before = snapshot(&out);
    let r = bin(&["convert", &inp, "-o", &o, "-c", &c, "--fail-fast", "-q"]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stderr(&r).contains("bag-1.bag"));
    assert!(snapshot(&out) == before);

    // the bag is repaired: the next run retries it and appends it
    std::fs::write(&junk, good).unwrap();
    let r = bin(&["convert", &inp, "-o", &o, "-c", &c, "--json"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let rep: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(rep["mode"], "appended");
    assert_eq!(rep["bags"][1]["status"], "appended");
    assert_eq!(rep["bags"][1]["episode_index"], 2);
    assert_eq!(rep["skipped"], 2);
    let log = json(&out.join("meta/conversion_log.json"));
    assert!(
        log["bags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["status"] == "converted")
    );
    assert_eq!(
        log["bags"][2]["path"],
        bags[1].canonicalize().unwrap().display().to_string()
    );
    // and the run after that has nothing to do; the human summary says so
    let r = bin(&["convert", &inp, "-o", &o, "-c", &c]);
    assert_eq!(r.status.code(), Some(0));
    assert!(stderr(&r).contains("nothing to do"), "{}", stderr(&r));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_second_run_on_a_locked_output_refuses() {
    let dir = tmp("lock");
    make_bags(&dir, 1, 1);
    let out = dir.join("ds");
    // a live process holds the lock
    let mut holder = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(dir.join("ds.lock"), format!("{}\n", holder.id())).unwrap();
    let r = bin(&[
        "convert",
        dir.join("in").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr(&r).contains("another conversion") && stderr(&r).contains("ds.lock"),
        "{}",
        stderr(&r)
    );
    assert!(!out.exists());
    // its holder is gone: the stale lock is taken over
    holder.kill().unwrap();
    holder.wait().unwrap();
    let r = bin(&[
        "convert",
        dir.join("in").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(!dir.join("ds.lock").exists());
    std::fs::remove_dir_all(&dir).ok();
}

fn spawn_convert(inputs: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args([
            "convert",
            inputs.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convert")
}

#[test]
fn sigint_publishes_finished_episodes_and_exits_130() {
    let dir = tmp("sigint");
    make_bags(&dir, 5, 20);
    let reference = dir.join("ref");
    let o = bin(&[
        "convert",
        dir.join("in").to_str().unwrap(),
        "-o",
        reference.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = dir.join("ds");
    let mut child = spawn_convert(&dir.join("in"), &out, &[]);
    // wait until the first episode is done, then interrupt
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("episode 0:") {
            break;
        }
        line.clear();
    }
    let k = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    let info = json(&out.join("meta/info.json"));
    let done = info["total_episodes"].as_u64().unwrap();
    assert!((1..5).contains(&done), "{done} episodes published");
    assert!(bag2dataset::dataset::validate(&out).unwrap().is_empty());
    // the next run converts the rest: the same data as one uninterrupted run
    let o = bin(&[
        "convert",
        dir.join("in").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_same_data(&reference, &out);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sigkill_at_many_points_then_rerun_is_byte_identical() {
    let dir = tmp("sigkill");
    make_bags(&dir, 6, 20);
    let inputs = dir.join("in");
    let reference = dir.join("ref");
    let o = bin(&[
        "convert",
        inputs.to_str().unwrap(),
        "-o",
        reference.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // how long an uninterrupted run takes, to spread the kills over it
    let t = Instant::now();
    let o = bin(&[
        "convert",
        inputs.to_str().unwrap(),
        "-o",
        dir.join("timing").to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let full = t.elapsed();
    // a first part already published, so kills also hit appending runs
    let first: Vec<PathBuf> = walk(&inputs)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bag"))
        .take(2)
        .collect();
    let fractions = [0.0, 0.05, 0.15, 0.3, 0.5, 0.7, 0.9, 1.1];
    let mut mid_run = 0;
    for (i, f) in fractions.iter().enumerate() {
        let out = dir.join(format!("killed-{i}"));
        let appending = i % 2 == 1;
        if appending {
            let mut args = vec!["convert".to_string()];
            args.extend(first.iter().map(|p| p.display().to_string()));
            args.extend(["-o".into(), out.display().to_string(), "-q".into()]);
            let o = Command::new(BIN)
                .env("BAG2DATASET_SETTLE", "0")
                .args(&args)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
        let mut child = spawn_convert(&inputs, &out, &["-q"]);
        std::thread::sleep(full.mul_f64(*f).max(Duration::from_millis(5)));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        if out.exists() {
            assert!(
                bag2dataset::dataset::validate(&out).unwrap().is_empty(),
                "a killed run left an invalid dataset"
            );
        }
        // the kill landed mid-run if the run's lock was still there
        let lock = dir.join(format!("killed-{i}.lock"));
        if lock.exists() {
            mid_run += 1;
        }
        let o = bin(&[
            "convert",
            inputs.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-q",
        ]);
        assert_eq!(o.status.code(), Some(0), "kill {i}: {}", stderr(&o));
        if appending {
            assert_same_data(&reference, &out);
        } else {
            assert_byte_identical(&reference, &out);
        }
        // nothing left behind next to the output
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".partial-") || n.ends_with(".lock"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    eprintln!(
        "uninterrupted run {full:?}; {mid_run} of {} kills landed mid-run",
        fractions.len()
    );
    assert!(
        mid_run >= 3,
        "only {mid_run} kills landed mid-run (run took {full:?})"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn episodes_follow_start_time_order_when_asked() {
    let dir = tmp("order");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    // path order a, b, c; recording order c, a, b
    synthetic_bag(&inputs.join("a.bag"), 1, 1, 200);
    synthetic_bag(&inputs.join("b.bag"), 1, 2, 300);
    synthetic_bag(&inputs.join("c.bag"), 1, 3, 100);
    let mut o = opts(vec![inputs.clone()], &dir.join("by-time"));
    o.order = Order::StartTime;
    let r = run(&o).unwrap();
    let order: Vec<&str> = r.bags.iter().map(|b| &b.bag[b.bag.len() - 5..]).collect();
    assert_eq!(order, ["c.bag", "a.bag", "b.bag"]);
    // state values carry the seed: episode 0 is c.bag (seed 3)
    let rows = rows(&dir.join("by-time"));
    let state = rows.column_by_name("observation.state").unwrap();
    let first = state.as_fixed_size_list().value(0);
    let v = first
        .as_primitive::<arrow::datatypes::Float32Type>()
        .value(0);
    assert_eq!(v, 3.0);
    let r = run(&opts(vec![inputs.clone()], &dir.join("by-path"))).unwrap();
    let order: Vec<&str> = r.bags.iter().map(|b| &b.bag[b.bag.len() - 5..]).collect();
    assert_eq!(order, ["a.bag", "b.bag", "c.bag"]);
    // the order is part of the dataset: another order is refused
    let e = run(&opts(vec![inputs], &dir.join("by-time"))).unwrap_err();
    assert!(e.to_string().contains("start-time"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shards_merged_equal_one_run() {
    let dir = tmp("shards");
    make_bags(&dir, 5, 2);
    let all = dir.join("all");
    run(&opts(vec![dir.join("in")], &all)).unwrap();
    let mut shards = Vec::new();
    let mut seen = 0;
    for k in 1..=3 {
        let out = dir.join(format!("shard-{k}"));
        let mut o = opts(vec![dir.join("in")], &out);
        o.shard = Some(Shard::parse(&format!("{k}/3")).unwrap());
        let r = run(&o).unwrap();
        assert_eq!(r.shard.as_deref(), Some(format!("{k}/3").as_str()));
        seen += r.episodes;
        shards.push(out);
    }
    assert_eq!(seen, 5);
    // Contiguous blocks of the 5 ordered bags: 0 | 1 2 | 3 4.
    assert_eq!(episode_indices(&shards[0]), [0]);
    assert_eq!(episode_indices(&shards[2]), [0, 1]);
    let merged = dir.join("merged");
    let r = merge(&MergeOptions {
        inputs: shards.clone(),
        output: merged.clone(),
        buffer_bytes: 1 << 20,
        ..MergeOptions::default()
    })
    .unwrap();
    assert_eq!((r.episodes, r.datasets, r.tasks), (5, 3, 2));
    assert_same_data(&all, &merged);
    assert_eq!(log_without_timings(&all), log_without_timings(&merged));
    // a merged dataset goes on like any other: a re-run of all inputs has nothing to do
    let r = run(&opts(vec![dir.join("in")], &merged)).unwrap();
    assert_eq!(r.mode, "unchanged");
    // overlapping inputs are refused
    let e = merge(&MergeOptions {
        inputs: vec![shards[0].clone(), all.clone()],
        output: dir.join("bad"),
        buffer_bytes: 1 << 20,
        ..MergeOptions::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("must not overlap"), "{e}");
    // the binary: merge exit 0, and shards from the environment
    let out = dir.join("env-shard");
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, config().to_toml()).unwrap();
    let o = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args([
            "convert",
            dir.join("in").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(["-c", cfg.to_str().unwrap()])
        .args(["--shard", "auto", "--shard-count", "3", "-q"])
        .env("JOB_COMPLETION_INDEX", "0")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_same_data(&out, &shards[0]);
    let o = bin(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        shards[2].to_str().unwrap(),
        "-o",
        dir.join("merged-cli").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["episodes"], 5);
    assert_same_data(&all, &dir.join("merged-cli"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn leftovers_of_a_run_killed_while_swapping_are_recovered() {
    let dir = tmp("swap");
    make_bags(&dir, 2, 1);
    let out = dir.join("ds");
    run(&opts(vec![dir.join("in")], &out)).unwrap();
    let before = snapshot(&out);
    // killed between "move the old dataset aside" and "rename the new one in" (dead pid)
    std::fs::rename(&out, dir.join("ds.partial-2147483632-0.old")).unwrap();
    std::fs::create_dir_all(dir.join("ds.partial-2147483632-1/meta")).unwrap();
    std::fs::write(dir.join("ds.lock"), "2147483632\n").unwrap();
    let r = run(&opts(vec![dir.join("in")], &out)).unwrap();
    assert_eq!(r.mode, "unchanged");
    assert!(snapshot(&out) == before);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains(".partial-") && !n.ends_with(".lock")),
        "{names:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn parallel_jobs_equal_one_run_under_one_ceiling() {
    let dir = tmp("jobs");
    make_bags(&dir, 4, 2);
    let all = dir.join("all");
    run(&opts(vec![dir.join("in")], &all)).unwrap();
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, config().to_toml()).unwrap();
    let par = dir.join("par");
    let ceiling: u64 = 256 << 20;
    let convert_jobs = |out: &Path, max_memory: &str, json: bool| {
        Command::new(BIN)
            .env("BAG2DATASET_SETTLE", "0")
            .args([
                "convert",
                dir.join("in").to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--jobs",
                "2",
                "--max-memory",
                max_memory,
            ])
            .args(json.then_some("--json"))
            .output()
            .unwrap()
    };
    let o = convert_jobs(&par, "256MiB", true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["jobs"], 2);
    let per_job = r["per_job_ceiling"].as_u64().unwrap();
    assert!(2 * per_job <= ceiling);
    let reports = r["job_reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    for job in reports {
        let m = &job["memory"];
        assert!(
            m["peak_rss"].as_u64().unwrap() <= per_job,
            "a job passed its share: {m}"
        );
        assert_eq!(m["ceiling"].as_u64(), Some(per_job));
    }
    assert!(r["sum_of_job_peak_rss"].as_u64().unwrap() <= ceiling);
    assert_same_data(&all, &par);
    assert!(bag2dataset::dataset::validate(&par).unwrap().is_empty());
    assert!(!dir.join("par.jobs").exists(), "job outputs are removed");
    // a ceiling too small for two jobs: one sequential run, same data
    let seq = dir.join("seq");
    let o = convert_jobs(&seq, "64MiB", false);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("converting sequentially"),
        "{}",
        stderr(&o)
    );
    assert_same_data(&all, &seq);
    std::fs::remove_dir_all(&dir).ok();
}

/// Sessions of the demo robot (`make-demo --session N`): one setup, and the cameras drop
/// different frames from bag to bag (even sessions the head camera's, odd ones the left's).
fn demo_sessions(dir: &Path, sessions: &[u64]) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for n in sessions {
        bag2dataset::demo::write_session_bag(&inputs.join(format!("s{n}.bag")), *n).unwrap();
    }
    inputs
}

#[test]
fn zero_config_shards_merge_and_equal_one_run() {
    let dir = tmp("zero-config-shards");
    // Shard 1 starts with session 1 (the left camera dropped a frame), shard 2 with session 4
    // (the head camera did): a per-shard "busiest camera" chose different timelines.
    let inputs = demo_sessions(&dir, &[1, 2, 4, 6]);
    let zero = |out: &Path| RunOptions {
        config: None,
        ..opts(vec![inputs.clone()], out)
    };
    let all = dir.join("all");
    run(&zero(&all)).unwrap();
    let mut shards = Vec::new();
    for k in 1..=2 {
        let out = dir.join(format!("shard-{k}"));
        let mut o = zero(&out);
        o.shard = Some(Shard::parse(&format!("{k}/2")).unwrap());
        assert_eq!(run(&o).unwrap().episodes, 2);
        shards.push(out);
    }
    let merged = dir.join("merged");
    merge(&MergeOptions {
        inputs: shards.clone(),
        output: merged.clone(),
        buffer_bytes: 1 << 20,
        ..MergeOptions::default()
    })
    .unwrap();
    assert_same_data(&all, &merged);
    assert_eq!(log_without_timings(&all), log_without_timings(&merged));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn merge_refusals_name_the_first_difference_and_the_fix() {
    let dir = tmp("merge-refusal");
    make_bags(&dir, 2, 1);
    let a = dir.join("a");
    let b = dir.join("b");
    let mut o = opts(vec![dir.join("in/bag-0.bag")], &a);
    run(&o).unwrap();
    let mut other = config();
    other.fps = Some(5);
    o = opts(vec![dir.join("in/bag-1.bag")], &b);
    o.config = Some(other);
    run(&o).unwrap();
    let e = merge(&MergeOptions {
        inputs: vec![a.clone(), b.clone()],
        output: dir.join("m"),
        buffer_bytes: 1 << 20,
        ..MergeOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains(&b.display().to_string()), "names the shard: {e}");
    assert!(
        e.contains("fps is 10 in") && e.contains("5 in"),
        "names the setting: {e}"
    );
    assert!(e.contains("--config"), "says how to fix it: {e}");
    assert!(!dir.join("m/meta/info.json").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn files_still_being_copied_are_left_for_the_next_run() {
    let dir = tmp("settle");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let watched = dir.join("watched");
    std::fs::create_dir_all(&watched).unwrap();
    synthetic_bag(&watched.join("a.bag"), 1, 1, 0);
    synthetic_bag(&src.join("b.bag"), 3, 2, 100);
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, config().to_toml()).unwrap();
    // a.bag settles; then b.bag is copied slowly while a run starts.
    std::thread::sleep(Duration::from_millis(2200));
    let data = std::fs::read(src.join("b.bag")).unwrap();
    let target = watched.join("b.bag");
    let copier = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = File::create(&target).unwrap();
        for piece in data.chunks(data.len() / 20 + 1) {
            f.write_all(piece).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = dir.join("out");
    let convert = || {
        Command::new(BIN)
            .env("BAG2DATASET_SETTLE", "0")
            .args([
                "convert",
                watched.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .args(["-c", cfg.to_str().unwrap(), "--settle", "2", "--json"])
            .output()
            .unwrap()
    };
    let o = convert();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["episodes"], 1, "{rep:#}");
    assert_eq!(rep["settling"], 1, "{rep:#}");
    let b = rep["bags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bag"].as_str().unwrap().ends_with("b.bag"))
        .unwrap();
    assert_eq!(b["status"], "settling");
    assert!(b["detail"].as_str().unwrap().contains("next run"), "{b}");
    copier.join().unwrap();
    std::thread::sleep(Duration::from_millis(2200));
    let o = convert();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (rep["episodes"].as_u64(), rep["settling"].as_u64()),
        (Some(1), Some(0))
    );
    // The whole copy went in: the same episode as converting the source file.
    let alone = dir.join("alone");
    run(&opts(vec![src.join("b.bag")], &alone)).unwrap();
    let first = dir.join("first");
    run(&opts(vec![watched.join("a.bag")], &first)).unwrap();
    let frames = |ds: &Path| {
        json(&ds.join("meta/info.json"))["total_frames"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(frames(&out), frames(&alone) + frames(&first));
    // A file named one by one is taken at once, whatever --settle says.
    synthetic_bag(&watched.join("c.bag"), 1, 3, 200);
    let o = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args(["convert", watched.join("c.bag").to_str().unwrap(), "-o"])
        .arg(dir.join("named"))
        .args(["-c", cfg.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_slurm_job_limit_caps_the_default_ceiling_and_refuses_a_larger_one() {
    let dir = tmp("slurm-env");
    make_bags(&dir, 1, 1);
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, config().to_toml()).unwrap();
    let convert = |out: &str, extra: &[&str]| {
        Command::new(BIN)
            .env("BAG2DATASET_SETTLE", "0")
            .args(["convert", dir.join("in").to_str().unwrap(), "-o"])
            .arg(dir.join(out))
            .args(["-c", cfg.to_str().unwrap(), "--settle", "0"])
            .args(extra)
            .env("SLURM_MEM_PER_NODE", "100")
            .env_remove("SLURM_MEM_PER_CPU")
            .output()
            .unwrap()
    };
    let o = convert("capped", &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The default 64 MiB is within 100 MiB minus the margin: kept, and the summary says why.
    assert_eq!(rep["memory"]["ceiling"], 64 << 20);
    let source = rep["memory"]["ceiling_source"].as_str().unwrap();
    assert!(source.contains("SLURM_MEM_PER_NODE=100"), "{source}");
    let o = convert("refused", &["--max-memory", "1GiB"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("SLURM_MEM_PER_NODE=100") && e.contains("at most"),
        "{e}"
    );
    assert!(!dir.join("refused").exists());
    // A job smaller than the default: the ceiling is the limit minus the margin.
    let o = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args(["convert", dir.join("in").to_str().unwrap(), "-o"])
        .arg(dir.join("small"))
        .args(["-c", cfg.to_str().unwrap(), "--settle", "0", "--json"])
        .env("SLURM_MEM_PER_NODE", "60")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ceiling = rep["memory"]["ceiling"].as_u64().unwrap();
    assert!(ceiling <= 52 << 20, "{ceiling}");
    assert!(rep["memory"]["peak_rss"].as_u64().unwrap() <= ceiling);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_changed_bag_replaces_just_its_episode_when_asked() {
    let dir = tmp("replace");
    let bags = make_bags(&dir, 3, 1);
    let out = dir.join("out");
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, config().to_toml()).unwrap();
    let convert = |extra: &[&str]| {
        Command::new(BIN)
            .env("BAG2DATASET_SETTLE", "0")
            .args(["convert", dir.join("in").to_str().unwrap(), "-o"])
            .arg(&out)
            .args(["-c", cfg.to_str().unwrap(), "--settle", "0", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    assert_eq!(convert(&[]).status.code(), Some(0));
    // The middle bag is replaced by a longer recording of other values.
    synthetic_bag(&bags[1], 2, 7, 100);
    let o = convert(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    let err = rep["bags"][1]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("--replace-changed"),
        "the refusal says how: {rep:#}"
    );
    let before = snapshot(&out);
    let o = convert(&["--replace-changed"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(before, snapshot(&out));
    // The same dataset as one run over the bags as they are now.
    let fresh = dir.join("fresh");
    run(&opts(vec![dir.join("in")], &fresh)).unwrap();
    assert_same_data(&fresh, &out);
    assert_eq!(log_without_timings(&fresh), log_without_timings(&out));
    assert!(!PathBuf::from(format!("{}.replacing", out.display())).exists());
    // Nothing changed since: a re-run with the flag has nothing to do.
    let o = convert(&["--replace-changed"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["mode"], "unchanged");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_truncated_bag_is_reported_as_recovered_with_what_was_lost() {
    let dir = tmp("recovered");
    let bag = dir.join("full.bag");
    SyntheticBag {
        seconds: 3,
        joints: 4,
        compression: bag2dataset::bag::writer::Compression::None,
        chunk_threshold: 16 << 10,
        ..SyntheticBag::default()
    }
    .write(&bag);
    let full = std::fs::read(&bag).unwrap();
    let cut = dir.join("cut.bag");
    std::fs::write(&cut, &full[..full.len() * 6 / 10]).unwrap();
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, config().to_toml()).unwrap();
    let o = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args(["convert", cut.to_str().unwrap(), "-o"])
        .arg(dir.join("out"))
        .args(["-c", cfg.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = &rep["bags"][0];
    assert_eq!(b["status"], "recovered", "{b:#}");
    assert_eq!(rep["recovered"], 1);
    let r = &b["recovered"];
    assert_eq!(r["reason"], "truncated");
    assert!(r["bytes_missing"].as_u64().unwrap() > 0, "{r}");
    assert!(r["messages_recovered"].as_u64().unwrap() > 0, "{r}");
    assert!(r["records_lost"].as_u64().unwrap() >= 1, "{r}");
    std::fs::remove_dir_all(&dir).ok();
}
