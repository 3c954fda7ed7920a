//! `sft`: download files from and upload files to an sft server, look at its folder, and call
//! any verb it offers.

mod cmd;

use async_std::task;
pub(crate) use cmd::terminal::escape;
use cmd::{get::GetArgs, send::SendArgs, Common};
use sft_client::{parse_server, Client, Error, ExitCode};
use std::path::PathBuf;
use structopt::clap::{AppSettings, ErrorKind, Shell};
use structopt::StructOpt;

const EXAMPLES: &str = "EXAMPLES:
    sft get files.example.org reports/q3.pdf          download to ./q3.pdf
    sft get 10.0.0.5:9000 logs/app.log /tmp/app.log   download to a chosen path
    sft get [::1] notes.txt -                         write to standard output
    sft get host -o inbox/ a.txt b.txt c/d.txt        many files into inbox/, one connection
    sft get -r host photos/2024 ./2024                a folder and everything in it
    sft send files.example.org ./photo.jpg inbox/     upload to inbox/photo.jpg
    sft send -p 9000 10.0.0.5 data.csv --overwrite    replace data.csv on the server
    sft send host *.csv -o reports/                   many files into reports/ on the server
    sft send -r host ./site www                       a folder, empty folders included
    sft send -rn --delete --overwrite host ./site www what a mirror would do (changes nothing)
    sft get -r --delete host photos/2024 ./2024       mirror: remove local files gone there
    tar c src | sft send host - backup/src.tar        standard input, streamed and verified
    sft ls files.example.org reports -r               list a folder and all below it
    sft stat files.example.org reports/q3.pdf         kind, size, modification time
    sft rm host inbox/old.txt inbox/older.txt         remove files (--folder: empty folders)
    sft mkdir host archive/2024 inbox                 create folders (and missing parents)
    sft mv host inbox/q3.pdf archive/q3.pdf           move or rename, atomically
    sft mv host inbox/q4.pdf archive/                 move into a folder
    sft info files.example.org                        server version, verbs and limits
    sft call files.example.org STAT '{\"path\":\"a.txt\"}'         any verb: prints the reply
    sft call files.example.org GET '{\"path\":\"a.txt\"}' -o a.txt  …and writes its body to a.txt

    sft get -c files.example.org big.iso              continue an interrupted download
    sft get --retries 5 host big.iso                  reconnect and resume if the link drops
    sft send --json host data.bin                     one JSON line with the outcome
    sft completions bash > /etc/bash_completion.d/sft shell completions (bash, zsh, fish…)

On a terminal, transfers show progress (bytes, percent, rate, time left) and end with a
summary; -q hides both, and a standard error that is not a terminal gets neither (errors are
always shown). -v adds the summary anywhere, and a line per file.

Every transfer is verified with BLAKE3 unless --no-verify is given: a file is stored under its
final name only if what arrived hashes to what the sender vouched for.

EXIT CODES:
    0 success              1 local file error      2 usage error
    3 cannot connect       4 refused by server     5 cut off or busy (transient)
    6 protocol error       7 checksum mismatch     130 interrupted (Ctrl-C)
    141 standard output closed (as a tool killed by SIGPIPE)";

