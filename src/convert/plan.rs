//! A config resolved against one bag: which connections feed which slots, the compiled field
//! paths per connection, the dataset features with their shapes (probed from the first message
//! of each source), the timeline, and the chunks to visit.

use std::collections::HashMap;

use super::config::{ConvertConfig, Policy, TimeSource};
use super::mapping::is_image_type;
use crate::align::{SlotSpec, Timeline};
use crate::dataset::{DatasetSpec, FeatureKind, FeatureSpec};
use crate::error::{Error, Result};
use crate::input::{Recording, TopicSpan};
use crate::msg::{FieldPath, MessageSchema, Value};

/// What a slot extracts from its messages.
#[derive(Debug, Clone)]
pub(crate) enum SlotKind {
    /// Numbers at a field, optionally sliced and scaled, `len` values per message.
    Numeric {
        range: Option<(usize, usize)>,
        scale: f64,
        len: usize,
    },
    /// `sensor_msgs/CompressedImage`: `format` and `data` (passed through untouched).
    CompressedImage,
    /// `sensor_msgs/Image`: raw pixels, encoded to PNG on the way out.
    RawImage,
}

/// One source of one feature.
#[derive(Debug, Clone)]
pub struct SlotPlan {
    pub(crate) topic: String,
    pub(crate) kind: SlotKind,
    pub(crate) spec: SlotSpec,
}

/// How to decode one connection: its schema and the paths it feeds, per slot.
pub struct ConnPlan {
    pub(crate) topic: String,
    pub(crate) schema: MessageSchema,
    /// All paths to decode from each message (slot paths, then the header stamp if used).
    pub(crate) paths: Vec<FieldPath>,
    /// `(slot, first path index)` for every slot this connection feeds.
    pub(crate) uses: Vec<(usize, usize)>,
    /// Index in `paths` of `header.stamp` when the time source is the header.
    pub(crate) stamp: Option<usize>,
}

/// The timeline's own rate in one recording, rounded (at least 1): `(count - 1) / span` of its
/// messages (from the index: chunk infos and the edge chunks' index data,
/// [`Recording::topic_span`]), or 1 without a span; `None` when the index lists none. The one
/// rule for a dataset's fps when the timeline runs at its own rate, whether a plan, a shard or
/// a `--jobs` parent computes it.
pub(crate) fn timeline_rate(rec: &Recording, conns: &[u32]) -> Result<Option<(TopicSpan, u32)>> {
    Ok(rec.topic_span(conns)?.map(|s| {
        let span_s = (s.last - s.first) as f64 / 1e9;
        let rate = if s.count >= 2 && span_s > 0.0 {
            (s.count - 1) as f64 / span_s
        } else {
            1.0
        };
        (s, (rate.round() as u32).max(1))
    }))
}

/// Everything needed to convert one bag.
pub(crate) struct BagPlan {
    pub(crate) spec: DatasetSpec,
    pub(crate) slots: Vec<SlotPlan>,
    /// Slots of each feature, in concatenation order.
    pub(crate) feature_slots: Vec<Vec<usize>>,
    /// Per feature: the (height, width) images are resized to, if any.
    pub(crate) feature_resize: Vec<Option<(u32, u32)>>,
    pub(crate) conns: HashMap<u32, ConnPlan>,
    pub(crate) timeline: Timeline,
    pub(crate) time_source: TimeSource,
    /// Chunks to visit, file order.
    pub(crate) chunks: Vec<usize>,
    /// Upper bound of the frames this bag can give (before drops and trimming).
    pub(crate) expected_frames: usize,
    pub(crate) trim_start: usize,
    pub(crate) trim_end: usize,
    /// Damaged data is fatal instead of skipped.
    pub(crate) strict: bool,
}

fn path_of(schema: &MessageSchema, path: &str, topic: &str) -> Result<FieldPath> {
    schema
        .field_path(path)
        .map_err(|e| Error::Config(format!("topic {topic} ({}): {}", schema.msgtype(), e.what)))
}

