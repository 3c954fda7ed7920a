//! Header lines: one JSON object per line, encoded and decoded as pure functions.

use crate::body::{declared_upload, Upload};
use crate::error::{ErrorCode, WireError};
use crate::limits::MAX_HEADER_LEN;
use crate::verbs::Verb;
use crate::VERSION;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// A decoded request header. The verb is upper-cased; the typed arguments are decoded on demand
/// by the handler that owns the verb, from the same line (unknown fields are ignored, which is how
/// later protocol versions add fields without breaking older peers).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Borrowed from the line unless it was written with JSON escapes.
    verb: Cow<'a, str>,
    version: u32,
    line: &'a [u8],
    /// Whether the header has a `size` or a `body` field.
    declares_body: bool,
    /// What those fields declare will follow the header.
    upload: Result<Option<Upload>, WireError>,
    /// The `eager` field: absent or `false`, `true`, or not a boolean.
    eager: Result<bool, WireError>,
}

impl<'a> Request<'a> {
    /// The verb as sent, JSON escapes decoded (ASCII, compared case-insensitively: see
    /// [`Request::verb_upper`]).
    pub fn verb(&self) -> &str {
        &self.verb
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

    /// Whether the header has a top-level `size` or `body` field, valid or not: by PROTOCOL.md
    /// §3.1 such a request is an upload, and a verb that takes no body must refuse it before
    /// the client sends any.
    pub fn declares_body(&self) -> bool {
        self.declares_body
    }

    /// The body the request declares it will send after a go-ahead (PROTOCOL.md §3.1):
    /// `None` for no upload. Both `size` and `body`, or a `size` that is not an integer from 0
    /// to 2^64-1, is `bad_request`; a `body` framing this crate does not know, `unsupported`.
    pub fn body(&self) -> Result<Option<Upload>, WireError> {
        self.upload.clone()
    }

    /// Whether the request says `"eager":true`: its body follows the header at once, without a
    /// go-ahead (PROTOCOL.md §3.1). A value that is not a boolean is `bad_request`.
    pub fn eager(&self) -> Result<bool, WireError> {
        self.eager.clone()
    }

    /// Decodes the verb's typed arguments. A missing or mistyped field is `bad_request`.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        serde_json::from_slice(self.line).map_err(|e| {
            WireError::bad_request(format!("invalid arguments for {}: {e}", self.verb))
        })
    }
}

/// The fields every request shares, picked from the top level of a header in one pass that
/// also refuses a repeated key (which two readers could resolve differently).
pub(crate) struct Envelope<'a> {
    verb: Option<Cow<'a, str>>,
    v: Option<u32>,
    /// Present (even as `null`) or not.
    pub(crate) size: Option<Value>,
    /// Present (even as `null`) or not.
    pub(crate) body: Option<Value>,
    /// Present (even as `null`) or not.
    eager: Option<Value>,
}

/// Decodes the shared fields of a request line (already checked with [`check_line`]).
pub(crate) fn envelope(line: &[u8]) -> Result<Envelope<'_>, WireError> {
    serde_json::from_slice(line)
        .map_err(|e| WireError::bad_request(format!("malformed header: {e}")))
}

/// A string borrowed from the input when it has no escapes, decoded into an owned one when it
/// has (serde's own `Cow` impl always copies).
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut env = Envelope {
                    verb: None,
                    v: None,
                    size: None,
                    body: None,
                    eager: None,
                };
                // Headers have a handful of keys: a linear scan beats hashing them.
                let mut seen: Vec<Cow<'de, str>> = Vec::new();
                while let Some(CowStr(key)) = map.next_key()? {
                    if seen.contains(&key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    match &*key {
                        "verb" => {
                            let verb: Option<CowStr<'de>> = map.next_value()?;
                            env.verb = verb.map(|v| v.0);
                        }
                        "v" => env.v = map.next_value()?,
                        "size" => env.size = Some(map.next_value()?),
                        "body" => env.body = Some(map.next_value()?),
                        "eager" => env.eager = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    seen.push(key);
                }
                Ok(env)
            }
        }
        d.deserialize_map(V)
    }
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
    let env = envelope(line)?;
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
    let declares_body = env.size.is_some() || env.body.is_some();
    let upload = declared_upload(env.size, env.body);
    let eager = match env.eager {
        None | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(_) => Err(WireError::bad_request("\"eager\" must be true or false")),
    };
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
        declares_body,
        upload,
        eager,
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

