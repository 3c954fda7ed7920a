//! Command-line configuration (structopt).

use crate::access::Cidr;
use sft_commands::{Limits, SignSlots, UploadSlots};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use structopt::StructOpt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, for a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (use pretty or json)")),
        }
    }
}

/// The end of `sft-server`'s `--help`. A server binary of another name shows it with its own
/// name (see [`run_main`](crate::run_main)).
pub(crate) const AFTER_HELP: &str = "EXAMPLES:\n    sft-server                          serve the current folder on port 7005, IPv6 and IPv4\n    sft-server --root /srv/files -p 9000\n    sft-server --host ::1 --port 0      loopback IPv6, any free port (logged)\n    sft-server --read-only --host 127.0.0.1\n                                        downloads only, from this machine only\n    sft-server --max-upload-bytes 1073741824\n                                        refuse uploads over 1 GiB (streams too)\n    sft-server --max-partials 100 --partial-ttl 3600\n                                        keep at most 100 interrupted uploads, for an hour\n    SFT_LOG=debug sft-server --log-format json\n    sft-server --tokens tokens.txt --allow 10.0.0.0/8 --allow ::1\n                                        tokens required; 10.0.0.0/8 and ::1 only\n    sft-server --tls-self-signed ~/.config/sft-server/tls\n                                        TLS with a certificate made once; clients pin\n                                        the fingerprint it logs (sft --fingerprint HEX)\n    sft-server --metrics 127.0.0.1:9105 Prometheus metrics at http://127.0.0.1:9105/metrics\n\nSIGNALS:\n    SIGINT, SIGTERM   stop accepting, let transfers finish (see --shutdown-grace), exit 0;\n                      a second signal exits at once\n    SIGHUP            with --tokens: reload the tokens file (a bad one keeps the old tokens);\n                      without: log that there is nothing to reload. Never stops the server";

/// `sft-server`'s options.
#[derive(Debug, Clone, StructOpt)]
#[structopt(
    name = "sft-server",
    about = "Serves a folder over the sft protocol: clients GET files from it and SEND files to it.",
    after_help = AFTER_HELP
)]
pub struct Config {
    /// Address or host name to listen on (default: every IPv6 and IPv4 address, or every IPv4
    /// one where IPv6 is unavailable).
    #[structopt(long)]
    pub host: Option<String>,

    /// TCP port to listen on; 0 picks a free one and logs it.
    #[structopt(short, long, default_value = "7005")]
    pub port: u16,

    /// The folder to serve. Nothing outside it is ever read or written.
    #[structopt(long, default_value = ".", parse(from_os_str))]
    pub root: PathBuf,

    /// Log line format: pretty or json.
    #[structopt(long, default_value = "pretty", possible_values = &["pretty", "json"])]
    pub log_format: LogFormat,

    /// Log level: error, warn, info, debug or trace.
    #[structopt(long, env = "SFT_LOG", default_value = "info")]
    pub log_level: log::LevelFilter,

    /// Refuse uploads that declare more than this many bytes (default: no limit).
    #[structopt(long)]
    pub max_upload_bytes: Option<u64>,

    /// Refuse every request that would write (uploads, new folders).
    #[structopt(long)]
    pub read_only: bool,

    /// Most connections served at once; one more gets a `busy` error and is closed. Lowered at
    /// start-up (with a warning) when the open-file limit cannot serve that many.
    #[structopt(long, default_value = "1024")]
    pub max_connections: usize,

    /// Close a connection that sends no request for this many seconds.
    #[structopt(long, default_value = "300")]
    pub idle_timeout: u64,

    /// A header line, once started, must be complete within this many seconds.
    #[structopt(long, default_value = "10")]
    pub header_timeout: u64,

    /// Abort a transfer when no byte moves for this many seconds (either direction).
    #[structopt(long, default_value = "60")]
    pub stall_timeout: u64,

    /// Abort a transfer that, once older than --stall-timeout, has averaged fewer than this
    /// many bytes a second (either direction; 0: no minimum). Stops a client that trickles a
    /// byte now and then to hold a connection; far below any real link.
    #[structopt(long, default_value = "256")]
    pub min_rate: u64,

    /// Most uploads received at once, server-wide; one more gets a `busy` error.
    #[structopt(long, default_value = "128")]
    pub max_uploads: usize,

    /// Most file signatures (SIGN, for delta transfers) computed at once, server-wide; more
    /// wait their turn. Each reads a whole file once; signatures already cached cost nothing.
    #[structopt(long, default_value = "2")]
    pub max_signatures: usize,

    /// Refuse compressed transfers (`"compress":"zstd"`, protocol 3) with `unsupported`, in
    /// both directions; HELLO then offers no compression.
    #[structopt(long)]
    pub no_compress: bool,

