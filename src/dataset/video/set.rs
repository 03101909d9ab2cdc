//! [`VideoSet`]: the encoders of every video feature of a dataset, their slots, segments and
//! the joins into `videos/<key>/chunk-XXX/file-YYY.mp4` (see the module docs of
//! [`crate::dataset::video`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, unbounded};

use super::VideoSpan;
use super::codec::*;
use super::decode::{DecodeJob, Decoded, decode_worker};
use super::ffmpeg::*;
use super::frame_spill::{Spill, SpillReader};
use crate::dataset::{DatasetSpec, FeatureKind, ImageFormat};
use crate::error::{Error, Result};
use crate::memory::{Budget, Permit};

/// One video feature.
struct Camera {
    key: String,
    feature: usize,
    width: u32,
    height: u32,
    codec: VideoCodec,
    /// Segments of completed episodes not yet joined into the open file, in order.
    pending: Vec<PathBuf>,
    pending_bytes: u64,
    pending_frames: u64,
    /// (chunk, file) of the open file.
    file: (usize, usize),
    /// Video files written, relative to the dataset root.
    files: Vec<String>,
    encoder: Option<Encoder>,
    /// This episode's frames waiting on disk for an encoder (no slot was free at its start).
    spill: Option<Spill>,
    /// A copied episode's segment (stream-copied from another dataset's file).
    copied: Option<Finished>,
}
impl Camera {
    fn rgb_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 3
    }

    fn err(&self, what: impl Into<String>) -> Error {
        Error::Video {
            key: self.key.clone(),
            what: what.into(),
        }
    }
}

/// What one episode segment became before it is committed.
struct Finished {
    segment: PathBuf,
    frames: u64,
    bytes: u64,
}

/// The encoders of every video feature of a dataset (see the module docs).
pub(crate) struct VideoSet {
    staging: PathBuf,
    segments: PathBuf,
    fps: u32,
    chunks_size: usize,
    opts: VideoOptions,
    budget: Budget,
    cameras: Vec<Camera>,
    jobs: Option<Sender<DecodeJob>>,
    workers: Vec<JoinHandle<()>>,
    /// Decode scratch of the worker threads, held while they live.
    _scratch: Vec<Permit>,
    episode_seq: u64,
    /// Number of the episode being written (names its segments and spill files).
    current_seq: u64,
    /// Joining segments failed: completed episodes lost their video; nothing may continue.
    broken: bool,
}

impl VideoSet {
    /// Whether `spec` has any video feature.
    pub(crate) fn needed(spec: &DatasetSpec) -> bool {
        spec.features
            .iter()
            .any(|f| matches!(f.kind, FeatureKind::Video { .. }))
    }

    /// The codecs `spec` uses.
    fn codecs(spec: &DatasetSpec) -> Vec<VideoCodec> {
        let mut v: Vec<VideoCodec> = spec
            .features
            .iter()
            .filter_map(|f| match f.kind {
                FeatureKind::Video { codec, .. } => Some(codec),
                _ => None,
            })
            .collect();
        v.dedup();
        v
    }

    /// Checks frame sizes and ffmpeg (it runs and has the encoders).
    pub(crate) fn check(spec: &DatasetSpec, opts: &VideoOptions) -> Result<()> {
        for f in &spec.features {
            if let FeatureKind::Video {
                height,
                width,
                codec,
                ..
            } = f.kind
                && let Some(p) = size_problem(codec, width, height)
            {
                return Err(Error::Video {
                    key: f.name.clone(),
                    what: p,
                });
            }
        }
        if opts.gop == 0 {
            return Err(Error::Config("video gop must be at least 1".into()));
        }
        check_ffmpeg(&opts.ffmpeg, &Self::codecs(spec))
    }

