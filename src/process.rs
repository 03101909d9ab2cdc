//! Other processes as this one sees them: whether a pid recorded in a lock file or a staging
//! directory still runs (a dead owner's leftovers may be taken over).

use std::fs;
use std::path::Path;

/// Whether process `pid` is running (Linux: `/proc/<pid>/stat` exists and is not a zombie).
/// Without `/proc` every process is assumed alive, so nothing is ever taken from a live one.
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: `pid (comm) S ...`.
        Ok(stat) => !stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state == 'Z' || state == 'X'),
        Err(_) => false,
    }
}
