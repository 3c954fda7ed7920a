//! Whether the root's storage answers: what `HELLO` reports to a load balancer's health check.
//!
//! A probe is one `statfs` of the root, which a network file system answers itself (its kernel
//! client or FUSE daemon caches no answer to it), so a hung mount shows. It runs on a thread of
//! its own — never on an executor thread, and never queued behind the root's pool, whose places
//! a hung storage may all hold — with a short deadline ([`PROBE_DEADLINE`]). Its result is
//! reused for [`FRESH`], so however often health checks come, the storage sees at most about one
//! probe a second; and while a probe hangs no other starts, so a hung storage holds one thread
//! for it, not one per check.

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a probe may take before the storage counts as not answering: well inside a load
/// balancer's check timeout (2 s in `deploy/haproxy.cfg`).
pub const PROBE_DEADLINE: Duration = Duration::from_secs(1);

/// How long a probe's result is reused.
pub const FRESH: Duration = Duration::from_secs(1);

/// What the last probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageHealth {
    /// The storage answered, taking `latency`.
    Up {
        /// How long the probe took.
        latency: Duration,
    },
    /// The storage did not answer (in time, or without an error) for `since`.
    Down {
        /// Since when it has not answered, as far as the probes know.
        since: Duration,
        /// Why: the probe's error, or that it is still waiting.
        why: String,
    },
}

impl StorageHealth {
    /// Whether the storage answers.
    pub fn is_up(&self) -> bool {
        matches!(self, StorageHealth::Up { .. })
    }
}

/// A finished probe.
#[derive(Debug, Clone)]
struct Probe {
    at: Instant,
    took: Duration,
    error: Option<String>,
}

type Pending = Shared<oneshot::Receiver<Probe>>;

/// The probes of one root (see the module's comment).
#[derive(Debug, Default)]
pub(crate) struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Probe>,
    /// The probe in flight: when it started, and its result to come.
    running: Option<(Instant, Pending)>,
    /// When the storage was first found not answering, since it last answered.
    down_since: Option<Instant>,
    /// Whether the last answer given was "down" (to log changes once).
    reported_down: bool,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only short, panic-free steps run under the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the storage of the folder `fd` answers: from a probe less than [`FRESH`] old,
    /// or from one started now (or in flight) within [`PROBE_DEADLINE`].
    pub(crate) async fn check(self: &Arc<Self>, fd: &Arc<OwnedFd>, dir: &str) -> StorageHealth {
        let now = Instant::now();
        let (started, pending) = {
            let mut state = self.lock();
            self.refresh(&mut state, fd, now);
            match &state.running {
                // The last probe is fresh, or none could start: its answer stands.
                None => {
                    let last = state.last.clone();
                    return self.settle(&mut state, last.as_ref(), now, dir);
                }
                Some((started, _)) if now.duration_since(*started) >= PROBE_DEADLINE => {
                    return self.settle(&mut state, None, now, dir);
                }
                Some((started, pending)) => (*started, pending.clone()),
            }
        };
        let left = PROBE_DEADLINE.saturating_sub(started.elapsed());
        let probe = async_std::future::timeout(left, pending).await;
        let mut state = self.lock();
        match probe {
            Ok(Ok(probe)) => self.settle(&mut state, Some(&probe), Instant::now(), dir),
            _ => self.settle(&mut state, None, Instant::now(), dir),
        }
    }

    /// What is known without waiting (for a metrics page): whether the storage answered the
    /// last probe (`None` before the first), and how long that probe took — or, while one
    /// waits past its deadline, how long it has waited. Starts a probe if the last is stale.
    pub(crate) fn known(self: &Arc<Self>, fd: &Arc<OwnedFd>) -> (Option<bool>, Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        self.refresh(&mut state, fd, now);
        if let Some((started, _)) = &state.running {
            let waited = now.duration_since(*started);
            if waited >= PROBE_DEADLINE {
                return (Some(false), waited);
            }
        }
        match &state.last {
            Some(last) => (Some(last.error.is_none()), last.took),
            None => (None, Duration::ZERO),
        }
    }

    /// Starts a probe of `fd` unless one is running or the last is less than [`FRESH`] old.
    fn refresh(self: &Arc<Self>, state: &mut State, fd: &Arc<OwnedFd>, now: Instant) {
        let stale = state
            .last
            .as_ref()
            .is_none_or(|last| now.duration_since(last.at) >= FRESH);
        if state.running.is_none() && stale {
            match self.start(fd) {
                Ok(pending) => state.running = Some((now, pending)),
                Err(failed) => state.last = Some(failed),
            }
        }
    }

    /// Starts a probe of `fd` on a thread of its own, which records its result itself; or,
    /// when no thread can start, the failed probe that is.
    fn start(self: &Arc<Self>, fd: &Arc<OwnedFd>) -> Result<Pending, Probe> {
        let (tell, told) = oneshot::channel();
        let (health, fd) = (Arc::clone(self), Arc::clone(fd));
        let spawned = std::thread::Builder::new()
            .name("sft-storage-probe".into())
            .spawn(move || {
                let start = Instant::now();
                let error = rustix::fs::fstatfs(&*fd).err().map(|e| e.to_string());
                let probe = Probe {
                    at: Instant::now(),
                    took: start.elapsed(),
                    error,
                };
                let mut state = health.lock();
                state.running = None;
                state.last = Some(probe.clone());
                drop(state);
                let _ = tell.send(probe);
            });
        match spawned {
            Ok(_) => Ok(told.shared()),
            Err(e) => Err(Probe {
                at: Instant::now(),
                took: Duration::ZERO,
                error: Some(format!("cannot start a probe: {e}")),
            }),
        }
    }

    /// The answer from `probe` (`None`: none finished in time), logging a change once.
    fn settle(
        &self,
        state: &mut State,
        probe: Option<&Probe>,
        now: Instant,
        dir: &str,
    ) -> StorageHealth {
        let health = match probe {
            Some(Probe {
                took, error: None, ..
            }) => {
                state.down_since = None;
                StorageHealth::Up { latency: *took }
            }
            Some(Probe { error: Some(e), .. }) => {
                let since = *state.down_since.get_or_insert(now);
                StorageHealth::Down {
                    since: now.duration_since(since),
                    why: e.clone(),
                }
            }
            None => {
                let started = state.running.as_ref().map_or(now, |(at, _)| *at);
                let since = *state.down_since.get_or_insert(started);
                StorageHealth::Down {
                    since: now.duration_since(since),
                    why: format!(
                        "a probe has waited {:.1} s for it",
                        now.duration_since(started).as_secs_f64()
                    ),
                }
            }
        };
        let down = !health.is_up();
        if down != state.reported_down {
            state.reported_down = down;
            match &health {
                StorageHealth::Down { why, .. } => {
                    log::warn!(root = dir, why = why.as_str(); "the served folder's storage does not answer: HELLO answers unavailable")
                }
                StorageHealth::Up { latency } => {
                    log::info!(root = dir, probe_ms = latency.as_millis() as u64; "the served folder's storage answers again")
                }
            }
        }
        health
    }
}
