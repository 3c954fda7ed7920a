//! The server-side command API of sft, and the built-in verbs.
//!
//! A verb is a type implementing [`Command`], registered under its name in a [`Registry`]. The
//! server reads a header, looks the verb up and hands the handler a [`Context`]: the sandboxed
//! [`Root`], the [`Limits`], and methods to reply, send bodies and read an upload's [`Body`]
//! after its go-ahead (never the raw connection). Adding a verb means adding a
//! handler and registering it; the server's session loop never changes.
//!
//! The built-ins live one per file: [`get`], [`send`], [`list`], [`stat`], [`mkdir`], [`delete`],
//! [`rename`], [`settime`], [`sign`], [`hello`] and [`auth`]. `EXTENDING.md` at the repository root
//! shows how to write a verb in a crate of its own.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(missing_debug_implementations)]

mod admission;
pub mod attributes;
pub mod auth;
mod body;
mod chunked;
mod command;
mod context;
pub mod delete;
mod entry;
pub mod get;
pub mod hashes;
pub mod hello;
pub mod list;
mod locks;
pub mod mkdir;
mod poison;
mod ranges;
mod registry;
pub mod rename;
pub mod sandbox;
pub mod send;
pub mod settime;
pub mod sign;
pub mod signatures;
mod slots;
pub mod staging;
pub mod started;
pub mod stat;
mod version3;
mod writer;

pub use admission::{admit, Access};
pub use body::ReceivedFile;
pub use command::{Accepts, BoxFuture, Command, CommandError};
pub use context::{
    discard_eager, Body, Buffers, Context, Limits, Pace, PaceRule, Reader, Stats, StreamRead,
    StreamWrite,
};
pub use registry::Registry;
pub use sandbox::Root;
pub use slots::{SignSlots, Slot, UploadSlots};
pub use staging::PartialLimits;
pub use writer::Writer;

/// A registry holding every built-in verb (`GET`, `SEND`, `LIST`, `STAT`, `MKDIR`, `DELETE`,
/// `RENAME`, `SETTIME`, `SIGN`, `HELLO`, `AUTH`).
pub fn builtins() -> Registry {
    let mut registry = Registry::new();
    registry.register(get::Get);
    registry.register(send::Send);
    registry.register(list::List);
    registry.register(stat::Stat);
    registry.register(mkdir::Mkdir);
    registry.register(delete::Delete);
    registry.register(rename::Rename);
    registry.register(settime::SetTime);
    registry.register(sign::Sign);
    registry.register(hello::Hello);
    registry.register(auth::Auth);
    registry
}
