//! A connection to an sft server, carrying requests one after another.

use crate::address::{parse_server, ServerAddr};
use crate::error::Error;
use async_std::fs::{self, File};
use async_std::io::{BufReader, BufWriter};
use async_std::net::{TcpStream, ToSocketAddrs};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::de::DeserializeOwned;
use sft_protocol::body::{decode_stream_line, StreamLine};
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::verbs::{Empty, GetReply, GetRequest, SendReply, SendRequest, Verb};
use sft_protocol::{decode_reply, encode_request, read_line, Reply, WireError};
use std::io;
use std::path::{Path, PathBuf};

const IO_BUFFER: usize = 256 * 1024;

/// A connection to one server. Requests run one at a time; after a transfer is cut off the
/// connection is unusable and every further call fails.
#[derive(Debug)]
pub struct Client {
    server: ServerAddr,
    pub(crate) reader: BufReader<TcpStream>,
    pub(crate) writer: BufWriter<TcpStream>,
    /// The last header or stream line read, terminator included.
    pub(crate) line: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
    /// Set once the connection is out of step; every later call fails.
    pub(crate) broken: bool,
}

impl Client {
    /// Connects to `server` (`host`, `host:port`, `[v6]:port`…), using `default_port` when it
    /// names none. Every resolved address is tried in turn.
    pub async fn connect(server: &str, default_port: u16) -> Result<Client, Error> {
        let addr = parse_server(server, default_port).map_err(|m| Error::Resolve {
            server: ServerAddr {
                host: server.to_owned(),
                port: default_port,
            },
            source: io::Error::new(io::ErrorKind::InvalidInput, m),
        })?;
        Self::connect_to(addr).await
    }

