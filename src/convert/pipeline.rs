//! One bag → one episode, in four stages on their own threads joined by byte-bounded
//! channels ([`BudgetedSender`]):
//!
//! ```text
//! chunk reader ──samples──► aligner ──frames──► image stats ──frames──► writer (caller's thread)
//!  one chunk at a time       per-slot windows    sampled JPEG decodes    Arrow builders → Parquet
//! ```
//!
//! Every sample and frame travels with a permit from its budget ([`MemoryPlan`]); the channel
//! type admits no item without one, and dropping it at the next stage returns the bytes. A stage that fails cancels every budget, so no other stage
//! waits forever, and the episode is aborted (nothing of it reaches the dataset).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::damage::DamageReport;
use super::image::to_feature_value;
pub(crate) use super::monitor::{Monitor, spawn_monitor};
use super::plan::{BagPlan, SlotKind};
use crate::align::{Aligner, Sample, SampleValue, SlotReport, Tick};
use crate::bag::BagIndex;
use crate::convert::config::TimeSource;
use crate::dataset::stats::{self, SampledImage};
use crate::dataset::{DatasetWriter, FeatureValue, Frame, FrameSampler, Presampled};
use crate::error::{Error, Result};
use crate::input::Recording;
use crate::memory::log::MemoryLog;
use crate::memory::plan::MemoryPlan;
use crate::memory::{Budgeted, BudgetedReceiver, BudgetedSender, Permit, budgeted, snapshot};
use crate::msg::ImagePayload;

/// With `time_source = "header"`, how far a header stamp may trail its record time; slot
/// watermarks (in record time) are moved back by this much (1 s).
const HEADER_LATENCY_ALLOWANCE_NS: u64 = 1_000_000_000;

/// Fixed bytes counted per frame on top of its values.
const FRAME_OVERHEAD_BYTES: u64 = 128;

/// What the reader sends the aligner.
enum ReaderEvent {
    Sample(Sample),
    /// A chunk was consumed; per slot, every sample earlier than the watermark was sent.
    ChunkDone {
        watermarks: Vec<u64>,
    },
    /// Every chunk was read.
    End,
}

enum FrameEvent {
    /// A frame and its image-statistics sample (filled in by the image-stats stage).
    Frame(Frame, Option<Presampled>),
    End,
}

/// Figures of one converted bag.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EpisodeReport {
    pub ticks: u64,
    pub frames: u64,
    pub dropped: u64,
    pub trimmed: u64,
    chunks_read: u64,
    pub(crate) bytes_read: u64,
    messages_decoded: u64,
    pub slots: Vec<SlotReport>,
    /// Where the first few drops happened (tick time, slot label).
    drop_examples: Vec<(u64, String)>,
    /// Damaged data skipped.
    pub damage: DamageReport,
}

