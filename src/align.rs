//! The aligner: a small time-ordered window per source ("slot"), and a timeline of ticks; each
//! tick becomes one frame once every slot's data around it is known to be complete, or is
//! dropped (and counted) when a slot has nothing within its tolerance. Never filled silently.
//!
//! Completeness comes from watermarks: the chunk reader knows from the index which chunks are
//! still unread, so after each chunk it tells, per slot, the time before which every message has
//! been delivered. A tick `t` is final when every slot's watermark is past `t + tolerance`.
//! Windows keep only samples that a future tick may still use, and every byte they hold is a
//! permit from the window budget.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::memory::{Budget, Permit};
use crate::msg::ImagePayload;

/// How a feature's value is picked for a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Policy {
    /// The message closest in time (before or after), within the tolerance.
    #[default]
    Nearest,
    /// The last message at or before the tick (as-of), never one from the future.
    Latest,
    /// Linear interpolation between the messages around the tick (numeric features only).
    Linear,
}

/// A value extracted from one message for one slot.
#[derive(Debug, Clone)]
pub(crate) enum SampleValue {
    Numbers(Vec<f64>),
    /// Shared so that one image can serve several ticks without a copy.
    Image(Arc<ImagePayload>),
}

impl SampleValue {
    /// Heap bytes the value holds.
    pub(crate) fn heap_bytes(&self) -> u64 {
        match self {
            SampleValue::Numbers(v) => (v.len() * 8) as u64,
            SampleValue::Image(img) => (img.bytes.len() + img.format.len()) as u64,
        }
    }
}

/// Fixed per-sample bookkeeping counted on top of the value's heap bytes.
pub(crate) const SAMPLE_OVERHEAD_BYTES: u64 = 96;

/// One message's contribution to one slot.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) slot: usize,
    pub(crate) time_ns: u64,
    pub(crate) value: SampleValue,
    /// Budget bytes this sample holds while it is buffered.
    pub(crate) permit: Permit,
}

impl Sample {
    fn bytes(&self) -> u64 {
        self.value.heap_bytes() + SAMPLE_OVERHEAD_BYTES
    }
}

/// How one slot is matched to ticks.
#[derive(Debug, Clone)]
pub(crate) struct SlotSpec {
    /// Shown in errors and reports (topic, and feature).
    pub(crate) label: String,
    pub(crate) policy: Policy,
    pub(crate) tolerance_ns: u64,
}

/// Per-slot match figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SlotReport {
    pub label: String,
    /// Ticks this slot had a value for.
    pub(crate) matched: u64,
    /// Ticks dropped because this slot had nothing within tolerance.
    pub missed: u64,
    pub(crate) mean_skew_ms: f64,
    pub max_skew_ms: f64,
    #[serde(skip)]
    skew_sum_ns: f64,
    /// Time of the first and last sample.
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    /// Samples earlier than the one before them (non-monotonic times).
    out_of_order: u64,
    /// Samples with the same time as the one before them.
    duplicates: u64,
    /// Pauses longer than [`GAP_FACTOR`] typical intervals (and than the tolerance).
    gaps: u64,
    max_gap_ms: f64,
    /// Where the first gaps are: (time of the sample after the gap, gap length in ms).
    gap_examples: Vec<(u64, f64)>,
    #[serde(skip)]
    interval_ema_ns: f64,
}

/// A pause counts as a gap when it is this many times the slot's typical interval.
const GAP_FACTOR: f64 = 5.0;
/// Gap locations kept per slot (all are counted).
const GAP_EXAMPLES: usize = 3;

impl SlotReport {
    /// Updates the timing figures with a sample arriving at `t` (in arrival order).
    fn observe(&mut self, t: u64, tolerance_ns: u64) {
        if let Some(last) = self.last_ns {
            if t < last {
                self.out_of_order += 1;
            } else if t == last {
                self.duplicates += 1;
            } else {
                let dt = (t - last) as f64;
                if self.interval_ema_ns > 0.0
                    && dt > GAP_FACTOR * self.interval_ema_ns
                    && dt > tolerance_ns as f64
                {
                    self.gaps += 1;
                    self.max_gap_ms = self.max_gap_ms.max(dt / 1e6);
                    if self.gap_examples.len() < GAP_EXAMPLES {
                        self.gap_examples.push((t, dt / 1e6));
                    }
                } else {
                    self.interval_ema_ns = if self.interval_ema_ns == 0.0 {
                        dt
                    } else {
                        0.9 * self.interval_ema_ns + 0.1 * dt
                    };
                }
            }
        }
        self.first_ns = Some(self.first_ns.map_or(t, |f| f.min(t)));
        self.last_ns = Some(self.last_ns.map_or(t, |l| l.max(t)));
    }
}

