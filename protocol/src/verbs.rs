//! Typed arguments and reply fields of the built-in verbs.
//!
//! The client encodes requests from these types and the server's handlers decode them, so both
//! sides share one definition. Fields added later are optional (`#[serde(default)]`), which keeps
//! older peers working.

use crate::delta::{Compress, DeltaSpec, Range};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request type: its arguments serialize to a JSON object and it names its verb.
pub trait Verb: Serialize + DeserializeOwned {
    /// The verb, upper case, as sent on the wire.
    const NAME: &'static str;
}

/// Reply fields for replies that carry none: `{"ok":true}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `GET`: download the regular file at `path`, or the part of it from `offset` on.
///
/// Reply: [`GetReply`], followed by exactly `size` raw bytes, then — if the reply says
/// `"trailer":true` — one [`GetTrailer`] line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The file, relative to the served root.
    pub path: String,
    /// Skip this many bytes (resume a download): the body is the file from here to its end.
    /// Given (even as 0), the reply echoes it with the whole file's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Ask for the whole file's BLAKE3 hash, in the reply or in a trailer after the body.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hash: bool,
    /// Version 3: compress the body (the reply then says `"stream":"chunked"`, PROTOCOL.md §8.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// Version 3: the zstd level asked for (the server may cap it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    /// Version 3: only these `[offset,length]` ranges of the file, in order (§8.4). Excludes
    /// `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<Range>>,
    /// Version 3, with `ranges`: the whole file's hash the client expects (`changed` if the
    /// server knows the file's current hash and it differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

impl Verb for GetRequest {
    const NAME: &'static str = "GET";
}

/// Fields of a successful `GET` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    /// How many body bytes follow the reply line (the file's size minus `offset`, or the sum of
    /// the `ranges`). Absent (`None`) exactly when `stream` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Version 3, to a request that asked for `compress`: `chunked`, a chunked body follows
    /// (PROTOCOL.md §8.3) instead of `size` bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<BodyFraming>,
    /// The offset the body starts at, echoed when the request gave one (0 included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The whole file's size, when the request gave an offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    /// The whole file's BLAKE3 hash (64 hex digits), when asked for and already known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// When asked for a hash the server did not know yet: a [`GetTrailer`] line follows the body.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trailer: bool,
    /// The file's last modification, whole seconds since the epoch (what a client sets on its
    /// copy to keep times). Absent from servers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// The file's permission bits (`0o777` at most; no set-id or sticky bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl GetReply {
    /// The raw body bytes that follow a sized reply (`size`); 0 for a chunked one, whose chunk
    /// headers say their sizes.
    pub fn body_len(&self) -> u64 {
        self.size.unwrap_or(0)
    }
}

/// The line after a `GET` body whose reply said `"trailer":true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetTrailer {
    /// The whole file's BLAKE3 hash (64 hex digits), computed while it was sent.
    pub blake3: String,
}

/// `SEND`: upload `size` bytes to `path`.
///
/// The server first answers with a go-ahead ([`SendReady`]) or an error; only after a go-ahead
/// does the client send the body (`size - offset` raw bytes), and the server then answers with
/// [`SendReply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The destination, relative to the served root. Missing parent folders are created.
    pub path: String,
    /// The exact number of body bytes the client will send.
    pub size: u64,
    /// Replace an existing file at `path` (otherwise the upload is refused with `exists`).
    #[serde(default)]
    pub overwrite: bool,
    /// The whole file's BLAKE3 hash (64 hex digits). The server stores the file only if the
    /// bytes it received hash to this, and keeps an interrupted upload so it can be resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// The hash comes after the body instead, in a [`SendTrailer`] line: the client hashes
    /// while it sends. Excludes `blake3`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trailer: bool,
    /// Names this upload so that it can be resumed when its hash is only sent in the trailer:
    /// 32 to 64 lower-case hex digits, chosen by the client (e.g. derived from the local file's
    /// identity). Keeps an interrupted upload like `blake3` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Continue an interrupted upload of the same `path`, `size` and `blake3` (or
    /// `upload_id`): the go-ahead says from which offset to send.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resume: bool,
    /// The body follows the header at once, without waiting for a go-ahead (PROTOCOL.md §3.1):
    /// uploads of small files can then be pipelined. The server answers only the final reply,
    /// or an error after reading and discarding the body. Excludes `resume` and `trailer`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub eager: bool,
    /// Give the stored file this modification time (whole seconds since the epoch); otherwise
    /// it is the time it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// Give the stored file these permission bits (masked with `0o777`). Otherwise a new file
    /// gets `0o666` less the server's umask, and a replaced file keeps the old one's bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// The line after a `SEND` body whose request said `"trailer":true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendTrailer {
    /// The whole file's BLAKE3 hash (64 hex digits).
    pub blake3: String,
}

