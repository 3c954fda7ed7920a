//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` before each
//! family, one `name{labels} value` line per sample.

use super::{Metrics, Outcome, Refusal};
use sft_protocol::ErrorCode;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `Content-Type` of the page.
pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What is read when the page is rendered rather than counted as the server works.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauges {
    /// The server program's name and version (`sft_build_info`).
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) connections_open: usize,
    pub(crate) max_connections: usize,
    pub(crate) upload_slots_in_use: usize,
    pub(crate) upload_slots_max: usize,
    pub(crate) partials_kept: usize,
    pub(crate) partials_kept_bytes: u64,
    /// Whether the storage answered its last probe (`None`: not probed yet).
    pub(crate) storage_up: Option<bool>,
    /// The last probe's latency, or how long an overdue one has waited.
    pub(crate) storage_probe: std::time::Duration,
    /// File-system calls given up on whose call has not returned.
    pub(crate) storage_stuck: u64,
    /// File-system calls given up on since the start.
    pub(crate) storage_given_up: u64,
    /// Most file-system calls at once (--storage-jobs).
    pub(crate) storage_jobs: usize,
}

/// Appends one family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A label value as the format quotes it: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub(super) fn render(metrics: &Metrics, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(16 * 1024);
    family(
        &mut out,
        "sft_build_info",
        "gauge",
        "The server program's name and version (always 1).",
    );
    let _ = writeln!(
        out,
        "sft_build_info{{name=\"{}\",version=\"{}\"}} 1",
        label(&gauges.name),
        label(&gauges.version)
    );
    single(
        &mut out,
        "sft_connections_open",
        "gauge",
        "Connections being served now.",
        gauges.connections_open as u64,
    );
    single(
        &mut out,
        "sft_connections_max",
        "gauge",
        "Most connections served at once (--max-connections, as fitted to the open-file limit).",
        gauges.max_connections as u64,
    );
    single(
        &mut out,
        "sft_connections_accepted_total",
        "counter",
        "Connections accepted and served.",
        load(&metrics.accepted),
    );
    family(&mut out, "sft_connections_refused_total", "counter", "Connections closed before they were served, by reason: busy (over --max-connections), allow_list (outside --allow), tls_required (plaintext to a TLS server).");
    for why in Refusal::ALL {
        let _ = writeln!(
            out,
            "sft_connections_refused_total{{reason=\"{}\"}} {}",
            why.as_str(),
            load(&metrics.refused[why as usize])
        );
    }
    family(&mut out, "sft_requests_total", "counter", "Requests answered, by verb and outcome (ok, aborted, or the wire error code); verb \"unknown\" for a verb the server does not know or a header it could not read.");
    for (verb, row) in metrics.verbs.iter().zip(metrics.requests.iter()) {
        for outcome in Outcome::all() {
            let value = load(&row[outcome.index()]);
            // Every verb's `ok` series exists from the start (so a rate over it sees the first
            // request); the others appear once they happen, which keeps the page short.
            if value == 0 && outcome != Outcome::Ok {
                continue;
            }
            let _ = writeln!(
                out,
                "sft_requests_total{{verb=\"{}\",outcome=\"{}\"}} {}",
                label(verb),
                outcome.as_str(),
                value
            );
        }
    }
    family(&mut out, "sft_token_refusals_total", "counter", "Requests refused for their token: unauthorized (none, or not valid) or forbidden (a read-only token asking to write).");
    for code in [ErrorCode::Unauthorized, ErrorCode::Forbidden] {
        let column = Outcome::Error(code).index();
        let sum: u64 = metrics.requests.iter().map(|row| load(&row[column])).sum();
        let _ = writeln!(
            out,
            "sft_token_refusals_total{{code=\"{}\"}} {sum}",
            code.as_str()
        );
    }
    single(
        &mut out,
        "sft_received_bytes_total",
        "counter",
        "Body bytes received from clients (as they crossed the wire).",
        load(&metrics.bytes_in),
    );
    single(
        &mut out,
        "sft_sent_bytes_total",
        "counter",
        "Body bytes sent to clients (as they crossed the wire).",
        load(&metrics.bytes_out),
    );
    single(
        &mut out,
        "sft_upload_slots_in_use",
        "gauge",
        "Uploads being received now.",
        gauges.upload_slots_in_use as u64,
    );
    single(
        &mut out,
        "sft_upload_slots_max",
        "gauge",
        "Most uploads received at once (--max-uploads).",
        gauges.upload_slots_max as u64,
    );
    single(
        &mut out,
        "sft_partials_kept",
        "gauge",
        "Interrupted uploads kept for a resume, as this server knows them.",
        gauges.partials_kept as u64,
    );
    single(
        &mut out,
        "sft_partials_kept_bytes",
        "gauge",
        "Bytes held by the interrupted uploads kept for a resume.",
        gauges.partials_kept_bytes,
    );
    if let Some(up) = gauges.storage_up {
        single(
            &mut out,
            "sft_storage_up",
            "gauge",
            "Whether the served folder's storage answered its last probe (HELLO says unavailable while it does not).",
            u64::from(up),
        );
    }
    family(
        &mut out,
        "sft_storage_probe_seconds",
        "gauge",
        "How long the last storage probe took, or how long an overdue one has waited.",
    );
    let _ = writeln!(
        out,
        "sft_storage_probe_seconds {}",
        gauges.storage_probe.as_secs_f64()
    );
    single(
        &mut out,
        "sft_storage_calls_stuck",
        "gauge",
        "File-system calls given up on (--storage-timeout) whose call has not returned: threads the storage holds.",
        gauges.storage_stuck,
    );
    single(
        &mut out,
        "sft_storage_calls_max",
        "gauge",
        "Most file-system calls waiting on the storage at once (--storage-jobs).",
        gauges.storage_jobs as u64,
    );
    single(
        &mut out,
        "sft_storage_calls_given_up_total",
        "counter",
        "File-system calls (and waits for a place) given up on after --storage-timeout.",
        gauges.storage_given_up,
    );
    family(
        &mut out,
        "sft_tls_handshakes_total",
        "counter",
        "TLS handshakes, by result: ok, or failed (refused, broken, or not completed in time).",
    );
    let _ = writeln!(
        out,
        "sft_tls_handshakes_total{{result=\"ok\"}} {}",
        load(&metrics.handshakes_ok)
    );
    let _ = writeln!(
        out,
        "sft_tls_handshakes_total{{result=\"failed\"}} {}",
        load(&metrics.handshakes_failed)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let metrics = Metrics::new(&["FETCH", "ST\"ORE"]);
        metrics.request(Some(0), Outcome::Ok, 0, 4096);
        let page = render(&metrics, &Gauges::default());
        let mut typed = std::collections::HashSet::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{line}");
            }
        }
        assert!(page.contains("sft_requests_total{verb=\"FETCH\",outcome=\"ok\"} 1\n"));
        assert!(
            page.contains("verb=\"ST\\\"ORE\""),
            "label values are escaped"
        );
        assert!(page.contains("sft_sent_bytes_total 4096\n"));
    }
}
