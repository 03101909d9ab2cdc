//! The JSON form of decoded messages used by the golden files in `shared/testdata`
//! (see its README): exact integers, float32 widened exactly, non-finite floats as strings,
//! long 1-byte arrays as a length and SHA-256.

use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use super::schema::{Kind, MessageSchema, ROOT};
use super::value::Value;

/// 1-byte element arrays longer than this many elements are written as `{"len", "sha256"}`.
const GOLDEN_HASH_THRESHOLD: usize = 64;

/// Writes `value`, decoded with `schema`, in the golden-file convention. Object keys follow
/// serde_json's map order; compare by `serde_json::Value` equality. serde_json's default float
/// parser is off by one ulp on some golden numbers, so parse the goldens with its
/// `float_roundtrip` feature (or compare float bits) for an exact comparison.
pub fn to_golden_json(schema: &MessageSchema, value: &Value) -> Json {
    message_json(schema, ROOT, value)
}

fn message_json(schema: &MessageSchema, id: usize, value: &Value) -> Json {
    let Value::Message(values) = value else {
        // Only a value decoded with another schema gets here; show it rather than hide it.
        return value_json(schema, None, value);
    };
    let mut map = Map::new();
    for (field, v) in schema.types[id].fields.iter().zip(values) {
        map.insert(field.name.clone(), value_json(schema, Some(field.kind), v));
    }
    Json::Object(map)
}

/// `kind` is the declared element type, needed to name the fields of nested messages.
fn value_json(schema: &MessageSchema, kind: Option<Kind>, value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float32(f) => float_json(f64::from(*f)),
        Value::Float64(f) => float_json(*f),
        Value::String(s) => Json::String(s.clone()),
        Value::Time { sec, nsec } => json!({"sec": sec, "nsec": nsec}),
        Value::Duration { sec, nsec } => json!({"sec": sec, "nsec": nsec}),
        Value::Bytes(b) if b.len() <= GOLDEN_HASH_THRESHOLD => json!(b),
        Value::SignedBytes(b) if b.len() <= GOLDEN_HASH_THRESHOLD => {
            Json::Array(b.iter().map(|&x| json!(x as i8)).collect())
        }
        Value::Bytes(b) | Value::SignedBytes(b) => {
            let digest = Sha256::digest(b);
            let hex: String = digest.iter().map(|x| format!("{x:02x}")).collect();
            json!({"len": b.len(), "sha256": hex})
        }
        Value::Array(items) => {
            Json::Array(items.iter().map(|v| value_json(schema, kind, v)).collect())
        }
        Value::Message(_) => match kind {
            Some(Kind::Msg(id)) => message_json(schema, id, value),
            _ => Json::Null,
        },
    }
}

fn float_json(f: f64) -> Json {
    if f.is_nan() {
        Json::String("NaN".into())
    } else if f.is_infinite() {
        Json::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        json!(f)
    }
}
