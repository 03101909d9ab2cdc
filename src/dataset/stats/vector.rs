//! Vector features and the default columns: Welford moments in f64, one sketch per element; default columns generated exactly from their closed form.

use super::*;

/// Welford accumulator for the mean and variance of one element, plus min and max.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moments {
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
pub(crate) struct VectorStats {
    moments: Vec<Moments>,
    sketches: Vec<QuantileSketch>,
}

impl VectorStats {
    pub(crate) fn new(len: usize) -> Self {
        VectorStats {
            moments: vec![Moments::default(); len],
            sketches: vec![QuantileSketch::default(); len],
        }
    }

    /// Adds one frame's vector (its length was checked by the caller).
    pub(crate) fn push(&mut self, v: &[f32]) {
        for ((m, s), x) in self.moments.iter_mut().zip(&mut self.sketches).zip(v) {
            m.push(f64::from(*x));
            s.push(*x);
        }
    }

    /// Final statistics; `None` when no frame was pushed.
    pub(crate) fn finish(&self) -> Option<FeatureStats> {
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
    pub(crate) fn memory_bytes(&self) -> usize {
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
pub(crate) fn monotone_column_stats(n: u64, f: impl Fn(u64) -> f64) -> Option<FeatureStats> {
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