/// Whether `s` is an upload id: 32 to 64 lower-case hex digits.
pub fn is_upload_id(s: &str) -> bool {
    (32..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The go-ahead of a `SEND`: send the body from `offset` on (`size - offset` bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReady {
    /// Bytes the server already holds from an interrupted upload (0 without `resume`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
}

impl Verb for SendRequest {
    const NAME: &'static str = "SEND";
}

/// Fields of the final reply to a `SEND`, once the file is stored under its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReply {
    /// Bytes stored.
    pub size: u64,
    /// The stored file's BLAKE3 hash, when the request declared one (it matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Version 3, after a delta: the bytes of the file taken from the basis (PROTOCOL.md §8.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<u64>,
}

/// How an upload body of unknown length is framed: the value of a request's `body` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFraming {
    /// A sequence of chunks, each a [`ChunkHeader`] line and that many bytes, ended by a
    /// zero-length chunk (PROTOCOL.md §3.3).
    #[default]
    Chunked,
}

/// `SEND` of a body whose length is not known in advance (standard input, a pipe): the request
/// says `"body":"chunked"` instead of `size`.
///
/// After the go-ahead ([`SendReady`], always from offset 0) the client sends chunks; the final
/// reply is a [`SendReply`]. Such an upload cannot be resumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendStreamRequest {
    /// The destination, relative to the served root. Missing parent folders are created.
    pub path: String,
    /// Always [`BodyFraming::Chunked`].
    pub body: BodyFraming,
    /// Replace an existing file at `path` (otherwise the upload is refused with `exists`).
    #[serde(default)]
    pub overwrite: bool,
    /// As in [`SendRequest::mtime`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// As in [`SendRequest::mode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Version 3: chunks may be zstd-compressed (PROTOCOL.md §8.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// Version 3: the body is a delta against the server's current file (§8.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaSpec>,
}

impl Verb for SendStreamRequest {
    const NAME: &'static str = "SEND";
}

/// The line before each chunk of a chunked body. `size` 0 ends the body; that terminator may
/// carry the BLAKE3 hash of every byte of the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// Bytes in this chunk, at most [`crate::limits::MAX_CHUNK_LEN`]; 0 for the terminator.
    pub size: u64,
    /// On the terminator: the whole body's BLAKE3 hash (64 lower-case hex digits). The receiver
    /// stores the body only if it matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// `MKDIR`: create the folder `path`, and any missing parents, inside the served root.
///
/// Reply: [`MkdirReply`]; no body. A folder that already exists is not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirRequest {
    /// The folder, relative to the served root.
    pub path: String,
}

impl Verb for MkdirRequest {
    const NAME: &'static str = "MKDIR";
}

/// Fields of a successful `MKDIR` reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirReply {
    /// Whether the folder was created (`false`: it existed already).
    #[serde(default)]
    pub created: bool,
}