#[derive(Debug, StructOpt)]
#[structopt(
    name = "sft",
    about = "Moves files to and from an sft server over TCP (port 7005 unless told otherwise).",
    after_help = EXAMPLES,
    // One [OPTIONS] list (flags and options together): nothing in a usage line looks required
    // but what is. No colour anywhere (clap's colour feature is off, see Cargo.toml).
    global_settings = &[AppSettings::UnifiedHelpMessage]
)]
enum Cli {
    /// Download REMOTE to LOCAL; with -o DIR many files, with -r whole folders.
    #[structopt(
        after_help = EXAMPLES,
        usage = "sft get [OPTIONS] SERVER REMOTE [LOCAL]\n    \
                 sft get [OPTIONS] -o DIR SERVER REMOTE...\n    \
                 sft get [OPTIONS] -r SERVER DIR [LOCAL_DIR]"
    )]
    Get(GetArgs),
    /// Upload LOCAL (`-` for standard input) as REMOTE; with -o REMOTE_DIR many files, with -r
    /// whole folders.
    #[structopt(
        after_help = EXAMPLES,
        usage = "sft send [OPTIONS] SERVER LOCAL [REMOTE]\n    \
                 sft send [OPTIONS] -o REMOTE_DIR SERVER LOCAL...\n    \
                 sft send [OPTIONS] -r SERVER LOCAL_DIR [REMOTE_DIR]"
    )]
    Send(SendArgs),
    /// List the folder DIR on SERVER (default: the served folder itself).
    #[structopt(after_help = EXAMPLES)]
    Ls {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        #[structopt(value_name = "SERVER")]
        server: String,
        /// Folder on the server, relative to its served folder.
        dir: Option<String>,
        /// Also list every folder below DIR (symlinks are shown, not followed).
        #[structopt(short, long)]
        recursive: bool,
        /// Sizes as 1.5 KiB, 20 MiB (the default when standard output is a terminal).
        #[structopt(short = "h", long = "human-readable")]
        human_readable: bool,
        /// Sizes in bytes, even on a terminal.
        #[structopt(long, conflicts_with = "human-readable")]
        bytes: bool,
    },
    /// Show the kind, size and modification time of PATH on SERVER.
    #[structopt(after_help = EXAMPLES)]
    Stat {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        #[structopt(value_name = "SERVER")]
        server: String,
        /// Path on the server, relative to its served folder.
        path: String,
    },
    /// Remove each PATH on SERVER: a file or symlink, or with --folder an empty folder.
    #[structopt(after_help = EXAMPLES)]
    Rm {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        #[structopt(value_name = "SERVER")]
        server: String,
        /// Paths on the server, relative to its served folder.
        #[structopt(required = true)]
        paths: Vec<String>,
        /// Remove empty folders (nothing is ever removed recursively).
        #[structopt(long)]
        folder: bool,
    },
    /// Create each folder PATH on SERVER, with any missing parents (one already there is fine).
    #[structopt(after_help = EXAMPLES)]
    Mkdir {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        #[structopt(value_name = "SERVER")]
        server: String,
        /// Folders on the server, relative to its served folder.
        #[structopt(required = true)]
        paths: Vec<String>,
    },
    /// Move FROM to TO on SERVER, atomically (a file, folder or symlink).
    #[structopt(after_help = EXAMPLES)]
    Mv {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        #[structopt(value_name = "SERVER")]
        server: String,
        /// What to move, relative to the served folder.
        from: String,
        /// Its new path (the folder holding it must exist), or a folder to move it into: an
        /// existing one, or any path ending in `/`.
        to: String,
        /// Replace an existing file at TO (a folder is never replaced).
        #[structopt(long)]
        overwrite: bool,
    },
    /// Show who SERVER is: its name, version, verbs and limits.
    #[structopt(after_help = EXAMPLES)]
    Info {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        #[structopt(value_name = "SERVER")]
        server: String,
    },
    /// Send any VERB with JSON-ARGS; print the reply line, then any body (or write it to -o FILE).
    #[structopt(after_help = EXAMPLES)]
    Call {
        #[structopt(flatten)]
        common: Common,
        /// Server: IPv4 address, [IPv6] address or DNS name, optionally with :PORT.
        #[structopt(value_name = "SERVER")]
        server: String,
        /// The verb, e.g. STAT, or one this client does not know.
        verb: String,
        /// The verb's arguments as a JSON object, e.g. '{"path":"a.txt"}' (default: {}).
        args: Option<String>,
        /// Write the reply's body to this file instead of standard output.
        #[structopt(short, long, parse(from_os_str))]
        output: Option<PathBuf>,
        /// Send this file (`-` for standard input) as the request's body, an upload; its length
        /// goes in the arguments' "size" unless they give one (or say "body":"chunked").
        #[structopt(short, long, parse(from_os_str))]
        input: Option<PathBuf>,
    },
    /// Print a completion script for SHELL on standard output.
    #[structopt(after_help = "EXAMPLES:
    sft completions bash > ~/.local/share/bash-completion/completions/sft
    sft completions zsh > ~/.zfunc/_sft        (with fpath+=~/.zfunc in ~/.zshrc)
    sft completions fish > ~/.config/fish/completions/sft.fish")]
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        #[structopt(possible_values = &Shell::variants(), case_insensitive = true)]
        shell: Shell,
    },
}

impl Cli {
    fn common(&self) -> Option<&Common> {
        match self {
            Cli::Get(args) => Some(&args.common),
            Cli::Send(args) => Some(&args.common),
            Cli::Ls { common, .. }
            | Cli::Stat { common, .. }
            | Cli::Rm { common, .. }
            | Cli::Mkdir { common, .. }
            | Cli::Mv { common, .. }
            | Cli::Info { common, .. }
            | Cli::Call { common, .. } => Some(common),
            Cli::Completions { .. } => None,
        }
    }
}

