//! A throwaway directory for one test (include with `#[path = "support/tempdir.rs"] mod tempdir;`).
//!
//! Each [`TempDir`] is `<system temp dir>/vcni-<tag>-<pid>-<n>`, unique across the test threads of
//! one binary, and removed when dropped, so cleanup also happens when a test fails or panics.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `vcni-<tag>-<pid>-<n>` (after removing a leftover of the same name).
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "vcni-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The names of the entries in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read temp dir")
            .map(|e| {
                e.expect("read temp dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file holding `content` in a fresh directory of its own; the directory goes when the guard drops.
pub fn file(tag: &str, name: &str, content: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    let path = dir.0.join(name);
    std::fs::write(&path, content).expect("write temp file");
    (dir, path)
}
