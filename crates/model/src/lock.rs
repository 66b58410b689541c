//! State-domain locks (DESIGN.md §3 "Lock") as a pure state machine: one holder per stack, a
//! lease renewed by heartbeat, a fencing token that grows with every new holder, a FIFO queue
//! of waiting changes, release when the change is applied, merged or closed, and an audited
//! admin unlock.
//!
//! Every transition takes `now` explicitly and changes nothing when it refuses, so a store can
//! load a [`Lock`], call one transition and write it back in one transaction. A holder whose
//! lease ran out is fenced: anything it sends with its token is refused, and the next holder
//! gets a larger token. An apply whose lease ran out was interrupted (the runner died), so the
//! lock is kept for recovery instead of passing to the next change.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exception::Timestamp;

/// Handed to each new holder; strictly larger than every token handed out before for the
/// same stack, so a write carrying an older token is recognisably stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `t + d`.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Timestamp::from_unix(
        t.unix_seconds().saturating_add(secs),
        t.subsec_nanos() + d.subsec_nanos(),
    )
}

/// What the holder is doing, which decides what happens when its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Tenure {
    /// Held (before applying); when the lease runs out the lock is free for the next change.
    Leased { expires_at: Timestamp },
    /// Applying; when the lease runs out the apply was interrupted and the lock is kept.
    Applying {
        started_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Kept after a failed or interrupted apply: never expires, refuses writes, and passes to
    /// another change only through an admin unlock (recovery).
    Kept { since: Timestamp, cause: KeptCause },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptCause {
    /// The engine reported a failure.
    Failed,
    /// The lease ran out during the apply (the runner was killed or lost).
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The change holding the lock. The store keys it by PR (`repo#pr`) rather than by commit,
    /// so a push to the PR keeps its place.
    pub change: String,
    pub token: FencingToken,
    pub acquired_at: Timestamp,
    pub tenure: Tenure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub change: String,
    pub since: Timestamp,
    /// A waiter that stops asking is dropped from the queue after this instant, so a vanished
    /// change cannot block the ones behind it.
    pub expires_at: Timestamp,
}

/// One stack's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub unit: String,
    /// The last token handed out (0 before the first). Never decreases, even across unlocks.
    pub last_token: FencingToken,
    pub holder: Option<Holder>,
    pub queue: VecDeque<Waiter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Acquired {
    Granted {
        token: FencingToken,
        expires_at: Timestamp,
    },
    /// Waiting; `position` 1 is next. Ask again (before the waiter lease ends) to keep the place.
    Queued { position: usize, holder: String },
}

/// Why a lock operation was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("change {change} already holds the lock (fencing token {token})")]
    AlreadyHolder { change: String, token: FencingToken },
    #[error("fencing token {token} was never issued for this stack (the last is {last})")]
    UnknownToken {
        token: FencingToken,
        last: FencingToken,
    },
    #[error("fencing token {token} is stale: {}", held_now(.current))]
    Stale {
        token: FencingToken,
        current: Option<FencingToken>,
    },
    #[error("the lease of fencing token {token} expired at {expired_at}; acquire the lock again")]
    Expired {
        token: FencingToken,
        expired_at: Timestamp,
    },
    #[error("the lock is kept by {change} since {since} after {cause}; recovery is required")]
    Kept {
        change: String,
        since: Timestamp,
        cause: KeptCause,
    },
    #[error("fencing token {token} is already applying")]
    AlreadyApplying { token: FencingToken },
    #[error("an unlock needs a reason (it is recorded in the audit log)")]
    ReasonRequired,
}

fn held_now(current: &Option<FencingToken>) -> String {
    match current {
        Some(c) => format!("the lock is now held with token {c}"),
        None => "the lock is no longer held".to_string(),
    }
}

impl fmt::Display for KeptCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeptCause::Failed => "a failed apply",
            KeptCause::Interrupted => "an interrupted apply",
        })
    }
}

/// What [`Lock::close`] did when the change was merged or closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Closed {
    /// The change held the lock and released it.
    Released { token: FencingToken },
    /// The change did not hold the lock (it left the queue if it was waiting).
    NotHeld,
    /// The change is applying; the apply's end decides (release or keep).
    ApplyInProgress { token: FencingToken },
    /// Kept after a failed apply: closing the PR does not undo a degraded stack.
    KeptForRecovery,
}

