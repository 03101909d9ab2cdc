//! ROS1 bag format 2.0 records, parsed from a byte slice with every declared length checked
//! against the bytes that are really there before anything is allocated or sliced.
//!
//! A record is `u32 header_len, header, u32 data_len, data`; a header is a list of
//! `u32 field_len, name=value` fields. Numbers are little-endian; times are `u32 sec, u32 nsec`.

/// Record op codes (the `op` header field).
pub(crate) mod op {
    pub(crate) const MESSAGE_DATA: u8 = 0x02;
    pub(crate) const BAG_HEADER: u8 = 0x03;
    pub(crate) const INDEX_DATA: u8 = 0x04;
    pub(crate) const CHUNK: u8 = 0x05;
    pub(crate) const CHUNK_INFO: u8 = 0x06;
    pub(crate) const CONNECTION: u8 = 0x07;
}

/// The magic line every bag starts with.
pub(crate) const MAGIC: &[u8] = b"#ROSBAG V2.0\n";

/// Why a record could not be parsed; the caller adds the file and absolute offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Offset of the problem relative to the slice the record was parsed from.
    pub(crate) offset: usize,
    pub(crate) what: String,
}

impl RecordError {
    fn new(offset: usize, what: impl Into<String>) -> Self {
        RecordError {
            offset,
            what: what.into(),
        }
    }
}

/// One record: its header fields and its data, both borrowed from the source bytes.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Offset of the record's first byte within the parsed slice.
    pub(crate) offset: usize,
    pub header: &'a [u8],
    pub data: &'a [u8],
    /// Offset just past the record.
    pub end: usize,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a length-prefixed block at `at`, checking the length against what is left.
fn read_block<'a>(
    bytes: &'a [u8],
    at: usize,
    name: &str,
) -> Result<(&'a [u8], usize), RecordError> {
    let len = read_u32(bytes, at).ok_or_else(|| {
        RecordError::new(
            at,
            format!(
                "{name} length runs past the end ({} bytes left)",
                bytes.len().saturating_sub(at)
            ),
        )
    })? as usize;
    let start = at + 4;
    let left = bytes.len() - start;
    if len > left {
        return Err(RecordError::new(
            at,
            format!("{name} declares {len} bytes but only {left} are left"),
        ));
    }
    Ok((&bytes[start..start + len], start + len))
}

impl<'a> Record<'a> {
    /// Parses the record starting at `at`.
    pub fn parse(bytes: &'a [u8], at: usize) -> Result<Record<'a>, RecordError> {
        let (header, data_at) = read_block(bytes, at, "record header")?;
        let (data, end) = read_block(bytes, data_at, "record data")?;
        Ok(Record {
            offset: at,
            header,
            data,
            end,
        })
    }

    /// Parses only the header and the data length, without requiring the data to be present
    /// (used for chunks, whose data may be cut off or is read separately).
    pub(crate) fn parse_header(
        bytes: &'a [u8],
        at: usize,
    ) -> Result<(Fields<'a>, usize, u32), RecordError> {
        let (header, data_at) = read_block(bytes, at, "record header")?;
        let data_len = read_u32(bytes, data_at)
            .ok_or_else(|| RecordError::new(data_at, "record data length runs past the end"))?;
        Ok((Fields::new(header, at + 4), data_at + 4, data_len))
    }

    /// The header fields.
    pub fn fields(&self) -> Fields<'a> {
        Fields::new(self.header, self.offset + 4)
    }
}

