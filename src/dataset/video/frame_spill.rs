//! A camera's compressed frames of one episode, on disk while no encoder slot is free.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::dataset::ImageFormat;
use crate::error::{Error, Result};

/// A camera's compressed frames of one episode, on disk until an encoder is free: records of
/// `u32` length (LE), one format byte (0 JPEG, 1 PNG) and the bytes.
pub(super) struct Spill {
    pub(super) path: PathBuf,
    pub(super) out: std::io::BufWriter<File>,
    pub(super) frames: u64,
}

/// Buffer of a spill file's writer and reader: 64 KiB.
pub(super) const SPILL_BUFFER_BYTES: usize = 64 << 10;

impl Spill {
    pub(super) fn create(path: PathBuf) -> Result<Spill> {
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Spill {
            out: std::io::BufWriter::with_capacity(SPILL_BUFFER_BYTES, f),
            path,
            frames: 0,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8], format: ImageFormat) -> Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            Error::Config(format!(
                "a video frame of {} bytes is too large to spill",
                bytes.len()
            ))
        })?;
        let tag = match format {
            ImageFormat::Jpeg => 0u8,
            ImageFormat::Png => 1u8,
        };
        self.out
            .write_all(&len.to_le_bytes())
            .and_then(|_| self.out.write_all(&[tag]))
            .and_then(|_| self.out.write_all(bytes))
            .map_err(|e| Error::io(&self.path, e))?;
        self.frames += 1;
        Ok(())
    }
}

/// Reads a spill file back frame by frame.
pub(super) struct SpillReader {
    pub(super) path: PathBuf,
    pub(super) input: std::io::BufReader<File>,
}

impl SpillReader {
    pub(super) fn open(path: &Path) -> Result<SpillReader> {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(SpillReader {
            path: path.to_path_buf(),
            input: std::io::BufReader::with_capacity(SPILL_BUFFER_BYTES, f),
        })
    }

    pub(super) fn next(&mut self) -> Result<Option<(bytes::Bytes, ImageFormat)>> {
        let mut head = [0u8; 5];
        match self.input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let format = if head[4] == 1 {
            ImageFormat::Png
        } else {
            ImageFormat::Jpeg
        };
        let mut buf = vec![0u8; len];
        self.input
            .read_exact(&mut buf)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(Some((bytes::Bytes::from(buf), format)))
    }
}
