//! Images on their way out: CompressedImage bytes pass through untouched; raw
//! `sensor_msgs/Image` pixels are encoded to PNG (16-bit depth as 16-bit PNG).

use std::sync::Arc;

use bytes::Bytes;
use image::ExtendedColorType;
use image::ImageEncoder;
use image::codecs::png::PngEncoder;

use crate::dataset::{FeatureValue, ImageFormat};
use crate::msg::ImagePayload;

/// Channels of a raw image encoding we can store, or None.
pub(crate) fn raw_channels(encoding: &str) -> Option<u32> {
    match encoding {
        "rgb8" | "bgr8" | "8UC3" => Some(3),
        "rgba8" | "bgra8" | "8UC4" => Some(4),
        "mono8" | "8UC1" | "mono16" | "16UC1" => Some(1),
        _ => None,
    }
}

/// Bytes of the header `compressed_depth_image_transport` puts before its PNG.
const COMPRESSED_DEPTH_HEADER: usize = 12;
/// JPEG quality of resized camera images.
const RESIZE_JPEG_QUALITY: u8 = 90;

/// Where the encoded image starts in a CompressedImage's data and what it is: JPEG or PNG as
/// is, or PNG after the 12-byte header of `compressedDepth` topics.
pub(crate) fn locate_encoded(bytes: &[u8]) -> Option<(usize, ImageFormat)> {
    const PNG: &[u8] = &[0x89, b'P', b'N', b'G'];
    if bytes.starts_with(PNG) {
        Some((0, ImageFormat::Png))
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        Some((0, ImageFormat::Jpeg))
    } else if bytes
        .get(COMPRESSED_DEPTH_HEADER..)
        .is_some_and(|b| b.starts_with(PNG))
    {
        Some((COMPRESSED_DEPTH_HEADER, ImageFormat::Png))
    } else {
        None
    }
}

/// An image sample's bytes as the owner of a [`Bytes`].
struct SharedPayload(Arc<ImagePayload>);

impl AsRef<[u8]> for SharedPayload {
    fn as_ref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// The stored form of an image: CompressedImage bytes as they are (JPEG or PNG, found by their
/// magic; the depth header stripped), raw pixels as PNG; with `resize = (height, width)`,
/// decoded, resized and encoded again (JPEG stays JPEG, everything else becomes PNG).
pub(crate) fn to_feature_value(
    img: &Arc<ImagePayload>,
    resize: Option<(u32, u32)>,
) -> Result<FeatureValue, String> {
    let (bytes, format) = if img.raw {
        (encode_png(img)?, ImageFormat::Png)
    } else {
        let (at, format) = locate_encoded(&img.bytes).ok_or_else(|| {
            format!(
                "CompressedImage with format {:?} is neither JPEG nor PNG",
                img.format
            )
        })?;
        if resize.is_none() {
            // Shares the sample's bytes: the aligner may still hold it for a later tick.
            return Ok(FeatureValue::Image {
                bytes: Bytes::from_owner(SharedPayload(img.clone())).slice(at..),
                format,
            });
        }
        (img.bytes[at..].to_vec(), format)
    };
    let Some((h, w)) = resize else {
        return Ok(FeatureValue::Image {
            bytes: bytes.into(),
            format,
        });
    };
    let decoded = image::load_from_memory(&bytes)
        .map_err(|e| format!("cannot decode the image to resize it: {e}"))?;
    let resized = decoded.resize_exact(w, h, image::imageops::FilterType::Triangle);
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            let rgb = resized.to_rgb8();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, RESIZE_JPEG_QUALITY)
                .encode(rgb.as_raw(), w, h, ExtendedColorType::Rgb8)
                .map_err(|e| format!("JPEG encoding failed: {e}"))?;
        }
        ImageFormat::Png => {
            resized
                .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
                .map_err(|e| format!("PNG encoding failed: {e}"))?;
        }
    }
    Ok(FeatureValue::Image {
        bytes: out.into(),
        format,
    })
}