/// Converts one bag into the writer's current episode (begun by the caller).
#[allow(clippy::too_many_arguments)]
pub(crate) fn convert_bag(
    rec: &Recording,
    plan: &BagPlan,
    mem: &MemoryPlan,
    writer: &mut DatasetWriter,
    log: &mut MemoryLog,
    episode: usize,
    monitor: &Monitor,
) -> Result<EpisodeReport> {
    // Samples count in the samples budget; a frame holds its frames-budget bytes from the
    // aligner through the image statistics to the writer.
    let (sample_tx, sample_rx) = budgeted::<ReaderEvent>(mem.samples.clone());
    let (frame_tx, frame_rx) = budgeted::<FrameEvent>(mem.frames.clone());
    let (sampled_tx, sampled_rx) = budgeted::<FrameEvent>(mem.frames.clone());
    let mut report = EpisodeReport::default();
    let sampler = writer.sampler()?;
    let (reader_result, aligner_result, writer_result) = std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("chunk-reader".into())
            .spawn_scoped(scope, || {
                let r = read_stage(rec, plan, mem, &sample_tx, log, episode, monitor);
                if r.is_err() {
                    mem.cancel();
                }
                drop(sample_tx);
                r
            });
        let aligner = std::thread::Builder::new()
            .name("aligner".into())
            .spawn_scoped(scope, || {
                let r = align_stage(plan, mem, sample_rx, &frame_tx);
                if r.is_err() {
                    mem.cancel();
                }
                drop(frame_tx);
                r
            });
        let stats = std::thread::Builder::new()
            .name("image-stats".into())
            .spawn_scoped(scope, || {
                let r = image_stats_stage(rec.path(), frame_rx, &sampled_tx, sampler);
                if r.is_err() {
                    mem.cancel();
                }
                drop(sampled_tx);
                r
            });
        let w = match (&reader, &aligner, &stats) {
            (Ok(_), Ok(_), Ok(_)) => write_stage(writer, sampled_rx, monitor),
            // The stage that failed to start reports why when it is joined below.
            _ => Err(Error::Cancelled),
        };
        if w.is_err() {
            mem.cancel();
        }
        let reader = join_stage(reader, "chunk reader");
        let aligner = join_stage(aligner, "aligner");
        let stats = join_stage(stats, "image statistics");
        // A failed stage cancels the others: keep the first error that is not that echo.
        let w = match (w, stats) {
            (Err(e), _) if !matches!(e, Error::Cancelled) => Err(e),
            (_, Err(e)) => Err(e),
            (w, Ok(())) => w,
        };
        (reader, aligner, w)
    });
    // The first real error wins over the Cancelled it caused in the other stages.
    let (reader, aligned) = match (reader_result, aligner_result, writer_result) {
        (Ok(reader), Ok(aligned), Ok(())) => (reader, aligned),
        (r, a, w) => {
            let real = [r.err(), a.err(), w.err()]
                .into_iter()
                .flatten()
                .find(|e| !matches!(e, Error::Cancelled));
            return Err(real
                .or_else(|| monitor.over_ceiling_error(mem.tree_ceiling))
                .unwrap_or(Error::Cancelled));
        }
    };
    report.chunks_read = reader.chunks;
    report.bytes_read = reader.bytes_read;
    report.messages_decoded = reader.decoded;
    report.damage = reader.damage;
    report.ticks = aligned.ticks;
    report.frames = aligned.frames;
    report.dropped = aligned.dropped;
    report.trimmed = aligned.trimmed;
    report.slots = aligned.slots;
    report.drop_examples = aligned.drop_examples;
    Ok(report)
}

/// Joins a stage thread; a thread that could not start or panicked is an error, not a crash.
fn join_stage<T>(
    h: std::io::Result<std::thread::ScopedJoinHandle<'_, Result<T>>>,
    name: &str,
) -> Result<T> {
    match h {
        Ok(h) => h
            .join()
            .unwrap_or_else(|payload| Err(Error::thread_panicked(name, payload.as_ref()))),
        Err(e) => Err(Error::thread_start(name, e)),
    }
}

/// Per slot, the record times before which every one of its messages has been read, after
/// each visited chunk: the earliest start of the chunks still to come that hold the slot.
struct Watermarks {
    /// Per slot: positions (in visit order) of the chunks holding it, and the suffix minimum
    /// of their start times.
    positions: Vec<Vec<usize>>,
    suffix_min: Vec<Vec<u64>>,
    cursor: Vec<usize>,
}

impl Watermarks {
    fn new(index: &BagIndex, plan: &BagPlan) -> Self {
        let n = plan.slots.len();
        let mut positions = vec![Vec::new(); n];
        let mut starts = vec![Vec::new(); n];
        for (slot, sp) in plan.slots.iter().enumerate() {
            let conns = index.connections_of(&sp.topic);
            for (k, &ci) in plan.chunks.iter().enumerate() {
                let c = &index.chunks[ci];
                if c.holds_any(&conns) {
                    positions[slot].push(k);
                    starts[slot].push(c.start_ns);
                }
            }
        }
        let suffix_min = starts
            .into_iter()
            .map(|s| {
                let mut m = s.clone();
                for i in (0..m.len().saturating_sub(1)).rev() {
                    m[i] = m[i].min(m[i + 1]);
                }
                m
            })
            .collect();
        Watermarks {
            positions,
            suffix_min,
            cursor: vec![0; n],
        }
    }

