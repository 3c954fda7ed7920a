//! Where blocking file-system work runs: async-std's blocking pool, with a bound and a deadline.
//!
//! A file-system call blocks its thread, and on a network file system that stops answering (a
//! hung NFS `hard` mount, a stopped FUSE daemon) it blocks until the storage returns, which may
//! be never. Such a thread cannot be taken back. What a [`Pool`] guarantees is that the *request*
//! does not wait on it forever, and that such threads do not pile up:
//! - at most `jobs` pieces of work run at once; a job keeps its place until its call returns,
//!   so a storage that hangs holds at most `jobs` threads;
//! - the caller gives up on a job that has made no progress for `timeout` — progress being the
//!   start of the job and every block it reads or writes ([`progress`], called by this crate's
//!   block helpers) — with a [`Hung`] error, and on a place that does not come free within the
//!   same time.
//!
//! The client has no such storage to fear: [`Pool::unbounded`] is async-std's pool as it is.

use async_lock::Semaphore;
use async_std::task::{spawn_blocking, JoinHandle};
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Where blocking file-system work runs (see the module's comment). Cloning shares it.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One place per job that may run at once; `None`: unbounded.
    places: Option<Arc<Semaphore>>,
    jobs: usize,
    /// How long a job may go without progress; `None`: forever.
    timeout: Option<Duration>,
    /// Origin of the progress clocks (milliseconds since it).
    epoch: Instant,
    /// Jobs given up on whose call has not returned yet.
    stuck: AtomicI64,
    /// Jobs given up on, and waits for a place that timed out, since the start.
    hung: AtomicU64,
}

/// A piece of work given up on: the storage made no progress for the pool's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hung {
    /// How long it waited.
    pub after: Duration,
}

impl fmt::Display for Hung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the storage did not answer for {} s",
            self.after.as_secs_f64().round()
        )
    }
}

impl std::error::Error for Hung {}

impl From<Hung> for io::Error {
    fn from(hung: Hung) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, hung)
    }
}

impl From<Hung> for sft_protocol::WireError {
    /// The reply to a request whose storage stopped answering (PROTOCOL.md §4.1).
    fn from(hung: Hung) -> sft_protocol::WireError {
        sft_protocol::WireError::new(
            sft_protocol::ErrorCode::Unavailable,
            format!("{hung}; try again later, or on another server"),
        )
    }
}

/// A job's state, shared by its thread and its waiter.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// What a job's thread and its waiter share.
#[derive(Debug)]
struct Watch {
    /// Milliseconds since the pool's epoch at the job's last progress.
    last: AtomicU64,
    state: AtomicU8,
}

thread_local! {
    /// The watch of the job this pool thread runs, if any.
    static CURRENT: RefCell<Option<(Arc<Watch>, Instant)>> = const { RefCell::new(None) };
}

/// Records that the job running on this thread made progress (a block read or written), so
/// that its waiter does not give up on it. Costs a clock read; nothing outside a pool's job.
pub fn progress() {
    CURRENT.with(|current| {
        if let Some((watch, epoch)) = &*current.borrow() {
            watch
                .last
                .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    });
}

impl Pool {
    /// async-std's blocking pool as it is: no bound, no deadline (the client's).
    pub fn unbounded() -> Pool {
        Pool::build(None, None)
    }

    /// At most `jobs` (at least 1) jobs at once, each given up on after `timeout` without
    /// progress.
    pub fn new(jobs: usize, timeout: Duration) -> Pool {
        Pool::build(Some(jobs.max(1)), Some(timeout))
    }

    fn build(jobs: Option<usize>, timeout: Option<Duration>) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                places: jobs.map(|n| Arc::new(Semaphore::new(n))),
                jobs: jobs.unwrap_or(usize::MAX),
                timeout,
                epoch: Instant::now(),
                stuck: AtomicI64::new(0),
                hung: AtomicU64::new(0),
            }),
        }
    }

    /// How long a job may go without progress (`None`: forever).
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// How many jobs may run at once (`usize::MAX`: unbounded).
    pub fn jobs(&self) -> usize {
        self.inner.jobs
    }

    /// Jobs given up on whose call has not returned yet: threads the storage holds.
    pub fn stuck(&self) -> u64 {
        self.inner.stuck.load(Ordering::Relaxed).max(0) as u64
    }

    /// Jobs (and waits for a place) given up on since the start.
    pub fn hung(&self) -> u64 {
        self.inner.hung.load(Ordering::Relaxed)
    }

    /// Starts `f` on the blocking pool — at once if a place is free, else as soon as one is —
    /// and resolves to its result, or to [`Hung`] (see the module's comment). Dropping the
    /// [`Job`] does not stop `f`: it runs to its end, its result dropped.
    pub fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Job<T> {
        let inner = Arc::clone(&self.inner);
        let Some(places) = inner.places.clone() else {
            return Job::Running(Running::start(inner, None, f));
        };
        match places.try_acquire_arc() {
            Some(place) => Job::Running(Running::start(inner, Some(place), f)),
            None => {
                let waiting = async move {
                    let acquire = places.acquire_arc();
                    let place = match inner.timeout {
                        Some(limit) => match async_std::future::timeout(limit, acquire).await {
                            Ok(place) => place,
                            Err(_) => {
                                inner.hung.fetch_add(1, Ordering::Relaxed);
                                return Err(Hung { after: limit });
                            }
                        },
                        None => acquire.await,
                    };
                    Running::start(inner, Some(place), f).await
                };
                Job::Waiting(Box::pin(waiting))
            }
        }
    }
}

