//! The log backend: line format, level filter, append mode, directory creation, concurrent appenders, file
//! modes, and rotation by size as upstream's lumberjack does it (names, backups kept, age, gzip), also with
//! several writers rotating one file.

#[path = "support/tempdir.rs"]
mod tempdir;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::Log;
use proptest::prelude::*;
use tempdir::TempDir;
use vpc_cni::config::{Config, LogDestination, LogLevel, PluginLogDestination};
use vpc_cni::logging::{self, LogInitError, Logger, Mill, Rotation};

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

// ---------------------------------------------------------------------------------------------------------------
// File modes and rotation.

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Every file of the log (live file and backups, `.gz` ones decompressed): name → text.
fn log_files(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        let name = e.file_name().into_string().expect("utf-8 name");
        let bytes = std::fs::read(e.path()).expect("read");
        let text = if name.ends_with(".gz") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .unwrap_or_else(|err| panic!("{name} is not gzip: {err}"));
            s
        } else {
            String::from_utf8(bytes).expect("utf-8 log")
        };
        m.insert(name, text);
    }
    m
}

fn small(max_bytes: u64, max_backups: usize, compress: bool) -> Rotation {
    Rotation {
        max_bytes,
        max_backups,
        max_age: Duration::ZERO,
        compress,
    }
}

#[test]
fn upstream_rotation_figures() {
    // pkg/utils/logger/zaplogger.go: lumberjack MaxSize 100 (MiB), MaxBackups 5, MaxAge 30 (days), Compress.
    assert_eq!(
        Rotation::UPSTREAM,
        Rotation {
            max_bytes: 104_857_600,
            max_backups: 5,
            max_age: Duration::from_secs(2_592_000),
            compress: true,
        }
    );
}

#[test]
fn backup_names_are_lumberjacks() {
    // 2026-12-01T12:05:03.123Z
    let t = 1_796_126_703_123;
    assert_eq!(logging::rfc3339_millis(t), "2026-12-01T12:05:03.123Z");
    assert_eq!(
        logging::backup_path(Path::new("/var/log/aws-routed-eni/ipamd.log"), t),
        PathBuf::from("/var/log/aws-routed-eni/ipamd-2026-12-01T12-05-03.123.log")
    );
    assert_eq!(
        logging::backup_path(Path::new("d/plugin"), t),
        PathBuf::from("d/plugin-2026-12-01T12-05-03.123")
    );
    assert_eq!(
        logging::backup_path(Path::new("a.b.log"), 0),
        PathBuf::from("a.b-1970-01-01T00-00-00.000.log")
    );
    for name in [
        "ipamd-2026-12-01T12-05-03.123.log",
        "ipamd-2026-12-01T12-05-03.123.log.gz",
    ] {
        assert_eq!(logging::backup_time("ipamd.log", name), Some(t), "{name}");
    }
    for not_a_backup in [
        "ipamd.log",
        "ipamd.log.gz",
        "plugin-2026-12-01T12-05-03.123.log",
        "ipamd-2026-12-01T12-05-03.123.txt",
        "ipamd-2026-12-01T12:05:03.123.log",
        "ipamd-2026-13-01T12-05-03.123.log",
        "ipamd-2026-12-01T12-05-03.12x.log",
        "ipamd-2026-12-01T12-05-03.123.log.gz.tmp42",
    ] {
        assert_eq!(
            logging::backup_time("ipamd.log", not_a_backup),
            None,
            "{not_a_backup}"
        );
    }
}

#[test]
fn new_log_files_are_0600_and_existing_modes_are_kept() {
    let tmp = TempDir::new("modes");
    let path = tmp.0.join("logs/ipamd.log");
    let logger =
        Logger::daemon(&LogDestination::File(path.clone()), LogLevel::Info).expect("open log");
    emit(&logger, log::Level::Info, "m", "x");
    assert_eq!(mode_of(&path), 0o600, "as upstream's lumberjack");
    assert_eq!(mode_of(&tmp.0.join("logs")), 0o755);
    // A file the operator opened up to 0640 keeps that mode, also across rotations.
    let shared = tmp.0.join("logs/plugin.log");
    std::fs::write(&shared, "").expect("create");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let logger = Logger::file(&shared, LogLevel::Info, small(200, 0, false), Mill::Inline)
        .expect("open log");
    for i in 0..20 {
        emit(&logger, log::Level::Info, "m", &format!("line {i}"));
    }
    let files = log_files(&tmp.0.join("logs"));
    let backups: Vec<&String> = files.keys().filter(|n| n.starts_with("plugin-")).collect();
    assert!(!backups.is_empty(), "{files:?}");
    assert_eq!(mode_of(&shared), 0o640);
    for b in backups {
        assert_eq!(mode_of(&tmp.0.join("logs").join(b)), 0o640, "{b}");
    }
}