    /// Watermarks once the chunk at visit position `k` is done.
    fn after(&mut self, k: usize, time_source: TimeSource) -> Vec<u64> {
        (0..self.positions.len())
            .map(|s| {
                while self.cursor[s] < self.positions[s].len()
                    && self.positions[s][self.cursor[s]] <= k
                {
                    self.cursor[s] += 1;
                }
                match self.suffix_min[s].get(self.cursor[s]) {
                    None => u64::MAX,
                    Some(&t) if time_source == TimeSource::Header => {
                        t.saturating_sub(HEADER_LATENCY_ALLOWANCE_NS)
                    }
                    Some(&t) => t,
                }
            })
            .collect()
    }
}

/// What the chunk reader did.
#[derive(Debug, Default)]
struct ReadStats {
    chunks: u64,
    bytes_read: u64,
    decoded: u64,
    damage: DamageReport,
}

/// Bytes of the bag the pass asks the kernel to read ahead of the chunk it is reading (at
/// least the next chunk whatever its size): the window the kernel's own readahead grows to on
/// a disk with `read_ahead_kb` 8192. Page cache, not memory of this process.
const READ_AHEAD_BYTES: u64 = 8 << 20;

/// The chunks the pass has asked the kernel to read ahead ([`Recording::prefetch_unit`]), so
/// that its reads find them cached in base pages instead of starting the kernel's readahead.
#[derive(Default)]
struct ReadAhead {
    /// How many of the planned chunks have been asked for.
    next: usize,
    /// Plan position and bytes of each chunk asked for and not yet read.
    asked: VecDeque<(usize, u64)>,
    /// The recording does not read ahead.
    off: bool,
}

impl ReadAhead {
    /// Before the pass reads `chunks[k]`: asks for it if not yet asked, and for the chunks
    /// after it (at least the next) until [`READ_AHEAD_BYTES`] past it are asked for, each by
    /// `ask` (which returns the bytes it asked for, `None` when the recording is not read ahead).
    fn before_read(
        &mut self,
        chunks: &[usize],
        k: usize,
        mut ask: impl FnMut(usize) -> Option<u64>,
    ) {
        while self.asked.front().is_some_and(|&(i, _)| i < k) {
            self.asked.pop_front();
        }
        let beyond = |asked: &VecDeque<(usize, u64)>| -> u64 {
            asked.iter().filter(|&&(i, _)| i > k).map(|&(_, n)| n).sum()
        };
        while !self.off
            && self.next < chunks.len()
            && (self.next <= k + 1 || beyond(&self.asked) < READ_AHEAD_BYTES)
        {
            match ask(chunks[self.next]) {
                Some(n) => self.asked.push_back((self.next, n)),
                None => self.off = true,
            }
            self.next += 1;
        }
    }
}

