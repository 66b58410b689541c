//! `/metrics` (DESIGN.md §9): every control loop of the reference architecture (§13.1) plus the
//! server's own (queue depth, job latency, webhook outcomes), named `sluice_<noun>_<unit>`.
//!
//! Loops that do not run in this build yet (plan through a runner, apply, locks, exceptions,
//! sync, drift, rollback, reconcile) are registered and stay at zero, so dashboards and alerts
//! can be written against the final names now. Labels take values from fixed sets only
//! ([`event_label`], [`JobOutcome`], the stage names): never a correlation id, a PR number or a
//! delivery id, so the series count stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sluice_store::QueueDepth;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub event: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// How a webhook delivery was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Accepted,
    Duplicate,
    Unauthenticated,
    Rejected,
    TooLarge,
    StoreError,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Unauthenticated => "unauthenticated",
            WebhookOutcome::Rejected => "rejected",
            WebhookOutcome::TooLarge => "too_large",
            WebhookOutcome::StoreError => "store_error",
        }
    }
}

/// How one attempt of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    Failed,
    Cancelled,
    Released,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::Released => "released",
        }
    }
}

/// The `event` label of a delivery: one of the events sluice acts on, else `other` (an
/// unauthenticated caller chooses the header, so it must not choose label values).
pub fn event_label(event: Option<&str>) -> &'static str {
    match event {
        Some("pull_request") => "pull_request",
        Some("pull_request_review") => "pull_request_review",
        Some("issue_comment") => "issue_comment",
        Some("push") => "push",
        Some("check_run") => "check_run",
        Some("ping") => "ping",
        _ => "other",
    }
}

/// The job kinds the workers know; anything else is `other`.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "pr.pipeline" => "pr.pipeline",
        "pr.command" => "pr.command",
        "pr.review" => "pr.review",
        "pr.publish" => "pr.publish",
        "pr.closed" => "pr.closed",
        "repo.push" => "repo.push",
        "runner.plan" => "runner.plan",
        _ => "other",
    }
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 1 ms to about 9 minutes.
    exponential_buckets(0.001, 2.0, 20)
}