/// A finished tick.
#[derive(Debug)]
pub(crate) struct AlignedFrame {
    pub(crate) tick_ns: u64,
    /// One value per slot.
    pub(crate) values: Vec<SampleValue>,
}

/// Outcome of one tick.
#[derive(Debug)]
pub(crate) enum Tick {
    Frame(AlignedFrame),
    /// The tick at this time lacked a slot (the first one that missed is named).
    Dropped {
        tick_ns: u64,
        slot: usize,
    },
}

/// How the timeline is made.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timeline {
    /// Every message of the timeline slot is a tick.
    Own { slot: usize },
    /// Ticks every `period_ns` from the timeline slot's first message to its last.
    Grid { slot: usize, period_ns: u64 },
}

struct SlotState {
    spec: SlotSpec,
    window: VecDeque<Sample>,
    /// Every sample earlier than this has been delivered (`u64::MAX` once input ended).
    watermark: u64,
    report: SlotReport,
}

/// Turns streams of samples into frames; see the module docs.
pub(crate) struct Aligner {
    slots: Vec<SlotState>,
    timeline: Timeline,
    /// Ticks not yet final, in time order (own-rate mode: the timeline slot's times).
    pending: VecDeque<u64>,
    /// Grid mode: the next grid tick to create, once the timeline has reached it.
    next_grid: Option<u64>,
    last_timeline_ns: Option<u64>,
    ended: bool,
    budget: Budget,
}

impl Aligner {
    pub(crate) fn new(slots: Vec<SlotSpec>, timeline: Timeline, budget: Budget) -> Self {
        Aligner {
            slots: slots
                .into_iter()
                .map(|spec| SlotState {
                    report: SlotReport {
                        label: spec.label.clone(),
                        ..SlotReport::default()
                    },
                    spec,
                    window: VecDeque::new(),
                    watermark: 0,
                })
                .collect(),
            timeline,
            pending: VecDeque::new(),
            next_grid: None,
            last_timeline_ns: None,
            ended: false,
            budget,
        }
    }

    fn timeline_slot(&self) -> usize {
        match self.timeline {
            Timeline::Own { slot } | Timeline::Grid { slot, .. } => slot,
        }
    }

    /// Buffers a sample. Its channel permit is swapped for window bytes; a window that would
    /// pass its budget is an [`Error::OverBudget`] naming the slot.
    pub(crate) fn push(&mut self, mut sample: Sample) -> Result<()> {
        let bytes = sample.bytes();
        let slot = sample.slot;
        let label = &self.slots[slot].spec.label;
        if self.budget.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let permit = self.budget.try_acquire(bytes).ok_or_else(|| {
            Error::over_budget(
                format!(
                    "aligner windows (adding {} to {label}; tolerance or out-of-order chunks keep {} buffered)",
                    crate::memory::format_bytes(bytes),
                    crate::memory::format_bytes(self.budget.used())
                ),
                self.budget.used() + bytes,
                self.budget.capacity(),
                self.budget.ceiling(),
            )
        })?;
        sample.permit = permit;
        let t = sample.time_ns;
        let tol = self.slots[slot].spec.tolerance_ns;
        self.slots[slot].report.observe(t, tol);
        if slot == self.timeline_slot() {
            self.add_timeline_time(t);
        }
        let window = &mut self.slots[slot].window;
        let pos = window
            .iter()
            .rposition(|s| s.time_ns <= t)
            .map_or(0, |p| p + 1);
        window.insert(pos, sample);
        Ok(())
    }

