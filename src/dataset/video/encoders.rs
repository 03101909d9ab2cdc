//! The ffmpeg encoders' share of the ceiling. An encoder is a child process: its memory is not
//! in this process's budgets, but a cgroup or Slurm `--mem` counts it, and so does the ceiling
//! ([`crate::memory::tree`]). So it is planned, not hoped for:
//!
//! ```text
//! ceiling = converter (its own MemoryPlan) + slots x encoder_bytes(codec, width, height)
//! ```
//!
//! `encoder_bytes` is a conservative linear model per codec, fitted to the peak RSS (`VmHWM`)
//! of one ffmpeg encoding rgb24 frames from a pipe with the settings bag2dataset uses
//! ([`crate::dataset::video::VideoCodec::args`], which apply the encoders' own bounds), at
//! 640x480 and 1280x720 (docs/benchmarks.md, "Video encoder memory"), plus a margin of
//! [`MARGIN_PER_MILLE`]. The stream-copy join and ffprobe run only while no encoder of theirs
//! does, and take less than one.
//!
//! Slots: as many encoders as there are cameras when they fit, else as many as fit with the
//! converter's smallest working share; a camera without a slot waits on disk (see
//! [`super`]). A ceiling that leaves no slot fails before any work and names
//! the smallest one that works.

use super::VideoCodec;
use crate::error::{Error, Result};
use crate::memory::format_bytes;

/// Measured peak RSS of one encoder, in KiB, at 640x480 and at 1280x720 (see the module docs).
const MEASURED_KIB: [(VideoCodec, u64, u64); 3] = [
    (VideoCodec::Av1, 117_236, 151_084),
    (VideoCodec::H264, 68_636, 95_088),
    (VideoCodec::Hevc, 102_156, 153_708),
];

/// Planned RSS of one stream-copying ffmpeg (a join, a merge's per-episode copy) or an ffprobe:
/// measured 37-54 MiB at 640x480, plus the margin: 68 MiB.
pub(crate) const COPY_BYTES: u64 = 68 << 20;

/// Margin added to the measured figures, in thousandths: 250 (content, ffmpeg builds).
const MARGIN_PER_MILLE: u64 = 250;

/// Planned peak RSS of one encoder of `codec` for `width`x`height` frames, in bytes: the line
/// through the two measured points (never below the 640x480 figure), plus the margin.
pub fn encoder_bytes(codec: VideoCodec, width: u32, height: u32) -> u64 {
    let (_, small, large) = MEASURED_KIB
        .iter()
        .copied()
        .find(|m| m.0 == codec)
        .unwrap_or(MEASURED_KIB[0]);
    let (p_small, p_large) = (640 * 480u64, 1280 * 720u64);
    let px = u64::from(width) * u64::from(height);
    let per_px_milli = (large - small) * 1000 / (p_large - p_small);
    let kib = if px <= p_small {
        small
    } else {
        small + (px - p_small) * per_px_milli / 1000
    };
    let bytes = kib * 1024;
    (bytes + bytes / 1000 * MARGIN_PER_MILLE).next_multiple_of(1 << 20)
}

/// How the ceiling is shared between the converter and its encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EncoderPlan {
    /// Planned bytes of one encoder (the largest camera's).
    pub(crate) encoder_bytes: u64,
    /// Encoders run at once.
    pub(crate) slots: usize,
    pub(crate) cameras: usize,
    /// What is left for the converter.
    pub(crate) converter_ceiling: u64,
    /// The converter's smallest working share (what the slots were fitted beside).
    pub(crate) converter_min: u64,
}

/// Plans `cameras` (codec, width, height) under `ceiling`: as many slots as fit while the
/// converter keeps `converter_min` bytes. Fails, naming the smallest ceiling, when not even one
/// encoder fits.
pub(crate) fn plan(
    ceiling: u64,
    cameras: &[(VideoCodec, u32, u32)],
    converter_min: u64,
) -> Result<EncoderPlan> {
    let per = cameras
        .iter()
        .map(|&(c, w, h)| encoder_bytes(c, w, h))
        .max()
        .unwrap_or(0);
    if cameras.is_empty() {
        return Ok(EncoderPlan {
            encoder_bytes: 0,
            slots: 0,
            cameras: 0,
            converter_ceiling: ceiling,
            converter_min,
        });
    }
    let room = ceiling.saturating_sub(converter_min);
    let slots = ((room / per.max(1)) as usize).min(cameras.len());
    if slots == 0 {
        let needed = converter_min + per;
        return Err(Error::over_budget(
            format!(
                "one video encoder ({} planned for the largest camera) besides the converter's \
                 smallest share ({})",
                format_bytes(per),
                format_bytes(converter_min)
            ),
            needed,
            ceiling,
            ceiling,
        ));
    }
    Ok(EncoderPlan {
        encoder_bytes: per,
        slots,
        cameras: cameras.len(),
        converter_ceiling: ceiling - slots as u64 * per,
        converter_min,
    })
}

/// The ceiling a video run takes when none is given: the converter's default
/// ([`crate::memory::plan::DEFAULT_CEILING`], or its minimum if larger) plus one encoder per camera.
pub(crate) fn default_ceiling(cameras: &[(VideoCodec, u32, u32)], converter_min: u64) -> u64 {
    let per = cameras
        .iter()
        .map(|&(c, w, h)| encoder_bytes(c, w, h))
        .max()
        .unwrap_or(0);
    crate::memory::plan::DEFAULT_CEILING.max(converter_min) + per * cameras.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_grows_with_the_frame_and_keeps_a_margin() {
        for (codec, small, large) in MEASURED_KIB {
            let a = encoder_bytes(codec, 640, 480);
            let b = encoder_bytes(codec, 1280, 720);
            assert!(a > small * 1024 && b > large * 1024, "{codec:?}");
            assert!(encoder_bytes(codec, 320, 240) == a);
            assert!(encoder_bytes(codec, 1920, 1080) > b);
        }
    }

    #[test]
    fn slots_are_what_fits_and_too_small_names_the_minimum() {
        let cams = [(VideoCodec::Av1, 640, 480); 3];
        let per = encoder_bytes(VideoCodec::Av1, 640, 480);
        let min = 40 << 20;
        let all = plan(min + 3 * per + (5 << 20), &cams, min).unwrap();
        assert_eq!(all.slots, 3);
        let one = plan(min + per + (1 << 20), &cams, min).unwrap();
        assert_eq!(one.slots, 1);
        assert!(one.converter_ceiling >= min);
        let e = plan(min + per - 1, &cams, min).unwrap_err().to_string();
        assert!(e.contains("--max-memory") && e.contains("encoder"), "{e}");
        assert!(default_ceiling(&cams, min) >= min + 3 * per);
    }
}