/// The `name=value` fields of a record header.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes` in the parsed slice, for error messages.
    base: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Fields { bytes, base }
    }

    /// Iterates over `(name, value)` pairs; a malformed field ends the iteration with an error.
    fn iter(&self) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), RecordError>> + 'a {
        let bytes = self.bytes;
        let base = self.base;
        let mut at = 0usize;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || at >= bytes.len() {
                return None;
            }
            match read_block(bytes, at, "header field") {
                Ok((field, next)) => {
                    at = next;
                    match field.iter().position(|&b| b == b'=') {
                        Some(eq) => Some(Ok((&field[..eq], &field[eq + 1..]))),
                        None => {
                            failed = true;
                            Some(Err(RecordError::new(base + at, "header field without '='")))
                        }
                    }
                }
                Err(mut e) => {
                    failed = true;
                    e.offset += base;
                    Some(Err(e))
                }
            }
        })
    }

    /// The value of the field `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Result<Option<&'a [u8]>, RecordError> {
        for field in self.iter() {
            let (n, v) = field?;
            if n == name.as_bytes() {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    fn require(&self, name: &str) -> Result<&'a [u8], RecordError> {
        self.get(name)?.ok_or_else(|| {
            RecordError::new(self.base, format!("record header lacks the '{name}' field"))
        })
    }

    /// The record's op code.
    pub fn op(&self) -> Result<u8, RecordError> {
        match self.require("op")? {
            [op] => Ok(*op),
            v => Err(RecordError::new(
                self.base,
                format!("'op' field has {} bytes, expected 1", v.len()),
            )),
        }
    }

    pub(crate) fn u32(&self, name: &str) -> Result<u32, RecordError> {
        let v = self.require(name)?;
        let b: [u8; 4] = v.try_into().map_err(|_| {
            RecordError::new(
                self.base,
                format!("'{name}' field has {} bytes, expected 4", v.len()),
            )
        })?;
        Ok(u32::from_le_bytes(b))
    }

    pub(crate) fn u64(&self, name: &str) -> Result<u64, RecordError> {
        let v = self.require(name)?;
        let b: [u8; 8] = v.try_into().map_err(|_| {
            RecordError::new(
                self.base,
                format!("'{name}' field has {} bytes, expected 8", v.len()),
            )
        })?;
        Ok(u64::from_le_bytes(b))
    }

    /// A ROS time field as nanoseconds.
    pub(crate) fn time(&self, name: &str) -> Result<u64, RecordError> {
        let v = self.require(name)?;
        time_ns(v).ok_or_else(|| {
            RecordError::new(
                self.base,
                format!("'{name}' field has {} bytes, expected 8", v.len()),
            )
        })
    }

    pub(crate) fn string(&self, name: &str) -> Result<String, RecordError> {
        Ok(String::from_utf8_lossy(self.require(name)?).into_owned())
    }
}

/// Converts 8 bytes of ROS time (`u32 sec, u32 nsec`) to nanoseconds.
fn time_ns(v: &[u8]) -> Option<u64> {
    if v.len() != 8 {
        return None;
    }
    let sec = read_u32(v, 0)? as u64;
    let nsec = read_u32(v, 4)? as u64;
    Some(sec * 1_000_000_000 + nsec)
}

/// Formats nanoseconds as ROS time `sec.nsec`.
pub(crate) fn format_time(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &[u8]) -> Vec<u8> {
        let mut f = ((name.len() + 1 + value.len()) as u32)
            .to_le_bytes()
            .to_vec();
        f.extend_from_slice(name.as_bytes());
        f.push(b'=');
        f.extend_from_slice(value);
        f
    }

    fn record(header: &[u8], data: &[u8]) -> Vec<u8> {
        let mut r = (header.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(header);
        r.extend_from_slice(&(data.len() as u32).to_le_bytes());
        r.extend_from_slice(data);
        r
    }

    #[test]
    fn parses_fields_and_data() {
        let mut h = field("op", &[op::MESSAGE_DATA]);
        h.extend(field("conn", &7u32.to_le_bytes()));
        let mut t = 5u32.to_le_bytes().to_vec();
        t.extend(9u32.to_le_bytes());
        h.extend(field("time", &t));
        let bytes = record(&h, b"payload");
        let r = Record::parse(&bytes, 0).expect("valid record");
        assert_eq!(r.data, b"payload");
        assert_eq!(r.end, bytes.len());
        let f = r.fields();
        assert_eq!(f.op().unwrap(), op::MESSAGE_DATA);
        assert_eq!(f.u32("conn").unwrap(), 7);
        assert_eq!(f.time("time").unwrap(), 5_000_000_009);
        assert!(f.u32("missing").is_err());
    }

    #[test]
    fn lying_lengths_are_errors_not_panics() {
        let h = field("op", &[op::CHUNK]);
        let mut bytes = record(&h, b"abc");
        // data length claims 4 GB
        let dl = 4 + h.len();
        bytes[dl..dl + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = Record::parse(&bytes, 0).unwrap_err();
        assert!(e.what.contains("declares 4294967295 bytes"), "{e:?}");
        // header length past the end
        let e = Record::parse(&[200, 0, 0, 0, 1], 0).unwrap_err();
        assert_eq!(e.offset, 0);
        // truncated length prefix
        assert!(Record::parse(&[1, 0], 0).is_err());
        // field length lies inside the header
        let mut bad = field("op", &[2]);
        bad[0] = 99;
        let bytes = record(&bad, b"");
        let r = Record::parse(&bytes, 0).unwrap();
        assert!(r.fields().op().is_err());
        // field without '='
        let bytes = record(&[3, 0, 0, 0, b'a', b'b', b'c'], b"");
        assert!(Record::parse(&bytes, 0).unwrap().fields().op().is_err());
    }
}
