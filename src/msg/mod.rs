//! Dynamic ROS1 message decoding from a connection's `message_definition` text, with no ROS
//! install: `definition` splits the text, `schema` compiles it once per connection into a
//! decode plan and runs it on payloads, `value` holds the result, `golden` prints it in the
//! JSON form of the test corpus and `image` takes image messages out of it.

mod definition;
mod golden;
pub(crate) mod image;
mod schema;
mod value;

#[cfg(test)]
mod tests;

pub(crate) use definition::normalize_type_name;
pub use golden::to_golden_json;
pub(crate) use image::ImagePayload;
pub use schema::{FieldPath, MessageSchema};
pub(crate) use value::Value;

/// A message definition that cannot be compiled, or a field path it does not contain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct DefinitionError {
    pub(crate) what: String,
}

impl DefinitionError {
    fn new(what: String) -> Self {
        DefinitionError { what }
    }
}

/// A payload that does not match its definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at payload byte {offset}")]
pub struct DecodeError {
    /// Payload byte at which decoding stopped.
    pub(crate) offset: usize,
    /// What went wrong, naming the field.
    pub(crate) what: String,
    /// Dotted path of the field at fault (`pose.position.x`, `points[3].x`); empty when the
    /// fault is not inside a field (bytes left over).
    field: String,
}

impl DecodeError {
    /// Prefixes the field path with the enclosing field `name` while the error unwinds.
    fn within(mut self, name: &str) -> Self {
        self.field = if self.field.is_empty() {
            name.to_string()
        } else if self.field.starts_with('[') {
            format!("{name}{}", self.field)
        } else {
            format!("{name}.{}", self.field)
        };
        self
    }

    /// Prefixes the field path with an array index while the error unwinds.
    fn within_index(mut self, index: usize) -> Self {
        self.field = if self.field.is_empty() || self.field.starts_with('[') {
            format!("[{index}]{}", self.field)
        } else {
            format!("[{index}].{}", self.field)
        };
        self
    }

    /// Names the field in `what` once the path is complete, so `what` reads on its own.
    fn finish(mut self) -> Self {
        if !self.field.is_empty() {
            self.what = format!("field {}: {}", self.field, self.what);
        }
        self
    }
}