/// Whether `s` is a BLAKE3 hash as the protocol writes it: 64 lower-case hex digits.
pub fn is_blake3_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a file-system entry is, as `LIST` and `STAT` report it.
///
/// A kind this build does not know (sent by a newer server) decodes as [`Kind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Folder,
    /// A symbolic link (reported as itself, never followed).
    Symlink,
    /// Anything else: a socket, a FIFO, a device, or a kind from a newer server.
    #[serde(other)]
    Other,
}

impl Kind {
    /// The kind as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Folder => "folder",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        }
    }
}

/// One file-system entry: a line of a `LIST` stream, or the subject of a `STAT` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// In a `LIST`: the path relative to the listed folder (`a.txt`, `sub/b.txt`).
    /// In a `STAT`: the normalized path relative to the served root (`.` for the root).
    pub name: String,
    /// File, folder, symlink or other.
    pub kind: Kind,
    /// Length in bytes of a regular file; `0` for every other kind.
    pub size: u64,
    /// Last modification, in whole seconds since 1970-01-01T00:00:00Z (negative before).
    pub mtime: i64,
    /// The file's BLAKE3 hash, lower-case hex: in a `STAT` of a regular file unless it asked
    /// for none; in a `LIST` that asked for hashes ([`ListHash`]). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Permission bits (`0o7777` at most). Absent from servers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// On a folder of a recursive `LIST` whose contents are *not* included: why (permission
    /// denied, deeper than [`crate::limits::MAX_LIST_DEPTH`] levels). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::WireError>,
}

/// `LIST`: the entries of a folder inside the root, as a line stream.
///
/// Reply: [`ListReply`], then one [`Entry`] line per entry, then a [`ListEnd`] line (or an error
/// line). See PROTOCOL.md §3.2 and §5.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// The folder, relative to the served root; empty (the default) for the root itself.
    #[serde(default)]
    pub path: String,
    /// Also list the contents of sub-folders, depth first, without following symlinks.
    #[serde(default)]
    pub recursive: bool,
    /// Which regular files' entries carry their `blake3` (none by default).
    #[serde(default, skip_serializing_if = "ListHash::is_none")]
    pub hash: ListHash,
}

/// Which files of a `LIST` carry a BLAKE3 hash: what a folder sync compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListHash {
    /// None (the default).
    #[default]
    None,
    /// Those whose hash the server has cached for the file's current version: costs the server
    /// no reading.
    Cached,
    /// Every regular file: the server hashes those it has not hashed yet (like `rsync -c`;
    /// as slow as reading them all once).
    All,
}

impl ListHash {
    fn is_none(&self) -> bool {
        *self == ListHash::None
    }
}

impl Verb for ListRequest {
    const NAME: &'static str = "LIST";
}

/// The format of a reply body that is a sequence of lines (PROTOCOL.md §3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamFormat {
    /// JSON object lines, ended by an `{"end":true,…}` line or an error line.
    #[default]
    Lines,
}

/// Fields of a successful `LIST` reply; entry lines follow it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// Always [`StreamFormat::Lines`]: a line stream follows.
    pub stream: StreamFormat,
    /// The listed folder, normalized (`.` for the root).
    pub path: String,
}

/// The line that ends a successful `LIST` stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEnd {
    /// Always `true`: this line ends the stream.
    pub end: bool,
    /// How many entry lines were sent.
    pub count: u64,
    /// Entries left out because they cannot be sent: a name that is not UTF-8, or an entry
    /// line longer than [`crate::limits::MAX_HEADER_LEN`].
    #[serde(default)]
    pub skipped: u64,
}

/// `STAT`: describe one path inside the root.
///
/// Reply: [`StatReply`]; no body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRequest {
    /// The file, folder or symlink, relative to the served root; empty for the root itself.
    #[serde(default)]
    pub path: String,
    /// Include a regular file's BLAKE3 hash (default); the server hashes the file if its hash
    /// is not cached yet. `false` answers from metadata alone.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub hash: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Verb for StatRequest {
    const NAME: &'static str = "STAT";
}

