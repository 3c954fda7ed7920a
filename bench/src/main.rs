//! `sft-bench`: a load generator for sft servers.
//!
//! Opens `--connections` persistent connections; each issues GET (or SEND) requests back to back,
//! speaking the raw protocol itself so the numbers measure the server rather than client-side
//! overhead, and records every request's latency in a bounded log-bucket histogram. By default
//! each connection is a thread with a blocking socket (`--engine threads`: two system calls per
//! small request); `--engine async` runs them as async-std tasks instead. After
//! `--warmup` seconds it measures for `--duration` seconds, then prints requests/s, bytes/s,
//! latency percentiles and errors — or one JSON line with `--json`.
#![forbid(unsafe_code)]

mod hist;
mod load;
mod relay;
mod threads;

use load::{Engine, Plan, Stats, Work};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::exit;
use std::time::Duration;
use structopt::clap::ErrorKind;
use structopt::StructOpt;

const EXAMPLES: &str = "EXAMPLES:
    sft-bench get 127.0.0.1:7005 small.bin -c 100 -d 10
    sft-bench get 127.0.0.1:7005 big.bin --connections 1 --requests 5 --json
    sft-bench send 127.0.0.1:7005 --size 4K -c 8 -d 10 --warmup 2
    sft-bench hello 127.0.0.1:7005 -c 10 -d 10
    sft-bench http 127.0.0.1:8080 /small.bin -c 100 -d 10   (nginx, to check against wrk)
    sft-bench relay --listen 127.0.0.1:17005 --to 127.0.0.1:7005 --delay-ms 25 --rate-mbit 100

SEND uploads go to bench/<connection>-<i> on the server (overwriting), with i cycling through
0..--files, so a run leaves at most connections x files files behind.";

#[derive(Debug, StructOpt)]
#[structopt(
    name = "sft-bench",
    about = "Load generator for sft servers: persistent connections issuing requests back to back.",
    after_help = EXAMPLES
)]
enum Cli {
    /// Download PATH over and over, discarding the bytes.
    #[structopt(after_help = EXAMPLES)]
    Get {
        /// Server: IPv4 address, [IPv6] address or host name, optionally with :PORT.
        server: String,
        /// The file to download, relative to the server's served folder.
        path: String,
        #[structopt(flatten)]
        opts: LoadOpts,
    },
    /// Download URL-PATH over HTTP/1.1 (keep-alive) over and over: the same loop against an
    /// HTTP server such as nginx, to check this tool's figures against another load generator.
    #[structopt(after_help = EXAMPLES)]
    Http {
        /// HTTP server: address and port, as for `get`.
        server: String,
        /// The URL path, starting with `/`.
        path: String,
        #[structopt(flatten)]
        opts: LoadOpts,
    },
    /// Ask HELLO over and over: what a load balancer's health checks cost the server.
    #[structopt(after_help = EXAMPLES)]
    Hello {
        /// Server: IPv4 address, [IPv6] address or host name, optionally with :PORT.
        server: String,
        #[structopt(flatten)]
        opts: LoadOpts,
    },
    /// Upload --size bytes from memory to bench/<connection>-<i> over and over.
    #[structopt(after_help = EXAMPLES)]
    Send {
        /// Server: IPv4 address, [IPv6] address or host name, optionally with :PORT.
        server: String,
        /// Bytes per upload; K, M and G suffixes are powers of 1024 (4K, 1M, 1G).
        #[structopt(long, parse(try_from_str = parse_size))]
        size: u64,
        /// Distinct destination files per connection (i in bench/<connection>-<i> cycles).
        #[structopt(long, default_value = "4")]
        files: u64,
        #[structopt(flatten)]
        opts: LoadOpts,
    },
    /// Relay TCP connections from --listen to --to as over a long link: every byte delayed
    /// by --delay-ms each way (a round trip takes twice that), and each direction paced to
    /// --rate-mbit shared by all connections. Runs until killed.
    #[structopt(after_help = EXAMPLES)]
    Relay {
        /// Address to accept connections on.
        #[structopt(long)]
        listen: String,
        /// Address to relay them to.
        #[structopt(long)]
        to: String,
        /// One-way delay in milliseconds, each direction.
        #[structopt(long, default_value = "25")]
        delay_ms: u64,
        /// Rate limit each way, in Mbit/s (none by default).
        #[structopt(long)]
        rate_mbit: Option<u64>,
    },
}

