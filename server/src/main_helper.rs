//! The whole `main` of a server binary, for `sft-server` and for custom servers that register
//! verbs of their own.

use crate::config::Config;
use crate::listener::Server;
use crate::logging;
use async_std::task;
use sft_commands::Registry;
use structopt::StructOpt;

/// Runs a server binary with `registry`: parses `sft-server`'s command line (the same flags),
/// installs the logger, raises the open-file limit and fits `--max-connections` to it
/// ([`fdlimit`](crate::fdlimit)), serves until stopped (SIGINT/SIGTERM stop it gracefully), and on failure logs the error, prints
/// `NAME: error: …` to standard error and exits with status 1. The body of a custom server's
/// `fn main()`:
///
/// ```no_run
/// let mut registry = sft_commands::builtins();
/// // registry.register(my_crate::MyVerb);
/// sft_server::run_main(registry);
/// ```
pub fn run_main(registry: Registry) {
    let mut config = Config::from_args();
    logging::init(config.log_format, config.log_level);
    config.max_connections = crate::fdlimit::fit_max_connections(config.max_connections);
    if let Some(threads) = config.threads {
        // Read once, when the runtime starts on the first `block_on` below.
        std::env::set_var("ASYNC_STD_THREAD_COUNT", threads.max(1).to_string());
    }
    let result = task::block_on(async {
        let server = Server::bind(config, registry).await?;
        crate::shutdown::stop_on_signals(server.handle())?;
        server.run().await
    });
    if let Err(e) = result {
        let name = std::env::args_os()
            .next()
            .as_deref()
            .map(std::path::Path::new)
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sft-server".into());
        log::error!(error:% = e; "sft-server failed");
        eprintln!("{name}: error: {e}");
        std::process::exit(1);
    }
}
