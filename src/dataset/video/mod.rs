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

pub(crate) mod adopt;
mod codec;
mod decode;
pub mod encoders;
mod ffmpeg;
mod frame_spill;
mod set;

pub use codec::*;
pub(crate) use set::{VideoSet, run_stream_copy};

/// Where one episode of one camera is: its video file and its time range in it, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VideoSpan {
    pub(crate) chunk: usize,
    pub(crate) file: usize,
    pub(crate) from_timestamp: f64,
    pub(crate) to_timestamp: f64,
}