impl BagPlan {
    /// Resolves `cfg` against the bag. `fixed_fps` is the dataset's fps when earlier bags set it.
    pub(crate) fn new(
        rec: &Recording,
        cfg: &ConvertConfig,
        fixed_fps: Option<u32>,
    ) -> Result<BagPlan> {
        let index = rec.index();
        let path = rec.path().display().to_string();
        let tol_default = (cfg.tolerance_ms * 1e6) as u64;
        let mut slots = Vec::new();
        let mut feature_slots = Vec::new();
        let mut conns: HashMap<u32, ConnPlan> = HashMap::new();
        for f in &cfg.features {
            let mut mine = Vec::new();
            for src in f.all_sources()? {
                let ids = index.connections_of(&src.topic);
                if ids.is_empty() {
                    return Err(Error::Config(format!(
                        "{path}: feature '{}' needs topic {} which is not in the bag (topics: {})",
                        f.name,
                        src.topic,
                        index.topics().join(", ")
                    )));
                }
                let slot = slots.len();
                let msgtype = index
                    .connection(ids[0])
                    .map(|c| c.msgtype.clone())
                    .unwrap_or_default();
                // ROS 2 names (`sensor_msgs/msg/Image`) mean the same types.
                let short_type = crate::msg::normalize_type_name(&msgtype);
                let image =
                    is_image_type(&short_type) && src.field.as_deref().is_none_or(str::is_empty);
                let kind = if image {
                    if short_type == "sensor_msgs/Image" {
                        SlotKind::RawImage
                    } else {
                        SlotKind::CompressedImage
                    }
                } else {
                    if src.field.as_deref().is_none_or(str::is_empty) {
                        return Err(Error::Config(format!(
                            "feature '{}': topic {} ({msgtype}) needs a `field` (e.g. `position`)",
                            f.name, src.topic
                        )));
                    }
                    SlotKind::Numeric {
                        range: src.index_range()?,
                        scale: src.scale.unwrap_or(1.0),
                        len: 0,
                    }
                };
                for id in ids {
                    let conn = index
                        .connection(id)
                        .ok_or_else(|| Error::Internal(format!("connection {id} missing")))?;
                    if conn.msgtype != msgtype {
                        return Err(Error::Config(format!(
                            "{path}: topic {} has connections of two types ({} and {})",
                            src.topic, msgtype, conn.msgtype
                        )));
                    }
                    let cp = match conns.entry(id) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let schema = rec
                                .schema(id)
                                .map_err(|what| rec.definition_error(id, what))?;
                            e.insert(ConnPlan {
                                topic: conn.topic.clone(),
                                schema,
                                paths: Vec::new(),
                                uses: Vec::new(),
                                stamp: None,
                            })
                        }
                    };
                    let first = cp.paths.len();
                    let fields: Vec<&str> = match kind {
                        SlotKind::CompressedImage => {
                            crate::msg::image::COMPRESSED_IMAGE_FIELDS.to_vec()
                        }
                        SlotKind::RawImage => crate::msg::image::RAW_IMAGE_FIELDS.to_vec(),
                        SlotKind::Numeric { .. } => vec![src.field.as_deref().unwrap_or_default()],
                    };
                    for field in fields {
                        let p = path_of(&cp.schema, field, &src.topic)?;
                        if matches!(kind, SlotKind::Numeric { .. })
                            && p.ros_type().starts_with("string")
                        {
                            return Err(Error::Config(format!(
                                "feature '{}': field {field} of {} is {}, not numeric",
                                f.name,
                                src.topic,
                                p.ros_type()
                            )));
                        }
                        cp.paths.push(p);
                    }
                    cp.uses.push((slot, first));
                }
                slots.push(SlotPlan {
                    topic: src.topic.clone(),
                    kind,
                    spec: SlotSpec {
                        label: format!(
                            "{} <- {}{}",
                            f.name,
                            src.topic,
                            src.field
                                .as_ref()
                                .map(|x| format!(" {x}"))
                                .unwrap_or_default()
                        ),
                        policy: f.policy.unwrap_or(cfg.policy),
                        tolerance_ns: f
                            .tolerance_ms
                            .map(|t| (t * 1e6) as u64)
                            .unwrap_or(tol_default),
                    },
                });
                mine.push(slot);
            }
            if f.resize.is_some() && !image_feature(&slots, &mine) {
                return Err(Error::Config(format!(
                    "feature '{}': resize applies to images only",
                    f.name
                )));
            }
            if image_feature(&slots, &mine) && mine.len() != 1 {
                return Err(Error::Config(format!(
                    "image feature '{}' must have exactly one source",
                    f.name
                )));
            }
            if image_feature(&slots, &mine) && f.policy == Some(Policy::Linear) {
                return Err(Error::Config(format!(
                    "image feature '{}' cannot use linear interpolation",
                    f.name
                )));
            }
            feature_slots.push(mine);
        }
        if cfg.time_source == TimeSource::Header {
            for (id, cp) in conns.iter_mut() {
                let p = cp.schema.field_path("header.stamp").map_err(|_| {
                    Error::Config(format!(
                        "time_source = \"header\" but topic {} (connection {id}) has no header.stamp",
                        cp.topic
                    ))
                })?;
                cp.stamp = Some(cp.paths.len());
                cp.paths.push(p);
            }
        }

        // Timeline.
        let timeline_topic = cfg
            .timeline
            .clone()
            .ok_or_else(|| Error::Config("no timeline topic configured".into()))?;
        let timeline_slot = slots
            .iter()
            .position(|s| s.topic == timeline_topic)
            .ok_or_else(|| {
                Error::Config(format!(
                    "timeline topic {timeline_topic} is not the source of any feature"
                ))
            })?;
        let tl_conns = index.connections_of(&timeline_topic);
        let counts = index.counts_by_connection();
        let tl_count: u64 = tl_conns
            .iter()
            .map(|c| counts.get(c).copied().unwrap_or(0))
            .sum();
        if tl_count == 0 {
            return Err(Error::Config(format!(
                "{path}: timeline topic {timeline_topic} has no messages"
            )));
        }
        let Some((times, rate)) = timeline_rate(rec, &tl_conns)? else {
            return Err(Error::Config(format!(
                "{path}: the index lists no message times for timeline topic {timeline_topic}"
            )));
        };
        let (first, last) = (times.first, times.last);
        // A configured fps resamples every bag to that grid. Without one, every bag keeps its
        // timeline topic's own ticks (the same rule for every bag, whichever comes first), and
        // the dataset's fps is the first bag's rate (`fixed_fps` for the later ones).
        let (timeline, fps, expected_frames) = match cfg.fps {
            Some(fps) => {
                let period_ns = 1_000_000_000 / fps as u64;
                let frames = ((last - first) / period_ns + 1) as usize;
                (
                    Timeline::Grid {
                        slot: timeline_slot,
                        period_ns,
                    },
                    fps,
                    frames,
                )
            }
            None => (
                Timeline::Own {
                    slot: timeline_slot,
                },
                fixed_fps.unwrap_or(rate),
                tl_count as usize,
            ),
        };

        let wanted: Vec<u32> = conns.keys().copied().collect();
        let chunks = index.chunks_for(&wanted, 0, u64::MAX);
        let mut plan = BagPlan {
            spec: DatasetSpec {
                fps,
                robot_type: cfg.robot_type.clone(),
                features: Vec::new(),
            },
            slots,
            feature_slots,
            feature_resize: cfg
                .features
                .iter()
                .map(|f| f.resize.map(|[h, w]| (h, w)))
                .collect(),
            conns,
            timeline,
            time_source: cfg.time_source,
            chunks,
            expected_frames,
            trim_start: cfg.trim_start,
            trim_end: cfg.trim_end,
            strict: cfg.strict,
        };
        plan.probe_shapes(rec, cfg)?;
        Ok(plan)
    }

    /// Reads the first message of every slot to learn vector lengths, joint names and image
    /// shapes; fills `spec.features`.
    fn probe_shapes(&mut self, rec: &Recording, cfg: &ConvertConfig) -> Result<()> {
        let index = rec.index();
        let mut first: Vec<Option<Vec<Value>>> = vec![None; self.slots.len()];
        let mut names_hint: Vec<Option<Vec<String>>> = vec![None; self.slots.len()];
        for &ci in &self.chunks {
            if first.iter().all(Option::is_some) {
                break;
            }
            let chunk = &index.chunks[ci];
            let needed: Vec<usize> = (0..self.slots.len())
                .filter(|&s| first[s].is_none())
                .collect();
            let holds = needed.iter().any(|&s| {
                index
                    .connections_of(&self.slots[s].topic)
                    .iter()
                    .any(|c| chunk.holds_any(&[*c]))
            });
            if !holds {
                continue;
            }
            let wanted = self.wanted_conns();
            let unit = rec.read_unit(ci, Some(&wanted), false)?;
            if let Some(e) = unit.cut {
                return Err(e);
            }
            for m in unit.messages() {
                let Some(cp) = self.conns.get(&m.conn) else {
                    continue;
                };
                if cp.uses.iter().all(|(s, _)| first[*s].is_some()) {
                    continue;
                }
                let values =
                    cp.schema
                        .decode_fields(m.data, &cp.paths)
                        .map_err(|e| Error::Decode {
                            path: rec.path().to_path_buf(),
                            topic: cp.topic.clone(),
                            conn: m.conn,
                            time_ns: m.time_ns,
                            offset: e.offset,
                            what: e.what.clone(),
                        })?;
                for &(slot, at) in &cp.uses {
                    if first[slot].is_some() {
                        continue;
                    }
                    let n = match self.slots[slot].kind {
                        SlotKind::Numeric { .. } => 1,
                        SlotKind::CompressedImage => {
                            crate::msg::image::COMPRESSED_IMAGE_FIELDS.len()
                        }
                        SlotKind::RawImage => crate::msg::image::RAW_IMAGE_FIELDS.len(),
                    };
                    first[slot] = Some(values[at..at + n].to_vec());
                    // JointState-like: element names from the sibling `name` field.
                    if cp.schema.msgtype() == "sensor_msgs/JointState"
                        && let Ok(p) = cp.schema.field_path("name")
                        && let Ok(v) = cp.schema.decode_fields(m.data, &[p])
                        && let Some(Value::Array(items)) = v.first()
                    {
                        names_hint[slot] = Some(
                            items
                                .iter()
                                .map(|i| match i {
                                    Value::String(s) => s.clone(),
                                    _ => String::new(),
                                })
                                .collect(),
                        );
                    }
                }
            }
            drop(unit);
            rec.release(ci);
        }
        for (s, v) in first.iter().enumerate() {
            if v.is_none() {
                return Err(Error::Config(format!(
                    "{}: topic {} has no messages",
                    rec.path().display(),
                    self.slots[s].topic
                )));
            }
        }
        // Features.
        for (fi, f) in cfg.features.iter().enumerate() {
            let slots = &self.feature_slots[fi];
            let kind = if let [s] = slots[..]
                && !matches!(self.slots[s].kind, SlotKind::Numeric { .. })
            {
                let vals = first[s]
                    .as_ref()
                    .ok_or_else(|| Error::Internal("probe missing".into()))?;
                let (h0, w0, c, deep) = image_shape(&self.slots[s].kind, vals).map_err(|what| {
                    Error::Config(format!(
                        "feature '{}' (topic {}): {what}",
                        f.name, self.slots[s].topic
                    ))
                })?;
                let (h, w) = f.resize.map_or((h0, w0), |[h, w]| (h, w));
                image_kind(cfg, f, (h, w, c), deep)?
            } else {
                let mut names = Vec::new();
                let mut total = 0;
                for &s in slots {
                    let vals = first[s]
                        .as_ref()
                        .ok_or_else(|| Error::Internal("probe missing".into()))?;
                    let SlotKind::Numeric { range, scale, .. } = self.slots[s].kind else {
                        return Err(Error::Config(format!(
                            "feature '{}' mixes images and numbers",
                            f.name
                        )));
                    };
                    let all = vals[0].to_f64_vec().ok_or_else(|| {
                        Error::Config(format!(
                            "feature '{}': a field of topic {} holds non-numeric values (strings)",
                            f.name, self.slots[s].topic
                        ))
                    })?;
                    let (a, b) = range.unwrap_or((0, all.len()));
                    if b > all.len() {
                        return Err(Error::Config(format!(
                            "feature '{}': range {a}..{b} of topic {} but its first message has {} values",
                            f.name,
                            self.slots[s].topic,
                            all.len()
                        )));
                    }
                    let len = b - a;
                    if len == 0 {
                        return Err(Error::Config(format!(
                            "feature '{}': topic {} gives no values (empty array)",
                            f.name, self.slots[s].topic
                        )));
                    }
                    self.slots[s].kind = SlotKind::Numeric { range, scale, len };
                    let field_last = cfg.features[fi]
                        .all_sources()?
                        .get(slots.iter().position(|x| *x == s).unwrap_or(0))
                        .and_then(|src| src.field.clone())
                        .unwrap_or_default();
                    let short = field_last.rsplit('.').next().unwrap_or("v").to_string();
                    match &names_hint[s] {
                        Some(n) if n.len() >= b => names.extend(n[a..b].iter().cloned()),
                        _ => names.extend((a..b).map(|i| format!("{short}_{i}"))),
                    }
                    total += len;
                }
                let names = match &f.names {
                    Some(n) if n.len() == total => n.clone(),
                    Some(n) => {
                        return Err(Error::Config(format!(
                            "feature '{}' has {total} values but {} names",
                            f.name,
                            n.len()
                        )));
                    }
                    None => names,
                };
                FeatureKind::Vector {
                    len: total,
                    names: Some(names),
                }
            };
            self.spec.features.push(FeatureSpec {
                name: f.name.clone(),
                kind,
            });
        }
        Ok(())
    }

    /// Connection ids the reader must decode.
    pub(crate) fn wanted_conns(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.conns.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

fn image_feature(slots: &[SlotPlan], mine: &[usize]) -> bool {
    mine.iter()
        .any(|&s| !matches!(slots[s].kind, SlotKind::Numeric { .. }))
}

/// Image or video feature: `storage = "video"` (the feature's or the dataset's) makes a video
/// of 8-bit images; 16-bit (depth) images stay images, with a warning when only the dataset
/// default asked for video.
fn image_kind(
    cfg: &ConvertConfig,
    f: &super::config::FeatureConfig,
    (height, width, channels): (u32, u32, u32),
    deep: bool,
) -> Result<FeatureKind> {
    use super::config::Storage;
    if cfg.storage_of(f) == Storage::Image {
        return Ok(FeatureKind::Image {
            height,
            width,
            channels,
        });
    }
    if deep {
        if f.storage == Some(Storage::Video) {
            return Err(Error::Config(format!(
                "feature '{}': 16-bit images cannot be stored as video (yuv420p is 8-bit); use storage = \"image\"",
                f.name
            )));
        }
        crate::diag::warn(&format!(
            "feature '{}' has 16-bit images: kept as images, not video",
            f.name
        ));
        return Ok(FeatureKind::Image {
            height,
            width,
            channels,
        });
    }
    let codec = cfg.video_config().codec()?;
    if let Some(p) = crate::dataset::video::size_problem(codec, width, height) {
        return Err(Error::Config(format!("feature '{}': {p}", f.name)));
    }
    Ok(FeatureKind::Video {
        height,
        width,
        channels: 3,
        codec,
    })
}

/// Height, width, channels of the first image, and whether it has 16-bit samples: from the encoded header only for compressed
/// images, from the message fields for raw ones.
fn image_shape(
    kind: &SlotKind,
    vals: &[Value],
) -> std::result::Result<(u32, u32, u32, bool), String> {
    match kind {
        SlotKind::CompressedImage => {
            let data = vals[1]
                .as_bytes()
                .ok_or("CompressedImage data is not bytes")?;
            let (at, _) = super::image::locate_encoded(data)
                .ok_or("the first image is neither JPEG nor PNG")?;
            let data = &data[at..];
            let reader = image::ImageReader::new(std::io::Cursor::new(data))
                .with_guessed_format()
                .map_err(|e| format!("cannot read the first image: {e}"))?;
            let decoder = reader
                .into_decoder()
                .map_err(|e| format!("cannot read the first image's header: {e}"))?;
            use image::ImageDecoder;
            let (w, h) = decoder.dimensions();
            let ct = decoder.color_type();
            let c = ct.channel_count() as u32;
            let deep = ct.bytes_per_pixel() > ct.channel_count();
            Ok((h, w, c, deep))
        }
        SlotKind::RawImage => {
            let h = vals[0].to_f64().ok_or("height is not a number")? as u32;
            let w = vals[1].to_f64().ok_or("width is not a number")? as u32;
            let Value::String(enc) = &vals[2] else {
                return Err("encoding is not a string".into());
            };
            let c = super::image::raw_channels(enc)
                .ok_or_else(|| format!("unsupported raw image encoding {enc:?}"))?;
            Ok((h, w, c, enc.contains("16")))
        }
        SlotKind::Numeric { .. } => Err("not an image".into()),
    }
}
