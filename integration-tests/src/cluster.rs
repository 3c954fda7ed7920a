//! Several sft-servers over one shared root behind HAProxy, configured as DEPLOY.md says: the
//! very `deploy/haproxy.cfg`, with only its addresses and ports replaced. The shared root is a
//! local folder, or a GlusterFS volume with each server on a mount of it (see [`crate::gluster`]).
//!
//! HAProxy is a Debian package (`apt-get install haproxy`): where it is not installed, a
//! [`Cluster`] is not started and the test says so and passes (`SFT_TEST_HAPROXY` names the
//! program to use instead, or with an empty value none).

use crate::gluster::{find_program, Volume};
use crate::ServerProcess;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The HAProxy configuration DEPLOY.md shows.
pub const HAPROXY_CFG: &str = include_str!("../../deploy/haproxy.cfg");
/// How many servers `deploy/haproxy.cfg` lists (`sft1`…).
pub const SERVERS: usize = 3;
const LIMIT: Duration = Duration::from_secs(60);

/// The `haproxy` program, if installed, or the one `SFT_TEST_HAPROXY` names (empty: none).
pub fn haproxy() -> Option<PathBuf> {
    if let Some(chosen) = std::env::var_os("SFT_TEST_HAPROXY") {
        return Some(PathBuf::from(chosen)).filter(|p| p.is_file());
    }
    find_program("haproxy")
}

/// `deploy/haproxy.cfg` with its example addresses replaced: HAProxy listens on `frontend`,
/// and `sftN` is `servers[N - 1]`.
pub fn configure(frontend: SocketAddr, servers: &[SocketAddr]) -> String {
    let mut cfg = HAPROXY_CFG.to_owned();
    let mut replace = |from: &str, to: String| {
        assert_eq!(cfg.matches(from).count(), 1, "{from} in deploy/haproxy.cfg");
        cfg = cfg.replace(from, &to);
    };
    replace("bind :7005", format!("bind {frontend}"));
    for (n, addr) in servers.iter().enumerate() {
        replace(&format!("10.0.0.1{}:7005", n + 1), addr.to_string());
    }
    cfg
}

/// HAProxy in the foreground (`-db`), killed on drop.
#[derive(Debug)]
pub struct Balancer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The stats socket (`show servers state`, `show stat`).
    socket: PathBuf,
    /// What it printed (its log, its warnings).
    output: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A state a server is in, as HAProxy's stats socket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerState {
    /// 0: down, 2: running.
    pub op: u32,
    /// Last health check: 3 passed, 2 failed.
    pub check: u32,
}

impl Balancer {
    /// Starts HAProxy in front of `servers`, with the distribution's part of a configuration —
    /// the `global` section — written here; waits (bounded) until every server passed a health
    /// check.
    pub fn start(program: &Path, servers: &[SocketAddr]) -> Balancer {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::try_start(program, servers) {
                Ok(balancer) => return balancer,
                // The free port found was taken meanwhile: find another.
                Err(output) if tries < 3 && output.contains("cannot bind") => continue,
                Err(output) => panic!("haproxy did not start:\n{output}"),
            }
        }
    }

    fn try_start(program: &Path, servers: &[SocketAddr]) -> Result<Balancer, String> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("haproxy.sock");
        let global = format!(
            "global\n    log stdout format raw local0 info\n    stats socket {} mode 600 level admin\n",
            socket.display()
        );
        // A port free now, for HAProxy to listen on.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        std::fs::write(dir.path().join("global.cfg"), global).unwrap();
        std::fs::write(dir.path().join("sft.cfg"), configure(addr, servers)).unwrap();
        let mut child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(dir.path().join("global.cfg"))
            .arg("-f")
            .arg(dir.path().join("sft.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run haproxy");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let mut balancer = Balancer {
            child,
            addr,
            socket,
            output,
            _dir: dir,
        };
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = balancer.child.try_wait().unwrap() {
                // Its output may still be on its way: it is complete once both pipes closed.
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("{status}\n{}", balancer.output()));
            }
            let state = balancer.try_states();
            if state.len() == servers.len() && state.values().all(|s| s.op == 2 && s.check == 3) {
                return Ok(balancer);
            }
            assert!(
                Instant::now() < deadline,
                "servers not all up within {LIMIT:?}: {state:?}\n{}",
                balancer.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The answer to one command on the stats socket; empty if it does not answer (yet).
    pub fn ask(&self, command: &str) -> String {
        let Ok(mut socket) = UnixStream::connect(&self.socket) else {
            return String::new();
        };
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        socket.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = socket.read_to_string(&mut answer);
        answer
    }

    /// Rows of a table the stats socket printed: the header line starts with `# `; fields are
    /// separated by `sep`.
    fn table(answer: &str, sep: char) -> Vec<HashMap<String, String>> {
        let mut lines = answer.lines().skip_while(|l| !l.starts_with("# "));
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let names: Vec<&str> = header[2..].split(sep).collect();
        lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                names
                    .iter()
                    .zip(l.split(sep))
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// Each server's state (`sft1`…), as far as HAProxy answers already.
    pub fn try_states(&self) -> HashMap<String, ServerState> {
        let answer = self.ask("show servers state sft_servers");
        Self::table(&answer, ' ')
            .into_iter()
            .filter_map(|row| {
                let number = |k: &str| row.get(k)?.parse().ok();
                let state = ServerState {
                    op: number("srv_op_state")?,
                    check: number("srv_check_result")?,
                };
                Some((row.get("srv_name")?.clone(), state))
            })
            .collect()
    }

    /// How many connections each server (`sft1`…) has open through HAProxy now.
    pub fn sessions(&self) -> HashMap<String, u64> {
        Self::table(&self.ask("show stat"), ',')
            .into_iter()
            .filter(|row| row.get("pxname").is_some_and(|p| p == "sft_servers"))
            .filter_map(|row| {
                let name = row.get("svname")?.clone();
                let current = row.get("scur")?.parse().ok()?;
                name.starts_with("sft").then_some((name, current))
            })
            .collect()
    }
}

/// Where the servers of a test keep their shared root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// One local folder, for all.
    Local,
    /// A GlusterFS volume, mounted twice: server `i` is on mount `i % 2`.
    Gluster,
}

