//! Structured logging: the `log` facade with key-value pairs, written as pretty lines or JSON.
//!
//! Every event is a short message plus fields (`peer`, `session`, `verb`, `path`, `bytes`, …):
//!
//! ```text
//! 2026-11-24T10:00:00.000Z INFO  request session=3 verb=GET path=a.txt bytes_out=5 ms=0.2 outcome=ok
//! {"time":"2026-11-24T10:00:00.000Z","level":"info","msg":"request","session":3,"verb":"GET",…}
//! ```
//!
//! Lines go to standard error. Writing never panics (a closed stderr just drops lines), and
//! control characters in values are escaped so that a hostile file name cannot drive the
//! operator's terminal.

use crate::config::LogFormat;
use log::kv::{self, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};
use once_cell::sync::OnceCell;
use std::fmt::Write as _;
use std::io::Write as _;

static LOGGER: OnceCell<Logger> = OnceCell::new();

#[derive(Debug)]
struct Logger {
    format: LogFormat,
}

/// Installs the process-wide logger. Later calls keep the first logger and only adjust the level.
pub fn init(format: LogFormat, level: LevelFilter) {
    let logger = LOGGER.get_or_init(|| Logger { format });
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match self.format {
            LogFormat::Pretty => pretty(record),
            LogFormat::Json => json(record),
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

fn pretty(record: &Record<'_>) -> String {
    let mut out = String::with_capacity(160);
    let level = match record.level() {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    };
    let _ = write!(out, "{} {level} ", timestamp());
    escape_into(&mut out, &record.args().to_string());
    struct Pairs<'a>(&'a mut String);
    impl<'kvs> VisitSource<'kvs> for Pairs<'_> {
        fn visit_pair(
            &mut self,
            key: kv::Key<'kvs>,
            value: kv::Value<'kvs>,
        ) -> Result<(), kv::Error> {
            let _ = write!(self.0, " {key}=");
            let text = value.to_string();
            if text.is_empty() || text.contains([' ', '"', '=']) {
                self.0.push('"');
                escape_into(self.0, &text.replace('"', "\\\""));
                self.0.push('"');
            } else {
                escape_into(self.0, &text);
            }
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Pairs(&mut out));
    out.push('\n');
    out
}

fn json(record: &Record<'_>) -> String {
    let mut map = serde_json::Map::new();
    map.insert("time".into(), timestamp().into());
    map.insert(
        "level".into(),
        record.level().as_str().to_ascii_lowercase().into(),
    );
    map.insert("msg".into(), record.args().to_string().into());
    struct Pairs<'a>(&'a mut serde_json::Map<String, serde_json::Value>);
    impl<'kvs> VisitSource<'kvs> for Pairs<'_> {
        fn visit_pair(
            &mut self,
            key: kv::Key<'kvs>,
            value: kv::Value<'kvs>,
        ) -> Result<(), kv::Error> {
            let v: serde_json::Value = if let Some(n) = value.to_u64() {
                n.into()
            } else if let Some(n) = value.to_i64() {
                n.into()
            } else if let Some(f) = value.to_f64() {
                f.into()
            } else if let Some(b) = value.to_bool() {
                b.into()
            } else {
                value.to_string().into()
            };
            self.0.insert(key.to_string(), v);
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Pairs(&mut map));
    let mut line = serde_json::Value::Object(map).to_string();
    line.push('\n');
    line
}

/// Names and messages from the network are logged with the terminal-escape rules the client
/// shows them with.
pub use sft_protocol::escape::{escape, escape_into};

/// How much of a header line a debug line shows.
const HEADER_SHOWN: usize = 300;

/// A request's header line for a debug line: as received, cut to [`HEADER_SHOWN`] characters,
/// with the value of every field named `token` (any case, at any depth: `AUTH`'s and any
/// third-party verb's) replaced by `"(hidden)"`; such a line is shown re-encoded, its keys
/// in order of name. A line that is not JSON is shown only if it cannot hold a token (no
/// `token`, no escape that could spell one). The logger escapes what it writes.
pub(crate) fn header(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let shown = match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(mut value) => match redact(&mut value) {
            true => value.to_string(),
            false => text.into_owned(),
        },
        Err(_) if text.to_ascii_lowercase().contains("token") || text.contains('\\') => {
            format!(
                "<{} bytes, not JSON, not shown: it may hold a token>",
                line.len()
            )
        }
        Err(_) => text.into_owned(),
    };
    match shown.char_indices().nth(HEADER_SHOWN) {
        Some((cut, _)) => format!("{}…", &shown[..cut]),
        None => shown,
    }
}

/// Replaces the value of every `token` field in `value`; whether there was one.
fn redact(value: &mut serde_json::Value) -> bool {
    let mut found = false;
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key.eq_ignore_ascii_case("token") {
                    *v = "(hidden)".into();
                    found = true;
                } else {
                    found |= redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                found |= redact(v);
            }
        }
        _ => {}
    }
    found
}

/// The current UTC time as RFC 3339 with milliseconds.
fn timestamp() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_shown_without_tokens() {
        let plain = br#"{"verb":"GET","path":"a.txt"}"#;
        assert_eq!(header(plain), r#"{"verb":"GET","path":"a.txt"}"#);
        for line in [
            &br#"{"verb":"AUTH","token":"s3cret"}"#[..],
            br#"{"verb":"X","args":{"inner":[{"Token":"s3cret"}]}}"#,
            br#"{"verb":"AUTH","tok\u0065n":"s3cret"}"#,
            br#"{"verb":"AUTH","token":"s3cret""#,
            br#"{"verb":"AUTH","t\u006fken":"s3cret""#,
        ] {
            let shown = header(line);
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert!(header(br#"{"verb":"AUTH","token":"s3cret"}"#).contains(r#""token":"(hidden)""#));
        let long = format!(r#"{{"verb":"GET","path":"{}"}}"#, "a".repeat(1000));
        assert_eq!(header(long.as_bytes()).chars().count(), HEADER_SHOWN + 1);
    }

    #[test]
    fn timestamp_is_rfc3339() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
