//! Header lines: one JSON object per line, encoded and decoded as pure functions.

use crate::error::{ErrorCode, WireError};
use crate::limits::MAX_HEADER_LEN;
use crate::verbs::Verb;
use crate::VERSION;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A decoded request header. The verb is upper-cased; the typed arguments are decoded on demand
/// by the handler that owns the verb, from the same line (unknown fields are ignored, which is how
/// later protocol versions add fields without breaking older peers).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    verb: &'a str,
    version: u32,
    line: &'a [u8],
}

impl<'a> Request<'a> {
    /// The verb as sent (ASCII, compared case-insensitively: see [`Request::verb_upper`]).
    pub fn verb(&self) -> &'a str {
        self.verb
    }

    /// The verb in upper case, the form registries are keyed by.
    pub fn verb_upper(&self) -> String {
        self.verb.to_ascii_uppercase()
    }

    /// The protocol version the request declared (`1` when absent).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The raw header line, without its line terminator.
    pub fn line(&self) -> &'a [u8] {
        self.line
    }

    /// Decodes the verb's typed arguments. A missing or mistyped field is `bad_request`.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        serde_json::from_slice(self.line).map_err(|e| {
            WireError::bad_request(format!("invalid arguments for {}: {e}", self.verb))
        })
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    /// Borrowed: a verb with JSON escapes in it is refused (no real verb needs them).
    verb: Option<&'a str>,
    v: Option<u32>,
}

/// Strips the `\n` (and an optional `\r` before it) that ends a header line.
fn trim_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Checks the parts every header shares: length, UTF-8, a JSON object.
pub(crate) fn check_line(line: &[u8]) -> Result<&[u8], WireError> {
    if line.len() > MAX_HEADER_LEN {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("header line longer than {MAX_HEADER_LEN} bytes"),
        ));
    }
    let line = trim_terminator(line);
    if std::str::from_utf8(line).is_err() {
        return Err(WireError::bad_request("header line is not valid UTF-8"));
    }
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(WireError::bad_request("empty header line")),
        Some(b'{') => Ok(line),
        Some(_) => Err(WireError::bad_request(
            "header line is not a JSON object (expected e.g. {\"verb\":\"GET\",\"path\":\"file.txt\"})",
        )),
    }
}

/// Decodes one request header line (with or without its `\n`).
///
/// Fails with `bad_request` (not JSON, not UTF-8, no verb), `too_large` (over the line limit) or
/// `unsupported` (a protocol version newer than this crate speaks).
pub fn decode_request(line: &[u8]) -> Result<Request<'_>, WireError> {
    let line = check_line(line)?;
    let env: Envelope<'_> = serde_json::from_slice(line)
        .map_err(|e| WireError::bad_request(format!("header is not valid JSON: {e}")))?;
    let version = env.v.unwrap_or(1);
    if version == 0 || version > VERSION {
        return Err(WireError::new(
            ErrorCode::Unsupported,
            format!("protocol version {version} is not supported (this peer speaks 1..={VERSION})"),
        ));
    }
    let verb = env
        .verb
        .ok_or_else(|| WireError::bad_request("header has no \"verb\" field"))?;
    if verb.is_empty()
        || verb.len() > 64
        || !verb
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(WireError::bad_request(
            "verb must be 1 to 64 ASCII letters, digits, '_' or '-'",
        ));
    }
    Ok(Request {
        verb,
        version,
        line,
    })
}

/// Appends `{"<key>":<value>,` + the fields of `fields` + `}` + `\n` to `out`.
///
/// `fields` must serialize to a JSON object (a struct with named fields, or a map).
fn splice(out: &mut Vec<u8>, prefix: &[u8], fields: &impl Serialize) {
    let start = out.len();
    serde_json::to_writer(&mut *out, fields).expect("header types serialize infallibly");
    assert_eq!(
        out.get(start),
        Some(&b'{'),
        "header fields must be a JSON object"
    );
    let empty = out.len() - start == 2;
    // Replace the opening brace by the prefix (which starts with its own brace).
    out.splice(start..start + 1, prefix.iter().copied());
    if !empty {
        out.insert(start + prefix.len(), b',');
    }
    out.push(b'\n');
}

