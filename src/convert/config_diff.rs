//! What differs between the config a dataset was converted with (kept in its conversion log)
//! and the config of this run, in words: the refusal to append names it, so that a user knows
//! which flag or line to change back (or that `--force` is what they want).

use toml::Value;

/// Flattens a TOML value into `(path, value)` pairs; array entries with a `name` key are
/// named by it (`features[observation.state].topic`).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Table(t) => {
            for (k, x) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Array(a) if a.iter().all(Value::is_table) && !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                let id = x
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or_else(|| i.to_string(), str::to_string);
                flatten(&format!("{prefix}[{id}]"), x, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Up to `max` differences between `old` (the dataset's config, TOML) and `new` (this run's),
/// each in words; empty when they read the same.
pub fn differences(old: &str, new: &str, max: usize) -> Vec<String> {
    let parse = |s: &str| s.parse::<toml::Table>().map(Value::Table).ok();
    let (Some(a), Some(b)) = (parse(old), parse(new)) else {
        return Vec::new();
    };
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    flatten("", &a, &mut fa);
    flatten("", &b, &mut fb);
    let get = |v: &[(String, String)], k: &str| v.iter().find(|x| x.0 == k).map(|x| x.1.clone());
    let mut out = Vec::new();
    let mut keys: Vec<&String> = fa.iter().chain(&fb).map(|x| &x.0).collect();
    keys.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            continue;
        }
        let (x, y) = (get(&fa, k), get(&fb, k));
        if x == y {
            continue;
        }
        out.push(match (k.as_str(), x, y) {
            ("storage", x, y) => {
                let words = |v: Option<String>| match v.as_deref() {
                    Some("\"video\"") => "MP4 video (--video)",
                    _ => "images in the parquet files",
                };
                format!(
                    "the dataset stores cameras as {}, this run as {}",
                    words(x),
                    words(y)
                )
            }
            (_, Some(x), Some(y)) => format!("{k} is {x} in the dataset, {y} now"),
            (_, Some(x), None) => format!("{k} is {x} in the dataset, not set now"),
            (_, None, Some(y)) => format!("{k} is {y} now, not set in the dataset"),
            (_, None, None) => continue,
        });
        if out.len() >= max {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_changed_in_words() {
        let old = "storage = \"video\"\n[video]\ncrf = 30\n[[features]]\nname = \"a\"\ntopic = \"/x\"\n";
        let new = "[video]\ncrf = 23\n[[features]]\nname = \"a\"\ntopic = \"/y\"\n";
        let d = differences(old, new, 5);
        assert!(d.iter().any(|l| l.contains("stores cameras as MP4 video")), "{d:?}");
        assert!(d.iter().any(|l| l == "video.crf is 30 in the dataset, 23 now"), "{d:?}");
        assert!(
            d.iter()
                .any(|l| l == "features[a].topic is \"/x\" in the dataset, \"/y\" now"),
            "{d:?}"
        );
        assert!(differences(old, old, 5).is_empty());
    }
}
