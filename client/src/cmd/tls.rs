//! `--tls`, `--ca`, `--fingerprint` and the known-hosts file: how the connections of a run are
//! secured.
//!
//! A pin given with `--fingerprint` is remembered, once a connection with it succeeded, in
//! `$XDG_CONFIG_HOME/sft/known_hosts` (or `~/.config/sft/known_hosts`), one `HOST:PORT HEX` a
//! line. A later connection to that HOST:PORT without `--tls`, `--ca` or `--fingerprint` uses
//! TLS with the remembered pin: a server that then presents another certificate is refused,
//! loudly, and never silently talked to in plaintext.

use sft_client::{Error, Fingerprint, ServerAddr, TlsSettings, Trust};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

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

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// The settings worked out for the server of this run (a run talks to one server).
static DECIDED: Mutex<Option<(String, Option<Secured>)>> = Mutex::new(None);

/// Records the TLS options of this run (from main, once).
pub(crate) fn set_flags(flags: Flags) {
    let _ = FLAGS.set(flags);
}

/// Parses `--fingerprint`.
pub(crate) fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    s.parse()
}

/// How to connect to `server`: TLS as the options say, else TLS pinned to the certificate
/// remembered for it, else plaintext (`None`).
pub(crate) async fn secured(server: &ServerAddr) -> Result<Option<Secured>, Error> {
    let key = key(server);
    if let Ok(decided) = DECIDED.lock() {
        if let Some((k, secured)) = &*decided {
            if *k == key {
                return Ok(secured.clone());
            }
        }
    }
    let flags = FLAGS.get().cloned().unwrap_or_default();
    let decided = async_std::task::spawn_blocking({
        let key = key.clone();
        move || decide(&flags, &key)
    })
    .await?;
    if let Ok(mut slot) = DECIDED.lock() {
        *slot = Some((key, decided.clone()));
    }
    Ok(decided)
}

/// After a successful connection: remembers the pin of `--fingerprint` for `server`. A file
/// that cannot be written costs a warning, not the transfer.
pub(crate) async fn connected(server: &ServerAddr, secured: &Secured) {
    let Some(pin) = secured.remember else {
        return;
    };
    let key = key(server);
    if let Ok(mut slot) = DECIDED.lock() {
        // Remembered once a run.
        if let Some((k, Some(s))) = &mut *slot {
            if *k == key {
                s.remember = None;
            }
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

/// The pin remembered for `key`, if any (a missing file holds none).
fn lookup(file: &Path, key: &str) -> io::Result<Option<Fingerprint>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(text.lines().find_map(|line| {
        let (host, hex) = parse_line(line)?;
        (host == key).then(|| hex.parse().ok()).flatten()
    }))
}

/// `HOST:PORT HEX`; `None` for blank lines and `#` comments.
fn parse_line(line: &str) -> Option<(String, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let host = fields.next()?.to_ascii_lowercase();
    Some((host, fields.next()?))
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
}
