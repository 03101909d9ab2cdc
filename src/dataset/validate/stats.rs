//! `validate`: `meta/stats.json` against the features.

use super::*;

/// Shape of a JSON array (`[3,1,1]` for `[[[a]],[[b]],[[c]]]`), if it is a regular numeric
/// array with finite numbers.
pub(super) fn json_shape(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()).map(|_| vec![]),
        Value::Array(items) => {
            let first = json_shape(items.first()?)?;
            for it in &items[1..] {
                if json_shape(it)? != first {
                    return None;
                }
            }
            let mut s = vec![items.len()];
            s.extend(first);
            Some(s)
        }
        _ => None,
    }
}

pub(super) fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => n.as_f64().into_iter().collect(),
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        _ => vec![],
    }
}

/// Checks `meta/stats.json`: every non-string feature, every key, lerobot's shapes.
pub(super) fn check_stats(c: &mut Checker, feats: &[Feat], t: &Totals) {
    let f = "meta/stats.json";
    let stats: Value = match std::fs::read_to_string(c.root.join(f))
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            c.problem(format!("{f}: cannot read: {e}"));
            return;
        }
    };
    for feat in feats.iter().filter(|x| x.dtype != "string") {
        let Some(s) = stats.get(&feat.name) else {
            c.problem(format!("{f}: feature {} has no stats", feat.name));
            continue;
        };
        // lerobot checks [3,1,1] for any key containing "image".
        let visual = feat.is_visual() || feat.name.contains("image");
        let want: Vec<usize> = if visual {
            vec![3, 1, 1]
        } else {
            feat.shape.iter().map(|d| *d as usize).collect()
        };
        for key in STAT_KEYS {
            let Some(v) = s.get(key) else {
                c.problem(format!("{f}: {}: missing {key}", feat.name));
                continue;
            };
            let shape = json_shape(v);
            let expect = if key == "count" {
                vec![1]
            } else {
                want.clone()
            };
            if shape.as_ref() != Some(&expect) {
                c.problem(format!(
                    "{f}: {}: {key} has shape {shape:?}, expected {expect:?} of finite numbers",
                    feat.name
                ));
            }
        }
        if !visual && s["count"][0].as_u64() != Some(t.frames) {
            c.problem(format!(
                "{f}: {}: count is {}, expected total_frames {}",
                feat.name, s["count"], t.frames
            ));
        }
        let (min, max) = (flat(&s["min"]), flat(&s["max"]));
        if min.len() == max.len() && min.iter().zip(&max).any(|(a, b)| a > b) {
            c.problem(format!("{f}: {}: min exceeds max", feat.name));
        }
    }
}
