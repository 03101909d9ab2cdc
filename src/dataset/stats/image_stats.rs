//! Image features: lerobot's frame sample, its stride downsampling to about 150 px, and an exact 256-bin histogram per RGB channel.

use super::*;

/// Target longest side of a sampled image before statistics, in pixels (lerobot's
/// `auto_downsample_height_width` `target_size`): 150.
const IMAGE_STATS_TARGET_SIZE: u32 = 150;
/// Images whose longest side is below this many pixels are used at full size (lerobot's
/// `max_size_threshold`): 300.
const IMAGE_STATS_DOWNSAMPLE_THRESHOLD: u32 = 300;
/// Fewest image samples per episode (lerobot's `min_num_samples`; fewer if the episode is
/// shorter): 100.
const IMAGE_MIN_SAMPLES: usize = 100;
/// Most image samples per episode (lerobot's `max_num_samples`): 10 000.
const IMAGE_MAX_SAMPLES: usize = 10_000;

/// lerobot's `estimate_num_samples`: how many frames of an `n`-frame episode feed image stats.
pub(crate) fn estimate_num_samples(n: usize) -> usize {
    let min = IMAGE_MIN_SAMPLES.min(n);
    let pow = (n as f64).powf(0.75) as usize;
    min.max(pow.min(IMAGE_MAX_SAMPLES))
}

/// lerobot's `sample_indices`: `np.round(np.linspace(0, n-1, k)).astype(int)`, lazily.
#[derive(Debug, Clone)]
pub(crate) struct SampleCursor {
    n: usize,
    k: usize,
    next: usize,
}

impl SampleCursor {
    /// Samples for an episode of (at most) `n` frames; `n == 0` is treated as 1 so the first
    /// frame is always sampled.
    pub(crate) fn new(n: usize) -> Self {
        let n = n.max(1);
        SampleCursor {
            n,
            k: estimate_num_samples(n),
            next: 0,
        }
    }

    /// Index of sample `j` (numpy linspace then round half to even).
    fn index(&self, j: usize) -> usize {
        if self.k <= 1 {
            return 0;
        }
        if j + 1 == self.k {
            return self.n - 1;
        }
        let step = (self.n - 1) as f64 / (self.k - 1) as f64;
        (j as f64 * step).round_ties_even() as usize
    }

    /// How many samples fall on frame `i`, without moving the cursor.
    fn hits_at(&self, i: usize) -> usize {
        let mut j = self.next;
        let mut hits = 0;
        while j < self.k && self.index(j) <= i {
            hits += usize::from(self.index(j) == i);
            j += 1;
        }
        hits
    }

    /// Moves past frame `i` (frames must be visited in increasing order).
    fn advance_past(&mut self, i: usize) {
        while self.next < self.k && self.index(self.next) <= i {
            self.next += 1;
        }
    }

    /// How many samples fall on frame `i`, moving past it.
    #[cfg(test)]
    pub(crate) fn take(&mut self, i: usize) -> usize {
        let hits = self.hits_at(i);
        self.advance_past(i);
        hits
    }

    /// All sample indices (for tests and docs).
    #[cfg(test)]
    pub(crate) fn indices(n: usize) -> Vec<usize> {
        let c = SampleCursor::new(n);
        (0..c.k).map(|j| c.index(j)).collect()
    }
}

/// One sampled frame's histogram, weighted by how often lerobot's sample picks it.
#[derive(Debug, Clone)]
pub(crate) struct SampledImage {
    hits: u64,
    hist: Box<[[u64; 256]; 3]>,
}

thread_local! {
    /// The decoded RGB of the last sampled JPEG, reused by the next decode on this thread (a
    /// fresh 0.9 MiB buffer per 640x480 frame would be zeroed each time).
    static DECODE_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A decode buffer larger than this (8 MiB: beyond 1920x1440 RGB) is freed after use rather
/// than kept for the next frame.
pub(super) const MAX_KEPT_SCRATCH_BYTES: usize = 8 << 20;

/// Decodes a JPEG straight to 8-bit RGB in `rgb` (grey replicated, CMYK/YCCK converted, as
/// PIL's `convert("RGB")`), returning (width, height). Calls zune-jpeg (the decoder `image`
/// uses) directly: no copy of the input, no fresh output buffer, no per-pixel accessor.
pub(super) fn decode_jpeg_rgb(bytes: &[u8], rgb: &mut Vec<u8>) -> Result<(u32, u32), String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let bad = |e: &dyn std::fmt::Display| format!("cannot decode Jpeg image: {e}");
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().map_err(|e| bad(&e))?;
    let (w, h) = d.dimensions().ok_or_else(|| bad(&"no dimensions"))?;
    let size = d
        .output_buffer_size()
        .ok_or_else(|| bad(&"no output size"))?;
    if d.output_colorspace() != Some(ColorSpace::RGB) || size != w * h * 3 {
        return Err(bad(&format!(
            "cannot convert {:?} to RGB",
            d.input_colorspace()
        )));
    }
    rgb.resize(size, 0);
    d.decode_into(rgb).map_err(|e| bad(&e))?;
    Ok((w as u32, h as u32))
}