#[derive(Debug, StructOpt)]
struct LoadOpts {
    /// Persistent connections, each issuing one request at a time.
    #[structopt(short, long, default_value = "1")]
    connections: usize,
    /// Seconds to measure (after the warm-up).
    #[structopt(short, long, default_value = "10")]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[structopt(long, default_value = "0")]
    warmup: f64,
    /// Stop after this many measured requests over all connections.
    #[structopt(long)]
    requests: Option<u64>,
    /// Print one JSON line instead of a readable summary.
    #[structopt(long)]
    json: bool,
    /// Exit with status 1 when any request failed.
    #[structopt(long)]
    fail_on_error: bool,
    /// Port to use when SERVER names none.
    #[structopt(short, long, default_value = "7005")]
    port: u16,
    /// How connections are driven: `threads` (one blocking thread each, least client overhead)
    /// or `async` (async-std tasks).
    #[structopt(long, default_value = "threads", possible_values = &["threads", "async"])]
    engine: Engine,
    /// Allow a server that is not on a loopback address (the default refuses, so a load test
    /// never hits another machine by mistake).
    #[structopt(long)]
    allow_remote: bool,
}

/// Longest run accepted, warm-up included.
const MAX_SECONDS: f64 = 24.0 * 3600.0;
/// Most connections accepted.
const MAX_CONNECTIONS: usize = 100_000;

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M or G)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a size: {s:?} (e.g. 4096, 4K, 1M, 1G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

/// Resolves `server` (`host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address).
fn resolve(server: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if let Ok(ip) = server.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, default_port)]);
    }
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {server:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port in {server:?}"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("unexpected {after:?} after ']' in {server:?}")),
        };
        (ip, port)
    } else {
        match server.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {server:?}"))?),
            None => (server, default_port),
        }
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host:?} resolved to no address"));
    }
    Ok(addrs)
}

fn seconds(what: &str, v: f64) -> Result<Duration, String> {
    if !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(format!(
            "--{what} must be between 0 and {MAX_SECONDS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn plan(server: &str, work: Work, opts: &LoadOpts) -> Result<Plan, String> {
    let addrs = resolve(server, opts.port)?;
    if !opts.allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "{server} is not a loopback address; pass --allow-remote to load another machine"
        ));
    }
    if opts.connections == 0 || opts.connections > MAX_CONNECTIONS {
        return Err(format!(
            "--connections must be between 1 and {MAX_CONNECTIONS}"
        ));
    }
    let duration = seconds("duration", opts.duration)?;
    if duration.is_zero() {
        return Err("--duration must be more than 0 seconds".into());
    }
    Ok(Plan {
        addrs,
        work,
        connections: opts.connections,
        warmup: seconds("warmup", opts.warmup)?,
        duration,
        max_requests: opts.requests,
    })
}