    /// Connects to an already parsed address.
    pub async fn connect_to(server: ServerAddr) -> Result<Client, Error> {
        let addrs: Vec<_> = (server.host.as_str(), server.port)
            .to_socket_addrs()
            .await
            .map_err(|source| Error::Resolve {
                server: server.clone(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no addresses");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Client {
                        server,
                        reader: BufReader::with_capacity(IO_BUFFER, stream.clone()),
                        writer: BufWriter::with_capacity(IO_BUFFER, stream),
                        line: Vec::with_capacity(256),
                        scratch: Vec::with_capacity(256),
                        broken: false,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(Error::Connect {
            server,
            source: last,
        })
    }

    /// The server this client is connected to.
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    pub(crate) fn check_usable(&self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Protocol(
                "the connection was broken by an earlier failure".into(),
            ));
        }
        Ok(())
    }

    /// Writes a request header and flushes it.
    pub(crate) async fn request<V: Verb>(&mut self, args: &V) -> Result<(), Error> {
        self.check_usable()?;
        self.scratch.clear();
        encode_request(args, &mut self.scratch);
        self.write_scratch(V::NAME).await
    }

    /// Writes the request line in `scratch` and flushes it.
    pub(crate) async fn write_scratch(&mut self, verb: &str) -> Result<(), Error> {
        let during = format!("the {verb} request");
        self.writer
            .write_all(&self.scratch)
            .await
            .map_err(Error::cut_off(during.clone()))?;
        self.writer.flush().await.map_err(Error::cut_off(during))
    }

    /// Reads a reply header: its fields on success, `Error::Remote` for an error reply.
    pub(crate) async fn reply<T: DeserializeOwned>(&mut self, during: &str) -> Result<T, Error> {
        self.line.clear();
        let read = read_line(&mut self.reader, &mut self.line).await;
        let result = match read {
            Ok(true) => match decode_reply(&self.line) {
                Ok(Reply::Err(e)) => Err(Error::Remote(e)),
                Ok(ok) => ok
                    .fields::<T>()
                    .map_err(|e| Error::Protocol(format!("{during}: {}", e.message))),
                Err(e) => Err(Error::Protocol(format!("{during}: {}", e.message))),
            },
            Ok(false) => Err(Error::CutOff {
                during: during.to_owned(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server"),
            }),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Protocol(format!(
                "{during}: reply line longer than {MAX_HEADER_LEN} bytes"
            ))),
            Err(e) => Err(Error::cut_off(during)(e)),
        };
        if matches!(result, Err(Error::CutOff { .. } | Error::Protocol(_))) {
            self.broken = true;
        }
        result
    }

    /// Reads one line of a line stream into `line` (PROTOCOL.md §3.2). A cut-off or malformed
    /// stream breaks the connection; an error line ends the stream and leaves it usable.
    pub(crate) async fn stream_line(&mut self, during: &str) -> Result<StreamItem, Error> {
        self.line.clear();
        let read = read_line(&mut self.reader, &mut self.line).await;
        let result = match read {
            Ok(true) => match decode_stream_line(&self.line) {
                Ok(StreamLine::Item(_)) => Ok(StreamItem::Item),
                Ok(StreamLine::End(_)) => Ok(StreamItem::End),
                Ok(StreamLine::Error(e)) => Ok(StreamItem::Error(e)),
                Err(e) => Err(Error::Protocol(format!("{during}: {}", e.message))),
            },
            Ok(false) => Err(Error::CutOff {
                during: during.to_owned(),
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server"),
            }),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Protocol(format!(
                "{during}: stream line longer than {MAX_HEADER_LEN} bytes"
            ))),
            Err(e) => Err(Error::cut_off(during)(e)),
        };
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Downloads `remote` into `sink`; returns the number of bytes written.
    ///
    /// The sink may have received part of the file when this fails; use [`Client::get_file`]
    /// for a download that lands whole or not at all.
    pub async fn get<W>(&mut self, remote: &str, sink: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let size = self.get_start(remote).await?;
        self.get_body(remote, size, sink, Path::new("-")).await?;
        Ok(size)
    }

    async fn get_start(&mut self, remote: &str) -> Result<u64, Error> {
        self.request(&GetRequest {
            path: remote.to_owned(),
        })
        .await?;
        let reply: GetReply = self.reply(&format!("GET {remote}")).await?;
        Ok(reply.size)
    }

    async fn get_body<W>(
        &mut self,
        remote: &str,
        size: u64,
        sink: &mut W,
        local: &Path,
    ) -> Result<(), Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut buf = vec![0u8; size.min(IO_BUFFER as u64) as usize];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match self.reader.read(&mut buf[..want]).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("received {} of {size} bytes", size - left),
                )),
                other => other,
            };
            let n = n.map_err(|e| {
                self.broken = true;
                Error::cut_off(format!("the download of {remote}"))(e)
            })?;
            sink.write_all(&buf[..n]).await.map_err(|e| {
                // The rest of the body is still on the wire: this connection is out of step.
                self.broken = true;
                Error::local(local, "write")(e)
            })?;
            left -= n as u64;
        }
        sink.flush().await.map_err(Error::local(local, "write"))
    }

    /// Downloads `remote` to the file `local`, atomically: the bytes go to
    /// [`partial_path`]`(local)` and are renamed to `local` only once all of them arrived.
    /// An existing `local` is replaced.
    pub async fn get_file(&mut self, remote: &str, local: &Path) -> Result<u64, Error> {
        let size = self.get_start(remote).await?;
        let partial = partial_path(local);
        let file = File::create(&partial).await.map_err(|e| {
            // The body is on its way and nobody will read it.
            self.broken = true;
            Error::local(&partial, "create")(e)
        })?;
        let mut writer = BufWriter::with_capacity(IO_BUFFER, file);
        let result = self.get_body(remote, size, &mut writer, &partial).await;
        let result = match result {
            Ok(()) => fs::rename(&partial, local)
                .await
                .map_err(Error::local(local, "rename into")),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = fs::remove_file(&partial).await;
        }
        result.map(|()| size)
    }

    /// Uploads exactly `size` bytes read from `source` to `remote`.
    /// Without `overwrite` an existing remote file makes this fail with `exists`.
    pub async fn send<R>(
        &mut self,
        source: &mut R,
        size: u64,
        remote: &str,
        overwrite: bool,
    ) -> Result<u64, Error>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        self.send_from(source, size, remote, overwrite, Path::new("-"))
            .await
    }

    async fn send_from<R>(
        &mut self,
        source: &mut R,
        size: u64,
        remote: &str,
        overwrite: bool,
        local: &Path,
    ) -> Result<u64, Error>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let during = format!("the upload of {remote}");
        self.request(&SendRequest {
            path: remote.to_owned(),
            size,
            overwrite,
        })
        .await?;
        let _: Empty = self.reply(&during).await?;
        let mut buf = vec![0u8; size.min(IO_BUFFER as u64) as usize];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match source.read(&mut buf[..want]).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "it ended after {} of {size} bytes (did it shrink?)",
                        size - left
                    ),
                )),
                other => other,
            };
            let n = n.map_err(|e| {
                // The server waits for bytes we cannot give: closing makes it drop the upload.
                self.broken = true;
                Error::local(local, "read")(e)
            })?;
            self.writer.write_all(&buf[..n]).await.map_err(|e| {
                self.broken = true;
                Error::cut_off(during.clone())(e)
            })?;
            left -= n as u64;
        }
        self.writer.flush().await.map_err(|e| {
            self.broken = true;
            Error::cut_off(during.clone())(e)
        })?;
        let reply: SendReply = self.reply(&during).await?;
        if reply.size != size {
            return Err(Error::Protocol(format!(
                "server stored {} of {size} bytes",
                reply.size
            )));
        }
        Ok(size)
    }

    /// Uploads the local file `local` to `remote`.
    pub async fn send_file(
        &mut self,
        local: &Path,
        remote: &str,
        overwrite: bool,
    ) -> Result<u64, Error> {
        let file = File::open(local)
            .await
            .map_err(Error::local(local, "open"))?;
        let meta = file.metadata().await.map_err(Error::local(local, "read"))?;
        if !meta.is_file() {
            return Err(Error::Local {
                path: local.to_owned(),
                action: "send",
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        let mut reader = BufReader::with_capacity(IO_BUFFER, file);
        self.send_from(&mut reader, meta.len(), remote, overwrite, local)
            .await
    }
}

/// What [`Client::stream_line`] read; the line itself is in `Client::line`.
#[derive(Debug)]
pub(crate) enum StreamItem {
    /// An item line.
    Item,
    /// The end line.
    End,
    /// An error line: the stream ended incomplete.
    Error(WireError),
}

/// Where [`Client::get_file`] keeps a download in progress: `.<name>.sft-part` beside `local`.
pub fn partial_path(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local.with_file_name(format!(".{name}.sft-part"))
}