    /// Starts the decode threads; `budget` bounds the frames in flight (and the threads'
    /// scratch). Fails when not even one frame fits.
    pub(crate) fn new(
        staging: &Path,
        spec: &DatasetSpec,
        opts: &VideoOptions,
        chunks_size: usize,
        budget: Budget,
    ) -> Result<Self> {
        let cameras: Vec<Camera> = spec
            .features
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f.kind {
                FeatureKind::Video {
                    height,
                    width,
                    codec,
                    ..
                } => Some(Camera {
                    key: f.name.clone(),
                    feature: i,
                    width,
                    height,
                    codec,
                    pending: Vec::new(),
                    pending_bytes: 0,
                    pending_frames: 0,
                    file: (0, 0),
                    files: Vec::new(),
                    encoder: None,
                    spill: None,
                    copied: None,
                }),
                _ => None,
            })
            .collect();
        let frame = cameras.iter().map(Camera::rgb_bytes).max().unwrap_or(0);
        // One frame must fit besides the scratch of one decode thread (its encoded bytes are
        // checked when it arrives).
        if frame > 0 {
            let largest = cameras
                .iter()
                .find(|c| c.rgb_bytes() == frame)
                .map(|c| format!("{} ({}x{})", c.key, c.width, c.height))
                .unwrap_or_default();
            budget.check_fits(2 * frame, || {
                format!(
                    "a decoded frame of {largest} plus one decode thread's scratch ({} bytes each)",
                    frame
                )
            })?;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = match opts.decode_threads {
            0 => cores.min(MAX_DECODE_THREADS),
            n => n,
        };
        // Keep at least two frames of room for the queue after the scratch.
        let room = budget
            .capacity()
            .checked_div(frame.max(1))
            .unwrap_or(1)
            .saturating_sub(2)
            .max(1) as usize;
        let threads = wanted.min(room).max(1);
        let mut scratch = Vec::with_capacity(threads);
        for _ in 0..threads {
            scratch.push(budget.acquire(frame, || "video decode scratch".into())?);
        }
        let (jobs_tx, jobs_rx) = unbounded::<DecodeJob>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = jobs_rx.clone();
            let h = std::thread::Builder::new()
                .name(format!("video-decode-{i}"))
                .spawn(move || decode_worker(rx))
                .map_err(|e| Error::thread_start("video decode", e))?;
            workers.push(h);
        }
        Ok(VideoSet {
            staging: staging.to_path_buf(),
            segments: staging.join(SEGMENTS_DIR),
            fps: spec.fps,
            chunks_size: chunks_size.max(1),
            opts: opts.clone(),
            budget,
            cameras,
            jobs: Some(jobs_tx),
            workers,
            _scratch: scratch,
            episode_seq: 0,
            current_seq: 0,
            broken: false,
        })
    }

    /// Whether a failure lost completed episodes' video (the dataset cannot be finished).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Starts an episode whose video is copied from another dataset ([`Self::copy_segment`]
    /// per camera) instead of encoded.
    pub(crate) fn begin_copied_episode(&mut self) -> Result<()> {
        self.abort_episode();
        fs::create_dir_all(&self.segments).map_err(|e| Error::io(&self.segments, e))?;
        self.current_seq = self.episode_seq;
        self.episode_seq += 1;
        Ok(())
    }

    /// Copies `frames` frames from frame `from_frame` of `src` (an MP4 file of this tool, whose
    /// episodes each start with a key frame) into camera `feature`'s segment of the copied
    /// episode, without re-encoding; timestamps are rewritten to `frame · TICKS_PER_FRAME`.
    pub(crate) fn copy_segment(
        &mut self,
        feature: usize,
        src: &Path,
        from_frame: u64,
        frames: u64,
    ) -> Result<()> {
        let Some(cam) = self.cameras.iter().position(|c| c.feature == feature) else {
            return Err(Error::Internal(format!("feature {feature} is not a video")));
        };
        let segment = self.segment_path(cam);
        let c = &self.cameras[cam];
        let mut cmd = Command::new(&self.opts.ffmpeg);
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i"])
            .arg(src)
            .args(["-map", "0:v", "-c", "copy"]);
        if from_frame > 0 {
            // Output-side: packets before the episode's first (key) frame are dropped; half a
            // frame early, so that rounding cannot drop that frame.
            let t = (from_frame as f64 - 0.5) / f64::from(self.fps);
            cmd.arg("-ss").arg(format!("{t:.6}"));
        }
        cmd.arg("-frames:v").arg(frames.to_string());
        let out = run_stream_copy(
            &mut cmd,
            self.fps,
            &segment,
            format!("ffmpeg copy {}", c.key),
        )
        .map_err(|e| c.err(format!("cannot run ffmpeg to copy video: {e}")))?;
        if !out.status.success() {
            let _ = fs::remove_file(&segment);
            return Err(c.err(format!(
                "copying frames {from_frame}..{} of {} failed ({}): {}",
                from_frame + frames,
                src.display(),
                out.status,
                tail_of(&out.stderr)
            )));
        }
        let bytes = fs::metadata(&segment)
            .map_err(|e| Error::io(&segment, e))?
            .len();
        self.cameras[cam].copied = Some(Finished {
            segment,
            frames,
            bytes,
        });
        Ok(())
    }

    /// Encoders run at once: [`VideoOptions::max_encoders`], at most one per camera.
    fn slots(&self) -> usize {
        match self.opts.max_encoders {
            0 => self.cameras.len(),
            n => n.min(self.cameras.len()),
        }
    }

    fn segment_path(&self, cam: usize) -> PathBuf {
        self.segments
            .join(format!("{cam:03}-{:06}.mp4", self.current_seq))
    }

    /// Starts the next episode: one ffmpeg per camera for as many cameras as there are
    /// [`Self::slots`], a spill file in the staging directory for each of the others.
    pub(crate) fn begin_episode(&mut self) -> Result<()> {
        self.abort_episode();
        fs::create_dir_all(&self.segments).map_err(|e| Error::io(&self.segments, e))?;
        self.current_seq = self.episode_seq;
        self.episode_seq += 1;
        let slots = self.slots();
        for i in 0..self.cameras.len() {
            let started = if i < slots {
                self.spawn(i, self.segment_path(i))
                    .map(|enc| self.cameras[i].encoder = Some(enc))
            } else {
                let path = self
                    .segments
                    .join(format!("{i:03}-{:06}.frames", self.current_seq));
                Spill::create(path).map(|sp| self.cameras[i].spill = Some(sp))
            };
            if let Err(e) = started {
                self.abort_episode();
                return Err(e);
            }
        }
        Ok(())
    }

    fn spawn(&self, cam: usize, segment: PathBuf) -> Result<Encoder> {
        let c = &self.cameras[cam];
        let mut cmd = Command::new(&self.opts.ffmpeg);
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg("-s")
            .arg(format!("{}x{}", c.width, c.height))
            .arg("-r")
            .arg(self.fps.to_string())
            .args(["-i", "pipe:0", "-an", "-c:v", c.codec.encoder()])
            .args(c.codec.args(self.opts.crf, self.opts.gop))
            .args(["-pix_fmt", PIX_FMT, "-video_track_timescale"])
            .arg((u64::from(self.fps) * TICKS_PER_FRAME).to_string())
            .args(["-f", "mp4", "-y"])
            .arg(&segment)
            .env("SVT_LOG", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        crate::memory::tree::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            c.err(format!(
                "cannot start {} ({e}); {INSTALL_HINT}",
                self.opts.ffmpeg.display()
            ))
        })?;
        let tree = crate::memory::tree::register(child.id(), format!("ffmpeg encoder {}", c.key));
        let (Some(stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(c.err("ffmpeg started without its pipes"));
        };
        let failure: Failure = Arc::new(Mutex::new(None));
        let (tx, rx) = unbounded::<Decoded>();
        let f = failure.clone();
        let feeder = std::thread::Builder::new()
            .name(format!("video-feed-{cam}"))
            .spawn(move || feed(stdin, rx, f));
        let err_tail = std::thread::Builder::new()
            .name(format!("video-stderr-{cam}"))
            .spawn(move || stderr_tail(stderr));
        match (feeder, err_tail) {
            (Ok(feeder), Ok(err_tail)) => Ok(Encoder {
                child,
                _tree: tree,
                tx: Some(tx),
                feeder: Some(feeder),
                stderr: Some(err_tail),
                segment,
                pushed: 0,
                failure,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(c.err("cannot start the encoder's pipe threads"))
            }
        }
    }

    /// Queues the next frame of feature `feature` (JPEG or PNG bytes) for decoding and
    /// encoding. Blocks while the video budget is full; fails if the camera's encoder failed.
    pub(crate) fn push(
        &mut self,
        feature: usize,
        bytes: bytes::Bytes,
        format: ImageFormat,
    ) -> Result<()> {
        let Some(cam) = self.cameras.iter().position(|c| c.feature == feature) else {
            return Err(Error::Internal(format!("feature {feature} is not a video")));
        };
        if let Some(sp) = self.cameras[cam].spill.as_mut() {
            return sp.write(&bytes, format);
        }
        self.push_to_encoder(cam, bytes, format)
    }

    /// Queues a frame for camera `cam`'s running encoder.
    fn push_to_encoder(
        &mut self,
        cam: usize,
        bytes: bytes::Bytes,
        format: ImageFormat,
    ) -> Result<()> {
        let c = &mut self.cameras[cam];
        let frame = c.rgb_bytes();
        let (key, size) = (c.key.clone(), (c.width, c.height));
        let Some(enc) = c.encoder.as_mut() else {
            return Err(Error::Video {
                key,
                what: "frame pushed outside an episode".into(),
            });
        };
        if failure(&enc.failure).is_some() {
            // Collect ffmpeg's exit status and last words for the error.
            let Some(enc) = c.encoder.take() else {
                return Err(Error::Video {
                    key,
                    what: "encoder vanished".into(),
                });
            };
            return Err(match finish_encoder(c, enc) {
                Err(e) => e,
                Ok(_) => c.err("the encoder failed"),
            });
        }
        let seq = enc.pushed;
        let need = bytes.len() as u64 + frame;
        let permit = self.budget.acquire(need, || {
            format!(
                "frame {seq} of {key} for the video encoder ({} encoded + {frame} decoded bytes)",
                bytes.len()
            )
        })?;
        let tx = enc
            .tx
            .clone()
            .ok_or_else(|| Error::Internal("encoder already closed".into()))?;
        let job = DecodeJob {
            seq,
            bytes,
            format,
            size,
            tx,
            permit,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| Error::Thread {
                stage: "video decode".into(),
                what: "stopped".into(),
                source: None,
            })?
            .send(job)
            .map_err(|_| Error::Thread {
                stage: "video decode".into(),
                what: "stopped".into(),
                source: None,
            })?;
        enc.pushed += 1;
        Ok(())
    }

    /// Encodes the spilled cameras, [`Self::slots`] at a time: each batch's encoders are
    /// started, fed their frames from disk in turn, and finished. Returns each camera's
    /// finished segment (or its error) in camera order.
    fn encode_spilled(&mut self) -> Vec<(usize, Result<Finished>)> {
        let mut waiting: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for (i, c) in self.cameras.iter_mut().enumerate() {
            if let Some(mut sp) = c.spill.take() {
                match sp.out.flush() {
                    Ok(()) => waiting.push(i),
                    Err(e) => out.push((i, Err(Error::io(&sp.path, e)))),
                }
            }
        }
        let slots = self.slots().max(1);
        for batch in waiting.chunks(slots) {
            let mut readers = Vec::with_capacity(batch.len());
            for &i in batch {
                let path = self
                    .segments
                    .join(format!("{i:03}-{:06}.frames", self.current_seq));
                let started = SpillReader::open(&path).and_then(|r| {
                    let enc = self.spawn(i, self.segment_path(i))?;
                    self.cameras[i].encoder = Some(enc);
                    Ok(r)
                });
                match started {
                    Ok(r) => readers.push((i, Some(r))),
                    Err(e) => out.push((i, Err(e))),
                }
            }
            // Round robin, so that every encoder of the batch has work.
            let mut errors: Vec<(usize, Error)> = Vec::new();
            while readers.iter().any(|r| r.1.is_some()) {
                for (i, reader) in readers.iter_mut() {
                    let Some(r) = reader.as_mut() else { continue };
                    let next = r.next().and_then(|f| match f {
                        Some((bytes, format)) => {
                            self.push_to_encoder(*i, bytes, format).map(|_| true)
                        }
                        None => Ok(false),
                    });
                    match next {
                        Ok(true) => {}
                        Ok(false) => *reader = None,
                        Err(e) => {
                            errors.push((*i, e));
                            *reader = None;
                        }
                    }
                }
            }
            for (i, _) in readers {
                let c = &mut self.cameras[i];
                let Some(enc) = c.encoder.take() else {
                    if let Some(p) = errors.iter().position(|e| e.0 == i) {
                        out.push((i, Err(errors.remove(p).1)));
                    }
                    continue;
                };
                let r = if let Some(p) = errors.iter().position(|e| e.0 == i) {
                    kill_encoder(enc);
                    Err(errors.remove(p).1)
                } else {
                    finish_encoder(c, enc)
                };
                out.push((i, r));
            }
            for &i in batch {
                let path = self
                    .segments
                    .join(format!("{i:03}-{:06}.frames", self.current_seq));
                let _ = fs::remove_file(path);
            }
        }
        out.sort_by_key(|x| x.0);
        out
    }

    /// Waits for every camera's ffmpeg to finish the episode (encoding the spilled cameras
    /// afterwards, [`Self::slots`] at a time), checks that each segment holds exactly `rows`
    /// frames (counted by ffprobe) and places it; returns one span per video feature, in
    /// feature order. On any failure the whole episode's video is discarded and the error
    /// names the camera and ffmpeg's last words.
    pub(crate) fn end_episode(&mut self, rows: u64) -> Result<Vec<(usize, VideoSpan)>> {
        let mut done: Vec<Option<Finished>> = Vec::with_capacity(self.cameras.len());
        let mut first_err = None;
        for c in &mut self.cameras {
            if c.spill.is_some() {
                done.push(None);
                continue;
            }
            if let Some(f) = c.copied.take() {
                done.push(Some(f));
                continue;
            }
            let Some(enc) = c.encoder.take() else {
                first_err.get_or_insert_with(|| c.err("no episode was begun"));
                done.push(None);
                continue;
            };
            match finish_encoder(c, enc) {
                Ok(f) => done.push(Some(f)),
                Err(e) => {
                    first_err.get_or_insert(e);
                    done.push(None);
                }
            }
        }
        if first_err.is_none() {
            for (i, r) in self.encode_spilled() {
                match r {
                    Ok(f) => done[i] = Some(f),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if first_err.is_none() {
            let ffprobe = self.opts.ffprobe();
            for (c, f) in self.cameras.iter().zip(&done) {
                let Some(f) = f else { continue };
                if let Err(e) = check_frame_count(&ffprobe, c, f, rows) {
                    first_err = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = first_err {
            self.abort_episode();
            for f in done.into_iter().flatten() {
                let _ = fs::remove_file(&f.segment);
            }
            return Err(e);
        }
        let mut spans = Vec::with_capacity(done.len());
        for (i, f) in done.into_iter().enumerate() {
            let Some(f) = f else { continue };
            match self.commit(i, f) {
                Ok(span) => spans.push((self.cameras[i].feature, span)),
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        Ok(spans)
    }

    /// Adds a finished segment to the camera's open file, joining the pending ones into a file
    /// first if this one would take it past `file_bytes`.
    fn commit(&mut self, cam: usize, f: Finished) -> Result<VideoSpan> {
        let limit = self.opts.file_bytes;
        {
            let c = &self.cameras[cam];
            if !c.pending.is_empty() && c.pending_bytes + f.bytes >= limit {
                self.join_pending(cam)?;
            }
        }
        let fps = f64::from(self.fps);
        let c = &mut self.cameras[cam];
        let span = VideoSpan {
            chunk: c.file.0,
            file: c.file.1,
            from_timestamp: c.pending_frames as f64 / fps,
            to_timestamp: (c.pending_frames + f.frames) as f64 / fps,
        };
        c.pending.push(f.segment);
        c.pending_bytes += f.bytes;
        c.pending_frames += f.frames;
        Ok(span)
    }

    /// Continues an existing dataset (appending): camera `feature`'s last video file is
    /// `chunk`/`file`, already in the staging directory (hard-linked), holding `frames` frames.
    /// The next episodes join it until it would pass the size limit, then roll to a new file,
    /// as one run converting every bag would. Call before the first episode.
    pub(crate) fn resume(
        &mut self,
        feature: usize,
        chunk: usize,
        file: usize,
        frames: u64,
    ) -> Result<()> {
        let Some(c) = self.cameras.iter_mut().find(|c| c.feature == feature) else {
            return Err(Error::Internal(format!("feature {feature} is not a video")));
        };
        let rel = crate::dataset::video_file_path(&c.key, chunk, file);
        let path = self.staging.join(&rel);
        let bytes = fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        c.file = (chunk, file);
        c.pending = vec![path];
        c.pending_bytes = bytes;
        c.pending_frames = frames;
        Ok(())
    }

    /// Joins the camera's pending segments into its open file (stream copy, timestamps
    /// rewritten to `frame · TICKS_PER_FRAME`), fsyncs it and moves on to the next file name.
    /// The first pending entry may be the file itself, continued by an append: it is joined
    /// with the new segments into a fresh file that replaces the staged link (the published
    /// dataset's file is never modified).
    fn join_pending(&mut self, cam: usize) -> Result<()> {
        let c = &self.cameras[cam];
        if c.pending.is_empty() {
            return Ok(());
        }
        let rel = crate::dataset::video_file_path(&c.key, c.file.0, c.file.1);
        let out = self.staging.join(&rel);
        if let Some(dir) = out.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let is_segment = |p: &Path| p.starts_with(&self.segments);
        // A continued file with nothing new: it stays as it is.
        let unchanged = c.pending.len() == 1 && !is_segment(&c.pending[0]);
        if !unchanged {
            let list = self.segments.join(format!("{cam:03}-concat.txt"));
            let mut text = String::from("ffconcat version 1.0\n");
            for s in &c.pending {
                let name = if is_segment(s) {
                    s.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                } else {
                    s.display().to_string()
                };
                text.push_str(&format!("file '{}'\n", name.replace('\'', "'\\''")));
            }
            fs::write(&list, text).map_err(|e| Error::io(&list, e))?;
            let tmp = out.with_extension("mp4.joining");
            let mut cmd = Command::new(&self.opts.ffmpeg);
            cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
                .args(["-f", "concat", "-safe", "0", "-i"])
                .arg(&list)
                .args(["-map", "0:v", "-c", "copy"]);
            let out_put =
                run_stream_copy(&mut cmd, self.fps, &tmp, format!("ffmpeg join {}", c.key))
                    .map_err(|e| c.err(format!("cannot run ffmpeg to join segments: {e}")))?;
            if !out_put.status.success() {
                let tail = tail_of(&out_put.stderr);
                let _ = fs::remove_file(&tmp);
                return Err(c.err(format!(
                    "joining {} episode segments into {rel} failed ({}): {tail}",
                    c.pending.len(),
                    out_put.status
                )));
            }
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&tmp, e))?;
            fs::rename(&tmp, &out).map_err(|e| Error::io(&out, e))?;
            let _ = fs::remove_file(&list);
        }
        let segments = self.segments.clone();
        let c = &mut self.cameras[cam];
        for s in c.pending.drain(..) {
            if s.starts_with(&segments) {
                let _ = fs::remove_file(&s);
            }
        }
        if !c.files.contains(&rel) {
            c.files.push(rel);
        }
        c.pending_bytes = 0;
        c.pending_frames = 0;
        c.file = if c.file.1 + 1 >= self.chunks_size {
            (c.file.0 + 1, 0)
        } else {
            (c.file.0, c.file.1 + 1)
        };
        Ok(())
    }

    /// Records a video file carried over from the dataset being appended to (for the
    /// directory fsyncs at the end).
    pub(crate) fn carry_file(&mut self, feature: usize, rel: String) {
        if let Some(c) = self.cameras.iter_mut().find(|c| c.feature == feature)
            && !c.files.contains(&rel)
        {
            c.files.push(rel);
        }
    }

    /// Stops the episode's encoders and deletes their segments and spilled frames.
    pub(crate) fn abort_episode(&mut self) {
        for c in &mut self.cameras {
            if let Some(enc) = c.encoder.take() {
                kill_encoder(enc);
            }
            if let Some(sp) = c.spill.take() {
                let path = sp.path.clone();
                drop(sp);
                let _ = fs::remove_file(path);
            }
            if let Some(f) = c.copied.take() {
                let _ = fs::remove_file(f.segment);
            }
        }
    }

    /// Joins every camera's pending segments into its last file and removes the segments
    /// directory. Returns the video files written (relative to the dataset root).
    pub(crate) fn finish(&mut self) -> Result<Vec<String>> {
        self.abort_episode();
        if self.broken {
            return Err(Error::Config(
                "an earlier video file could not be written".into(),
            ));
        }
        for i in 0..self.cameras.len() {
            if let Err(e) = self.join_pending(i) {
                self.broken = true;
                return Err(e);
            }
        }
        if self.segments.exists() {
            fs::remove_dir_all(&self.segments).map_err(|e| Error::io(&self.segments, e))?;
        }
        Ok(self
            .cameras
            .iter()
            .flat_map(|c| c.files.iter().cloned())
            .collect())
    }
}

impl Drop for VideoSet {
    /// No ffmpeg outlives the set; the decode threads end with their queue.
    fn drop(&mut self) {
        self.abort_episode();
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Closes the encoder's input and waits for ffmpeg; the segment is good only if every pushed
/// frame was written and ffmpeg exited cleanly.
fn finish_encoder(c: &Camera, mut enc: Encoder) -> Result<Finished> {
    drop(enc.tx.take());
    let written = enc
        .feeder
        .take()
        .map(|h| h.join().unwrap_or(0))
        .unwrap_or(0);
    let status = enc.child.wait();
    let tail = enc
        .stderr
        .take()
        .and_then(|h| h.join().ok())
        .unwrap_or_default();
    let segment = enc.segment.clone();
    let bad = |what: String| {
        let _ = fs::remove_file(&segment);
        let tail = tail.trim();
        if tail.is_empty() {
            c.err(what)
        } else {
            c.err(format!("{what}; ffmpeg said: {tail}"))
        }
    };
    if let Some(f) = failure(&enc.failure) {
        return Err(bad(f));
    }
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(bad(format!("ffmpeg {s} while encoding the episode"))),
        Err(e) => return Err(bad(format!("waiting for ffmpeg: {e}"))),
    }
    if written != enc.pushed {
        return Err(bad(format!(
            "{written} of {} frames reached ffmpeg",
            enc.pushed
        )));
    }
    let bytes = fs::metadata(&segment)
        .map(|m| m.len())
        .map_err(|e| bad(format!("ffmpeg wrote no video ({e})")))?;
    if enc.pushed == 0 {
        return Err(bad("the episode has no frames".into()));
    }
    Ok(Finished {
        segment,
        frames: enc.pushed,
        bytes,
    })
}

/// A segment must hold exactly one frame per row of the episode: a frame lost on the way
/// (lerobot PR #4462: a streaming encoder that dropped frames silently) fails the episode.
fn check_frame_count(ffprobe: &Path, c: &Camera, f: &Finished, rows: u64) -> Result<()> {
    let counted = count_frames(ffprobe, &f.segment, &c.key).map_err(|e| c.err(e))?;
    if f.frames != rows || counted != rows {
        return Err(c.err(format!(
            "the episode has {rows} rows but {} frames were sent to the encoder and its video \
             holds {counted}; the episode is discarded",
            f.frames
        )));
    }
    Ok(())
}

/// Finishes an ffmpeg stream-copy command (every timestamp rewritten to `N · TICKS_PER_FRAME`
/// at timescale `fps · TICKS_PER_FRAME`, MP4 into `out`) and runs it, registered with the tree
/// monitor as `label` while it lives.
pub(crate) fn run_stream_copy(
    cmd: &mut Command,
    fps: u32,
    out: &Path,
    label: String,
) -> std::io::Result<std::process::Output> {
    cmd.arg("-bsf:v")
        .arg(format!("setts=ts=N*{TICKS_PER_FRAME}"))
        .arg("-video_track_timescale")
        .arg((u64::from(fps) * TICKS_PER_FRAME).to_string())
        .args(["-f", "mp4", "-y"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::memory::tree::die_with_parent(cmd);
    cmd.spawn().and_then(|child| {
        let _tree = crate::memory::tree::register(child.id(), label);
        child.wait_with_output()
    })
}
