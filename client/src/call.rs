//! The generic call: any verb, with JSON arguments, including verbs this client was not built
//! with. What follows each reply is found by the protocol's one body rule (PROTOCOL.md §3.1).

use crate::client::{open_partial, Client};
use crate::conn::{Exchange, StreamItem};
use crate::error::Error;
use crate::stream::send_chunked;
use async_std::fs::File;
use async_std::io::BufWriter;
use async_std::task::spawn_blocking;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde_json::{Map, Value};
use sft_protocol::body::{reply_body, upload_body, Body, Upload};
use sft_protocol::encode_call;
use sft_protocol::limits::MAX_HEADER_LEN;
use std::io;
use std::path::Path;

const CHUNK: usize = 256 * 1024;

impl Client {
    /// Sends `verb` with the fields of `args` and reads the reply header. The body, if the
    /// reply declares one, is then read with [`Response::read_body`].
    ///
    /// `args` must not contain `verb`, nor a `size` (a request with a `size` is an upload: use
    /// [`Client::call_upload`]). An error reply is `Error::Remote`. A call that carries a token
    /// (`AUTH`, or a `"token"` argument) follows [`Client::authenticate`]'s rule: over
    /// plaintext to another machine it is refused (`Error::Request`) and nothing is sent.
    pub async fn call(
        &mut self,
        verb: &str,
        args: &Map<String, Value>,
    ) -> Result<Response<'_>, Error> {
        self.call_with(verb, args, None).await
    }

    /// Like [`Client::call`] for an upload: `args` declares the body's length in `size`, and
    /// after the server's go-ahead exactly that many bytes are read from `source` and sent — or
    /// `args` says `"body":"chunked"`, and `source` is sent to its end as a chunked body whose
    /// terminator declares its BLAKE3 hash (PROTOCOL.md §3.3). The response is the server's final
    /// reply.
    pub async fn call_upload<R>(
        &mut self,
        verb: &str,
        args: &Map<String, Value>,
        source: &mut R,
    ) -> Result<Response<'_>, Error>
    where
        R: AsyncRead + Unpin,
    {
        self.call_with(verb, args, Some(source)).await
    }

    async fn call_with(
        &mut self,
        verb: &str,
        args: &Map<String, Value>,
        source: Option<&mut (dyn AsyncRead + Unpin + '_)>,
    ) -> Result<Response<'_>, Error> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if verb.is_empty() || verb.len() > 64 || !verb.bytes().all(valid) {
            return Err(Error::Request(format!(
                "{verb:?} is not a verb: 1 to 64 ASCII letters, digits, '_' or '-'"
            )));
        }
        if args.contains_key("verb") {
            return Err(Error::Request(
                "the arguments must not contain \"verb\"; it is given on its own".into(),
            ));
        }
        if carries_token(verb, args) {
            self.check_token_may_go()?;
        }
        let mut line = Vec::with_capacity(256);
        encode_call(verb, args, &mut line);
        if line.len() > MAX_HEADER_LEN {
            return Err(Error::Request(format!(
                "the request line is {} bytes, over the protocol's {MAX_HEADER_LEN}",
                line.len()
            )));
        }
        let upload = upload_body(&line).map_err(|e| Error::Request(e.message))?;
        let during = format!("the {verb} call");
        match (upload, &source) {
            (None, None) | (Some(Upload::Sized(_) | Upload::Chunked), Some(_)) => {}
            (Some(Upload::Chunked), None) => {
                return Err(Error::Request(
                    "the arguments declare a chunked upload (\"body\":\"chunked\") but no body \
                     was given to send"
                        .into(),
                ))
            }
            (Some(Upload::Sized(size)), None) => {
                return Err(Error::Request(format!(
                    "the arguments declare an upload of {size} bytes (\"size\") but no body \
                     was given to send"
                )))
            }
            (None, Some(_)) => {
                return Err(Error::Request(
                    "a body to send needs its length in the arguments' \"size\", or \
                     \"body\":\"chunked\""
                        .into(),
                ))
            }
        }
        let mut x = self.conn.begin()?;
        x.scratch = line;
        x.write_scratch(verb).await?;
        match (upload, source) {
            (Some(Upload::Sized(size)), Some(source)) => {
                let _go_ahead: Map<String, Value> = x.reply(&during).await?;
                upload_sized(&mut x, source, size, &during).await?;
            }
            (Some(Upload::Chunked), Some(source)) => {
                let _go_ahead: Map<String, Value> = x.reply(&during).await?;
                send_chunked(&mut x, source, &during).await?;
            }
            _ => {}
        }
        let fields: Map<String, Value> = x.reply(&during).await?;
        let header = String::from_utf8_lossy(&x.line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        let body = reply_body(&x.line, upload.is_some())
            .map_err(|e| Error::Protocol(format!("{during}: {}", e.message)))?;
        if body == Body::None {
            x.done();
        }
        Ok(Response {
            x,
            verb: verb.to_owned(),
            header,
            fields,
            body,
        })
    }
}