#[test]
fn a_full_file_is_renamed_with_the_time_and_a_new_one_started() {
    let tmp = TempDir::new("rotate");
    let path = tmp.0.join("ipamd.log");
    let before = now_ms();
    let logger = Logger::file(&path, LogLevel::Debug, small(1000, 0, false), Mill::Inline)
        .expect("open log");
    for i in 0..100 {
        emit(
            &logger,
            log::Level::Info,
            "vpc_cni::ipamd",
            &format!("line {i:03}"),
        );
    }
    let after = now_ms();
    let files = log_files(&tmp.0);
    // Each line is 55 bytes: 18 lines fill 990 bytes and the 19th would pass 1000.
    let line_len = files["ipamd.log"].lines().next().expect("a line").len() + 1;
    assert_eq!(line_len, 55);
    assert_eq!(
        files.len(),
        6,
        "100 lines = 5 full files of 18 and the live one: {files:?}"
    );
    let mut all = Vec::new();
    for (name, text) in &files {
        assert!(text.len() <= 1000, "{name}: {} bytes", text.len());
        if name != "ipamd.log" {
            assert_eq!(text.lines().count(), 18, "{name}");
            let t = logging::backup_time("ipamd.log", name).expect("a backup name");
            assert!(before <= t && t <= after + 10, "{name}");
        }
        all.extend(
            text.lines()
                .map(|l| l.rsplit(' ').next().unwrap_or("").to_string()),
        );
    }
    // Backups sort by name in time order, before the live file (`-` < `.`), which holds the newest lines:
    // nothing lost or repeated.
    let want: Vec<String> = (0..100).map(|i| format!("{i:03}")).collect();
    assert_eq!(all, want);
}

#[test]
fn five_newest_backups_are_kept_and_gzipped() {
    let tmp = TempDir::new("mill");
    let path = tmp.0.join("plugin.log");
    let logger =
        Logger::file(&path, LogLevel::Debug, small(600, 5, true), Mill::Inline).expect("open log");
    for i in 0..200 {
        emit(
            &logger,
            log::Level::Info,
            "vpc_cni::cni",
            &format!("line {i:03}"),
        );
    }
    let files = log_files(&tmp.0);
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(names.len(), 6, "five backups and the live file: {names:?}");
    assert!(
        names
            .iter()
            .filter(|n| n.as_str() != "plugin.log")
            .all(|n| n.ends_with(".log.gz")),
        "{names:?}"
    );
    // The newest lines survive, in order, ending with the last one written.
    let mut kept: Vec<String> = Vec::new();
    for (name, text) in &files {
        if name != "plugin.log" {
            kept.extend(text.lines().map(str::to_string));
        }
    }
    kept.extend(files["plugin.log"].lines().map(str::to_string));
    let numbers: Vec<u32> = kept
        .iter()
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("numbered")
        })
        .collect();
    assert_eq!(*numbers.last().expect("lines"), 199);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(numbers[0] > 0, "the oldest backups are gone");
}

#[test]
fn backups_older_than_max_age_are_removed_by_their_name() {
    let tmp = TempDir::new("age");
    let path = tmp.0.join("ipamd.log");
    std::fs::write(&path, "live\n").expect("live");
    let now = now_ms();
    let day = 86_400_000;
    let old = logging::backup_path(&path, now - 31 * day);
    let old_gz = PathBuf::from(format!(
        "{}.gz",
        logging::backup_path(&path, now - 40 * day).display()
    ));
    let recent = logging::backup_path(&path, now - 29 * day);
    let stranger = tmp.0.join("ipamd-notes.log");
    for p in [&old, &old_gz, &recent, &stranger] {
        std::fs::write(p, "x\n").expect("seed");
    }
    let rotation = Rotation {
        max_age: Duration::from_secs(30 * 86_400),
        ..small(1 << 20, 5, false)
    };
    logging::mill(&path, &rotation, now);
    assert!(!old.exists() && !old_gz.exists(), "older than 30 days");
    assert!(recent.exists() && stranger.exists() && path.exists());
}

