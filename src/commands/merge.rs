//! `bag2dataset merge`: datasets (e.g. shards) → one dataset, as one conversion would have made.

use std::io;

use super::{Exit, write_stdout};
use crate::cli::MergeArgs;
use crate::convert::merge::{MergeOptions, merge};
use crate::diag;
use crate::memory::plan::MemoryPlan;
use crate::memory::snapshot;

pub(crate) fn run_cmd(args: MergeArgs) -> anyhow::Result<Exit> {
    use crate::dataset::video::encoders::COPY_BYTES;
    let opts = MergeOptions {
        inputs: args.datasets.clone(),
        output: args.output.clone(),
        overwrite: args.overwrite,
        buffer_bytes: 0,
        progress: !args.quiet && !args.json,
        superseded: Vec::new(),
    };
    // The ceiling also holds the ffmpeg that stream-copies each episode (one at a time) when
    // a video merge cannot adopt its inputs whole; the default grows by it. Adopted videos
    // are linked, no child runs.
    let v21 = args.datasets.iter().any(|d| crate::layout::is_v21(d));
    let video = !v21 && crate::convert::merge::stream_copies_video(&opts).unwrap_or(false);
    let copy = if video { COPY_BYTES } else { 0 };
    let started = std::time::Instant::now();
    let ceiling = super::ceiling_from_arg(
        args.max_memory.as_deref(),
        crate::memory::plan::DEFAULT_CEILING + copy,
    )?;
    let (ceiling, ceiling_source) = (ceiling.bytes, ceiling.source);
    diag::init(true, None, None)?;
    if v21 {
        return super::convert_format::merge_v21(&args, ceiling);
    }
    // Writer buffers sized as a conversion under the same ceiling (less the copy) sizes them.
    let rss = snapshot().rss();
    let plan = match MemoryPlan::new(ceiling.saturating_sub(copy), rss, 0, "nothing") {
        Ok(p) => p,
        Err(_) if video => {
            use crate::memory::plan::{MIN_BUFFER_BYTES, RESERVE_BYTES};
            let merge_min = rss + RESERVE_BYTES + MIN_BUFFER_BYTES;
            anyhow::bail!(
                "merging video datasets needs room for one ffmpeg stream copy ({} planned) \
                 besides the merge itself ({}): pass at least --max-memory {}",
                crate::memory::format_bytes(COPY_BYTES),
                crate::memory::format_bytes(merge_min),
                crate::memory::format_bytes(crate::error::rerun_ceiling(
                    merge_min + COPY_BYTES,
                    ceiling,
                    ceiling
                ))
            );
        }
        Err(e) => return Err(e.into()),
    };
    let peak = crate::memory::tree::TreePeak::start();
    let report = merge(&MergeOptions {
        buffer_bytes: crate::convert::run::stable_buffer_bytes(plan.writer_buffer_bytes),
        ..opts
    });
    let tree = peak.finish();
    let report = report?;
    // The kernel's peak RSS of this process, plus its children's as sampled (a video merge
    // that stream-copies runs one ffmpeg at a time, planned inside the ceiling).
    let peak_rss = snapshot().rss_peak;
    let peak_tree = tree.tree.max(peak_rss);
    let wall_s = started.elapsed().as_secs_f64();
    let over = peak_tree > ceiling;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["wall_s"] = wall_s.into();
        v["memory"] = serde_json::json!({
            "peak_rss": peak_rss,
            "peak_tree_rss": peak_tree,
            "peak_children_rss": tree.children,
            "ceiling": ceiling,
            "ceiling_source": ceiling_source,
            "ceiling_exceeded": over,
        });
        let text = serde_json::to_string_pretty(&v)? + "\n";
        write_stdout(&mut io::stdout().lock(), text.as_bytes())?;
    } else if !args.quiet {
        diag!(
            "dataset {}: {} episodes, {} frames, {} tasks from {} datasets ({} failed bags listed) in {wall_s:.2}s{}; peak RSS {} (with children {}), ceiling {} ({ceiling_source})",
            report.output,
            report.episodes,
            report.frames,
            report.tasks,
            report.datasets,
            report.failed,
            report.whole.map_or(String::new(), |w| format!(
                " (inputs adopted whole: {} data files linked, {} copied, {} renumbered; {} video files linked, {} copied)",
                w.data_linked, w.data_copied, w.data_renumbered, w.videos_linked, w.videos_copied
            )),
            crate::memory::format_bytes(peak_rss),
            crate::memory::format_bytes(peak_tree),
            crate::memory::format_bytes(ceiling),
        );
    }
    if over {
        diag::warn(&format!(
            "peak RSS of the process tree {} passed the ceiling of {}",
            crate::memory::format_bytes(peak_tree),
            crate::memory::format_bytes(ceiling)
        ));
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}
