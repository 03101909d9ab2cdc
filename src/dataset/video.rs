//! Video features: camera frames → MP4 files through the system `ffmpeg`, one child process per
//! camera and episode, fed decoded RGB frames over a pipe.
//!
//! ```text
//! writer thread ──JPEG/PNG + permit──► decode pool (N threads) ──RGB, any order──►
//!   feeder thread per camera (puts frames back in order) ──rgb24 pipe──► ffmpeg → segment
//! ```
//!
//! **Memory.** Every frame in flight owns one permit of the video budget for its encoded bytes
//! plus its decoded RGB frame (`W·H·3`), taken by the writer thread before the frame is queued
//! and returned when the frame has been written into the pipe; each decode thread also holds
//! one frame of scratch from the same budget for as long as the set lives. The writer blocks
//! while the budget is full, so a slow encoder slows the conversion down instead of growing the
//! queue. The ffmpeg processes are separate processes: their memory is not part of this
//! process's resident set (see docs/benchmarks.md for what they use).
//!
//! **Files.** Each episode of a camera is encoded into its own segment in the staging
//! directory (`.video-segments/`). When the next segment would take the open file past
//! [`VideoOptions::file_bytes`], and at [`VideoSet::finish`], the pending segments are joined
//! without re-encoding into `videos/<key>/chunk-XXX/file-YYY.mp4`. An aborted episode (a decode
//! error, an ffmpeg that died) deletes its segment, so no half-written video is ever part of
//! the dataset, which is published by the writer's rename like everything else.
//!
//! **Timing.** The encoder reads rawvideo at `-r fps` into an MP4 track whose timescale is
//! `fps ·` [`TICKS_PER_FRAME`]; joining rewrites every timestamp to `frame · TICKS_PER_FRAME`
//! (ffmpeg's concat demuxer would otherwise offset each segment by its millisecond-rounded
//! duration). Frame `i` of an episode is therefore at `from_timestamp + i / fps` exactly, and
//! encoders never reorder frames (`-bf 0`; SVT-AV1 emits frames in display order).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde_json::{Value, json};

use super::{DatasetSpec, FeatureKind, ImageFormat};
use crate::error::{Error, Result};
use crate::memory::{Budget, Permit};

/// Default constant rate factor (lerobot's default): 30.
pub const DEFAULT_CRF: u32 = 30;
/// Default keyframe interval in frames (lerobot uses 2 for fast random access): 2.
pub const DEFAULT_GOP: u32 = 2;
/// SVT-AV1 preset (lerobot's default; 0 slowest … 13 fastest): 12.
pub const SVT_AV1_PRESET: u32 = 12;
/// Pixel format of the encoded video (what lerobot writes and decoders expect): yuv420p.
pub const PIX_FMT: &str = "yuv420p";
/// MP4 timestamp ticks per frame; the track timescale is `fps · 512` (for 30 fps: 15360, what
/// ffmpeg picks by itself).
pub const TICKS_PER_FRAME: u64 = 512;
/// Smallest width and height SVT-AV1 accepts, in pixels: 64.
pub const AV1_MIN_SIDE: u32 = 64;
/// Budget of frames in flight to the encoders when the caller gives none: 64 MiB.
pub const DEFAULT_VIDEO_BUDGET_BYTES: u64 = 64 << 20;
/// Most decode threads chosen automatically (also bounded by the cores and the budget): 8.
pub const MAX_DECODE_THREADS: usize = 8;
/// Bytes of ffmpeg's stderr kept for error messages (the end of it): 4 KiB.
pub const STDERR_TAIL_BYTES: usize = 4096;
/// Environment variable naming the ffmpeg binary (default: `ffmpeg` on the `PATH`).
pub const FFMPEG_ENV: &str = "BAG2DATASET_FFMPEG";
/// Where the episode segments are kept inside the staging directory until they are joined.
pub const SEGMENTS_DIR: &str = ".video-segments";
/// How to get an ffmpeg with the encoders, appended to every "not found" error.
pub const INSTALL_HINT: &str = "install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`, which has \
     libsvtav1, libx264 and libx265; macOS: `brew install ffmpeg`), or set BAG2DATASET_FFMPEG to an \
     ffmpeg binary";

