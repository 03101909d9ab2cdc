//! One input bag as a run knows it. Opening a recording costs a read of its index (and, for an
//! unindexed or truncated bag, a scan of the whole file), so each bag is measured once, here:
//! ordering, sharding, the memory pre-pass and the conversion log all use these figures, and
//! the conversion opens the bag once more to read its chunks. The run-level facts that come
//! from one bag (zero-config mapping, the dataset's fps, the video cameras) are taken from the
//! first bag of the whole ordered list by [`FirstBag::measure`].
//!
//! A source holds figures, not the index: a nightly run over thousands of bags keeps a few
//! hundred bytes per bag, not their indexes. Kept open ([`OpenedBags`]) are the recording
//! opened last, so a run of one bag opens it once for all three uses, and, within a cap,
//! the recordings that cost a scan to open, so each unindexed bag is scanned once.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::config::ConvertConfig;
use super::manifest::{BagIdentity, fingerprint};
use super::mapping::zero_config;
use super::plan::{BagPlan, timeline_rate};
use super::select::Order;
use crate::dataset::FeatureKind;
use crate::dataset::video::VideoCodec;
use crate::error::{Error, Result};
use crate::input::Recording;

/// The recordings a run keeps open between the uses of a bag. A run measures its bags, takes
/// the run-level facts from the list's first bag, then converts them in order. Opening an
/// indexed bag again costs one read of its index section; opening an unindexed one again
/// costs a scan of the whole file. So the recording opened last is kept (a run of one bag
/// opens it once for all three uses), and so is every recording whose open was a scan, while
/// the indexes kept fit a cap ([`scan_cap`], and at most [`MAX_KEPT_SCANS`] files): each bag
/// of a list is then scanned once.
/// What is kept is counted ([`OpenedBags::kept_bytes`]) in the memory plan's baseline and let
/// go once the bag is converted ([`OpenedBags::done`]).
#[derive(Debug, Default)]
pub(crate) struct OpenedBags {
    last: RefCell<Option<Rc<Recording>>>,
    /// Recordings opened by a scan, kept for their next use.
    scanned: RefCell<Vec<Rc<Recording>>>,
    /// Most heap bytes the kept scans may hold together (0: none are kept).
    scan_cap: u64,
}

/// Most scanned recordings a run keeps at once: each holds its file open (and mapped), and a
/// nightly list of small killed recordings must not run into the open-files limit.
const MAX_KEPT_SCANS: usize = 64;

/// What a run may keep of scanned recordings under `ceiling`: an eighth of it. A recovered
/// bag's index holds 16 bytes per message, so 8 MiB (the default 64 MiB ceiling) keeps the
/// scans of about half a million messages.
pub(crate) fn scan_cap(ceiling: u64) -> u64 {
    ceiling / 8
}

impl OpenedBags {
    /// Keeps the last recording, and scanned ones up to `scan_cap` heap bytes together.
    pub(crate) fn new(scan_cap: u64) -> OpenedBags {
        OpenedBags {
            scan_cap,
            ..OpenedBags::default()
        }
    }

    /// The recording at `path`: a kept one when there is one, else opened (and kept).
    pub(crate) fn open(&self, path: &Path) -> Result<Rc<Recording>> {
        if let Some(rec) = self.kept(path) {
            *self.last.borrow_mut() = Some(rec.clone());
            return Ok(rec);
        }
        // Let go of the last one before opening the next.
        self.last.borrow_mut().take();
        let rec = Rc::new(Recording::open(path)?);
        if rec.is_recovered()
            && self.scanned.borrow().len() < MAX_KEPT_SCANS
            && self.kept_bytes() + rec.heap_bytes() <= self.scan_cap
        {
            self.scanned.borrow_mut().push(rec.clone());
        }
        *self.last.borrow_mut() = Some(rec.clone());
        Ok(rec)
    }

    fn kept(&self, path: &Path) -> Option<Rc<Recording>> {
        let last = self.last.borrow();
        let scanned = self.scanned.borrow();
        last.iter()
            .chain(scanned.iter())
            .find(|r| r.path() == path)
            .cloned()
    }

    /// Heap bytes of the scanned recordings kept for a later use.
    pub(crate) fn kept_bytes(&self) -> u64 {
        self.scanned.borrow().iter().map(|r| r.heap_bytes()).sum()
    }

    /// Lets go of the recording at `path`: its bag is converted.
    pub(crate) fn done(&self, path: &Path) {
        self.scanned.borrow_mut().retain(|r| r.path() != path);
        let mut last = self.last.borrow_mut();
        if last.as_ref().is_some_and(|r| r.path() == path) {
            last.take();
        }
    }
}

/// One bag of a run, measured once (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct BagSource {
    pub(crate) path: PathBuf,
    /// Size, mtime and fingerprint for the conversion log, or why the file cannot be read.
    pub(crate) identity: std::result::Result<BagIdentity, String>,
    /// First message time (ns), from the index.
    pub(crate) start_time_ns: Option<u64>,
    /// Bytes its largest chunk holds in flight (read + decompressed), and where it is.
    pub(crate) largest_chunk: (u64, String),
    /// Why the recording cannot be opened (its conversion fails with this error).
    open_error: Option<String>,
}

