//! What follows a header line: the one rule every verb follows (PROTOCOL.md §3.1), so that a
//! peer can carry a verb it was not built with.
//!
//! - A **request** with an integer `size` is an *upload*: after a go-ahead reply the client sends
//!   exactly `size` bytes, then the server sends the final reply. Replies to an upload never
//!   carry a body.
//! - Otherwise a **success reply** with an integer `size` is followed by exactly `size` bytes;
//!   one with `"stream":"lines"` is followed by a *line stream*; any other reply by nothing.
//! - A **request** with `"body":"chunked"` (and no `size`) is a *chunked upload*: after a
//!   go-ahead the client sends chunks, each a [`ChunkHeader`] line and that many bytes, ended by a
//!   zero-length chunk; then the server sends the final reply.
//! - A **line stream** is JSON object lines, each at most [`MAX_HEADER_LEN`] bytes, ended by a
//!   line with `"end":true` or by an error line `{"ok":false,…}`.

use crate::error::{ErrorCode, WireError};
use crate::header::{check_line, envelope};
use crate::limits::{MAX_CHUNK_LEN, MAX_HEADER_LEN};
use crate::verbs::{is_blake3_hex, ChunkHeader};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What follows a success reply line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing: the next bytes are the next reply.
    None,
    /// Exactly this many raw bytes.
    Sized(u64),
    /// A line stream, read with [`decode_stream_line`] until its end line.
    Lines,
    /// A chunked body (PROTOCOL.md §3.3, §8.3), read with [`crate::delta::decode_chunk`] until its
    /// terminator: `"stream":"chunked"`, only in reply to a request that asked for compression.
    Chunked,
}

/// What follows a request line, after the go-ahead: the body of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Exactly this many raw bytes (`"size":N`).
    Sized(u64),
    /// Chunks, each a [`ChunkHeader`] line and its bytes, ended by a zero-length chunk
    /// (`"body":"chunked"`).
    Chunked,
}

#[derive(Deserialize)]
struct Declared {
    size: Option<Value>,
    stream: Option<Value>,
}

fn declared(line: &[u8]) -> Result<Declared, WireError> {
    serde_json::from_slice(check_line(line)?)
        .map_err(|e| WireError::bad_request(format!("header is not a JSON object: {e}")))
}

fn size_of(value: Value) -> Result<u64, WireError> {
    value.as_u64().ok_or_else(|| {
        WireError::bad_request(format!(
            "\"size\" must be an integer from 0 to 2^64-1, not {value}"
        ))
    })
}

/// The body a request line declares it will send after a go-ahead: `Some(size)` for a sized
/// upload; `None` for no upload, and for a chunked one (see [`upload_body`]).
pub fn upload_size(request_line: &[u8]) -> Result<Option<u64>, WireError> {
    match upload_body(request_line)? {
        Some(Upload::Sized(size)) => Ok(Some(size)),
        _ => Ok(None),
    }
}

/// The body a request line declares it will send after a go-ahead, if it is an upload. A
/// request that declares both `size` and `body` is `bad_request`; a `body` framing this crate
/// does not know is `unsupported` (nobody could find the end of it). A server holding a decoded
/// request asks [`crate::Request::body`] instead, which does not parse the line again.
pub fn upload_body(request_line: &[u8]) -> Result<Option<Upload>, WireError> {
    let env = envelope(check_line(request_line)?)?;
    declared_upload(env.size, env.body)
}

/// The upload a request's `size` and `body` fields declare.
pub(crate) fn declared_upload(
    size: Option<Value>,
    body: Option<Value>,
) -> Result<Option<Upload>, WireError> {
    match (size, body) {
        (None, None) => Ok(None),
        (Some(size), None) => size_of(size).map(|n| Some(Upload::Sized(n))),
        (None, Some(Value::String(s))) if s == "chunked" => Ok(Some(Upload::Chunked)),
        (None, Some(other)) => Err(WireError::new(
            ErrorCode::Unsupported,
            format!("unknown body framing {other}"),
        )),
        (Some(_), Some(_)) => Err(WireError::bad_request(
            "a request declares both \"size\" and \"body\"",
        )),
    }
}

/// Appends the header line of a chunk of `size` bytes to `out`; `size` 0 is the terminator,
/// which may carry the whole body's BLAKE3 hash.
pub fn encode_chunk_header(size: u64, blake3: Option<&str>, out: &mut Vec<u8>) {
    let header = ChunkHeader {
        size,
        blake3: blake3.map(str::to_owned),
    };
    serde_json::to_writer(&mut *out, &header).expect("chunk headers serialize infallibly");
    out.push(b'\n');
}

/// Decodes a chunk header line. A malformed line is `bad_request`, a chunk over
/// [`MAX_CHUNK_LEN`] bytes `too_large`: either way the reader cannot go on with the body.
pub fn decode_chunk_header(line: &[u8]) -> Result<ChunkHeader, WireError> {
    let line = check_line(line)?;
    let header: ChunkHeader = serde_json::from_slice(line)
        .map_err(|e| WireError::bad_request(format!("malformed chunk header: {e}")))?;
    if header.size > MAX_CHUNK_LEN {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "a chunk of {} bytes is over the limit of {MAX_CHUNK_LEN}",
                header.size
            ),
        ));
    }
    if let Some(hash) = &header.blake3 {
        if !is_blake3_hex(hash) {
            return Err(WireError::bad_request(
                "a chunk header's \"blake3\" must be 64 lower-case hex digits",
            ));
        }
    }
    Ok(header)
}