/// Video codec of a video feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    /// AV1 through SVT-AV1 (`libsvtav1`), lerobot's default.
    #[default]
    Av1,
    /// H.264 through `libx264`.
    H264,
    /// HEVC through `libx265`.
    Hevc,
}

impl VideoCodec {
    /// The ffmpeg encoder.
    pub fn encoder(self) -> &'static str {
        match self {
            VideoCodec::Av1 => "libsvtav1",
            VideoCodec::H264 => "libx264",
            VideoCodec::Hevc => "libx265",
        }
    }

    /// The codec's canonical name (`video.codec` in `info.json`, what PyAV reports).
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Av1 => "av1",
            VideoCodec::H264 => "h264",
            VideoCodec::Hevc => "hevc",
        }
    }

    /// Parses `av1`, `h264` or `hevc` (also the encoder names and `h265`).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "av1" | "libsvtav1" | "svtav1" => Ok(VideoCodec::Av1),
            "h264" | "libx264" | "avc" => Ok(VideoCodec::H264),
            "hevc" | "h265" | "libx265" => Ok(VideoCodec::Hevc),
            _ => Err(Error::Config(format!(
                "unknown video codec {s:?} (expected av1, h264 or hevc)"
            ))),
        }
    }

    /// Encoder options after `-c:v`: rate control, GOP, and no frame reordering.
    fn args(self, crf: u32, gop: u32) -> Vec<String> {
        let mut a: Vec<String> = vec!["-g".into(), gop.to_string(), "-crf".into(), crf.to_string()];
        match self {
            VideoCodec::Av1 => a.extend(["-preset".into(), SVT_AV1_PRESET.to_string()]),
            VideoCodec::H264 => a.extend(["-bf".into(), "0".into()]),
            VideoCodec::Hevc => a.extend([
                "-bf".into(),
                "0".into(),
                "-x265-params".into(),
                "log-level=error".into(),
            ]),
        }
        a
    }
}

/// How video features are encoded and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoOptions {
    /// Constant rate factor (quality; lower is better and bigger), default [`DEFAULT_CRF`].
    pub crf: u32,
    /// Keyframe interval in frames, default [`DEFAULT_GOP`].
    pub gop: u32,
    /// A video file takes episodes until the next one would take it to this size; default
    /// [`super::VIDEO_FILES_SIZE_IN_MB`] MiB.
    pub file_bytes: u64,
    /// JPEG/PNG decode threads; 0 = the cores, at most [`MAX_DECODE_THREADS`], as many as the
    /// budget has scratch room for.
    pub decode_threads: usize,
    /// The ffmpeg binary: `$BAG2DATASET_FFMPEG`, else `ffmpeg` on the `PATH`.
    pub ffmpeg: PathBuf,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            crf: DEFAULT_CRF,
            gop: DEFAULT_GOP,
            file_bytes: super::VIDEO_FILES_SIZE_IN_MB * super::MIB,
            decode_threads: 0,
            ffmpeg: std::env::var_os(FFMPEG_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("ffmpeg")),
        }
    }
}

/// Checks that `ffmpeg` runs and has the encoder of every codec, before any work is done.
pub fn check_ffmpeg(ffmpeg: &Path, codecs: &[VideoCodec]) -> Result<()> {
    let err = |what: String| Error::Video {
        key: "encoder".into(),
        what,
    };
    let out = Command::new(ffmpeg)
        .args(["-hide_banner", "-encoders"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            err(format!(
                "cannot run {} ({e}); video features need ffmpeg: {INSTALL_HINT}",
                ffmpeg.display()
            ))
        })?;
    if !out.status.success() {
        return Err(err(format!(
            "`{} -encoders` failed ({}); {INSTALL_HINT}",
            ffmpeg.display(),
            out.status
        )));
    }
    let list = String::from_utf8_lossy(&out.stdout);
    for c in codecs {
        let found = list
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(c.encoder()));
        if !found {
            return Err(err(format!(
                "{} has no {} encoder (needed for {} video); {INSTALL_HINT}",
                ffmpeg.display(),
                c.encoder(),
                c.name()
            )));
        }
    }
    Ok(())
}

