//! When to call GitHub again after a failed call, as a pure function of what the answer said.
//!
//! GitHub's rules ("Rate limits for the REST API"): with `retry-after`, wait that many seconds;
//! with `x-ratelimit-remaining: 0`, wait until `x-ratelimit-reset`; a secondary rate limit without
//! either, wait at least a minute and longer each time. Server errors (5xx) and connections that
//! failed are retried with exponential backoff. Every other 4xx is final: asking again cannot
//! change the answer. All retries are bounded by [`RetryPolicy`]; a wait longer than it allows is
//! reported instead of slept, so the job queue can reschedule.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls made in all, the first included.
    pub max_attempts: u32,
    /// First backoff after a 5xx or a failed connection; doubles each attempt.
    pub base_delay: Duration,
    /// The longest single wait; a rate limit that needs longer is given up on.
    pub max_delay: Duration,
    /// First wait after a secondary rate limit that did not say how long; doubles each attempt.
    pub secondary_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(120),
            secondary_delay: Duration::from_secs(60),
        }
    }
}

/// What a failed call's answer said, as far as retrying goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `retry-after`, in seconds.
    pub retry_after: Option<u64>,
    /// `x-ratelimit-remaining`.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset`, in UTC epoch seconds.
    pub reset: Option<u64>,
    /// The body's message mentions a secondary rate limit.
    pub secondary: bool,
}

impl Answer {
    /// A 429, or a 403 that says it is about a rate limit (other 403s are permission errors).
    pub fn is_rate_limit(&self) -> bool {
        self.status == 429
            || (self.status == 403
                && (self.retry_after.is_some() || self.remaining == Some(0) || self.secondary))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Answer(Answer),
    /// The connection failed or timed out before an answer came.
    Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    RetryAfter(Duration),
    /// A 4xx that is not a rate limit.
    Final,
    /// `max_attempts` calls were made.
    Exhausted,
    /// Rate limited for longer than `max_delay`.
    WaitTooLong(Duration),
}

/// Whether to call again after `attempt` calls (1 for the first) ended in `failure`, at `now`
/// (UTC epoch seconds).
pub fn decide(failure: &Failure, attempt: u32, now: u64, policy: &RetryPolicy) -> Verdict {
    let doubling = |base: Duration| base.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    let (wait, capped) = match failure {
        Failure::Transport => (doubling(policy.base_delay), true),
        Failure::Answer(a) if a.is_rate_limit() => {
            let wait = match (a.retry_after, a.remaining, a.reset) {
                (Some(secs), _, _) => Duration::from_secs(secs),
                // One second past the reset, so the window has surely turned.
                (None, Some(0), Some(reset)) => Duration::from_secs(reset.saturating_sub(now) + 1),
                _ => doubling(policy.secondary_delay),
            };
            (wait, false)
        }
        Failure::Answer(a) if a.status >= 500 => (
            a.retry_after
                .map_or_else(|| doubling(policy.base_delay), Duration::from_secs),
            true,
        ),
        Failure::Answer(_) => return Verdict::Final,
    };
    if attempt >= policy.max_attempts {
        Verdict::Exhausted
    } else if wait > policy.max_delay && !capped {
        Verdict::WaitTooLong(wait)
    } else {
        Verdict::RetryAfter(wait.min(policy.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(status: u16) -> Answer {
        Answer {
            status,
            ..Answer::default()
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn server_errors_back_off_exponentially_then_stop() {
        let f = Failure::Answer(answer(502));
        assert_eq!(
            decide(&f, 1, NOW, &policy()),
            Verdict::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            decide(&f, 3, NOW, &policy()),
            Verdict::RetryAfter(Duration::from_secs(4))
        );
        assert_eq!(decide(&f, 5, NOW, &policy()), Verdict::Exhausted);
        assert_eq!(
            decide(&Failure::Transport, 2, NOW, &policy()),
            Verdict::RetryAfter(Duration::from_secs(2))
        );
    }

    #[test]
    fn rate_limits_wait_as_github_says() {
        let retry_after = Failure::Answer(Answer {
            retry_after: Some(30),
            ..answer(403)
        });
        assert_eq!(
            decide(&retry_after, 1, NOW, &policy()),
            Verdict::RetryAfter(Duration::from_secs(30))
        );
        let primary = Failure::Answer(Answer {
            remaining: Some(0),
            reset: Some(NOW + 9),
            ..answer(403)
        });
        assert_eq!(
            decide(&primary, 1, NOW, &policy()),
            Verdict::RetryAfter(Duration::from_secs(10))
        );
        let secondary = Failure::Answer(Answer {
            secondary: true,
            ..answer(403)
        });
        assert_eq!(
            decide(&secondary, 2, NOW, &policy()),
            Verdict::RetryAfter(Duration::from_secs(120))
        );
        assert_eq!(
            decide(&Failure::Answer(answer(429)), 1, NOW, &policy()),
            Verdict::RetryAfter(Duration::from_secs(60))
        );
        // An hour until the reset: reported, not slept.
        let far = Failure::Answer(Answer {
            remaining: Some(0),
            reset: Some(NOW + 3599),
            ..answer(429)
        });
        assert_eq!(
            decide(&far, 1, NOW, &policy()),
            Verdict::WaitTooLong(Duration::from_secs(3600))
        );
    }

    #[test]
    fn other_client_errors_are_final() {
        for status in [400, 401, 403, 404, 409, 410, 422] {
            assert_eq!(
                decide(&Failure::Answer(answer(status)), 1, NOW, &policy()),
                Verdict::Final
            );
        }
        // A 403 with quota left is a permission problem, not a rate limit.
        let forbidden = Failure::Answer(Answer {
            remaining: Some(4999),
            reset: Some(NOW + 10),
            ..answer(403)
        });
        assert_eq!(decide(&forbidden, 1, NOW, &policy()), Verdict::Final);
    }

    proptest! {
        #[test]
        fn bounded_and_never_retries_plain_client_errors(
            status in 400u16..600,
            retry_after in proptest::option::of(0u64..100_000),
            remaining in proptest::option::of(0u64..3),
            reset in proptest::option::of(NOW - 100..NOW + 100_000),
            secondary: bool,
            attempt in 1u32..40,
        ) {
            let a = Answer { status, retry_after, remaining, reset, secondary };
            let rate_limit = a.is_rate_limit();
            let verdict = decide(&Failure::Answer(a), attempt, NOW, &policy());
            match verdict {
                Verdict::RetryAfter(wait) => {
                    prop_assert!(attempt < policy().max_attempts);
                    prop_assert!(wait <= policy().max_delay);
                    prop_assert!(status >= 500 || rate_limit);
                }
                Verdict::Final => prop_assert!(status < 500 && !rate_limit),
                Verdict::Exhausted => prop_assert!(attempt >= policy().max_attempts),
                Verdict::WaitTooLong(wait) => {
                    prop_assert!(rate_limit);
                    prop_assert!(wait > policy().max_delay);
                }
            }
        }
    }
}
