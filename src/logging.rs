//! A small `log` backend: one line per record, `<RFC 3339 UTC time with ms> <LEVEL> <module path>: <message>`.
//!
//! ipamd logs per AWS_VPC_K8S_CNI_LOGLEVEL / AWS_VPC_K8S_CNI_LOG_FILE (a path, `stdout` or `stderr`); the CNI
//! plugin per AWS_VPC_K8S_PLUGIN_LOG_LEVEL / AWS_VPC_K8S_PLUGIN_LOG_FILE (a path or `stderr`, never stdout, which
//! carries the CNI result). Log files are opened in append mode, their directories created (mode 0755) as needed,
//! a new file is created with mode 0600, and each line is written with a single `write` so concurrent plugin
//! processes appending to one file do not interleave within a line.
//!
//! # Rotation
//!
//! Log files rotate by size as upstream's do (lumberjack with `MaxSize` 100, `MaxBackups` 5, `MaxAge` 30,
//! `Compress` true, UTC names; see [`Rotation::UPSTREAM`]): when a line would take the file past 100 MiB, the file
//! is renamed to `<stem>-<UTC yyyy-mm-ddTHH-MM-SS.mmm><ext>` (`ipamd-2026-12-01T12-05-03.123.log`) and a new one
//! is created with the old one's mode and owner. Then backups beyond the 5 newest and those whose name says they
//! are older than 30 days are removed, and the rest are gzipped to `<backup>.gz` (through a temporary
//! `<backup>.gz.tmp<pid>` renamed into place, so an interrupted compression leaves the backup intact).
//!
//! Several processes may write one file (a plugin process per pod, all on `plugin.log`), so rotation is
//! coordinated with `flock(2)` on the log file's **directory** (no lock file is added): every line is written
//! under a shared lock after checking that the path still names the file this process has open (and reopening
//! it if another process rotated it); a writer that finds the file full takes the exclusive lock, checks again
//! (someone else may have rotated meanwhile) and only then renames and creates. No line is therefore written
//! into a file after it was renamed, and two processes never rotate the same file twice. (Writers that check the size at
//! the same moment under the shared lock may each add their line, so a file can pass the limit by a few lines.) Compression and
//! pruning run without the lock: each compressor writes its own temporary file and renames it, and a file
//! already removed by another process is skipped. ipamd compresses in a background thread; the plugin, whose
//! process ends right after its command, compresses before it returns (once per 100 MiB of plugin log).

use std::ffi::OsString;
use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{flock, FlockOperation};

use crate::config::{Config, LogDestination, LogLevel, PluginLogDestination};
use crate::timefmt::{self, Fraction};

/// Why a logger could not be set up.
#[derive(Debug)]
pub enum LogInitError {
    /// The log file's directory could not be created.
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The log file could not be opened for appending.
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A logger was already installed in this process.
    AlreadyInstalled,
}

impl fmt::Display for LogInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogInitError::CreateDir { path, source } => {
                write!(f, "create log directory {}: {source}", path.display())
            }
            LogInitError::OpenFile { path, source } => {
                write!(
                    f,
                    "open log file {} for appending: {source}",
                    path.display()
                )
            }
            LogInitError::AlreadyInstalled => {
                write!(f, "install logger: a logger is already installed")
            }
        }
    }
}

impl std::error::Error for LogInitError {}

/// When and how a log file rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A line that would take the file past this many bytes rotates it first.
    pub max_bytes: u64,
    /// Backups kept (the newest by the time in their name); 0 keeps all.
    pub max_backups: usize,
    /// Backups whose name says they are older than this are removed; zero keeps all.
    pub max_age: Duration,
    /// Gzip backups.
    pub compress: bool,
}

impl Rotation {
    /// Upstream's lumberjack settings (`pkg/utils/logger/zaplogger.go`, v1.23): `MaxSize` 100 (lumberjack's
    /// megabyte is 1024 × 1024 bytes), `MaxBackups` 5, `MaxAge` 30 days, `Compress` true.
    pub const UPSTREAM: Rotation = Rotation {
        max_bytes: 100 * 1024 * 1024,
        max_backups: 5,
        max_age: Duration::from_secs(30 * 86_400),
        compress: true,
    };
}