/// Blocking work on a [`Pool`], resolving to its result or to [`Hung`].
#[must_use = "a job's result says whether the storage answered"]
pub enum Job<T> {
    /// Started on a pool thread.
    Running(Running<T>),
    /// Waiting for a place first.
    Waiting(Pin<Box<dyn Future<Output = Result<T, Hung>> + Send>>),
}

impl<T: Send + 'static> Job<io::Result<T>> {
    /// The job's own result, a job given up on being a `TimedOut` error.
    pub async fn io(self) -> io::Result<T> {
        self.await.unwrap_or_else(|hung| Err(hung.into()))
    }
}

impl<T> fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Job::Running(_) => "Job::Running",
            Job::Waiting(_) => "Job::Waiting",
        })
    }
}

impl<T: Send + 'static> Future for Job<T> {
    type Output = Result<T, Hung>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Job::Running(running) => Pin::new(running).poll(cx),
            Job::Waiting(waiting) => waiting.as_mut().poll(cx),
        }
    }
}

/// A job started on a pool thread, and the timer its waiter gives up by.
#[derive(Debug)]
pub struct Running<T> {
    handle: JoinHandle<T>,
    watch: Arc<Watch>,
    inner: Arc<Inner>,
    timer: Option<async_io::Timer>,
}

impl<T: Send + 'static> Running<T> {
    fn start(
        inner: Arc<Inner>,
        place: Option<async_lock::SemaphoreGuardArc>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Running<T> {
        let watch = Arc::new(Watch {
            last: AtomicU64::new(inner.epoch.elapsed().as_millis() as u64),
            state: AtomicU8::new(RUNNING),
        });
        let (job_watch, job_inner) = (Arc::clone(&watch), Arc::clone(&inner));
        let handle = spawn_blocking(move || {
            let epoch = job_inner.epoch;
            CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(&job_watch), epoch)));
            progress();
            let out = f();
            CURRENT.with(|c| *c.borrow_mut() = None);
            let given_up = job_watch
                .state
                .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
                .is_err();
            if given_up {
                job_inner.stuck.fetch_sub(1, Ordering::Relaxed);
            }
            drop(place); // the place is free only now that the call returned
            out
        });
        Running {
            handle,
            watch,
            inner,
            timer: None,
        }
    }
}

impl<T: Send + 'static> Future for Running<T> {
    type Output = Result<T, Hung>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(out) = Pin::new(&mut this.handle).poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let Some(limit) = this.inner.timeout else {
            return Poll::Pending;
        };
        loop {
            let last = this.watch.last.load(Ordering::Relaxed);
            let due = this.inner.epoch + Duration::from_millis(last) + limit;
            if Instant::now() >= due {
                // Counted as stuck first, so that a thread returning just now never counts
                // below zero; undone if it did return.
                this.inner.stuck.fetch_add(1, Ordering::Relaxed);
                let abandoned = this
                    .watch
                    .state
                    .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                if !abandoned {
                    this.inner.stuck.fetch_sub(1, Ordering::Relaxed);
                    // It returned meanwhile: its result is on its way.
                    return Pin::new(&mut this.handle).poll(cx).map(Ok);
                }
                this.inner.hung.fetch_add(1, Ordering::Relaxed);
                return Poll::Ready(Err(Hung { after: limit }));
            }
            let timer = this.timer.get_or_insert_with(|| async_io::Timer::at(due));
            timer.set_at(due);
            if Pin::new(timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_job_that_stops_answering_is_given_up_and_holds_its_place_until_it_returns() {
        async_std::task::block_on(async {
            let pool = Pool::new(1, Duration::from_millis(100));
            let (release, hold) = mpsc::channel::<()>();
            let started = Instant::now();
            let stuck = pool.spawn(move || hold.recv().ok());
            assert_eq!(stuck.await.unwrap_err().after, Duration::from_millis(100));
            assert!(started.elapsed() >= Duration::from_millis(100));
            assert_eq!((pool.stuck(), pool.hung()), (1, 1));
            // Its place is still taken: the next job waits for it, and gives up too.
            assert!(pool.spawn(|| 7).await.is_err());
            assert_eq!(pool.hung(), 2);
            release.send(()).unwrap();
            // Once the call returns, the place is free again.
            let mut freed = false;
            for _ in 0..100 {
                if pool.spawn(|| 7).await == Ok(7) {
                    freed = true;
                    break;
                }
            }
            assert!(freed);
            assert_eq!(pool.stuck(), 0);
        });
    }

    #[test]
    fn progress_keeps_a_long_job_alive() {
        async_std::task::block_on(async {
            let pool = Pool::new(2, Duration::from_millis(200));
            let job = pool.spawn(|| {
                for _ in 0..10 {
                    std::thread::sleep(Duration::from_millis(50));
                    progress();
                }
                "done"
            });
            assert_eq!(job.await, Ok("done"));
            assert_eq!(pool.hung(), 0);
        });
    }

    #[test]
    fn an_unbounded_pool_never_gives_up() {
        async_std::task::block_on(async {
            let pool = Pool::unbounded();
            let job = pool.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                1
            });
            assert_eq!(job.await, Ok(1));
            assert_eq!((pool.jobs(), pool.timeout()), (usize::MAX, None));
        });
    }
}
