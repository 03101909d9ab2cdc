//! rosbag2's `metadata.yaml` (versions 1–9): the storage files of a bag and its compression.
//!
//! The file is a small block-style YAML document written by yaml-cpp; a ~120-line parser of
//! that subset (maps, `- ` lists, plain and quoted scalars) is used instead of a YAML crate.
//! Topics and counts are read too, for `info`, but the storage's own tables are authoritative.

use std::path::Path;

use crate::error::{Error, Result};

/// Largest metadata.yaml read (a bag with thousands of topics is far below this).
const MAX_METADATA_BYTES: u64 = 16 << 20;

/// A parsed YAML node.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Map(Vec<(String, Yaml)>),
    List(Vec<Yaml>),
    Scalar(String),
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Yaml::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn u64(&self) -> Option<u64> {
        self.str()?.trim().parse().ok()
    }

    /// List items; a `[]` scalar is an empty list.
    fn items(&self) -> &[Yaml] {
        match self {
            Yaml::List(v) => v,
            _ => &[],
        }
    }
}

/// One topic as metadata.yaml lists it.
#[derive(Debug, Clone, Default)]
pub(crate) struct YamlTopic {
    pub(crate) name: String,
    pub(crate) msgtype: String,
    pub(crate) message_count: u64,
}

/// What the bag directory's metadata.yaml says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metadata {
    pub(crate) storage_identifier: String,
    pub(crate) relative_file_paths: Vec<String>,
    /// `""` (none) or `zstd`.
    pub(crate) compression_format: String,
    /// `""`/`NONE`, `FILE` or `MESSAGE`.
    compression_mode: String,
    pub(crate) message_count: u64,
    pub(crate) starting_time_ns: u64,
    pub(crate) duration_ns: u64,
    pub(crate) topics: Vec<YamlTopic>,
}

