//! The `sft` subcommands, one file each, and what they share: the common options, the
//! terminal display ([`ui`]), retries and reports ([`transfer`]), and local file safety
//! ([`local`]).

pub(crate) mod call;
pub(crate) mod connect;
pub(crate) mod get;
mod glob;
pub(crate) mod info;
pub(crate) mod local;
pub(crate) mod ls;
mod mirror;
pub(crate) mod mv;
pub(crate) mod paths;
mod plan;
pub(crate) mod send;
pub(crate) mod size;
pub(crate) mod stat;
mod sync;
pub(crate) mod terminal;
mod time;
pub(crate) mod tls;
pub(crate) mod transfer;
pub(crate) mod ui;
mod wire;

use crate::Failure;
use sft_client::Error;
use std::io::{self, Write};
use std::path::PathBuf;
use structopt::StructOpt;

// Options every subcommand that talks to a server takes. A plain comment, not a doc comment:
// structopt would show a flattened struct's doc as the `about` of every subcommand holding it.
#[derive(Debug, StructOpt)]
pub(crate) struct Common {
    /// Port to use when SERVER names none.
    #[structopt(short, long, default_value = "7005")]
    pub(crate) port: u16,
    /// Print nothing on success: no progress, no summary (errors are still shown).
    #[structopt(short, long)]
    pub(crate) quiet: bool,
    /// Say more: a line per file, connections, retries.
    #[structopt(short, long)]
    pub(crate) verbose: bool,
    /// Print JSON on standard output: the result (for `ls`, one JSON document), or the error
    /// (on standard error when a download goes to standard output).
    #[structopt(long)]
    pub(crate) json: bool,
    /// Give up on connecting (all of the server's addresses together), or on a transfer that
    /// moves nothing, after this many seconds (0: wait as long as the system does). A stalled
    /// transfer counts as cut off: see --retries, -c.
    #[structopt(long, default_value = "60", value_name = "SECS")]
    pub(crate) timeout: u64,
    /// Authenticate with this token (a server started with --tokens requires one). Sent once
    /// per connection: over TLS to any server, in plaintext only to this machine unless
    /// --insecure-token.
    #[structopt(long, env = "SFT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// Send the token to a server on another machine although the connection is not
    /// encrypted: anyone on the way can read it.
    #[structopt(long)]
    pub(crate) insecure_token: bool,
    /// Move at most RATE bytes a second, downloads and uploads alike; K, M and G suffixes are
    /// 1024-based (like curl: 500K, 2M).
    #[structopt(long, value_name = "RATE", parse(try_from_str = parse_rate))]
    pub(crate) limit_rate: Option<u64>,
    /// Connect with TLS, trusting certificates from the authorities this machine trusts.
    #[structopt(long)]
    pub(crate) tls: bool,
    /// Connect with TLS, trusting certificates issued by the CA in FILE (PEM); the server's
    /// name or address is checked against its certificate. A self-signed certificate in FILE
    /// (`openssl req -x509 …`) is trusted as the server's own. Implies --tls.
    #[structopt(
        long,
        value_name = "FILE",
        parse(from_os_str),
        conflicts_with = "fingerprint"
    )]
    pub(crate) ca: Option<PathBuf>,
    /// Connect with TLS to the server whose certificate has this SHA-256 fingerprint (what
    /// sft-server logs at start-up), for self-signed certificates. Remembered for the server
    /// in ~/.config/sft/known_hosts once it worked: later connections need no flag. Implies
    /// --tls.
    #[structopt(long, value_name = "HEX", parse(try_from_str = tls::parse_fingerprint))]
    pub(crate) fingerprint: Option<sft_client::Fingerprint>,
}

/// Parses a `--limit-rate` value: bytes a second, with an optional K, M or G (1024-based).
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let scale: u64 = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return Err(format!("{s:?}: the suffix must be K, M or G")),
    };
    let n: f64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a rate: a number of bytes a second, e.g. 500K"))?;
    let rate = (n * scale as f64) as u64;
    if !n.is_finite() || rate == 0 {
        return Err(format!(
            "{s:?}: the rate must be at least one byte a second"
        ));
    }
    Ok(rate)
}

impl Common {
    /// `--timeout` as the client library takes it.
    pub(crate) fn stall(&self) -> Option<std::time::Duration> {
        (self.timeout > 0).then(|| std::time::Duration::from_secs(self.timeout))
    }

    /// `--tls`, `--ca` and `--fingerprint`.
    pub(crate) fn tls_flags(&self) -> tls::Flags {
        tls::Flags {
            tls: self.tls,
            ca: self.ca.clone(),
            fingerprint: self.fingerprint,
        }
    }
}

/// Wraps a local I/O error with the path and what was attempted.
pub(crate) fn local_error(
    path: impl Into<PathBuf>,
    action: &'static str,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Local {
        path,
        action,
        source,
    }
}

/// The exit status of a command whose standard output was closed under it: what a shell
/// reports for a tool killed by SIGPIPE (128 + 13), so `sft get … - | head` ends quietly.
pub(crate) const CLOSED_PIPE: i32 = 141;

/// Whether `e` is a write to a reader that went away (a closed pipe).
pub(crate) fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Ends the program quietly because standard output was closed.
pub(crate) fn exit_closed_pipe() -> ! {
    std::process::exit(CLOSED_PIPE)
}

/// Writes one line of machine output (`--json`), escaped for a terminal: on standard output,
/// or on standard error when standard output carries data (`sft get SERVER REMOTE -`): never
/// into the data. A closed standard output ends the program quietly.
pub(crate) fn machine_line(line: &str, stdout_is_data: bool) {
    text_line(&terminal::json(line), stdout_is_data);
}

/// Writes one line of a result meant for people (a dry run's list), already escaped: where
/// [`machine_line`] would.
pub(crate) fn text_line(line: &str, stdout_is_data: bool) {
    if stdout_is_data {
        eprintln!("{line}");
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if is_closed_pipe(&e) {
            exit_closed_pipe();
        }
        eprintln!("error: cannot write to standard output: {e}");
    }
}

/// A failed write to standard output (a closed pipe, a full disk) as a local error.
fn stdout_failed(source: io::Error) -> Failure {
    Failure::Client(Error::Local {
        path: PathBuf::from("-"),
        action: "write",
        source,
    })
}
