//! `validate`: the data files: names in order, Arrow types against the declared features, indices, timestamps, episode spans.

use super::*;

/// Arrow type expected for a declared numeric dtype.
pub(super) fn numeric_type(dtype: &str) -> Option<DataType> {
    Some(match dtype {
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "int64" => DataType::Int64,
        "int32" => DataType::Int32,
        "int16" => DataType::Int16,
        "int8" => DataType::Int8,
        "uint8" => DataType::UInt8,
        "bool" => DataType::Boolean,
        "string" => DataType::Utf8,
        _ => return None,
    })
}

/// Why a column's Arrow type does not fit its declared feature, if it does not.
pub(super) fn type_problem(feat: &Feat, dt: &DataType) -> Option<String> {
    if feat.dtype == "image" {
        let ok = match dt {
            DataType::Struct(fields) => {
                let bytes = fields.iter().find(|f| f.name() == "bytes");
                let path = fields.iter().find(|f| f.name() == "path");
                fields.len() == 2
                    && bytes.is_some_and(|f| {
                        matches!(f.data_type(), DataType::Binary | DataType::LargeBinary)
                    })
                    && path.is_some_and(|f| {
                        matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                    })
            }
            _ => false,
        };
        return (!ok).then(|| format!("is {dt}, expected struct<bytes: binary, path: string>"));
    }
    let Some(elem) = numeric_type(&feat.dtype) else {
        return Some(format!("declares unknown dtype {}", feat.dtype));
    };
    match feat.shape.as_slice() {
        [1] if *dt == elem || (elem == DataType::Utf8 && *dt == DataType::LargeUtf8) => None,
        [1] => Some(format!(
            "is {dt}, expected {elem} (shape [1] is a plain column)"
        )),
        [n] => match dt {
            DataType::FixedSizeList(item, len)
                if *len as u64 == *n && *item.data_type() == elem =>
            {
                None
            }
            DataType::FixedSizeList(item, len) => Some(format!(
                "is fixed_size_list<{}>[{len}], expected fixed_size_list<{elem}>[{n}]",
                item.data_type()
            )),
            DataType::List(_) | DataType::LargeList(_) => Some(format!(
                "is a variable-length list ({dt}); expected fixed_size_list<{elem}>[{n}]"
            )),
            _ => Some(format!("is {dt}, expected fixed_size_list<{elem}>[{n}]")),
        },
        _ => None, // multi-dimensional features are not checked further
    }
}

