//! A secret kept in a file that may change underneath us (a projected
//! Kubernetes service-account token, rotated by the kubelet through an
//! atomic symlink swap). The file is read once, then only when its
//! metadata (modification time, size, inode) changes; the metadata is
//! looked at most once per `recheck` interval. A failed re-read keeps the
//! last good value.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::secret::Secret;

/// Default interval between metadata checks.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Largest file accepted.
const MAX_BYTES: u64 = 64 * 1024;

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

struct State {
    value: Secret,
    stamp: Stamp,
    checked: Instant,
}

/// A secret file, cached.
pub struct FileSecret {
    path: PathBuf,
    recheck: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for FileSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSecret")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileSecret {
    /// Reads the file now (an error is a configuration error).
    pub fn load(path: &Path, recheck: Duration) -> Result<FileSecret, String> {
        let (value, stamp) = read(path)?;
        Ok(FileSecret {
            path: path.to_path_buf(),
            recheck,
            state: Mutex::new(State {
                value,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Updated by whole-field assignments only: a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current value: re-read if the file changed since last time.
    /// The lock is held across the (rare, small, bounded) read so that
    /// concurrent checks do not read the same change twice.
    pub fn current(&self) -> Secret {
        let mut state = self.lock();
        if state.checked.elapsed() < self.recheck {
            return state.value.clone();
        }
        state.checked = Instant::now();
        match stamp(&self.path) {
            Ok(now) if now == state.stamp => return state.value.clone(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "upstream credential file unreadable; keeping the last good value");
                return state.value.clone();
            }
        }
        match read(&self.path) {
            Ok((value, stamp)) => {
                tracing::info!(path = %self.path.display(), fingerprint = %value.fingerprint(), "upstream credential reloaded");
                state.value = value;
                state.stamp = stamp;
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "upstream credential file unreadable; keeping the last good value");
            }
        }
        state.value.clone()
    }
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Reads and validates the secret: trimmed, non-empty, one line of
/// visible ASCII (it becomes an HTTP header value).
fn read(path: &Path) -> Result<(Secret, Stamp), String> {
    let before = stamp(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if before.len > MAX_BYTES {
        return Err(format!("{}: larger than {MAX_BYTES} bytes", path.display()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{}: not UTF-8", path.display()))?
        .trim();
    if text.is_empty() {
        return Err(format!("{}: empty", path.display()));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: must be one token of visible ASCII characters",
            path.display()
        ));
    }
    Ok((Secret::new(text), before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-file-secret-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn reads_once_and_reloads_on_change() {
        let dir = temp_dir("reload");
        let path = dir.join("token");
        std::fs::write(&path, "first-token\n").expect("write");
        let secret = FileSecret::load(&path, Duration::ZERO).expect("loads");
        assert_eq!(secret.current().expose(), "first-token");
        // A different size: noticed even within the same mtime tick.
        std::fs::write(&path, "second-token-longer").expect("write");
        assert_eq!(secret.current().expose(), "second-token-longer");
        // Atomic replacement (new inode), as the kubelet does it.
        let next = dir.join("token.next");
        std::fs::write(&next, "third-token-xyzabcdefg").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        assert_eq!(secret.current().expose(), "third-token-xyzabcdefg");
        // Broken file: the last good value stays.
        std::fs::write(&path, "").expect("write");
        assert_eq!(secret.current().expose(), "third-token-xyzabcdefg");
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(secret.current().expose(), "third-token-xyzabcdefg");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn within_the_recheck_interval_the_file_is_not_looked_at() {
        let dir = temp_dir("recheck");
        let path = dir.join("token");
        std::fs::write(&path, "cached").expect("write");
        let secret = FileSecret::load(&path, Duration::from_secs(3600)).expect("loads");
        std::fs::write(&path, "changed-but-not-seen").expect("write");
        assert_eq!(secret.current().expose(), "cached");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_files_are_refused_at_load() {
        let dir = temp_dir("bad");
        assert!(FileSecret::load(&dir.join("missing"), RECHECK).is_err());
        for (name, content) in [
            ("empty", "  \n"),
            ("spaces", "s3cr3t w0rds"),
            ("newline", "s3cr3t\nw0rds"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("write");
            let err = FileSecret::load(&path, RECHECK).expect_err(name);
            // The message names the file, never its content.
            assert!(err.contains(name) && !err.contains("s3cr3t"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
