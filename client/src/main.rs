//! `sft`: download files from and upload files to an sft server, look at its folder, and call
//! any verb it offers.

mod cmd;

use async_std::task;
use sft_client::{
    parse_server, BlockingWriter, Client, Error, ExitCode, GetOptions, SendOptions, Transfer,
};
use std::path::{Path, PathBuf};
use std::time::Instant;
use structopt::clap::ErrorKind;
use structopt::StructOpt;

const EXAMPLES: &str = "EXAMPLES:
    sft get files.example.org reports/q3.pdf          download to ./q3.pdf
    sft get 10.0.0.5:9000 logs/app.log /tmp/app.log   download to a chosen path
    sft get [::1] notes.txt -                         write to standard output
    sft send files.example.org ./photo.jpg inbox/     upload to inbox/photo.jpg
    sft send -p 9000 10.0.0.5 data.csv --overwrite    replace data.csv on the server
    sft ls files.example.org reports -r               list a folder and all below it
    sft stat files.example.org reports/q3.pdf         kind, size, modification time
    sft call files.example.org STAT '{\"path\":\"a.txt\"}'         any verb: prints the reply
    sft call files.example.org GET '{\"path\":\"a.txt\"}' -o a.txt  …and writes its body to a.txt

    sft get -c files.example.org big.iso              continue an interrupted download
    sft send --json host data.bin                     one JSON line with the outcome

Every transfer is verified with BLAKE3 unless --no-verify is given: a file is stored under its
final name only if what arrived hashes to what the sender vouched for.

EXIT CODES:
    0 success              1 local file error      2 usage error
    3 cannot connect       4 refused by server     5 transfer cut off
    6 protocol error       7 checksum mismatch";

#[derive(Debug, StructOpt)]
#[structopt(
    name = "sft",
    about = "Moves files to and from an sft server over TCP (port 7005 unless told otherwise).",
    after_help = EXAMPLES
)]
enum Cli {
    /// Download REMOTE from SERVER to LOCAL (default: REMOTE's file name here; `-` for stdout).
    #[structopt(after_help = EXAMPLES)]
    Get {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        server: String,
        /// Path of the file on the server, relative to its served folder.
        remote: String,
        /// Where to write it: a file, an existing folder, or `-` for standard output.
        #[structopt(parse(from_os_str))]
        local: Option<PathBuf>,
        /// Continue an interrupted download from its partial file (`.NAME.sft-part`).
        #[structopt(short = "c", long = "continue")]
        resume: bool,
        /// Skip the BLAKE3 check (faster; the file is still renamed into place only when complete).
        #[structopt(long)]
        no_verify: bool,
    },
    /// Upload LOCAL to SERVER as REMOTE (default: LOCAL's file name; a REMOTE ending in `/` is a folder).
    #[structopt(after_help = EXAMPLES)]
    Send {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        server: String,
        /// The local file to upload.
        #[structopt(parse(from_os_str))]
        local: PathBuf,
        /// Destination path on the server, relative to its served folder.
        remote: Option<String>,
        /// Replace the remote file if it exists.
        #[structopt(long)]
        overwrite: bool,
        /// Continue an interrupted upload that the server kept.
        #[structopt(short = "c", long = "continue")]
        resume: bool,
        /// Do not declare the file's BLAKE3 hash (the server then cannot verify, nor keep an
        /// interrupted upload for --continue).
        #[structopt(long)]
        no_verify: bool,
    },
    /// List the folder DIR on SERVER (default: the served folder itself).
    #[structopt(after_help = EXAMPLES)]
    Ls {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        server: String,
        /// Folder on the server, relative to its served folder.
        dir: Option<String>,
        /// Also list every folder below DIR (symlinks are shown, not followed).
        #[structopt(short, long)]
        recursive: bool,
    },
    /// Show the kind, size and modification time of PATH on SERVER.
    #[structopt(after_help = EXAMPLES)]
    Stat {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        server: String,
        /// Path on the server, relative to its served folder.
        path: String,
    },
    /// Send any VERB with JSON-ARGS; print the reply line, then any body (or write it to -o FILE).
    #[structopt(after_help = EXAMPLES)]
    Call {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        server: String,
        /// The verb, e.g. STAT, or one this client does not know.
        verb: String,
        /// The verb's arguments as a JSON object, e.g. '{"path":"a.txt"}' (default: {}).
        args: Option<String>,
        /// Write the reply's body to this file instead of standard output.
        #[structopt(short, long, parse(from_os_str))]
        output: Option<PathBuf>,
        /// Send this file (`-` for standard input) as the request's body, an upload; its length
        /// goes in the arguments' "size" unless they give one.
        #[structopt(short, long, parse(from_os_str))]
        input: Option<PathBuf>,
    },
}

#[derive(Debug, StructOpt)]
struct Common {
    /// Port to use when SERVER names none.
    #[structopt(short, long, default_value = "7005")]
    port: u16,
    /// Print nothing on success.
    #[structopt(short, long)]
    quiet: bool,
    /// Print JSON on standard output: the result (for `ls`, one JSON document), or the error.
    #[structopt(long)]
    json: bool,
}