    fn add_timeline_time(&mut self, t: u64) {
        match self.timeline {
            Timeline::Own { .. } => {
                let pos = self
                    .pending
                    .iter()
                    .rposition(|&p| p <= t)
                    .map_or(0, |p| p + 1);
                self.pending.insert(pos, t);
            }
            Timeline::Grid { period_ns, .. } => {
                if self.next_grid.is_none() {
                    self.next_grid = Some(t);
                }
                self.last_timeline_ns = Some(self.last_timeline_ns.map_or(t, |l| l.max(t)));
                let last = self.last_timeline_ns.unwrap_or(t);
                while let Some(g) = self.next_grid
                    && g <= last
                {
                    self.pending.push_back(g);
                    self.next_grid = Some(g + period_ns);
                }
            }
        }
    }

    /// Every sample of `slot` earlier than `t` has been delivered.
    pub(crate) fn set_watermark(&mut self, slot: usize, t: u64) {
        let s = &mut self.slots[slot];
        s.watermark = s.watermark.max(t);
    }

    /// No more input will come.
    pub(crate) fn end(&mut self) {
        self.ended = true;
        for s in &mut self.slots {
            s.watermark = u64::MAX;
        }
    }

    /// The next final tick, if any.
    pub(crate) fn pop(&mut self) -> Option<Tick> {
        let &t = self.pending.front()?;
        let ready = self.slots.iter().all(|s| {
            s.watermark == u64::MAX || s.watermark > t.saturating_add(s.spec.tolerance_ns)
        });
        // Grid ticks also wait until the timeline itself is known past them.
        if !ready {
            return None;
        }
        self.pending.pop_front();
        let mut values = Vec::with_capacity(self.slots.len());
        let mut missing = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            match pick(&s.window, t, &s.spec) {
                Some((v, skew)) => {
                    s.report.matched += 1;
                    s.report.skew_sum_ns += skew as f64;
                    s.report.max_skew_ms = s.report.max_skew_ms.max(skew as f64 / 1e6);
                    values.push(v);
                }
                None => {
                    s.report.missed += 1;
                    missing.get_or_insert(i);
                }
            }
        }
        self.prune(t);
        Some(match missing {
            Some(slot) => Tick::Dropped { tick_ns: t, slot },
            None => Tick::Frame(AlignedFrame { tick_ns: t, values }),
        })
    }

    /// Drops samples no later tick can use: older than `t - tolerance`, keeping the newest of
    /// those for as-of and interpolation.
    fn prune(&mut self, t: u64) {
        for s in &mut self.slots {
            let horizon = t.saturating_sub(s.spec.tolerance_ns);
            while s.window.len() >= 2 && s.window[1].time_ns < horizon {
                s.window.pop_front();
            }
        }
    }

    /// Per-slot figures so far.
    pub(crate) fn reports(&self) -> Vec<SlotReport> {
        self.slots
            .iter()
            .map(|s| {
                let mut r = s.report.clone();
                r.mean_skew_ms = if r.matched > 0 {
                    r.skew_sum_ns / r.matched as f64 / 1e6
                } else {
                    0.0
                };
                r
            })
            .collect()
    }
}