/// Whether a call hands over a secret: `AUTH` (whatever its arguments), or any verb with a
/// `"token"` argument.
fn carries_token(verb: &str, args: &Map<String, Value>) -> bool {
    verb.eq_ignore_ascii_case("AUTH") || args.keys().any(|k| k.eq_ignore_ascii_case("token"))
}

/// Sends exactly `size` bytes from `source` after a go-ahead. A source that fails leaves the
/// server waiting for bytes this client cannot give: the guard then breaks the connection,
/// and closing it makes the server drop the upload.
async fn upload_sized(
    x: &mut Exchange<'_>,
    source: &mut (dyn AsyncRead + Unpin + '_),
    size: u64,
    during: &str,
) -> Result<(), Error> {
    let mut buf = vec![0u8; size.min(CHUNK as u64) as usize];
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match source.read(&mut buf[..want]).await {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("it ended after {} of {size} bytes", size - left),
            )),
            other => other,
        };
        let n = n.map_err(Error::local("-", "read"))?;
        x.send_chunk(&buf[..n], during).await?;
        left -= n as u64;
    }
    x.flush(during).await
}

/// A reply to a generic call: its header, and its body still on the wire. Read the body with
/// [`Response::read_body`] or [`Response::read_body_to_file`]; dropping a response whose body
/// was not read leaves the connection unusable.
#[derive(Debug)]
pub struct Response<'c> {
    /// The exchange, done once the body was read.
    x: Exchange<'c>,
    verb: String,
    header: String,
    fields: Map<String, Value>,
    body: Body,
}

impl Response<'_> {
    /// The reply line as the server sent it, without its line terminator.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The reply's fields (`ok` included).
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// What follows the reply.
    pub fn body(&self) -> Body {
        self.body
    }

    /// Copies the body to `sink`: the raw bytes of a sized body, or every line of a line stream
    /// (its end line included). Returns the number of bytes written. A line stream that ends
    /// with an error line is written whole, then returned as `Error::Remote` (the connection
    /// stays usable).
    pub async fn read_body<W>(self, sink: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.copy_body(sink, Path::new("-")).await
    }

    /// Writes the body to the file `local`, atomically like [`Client::get_file`]: to
    /// [`partial_path`](crate::partial_path)`(local)` first, renamed once complete. A reply without a body creates
    /// no file and returns 0.
    pub async fn read_body_to_file(self, local: &Path) -> Result<u64, Error> {
        if self.body == Body::None {
            return Ok(0);
        }
        let partial = match open_partial(local, false).await {
            Ok(partial) => partial,
            Err(e) => return Err(e), // drop: broken
        };
        let file = match partial.file() {
            Ok(file) => File::from(file),
            Err(e) => return Err(Error::local(partial.path(), "open")(e)), // drop: broken
        };
        let mut writer = BufWriter::with_capacity(CHUNK, file);
        let result = self.copy_body(&mut writer, partial.path()).await;
        drop(writer);
        match result {
            Ok(n) => {
                let target = local.to_owned();
                spawn_blocking(move || partial.commit(&target))
                    .await
                    .map(|()| n)
                    .map_err(Error::local(local, "rename into"))
            }
            Err(e) => {
                spawn_blocking(move || partial.discard()).await;
                Err(e)
            }
        }
    }

    async fn copy_body<W>(mut self, sink: &mut W, local: &Path) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let during = format!("the body of the {} reply", self.verb);
        let written = match self.body {
            Body::None => 0,
            Body::Sized(size) => self.copy_sized(size, sink, local, &during).await?,
            Body::Lines => self.copy_lines(sink, local, &during).await?,
            // Only sent to a request that asked for compression, which a generic call does
            // not know how to ask: the reply cannot be followed.
            Body::Chunked => {
                return Err(Error::Protocol(format!(
                    "{during} is a chunked stream, which was not asked for"
                )))
            }
        };
        self.x.done();
        sink.flush().await.map_err(Error::local(local, "write"))?;
        Ok(written)
    }

    async fn copy_sized<W>(
        &mut self,
        size: u64,
        sink: &mut W,
        local: &Path,
        during: &str,
    ) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let client = &mut *self.x;
        let mut buf = vec![0u8; size.min(CHUNK as u64) as usize];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match client.fill_some(&mut buf[..want]).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("received {} of {size} bytes", size - left),
                )),
                other => other,
            };
            // On any failure the rest of the body is still on the wire (`done` stays false).
            let n = n.map_err(Error::cut_off(during))?;
            sink.write_all(&buf[..n])
                .await
                .map_err(Error::local(local, "write"))?;
            left -= n as u64;
        }
        Ok(size)
    }

    async fn copy_lines<W>(
        &mut self,
        sink: &mut W,
        local: &Path,
        during: &str,
    ) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut written = 0;
        loop {
            let item = self.x.stream_line(during).await?;
            sink.write_all(&self.x.line)
                .await
                .map_err(Error::local(local, "write"))?;
            written += self.x.line.len() as u64;
            match item {
                StreamItem::Item => {}
                StreamItem::End => return Ok(written),
                StreamItem::Error(e) => {
                    self.x.done();
                    sink.flush().await.map_err(Error::local(local, "write"))?;
                    return Err(Error::Remote(e));
                }
            }
        }
    }
}