/// Who compresses and prunes backups after a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mill {
    /// A background thread (a long-lived process: ipamd).
    Background,
    /// The writing thread, before the write returns (a short-lived process: the plugin).
    Inline,
}

/// Mode of a log file this process creates (upstream's lumberjack creates 0600 too).
pub const LOG_FILE_MODE: u32 = 0o600;
/// Mode of the log directories this process creates.
pub const LOG_DIR_MODE: u32 = 0o755;

/// A log file that rotates by size, safe with several writing processes (see the module docs).
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    dir: File,
    file: File,
    rotation: Rotation,
    mill: Mill,
    milling: Arc<AtomicBool>,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it with mode 0600 and its directories with 0755).
    pub fn open(path: &Path, rotation: Rotation, mill: Mill) -> Result<RotatingFile, LogInitError> {
        let dir_path = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(LOG_DIR_MODE)
            .create(&dir_path)
            .map_err(|source| LogInitError::CreateDir {
                path: dir_path.clone(),
                source,
            })?;
        let file = open_append(path).map_err(|source| LogInitError::OpenFile {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = File::open(&dir_path).map_err(|source| LogInitError::OpenFile {
            path: dir_path.clone(),
            source,
        })?;
        Ok(RotatingFile {
            path: path.to_path_buf(),
            dir,
            file,
            rotation,
            mill,
            milling: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line with one `write`, rotating first if the line would take the file past the limit.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        // The lock is best effort: where a file system refuses flock on a directory, lines are still written and
        // files still rotate, as lumberjack does it, without the coordination.
        let _ = flock(&self.dir, FlockOperation::LockShared);
        let result = self.write_locked(line);
        let _ = flock(&self.dir, FlockOperation::Unlock);
        if result? {
            self.start_mill();
        }
        Ok(())
    }

    /// The part of [`write_line`](Self::write_line) under the directory lock; whether it rotated.
    fn write_locked(&mut self, line: &[u8]) -> io::Result<bool> {
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        self.reopen_if_moved()?;
        let mut rotated = false;
        if self.over_limit(len)? {
            // Converting to exclusive is not atomic: check again once it is held.
            let _ = flock(&self.dir, FlockOperation::LockExclusive);
            self.reopen_if_moved()?;
            // A rotation that fails (say, a read-only directory) must not cost the line: it goes to the full file.
            if self.over_limit(len)? {
                rotated = self.rotate().is_ok();
            }
        }
        self.file.write_all(line)?;
        Ok(rotated)
    }

    fn over_limit(&self, len: u64) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        Ok(size > 0 && size.saturating_add(len) > self.rotation.max_bytes)
    }

    /// Reopens the path when it no longer names the open file (another process rotated or removed it).
    fn reopen_if_moved(&mut self) -> io::Result<()> {
        let open = self.file.metadata()?;
        let same = match std::fs::metadata(&self.path) {
            Ok(m) => m.dev() == open.dev() && m.ino() == open.ino(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !same {
            self.file = open_append(&self.path)?;
        }
        Ok(())
    }

    /// Renames the file to its backup name and opens a new one with the old mode and owner. The caller holds the
    /// exclusive lock.
    fn rotate(&mut self) -> io::Result<()> {
        let old = self.file.metadata()?;
        // Backups are pruned oldest first by the time in their names, so a new backup must be named later
        // than every existing one: two rotations within one millisecond, or a wall clock stepped back,
        // would otherwise have the pruning delete the newest lines instead of the oldest.
        let newest = newest_backup_time(&self.path);
        let now = match newest {
            Some(t) if t >= unix_millis_now() => t + 1,
            _ => unix_millis_now(),
        };
        let backup = backup_path(&self.path, now);
        std::fs::rename(&self.path, &backup)?;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(old.mode() & 0o7777)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)?;
        // The mode given to open is reduced by the umask; set it exactly, as the old file had it.
        file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))?;
        if rustix::process::geteuid().as_raw() != old.uid()
            || rustix::process::getegid().as_raw() != old.gid()
        {
            // Only root may give a file away; an unprivileged writer keeps the file its own.
            let _ = rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(old.uid())),
                Some(rustix::fs::Gid::from_raw(old.gid())),
            );
        }
        self.file = file;
        Ok(())
    }

    fn start_mill(&self) {
        let path = self.path.clone();
        let rotation = self.rotation;
        match self.mill {
            Mill::Inline => mill(&path, &rotation, unix_millis_now()),
            Mill::Background => {
                if self.milling.swap(true, Ordering::SeqCst) {
                    // One mill at a time; the running one sees this rotation's backup too, or the next does.
                    return;
                }
                let milling = Arc::clone(&self.milling);
                let spawned =
                    std::thread::Builder::new()
                        .name("log-mill".into())
                        .spawn(move || {
                            mill(&path, &rotation, unix_millis_now());
                            milling.store(false, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    self.milling.store(false, Ordering::SeqCst);
                }
            }
        }
    }

    /// Waits until a background mill of this file has finished (tests, and ipamd before it exits).
    pub fn wait_for_mill(&self, budget: Duration) -> bool {
        let began = std::time::Instant::now();
        while self.milling.load(Ordering::SeqCst) {
            if began.elapsed() > budget {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

fn unix_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `(stem, ext)` of a log file name as lumberjack splits it: `ipamd.log` → (`ipamd`, `.log`), `log` → (`log`, ``).
fn stem_and_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    }
}

/// The backup name lumberjack gives `path` when rotated at `unix_millis` (UTC):
/// `/d/ipamd.log` → `/d/ipamd-2026-12-01T12-05-03.123.log`.
pub fn backup_path(path: &Path, unix_millis: u64) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = stem_and_ext(&name);
    let stamp = rfc3339_millis(unix_millis)
        .trim_end_matches('Z')
        .replace(':', "-");
    path.with_file_name(format!("{stem}-{stamp}{ext}"))
}

/// The latest rotation time among the backups (plain or gzipped) beside the log file `path`.
fn newest_backup_time(path: &Path) -> Option<u64> {
    let log_name = path.file_name()?.to_str()?;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| backup_time(log_name, e.file_name().to_str()?))
        .max()
}

/// The rotation time (Unix milliseconds) a backup's file name carries, if `file_name` is a backup (plain or
/// `.gz`) of the log file named `log_name`.
pub fn backup_time(log_name: &str, file_name: &str) -> Option<u64> {
    let (stem, ext) = stem_and_ext(log_name);
    let rest = file_name.strip_prefix(stem)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    let stamp = rest.strip_suffix(ext)?;
    parse_stamp(stamp)
}

/// Parses `yyyy-mm-ddTHH-MM-SS.mmm` (lumberjack's `2006-01-02T15-04-05.000`) as UTC.
fn parse_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 23 {
        return None;
    }
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b'-'),
        (16, b'-'),
        (19, b'.'),
    ];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = timefmt::days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    u64::try_from(secs)
        .ok()?
        .checked_mul(1000)?
        .checked_add(u64::from(ms))
}

