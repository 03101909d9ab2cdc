//! The hand-off of lerobot's image sample: which frames' images the stats stage decodes, planned
//! by the writer's numbering ([`FrameSampler`]) and delivered with the frame ([`Presampled`]).

use super::*;
use crate::dataset::stats::{ImageStats, SampledImage};
use crate::dataset::{FeatureKind, FeatureValue, Frame};
use crate::error::Result;

/// Decodes the image-statistics sample of frames off the writer's thread; made by
/// [`DatasetWriter::sampler`] after `begin_episode`, fed every frame in order.
#[derive(Debug, Clone)]
pub(crate) struct FrameSampler {
    /// Per feature: a copy of the episode's image stats (for its sample cursor) and the
    /// declared (height, width); `None` for vectors.
    pub(super) features: Vec<Option<(ImageStats, (u32, u32))>>,
    pub(super) next_frame: usize,
}

/// The decoded sample of one frame, for [`DatasetWriter::push_presampled`].
#[derive(Debug)]
pub(crate) struct Presampled {
    pub(super) frame_index: usize,
    pub(super) images: Vec<Option<SampledImage>>,
}

/// One image of a frame that lerobot's statistics sample takes, to decode (by
/// [`stats::sample_image`]) off the writer's thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlannedSample {
    /// Position among the frame's image features (the slot in [`Presampled`]).
    pub(crate) slot: usize,
    /// Index of the image in [`Frame::values`].
    pub(crate) value: usize,
    pub(crate) hits: u64,
    /// Declared (height, width) of the feature.
    pub(crate) expect: (u32, u32),
}

impl DatasetWriter {
    /// A sampler that decodes lerobot's image-statistics sample of this episode's frames, in
    /// frame order, anywhere (see [`Self::push_presampled`]).
    pub(crate) fn sampler(&self) -> Result<FrameSampler> {
        let ep = self
            .episode
            .as_ref()
            .ok_or_else(|| self.err("sampler without begin_episode"))?;
        let features = self
            .spec
            .features
            .iter()
            .zip(&ep.acc)
            .map(|(f, acc)| match (acc, &f.kind) {
                (
                    FeatureAcc::Image(st),
                    FeatureKind::Image { height, width, .. }
                    | FeatureKind::Video { height, width, .. },
                ) => Some((st.clone(), (*height, *width))),
                _ => None,
            })
            .collect();
        Ok(FrameSampler {
            features,
            next_frame: ep.frames as usize,
        })
    }
}

impl FrameSampler {
    /// Moves on to the next frame and says which of its images the sample takes: (frame
    /// index, number of image slots, the images to decode).
    pub(crate) fn plan(&mut self, frame: &Frame) -> (usize, usize, Vec<PlannedSample>) {
        let frame_index = self.next_frame;
        let mut planned = Vec::new();
        let mut slots = 0;
        for (value, (feature, v)) in self.features.iter_mut().zip(&frame.values).enumerate() {
            if let (Some((st, expect)), FeatureValue::Image { .. }) = (feature, v) {
                let hits = st.hits_at(frame_index);
                if hits > 0 {
                    planned.push(PlannedSample {
                        slot: slots,
                        value,
                        hits,
                        expect: *expect,
                    });
                }
                st.commit(frame_index, None);
                slots += 1;
            }
        }
        self.next_frame += 1;
        (frame_index, slots, planned)
    }
}

impl Presampled {
    /// The sample of frame `frame_index`, one entry per image feature.
    pub(crate) fn new(frame_index: usize, images: Vec<Option<SampledImage>>) -> Self {
        Presampled {
            frame_index,
            images,
        }
    }
}
