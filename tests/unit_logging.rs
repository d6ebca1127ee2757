//! The log backend: line format, level filter, append mode, directory creation, concurrent appenders.

#[path = "support/tempdir.rs"]
mod tempdir;

use std::time::{SystemTime, UNIX_EPOCH};

use log::Log;
use proptest::prelude::*;
use tempdir::TempDir;
use vpc_cni::config::{Config, LogDestination, LogLevel, PluginLogDestination};
use vpc_cni::logging::{self, LogInitError, Logger};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn emit(logger: &Logger, level: log::Level, module: &str, msg: &str) {
    logger.log(
        &log::Record::builder()
            .level(level)
            .target(module)
            .module_path(Some(module))
            .args(format_args!("{msg}"))
            .build(),
    );
}

#[test]
fn file_lines_have_time_level_module_and_message() {
    let tmp = TempDir::new("format");
    let path = tmp.0.join("a/b/c/ipamd.log");
    let logger =
        Logger::daemon(&LogDestination::File(path.clone()), LogLevel::Debug).expect("open log");
    assert!(path.exists(), "missing directories are created");
    let before = logging::rfc3339_millis(now_ms());
    emit(
        &logger,
        log::Level::Info,
        "vpc_cni::ipamd",
        "pool has 3 free addresses",
    );
    let after = logging::rfc3339_millis(now_ms());
    let text = std::fs::read_to_string(&path).expect("read log");
    let line = text.strip_suffix('\n').expect("line ends with a newline");
    let (ts, rest) = line.split_once(' ').expect("timestamp then a space");
    assert_eq!(rest, "INFO vpc_cni::ipamd: pool has 3 free addresses");
    assert_eq!(ts.len(), "2026-01-01T00:00:00.000Z".len(), "{ts}");
    assert!(
        ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
    // Fixed-width RFC 3339 UTC sorts like time.
    assert!(
        before.as_str() <= ts && ts <= after.as_str(),
        "{before} <= {ts} <= {after}"
    );
}

#[test]
fn level_filter_drops_more_verbose_records() {
    let tmp = TempDir::new("level");
    let path = tmp.0.join("plugin.log");
    let logger = Logger::plugin(&PluginLogDestination::File(path.clone()), LogLevel::Warn)
        .expect("open log");
    assert_eq!(logger.level(), log::LevelFilter::Warn);
    emit(&logger, log::Level::Debug, "m", "debug-line");
    emit(&logger, log::Level::Info, "m", "info-line");
    emit(&logger, log::Level::Warn, "m", "warn-line");
    emit(&logger, log::Level::Error, "m", "error-line");
    let text = std::fs::read_to_string(&path).expect("read log");
    assert!(
        !text.contains("debug-line") && !text.contains("info-line"),
        "{text}"
    );
    assert!(
        text.contains("WARN m: warn-line") && text.contains("ERROR m: error-line"),
        "{text}"
    );
    // FATAL lets only errors through.
    let fatal = Logger::plugin(&PluginLogDestination::File(path.clone()), LogLevel::Fatal)
        .expect("open log");
    emit(&fatal, log::Level::Warn, "m", "second-warn");
    emit(&fatal, log::Level::Error, "m", "second-error");
    let text = std::fs::read_to_string(&path).expect("read log");
    assert!(
        !text.contains("second-warn") && text.contains("second-error"),
        "{text}"
    );
}

#[test]
fn existing_log_files_are_appended_to() {
    let tmp = TempDir::new("append");
    let path = tmp.0.join("ipamd.log");
    std::fs::write(&path, "line from an earlier run\n").expect("seed log");
    let logger =
        Logger::daemon(&LogDestination::File(path.clone()), LogLevel::Info).expect("open log");
    emit(&logger, log::Level::Error, "x", "new line");
    let text = std::fs::read_to_string(&path).expect("read log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "line from an earlier run");
    assert!(lines[1].ends_with("ERROR x: new line"), "{text}");
}

#[test]
fn concurrent_appenders_never_split_a_line() {
    // Separate open files, as separate plugin processes have, all appending to one log.
    let tmp = TempDir::new("concurrent");
    let path = tmp.0.join("plugin.log");
    let per_writer = 400;
    std::thread::scope(|s| {
        for w in 0..4 {
            let path = path.clone();
            s.spawn(move || {
                let logger = Logger::plugin(&PluginLogDestination::File(path), LogLevel::Debug)
                    .expect("open log");
                let payload = format!("writer{w}-").repeat(40);
                for i in 0..per_writer {
                    emit(
                        &logger,
                        log::Level::Info,
                        "vpc_cni::cni",
                        &format!("{payload}{i}"),
                    );
                }
            });
        }
    });
    let text = std::fs::read_to_string(&path).expect("read log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4 * per_writer);
    for line in lines {
        let msg = line
            .split_once(" INFO vpc_cni::cni: ")
            .expect("whole line")
            .1;
        let w = &msg[..7];
        assert!(
            msg.starts_with(&format!("{w}-").repeat(40)),
            "interleaved line: {line}"
        );
    }
}

#[test]
fn unusable_log_paths_give_errors_naming_the_path() {
    let tmp = TempDir::new("errors");
    let file = tmp.0.join("not-a-dir");
    std::fs::write(&file, "").expect("create file");
    let err = Logger::daemon(
        &LogDestination::File(file.join("sub/ipamd.log")),
        LogLevel::Info,
    )
    .expect_err("must fail");
    assert!(matches!(err, LogInitError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let err = Logger::plugin(&PluginLogDestination::File(tmp.0.clone()), LogLevel::Info)
        .expect_err("a directory");
    assert!(matches!(err, LogInitError::OpenFile { .. }), "{err:?}");
    assert!(err.to_string().contains("open log file"), "{err}");
}

#[test]
fn plugin_destination_never_stdout() {
    assert_eq!(
        PluginLogDestination::parse("stderr"),
        (PluginLogDestination::Stderr, None)
    );
    assert_eq!(
        PluginLogDestination::parse(""),
        (PluginLogDestination::Stderr, None)
    );
    let (dest, warning) = PluginLogDestination::parse("STDOUT");
    assert_eq!(dest, PluginLogDestination::Stderr);
    assert!(warning
        .expect("a warning")
        .contains("stdout carries the CNI result"));
    assert_eq!(
        PluginLogDestination::parse("/var/log/x.log"),
        (PluginLogDestination::File("/var/log/x.log".into()), None)
    );
}

/// The only test in this binary that installs the process-wide logger.
#[test]
fn init_daemon_installs_the_configured_logger_once() {
    let tmp = TempDir::new("global");
    let path = tmp.0.join("d/ipamd.log");
    let config = Config {
        log_file: LogDestination::File(path.clone()),
        log_level: LogLevel::Info,
        ..Config::default()
    };
    logging::init_daemon(&config).expect("first install");
    log::debug!("not at info level");
    log::info!("ipamd starting");
    log::logger().flush();
    let text = std::fs::read_to_string(&path).expect("read log");
    assert!(!text.contains("not at info level"), "{text}");
    assert!(
        text.contains(" INFO unit_logging: ipamd starting\n"),
        "{text}"
    );
    assert!(matches!(
        logging::init_daemon(&config),
        Err(LogInitError::AlreadyInstalled)
    ));
    assert!(matches!(
        logging::init_plugin(&config),
        Err(LogInitError::AlreadyInstalled)
    ));
}

/// Days since 1970-01-01 of a civil date, counted naively year by year and month by month.
fn naive_days(y: u64, m: u64, d: u64) -> u64 {
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for year in 1970..y {
        days += if leap(year) { 366 } else { 365 };
    }
    let month_len = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days + month_len[..(m - 1) as usize].iter().sum::<u64>() + d - 1
}

proptest! {
    #[test]
    fn timestamps_round_trip_through_a_naive_calendar(ms in 0u64..253_402_300_800_000) {
        let ts = logging::rfc3339_millis(ms);
        let num = |r: std::ops::Range<usize>| ts[r].parse::<u64>().expect("digits");
        let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
        let (h, mi, s, milli) = (num(11..13), num(14..16), num(17..19), num(20..23));
        prop_assert!((1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 60);
        let back = ((naive_days(y, mo, d) * 24 + h) * 60 + mi) * 60 + s;
        prop_assert_eq!(back * 1000 + milli, ms, "{}", ts);
    }
}
