//! The compiled decode plan of one connection's message type, and the decoder that runs it.
//!
//! Type names are resolved once, at `MessageSchema::parse`, into a table of message layouts
//! indexed by position; decoding then only walks that table. Every length read from a payload
//! is checked against the bytes left before anything is allocated.

use std::collections::HashMap;

use super::definition::{ArraySpec, MessageSection, normalize_type_name, parse_definition};
use super::value::Value;
use super::{DecodeError, DefinitionError};

/// Deepest nesting of message types accepted, in levels. Real ROS types nest fewer than ten
/// levels; the limit keeps a hostile definition from exhausting the stack.
pub(crate) const MAX_NESTING_DEPTH: usize = 64;

/// Largest element count accepted for an array whose elements take 0 bytes on the wire
/// (empty messages), in elements. Such a length cannot be checked against the payload size,
/// so it is capped to keep a lying length prefix from allocating gigabytes.
pub(crate) const MAX_ZERO_SIZE_ARRAY_LEN: usize = 65_536;

/// A ROS1 built-in type. `byte` is read as `Int8` and `char` as `UInt8`, as ROS does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Primitive {
    Bool,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Float32,
    Float64,
    String,
    /// ROS 2 `wstring` (CDR only): a length in characters, then 4 bytes per character.
    WString,
    Time,
    Duration,
}

impl Primitive {
    /// ROS 2 built-in types: `byte` is an unsigned octet, `char` an unsigned 8-bit value, and
    /// time and duration are messages (`builtin_interfaces/msg/Time`), not built-ins.
    fn from_ros2_name(name: &str) -> Option<Primitive> {
        Some(match name {
            "bool" => Primitive::Bool,
            "int8" => Primitive::Int8,
            "uint8" | "byte" | "char" | "octet" => Primitive::UInt8,
            "int16" => Primitive::Int16,
            "uint16" => Primitive::UInt16,
            "int32" => Primitive::Int32,
            "uint32" => Primitive::UInt32,
            "int64" => Primitive::Int64,
            "uint64" => Primitive::UInt64,
            "float32" => Primitive::Float32,
            "float64" => Primitive::Float64,
            "string" => Primitive::String,
            "wstring" => Primitive::WString,
            _ => return None,
        })
    }

    fn from_name(name: &str) -> Option<Primitive> {
        Some(match name {
            "bool" => Primitive::Bool,
            "int8" | "byte" => Primitive::Int8,
            "uint8" | "char" => Primitive::UInt8,
            "int16" => Primitive::Int16,
            "uint16" => Primitive::UInt16,
            "int32" => Primitive::Int32,
            "uint32" => Primitive::UInt32,
            "int64" => Primitive::Int64,
            "uint64" => Primitive::UInt64,
            "float32" => Primitive::Float32,
            "float64" => Primitive::Float64,
            "string" => Primitive::String,
            "time" => Primitive::Time,
            "duration" => Primitive::Duration,
            _ => return None,
        })
    }

    /// Bytes on the wire; for `String` the length prefix only.
    fn wire_size(self) -> usize {
        match self {
            Primitive::Bool | Primitive::Int8 | Primitive::UInt8 => 1,
            Primitive::Int16 | Primitive::UInt16 => 2,
            Primitive::Int32
            | Primitive::UInt32
            | Primitive::Float32
            | Primitive::String
            | Primitive::WString => 4,
            Primitive::Int64
            | Primitive::UInt64
            | Primitive::Float64
            | Primitive::Time
            | Primitive::Duration => 8,
        }
    }

    /// True when the size never depends on the payload.
    fn is_fixed_size(self) -> bool {
        !matches!(self, Primitive::String | Primitive::WString)
    }

    /// CDR alignment of the value (of the length prefix for strings).
    fn cdr_align(self) -> usize {
        match self {
            Primitive::Time | Primitive::Duration => 4,
            p => p.wire_size(),
        }
    }

    /// True for numbers, bool, time and duration: what `Value::to_f64_vec` can flatten.
    #[cfg(test)]
    fn is_numeric(self) -> bool {
        !matches!(self, Primitive::String | Primitive::WString)
    }
}

