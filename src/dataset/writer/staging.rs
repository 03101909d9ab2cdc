//! Staging and publishing: a dataset is written into `OUT.partial-<pid>-<n>` and renamed into
//! place by `finish`; appending stages a copy whose data files are hard links; leftovers of
//! killed runs are recovered or removed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::dataset::existing;
use crate::dataset::meta::{EpisodeRow, EpisodesWriter};
use crate::dataset::schema::{self};
use crate::dataset::spill::SpillStoreFactory;
use crate::dataset::stats::StatsAggregate;
use crate::dataset::video::VideoSet;
use crate::dataset::{DEFAULT_COLUMNS, DatasetSpec, MAX_ROW_GROUP_BYTES, WriterOptions};
use crate::error::{Error, Result};
use crate::process::pid_alive;

/// Distinguishes staging directories of several writers in one process.
pub(super) static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// fsyncs a directory so renames and new entries in it are durable.
pub(super) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Whether an existing path may be replaced by `overwrite`: a dataset or an empty directory,
/// never an arbitrary directory or file.
pub(super) fn replaceable(out: &Path) -> bool {
    out.join("meta/info.json").is_file() || fs::read_dir(out).is_ok_and(|mut d| d.next().is_none())
}

/// Finishes what a killed writer of `out` left behind: removes its `OUT.partial-<pid>-<n>`
/// staging directories (only those of processes no longer running) and, if it died between
/// moving the old dataset aside and renaming the new one in (`OUT` missing, a
/// `OUT.partial-<pid>-<n>.old` present), puts the old dataset back. Call it while holding the output's
/// lock. Returns what was done, one line each.
pub(crate) fn recover_staging(out: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let Some(name) = out.file_name() else {
        return Ok(notes);
    };
    let prefix = format!("{}.partial-", name.to_string_lossy());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = match fs::read_dir(&parent) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(notes),
        Err(e) => return Err(Error::io(&parent, e)),
    };
    let mut olds = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&parent))?;
        let fname = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = fname.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        if rest.ends_with(".old") {
            olds.push(path);
        } else {
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
            notes.push(format!(
                "removed {} (left by a run that stopped)",
                path.display()
            ));
        }
    }
    olds.sort();
    if !out.exists()
        && let Some(old) = olds.pop()
    {
        fs::rename(&old, out).map_err(io_err(out))?;
        sync_dir(&parent)?;
        notes.push(format!(
            "restored {} from {} (a publish was interrupted)",
            out.display(),
            old.display()
        ));
    }
    for old in olds {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
        notes.push(format!("removed {} (replaced dataset)", old.display()));
    }
    Ok(notes)
}

impl DatasetWriter {
    /// Continues the dataset at `out`: a staging copy is made of it (data files hard-linked,
    /// never modified; episode rows, tasks and per-episode stats read back), new episodes go
    /// into new data files, and [`Self::finish`] swaps the staged dataset in. Until then the
    /// existing dataset stays as it was.
    pub fn append(out: &Path, opts: WriterOptions) -> Result<Self> {
        let (spec, chunks_size) = existing::read_spec(out)?;
        let tasks = existing::read_tasks(out)?;
        let mut opts = opts;
        opts.chunks_size = chunks_size;
        let mut w = Self::start(out, spec, opts, true, true)?;
        let files = existing::data_files(out)?;
        for rel in files.values() {
            let (src, dst) = (out.join(rel), w.staging.join(rel));
            crate::dataset::raw_copy::link_or_copy(&src, &dst)?;
            w.data_files.push(rel.clone());
        }
        if let Some((chunk, file)) = files.keys().next_back() {
            w.advance_file_name(*chunk, *file);
        }
        for t in tasks {
            w.task_ids.insert(t.clone(), w.tasks.len() as u64);
            w.tasks.push(t);
        }
        // Episode rows are streamed: memory does not grow with the number of episodes.
        let spec = w.spec.clone();
        let mut total_frames = 0;
        // Per video feature: its last file and the frames in it; every video file.
        let mut last_video: BTreeMap<usize, ((usize, usize, usize), u64)> = BTreeMap::new();
        let mut video_files: std::collections::BTreeSet<(usize, usize, usize)> = Default::default();
        let episodes = existing::for_each_episode(out, &spec, |ep| {
            if ep.from_index != total_frames {
                return Err(Error::Dataset {
                    path: out.to_path_buf(),
                    what: format!(
                        "episode {} starts at index {}, expected {total_frames}",
                        ep.episode_index, ep.from_index
                    ),
                });
            }
            total_frames = ep.to_index;
            w.episodes_meta.push(&EpisodeRow {
                episode_index: ep.episode_index as i64,
                task: &ep.task,
                length: ep.length as i64,
                data_chunk: ep.data_chunk as i64,
                data_file: ep.data_file as i64,
                from_index: ep.from_index as i64,
                to_index: ep.to_index as i64,
                stats: &ep.stats,
                videos: &ep.videos,
            })?;
            for (feature, span) in &ep.videos {
                let key = (*feature, span.chunk, span.file);
                let frames = (span.to_timestamp * f64::from(spec.fps)).round() as u64;
                let e = last_video.entry(*feature).or_insert((key, 0));
                if key > e.0 {
                    *e = (key, 0);
                }
                if key == e.0 {
                    e.1 = e.1.max(frames);
                }
                video_files.insert(key);
            }
            for (agg, s) in w.aggregates.iter_mut().zip(&ep.stats) {
                agg.add(s);
            }
            Ok(())
        })?;
        w.episodes_done = episodes;
        w.total_frames = total_frames;
        // Video files are hard-linked like the data files; each camera's last file is
        // continued by the next episodes (see `VideoSet::resume`).
        for &(feature, chunk, file) in &video_files {
            let rel = crate::dataset::video_file_path(&spec.features[feature].name, chunk, file);
            let (src, dst) = (out.join(&rel), w.staging.join(&rel));
            crate::dataset::raw_copy::link_or_copy(&src, &dst)?;
            w.video_carried.push((feature, rel));
        }
        w.video_resume = last_video
            .into_iter()
            .map(|(feature, ((_, chunk, file), frames))| (feature, chunk, file, frames))
            .collect();
        Ok(w)
    }