/// Decodes one image of lerobot's sample and counts its downsampled pixels `hits` times (the
/// number of times the sample takes the frame). Images are converted to 8-bit RGB as PIL's
/// `convert("RGB")` does (grey replicated, alpha dropped); 16-bit images are scaled by
/// 255/65535 first, so depth stats are `value / 65535`. JPEGs decode into this thread's
/// scratch buffer, kept for the next call.
pub(crate) fn sample_image(
    bytes: &[u8],
    format: ImageFormat,
    expect: (u32, u32),
    hits: u64,
) -> Result<SampledImage, String> {
    let mut hist = Box::new([[0u64; 256]; 3]);
    let dims_err = |w: u32, h: u32| {
        format!(
            "image is {h}x{w} (HxW) but the feature declares {}x{}",
            expect.0, expect.1
        )
    };
    match format {
        ImageFormat::Jpeg => DECODE_SCRATCH.with_borrow_mut(|rgb| {
            let (w, h) = decode_jpeg_rgb(bytes, rgb)?;
            if (h, w) != expect {
                return Err(dims_err(w, h));
            }
            let (w, h) = (w as usize, h as usize);
            let step = downsample_factor(w as u32, h as u32) as usize;
            for y in (0..h).step_by(step) {
                let row = &rgb[y * w * 3..(y + 1) * w * 3];
                for p in row.chunks_exact(3).step_by(step) {
                    for c in 0..3 {
                        hist[c][usize::from(p[c])] += hits;
                    }
                }
            }
            if rgb.capacity() > MAX_KEPT_SCRATCH_BYTES {
                *rgb = Vec::new();
            }
            Ok(())
        })?,
        ImageFormat::Png => {
            let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
                .map_err(|e| format!("cannot decode {format:?} image: {e}"))?;
            let (w, h) = img.dimensions();
            if (h, w) != expect {
                return Err(dims_err(w, h));
            }
            let step = downsample_factor(w, h);
            for y in (0..h).step_by(step as usize) {
                for x in (0..w).step_by(step as usize) {
                    let p = img.get_pixel(x, y).0;
                    for c in 0..3 {
                        hist[c][usize::from(p[c])] += hits;
                    }
                }
            }
        }
    }
    Ok(SampledImage { hits, hist })
}

/// Per-episode image statistics: lerobot's frame sample, downsampled, as 8-bit RGB histograms.
#[derive(Debug, Clone)]
pub(crate) struct ImageStats {
    cursor: SampleCursor,
    hist: Box<[[u64; 256]; 3]>,
    samples: u64,
}

impl ImageStats {
    /// Stats for an episode of at most `expected_frames` frames.
    pub(crate) fn new(expected_frames: usize) -> Self {
        ImageStats {
            cursor: SampleCursor::new(expected_frames),
            hist: Box::new([[0; 256]; 3]),
            samples: 0,
        }
    }

    /// Offers frame `frame_index`: records it if lerobot's sample includes it.
    #[cfg(test)]
    pub(crate) fn push(
        &mut self,
        frame_index: usize,
        bytes: &[u8],
        format: ImageFormat,
        expect: (u32, u32),
    ) -> Result<(), String> {
        let s = self.sample(frame_index, bytes, format, expect)?;
        self.commit(frame_index, s);
        Ok(())
    }

    /// Decodes frame `frame_index` if it is sampled, without changing any state (so a frame
    /// that fails can be rejected cleanly); see [`sample_image`].
    pub(crate) fn sample(
        &self,
        frame_index: usize,
        bytes: &[u8],
        format: ImageFormat,
        expect: (u32, u32),
    ) -> Result<Option<SampledImage>, String> {
        match self.hits_at(frame_index) {
            0 => Ok(None),
            hits => sample_image(bytes, format, expect, hits).map(Some),
        }
    }

