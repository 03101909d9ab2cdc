//! `bag2dataset profile`: a conversion into a throw-away directory that prints where the memory
//! went, stage by stage, and the smallest `--max-memory` that works (verified by converting
//! again at that ceiling).

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::{Exit, write_stdout};
use crate::cli::ProfileArgs;
use crate::convert::config::ConvertConfig;
use crate::convert::run::{RunOptions, RunReport, run};
use crate::memory::format_bytes;
use crate::memory::plan::RESERVE_BYTES;

/// Attempts at finding a verified smallest ceiling (each 25 % above the last).
const VERIFY_ATTEMPTS: usize = 6;

#[derive(Serialize)]
struct ProfileReport {
    profile: RunReport,
    smallest_ceiling: u64,
    verified: Option<VerifiedRun>,
    /// Why the last verification attempt failed, when none succeeded.
    verify_error: Option<String>,
}

#[derive(Serialize)]
struct VerifiedRun {
    ceiling: u64,
    peak_rss: u64,
    frames: u64,
    attempts: usize,
}

fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bag2dataset-profile-{}-{tag}", std::process::id()))
}

/// Ceiling of the profiling run when none is given (1 GiB: large, so that nothing is
/// constrained), capped by the environment's limit.
const PROFILE_CEILING: u64 = 1 << 30;

