//! A real GlusterFS volume for the tests: a replica-2 volume with both bricks in a temporary
//! folder, mounted twice with FUSE, so that servers on different mounts share one root as
//! servers on different machines would.
//!
//! `glusterd` is a machine singleton (it listens on port 24007). The tests start it themselves,
//! in the foreground, the first time a volume is asked for, and stop it, by pid, when the last
//! volume of the test program is dropped: tests of one program running in parallel share it,
//! and the next test program (cargo runs them one after another) starts its own. A `glusterd`
//! already answering when none of ours runs (the machine's own) is used and left running; only
//! the volumes made here are stopped and deleted.
//!
//! Each volume's FUSE clients run in the foreground too, so their pids are known: a test can
//! stop one (`SIGSTOP`, as a hung network mount behaves) or kill a brick by its pid. On drop,
//! everything a volume started is stopped by pid, unmounted (lazily if need be), and the volume
//! is stopped and deleted — also when the test failed.
//!
//! Where GlusterFS cannot run — not root, not installed, no `/dev/fuse`, or a volume cannot be
//! made — [`Volume::start`] says why on standard error and the test passes without running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a step of setting up or tearing down may take.
const LIMIT: Duration = Duration::from_secs(60);
/// `statfs`'s file-system type of a FUSE mount.
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;
/// How many FUSE mounts of each volume are made.
pub const MOUNTS: usize = 2;

/// The `glusterd` the volumes of this test program use.
struct Daemon {
    /// Volumes alive.
    users: usize,
    /// Ours, when we started it (stopped when the last volume goes); `None` when one was
    /// already running.
    child: Option<Child>,
    /// Its log.
    _dir: Option<tempfile::TempDir>,
}

static DAEMON: Mutex<Daemon> = Mutex::new(Daemon {
    users: 0,
    child: None,
    _dir: None,
});

/// Serializes volume operations: glusterd refuses one while another holds its cluster lock
/// ("Another transaction is in progress").
static OPERATIONS: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding it left nothing half-done that matters here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A program in `PATH` or in the `sbin` folders (often not in a user's `PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Why GlusterFS cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("GlusterFS needs root (glusterd, FUSE mounts)".into());
    }
    for program in ["glusterd", "gluster", "glusterfs", "glusterfsd"] {
        if find_program(program).is_none() {
            return Some(format!(
                "{program} is not installed (Debian packages glusterfs-server, glusterfs-client)"
            ));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("there is no /dev/fuse".into());
    }
    None
}