/// Fields of a successful `STAT` reply.
///
/// The entry is nested, not flat, because a reply's top-level `size` declares a body
/// (PROTOCOL.md §3.1) and a `STAT` reply carries none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatReply {
    /// What the path is.
    pub entry: Entry,
}

/// `DELETE`: remove the file at `path`, or with `"folder":true` the empty folder there.
///
/// A symlink is removed itself, never what it points to. Nothing is removed recursively.
/// Reply: [`DeleteReply`]; no body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// The file or folder, relative to the served root.
    pub path: String,
    /// Remove an empty folder (without it, a folder is refused with `bad_request`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub folder: bool,
}

impl Verb for DeleteRequest {
    const NAME: &'static str = "DELETE";
}

/// Fields of a successful `DELETE` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReply {
    /// What was removed: a file, a folder, a symlink or other.
    pub kind: Kind,
}

/// `RENAME`: move the file, folder or symlink at `from` to `to`, atomically, inside the root.
///
/// `to`'s parent folder must exist. Reply: [`RenameReply`]; no body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameRequest {
    /// What to move, relative to the served root.
    pub from: String,
    /// Its new path, relative to the served root.
    pub to: String,
    /// Replace an existing file or symlink at `to` (otherwise refused with `exists`). A folder
    /// is never replaced.
    #[serde(default, skip_serializing_if = "is_false")]
    pub overwrite: bool,
}

impl Verb for RenameRequest {
    const NAME: &'static str = "RENAME";
}

/// Fields of a successful `RENAME` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameReply {
    /// What was moved: a file, a folder, a symlink or other.
    pub kind: Kind,
}

/// `SETTIME`: give the file or folder at `path` the modification time `mtime`, and change
/// nothing else — a metadata-only update, for a file whose content the other side already has
/// (so that the next comparison by size and time finds the two the same).
///
/// A symlink named by `path` is refused, never followed. Reply: [`SetTimeReply`]; no body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetTimeRequest {
    /// The file or folder, relative to the served root.
    pub path: String,
    /// The modification time to give it: whole seconds since the epoch (negative before).
    pub mtime: i64,
}

impl Verb for SetTimeRequest {
    const NAME: &'static str = "SETTIME";
}

/// Fields of a successful `SETTIME` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetTimeReply {
    /// What was given the time: a file or a folder.
    pub kind: Kind,
}

/// `HELLO`: who the server is, which verbs it answers, and its limits. Takes no arguments; cheap
/// enough to serve as a health check.
///
/// Reply: [`HelloReply`]; no body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloRequest {}

impl Verb for HelloRequest {
    const NAME: &'static str = "HELLO";
}

/// Fields of a successful `HELLO` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The server program's name (`sft-server`, or a custom server's).
    pub server: String,
    /// The server program's version.
    pub version: String,
    /// The highest protocol version it speaks (a request's `v`).
    pub protocol: u32,
    /// Every verb it answers, sorted by name.
    pub verbs: Vec<VerbInfo>,
    /// Its limits.
    pub limits: HelloLimits,
}

/// One verb in a [`HelloReply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerbInfo {
    /// The verb, upper case.
    pub name: String,
    /// What it does, in one line (may be empty).
    #[serde(default)]
    pub summary: String,
    /// Whether it changes the served tree (refused with `read_only` on a read-only server).
    #[serde(default)]
    pub writes: bool,
}

/// The limits in a [`HelloReply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloLimits {
    /// Every verb that writes is refused with `read_only`.
    #[serde(default)]
    pub read_only: bool,
    /// The largest upload accepted, in bytes; absent for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload_bytes: Option<u64>,
    /// Most connections served at once; absent when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Every verb but `HELLO` and `AUTH` needs a token first ([`crate::auth`]); absent (false)
    /// on an open server.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auth: bool,
    /// Version 3: the highest zstd level the server compresses at; absent when it refuses
    /// compression (PROTOCOL.md §8.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd_max_level: Option<i32>,
}