#[test]
fn a_writer_follows_a_rotation_made_by_another() {
    let tmp = TempDir::new("follow");
    let path = tmp.0.join("plugin.log");
    let rotation = small(500, 0, false);
    let a = Logger::file(&path, LogLevel::Debug, rotation, Mill::Inline).expect("a");
    let b = Logger::file(&path, LogLevel::Debug, rotation, Mill::Inline).expect("b");
    emit(&a, log::Level::Info, "a", "first from a");
    for i in 0..20 {
        emit(&b, log::Level::Info, "b", &format!("from b {i}"));
    }
    emit(&a, log::Level::Info, "a", "second from a");
    let live = std::fs::read_to_string(&path).expect("live");
    assert!(
        live.contains("second from a"),
        "a writes to the new file: {live}"
    );
    let files = log_files(&tmp.0);
    let first_in = files
        .iter()
        .filter(|(_, t)| t.contains("first from a"))
        .count();
    assert_eq!(first_in, 1, "{files:?}");
}

#[test]
fn several_writers_rotating_one_file_lose_and_repeat_no_line() {
    // Separate open files and directory locks per writer, exactly as separate plugin processes have them
    // (flock(2) locks belong to the open file, not to the process).
    let tmp = TempDir::new("rotconc");
    let path = tmp.0.join("plugin.log");
    let writers = 4;
    let per_writer = 500;
    let rotation = small(4096, 0, true);
    std::thread::scope(|s| {
        for w in 0..writers {
            let path = path.clone();
            s.spawn(move || {
                let logger =
                    Logger::file(&path, LogLevel::Debug, rotation, Mill::Inline).expect("open log");
                for i in 0..per_writer {
                    emit(&logger, log::Level::Info, "cni", &format!("w{w} {i:04}"));
                }
            });
        }
    });
    let files = log_files(&tmp.0);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let max_line = files
        .values()
        .flat_map(|t| t.lines())
        .map(|l| l.len() + 1)
        .max()
        .expect("lines") as u64;
    for (name, text) in &files {
        assert!(
            !name.contains(".tmp"),
            "no compressor temporary left: {name}"
        );
        // Writers that checked the size together may each add their line: at most one line each past the limit.
        assert!(
            text.len() as u64 <= 4096 + (writers as u64 - 1) * max_line,
            "{name}: {} bytes",
            text.len()
        );
        for l in text.lines() {
            let key = l
                .split_once(" INFO cni: ")
                .expect("whole line")
                .1
                .to_string();
            *seen.entry(key).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), writers * per_writer, "every line is somewhere");
    assert!(seen.values().all(|&n| n == 1), "no line twice");
    assert!(files.len() > 20, "it rotated: {} files", files.len());
}

#[test]
fn ipamd_compresses_in_the_background() {
    let tmp = TempDir::new("bg");
    let path = tmp.0.join("ipamd.log");
    let logger = Logger::file(
        &path,
        LogLevel::Debug,
        small(300, 2, true),
        Mill::Background,
    )
    .expect("open log");
    for i in 0..30 {
        emit(&logger, log::Level::Info, "m", &format!("line {i}"));
    }
    assert!(logger.wait_for_mill(Duration::from_secs(10)));
    // A mill that started before the last rotation may have missed it; the next rotation's mill catches up.
    emit(&logger, log::Level::Info, "m", &"z".repeat(300));
    assert!(logger.wait_for_mill(Duration::from_secs(10)));
    let names = tmp.names();
    let backups: Vec<&String> = names.iter().filter(|n| n.as_str() != "ipamd.log").collect();
    assert_eq!(backups.len(), 2, "{names:?}");
    assert!(backups.iter().all(|n| n.ends_with(".log.gz")), "{names:?}");
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

#[test]
fn a_backup_named_in_the_future_does_not_make_the_pruning_drop_the_newest_lines() {
    // A wall clock stepped back (or two rotations in one millisecond) must not give the next backup an
    // earlier name than an existing one: pruning goes by the names' times, oldest first.
    let tmp = TempDir::new("clock");
    let path = tmp.0.join("plugin.log");
    let ahead = logging::backup_path(&path, now_ms() + 3_600_000);
    std::fs::write(&ahead, "written before the clock was stepped back 0\n").expect("backup");
    let logger =
        Logger::file(&path, LogLevel::Debug, small(600, 1, false), Mill::Inline).expect("open log");
    for i in 0..15 {
        emit(
            &logger,
            log::Level::Info,
            "vpc_cni::cni",
            &format!("line {i:03}"),
        );
    }
    let files = log_files(&tmp.0);
    assert_eq!(files.len(), 2, "one backup and the live file: {files:?}");
    let backup: Vec<&String> = files.keys().filter(|n| *n != "plugin.log").collect();
    let text = &files[backup[0]];
    assert!(
        text.contains("line 000") && !text.contains("stepped back"),
        "the newest backup was pruned instead of the oldest: {files:?}"
    );
}