/// Runs `gluster --mode=script ARGS…`, one operation at a time, again while glusterd is busy
/// with another; its output, or what it said when it failed.
fn gluster(args: &[&str]) -> Result<String, String> {
    let _one = lock(&OPERATIONS);
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = Command::new(find_program("gluster").ok_or("no gluster program")?)
            .arg("--mode=script")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("gluster: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return Ok(text);
        }
        let busy = text.contains("Another transaction") || text.contains("Locking failed");
        if !busy || Instant::now() > deadline {
            return Err(format!("gluster {}: {}", args.join(" "), text.trim()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a glusterd answers.
fn answers() -> bool {
    gluster(&["volume", "list"]).is_ok()
}

/// Stops and deletes the volumes of test programs that were killed before they could (named
/// `sft-PID-N`, their PID gone): glusterd would start their bricks again with every start.
fn remove_stale_volumes() {
    let Ok(list) = gluster(&["volume", "list"]) else {
        return;
    };
    for name in list.lines().map(str::trim) {
        let pid = name
            .strip_prefix("sft-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = gluster(&["volume", "stop", name, "force"]);
        let _ = gluster(&["volume", "delete", name]);
    }
}

/// A use of the glusterd: started if none runs; stopped with the last use if started here.
struct Lease;

impl Lease {
    fn take() -> Result<Lease, String> {
        let mut daemon = lock(&DAEMON);
        if daemon.users == 0 && !answers() {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mut child = Command::new(find_program("glusterd").ok_or("no glusterd")?)
                .args(["-N", "-L", "WARNING", "-l"])
                .arg(dir.path().join("glusterd.log"))
                .stdin(Stdio::null())
                // Its hook scripts print here (about Samba, SELinux…): not the tests' business.
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("glusterd: {e}"))?;
            let deadline = Instant::now() + LIMIT;
            while !answers() {
                let log = || std::fs::read_to_string(dir.path().join("glusterd.log"));
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "glusterd ended ({status}): {}",
                        log().unwrap_or_default()
                    ));
                }
                if Instant::now() > deadline {
                    stop(&mut child);
                    return Err(format!("glusterd did not answer within {LIMIT:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            daemon.child = Some(child);
            daemon._dir = Some(dir);
            remove_stale_volumes();
        }
        daemon.users += 1;
        Ok(Lease)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut daemon = lock(&DAEMON);
        daemon.users -= 1;
        if daemon.users == 0 {
            if let Some(mut child) = daemon.child.take() {
                stop(&mut child);
            }
            daemon._dir = None;
        }
    }
}

/// Sends `signal` to `pid`; false if there is no such process.
pub fn signal(pid: u32, signal: rustix::process::Signal) -> bool {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid above 0");
    rustix::process::kill_process(pid, signal).is_ok()
}

/// Lets a stopped process (`SIGSTOP`) go on when dropped. Declared after the servers that wait
/// on it, it is dropped before them: a failed assertion lets the storage answer again before
/// those servers are stopped (whose threads wait on it until then).
#[derive(Debug)]
pub struct Resume(pub u32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, rustix::process::Signal::CONT);
    }
}

/// Stops a child: asked (`SIGTERM`), then killed if it does not end soon; waited for.
fn stop(child: &mut Child) {
    use rustix::process::Signal;
    signal(child.id(), Signal::CONT);
    signal(child.id(), Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(None) = child.try_wait() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

/// Whether `path` is a mount point now (`/proc/self/mountinfo`).
fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let path = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_ref()))
}

/// One FUSE client of the volume, in the foreground.
#[derive(Debug)]
struct Mount {
    child: Child,
    path: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        // The client unmounts when asked to end; a lazy unmount where it could not.
        stop(&mut self.child);
        if mounted(&self.path) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// A replica-2 GlusterFS volume with both bricks in a temporary folder, started and mounted
/// twice; stopped, deleted and unmounted on drop.
#[derive(Debug)]
pub struct Volume {
    name: String,
    /// Mounts before the volume they mount: dropped first.
    mounts: Vec<Mount>,
    /// The brick and self-heal processes glusterd started for it, in case it cannot stop
    /// them.
    daemons: Vec<u32>,
    dir: tempfile::TempDir,
    /// Keeps the glusterd running while the volume lives (the last field: dropped last).
    _lease: Lease,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

/// How many volumes this program made, for unique names.
static VOLUMES: AtomicUsize = AtomicUsize::new(0);

impl Volume {
    /// Makes, starts and mounts a volume, or says why not (straight to standard error: the
    /// test harness would hide what `eprintln!` prints) for `test`, which then passes without
    /// running.
    pub fn start(test: &str) -> Option<Volume> {
        match unavailable().map_or_else(Self::try_start, Err) {
            Ok(volume) => Some(volume),
            Err(why) => {
                let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
                None
            }
        }
    }

    fn try_start() -> Result<Volume, String> {
        let lease = Lease::take()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let n = VOLUMES.fetch_add(1, Ordering::Relaxed);
        let name = format!("sft-{}-{n}", std::process::id());
        // GlusterFS refuses 127.0.0.1 as a brick's host, but takes the machine's name where it
        // resolves to this machine; `force`: the bricks are on the root file system.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_err(|e| format!("the host name: {e}"))?;
        let bricks: Vec<String> = (0..2)
            .map(|i| {
                format!(
                    "{}:{}",
                    host.trim(),
                    dir.path().join(format!("brick{i}")).display()
                )
            })
            .collect();
        let mut volume = Volume {
            name: name.clone(),
            mounts: Vec::new(),
            daemons: Vec::new(),
            dir,
            _lease: lease,
        };
        let mut create = vec!["volume", "create", &name, "replica", "2"];
        create.extend(bricks.iter().map(String::as_str));
        create.push("force");
        gluster(&create)?;
        for (option, value) in OPTIONS {
            gluster(&["volume", "set", &name, option, value])?;
        }
        gluster(&["volume", "start", &name])?;
        volume.daemons = volume.status()?.into_iter().map(|(_, pid)| pid).collect();
        for i in 0..MOUNTS {
            let mount = volume.mount(host.trim(), i)?;
            volume.mounts.push(mount);
        }
        Ok(volume)
    }

    /// Mounts the volume at `mountN` with a FUSE client in the foreground, and waits until the
    /// mount point is a FUSE mount.
    fn mount(&self, host: &str, i: usize) -> Result<Mount, String> {
        let path = self.dir.path().join(format!("mount{i}"));
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let log = self.dir.path().join(format!("mount{i}.log"));
        let child = Command::new(find_program("glusterfs").ok_or("no glusterfs")?)
            .arg("-N")
            .args(MOUNT_OPTIONS)
            .arg(format!("--volfile-server={host}"))
            .arg(format!("--volfile-id={}", self.name))
            .arg("-l")
            .arg(&log)
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("glusterfs: {e}"))?;
        let mut mount = Mount { child, path };
        let deadline = Instant::now() + LIMIT;
        loop {
            if mounted(&mount.path)
                && rustix::fs::statfs(&mount.path)
                    .is_ok_and(|s| s.f_type as u64 == FUSE_SUPER_MAGIC)
            {
                return Ok(mount);
            }
            if let Ok(Some(status)) = mount.child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("the FUSE client ended ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not mounted within {LIMIT:?}",
                    mount.path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the `i`-th mount of the volume is.
    pub fn mount_path(&self, i: usize) -> &Path {
        &self.mounts[i].path
    }

    /// The pid of the `i`-th mount's FUSE client (stop it and the mount hangs).
    pub fn mount_pid(&self, i: usize) -> u32 {
        self.mounts[i].child.id()
    }

    /// The `i`-th brick's folder (its files hold the volume's data, beside GlusterFS's own).
    pub fn brick_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("brick{i}"))
    }

    /// The pids of the brick processes running now, by brick (`None`: that brick is down), as
    /// `gluster volume status` says.
    pub fn brick_pids(&self) -> Result<Vec<Option<u32>>, String> {
        let status = self.status()?;
        Ok((0..2)
            .map(|i| {
                let brick = self.brick_path(i);
                status
                    .iter()
                    .find(|(path, _)| Path::new(path) == brick)
                    .map(|&(_, pid)| pid)
            })
            .collect())
    }

    /// Starts the bricks that are down again (`volume start … force`).
    pub fn restart_bricks(&mut self) -> Result<(), String> {
        gluster(&["volume", "start", &self.name, "force"])?;
        let pids = self.status()?.into_iter().map(|(_, pid)| pid);
        self.daemons.extend(pids);
        Ok(())
    }

    /// The processes running for the volume (`path`: a brick's folder, or `localhost` for the
    /// self-heal daemon) with their pids, from `gluster volume status VOLUME --xml`.
    fn status(&self) -> Result<Vec<(String, u32)>, String> {
        let xml = gluster(&["volume", "status", &self.name, "--xml"])?;
        let field = |node: &str, tag: &str| -> Option<String> {
            let start = node.find(&format!("<{tag}>"))? + tag.len() + 2;
            let end = start + node[start..].find(&format!("</{tag}>"))?;
            Some(node[start..end].to_owned())
        };
        Ok(xml
            .split("<node>")
            .skip(1)
            .filter_map(|node| {
                let running = field(node, "status")? == "1";
                let pid = field(node, "pid")?.parse().ok()?;
                Some((field(node, "path")?, pid)).filter(|_| running)
            })
            .filter(|&(_, pid)| pid > 0)
            .collect())
    }
}

/// The volume options the tests run with (DEPLOY.md shows them). Without them a mount serves
/// another mount's file with the attributes it cached up to a second before (md-cache): a file
/// another server had just completed read back with its partial's size.
pub const OPTIONS: [(&str, &str); 1] = [("performance.stat-prefetch", "off")];

/// The FUSE client's options: the kernel caches no attributes or names either (DEPLOY.md shows
/// them as mount options).
const MOUNT_OPTIONS: [&str; 3] = [
    "--attribute-timeout=0",
    "--entry-timeout=0",
    "--negative-timeout=0",
];

impl Drop for Volume {
    fn drop(&mut self) {
        self.mounts.clear();
        let _ = gluster(&["volume", "stop", &self.name, "force"]);
        let _ = gluster(&["volume", "delete", &self.name]);
        // Whatever of its bricks and self-heal daemon glusterd did not stop (checked by their
        // arguments: a pid is only theirs while the process names the volume).
        for &pid in &self.daemons {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let (brick, heal) = (format!("{}.", self.name), format!("shd/{}", self.name));
            let ours = String::from_utf8_lossy(&cmdline)
                .split('\0')
                .any(|arg| arg.starts_with(&brick) || arg == heal);
            if ours {
                signal(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
