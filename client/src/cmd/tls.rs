//! `--tls`, `--ca`, `--fingerprint` and the known-hosts file: how the connections of a run are
//! secured.
//!
//! A pin given with `--fingerprint` is remembered, once a connection with it succeeded, in
//! `$XDG_CONFIG_HOME/sft/known_hosts` (or `~/.config/sft/known_hosts`), one `HOST:PORT HEX` a
//! line. A later connection to that HOST:PORT without `--tls`, `--ca` or `--fingerprint` uses
//! TLS with the remembered pin: a server that then presents another certificate is refused,
//! loudly, and never silently talked to in plaintext. A line for that HOST:PORT whose pin
//! cannot be read is an error naming the line, never plaintext either.

use sft_client::{Error, Fingerprint, ServerAddr, TlsSettings, Trust};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The TLS options of the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    /// `--tls`: trust the system's roots.
    pub(crate) tls: bool,
    /// `--ca FILE`.
    pub(crate) ca: Option<PathBuf>,
    /// `--fingerprint HEX`.
    pub(crate) fingerprint: Option<Fingerprint>,
}

/// How connections to one server are made.
#[derive(Debug, Clone)]
pub(crate) struct Secured {
    /// The TLS settings.
    pub(crate) settings: TlsSettings,
    /// A pin from the command line, to remember once a connection succeeded.
    remember: Option<Fingerprint>,
}

/// The TLS of a run's connections: the options, and what they decided for its server.
#[derive(Debug, Default)]
pub(crate) struct Tls {
    flags: Flags,
    /// The settings worked out for the server of this run, once (a run talks to one server;
    /// its reconnections reuse them).
    decided: Mutex<Option<(String, Option<Secured>)>>,
}

/// Parses `--fingerprint`.
pub(crate) fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    s.parse()
}

impl Tls {
    /// The TLS of a run with these options.
    pub(crate) fn new(flags: Flags) -> Tls {
        Tls {
            flags,
            decided: Mutex::default(),
        }
    }

    /// How to connect to `server`: TLS as the options say, else TLS pinned to the certificate
    /// remembered for it, else plaintext (`None`).
    pub(crate) async fn secured(&self, server: &ServerAddr) -> Result<Option<Secured>, Error> {
        let key = key(server);
        if let Some((k, secured)) = &*self.decided.lock().unwrap_or_else(|e| e.into_inner()) {
            if *k == key {
                return Ok(secured.clone());
            }
        }
        let flags = self.flags.clone();
        let decided = async_std::task::spawn_blocking({
            let key = key.clone();
            move || decide(&flags, &key)
        })
        .await?;
        *self.decided.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, decided.clone()));
        Ok(decided)
    }

    /// After a successful connection: remembers the pin of `--fingerprint` for `server`. A
    /// file that cannot be written costs a warning, not the transfer.
    pub(crate) async fn connected(&self, server: &ServerAddr, secured: &Secured) {
        let Some(pin) = secured.remember else {
            return;
        };
        let key = key(server);
        // Remembered once a run.
        if let Some((k, Some(s))) = &mut *self.decided.lock().unwrap_or_else(|e| e.into_inner()) {
            if *k == key {
                s.remember = None;
            }
        }
        let Some(file) = known_hosts() else {
            return;
        };
        let written = async_std::task::spawn_blocking({
            let file = file.clone();
            move || remember(&file, &key, pin)
        })
        .await;
        if let Err(e) = written {
            eprintln!(
                "warning: could not remember the certificate of {server} in {}: {e}",
                file.display()
            );
        }
    }
}

fn decide(flags: &Flags, key: &str) -> Result<Option<Secured>, Error> {
    let (trust, remember) = if let Some(pin) = flags.fingerprint {
        (
            Trust::Pin {
                fingerprint: pin,
                remembered_in: None,
            },
            Some(pin),
        )
    } else if let Some(ca) = &flags.ca {
        (Trust::Ca(ca.clone()), None)
    } else if flags.tls {
        (Trust::SystemRoots, None)
    } else {
        let Some(file) = known_hosts() else {
            return Ok(None);
        };
        match lookup(&file, key) {
            Ok(Some(pin)) => (
                Trust::Pin {
                    fingerprint: pin,
                    remembered_in: Some(file),
                },
                None,
            ),
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Error::Local {
                    path: file,
                    action: "read",
                    source: e,
                })
            }
        }
    };
    Ok(Some(Secured {
        settings: TlsSettings::new(trust)?,
        remember,
    }))
}