/// Reads the planned chunks in file order and sends samples.
#[allow(clippy::too_many_arguments)]
fn read_stage(
    rec: &Recording,
    plan: &BagPlan,
    mem: &MemoryPlan,
    tx: &BudgetedSender<ReaderEvent>,
    log: &mut MemoryLog,
    episode: usize,
    monitor: &Monitor,
) -> Result<ReadStats> {
    let index = rec.index();
    let wanted = plan.wanted_conns();
    let mut marks = Watermarks::new(index, plan);
    let (mut bytes_read, mut decoded) = (0u64, 0u64);
    let mut damage = DamageReport::default();
    let mut ahead = ReadAhead::default();
    for (k, &ci) in plan.chunks.iter().enumerate() {
        ahead.before_read(&plan.chunks, k, |ci| rec.prefetch_unit(ci));
        let chunk = &index.chunks[ci];
        let need = rec.pass_need(ci);
        let mut held = mem.chunk.acquire(need, || {
            format!(
                "chunk {ci} of {} at offset {} ({need} bytes in flight)",
                rec.path().display(),
                chunk.pos,
            )
        })?;
        let data = match rec.read_unit_in_pass(ci, Some(&wanted), &mut held) {
            Ok(d) => Some(d),
            // What the bag holds is damaged: skipped and counted unless --strict. Not the
            // plan or the run failing (a chunk the memory plan has no room for, a cancel).
            Err(e)
                if !plan.strict
                    && !matches!(
                        e,
                        Error::Limit { .. } | Error::OverBudget { .. } | Error::Cancelled
                    ) =>
            {
                damage.skip_chunk(
                    chunk.message_count(),
                    format!("skipped a damaged chunk: {e}"),
                );
                None
            }
            Err(e) => return Err(e),
        };
        let mut data = data;
        let stored = data.as_ref().map_or(need, |u| u.stored_bytes);
        bytes_read += stored;
        if let Some(e) = data.as_mut().and_then(|u| u.index_mismatch.take()) {
            damage.index_mismatch(&e);
        }
        let cut = data.as_mut().and_then(|u| u.cut.take());
        if let Some(e) = cut {
            // The messages before the malformed record are used either way.
            if plan.strict {
                return Err(e);
            }
            damage.skip_rest(format!("skipped the rest of a chunk: {e}"));
        }
        for m in data.iter().flat_map(|d| d.messages()) {
            let Some(cp) = plan.conns.get(&m.conn) else {
                continue;
            };
            let decode_err = |offset: usize, what: String| Error::Decode {
                path: rec.path().to_path_buf(),
                topic: cp.topic.clone(),
                conn: m.conn,
                time_ns: m.time_ns,
                offset,
                what,
            };
            let mut values = match cp.schema.decode_fields(m.data, &cp.paths) {
                Ok(v) => v,
                Err(e) if !plan.strict => {
                    damage.skip_message(format!(
                        "skipped a message: {}",
                        decode_err(e.offset, e.what)
                    ));
                    continue;
                }
                Err(e) => return Err(decode_err(e.offset, e.what)),
            };
            decoded += 1;
            let time_ns = match cp.stamp {
                Some(i) => match &values[i] {
                    crate::msg::Value::Time { sec, nsec } => {
                        *sec as u64 * 1_000_000_000 + *nsec as u64
                    }
                    // ROS 2: builtin_interfaces/msg/Time {int32 sec, uint32 nanosec}.
                    crate::msg::Value::Message(f) => match f.as_slice() {
                        [crate::msg::Value::Int(sec), crate::msg::Value::UInt(ns)] => {
                            (*sec).max(0) as u64 * 1_000_000_000 + *ns
                        }
                        _ => m.time_ns,
                    },
                    _ => m.time_ns,
                },
                None => m.time_ns,
            };
            // Extract every slot first, so a message is used whole or not at all.
            let mut extracted = Vec::with_capacity(cp.uses.len());
            for &(slot, at) in &cp.uses {
                match extract(&plan.slots[slot].kind, &mut values[at..]) {
                    Ok(v) => extracted.push((slot, v)),
                    Err(what) => {
                        let e = decode_err(
                            m.data.len(),
                            format!("{}: {what}", plan.slots[slot].spec.label),
                        );
                        if plan.strict {
                            return Err(e);
                        }
                        damage.skip_message(format!("skipped a message: {e}"));
                        extracted.clear();
                        break;
                    }
                }
            }
            for (slot, value) in extracted {
                let bytes = value.heap_bytes() + crate::align::SAMPLE_OVERHEAD_BYTES;
                // The channel's permit travels in the envelope; the aligner swaps it for
                // window bytes.
                tx.send(
                    ReaderEvent::Sample(Sample {
                        slot,
                        time_ns,
                        value,
                        permit: Permit::none(),
                    }),
                    bytes,
                    || {
                        format!(
                            "a message of {} at {} ns ({bytes} bytes)",
                            cp.topic, m.time_ns
                        )
                    },
                )?;
            }
        }
        drop(data);
        if let Some(p) = monitor.progress.get() {
            p.advance(stored);
        }
        tx.send_marker(ReaderEvent::ChunkDone {
            watermarks: marks.after(k, plan.time_source),
        })?;
        let s = snapshot();
        let kids = crate::memory::tree::children();
        let tree = monitor.observe_tree(&s, &kids);
        log.record(
            episode,
            ci,
            chunk.start_ns,
            chunk.end_ns,
            stored,
            monitor.frames_written.load(Ordering::Relaxed),
            &s,
            tree - s.rss(),
        )?;
    }
    tx.send_marker(ReaderEvent::End)?;
    Ok(ReadStats {
        chunks: plan.chunks.len() as u64,
        bytes_read,
        decoded,
        damage,
    })
}