/// Checks the data files; returns where each episode lives, in order of appearance.
pub(super) fn check_data(
    c: &mut Checker,
    feats: &[Feat],
    t: &Totals,
) -> BTreeMap<i64, EpisodeSpan> {
    let files = list_files(c, "data", t.chunks_size);
    let expected_cols: Vec<&Feat> = feats.iter().filter(|f| f.dtype != "video").collect();
    let mut spans: BTreeMap<i64, EpisodeSpan> = BTreeMap::new();
    let mut next_index: i64 = 0;
    let mut rows_total: u64 = 0;
    let mut last_episode: Option<i64> = None;
    let mut frame_in_ep: i64 = 0;
    for (idx, path) in files {
        let name = rel(c, &path);
        let Some(builder) = open_parquet(c, &path) else {
            continue;
        };
        let schema: SchemaRef = builder.schema().clone();
        let cols: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for f in &expected_cols {
            match schema.field_with_name(&f.name) {
                Err(_) => c.problem(format!("{name}: column {} is missing", f.name)),
                Ok(field) => {
                    if let Some(p) = type_problem(f, field.data_type()) {
                        c.problem(format!("{name}: column {} {p}", f.name));
                    }
                }
            }
        }
        for col in &cols {
            if !expected_cols.iter().any(|f| f.name == *col) {
                c.problem(format!(
                    "{name}: column {col} is not a declared non-video feature (lerobot fails with CastError)"
                ));
            }
        }
        match schema.metadata().get(HUGGINGFACE_META_KEY) {
            None => c.problem(format!(
                "{name}: schema metadata key \"{HUGGINGFACE_META_KEY}\" is missing"
            )),
            Some(hf) => match serde_json::from_str::<Value>(hf) {
                Ok(v) => {
                    let hf_cols: HashSet<&str> = v["info"]["features"]
                        .as_object()
                        .map(|m| m.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    if hf_cols != cols {
                        c.problem(format!(
                            "{name}: \"{HUGGINGFACE_META_KEY}\" metadata features do not match the columns"
                        ));
                    }
                }
                Err(e) => c.problem(format!(
                    "{name}: \"{HUGGINGFACE_META_KEY}\" metadata is not JSON: {e}"
                )),
            },
        }
        // Nulls, from the footer's column statistics.
        let md = builder.metadata().clone();
        for rg in md.row_groups() {
            for col in rg.columns() {
                if let Some(n) = col.statistics().and_then(|s| s.null_count_opt())
                    && n > 0
                {
                    c.problem(format!(
                        "{name}: column {} has {n} nulls",
                        col.column_path().string()
                    ));
                }
            }
        }

        // Row-by-row scan of the default columns.
        let roots: Vec<usize> = DEFAULT_COLUMNS
            .iter()
            .filter_map(|d| schema.index_of(d).ok())
            .collect();
        if roots.len() != DEFAULT_COLUMNS.len() {
            rows_total += md.file_metadata().num_rows().max(0) as u64;
            continue;
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = match builder
            .with_projection(mask)
            .with_batch_size(SCAN_BATCH_ROWS)
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                c.problem(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        let mut first_row = true;
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        let mut report = |c: &mut Checker, kind: &'static str, msg: String| {
            let n = counts.entry(kind).or_default();
            *n += 1;
            if *n <= MAX_ROW_PROBLEMS {
                c.problem(format!("{name}: {msg}"));
            } else if *n == MAX_ROW_PROBLEMS + 1 {
                c.problem(format!("{name}: more {kind} problems not listed"));
            }
        };
        for batch in reader {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    c.problem(format!("{name}: read error: {e}"));
                    break;
                }
            };
            let get = |n: &str| batch.column_by_name(n);
            let (Some(ts), Some(fi), Some(ei), Some(ix), Some(ti)) = (
                get("timestamp").and_then(|a| a.as_primitive_opt::<Float32Type>()),
                get("frame_index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
                get("episode_index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
                get("index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
                get("task_index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
            ) else {
                break; // types already reported
            };
            for r in 0..batch.num_rows() {
                let (ts, fi, ep, ix, ti) = (
                    ts.value(r),
                    fi.value(r),
                    ei.value(r),
                    ix.value(r),
                    ti.value(r),
                );
                if ix != next_index {
                    report(
                        c,
                        "index",
                        format!("row {r}: index {ix}, expected {next_index} (contiguous from 0)"),
                    );
                }
                next_index = ix + 1;
                if first_row && last_episode == Some(ep) {
                    report(
                        c,
                        "episode",
                        format!(
                            "episode {ep} continues from the previous file: episodes must never be split across files"
                        ),
                    );
                }
                first_row = false;
                if last_episode != Some(ep) {
                    let want = last_episode.map_or(0, |e| e + 1);
                    if ep != want {
                        report(
                            c,
                            "episode",
                            format!("episode_index {ep} follows {last_episode:?}, expected {want}"),
                        );
                    }
                    if let Some(prev) = spans.get(&ep) {
                        report(
                            c,
                            "episode",
                            format!(
                                "episode {ep} appears again (first in chunk {} file {}): episodes must be contiguous and never split",
                                prev.file.0, prev.file.1
                            ),
                        );
                    } else {
                        spans.insert(
                            ep,
                            EpisodeSpan {
                                file: idx,
                                from: ix,
                                length: 0,
                                task_index: ti,
                            },
                        );
                    }
                    last_episode = Some(ep);
                    frame_in_ep = 0;
                }
                if let Some(s) = spans.get_mut(&ep) {
                    if s.file == idx {
                        s.length += 1;
                    }
                    if s.task_index != ti {
                        report(
                            c,
                            "task",
                            format!("episode {ep}: task_index changes within the episode"),
                        );
                    }
                }
                if fi != frame_in_ep {
                    report(
                        c,
                        "frame_index",
                        format!("episode {ep}: frame_index {fi}, expected {frame_in_ep}"),
                    );
                }
                frame_in_ep = fi + 1;
                if t.fps > 0.0 && (f64::from(ts) - fi as f64 / t.fps).abs() > TIMESTAMP_TOLERANCE_S
                {
                    report(
                        c,
                        "timestamp",
                        format!(
                            "episode {ep} frame {fi}: timestamp {ts}, expected frame_index/fps = {}",
                            fi as f64 / t.fps
                        ),
                    );
                }
                if ti < 0 || ti as u64 >= t.tasks {
                    report(
                        c,
                        "task",
                        format!(
                            "episode {ep} frame {fi}: task_index {ti} outside 0..{}",
                            t.tasks
                        ),
                    );
                }
                rows_total += 1;
            }
        }
    }
    if rows_total != t.frames {
        c.problem(format!(
            "meta/info.json: total_frames is {}, the data files hold {rows_total} rows",
            t.frames
        ));
    }
    if spans.len() as u64 != t.episodes {
        c.problem(format!(
            "meta/info.json: total_episodes is {}, the data files hold {} episodes",
            t.episodes,
            spans.len()
        ));
    }
    spans
}
