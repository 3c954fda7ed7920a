//! Uploads of unknown length — chunked bodies, PROTOCOL.md §3.3 — and creating folders.

use crate::client::{Client, Transfer};
use crate::conn::Exchange;
use crate::error::Error;
use crate::files::CHUNK;
use futures::{AsyncBufReadExt, AsyncRead, AsyncReadExt, FutureExt};
use sft_protocol::body::encode_chunk_header;
use sft_protocol::verbs::{
    BodyFraming, MkdirReply, MkdirRequest, SendReady, SendReply, SendStreamRequest,
};
use sft_protocol::ErrorCode;

/// What [`Client::send_chunked`] sent.
#[derive(Debug)]
pub(crate) struct Sent {
    /// Body bytes sent.
    pub(crate) size: u64,
    /// Their BLAKE3 hash, declared in the terminator; `None` when the server refused early
    /// (its reply is waiting to be read).
    pub(crate) blake3: Option<String>,
}

impl Client {
    /// Uploads everything `source` yields, to its end, as `remote` — for sources whose length
    /// is not known in advance (a pipe, standard input). The bytes go as a chunked body, hashed
    /// on the way; the server stores them under `remote` only when all of them arrived and hash
    /// to what this client declares at the end. Without `overwrite` an existing remote file makes
    /// this fail with `exists`. Such an upload cannot be resumed.
    ///
    /// A server that does not take chunked bodies refuses with `bad_request` before anything is
    /// read from `source`.
    pub async fn send_stream<R>(
        &mut self,
        source: &mut R,
        remote: &str,
        overwrite: bool,
    ) -> Result<Transfer, Error>
    where
        R: AsyncRead + Unpin,
    {
        let during = format!("the upload of {remote}");
        let mut x = self.conn.begin()?;
        x.request(&SendStreamRequest {
            path: remote.to_owned(),
            body: BodyFraming::Chunked,
            overwrite,
            mtime: None,
            mode: None,
            ..SendStreamRequest::default()
        })
        .await?;
        let ready: SendReady = match x.reply(&during).await {
            // A server older than chunked bodies misses the `size` it insists on.
            Err(Error::Remote(mut e))
                if e.code == ErrorCode::BadRequest && e.message.contains("`size`") =>
            {
                e.message = format!(
                    "{} (this server does not take streamed uploads: save the stream to a file \
                     and send that)",
                    e.message
                );
                return Err(Error::Remote(e));
            }
            other => other?,
        };
        if ready.offset != 0 {
            return Err(Error::Protocol(format!(
                "{during}: a go-ahead from offset {} for a stream",
                ready.offset
            )));
        }
        x.progress_start(remote, None, 0);
        let sent = send_chunked(&mut x, source, &during).await?;
        let reply: SendReply = x.reply(&during).await?;
        let Some(ours) = sent.blake3 else {
            // The server answered early, so that reply must have been an error.
            return Err(Error::Protocol(format!(
                "{during}: the server accepted an upload it had interrupted"
            )));
        };
        if reply.size != sent.size {
            return Err(Error::Protocol(format!(
                "server stored {} of {} bytes",
                reply.size, sent.size
            )));
        }
        x.done();
        if let Some(theirs) = reply.blake3.filter(|theirs| *theirs != ours) {
            return Err(Error::Integrity {
                what: remote.to_owned(),
                expected: ours,
                actual: theirs,
            });
        }
        Ok(Transfer {
            size: sent.size,
            bytes_transferred: sent.size,
            resumed_from: 0,
            blake3: Some(ours),
            ..Transfer::default()
        })
    }

    /// Creates the folder `remote` (and missing parents) on the server. Returns whether it was
    /// created: `false` when it existed already.
    pub async fn mkdir(&mut self, remote: &str) -> Result<bool, Error> {
        let request = MkdirRequest {
            path: remote.to_owned(),
        };
        let reply: MkdirReply = self.conn.ask(&request, &format!("MKDIR {remote}")).await?;
        Ok(reply.created)
    }
}

/// Sends `source` as a chunked body (after a go-ahead), ending it with a terminator that
/// declares the body's BLAKE3 hash. If the server replies before the end (it refused the
/// upload), stops at once with a bare terminator and leaves that reply to be read.
///
/// A failure to read `source` breaks the connection: closing it is the only way to tell the
/// server to drop what it received.
pub(crate) async fn send_chunked(
    x: &mut Exchange<'_>,
    source: &mut (dyn AsyncRead + Unpin + '_),
    during: &str,
) -> Result<Sent, Error> {
    let mut buf = vec![0u8; CHUNK];
    let mut header = Vec::with_capacity(64);
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        if replied_early(x) {
            header.clear();
            encode_chunk_header(0, None, &mut header);
            x.send_chunk(&header, during).await?;
            x.flush(during).await?;
            return Ok(Sent { size, blake3: None });
        }
        let n = source
            .read(&mut buf)
            .await
            .map_err(Error::local("-", "read"))?;
        header.clear();
        if n == 0 {
            let hash = hasher.finalize().to_hex().to_string();
            encode_chunk_header(0, Some(&hash), &mut header);
            x.send_chunk(&header, during).await?;
            x.flush(during).await?;
            return Ok(Sent {
                size,
                blake3: Some(hash),
            });
        }
        hasher.update(&buf[..n]);
        encode_chunk_header(n as u64, None, &mut header);
        x.send_chunk(&header, during).await?;
        x.send_chunk(&buf[..n], during).await?;
        // A pipe yields bytes slowly: send each chunk as it is read.
        x.flush(during).await?;
        size += n as u64;
        x.progress_advance(n as u64);
    }
}

/// Whether a reply is already waiting (checked without waiting for one).
pub(crate) fn replied_early(x: &mut Exchange<'_>) -> bool {
    matches!(
        x.reader.fill_buf().now_or_never(),
        Some(Ok(waiting)) if !waiting.is_empty()
    )
}
