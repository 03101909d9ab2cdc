//! `merge`: joins datasets written by `convert` (typically the shards of one job) into one, as
//! if every bag had been converted in one run: episodes ordered by their bags (path or start
//! time, as the shards were made, from their conversion logs), renumbered, global `index`
//! contiguous, tasks merged by first appearance, per-episode statistics copied and the dataset
//! statistics re-aggregated.
//!
//! Shards of one input list are contiguous, so each one's episodes land in the merged order as
//! one block: then each shard is adopted whole ([`DatasetWriter::adopt`]): its data files are
//! hard-linked (the first) or rewritten with the feature chunks copied raw and only the
//! numbering columns re-encoded, its video files hard-linked. Otherwise (interleaved inputs,
//! replaced bags) frames are streamed episode by episode through the writer (batches of a few
//! rows) and videos stream-copied per episode. Memory stays flat either way.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::lock::OutputLock;
use super::manifest::{BagEntry, CONVERTED, MANIFEST_NAME, Manifest, TOOL_VERSION};
use crate::dataset::existing::StoredDataset;
use crate::dataset::{Adopted, DatasetWriter, WriterOptions, recover_staging};
use crate::diag;
use crate::error::{Error, Result};

/// What to merge.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    pub overwrite: bool,
    /// Raw rows the writer buffers before encoding ([`crate::dataset::WriterOptions::buffer_bytes`]).
    pub buffer_bytes: usize,
    pub progress: bool,
    /// Bags (log paths) whose episodes in the first input are left out because a later input
    /// holds their replacement (`convert --replace-changed`).
    pub superseded: Vec<String>,
}

/// What a merge produced.
#[derive(Debug, Serialize)]
pub struct MergeReport {
    pub(crate) output: String,
    pub datasets: usize,
    pub episodes: u64,
    pub(crate) frames: u64,
    pub tasks: u64,
    /// Failed bags carried over from the inputs' logs.
    pub(crate) failed: usize,
    /// The inputs were adopted whole (their files linked or copied raw); `None` when episodes
    /// were streamed through the writer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whole: Option<WholeFiles>,
}

/// How the files of inputs adopted whole were placed.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct WholeFiles {
    /// Data files hard-linked (their numbering did not change: the first input's).
    pub data_linked: usize,
    /// Data files copied whole (numbering unchanged but linking not possible).
    pub data_copied: usize,
    /// Data files rewritten with their feature chunks copied raw and only `episode_index`,
    /// `index` and `task_index` re-encoded.
    pub data_renumbered: usize,
    pub(crate) videos_linked: usize,
    pub(crate) videos_copied: usize,
}

