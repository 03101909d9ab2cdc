//! Streaming statistics in bounded memory: per-episode `min, max, mean, std, count` and the
//! quantiles `q01 … q99` that lerobot stores, plus the dataset-level aggregation of
//! `meta/stats.json`.
//!
//! - Vectors: Welford moments in f64 and one [`QuantileSketch`] per element (exact up to
//!   [`SKETCH_LEVEL_CAPACITY`] values, then a deterministic compactor with a proven rank-error
//!   bound).
//! - Default columns (`timestamp`, `frame_index`, …): generated from `(n, from_index, …)` at the
//!   end of an episode; exact, no per-frame state.
//! - Images: lerobot's frame sample (`sample_indices`), lerobot's stride downsampling to about
//!   150 px, and an exact 256-bin histogram per RGB channel, scaled to `[0, 1]`.
//! - Quantiles follow numpy's default (`np.quantile`, linear interpolation between order
//!   statistics at rank `q·(n−1)`). lerobot 0.4.4 estimates them from a 5000-bin histogram at
//!   rank `q·n`, which lands within one gap between neighbouring order statistics of ours
//!   (e.g. q01 of 30 values: lerobot gives the minimum, numpy interpolates 30 % of the way to
//!   the second value); the two agree as episodes grow. Image quantiles match lerobot's to
//!   about 2e-4.
//! - Image `std` is the true per-channel standard deviation. lerobot 0.4.4 reports 0 here:
//!   it squares the uint8 pixels in uint8 (`batch**2` overflows), so its variance goes
//!   negative and is clipped.

use image::GenericImageView;
use serde_json::{Value, json};

use super::{ImageFormat, QUANTILES};

/// Values held per sketch level (and exactly, before the first compaction): 1024 values, i.e.
/// 4 KiB of f32 per level per vector element.
///
/// Error bound: a compaction at level `h` (items of weight `2^h`) moves any rank by at most
/// `2^h` and happens at most `n / (K·2^h)` times, so after `n` values spread over `H` levels
/// the rank error is at most `(H−1)·n/K`: a relative rank error of `(H−1)/K` with
/// `H − 1 = ⌈log2(n/K)⌉`. Below `K` values the quantiles are exact; at 100 000 values the error
/// is at most 7/1024 ≈ 0.7 % of rank. Memory: `H·K·4` bytes per element.
pub const SKETCH_LEVEL_CAPACITY: usize = 1024;

/// Target longest side of a sampled image before statistics, in pixels (lerobot's
/// `auto_downsample_height_width` `target_size`): 150.
pub const IMAGE_STATS_TARGET_SIZE: u32 = 150;
/// Images whose longest side is below this many pixels are used at full size (lerobot's
/// `max_size_threshold`): 300.
pub const IMAGE_STATS_DOWNSAMPLE_THRESHOLD: u32 = 300;
/// Fewest image samples per episode (lerobot's `min_num_samples`; fewer if the episode is
/// shorter): 100.
pub const IMAGE_MIN_SAMPLES: usize = 100;
/// Most image samples per episode (lerobot's `max_num_samples`): 10 000.
pub const IMAGE_MAX_SAMPLES: usize = 10_000;

/// Statistics of one feature: each vector has one value per element (`[3]` per channel for
/// images, serialized as `[3, 1, 1]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// `q01, q10, q50, q90, q99`, in [`QUANTILES`] order.
    pub quantiles: [Vec<f64>; 5],
    /// Frames counted (sampled frames for images, as lerobot does).
    pub count: u64,
    /// Image statistics: serialized with shape `[3, 1, 1]`.
    pub image: bool,
}

