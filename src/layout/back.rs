//! v2.1 → v3.0: the episodes of a v2.1 dataset this crate wrote, read back one batch of rows
//! at a time and written through the normal [`DatasetWriter`] with their statistics copied
//! (`begin_copied_episode`), so the v3.0 tables equal the original ones. The conversion log
//! is carried over. Video features are joined back by `back_video`, which uses this for the
//! other features; [`super::to_v30`] picks between them.

use std::fs::File;
use std::path::Path;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::v21::{for_each_line, stats_from_json};
use super::{bad, v21_data_path};
use crate::dataset::MANIFEST_NAME;
use crate::dataset::existing::{READ_BATCH_ROWS, value_at};
use crate::dataset::{DatasetSummary, DatasetWriter, Frame, WriterOptions};
use crate::error::{Error, Result};

/// Copies the data rows and the statistics of `spec`'s features (the non-video features) of
/// every episode of the v2.1 dataset at `src` into a v3.0 dataset at `out`.
pub(super) fn copy_episodes(
    src: &Path,
    out: &Path,
    spec: crate::dataset::DatasetSpec,
    opts: WriterOptions,
) -> Result<DatasetSummary> {
    let n_feat = spec.features.len();
    // Per-episode task and stats, streamed from the two jsonl files in step.
    let mut episodes: Vec<(u64, String, u64)> = Vec::new();
    let ep_path = src.join("meta/episodes.jsonl");
    for_each_line(&ep_path, |v, n| {
        let i = v["episode_index"].as_u64();
        let len = v["length"].as_u64();
        let task = v["tasks"][0].as_str();
        match (i, len, task) {
            (Some(i), Some(len), Some(t)) if i == episodes.len() as u64 => {
                episodes.push((i, t.to_string(), len));
                Ok(())
            }
            _ => Err(bad(
                &ep_path,
                format!("line {n}: episode_index/tasks/length missing or out of order"),
            )),
        }
    })?;
    let mut writer = DatasetWriter::create(out, spec.clone(), opts)?;
    let stats_path = src.join("meta/episodes_stats.jsonl");
    let mut k = 0usize;
    for_each_line(&stats_path, |v, n| {
        let (i, task, len) = episodes
            .get(k)
            .cloned()
            .ok_or_else(|| bad(&stats_path, format!("line {n}: more stats than episodes")))?;
        if v["episode_index"].as_u64() != Some(i) {
            return Err(bad(
                &stats_path,
                format!("line {n}: episode_index is not {i}"),
            ));
        }
        let mut stats = Vec::with_capacity(n_feat);
        for f in &spec.features {
            let s = stats_from_json(&v["stats"][&f.name], f.kind.image_size().is_some())
                .ok_or_else(|| {
                    bad(
                        &stats_path,
                        format!(
                            "line {n}: stats of {} missing or without quantiles (only datasets \
                             this tool wrote can be converted back)",
                            f.name
                        ),
                    )
                })?;
            stats.push(s);
        }
        writer.begin_copied_episode(&task, stats)?;
        let r = read_episode(src, i, len, &spec, |fr| writer.push_frame(fr));
        if let Err(e) = r {
            writer.abort_episode();
            return Err(e);
        }
        writer.end_episode()?;
        k += 1;
        Ok(())
    })?;
    if k != episodes.len() {
        return Err(bad(
            &stats_path,
            format!("{k} stats lines for {} episodes", episodes.len()),
        ));
    }
    if let Ok(log) = std::fs::read(src.join("meta").join(MANIFEST_NAME)) {
        writer.put_meta_file(MANIFEST_NAME, log);
    }
    writer.finish()
}

/// Streams the frames of v2.1 episode `i` (its own parquet) to `sink`.
fn read_episode(
    src: &Path,
    i: u64,
    len: u64,
    spec: &crate::dataset::DatasetSpec,
    mut sink: impl FnMut(Frame) -> Result<()>,
) -> Result<()> {
    let p = src.join(v21_data_path(i));
    let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(Error::parquet(&p))?;
    let n_feat = spec.features.len();
    let mask = ProjectionMask::roots(builder.parquet_schema(), 0..n_feat);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(Error::parquet(&p))?;
    let mut seen = 0u64;
    for b in reader {
        let b = b.map_err(Error::arrow(&p))?;
        if b.num_columns() != n_feat {
            return Err(bad(&p, "data columns do not match info.json"));
        }
        for row in 0..b.num_rows() {
            let mut values = Vec::with_capacity(n_feat);
            for (feat, col) in spec.features.iter().zip(b.columns()) {
                values.push(value_at(&p, feat, col.as_ref(), row)?);
            }
            sink(Frame { values })?;
            seen += 1;
        }
    }
    if seen != len {
        return Err(bad(
            &p,
            format!("episode {i}: {seen} rows, episodes.jsonl says {len}"),
        ));
    }
    Ok(())
}
