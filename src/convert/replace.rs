//! `convert --replace-changed`: a bag that changed after it was converted (a copy that was
//! still running, a recording re-exported) gets its episode reconverted in place, without
//! reconverting the other bags. The changed bags are converted into a side dataset with the
//! dataset's own config and fps, then [`merge`] joins the dataset (minus their old episodes)
//! and the side dataset into the output in bag order, published by one rename as every write
//! is: a run killed on the way leaves the old dataset, and the next run does it again. Cost:
//! the dataset's rows are rewritten once (streamed, bounded by the ceiling); no other bag is
//! read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::ConvertConfig;
use super::manifest::{Manifest, fingerprint};
use super::merge::{MergeOptions, merge};
use super::run::{RunOptions, collect_bags, run};
use super::select::Order;
use crate::dataset::existing::StoredDataset;
use crate::diag;
use crate::error::{Error, Result};
use crate::memory::plan::MemoryPlan;

/// The bags among `opts.inputs` whose converted episode in `opts.output` was made from other
/// bytes (absolute paths, as the log names them).
fn changed_bags(opts: &RunOptions) -> Result<Vec<PathBuf>> {
    let Some(log) = Manifest::read(&opts.output)? else {
        return Ok(Vec::new());
    };
    let mut changed = Vec::new();
    for bag in collect_bags(&opts.inputs, opts.settle)? {
        let abs = std::fs::canonicalize(&bag).unwrap_or(bag);
        let key = abs.display().to_string();
        if log.converted_at(&key).is_some()
            && let Ok(id) = fingerprint(&abs)
            && log.converted_with(&key, &id.fingerprint).is_none()
        {
            changed.push(abs);
        }
    }
    Ok(changed)
}

/// Reconverts the changed bags of `opts` into their episodes of `opts.output`; returns them.
/// Nothing changes when none changed. A changed bag that fails to convert leaves the dataset
/// as it was and is the error.
pub(crate) fn replace_changed(opts: &RunOptions) -> Result<Vec<PathBuf>> {
    let changed = changed_bags(opts)?;
    if changed.is_empty() {
        return Ok(changed);
    }
    let out = &opts.output;
    let log = Manifest::read(out)?.ok_or_else(|| Error::Dataset {
        path: out.clone(),
        what: "its conversion log disappeared".into(),
    })?;
    let stored = StoredDataset::open(out)?;
    let side = PathBuf::from(format!("{}.replacing", out.display()));
    if side.exists() {
        std::fs::remove_dir_all(&side).map_err(|e| Error::io(&side, e))?;
    }
    if opts.progress {
        diag!(
            "replacing the episodes of {} changed bag(s): {}",
            changed.len(),
            changed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let result = (|| -> Result<()> {
        let sub = RunOptions {
            inputs: changed.clone(),
            output: side.clone(),
            config: Some(ConvertConfig::from_toml(
                &log.config,
                "the dataset's conversion log",
            )?),
            overwrite: true,
            force: false,
            order: Order::parse(&log.order)?,
            shard: None,
            settle: Duration::ZERO,
            // Own-rate timelines: the dataset's fps, not the changed bag's rate.
            dataset_fps: Some(stored.spec.fps),
            fps: None,
            memory_log: None,
            memory_chart: None,
            ..opts.clone()
        };
        let report = run(&sub)?;
        if let Some(b) = report.bags.iter().find(|b| b.status == "failed") {
            return Err(Error::Content {
                path: b.bag.clone().into(),
                what: format!(
                    "the changed bag could not be reconverted ({}); its old episode stays",
                    b.error.as_deref().unwrap_or("failed")
                ),
            });
        }
        let plan = MemoryPlan::new(opts.ceiling, crate::memory::snapshot().rss(), 0, "nothing")?;
        merge(&MergeOptions {
            inputs: vec![out.clone(), side.clone()],
            output: out.clone(),
            overwrite: true,
            buffer_bytes: super::run::stable_buffer_bytes(plan.writer_buffer_bytes),
            progress: false,
            superseded: changed.iter().map(|p| p.display().to_string()).collect(),
        })?;
        Ok(())
    })();
    remove_side(&side);
    result.map(|()| changed)
}

fn remove_side(side: &Path) {
    let _ = std::fs::remove_dir_all(side);
    let _ = std::fs::remove_file(format!("{}.lock", side.display()));
}
