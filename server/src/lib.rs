//! The sft server as a library: bind a [`Server`] with a [`Config`] and a command
//! [`Registry`](sft_commands::Registry), then run it.
//!
//! ```no_run
//! # async_std::task::block_on(async {
//! use sft_server::{Config, Server};
//! let config = Config::from_args_iter(["sft-server", "--port", "0"]).unwrap();
//! let server = Server::bind(config, sft_commands::builtins()).await.unwrap();
//! println!("listening on {}", server.local_addr());
//! server.run().await.unwrap();
//! # });
//! ```
//!
//! A server binary with verbs of its own is three lines: see [`run_main`] and `EXTENDING.md`.
//!
//! Each accepted connection becomes a session actor (see [`session`]): a task that owns its
//! socket and state and has a mailbox the server uses to ask it to stop. The server knows no
//! verb: it decodes a header, looks the verb up in the registry and hands over.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(missing_debug_implementations)]

mod access;
pub mod config;
pub mod fdlimit;
mod listener;
pub mod logging;
mod main_helper;
mod metrics;
pub mod session;
mod sessions;
pub mod signals;
mod tls;

pub use access::Cidr;
pub use config::{Config, LogFormat};
pub use listener::{Handle, Server};
pub use main_helper::{run_main, Binary};
pub use sessions::SessionInfo;