/// Appends the request line for `args` at protocol version `v` (`"v":N` right after the verb),
/// for a request that needs a later version to be understood (PROTOCOL.md §7).
pub fn encode_request_v<V: Verb>(args: &V, v: u32, out: &mut Vec<u8>) {
    let prefix = format!("{{\"verb\":\"{}\",\"v\":{v}", V::NAME);
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
    fn eager_is_read_from_the_top_level_as_a_boolean() {
        let eager = |line: &str| decode_request(line.as_bytes()).unwrap().eager();
        assert_eq!(eager(r#"{"verb":"SEND","size":3,"eager":true}"#), Ok(true));
        assert_eq!(
            eager(r#"{"verb":"SEND","size":3,"eager":false}"#),
            Ok(false)
        );
        assert_eq!(eager(r#"{"verb":"SEND","size":3}"#), Ok(false));
        assert_eq!(eager(r#"{"verb":"X","a":{"eager":true}}"#), Ok(false));
        for bad in [
            r#"{"verb":"SEND","eager":1}"#,
            r#"{"verb":"SEND","eager":null}"#,
        ] {
            assert_eq!(eager(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }

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
            b"{\"verb\":\"G\\u0020T\"}\n",
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
    fn escapes_are_accepted_anywhere() {
        let req =
            decode_request(b"{\"verb\":\"G\\u0045T\",\"path\":\"a\\/\\u00fc.txt\"}\n").unwrap();
        assert_eq!(req.verb(), "GET");
        assert_eq!(req.args::<GetRequest>().unwrap().path, "a/\u{fc}.txt");
        // An escaped key is the same key.
        let req = decode_request(br#"{"v\u0065rb":"stat","\u0076":1,"s\u0069ze":3}"#).unwrap();
        assert_eq!(req.verb_upper(), "STAT");
        assert_eq!(req.body().unwrap(), Some(Upload::Sized(3)));
        let req = decode_request(br#"{"verb":"SEND","body":"chunk\u0065d"}"#).unwrap();
        assert_eq!(req.body().unwrap(), Some(Upload::Chunked));
        // An escape that decodes to a character a verb may not have is still refused.
        let err = decode_request(br#"{"verb":"G\u002fT"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }

    #[test]
    fn duplicate_keys_are_bad_requests() {
        for case in [
            &br#"{"verb":"GET","verb":"SEND"}"#[..],
            br#"{"verb":"GET","path":"a","path":"b"}"#,
            br#"{"verb":"GET","size":1,"size":2}"#,
            br#"{"verb":"GET","x":1,"x":1}"#,
            br#"{"verb":"GET","path":"a","p\u0061th":"b"}"#,
        ] {
            let err = decode_request(case).unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::BadRequest,
                "{}",
                String::from_utf8_lossy(case)
            );
            assert!(err.message.contains("duplicate"), "{}", err.message);
        }
        // The same key in different nested objects is not a repeat.
        assert!(decode_request(br#"{"verb":"X","a":{"k":1},"b":{"k":2}}"#).is_ok());
    }

    #[test]
    fn integers_are_written_as_integers() {
        for case in [
            &br#"{"verb":"GET","v":1e0}"#[..],
            br#"{"verb":"GET","v":1.0}"#,
        ] {
            assert_eq!(
                decode_request(case).unwrap_err().code,
                ErrorCode::BadRequest
            );
        }
        let req = decode_request(br#"{"verb":"SEND","path":"x","size":1e0}"#).unwrap();
        assert_eq!(req.body().unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(
            req.args::<SendRequest>().unwrap_err().code,
            ErrorCode::BadRequest
        );
        let req = decode_request(br#"{"verb":"GET","path":"x","offset":1e0}"#).unwrap();
        assert_eq!(
            req.args::<GetRequest>().unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn requests_declare_their_bodies() {
        type Declared = Result<Option<Upload>, ErrorCode>;
        let cases: &[(&[u8], bool, Declared)] = &[
            (br#"{"verb":"GET","path":"x"}"#, false, Ok(None)),
            (
                br#"{"verb":"SEND","size":0}"#,
                true,
                Ok(Some(Upload::Sized(0))),
            ),
            (
                br#"{"verb":"SEND","body":"chunked"}"#,
                true,
                Ok(Some(Upload::Chunked)),
            ),
            (
                br#"{"verb":"X","size":1,"body":"chunked"}"#,
                true,
                Err(ErrorCode::BadRequest),
            ),
            (
                br#"{"verb":"X","size":-1}"#,
                true,
                Err(ErrorCode::BadRequest),
            ),
            (
                br#"{"verb":"X","size":null}"#,
                true,
                Err(ErrorCode::BadRequest),
            ),
            (
                br#"{"verb":"X","body":"gzip"}"#,
                true,
                Err(ErrorCode::Unsupported),
            ),
            // Nested fields declare nothing.
            (br#"{"verb":"X","entry":{"size":1}}"#, false, Ok(None)),
        ];
        for (line, declares, want) in cases {
            let req = decode_request(line).unwrap();
            assert_eq!(
                req.declares_body(),
                *declares,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(
                req.body().map_err(|e| e.code),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(
                crate::body::upload_body(line).map_err(|e| e.code),
                *want,
                "the same rule as the line-based check"
            );
        }
    }

    #[test]
    fn version_zero_is_unsupported() {
        let err = decode_request(br#"{"verb":"GET","v":0}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unsupported);
    }

    #[test]
    fn carriage_returns_count_toward_the_line_limit() {
        let mut line = br#"{"verb":"GET","path":""#.to_vec();
        line.resize(MAX_HEADER_LEN - 3, b'a');
        line.extend_from_slice(b"\"}\n");
        assert_eq!(line.len(), MAX_HEADER_LEN);
        assert!(decode_request(&line).is_ok());
        line.truncate(line.len() - 1);
        line.extend_from_slice(b"\r\n");
        assert_eq!(decode_request(&line).unwrap_err().code, ErrorCode::TooLarge);
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
        let err = decode_request(br#"{"verb":"GET","v":99,"path":"x"}"#).unwrap_err();
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
                size: Some(42),
                ..Default::default()
            },
            &mut out,
        );
        assert!(out.starts_with(b"{\"ok\":true,\"size\":42"));
        match decode_reply(&out).unwrap() {
            r @ Reply::Ok(_) => assert_eq!(r.fields::<GetReply>().unwrap().size, Some(42)),
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
