//! The checkpoint file: read at start, written atomically after every assignment change.
//!
//! This is the one std (I/O) part of `ipam`. Writes go to a temporary file in the same directory,
//! are fsynced, renamed over the checkpoint and the directory is fsynced, so a crash leaves either
//! the old or the new file. A file that cannot be decoded, or has another version, is never
//! overwritten: it is renamed aside to `<name>.corrupt-<n>` and reported.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::checkpoint::{self, CheckpointData, CodecError};
use crate::fsutil::{self, FsError};

/// Upstream's default AWS_VPC_K8S_CNI_BACKING_STORE.
pub const DEFAULT_BACKING_STORE: &str = "/var/run/aws-node/ipam.json";

/// Checkpoint file errors; each names the operation and the path.
#[derive(Debug)]
pub enum StoreError {
    /// Reading, writing, syncing or renaming failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file could not be decoded; it was moved to `kept_as`.
    Corrupt {
        path: PathBuf,
        kept_as: PathBuf,
        cause: CodecError,
    },
    /// The file could not be decoded and could not be moved aside either.
    CorruptNotMoved {
        path: PathBuf,
        cause: CodecError,
        source: io::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, source } => {
                write!(f, "{op} checkpoint {}: {source}", path.display())
            }
            StoreError::Corrupt {
                path,
                kept_as,
                cause,
            } => write!(
                f,
                "read checkpoint {}: {cause}; the file was kept as {} and not overwritten",
                path.display(),
                kept_as.display()
            ),
            StoreError::CorruptNotMoved {
                path,
                cause,
                source,
            } => write!(
                f,
                "read checkpoint {}: {cause}; moving it aside also failed: {source}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// The checkpoint file at one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    /// The checkpoint at `path` (AWS_VPC_K8S_CNI_BACKING_STORE).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointStore { path: path.into() }
    }

    /// The checkpoint of network card `card` next to `base` (upstream: `ipam-nic-N.json` for N > 0).
    pub fn for_network_card(base: impl AsRef<Path>, card: u32) -> Self {
        let base = base.as_ref();
        if card == 0 {
            return CheckpointStore::new(base);
        }
        let s = base.to_string_lossy();
        let stem = s.strip_suffix(".json").unwrap_or(&s);
        CheckpointStore::new(format!("{stem}-nic-{card}.json"))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the checkpoint. `Ok(None)` when there is no file (a fresh node). A file that does not
    /// decode is moved aside and reported as [`StoreError::Corrupt`].
    pub fn load(&self) -> Result<Option<CheckpointData>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source,
                })
            }
        };
        match checkpoint::decode(&bytes) {
            Ok(d) => Ok(Some(d)),
            Err(cause) => match self.move_aside() {
                Ok(kept_as) => Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    kept_as,
                    cause,
                }),
                Err(source) => Err(StoreError::CorruptNotMoved {
                    path: self.path.clone(),
                    cause,
                    source,
                }),
            },
        }
    }

    fn move_aside(&self) -> io::Result<PathBuf> {
        for n in 1..10_000u32 {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".corrupt-{n}"));
            let candidate = PathBuf::from(name);
            if fs::symlink_metadata(&candidate).is_ok() {
                continue;
            }
            // Hard-link then unlink, so an existing `.corrupt-n` (a race) is never replaced.
            match fs::hard_link(&self.path, &candidate) {
                Ok(()) => {
                    fs::remove_file(&self.path)?;
                    fsutil::sync_dir(fsutil::parent_dir(&self.path))?;
                    return Ok(candidate);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "10000 .corrupt-<n> files already exist",
        ))
    }

    /// Writes the checkpoint atomically ([`fsutil::write_atomically`], mode 0600). Refuses to replace
    /// a file that exists but does not decode (it is moved aside first by [`load`](Self::load)).
    pub fn save(&self, data: &CheckpointData) -> Result<(), StoreError> {
        fsutil::write_atomically(&self.path, &checkpoint::encode(data), 0o600)
            .map_err(|FsError { op, path, source }| StoreError::Io { op, path, source })
    }
}
