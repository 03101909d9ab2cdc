//! `convert --jobs N`: several bags at once under one ceiling. The bags are split like
//! `--shard K/N` (deterministic); each share is converted by a child `bag2dataset convert`
//! with `--max-memory (ceiling - this process) / N`, so the processes together stay under the
//! ceiling; the shards are then joined with `merge`, which orders episodes by bag path exactly
//! as one sequential run does. Applies to a fresh output in path order; otherwise (appending
//! to a dataset, `--order start-time`, `--shard`) the run is sequential.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{Exit, write_stdout};
use crate::cli::ConvertArgs;
use crate::convert::merge::{MergeOptions, merge};
use crate::convert::source::FirstBag;
use crate::diag;
use crate::memory::plan::MemoryPlan;
use crate::memory::{format_bytes, snapshot};

/// Smallest ceiling a job is given (40 MiB, what `profile` verifies for a 1 GB humanoid bag);
/// with less, fewer jobs run.
const MIN_JOB_CEILING: u64 = 40 << 20;

/// How many jobs fit under `ceiling` with this process's own `rss`, at most `wanted`.
pub(crate) fn jobs_that_fit(wanted: usize, ceiling: u64, rss: u64) -> usize {
    jobs_that_fit_each(wanted, ceiling, rss, MIN_JOB_CEILING)
}

/// Like [`jobs_that_fit`], each job needing at least `per_job` (a video job: its converter
/// and one encoder, [`VIDEO_JOB_CONVERTER_BYTES`] + the encoder's planned bytes).
pub(crate) fn jobs_that_fit_each(wanted: usize, ceiling: u64, rss: u64, per_job: u64) -> usize {
    let avail = ceiling.saturating_sub(rss);
    wanted.min((avail / per_job.max(1)) as usize).max(1)
}

/// What a video job's converter needs besides its encoders (64 MiB).
pub(crate) const VIDEO_JOB_CONVERTER_BYTES: u64 = 64 << 20;

/// Runs the conversion as `jobs` children and merges them; `cfg` is the resolved config (the
/// same for every child, written to a file so zero-config cannot differ between shards).
pub(crate) fn convert_parallel(
    args: &ConvertArgs,
    ceiling: u64,
    jobs: usize,
    bags: &[PathBuf],
    first: &FirstBag,
) -> anyhow::Result<Exit> {
    let work = PathBuf::from(format!("{}.jobs", args.output.display()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = run_children(args, bags, ceiling, jobs, first, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_children(
    args: &ConvertArgs,
    bags: &[PathBuf],
    ceiling: u64,
    jobs: usize,
    first: &FirstBag,
    work: &Path,
) -> anyhow::Result<Exit> {
    let cfg = first
        .config
        .as_ref()
        .context("no config was resolved for the jobs")?;
    let cfg_path = work.join("config.toml");
    std::fs::write(&cfg_path, cfg.to_toml())
        .with_context(|| format!("writing {}", cfg_path.display()))?;
    let exe = std::env::current_exe().context("locating the bag2dataset binary")?;
    // Without a configured fps the first bag's rate is the dataset's (as in one sequential
    // run, by the same rule: `plan::timeline_rate`); every share is told it.
    let dataset_fps = match cfg.fps {
        Some(_) => None,
        None => first.rate,
    };
    let per_job = ceiling.saturating_sub(snapshot().rss()) / jobs as u64;
    diag!(
        "converting with {jobs} jobs, --max-memory {} each",
        format_bytes(per_job)
    );
    let mut children = Vec::new();
    for k in 1..=jobs {
        let out = work.join(format!("part-{k}"));
        let mut cmd = Command::new(&exe);
        // The settled list, named file by file: every child sees the same bags.
        cmd.arg("convert").args(bags).arg("-o").arg(&out);
        cmd.arg("--settle").arg("0");
        cmd.arg("--shard").arg(format!("{k}/{jobs}"));
        cmd.arg("--config").arg(&cfg_path);
        cmd.arg("--max-memory").arg(per_job.to_string());
        cmd.arg("--json").arg("--jobs").arg("1");
        for dir in crate::ros2::msgdef::msg_paths() {
            cmd.arg("--msg-path").arg(dir);
        }
        if let Some(fps) = dataset_fps {
            cmd.arg("--dataset-fps").arg(fps.to_string());
        }
        if let Some(t) = &args.task {
            cmd.arg("--task").arg(t);
        }
        if args.fail_fast {
            cmd.arg("--fail-fast");
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // A killed `--jobs` run takes its parts with it, as one run would stop.
        crate::memory::tree::die_with_parent(&mut cmd);
        let child = cmd.spawn().context("starting a conversion job")?;
        children.push((k, out, child));
    }
    let mut parts = Vec::new();
    let mut reports = Vec::new();
    let mut worst = Exit::Ok;
    for (k, out, child) in children {
        let o = child
            .wait_with_output()
            .context("waiting for a conversion job")?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        for line in stderr
            .lines()
            .filter(|l| l.contains("error") || l.contains("warning"))
        {
            diag!("[job {k}] {line}");
        }
        // A failed or killed part makes the whole run partial (the other parts are merged).
        match Exit::from_code(o.status.code()) {
            Some(Exit::Ok) => {}
            Some(Exit::Partial) => worst = Exit::Partial,
            Some(Exit::Interrupted) => worst = Exit::Interrupted,
            _ => {
                if worst == Exit::Ok {
                    worst = Exit::Partial;
                }
            }
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
            reports.push(v);
        }
        if out.join("meta/info.json").exists() {
            parts.push(out);
        }
    }
    if parts.is_empty() {
        anyhow::bail!("no bag could be converted by any of the {jobs} jobs (see the errors above)");
    }
    let plan = MemoryPlan::new(ceiling, snapshot().rss(), 0, "nothing")?;
    let merged = merge(&MergeOptions {
        inputs: parts,
        output: args.output.clone(),
        overwrite: args.overwrite,
        buffer_bytes: crate::convert::run::stable_buffer_bytes(plan.writer_buffer_bytes),
        progress: false,
        superseded: Vec::new(),
    })?;
    let peak = reports
        .iter()
        .filter_map(|r| r["memory"]["peak_rss"].as_u64())
        .sum::<u64>();
    // Each job's process tree (its converter and its ffmpeg encoders).
    let tree_peak = reports
        .iter()
        .filter_map(|r| {
            r["memory"]["peak_tree_rss"]
                .as_u64()
                .or(r["memory"]["peak_rss"].as_u64())
        })
        .sum::<u64>();
    let summary = serde_json::json!({
        "output": args.output.display().to_string(),
        "jobs": jobs,
        "per_job_ceiling": per_job,
        "ceiling": ceiling,
        "episodes": merged.episodes,
        "frames": merged.frames,
        "failed": merged.failed,
        "sum_of_job_peak_rss": peak,
        "sum_of_job_tree_peak_rss": tree_peak,
        "job_reports": reports,
    });
    if args.json {
        write_stdout(
            &mut std::io::stdout().lock(),
            format!("{summary:#}\n").as_bytes(),
        )?;
    }
    diag!(
        "dataset {}: {} episodes, {} frames from {jobs} jobs ({} failed bags); jobs' peak RSS summed {} (with their child processes {}) under a ceiling of {}",
        args.output.display(),
        merged.episodes,
        merged.frames,
        merged.failed,
        format_bytes(peak),
        format_bytes(tree_peak),
        format_bytes(ceiling)
    );
    if merged.failed > 0 && worst == Exit::Ok {
        worst = Exit::Partial;
    }
    Ok(worst)
}
