//! Adopting a whole published dataset (a shard, for `merge`): its data files are taken over
//! under the writer's next file names (hard-linked when their numbering does not change,
//! otherwise rewritten with the feature chunks copied raw, see [`crate::dataset::raw_copy`]),
//! its video files are linked whole, and its episode rows are appended with shifted indices,
//! new file numbers and the statistics a single run would have written: the user features'
//! as stored, the default columns' computed again for the new numbering.

use std::collections::BTreeMap;

use super::*;
use crate::dataset::existing::{self, StoredDataset};
use crate::dataset::raw_copy::{Copied, Renumber, SyncBehind, copy_data_file};
use crate::dataset::video::adopt::{adopt_video_files, next_file_name};

/// What [`DatasetWriter::adopt`] did with one dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Adopted {
    pub(crate) episodes: u64,
    pub(crate) frames: u64,
    /// Data files hard-linked (numbering unchanged).
    pub(crate) data_linked: usize,
    /// Data files copied whole (numbering unchanged, linking not possible).
    pub(crate) data_copied: usize,
    /// Data files rewritten: feature chunks raw, numbering columns re-encoded.
    pub(crate) data_renumbered: usize,
    /// Video files hard-linked / copied whole.
    pub(crate) videos_linked: usize,
    pub(crate) videos_copied: usize,
}

impl DatasetWriter {
    /// Appends every episode of the published dataset `src` (same spec) after the episodes
    /// written so far, taking over its files whole. Between episodes only; the open data file
    /// is closed first. Video datasets can be adopted only before any episode was encoded by
    /// this writer (adopted videos are continued by later episodes, not the other way round).
    pub(crate) fn adopt(&mut self, src: &StoredDataset) -> Result<Adopted> {
        self.check_usable()?;
        if let Some(ep) = &self.episode {
            return Err(self.err(format!(
                "episode {} is still open; end or abort it before adopting {}",
                ep.index,
                src.path.display()
            )));
        }
        let (here, there) = (
            self.out.display().to_string(),
            src.path.display().to_string(),
        );
        if let Some(diff) = self.spec.first_difference(&src.spec, &here, &there) {
            return Err(self.err(format!("cannot adopt {there}: {diff}")));
        }
        if self.video.is_some() {
            return Err(self.err(format!(
                "cannot adopt {there} after episodes were encoded: its videos would come \
                 before theirs"
            )));
        }
        let r = self.adopt_inner(src);
        if r.is_err() {
            // Files may have been placed half-way: the staged dataset is not consistent.
            self.failed = true;
        }
        r
    }