    /// The highest zstd level the server compresses downloads at: a client asking more gets
    /// this (uploads are taken at any level).
    #[structopt(long, default_value = "9", value_name = "N")]
    pub compress_level_max: i32,

    /// Keep interrupted uploads (for `sft send --continue`) this many seconds.
    #[structopt(long, default_value = "86400")]
    pub partial_ttl: u64,

    /// Keep at most this many interrupted uploads; beyond it the oldest is removed (0: keep
    /// none). Together they also hold at most --max-upload-bytes.
    #[structopt(long, default_value = "1000")]
    pub max_partials: usize,

    /// Answer a request `unavailable` when its storage makes no progress for this many seconds
    /// (a hung network file system): other connections, and HELLO, are answered meanwhile.
    #[structopt(long, default_value = "30", value_name = "SECONDS")]
    pub storage_timeout: u64,

    /// Most file-system calls waiting on the storage at once; each holds a thread while the
    /// storage hangs, and more wait their turn (within --storage-timeout).
    #[structopt(long, default_value = "64", value_name = "N")]
    pub storage_jobs: usize,

    /// Threads running connections (default: one per CPU, which measured best both for one
    /// client and for many). File I/O and hashing of large bodies run on a separate blocking
    /// pool either way.
    #[structopt(long)]
    pub threads: Option<usize>,

    /// On SIGINT/SIGTERM, give transfers in progress this many seconds to finish.
    #[structopt(long, default_value = "30")]
    pub shutdown_grace: u64,

    /// Require a token: FILE has one line per token, `NAME read|write SHA256HEX` (the hex
    /// SHA-256 of the token: `printf %s "$TOKEN" | sha256sum`; `#` starts a comment). Every
    /// request but HELLO and AUTH then needs one; SIGHUP reloads the file.
    #[structopt(long, value_name = "FILE", parse(from_os_str))]
    pub tokens: Option<PathBuf>,

    /// Accept connections only from these addresses (repeatable): `10.0.0.0/8`, `::1/128`, or
    /// a bare address. Others are closed at once, unread.
    #[structopt(long = "allow", value_name = "CIDR", number_of_values = 1)]
    pub allow: Vec<Cidr>,

    /// Serve metrics in the Prometheus text format at `http://ADDR/metrics`, on a port of
    /// their own (`HOST:PORT`, e.g. 127.0.0.1:9105; port 0 picks a free one and logs it).
    /// Off by default. Anyone who can reach ADDR may read them: keep it on loopback or a
    /// monitoring network.
    #[structopt(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// Serve TLS (1.3 and 1.2) with this certificate chain (PEM), on the same port: plaintext
    /// requests are then refused with `tls_required`. Needs --tls-key. The certificate's
    /// SHA-256 fingerprint, what clients pin with --fingerprint, is logged at start-up.
    #[structopt(long, value_name = "FILE", parse(from_os_str), requires = "tls-key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: RSA, ECDSA or Ed25519).
    #[structopt(long, value_name = "FILE", parse(from_os_str), requires = "tls-cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve TLS with a self-signed certificate kept in DIR (cert.pem, key.pem), created there
    /// on the first start (for localhost, 127.0.0.1, ::1 and this machine's name) and reused
    /// later. Clients pin it with --fingerprint, as logged at start-up.
    #[structopt(
        long,
        value_name = "DIR",
        parse(from_os_str),
        conflicts_with_all = &["tls-cert", "tls-key"]
    )]
    pub tls_self_signed: Option<PathBuf>,
}

impl Config {
    /// Parses options from an iterator of arguments (the first is the program name).
    pub fn from_args_iter<I, T>(args: I) -> Result<Config, structopt::clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::from_iter_safe(args)
    }

    /// Where the served root's file-system work runs: `--storage-jobs` at once, each given up
    /// on after `--storage-timeout` without progress.
    pub fn storage_pool(&self) -> sft_io::Pool {
        sft_io::Pool::new(
            self.storage_jobs.max(1),
            Duration::from_secs(self.storage_timeout.max(1)),
        )
    }

    /// The limits handlers enforce.
    pub fn limits(&self) -> Limits {
        Limits {
            max_upload_bytes: self.max_upload_bytes,
            read_only: self.read_only,
            // Loaded from `--tokens` when the server binds.
            tokens: None,
            max_connections: Some(self.max_connections.max(1)),
            stall_timeout: Duration::from_secs(self.stall_timeout.max(1)),
            min_rate: self.min_rate,
            uploads: UploadSlots::new(self.max_uploads),
            partial_ttl: Duration::from_secs(self.partial_ttl),
            max_partials: self.max_partials,
            signing: SignSlots::new(self.max_signatures),
            compress_level_max: (!self.no_compress).then_some(self.compress_level_max.clamp(1, 19)),
        }
    }
}