/// What one field (or one array element) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Prim(Primitive),
    /// Index into `MessageSchema::types`.
    Msg(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct FieldDef {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    array: ArraySpec,
}

/// Layout of one message type.
#[derive(Debug, Clone)]
pub(crate) struct MsgDef {
    /// Full `pkg/Type` name.
    name: String,
    pub(crate) fields: Vec<FieldDef>,
    /// Fewest bytes a value of this type can take; saturates instead of overflowing.
    min_size: usize,
    /// Exact size when it does not depend on the payload, which lets the decoder skip it.
    fixed_size: Option<usize>,
}

/// The compiled decode plan for one connection's message type. Build it once per connection
/// with [`MessageSchema::parse`], then decode every message of that connection with it.
#[derive(Debug, Clone)]
pub struct MessageSchema {
    msgtype: String,
    /// ROS 2 CDR payloads (encapsulation header, alignment, either byte order) instead of
    /// ROS1 serialization.
    cdr: bool,
    /// Message layouts; `ROOT` is the connection's own type.
    pub(crate) types: Vec<MsgDef>,
}

/// Index of the top-level type in `MessageSchema::types`.
pub(crate) const ROOT: usize = 0;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Field by position in its message.
    Field(usize),
    /// Element of an array.
    Index(usize),
}

/// Field lookup lives beside [`FieldPath`] (not in `value`), so `value` depends on nothing.
impl Value {
    /// The value at `path`, which must come from the schema this value was decoded with.
    /// `None` when an index is past the end of a variable-length array.
    #[cfg(test)]
    pub(crate) fn get(&self, path: &FieldPath) -> Option<&Value> {
        self.get_steps(&path.steps)
    }