impl FeatureStats {
    /// The value vector of a stat key (`min`, `q50`, …); `None` for `count` or unknown keys.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        match key {
            "min" => Some(&self.min),
            "max" => Some(&self.max),
            "mean" => Some(&self.mean),
            "std" => Some(&self.std),
            _ => QUANTILES
                .iter()
                .position(|(k, _)| *k == key)
                .map(|i| self.quantiles[i].as_slice()),
        }
    }

    /// Shapes a value vector as lerobot does: `[N]`, or `[3, 1, 1]` for images.
    pub fn shaped(&self, values: &[f64]) -> Value {
        if self.image {
            Value::Array(values.iter().map(|v| json!([[v]])).collect())
        } else {
            json!(values)
        }
    }

    /// The JSON object lerobot stores in `stats.json` for one feature.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for key in super::STAT_KEYS {
            let v = match self.get(key) {
                Some(vals) => self.shaped(vals),
                None => json!([self.count]),
            };
            m.insert(key.to_string(), v);
        }
        Value::Object(m)
    }

    /// Bytes held by this value (for memory accounting).
    pub fn memory_bytes(&self) -> usize {
        9 * self.min.len() * std::mem::size_of::<f64>() + std::mem::size_of::<Self>()
    }
}

/// Numpy's default quantile over a sorted sequence given by `at(rank)` of length `n ≥ 1`.
fn linear_quantile(n: u64, q: f64, at: impl Fn(u64) -> f64) -> f64 {
    let target = q * (n - 1) as f64;
    let lo = target.floor() as u64;
    let hi = (lo + 1).min(n - 1);
    let frac = target - lo as f64;
    let a = at(lo);
    if frac == 0.0 {
        a
    } else {
        a + frac * (at(hi) - a)
    }
}

/// Bounded-memory deterministic quantile summary of a stream of f32 values (see
/// [`SKETCH_LEVEL_CAPACITY`] for the error bound).
#[derive(Debug, Clone, Default)]
pub struct QuantileSketch {
    /// `levels[h]` holds values of weight `2^h`.
    levels: Vec<Vec<f32>>,
    /// Per level: which half (even or odd positions) the next compaction keeps; alternating
    /// halves makes consecutive compaction errors cancel instead of add up.
    odd: Vec<bool>,
    n: u64,
}

impl QuantileSketch {
    /// Adds one value.
    pub fn push(&mut self, v: f32) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
            self.odd.push(false);
        }
        self.levels[0].push(v);
        self.n += 1;
        let mut h = 0;
        while h < self.levels.len() && self.levels[h].len() >= SKETCH_LEVEL_CAPACITY {
            self.compact(h);
            h += 1;
        }
    }

    /// Halves level `h` into level `h + 1` (level capacity is even, so no value is left over).
    fn compact(&mut self, h: usize) {
        if h + 1 == self.levels.len() {
            self.levels.push(Vec::new());
            self.odd.push(false);
        }
        let mut level = std::mem::take(&mut self.levels[h]);
        level.sort_unstable_by(f32::total_cmp);
        let start = usize::from(self.odd[h]);
        self.odd[h] = !self.odd[h];
        let keep_back = level.len() % 2 == 1;
        let usable = level.len() - usize::from(keep_back);
        let promoted = level[..usable].iter().skip(start).step_by(2).copied();
        self.levels[h + 1].extend(promoted);
        let rest = if keep_back {
            level.last().copied()
        } else {
            None
        };
        level.clear();
        level.extend(rest);
        self.levels[h] = level;
    }

    /// Number of values pushed.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Whether every value is still held exactly (no compaction yet).
    pub fn is_exact(&self) -> bool {
        self.levels.len() <= 1
    }

    /// Quantiles for the given probabilities (numpy linear definition); empty input gives NaN.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<f64> {
        if self.n == 0 {
            return vec![f64::NAN; qs.len()];
        }
        let mut items: Vec<(f32, u64)> = self
            .levels
            .iter()
            .enumerate()
            .flat_map(|(h, l)| l.iter().map(move |v| (*v, 1u64 << h)))
            .collect();
        items.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let total: u64 = items.iter().map(|x| x.1).sum();
        // Cumulative weight before each item: value at rank r is the item whose range holds r.
        let mut cum = Vec::with_capacity(items.len());
        let mut acc = 0u64;
        for it in &items {
            cum.push(acc);
            acc += it.1;
        }
        let at = |r: u64| {
            let i = cum.partition_point(|c| *c <= r).saturating_sub(1);
            f64::from(items[i].0)
        };
        qs.iter().map(|q| linear_quantile(total, *q, at)).collect()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.levels
            .iter()
            .map(|l| l.capacity() * std::mem::size_of::<f32>())
            .sum::<usize>()
            + self.odd.capacity()
            + std::mem::size_of::<Self>()
    }
}

