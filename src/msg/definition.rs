//! Text parser for a ROS1 connection's `message_definition`: the top-level message followed by
//! its dependencies, each after a line of `=` and a `MSG: pkg/Type` line.
//!
//! This stage only splits the text into sections of field declarations; resolving type names
//! and building the decode plan happens in `schema`.

use super::DefinitionError;

/// One field declaration, `TYPE NAME` with an optional array suffix on the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawField {
    /// Element type as written, without the array suffix (`float64`, `Header`, `pkg/Type`).
    pub(crate) type_name: String,
    pub(crate) name: String,
    pub(crate) array: ArraySpec,
    /// 1-based line in the definition text, for error messages.
    pub(crate) line: usize,
}

/// Whether a field is a single value, a fixed-length array or a length-prefixed array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArraySpec {
    Scalar,
    Fixed(usize),
    Variable,
}

/// A constant declaration `TYPE NAME=VALUE`; constants are not on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawConstant {
    type_name: String,
    name: String,
    /// Value text as written: to end of line for strings, comment stripped otherwise.
    value: String,
}

/// One message type of the definition text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MessageSection {
    /// `pkg/Type` from the `MSG:` line; `None` for the top-level section.
    pub(crate) name: Option<String>,
    pub(crate) fields: Vec<RawField>,
    constants: Vec<RawConstant>,
}

/// Splits a definition into its sections. The first element is the top-level message.
pub(crate) fn parse_definition(text: &str) -> Result<Vec<MessageSection>, DefinitionError> {
    let mut sections = vec![MessageSection::default()];
    // After a separator line the next section has not received its `MSG:` line yet.
    let mut awaiting_name = false;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if is_separator(trimmed) {
            sections.push(MessageSection::default());
            awaiting_name = true;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("MSG:") {
            let name = normalize_type_name(rest.trim());
            if name.is_empty() {
                return Err(DefinitionError::new(format!(
                    "line {line_no}: empty MSG: name"
                )));
            }
            // A `MSG:` line without a separator before it still starts a new section.
            let current = sections.last_mut().expect("sections starts non-empty");
            if !(awaiting_name && current.fields.is_empty() && current.constants.is_empty()) {
                sections.push(MessageSection::default());
            }
            sections.last_mut().expect("just ensured").name = Some(name);
            awaiting_name = false;
            continue;
        }
        let code = match trimmed.find('#') {
            Some(pos) => trimmed[..pos].trim(),
            None => trimmed,
        };
        // ROS2 annotations (`@verbatim`, ...) carry no wire data.
        if code.is_empty() || code.starts_with('@') {
            continue;
        }
        let current = sections.last_mut().expect("sections starts non-empty");
        // genmsg's rule: a line is a constant when `=` appears before any comment; the type
        // word is excluded so that a bounded `string<=N` field is not taken for one.
        let after_type = code
            .split_once(char::is_whitespace)
            .map_or("", |(_, rest)| rest);
        if after_type.contains('=') {
            current.constants.push(parse_constant(trimmed, line_no)?);
        } else {
            current.fields.push(parse_field(code, line_no)?);
        }
    }
    Ok(sections)
}

/// A line of 3 or more `=` separates dependency sections (ROS writes exactly 80).
fn is_separator(trimmed: &str) -> bool {
    trimmed.len() >= 3 && trimmed.bytes().all(|b| b == b'=')
}

/// Drops the ROS2-style `/msg/` infix so `pkg/msg/Type` and `pkg/Type` name one type.
pub(crate) fn normalize_type_name(name: &str) -> String {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        [pkg, "msg", ty] => format!("{pkg}/{ty}"),
        _ => name.to_string(),
    }
}

fn parse_constant(trimmed: &str, line_no: usize) -> Result<RawConstant, DefinitionError> {
    let (type_name, rest) = trimmed
        .split_once(char::is_whitespace)
        .expect("caller checked that a blank follows the type");
    let (name, value) = rest
        .split_once('=')
        .expect("caller checked that '=' follows the type");
    let mut words = name.split_whitespace();
    let (Some(name), None) = (words.next(), words.next()) else {
        return Err(DefinitionError::new(format!(
            "line {line_no}: constant declaration is not `TYPE NAME=VALUE`: {trimmed:?}"
        )));
    };
    // String constants run to the end of the line, `#` included; others end at a comment.
    let value = if type_name == "string" {
        value.trim()
    } else {
        value.split('#').next().unwrap_or_default().trim()
    };
    Ok(RawConstant {
        type_name: type_name.to_string(),
        name: name.to_string(),
        value: value.to_string(),
    })
}

