//! What version 3's features (PROTOCOL.md §8) ask of a request before a verb acts on them: the
//! version they need, and the server's stand on compression. Shared by `GET`, `SEND` and `SIGN`
//! so a feature is never taken, or ignored, by one verb and refused by another.

use crate::context::Limits;
use sft_protocol::delta::DEFAULT_ZSTD_LEVEL;
use sft_protocol::verbs::is_blake3_hex;
use sft_protocol::{ErrorCode, Request, WireError};

/// The version a request must say to use delta transfers or compression.
pub(crate) const V3: u32 = 3;

/// Refuses `what`, a version-3 feature, in a request that did not say `"v":3`: an older client
/// would not understand what it gets, and ignoring the feature would answer another question.
pub(crate) fn needs_v3(request: &Request<'_>, what: &str) -> Result<(), WireError> {
    if request.version() >= V3 {
        return Ok(());
    }
    Err(WireError::bad_request(format!(
        "{what} is a protocol version 3 feature: the request needs \"v\":3"
    )))
}

/// The zstd level the server compresses at for a request that asked for `asked` (default 3):
/// capped to the server's maximum. `unsupported` when the server refuses compression.
pub(crate) fn compress_level(limits: &Limits, asked: Option<i32>) -> Result<i32, WireError> {
    let Some(max) = limits.compress_level_max else {
        return Err(refused());
    };
    Ok(asked.unwrap_or(DEFAULT_ZSTD_LEVEL).min(max))
}

/// Refuses a compressed upload on a server that refuses compression; any level is taken.
pub(crate) fn accepts_compressed(limits: &Limits) -> Result<(), WireError> {
    match limits.compress_level_max {
        Some(_) => Ok(()),
        None => Err(refused()),
    }
}

fn refused() -> WireError {
    WireError::new(
        ErrorCode::Unsupported,
        "this server does not compress (started with --no-compress): ask without \"compress\"",
    )
}

/// The `blake3` a request gives, checked: 64 lower-case hex digits, or `bad_request`.
pub(crate) fn expected_hash(given: Option<&str>) -> Result<Option<blake3::Hash>, WireError> {
    match given {
        None => Ok(None),
        Some(hex) if is_blake3_hex(hex) => Ok(blake3::Hash::from_hex(hex).ok()),
        Some(_) => Err(WireError::bad_request(
            "\"blake3\" must be 64 lower-case hex digits",
        )),
    }
}

/// `changed` unless `known` (the file's current hash, when the server knows it) is `expected`.
pub(crate) fn still(
    known: Option<blake3::Hash>,
    expected: Option<blake3::Hash>,
    shown: &str,
) -> Result<(), WireError> {
    match (known, expected) {
        (Some(known), Some(expected)) if known != expected => Err(changed(shown)),
        _ => Ok(()),
    }
}

/// The error of a file that is no longer the version a request names.
pub(crate) fn changed(shown: &str) -> WireError {
    WireError::new(
        ErrorCode::Changed,
        format!("{shown} is no longer the version the request names: look at it again"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sft_protocol::decode_request;

    #[test]
    fn features_need_v3_and_compression_may_be_refused() {
        let old = decode_request(br#"{"verb":"GET","v":2}"#).unwrap();
        let new = decode_request(br#"{"verb":"GET","v":3}"#).unwrap();
        assert_eq!(
            needs_v3(&old, "\"ranges\"").unwrap_err().code,
            ErrorCode::BadRequest
        );
        needs_v3(&new, "\"ranges\"").unwrap();
        let mut limits = Limits::default();
        assert_eq!(compress_level(&limits, None).unwrap(), DEFAULT_ZSTD_LEVEL);
        assert_eq!(compress_level(&limits, Some(19)).unwrap(), 9);
        limits.compress_level_max = None;
        assert_eq!(
            compress_level(&limits, None).unwrap_err().code,
            ErrorCode::Unsupported
        );
        assert!(accepts_compressed(&limits).is_err());
        let h = blake3::hash(b"x");
        assert!(still(Some(h), Some(blake3::hash(b"y")), "f").is_err());
        still(None, Some(h), "f").unwrap();
        still(Some(h), Some(h), "f").unwrap();
        assert!(expected_hash(Some("ABC")).is_err());
    }
}