    fn get_steps(&self, steps: &[Step]) -> Option<&Value> {
        let mut value = self;
        for step in steps {
            value = match (step, value) {
                (Step::Field(i), Value::Message(fields)) => fields.get(*i)?,
                (Step::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// A field path resolved against a schema, e.g. `pose.position.x` or `transforms[0].child_frame_id`.
/// Use it with [`Value::get`] or [`MessageSchema::decode_fields`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    steps: Vec<Step>,
    leaf_kind: Kind,
    leaf_array: ArraySpec,
    leaf_type: String,
}

impl FieldPath {
    /// ROS type of the value the path selects, e.g. `float64[7]` or `geometry_msgs/Point`.
    pub(crate) fn ros_type(&self) -> &str {
        &self.leaf_type
    }

    /// The built-in type of the selected value or of its array elements; `None` for messages.
    #[cfg(test)]
    pub(crate) fn primitive(&self) -> Option<Primitive> {
        match self.leaf_kind {
            Kind::Prim(p) => Some(p),
            Kind::Msg(_) => None,
        }
    }

    /// True when the selected value is a number, bool, time or duration, or an array of them.
    #[cfg(test)]
    pub(crate) fn is_numeric(&self) -> bool {
        matches!(self.leaf_kind, Kind::Prim(p) if p.is_numeric())
    }

    /// `Some(n)` when the selected value is an array of fixed length `n`; `Some(1)` for a scalar;
    /// `None` for variable-length arrays. Lets a caller size a dataset column up front.
    #[cfg(test)]
    pub(crate) fn fixed_len(&self) -> Option<usize> {
        match self.leaf_array {
            ArraySpec::Scalar => Some(1),
            ArraySpec::Fixed(n) => Some(n),
            ArraySpec::Variable => None,
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl MessageSchema {
    /// Compiles the decode plan for `msgtype` (`pkg/Type`) from a connection's
    /// `message_definition` text. An empty definition gives a type without fields.
    pub fn parse(msgtype: &str, definition: &str) -> Result<MessageSchema, DefinitionError> {
        let sections = parse_definition(definition)?;
        let msgtype = normalize_type_name(msgtype.trim());
        let mut compiler = Compiler::new(&msgtype, &sections, false);
        compiler.compile(&msgtype, 0, 0)?;
        Ok(MessageSchema {
            msgtype,
            cdr: false,
            types: compiler.types,
        })
    }

    /// Compiles the decode plan of a ROS 2 type from `.msg` text: the type's own fields first,
    /// then the types it uses, each after a `MSG: pkg/msg/Type` line (the `ros2msg` form MCAP
    /// and rosbag2 store). Payloads are CDR: a 4-byte encapsulation header, then values
    /// aligned to their size relative to the end of that header, in the byte order it names.
    pub(crate) fn parse_cdr(
        msgtype: &str,
        definition: &str,
    ) -> Result<MessageSchema, DefinitionError> {
        let sections = parse_definition(definition)?;
        let msgtype = normalize_type_name(msgtype.trim());
        let mut compiler = Compiler::new(&msgtype, &sections, true);
        compiler.compile(&msgtype, 0, 0)?;
        Ok(MessageSchema {
            msgtype,
            cdr: true,
            types: compiler.types,
        })
    }

    /// The reader over one payload: past the encapsulation header for CDR.
    fn reader<'a>(&self, data: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        if !self.cdr {
            return Ok(Reader {
                data,
                pos: 0,
                origin: 0,
                cdr: false,
                big_endian: false,
            });
        }
        let head = |what: String| DecodeError {
            offset: 0,
            what,
            field: String::new(),
        };
        if data.len() < 4 {
            return Err(head(format!(
                "CDR payload of {} bytes has no 4-byte encapsulation header",
                data.len()
            )));
        }
        // Representation id: 0x0000 CDR big endian, 0x0001 CDR little endian (what rmw writes).
        let big_endian = match (data[0], data[1]) {
            (0, 0) => true,
            (0, 1) => false,
            (a, b) => {
                return Err(head(format!(
                    "unsupported CDR representation 0x{a:02x}{b:02x} (only plain CDR, 0x0000/0x0001)"
                )));
            }
        };
        Ok(Reader {
            data,
            pos: 4,
            origin: 4,
            cdr: true,
            big_endian,
        })
    }

    /// The connection's message type, `pkg/Type`.
    pub(crate) fn msgtype(&self) -> &str {
        &self.msgtype
    }

    /// Names of the top-level fields in definition order.
    #[cfg(test)]
    pub(crate) fn field_names(&self) -> impl Iterator<Item = &str> {
        self.types[ROOT].fields.iter().map(|f| f.name.as_str())
    }

    /// Decodes one payload into a `Value::Message`. The payload must be exactly as long as the
    /// definition says: running short and bytes left over are both errors.
    pub fn decode(&self, data: &[u8]) -> Result<Value, DecodeError> {
        let mut reader = self.reader(data)?;
        let value = self
            .decode_msg(ROOT, &mut reader)
            .map_err(DecodeError::finish)?;
        reader.finish()?;
        Ok(value)
    }

    /// Decodes only the values at `paths`, skipping the rest of the payload without building
    /// values for it. The whole payload is still checked, so the errors match [`Self::decode`].
    pub fn decode_fields(
        &self,
        data: &[u8],
        paths: &[FieldPath],
    ) -> Result<Vec<Value>, DecodeError> {
        let mut reader = self.reader(data)?;
        let mut out: Vec<Option<Value>> = vec![None; paths.len()];
        let wanted: Vec<(usize, &[Step])> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.steps.as_slice()))
            .collect();
        self.select_msg(ROOT, &mut reader, &wanted, &mut out)
            .map_err(DecodeError::finish)?;
        reader.finish()?;
        out.into_iter()
            .zip(paths)
            .map(|(v, p)| {
                // An index beyond a variable array's actual length selects nothing.
                v.ok_or_else(|| DecodeError {
                    offset: data.len(),
                    what: format!("no element at {p} in this message"),
                    field: p.text.clone(),
                })
            })
            .collect()
    }

    /// Resolves a dotted path like `header.stamp`, `position[2]` or `pose.position.x`.
    pub fn field_path(&self, path: &str) -> Result<FieldPath, DefinitionError> {
        let bad = |what: String| DefinitionError::new(format!("field path {path:?}: {what}"));
        let mut steps = Vec::new();
        let mut kind = Kind::Msg(ROOT);
        let mut array = ArraySpec::Scalar;
        if path.trim().is_empty() {
            return Err(bad("empty path".into()));
        }
        for part in path.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(open) => (&part[..open], &part[open..]),
                None => (part, ""),
            };
            let Kind::Msg(id) = kind else {
                return Err(bad(format!(
                    "cannot select {name:?} inside a non-message value"
                )));
            };
            if array != ArraySpec::Scalar {
                return Err(bad(format!("{name:?} follows an array without an [index]")));
            }
            let msg = &self.types[id];
            let Some(pos) = msg.fields.iter().position(|f| f.name == name) else {
                return Err(bad(format!("{} has no field {name:?}", msg.name)));
            };
            steps.push(Step::Field(pos));
            kind = msg.fields[pos].kind;
            array = msg.fields[pos].array;
            while !rest.is_empty() {
                let Some((index, tail)) = rest
                    .strip_prefix('[')
                    .and_then(|r| r.split_once(']'))
                    .and_then(|(i, t)| Some((i.parse::<usize>().ok()?, t)))
                else {
                    return Err(bad(format!("bad index in {part:?}")));
                };
                match array {
                    ArraySpec::Scalar => return Err(bad(format!("{name:?} is not an array"))),
                    ArraySpec::Fixed(n) if index >= n => {
                        return Err(bad(format!("index {index} out of {name:?}[{n}]")));
                    }
                    _ => {}
                }
                if matches!(kind, Kind::Prim(Primitive::Int8 | Primitive::UInt8)) {
                    return Err(bad(format!(
                        "{name:?} is a byte array; select it whole and index the bytes"
                    )));
                }
                steps.push(Step::Index(index));
                array = ArraySpec::Scalar;
                rest = tail;
            }
        }
        Ok(FieldPath {
            text: path.to_string(),
            steps,
            leaf_kind: kind,
            leaf_array: array,
            leaf_type: self.type_text(kind, array),
        })
    }

    fn type_text(&self, kind: Kind, array: ArraySpec) -> String {
        let base = match kind {
            Kind::Prim(p) => primitive_name(p).to_string(),
            Kind::Msg(id) => self.types[id].name.clone(),
        };
        match array {
            ArraySpec::Scalar => base,
            ArraySpec::Fixed(n) => format!("{base}[{n}]"),
            ArraySpec::Variable => format!("{base}[]"),
        }
    }

    fn decode_msg(&self, id: usize, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        let msg = &self.types[id];
        if r.cdr && msg.fields.is_empty() {
            // rosidl gives a type without fields one dummy uint8 on the wire.
            r.take(1)?;
            return Ok(Value::Message(Vec::new()));
        }
        let mut values = Vec::with_capacity(msg.fields.len());
        for field in &msg.fields {
            let value = self
                .decode_field(field.kind, field.array, r)
                .map_err(|e| e.within(&field.name))?;
            values.push(value);
        }
        Ok(Value::Message(values))
    }

    fn decode_field(
        &self,
        kind: Kind,
        array: ArraySpec,
        r: &mut Reader<'_>,
    ) -> Result<Value, DecodeError> {
        let count = match array {
            ArraySpec::Scalar => return self.decode_one(kind, r),
            ArraySpec::Fixed(n) => n,
            ArraySpec::Variable => r.u32()? as usize,
        };
        self.check_count(kind, count, r)?;
        match kind {
            Kind::Prim(Primitive::UInt8) => Ok(Value::Bytes(r.take(count)?.to_vec())),
            Kind::Prim(Primitive::Int8) => Ok(Value::SignedBytes(r.take(count)?.to_vec())),
            // Fixed-size numbers: one bounds check for the whole array, then a tight loop.
            Kind::Prim(p) if p.is_fixed_size() => {
                let size = p.wire_size();
                if count > 0 {
                    r.align(p.cdr_align());
                }
                let bytes = r.take(count * size)?;
                let be = r.big_endian;
                Ok(Value::Array(
                    bytes
                        .chunks_exact(size)
                        .map(|b| fixed_prim(p, b, be))
                        .collect(),
                ))
            }
            _ => {
                let mut items = Vec::with_capacity(count);
                for i in 0..count {
                    items.push(self.decode_one(kind, r).map_err(|e| e.within_index(i))?);
                }
                Ok(Value::Array(items))
            }
        }
    }

    /// Refuses an element count the remaining payload cannot hold, before allocating for it.
    fn check_count(&self, kind: Kind, count: usize, r: &Reader<'_>) -> Result<(), DecodeError> {
        let min = self.min_size(kind);
        let left = r.left();
        if min == 0 {
            if count > MAX_ZERO_SIZE_ARRAY_LEN {
                return Err(r.error(format!(
                    "array of {count} empty elements exceeds the limit of {MAX_ZERO_SIZE_ARRAY_LEN}"
                )));
            }
        } else if count > left / min {
            return Err(r.error(format!(
                "array of {count} elements needs at least {} bytes but {left} are left",
                count.saturating_mul(min)
            )));
        }
        Ok(())
    }

    fn min_size(&self, kind: Kind) -> usize {
        match kind {
            Kind::Prim(p) => p.wire_size(),
            Kind::Msg(id) => self.types[id].min_size,
        }
    }

    fn decode_one(&self, kind: Kind, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        let p = match kind {
            Kind::Prim(p) => p,
            Kind::Msg(id) => return self.decode_msg(id, r),
        };
        Ok(match p {
            Primitive::String => {
                let bytes = r.string_bytes()?;
                // ROS does not enforce UTF-8; keep what can be read rather than fail.
                Value::String(match std::str::from_utf8(bytes) {
                    Ok(text) => text.to_owned(),
                    Err(_) => String::from_utf8_lossy(bytes).into_owned(),
                })
            }
            Primitive::WString => Value::String(r.wstring()?),
            // Two 4-byte reads, so a short payload is reported where the nsec part starts.
            Primitive::Time | Primitive::Duration => {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(r.take(4)?);
                b[4..].copy_from_slice(r.take(4)?);
                fixed_prim(p, &b, r.big_endian)
            }
            p => {
                r.align(p.cdr_align());
                let bytes = r.take(p.wire_size())?;
                fixed_prim(p, bytes, r.big_endian)
            }
        })
    }

    /// Advances over one field without building its value.
    fn skip_field(
        &self,
        kind: Kind,
        array: ArraySpec,
        r: &mut Reader<'_>,
    ) -> Result<(), DecodeError> {
        let count = match array {
            ArraySpec::Scalar => return self.skip_one(kind, r),
            ArraySpec::Fixed(n) => n,
            ArraySpec::Variable => r.u32()? as usize,
        };
        self.check_count(kind, count, r)?;
        let fixed = match kind {
            Kind::Prim(p) if p.is_fixed_size() => {
                if count > 0 {
                    r.align(p.cdr_align());
                }
                Some(p.wire_size())
            }
            Kind::Prim(_) => None,
            // CDR padding inside a message depends on where it starts.
            Kind::Msg(_) if r.cdr => None,
            Kind::Msg(id) => self.types[id].fixed_size,
        };
        match fixed {
            Some(size) => {
                // check_count bounded count by the bytes left, so this cannot overflow.
                r.take(count.saturating_mul(size))?;
            }
            None => {
                for i in 0..count {
                    self.skip_one(kind, r).map_err(|e| e.within_index(i))?;
                }
            }
        }
        Ok(())
    }

    fn skip_one(&self, kind: Kind, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        match kind {
            Kind::Prim(Primitive::String) => {
                r.string_bytes()?;
            }
            Kind::Prim(Primitive::WString) => {
                r.wstring()?;
            }
            Kind::Prim(p) => {
                r.align(p.cdr_align());
                r.take(p.wire_size())?;
            }
            Kind::Msg(id) if r.cdr && self.types[id].fields.is_empty() => {
                r.take(1)?;
            }
            Kind::Msg(id) => match self.types[id].fixed_size.filter(|_| !r.cdr) {
                Some(size) => {
                    r.take(size)?;
                }
                None => {
                    for field in &self.types[id].fields {
                        self.skip_field(field.kind, field.array, r)
                            .map_err(|e| e.within(&field.name))?;
                    }
                }
            },
        }
        Ok(())
    }

    /// Walks message `id`, decoding the fields some wanted path goes through and skipping the
    /// others. `wanted` pairs an output slot with the steps left of its path.
    fn select_msg(
        &self,
        id: usize,
        r: &mut Reader<'_>,
        wanted: &[(usize, &[Step])],
        out: &mut [Option<Value>],
    ) -> Result<(), DecodeError> {
        for (pos, field) in self.types[id].fields.iter().enumerate() {
            let here: Vec<(usize, &[Step])> = wanted
                .iter()
                .filter(|(_, steps)| steps.first() == Some(&Step::Field(pos)))
                .map(|&(slot, steps)| (slot, &steps[1..]))
                .collect();
            let result = if here.is_empty() {
                self.skip_field(field.kind, field.array, r)
            } else if let (Kind::Msg(sub), ArraySpec::Scalar, true) = (
                field.kind,
                field.array,
                here.iter().all(|(_, s)| !s.is_empty()),
            ) {
                self.select_msg(sub, r, &here, out)
            } else {
                // A path ends here or indexes into an array: decode the field whole.
                self.decode_field(field.kind, field.array, r).map(|value| {
                    for &(slot, rest) in &here {
                        out[slot] = value.get_steps(rest).cloned();
                    }
                })
            };
            result.map_err(|e| e.within(&field.name))?;
        }
        Ok(())
    }
}

fn primitive_name(p: Primitive) -> &'static str {
    match p {
        Primitive::Bool => "bool",
        Primitive::Int8 => "int8",
        Primitive::UInt8 => "uint8",
        Primitive::Int16 => "int16",
        Primitive::UInt16 => "uint16",
        Primitive::Int32 => "int32",
        Primitive::UInt32 => "uint32",
        Primitive::Int64 => "int64",
        Primitive::UInt64 => "uint64",
        Primitive::Float32 => "float32",
        Primitive::Float64 => "float64",
        Primitive::String => "string",
        Primitive::WString => "wstring",
        Primitive::Time => "time",
        Primitive::Duration => "duration",
    }
}