/// Takes one slot's value out of the decoded fields (moving image bytes, not copying them).
fn extract(
    kind: &SlotKind,
    fields: &mut [crate::msg::Value],
) -> std::result::Result<SampleValue, String> {
    match kind {
        SlotKind::Numeric { range, scale, len } => {
            let all = fields[0].to_f64_vec().ok_or("field is not numeric")?;
            let (a, b) = range.unwrap_or((0, all.len()));
            if b > all.len() || b - a != *len {
                return Err(format!(
                    "has {} values; the dataset feature needs {len}{}",
                    all.len(),
                    range
                        .map(|(a, b)| format!(" (range {a}..{b})"))
                        .unwrap_or_default()
                ));
            }
            Ok(SampleValue::Numbers(
                all[a..b].iter().map(|x| x * scale).collect(),
            ))
        }
        SlotKind::CompressedImage => Ok(SampleValue::Image(Arc::new(
            ImagePayload::from_compressed(fields)?,
        ))),
        SlotKind::RawImage => Ok(SampleValue::Image(Arc::new(ImagePayload::from_raw(
            fields,
        )?))),
    }
}

#[derive(Default)]
struct AlignStats {
    ticks: u64,
    frames: u64,
    dropped: u64,
    trimmed: u64,
    slots: Vec<SlotReport>,
    drop_examples: Vec<(u64, String)>,
}

/// Most drops listed by time in the report.
const DROP_EXAMPLES: usize = 5;

