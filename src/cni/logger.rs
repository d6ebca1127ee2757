//! The plugin's logger: `pluginLogFile` (append) or stderr, never stdout; level from `pluginLogLevel`.
//!
//! Kept inside the plugin until the crate's shared logging module lands.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use log::{LevelFilter, Log, Metadata, Record};

struct PluginLogger {
    level: LevelFilter,
    file: Option<Mutex<File>>,
}

impl Log for PluginLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "aws-cni[{}] {} {}\n",
            std::process::id(),
            record.level(),
            record.args()
        );
        match &self.file {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// The level named by `pluginLogLevel` (upstream spells them DEBUG, INFO, WARN, ERROR).
pub(crate) fn level_from(s: Option<&str>) -> LevelFilter {
    match s.map(str::to_ascii_lowercase).as_deref() {
        Some("trace") => LevelFilter::Trace,
        Some("debug") => LevelFilter::Debug,
        Some("info") => LevelFilter::Info,
        Some("warn" | "warning") => LevelFilter::Warn,
        Some("error" | "fatal" | "panic") => LevelFilter::Error,
        Some("off" | "none") => LevelFilter::Off,
        _ => LevelFilter::Warn,
    }
}

/// Installs the logger from the configuration's `pluginLogFile`/`pluginLogLevel` (best effort: a configuration
/// that does not parse still gets warnings on stderr). A `pluginLogFile` of `stderr` or `stdout` means stderr.
pub(crate) fn init(stdin: &[u8]) {
    #[derive(serde::Deserialize)]
    struct LogConf {
        #[serde(rename = "pluginLogFile")]
        file: Option<String>,
        #[serde(rename = "pluginLogLevel")]
        level: Option<String>,
    }
    let conf = serde_json::from_slice::<LogConf>(stdin).ok();
    let level = level_from(conf.as_ref().and_then(|c| c.level.as_deref()));
    let file = conf
        .and_then(|c| c.file)
        .filter(|p| !p.is_empty() && p != "stderr" && p != "stdout")
        .and_then(|p| {
            if let Some(dir) = std::path::Path::new(&p).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            OpenOptions::new().create(true).append(true).open(p).ok()
        })
        .map(Mutex::new);
    if log::set_boxed_logger(Box::new(PluginLogger { level, file })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_level_names_map() {
        assert_eq!(level_from(Some("DEBUG")), LevelFilter::Debug);
        assert_eq!(level_from(Some("Info")), LevelFilter::Info);
        assert_eq!(level_from(None), LevelFilter::Warn);
    }
}