fn bad(path: &Path, what: impl Into<String>) -> Error {
    Error::Dataset {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// One episode to copy.
struct Item<'a> {
    key: (bool, u64, String),
    dataset: usize,
    entry: &'a BagEntry,
}

/// Why the dataset `d` (log `m`) cannot be merged with the first one, naming the first
/// difference and how to fix it; `None` when they come from one conversion.
fn shard_difference(
    first: &StoredDataset,
    first_log: &Manifest,
    d: &StoredDataset,
    m: &Manifest,
) -> Option<String> {
    let (here, there) = (
        first.path.display().to_string(),
        d.path.display().to_string(),
    );
    let fix = "merge joins the shards of one conversion: convert every shard with the same \
               --config file (write one with `bag2dataset convert BAG -o OUT --print-config > \
               job.toml`) and --order, then reconvert the shards that differ (--force), or \
               leave them out of this merge";
    if m.config_hash != first_log.config_hash
        && let Some(diff) =
            crate::convert::config::config_difference(&first_log.config, &m.config, &here, &there)
    {
        return Some(format!("was converted with another config: {diff}; {fix}"));
    }
    if m.order != first_log.order {
        return Some(format!(
            "its episodes are ordered by {} and {}'s by {}; {fix}",
            m.order, here, first_log.order
        ));
    }
    if let Some(diff) = first.spec.first_difference(&d.spec, &here, &there) {
        return Some(format!(
            "its features differ from {here}'s (the bags hold other topics, types or image \
             sizes): {diff}; {fix}"
        ));
    }
    if m.config_hash != first_log.config_hash {
        return Some(format!(
            "was converted with another config than {here} (config hash {} vs {}); {fix}",
            &m.config_hash[..12.min(m.config_hash.len())],
            &first_log.config_hash[..12.min(first_log.config_hash.len())]
        ));
    }
    None
}

/// The inputs read and checked, their episodes in merged order.
struct Prepared {
    stores: Vec<StoredDataset>,
    logs: Vec<Manifest>,
    /// Sorted by key: the merged episode order.
    entries: Vec<(usize, BagEntry)>,
}

impl Prepared {
    /// Whether every input's episodes form one block of the merged order, in their own order
    /// (all of them, none left out): then each input can be adopted whole.
    fn whole_inputs(&self) -> Option<Vec<usize>> {
        let mut order: Vec<usize> = Vec::new();
        let mut next_of = vec![0u64; self.stores.len()];
        for (k, e) in &self.entries {
            if order.last() != Some(k) {
                if order.contains(k) {
                    return None;
                }
                order.push(*k);
            }
            if e.episode_index != Some(next_of[*k]) {
                return None;
            }
            next_of[*k] += 1;
        }
        let complete = self
            .stores
            .iter()
            .enumerate()
            .all(|(k, d)| next_of[k] == d.episodes.len() as u64);
        (complete && order.len() == self.stores.len()).then_some(order)
    }
}

/// Whether merging `opts.inputs` stream-copies videos with ffmpeg (video datasets whose
/// episodes cannot be adopted whole, see the module docs); `false` for image datasets. The
/// command plans that child's memory only when it runs.
pub(crate) fn stream_copies_video(opts: &MergeOptions) -> Result<bool> {
    let p = prepare(opts)?;
    let video = p.stores[0]
        .spec
        .features
        .iter()
        .any(|f| matches!(f.kind, crate::dataset::FeatureKind::Video { .. }));
    Ok(video && p.whole_inputs().is_none())
}

/// Merges `opts.inputs` into `opts.output`.
pub fn merge(opts: &MergeOptions) -> Result<MergeReport> {
    let _lock = OutputLock::acquire(&opts.output)?;
    recover_staging(&opts.output)?;
    let prepared = prepare(opts)?;
    let whole = prepared.whole_inputs();
    let adopting = whole.is_some();
    let Prepared {
        stores,
        logs,
        entries,
    } = prepared;
    let (first, first_log) = (&stores[0], &logs[0]);
    let create = if whole.is_some() {
        DatasetWriter::create_adopting
    } else {
        DatasetWriter::create
    };
    let mut writer = create(
        &opts.output,
        first.spec.clone(),
        WriterOptions {
            buffer_bytes: opts.buffer_bytes,
            overwrite: opts.overwrite,
            chunks_size: first.chunks_size,
            ..WriterOptions::default()
        },
    )?;
    let mut adopted = Adopted::default();
    match whole {
        Some(order) => {
            for k in order {
                if opts.progress {
                    diag!(
                        "adopting {} ({} episodes)",
                        stores[k].path.display(),
                        stores[k].episodes.len()
                    );
                }
                let a = writer.adopt(&stores[k])?;
                adopted.episodes += a.episodes;
                adopted.frames += a.frames;
                adopted.data_linked += a.data_linked;
                adopted.data_copied += a.data_copied;
                adopted.data_renumbered += a.data_renumbered;
                adopted.videos_linked += a.videos_linked;
                adopted.videos_copied += a.videos_copied;
            }
        }
        None => copy_episodes(&mut writer, &stores, &entries, opts.progress)?,
    }
    let mut manifest = first_log.clone();
    manifest.tool_version = TOOL_VERSION.to_string();
    manifest.bags.clear();
    for (new_index, (_, entry)) in entries.iter().enumerate() {
        let mut e = entry.clone();
        e.episode_index = Some(new_index as u64);
        manifest.bags.push(e);
    }
    // Failed bags stay listed (and are retried by a convert into the merged dataset), unless
    // another shard converted them.
    let mut failed = 0;
    for m in &logs {
        for b in m.bags.iter().filter(|b| b.status != CONVERTED) {
            if manifest.bags.iter().all(|x| x.path != b.path) {
                manifest.bags.push(b.clone());
                failed += 1;
            }
        }
    }
    manifest.sort();
    writer.put_meta_file(MANIFEST_NAME, manifest.to_json().into_bytes());
    let s = writer.finish()?;
    Ok(MergeReport {
        output: opts.output.display().to_string(),
        datasets: stores.len(),
        episodes: s.total_episodes,
        frames: s.total_frames,
        tasks: s.total_tasks,
        failed,
        whole: adopting.then_some(WholeFiles {
            data_linked: adopted.data_linked,
            data_copied: adopted.data_copied,
            data_renumbered: adopted.data_renumbered,
            videos_linked: adopted.videos_linked,
            videos_copied: adopted.videos_copied,
        }),
    })
}

/// Streams each episode's frames through the writer (videos stream-copied per episode).
fn copy_episodes(
    writer: &mut DatasetWriter,
    stores: &[StoredDataset],
    entries: &[(usize, BagEntry)],
    progress: bool,
) -> Result<()> {
    let n_feat = stores[0].spec.features.len();
    let video_features: Vec<usize> = (0..n_feat)
        .filter(|&i| {
            matches!(
                stores[0].spec.features[i].kind,
                crate::dataset::FeatureKind::Video { .. }
            )
        })
        .collect();
    for (new_index, (k, entry)) in entries.iter().enumerate() {
        let d = &stores[*k];
        let old = entry.episode_index.unwrap_or_default() as usize;
        let ep = &d.episodes[old];
        if progress {
            diag!(
                "[{}/{}] episode {old} of {} ({})",
                new_index + 1,
                entries.len(),
                d.path.display(),
                entry.path
            );
        }
        writer.begin_copied_episode(&ep.task, ep.stats[..n_feat].to_vec())?;
        // Video: the episode's frames are stream-copied out of its file (no re-encoding).
        let r = video_features.iter().try_for_each(|&f| {
            let (file, first) = d.video_of(old, f)?;
            writer.copy_video(f, &file, first, ep.length)
        });
        let r = r.and_then(|()| d.read_frames(old, |f| writer.push_frame(f)));
        if let Err(e) = r {
            writer.abort_episode();
            return Err(e);
        }
        writer.end_episode()?;
    }
    Ok(())
}

/// Reads and checks the inputs and puts their episodes in merged order.
fn prepare(opts: &MergeOptions) -> Result<Prepared> {
    if opts.inputs.is_empty() {
        return Err(Error::Usage("merge: no input datasets".into()));
    }
    let mut stores = Vec::new();
    let mut logs = Vec::new();
    for p in &opts.inputs {
        let d = StoredDataset::open(p)?;
        let m = Manifest::read(p)?.ok_or_else(|| {
            bad(
                p,
                format!("has no conversion log (meta/{MANIFEST_NAME}); merge needs it to order episodes by bag"),
            )
        })?;
        stores.push(d);
        logs.push(m);
    }
    let (first, first_log) = (&stores[0], &logs[0]);
    for (d, m) in stores.iter().zip(&logs).skip(1) {
        if let Some(why) = shard_difference(first, first_log, d, m) {
            return Err(bad(&d.path, why));
        }
    }
    let by_start = first_log.order == "start-time";
    let mut items = Vec::new();
    for (k, (d, m)) in stores.iter().zip(&logs).enumerate() {
        let converted: Vec<&BagEntry> = m.bags.iter().filter(|b| b.status == CONVERTED).collect();
        if converted.len() != d.episodes.len() {
            return Err(bad(
                &d.path,
                format!(
                    "its log lists {} converted bags but it holds {} episodes",
                    converted.len(),
                    d.episodes.len()
                ),
            ));
        }
        for e in converted {
            if k == 0 && opts.superseded.contains(&e.path) {
                continue;
            }
            let ep = e.episode_index.filter(|i| (*i as usize) < d.episodes.len());
            if ep.is_none() {
                return Err(bad(&d.path, format!("log entry {} has no episode", e.path)));
            }
            let key = if by_start {
                (
                    e.start_time_ns.is_none(),
                    e.start_time_ns.unwrap_or(0),
                    e.path.clone(),
                )
            } else {
                (false, 0, e.path.clone())
            };
            items.push(Item {
                key,
                dataset: k,
                entry: e,
            });
        }
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    for w in items.windows(2) {
        if w[0].entry.fingerprint == w[1].entry.fingerprint || w[0].entry.path == w[1].entry.path {
            return Err(bad(
                &stores[w[1].dataset].path,
                format!(
                    "bag {} is also in {}; shards must not overlap",
                    w[1].entry.path,
                    stores[w[0].dataset].path.display()
                ),
            ));
        }
    }

    let entries = items
        .into_iter()
        .map(|it| (it.dataset, it.entry.clone()))
        .collect();
    Ok(Prepared {
        stores,
        logs,
        entries,
    })
}
