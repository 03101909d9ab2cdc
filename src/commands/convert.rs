//! `bag2dataset convert`: validated options → [`crate::convert::run`] → summary and exit code.
//!
//! SIGINT/SIGTERM/SIGHUP: the first one stops the run at the next episode boundary (the
//! finished episodes are published, exit 130); a second one exits at once (exit 130, nothing
//! new published, like a kill: the previous dataset stays, the next run redoes the rest).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use super::{Exit, write_stdout};
use crate::cli::ConvertArgs;
use crate::convert::config::ConvertConfig;
use crate::convert::run::{RunOptions, collect_bags, render_summary, resolve_config, run};
use crate::convert::select::{Order, Shard};
use crate::convert::source::{FirstBag, OpenedBags};
use crate::diag;

/// `--settle` as a duration.
fn settle(args: &ConvertArgs) -> std::time::Duration {
    std::time::Duration::from_secs(args.settle)
}

/// Installs the interruption handler (once per process) and returns its flag.
fn interrupt_flag() -> Option<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            diag!("interrupted again: stopping now; nothing new is published");
            std::process::exit(Exit::Interrupted as i32);
        }
        diag!(
            "interrupted: finishing the current episode, then publishing what is done \
             (interrupt again to stop at once)"
        );
    });
    installed.ok().map(|_| flag)
}

pub(crate) fn run_cmd(args: ConvertArgs) -> anyhow::Result<Exit> {
    let ceiling = super::ceiling_from_arg(
        args.max_memory.as_deref(),
        crate::memory::plan::DEFAULT_CEILING,
    )?;
    let chatty = !args.quiet && !args.json;
    diag::init(chatty, None, args.log_file.as_deref())?;
    let order = Order::parse(&args.order).map_err(|e| anyhow::anyhow!("--order: {e}"))?;
    let shard = match args.shard.as_deref() {
        None => None,
        Some("auto") => Some(
            Shard::from_env(args.shard_count, |k| std::env::var(k).ok())
                .map_err(|e| anyhow::anyhow!("--shard auto: {e}"))?,
        ),
        Some(s) => Some(Shard::parse(s).map_err(|e| anyhow::anyhow!("--shard: {e}"))?),
    };
    let result = convert(&args, ceiling, order, shard);
    if let Err(e) = &result
        && args.log_file.is_some()
    {
        // main prints the error on stderr; the log file gets it too.
        diag::emit_file_only(&format!("error: {e:#}"));
    }
    result
}