/// Appends the request line for `args` (its verb taken from [`Verb::NAME`]) to `out`.
pub fn encode_request<V: Verb>(args: &V, out: &mut Vec<u8>) {
    let prefix = format!("{{\"verb\":\"{}\"", V::NAME);
    splice(out, prefix.as_bytes(), args);
}

/// Appends the request line for a verb known only at run time (a generic call): `verb`, then
/// the fields of `args`, which must serialize to a JSON object without a `verb` field.
pub fn encode_call(verb: &str, args: &impl Serialize, out: &mut Vec<u8>) {
    let verb = serde_json::to_string(verb).expect("strings serialize infallibly");
    let prefix = format!("{{\"verb\":{verb}");
    splice(out, prefix.as_bytes(), args);
}

/// Appends a success reply line carrying `fields` to `out`.
pub fn encode_ok(fields: &impl Serialize, out: &mut Vec<u8>) {
    splice(out, b"{\"ok\":true", fields);
}

/// Appends an error reply line to `out`.
pub fn encode_error(err: &WireError, out: &mut Vec<u8>) {
    splice(out, b"{\"ok\":false", err);
}

/// Appends a trailer line — a bare JSON object that follows a body, without `ok` — to `out`.
pub fn encode_trailer(fields: &impl Serialize, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, fields).expect("header types serialize infallibly");
    out.push(b'\n');
}

/// Decodes a trailer line.
pub fn decode_trailer<T: DeserializeOwned>(line: &[u8]) -> Result<T, WireError> {
    let line = check_line(line)?;
    serde_json::from_slice(line)
        .map_err(|e| WireError::bad_request(format!("malformed trailer: {e}")))
}

/// A decoded reply header.
#[derive(Debug, Clone)]
pub enum Reply<'a> {
    /// `"ok":true`; the verb-specific fields are decoded with [`Reply::fields`].
    Ok(&'a [u8]),
    /// `"ok":false` with its code and message.
    Err(WireError),
}

impl Reply<'_> {
    /// Decodes the typed fields of a success reply.
    pub fn fields<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        match self {
            Reply::Ok(line) => serde_json::from_slice(line)
                .map_err(|e| WireError::bad_request(format!("malformed reply fields: {e}"))),
            Reply::Err(e) => Err(e.clone()),
        }
    }
}

#[derive(Deserialize)]
struct Status {
    ok: bool,
    code: Option<ErrorCode>,
    message: Option<String>,
}