    /// How many times lerobot's sample takes frame `frame_index` (0: not sampled).
    pub(crate) fn hits_at(&self, frame_index: usize) -> u64 {
        self.cursor.hits_at(frame_index) as u64
    }

    /// Records frame `frame_index` with what [`Self::sample`] returned for it.
    pub(crate) fn commit(&mut self, frame_index: usize, sampled: Option<SampledImage>) {
        self.cursor.advance_past(frame_index);
        if let Some(s) = sampled {
            for (dst, src) in self.hist.iter_mut().zip(s.hist.iter()) {
                for (d, v) in dst.iter_mut().zip(src) {
                    *d += v;
                }
            }
            self.samples += s.hits;
        }
    }

    /// Final per-channel statistics in `[0, 1]`; `None` when nothing was sampled.
    pub(crate) fn finish(&self) -> Option<FeatureStats> {
        if self.samples == 0 {
            return None;
        }
        let mut s = FeatureStats {
            min: vec![],
            max: vec![],
            mean: vec![],
            std: vec![],
            quantiles: Default::default(),
            count: self.samples,
            image: true,
        };
        for hist in self.hist.iter() {
            let total: u64 = hist.iter().sum();
            let nonzero = |i: &usize| hist[*i] > 0;
            let min = (0..256).find(nonzero).unwrap_or(0);
            let max = (0..256).rev().find(nonzero).unwrap_or(0);
            let mean = hist
                .iter()
                .enumerate()
                .map(|(v, c)| v as f64 * *c as f64)
                .sum::<f64>()
                / total as f64;
            let var = hist
                .iter()
                .enumerate()
                .map(|(v, c)| (v as f64 - mean).powi(2) * *c as f64)
                .sum::<f64>()
                / total as f64;
            let mut cum = [0u64; 256];
            let mut acc = 0;
            for (i, c) in hist.iter().enumerate() {
                acc += c;
                cum[i] = acc;
            }
            let at = |r: u64| cum.partition_point(|c| *c <= r) as f64;
            s.min.push(min as f64 / 255.0);
            s.max.push(max as f64 / 255.0);
            s.mean.push(mean / 255.0);
            s.std.push(var.sqrt() / 255.0);
            for (dst, q) in s.quantiles.iter_mut().zip(quantile_probs()) {
                dst.push(linear_quantile(total, q, at) / 255.0);
            }
        }
        Some(s)
    }

    /// Bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<[[u64; 256]; 3]>() + std::mem::size_of::<Self>()
    }
}

/// lerobot's stride: 1 below [`IMAGE_STATS_DOWNSAMPLE_THRESHOLD`], else
/// `int(longest_side / 150)` (width when `w > h`, else height).
fn downsample_factor(w: u32, h: u32) -> u32 {
    if w.max(h) < IMAGE_STATS_DOWNSAMPLE_THRESHOLD {
        1
    } else {
        let side = if w > h { w } else { h };
        (side / IMAGE_STATS_TARGET_SIZE).max(1)
    }
}

/// Reads the width and height of an encoded image from its header only: the JPEG start-of-frame
/// marker or the PNG IHDR chunk, found by walking marker/chunk lengths (no Huffman tables are
/// built: this runs for every frame of every camera).
pub(crate) fn image_dimensions(bytes: &[u8], format: ImageFormat) -> Result<(u32, u32), String> {
    let bad = |what: &str| format!("cannot read {format:?} image header: {what}");
    match format {
        ImageFormat::Png => {
            if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR"
            {
                return Err(bad("no PNG signature and IHDR chunk"));
            }
            let w = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
            let h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
            Ok((w, h))
        }
        ImageFormat::Jpeg => {
            if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
                return Err(bad("no JPEG start-of-image marker"));
            }
            let mut at = 2usize;
            while at + 4 <= bytes.len() {
                if bytes[at] != 0xFF {
                    return Err(bad(&format!("expected a marker at byte {at}")));
                }
                let marker = bytes[at + 1];
                if marker == 0xFF {
                    at += 1; // fill byte
                    continue;
                }
                let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
                // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
                if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
                    if at + 9 > bytes.len() {
                        break;
                    }
                    let h = u16::from_be_bytes([bytes[at + 5], bytes[at + 6]]) as u32;
                    let w = u16::from_be_bytes([bytes[at + 7], bytes[at + 8]]) as u32;
                    return Ok((w, h));
                }
                if marker == 0xDA || len < 2 {
                    break;
                }
                at += 2 + len;
            }
            Err(bad("no start-of-frame marker before the image data"))
        }
    }
}