/// Picks the value of one slot for tick `t`, with its skew in ns.
fn pick(window: &VecDeque<Sample>, t: u64, spec: &SlotSpec) -> Option<(SampleValue, u64)> {
    let tol = spec.tolerance_ns;
    // Index of the first sample after t.
    let after = window.partition_point(|s| s.time_ns <= t);
    let before = after.checked_sub(1).map(|i| &window[i]);
    let next = window.get(after);
    let within = |s: &Sample| s.time_ns.abs_diff(t) <= tol;
    match spec.policy {
        Policy::Latest => before
            .filter(|s| within(s))
            .map(|s| (s.value.clone(), t - s.time_ns)),
        Policy::Nearest => {
            let best = match (before, next) {
                (Some(b), Some(n)) => {
                    if n.time_ns - t < t - b.time_ns {
                        n
                    } else {
                        b
                    }
                }
                (Some(b), None) => b,
                (None, Some(n)) => n,
                (None, None) => return None,
            };
            within(best).then(|| (best.value.clone(), best.time_ns.abs_diff(t)))
        }
        Policy::Linear => {
            let b = before.filter(|s| within(s))?;
            if b.time_ns == t {
                return Some((b.value.clone(), 0));
            }
            let n = next.filter(|s| within(s))?;
            let (SampleValue::Numbers(x0), SampleValue::Numbers(x1)) = (&b.value, &n.value) else {
                // Images cannot be interpolated: the nearer one.
                let best = if n.time_ns - t < t - b.time_ns { n } else { b };
                return Some((best.value.clone(), best.time_ns.abs_diff(t)));
            };
            if x0.len() != x1.len() {
                return None;
            }
            let w = (t - b.time_ns) as f64 / (n.time_ns - b.time_ns) as f64;
            let v = x0.iter().zip(x1).map(|(a, c)| a + (c - a) * w).collect();
            Some((SampleValue::Numbers(v), (t - b.time_ns).min(n.time_ns - t)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn num(slot: usize, t: u64, v: f64) -> Sample {
        Sample {
            slot,
            time_ns: t,
            value: SampleValue::Numbers(vec![v]),
            permit: Permit::none(),
        }
    }

    fn spec(policy: Policy, tol_ms: u64) -> SlotSpec {
        SlotSpec {
            label: "s".into(),
            policy,
            tolerance_ns: tol_ms * MS,
        }
    }

    fn run(al: &mut Aligner) -> Vec<Tick> {
        al.end();
        std::iter::from_fn(|| al.pop()).collect()
    }

    fn values(ticks: &[Tick]) -> Vec<Option<(u64, f64)>> {
        ticks
            .iter()
            .map(|t| match t {
                Tick::Frame(f) => match &f.values[1] {
                    SampleValue::Numbers(v) => Some((f.tick_ns / MS, v[0])),
                    _ => None,
                },
                Tick::Dropped { .. } => None,
            })
            .collect()
    }

    fn aligner(policy: Policy, tol: u64, timeline: Timeline) -> Aligner {
        Aligner::new(
            vec![spec(Policy::Nearest, 20), spec(policy, tol)],
            timeline,
            Budget::unlimited("window"),
        )
    }

    #[test]
    fn nearest_latest_linear_pick_as_documented() {
        for (policy, expect) in [
            (
                Policy::Nearest,
                vec![Some((100, 2.0)), Some((200, 5.0)), None],
            ),
            // at 300 the last sample (205) is 95 ms old, past the 35 ms tolerance: dropped
            (
                Policy::Latest,
                vec![Some((100, 1.0)), Some((200, 4.0)), None],
            ),
            (
                Policy::Linear,
                vec![Some((100, 1.75)), Some((200, 4.0 + 2.0 / 3.0)), None],
            ),
        ] {
            let mut al = aligner(policy, 35, Timeline::Own { slot: 0 });
            for t in [100, 200, 300] {
                al.push(num(0, t * MS, 0.0)).unwrap();
            }
            // slot 1 at 70 (1.0), 110 (2.0), 190 (4.0), 205 (5.0)
            for (t, v) in [(70, 1.0), (110, 2.0), (190, 4.0), (205, 5.0)] {
                al.push(num(1, t * MS, v)).unwrap();
            }
            let got = values(&run(&mut al));
            assert_eq!(got.len(), 3);
            for (g, e) in got.iter().zip(&expect) {
                match (g, e) {
                    (Some((gt, gv)), Some((et, ev))) => {
                        assert_eq!(gt, et, "{policy:?}");
                        assert!((gv - ev).abs() < 1e-9, "{policy:?}: {gv} vs {ev}");
                    }
                    (None, None) => {}
                    _ => panic!("{policy:?}: got {got:?}, expected {expect:?}"),
                }
            }
        }
    }

    #[test]
    fn latest_never_takes_the_future() {
        let mut al = aligner(Policy::Latest, 1000, Timeline::Own { slot: 0 });
        al.push(num(0, 100 * MS, 0.0)).unwrap();
        al.push(num(1, 101 * MS, 9.0)).unwrap();
        let ticks = run(&mut al);
        assert!(matches!(ticks[0], Tick::Dropped { slot: 1, .. }));
    }

    #[test]
    fn grid_resamples_and_waits_for_watermarks() {
        let mut al = aligner(
            Policy::Nearest,
            20,
            Timeline::Grid {
                slot: 0,
                period_ns: 100 * MS,
            },
        );
        for i in 0..10u64 {
            al.push(num(0, (1000 + i * 33) * MS, 0.0)).unwrap();
            al.push(num(1, (1000 + i * 33) * MS, i as f64)).unwrap();
        }
        // nothing is final before watermarks pass
        assert!(al.pop().is_none());
        al.set_watermark(0, 1200 * MS);
        al.set_watermark(1, 1200 * MS);
        let first = al.pop().expect("tick at 1000 is final");
        assert!(matches!(first, Tick::Frame(ref f) if f.tick_ns == 1000 * MS));
        let rest = run(&mut al);
        // grid 1000,1100,1200 (1297 is the last timeline time)
        let ts: Vec<_> = rest
            .iter()
            .map(|t| match t {
                Tick::Frame(f) => f.tick_ns / MS,
                Tick::Dropped { tick_ns, .. } => tick_ns / MS,
            })
            .collect();
        assert_eq!(ts, vec![1100, 1200]);
    }

    #[test]
    fn property_frames_are_monotonic_unique_and_within_tolerance() {
        // Deterministic pseudo-random streams with jitter and gaps.
        let mut x = 0x2545F4914F6CDD1Du64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for policy in [Policy::Nearest, Policy::Latest, Policy::Linear] {
            let tol = 15 * MS;
            let mut al = aligner(policy, 15, Timeline::Own { slot: 0 });
            let mut t0 = 0u64;
            let mut t1 = 0u64;
            let mut stamps = Vec::new();
            for _ in 0..400 {
                t0 += 25 * MS + rnd() % (10 * MS);
                al.push(num(0, t0, 0.0)).unwrap();
                if rnd() % 10 != 0 {
                    t1 += 5 * MS + rnd() % (20 * MS);
                    al.push(num(1, t1, t1 as f64)).unwrap();
                    stamps.push(t1);
                }
            }
            let ticks = run(&mut al);
            assert_eq!(ticks.len(), 400);
            let mut last = None;
            for t in &ticks {
                if let Tick::Frame(f) = t {
                    assert!(
                        last.is_none_or(|l| f.tick_ns > l),
                        "monotonic, no duplicate"
                    );
                    last = Some(f.tick_ns);
                    let SampleValue::Numbers(v) = &f.values[1] else {
                        panic!()
                    };
                    let src = v[0] as u64;
                    if policy != Policy::Linear {
                        assert!(src.abs_diff(f.tick_ns) <= tol, "skew within tolerance");
                        assert!(stamps.contains(&src));
                    }
                    if policy == Policy::Latest {
                        assert!(src <= f.tick_ns);
                    }
                }
            }
            let r = &al.reports()[1];
            assert_eq!(r.matched + r.missed, 400);
            assert!(r.max_skew_ms <= 15.0);
        }
    }

    #[test]
    fn timing_anomalies_are_counted_with_their_place() {
        let mut al = aligner(Policy::Nearest, 20, Timeline::Own { slot: 0 });
        for t in [0u64, 10, 20, 20, 30, 25, 40, 50, 300, 310] {
            al.push(num(1, t * MS, 0.0)).unwrap();
        }
        let r = &al.reports()[1];
        assert_eq!((r.duplicates, r.out_of_order, r.gaps), (1, 1, 1));
        assert_eq!(r.gap_examples, vec![(300 * MS, 250.0)]);
        assert_eq!((r.first_ns, r.last_ns), (Some(0), Some(310 * MS)));
    }

    #[test]
    fn window_over_budget_is_an_error() {
        let mut al = Aligner::new(
            vec![spec(Policy::Nearest, 20)],
            Timeline::Own { slot: 0 },
            Budget::new("window", 300, 1000),
        );
        al.push(num(0, 1, 0.0)).unwrap();
        al.push(num(0, 2, 0.0)).unwrap();
        let e = al.push(num(0, 3, 0.0)).unwrap_err();
        assert!(e.to_string().contains("aligner windows"), "{e}");
    }
}
