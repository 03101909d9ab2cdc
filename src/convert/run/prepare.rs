//! Preparing a run: the config resolved (given, or zero-config from the first bag of the whole
//! ordered list), the dataset fps, the conversion log consulted (skip, append, refuse), and the
//! bags to convert with their place in the report.

use std::path::{Path, PathBuf};

use super::*;
use crate::convert::config::ConvertConfig;
use crate::convert::manifest::{
    BagEntry, BagIdentity, FAILED, MANIFEST_NAME, Manifest, TOOL_VERSION, config_hash,
};
use crate::convert::select::Order;
use crate::convert::source::{BagSource, FirstBag, OpenedBags, ordered_sources, scan_cap};
use crate::dataset::video::VideoCodec;
use crate::error::{Error, Result};

/// Task text of a bag: `--task`, else a `<bag>.task.txt` sidecar, else the config's.
pub(super) fn task_for(bag: &Path, opts: &RunOptions, cfg: &ConvertConfig) -> String {
    if let Some(t) = &opts.task {
        return t.clone();
    }
    let sidecar = PathBuf::from(format!("{}.task.txt", bag.display()));
    if let Ok(t) = std::fs::read_to_string(&sidecar)
        && !t.trim().is_empty()
    {
        return t.trim().to_string();
    }
    cfg.task.clone()
}

/// The config a run uses: the given one, or zero-config from the first readable bag (see
/// [`FirstBag::measure`]).
pub(crate) fn resolve_config(
    bags: &[PathBuf],
    given: Option<ConvertConfig>,
) -> Result<ConvertConfig> {
    let first = FirstBag::measure(bags, given.as_ref(), false, &OpenedBags::default())?;
    first
        .config
        .ok_or_else(|| Error::Usage("no input bags".into()))
}

/// Prints the mapping zero-config chose (stderr), so a user sees what a run without --config
/// does and can save it.
pub(super) fn announce_zero_config(cfg: &ConvertConfig, bags: &[PathBuf]) {
    crate::diag!(
        "no --config: using this mapping, chosen from {} (save it with --print-config):",
        bags.first()
            .map(|b| b.display().to_string())
            .unwrap_or_default()
    );
    for f in &cfg.features {
        crate::diag!(
            "  {:<32} <- {} {}",
            f.name,
            f.topic.as_deref().unwrap_or("?"),
            f.field.as_deref().unwrap_or("")
        );
    }
    crate::diag!("  timeline: {}", cfg.timeline.as_deref().unwrap_or("?"));
}

/// The writer buffer given to the writer: the plan's, rounded down to a power of two. The plan's
/// figure moves with the process's baseline RSS by a few KiB between runs; rounding keeps page
/// boundaries, and so the dataset's bytes, the same from run to run under one `--max-memory`
/// (and smaller is always within the budget).
pub(crate) fn stable_buffer_bytes(planned: usize) -> usize {
    1usize << (usize::BITS - 1 - planned.max(1).leading_zeros())
}

/// Everything a run decided before converting: config, log, which bags to convert.
pub(super) struct Prepared {
    pub(super) cfg: ConvertConfig,
    pub(super) manifest: Manifest,
    /// The output holds a dataset with a log that this run continues.
    pub(super) appending: bool,
    /// The output exists but is an empty directory (or `--overwrite`/`--force`): replace it.
    pub(super) replace: bool,
    pub(super) outcomes: Vec<BagOutcome>,
    pub(super) todo: Vec<QueuedBag>,
    /// Log entries changed by this run (a publish is needed even without new episodes).
    pub(super) recorded: usize,
    /// The first bag failure, typed (returned as is when no bag could be converted).
    pub(super) first_error: Option<Error>,
    /// The dataset's fps when the timeline runs at its own rate and this run's first bag is
    /// not the input list's first (a shard): `RunOptions::dataset_fps`, or the rate of the
    /// whole list's first bag, so every shard writes the fps one run would.
    pub(super) dataset_fps: Option<u32>,
    /// Video features (codec, width, height) of the whole list's first bag that plans.
    pub(super) cameras: Vec<(VideoCodec, u32, u32)>,
    /// The recordings kept open since they were measured (the last one, and scanned ones).
    pub(super) opened: OpenedBags,
}

