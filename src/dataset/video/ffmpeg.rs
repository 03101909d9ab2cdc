//! One ffmpeg child: the encoder process of one camera's episode, its feeder thread (frames
//! back in order into the rgb24 pipe), the tail of its stderr for error messages, and ffprobe's
//! frame count.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::codec::{INSTALL_HINT, STDERR_TAIL_BYTES};
use super::decode::Decoded;

/// The first failure of an encoder, shared by its feeder and the writer.
pub(super) type Failure = Arc<Mutex<Option<String>>>;

pub(super) fn fail(f: &Failure, what: String) {
    let mut g = f.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(what);
    }
}

pub(super) fn failure(f: &Failure) -> Option<String> {
    f.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One running ffmpeg, encoding one episode of one camera into a segment.
pub(super) struct Encoder {
    pub(super) child: Child,
    /// Counted in the process tree's memory until the child is waited for (dropped after it).
    pub(super) _tree: crate::memory::tree::ChildGuard,
    pub(super) tx: Option<Sender<Decoded>>,
    pub(super) feeder: Option<JoinHandle<u64>>,
    pub(super) stderr: Option<JoinHandle<String>>,
    pub(super) segment: PathBuf,
    pub(super) pushed: u64,
    pub(super) failure: Failure,
}

/// Frames in a video file, as ffprobe counts its packets (one per frame: no B-frames).
pub(crate) fn count_frames(
    ffprobe: &Path,
    video: &Path,
    label: &str,
) -> std::result::Result<u64, String> {
    let child = Command::new(ffprobe)
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(video)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {} ({e}); {INSTALL_HINT}", ffprobe.display()))?;
    let _tree = crate::memory::tree::register(child.id(), format!("ffprobe {label}"));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {} failed ({}): {}",
            video.display(),
            out.status,
            tail_of(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_end_matches(',')
        .parse::<u64>()
        .map_err(|_| {
            format!(
                "ffprobe gave no frame count for {}: {text:?}",
                video.display()
            )
        })
}

pub(super) fn kill_encoder(mut enc: Encoder) {
    let _ = enc.child.kill();
    drop(enc.tx.take());
    if let Some(h) = enc.feeder.take() {
        let _ = h.join();
    }
    let _ = enc.child.wait();
    if let Some(h) = enc.stderr.take() {
        let _ = h.join();
    }
    let _ = fs::remove_file(&enc.segment);
}

/// Writes decoded frames into ffmpeg's stdin in frame order; after the first failure it only
/// drains (returning the permits). Returns the frames written.
pub(super) fn feed(mut stdin: ChildStdin, rx: Receiver<Decoded>, failure: Failure) -> u64 {
    let mut held: BTreeMap<u64, Decoded> = BTreeMap::new();
    let (mut next, mut written, mut broken) = (0u64, 0u64, false);
    for d in rx {
        held.insert(d.seq, d);
        while let Some(d) = held.remove(&next) {
            next += 1;
            if broken {
                continue;
            }
            match &d.rgb {
                Ok(rgb) => match stdin.write_all(rgb) {
                    Ok(()) => written += 1,
                    Err(e) => {
                        fail(
                            &failure,
                            format!("ffmpeg stopped reading at frame {} ({e})", d.seq),
                        );
                        broken = true;
                    }
                },
                Err(what) => {
                    fail(&failure, what.clone());
                    broken = true;
                }
            }
        }
    }
    drop(stdin);
    written
}

/// Reads a child's stderr to the end, keeping the last [`STDERR_TAIL_BYTES`].
pub(super) fn stderr_tail(mut r: impl Read) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    tail_of(&tail)
}

pub(super) fn tail_of(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}