/// Resolves type names across the sections of one definition and lays out each type once.
struct Compiler<'a> {
    sections: &'a [MessageSection],
    /// `pkg/Type` → section index. The top-level section is registered under the msgtype.
    by_name: HashMap<String, usize>,
    /// `Type` → section index, or `None` when two packages define that short name.
    by_short_name: HashMap<String, Option<usize>>,
    /// Section index → compiled type index, once compiled.
    compiled: HashMap<usize, usize>,
    /// Sections on the current compile path, to report recursive types.
    in_progress: Vec<usize>,
    types: Vec<MsgDef>,
    /// ROS 2 built-in type names.
    ros2: bool,
}

impl<'a> Compiler<'a> {
    fn new(msgtype: &str, sections: &'a [MessageSection], ros2: bool) -> Self {
        let mut by_name = HashMap::new();
        let mut by_short_name: HashMap<String, Option<usize>> = HashMap::new();
        for (index, section) in sections.iter().enumerate() {
            let name = if index == 0 {
                msgtype
            } else {
                match section.name.as_deref() {
                    Some(name) => name,
                    None => continue,
                }
            };
            // The first definition of a name wins; later duplicates are ignored.
            by_name.entry(name.to_string()).or_insert(index);
            let short = name.rsplit('/').next().unwrap_or(name).to_string();
            by_short_name
                .entry(short)
                .and_modify(|slot| {
                    if *slot != Some(index) {
                        *slot = None;
                    }
                })
                .or_insert(Some(index));
        }
        Compiler {
            sections,
            by_name,
            by_short_name,
            compiled: HashMap::new(),
            in_progress: Vec::new(),
            types: Vec::new(),
            ros2,
        }
    }