/// A bag to convert: its measured source, its identity for the log, its row in the report.
pub(super) struct QueuedBag {
    pub(super) source: BagSource,
    pub(super) id: BagIdentity,
    /// Position in `Prepared::outcomes`.
    pub(super) slot: usize,
}

pub(super) fn entry(job_path: &Path, id: &BagIdentity, hash: &str, start: Option<u64>) -> BagEntry {
    BagEntry {
        path: job_path.display().to_string(),
        size: id.size,
        mtime_ns: id.mtime_ns,
        fingerprint: id.fingerprint.clone(),
        config_hash: hash.to_string(),
        tool_version: TOOL_VERSION.to_string(),
        status: FAILED.to_string(),
        start_time_ns: start,
        episode_index: None,
        frames: None,
        dropped: None,
        task: None,
        wall_s: 0.0,
        error: None,
    }
}

pub(super) fn outcome(path: &Path, status: &'static str) -> BagOutcome {
    BagOutcome {
        bag: path.display().to_string(),
        status,
        episode_index: None,
        task: None,
        wall_s: 0.0,
        peak_rss: None,
        report: None,
        error: None,
        detail: None,
        recovered: None,
    }
}

/// Inputs → ordered, sharded bags; the output's log → config, skipped and to-convert bags.
pub(super) fn prepare(opts: &RunOptions) -> Result<Prepared> {
    let found = collect_inputs(&opts.inputs, opts.settle)?;
    let listed = found.bags;
    let mut abs: Vec<PathBuf> = listed.iter().map(|b| absolute(b)).collect();
    abs.sort();
    abs.dedup();
    // Each bag is measured once (start time, largest chunk, identity): in path order only this
    // shard's bags, in start-time order all of them (the order needs every start time).
    let total = abs.len();
    let opened = OpenedBags::new(scan_cap(opts.ceiling));
    let (all_paths, selected): (Vec<PathBuf>, Vec<BagSource>) = match opts.order {
        Order::Path => {
            let picked = abs
                .iter()
                .enumerate()
                .filter(|(i, _)| opts.shard.is_none_or(|s| s.holds(*i, total)))
                .map(|(_, p)| BagSource::measure(p, &opened))
                .collect();
            (abs, picked)
        }
        Order::StartTime => {
            let ordered = ordered_sources(abs, opts.order, &opened);
            let paths = ordered.iter().map(|s| s.path.clone()).collect();
            let picked = ordered
                .into_iter()
                .enumerate()
                .filter(|(i, _)| opts.shard.is_none_or(|s| s.holds(*i, total)))
                .map(|(_, s)| s)
                .collect();
            (paths, picked)
        }
    };

    let out = &opts.output;
    let fresh = opts.overwrite || opts.force;
    let exists = out.exists();
    let existing = if exists && !fresh && !is_empty_dir(out) {
        match Manifest::read(out)? {
            Some(m) => Some(m),
            None => {
                return Err(Error::Dataset {
                    path: out.clone(),
                    what: format!(
                        "already exists and has no conversion log (meta/{MANIFEST_NAME}), so \
                         it cannot be appended to; pass --overwrite to replace it"
                    ),
                });
            }
        }
    } else {
        None
    };
    // Zero-config, the dataset's fps and the video cameras come from the first bag of the whole
    // ordered list, not from this shard's part, so every shard (and every --jobs child) of one
    // input list writes the same dataset.
    let given = match (&opts.config, &existing) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(m)) => Some(ConvertConfig::from_toml(
            &m.config,
            "the dataset's conversion log",
        )?),
        // Nothing to convert (an empty shard): no config is needed.
        (None, None) if selected.is_empty() => Some(
            toml::from_str("features = []")
                .map_err(|e| Error::Internal(format!("empty config: {e}")))?,
        ),
        (None, None) => None,
    };
    let zero_config = given.is_none();
    let first = if selected.is_empty() {
        FirstBag {
            config: given,
            ..FirstBag::default()
        }
    } else {
        FirstBag::measure(&all_paths, given.as_ref(), true, &opened)?
    };
    let mut cfg = first
        .config
        .clone()
        .ok_or_else(|| Error::Usage("no input bags".into()))?;
    if zero_config && opts.progress {
        announce_zero_config(&cfg, &all_paths);
    }
    if let Some(fps) = opts.fps {
        cfg.fps = Some(fps);
    }
    if !selected.is_empty() {
        cfg.check()?;
    }
    let hash = config_hash(&cfg);
    if let Some(m) = &existing {
        if m.config_hash != hash {
            let diff = crate::convert::config::config_difference(
                &m.config,
                &cfg.to_toml(),
                "the dataset",
                "this run",
            )
            .unwrap_or_else(|| {
                format!(
                    "config hash {} in its log, {} now",
                    &m.config_hash[..12.min(m.config_hash.len())],
                    &hash[..12]
                )
            });
            return Err(Error::Config(format!(
                "{}: was converted with another configuration ({diff}); a dataset holds one \
                 conversion: run without --config to reuse the dataset's, pass --force to \
                 reconvert the inputs into a fresh dataset, or write to another output",
                out.display(),
            )));
        }
        if m.order != opts.order.name() {
            return Err(Error::Config(format!(
                "{}: its episodes are ordered by {}, not {}; pass --order {} (or --force)",
                out.display(),
                m.order,
                opts.order.name(),
                m.order
            )));
        }
    }
    let appending = existing.is_some();
    let mut manifest = existing.unwrap_or_else(|| Manifest::new(&cfg, opts.order.name()));
    manifest.config_hash = hash.clone();
    let mut outcomes = Vec::new();
    let mut todo = Vec::new();
    let mut recorded = 0;
    for source in selected {
        let path = source.path.clone();
        let start = source.start_time_ns;
        let id = match source.identity.clone() {
            Ok(id) => id,
            Err(e) => {
                let mut o = outcome(&path, "failed");
                o.error = Some(e);
                outcomes.push(o);
                continue;
            }
        };
        let key = path.display().to_string();
        if let Some(done) = manifest.converted_with(&key, &id.fingerprint) {
            let mut o = outcome(&path, "skipped");
            o.episode_index = done.episode_index.map(|e| e as usize);
            o.task = done.task.clone();
            outcomes.push(o);
        } else if let Some(done) = manifest.converted_at(&key) {
            let what = format!(
                "{key}: changed since it was converted into episode {} (size {} → {}); pass \
                 --replace-changed to reconvert just this bag into its episode, or --force to \
                 reconvert everything",
                done.episode_index.unwrap_or_default(),
                done.size,
                id.size
            );
            let mut e = entry(&path, &id, &hash, start);
            e.error = Some(what.clone());
            manifest.record(e);
            recorded += 1;
            let mut o = outcome(&path, "failed");
            o.error = Some(what);
            outcomes.push(o);
        } else {
            todo.push(QueuedBag {
                source,
                id,
                slot: outcomes.len(),
            });
            outcomes.push(outcome(&path, "not_started"));
        }
    }
    for u in found.unsettled {
        let mut o = outcome(&u.path, "settling");
        o.detail = Some(format!(
            "changed {:.0} s ago (--settle {} s): still being written or copied; left for the \
             next run (--settle 0 takes it now)",
            u.changed_s_ago,
            opts.settle.as_secs()
        ));
        outcomes.push(o);
    }
    let dataset_fps = match (opts.dataset_fps, &cfg.timeline) {
        (Some(fps), _) => Some(fps),
        (None, Some(_)) if cfg.fps.is_none() && opts.shard.is_some() && !appending => first.rate,
        _ => None,
    };
    Ok(Prepared {
        cfg,
        manifest,
        appending,
        replace: fresh || (exists && is_empty_dir(out)),
        outcomes,
        todo,
        recorded,
        first_error: None,
        dataset_fps,
        cameras: first.cameras,
        opened,
    })
}

/// Extra room the converter keeps in video mode beyond its smallest plan, for the encoders'
/// pipe and stderr threads and the spill files' buffers: 8 MiB.
pub(crate) const CONVERTER_VIDEO_EXTRA: u64 = 8 << 20;
