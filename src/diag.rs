//! Diagnostics (progress, warnings, summaries) to stderr: each line prefixed with a UTC
//! timestamp when stderr is not a terminal (cron mail, job logs), and copied to `--log-file`
//! (always timestamped). stdout stays for data.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};

struct Sink {
    /// Write to stderr at all (off with `--quiet`/`--json`; the log file still gets it all).
    stderr: bool,
    timestamps: bool,
    file: Option<File>,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Sets up diagnostics: whether they go to `stderr`, `timestamps` there (`None`: when stderr is
/// not a terminal) and an optional log file (appended to).
pub(crate) fn init(stderr: bool, timestamps: Option<bool>, log_file: Option<&Path>) -> Result<()> {
    let file = match log_file {
        Some(p) => Some(
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::io(p, e))?,
        ),
        None => None,
    };
    let timestamps = timestamps.unwrap_or_else(|| !std::io::stderr().is_terminal());
    if let Ok(mut s) = SINK.lock() {
        *s = Some(Sink {
            stderr,
            timestamps,
            file,
        });
    }
    Ok(())
}

fn now() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    crate::timefmt::utc(ns)
}

/// Writes `text` (one or more lines) as diagnostics.
pub(crate) fn emit(text: &str) {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let guard = SINK.lock();
    let mut guard = match guard {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let (to_stderr, timestamps, file) = match guard.as_mut() {
        Some(s) => (s.stderr, s.timestamps, s.file.as_mut()),
        None => (true, false, None),
    };
    let stamp = if timestamps || file.is_some() {
        now()
    } else {
        String::new()
    };
    let mut err = std::io::stderr().lock();
    let mut f = file;
    for line in text.split('\n') {
        // A closed stderr is not worth failing a conversion for.
        let _ = if !to_stderr {
            Ok(())
        } else if timestamps {
            writeln!(err, "{stamp}  {line}")
        } else {
            writeln!(err, "{line}")
        };
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "{stamp}  {line}");
        }
    }
    if let Some(f) = f {
        let _ = f.flush();
    }
}

/// Writes `text` to the log file only (for what is printed on stderr elsewhere).
pub(crate) fn emit_file_only(text: &str) {
    let mut guard = match SINK.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(f) = guard.as_mut().and_then(|s| s.file.as_mut()) {
        let stamp = now();
        for line in text.trim_end().split('\n') {
            let _ = writeln!(f, "{stamp}  {line}");
        }
        let _ = f.flush();
    }
}

/// `diag!("...", args)`: one diagnostic message (see [`emit`]). Crate-internal: lib.rs
/// re-exports it at the crate root, so callers write `crate::diag!` or `use crate::diag;`.
macro_rules! diag {
    ($($t:tt)*) => { $crate::diag::emit(&format!($($t)*)) };
}
pub(crate) use diag;

/// `warning: {msg}` as a diagnostic (silenced on stderr with `--quiet`/`--json`; the run report
/// keeps warnings that matter, e.g. damaged data).
pub(crate) fn warn(msg: &str) {
    emit(&format!("warning: {msg}"));
}