    /// Finds the section that defines `type_name` as used inside package `owner_pkg`.
    fn lookup(&self, type_name: &str, owner_pkg: &str) -> Option<usize> {
        let full = if type_name == "Header" {
            "std_msgs/Header".to_string()
        } else if type_name.contains('/') || owner_pkg.is_empty() {
            type_name.to_string()
        } else {
            format!("{owner_pkg}/{type_name}")
        };
        if let Some(&index) = self.by_name.get(&full) {
            return Some(index);
        }
        // Old bags declare the header dependency as `MSG: roslib/Header`.
        if full == "std_msgs/Header"
            && let Some(&index) = self.by_name.get("roslib/Header")
        {
            return Some(index);
        }
        // A bare name whose package guess failed: accept the one section of that short name.
        if !type_name.contains('/') {
            return self.by_short_name.get(type_name).copied().flatten();
        }
        None
    }

    /// Compiles section `section` (named `name`) and what it uses; returns its type index.
    fn compile(
        &mut self,
        name: &str,
        section: usize,
        depth: usize,
    ) -> Result<usize, DefinitionError> {
        if let Some(&id) = self.compiled.get(&section) {
            return Ok(id);
        }
        if self.in_progress.contains(&section) {
            return Err(DefinitionError::new(format!(
                "type {name} contains itself (recursive definitions cannot be decoded)"
            )));
        }
        if depth > MAX_NESTING_DEPTH {
            return Err(DefinitionError::new(format!(
                "types nest deeper than {MAX_NESTING_DEPTH} levels at {name}"
            )));
        }
        self.in_progress.push(section);
        // Reserve the index so the top-level type lands at ROOT.
        let id = self.types.len();
        self.types.push(MsgDef {
            name: name.to_string(),
            fields: Vec::new(),
            min_size: 0,
            fixed_size: Some(0),
        });
        let owner_pkg = match name.rsplit_once('/') {
            Some((pkg, _)) => pkg,
            None => "",
        };
        let sections = self.sections;
        let mut fields = Vec::with_capacity(sections[section].fields.len());
        let mut min_size = 0usize;
        let mut fixed_size = Some(0usize);
        for raw in &sections[section].fields {
            let prim = if self.ros2 {
                Primitive::from_ros2_name(&raw.type_name)
            } else {
                Primitive::from_name(&raw.type_name)
            };
            let kind = match prim {
                Some(p) => Kind::Prim(p),
                None => {
                    let Some(dep) = self.lookup(&raw.type_name, owner_pkg) else {
                        return Err(DefinitionError::new(format!(
                            "line {}: type {} of field {}.{} is not defined in the message definition",
                            raw.line, raw.type_name, name, raw.name
                        )));
                    };
                    let dep_name = if dep == 0 {
                        self.types[ROOT].name.clone()
                    } else {
                        sections[dep].name.clone().unwrap_or_default()
                    };
                    Kind::Msg(self.compile(&dep_name, dep, depth + 1)?)
                }
            };
            let (elem_min, elem_fixed) = match kind {
                Kind::Prim(p) => (p.wire_size(), p.is_fixed_size().then_some(p.wire_size())),
                Kind::Msg(sub) => (self.types[sub].min_size, self.types[sub].fixed_size),
            };
            let (field_min, field_fixed) = match raw.array {
                ArraySpec::Scalar => (elem_min, elem_fixed),
                ArraySpec::Fixed(n) => (
                    elem_min.saturating_mul(n),
                    elem_fixed.and_then(|s| s.checked_mul(n)),
                ),
                ArraySpec::Variable => (4, None),
            };
            min_size = min_size.saturating_add(field_min);
            fixed_size = fixed_size
                .zip(field_fixed)
                .and_then(|(a, b)| a.checked_add(b));
            fields.push(FieldDef {
                name: raw.name.clone(),
                kind,
                array: raw.array,
            });
        }
        if self.ros2 && fields.is_empty() {
            // The dummy uint8 of a type without fields.
            min_size = 1;
            fixed_size = None;
        }
        let def = &mut self.types[id];
        def.fields = fields;
        def.min_size = min_size;
        def.fixed_size = fixed_size;
        self.in_progress.pop();
        self.compiled.insert(section, id);
        Ok(id)
    }
}