fn quantile_probs() -> [f64; 5] {
    QUANTILES.map(|(_, q)| q)
}

/// Welford accumulator for the mean and variance of one element, plus min and max.
#[derive(Debug, Clone, Copy)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Population standard deviation (numpy's `np.std`, as lerobot uses).
    fn std(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.m2 / self.n as f64).max(0.0).sqrt()
        }
    }
}

/// Streaming statistics of a float32 vector feature over one episode.
#[derive(Debug, Clone)]
pub struct VectorStats {
    moments: Vec<Moments>,
    sketches: Vec<QuantileSketch>,
}

impl VectorStats {
    pub fn new(len: usize) -> Self {
        VectorStats {
            moments: vec![Moments::default(); len],
            sketches: vec![QuantileSketch::default(); len],
        }
    }

    /// Adds one frame's vector (its length was checked by the caller).
    pub fn push(&mut self, v: &[f32]) {
        for ((m, s), x) in self.moments.iter_mut().zip(&mut self.sketches).zip(v) {
            m.push(f64::from(*x));
            s.push(*x);
        }
    }

    /// Final statistics; `None` when no frame was pushed.
    pub fn finish(&self) -> Option<FeatureStats> {
        let n = self.moments.first()?.n;
        if n == 0 {
            return None;
        }
        let probs = quantile_probs();
        let mut quantiles: [Vec<f64>; 5] = Default::default();
        for s in &self.sketches {
            for (dst, q) in quantiles.iter_mut().zip(s.quantiles(&probs)) {
                dst.push(q);
            }
        }
        Some(FeatureStats {
            min: self.moments.iter().map(|m| m.min).collect(),
            max: self.moments.iter().map(|m| m.max).collect(),
            mean: self.moments.iter().map(|m| m.mean).collect(),
            std: self.moments.iter().map(Moments::std).collect(),
            quantiles,
            count: n,
            image: false,
        })
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.moments.capacity() * std::mem::size_of::<Moments>()
            + self
                .sketches
                .iter()
                .map(QuantileSketch::memory_bytes)
                .sum::<usize>()
    }
}

/// Exact statistics of a column whose episode values are `f(0) ≤ f(1) ≤ … ≤ f(n−1)` (the
/// default columns are all non-decreasing within an episode), without storing them.
pub fn monotone_column_stats(n: u64, f: impl Fn(u64) -> f64) -> Option<FeatureStats> {
    if n == 0 {
        return None;
    }
    let mut m = Moments::default();
    for i in 0..n {
        m.push(f(i));
    }
    let quantiles = quantile_probs().map(|q| vec![linear_quantile(n, q, &f)]);
    Some(FeatureStats {
        min: vec![m.min],
        max: vec![m.max],
        mean: vec![m.mean],
        std: vec![m.std()],
        quantiles,
        count: n,
        image: false,
    })
}

/// lerobot's `estimate_num_samples`: how many frames of an `n`-frame episode feed image stats.
pub fn estimate_num_samples(n: usize) -> usize {
    let min = IMAGE_MIN_SAMPLES.min(n);
    let pow = (n as f64).powf(0.75) as usize;
    min.max(pow.min(IMAGE_MAX_SAMPLES))
}

/// lerobot's `sample_indices`: `np.round(np.linspace(0, n-1, k)).astype(int)`, lazily.
#[derive(Debug, Clone)]
pub struct SampleCursor {
    n: usize,
    k: usize,
    next: usize,
}

