//! `bag2dataset convert-format IN -o OUT --to v2.1|v3.0`: a dataset this tool made, rewritten
//! in the other LeRobot layout without reading the bags again (see [`crate::layout`]).

use super::Exit;
use crate::cli::ConvertFormatArgs;
use crate::convert::lock::OutputLock;
use crate::dataset::WriterOptions;
use crate::dataset::video::encoders::COPY_BYTES;
use crate::diag;
use crate::layout::{Format, LayoutOptions, detect, publish, recover, sibling, to_v21, to_v30};
use crate::memory::plan::MemoryPlan;
use crate::memory::snapshot;

/// Row group bytes of a v2.1 layout under `ceiling`: an eighth of it, at most the default.
pub(crate) fn layout_row_group_bytes(ceiling: u64) -> usize {
    (ceiling / 8)
        .min(crate::dataset::DEFAULT_ROW_GROUP_BYTES as u64)
        .max(1 << 20) as usize
}

/// What the layout needs besides the process's baseline: its row groups (at least 1 MiB), the
/// batches being copied and the Parquet encoder (16 MiB, above the 21-26 MB peaks measured on a
/// 57 MB episode).
const LAYOUT_MIN_BYTES: u64 = 16 << 20;

/// Whether the dataset's `info.json` lists a video feature.
fn has_video(ds: &std::path::Path) -> bool {
    std::fs::read(ds.join("meta/info.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v["features"]
                .as_object()
                .map(|f| f.values().any(|x| x["dtype"].as_str() == Some("video")))
        })
        .unwrap_or(false)
}

pub(crate) fn run_cmd(args: ConvertFormatArgs) -> anyhow::Result<Exit> {
    // A video dataset's episodes are cut or joined by an ffmpeg stream copy (one at a time):
    // the ceiling holds it besides the layout, as `merge` plans it.
    let video = has_video(&args.input);
    let copy = if video { COPY_BYTES } else { 0 };
    let ceiling = super::ceiling_from_arg(
        args.max_memory.as_deref(),
        crate::memory::plan::DEFAULT_CEILING + copy,
    )?
    .bytes;
    let least = snapshot().rss() + LAYOUT_MIN_BYTES + copy;
    if ceiling < least {
        anyhow::bail!(
            "--max-memory {} is too small: the layout needs {}{}; pass at least --max-memory {}",
            crate::memory::format_bytes(ceiling),
            crate::memory::format_bytes(least - copy),
            if video {
                format!(
                    " plus one ffmpeg stream copy ({} planned)",
                    crate::memory::format_bytes(copy)
                )
            } else {
                String::new()
            },
            crate::memory::format_bytes(crate::error::rerun_ceiling(least, ceiling, ceiling))
        );
    }
    let ceiling = ceiling - copy;
    diag::init(true, None, None)?;
    let to = Format::parse(&args.to)?;
    let from = detect(&args.input)?;
    if from == to {
        anyhow::bail!(
            "{} is already a {} dataset",
            args.input.display(),
            to.name()
        );
    }
    let out = &args.output;
    match to {
        Format::V21 => {
            let _lock = OutputLock::acquire(out)?;
            recover(out)?;
            if out.exists() && !args.overwrite && std::fs::read_dir(out)?.next().is_some() {
                anyhow::bail!("{} exists; pass --overwrite to replace it", out.display());
            }
            let staging = sibling(out, crate::layout::STAGING_SUFFIX);
            let opts = LayoutOptions {
                row_group_bytes: layout_row_group_bytes(ceiling),
                ..LayoutOptions::default()
            };
            let s = to_v21(&args.input, &staging, None, None, &opts);
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(e.into());
                }
            };
            publish(&staging, out)?;
            diag!(
                "dataset {} (v2.1): {} episodes, {} frames, {} tasks, {} videos",
                out.display(),
                s.episodes,
                s.frames,
                s.tasks,
                s.videos
            );
        }
        Format::V30 => {
            let plan = MemoryPlan::new(ceiling, snapshot().rss(), 0, "nothing")?;
            let s = to_v30(
                &args.input,
                out,
                WriterOptions {
                    buffer_bytes: crate::convert::run::stable_buffer_bytes(
                        plan.writer_buffer_bytes,
                    ),
                    overwrite: args.overwrite,
                    ..WriterOptions::default()
                },
            )?;
            diag!(
                "dataset {} (v3.0): {} episodes, {} frames, {} tasks",
                out.display(),
                s.total_episodes,
                s.total_frames,
                s.total_tasks
            );
        }
    }
    Ok(Exit::Ok)
}

/// `merge` of v2.1 datasets (e.g. `convert --format v2.1 --shard K/N` outputs): each is
/// converted back to v3.0 in `<OUT>.v21-merge/`, the parts are merged as usual, and the result
/// is laid out as v2.1 onto the output. Bounded like its three steps.
pub(crate) fn merge_v21(args: &crate::cli::MergeArgs, ceiling: u64) -> anyhow::Result<Exit> {
    use crate::convert::merge::{MergeOptions, merge};
    let out = &args.output;
    let _lock = OutputLock::acquire(out)?;
    recover(out)?;
    if out.exists() && !args.overwrite && std::fs::read_dir(out)?.next().is_some() {
        anyhow::bail!("{} exists; pass --overwrite to replace it", out.display());
    }
    let work = sibling(out, ".v21-merge");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let result = (|| -> anyhow::Result<crate::layout::LayoutSummary> {
        let plan = MemoryPlan::new(ceiling, snapshot().rss(), 0, "nothing")?;
        let buffer_bytes = crate::convert::run::stable_buffer_bytes(plan.writer_buffer_bytes);
        let mut parts = Vec::new();
        for (k, d) in args.datasets.iter().enumerate() {
            let part = work.join(format!("part-{k}"));
            match detect(d)? {
                Format::V21 => {
                    to_v30(
                        d,
                        &part,
                        WriterOptions {
                            buffer_bytes,
                            ..WriterOptions::default()
                        },
                    )?;
                    parts.push(part);
                }
                Format::V30 => parts.push(d.clone()),
            }
        }
        let merged = work.join("merged");
        merge(&MergeOptions {
            inputs: parts,
            output: merged.clone(),
            overwrite: false,
            buffer_bytes,
            progress: false,
            ..MergeOptions::default()
        })?;
        let staging = sibling(out, crate::layout::STAGING_SUFFIX);
        let opts = LayoutOptions {
            row_group_bytes: layout_row_group_bytes(ceiling),
            ..LayoutOptions::default()
        };
        let s = to_v21(&merged, &staging, None, None, &opts)?;
        publish(&staging, out)?;
        Ok(s)
    })();
    let _ = std::fs::remove_dir_all(&work);
    let s = result?;
    if !args.quiet {
        diag!(
            "dataset {} (v2.1): {} episodes, {} frames, {} tasks from {} datasets",
            out.display(),
            s.episodes,
            s.frames,
            s.tasks,
            args.datasets.len()
        );
    }
    Ok(Exit::Ok)
}