/// Bounds-checked reader over one payload: little-endian ROS1, or CDR (aligned, either order).
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where CDR alignment counts from (just past the encapsulation header).
    origin: usize,
    cdr: bool,
    big_endian: bool,
}

/// Decodes one fixed-size primitive from exactly its wire bytes (the caller sliced them).
fn fixed_prim(p: Primitive, b: &[u8], big_endian: bool) -> Value {
    let a2 = || {
        let mut a = [b[0], b[1]];
        if big_endian {
            a.reverse();
        }
        a
    };
    let a4 = |at: usize| {
        let mut a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big_endian {
            a.reverse();
        }
        a
    };
    let a8 = || {
        let mut a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        if big_endian {
            a.reverse();
        }
        a
    };
    match p {
        Primitive::Bool => Value::Bool(b[0] != 0),
        Primitive::Int8 => Value::Int(i64::from(b[0] as i8)),
        Primitive::UInt8 => Value::UInt(u64::from(b[0])),
        Primitive::Int16 => Value::Int(i16::from_le_bytes(a2()).into()),
        Primitive::UInt16 => Value::UInt(u16::from_le_bytes(a2()).into()),
        Primitive::Int32 => Value::Int(i32::from_le_bytes(a4(0)).into()),
        Primitive::UInt32 => Value::UInt(u32::from_le_bytes(a4(0)).into()),
        Primitive::Int64 => Value::Int(i64::from_le_bytes(a8())),
        Primitive::UInt64 => Value::UInt(u64::from_le_bytes(a8())),
        Primitive::Float32 => Value::Float32(f32::from_le_bytes(a4(0))),
        Primitive::Float64 => Value::Float64(f64::from_le_bytes(a8())),
        Primitive::Time => Value::Time {
            sec: u32::from_le_bytes(a4(0)),
            nsec: u32::from_le_bytes(a4(4)),
        },
        Primitive::Duration => Value::Duration {
            sec: i32::from_le_bytes(a4(0)),
            nsec: i32::from_le_bytes(a4(4)),
        },
        // Not fixed-size: never sliced here.
        Primitive::String | Primitive::WString => Value::String(String::new()),
    }
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn error(&self, what: String) -> DecodeError {
        DecodeError {
            offset: self.pos,
            what,
            field: String::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.left() {
            return Err(self.error(format!(
                "payload ends early: {n} bytes needed, {} left",
                self.left()
            )));
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("take returned exactly N bytes"))
    }

    /// A length prefix: aligned to 4 in CDR, in the payload's byte order.
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.align(4);
        let a = self.array()?;
        Ok(if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    /// Skips CDR padding up to an `n`-byte boundary (never past the end; a later read fails
    /// there). Padding bytes are not checked: publishers leave garbage in them.
    fn align(&mut self, n: usize) {
        if self.cdr && n > 1 {
            let pad = (n - (self.pos - self.origin) % n) % n;
            self.pos = (self.pos + pad).min(self.data.len());
        }
    }

    /// A string's bytes: ROS1 `u32 len, bytes`; CDR `u32 len` counting a terminating NUL.
    fn string_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        Ok(match bytes.split_last() {
            Some((0, head)) if self.cdr => head,
            _ => bytes,
        })
    }

    /// A CDR `wstring`: a length in characters, then 4 bytes per character (Fast-CDR's
    /// `wchar_t`), no terminator. Characters that are not Unicode scalars become U+FFFD.
    fn wstring(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        if len > self.left() / 4 {
            return Err(self.error(format!(
                "wstring of {len} characters needs {} bytes but {} are left",
                len.saturating_mul(4),
                self.left()
            )));
        }
        let be = self.big_endian;
        let bytes = self.take(len * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| {
                let a = [c[0], c[1], c[2], c[3]];
                let v = if be {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                };
                char::from_u32(v).unwrap_or('\u{fffd}')
            })
            .filter(|&c| c != '\0')
            .collect())
    }

    fn finish(&self) -> Result<(), DecodeError> {
        // CDR writers pad the payload to a multiple of 4 bytes.
        if self.cdr && self.left() < 4 {
            return Ok(());
        }
        if self.left() > 0 {
            return Err(self.error(format!(
                "{} bytes left over after the last field",
                self.left()
            )));
        }
        Ok(())
    }
}