fn main() {
    quiet_on_closed_stdout();
    // Asked for JSON, a person gets JSON even when the command line itself is wrong.
    let wants_json = std::env::args_os().skip(1).any(|a| a == "--json");
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
            if e.kind == ErrorKind::MissingRequiredArgument {
                if let Some(hint) = address_with_path_hint() {
                    eprintln!("\n{hint}");
                }
            }
            if wants_json {
                // The explanation, without the usage text that follows it.
                let message: Vec<&str> = e
                    .message
                    .lines()
                    .take_while(|l| !l.starts_with("USAGE:"))
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                let message = message.join(" ");
                let message = message.trim_start_matches("error: ");
                print_json_error("usage", message, ExitCode::Usage, false);
            }
            std::process::exit(ExitCode::Usage as i32);
        }
    };
    let json = cli.common().is_some_and(|c| c.json);
    let stdout_is_data = matches!(&cli, Cli::Get(args) if args.writes_stdout());
    match &cli {
        Cli::Get(args) if !args.writes_stdout() => cmd::ui::on_interrupt("get"),
        Cli::Send(_) => cmd::ui::on_interrupt("send"),
        _ => {}
    }
    let mut transient = false;
    let (code, name, message) = match task::block_on(run(cli)) {
        Ok(()) => std::process::exit(0),
        Err(Failure::Client(Error::Local { source, .. })) if cmd::is_closed_pipe(&source) => {
            cmd::exit_closed_pipe()
        }
        Err(Failure::Usage(m)) => (ExitCode::Usage, "usage", m),
        Err(Failure::Client(e)) => {
            transient = e.is_transient();
            (e.exit_code(), e.code_name(), e.to_string())
        }
        Err(Failure::Batch {
            code,
            name,
            message,
        }) => (code, name, message),
    };
    let message = escape(&message);
    eprintln!("error: {message}");
    if let Some(kept) = transient.then(cmd::ui::kept_line).flatten() {
        eprintln!("{kept}");
    }
    if json {
        print_json_error(name, &message, code, stdout_is_data);
    }
    std::process::exit(code as i32);
}

fn print_json_error(name: &str, message: &str, code: ExitCode, stdout_is_data: bool) {
    let line =
        serde_json::json!({"error": {"code": name, "message": message}, "exit_code": code as i32});
    cmd::machine_line(&line.to_string(), stdout_is_data);
}

/// A write to a closed standard output (`sft ls host | head -1`) ends the program quietly with
/// the status of a tool killed by SIGPIPE, even where a `println!` meets it (it panics then).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            cmd::exit_closed_pipe();
        }
        default(info);
    }));
}

/// When a required argument is missing and one of the arguments looks like a server and a
/// path run together (`host:dir/file`, `host:7005:file`) or an IPv6 address with a port but
/// no brackets, why it is not a server address and how to write it.
fn address_with_path_hint() -> Option<String> {
    std::env::args()
        .skip(2)
        .filter(|a| !a.starts_with('-') && a.contains(':'))
        .find_map(|a| parse_server(&a, 7005).err())
}

/// Why `sft` failed.
enum Failure {
    /// The command line is wrong (exit code 2).
    Usage(String),
    /// A client call failed.
    Client(Error),
    /// Some transfers of a batch failed (each was reported already): the first one's code.
    Batch {
        code: ExitCode,
        name: &'static str,
        message: String,
    },
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Client(e)
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli {
        Cli::Get(args) => cmd::get::run(args).await?,
        Cli::Send(args) => cmd::send::run(args).await?,
        Cli::Ls {
            common,
            server,
            dir,
            recursive,
            human_readable,
            bytes,
        } => {
            let look = cmd::ls::Look::new(common.json, human_readable, bytes);
            let mut client = connect(&server, &common).await?;
            let dir = dir.as_deref().unwrap_or("");
            cmd::ls::run(&mut client, dir, recursive, look).await?;
        }
        Cli::Stat {
            common,
            server,
            path,
        } => {
            let mut client = connect(&server, &common).await?;
            cmd::stat::run(&mut client, &path, common.json).await?;
        }
        Cli::Rm {
            common,
            server,
            paths,
            folder,
        } => {
            let mut client = connect(&server, &common).await?;
            let change = cmd::paths::Change::Remove { folder };
            cmd::paths::run(&mut client, change, &paths, common.verbose, common.json).await?;
        }
        Cli::Mkdir {
            common,
            server,
            paths,
        } => {
            let mut client = connect(&server, &common).await?;
            let change = cmd::paths::Change::Mkdir;
            cmd::paths::run(&mut client, change, &paths, common.verbose, common.json).await?;
        }
        Cli::Mv {
            common,
            server,
            from,
            to,
            overwrite,
        } => {
            let mut client = connect(&server, &common).await?;
            cmd::mv::run(
                &mut client,
                &from,
                &to,
                overwrite,
                common.verbose,
                common.json,
            )
            .await?;
        }
        Cli::Info { common, server } => {
            let mut client = connect(&server, &common).await?;
            cmd::info::run(&mut client, common.json).await?;
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
        Cli::Completions { shell } => {
            Cli::clap().gen_completions_to("sft", shell, &mut std::io::stdout());
        }
    }
    Ok(())
}

/// Connects to SERVER with the connection settings `common` gives.
async fn connect(server: &str, common: &Common) -> Result<Client, Failure> {
    let addr = parse_server(server, common.port).map_err(Failure::Usage)?;
    Ok(cmd::connect::Settings::new(common).connect(&addr).await?)
}
