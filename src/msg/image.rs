//! Image messages as the decoder hands them on: the fields of a `sensor_msgs/CompressedImage`
//! or `sensor_msgs/Image` taken out of their decoded message. The plan asks the decoder for
//! exactly these fields, in this order ([`COMPRESSED_IMAGE_FIELDS`], [`RAW_IMAGE_FIELDS`]); the
//! constructors below read them by the same names, so the order lives in one place. The
//! aligner carries a payload untouched; `convert::image` turns it into a dataset value.

use super::Value;

/// An image as it came out of the recording.
#[derive(Debug)]
pub(crate) struct ImagePayload {
    /// Encoded image (JPEG/PNG of a CompressedImage) or raw pixels (sensor_msgs/Image).
    pub(crate) bytes: Vec<u8>,
    /// CompressedImage `format`, or Image `encoding` for raw pixels.
    pub(crate) format: String,
    /// For raw images: width, height, step; zero for compressed ones.
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) step: u32,
    pub(crate) big_endian: bool,
    pub(crate) raw: bool,
}

/// Fields of a CompressedImage the decoder extracts, in this order.
pub(crate) const COMPRESSED_IMAGE_FIELDS: [&str; 2] = ["format", "data"];
/// Fields of a raw Image the decoder extracts, in this order.
pub(crate) const RAW_IMAGE_FIELDS: [&str; 6] = [
    "height",
    "width",
    "encoding",
    "is_bigendian",
    "step",
    "data",
];

/// Position of `name` in a field list (the lists above are tiny).
fn at(list: &[&str], name: &str) -> usize {
    list.iter().position(|f| *f == name).unwrap_or(usize::MAX)
}

/// Takes the value out of `fields[i]` (the message is not used again), `None` past the end.
fn take(fields: &mut [Value], i: usize) -> Option<Value> {
    fields
        .get_mut(i)
        .map(|v| std::mem::replace(v, Value::Bool(false)))
}

impl ImagePayload {
    /// A CompressedImage from its fields in [`COMPRESSED_IMAGE_FIELDS`] order.
    pub(crate) fn from_compressed(fields: &mut [Value]) -> Result<ImagePayload, String> {
        let list = &COMPRESSED_IMAGE_FIELDS;
        let format = match take(fields, at(list, "format")) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let Some(Value::Bytes(bytes)) = take(fields, at(list, "data")) else {
            return Err("CompressedImage data is not a byte array".into());
        };
        Ok(ImagePayload {
            bytes,
            format,
            width: 0,
            height: 0,
            step: 0,
            big_endian: false,
            raw: false,
        })
    }

    /// A raw Image from its fields in [`RAW_IMAGE_FIELDS`] order.
    pub(crate) fn from_raw(fields: &mut [Value]) -> Result<ImagePayload, String> {
        let list = &RAW_IMAGE_FIELDS;
        let num = |fields: &[Value], name: &str| {
            fields
                .get(at(list, name))
                .and_then(Value::to_f64)
                .unwrap_or(0.0) as u32
        };
        let (height, width) = (num(fields, "height"), num(fields, "width"));
        let (big_endian, step) = (num(fields, "is_bigendian") != 0, num(fields, "step"));
        let encoding = match take(fields, at(list, "encoding")) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let Some(Value::Bytes(bytes)) = take(fields, at(list, "data")) else {
            return Err("Image data is not a byte array".into());
        };
        Ok(ImagePayload {
            bytes,
            format: encoding,
            width,
            height,
            step,
            big_endian,
            raw: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_their_fields_by_name() {
        let mut raw = vec![
            Value::UInt(2),
            Value::UInt(3),
            Value::String("mono8".into()),
            Value::UInt(1),
            Value::UInt(3),
            Value::Bytes(vec![7; 6]),
        ];
        let p = ImagePayload::from_raw(&mut raw).unwrap();
        assert_eq!(
            (p.height, p.width, p.step, p.big_endian, p.raw),
            (2, 3, 3, true, true)
        );
        assert_eq!((p.format.as_str(), p.bytes.len()), ("mono8", 6));
        let mut jpeg = vec![Value::String("jpeg".into()), Value::Bytes(vec![0xff, 0xd8])];
        let p = ImagePayload::from_compressed(&mut jpeg).unwrap();
        assert_eq!(
            (p.format.as_str(), p.bytes.as_slice(), p.raw),
            ("jpeg", &[0xff, 0xd8][..], false)
        );
        let mut short = vec![Value::String("jpeg".into())];
        assert!(ImagePayload::from_compressed(&mut short).is_err());
    }
}