/// How a server is named in the known-hosts file: `host:port`, `[v6]:port`.
fn key(server: &ServerAddr) -> String {
    server.to_string().to_ascii_lowercase()
}

/// The known-hosts file: `$XDG_CONFIG_HOME/sft/known_hosts`, or `~/.config/sft/known_hosts`.
pub(crate) fn known_hosts() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".config"))
        })?;
    Some(config.join("sft").join("known_hosts"))
}

/// The pin remembered for `key`, if any (a missing file holds none). An entry for `key` whose
/// pin cannot be read is an error naming its line, never "no pin": a line for a server means
/// TLS only, and a damaged one must not let the connection fall back to plaintext.
fn lookup(file: &Path, key: &str) -> io::Result<Option<Fingerprint>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for (n, line) in text.lines().enumerate() {
        let Some((host, pin)) = parse_line(line) else {
            continue;
        };
        if host != key {
            continue;
        }
        return match pin.map(str::parse::<Fingerprint>) {
            Some(Ok(pin)) => Ok(Some(pin)),
            Some(Err(_)) | None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "line {}: the certificate remembered for {key} is not a SHA-256 fingerprint \
                     (64 hex digits), so the connection would not be secured; it is not made in \
                     plaintext either: fix or remove the line, or connect once with \
                     --fingerprint HEX to replace it",
                    n + 1
                ),
            )),
        };
    }
    Ok(None)
}

/// `HOST:PORT HEX`, the pin `None` when missing; `None` for blank lines and `#` comments.
fn parse_line(line: &str) -> Option<(String, Option<&str>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let host = fields.next()?.to_ascii_lowercase();
    Some((host, fields.next()))
}

/// Writes `key pin` into the file, replacing the line for `key` if there is one; the file is
/// created readable by its owner only, and replaced whole (no half-written file).
fn remember(file: &Path, key: &str, pin: Fingerprint) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let old = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let entry = format!("{key} {pin}");
    let mut lines: Vec<&str> = Vec::new();
    let mut replaced = false;
    for line in old.lines() {
        match parse_line(line) {
            Some((host, _)) if host == key => {
                if line.trim() == entry {
                    return Ok(());
                }
                if !replaced {
                    lines.push(&entry);
                    replaced = true;
                }
            }
            _ => lines.push(line),
        }
    }
    if !replaced {
        lines.push(&entry);
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".known_hosts.{}", std::process::id()));
    let written = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_remembered_replaced_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sft").join("known_hosts");
        let a = Fingerprint([1; 32]);
        let b = Fingerprint([2; 32]);
        assert_eq!(lookup(&file, "h:1").unwrap(), None);
        remember(&file, "h:1", a).unwrap();
        remember(&file, "[::1]:2", b).unwrap();
        assert_eq!(lookup(&file, "h:1").unwrap(), Some(a));
        assert_eq!(lookup(&file, "[::1]:2").unwrap(), Some(b));
        remember(&file, "h:1", b).unwrap();
        assert_eq!(lookup(&file, "h:1").unwrap(), Some(b));
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unreadable_pin_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let good = Fingerprint([3; 32]);
        let text = format!("# pins\nother:1 {good}\nh:1 not-hex\nh:2\nh:3 {good} extra\n");
        std::fs::write(&file, text).unwrap();
        assert_eq!(lookup(&file, "other:1").unwrap(), Some(good));
        assert_eq!(lookup(&file, "h:3").unwrap(), Some(good));
        assert_eq!(lookup(&file, "h:4").unwrap(), None);
        let e = lookup(&file, "h:1").unwrap_err();
        assert!(e.to_string().starts_with("line 3: "), "{e}");
        let e = lookup(&file, "h:2").unwrap_err();
        assert!(e.to_string().starts_with("line 4: "), "{e}");
        // A pin given on the command line replaces the damaged line.
        remember(&file, "h:1", good).unwrap();
        assert_eq!(lookup(&file, "h:1").unwrap(), Some(good));
    }
}
