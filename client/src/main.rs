//! `sft`: download files from and upload files to an sft server, look at its folder, and call
//! any verb it offers.

mod cmd;

use async_std::task;
use sft_client::{parse_server, Client, Error, ExitCode};
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

EXIT CODES:
    0 success              1 local file error      2 usage error
    3 cannot connect       4 refused by server     5 transfer cut off
    6 protocol error";

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
        /// Print one JSON document instead of a table.
        #[structopt(long)]
        json: bool,
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
        /// Print the entry as JSON.
        #[structopt(long)]
        json: bool,
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
    let code = match task::block_on(run(cli)) {
        Ok(()) => ExitCode::Ok,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::Usage
        }
        Err(Failure::Client(e)) => {
            eprintln!("error: {}", escape(&e.to_string()));
            e.exit_code()
        }
    };
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
        } => {
            let local = local_target(&remote, local)?;
            let mut client = connect(&server, &common).await?;
            let size = match &local {
                None => {
                    let mut stdout = async_std::io::stdout();
                    client.get(&remote, &mut stdout).await?
                }
                Some(path) => client.get_file(&remote, path).await?,
            };
            if !common.quiet {
                let to = local
                    .as_deref()
                    .map_or("stdout".into(), |p| p.display().to_string());
                summary("received", &remote, &to, size, started);
            }
        }
        Cli::Send {
            common,
            server,
            local,
            remote,
            overwrite,
        } => {
            let remote = remote_target(&local, remote)?;
            let mut client = connect(&server, &common).await?;
            let size = client.send_file(&local, &remote, overwrite).await?;
            if !common.quiet {
                summary("sent", &local.display().to_string(), &remote, size, started);
            }
        }
        Cli::Ls {
            common,
            server,
            dir,
            recursive,
            json,
        } => {
            let mut client = connect(&server, &common).await?;
            cmd::ls::run(&mut client, dir.as_deref().unwrap_or(""), recursive, json).await?;
        }
        Cli::Stat {
            common,
            server,
            path,
            json,
        } => {
            let mut client = connect(&server, &common).await?;
            cmd::stat::run(&mut client, &path, json).await?;
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

fn summary(verb: &str, from: &str, to: &str, size: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let rate = size as f64 / secs.max(1e-9) / 1e6;
    eprintln!(
        "{verb} {} → {}: {size} bytes in {secs:.2} s ({rate:.1} MB/s)",
        escape(from),
        escape(to)
    );
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