    fn adopt_inner(&mut self, src: &StoredDataset) -> Result<Adopted> {
        let n_feat = self.spec.features.len();
        let bad = |what: String| Error::Dataset {
            path: src.path.clone(),
            what,
        };
        // Its episodes must tile its rows 0..N in order, as every published dataset's do.
        let mut expect = 0u64;
        for ep in &src.episodes {
            if ep.from_index != expect || ep.to_index != ep.from_index + ep.length || ep.length == 0
            {
                return Err(bad(format!(
                    "episode {} covers rows {}..{} ({} frames), expected to start at {expect}",
                    ep.episode_index, ep.from_index, ep.to_index, ep.length
                )));
            }
            if ep.stats.len() != n_feat + crate::dataset::DEFAULT_COLUMNS.len() {
                return Err(bad(format!(
                    "episode {}: {} statistics for {} columns",
                    ep.episode_index,
                    ep.stats.len(),
                    n_feat + crate::dataset::DEFAULT_COLUMNS.len()
                )));
            }
            expect = ep.to_index;
        }
        // Tasks are merged by first appearance, as episodes are written.
        let mut task_map = Vec::with_capacity(src.tasks.len());
        for t in &src.tasks {
            let i = match self.task_ids.get(t) {
                Some(i) => *i,
                None => {
                    let i = self.tasks.len() as u64;
                    self.tasks.push(t.clone());
                    self.task_ids.insert(t.clone(), i);
                    i
                }
            };
            task_map.push(i as i64);
        }
        let renumber = Renumber {
            episode_offset: self.episodes_done as i64,
            index_offset: self.total_frames as i64,
            tasks: task_map.clone(),
        };
        let mut done = Adopted::default();

        // Data files, in (chunk, file) order, under our next names.
        self.close_file()?;
        let files = existing::data_files(&src.path)?;
        for ep in &src.episodes {
            if !files.contains_key(&(ep.data_chunk, ep.data_file)) {
                return Err(bad(format!(
                    "episode {} is in data file {}, which is missing",
                    ep.episode_index,
                    crate::dataset::data_file_path(ep.data_chunk, ep.data_file)
                )));
            }
        }
        let mut renamed: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
        let mut syncs = SyncBehind::default();
        for (key, rel) in &files {
            let at = self.next_file;
            let new_rel = crate::dataset::data_file_path(at.0, at.1);
            let how = copy_data_file(
                &src.path.join(rel),
                &self.staging.join(&new_rel),
                &self.schema,
                &self.props,
                &renumber,
                &mut syncs,
            )?;
            match how {
                Copied::Linked => done.data_linked += 1,
                Copied::Whole => done.data_copied += 1,
                Copied::Renumbered => done.data_renumbered += 1,
            }
            renamed.insert(*key, at);
            self.data_files.push(new_rel);
            self.advance_file_name(at.0, at.1);
        }
        syncs.wait()?;

        // Video files, linked whole after each camera's last one.
        let mut next_video: BTreeMap<usize, (usize, usize)> = self
            .video_resume
            .iter()
            .map(|&(f, c, fi, _)| (f, next_file_name((c, fi), self.opts.chunks_size)))
            .collect();
        let spans: Vec<(u64, &[(usize, VideoSpan)])> = src
            .episodes
            .iter()
            .map(|e| (e.episode_index, e.videos.as_slice()))
            .collect();
        let videos = adopt_video_files(
            &src.path,
            &self.staging,
            &self.spec,
            &spans,
            &mut next_video,
            self.opts.chunks_size,
        )?;
        done.videos_linked = videos.linked;
        done.videos_copied = videos.files.len() - videos.linked;
        for (feature, rel) in &videos.files {
            self.video_carried.push((*feature, rel.clone()));
        }
        for &(f, c, fi, n) in &videos.last {
            self.video_resume.retain(|r| r.0 != f);
            self.video_resume.push((f, c, fi, n));
        }

        // Episode rows and statistics.
        for ep in &src.episodes {
            let index = self.episodes_done;
            let from = self.total_frames;
            let task = task_map
                .get(
                    src.tasks
                        .iter()
                        .position(|t| *t == ep.task)
                        .ok_or_else(|| {
                            bad(format!(
                                "episode {}: task {:?} is not in its tasks.parquet",
                                ep.episode_index, ep.task
                            ))
                        })?,
                )
                .copied()
                .unwrap_or_default() as u64;
            let mut stats: Vec<FeatureStats> = ep.stats[..n_feat].to_vec();
            let defaults = default_column_stats(self.spec.fps, ep.length, from, index, task)
                .ok_or_else(|| bad(format!("episode {}: no frames", ep.episode_index)))?;
            stats.extend(defaults.into_iter().map(|(_, s)| s));
            let (chunk, file) = renamed[&(ep.data_chunk, ep.data_file)];
            let spans: Vec<(usize, VideoSpan)> = ep
                .videos
                .iter()
                .map(|(f, s)| {
                    let (c, fi) = videos.renamed[&(*f, s.chunk, s.file)];
                    (
                        *f,
                        VideoSpan {
                            chunk: c,
                            file: fi,
                            ..*s
                        },
                    )
                })
                .collect();
            self.episodes_meta.push(&EpisodeRow {
                episode_index: index as i64,
                task: &self.tasks[task as usize],
                length: ep.length as i64,
                data_chunk: chunk as i64,
                data_file: file as i64,
                from_index: from as i64,
                to_index: (from + ep.length) as i64,
                stats: &stats,
                videos: &spans,
            })?;
            for (agg, s) in self.aggregates.iter_mut().zip(&stats) {
                agg.add(s);
            }
            self.episodes_done += 1;
            self.total_frames += ep.length;
            done.episodes += 1;
            done.frames += ep.length;
        }
        Ok(done)
    }
}
