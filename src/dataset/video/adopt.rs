//! Taking over the video files of another dataset whole (for `merge`): each camera's files are
//! hard-linked (copied where linking is not possible) under the next free file names of the
//! camera, never re-encoded or stream-copied. An episode keeps its time range in its file; only
//! the file's (chunk, file) numbers change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::VideoSpan;
use crate::dataset::raw_copy::link_or_copy;
use crate::dataset::{DatasetSpec, FeatureKind, video_file_path};
use crate::error::{Error, Result};

/// The video files of one adopted dataset, as placed in the new one.
#[derive(Debug, Default)]
pub(crate) struct AdoptedVideos {
    /// (feature, old chunk, old file) → (new chunk, new file).
    pub(crate) renamed: BTreeMap<(usize, usize, usize), (usize, usize)>,
    /// Every placed file: (feature, path relative to the dataset root).
    pub(crate) files: Vec<(usize, String)>,
    /// Per feature: its last file (chunk, file) and the frames in it, which later encoded
    /// episodes continue.
    pub(crate) last: Vec<(usize, usize, usize, u64)>,
    /// Files linked (the rest were copied).
    pub(crate) linked: usize,
}

/// The name after `(chunk, file)` with `chunks_size` files per chunk folder.
pub(crate) fn next_file_name((chunk, file): (usize, usize), chunks_size: usize) -> (usize, usize) {
    if file + 1 >= chunks_size {
        (chunk + 1, 0)
    } else {
        (chunk, file + 1)
    }
}

/// Links the video files `episodes` (episode index, its spans per video feature; of the dataset
/// at `src`) use into `staging`, each camera's numbered from `next[feature]` on (`(0, 0)` when
/// absent); `next` is advanced past them.
pub(crate) fn adopt_video_files(
    src: &Path,
    staging: &Path,
    spec: &DatasetSpec,
    episodes: &[(u64, &[(usize, VideoSpan)])],
    next: &mut BTreeMap<usize, (usize, usize)>,
    chunks_size: usize,
) -> Result<AdoptedVideos> {
    let mut used: BTreeSet<(usize, usize, usize)> = BTreeSet::new();
    let mut frames_in: BTreeMap<(usize, usize, usize), u64> = BTreeMap::new();
    for &(episode_index, videos) in episodes {
        for (feature, span) in videos {
            if !matches!(
                spec.features.get(*feature).map(|f| &f.kind),
                Some(FeatureKind::Video { .. })
            ) {
                return Err(Error::Dataset {
                    path: src.to_path_buf(),
                    what: format!(
                        "episode {}: video span for feature {feature}, which is not a video",
                        episode_index
                    ),
                });
            }
            let key = (*feature, span.chunk, span.file);
            used.insert(key);
            let end = (span.to_timestamp * f64::from(spec.fps)).round() as u64;
            let e = frames_in.entry(key).or_insert(0);
            *e = (*e).max(end);
        }
    }
    let mut out = AdoptedVideos::default();
    let mut last: BTreeMap<usize, (usize, usize, u64)> = BTreeMap::new();
    // In (feature, chunk, file) order: each camera's files keep their order.
    for key @ (feature, chunk, file) in used {
        let name = &spec.features[feature].name;
        let at = *next.entry(feature).or_insert((0, 0));
        let rel = video_file_path(name, at.0, at.1);
        if link_or_copy(
            &src.join(video_file_path(name, chunk, file)),
            &staging.join(&rel),
        )? {
            out.linked += 1;
        }
        out.renamed.insert(key, at);
        out.files.push((feature, rel));
        last.insert(feature, (at.0, at.1, frames_in[&key]));
        next.insert(feature, next_file_name(at, chunks_size));
    }
    out.last = last
        .into_iter()
        .map(|(f, (c, fi, n))| (f, c, fi, n))
        .collect();
    Ok(out)
}