/// Encodes raw pixels to PNG, honouring `step` padding, BGR order and big-endian 16-bit data.
fn encode_png(img: &ImagePayload) -> Result<Vec<u8>, String> {
    let (w, h) = (img.width as usize, img.height as usize);
    let (channels, bytes_per) = match img.format.as_str() {
        "mono16" | "16UC1" => (1, 2),
        enc => (
            raw_channels(enc).ok_or_else(|| format!("unsupported raw image encoding {enc:?}"))?
                as usize,
            1,
        ),
    };
    let row = w * channels * bytes_per;
    let step = img.step as usize;
    if step < row || img.bytes.len() < step * h.saturating_sub(1) + row {
        return Err(format!(
            "raw image {w}x{h} {} with step {step} needs {} bytes but has {}",
            img.format,
            step * h.saturating_sub(1) + row,
            img.bytes.len()
        ));
    }
    let mut pixels = Vec::with_capacity(row * h);
    for y in 0..h {
        pixels.extend_from_slice(&img.bytes[y * step..y * step + row]);
    }
    if img.format.starts_with("bgr") {
        for px in pixels.chunks_exact_mut(channels) {
            px.swap(0, 2);
        }
    }
    let color = match (channels, bytes_per) {
        (1, 1) => ExtendedColorType::L8,
        (1, 2) => {
            // The encoder takes native-endian 16-bit samples.
            for s in pixels.chunks_exact_mut(2) {
                let v = if img.big_endian {
                    u16::from_be_bytes([s[0], s[1]])
                } else {
                    u16::from_le_bytes([s[0], s[1]])
                };
                s.copy_from_slice(&v.to_ne_bytes());
            }
            ExtendedColorType::L16
        }
        (3, _) => ExtendedColorType::Rgb8,
        _ => ExtendedColorType::Rgba8,
    };
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&pixels, w as u32, h as u32, color)
        .map_err(|e| format!("PNG encoding failed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(
        format: &str,
        w: u32,
        h: u32,
        step: u32,
        bytes: Vec<u8>,
        big_endian: bool,
    ) -> ImagePayload {
        ImagePayload {
            bytes,
            format: format.into(),
            width: w,
            height: h,
            step,
            big_endian,
            raw: true,
        }
    }

    #[test]
    fn raw_images_round_trip_through_png() {
        // bgr8 with 2 bytes of row padding
        let img = raw(
            "bgr8",
            2,
            2,
            8,
            vec![1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0],
            false,
        );
        let png = encode_png(&img).unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back.as_raw(), &vec![3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
        // 16UC1 big endian depth stays 16-bit
        let img = raw("16UC1", 2, 1, 4, vec![0x12, 0x34, 0xAB, 0xCD], true);
        let back = image::load_from_memory(&encode_png(&img).unwrap()).unwrap();
        assert_eq!(back.color(), image::ColorType::L16);
        assert_eq!(back.to_luma16().as_raw(), &vec![0x1234, 0xABCD]);
        // resized: 2x2 -> 1x1, still PNG
        let small = to_feature_value(
            &Arc::new(raw("rgb8", 2, 2, 6, vec![10; 12], false)),
            Some((1, 1)),
        )
        .unwrap();
        let FeatureValue::Image { bytes, format } = small else {
            panic!()
        };
        assert_eq!(format, ImageFormat::Png);
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 1);
        // compressedDepth: PNG after a 12-byte header
        let mut depth = vec![0u8; COMPRESSED_DEPTH_HEADER];
        depth.extend(encode_png(&raw("16UC1", 2, 1, 4, vec![1, 2, 3, 4], false)).unwrap());
        assert_eq!(
            locate_encoded(&depth),
            Some((COMPRESSED_DEPTH_HEADER, ImageFormat::Png))
        );
        // short data is an error, not a panic
        assert!(encode_png(&raw("rgb8", 4, 4, 12, vec![0; 10], false)).is_err());
        assert!(encode_png(&raw("yuv422", 1, 1, 2, vec![0; 2], false)).is_err());
    }
}
