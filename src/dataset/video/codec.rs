//! Codecs and their ffmpeg settings: what a video feature is encoded with, the `info.json`
//! block that describes it, and the up-front check that the system ffmpeg can do it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Default constant rate factor (lerobot's default): 30.
const DEFAULT_CRF: u32 = 30;
/// Default keyframe interval in frames (lerobot uses 2 for fast random access): 2.
const DEFAULT_GOP: u32 = 2;
/// SVT-AV1 preset (lerobot's default; 0 slowest … 13 fastest): 12.
const SVT_AV1_PRESET: u32 = 12;
/// Pixel format of the encoded video (what lerobot writes and decoders expect): yuv420p.
pub(crate) const PIX_FMT: &str = "yuv420p";
/// MP4 timestamp ticks per frame; the track timescale is `fps · 512` (for 30 fps: 15360, what
/// ffmpeg picks by itself).
pub const TICKS_PER_FRAME: u64 = 512;
/// Smallest width and height SVT-AV1 accepts, in pixels: 64.
const AV1_MIN_SIDE: u32 = 64;
/// Budget of frames in flight to the encoders when the caller gives none: 64 MiB.
pub(crate) const DEFAULT_VIDEO_BUDGET_BYTES: u64 = 64 << 20;
/// Most decode threads chosen automatically (also bounded by the cores and the budget): 8.
pub(crate) const MAX_DECODE_THREADS: usize = 8;
/// Bytes of ffmpeg's stderr kept for error messages (the end of it): 4 KiB.
pub(crate) const STDERR_TAIL_BYTES: usize = 4096;
/// Environment variable naming the ffmpeg binary (default: `ffmpeg` on the `PATH`).
const FFMPEG_ENV: &str = "BAG2DATASET_FFMPEG";
/// Environment variable naming the ffprobe binary that counts encoded frames.
const FFPROBE_ENV: &str = "BAG2DATASET_FFPROBE";
/// SVT-AV1's own memory bounds: one level of parallelism (its thread pools and frame buffers
/// scale with it; the output is the same) and no look-ahead window.
const SVT_AV1_PARAMS: &str = "lp=1:lookahead=0";
/// x264's own memory bounds: one thread (no frame threads holding frames) and a short
/// rate-control look-ahead.
const X264_THREADS: u32 = 1;
const X264_RC_LOOKAHEAD: u32 = 10;
/// x265's own memory bounds: one thread pool of one frame thread, short look-ahead.
const X265_PARAMS: &str =
    "log-level=error:pools=1:frame-threads=1:rc-lookahead=5:lookahead-slices=0";
/// Where the episode segments are kept inside the staging directory until they are joined.
pub(crate) const SEGMENTS_DIR: &str = ".video-segments";
/// How to get an ffmpeg with the encoders, appended to every "not found" error.
pub(crate) const INSTALL_HINT: &str = "install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`, which has \
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
    pub(crate) fn encoder(self) -> &'static str {
        match self {
            VideoCodec::Av1 => "libsvtav1",
            VideoCodec::H264 => "libx264",
            VideoCodec::Hevc => "libx265",
        }
    }

    /// The codec's canonical name (`video.codec` in `info.json`, what PyAV reports).
    pub(crate) fn name(self) -> &'static str {
        match self {
            VideoCodec::Av1 => "av1",
            VideoCodec::H264 => "h264",
            VideoCodec::Hevc => "hevc",
        }
    }

    /// Parses `av1`, `h264` or `hevc` (also the encoder names and `h265`).
    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "av1" | "libsvtav1" | "svtav1" => Ok(VideoCodec::Av1),
            "h264" | "libx264" | "avc" => Ok(VideoCodec::H264),
            "hevc" | "h265" | "libx265" => Ok(VideoCodec::Hevc),
            _ => Err(Error::Config(format!(
                "unknown video codec {s:?} (expected av1, h264 or hevc)"
            ))),
        }
    }

    /// Encoder options after `-c:v`: rate control, GOP, no frame reordering, and the
    /// encoder's own memory bounds (see [`crate::dataset::video::encoders`] for what they use).
    pub(crate) fn args(self, crf: u32, gop: u32) -> Vec<String> {
        let mut a: Vec<String> = vec!["-g".into(), gop.to_string(), "-crf".into(), crf.to_string()];
        match self {
            VideoCodec::Av1 => a.extend([
                "-preset".into(),
                SVT_AV1_PRESET.to_string(),
                "-svtav1-params".into(),
                SVT_AV1_PARAMS.into(),
            ]),
            VideoCodec::H264 => a.extend([
                "-bf".into(),
                "0".into(),
                "-threads".into(),
                X264_THREADS.to_string(),
                "-rc-lookahead".into(),
                X264_RC_LOOKAHEAD.to_string(),
            ]),
            VideoCodec::Hevc => a.extend([
                "-bf".into(),
                "0".into(),
                "-x265-params".into(),
                X265_PARAMS.into(),
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
    /// Encoders run at once (0 = one per camera). The cameras beyond it spill their frames
    /// (still compressed) into the staging directory and are encoded when the episode ends,
    /// this many at a time: the memory plan reserves this many encoders from the ceiling.
    pub max_encoders: usize,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            crf: DEFAULT_CRF,
            gop: DEFAULT_GOP,
            file_bytes: crate::dataset::VIDEO_FILES_SIZE_IN_MB * crate::dataset::MIB,
            decode_threads: 0,
            ffmpeg: std::env::var_os(FFMPEG_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("ffmpeg")),
            max_encoders: 0,
        }
    }
}

impl VideoOptions {
    /// The ffprobe that counts frames: `$BAG2DATASET_FFPROBE`, else the one beside the ffmpeg
    /// binary, else `ffprobe` on the `PATH`.
    pub(crate) fn ffprobe(&self) -> PathBuf {
        if let Some(p) = std::env::var_os(FFPROBE_ENV) {
            return PathBuf::from(p);
        }
        match self.ffmpeg.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && dir.join("ffprobe").is_file() => {
                dir.join("ffprobe")
            }
            _ => PathBuf::from("ffprobe"),
        }
    }
}

/// Checks that `ffmpeg` runs and has the encoder of every codec, before any work is done.
pub(crate) fn check_ffmpeg(ffmpeg: &Path, codecs: &[VideoCodec]) -> Result<()> {
    let err = |what: String| Error::Video {
        key: "encoder".into(),
        what,
    };
    let child = Command::new(ffmpeg)
        .args(["-hide_banner", "-encoders"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            err(format!(
                "cannot run {} ({e}); video features need ffmpeg: {INSTALL_HINT}",
                ffmpeg.display()
            ))
        })?;
    // A child like the encoders: the tree's memory monitor sees it.
    let _tree = crate::memory::tree::register(child.id(), "ffmpeg -encoders");
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("waiting for {} -encoders: {e}", ffmpeg.display())))?;
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
pub(crate) fn size_problem(codec: VideoCodec, width: u32, height: u32) -> Option<String> {
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

/// The keys of a video feature's `info` block, in lerobot's order.
pub(crate) const INFO_BLOCK_KEYS: [&str; 8] = [
    "video.height",
    "video.width",
    "video.codec",
    "video.pix_fmt",
    "video.is_depth_map",
    "video.fps",
    "video.channels",
    "has_audio",
];

/// The `info` block of a video feature in `info.json`, with lerobot's keys in its order.
pub(crate) fn info_block(codec: VideoCodec, fps: u32, height: u32, width: u32) -> Value {
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
        assert_eq!(keys, INFO_BLOCK_KEYS);
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
