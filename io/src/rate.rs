//! A bandwidth limit: a token bucket shared by every read and write of one connection.
//!
//! Each transfer asks for its bytes before (writes) or after (reads) moving them; when the
//! bucket holds too few, the task sleeps until enough have accrued — no busy waiting. The
//! bucket holds at most a small burst (a tenth of a second's worth, at least one block of
//! [`crate::RECV`] bytes), so a limit holds over any stretch longer than that.

use std::time::{Duration, Instant};

/// A limit of `rate` bytes a second, with small bursts.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: u64,
    burst: f64,
    /// Bytes that may move now without waiting (negative: owed).
    tokens: f64,
    updated: Instant,
}

impl RateLimit {
    /// A limit of `rate` bytes a second (at least 1).
    pub fn new(rate: u64) -> RateLimit {
        let rate = rate.max(1);
        let burst = (rate as f64 / 10.0).max(crate::RECV as f64);
        RateLimit {
            rate,
            burst,
            tokens: 0.0,
            updated: Instant::now(),
        }
    }

    /// The limit, bytes a second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The largest step worth asking for at once: a burst.
    pub fn step(&self) -> usize {
        self.burst as usize
    }

    /// Takes `n` bytes from the bucket, sleeping until they have accrued.
    pub async fn take(&mut self, n: u64) {
        let now = Instant::now();
        let accrued = now.duration_since(self.updated).as_secs_f64() * self.rate as f64;
        self.tokens = (self.tokens + accrued).min(self.burst);
        self.updated = now;
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            let wait = Duration::from_secs_f64(-self.tokens / self.rate as f64);
            async_std::task::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_slows_what_passes_its_burst() {
        async_std::task::block_on(async {
            let mut limit = RateLimit::new(1 << 20);
            let started = Instant::now();
            // A quarter of a second's worth beyond the (empty) bucket.
            for _ in 0..4 {
                limit.take(64 * 1024).await;
            }
            assert!(started.elapsed() >= Duration::from_millis(200));
        });
    }
}
