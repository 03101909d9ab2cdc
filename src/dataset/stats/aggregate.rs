//! Dataset-level aggregation of per-episode statistics into `meta/stats.json` (lerobot's weighted rule).

use super::*;

/// Running dataset-level aggregate of episode stats, as lerobot's `aggregate_stats` computes
/// it: elementwise min/max, count-weighted mean, pooled std (Chan's parallel merge, equal to
/// `sqrt(Σ c·(var_i + (mean_i − mean)²) / Σ c)`), count-weighted quantile means, summed counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatsAggregate {
    acc: Option<Agg>,
}

#[derive(Debug, Clone)]
pub(super) struct Agg {
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
    pub(crate) fn add(&mut self, s: &FeatureStats) {
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
    pub(crate) fn finish(&self) -> Option<FeatureStats> {
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