    pub(super) fn start(
        out: &Path,
        spec: DatasetSpec,
        opts: WriterOptions,
        replaces: bool,
        check_video: bool,
    ) -> Result<Self> {
        schema::check_spec(&spec)?;
        if check_video && VideoSet::needed(&spec) {
            VideoSet::check(&spec, &opts.video)?;
        }
        if opts.row_group_bytes == 0 || opts.row_group_bytes > MAX_ROW_GROUP_BYTES {
            return Err(Error::Config(format!(
                "row group size {} bytes is outside 1..={MAX_ROW_GROUP_BYTES}",
                opts.row_group_bytes
            )));
        }
        if opts.buffer_bytes == 0 {
            return Err(Error::Config("writer buffer size must be > 0".into()));
        }
        if opts.chunks_size == 0 || opts.data_file_bytes == 0 {
            return Err(Error::Config(
                "chunks_size and data_file_bytes must be > 0".into(),
            ));
        }
        let dataset_err = |what: String| Error::Dataset {
            path: out.to_path_buf(),
            what,
        };
        let name = out
            .file_name()
            .ok_or_else(|| dataset_err("output path has no final component".into()))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let seq = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut staging_name = name.to_os_string();
        staging_name.push(format!(".partial-{}-{seq}", std::process::id()));
        let staging = parent.join(staging_name);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        }
        let ep_dir = staging.join("meta/episodes/chunk-000");
        fs::create_dir_all(&ep_dir).map_err(io_err(&ep_dir))?;
        let ep_path = staging.join(crate::dataset::episodes_file_path(0, 0));
        let episodes_meta = match EpisodesWriter::create(&ep_path, &spec) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };

        let schema = schema::data_schema(&spec);
        let props = data_properties(&spec, &schema, opts.buffer_bytes);
        let spill = Arc::new(SpillStoreFactory::new(staging.clone()));
        let columns = new_columns(&spec);
        let n_stats = spec.features.len() + DEFAULT_COLUMNS.len();
        Ok(DatasetWriter {
            out: out.to_path_buf(),
            staging,
            spec,
            opts,
            schema,
            props,
            spill,
            columns,
            defaults: DefaultBufs::default(),
            buffered_rows: 0,
            buffered_bytes: 0,
            file: None,
            next_file: (0, 0),
            data_files: Vec::new(),
            episode: None,
            episodes_done: 0,
            total_frames: 0,
            tasks: Vec::new(),
            task_ids: HashMap::new(),
            episodes_meta,
            aggregates: vec![StatsAggregate::default(); n_stats],
            failed: false,
            published: false,
            replaces,
            extra_meta: Vec::new(),
            video: None,
            video_budget: None,
            video_resume: Vec::new(),
            video_carried: Vec::new(),
            copying: false,
            video_checked: check_video,
        })
    }

    /// Renames the staging directory onto the output; an existing dataset (only with
    /// `overwrite`) is moved aside first and removed afterwards.
    pub(super) fn publish(&mut self) -> Result<()> {
        let out = self.out.clone();
        let mut aside = None;
        if out.exists() {
            if !(self.opts.overwrite || self.replaces) || !replaceable(&out) {
                return Err(self.err("appeared while writing; not replacing it"));
            }
            let mut name = self.staging.as_os_str().to_os_string();
            name.push(".old");
            let old = PathBuf::from(name);
            fs::rename(&out, &old).map_err(io_err(&out))?;
            aside = Some(old);
        } else if self.replaces {
            return Err(self.err("disappeared while appending; not publishing"));
        }
        fs::rename(&self.staging, &out).map_err(io_err(&out))?;
        self.published = true;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        if let Some(old) = aside {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        Ok(())
    }
}
