//! `sft-server`: serve a folder over the sft protocol until stopped.

use async_std::task;
use sft_server::{logging, shutdown, Config, Server};
use structopt::StructOpt;

fn main() {
    let config = Config::from_args();
    logging::init(config.log_format, config.log_level);
    let result = task::block_on(async {
        let server = Server::bind(config, sft_commands::builtins()).await?;
        shutdown::stop_on_signals(server.handle())?;
        server.run().await
    });
    if let Err(e) = result {
        log::error!(error:% = e; "sft-server failed");
        eprintln!("sft-server: error: {e}");
        std::process::exit(1);
    }
}