/// What an admin unlock removed: the audit record's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlocked {
    pub unit: String,
    pub admin: String,
    pub reason: String,
    pub at: Timestamp,
    pub previous: Option<Holder>,
}

/// What [`Lock::settle`] found at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Settled {
    /// A holder's lease ran out before it applied; the lock is free.
    Expired { change: String, token: FencingToken },
    /// A holder's lease ran out during an apply; the lock is kept and the stack is degraded.
    Interrupted { change: String, token: FencingToken },
}

impl Lock {
    pub fn new(unit: impl Into<String>) -> Self {
        Lock {
            unit: unit.into(),
            last_token: FencingToken(0),
            holder: None,
            queue: VecDeque::new(),
        }
    }

    /// Apply what time alone decides: drop waiters that stopped asking, free the lock of a
    /// holder whose lease ran out, keep the lock of an apply whose lease ran out.
    pub fn settle(&mut self, now: Timestamp) -> Option<Settled> {
        self.queue.retain(|w| now < w.expires_at);
        let h = self.holder.as_mut()?;
        match h.tenure {
            Tenure::Leased { expires_at } if now >= expires_at => {
                let event = Settled::Expired {
                    change: h.change.clone(),
                    token: h.token,
                };
                self.holder = None;
                Some(event)
            }
            Tenure::Applying { expires_at, .. } if now >= expires_at => {
                h.tenure = Tenure::Kept {
                    since: expires_at,
                    cause: KeptCause::Interrupted,
                };
                Some(Settled::Interrupted {
                    change: h.change.clone(),
                    token: h.token,
                })
            }
            _ => None,
        }
    }

    /// The lock as it stands at `now`, without changing the stored one: what `sluice locks`
    /// and the API show (an expired holder gone, an interrupted apply kept).
    pub fn settled(&self, now: Timestamp) -> Lock {
        let mut view = self.clone();
        view.settle(now);
        view
    }

