//! The live-session table: every connected session, with its mailbox and its task.

use crate::session::Mail;
use async_std::channel::{self, Receiver, Sender};
use async_std::task::JoinHandle;
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Capacity of a session's mailbox. Messages are rare (stop requests): a full mailbox means one
/// is already pending, so senders never wait on it.
const MAILBOX: usize = 4;

/// A live session, as the table shows it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Unique within this server process, increasing.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the connection was accepted.
    pub started: Instant,
}

#[derive(Debug)]
struct Entry {
    info: SessionInfo,
    mailbox: Sender<Mail>,
    /// The session's task, so that shutdown can end it when the grace period runs out
    /// (`None` only between registration and spawning).
    task: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: DashMap<u64, Entry>,
    next_id: AtomicU64,
    /// Sessions open now: counted on registering and on dropping a registration, so that
    /// reading it is one load.
    open: AtomicUsize,
}

/// Removes its session from the table when the session ends, however it ends.
#[derive(Debug)]
pub(crate) struct Registration {
    table: Arc<Sessions>,
    pub(crate) info: SessionInfo,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.map.remove(&self.info.id);
        self.table.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registration {
    /// Whether other sessions are open beside this one (a cheap, possibly stale, count).
    pub(crate) fn has_company(&self) -> bool {
        self.table.len() > 1
    }
}

impl Sessions {
    /// Adds a session; returns its registration and the receiving end of its mailbox.
    pub(crate) fn register(self: &Arc<Self>, peer: SocketAddr) -> (Registration, Receiver<Mail>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel::bounded(MAILBOX);
        let info = SessionInfo {
            id,
            peer,
            started: Instant::now(),
        };
        self.map.insert(
            id,
            Entry {
                info: info.clone(),
                mailbox: tx,
                task: None,
            },
        );
        (
            Registration {
                table: Arc::clone(self),
                info,
            },
            rx,
        )
    }

    /// Records the task running session `id`. A session that already ended has left the table;
    /// its handle is then simply dropped.
    pub(crate) fn attach(&self, id: u64, task: JoinHandle<()>) {
        if let Some(mut entry) = self.map.get_mut(&id) {
            entry.task = Some(task);
        }
    }

    /// Takes the tasks of every live session, to cancel them. Collected first and returned, so
    /// that no lock on the table is held while a cancelled session drops its registration.
    pub(crate) fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        self.map
            .iter_mut()
            .filter_map(|mut entry| entry.task.take())
            .collect()
    }

    /// Posts `mail` to every live session.
    pub(crate) fn broadcast(&self, mail: Mail) {
        for entry in self.map.iter() {
            let _ = entry.mailbox.try_send(mail);
        }
    }

    /// Sessions open now (one load, where the map would lock every shard to count).
    pub(crate) fn len(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn list(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = self.map.iter().map(|e| e.info.clone()).collect();
        all.sort_by_key(|s| s.id);
        all
    }
}