impl SampleCursor {
    /// Samples for an episode of (at most) `n` frames; `n == 0` is treated as 1 so the first
    /// frame is always sampled.
    pub fn new(n: usize) -> Self {
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
    pub fn hits_at(&self, i: usize) -> usize {
        let mut j = self.next;
        let mut hits = 0;
        while j < self.k && self.index(j) <= i {
            hits += usize::from(self.index(j) == i);
            j += 1;
        }
        hits
    }

    /// Moves past frame `i` (frames must be visited in increasing order).
    pub fn advance_past(&mut self, i: usize) {
        while self.next < self.k && self.index(self.next) <= i {
            self.next += 1;
        }
    }

    /// How many samples fall on frame `i`, moving past it.
    pub fn take(&mut self, i: usize) -> usize {
        let hits = self.hits_at(i);
        self.advance_past(i);
        hits
    }

    /// All sample indices (for tests and docs).
    pub fn indices(n: usize) -> Vec<usize> {
        let c = SampleCursor::new(n);
        (0..c.k).map(|j| c.index(j)).collect()
    }
}

/// One sampled frame's histogram, weighted by how often lerobot's sample picks it.
#[derive(Debug, Clone)]
pub struct SampledImage {
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
const MAX_KEPT_SCRATCH_BYTES: usize = 8 << 20;

/// Decodes a JPEG straight to 8-bit RGB in `rgb` (grey replicated, CMYK/YCCK converted, as
/// PIL's `convert("RGB")`), returning (width, height). Calls zune-jpeg (the decoder `image`
/// uses) directly: no copy of the input, no fresh output buffer, no per-pixel accessor.
fn decode_jpeg_rgb(bytes: &[u8], rgb: &mut Vec<u8>) -> Result<(u32, u32), String> {
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
pub fn sample_image(
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
pub struct ImageStats {
    cursor: SampleCursor,
    hist: Box<[[u64; 256]; 3]>,
    samples: u64,
}

impl ImageStats {
    /// Stats for an episode of at most `expected_frames` frames.
    pub fn new(expected_frames: usize) -> Self {
        ImageStats {
            cursor: SampleCursor::new(expected_frames),
            hist: Box::new([[0; 256]; 3]),
            samples: 0,
        }
    }

    /// Offers frame `frame_index`: records it if lerobot's sample includes it.
    pub fn push(
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
    pub fn sample(
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
    pub fn hits_at(&self, frame_index: usize) -> u64 {
        self.cursor.hits_at(frame_index) as u64
    }

    /// Records frame `frame_index` with what [`Self::sample`] returned for it.
    pub fn commit(&mut self, frame_index: usize, sampled: Option<SampledImage>) {
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
    pub fn finish(&self) -> Option<FeatureStats> {
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
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<[[u64; 256]; 3]>() + std::mem::size_of::<Self>()
    }
}

/// lerobot's stride: 1 below [`IMAGE_STATS_DOWNSAMPLE_THRESHOLD`], else
/// `int(longest_side / 150)` (width when `w > h`, else height).
pub fn downsample_factor(w: u32, h: u32) -> u32 {
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
pub fn image_dimensions(bytes: &[u8], format: ImageFormat) -> Result<(u32, u32), String> {
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

/// Running dataset-level aggregate of episode stats, as lerobot's `aggregate_stats` computes
/// it: elementwise min/max, count-weighted mean, pooled std (Chan's parallel merge, equal to
/// `sqrt(Σ c·(var_i + (mean_i − mean)²) / Σ c)`), count-weighted quantile means, summed counts.
#[derive(Debug, Clone, Default)]
pub struct StatsAggregate {
    acc: Option<Agg>,
}

#[derive(Debug, Clone)]
struct Agg {
    count: u64,
    min: Vec<f64>,
    max: Vec<f64>,
    mean: Vec<f64>,
    /// Sum of squared deviations from `mean`, over all frames.
    m2: Vec<f64>,
    /// Σ count·quantile.
    qsum: [Vec<f64>; 5],
    image: bool,
}

impl StatsAggregate {
    /// Folds in one episode's statistics.
    pub fn add(&mut self, s: &FeatureStats) {
        let c = s.count as f64;
        let Some(a) = &mut self.acc else {
            self.acc = Some(Agg {
                count: s.count,
                min: s.min.clone(),
                max: s.max.clone(),
                mean: s.mean.clone(),
                m2: s.std.iter().map(|sd| sd * sd * c).collect(),
                qsum: s
                    .quantiles
                    .clone()
                    .map(|q| q.iter().map(|v| v * c).collect()),
                image: s.image,
            });
            return;
        };
        let na = a.count as f64;
        let n = na + c;
        for d in 0..a.mean.len().min(s.mean.len()) {
            let delta = s.mean[d] - a.mean[d];
            a.mean[d] += delta * c / n;
            a.m2[d] += s.std[d] * s.std[d] * c + delta * delta * na * c / n;
            a.min[d] = a.min[d].min(s.min[d]);
            a.max[d] = a.max[d].max(s.max[d]);
            for (qs, qe) in a.qsum.iter_mut().zip(&s.quantiles) {
                qs[d] += qe[d] * c;
            }
        }
        a.count += s.count;
    }

    /// The aggregated statistics; `None` if nothing was added.
    pub fn finish(&self) -> Option<FeatureStats> {
        let a = self.acc.as_ref()?;
        let n = a.count as f64;
        Some(FeatureStats {
            min: a.min.clone(),
            max: a.max.clone(),
            mean: a.mean.clone(),
            std: a.m2.iter().map(|m| (m / n).max(0.0).sqrt()).collect(),
            quantiles: a.qsum.clone().map(|q| q.iter().map(|v| v / n).collect()),
            count: a.count,
            image: a.image,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy's default quantile on a copy of the data.
    fn np_quantile(data: &[f64], q: f64) -> f64 {
        let mut v = data.to_vec();
        v.sort_by(f64::total_cmp);
        linear_quantile(v.len() as u64, q, |r| v[r as usize])
    }

    #[test]
    fn sample_indices_match_lerobot() {
        // Values from lerobot's docstring and numpy.
        assert_eq!(estimate_num_samples(1), 1);
        assert_eq!(estimate_num_samples(50), 50);
        assert_eq!(estimate_num_samples(500), 105);
        assert_eq!(estimate_num_samples(1000), 177);
        assert_eq!(estimate_num_samples(10_000), 1000);
        assert_eq!(estimate_num_samples(20_000), 1681);
        assert_eq!(SampleCursor::indices(1), vec![0]);
        assert_eq!(SampleCursor::indices(5), vec![0, 1, 2, 3, 4]);
        // np.round(np.linspace(0, 149, 100)) -> 0, 2 (1.505), 3 (3.01), ..., 149
        let idx = SampleCursor::indices(150);
        assert_eq!(idx.len(), 100);
        assert_eq!(&idx[..4], &[0, 2, 3, 5]);
        assert_eq!(*idx.last().unwrap(), 149);
        let mut c = SampleCursor::new(150);
        let hits: usize = (0..150).map(|i| c.take(i)).sum();
        assert_eq!(hits, 100);
    }

    #[test]
    fn sketch_is_exact_below_capacity() {
        let data: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.5)
            .collect();
        let mut s = QuantileSketch::default();
        data.iter().for_each(|v| s.push(*v));
        assert!(s.is_exact());
        let d64: Vec<f64> = data.iter().map(|v| f64::from(*v)).collect();
        for (q, got) in [0.01, 0.1, 0.5, 0.9, 0.99]
            .iter()
            .zip(s.quantiles(&[0.01, 0.1, 0.5, 0.9, 0.99]))
        {
            assert_eq!(got, np_quantile(&d64, *q));
        }
    }

    #[test]
    fn sketch_error_within_bound() {
        let n = 200_000u64;
        // A scrambled permutation of 0..n: the value is its own rank.
        let mut s = QuantileSketch::default();
        for i in 0..n {
            s.push(((i * 48_271) % n) as f32);
        }
        assert!(!s.is_exact());
        // H·K·4 bytes with H − 1 = ⌈log2(n/K)⌉ levels, plus one level of slack.
        assert!(s.memory_bytes() < 11 * SKETCH_LEVEL_CAPACITY * 4 + 1024);
        let levels = (n as f64 / SKETCH_LEVEL_CAPACITY as f64).log2().ceil();
        let bound = levels * n as f64 / SKETCH_LEVEL_CAPACITY as f64;
        for q in [0.01, 0.1, 0.5, 0.9, 0.99] {
            let got = s.quantiles(&[q])[0];
            let want = q * (n - 1) as f64;
            assert!((got - want).abs() <= bound, "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn vector_stats_match_naive() {
        let rows: Vec<[f32; 2]> = (0..300).map(|i| [i as f32, (i % 7) as f32 - 3.0]).collect();
        let mut vs = VectorStats::new(2);
        rows.iter().for_each(|r| vs.push(r));
        let s = vs.finish().unwrap();
        for d in 0..2 {
            let col: Vec<f64> = rows.iter().map(|r| f64::from(r[d])).collect();
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / col.len() as f64;
            assert!((s.mean[d] - mean).abs() < 1e-9);
            assert!((s.std[d] - var.sqrt()).abs() < 1e-9);
            assert_eq!(s.quantiles[2][d], np_quantile(&col, 0.5));
        }
        assert_eq!(s.count, 300);
    }

    #[test]
    fn aggregate_matches_pooled_formula() {
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let b: Vec<f64> = (0..30).map(|i| f64::from(i) * 2.0 + 5.0).collect();
        let st = |v: &[f64]| monotone_column_stats(v.len() as u64, |i| v[i as usize]).unwrap();
        let mut agg = StatsAggregate::default();
        agg.add(&st(&a));
        agg.add(&st(&b));
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let full = {
            let mut s = all.clone();
            s.sort_by(f64::total_cmp);
            st(&s)
        };
        let r = agg.finish().unwrap();
        assert_eq!(r.count, 40);
        assert!((r.mean[0] - full.mean[0]).abs() < 1e-9);
        assert!((r.std[0] - full.std[0]).abs() < 1e-9);
        assert_eq!(r.min[0], 0.0);
        assert_eq!(r.max[0], 63.0);
        let qa = st(&a).quantiles[2][0];
        let qb = st(&b).quantiles[2][0];
        assert!((r.quantiles[2][0] - (10.0 * qa + 30.0 * qb) / 40.0).abs() < 1e-9);
    }

    #[test]
    fn image_stats_from_histogram() {
        let mut img = image::RgbImage::new(8, 4);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([x as u8 * 10, 128, 255]);
        }
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut st = ImageStats::new(2);
        st.push(0, &png, ImageFormat::Png, (4, 8)).unwrap();
        st.push(1, &png, ImageFormat::Png, (4, 8)).unwrap();
        let s = st.finish().unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.min[0], 0.0);
        assert!((s.max[0] - 70.0 / 255.0).abs() < 1e-12);
        assert!((s.mean[0] - 35.0 / 255.0).abs() < 1e-12);
        assert!((s.mean[1] - 128.0 / 255.0).abs() < 1e-12);
        assert_eq!(s.std[2], 0.0);
        // np.quantile over 0,0,..,70 (8 values x 8 copies): q50 = 35
        assert!((s.quantiles[2][0] - 35.0 / 255.0).abs() < 1e-12);
        assert_eq!(s.to_json()["mean"][1], json!([[128.0 / 255.0]]));
        assert!(st.push(1, &png, ImageFormat::Png, (5, 8)).is_ok()); // not sampled again
        let mut bad = ImageStats::new(1);
        assert!(bad.push(0, &png, ImageFormat::Png, (5, 8)).is_err());
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn image_dimensions_read_headers_only() {
        let (w, h) = (37u32, 21u32);
        let pixels = vec![90u8; (w * h * 3) as usize];
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(image_dimensions(&jpeg, ImageFormat::Jpeg), Ok((w, h)));
        let mut png = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut png),
            &pixels,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        assert_eq!(image_dimensions(&png, ImageFormat::Png), Ok((w, h)));
        assert!(image_dimensions(&png, ImageFormat::Jpeg).is_err());
        assert!(image_dimensions(&jpeg[..20], ImageFormat::Jpeg).is_err());
        assert!(image_dimensions(b"garbage", ImageFormat::Png).is_err());
        // a marker length that points past the end is an error, not a panic
        let mut lying = jpeg.clone();
        lying[4] = 0xFF;
        lying[5] = 0xFF;
        assert!(image_dimensions(&lying, ImageFormat::Jpeg).is_err());
    }
}