/// Every metric the server exports, registered once.
pub struct Metrics {
    pub registry: Registry,
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    pub webhook_seconds: Histogram,
    pub jobs: Family<StateLabel, Gauge>,
    pub job_duration: Family<JobLabels, Histogram>,
    pub job_wait: Family<KindLabel, Histogram>,
    pub stage_results: Family<StageLabels, Counter>,
    pub plan_duration: Histogram,
    pub apply_duration: Histogram,
    pub lock_wait: Histogram,
    pub policy_decisions: Family<ResultLabel, Counter>,
    pub exceptions: Family<StateLabel, Gauge>,
    pub sync_lag: Histogram,
    pub drifted_units: Gauge,
    pub degraded_apps: Gauge,
    pub rollbacks: Counter,
    pub applies: Family<OutcomeLabel, Counter>,
    pub reconcile_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let histogram = || Histogram::new(seconds_buckets());
        let m = Metrics {
            webhook_deliveries: Family::default(),
            webhook_seconds: histogram(),
            jobs: Family::default(),
            job_duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            job_wait: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            stage_results: Family::default(),
            plan_duration: histogram(),
            apply_duration: histogram(),
            lock_wait: histogram(),
            policy_decisions: Family::default(),
            exceptions: Family::default(),
            sync_lag: histogram(),
            drifted_units: Gauge::default(),
            degraded_apps: Gauge::default(),
            rollbacks: Counter::default(),
            applies: Family::default(),
            reconcile_duration: histogram(),
            registry: Registry::default(),
        };
        // Counters get `_total` from the library; their names here must not end in it.
        registry.register(
            "sluice_webhook_deliveries",
            "Webhook deliveries by event and how they were answered",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            "sluice_webhook_enqueue_seconds",
            "Time from a delivery's arrival to its jobs being committed (or its rejection)",
            m.webhook_seconds.clone(),
        );
        registry.register(
            "sluice_jobs",
            "Jobs in the queue by state (queue depth: queued; dead-lettered: dead)",
            m.jobs.clone(),
        );
        registry.register(
            "sluice_job_duration_seconds",
            "Time one attempt of a job ran, by kind and outcome",
            m.job_duration.clone(),
        );
        registry.register(
            "sluice_job_wait_seconds",
            "Time from a job's enqueue (or retry time) to its claim",
            m.job_wait.clone(),
        );
        registry.register(
            "sluice_stage_results",
            "Stage results recorded by the workers, by stage and status",
            m.stage_results.clone(),
        );
        registry.register(
            "sluice_plan_duration_seconds",
            "Plan duration (control loop: plans run by runners, as each runner reported it)",
            m.plan_duration.clone(),
        );
        registry.register(
            "sluice_apply_duration_seconds",
            "Apply duration (control loop: apply; zero until apply exists)",
            m.apply_duration.clone(),
        );
        registry.register(
            "sluice_lock_wait_seconds",
            "Time waited for a state lock (control loop: locks; zero until locks exist)",
            m.lock_wait.clone(),
        );
        registry.register(
            "sluice_policy_decisions",
            "Policy decisions by result; the deny rate is result=\"deny\" over all",
            m.policy_decisions.clone(),
        );
        registry.register(
            "sluice_exceptions",
            "Security exceptions by state (active, expired); zero until the server reads them",
            m.exceptions.clone(),
        );
        registry.register(
            "sluice_sync_lag_seconds",
            "Merge to reconciled (control loop: sync; zero until the reconciler exists)",
            m.sync_lag.clone(),
        );
        registry.register(
            "sluice_drifted_units",
            "Stacks and apps whose live state drifted (zero until the drift scanner exists)",
            m.drifted_units.clone(),
        );
        registry.register(
            "sluice_degraded_apps",
            "Apps reported degraded (zero until the reconciler exists)",
            m.degraded_apps.clone(),
        );
        registry.register(
            "sluice_rollbacks",
            "Rollbacks performed (zero until rollback exists)",
            m.rollbacks.clone(),
        );
        registry.register(
            "sluice_applies",
            "Applies by outcome; the failed apply rate is outcome=\"failed\" over all",
            m.applies.clone(),
        );
        registry.register(
            "sluice_reconcile_duration_seconds",
            "Time to reconcile; its mean is the mean time to reconcile (zero until reconcile)",
            m.reconcile_duration.clone(),
        );
        // Families whose label values are known get their series now, at zero, so a scrape
        // shows every loop before it first moves.
        for result in ["pass", "warn", "deny", "require", "excepted"] {
            let _ = m.policy_decisions.get_or_create(&ResultLabel {
                result: result.into(),
            });
        }
        for outcome in ["succeeded", "failed"] {
            let _ = m.applies.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        for state in ["active", "expired"] {
            let _ = m.exceptions.get_or_create(&StateLabel {
                state: state.into(),
            });
        }
        m.set_depth(QueueDepth::default());
        Metrics { registry, ..m }
    }

    /// Sets the queue gauges from the store's counts.
    pub fn set_depth(&self, depth: QueueDepth) {
        for (state, n) in [
            ("queued", depth.queued),
            ("running", depth.running),
            ("dead", depth.dead),
        ] {
            self.jobs
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n as i64);
        }
    }

    pub fn webhook(&self, event: &'static str, outcome: WebhookOutcome, seconds: f64) {
        self.webhook_deliveries
            .get_or_create(&WebhookLabels {
                event: event.into(),
                outcome: outcome.as_str().into(),
            })
            .inc();
        self.webhook_seconds.observe(seconds);
    }

    pub fn job(&self, kind: &str, outcome: JobOutcome, seconds: f64) {
        self.job_duration
            .get_or_create(&JobLabels {
                kind: kind_label(kind).into(),
                outcome: outcome.as_str().into(),
            })
            .observe(seconds);
    }

    /// The text exposition (OpenMetrics text, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}