    /// Ask for the lock for `change`. Granted when nobody holds it and the change is first in
    /// line (or the line is empty); otherwise the change joins (or keeps its place in) the
    /// queue. The change that keeps a lock after a failed apply may take it again to recover.
    ///
    /// What time decided is applied first (see [`Lock::settle`]); call `settle` before to
    /// learn of it as an event. Nothing is lost either way: an interrupted apply stays visible
    /// as a holder kept with [`KeptCause::Interrupted`].
    pub fn acquire(
        &mut self,
        change: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Acquired, Refusal> {
        let mut next = self.settled(now);
        let outcome = match &next.holder {
            Some(h) if h.change == change => match h.tenure {
                Tenure::Kept { .. } => next.grant(change, now, lease),
                Tenure::Leased { .. } | Tenure::Applying { .. } => {
                    return Err(Refusal::AlreadyHolder {
                        change: change.to_string(),
                        token: h.token,
                    });
                }
            },
            Some(h) => {
                let holder = h.change.clone();
                next.wait(change, now, lease, holder)
            }
            None => match next.queue.front() {
                Some(first) if first.change != change => {
                    let holder = first.change.clone();
                    next.wait(change, now, lease, holder)
                }
                _ => next.grant(change, now, lease),
            },
        };
        *self = next;
        Ok(outcome)
    }

    fn grant(&mut self, change: &str, now: Timestamp, lease: Duration) -> Acquired {
        self.queue.retain(|w| w.change != change);
        self.last_token = FencingToken(self.last_token.0 + 1);
        let expires_at = after(now, lease);
        self.holder = Some(Holder {
            change: change.to_string(),
            token: self.last_token,
            acquired_at: now,
            tenure: Tenure::Leased { expires_at },
        });
        Acquired::Granted {
            token: self.last_token,
            expires_at,
        }
    }

    fn wait(&mut self, change: &str, now: Timestamp, lease: Duration, holder: String) -> Acquired {
        let expires_at = after(now, lease);
        let position = match self.queue.iter().position(|w| w.change == change) {
            Some(i) => {
                self.queue[i].expires_at = expires_at;
                i
            }
            None => {
                self.queue.push_back(Waiter {
                    change: change.to_string(),
                    since: now,
                    expires_at,
                });
                self.queue.len() - 1
            }
        };
        Acquired::Queued {
            position: position + 1,
            holder,
        }
    }

    /// The holder of `token`, if it may act at `now`.
    fn current(&self, token: FencingToken, now: Timestamp) -> Result<&Holder, Refusal> {
        if token > self.last_token {
            return Err(Refusal::UnknownToken {
                token,
                last: self.last_token,
            });
        }
        let Some(h) = &self.holder else {
            return Err(Refusal::Stale {
                token,
                current: None,
            });
        };
        if h.token != token {
            return Err(Refusal::Stale {
                token,
                current: Some(h.token),
            });
        }
        match h.tenure {
            Tenure::Leased { expires_at } | Tenure::Applying { expires_at, .. }
                if now >= expires_at =>
            {
                Err(Refusal::Expired {
                    token,
                    expired_at: expires_at,
                })
            }
            Tenure::Kept { since, cause } => Err(Refusal::Kept {
                change: h.change.clone(),
                since,
                cause,
            }),
            Tenure::Leased { .. } | Tenure::Applying { .. } => Ok(h),
        }
    }

    fn current_mut(&mut self, token: FencingToken, now: Timestamp) -> Result<&mut Holder, Refusal> {
        self.current(token, now)?;
        Ok(self.holder.as_mut().expect("checked by current"))
    }

    /// Whether a write (state upload, apply step) carrying `token` is allowed at `now`: only
    /// the current holder with a live lease may write.
    pub fn check_write(&self, token: FencingToken, now: Timestamp) -> Result<(), Refusal> {
        self.current(token, now).map(|_| ())
    }

    /// Renew the holder's lease; returns the new expiry. An expired lease cannot be renewed:
    /// the holder must acquire again (and gets a new token).
    pub fn heartbeat(
        &mut self,
        token: FencingToken,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Timestamp, Refusal> {
        let h = self.current_mut(token, now)?;
        let renewed = after(now, lease);
        match &mut h.tenure {
            Tenure::Leased { expires_at } | Tenure::Applying { expires_at, .. } => {
                *expires_at = renewed;
            }
            Tenure::Kept { .. } => unreachable!("current refuses kept locks"),
        }
        Ok(renewed)
    }

    /// The holder starts applying: from now on a lapsed lease means an interrupted apply.
    pub fn begin_apply(&mut self, token: FencingToken, now: Timestamp) -> Result<(), Refusal> {
        let h = self.current_mut(token, now)?;
        match h.tenure {
            Tenure::Leased { expires_at } => {
                h.tenure = Tenure::Applying {
                    started_at: now,
                    expires_at,
                };
                Ok(())
            }
            _ => Err(Refusal::AlreadyApplying { token }),
        }
    }

    /// The holder is done (applied, or gave up before applying): the lock is free for the
    /// first waiter.
    pub fn release(&mut self, token: FencingToken, now: Timestamp) -> Result<Holder, Refusal> {
        self.current(token, now)?;
        Ok(self.holder.take().expect("checked by current"))
    }

    /// The apply failed: keep the lock for recovery.
    pub fn fail(&mut self, token: FencingToken, now: Timestamp) -> Result<(), Refusal> {
        let h = self.current_mut(token, now)?;
        h.tenure = Tenure::Kept {
            since: now,
            cause: KeptCause::Failed,
        };
        Ok(())
    }

    /// `change` was merged or closed: it leaves the queue and releases the lock it holds,
    /// unless it is applying or the lock is kept for recovery.
    pub fn close(&mut self, change: &str, now: Timestamp) -> Closed {
        self.settle(now);
        self.queue.retain(|w| w.change != change);
        let Some(h) = &self.holder else {
            return Closed::NotHeld;
        };
        if h.change != change {
            return Closed::NotHeld;
        }
        match h.tenure {
            Tenure::Leased { .. } => {
                let token = h.token;
                self.holder = None;
                Closed::Released { token }
            }
            Tenure::Applying { .. } => Closed::ApplyInProgress { token: h.token },
            Tenure::Kept { .. } => Closed::KeptForRecovery,
        }
    }

    /// `sluice unlock UNIT --reason`: remove whoever holds the lock, whatever it is doing. The
    /// old holder's token is fenced because the next holder gets a larger one.
    pub fn unlock(
        &mut self,
        admin: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Unlocked, Refusal> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Refusal::ReasonRequired);
        }
        Ok(Unlocked {
            unit: self.unit.clone(),
            admin: admin.to_string(),
            reason: reason.to_string(),
            at: now,
            previous: self.holder.take(),
        })
    }
}

#[cfg(test)]
mod tests;
