//! `validate`: `meta/info.json` (through the one `InfoJson` reading) and the features it declares.

use super::*;

pub(super) fn check_info(c: &mut Checker) -> Option<(InfoJson, Vec<Feat>, Totals)> {
    let f = "meta/info.json";
    let path = c.root.join(f);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            c.problem(format!("{f}: cannot read: {e}"));
            return None;
        }
    };
    // One reading of the file (`InfoJson`), shared with the writer and append: a key missing
    // or of the wrong type is a problem named by serde (key, line, column).
    let info = match InfoJson::parse(&path, &text) {
        Ok(i) => i,
        Err(e) => {
            c.problem(e.to_string());
            return None;
        }
    };
    if info.codebase_version != CODEBASE_VERSION {
        c.problem(format!(
            "{f}: codebase_version is {:?}, expected \"{CODEBASE_VERSION}\"",
            info.codebase_version
        ));
    }
    for (key, v) in [
        ("data_files_size_in_mb", &info.data_files_size_in_mb),
        ("video_files_size_in_mb", &info.video_files_size_in_mb),
    ] {
        if v.is_none() {
            c.problem(format!("{f}: {key} must be a number"));
        }
    }
    if info.fps == 0 {
        c.problem(format!("{f}: fps must be > 0"));
    }
    let totals = Totals {
        fps: f64::from(info.fps),
        episodes: info.total_episodes,
        frames: info.total_frames,
        tasks: info.total_tasks,
        chunks_size: info.chunks_size.max(1),
    };
    let want_split = format!("0:{}", totals.episodes);
    if info.splits.get("train") != Some(&want_split) {
        c.problem(format!(
            "{f}: splits.train is {:?}, expected \"{want_split}\"",
            info.splits.get("train")
        ));
    }
    if info.data_path != DATA_PATH_TEMPLATE {
        c.problem(format!(
            "{f}: data_path is {:?}, expected \"{DATA_PATH_TEMPLATE}\"",
            info.data_path
        ));
    }
    let mut feats = Vec::new();
    for (name, v) in &info.features {
        if v.dtype.is_empty() {
            c.problem(format!("{f}: feature {name}: missing dtype"));
        }
        if v.shape.is_empty() || v.shape.contains(&0) {
            c.problem(format!(
                "{f}: feature {name}: shape must be a list of positive integers, found {:?}",
                v.shape
            ));
            continue;
        }
        if name.contains('/') {
            c.problem(format!("{f}: feature {name}: names must not contain '/'"));
        }
        if v.names == Names::Absent {
            c.problem(format!(
                "{f}: feature {name}: missing \"names\" (null allowed)"
            ));
        }
        let feat = Feat {
            name: name.clone(),
            dtype: v.dtype.clone(),
            shape: v.shape.clone(),
        };
        if feat.is_visual() {
            if feat.shape.len() != 3 {
                c.problem(format!(
                    "{f}: feature {name}: {} shape must be [H, W, C], found {:?}",
                    feat.dtype, feat.shape
                ));
            }
            let hwc = ["height", "width", "channels"].map(String::from).to_vec();
            if v.names != Names::List(hwc) {
                c.problem(format!(
                    "{f}: feature {name}: names must be [\"height\", \"width\", \"channels\"], found {:?}",
                    v.names
                ));
            }
        } else if let Names::List(names) = &v.names
            && feat.shape.len() == 1
            && names.len() as u64 != feat.shape[0]
        {
            c.problem(format!(
                "{f}: feature {name}: {} names for shape {:?}",
                names.len(),
                feat.shape
            ));
        }
        feats.push(feat);
    }
    for d in DEFAULT_COLUMNS {
        let want = if d == "timestamp" { "float32" } else { "int64" };
        match feats.iter().find(|x| x.name == d) {
            None => c.problem(format!("{f}: default feature {d} is not declared")),
            Some(x) if x.dtype != want || x.shape != [1] => c.problem(format!(
                "{f}: feature {d} must be {want} shape [1], found {} {:?}",
                x.dtype, x.shape
            )),
            _ => {}
        }
    }
    let has_video = feats.iter().any(|x| x.dtype == "video");
    if !has_video && info.video_path.is_some() {
        c.problem(format!(
            "{f}: video_path must be null without video features"
        ));
    }
    if has_video && info.video_path.is_none() {
        c.problem(format!(
            "{f}: video_path must be a template with video features"
        ));
    }
    Some((info, feats, totals))
}
