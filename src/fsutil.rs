//! File helpers shared by the checkpoint store and the CNI installer.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A failed file operation: what was being done, on which path, and the cause.
#[derive(Debug)]
pub struct FsError {
    /// What was being done, e.g. "fsync".
    pub op: &'static str,
    /// On which path.
    pub path: PathBuf,
    /// Cause.
    pub source: io::Error,
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file: a temporary file
/// in the same directory (created with `mode`, less the umask) is written and fsynced, renamed over
/// `path`, and the directory is fsynced. The temporary file is removed if a step fails.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let err = |op: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| FsError { op, path, source }
    };
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call; a leftover of a crashed process that had the same pid (common in
    // containers) is removed rather than written through.
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("create temporary file for", path))?;
        f.write_all(bytes).map_err(err("write", &tmp))?;
        f.sync_all().map_err(err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(err("rename temporary file over", path))?;
        sync_dir(dir).map_err(err("fsync directory of", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory, so a rename or unlink in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vcni-fsutil-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_the_file_with_the_given_mode_and_leaves_no_temporary() {
        let d = scratch("replace");
        let p = d.join("state.json");
        fs::write(&p, b"old").unwrap();
        write_atomically(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_directory_is_reported_with_the_path_and_nothing_is_left() {
        let d = scratch("missing");
        let p = d.join("no-such-dir").join("state.json");
        let e = write_atomically(&p, b"x", 0o644).unwrap_err();
        assert_eq!(e.op, "create temporary file for");
        assert_eq!(e.path, p);
        assert!(e.to_string().contains("no-such-dir/state.json"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
