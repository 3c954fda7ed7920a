//! When a wait on a peer must end: the one deadline type of the server and the client.
//!
//! A [`Deadline`] is an instant (or never) and the one timer that enforces it. Moving the
//! instant costs nothing: [`Deadline::set`] only records it. The timer is armed by the first
//! wait that finds the peer not ready, and stays armed while the deadline moves later, as it
//! does with every bit of progress; when it fires before the deadline it is set again. So a
//! transfer that waits on its peer thousands of times registers a timer with the reactor about
//! once per timeout, not once per wait, and a wait that does not have to wait touches no timer.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// An instant by which a wait on a peer must end, and the timer that enforces it.
#[derive(Debug, Default)]
pub struct Deadline {
    /// When waits fail; `None`: never.
    at: Option<Instant>,
    /// Created by the first wait that has to wait; set at `armed`.
    timer: Option<async_io::Timer>,
    armed: Option<Instant>,
}

/// A wait that reached its [`Deadline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Deadline {
    /// A deadline that never passes (until [`Deadline::set`]).
    pub const fn never() -> Deadline {
        Deadline {
            at: None,
            timer: None,
            armed: None,
        }
    }

    /// A deadline `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        let mut deadline = Deadline::never();
        deadline.set(Some(Instant::now() + limit));
        deadline
    }

    /// A deadline `limit` from now, or never.
    pub fn within(limit: Option<Duration>) -> Deadline {
        limit.map_or_else(Deadline::never, Deadline::after)
    }

    /// When it passes; `None`: never.
    pub fn at(&self) -> Option<Instant> {
        self.at
    }

    /// Moves it (`None`: never). Costs nothing: the timer follows at the next wait.
    pub fn set(&mut self, at: Option<Instant>) {
        self.at = at;
    }

    /// Ready once the deadline has passed; registers the task's waker with the timer
    /// otherwise. Never ready while the deadline is `None`.
    pub fn poll_passed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(at) = self.at else {
            return Poll::Pending;
        };
        loop {
            let timer = match (&mut self.timer, self.armed) {
                // Armed no later than the deadline: it stays (it may fire early, see below).
                (Some(timer), Some(armed)) if armed <= at => timer,
                (Some(timer), _) => {
                    timer.set_at(at);
                    self.armed = Some(at);
                    timer
                }
                (None, _) => {
                    self.armed = Some(at);
                    self.timer.insert(async_io::Timer::at(at))
                }
            };
            if Pin::new(timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            // A timer that fired is disarmed until set again.
            self.armed = None;
            if Instant::now() >= at {
                return Poll::Ready(());
            }
            // It fired for an earlier deadline: set it for this one, and wait again.
        }
    }

    /// Runs `op`, or gives up on it when the deadline passes.
    pub async fn run<F: Future>(&mut self, op: F) -> Result<F::Output, Elapsed> {
        if self.at.is_none() {
            return Ok(op.await);
        }
        let mut op = pin!(op);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = op.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            self.poll_passed(cx).map(|()| Err(Elapsed))
        })
        .await
    }

    /// Waits until the deadline passes (forever if it is `None`).
    pub async fn passed(&mut self) {
        std::future::poll_fn(|cx| self.poll_passed(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_at_the_deadline_and_one_that_need_not_wait_never_arms_it() {
        async_std::task::block_on(async {
            let mut deadline = Deadline::after(Duration::from_secs(60));
            assert_eq!(deadline.run(async { 7 }).await, Ok(7));
            assert!(deadline.timer.is_none(), "a ready op armed the timer");

            let mut short = Deadline::after(Duration::from_millis(50));
            let started = Instant::now();
            let out = short.run(futures::future::pending::<()>()).await;
            assert_eq!(out, Err(Elapsed));
            assert!(started.elapsed() >= Duration::from_millis(50));

            let mut never = Deadline::never();
            assert_eq!(never.run(async { 1 }).await, Ok(1));
        });
    }

    #[test]
    fn a_deadline_moved_later_keeps_its_timer_until_it_fires_and_then_rearms() {
        async_std::task::block_on(async {
            let mut deadline = Deadline::after(Duration::from_millis(30));
            let first = deadline.at().unwrap();
            // Arm the timer at the first deadline, then move the deadline later.
            let pending = deadline
                .run(async_std::task::sleep(Duration::from_millis(1)))
                .await;
            assert_eq!(pending, Ok(()));
            assert_eq!(deadline.armed, Some(first));
            let later = first + Duration::from_millis(60);
            deadline.set(Some(later));
            let started = Instant::now();
            deadline.passed().await;
            assert!(Instant::now() >= later, "passed before the moved deadline");
            assert!(started.elapsed() < Duration::from_secs(5));
            // Moved earlier than the timer is set: the timer follows.
            let far = Instant::now() + Duration::from_secs(3600);
            deadline.set(Some(far));
            let _ = deadline
                .run(async_std::task::sleep(Duration::from_millis(1)))
                .await;
            assert_eq!(deadline.armed, Some(far));
            let sooner = Instant::now() + Duration::from_millis(20);
            deadline.set(Some(sooner));
            deadline.passed().await;
            assert!(Instant::now() >= sooner);
        });
    }
}