/// Why a frame size cannot be encoded, if it cannot (yuv420p needs even sides, SVT-AV1 at
/// least [`AV1_MIN_SIDE`] pixels).
pub fn size_problem(codec: VideoCodec, width: u32, height: u32) -> Option<String> {
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Some(format!(
            "{width}x{height} frames cannot be encoded as {PIX_FMT} (width and height must be even)"
        ));
    }
    if codec == VideoCodec::Av1 && (width < AV1_MIN_SIDE || height < AV1_MIN_SIDE) {
        return Some(format!(
            "{width}x{height} frames are too small for SVT-AV1 (at least {AV1_MIN_SIDE}x{AV1_MIN_SIDE}); use h264 or hevc"
        ));
    }
    None
}

/// The `info` block of a video feature in `info.json`, with lerobot's keys in its order.
pub fn info_block(codec: VideoCodec, fps: u32, height: u32, width: u32) -> Value {
    json!({
        "video.height": height,
        "video.width": width,
        "video.codec": codec.name(),
        "video.pix_fmt": PIX_FMT,
        "video.is_depth_map": false,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": false,
    })
}

/// Where one episode of one camera is: its video file and its time range in it, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoSpan {
    pub chunk: usize,
    pub file: usize,
    pub from_timestamp: f64,
    pub to_timestamp: f64,
}

/// A frame on its way to a decode thread.
struct Job {
    seq: u64,
    bytes: bytes::Bytes,
    format: ImageFormat,
    size: (u32, u32),
    tx: Sender<Decoded>,
    permit: Permit,
}

/// A decoded frame (or why it could not be) on its way to the feeder; the permit returns the
/// frame's bytes to the budget once it is written into the pipe.
struct Decoded {
    seq: u64,
    rgb: std::result::Result<Vec<u8>, String>,
    _permit: Permit,
}

/// The first failure of an encoder, shared by its feeder and the writer.
type Failure = Arc<Mutex<Option<String>>>;

fn fail(f: &Failure, what: String) {
    let mut g = f.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(what);
    }
}

