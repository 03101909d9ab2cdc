//! ROS 2 message definitions: which `.msg` text decodes a topic's payloads.
//!
//! A bag's own definitions come first (MCAP `ros2msg` schemas, the `message_definitions` table
//! of newer `.db3` files); types they lack come from `--msg-path` directories, then from the
//! built-in definitions of the common interface packages (`builtin_msgs.txt`, ROS 2 Humble).
//! Service events (`pkg/srv/X_Event`) are stored as the `.srv` text; their message is built
//! here the way rosidl builds it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::msg::{MessageSchema, normalize_type_name};

/// Built-in definitions: sections `MSG: pkg/msg/Type` after lines of `=`.
const BUILTIN: &str = include_str!("builtin_msgs.txt");

/// The line rosbag2 and MCAP put between the sections of a `ros2msg` definition.
const SEPARATOR: &str =
    "================================================================================";

/// `service_msgs/msg/ServiceEventInfo` (Iron and later), the first field of every service event.
const SERVICE_EVENT_INFO: &str = "uint8 REQUEST_SENT = 0\nuint8 REQUEST_RECEIVED = 1\n\
uint8 RESPONSE_SENT = 2\nuint8 RESPONSE_RECEIVED = 3\nuint8 event_type\n\
builtin_interfaces/msg/Time stamp\nchar[16] client_gid\nint64 sequence_number\n";

/// Deepest directory walk under a `--msg-path` directory.
const MAX_WALK_DEPTH: usize = 8;

/// Directories given with `--msg-path`, set once by the command line before any bag is read.
static MSG_PATHS: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Registers the `--msg-path` directories (the first call wins).
pub(crate) fn set_msg_paths(paths: Vec<PathBuf>) {
    let _ = MSG_PATHS.set(paths);
}

/// The registered `--msg-path` directories (handed on to child processes).
pub(crate) fn msg_paths() -> &'static [PathBuf] {
    MSG_PATHS.get().map(Vec::as_slice).unwrap_or_default()
}

/// `pkg/Type` and `pkg/msg/Type` both become `pkg/msg/Type`; other names are kept.
pub(crate) fn full_type_name(name: &str) -> String {
    let name = name.trim();
    match name.split('/').collect::<Vec<_>>().as_slice() {
        [pkg, ty] => format!("{pkg}/msg/{ty}"),
        _ => name.to_string(),
    }
}

/// Where definitions not stored in a bag come from.
#[derive(Debug, Default, Clone)]
pub struct DefinitionStore {
    /// `pkg/msg/Type` → own fields (no dependency sections).
    sections: HashMap<String, String>,
    /// `pkg/srv/Srv` → `.srv` text.
    services: HashMap<String, String>,
    /// Every section as `MSG:` text, appended after a bag's own definition so the types it
    /// uses resolve: `--msg-path` first, then the built-ins.
    appendix: String,
}

impl DefinitionStore {
    /// Built-ins plus the `--msg-path` directories registered by the command line.
    pub fn standard() -> DefinitionStore {
        let mut store = DefinitionStore::default();
        for dir in MSG_PATHS.get().map(Vec::as_slice).unwrap_or_default() {
            store.add_dir(dir);
        }
        store.add_text(BUILTIN);
        store
    }

    /// Adds `ros2msg`-style text of `MSG:` sections (first definition of a name wins).
    fn add_text(&mut self, text: &str) {
        for (name, body) in split_sections(text) {
            if let Some(name) = name {
                self.add_type(&name, &body);
            }
        }
    }

    /// Adds the definition of one type and the dependency sections that follow it.
    pub fn add_definition(&mut self, msgtype: &str, text: &str) {
        let mut sections = split_sections(text).into_iter();
        if let Some((_, own)) = sections.next() {
            if is_service_text(&own) || msgtype.contains("/srv/") {
                let name = msgtype.trim().trim_end_matches("_Event").to_string();
                self.services
                    .entry(name)
                    .or_insert_with(|| text.to_string());
            } else {
                self.add_type(msgtype, &own);
            }
        }
        for (name, body) in sections {
            if let Some(name) = name {
                self.add_type(&name, &body);
            }
        }
    }

    fn add_type(&mut self, name: &str, body: &str) {
        let name = full_type_name(name);
        if self.sections.contains_key(&name) {
            return;
        }
        self.appendix
            .push_str(&format!("{SEPARATOR}\nMSG: {name}\n{body}\n"));
        self.sections.insert(name, body.to_string());
    }