impl Metadata {
    pub(crate) fn read(path: &Path) -> Result<Metadata> {
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if len > MAX_METADATA_BYTES {
            return Err(Error::Malformed {
                path: path.to_path_buf(),
                offset: 0,
                what: format!("metadata.yaml of {len} bytes is larger than {MAX_METADATA_BYTES}"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|what| Error::Malformed {
            path: path.to_path_buf(),
            offset: 0,
            what,
        })
    }

    fn parse(text: &str) -> std::result::Result<Metadata, String> {
        let doc = parse_yaml(text)?;
        let info = doc
            .get("rosbag2_bagfile_information")
            .ok_or("no rosbag2_bagfile_information section")?;
        let s = |k: &str| {
            info.get(k)
                .and_then(Yaml::str)
                .unwrap_or_default()
                .to_string()
        };
        let mut topics = Vec::new();
        for t in info
            .get("topics_with_message_count")
            .map(Yaml::items)
            .unwrap_or_default()
        {
            // Version 1 names the section `topic_and_type`.
            let Some(m) = t.get("topic_metadata").or_else(|| t.get("topic_and_type")) else {
                continue;
            };
            let f = |k: &str| m.get(k).and_then(Yaml::str).unwrap_or_default().to_string();
            topics.push(YamlTopic {
                name: f("name"),
                msgtype: f("type"),
                message_count: t.get("message_count").and_then(Yaml::u64).unwrap_or(0),
            });
        }
        Ok(Metadata {
            storage_identifier: s("storage_identifier"),
            relative_file_paths: info
                .get("relative_file_paths")
                .map(Yaml::items)
                .unwrap_or_default()
                .iter()
                .filter_map(|y| y.str().map(str::to_string))
                .collect(),
            compression_format: s("compression_format"),
            compression_mode: s("compression_mode"),
            message_count: info.get("message_count").and_then(Yaml::u64).unwrap_or(0),
            starting_time_ns: info
                .get("starting_time")
                .and_then(|t| t.get("nanoseconds_since_epoch"))
                .and_then(Yaml::u64)
                .unwrap_or(0),
            duration_ns: info
                .get("duration")
                .and_then(|t| t.get("nanoseconds"))
                .and_then(Yaml::u64)
                .unwrap_or(0),
            topics,
        })
    }

    /// Whether each message is a zstd frame.
    pub(crate) fn message_compressed(&self) -> bool {
        self.compression_mode.eq_ignore_ascii_case("message")
    }

    /// Whether each storage file is one zstd frame.
    pub(crate) fn file_compressed(&self) -> bool {
        self.compression_mode.eq_ignore_ascii_case("file")
    }
}

/// Parses the block-style subset of YAML rosbag2 writes.
fn parse_yaml(text: &str) -> std::result::Result<Yaml, String> {
    let lines: Vec<(usize, String)> = text
        .lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
        })
        .map(|l| {
            let indent = l.len() - l.trim_start_matches(' ').len();
            (indent, l.trim().to_string())
        })
        .collect();
    // `- key: value` opens a map whose keys sit two columns in: split it into `-` and the key.
    let mut expanded = Vec::with_capacity(lines.len());
    for (indent, text) in lines {
        match text.strip_prefix("- ") {
            Some(rest) if split_key(rest.trim()).is_some() => {
                expanded.push((indent, "-".to_string()));
                expanded.push((indent + 2, rest.trim().to_string()));
            }
            _ => expanded.push((indent, text)),
        }
    }
    let lines = expanded;
    let mut pos = 0;
    let root = block(&lines, &mut pos, 0, 0)?;
    Ok(root)
}

/// Nesting deeper than this is refused (a hostile file cannot exhaust the stack).
const MAX_DEPTH: usize = 64;

fn block(
    lines: &[(usize, String)],
    pos: &mut usize,
    indent: usize,
    depth: usize,
) -> std::result::Result<Yaml, String> {
    if depth > MAX_DEPTH {
        return Err("metadata.yaml nests too deeply".into());
    }
    let Some((_, first)) = lines.get(*pos) else {
        return Ok(Yaml::Scalar(String::new()));
    };
    if first == "-" || first.starts_with("- ") {
        let mut items = Vec::new();
        while let Some((ind, text)) = lines.get(*pos) {
            if *ind != indent || !(text == "-" || text.starts_with("- ")) {
                break;
            }
            let rest = text.get(2..).unwrap_or_default().trim().to_string();
            if rest.is_empty() {
                *pos += 1;
                items.push(child(lines, pos, indent, depth)?);
            } else {
                *pos += 1;
                items.push(Yaml::Scalar(scalar(&rest)));
            }
        }
        return Ok(Yaml::List(items));
    }
    let mut map = Vec::new();
    while let Some((ind, text)) = lines.get(*pos) {
        if *ind != indent {
            if *ind > indent {
                // A line deeper than expected (e.g. a multi-line scalar): skip it.
                *pos += 1;
                continue;
            }
            break;
        }
        let Some((key, value)) = split_key(text) else {
            *pos += 1;
            continue;
        };
        *pos += 1;
        let v = if value.is_empty() {
            child(lines, pos, indent, depth)?
        } else if value == "[]" {
            Yaml::List(Vec::new())
        } else {
            Yaml::Scalar(scalar(value))
        };
        map.push((key.to_string(), v));
    }
    Ok(Yaml::Map(map))
}

/// The block under a `key:` or `-` line: deeper lines, or a list at the same indent.
fn child(
    lines: &[(usize, String)],
    pos: &mut usize,
    indent: usize,
    depth: usize,
) -> std::result::Result<Yaml, String> {
    match lines.get(*pos) {
        Some((ind, _)) if *ind > indent => {
            let ind = *ind;
            block(lines, pos, ind, depth + 1)
        }
        Some((ind, t)) if *ind == indent && (t == "-" || t.starts_with("- ")) => {
            block(lines, pos, indent, depth + 1)
        }
        _ => Ok(Yaml::Scalar(String::new())),
    }
}

/// `key: value` (the value may be empty); `None` for a line that is not a mapping entry.
fn split_key(text: &str) -> Option<(&str, &str)> {
    if text.starts_with('"') || text.starts_with('\'') {
        return None;
    }
    let at = text
        .find(": ")
        .or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
    Some((text[..at].trim(), text[at + 1..].trim()))
}

/// A plain, single-quoted or double-quoted scalar.
fn scalar(text: &str) -> String {
    let t = text.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        let mut out = String::new();
        let mut chars = t[1..t.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        }
        return out;
    }
    if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        return t[1..t.len() - 1].replace("''", "'");
    }
    if t == "~" || t == "null" {
        return String::new();
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_and_later_layouts() {
        let v1 = "rosbag2_bagfile_information:\n  version: 1\n  storage_identifier: sqlite3\n  relative_file_paths:\n    - test.db3\n  topics_with_message_count:\n    - topic_and_type:\n        name: /a\n        type: test_msgs/Primitives\n        serialization_format: cdr\n      message_count: 3\n  compression_mode: \"\"\n";
        let m = Metadata::parse(v1).expect("v1");
        assert_eq!(m.relative_file_paths, vec!["test.db3"]);
        assert_eq!(m.topics.len(), 1);
        assert_eq!(m.topics[0].msgtype, "test_msgs/Primitives");
        assert_eq!(m.topics[0].message_count, 3);
        let v9 = "rosbag2_bagfile_information:\n  version: 9\n  relative_file_paths:\n    - d/x_0.db3\n    - d/x_1.db3\n  files:\n    - path: d/x_0.db3\n      message_count: 2\n  compression_format: zstd\n  compression_mode: MESSAGE\n  custom_data: ~\n  ros_distro: jazzy\n";
        let m = Metadata::parse(v9).expect("v9");
        assert_eq!(m.relative_file_paths.len(), 2);
        assert!(m.message_compressed());
    }
}