fn per_sec(n: u64, window: Duration) -> f64 {
    let s = window.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

fn report(
    verb: &str,
    server: &str,
    connections: usize,
    stats: &Stats,
    window: Duration,
    json: bool,
) {
    let rps = per_sec(stats.requests, window);
    let bps = per_sec(stats.bytes, window);
    let h = &stats.latency;
    if json {
        let line = serde_json::json!({
            "verb": verb,
            "server": server,
            "connections": connections,
            "duration_s": window.as_secs_f64(),
            "requests": stats.requests,
            "requests_per_sec": rps,
            "bytes": stats.bytes,
            "bytes_per_sec": bps,
            "p50_us": h.quantile(0.50),
            "p90_us": h.quantile(0.90),
            "p99_us": h.quantile(0.99),
            "p999_us": h.quantile(0.999),
            "min_us": h.min(),
            "max_us": h.max(),
            "mean_us": h.mean(),
            "errors": stats.errors,
            "error_kinds": stats.error_kinds,
        });
        println!("{line}");
        return;
    }
    println!(
        "{verb} {server}: {} connection(s), {:.2} s measured",
        connections,
        window.as_secs_f64()
    );
    println!("  requests  {:>12}  {:>12.1} req/s", stats.requests, rps);
    println!(
        "  bytes     {:>12}  {:>12.1} MB/s",
        stats.bytes,
        bps / 1_000_000.0
    );
    println!(
        "  latency   p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  mean {:.0} µs",
        h.quantile(0.50),
        h.quantile(0.90),
        h.quantile(0.99),
        h.quantile(0.999),
        h.max(),
        h.mean()
    );
    println!("  errors    {:>12}", stats.errors);
    for (kind, n) in &stats.error_kinds {
        println!("    {kind}: {n}");
    }
}

fn main() {
    let cli = match Cli::from_iter_safe(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::HelpDisplayed | ErrorKind::VersionDisplayed
            ) =>
        {
            println!("{}", e.message);
            exit(0);
        }
        Err(e) => {
            eprintln!("{}", e.message);
            exit(2);
        }
    };
    let (verb, server, work, opts) = match cli {
        Cli::Relay {
            listen,
            to,
            delay_ms,
            rate_mbit,
        } => {
            let link = relay::Link {
                delay: Duration::from_millis(delay_ms),
                rate_bps: rate_mbit.map(|m| m * 1_000_000),
            };
            match relay::run(&listen, &to, link) {
                Ok(()) => exit(0),
                Err(e) => {
                    eprintln!("error: {e}");
                    exit(1);
                }
            }
        }
        Cli::Get { server, path, opts } => ("get", server, Work::Get { path }, opts),
        Cli::Hello { server, opts } => ("hello", server, Work::Hello, opts),
        Cli::Http { server, path, opts } => {
            if opts.engine != Engine::Threads || !path.starts_with('/') {
                eprintln!("error: http takes a URL path starting with / and the threads engine");
                exit(2);
            }
            ("http", server, Work::Http { path }, opts)
        }
        Cli::Send {
            server,
            size,
            files,
            opts,
        } => (
            "send",
            server,
            Work::Send {
                size,
                files: files.max(1),
            },
            opts,
        ),
    };
    let plan = match plan(&server, work, &opts) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            exit(2);
        }
    };
    let connections = plan.connections;
    let (stats, window) = load::run(plan, opts.engine);
    report(verb, &server, connections, &stats, window, opts.json);
    if opts.fail_on_error && stats.errors > 0 {
        exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn servers_resolve_with_default_ports() {
        let v4: SocketAddr = "127.0.0.1:7005".parse().unwrap();
        assert_eq!(resolve("127.0.0.1", 7005).unwrap(), vec![v4]);
        assert_eq!(resolve("127.0.0.1:7005", 1).unwrap(), vec![v4]);
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(resolve("[::1]:9000", 1).unwrap(), vec![v6]);
        assert_eq!(resolve("[::1]", 9000).unwrap(), vec![v6]);
        assert_eq!(resolve("::1", 9000).unwrap(), vec![v6]);
        assert!(resolve("[::1", 1).is_err());
        assert!(resolve("127.0.0.1:x", 1).is_err());
    }

    #[test]
    fn remote_servers_need_opting_in() {
        let opts = LoadOpts::from_iter_safe(["x"]).unwrap();
        let work = || Work::Get { path: "f".into() };
        assert!(plan("127.0.0.1:1", work(), &opts).is_ok());
        let err = plan("192.0.2.1:1", work(), &opts).unwrap_err();
        assert!(err.contains("--allow-remote"), "{err}");
    }
}