/// How long a compressor's temporary file may sit before another process takes it for a leftover of a killed
/// one and removes it.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// Prunes and compresses the backups of the log file at `path` as lumberjack's mill does: keeps the
/// `max_backups` newest (a backup and its `.gz` count once), removes those older than `max_age` (by the time
/// in their name, against `now_millis`), gzips the rest. Safe to run in several processes at once. Errors are
/// not reported: there is no log to report them to, and the next rotation's mill tries again.
pub fn mill(path: &Path, rotation: &Rotation, now_millis: u64) {
    let Some(log_name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    // (time, name) of each backup; names of stale compressor temporaries.
    let mut backups: Vec<(u64, OsString)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if let Some(t) = backup_time(log_name, text) {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                backups.push((t, name));
            }
        } else if is_temp_of(log_name, text) {
            let stale = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    // Newest first; a plain backup before its `.gz` twin.
    backups.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept_times: Vec<u64> = Vec::new();
    let mut keep: Vec<&(u64, OsString)> = Vec::new();
    for b in &backups {
        let fresh_enough = rotation.max_age.is_zero()
            || now_millis.saturating_sub(b.0)
                <= u64::try_from(rotation.max_age.as_millis()).unwrap_or(u64::MAX);
        let counted = kept_times.contains(&b.0);
        let within_count =
            rotation.max_backups == 0 || counted || kept_times.len() < rotation.max_backups;
        if fresh_enough && within_count {
            if !counted {
                kept_times.push(b.0);
            }
            keep.push(b);
        } else {
            let _ = std::fs::remove_file(dir.join(&b.1));
        }
    }
    if !rotation.compress {
        return;
    }
    for (_, name) in keep {
        let is_gz = name.to_str().is_some_and(|n| n.ends_with(".gz"));
        if !is_gz {
            let _ = compress(&dir.join(name));
        }
    }
}

/// Whether `name` is a compressor temporary of one of `log_name`'s backups (`<backup>.gz.tmp<pid>`).
fn is_temp_of(log_name: &str, name: &str) -> bool {
    name.rsplit_once(".gz.tmp").is_some_and(|(backup, pid)| {
        !pid.is_empty()
            && pid.bytes().all(|c| c.is_ascii_digit())
            && backup_time(log_name, backup).is_some()
    })
}

/// Gzips `src` into `src.gz` (same mode and owner) through a temporary, then removes `src`.
fn compress(src: &Path) -> io::Result<()> {
    let mut input = File::open(src)?;
    let meta = input.metadata()?;
    let mut gz_name = src.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut tmp_name = gz.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let out = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(meta.mode() & 0o7777)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        out.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        let _ = rustix::fs::fchown(
            &out,
            Some(rustix::fs::Uid::from_raw(meta.uid())),
            Some(rustix::fs::Gid::from_raw(meta.gid())),
        );
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        io::copy(&mut input, &mut enc)?;
        enc.finish()?.sync_all()?;
        std::fs::rename(&tmp, &gz)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    match std::fs::remove_file(src) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where lines go.
#[derive(Debug)]
enum Sink {
    Stdout,
    Stderr,
    File(RotatingFile),
}

/// The logger: a level filter and a destination.
#[derive(Debug)]
pub struct Logger {
    level: log::LevelFilter,
    sink: Mutex<Sink>,
}

impl Logger {
    /// A logger for ipamd's destination and level; a file rotates as upstream's ([`Rotation::UPSTREAM`]).
    pub fn daemon(dest: &LogDestination, level: LogLevel) -> Result<Logger, LogInitError> {
        let sink = match dest {
            LogDestination::Stdout => Sink::Stdout,
            LogDestination::Stderr => Sink::Stderr,
            LogDestination::File(path) => Sink::File(RotatingFile::open(
                path,
                Rotation::UPSTREAM,
                Mill::Background,
            )?),
        };
        Ok(Logger::with_sink(sink, level))
    }

    /// A logger for the plugin's destination and level (stderr or a file, by construction never stdout); a file
    /// rotates as upstream's.
    pub fn plugin(dest: &PluginLogDestination, level: LogLevel) -> Result<Logger, LogInitError> {
        let sink = match dest {
            PluginLogDestination::Stderr => Sink::Stderr,
            PluginLogDestination::File(path) => {
                Sink::File(RotatingFile::open(path, Rotation::UPSTREAM, Mill::Inline)?)
            }
        };
        Ok(Logger::with_sink(sink, level))
    }

    /// A logger writing to `path` with an explicit rotation (tests use small sizes).
    pub fn file(
        path: &Path,
        level: LogLevel,
        rotation: Rotation,
        mill: Mill,
    ) -> Result<Logger, LogInitError> {
        Ok(Logger::with_sink(
            Sink::File(RotatingFile::open(path, rotation, mill)?),
            level,
        ))
    }

    fn with_sink(sink: Sink, level: LogLevel) -> Logger {
        Logger {
            level: level.to_level_filter(),
            sink: Mutex::new(sink),
        }
    }

    /// The most verbose level this logger writes.
    pub fn level(&self) -> log::LevelFilter {
        self.level
    }

    /// Waits (up to `budget`) for a background compression of rotated files to finish; true when none runs.
    pub fn wait_for_mill(&self, budget: Duration) -> bool {
        match &*self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            Sink::File(f) => f.wait_for_mill(budget),
            _ => true,
        }
    }

    /// Installs this logger as the process-wide `log` backend.
    pub fn install(self) -> Result<(), LogInitError> {
        let level = self.level;
        log::set_boxed_logger(Box::new(self)).map_err(|_| LogInitError::AlreadyInstalled)?;
        log::set_max_level(level);
        Ok(())
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // The HTTP and TLS libraries log every request at debug: only their warnings and errors.
        let chatty = ["ureq", "rustls"]
            .iter()
            .any(|c| metadata.target().starts_with(c));
        metadata.level() <= self.level && (!chatty || metadata.level() <= log::Level::Warn)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let module = record.module_path().unwrap_or_else(|| record.target());
        let line = format_line(unix_millis_now(), record.level(), module, record.args());
        let mut sink = match self.sink.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A failed log write has nowhere better to be reported; dropping the line is the only option.
        let _ = match &mut *sink {
            Sink::Stdout => io::stdout().lock().write_all(line.as_bytes()),
            Sink::Stderr => io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(f) => f.write_line(line.as_bytes()),
        };
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = match &mut *sink {
                Sink::Stdout => io::stdout().flush(),
                Sink::Stderr => io::stderr().flush(),
                Sink::File(_) => Ok(()),
            };
        }
    }
}

