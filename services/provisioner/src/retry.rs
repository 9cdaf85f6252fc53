//! Retry with exponential backoff and jitter for throttling, 5xx and "not yet" answers.
//!
//! Reconcilers wrap a whole *step* (find, then create if missing) in [`RetryPolicy::run`],
//! not a bare create: when a create's answer is lost (5xx after the provider did the work),
//! the retry finds what the first attempt made instead of making a second one.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::ProviderError;

/// How often and how patiently to retry one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay cap before the first retry; doubles each retry.
    pub base_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, 250 ms doubling to at most 20 s: about 40 s of patience per step, after
    /// which the pass fails and the caller requeues it with its own backoff.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// A policy for tests: same shape, millisecond delays.
    pub fn fast() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
        }
    }

    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::fast()
        }
    }

    /// The delay before retry number `retry` (1-based): "equal jitter", half fixed and half
    /// random, so retries from many reconcilers spread out but never fire back-to-back.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_delay);
        let half = cap / 2;
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if jitter_ns == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::thread_rng().gen_range(0..=jitter_ns))
        };
        half + jitter
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not retryable, or the
    /// attempts are used up. Each retry is logged at `warn` with the step, the attempt, the
    /// delay and the error, so backoff is visible in the logs.
    pub async fn run<T, F, Fut>(&self, step: &str, mut attempt: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        self.run_attempts(step, |_| attempt()).await
    }

    /// [`Self::run`], telling the step which attempt (1-based) this is. A step can then use
    /// what its pass already read on the first attempt and read afresh only when retrying.
    pub async fn run_attempts<T, F, Fut>(
        &self,
        step: &str,
        mut attempt: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let max_attempts = self.max_attempts.max(1);
        let mut n = 1;
        loop {
            match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && n < max_attempts => {
                    let delay = self.delay(n);
                    tracing::warn!(
                        step,
                        attempt = n,
                        max_attempts,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %e,
                        "cloud provider step failed; backing off before retrying"
                    );
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn throttled() -> ProviderError {
        ProviderError::Throttled {
            operation: "describe vpcs".into(),
            code: "RequestLimitExceeded".into(),
            message: "slow down".into(),
        }
    }

    #[test]
    fn delays_grow_exponentially_within_jitter_and_stay_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let d1 = p.delay(1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&d1));
            let d3 = p.delay(3);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&d3));
            let d9 = p.delay(9);
            assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&d9));
            let huge = p.delay(200);
            assert!(huge <= Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let got = RetryPolicy::fast()
            .run("find vpc", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(throttled())
                } else {
                    Ok(42)
                }
            })
            .await;
        assert_eq!(got.expect("converges"), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = RetryPolicy::fast()
            .run("find vpc", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(throttled())
            })
            .await;
        assert!(matches!(got, Err(ProviderError::Throttled { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = RetryPolicy::fast()
            .run("run instances", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::Rejected {
                    operation: "run instances".into(),
                    code: "InvalidAMIID.NotFound".into(),
                    message: "no such image".into(),
                })
            })
            .await;
        assert!(matches!(got, Err(ProviderError::Rejected { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
