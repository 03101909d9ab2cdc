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

mod aggregate;
mod image_stats;
mod sketch;
mod vector;
pub(crate) use aggregate::*;
pub(crate) use image_stats::*;
use sketch::*;
pub(crate) use vector::*;

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
    pub(crate) image: bool,
}

impl FeatureStats {
    /// The value vector of a stat key (`min`, `q50`, …); `None` for `count` or unknown keys.
    pub(crate) fn get(&self, key: &str) -> Option<&[f64]> {
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
    fn shaped(&self, values: &[f64]) -> Value {
        if self.image {
            Value::Array(values.iter().map(|v| json!([[v]])).collect())
        } else {
            json!(values)
        }
    }

    /// The JSON object lerobot stores in `stats.json` for one feature.
    pub(crate) fn to_json(&self) -> Value {
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
