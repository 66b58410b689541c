use proptest::prelude::*;

use super::*;

const LEASE: Duration = Duration::from_secs(30);

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + secs, 0)
}

fn granted(r: Result<Acquired, Refusal>) -> FencingToken {
    match r {
        Ok(Acquired::Granted { token, .. }) => token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn queued(r: Result<Acquired, Refusal>) -> usize {
    match r {
        Ok(Acquired::Queued { position, .. }) => position,
        other => panic!("expected to wait, got {other:?}"),
    }
}

#[test]
fn after_adds_durations_with_carry() {
    let t = Timestamp::from_unix(10, 900_000_000);
    assert_eq!(
        after(t, Duration::from_millis(1_250)),
        Timestamp::from_unix(12, 150_000_000)
    );
}

#[test]
fn first_come_holds_the_rest_wait_in_order() {
    let mut lock = Lock::new("prod/network");
    let t1 = granted(lock.acquire("a#1", at(0), LEASE));
    assert_eq!(t1, FencingToken(1));
    assert_eq!(queued(lock.acquire("a#2", at(1), LEASE)), 1);
    assert_eq!(queued(lock.acquire("a#3", at(2), LEASE)), 2);
    // Asking again keeps the place.
    assert_eq!(queued(lock.acquire("a#2", at(3), LEASE)), 1);
    lock.release(t1, at(4)).unwrap();
    // #3 asks first, but #2 is ahead of it.
    assert_eq!(queued(lock.acquire("a#3", at(5), LEASE)), 2);
    let t2 = granted(lock.acquire("a#2", at(5), LEASE));
    assert_eq!(t2, FencingToken(2));
    assert_eq!(queued(lock.acquire("a#3", at(6), LEASE)), 1);
}

#[test]
fn a_holder_cannot_take_the_lock_twice() {
    let mut lock = Lock::new("s");
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    let before = lock.clone();
    assert_eq!(
        lock.acquire("a#1", at(1), LEASE),
        Err(Refusal::AlreadyHolder {
            change: "a#1".into(),
            token: t
        })
    );
    assert_eq!(lock, before, "a refusal changes nothing");
}

#[test]
fn heartbeats_keep_the_lease_and_expiry_fences_the_holder() {
    let mut lock = Lock::new("s");
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    assert_eq!(lock.heartbeat(t, at(20), LEASE), Ok(at(50)));
    lock.check_write(t, at(49)).unwrap();
    assert_eq!(
        lock.check_write(t, at(50)),
        Err(Refusal::Expired {
            token: t,
            expired_at: at(50)
        })
    );
    // Too late to renew: acquire again.
    assert!(matches!(
        lock.heartbeat(t, at(51), LEASE),
        Err(Refusal::Expired { .. })
    ));
    assert!(matches!(
        lock.release(t, at(51)),
        Err(Refusal::Expired { .. })
    ));
    let t2 = granted(lock.acquire("a#1", at(52), LEASE));
    assert!(t2 > t);
    assert_eq!(
        lock.check_write(t, at(53)),
        Err(Refusal::Stale {
            token: t,
            current: Some(t2)
        })
    );
}

#[test]
fn the_settled_view_shows_what_time_decided() {
    let mut lock = Lock::new("s");
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    queued(lock.acquire("a#2", at(0), LEASE));
    assert_eq!(lock.settled(at(29)), lock, "nothing due yet");
    let later = lock.settled(at(30));
    assert!(later.holder.is_none(), "the lease ran out");
    assert!(later.queue.is_empty(), "so did the waiter's");
    assert!(lock.holder.is_some(), "the stored lock is untouched");
    lock.begin_apply(t, at(1)).unwrap();
    let kept = lock.settled(at(30)).holder.unwrap();
    assert_eq!(
        kept.tenure,
        Tenure::Kept {
            since: at(30),
            cause: KeptCause::Interrupted
        }
    );
}

#[test]
fn an_expired_holder_yields_to_the_first_waiter() {
    let mut lock = Lock::new("s");
    let t1 = granted(lock.acquire("a#1", at(0), LEASE));
    queued(lock.acquire("a#2", at(10), LEASE));
    // #1's lease ran out at 30; #2 asked within its own waiter lease.
    let t2 = granted(lock.acquire("a#2", at(31), LEASE));
    assert_eq!(t2, FencingToken(2));
    assert!(matches!(
        lock.check_write(t1, at(31)),
        Err(Refusal::Stale { .. })
    ));
    lock.check_write(t2, at(31)).unwrap();
}

#[test]
fn a_waiter_that_stops_asking_loses_its_place() {
    let mut lock = Lock::new("s");
    let t1 = granted(lock.acquire("a#1", at(0), LEASE));
    queued(lock.acquire("gone#9", at(1), LEASE));
    queued(lock.acquire("a#2", at(2), LEASE));
    lock.heartbeat(t1, at(25), LEASE).unwrap();
    assert_eq!(queued(lock.acquire("a#2", at(25), LEASE)), 2);
    lock.release(t1, at(40)).unwrap();
    // gone#9 last asked at 1: its place lapsed at 31.
    granted(lock.acquire("a#2", at(41), LEASE));
    assert!(lock.queue.is_empty());
}

#[test]
fn unknown_and_stale_tokens_are_refused() {
    let mut lock = Lock::new("s");
    assert_eq!(
        lock.check_write(FencingToken(1), at(0)),
        Err(Refusal::UnknownToken {
            token: FencingToken(1),
            last: FencingToken(0)
        })
    );
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    lock.release(t, at(1)).unwrap();
    assert_eq!(
        lock.check_write(t, at(2)),
        Err(Refusal::Stale {
            token: t,
            current: None
        })
    );
    let before = lock.clone();
    assert!(lock.release(t, at(2)).is_err());
    assert!(lock.begin_apply(t, at(2)).is_err());
    assert!(lock.fail(t, at(2)).is_err());
    assert_eq!(lock, before);
}

#[test]
fn an_interrupted_apply_keeps_the_lock() {
    let mut lock = Lock::new("s");
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    lock.begin_apply(t, at(5)).unwrap();
    assert_eq!(
        lock.begin_apply(t, at(6)),
        Err(Refusal::AlreadyApplying { token: t })
    );
    lock.heartbeat(t, at(20), LEASE).unwrap();
    // The runner is killed: no heartbeat after 20, the lease ends at 50.
    assert_eq!(
        lock.settle(at(60)),
        Some(Settled::Interrupted {
            change: "a#1".into(),
            token: t
        })
    );
    assert_eq!(lock.settle(at(61)), None, "settling twice reports once");
    assert!(matches!(
        lock.check_write(t, at(61)),
        Err(Refusal::Kept {
            cause: KeptCause::Interrupted,
            ..
        })
    ));
    // Others wait; the lock does not pass on.
    assert_eq!(queued(lock.acquire("a#2", at(62), LEASE)), 1);
    assert_eq!(lock.close("a#1", at(63)), Closed::KeptForRecovery);
    assert!(lock.holder.is_some());
}

#[test]
fn a_failed_apply_keeps_the_lock_until_recovery() {
    let mut lock = Lock::new("s");
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    lock.begin_apply(t, at(1)).unwrap();
    lock.fail(t, at(2)).unwrap();
    let err = lock.check_write(t, at(3)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the lock is kept by a#1 since {} after a failed apply; recovery is required",
            at(2)
        )
    );
    // Long after any lease, still kept.
    assert_eq!(queued(lock.acquire("a#2", at(10_000), LEASE)), 1);
    // The same change may take it again to recover, with a new token.
    let t2 = granted(lock.acquire("a#1", at(10_001), LEASE));
    assert_eq!(t2, FencingToken(2));
    lock.check_write(t2, at(10_002)).unwrap();
}

#[test]
fn merge_or_close_releases_a_held_lock_but_not_an_apply() {
    let mut lock = Lock::new("s");
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    queued(lock.acquire("a#2", at(1), LEASE));
    queued(lock.acquire("a#3", at(1), LEASE));
    assert_eq!(lock.close("a#2", at(2)), Closed::NotHeld);
    assert_eq!(lock.queue.len(), 1, "a#2 left the queue");
    lock.begin_apply(t, at(3)).unwrap();
    assert_eq!(
        lock.close("a#1", at(4)),
        Closed::ApplyInProgress { token: t }
    );
    lock.release(t, at(5)).unwrap();
    let t3 = granted(lock.acquire("a#3", at(6), LEASE));
    assert_eq!(lock.close("a#3", at(7)), Closed::Released { token: t3 });
    assert!(lock.holder.is_none());
    assert_eq!(lock.close("a#3", at(8)), Closed::NotHeld);
}

#[test]
fn unlock_needs_a_reason_and_fences_the_old_holder() {
    let mut lock = Lock::new("prod/network");
    let t = granted(lock.acquire("a#1", at(0), LEASE));
    lock.begin_apply(t, at(1)).unwrap();
    lock.fail(t, at(2)).unwrap();
    let before = lock.clone();
    assert_eq!(
        lock.unlock("root", "  ", at(3)),
        Err(Refusal::ReasonRequired)
    );
    assert_eq!(lock, before);
    let u = lock
        .unlock("root", " state checked by hand ", at(3))
        .unwrap();
    assert_eq!(u.reason, "state checked by hand");
    assert_eq!(u.unit, "prod/network");
    assert_eq!(u.previous.unwrap().token, t);
    let t2 = granted(lock.acquire("a#2", at(4), LEASE));
    assert!(t2 > t);
    assert!(matches!(
        lock.check_write(t, at(4)),
        Err(Refusal::Stale { .. })
    ));
}

#[test]
fn refusals_explain_themselves() {
    let stale = Refusal::Stale {
        token: FencingToken(3),
        current: Some(FencingToken(5)),
    };
    assert_eq!(
        stale.to_string(),
        "fencing token 3 is stale: the lock is now held with token 5"
    );
    assert_eq!(
        Refusal::ReasonRequired.to_string(),
        "an unlock needs a reason (it is recorded in the audit log)"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties over random schedules of several changes.

#[derive(Debug, Clone)]
enum Op {
    Acquire(usize),
    Heartbeat(usize),
    BeginApply(usize),
    Release(usize),
    Fail(usize),
    Close(usize),
    Unlock(bool),
    Wait(i64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4).prop_map(Op::Acquire),
        2 => (0usize..4).prop_map(Op::Heartbeat),
        1 => (0usize..4).prop_map(Op::BeginApply),
        2 => (0usize..4).prop_map(Op::Release),
        1 => (0usize..4).prop_map(Op::Fail),
        1 => (0usize..4).prop_map(Op::Close),
        1 => any::<bool>().prop_map(Op::Unlock),
        3 => (0i64..45).prop_map(Op::Wait),
    ]
}

fn name(c: usize) -> String {
    format!("infra-live#{c}")
}

proptest! {
    /// At most one token is ever accepted at a time; tokens strictly increase; a token that
    /// was superseded is never accepted again; refusals change nothing.
    #[test]
    fn one_writer_at_a_time_with_growing_tokens(ops in proptest::collection::vec(arb_op(), 1..80)) {
        let mut lock = Lock::new("s");
        let mut now = at(0);
        let mut tokens: Vec<Option<FencingToken>> = vec![None; 4];
        let mut issued: Vec<FencingToken> = Vec::new();
        // The lease end each change was last told (by a grant or a heartbeat).
        let mut told: Vec<Option<Timestamp>> = vec![None; 4];
        for op in ops {
            let before = lock.clone();
            let refused = match op {
                Op::Acquire(c) => match lock.acquire(&name(c), now, LEASE) {
                    Ok(Acquired::Granted { token, expires_at }) => {
                        told[c] = Some(expires_at);
                        if let Some(last) = issued.last() {
                            prop_assert!(token > *last, "token {} after {}", token, last);
                        }
                        issued.push(token);
                        tokens[c] = Some(token);
                        false
                    }
                    Ok(Acquired::Queued { .. }) => false,
                    Err(_) => true,
                },
                Op::Heartbeat(c) => match tokens[c].map(|t| lock.heartbeat(t, now, LEASE)) {
                    Some(Ok(until)) => {
                        told[c] = Some(until);
                        false
                    }
                    _ => true,
                },
                Op::BeginApply(c) => tokens[c].is_none_or(|t| lock.begin_apply(t, now).is_err()),
                Op::Release(c) => tokens[c].is_none_or(|t| lock.release(t, now).is_err()),
                Op::Fail(c) => tokens[c].is_none_or(|t| lock.fail(t, now).is_err()),
                Op::Close(c) => {
                    lock.close(&name(c), now);
                    false
                }
                Op::Unlock(with_reason) => {
                    let reason = if with_reason { "stuck" } else { "" };
                    lock.unlock("admin", reason, now).is_err()
                }
                Op::Wait(s) => {
                    now = now.plus_seconds(s);
                    false
                }
            };
            if refused {
                prop_assert_eq!(&lock, &before, "a refusal changed the lock");
            }
            prop_assert_eq!(lock.last_token, issued.last().copied().unwrap_or(FencingToken(0)));
            let accepted: Vec<FencingToken> = issued
                .iter()
                .copied()
                .filter(|t| lock.check_write(*t, now).is_ok())
                .collect();
            prop_assert!(accepted.len() <= 1, "several writers: {:?}", accepted);
            if let Some(t) = accepted.first() {
                prop_assert_eq!(Some(*t), issued.last().copied(), "only the newest token may write");
                let c = tokens.iter().position(|x| *x == Some(*t)).expect("issued to someone");
                prop_assert!(told[c].is_some_and(|end| now < end), "{} writes after its lease", t);
                prop_assert_eq!(lock.holder.as_ref().map(|h| h.token), Some(*t));
            }
            prop_assert!(lock.check_write(FencingToken(lock.last_token.0 + 1), now).is_err());
        }
    }

    /// Changes that keep asking are served in the order they first asked, whoever asks first
    /// after each release.
    #[test]
    fn waiters_are_served_first_come_first_served(
        arrivals in Just((0usize..8).collect::<Vec<_>>()).prop_shuffle(),
        polls in proptest::collection::vec(Just((0usize..8).collect::<Vec<_>>()).prop_shuffle(), 8),
        hold in proptest::collection::vec(0i64..20, 8),
    ) {
        let mut lock = Lock::new("s");
        let mut now = at(0);
        let mut served = Vec::new();
        let mut holding: Option<(usize, FencingToken)> = None;
        for c in &arrivals {
            if let Ok(Acquired::Granted { token, .. }) = lock.acquire(&name(*c), now, LEASE) {
                holding = Some((*c, token));
                served.push(*c);
            }
            now = now.plus_seconds(1);
        }
        for round in 0..8 {
            now = now.plus_seconds(hold[round]);
            if let Some((_, t)) = holding.take() {
                lock.release(t, now).unwrap();
            }
            // Everyone still waiting asks again, in a random order.
            for c in &polls[round] {
                if served.contains(c) {
                    continue;
                }
                match lock.acquire(&name(*c), now, LEASE).unwrap() {
                    Acquired::Granted { token, .. } => {
                        prop_assert!(holding.is_none(), "two holders");
                        holding = Some((*c, token));
                        served.push(*c);
                    }
                    Acquired::Queued { .. } => {}
                }
            }
        }
        prop_assert_eq!(served, arrivals);
    }
}
