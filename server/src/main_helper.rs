//! The whole `main` of a server binary, for `sft-server` and for custom servers that register
//! verbs of their own.

use crate::config::{Config, AFTER_HELP};
use crate::listener::Server;
use crate::logging;
use crate::signals::{self, Hangups};
use async_std::task;
use sft_commands::Registry;
use structopt::StructOpt;

/// Who a server binary is: the name, the one-line description and the version its `--help`,
/// `--version` and failure line show. A custom server names itself:
///
/// ```
/// let me = sft_server::Binary::new("my-verbs-server", env!("CARGO_PKG_VERSION"))
///     .about("Serves a folder over sft, with the FOO and BAR verbs.");
/// assert_eq!(me.name, "my-verbs-server");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    /// The program's name, as users type it (`sft-server`).
    pub name: &'static str,
    /// Its version (usually `env!("CARGO_PKG_VERSION")` of the binary's own crate).
    pub version: &'static str,
    /// What it does, one sentence, shown at the top of `--help`.
    pub about: &'static str,
}

impl Binary {
    /// `sft-server` itself.
    pub const SFT_SERVER: Binary = Binary {
        name: "sft-server",
        version: env!("CARGO_PKG_VERSION"),
        about: "Serves a folder over the sft protocol: clients GET files from it and SEND files \
                to it.",
    };

    /// A server binary called `name`, at `version`, described as `sft-server` is until
    /// [`Binary::about`] says otherwise.
    pub const fn new(name: &'static str, version: &'static str) -> Binary {
        Binary {
            name,
            version,
            about: Binary::SFT_SERVER.about,
        }
    }

    /// The same binary, described by `about`.
    pub const fn about(self, about: &'static str) -> Binary {
        Binary { about, ..self }
    }

    /// Parses the command line (`sft-server`'s flags) under this binary's name: `--help` and
    /// `--version` print and exit, a usage error exits with status 1 as clap does.
    fn parse_args(&self) -> Config {
        let after_help = if self.name == Binary::SFT_SERVER.name {
            AFTER_HELP
        } else {
            // Shown once per process, then the process exits or serves: leaking it is free.
            &*Box::leak(
                AFTER_HELP
                    .replace(Binary::SFT_SERVER.name, self.name)
                    .into_boxed_str(),
            )
        };
        let app = Config::clap()
            .name(self.name)
            .bin_name(self.name)
            .version(self.version)
            .about(self.about)
            .after_help(after_help);
        Config::from_clap(&app.get_matches())
    }
}

/// Runs a server binary with `registry`: parses `sft-server`'s command line (the same flags)
/// under `binary`'s name, installs the logger, raises the open-file limit and fits
/// `--max-connections` to it ([`fdlimit`](crate::fdlimit)), serves until stopped (SIGINT/SIGTERM
/// stop it gracefully; SIGHUP never does, see [`signals`](crate::signals)), and on failure
/// logs the error, prints `NAME: error: …` to standard error and exits with status 1. The body
/// of a custom server's `fn main()`:
///
/// ```no_run
/// let mut registry = sft_commands::builtins();
/// // registry.register(my_crate::MyVerb);
/// let me = sft_server::Binary::new("my-verbs-server", env!("CARGO_PKG_VERSION"))
///     .about("Serves a folder over sft, with the MY verb.");
/// sft_server::run_main(me, registry);
/// ```
pub fn run_main(binary: Binary, mut registry: Registry) {
    // First, before anything slow: a SIGHUP from now on never ends the process.
    let hangups = Hangups::catch();
    let mut config = binary.parse_args();
    // Read before any thread exists: reading the umask means setting it and setting it back.
    let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    rustix::process::umask(umask);
    sft_commands::attributes::set_umask(umask.bits());
    // HELLO answers with this program's own name and version.
    registry.set_identity(binary.name, binary.version);
    logging::init(config.log_format, config.log_level);
    config.max_connections = crate::fdlimit::fit_max_connections(config.max_connections);
    if let Some(threads) = config.threads {
        // Read once, when the runtime starts on the first `block_on` below.
        std::env::set_var("ASYNC_STD_THREAD_COUNT", threads.max(1).to_string());
    }
    let result = task::block_on(async {
        let hangups = hangups?;
        let server = Server::bind(config, registry).await?;
        signals::stop_on_signals(server.handle())?;
        hangups.reload(server.handle())?;
        server.run().await
    });
    if let Err(e) = result {
        let name = binary.name;
        log::error!(error:% = e, binary = name; "the server failed");
        eprintln!("{name}: error: {e}");
        std::process::exit(1);
    }
}