/// What follows the success reply `reply_line`; `to_upload` says whether it answers an upload
/// (whose replies never carry a body). A malformed declaration is `bad_request`, an unknown
/// stream format `unsupported`: either way the reader cannot find the end of the body.
pub fn reply_body(reply_line: &[u8], to_upload: bool) -> Result<Body, WireError> {
    if to_upload {
        return Ok(Body::None);
    }
    let Declared { size, stream, .. } = declared(reply_line)?;
    match (size, stream) {
        (None, None) => Ok(Body::None),
        (Some(size), None) => size_of(size).map(Body::Sized),
        (None, Some(Value::String(s))) if s == "lines" => Ok(Body::Lines),
        (None, Some(Value::String(s))) if s == "chunked" => Ok(Body::Chunked),
        (None, Some(other)) => Err(WireError::new(
            ErrorCode::Unsupported,
            format!("unknown stream format {other}"),
        )),
        (Some(_), Some(_)) => Err(WireError::bad_request(
            "a reply declares both \"size\" and \"stream\"",
        )),
    }
}

/// One line of a line stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamLine<'a> {
    /// An item: a JSON object with neither `ok` nor `end` (the terminator trimmed).
    Item(&'a [u8]),
    /// The end line, `{"end":true,…}`: the stream is complete.
    End(&'a [u8]),
    /// An error line: the stream ends here, incomplete; the connection stays usable.
    Error(WireError),
}

#[derive(Deserialize)]
struct Marker {
    ok: Option<bool>,
    end: Option<bool>,
    code: Option<ErrorCode>,
    message: Option<String>,
}

/// Decodes one line of a line stream. A line that is not a JSON object, or a success reply line
/// where an item belongs, is `bad_request` (a protocol violation by the sender).
pub fn decode_stream_line(line: &[u8]) -> Result<StreamLine<'_>, WireError> {
    let line = check_line(line)?;
    let marker: Marker = serde_json::from_slice(line)
        .map_err(|e| WireError::bad_request(format!("malformed stream line: {e}")))?;
    match (marker.ok, marker.end) {
        (Some(false), _) => Ok(StreamLine::Error(WireError {
            code: marker.code.unwrap_or(ErrorCode::Unknown),
            message: marker.message.unwrap_or_default(),
        })),
        (Some(true), _) => Err(WireError::bad_request(
            "a reply line inside a line stream (items carry no \"ok\")",
        )),
        (None, Some(true)) => Ok(StreamLine::End(line)),
        (None, _) => Ok(StreamLine::Item(line)),
    }
}

