//! `OUT.lock`: one run at a time per output dataset. The lock file sits next to `OUT` and holds
//! the owner's pid; it is created atomically (a hard link of a fully written temporary file, so
//! it is never seen empty), removed when the run ends, and taken over when its pid is no longer
//! running (a killed run).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::process::pid_alive;

/// Held while a run writes `OUT`; dropping it removes the lock file.
#[derive(Debug)]
pub(crate) struct OutputLock {
    path: PathBuf,
}

/// `OUT.lock`, next to `OUT`.
fn lock_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    out.with_file_name(name)
}

impl OutputLock {
    /// Takes the lock of `out`, or fails naming the running process that holds it.
    pub(crate) fn acquire(out: &Path) -> Result<OutputLock> {
        let path = lock_path(out);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let pid = std::process::id();
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".{pid}.tmp"));
        let tmp = path.with_file_name(tmp_name);
        fs::write(&tmp, format!("{pid}\n")).map_err(|e| Error::io(&tmp, e))?;
        let result = (|| {
            for _ in 0..3 {
                match fs::hard_link(&tmp, &path) {
                    Ok(()) => return Ok(OutputLock { path: path.clone() }),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = fs::read_to_string(&path).unwrap_or_default();
                        match text.trim().parse::<u32>() {
                            Ok(owner) if pid_alive(owner) => {
                                return Err(Error::Dataset {
                                    path: out.to_path_buf(),
                                    what: format!(
                                        "another conversion (pid {owner}) is writing it (lock {}); \
                                         wait for it to finish",
                                        path.display()
                                    ),
                                });
                            }
                            // A dead owner (or a file we cannot read): stale, take it over.
                            _ => match fs::remove_file(&path) {
                                Ok(()) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                                Err(e) => return Err(Error::io(&path, e)),
                            },
                        }
                    }
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
            Err(Error::Dataset {
                path: out.to_path_buf(),
                what: format!("could not take the lock {}", path.display()),
            })
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Path of the lock file.
    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_refused_stale_lock_taken_over() {
        let dir = std::env::temp_dir().join(format!("b2d-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("ds");
        let l = OutputLock::acquire(&out).unwrap();
        assert_eq!(l.path(), dir.join("ds.lock"));
        let e = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(e.contains("another conversion"), "{e}");
        drop(l);
        assert!(!dir.join("ds.lock").exists());
        // pid 0x7ffffff0 is never a running process
        std::fs::write(dir.join("ds.lock"), "2147483632\n").unwrap();
        let l = OutputLock::acquire(&out).unwrap();
        drop(l);
        std::fs::remove_dir_all(&dir).ok();
    }
}