/// A root shared by several servers: a local temporary folder, or a GlusterFS volume whose
/// mounts the servers take in turn.
#[derive(Debug)]
pub enum Shared {
    /// One local folder.
    Local(tempfile::TempDir),
    /// A volume and its mounts.
    Gluster(Volume),
}

impl Shared {
    /// A new shared root, or `None` (said on standard error, for `test`) where the storage
    /// cannot run here.
    pub fn new(test: &str, storage: Storage) -> Option<Shared> {
        match storage {
            Storage::Local => Some(Shared::Local(tempfile::tempdir().unwrap())),
            Storage::Gluster => Volume::start(test).map(Shared::Gluster),
        }
    }

    /// The root server `i` serves.
    pub fn root(&self, i: usize) -> &Path {
        match self {
            Shared::Local(dir) => dir.path(),
            Shared::Gluster(volume) => volume.mount_path(i % crate::gluster::MOUNTS),
        }
    }

    /// A path under the root, as the first server sees it.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root(0).join(rel)
    }

    /// The volume, on GlusterFS.
    pub fn volume(&self) -> Option<&Volume> {
        match self {
            Shared::Local(_) => None,
            Shared::Gluster(volume) => Some(volume),
        }
    }

    /// The files left in the servers' own folders (staging files, partials).
    pub fn leftovers(&self) -> Vec<PathBuf> {
        crate::list_files(&self.path(".sft/tmp"))
            .into_iter()
            .chain(crate::list_files(&self.path(".sft/partial")))
            .collect()
    }

    /// Starts server `i` over its root, on the loopback.
    pub fn start_server(&self, i: usize, args: &[&str]) -> ServerProcess {
        let args: Vec<&str> = ["--host", "127.0.0.1"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        ServerProcess::start(self.root(i), &args)
    }
}

/// [`SERVERS`] servers over one shared root, behind HAProxy.
pub struct Cluster {
    /// Dropped first: no server is checked after it stopped.
    pub balancer: Balancer,
    /// `sft1`… of `deploy/haproxy.cfg`.
    pub servers: Vec<ServerProcess>,
    /// Dropped last: the servers are gone before their storage.
    pub shared: Shared,
}

impl Cluster {
    /// Starts the servers and HAProxy, or says why not (straight to standard error: the test
    /// harness would hide what `eprintln!` prints) where HAProxy or the storage is missing.
    pub fn start(test: &str, storage: Storage) -> Option<Cluster> {
        Cluster::start_with(test, storage, &[])
    }

    /// [`Cluster::start`], each server started with `args` too.
    pub fn start_with(test: &str, storage: Storage, args: &[&str]) -> Option<Cluster> {
        let Some(program) = haproxy() else {
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: haproxy is not installed (a Debian package: apt-get install haproxy)"
            );
            return None;
        };
        let shared = Shared::new(test, storage)?;
        let servers: Vec<ServerProcess> =
            (0..SERVERS).map(|i| shared.start_server(i, args)).collect();
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let balancer = Balancer::start(&program, &addrs);
        Some(Cluster {
            balancer,
            servers,
            shared,
        })
    }

    /// HAProxy's address, as a client argument.
    pub fn addr(&self) -> String {
        self.balancer.addr.to_string()
    }

    /// A path under the shared root, as the first server sees it.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.shared.path(rel)
    }

    /// The files left in the servers' own folders (staging files, partials).
    pub fn leftovers(&self) -> Vec<PathBuf> {
        self.shared.leftovers()
    }
}