pub(crate) fn run_cmd(args: ProfileArgs) -> anyhow::Result<Exit> {
    let config = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            Some(ConvertConfig::from_toml(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let config = if args.video {
        let bags = crate::convert::run::collect_bags(&args.bags, std::time::Duration::ZERO)?;
        let mut cfg = crate::convert::run::resolve_config(&bags, config)?;
        cfg.storage = crate::convert::config::Storage::Video;
        cfg.check()?;
        let vc = cfg.video_config();
        crate::dataset::video::check_ffmpeg(&vc.options().ffmpeg, &[vc.codec()?])?;
        Some(cfg)
    } else {
        config
    };
    let ceiling = super::ceiling_from_arg(args.max_memory.as_deref(), PROFILE_CEILING)?.bytes;
    let opts = RunOptions {
        inputs: args.bags.clone(),
        output: scratch("full"),
        config,
        ceiling,
        fps: None,
        task: None,
        overwrite: true,
        memory_log: None,
        memory_chart: None,
        progress: false,
        ..RunOptions::default()
    };
    let _ = std::fs::remove_dir_all(&opts.output);
    let profile = run(&opts);
    let _ = std::fs::remove_dir_all(&opts.output);
    let profile = profile?;
    let smallest = profile.memory.smallest_ceiling;
    let report_frames = profile.frames;
    let mut verified = None;
    let mut last_error = None;
    if !args.no_verify {
        // A fresh process for each attempt: its RSS is the run's own, not what this one kept.
        let exe = std::env::current_exe().context("locating the bag2dataset binary")?;
        let mut try_ceiling = smallest;
        for attempt in 1..=VERIFY_ATTEMPTS {
            let out = scratch("verify");
            let _ = std::fs::remove_dir_all(&out);
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("convert").args(&args.bags).arg("-o").arg(&out);
            cmd.arg("--max-memory")
                .arg(try_ceiling.to_string())
                .arg("--json");
            if let Some(c) = &args.config {
                cmd.arg("--config").arg(c);
            }
            if args.video {
                cmd.arg("--video");
            }
            crate::memory::tree::die_with_parent(&mut cmd);
            let child = cmd
                .output()
                .context("running the verification conversion")?;
            let _ = std::fs::remove_dir_all(&out);
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&child.stdout).ok();
            let frames = parsed.as_ref().and_then(|v| v["frames"].as_u64());
            if child.status.success() && frames == Some(report_frames) {
                verified = Some(VerifiedRun {
                    ceiling: try_ceiling,
                    peak_rss: parsed
                        .as_ref()
                        .and_then(|v| {
                            v["memory"]["peak_tree_rss"]
                                .as_u64()
                                .or(v["memory"]["peak_rss"].as_u64())
                        })
                        .unwrap_or(0),
                    frames: report_frames,
                    attempts: attempt,
                });
                break;
            }
            last_error = Some(String::from_utf8_lossy(&child.stderr).trim().to_string());
            try_ceiling = (try_ceiling + try_ceiling / 4).next_multiple_of(1 << 20);
        }
    }
    let report = ProfileReport {
        smallest_ceiling: smallest,
        verify_error: if verified.is_none() { last_error } else { None },
        verified,
        profile,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        write_stdout(&mut io::stdout().lock(), text.as_bytes())?;
    } else {
        let _ = io::stdout().write_all(render(&report).as_bytes());
    }
    Ok(Exit::Ok)
}

fn render(r: &ProfileReport) -> String {
    use std::fmt::Write;
    let p = &r.profile;
    let m = &p.memory;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "profile: {} bag(s), {} frames, {} read in {:.2}s ({:.0} MB/s), profiled under a ceiling of {}",
        p.bags.len(),
        p.frames,
        format_bytes(p.bytes_read),
        p.wall_s,
        p.throughput_mb_s,
        format_bytes(m.ceiling)
    );
    let _ = writeln!(s, "\nmemory by stage:");
    let _ = writeln!(
        s,
        "  {:<28} {:>10}",
        "process baseline (RSS)",
        format_bytes(m.baseline)
    );
    let _ = writeln!(
        s,
        "  {:<28} {:>10}  (Parquet encoders, stacks, stats, allocator)",
        "reserve",
        format_bytes(RESERVE_BYTES)
    );
    for b in &m.budgets {
        let _ = writeln!(
            s,
            "  {:<28} {:>10}  peak, largest item {}, budget {}",
            b.name,
            format_bytes(b.peak),
            format_bytes(b.largest_item),
            format_bytes(b.capacity)
        );
    }
    let _ = writeln!(
        s,
        "  {:<28} {:>10}  (raw rows; the pages being filled take as much again)",
        "writer buffer",
        format_bytes(m.writer_buffer_bytes as u64)
    );
    let _ = writeln!(
        s,
        "  {:<28} {:>10}  (encoded; spilled to disk until flushed)",
        "writer row group",
        format_bytes(m.row_group_bytes as u64)
    );
    let _ = writeln!(
        s,
        "  {:<28} {:>10}  (anonymous {}, file-backed {}; jemalloc allocated peak {})",
        "peak RSS",
        format_bytes(m.peak_rss),
        format_bytes(m.peak_rss_anon),
        format_bytes(m.peak_rss_file),
        format_bytes(m.peak_allocated)
    );
    if let Some(v) = &m.video {
        let _ = writeln!(
            s,
            "  {:<28} {:>10}  planned each, {} of {} at once; measured peak of the tree {} (children {})",
            "video encoders (ffmpeg)",
            format_bytes(v.encoder_bytes),
            v.encoders_parallel,
            v.cameras,
            format_bytes(m.peak_tree_rss),
            format_bytes(m.peak_children_rss)
        );
        for c in &m.children {
            let _ = writeln!(s, "    {:<40} peak {}", c.label, format_bytes(c.peak_rss));
        }
    }
    let _ = writeln!(
        s,
        "  {:<28} {:>10}  (largest over one chunk {})",
        "retained after the run",
        signed(m.increase),
        signed(m.max_chunk_increase)
    );
    let _ = writeln!(
        s,
        "\nsmallest workable ceiling: --max-memory {}",
        format_bytes(r.smallest_ceiling)
    );
    match &r.verified {
        Some(v) => {
            let _ = writeln!(
                s,
                "verified: converted again at --max-memory {} ({} frames, peak RSS of the process tree {}){}",
                format_bytes(v.ceiling),
                v.frames,
                format_bytes(v.peak_rss),
                if v.attempts > 1 {
                    format!(" after {} attempts", v.attempts)
                } else {
                    String::new()
                }
            );
        }
        None => {
            let _ = writeln!(
                s,
                "not verified{}",
                r.verify_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_else(|| " (--no-verify)".into())
            );
        }
    }
    s
}

fn signed(v: i64) -> String {
    if v < 0 {
        format!("-{}", format_bytes(v.unsigned_abs()))
    } else {
        format!("+{}", format_bytes(v as u64))
    }
}