fn failure(f: &Failure) -> Option<String> {
    f.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One running ffmpeg, encoding one episode of one camera into a segment.
struct Encoder {
    child: Child,
    tx: Option<Sender<Decoded>>,
    feeder: Option<JoinHandle<u64>>,
    stderr: Option<JoinHandle<String>>,
    segment: PathBuf,
    pushed: u64,
    failure: Failure,
}

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
pub struct VideoSet {
    staging: PathBuf,
    segments: PathBuf,
    fps: u32,
    chunks_size: usize,
    opts: VideoOptions,
    budget: Budget,
    cameras: Vec<Camera>,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Decode scratch of the worker threads, held while they live.
    _scratch: Vec<Permit>,
    episode_seq: u64,
    /// Joining segments failed: completed episodes lost their video; nothing may continue.
    broken: bool,
}

impl VideoSet {
    /// Whether `spec` has any video feature.
    pub fn needed(spec: &DatasetSpec) -> bool {
        spec.features
            .iter()
            .any(|f| matches!(f.kind, FeatureKind::Video { .. }))
    }

    /// The codecs `spec` uses.
    pub fn codecs(spec: &DatasetSpec) -> Vec<VideoCodec> {
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
    pub fn check(spec: &DatasetSpec, opts: &VideoOptions) -> Result<()> {
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
    pub fn new(
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
        let (jobs_tx, jobs_rx) = unbounded::<Job>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = jobs_rx.clone();
            let h = std::thread::Builder::new()
                .name(format!("video-decode-{i}"))
                .spawn(move || decode_worker(rx))
                .map_err(|e| Error::Config(format!("cannot start a video decode thread: {e}")))?;
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
            broken: false,
        })
    }

    /// Number of decode threads.
    pub fn decode_threads(&self) -> usize {
        self.workers.len()
    }

    /// Whether a failure lost completed episodes' video (the dataset cannot be finished).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Starts one ffmpeg per camera for the next episode.
    pub fn begin_episode(&mut self) -> Result<()> {
        self.abort_episode();
        fs::create_dir_all(&self.segments).map_err(|e| Error::io(&self.segments, e))?;
        let seq = self.episode_seq;
        self.episode_seq += 1;
        for i in 0..self.cameras.len() {
            let segment = self.segments.join(format!("{i:03}-{seq:06}.mp4"));
            match self.spawn(i, segment) {
                Ok(enc) => self.cameras[i].encoder = Some(enc),
                Err(e) => {
                    self.abort_episode();
                    return Err(e);
                }
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
        let mut child = cmd.spawn().map_err(|e| {
            c.err(format!(
                "cannot start {} ({e}); {INSTALL_HINT}",
                self.opts.ffmpeg.display()
            ))
        })?;
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

    /// Whether feature `feature` is a video feature of this set.
    pub fn has_feature(&self, feature: usize) -> bool {
        self.cameras.iter().any(|c| c.feature == feature)
    }

    /// Queues the next frame of feature `feature` (JPEG or PNG bytes) for decoding and
    /// encoding. Blocks while the video budget is full; fails if the camera's encoder failed.
    pub fn push(&mut self, feature: usize, bytes: bytes::Bytes, format: ImageFormat) -> Result<()> {
        let Some(c) = self.cameras.iter_mut().find(|c| c.feature == feature) else {
            return Err(Error::Config(format!("feature {feature} is not a video")));
        };
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
            .ok_or_else(|| Error::Config("encoder already closed".into()))?;
        let job = Job {
            seq,
            bytes,
            format,
            size,
            tx,
            permit,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| Error::Config("video decode threads stopped".into()))?
            .send(job)
            .map_err(|_| Error::Config("video decode threads stopped".into()))?;
        enc.pushed += 1;
        Ok(())
    }

    /// Waits for every camera's ffmpeg to finish the episode and places its segment; returns
    /// one span per video feature, in feature order. On any failure the whole episode's video
    /// is discarded and the error names the camera and ffmpeg's last words.
    pub fn end_episode(&mut self) -> Result<Vec<(usize, VideoSpan)>> {
        let mut done = Vec::with_capacity(self.cameras.len());
        let mut first_err = None;
        for c in &mut self.cameras {
            let Some(enc) = c.encoder.take() else {
                first_err.get_or_insert_with(|| c.err("no episode was begun"));
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
        if let Some(e) = first_err {
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

    /// Joins the camera's pending segments into its open file (stream copy, timestamps
    /// rewritten to `frame · TICKS_PER_FRAME`), fsyncs it and moves on to the next file name.
    fn join_pending(&mut self, cam: usize) -> Result<()> {
        let c = &self.cameras[cam];
        if c.pending.is_empty() {
            return Ok(());
        }
        let rel = super::video_file_path(&c.key, c.file.0, c.file.1);
        let out = self.staging.join(&rel);
        if let Some(dir) = out.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let list = self.segments.join(format!("{cam:03}-concat.txt"));
        let mut text = String::from("ffconcat version 1.0\n");
        for s in &c.pending {
            let name = s
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            text.push_str(&format!("file '{name}'\n"));
        }
        fs::write(&list, text).map_err(|e| Error::io(&list, e))?;
        let out_put = Command::new(&self.opts.ffmpeg)
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-f", "concat", "-safe", "0", "-i"])
            .arg(&list)
            .args(["-map", "0:v", "-c", "copy", "-bsf:v"])
            .arg(format!("setts=ts=N*{TICKS_PER_FRAME}"))
            .arg("-video_track_timescale")
            .arg((u64::from(self.fps) * TICKS_PER_FRAME).to_string())
            .args(["-f", "mp4", "-y"])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| c.err(format!("cannot run ffmpeg to join segments: {e}")))?;
        if !out_put.status.success() {
            let tail = tail_of(&out_put.stderr);
            return Err(c.err(format!(
                "joining {} episode segments into {rel} failed ({}): {tail}",
                c.pending.len(),
                out_put.status
            )));
        }
        File::open(&out)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&out, e))?;
        let _ = fs::remove_file(&list);
        let c = &mut self.cameras[cam];
        for s in c.pending.drain(..) {
            let _ = fs::remove_file(&s);
        }
        c.files.push(rel);
        c.pending_bytes = 0;
        c.pending_frames = 0;
        c.file = if c.file.1 + 1 >= self.chunks_size {
            (c.file.0 + 1, 0)
        } else {
            (c.file.0, c.file.1 + 1)
        };
        Ok(())
    }

    /// Stops the episode's encoders and deletes their segments.
    pub fn abort_episode(&mut self) {
        for c in &mut self.cameras {
            if let Some(enc) = c.encoder.take() {
                kill_encoder(enc);
            }
        }
    }

    /// Joins every camera's pending segments into its last file and removes the segments
    /// directory. Returns the video files written (relative to the dataset root).
    pub fn finish(&mut self) -> Result<Vec<String>> {
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

fn kill_encoder(mut enc: Encoder) {
    let _ = enc.child.kill();
    drop(enc.tx.take());
    if let Some(h) = enc.feeder.take() {
        let _ = h.join();
    }
    let _ = enc.child.wait();
    if let Some(h) = enc.stderr.take() {
        let _ = h.join();
    }
    let _ = fs::remove_file(&enc.segment);
}

/// Decodes frames until the queue closes.
fn decode_worker(rx: Receiver<Job>) {
    for job in rx {
        let Job {
            seq,
            bytes,
            format,
            size,
            tx,
            permit,
        } = job;
        let rgb = decode_rgb(&bytes, format, size, seq);
        drop(bytes);
        let _ = tx.send(Decoded {
            seq,
            rgb,
            _permit: permit,
        });
    }
}

/// JPEG/PNG → packed RGB of exactly `size`.
fn decode_rgb(
    bytes: &[u8],
    format: ImageFormat,
    size: (u32, u32),
    seq: u64,
) -> std::result::Result<Vec<u8>, String> {
    let fmt = match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
    };
    let img = image::load_from_memory_with_format(bytes, fmt)
        .map_err(|e| format!("frame {seq}: cannot decode the image: {e}"))?;
    if (img.width(), img.height()) != size {
        return Err(format!(
            "frame {seq} is {}x{}, the video is {}x{}",
            img.width(),
            img.height(),
            size.0,
            size.1
        ));
    }
    Ok(img.into_rgb8().into_raw())
}

/// Writes decoded frames into ffmpeg's stdin in frame order; after the first failure it only
/// drains (returning the permits). Returns the frames written.
fn feed(mut stdin: ChildStdin, rx: Receiver<Decoded>, failure: Failure) -> u64 {
    let mut held: BTreeMap<u64, Decoded> = BTreeMap::new();
    let (mut next, mut written, mut broken) = (0u64, 0u64, false);
    for d in rx {
        held.insert(d.seq, d);
        while let Some(d) = held.remove(&next) {
            next += 1;
            if broken {
                continue;
            }
            match &d.rgb {
                Ok(rgb) => match stdin.write_all(rgb) {
                    Ok(()) => written += 1,
                    Err(e) => {
                        fail(
                            &failure,
                            format!("ffmpeg stopped reading at frame {} ({e})", d.seq),
                        );
                        broken = true;
                    }
                },
                Err(what) => {
                    fail(&failure, what.clone());
                    broken = true;
                }
            }
        }
    }
    drop(stdin);
    written
}

/// Reads a child's stderr to the end, keeping the last [`STDERR_TAIL_BYTES`].
fn stderr_tail(mut r: impl Read) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    tail_of(&tail)
}

fn tail_of(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_parse_and_name() {
        assert_eq!(VideoCodec::parse("AV1").unwrap(), VideoCodec::Av1);
        assert_eq!(VideoCodec::parse("h265").unwrap(), VideoCodec::Hevc);
        assert_eq!(VideoCodec::H264.encoder(), "libx264");
        assert!(VideoCodec::parse("vp9").is_err());
    }

    #[test]
    fn info_block_has_lerobots_keys_in_order() {
        let v = info_block(VideoCodec::Av1, 30, 480, 640);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "video.height",
                "video.width",
                "video.codec",
                "video.pix_fmt",
                "video.is_depth_map",
                "video.fps",
                "video.channels",
                "has_audio"
            ]
        );
        assert_eq!(v["video.codec"], "av1");
    }

    #[test]
    fn odd_and_tiny_sizes_are_refused() {
        assert!(size_problem(VideoCodec::H264, 65, 64).is_some());
        assert!(size_problem(VideoCodec::Av1, 32, 32).is_some());
        assert!(size_problem(VideoCodec::H264, 32, 32).is_none());
    }

    #[test]
    fn missing_ffmpeg_is_a_clear_error() {
        let e = check_ffmpeg(Path::new("/nonexistent/ffmpeg"), &[VideoCodec::Av1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("apt-get install ffmpeg"), "{e}");
    }
}