impl BagSource {
    /// Measures `path`: one open of the recording (index, or a recovery scan; kept in
    /// `opened`), one read of its fingerprint.
    pub(crate) fn measure(path: &Path, opened: &OpenedBags) -> BagSource {
        let identity = fingerprint(path).map_err(|e| e.to_string());
        let mut source = BagSource {
            path: path.to_path_buf(),
            identity,
            start_time_ns: None,
            largest_chunk: (0, String::new()),
            open_error: None,
        };
        let largest = opened.open(path).and_then(|rec| {
            source.start_time_ns = rec.index().time_range().map(|r| r.0);
            Ok(rec
                .largest_pass_need()?
                .map(|(n, ci)| (n, rec.index().chunks[ci].pos)))
        });
        match largest {
            Ok(Some((n, pos))) => {
                source.largest_chunk = (
                    n,
                    format!(
                        "chunk at offset {pos} of {} ({n} bytes in flight)",
                        path.display()
                    ),
                )
            }
            Ok(None) => {}
            Err(e) => source.open_error = Some(e.to_string()),
        }
        source
    }

    /// Size of the bag file (0 when unreadable): an episode's data is at most about this big.
    pub(crate) fn bytes(&self) -> u64 {
        self.identity.as_ref().map_or(0, |id| id.size)
    }
}

/// Measures `paths` and puts them in episode order (path, or start time with bags without one
/// last, ties by path).
pub(crate) fn ordered_sources(
    paths: Vec<PathBuf>,
    order: Order,
    opened: &OpenedBags,
) -> Vec<BagSource> {
    let mut v: Vec<BagSource> = paths
        .iter()
        .map(|p| BagSource::measure(p, opened))
        .collect();
    match order {
        Order::Path => v.sort_by(|a, b| a.path.cmp(&b.path)),
        Order::StartTime => v.sort_by(|a, b| {
            let key = |s: &BagSource| (s.start_time_ns.is_none(), s.start_time_ns);
            (key(a), &a.path).cmp(&(key(b), &b.path))
        }),
    }
    v
}

/// What a run takes from the first bag of its whole ordered list (every shard and every
/// `--jobs` child of one list takes it from the same bag, so they write one dataset).
#[derive(Debug, Clone, Default)]
pub(crate) struct FirstBag {
    /// The config: the one given, or zero-config from the bag.
    pub(crate) config: Option<ConvertConfig>,
    /// The rounded rate of the config's timeline in the bag: the dataset's fps when the
    /// timeline runs at its own rate.
    pub(crate) rate: Option<u32>,
    /// Video features (codec, width, height) the config makes of the bag.
    pub(crate) cameras: Vec<(VideoCodec, u32, u32)>,
}

impl FirstBag {
    /// Takes from the first of `bags` that opens what `given` leaves open: the zero-config
    /// mapping when no config is given, the timeline's rate (from the first bag that has the
    /// timeline, as the first converted episode would set it), and the video cameras when
    /// `want_cameras` and the config has video features (from the first bag that plans).
    /// Usually one open of one bag (none when `opened` holds it). Fails only when no config is
    /// given and no bag yields one.
    pub(crate) fn measure(
        bags: &[PathBuf],
        given: Option<&ConvertConfig>,
        want_cameras: bool,
        opened: &OpenedBags,
    ) -> Result<FirstBag> {
        let mut first = FirstBag {
            config: given.cloned(),
            ..FirstBag::default()
        };
        let mut last_err = None;
        for path in bags {
            let rec = match opened.open(path) {
                Ok(r) => r,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            if first.config.is_none() {
                match zero_config_of(&rec) {
                    Ok(c) => first.config = Some(c),
                    // Name the bag the mapping looked at (and what recovery kept of it).
                    Err(Error::Config(what)) => {
                        let recovered = rec
                            .recovery()
                            .map(|r| format!(" (recovered: {r})"))
                            .unwrap_or_default();
                        last_err = Some(Error::Config(format!(
                            "{}{recovered}: {what}",
                            path.display()
                        )));
                        continue;
                    }
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                }
            }
            let Some(config) = &first.config else {
                continue;
            };
            if first.rate.is_none()
                && let Some(topic) = config.timeline.as_deref()
            {
                let conns = rec.index().connections_of(topic);
                first.rate = timeline_rate(&rec, &conns)
                    .ok()
                    .flatten()
                    .map(|(_, fps)| fps);
            }
            let want_cameras = want_cameras && config.wants_video();
            if want_cameras && first.cameras.is_empty() {
                first.cameras = cameras_of(&rec, config);
            }
            let rate_done = first.rate.is_some() || config.timeline.is_none();
            if rate_done && (!want_cameras || !first.cameras.is_empty()) {
                break;
            }
        }
        if first.config.is_none() {
            return Err(last_err.unwrap_or_else(|| Error::Usage("no input bags".into())));
        }
        Ok(first)
    }
}

/// Zero-config of one recording; ROS 2 type names (`sensor_msgs/msg/CompressedImage`) map as
/// the ROS1 ones.
fn zero_config_of(rec: &Recording) -> Result<ConvertConfig> {
    let mut index = rec.index().clone();
    for c in &mut index.connections {
        c.msgtype = crate::msg::normalize_type_name(&c.msgtype);
    }
    zero_config(&index)
}

/// The video cameras (codec, width, height) `cfg` makes of `rec`; none when it does not plan.
fn cameras_of(rec: &Recording, cfg: &ConvertConfig) -> Vec<(VideoCodec, u32, u32)> {
    let Ok(plan) = BagPlan::new(rec, cfg, None) else {
        return Vec::new();
    };
    plan.spec
        .features
        .iter()
        .filter_map(|f| match f.kind {
            FeatureKind::Video {
                codec,
                width,
                height,
                ..
            } => Some((codec, width, height)),
            _ => None,
        })
        .collect()
}
