//! Metrics for `--metrics`: counters kept as the server works, and the page a Prometheus
//! scraper reads.
//!
//! - `mod.rs`: the counters ([`Metrics`]): plain atomics, labelled ones in fixed tables indexed
//!   by the registry's verb index and the outcome, so that counting a request costs a few
//!   relaxed additions and no lookup or allocation;
//! - `expose.rs`: the text exposition format (0.0.4), rendered at scrape time together with the
//!   gauges read then (connections open, upload slots, partials kept);
//! - `http.rs`: the minimal HTTP/1.1 responder serving it, on a port of its own.

mod expose;
mod http;

pub(crate) use expose::Gauges;
pub(crate) use http::{bind, serve};

use sft_protocol::ErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// What became of a request, as its log line and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered `ok`.
    Ok,
    /// Answered with an error reply of this code.
    Error(ErrorCode),
    /// Cut short: the connection was closed in the middle of it.
    Aborted,
}

/// Outcomes beside the error codes: `ok` and `aborted`.
const OTHER_OUTCOMES: usize = 2;
/// Columns of the request table.
const OUTCOMES: usize = OTHER_OUTCOMES + ErrorCode::ALL.len();

impl Outcome {
    /// The outcome as logged and labelled: `ok`, `aborted`, or the wire error code.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Aborted => "aborted",
            Outcome::Error(code) => code.as_str(),
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::Aborted => 1,
            Outcome::Error(code) => OTHER_OUTCOMES + code.index(),
        }
    }

    fn all() -> impl Iterator<Item = Outcome> {
        [Outcome::Ok, Outcome::Aborted]
            .into_iter()
            .chain(ErrorCode::ALL.into_iter().map(Outcome::Error))
    }
}

/// Why a connection was closed before it was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over `--max-connections` or out of file descriptors (answered `busy`, or closed
    /// unanswered in a flood).
    Busy,
    /// From an address outside `--allow`.
    AllowList,
    /// A plaintext request to a TLS server.
    TlsRequired,
}

impl Refusal {
    const ALL: [Refusal; 3] = [Refusal::Busy, Refusal::AllowList, Refusal::TlsRequired];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::AllowList => "allow_list",
            Refusal::TlsRequired => "tls_required",
        }
    }
}

/// The label of requests whose verb the registry does not know (or whose header could not be
/// read): lower case, so it never names a registered verb (those are upper case).
const UNKNOWN_VERB: &str = "unknown";

/// The server's counters. Everything here only ever grows.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// The registry's verbs, in its order, then [`UNKNOWN_VERB`]: the rows of `requests`.
    verbs: Vec<String>,
    /// Requests by verb (row) and outcome (column).
    requests: Box<[[AtomicU64; OUTCOMES]]>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    accepted: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    /// TLS handshakes completed, and failed (or not completed in time).
    handshakes_ok: AtomicU64,
    handshakes_failed: AtomicU64,
}

impl Metrics {
    /// Counters for a server answering `verbs` (the registry's, in its order).
    pub(crate) fn new(verbs: &[&str]) -> Metrics {
        let mut rows: Vec<String> = verbs.iter().map(|v| v.to_string()).collect();
        rows.push(UNKNOWN_VERB.to_owned());
        let requests = rows
            .iter()
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect();
        Metrics {
            verbs: rows,
            requests,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            handshakes_ok: AtomicU64::new(0),
            handshakes_failed: AtomicU64::new(0),
        }
    }

    /// Counts a request: `verb` is its index in the registry (`None`: a verb it does not know,
    /// or no verb could be read), with the body bytes it moved.
    pub(crate) fn request(
        &self,
        verb: Option<usize>,
        outcome: Outcome,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let row = verb
            .unwrap_or(self.verbs.len() - 1)
            .min(self.verbs.len() - 1);
        self.requests[row][outcome.index()].fetch_add(1, Ordering::Relaxed);
        if bytes_in > 0 {
            self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        }
        if bytes_out > 0 {
            self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        }
    }

    /// Counts a connection accepted (handed to a session).
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection refused for `why`.
    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a TLS handshake that completed (`true`) or did not.
    pub(crate) fn handshake(&self, ok: bool) {
        let counter = if ok {
            &self.handshakes_ok
        } else {
            &self.handshakes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics page, with `gauges` read now.
    pub(crate) fn page(&self, gauges: &Gauges) -> String {
        expose::render(self, gauges)
    }

    /// How many requests of `verb` (a label) ended with `outcome` (a label), for tests.
    #[cfg(test)]
    fn requests_of(&self, verb: &str, outcome: &str) -> u64 {
        let row = self.verbs.iter().position(|v| v == verb).unwrap();
        let column = Outcome::all().position(|o| o.as_str() == outcome).unwrap();
        self.requests[row][column].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_verb_index_and_outcome() {
        let metrics = Metrics::new(&["FETCH", "STORE"]);
        metrics.request(Some(1), Outcome::Ok, 10, 0);
        metrics.request(Some(1), Outcome::Error(ErrorCode::Busy), 0, 0);
        metrics.request(Some(0), Outcome::Aborted, 0, 7);
        metrics.request(None, Outcome::Error(ErrorCode::UnknownVerb), 0, 0);
        assert_eq!(metrics.requests_of("STORE", "ok"), 1);
        assert_eq!(metrics.requests_of("STORE", "busy"), 1);
        assert_eq!(metrics.requests_of("FETCH", "aborted"), 1);
        assert_eq!(metrics.requests_of("FETCH", "ok"), 0);
        assert_eq!(metrics.requests_of("unknown", "unknown_verb"), 1);
        assert_eq!(metrics.bytes_in.load(Ordering::Relaxed), 10);
        assert_eq!(metrics.bytes_out.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn every_outcome_has_its_own_column() {
        let columns: Vec<usize> = Outcome::all().map(Outcome::index).collect();
        assert_eq!(columns, (0..OUTCOMES).collect::<Vec<_>>());
    }
}
