//! File and socket I/O shared by the sft server and client.
//!
//! Both sides move file bytes the same way, so the mechanism lives here once:
//! - [`blocks`]: positioned reads and hashing of a file range (blocking, for the pool);
//! - [`BlockSink`]: a file received block by block, each block hashed and written by short
//!   tasks on the blocking pool while the next block arrives;
//! - [`FileSource`]: a file read one block ahead of the socket, hashing exactly the bytes read;
//! - [`sendfile`]: zero-copy sending from a file to a socket, driven by the runtime's reactor;
//! - [`Deadline`]: when a wait on a peer must end, one cheaply re-armed timer; every such wait,
//!   on the server and in the client, keeps one;
//! - [`Pace`] and [`PacedWrite`]: the deadline of a transfer — no progress for the stall
//!   timeout, or an average below the minimum rate, fails it;
//! - [`Pool`]: where blocking file-system work runs, bounded, and given up on when the
//!   storage stops answering;
//! - [`Version`]: which version of a file was sent, so that a file rewritten during a
//!   transfer is never reported as verified;
//! - [`RateLimit`]: a bandwidth limit (token bucket) for a connection's reads and writes;
//! - [`StreamRead`] and [`StreamWrite`]: a connection's halves, plain TCP or TLS;
//! - [`chunker`] and [`zblock`]: content-defined chunking and per-block zstd, for delta
//!   transfers and compressed bodies (PROTOCOL.md §8).
//!
//! A pool thread never waits on a socket or a channel here: each blocking task does one bounded
//! piece of file work and returns.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(missing_debug_implementations)]

pub mod blocks;
pub mod chunker;
mod deadline;
mod pace;
pub mod pool;
mod rate;
#[cfg(target_os = "linux")]
mod sendfile;
mod sink;
mod source;
mod stream;
mod version;
pub mod zblock;

pub use blocks::{CHUNK, RECV};
pub use deadline::{Deadline, Elapsed};
pub use pace::{Pace, PaceRule, PacedWrite, PROGRESS};
pub use pool::{Hung, Job, Pool};
pub use rate::RateLimit;
#[cfg(target_os = "linux")]
pub use sendfile::sendfile;
pub use sink::{BlockSink, Finished};
pub use source::FileSource;
pub use stream::{split, split_plain, Duplex, StreamRead, StreamWrite};
pub use version::{changed, confirm, Version, RACY, RACY_COARSE};

/// Whether this platform sends file bodies with `sendfile(2)`.
pub const ZERO_COPY: bool = cfg!(target_os = "linux");

/// Bodies at least this large are worth `sendfile(2)`; smaller ones are copied behind their
/// reply line so that both leave in one write.
pub const SENDFILE_MIN: u64 = 128 * 1024;
