//! The writer's side of video features: its [`VideoSet`] is made at the first episode with the
//! video budget, gives each finished episode its spans, and takes stream-copied episodes.

use std::path::Path;

use super::*;
use crate::dataset::video::{DEFAULT_VIDEO_BUDGET_BYTES, VideoSet, VideoSpan};
use crate::error::Result;
use crate::memory::Budget;

impl DatasetWriter {
    /// Bounds the frames in flight to the video encoders (decoded RGB plus encoded bytes, and
    /// the decode threads' scratch); default [`DEFAULT_VIDEO_BUDGET_BYTES`]. Set it before the
    /// first episode.
    pub(crate) fn set_video_budget(&mut self, budget: Budget) {
        self.video_budget = Some(budget);
    }

    /// Starts the video encoders of the episode being begun (the set itself at the first one).
    pub(super) fn begin_video(&mut self) -> Result<()> {
        if !VideoSet::needed(&self.spec) {
            return Ok(());
        }
        if !self.video_checked {
            VideoSet::check(&self.spec, &self.opts.video)?;
            self.video_checked = true;
        }
        if self.video.is_none() {
            let budget = self.video_budget.clone().unwrap_or_else(|| {
                Budget::new(
                    "video frames in flight",
                    DEFAULT_VIDEO_BUDGET_BYTES,
                    DEFAULT_VIDEO_BUDGET_BYTES,
                )
            });
            let mut set = VideoSet::new(
                &self.staging,
                &self.spec,
                &self.opts.video,
                self.opts.chunks_size,
                budget,
            )?;
            for (feature, rel) in &self.video_carried {
                set.carry_file(*feature, rel.clone());
            }
            for &(feature, chunk, file, frames) in &self.video_resume {
                set.resume(feature, chunk, file, frames)?;
            }
            self.video = Some(set);
        }
        match &mut self.video {
            Some(v) if self.copying => v.begin_copied_episode(),
            Some(v) => v.begin_episode(),
            None => Ok(()),
        }
    }

    /// Finishes the episode's videos; on failure the episode is aborted (and the writer is
    /// unusable if completed episodes lost their video).
    pub(super) fn end_video(&mut self) -> Result<Vec<(usize, VideoSpan)>> {
        let Some(v) = &mut self.video else {
            return Ok(Vec::new());
        };
        let rows = self.episode.as_ref().map_or(0, |e| e.frames);
        match v.end_episode(rows) {
            Ok(spans) => Ok(spans),
            Err(e) => {
                if v.is_broken() {
                    self.failed = true;
                }
                self.abort_episode();
                Err(e)
            }
        }
    }

    /// Gives a copied episode (see [`Self::begin_copied_episode`]) the video of feature
    /// `feature`: `frames` frames from frame `from_frame` of the MP4 file `src`, stream-copied
    /// (not re-encoded). The frames pushed for a copied episode carry placeholders for video
    /// features (see [`existing::StoredDataset::read_frames`]).
    pub(crate) fn copy_video(
        &mut self,
        feature: usize,
        src: &Path,
        from_frame: u64,
        frames: u64,
    ) -> Result<()> {
        if !self.episode.as_ref().is_some_and(|e| e.copied) {
            return Err(self.err("copy_video outside a copied episode"));
        }
        match &mut self.video {
            Some(v) => v.copy_segment(feature, src, from_frame, frames),
            None => Err(self.err("the dataset has no video features")),
        }
    }
}