/// Decodes one reply header line. A line that is not a reply is a `bad_request` error, which a
/// client reports as a protocol violation by the server.
pub fn decode_reply(line: &[u8]) -> Result<Reply<'_>, WireError> {
    let line = check_line(line)?;
    let status: Status = serde_json::from_slice(line)
        .map_err(|e| WireError::bad_request(format!("malformed reply: {e}")))?;
    if status.ok {
        Ok(Reply::Ok(line))
    } else {
        Ok(Reply::Err(WireError {
            code: status.code.unwrap_or(ErrorCode::Unknown),
            message: status.message.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::{GetReply, GetRequest, SendRequest};

    #[test]
    fn request_round_trip() {
        let mut out = Vec::new();
        encode_request(
            &GetRequest {
                path: "a b/ü.txt".into(),
                ..Default::default()
            },
            &mut out,
        );
        assert!(out.ends_with(b"\n"));
        assert!(out.starts_with(b"{\"verb\":\"GET\",\"path\":\"a b/\xc3\xbc.txt\""));
        let req = decode_request(&out).unwrap();
        assert_eq!(req.verb(), "GET");
        assert_eq!(req.version(), 1);
        let args: GetRequest = req.args().unwrap();
        assert_eq!(args.path, "a b/ü.txt");
    }

    #[test]
    fn generic_calls_encode_like_typed_requests() {
        let mut typed = Vec::new();
        encode_request(
            &GetRequest {
                path: "x".into(),
                ..Default::default()
            },
            &mut typed,
        );
        let mut generic = Vec::new();
        encode_call("GET", &serde_json::json!({"path": "x"}), &mut generic);
        assert_eq!(typed, generic);

        generic.clear();
        encode_call("WC", &serde_json::json!({}), &mut generic);
        assert_eq!(generic, b"{\"verb\":\"WC\"}\n");
        // The verb is JSON-escaped, so it cannot inject fields (the server then refuses it).
        generic.clear();
        encode_call("A\",\"x\":\"1", &serde_json::json!({}), &mut generic);
        assert_eq!(
            decode_request(&generic).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn typed_by_hand_request_decodes() {
        let req = decode_request(b"{\"verb\":\"get\",\"path\":\"x\"}\r\n").unwrap();
        assert_eq!(req.verb_upper(), "GET");
        let args: GetRequest = req.args().unwrap();
        assert_eq!(args.path, "x");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let req = decode_request(br#"{"verb":"GET","path":"x","future":[1,2]}"#).unwrap();
        assert_eq!(req.args::<GetRequest>().unwrap().path, "x");
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"GET x\n",
            b"[1,2]\n",
            b"{\"verb\":\"GET\"\n",
            b"{\"path\":\"x\"}\n",
            b"{\"verb\":7}\n",
            b"{\"verb\":\"\"}\n",
            b"{\"verb\":\"G T\"}\n",
            b"{\"verb\":\"G\\u0045T\"}\n",
            b"{\"verb\":\"GET\",\"path\":\"\xff\"}\n",
            b"\x00\x01\x02\xff\n",
        ];
        for case in cases {
            let err = decode_request(case).unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::BadRequest,
                "{:?}",
                String::from_utf8_lossy(case)
            );
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn mistyped_arguments_are_bad_requests() {
        let req = decode_request(br#"{"verb":"SEND","path":"x","size":"ten"}"#).unwrap();
        let err = req.args::<SendRequest>().unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        let req = decode_request(br#"{"verb":"SEND","path":"x"}"#).unwrap();
        assert_eq!(
            req.args::<SendRequest>().unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn newer_versions_are_unsupported() {
        let err = decode_request(br#"{"verb":"GET","v":2,"path":"x"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unsupported);
        assert!(decode_request(br#"{"verb":"GET","v":1,"path":"x"}"#).is_ok());
    }

    #[test]
    fn over_long_lines_are_too_large() {
        let mut line = br#"{"verb":"GET","path":""#.to_vec();
        line.resize(MAX_HEADER_LEN + 10, b'a');
        assert_eq!(decode_request(&line).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn replies_round_trip() {
        let mut out = Vec::new();
        encode_ok(
            &GetReply {
                size: 42,
                ..Default::default()
            },
            &mut out,
        );
        assert!(out.starts_with(b"{\"ok\":true,\"size\":42"));
        match decode_reply(&out).unwrap() {
            r @ Reply::Ok(_) => assert_eq!(r.fields::<GetReply>().unwrap().size, 42),
            Reply::Err(e) => panic!("{e}"),
        }

        out.clear();
        encode_ok(&crate::verbs::Empty {}, &mut out);
        assert_eq!(out, b"{\"ok\":true}\n");

        out.clear();
        encode_error(
            &WireError::new(ErrorCode::NotFound, "no such file: x"),
            &mut out,
        );
        assert_eq!(
            out,
            b"{\"ok\":false,\"code\":\"not_found\",\"message\":\"no such file: x\"}\n"
        );
        match decode_reply(&out).unwrap() {
            Reply::Err(e) => assert_eq!(e, WireError::new(ErrorCode::NotFound, "no such file: x")),
            Reply::Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn unknown_error_codes_decode() {
        match decode_reply(br#"{"ok":false,"code":"from_the_future","message":"m"}"#).unwrap() {
            Reply::Err(e) => {
                assert_eq!(e.code, ErrorCode::Unknown);
                assert_eq!(e.message, "m");
            }
            Reply::Ok(_) => panic!(),
        }
    }

    #[test]
    fn malformed_replies_are_rejected() {
        for case in [&b"hello\n"[..], b"{}\n", b"{\"ok\":\"yes\"}\n"] {
            assert!(decode_reply(case).is_err());
        }
    }
}
