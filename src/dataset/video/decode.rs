//! The decode pool: JPEG/PNG frames → RGB on a few threads, in any order; the feeder of each
//! camera puts them back in order. Every job carries its permit of the video budget.

use crossbeam_channel::{Receiver, Sender};

use crate::dataset::ImageFormat;
use crate::memory::Permit;

/// A frame on its way to a decode thread.
pub(super) struct DecodeJob {
    pub(super) seq: u64,
    pub(super) bytes: bytes::Bytes,
    pub(super) format: ImageFormat,
    pub(super) size: (u32, u32),
    pub(super) tx: Sender<Decoded>,
    pub(super) permit: Permit,
}

/// A decoded frame (or why it could not be) on its way to the feeder; the permit returns the
/// frame's bytes to the budget once it is written into the pipe.
pub(super) struct Decoded {
    pub(super) seq: u64,
    pub(super) rgb: std::result::Result<Vec<u8>, String>,
    pub(super) _permit: Permit,
}

/// Decodes frames until the queue closes.
pub(super) fn decode_worker(rx: Receiver<DecodeJob>) {
    for job in rx {
        let DecodeJob {
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
pub(super) fn decode_rgb(
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
