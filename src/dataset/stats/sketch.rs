//! Bounded quantile sketch: exact up to `SKETCH_LEVEL_CAPACITY` values per level, then a deterministic compactor with a proven rank-error bound.

use super::*;

/// Values held per sketch level (and exactly, before the first compaction): 1024 values, i.e.
/// 4 KiB of f32 per level per vector element.
///
/// Error bound: a compaction at level `h` (items of weight `2^h`) moves any rank by at most
/// `2^h` and happens at most `n / (K·2^h)` times, so after `n` values spread over `H` levels
/// the rank error is at most `(H−1)·n/K`: a relative rank error of `(H−1)/K` with
/// `H − 1 = ⌈log2(n/K)⌉`. Below `K` values the quantiles are exact; at 100 000 values the error
/// is at most 7/1024 ≈ 0.7 % of rank. Memory: `H·K·4` bytes per element.
pub(crate) const SKETCH_LEVEL_CAPACITY: usize = 1024;

/// Bounded-memory deterministic quantile summary of a stream of f32 values (see
/// [`SKETCH_LEVEL_CAPACITY`] for the error bound).
#[derive(Debug, Clone, Default)]
pub(crate) struct QuantileSketch {
    /// `levels[h]` holds values of weight `2^h`.
    levels: Vec<Vec<f32>>,
    /// Per level: which half (even or odd positions) the next compaction keeps; alternating
    /// halves makes consecutive compaction errors cancel instead of add up.
    odd: Vec<bool>,
    n: u64,
}

impl QuantileSketch {
    /// Adds one value.
    pub(crate) fn push(&mut self, v: f32) {
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

    /// Whether every value is still held exactly (no compaction yet).
    #[cfg(test)]
    pub(crate) fn is_exact(&self) -> bool {
        self.levels.len() <= 1
    }

    /// Quantiles for the given probabilities (numpy linear definition); empty input gives NaN.
    pub(crate) fn quantiles(&self, qs: &[f64]) -> Vec<f64> {
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
    pub(crate) fn memory_bytes(&self) -> usize {
        self.levels
            .iter()
            .map(|l| l.capacity() * std::mem::size_of::<f32>())
            .sum::<usize>()
            + self.odd.capacity()
            + std::mem::size_of::<Self>()
    }
}

pub(super) fn quantile_probs() -> [f64; 5] {
    QUANTILES.map(|(_, q)| q)
}
