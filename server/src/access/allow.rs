//! The address allow-list (`--allow CIDR`, repeatable): peers outside it are closed at accept.

use ipnet::IpNet;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A network: an address and how many of its leading bits count (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Whether `ip` is inside. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack
    /// socket reports for an IPv4 peer) is the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS/BITS` or a bare `ADDRESS` (all its bits). Bits past the prefix are ignored
    /// (`10.1.2.3/8` is `10.0.0.0/8`); an IPv4-mapped IPv6 network of at least 96 bits is the
    /// IPv4 network it carries.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().map_err(
            |_| format!("{s:?} is not an address or a network (examples: 10.0.0.0/8, ::1/128, 192.0.2.7)"),
        )?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let (net, bits) = match net {
            IpAddr::V6(v6) if bits >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), bits - 96),
                None => (net, bits),
            },
            _ => (net, bits),
        };
        let net = IpNet::new(net, bits).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Cidr(net.trunc()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How often one refused address is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Most addresses remembered for [`LOG_EVERY`]; past it, refusals are counted, not logged one
/// by one, so a flood from many addresses neither grows memory nor the log without bound.
const REMEMBERED: usize = 4096;

/// The networks a server accepts connections from (every address when empty), and the log of
/// those it refused.
#[derive(Debug, Default)]
pub(crate) struct AllowList {
    rules: Vec<Cidr>,
    log: Mutex<RefusalLog>,
}

#[derive(Debug, Default)]
struct RefusalLog {
    /// When each address was last logged.
    seen: HashMap<IpAddr, Instant>,
    /// Refusals not logged because `seen` was full, since `summary_at`.
    unlogged: u64,
    summary_at: Option<Instant>,
}

impl AllowList {
    pub(crate) fn new(rules: Vec<Cidr>) -> AllowList {
        AllowList {
            rules,
            log: Mutex::default(),
        }
    }

    /// Whether the list restricts anything.
    pub(crate) fn is_active(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The networks, for the start-up log line.
    pub(crate) fn describe(&self) -> String {
        let all: Vec<String> = self.rules.iter().map(Cidr::to_string).collect();
        all.join(",")
    }

    /// Whether a connection from `ip` may go on.
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        self.rules.is_empty() || self.rules.iter().any(|r| r.contains(ip))
    }

    /// Logs that `peer` was refused, unless its address was logged less than a minute ago.
    pub(crate) fn refused(&self, peer: SocketAddr) {
        let now = Instant::now();
        let ip = peer.ip().to_canonical();
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        match log.note(ip, now) {
            Note::Log => {
                log::warn!(peer:% = peer; "connection refused: address not allowed (--allow)")
            }
            Note::Quiet => {}
            Note::Summary(n) => {
                log::warn!(addresses = n; "connections refused from many addresses not allowed (--allow); not logged one by one")
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Note {
    Log,
    Quiet,
    Summary(u64),
}

impl RefusalLog {
    fn note(&mut self, ip: IpAddr, now: Instant) -> Note {
        if let Some(at) = self.seen.get(&ip) {
            if now.duration_since(*at) < LOG_EVERY {
                return Note::Quiet;
            }
        }
        if self.seen.len() >= REMEMBERED && !self.seen.contains_key(&ip) {
            self.seen
                .retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        }
        if self.seen.len() < REMEMBERED || self.seen.contains_key(&ip) {
            self.seen.insert(ip, now);
            return Note::Log;
        }
        self.unlogged += 1;
        match self.summary_at {
            Some(at) if now.duration_since(at) < LOG_EVERY => Note::Quiet,
            _ => {
                self.summary_at = Some(now);
                Note::Summary(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("[::1]/128").to_string(), "::1/128");
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("172.16.0.0/12").to_string(), "172.16.0.0/12");
        assert_eq!(cidr("172.31.255.255/12").to_string(), "172.16.0.0/12");
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn matches_by_prefix() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        let odd = cidr("172.16.0.0/12");
        assert!(odd.contains(ip("172.31.0.1")));
        assert!(!odd.contains(ip("172.32.0.1")));
        assert!(cidr("127.0.0.1/32").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(!cidr("::1/128").contains(ip("127.0.0.1")));
        assert!(cidr("2001:db8::/33").contains(ip("2001:db8:7fff::1")));
        assert!(!cidr("2001:db8::/33").contains(ip("2001:db8:8000::1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_rules() {
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert!(!cidr("::/0").contains(ip("::ffff:10.1.2.3")));
        let list = AllowList::new(vec![cidr("127.0.0.1")]);
        assert!(list.admits(ip("::ffff:127.0.0.1")));
        assert!(!list.admits(ip("::1")));
        assert!(AllowList::default().admits(ip("::1")));
    }

    #[test]
    fn refusals_are_logged_once_a_minute_per_address_with_bounded_memory() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(log.note(a, t0), Note::Log);
        assert_eq!(log.note(a, t0 + Duration::from_secs(59)), Note::Quiet);
        assert_eq!(log.note(a, t0 + Duration::from_secs(61)), Note::Log);
        // A flood of new addresses: the map stops growing, refusals are summarised.
        let mut notes = Vec::new();
        for i in 0..(REMEMBERED as u32 + 100) {
            let peer = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
            notes.push(log.note(peer, t0 + Duration::from_secs(62)));
        }
        assert_eq!(log.seen.len(), REMEMBERED);
        let summaries = notes
            .iter()
            .filter(|n| matches!(n, Note::Summary(_)))
            .count();
        assert_eq!(summaries, 1);
        // A minute later, the old entries make room again.
        let later = t0 + Duration::from_secs(200);
        assert_eq!(log.note(ip("198.51.100.1"), later), Note::Log);
        assert!(log.seen.len() <= REMEMBERED);
    }
}