fn parse_field(code: &str, line_no: usize) -> Result<RawField, DefinitionError> {
    let mut words = code.split_whitespace();
    // Extra words would be a ROS2 default value, which does not change the wire format.
    let (Some(type_text), Some(name)) = (words.next(), words.next()) else {
        return Err(DefinitionError::new(format!(
            "line {line_no}: field declaration is not `TYPE NAME`: {code:?}"
        )));
    };
    let (type_name, array) = match type_text.find('[') {
        None => (type_text, ArraySpec::Scalar),
        Some(open) => {
            let inner = type_text[open + 1..].strip_suffix(']').ok_or_else(|| {
                DefinitionError::new(format!("line {line_no}: unclosed array type {type_text:?}"))
            })?;
            let array = if inner.is_empty() || inner.starts_with("<=") {
                // `T[<=N]` is a bounded sequence: length-prefixed like `T[]`.
                ArraySpec::Variable
            } else {
                let len = inner.parse::<usize>().map_err(|_| {
                    DefinitionError::new(format!(
                        "line {line_no}: bad array length in {type_text:?}"
                    ))
                })?;
                ArraySpec::Fixed(len)
            };
            (&type_text[..open], array)
        }
    };
    // `string<=N` is a bounded string; its wire form is an ordinary string.
    let type_name = if type_name.starts_with("string<=") {
        "string"
    } else if type_name.starts_with("wstring<=") {
        "wstring"
    } else {
        type_name
    };
    if type_name.is_empty() {
        return Err(DefinitionError::new(format!(
            "line {line_no}: missing type in {code:?}"
        )));
    }
    Ok(RawField {
        type_name: normalize_type_name(type_name),
        name: name.to_string(),
        array,
        line: line_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(type_name: &str, name: &str, array: ArraySpec, line: usize) -> RawField {
        RawField {
            type_name: type_name.into(),
            name: name.into(),
            array,
            line,
        }
    }

    #[test]
    fn fields_arrays_and_comments() {
        let text = "# leading comment\nHeader header  # trailing\nfloat64[] position\n\
                    uint8[16] id\nint32 x# no blank\n  \n";
        let secs = parse_definition(text).expect("valid");
        assert_eq!(secs.len(), 1);
        assert_eq!(
            secs[0].fields,
            vec![
                field("Header", "header", ArraySpec::Scalar, 2),
                field("float64", "position", ArraySpec::Variable, 3),
                field("uint8", "id", ArraySpec::Fixed(16), 4),
                field("int32", "x", ArraySpec::Scalar, 5),
            ]
        );
    }

    #[test]
    fn constants_are_recognised_with_blanks_and_strings() {
        let text = "uint8 A = 1 # one\nbool B=True\nstring S = he said \"x#y=z\" \\ # not a comment\n\
                    string T=#x\nint32 value\n";
        let secs = parse_definition(text).expect("valid");
        let c = &secs[0].constants;
        assert_eq!(c.len(), 4);
        assert_eq!((c[0].name.as_str(), c[0].value.as_str()), ("A", "1"));
        assert_eq!((c[1].name.as_str(), c[1].value.as_str()), ("B", "True"));
        assert_eq!(c[2].value, "he said \"x#y=z\" \\ # not a comment");
        assert_eq!(c[3].value, "#x");
        assert_eq!(
            secs[0].fields,
            vec![field("int32", "value", ArraySpec::Scalar, 5)]
        );
    }

    #[test]
    fn sections_split_on_separator_and_msg_line() {
        let sep = "=".repeat(80);
        let text = format!(
            "Header header\n{sep}\nMSG: std_msgs/Header\nuint32 seq\ntime stamp\nstring frame_id\n{sep}\nMSG: pkg/msg/Other\n"
        );
        let secs = parse_definition(&text).expect("valid");
        assert_eq!(secs.len(), 3);
        assert_eq!(secs[0].name, None);
        assert_eq!(secs[1].name.as_deref(), Some("std_msgs/Header"));
        assert_eq!(secs[1].fields.len(), 3);
        assert_eq!(secs[2].name.as_deref(), Some("pkg/Other"));
        assert!(secs[2].fields.is_empty());
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(parse_definition("float64").is_err());
        assert!(parse_definition("float64[ x").is_err());
        assert!(parse_definition("float64[abc] x").is_err());
        assert!(parse_definition("A=1").is_err());
        assert!(parse_definition("MSG:\n").is_err());
    }

    #[test]
    fn empty_definition_has_one_empty_section() {
        let secs = parse_definition("").expect("valid");
        assert_eq!(secs, vec![MessageSection::default()]);
    }
}
