//! The sft client library: connect to a server, GET and SEND files.
//!
//! ```no_run
//! # async_std::task::block_on(async {
//! use sft_client::Client;
//! let mut client = Client::connect("files.example.org", 7005).await?;
//! client.get_file("reports/q3.pdf", "q3.pdf".as_ref()).await?;
//! client.send_file("notes.txt".as_ref(), "inbox/notes.txt", false).await?;
//! # Ok::<(), sft_client::Error>(())
//! # });
//! ```
//!
//! Requests are encoded with `sft-protocol`'s types, the same ones the server decodes.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(missing_debug_implementations)]

mod address;
mod client;
mod error;
mod files;

pub use address::{parse_server, ServerAddr};
pub use client::{partial_path, Client, GetOptions, SendOptions, Transfer};
pub use error::{Error, ExitCode};