    /// `.msg` files at `DIR/**/<pkg>/msg/<Type>.msg` and `.srv` files at `<pkg>/srv/<Srv>.srv`;
    /// unreadable entries are skipped with a warning.
    fn add_dir(&mut self, dir: &Path) {
        let mut stack = vec![(dir.to_path_buf(), 0usize)];
        while let Some((d, depth)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                crate::diag::warn(&format!("--msg-path: cannot read {}", d.display()));
                continue;
            };
            let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    if depth < MAX_WALK_DEPTH {
                        stack.push((p, depth + 1));
                    }
                    continue;
                }
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
                let (Some(stem), Some(kind), Some(pkg)) = (
                    p.file_stem().and_then(|s| s.to_str()),
                    p.parent()
                        .and_then(|x| x.file_name())
                        .and_then(|s| s.to_str()),
                    p.parent()
                        .and_then(|x| x.parent())
                        .and_then(|x| x.file_name())
                        .and_then(|s| s.to_str()),
                ) else {
                    continue;
                };
                let Ok(text) = std::fs::read_to_string(&p) else {
                    crate::diag::warn(&format!("--msg-path: cannot read {}", p.display()));
                    continue;
                };
                match (ext, kind) {
                    ("msg", "msg") => self.add_type(&format!("{pkg}/msg/{stem}"), &text),
                    ("srv", "srv") => {
                        self.services
                            .entry(format!("{pkg}/srv/{stem}"))
                            .or_insert(text);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The decode plan of `msgtype`, from the bag's own definition when it has one (`stored`),
    /// else from this store. `stored_service` is the bag's `.srv` text of the service of a
    /// service event, when it stored that instead of the event's.
    pub(crate) fn schema(
        &self,
        msgtype: &str,
        stored: Option<&str>,
        stored_service: Option<&str>,
    ) -> Result<MessageSchema, String> {
        let full = full_type_name(msgtype);
        if let Some(service) = service_of_event(&full) {
            let text = stored
                .filter(|t| is_service_text(t))
                .or(stored_service)
                .or_else(|| self.services.get(&service).map(String::as_str))
                .ok_or_else(|| {
                    format!("no definition of service {service} (add its .srv with --msg-path)")
                })?;
            let def = service_event_definition(&service, text) + &self.appendix;
            return MessageSchema::parse_cdr(&full, &def).map_err(|e| e.what);
        }
        let own = match stored {
            Some(text) => text.to_string(),
            None => self
                .sections
                .get(&full)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "unknown message type {msgtype}: the bag stores no definition and it is not built in (add its .msg with --msg-path)"
                    )
                })?,
        };
        let def = format!("{own}\n{}", self.appendix);
        MessageSchema::parse_cdr(&normalize_type_name(&full), &def).map_err(|e| e.what)
    }
}

/// `pkg/srv/X_Event` → `pkg/srv/X`.
fn service_of_event(full: &str) -> Option<String> {
    let (pkg, rest) = full.split_once("/srv/")?;
    let srv = rest.strip_suffix("_Event")?;
    Some(format!("{pkg}/srv/{srv}"))
}

/// A `.srv` text has a line of exactly `---` between request and response.
fn is_service_text(text: &str) -> bool {
    text.lines()
        .take_while(|l| !l.trim().starts_with("==="))
        .any(|l| l.trim() == "---")
}

/// The event message rosidl generates for a service: `info`, then the request and the
/// response as sequences of at most one element.
fn service_event_definition(service: &str, srv_text: &str) -> String {
    let mut sections = split_sections(srv_text).into_iter();
    let own = sections.next().map(|(_, b)| b).unwrap_or_default();
    let mut request = String::new();
    let mut response = String::new();
    let mut in_response = false;
    for line in own.lines() {
        if line.trim() == "---" && !in_response {
            in_response = true;
            continue;
        }
        let target = if in_response {
            &mut response
        } else {
            &mut request
        };
        target.push_str(line);
        target.push('\n');
    }
    let mut out = format!(
        "service_msgs/msg/ServiceEventInfo info\n{service}_Request[<=1] request\n{service}_Response[<=1] response\n\
         {SEPARATOR}\nMSG: service_msgs/msg/ServiceEventInfo\n{SERVICE_EVENT_INFO}\
         {SEPARATOR}\nMSG: {service}_Request\n{request}\
         {SEPARATOR}\nMSG: {service}_Response\n{response}"
    );
    for (name, body) in sections {
        if let Some(name) = name {
            out.push_str(&format!("{SEPARATOR}\nMSG: {name}\n{body}\n"));
        }
    }
    out
}

/// Splits `ros2msg` text into `(name, body)` sections; the first has no name.
fn split_sections(text: &str) -> Vec<(Option<String>, String)> {
    let mut out: Vec<(Option<String>, String)> = vec![(None, String::new())];
    for line in text.lines() {
        let t = line.trim();
        if t.len() >= 3 && t.bytes().all(|b| b == b'=') {
            out.push((None, String::new()));
            continue;
        }
        if let Some(name) = t.strip_prefix("MSG:") {
            let more_than_one = out.len() > 1;
            let last = out.last_mut().expect("starts non-empty");
            if last.0.is_none() && last.1.trim().is_empty() && more_than_one {
                last.0 = Some(name.trim().to_string());
            } else {
                out.push((Some(name.trim().to_string()), String::new()));
            }
            continue;
        }
        let last = out.last_mut().expect("starts non-empty");
        last.1.push_str(line);
        last.1.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve_nested_types() {
        let store = DefinitionStore::standard();
        let s = store
            .schema("sensor_msgs/msg/CompressedImage", None, None)
            .expect("built in");
        assert!(s.field_path("header.stamp.nanosec").is_ok());
        // Old names without /msg/.
        assert!(store.schema("sensor_msgs/Image", None, None).is_ok());
        assert!(store.schema("nope/msg/Nope", None, None).is_err());
    }

    #[test]
    fn service_event_from_srv_text() {
        let store = DefinitionStore::standard();
        let s = store
            .schema("a/srv/B_Event", Some("int32 x\n---\nstring y\n"), None)
            .expect("srv");
        assert!(s.field_path("info.stamp.sec").is_ok());
        assert!(s.field_path("request").is_ok());
    }
}
