//! Header lines from arbitrary bytes: decoding never panics, what decodes is consistent, typed
//! argument decoding never panics, UTF-8 input round-trips through encoding as a path, and the
//! line scanner agrees with a byte-at-a-time model for any `already`.
#![no_main]
#![allow(clippy::field_reassign_with_default)]

use libfuzzer_sys::fuzz_target;
use sft_protocol::limits::MAX_HEADER_LEN;
use sft_protocol::verbs::{GetReply, GetRequest, SendRequest};
use sft_protocol::{
    decode_reply, decode_request, encode_error, encode_request, scan_line, ErrorCode, LineScan,
    Reply, WireError,
};

/// The scanner's contract, one byte at a time (see `protocol/tests/properties.rs`).
fn scan_model(already: usize, avail: &[u8]) -> LineScan {
    let mut len = already;
    for (i, &b) in avail.iter().enumerate() {
        len = len.saturating_add(1);
        if len > MAX_HEADER_LEN {
            return LineScan::TooLong;
        }
        if b == b'\n' {
            return LineScan::Complete(i + 1);
        }
    }
    if len >= MAX_HEADER_LEN {
        LineScan::TooLong
    } else {
        LineScan::Partial
    }
}

fuzz_target!(|input: (usize, &[u8])| {
    let (already, data) = input;

    match decode_request(data) {
        Ok(req) => {
            assert!(data.len() <= MAX_HEADER_LEN);
            assert!(data.starts_with(req.line()));
            let verb = req.verb();
            assert!(!verb.is_empty() && verb.len() <= 64);
            assert!(verb
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            assert_eq!(req.version(), 1);
            let _ = req.args::<serde_json::Value>();
            let _ = req.args::<GetRequest>();
            let _ = req.args::<SendRequest>();
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            if data.len() > MAX_HEADER_LEN {
                assert_eq!(e.code, ErrorCode::TooLarge);
            }
        }
    }

    match decode_reply(data) {
        Ok(reply @ Reply::Ok(_)) => {
            let _ = reply.fields::<serde_json::Value>();
            let _ = reply.fields::<GetReply>();
        }
        Ok(Reply::Err(e)) => {
            let _ = e.to_string();
        }
        Err(e) => assert!(!e.message.is_empty()),
    }

    // Any UTF-8 string survives as a path and as an error message.
    if let Ok(text) = std::str::from_utf8(data) {
        let mut line = Vec::new();
        // Field by field from `Default`, so optional fields added later need no change here.
        let mut args = SendRequest::default();
        args.path = text.to_owned();
        args.size = already as u64;
        args.overwrite = already % 2 == 1;
        encode_request(&args, &mut line);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        match decode_request(&line) {
            Ok(req) => assert_eq!(req.args::<SendRequest>().unwrap(), args),
            Err(e) => assert!(e.code == ErrorCode::TooLarge && line.len() > MAX_HEADER_LEN),
        }
        line.clear();
        let err = WireError::new(ErrorCode::NotFound, text);
        encode_error(&err, &mut line);
        match decode_reply(&line) {
            Ok(Reply::Err(got)) => assert_eq!(got, err),
            Ok(Reply::Ok(_)) => panic!("an error reply decoded as success"),
            Err(e) => assert!(e.code == ErrorCode::TooLarge && line.len() > MAX_HEADER_LEN),
        }
    }

    // The whole range of `already`, up to usize::MAX (an earlier overflow there was found by
    // this target and fixed).
    let got = scan_line(already, data);
    assert_eq!(got, scan_model(already, data));
    if let LineScan::Complete(n) = got {
        assert!(n >= 1 && n <= data.len());
        assert!(already.saturating_add(n) <= MAX_HEADER_LEN);
        assert_eq!(data[n - 1], b'\n');
        assert!(!data[..n - 1].contains(&b'\n'));
    }
});
