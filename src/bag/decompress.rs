//! Bounded decompression of one chunk's stored bytes: the buffer grows with the output the
//! stream really produces and never past a limit, so a size field that lies is never
//! allocated. Used by the chunk reader (limit = the declared size) and by recovery (limit =
//! what a scan accepts).

use std::io::Read;

use super::index::ChunkCompression;

/// Compression ratio up to which a chunk's declared size is believed when sizing the first
/// buffer (16x the compressed length plus [`TRUSTED_SLACK`]); beyond it the buffer starts
/// there and grows only as the stream really produces output.
const TRUSTED_RATIO: u64 = 16;

/// Slack added to [`TRUSTED_RATIO`] times the compressed length: 64 KiB.
const TRUSTED_SLACK: u64 = 64 << 10;

/// Decompresses `raw` as far as the stream goes, to at most `limit` bytes. The buffer starts at
/// the smaller of `limit` and [`TRUSTED_RATIO`] x `raw.len()` + [`TRUSTED_SLACK`] and doubles
/// only when the stream fills it. Returns the output, whether the stream ended, and the damage
/// that stopped it, if any.
pub(crate) fn decompress_bounded(
    raw: &[u8],
    compression: ChunkCompression,
    limit: usize,
) -> (Vec<u8>, bool, Option<String>) {
    let believable = (raw.len() as u64)
        .saturating_mul(TRUSTED_RATIO)
        .saturating_add(TRUSTED_SLACK);
    let initial = (limit as u64).min(believable) as usize;
    let mut out = Vec::with_capacity(initial);
    match compression {
        ChunkCompression::None => {
            let n = raw.len().min(limit);
            out.extend_from_slice(&raw[..n]);
            (out, true, None)
        }
        ChunkCompression::Bz2 => {
            let mut dec = bzip2::Decompress::new(false);
            loop {
                // At the limit the call still runs, with no room: it can only reach the end.
                if out.len() == out.capacity() && out.len() < limit {
                    let grow = out
                        .capacity()
                        .max(TRUSTED_SLACK as usize)
                        .min(limit - out.len());
                    out.reserve_exact(grow);
                }
                let (in_before, out_before) = (dec.total_in(), out.len());
                let consumed = (in_before as usize).min(raw.len());
                match dec.decompress_vec(&raw[consumed..], &mut out) {
                    Ok(bzip2::Status::StreamEnd) => return (out, true, None),
                    Ok(_) => {
                        if dec.total_in() == in_before && out.len() == out_before {
                            // Input exhausted mid-stream (cut), or output pending past the limit.
                            return (out, false, None);
                        }
                    }
                    Err(e) => return (out, false, Some(format!("bz2 stream is damaged: {e}"))),
                }
            }
        }
        ChunkCompression::Zstd => (
            out,
            false,
            Some("zstd chunks do not occur in ROS1 bags".into()),
        ),
        ChunkCompression::Lz4 => {
            let mut dec = match lz4::Decoder::new(raw) {
                Ok(d) => d,
                Err(e) => return (out, false, Some(format!("lz4 stream is damaged: {e}"))),
            };
            // One byte past the limit lets the decoder reach the end of a frame of exactly
            // `limit` bytes (and tells a longer stream apart).
            let read = (&mut dec).take(limit as u64 + 1).read_to_end(&mut out);
            let (_, ended) = dec.finish();
            let longer = out.len() > limit;
            out.truncate(limit);
            match read {
                Ok(_) => (out, ended.is_ok() && !longer, None),
                Err(e) => (out, false, Some(format!("lz4 stream is damaged: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::writer::Compression;

    #[test]
    fn bounded_decompression_never_exceeds_its_limit() {
        let data = vec![7u8; 200_000];
        for (c, kind) in [
            (Compression::Bz2, ChunkCompression::Bz2),
            (Compression::Lz4, ChunkCompression::Lz4),
        ] {
            let z = c.compress(&data).expect("compress");
            let (out, ended, damage) = decompress_bounded(&z, kind, 1000);
            assert!(
                out.len() <= 1000 && out.capacity() <= 2000,
                "{c:?}: {}",
                out.capacity()
            );
            assert!(!ended || out.len() < 1000);
            assert!(damage.is_none());
            let (out, ended, damage) = decompress_bounded(&z, kind, data.len());
            assert_eq!(out, data);
            assert!(ended && damage.is_none(), "{c:?}");
            // cut stream: no error, no panic, a prefix
            let (out, ended, _) = decompress_bounded(&z[..z.len() / 2], kind, data.len());
            assert!(!ended);
            assert!(data.starts_with(&out));
        }
    }
}
