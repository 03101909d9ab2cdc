//! Decoded message values. Field names live in the schema, not in each value, so a decoded
//! message is a plain vector in definition order.

/// One decoded value of a ROS1 message.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// int8, int16, int32, int64 and `byte` scalars.
    Int(i64),
    /// uint8, uint16, uint32, uint64 and `char` scalars.
    UInt(u64),
    Float32(f32),
    Float64(f64),
    /// ROS strings are not checked to be UTF-8; invalid sequences become U+FFFD.
    String(String),
    Time {
        sec: u32,
        nsec: u32,
    },
    Duration {
        sec: i32,
        nsec: i32,
    },
    /// Array of `uint8` or `char` (fixed or variable length), kept as raw bytes.
    Bytes(Vec<u8>),
    /// Array of `int8` or `byte`, kept as raw bytes; each byte is an `i8`.
    SignedBytes(Vec<u8>),
    /// Array of any other element type.
    Array(Vec<Value>),
    /// A message's fields in definition order; the names are in the schema.
    Message(Vec<Value>),
}

impl Value {
    /// The raw bytes of a `uint8`/`char`/`int8`/`byte` array.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) | Value::SignedBytes(b) => Some(b),
            _ => None,
        }
    }

    /// A numeric scalar or array flattened to `f64`s: ints and floats as numbers, bool as 0/1,
    /// time and duration as seconds; nested messages (`Vector3`, arrays of `Point`, ...) are
    /// flattened in definition order. `None` when a string is anywhere inside.
    /// 64-bit integers beyond 2^53 lose precision, as any conversion to `f64` does.
    pub(crate) fn to_f64_vec(&self) -> Option<Vec<f64>> {
        match self {
            Value::Bytes(b) => Some(b.iter().map(|&x| f64::from(x)).collect()),
            Value::SignedBytes(b) => Some(b.iter().map(|&x| f64::from(x as i8)).collect()),
            Value::Array(items) | Value::Message(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.to_f64() {
                        Some(x) => out.push(x),
                        // Nested messages (Vector3, Quaternion, ...) flatten in definition order.
                        None => out.extend(item.to_f64_vec()?),
                    }
                }
                Some(out)
            }
            scalar => scalar.to_f64().map(|x| vec![x]),
        }
    }

    /// A numeric scalar as `f64`, with the conversions of [`Value::to_f64_vec`].
    pub(crate) fn to_f64(&self) -> Option<f64> {
        Some(match *self {
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::Int(i) => i as f64,
            Value::UInt(u) => u as f64,
            Value::Float32(f) => f64::from(f),
            Value::Float64(f) => f,
            Value::Time { sec, nsec } => f64::from(sec) + f64::from(nsec) * 1e-9,
            Value::Duration { sec, nsec } => f64::from(sec) + f64::from(nsec) * 1e-9,
            _ => return None,
        })
    }

    /// Heap bytes owned by this value (not counting the value itself), for memory accounting.
    #[cfg(test)]
    pub(crate) fn heap_size(&self) -> usize {
        match self {
            Value::String(s) => s.capacity(),
            Value::Bytes(b) | Value::SignedBytes(b) => b.capacity(),
            Value::Array(items) | Value::Message(items) => {
                items.capacity() * std::mem::size_of::<Value>()
                    + items.iter().map(Value::heap_size).sum::<usize>()
            }
            _ => 0,
        }
    }
}
