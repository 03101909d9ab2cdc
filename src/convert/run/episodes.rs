//! The episode loop: one bag after another through the pipeline into the one writer, a bag
//! that fails recorded and left out, interruption honoured at episode boundaries.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;
use crate::convert::config::ConvertConfig;
use crate::convert::manifest::{CONVERTED, MANIFEST_NAME, TOOL_VERSION};
use crate::convert::pipeline::{EpisodeReport, convert_bag};
use crate::convert::plan::BagPlan;
use crate::dataset::{DatasetSpec, DatasetWriter, WriterOptions};
use crate::diag;
use crate::error::{Error, Result};
use crate::memory::log::MemoryLog;

/// What [`convert_all`] did.
pub(super) struct Converted {
    pub(super) log: MemoryLog,
    pub(super) spec: Option<DatasetSpec>,
    pub(super) published: bool,
    pub(super) interrupted: bool,
    /// Episodes and frames of the output dataset after the run.
    pub(super) totals: (u64, u64),
    pub(super) peak_rss: u64,
}

pub(super) fn interrupted(opts: &RunOptions) -> bool {
    opts.interrupt
        .as_ref()
        .is_some_and(|f| f.load(Ordering::SeqCst))
}

pub(super) fn convert_all(
    opts: &RunOptions,
    cfg: &ConvertConfig,
    prep: &mut Prepared,
    mut budgets: Option<&mut Budgets>,
) -> Result<Converted> {
    let mut log = MemoryLog::create(opts.memory_log.as_deref())?;
    let mut writer: Option<DatasetWriter> = None;
    let mut spec: Option<DatasetSpec> = None;
    let mut stopped = false;
    let mut run_peak = 0u64;
    let n = prep.todo.len();
    let todo = std::mem::take(&mut prep.todo);
    let hash = prep.manifest.config_hash.clone();
    for (i, job) in todo.iter().enumerate() {
        if interrupted(opts) {
            stopped = true;
            if opts.progress {
                diag!(
                    "interrupted: stopping before {} ({} of {n} bags not started)",
                    job.source.path.display(),
                    n - i
                );
            }
            break;
        }
        let Some(b) = budgets.as_deref_mut() else {
            break;
        };
        b.renew_if_cancelled()?;
        let (mem, monitor) = (&b.mem, b.monitor.clone());
        let b = &*b;
        if opts.progress {
            let p = monitor.progress.get_or_init(|| {
                let total = todo.iter().map(|j| j.source.bytes()).sum();
                crate::progress::Progress::new(total, true)
            });
            p.set_label(&format!(
                "[{}/{n}] {}",
                i + 1,
                job.source
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ));
        }
        let t0 = Instant::now();
        let path = &job.source.path;
        let task = task_for(path, opts, cfg);
        if opts.progress {
            diag!("[{}/{n}] {}", i + 1, path.display());
        }
        run_peak = run_peak.max(monitor.peak_rss.swap(0, Ordering::Relaxed));
        let mut recovered = None;
        let result = (|| -> Result<(EpisodeReport, u64)> {
            let rec = prep.opened.open(path)?;
            if let Some(note) = rec.recovery() {
                crate::diag::warn(&format!("{}: {note}", path.display()));
                recovered = Some(match rec.ros1_note() {
                    Some(n) => RecoveredReport::new(n),
                    // A ROS 2 file without a usable summary, read by a scan.
                    None => RecoveredReport {
                        reason: "scanned".into(),
                        messages_recovered: rec.index().message_count(),
                        chunks: rec.index().chunks.len(),
                        bytes_missing: None,
                        records_lost: 0,
                        warnings: vec![note],
                    },
                });
            }
            let plan = BagPlan::new(&rec, cfg, spec.as_ref().map(|s| s.fps).or(prep.dataset_fps))?;
            if writer.is_none() {
                let wopts = WriterOptions {
                    row_group_bytes: mem.row_group_bytes,
                    buffer_bytes: stable_buffer_bytes(mem.writer_buffer_bytes),
                    overwrite: prep.replace,
                    video: crate::dataset::video::VideoOptions {
                        max_encoders: b.encoders.map_or(0, |e| e.slots),
                        ..cfg.video_config().options()
                    },
                    ..WriterOptions::default()
                };
                let w = if prep.appending {
                    DatasetWriter::append(&opts.output, wopts)?
                } else {
                    DatasetWriter::create(&opts.output, plan.spec.clone(), wopts)?
                };
                let mut w = w;
                w.set_video_budget(mem.video.clone());
                spec = Some(w.spec().clone());
                writer = Some(w);
            }
            if let Some(s) = &spec
                && *s != plan.spec
            {
                return Err(Error::Config(format!(
                    "{}: its features differ from the dataset's: {}",
                    path.display(),
                    s.first_difference(&plan.spec, "the dataset", "this bag")
                        .unwrap_or_else(|| "the same features, another layout".into())
                )));
            }
            let w = writer
                .as_mut()
                .ok_or_else(|| Error::Internal("dataset writer missing".into()))?;
            let episode = w.episodes_done();
            w.begin_episode(&task, plan.expected_frames)?;
            match convert_bag(&rec, &plan, mem, w, &mut log, episode as usize, &monitor) {
                Ok(report) => {
                    if report.frames == 0 {
                        w.abort_episode();
                        return Err(Error::Content {
                            path: path.to_path_buf(),
                            what: format!(
                                "no frame survived alignment ({} ticks, {} dropped, {} trimmed)",
                                report.ticks, report.dropped, report.trimmed
                            ),
                        });
                    }
                    // The spilled cameras are encoded here: the monitor may stop them too.
                    w.end_episode()
                        .map_err(|e| monitor.over_ceiling_error(mem.tree_ceiling).unwrap_or(e))?;
                    Ok((report, episode))
                }
                Err(e) => {
                    w.abort_episode();
                    Err(e)
                }
            }
        })();
        let wall_s = t0.elapsed().as_secs_f64();
        prep.opened.done(path);
        let bag_peak = monitor.peak_rss.load(Ordering::Relaxed);
        run_peak = run_peak.max(bag_peak);
        let mut en = entry(path, &job.id, &hash, job.source.start_time_ns);
        en.wall_s = (wall_s * 1000.0).round() / 1000.0;
        en.task = Some(task.clone());
        let o = &mut prep.outcomes[job.slot];
        o.wall_s = wall_s;
        o.task = Some(task);
        o.peak_rss = Some(bag_peak);
        match result {
            Ok((report, episode)) => {
                if opts.progress {
                    diag!(
                        "      episode {episode}: {} frames, {} dropped, {} trimmed, {:.2}s",
                        report.frames,
                        report.dropped,
                        report.trimmed,
                        wall_s
                    );
                }
                en.status = CONVERTED.to_string();
                en.episode_index = Some(episode);
                en.frames = Some(report.frames);
                en.dropped = Some(report.dropped);
                o.status = match (&recovered, prep.appending) {
                    (Some(_), _) => "recovered",
                    (None, true) => "appended",
                    (None, false) => "ok",
                };
                o.recovered = recovered;
                o.episode_index = Some(episode as usize);
                o.report = Some(report);
                prep.manifest.record(en);
                prep.recorded += 1;
            }
            Err(e) => {
                if opts.progress {
                    diag!("      failed: {e}");
                }
                o.status = "failed";
                o.error = Some(e.to_string());
                en.error = Some(e.to_string());
                prep.manifest.record(en);
                prep.recorded += 1;
                // A writer that could not restore its files after the failure cannot go on;
                // --fail-fast stops at any failure. Either way nothing is published: the
                // previous dataset stays as it was.
                if opts.fail_fast || writer.as_ref().is_some_and(DatasetWriter::has_failed) {
                    drop(writer.take());
                    return Err(e);
                }
                prep.first_error.get_or_insert(e);
            }
        }
    }
    if let Some(b) = budgets {
        b.monitor.peak_rss.fetch_max(run_peak, Ordering::Relaxed);
    }
    // Failures alone still update an existing dataset's log (they are listed there).
    if writer.is_none() && prep.appending && prep.recorded > 0 {
        let w = DatasetWriter::append(&opts.output, WriterOptions::default())?;
        spec = Some(w.spec().clone());
        writer = Some(w);
    }
    let mut published = false;
    let mut totals = (0, 0);
    match writer {
        Some(mut w) if w.episodes_done() > 0 => {
            prep.manifest.tool_version = TOOL_VERSION.to_string();
            prep.manifest.sort();
            w.put_meta_file(MANIFEST_NAME, prep.manifest.to_json().into_bytes());
            let summary = w.finish()?;
            totals = (summary.total_episodes, summary.total_frames);
            published = true;
        }
        Some(w) => drop(w),
        None => {}
    }
    if !published
        && prep.appending
        && let Ok(info) = crate::dataset::InfoJson::read(&opts.output)
    {
        totals = (info.total_episodes, info.total_frames);
    }
    let nothing = totals.0 == 0;
    if nothing && !stopped && prep.outcomes.iter().any(|o| o.status == "failed") {
        let errors: Vec<String> = prep
            .outcomes
            .iter()
            .filter_map(|o| o.error.clone())
            .collect();
        // One bag: its own error, typed (e.g. over the memory ceiling), not a summary.
        if errors.len() == 1
            && let Some(e) = prep.first_error.take()
        {
            return Err(e);
        }
        return Err(Error::NoneConverted { errors });
    }
    Ok(Converted {
        log,
        spec,
        published,
        interrupted: stopped,
        totals,
        peak_rss: run_peak,
    })
}