/// Installs ipamd's logger per AWS_VPC_K8S_CNI_LOGLEVEL and AWS_VPC_K8S_CNI_LOG_FILE.
pub fn init_daemon(config: &Config) -> Result<(), LogInitError> {
    Logger::daemon(&config.log_file, config.log_level)?.install()
}

/// Installs the plugin's logger per AWS_VPC_K8S_PLUGIN_LOG_LEVEL and AWS_VPC_K8S_PLUGIN_LOG_FILE.
/// See [`init_plugin_with`].
pub fn init_plugin(config: &Config) -> Result<(), LogInitError> {
    init_plugin_with(&config.plugin_log_file, config.plugin_log_level)
}

/// Installs the plugin's logger for an explicit destination (the conflist's `pluginLogFile` and `pluginLogLevel`
/// take precedence over the environment upstream; parse the former with [`PluginLogDestination::parse`]). A log
/// file that cannot be opened must not fail the pod's network setup: the logger then writes to stderr and its
/// first line says why. Only a second installation is an error.
pub fn init_plugin_with(dest: &PluginLogDestination, level: LogLevel) -> Result<(), LogInitError> {
    match Logger::plugin(dest, level) {
        Ok(logger) => logger.install(),
        Err(open_error) => {
            Logger::plugin(&PluginLogDestination::Stderr, level)?.install()?;
            log::warn!("{open_error}; logging to stderr instead");
            Ok(())
        }
    }
}

/// One log line, newline included: `2026-11-23T16:08:39.123Z INFO vpc_cni::ipamd: message`.
pub fn format_line(
    unix_millis: u64,
    level: log::Level,
    module: &str,
    message: &fmt::Arguments<'_>,
) -> String {
    format!(
        "{} {level} {module}: {message}\n",
        rfc3339_millis(unix_millis)
    )
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds, e.g. `1970-01-01T00:00:00.000Z`.
pub fn rfc3339_millis(unix_millis: u64) -> String {
    let secs = i64::try_from(unix_millis / 1000).unwrap_or(i64::MAX);
    let nanos = (unix_millis % 1000) as u32 * 1_000_000;
    timefmt::rfc3339(secs, nanos, Fraction::Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_at_known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_709_251_199_999),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_800_123),
            "2100-01-01T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_799_000),
            "9999-12-31T23:59:59.000Z"
        );
    }
}
