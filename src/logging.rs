//! A small `log` backend: one line per record, `<RFC 3339 UTC time with ms> <LEVEL> <module path>: <message>`.
//!
//! ipamd logs per AWS_VPC_K8S_CNI_LOGLEVEL / AWS_VPC_K8S_CNI_LOG_FILE (a path, `stdout` or `stderr`); the CNI
//! plugin per AWS_VPC_K8S_PLUGIN_LOG_LEVEL / AWS_VPC_K8S_PLUGIN_LOG_FILE (a path or `stderr`, never stdout, which
//! carries the CNI result). Log files are opened in append mode, their directories created as needed, and each
//! line is written with a single `write` so concurrent plugin processes appending to one file do not interleave
//! within a line. No rotation: leave that to logrotate (upstream rotates with lumberjack at 100 MB).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Where lines go.
#[derive(Debug)]
enum Sink {
    Stdout,
    Stderr,
    File(File),
}

/// The logger: a level filter and a destination.
#[derive(Debug)]
pub struct Logger {
    level: log::LevelFilter,
    sink: Mutex<Sink>,
}

impl Logger {
    /// A logger for ipamd's destination and level.
    pub fn daemon(dest: &LogDestination, level: LogLevel) -> Result<Logger, LogInitError> {
        let sink = match dest {
            LogDestination::Stdout => Sink::Stdout,
            LogDestination::Stderr => Sink::Stderr,
            LogDestination::File(path) => Sink::File(open_append(path)?),
        };
        Ok(Logger {
            level: level.to_level_filter(),
            sink: Mutex::new(sink),
        })
    }

    /// A logger for the plugin's destination and level (stderr or a file, by construction never stdout).
    pub fn plugin(dest: &PluginLogDestination, level: LogLevel) -> Result<Logger, LogInitError> {
        let sink = match dest {
            PluginLogDestination::Stderr => Sink::Stderr,
            PluginLogDestination::File(path) => Sink::File(open_append(path)?),
        };
        Ok(Logger {
            level: level.to_level_filter(),
            sink: Mutex::new(sink),
        })
    }

    /// The most verbose level this logger writes.
    pub fn level(&self) -> log::LevelFilter {
        self.level
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
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let module = record.module_path().unwrap_or_else(|| record.target());
        let line = format_line(now_ms, record.level(), module, record.args());
        let mut sink = match self.sink.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A failed log write has nowhere better to be reported; dropping the line is the only option.
        let _ = match &mut *sink {
            Sink::Stdout => io::stdout().lock().write_all(line.as_bytes()),
            Sink::Stderr => io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(f) => f.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = match &mut *sink {
                Sink::Stdout => io::stdout().flush(),
                Sink::Stderr => io::stderr().flush(),
                Sink::File(f) => f.flush(),
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

fn open_append(path: &Path) -> Result<File, LogInitError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LogInitError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogInitError::OpenFile {
            path: path.to_path_buf(),
            source,
        })
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