fn align_stage(
    plan: &BagPlan,
    mem: &MemoryPlan,
    rx: BudgetedReceiver<ReaderEvent>,
    tx: &BudgetedSender<FrameEvent>,
) -> Result<AlignStats> {
    let specs = plan.slots.iter().map(|s| s.spec.clone()).collect();
    let mut aligner = Aligner::new(specs, plan.timeline, mem.window.clone());
    let mut stats = AlignStats::default();
    // Frames held back so the last `trim_end` can be dropped.
    let mut delay: VecDeque<(Frame, Permit)> = VecDeque::new();
    let mut ended = false;
    while !ended {
        match rx.recv().map(|b| (b.item, b.permit)) {
            Ok((ReaderEvent::Sample(mut s), permit)) => {
                s.permit = permit;
                aligner.push(s)?
            }
            Ok((ReaderEvent::ChunkDone { watermarks }, _)) => {
                for (slot, w) in watermarks.into_iter().enumerate() {
                    aligner.set_watermark(slot, w);
                }
            }
            Ok((ReaderEvent::End, _)) => {
                aligner.end();
                ended = true;
            }
            // The reader stopped without End: it failed, and says why.
            Err(_) => return Err(Error::Cancelled),
        }
        while let Some(tick) = aligner.pop() {
            stats.ticks += 1;
            match tick {
                Tick::Dropped { tick_ns, slot } => {
                    stats.dropped += 1;
                    if stats.drop_examples.len() < DROP_EXAMPLES {
                        stats
                            .drop_examples
                            .push((tick_ns, plan.slots[slot].spec.label.clone()));
                    }
                }
                Tick::Frame(af) => {
                    if stats.frames + stats.trimmed < plan.trim_start as u64 {
                        stats.trimmed += 1;
                        continue;
                    }
                    let frame = build_frame(plan, af.values).map_err(|what| {
                        Error::Config(format!("frame at {} ns: {what}", af.tick_ns))
                    })?;
                    let bytes = frame_bytes(&frame);
                    // The frames held back for `trim_end` hold permits of the same budget:
                    // waiting for bytes only they could free would wait forever.
                    let held: u64 = delay.iter().map(|(_, p)| p.bytes()).sum();
                    if held + bytes > mem.frames.capacity() {
                        // The frames budget must hold trim_end + 1 frames as large as the
                        // largest seen.
                        let largest = delay
                            .iter()
                            .map(|(_, p)| p.bytes())
                            .max()
                            .unwrap_or(0)
                            .max(bytes);
                        return Err(Error::over_budget(
                            format!(
                                "the {} frames held back for trim_end plus the frame at {} ns \
                                 (frames in flight)",
                                delay.len(),
                                af.tick_ns
                            ),
                            (plan.trim_end as u64 + 1) * largest,
                            mem.frames.capacity(),
                            mem.ceiling,
                        ));
                    }
                    let permit = tx.reserve(bytes, || {
                        format!("the frame at {} ns ({bytes} bytes)", af.tick_ns)
                    })?;
                    delay.push_back((frame, permit));
                    if delay.len() > plan.trim_end
                        && let Some((f, p)) = delay.pop_front()
                    {
                        stats.frames += 1;
                        tx.forward(Budgeted {
                            item: FrameEvent::Frame(f, None),
                            permit: p,
                        })?;
                    }
                }
            }
        }
    }
    stats.trimmed += delay.len() as u64;
    drop(delay);
    stats.slots = aligner.reports();
    tx.send_marker(FrameEvent::End)?;
    Ok(stats)
}

/// Bytes a frame holds.
fn frame_bytes(frame: &Frame) -> u64 {
    FRAME_OVERHEAD_BYTES
        + frame
            .values
            .iter()
            .map(|v| match v {
                FeatureValue::Vector(x) => x.len() as u64 * 4,
                FeatureValue::Image { bytes, .. } => bytes.len() as u64,
            })
            .sum::<u64>()
}

/// Concatenates each feature's slot values (numbers → float32) and stores images.
fn build_frame(plan: &BagPlan, values: Vec<SampleValue>) -> std::result::Result<Frame, String> {
    let mut out = Vec::with_capacity(plan.feature_slots.len());
    for (slots, resize) in plan.feature_slots.iter().zip(&plan.feature_resize) {
        if let [s] = slots[..]
            && let SampleValue::Image(img) = &values[s]
        {
            out.push(to_feature_value(img, *resize)?);
            continue;
        }
        let mut v = Vec::new();
        for &s in slots {
            match &values[s] {
                SampleValue::Numbers(x) => v.extend(x.iter().map(|&f| f as f32)),
                SampleValue::Image(_) => return Err("an image among numeric sources".into()),
            }
        }
        out.push(FeatureValue::Vector(v));
    }
    Ok(Frame { values: out })
}