fn main() {
    let cli = match Cli::from_iter_safe(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::HelpDisplayed | ErrorKind::VersionDisplayed
            ) =>
        {
            println!("{}", e.message);
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{}", e.message);
            std::process::exit(ExitCode::Usage as i32);
        }
    };
    let json = match &cli {
        Cli::Get { common, .. }
        | Cli::Send { common, .. }
        | Cli::Ls { common, .. }
        | Cli::Stat { common, .. }
        | Cli::Call { common, .. } => common.json,
    };
    let (code, name, message) = match task::block_on(run(cli)) {
        Ok(()) => std::process::exit(0),
        Err(Failure::Usage(m)) => (ExitCode::Usage, "usage", m),
        Err(Failure::Client(e)) => (e.exit_code(), e.code_name(), e.to_string()),
    };
    let message = escape(&message);
    eprintln!("error: {message}");
    if json {
        let line = serde_json::json!({"error": {"code": name, "message": message}, "exit_code": code as i32});
        println!("{line}");
    }
    std::process::exit(code as i32);
}

enum Failure {
    Usage(String),
    Client(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Client(e)
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let started = Instant::now();
    match cli {
        Cli::Get {
            common,
            server,
            remote,
            local,
            resume,
            no_verify,
        } => {
            let local = local_target(&remote, local)?;
            let mut client = connect(&server, &common).await?;
            let verify = !no_verify;
            let transfer = match &local {
                None => {
                    let mut stdout = BlockingWriter(std::io::stdout().lock());
                    client.get_with(&remote, &mut stdout, verify).await?
                }
                Some(path) => {
                    client
                        .get_file(&remote, path, GetOptions { verify, resume })
                        .await?
                }
            };
            let to = local
                .as_deref()
                .map_or("-".into(), |p| p.display().to_string());
            report(&common, "get", &remote, &to, &transfer, started);
        }
        Cli::Send {
            common,
            server,
            local,
            remote,
            overwrite,
            resume,
            no_verify,
        } => {
            let remote = remote_target(&local, remote)?;
            let mut client = connect(&server, &common).await?;
            let opts = SendOptions {
                overwrite,
                verify: !no_verify,
                resume,
            };
            let transfer = client.send_file(&local, &remote, opts).await?;
            report(
                &common,
                "send",
                &remote,
                &local.display().to_string(),
                &transfer,
                started,
            );
        }
        Cli::Ls {
            common,
            server,
            dir,
            recursive,
        } => {
            let mut client = connect(&server, &common).await?;
            let dir = dir.as_deref().unwrap_or("");
            cmd::ls::run(&mut client, dir, recursive, common.json).await?;
        }
        Cli::Stat {
            common,
            server,
            path,
        } => {
            let mut client = connect(&server, &common).await?;
            cmd::stat::run(&mut client, &path, common.json).await?;
        }
        Cli::Call {
            common,
            server,
            verb,
            args,
            output,
            input,
        } => {
            let call = cmd::call::Call::parse(verb, args.as_deref(), input, output)?;
            let mut client = connect(&server, &common).await?;
            call.run(&mut client).await?;
        }
    }
    Ok(())
}

/// Prints the outcome of a transfer: a JSON line with `--json`, a summary unless `-q`.
fn report(common: &Common, verb: &str, remote: &str, local: &str, t: &Transfer, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let rate = t.bytes_transferred as f64 / secs.max(1e-9);
    if common.json {
        let line = serde_json::json!({
            "verb": verb,
            "remote": remote,
            "local": local,
            "size": t.size,
            "bytes_transferred": t.bytes_transferred,
            "resumed_from": t.resumed_from,
            "blake3": t.blake3,
            "elapsed_ms": (secs * 1e3 * 1e3).round() / 1e3,
            "bytes_per_sec": rate.round(),
        });
        println!("{line}");
    } else if !common.quiet {
        let (from, to) = if verb == "get" {
            (remote, local)
        } else {
            (local, remote)
        };
        let resumed = if t.resumed_from > 0 {
            format!(", resumed at byte {}", t.resumed_from)
        } else {
            String::new()
        };
        let verified = if t.blake3.is_some() { ", verified" } else { "" };
        eprintln!(
            "{verb} {} → {}: {} bytes in {secs:.2} s ({:.1} MB/s{resumed}{verified})",
            escape(from),
            escape(to),
            t.size,
            rate / 1e6
        );
    }
}

async fn connect(server: &str, common: &Common) -> Result<Client, Failure> {
    let addr = parse_server(server, common.port).map_err(Failure::Usage)?;
    Ok(Client::connect_to(addr).await?)
}

/// Where a download goes: `None` for stdout.
fn local_target(remote: &str, local: Option<PathBuf>) -> Result<Option<PathBuf>, Failure> {
    let name = || {
        remote
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .map(PathBuf::from)
            .ok_or_else(|| Failure::Usage(format!("{remote:?} names no file; give a LOCAL path")))
    };
    match local {
        Some(p) if p.as_os_str() == "-" => Ok(None),
        Some(p) if p.is_dir() => Ok(Some(p.join(name()?))),
        Some(p) => Ok(Some(p)),
        None => name().map(Some),
    }
}

/// Where an upload goes on the server.
fn remote_target(local: &Path, remote: Option<String>) -> Result<String, Failure> {
    let name = || {
        local
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "{} has no UTF-8 file name; give a REMOTE path",
                    local.display()
                ))
            })
    };
    match remote {
        None => name(),
        Some(r) if r.ends_with('/') => Ok(format!("{r}{}", name()?)),
        Some(r) => Ok(r),
    }
}

/// Shows control characters in names from the network as `\u{…}`, so they cannot drive the terminal.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                format!("\\u{{{:x}}}", c as u32).chars().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