fn convert(
    args: &ConvertArgs,
    mut ceiling: crate::memory::limits::Ceiling,
    order: Order,
    shard: Option<Shard>,
) -> anyhow::Result<Exit> {
    let config = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            Some(ConvertConfig::from_toml(&text, &p.display().to_string())?)
        }
        None => None,
    };
    if args.print_config {
        let bags = collect_bags(&args.inputs, settle(args))?;
        let mut cfg = resolve_config(&bags, config)?;
        if let Some(fps) = args.fps {
            cfg.fps = Some(fps);
        }
        if let Some(t) = &args.task {
            cfg.task = t.clone();
        }
        let text = format!(
            "# bag2dataset conversion config (chosen from {}); edit and pass with --config\n{}",
            bags.first()
                .map(|b| b.display().to_string())
                .unwrap_or_default(),
            cfg.to_toml()
        );
        write_stdout(&mut io::stdout().lock(), text.as_bytes())?;
        return Ok(Exit::Ok);
    }
    let config = apply_video_args(args, config)?;
    if super::convert_v21::wants_v21(args, config.as_ref())? {
        let bytes = ceiling.bytes;
        return super::convert_v21::convert_v21(args, bytes, config, move |a| {
            convert(a, ceiling, order, shard)
        });
    }
    let fresh = !args.output.exists() || args.overwrite;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = args.jobs.unwrap_or(cores);
    if wanted > 1 {
        // Listed once: the jobs count, the first bag's facts and the children's bags all come
        // from this one settled list. A listing error is reported by the sequential run below.
        let listed = collect_bags(&args.inputs, settle(args)).unwrap_or_default();
        // No more jobs than bags.
        let bags = listed.len().max(1);
        let mut first: Option<FirstBag> = None;
        let rss = crate::memory::snapshot().rss();
        let video = config.as_ref().filter(|c| c.wants_video());
        let jobs = match video {
            // A video job needs its converter and one encoder; without --max-memory the
            // ceiling is what one video run would choose (every camera's encoder at once),
            // capped by the environment's limit.
            Some(cfg) => {
                let measured = FirstBag::measure(&listed, Some(cfg), true, &OpenedBags::default())?;
                let cams = measured.cameras.clone();
                first = Some(measured);
                let one = cams
                    .iter()
                    .map(|&(c, w, h)| crate::dataset::video::encoders::encoder_bytes(c, w, h))
                    .max()
                    .unwrap_or(0);
                if args.max_memory.is_none() {
                    let video_default = crate::dataset::video::encoders::default_ceiling(
                        &cams,
                        crate::memory::plan::DEFAULT_CEILING,
                    );
                    ceiling.bytes =
                        environment_cap().map_or(video_default, |c| c.min(video_default));
                    ceiling.source = "default for video: one encoder per camera".into();
                }
                super::jobs::jobs_that_fit_each(
                    wanted.min(bags),
                    ceiling.bytes,
                    rss,
                    super::jobs::VIDEO_JOB_CONVERTER_BYTES + one,
                )
            }
            None => super::jobs::jobs_that_fit(wanted.min(bags), ceiling.bytes, rss),
        };
        let parallel = fresh && shard.is_none() && order == Order::Path && jobs >= 2;
        if !parallel && args.jobs.is_some() {
            diag!(
                "--jobs {wanted}: converting sequentially ({})",
                if bags < 2 {
                    "one bag"
                } else if jobs < 2 {
                    "--max-memory leaves room for one job (40 MiB each; with video, each job's \
                     converter and one encoder)"
                } else {
                    "parallel jobs apply to a fresh output, in path order, without --shard"
                }
            );
        } else if parallel {
            let mut first = match first {
                Some(f) => f,
                None => FirstBag::measure(&listed, config.as_ref(), false, &OpenedBags::default())?,
            };
            if let (Some(fps), Some(cfg)) = (args.fps, first.config.as_mut()) {
                cfg.fps = Some(fps);
            }
            return super::jobs::convert_parallel(args, ceiling.bytes, jobs, &listed, &first);
        }
    }
    let opts = RunOptions {
        inputs: args.inputs.clone(),
        output: args.output.clone(),
        config,
        ceiling: ceiling.bytes,
        ceiling_source: ceiling.source.clone(),
        fps: args.fps,
        task: args.task.clone(),
        overwrite: args.overwrite,
        memory_log: args.memory_log.clone(),
        memory_chart: args.memory_chart.clone(),
        progress: !args.quiet && !args.json || args.log_file.is_some(),
        force: args.force,
        fail_fast: args.fail_fast,
        order,
        shard,
        interrupt: interrupt_flag(),
        dataset_fps: args.dataset_fps,
        settle: settle(args),
        default_ceiling: args.max_memory.is_none(),
        ceiling_cap: environment_cap(),
    };
    if args.replace_changed {
        let replaced = crate::convert::replace::replace_changed(&opts)?;
        if !replaced.is_empty() && !args.quiet && !args.json {
            diag!(
                "replaced the episodes of {} changed bag(s) in {}",
                replaced.len(),
                args.output.display()
            );
        }
    }
    let report = run(&opts)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        write_stdout(&mut io::stdout().lock(), text.as_bytes())?;
    }
    // With --quiet/--json this reaches only the log file (if any).
    diag::emit(&render_summary(&report));
    Ok(if report.interrupted {
        Exit::Interrupted
    } else if report.failed > 0 || report.memory.ceiling_exceeded {
        Exit::Partial
    } else {
        Exit::Ok
    })
}

/// What the environment allows a default ceiling: its limit (Slurm, cgroup, else the
/// machine's available memory) minus the margin kept for what the limit counts besides us.
fn environment_cap() -> Option<u64> {
    use crate::memory::limits;
    limits::environment_limit().map(|l| l.bytes.saturating_sub(limits::margin(l.bytes)))
}

/// `--video`, `--vcodec`, `--crf`, `--gop` go into the config (resolved from the first bag
/// when there is none); with video features, ffmpeg and its encoder are checked before any
/// work starts.
fn apply_video_args(
    args: &ConvertArgs,
    config: Option<ConvertConfig>,
) -> anyhow::Result<Option<ConvertConfig>> {
    use crate::cli::VideoCodecArg;
    use crate::convert::config::Storage;
    let v = &args.video;
    let any_flag = v.video || v.vcodec.is_some() || v.crf.is_some() || v.gop.is_some();
    let wants = config.as_ref().is_some_and(ConvertConfig::wants_video);
    if !any_flag && !wants {
        return Ok(config);
    }
    let mut cfg = match config {
        Some(c) => c,
        None => resolve_config(&collect_bags(&args.inputs, settle(args))?, None)?,
    };
    if v.video {
        cfg.storage = Storage::Video;
    }
    let mut vc = cfg.video_config();
    if let Some(c) = v.vcodec {
        vc.codec = Some(
            match c {
                VideoCodecArg::Av1 => "av1",
                VideoCodecArg::H264 => "h264",
                VideoCodecArg::Hevc => "hevc",
            }
            .into(),
        );
    }
    vc.crf = v.crf.or(vc.crf);
    vc.gop = v.gop.or(vc.gop);
    cfg.video = Some(vc);
    cfg.check()?;
    if cfg.wants_video() {
        let vc = cfg.video_config();
        crate::dataset::video::check_ffmpeg(&vc.options().ffmpeg, &[vc.codec()?])?;
    }
    Ok(Some(cfg))
}
