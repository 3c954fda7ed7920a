//! Server addresses as people type them: `host`, `host:port`, `1.2.3.4`, `[::1]:7005`, `::1`.

use std::fmt;
use std::net::Ipv6Addr;

/// How a server and a path are given, for messages about a mixed-up address.
const USAGE: &str = "sft get HOST[:PORT] REMOTE [LOCAL], e.g. sft get files.example:7005 dir/file";

/// A server to connect to: a host (IP address or DNS name) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// IPv4 address, IPv6 address (without brackets) or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `server`, using `default_port` when it names none.
pub fn parse_server(server: &str, default_port: u16) -> Result<ServerAddr, String> {
    let bad = |why: &str| format!("invalid server address {server:?}: {why}");
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| bad("the port must be a number from 0 to 65535"))
    };
    if server.is_empty() {
        return Err(bad("it is empty"));
    }
    if let Some(rest) = server.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let port = match after {
            "" => default_port,
            p => port(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("expected ':PORT' after ']'"))?,
            )?,
        };
        return Ok(ServerAddr {
            host: host.to_owned(),
            port,
        });
    }
    match server.matches(':').count() {
        0 => Ok(ServerAddr {
            host: server.to_owned(),
            port: default_port,
        }),
        1 => {
            let (host, p) = server.split_once(':').expect("one colon");
            if host.is_empty() {
                return Err(bad("the host is empty"));
            }
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!(
                    "{p:?} is not a port number; the path on the server is an argument of its \
                     own: {USAGE}"
                )));
            }
            Ok(ServerAddr {
                host: host.to_owned(),
                port: port(p)?,
            })
        }
        // A bare IPv6 address means that address on the default port; a port needs brackets.
        _ if server.parse::<Ipv6Addr>().is_ok() => Ok(ServerAddr {
            host: server.to_owned(),
            port: default_port,
        }),
        _ => {
            let (front, last) = server.rsplit_once(':').expect("two colons");
            if front.parse::<Ipv6Addr>().is_ok() && last.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!(
                    "an IPv6 address with a port needs brackets: [{front}]:{last}"
                )));
            }
            Err(bad(&format!(
                "not HOST, HOST:PORT, an IPv6 address or [IPv6]:PORT; the path on the server is \
                 an argument of its own: {USAGE}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<(String, u16), String> {
        parse_server(s, 7005).map(|a| (a.host, a.port))
    }

    #[test]
    fn forms_people_type() {
        assert_eq!(p("10.0.0.1").unwrap(), ("10.0.0.1".into(), 7005));
        assert_eq!(p("10.0.0.1:9000").unwrap(), ("10.0.0.1".into(), 9000));
        assert_eq!(
            p("files.example.org").unwrap(),
            ("files.example.org".into(), 7005)
        );
        assert_eq!(p("localhost:1").unwrap(), ("localhost".into(), 1));
        assert_eq!(p("[::1]").unwrap(), ("::1".into(), 7005));
        assert_eq!(p("[::1]:8000").unwrap(), ("::1".into(), 8000));
        assert_eq!(p("::1").unwrap(), ("::1".into(), 7005));
        assert_eq!(p("fe80::1:2").unwrap(), ("fe80::1:2".into(), 7005));
        assert_eq!(p("fe80::1").unwrap(), ("fe80::1".into(), 7005));
    }

    #[test]
    fn a_port_after_a_bare_ipv6_address_asks_for_brackets() {
        let e = p("::1:43187").unwrap_err();
        assert!(e.contains("[::1]:43187"), "{e}");
    }

    #[test]
    fn a_path_in_the_address_explains_the_form() {
        for s in [
            "host:7005:dir/file",
            "host:dir/file",
            "files.example:notes.txt",
        ] {
            let e = p(s).unwrap_err();
            assert!(e.contains("HOST[:PORT] REMOTE"), "{s}: {e}");
        }
    }

    #[test]
    fn bad_forms() {
        for s in [
            "",
            "host:",
            "host:x",
            "host:70000",
            "[::1",
            "[::1]x",
            ":80",
            "a:1:b",
            "::1:x",
        ] {
            assert!(p(s).is_err(), "{s}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["1.2.3.4:5", "[::1]:7005", "name:7005"] {
            assert_eq!(parse_server(s, 1).unwrap().to_string(), s);
        }
    }
}
