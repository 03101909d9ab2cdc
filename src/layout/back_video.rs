//! v2.1 → v3.0 for datasets with video features: the data rows and their statistics go
//! through the normal writer with the video features left out (they have no column), into
//! `<OUT>.v30-tmp`; each camera's episode MP4s are then joined into v3.0 files by stream copy
//! (as the writer joins its segments: 200 MB files, timestamps rewritten to `N · 512` ticks),
//! and the episodes parquet, `info.json` and `stats.json` are rewritten for the whole spec
//! (video spans and video statistics added). The directory is renamed onto the output last.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::v21::{V21Base, stats_from_json};
use super::{bad, sibling, v21_video_path};
use crate::dataset::meta::{
    EpisodeRow, EpisodesWriter, InfoTotals, info_json, stats_features, stats_json, write_synced,
};
use crate::dataset::stats::StatsAggregate;
use crate::dataset::video::{VideoSpan, run_stream_copy};
use crate::dataset::{
    DEFAULT_CHUNKS_SIZE, DatasetSpec, DatasetSummary, FeatureKind, MIB, VIDEO_FILES_SIZE_IN_MB,
    WriterOptions, episodes_file_path, video_file_path,
};
use crate::error::{Error, Result};

/// Joins `segments` (whole episode MP4s) into `out` by stream copy.
fn join(ffmpeg: &Path, segments: &[PathBuf], list: &Path, out: &Path, fps: u32) -> Result<()> {
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let mut text = String::from("ffconcat version 1.0\n");
    for s in segments {
        let p = s.display().to_string().replace('\'', "'\\''");
        text.push_str(&format!("file '{p}'\n"));
    }
    std::fs::write(list, text).map_err(|e| Error::io(list, e))?;
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-f", "concat", "-safe", "0", "-i"])
        .arg(list)
        .args(["-map", "0:v", "-c", "copy"]);
    let o = run_stream_copy(&mut cmd, fps, out, format!("ffmpeg join {}", out.display())).map_err(
        |e| Error::Video {
            key: out.display().to_string(),
            what: format!("cannot run {}: {e}", ffmpeg.display()),
        },
    )?;
    let _ = std::fs::remove_file(list);
    if !o.status.success() {
        return Err(Error::Video {
            key: out.display().to_string(),
            what: format!(
                "joining {} episode videos failed: {}",
                segments.len(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Writes the v2.1 video dataset at `src` as v3.0 at `out`.
pub(crate) fn to_v30_video(
    src: &Path,
    out: &Path,
    opts: WriterOptions,
    base: &V21Base,
) -> Result<DatasetSummary> {
    let info_path = src.join("meta/info.json");
    let spec = base.info.spec(&info_path)?;
    if out.exists()
        && !opts.overwrite
        && std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some())
    {
        return Err(bad(out, "exists; pass --overwrite to replace it"));
    }
    let data_spec = DatasetSpec {
        features: spec
            .features
            .iter()
            .filter(|f| !matches!(f.kind, FeatureKind::Video { .. }))
            .cloned()
            .collect(),
        ..spec.clone()
    };
    let tmp = sibling(out, ".v30-tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let ffmpeg = opts.video.ffmpeg.clone();
    let summary = super::back::copy_episodes(
        src,
        &tmp,
        data_spec.clone(),
        WriterOptions {
            overwrite: true,
            ..opts
        },
    )?;
    let r = finish_video(src, &tmp, &spec, &data_spec, &ffmpeg, &summary);
    if let Err(e) = r {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    super::v21::publish(&tmp, out)?;
    Ok(summary)
}

fn finish_video(
    src: &Path,
    tmp: &Path,
    spec: &DatasetSpec,
    data_spec: &DatasetSpec,
    ffmpeg: &Path,
    summary: &DatasetSummary,
) -> Result<()> {
    let fps = spec.fps;
    let src_abs = std::fs::canonicalize(src).map_err(|e| Error::io(src, e))?;
    // Episode lengths, in order (a few bytes each).
    let mut lengths: Vec<u64> = Vec::new();
    super::v21::for_each_line(&src.join("meta/episodes.jsonl"), |v, _| {
        lengths.push(v["length"].as_u64().unwrap_or(0));
        Ok(())
    })?;
    // Per video feature (index in spec), per episode: its span in the joined files.
    let limit = VIDEO_FILES_SIZE_IN_MB * MIB;
    let mut spans: Vec<(usize, Vec<VideoSpan>)> = Vec::new();
    for (fi, f) in spec.features.iter().enumerate() {
        if !matches!(f.kind, FeatureKind::Video { .. }) {
            continue;
        }
        let key = &f.name;
        let mut out_spans = Vec::with_capacity(lengths.len());
        let mut pending: Vec<PathBuf> = Vec::new();
        let (mut bytes, mut frames) = (0u64, 0u64);
        let mut file = (0usize, 0usize);
        let list = tmp.join(format!(".concat-{fi:03}.txt"));
        for (i, len) in lengths.iter().enumerate() {
            let seg = src_abs.join(v21_video_path(key, i as u64));
            let size = std::fs::metadata(&seg)
                .map_err(|e| Error::io(&seg, e))?
                .len();
            if !pending.is_empty() && bytes + size >= limit {
                join(
                    ffmpeg,
                    &pending,
                    &list,
                    &tmp.join(video_file_path(key, file.0, file.1)),
                    fps,
                )?;
                pending.clear();
                (bytes, frames) = (0, 0);
                file = if file.1 + 1 >= DEFAULT_CHUNKS_SIZE {
                    (file.0 + 1, 0)
                } else {
                    (file.0, file.1 + 1)
                };
            }
            out_spans.push(VideoSpan {
                chunk: file.0,
                file: file.1,
                from_timestamp: frames as f64 / f64::from(fps),
                to_timestamp: (frames + len) as f64 / f64::from(fps),
            });
            pending.push(seg);
            bytes += size;
            frames += len;
        }
        if !pending.is_empty() {
            join(
                ffmpeg,
                &pending,
                &list,
                &tmp.join(video_file_path(key, file.0, file.1)),
                fps,
            )?;
        }
        spans.push((fi, out_spans));
    }

    // The episodes parquet for the whole spec: the stored rows plus video spans and stats.
    let ep_path = tmp.join(episodes_file_path(0, 0));
    let new_path = ep_path.with_extension("parquet.new");
    let mut w = EpisodesWriter::create(&new_path, spec)?;
    let names = stats_features(spec);
    let mut aggs = vec![StatsAggregate::default(); names.len()];
    let stats_path = src.join("meta/episodes_stats.jsonl");
    let f = std::fs::File::open(&stats_path).map_err(|e| Error::io(&stats_path, e))?;
    let mut lines = BufReader::new(f).lines();
    let n_data = data_spec.features.len();
    crate::dataset::existing::for_each_episode(tmp, data_spec, |e| {
        let line = lines
            .next()
            .ok_or_else(|| bad(&stats_path, "fewer lines than episodes"))?
            .map_err(|er| Error::io(&stats_path, er))?;
        let v: Value =
            serde_json::from_str(&line).map_err(|er| bad(&stats_path, format!("json: {er}")))?;
        let mut full = Vec::with_capacity(names.len());
        let mut k_data = 0;
        for f in &spec.features {
            if matches!(f.kind, FeatureKind::Video { .. }) {
                full.push(stats_from_json(&v["stats"][&f.name], true).ok_or_else(|| {
                    bad(
                        &stats_path,
                        format!("episode {}: stats of {} missing", e.episode_index, f.name),
                    )
                })?);
            } else {
                full.push(e.stats[k_data].clone());
                k_data += 1;
            }
        }
        full.extend(e.stats[n_data..].iter().cloned());
        for (a, s) in aggs.iter_mut().zip(&full) {
            a.add(s);
        }
        let videos: Vec<(usize, VideoSpan)> = spans
            .iter()
            .map(|(fi, v)| (*fi, v[e.episode_index as usize]))
            .collect();
        w.push(&EpisodeRow {
            episode_index: e.episode_index as i64,
            task: &e.task,
            length: e.length as i64,
            data_chunk: e.data_chunk as i64,
            data_file: e.data_file as i64,
            from_index: e.from_index as i64,
            to_index: e.to_index as i64,
            stats: &full,
            videos: &videos,
        })
    })?;
    w.close()?;
    std::fs::rename(&new_path, &ep_path).map_err(|e| Error::io(&ep_path, e))?;

    let tmp_info = crate::dataset::InfoJson::read(tmp)?;
    let info = info_json(
        spec,
        &InfoTotals {
            total_episodes: summary.total_episodes,
            total_frames: summary.total_frames,
            total_tasks: summary.total_tasks,
            chunks_size: tmp_info.chunks_size as usize,
            data_files_size_in_mb: tmp_info.data_files_size_in_mb.clone().unwrap_or_else(|| {
                serde_json::Number::from(crate::dataset::DEFAULT_DATA_FILE_BYTES >> 20)
            }),
        },
    );
    write_synced(&tmp.join("meta/info.json"), info.as_bytes())?;
    let stats: Vec<(String, crate::dataset::FeatureStats)> = names
        .iter()
        .zip(&aggs)
        .filter_map(|((n, _), a)| a.finish().map(|s| (n.clone(), s)))
        .collect();
    write_synced(&tmp.join("meta/stats.json"), stats_json(&stats).as_bytes())?;
    Ok(())
}