/// Appends `fields` as one stream line (a JSON object and `\n`) to `out`. A line longer than
/// [`MAX_HEADER_LEN`] is not appended (`out` is left as it was) and is `too_large`.
pub fn encode_line(fields: &impl Serialize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    serde_json::to_writer(&mut *out, fields).expect("stream lines serialize infallibly");
    out.push(b'\n');
    if out.len() - start > MAX_HEADER_LEN {
        out.truncate(start);
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("line longer than {MAX_HEADER_LEN} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::{Entry, Kind, ListEnd};

    #[test]
    fn replies_declare_their_bodies() {
        let cases: &[(&[u8], Body)] = &[
            (b"{\"ok\":true}", Body::None),
            (b"{\"ok\":true,\"size\":0}", Body::Sized(0)),
            (b"{\"ok\":true,\"size\":48213}\n", Body::Sized(48213)),
            (
                b"{\"ok\":true,\"stream\":\"lines\",\"path\":\".\"}",
                Body::Lines,
            ),
            (b"{\"ok\":true,\"entry\":{\"size\":5}}", Body::None),
        ];
        for (line, want) in cases {
            assert_eq!(
                reply_body(line, false).unwrap(),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // The final reply to an upload reports what was stored; nothing follows it.
        assert_eq!(
            reply_body(b"{\"ok\":true,\"size\":5}", true).unwrap(),
            Body::None
        );
    }

    #[test]
    fn malformed_declarations_are_refused() {
        for line in [
            &b"{\"ok\":true,\"size\":-1}"[..],
            b"{\"ok\":true,\"size\":1.5}",
            b"{\"ok\":true,\"size\":\"5\"}",
            b"{\"ok\":true,\"size\":1,\"stream\":\"lines\"}",
        ] {
            assert_eq!(
                reply_body(line, false).unwrap_err().code,
                ErrorCode::BadRequest
            );
        }
        assert_eq!(
            reply_body(b"{\"ok\":true,\"stream\":\"chunks\"}", false)
                .unwrap_err()
                .code,
            ErrorCode::Unsupported
        );
    }

    #[test]
    fn uploads_are_requests_with_a_size() {
        assert_eq!(
            upload_size(b"{\"verb\":\"SEND\",\"path\":\"x\",\"size\":5}").unwrap(),
            Some(5)
        );
        assert_eq!(
            upload_size(b"{\"verb\":\"GET\",\"path\":\"x\"}").unwrap(),
            None
        );
        assert!(upload_size(b"{\"verb\":\"X\",\"size\":true}").is_err());
    }

    #[test]
    fn chunked_uploads_are_requests_with_a_body_framing() {
        let cases: &[(&[u8], Option<Upload>)] = &[
            (
                b"{\"verb\":\"SEND\",\"path\":\"x\",\"size\":5}",
                Some(Upload::Sized(5)),
            ),
            (
                b"{\"verb\":\"SEND\",\"path\":\"x\",\"body\":\"chunked\"}",
                Some(Upload::Chunked),
            ),
            (b"{\"verb\":\"GET\",\"path\":\"x\"}", None),
        ];
        for (line, want) in cases {
            assert_eq!(upload_body(line).unwrap(), *want);
        }
        assert_eq!(
            upload_size(b"{\"verb\":\"SEND\",\"body\":\"chunked\"}").unwrap(),
            None
        );
        let both = upload_body(b"{\"verb\":\"X\",\"size\":1,\"body\":\"chunked\"}");
        assert_eq!(both.unwrap_err().code, ErrorCode::BadRequest);
        let unknown = upload_body(b"{\"verb\":\"X\",\"body\":\"gzip\"}");
        assert_eq!(unknown.unwrap_err().code, ErrorCode::Unsupported);
    }

    #[test]
    fn chunk_headers_round_trip_and_are_bounded() {
        let mut out = Vec::new();
        encode_chunk_header(5, None, &mut out);
        assert_eq!(out, b"{\"size\":5}\n");
        assert_eq!(decode_chunk_header(&out).unwrap().size, 5);

        let hash = "a".repeat(64);
        out.clear();
        encode_chunk_header(0, Some(&hash), &mut out);
        assert_eq!(
            out,
            format!("{{\"size\":0,\"blake3\":\"{hash}\"}}\n").as_bytes()
        );
        let end = decode_chunk_header(&out).unwrap();
        assert_eq!((end.size, end.blake3.as_deref()), (0, Some(hash.as_str())));

        let over = format!("{{\"size\":{}}}\n", MAX_CHUNK_LEN + 1);
        assert_eq!(
            decode_chunk_header(over.as_bytes()).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let exact = format!("{{\"size\":{MAX_CHUNK_LEN}}}\n");
        assert!(decode_chunk_header(exact.as_bytes()).is_ok());
        for bad in [
            &b"5\n"[..],
            b"{\"size\":-1}\n",
            b"{}\n",
            b"{\"size\":0,\"blake3\":\"XYZ\"}\n",
        ] {
            assert_eq!(
                decode_chunk_header(bad).unwrap_err().code,
                ErrorCode::BadRequest,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stream_lines_round_trip() {
        let entry = Entry {
            name: "sub/ü b.txt".into(),
            kind: Kind::File,
            size: 7,
            mtime: -3,
            blake3: None,
            mode: None,
            error: None,
        };
        let mut out = Vec::new();
        encode_line(&entry, &mut out).unwrap();
        assert_eq!(
            out,
            "{\"name\":\"sub/ü b.txt\",\"kind\":\"file\",\"size\":7,\"mtime\":-3}\n".as_bytes()
        );
        match decode_stream_line(&out).unwrap() {
            StreamLine::Item(item) => {
                assert_eq!(serde_json::from_slice::<Entry>(item).unwrap(), entry)
            }
            other => panic!("{other:?}"),
        }

        out.clear();
        let end = ListEnd {
            end: true,
            count: 1,
            skipped: 0,
        };
        encode_line(&end, &mut out).unwrap();
        assert_eq!(out, b"{\"end\":true,\"count\":1,\"skipped\":0}\n");
        assert!(matches!(
            decode_stream_line(&out).unwrap(),
            StreamLine::End(_)
        ));

        match decode_stream_line(b"{\"ok\":false,\"code\":\"internal\",\"message\":\"m\"}\n")
            .unwrap()
        {
            StreamLine::Error(e) => assert_eq!(e, WireError::internal("m")),
            other => panic!("{other:?}"),
        }
        for bad in [&b"{\"ok\":true}\n"[..], b"[1]\n", b"\n", b"{\"name\":\n"] {
            assert!(decode_stream_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn over_long_lines_are_not_encoded() {
        let mut out = b"kept".to_vec();
        let entry = Entry {
            name: "\u{1}".repeat(2000),
            kind: Kind::File,
            size: 0,
            mtime: 0,
            blake3: None,
            mode: None,
            error: None,
        };
        let err = encode_line(&entry, &mut out).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        assert_eq!(out, b"kept");
    }

    #[test]
    fn unknown_kinds_decode_as_other() {
        let e: Entry =
            serde_json::from_str(r#"{"name":"x","kind":"door","size":0,"mtime":0,"new":1}"#)
                .unwrap();
        assert_eq!(e.kind, Kind::Other);
    }
}