/// Decodes lerobot's image-statistics sample of each frame on its own thread (the costliest
/// work of a conversion: a JPEG decode per sampled frame and camera), ahead of the writer.
/// (A helper thread sharing a frame's decodes was measured slower on 2 cores: the pipeline's
/// four threads already keep both busy, and the per-frame hand-off waits for a descheduled
/// helper.)
fn image_stats_stage(
    bag: &std::path::Path,
    rx: BudgetedReceiver<FrameEvent>,
    tx: &BudgetedSender<FrameEvent>,
    mut sampler: FrameSampler,
) -> Result<()> {
    loop {
        let (frame, permit) = match rx.recv().map(|b| (b.item, b.permit)) {
            Ok((FrameEvent::Frame(frame, _), permit)) => (frame, permit),
            Ok((FrameEvent::End, _)) => return tx.send_marker(FrameEvent::End),
            Err(_) => return Err(Error::Cancelled),
        };
        let (frame_index, slots, planned) = sampler.plan(&frame);
        let mut images: Vec<Option<SampledImage>> = (0..slots).map(|_| None).collect();
        for p in &planned {
            if let FeatureValue::Image { bytes, format } = &frame.values[p.value] {
                let s = stats::sample_image(bytes, *format, p.expect, p.hits).map_err(|what| {
                    Error::Content {
                        path: bag.to_path_buf(),
                        what: format!("image statistics of frame {frame_index}: {what}"),
                    }
                })?;
                images[p.slot] = Some(s);
            }
        }
        let sampled = Presampled::new(frame_index, images);
        tx.forward(Budgeted {
            item: FrameEvent::Frame(frame, Some(sampled)),
            permit,
        })?;
    }
}

fn write_stage(
    writer: &mut DatasetWriter,
    rx: BudgetedReceiver<FrameEvent>,
    monitor: &Monitor,
) -> Result<()> {
    loop {
        match rx.recv().map(|b| (b.item, b.permit)) {
            Ok((FrameEvent::Frame(frame, sampled), permit)) => {
                match sampled {
                    Some(s) => writer.push_presampled(frame, s)?,
                    None => writer.push_frame(frame)?,
                }
                drop(permit);
                monitor.frames_written.fetch_add(1, Ordering::Relaxed);
            }
            Ok((FrameEvent::End, _)) => return Ok(()),
            Err(_) => return Err(Error::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a pass over chunks of `sizes` bytes (plan positions = chunk ids) and returns, for
    /// each read, the chunks asked for before it.
    fn pass(sizes: &[u64]) -> Vec<Vec<usize>> {
        let chunks: Vec<usize> = (0..sizes.len()).collect();
        let mut ahead = ReadAhead::default();
        (0..chunks.len())
            .map(|k| {
                let mut asked = Vec::new();
                ahead.before_read(&chunks, k, |ci| {
                    asked.push(ci);
                    Some(sizes[ci])
                });
                asked
            })
            .collect()
    }

    #[test]
    fn read_ahead_asks_for_each_chunk_once_in_order_before_it_is_read() {
        let mib = 1 << 20;
        for sizes in [
            vec![3 * mib; 10],
            vec![100 << 10; 300],
            vec![20 * mib; 4],
            vec![mib],
        ] {
            let steps = pass(&sizes);
            let order: Vec<usize> = steps.iter().flatten().copied().collect();
            assert_eq!(order, (0..sizes.len()).collect::<Vec<_>>(), "{sizes:?}");
            let mut asked = 0;
            for (k, step) in steps.iter().enumerate() {
                asked += step.len();
                // Read `k` and the next chunk are asked for by now...
                assert!(asked >= (k + 2).min(sizes.len()), "read {k} of {sizes:?}");
                // ...and a chunk past the next one only while less than the window is.
                if asked > k + 2 {
                    let before_last: u64 = sizes[k + 1..asked - 1].iter().sum();
                    assert!(before_last < READ_AHEAD_BYTES, "read {k} of {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn read_ahead_keeps_a_window_of_small_chunks_asked_for() {
        // 8 MiB are 81.92 chunks of 100 KiB: the first read asks for itself and 82 more, each
        // later read for one more.
        let steps = pass(&[100 << 10; 300]);
        assert_eq!(steps[0].len(), 83);
        assert!(steps[1..=217].iter().all(|s| s.len() == 1));
        assert!(steps[218..].iter().all(|s| s.is_empty()));
    }

    #[test]
    fn read_ahead_stops_when_the_recording_is_not_read_ahead() {
        let chunks: Vec<usize> = (0..50).collect();
        let mut ahead = ReadAhead::default();
        let mut calls = 0;
        for k in 0..chunks.len() {
            ahead.before_read(&chunks, k, |_| {
                calls += 1;
                None
            });
        }
        assert_eq!(calls, 1);
    }
}
