//! The sft client library: connect to a server, GET and SEND files (one by one, many pipelined,
//! or streams of unknown length), STAT, LIST, MKDIR, DELETE, RENAME and SETTIME in the served
//! folder, ask the server about itself (HELLO), watch transfers with a [`Progress`], and call any verb
//! generically (including ones this library was not built with). A file that replaces an older
//! version of itself moves by delta (`SIGN`, `GET` with ranges, `SEND` with copies) when the
//! server speaks protocol version 3, and bodies go zstd-compressed when asked
//! ([`GetOptions::compress`], [`SendOptions::compress`]) and the server allows it.
//!
//! ```no_run
//! # async_std::task::block_on(async {
//! use sft_client::{Client, GetOptions, SendOptions};
//! let mut client = Client::connect("files.example.org", 7005).await?;
//! // Verified with BLAKE3, renamed into place only when whole:
//! client.get_file("reports/q3.pdf", "q3.pdf".as_ref(), GetOptions::default()).await?;
//! let sent = client.send_file("notes.txt".as_ref(), "inbox/notes.txt", SendOptions::default()).await?;
//! println!("stored {} bytes, BLAKE3 {:?}", sent.size, sent.blake3);
//! let mut listing = client.list("reports", false).await?;
//! while let Some(entry) = listing.next().await? {
//!     println!("{} {}", entry.name, entry.size);
//! }
//! drop(listing); // it borrows the connection until then
//! // A stream of unknown length, verified and stored atomically:
//! let mut stdin = async_std::io::stdin();
//! client.send_stream(&mut stdin, "inbox/from-a-pipe.txt", false).await?;
//! // Many files, pipelined over this one connection:
//! let jobs = vec![sft_client::GetJob { remote: "a.txt".into(), local: "a.txt".into(), resume: false, size: None }];
//! client.get_files(&jobs, true, |i, result| println!("{}: {:?}", jobs[i].remote, result.map(|t| t.size))).await;
//! // Any verb, known to this library or not:
//! let args = serde_json::json!({"path": "notes.txt"});
//! let reply = client.call("WC", args.as_object().unwrap()).await?;
//! println!("{}", reply.header());
//! reply.read_body(&mut async_std::io::stdout()).await?;
//! # Ok::<(), sft_client::Error>(())
//! # });
//! ```
//!
//! Requests are encoded with `sft-protocol`'s types, the same ones the server decodes.
//!
//! The `sft` command line is built on this library behind the default `cli` feature; with
//! `default-features = false` the library comes without it and without the crates only it needs
//! (argument parsing, progress bars, signal handling).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(missing_debug_implementations)]

mod address;
mod auth;
mod call;
mod client;
mod conn;
mod delta;
mod error;
mod files;
mod get;
mod inspect;
mod many;
mod partial;
mod progress;
mod send;
mod stream;
mod sync;
mod tls;
mod tree;
mod walk;

pub use address::{parse_server, ServerAddr};
pub use auth::{check_token_destination, Access};
pub use call::Response;
pub use client::{partial_path, Client, ConnectOptions, Transfer, DEFAULT_TIMEOUT};
pub use error::{Error, ExitCode};
pub use files::BlockingWriter;
pub use get::GetOptions;
pub use inspect::Listing;
pub use many::GetJob;
pub use progress::Progress;
pub use send::SendOptions;
pub use sft_protocol::auth::AuthReply;
pub use sft_protocol::body::Body;
pub use sft_protocol::verbs::{Entry, HelloLimits, HelloReply, Kind, ListEnd, ListHash, VerbInfo};
pub use sft_protocol::{ErrorCode, WireError};
pub use sync::hash_file;
pub use tls::{CertificateProblem, Fingerprint, Refusal, TlsSettings, Trust};
pub use walk::{walk, Upload, Walk};
