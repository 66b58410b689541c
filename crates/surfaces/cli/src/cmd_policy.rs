//! `sluice policy list|test|eval|gatekeeper-test`, `sluice exceptions list` and `sluice bench
//! policy`: the policy stage (5) on its own, for policy authors and for debugging a decision.
//!
//! Exit codes: `policy eval` 0 allowed (warnings or approvals may remain), 1 denied, 2 usage,
//! configuration, bundle or input error (Rego syntax errors with file:line, malformed plan JSON
//! with position, invalid exception files), 3 repository error. `policy test` 0 all tests
//! passed, 1 a test failed or none was found, 2 the bundle does not load. `policy
//! gatekeeper-test` 0 when at least --min-agreement of the suite cases agree, 1 otherwise, 2
//! when the folder holds no suite. `exceptions list` 0,
//! or 2 when an exception file is invalid.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use sluice_demo::plangen;
use sluice_flow::error::PipelineError;
use sluice_flow::workspace;

use crate::exit;
use crate::output::{emit, print_json};
use sluice_model::config::OrgConfig;
use sluice_model::exception::{self, ExceptionStatus, Timestamp};
use sluice_model::plan::Plan;
use sluice_model::redact::{self, RedactionRules};
use sluice_policy::builtin::{self, Params};
use sluice_policy::engine::{BuiltinSettings, EngineSpec};
use sluice_policy::exceptions::{self, LoadedExceptions};
use sluice_policy::{
    Bundle, ChangeContext, Decision, DecisionRecord, EvalInput, Outcome, PolicyConfig,
    PolicyEngine, PolicyError, PolicySetup, testing,
};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// The built-in policy pack: id, outcome, severity and title of each rule (with --repo,
    /// as the org's sluice.yaml configures it).
    List(ListArgs),
    /// Run the `test_*` rules of a policy folder like `opa test`. Exit 1 when a test fails.
    Test(TestArgs),
    /// Evaluate policy over one plan JSON and print the decision record (exit 1 on deny).
    Eval(EvalArgs),
    /// Run every suite.yaml of a Gatekeeper library (ConstraintTemplates, constraints and
    /// samples) and print how many cases agree with their expected violations. Exit 1 when
    /// the agreement is below --min-agreement.
    GatekeeperTest(GatekeeperTestArgs),
}

#[derive(Args)]
pub struct GatekeeperTestArgs {
    /// A gatekeeper-library checkout's `library` folder, or any folder holding suite.yaml files.
    lib_dir: PathBuf,
    /// Lowest share of agreeing cases (0 to 1) that still exits 0.
    #[arg(long, default_value_t = 0.95)]
    min_agreement: f64,
    /// Time limit per case, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// List agreeing cases too.
    #[arg(long, short)]
    verbose: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Subcommand)]
pub enum ExceptionsCommand {
    /// Exceptions of the org's security-exceptions folder with their status and warnings.
    List(ExceptionsListArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// Show the pack as configured by this platform repository's sluice.yaml.
    #[arg(long)]
    repo: Option<PathBuf>,
    #[arg(long, default_value = "HEAD", requires = "repo")]
    rev: String,
    /// Also print each rule's description and remediation.
    #[arg(long, short)]
    verbose: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct TestArgs {
    /// The policy folder (a bundle: .rego files, data.json/data.yaml, optional .manifest).
    #[arg(required_unless_present = "builtin")]
    dir: Option<PathBuf>,
    /// Test the built-in pack instead.
    #[arg(long, conflicts_with = "dir")]
    builtin: bool,
    /// Parse the folder as Rego v0 (overrides its .manifest).
    #[arg(long)]
    rego_v0: bool,
    /// Time limit per test, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// List passing tests too.
    #[arg(long, short)]
    verbose: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Plan JSON (`tofu show -json` / `terraform show -json`).
    #[arg(long, value_name = "FILE")]
    plan_json: PathBuf,
    /// A policy folder to evaluate besides the built-in pack; repeatable.
    #[arg(long = "bundle", value_name = "DIR")]
    bundles: Vec<PathBuf>,
    /// Leave the built-in pack out.
    #[arg(long)]
    no_builtin: bool,
    /// Packages whose deny/violation/warn/require_approval rules run (globs over dotted
    /// names); repeatable. Default: sluice.yaml's policy.namespaces, else `main`.
    #[arg(long = "namespace", value_name = "PKG")]
    namespaces: Vec<String>,
    /// Parse --bundle folders as Rego v0.
    #[arg(long)]
    rego_v0: bool,
    /// A folder of exception files (default with --repo: the org's security-exceptions).
    #[arg(long, value_name = "DIR")]
    exceptions: Option<PathBuf>,
    /// Use this platform repository's sluice.yaml, policy-library and security-exceptions.
    #[arg(long)]
    repo: Option<PathBuf>,
    #[arg(long, default_value = "HEAD", requires = "repo")]
    rev: String,
    /// The stack the plan belongs to (exception globs match `stack/address`).
    #[arg(long, default_value = "local")]
    stack: String,
    /// The environment (production when sluice.yaml marks it protected, or with --production).
    #[arg(long, default_value = "")]
    env: String,
    /// Treat the change as a production change.
    #[arg(long)]
    production: bool,
    /// Judge exception expiry at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Evaluation time limit per bundle, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// `json` prints the canonical decision record (byte-identical for the same input).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct ExceptionsListArgs {
    /// The platform repository.
    #[arg(long, default_value = ".", conflicts_with = "dir")]
    repo: PathBuf,
    #[arg(long, default_value = "HEAD")]
    rev: String,
    /// Read exception files from a folder on disk instead of a repository revision.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only expired exceptions.
    #[arg(long)]
    expired: bool,
    /// Judge expiry at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
pub struct BenchPolicyArgs {
    /// Resource changes in the generated plan.
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timed runs (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Report a policy error and map it to the usage/configuration exit code.
fn fail(e: &PolicyError) -> i32 {
    for line in e.to_string().lines() {
        eprintln!("error: {line}");
    }
    exit::USAGE
}

fn parse_now(text: Option<&str>) -> Result<Timestamp, i32> {
    match text {
        None => Ok(sluice_policy::now()),
        Some(t) => Timestamp::parse_rfc3339(t).map_err(|e| {
            eprintln!("error: --now `{t}`: {e}");
            exit::USAGE
        }),
    }
}

fn org_config(repo: &std::path::Path, rev: &str) -> Result<workspace::Revision, PipelineError> {
    let r = workspace::open(repo)?;
    workspace::revision(&r, rev)
}

pub fn run_policy(cmd: PolicyCommand) -> Result<i32, PipelineError> {
    match cmd {
        PolicyCommand::List(a) => run_list(a),
        PolicyCommand::Test(a) => Ok(run_test(a)),
        PolicyCommand::Eval(a) => run_eval(a),
        PolicyCommand::GatekeeperTest(a) => Ok(run_gatekeeper_test(a)),
    }
}

pub fn run_exceptions(cmd: ExceptionsCommand) -> Result<i32, PipelineError> {
    match cmd {
        ExceptionsCommand::List(a) => run_exceptions_list(a),
    }
}

// ---------------------------------------------------------------------------------------------
// policy list

fn run_list(a: ListArgs) -> Result<i32, PipelineError> {
    let config = match &a.repo {
        Some(repo) => {
            let rev = org_config(repo, &a.rev)?;
            match sluice_policy::config::from_org(&rev.config) {
                Ok(c) => c,
                Err(e) => return Ok(fail(&e)),
            }
        }
        None => PolicyConfig::default(),
    };
    let settings = config.builtin.clone();
    let rows: Vec<serde_json::Value> = builtin::RULES
        .iter()
        .map(|r| {
            let enabled = settings
                .as_ref()
                .is_some_and(|s| !s.disabled.contains(r.id));
            let over = settings.as_ref().and_then(|s| s.overrides.get(r.id));
            let outcome = over.and_then(|o| o.outcome).unwrap_or(r.default_outcome);
            json!({
                "id": r.id,
                "title": r.title,
                "description": r.description,
                "docs": r.docs,
                "severity": r.severity,
                "default_outcome": r.default_outcome,
                "outcome": outcome,
                "groups": over.and_then(|o| o.groups.clone()),
                "enabled": enabled,
                "package": r.package,
                "rule": r.rule,
                "target": r.target,
            })
        })
        .collect();
    let params = settings.as_ref().map(|s| s.params.clone());
    match a.format {
        Format::Json => print_json(&json!({
            "schema": "sluice.policy-list/v1",
            "builtin_enabled": settings.is_some(),
            "rules": rows,
            "params": params,
            "k8s_params": params.as_ref().map(|p| p.to_k8s_data()["sluice"]["params"].clone()),
        })),
        Format::Text => {
            let mut out = String::new();
            if settings.is_none() {
                out.push_str("the built-in pack is disabled (policy.builtin.enabled: false)\n");
            }
            let _ = writeln!(
                out,
                "{:<24} {:<17} {:<9} TITLE",
                "ID", "OUTCOME", "SEVERITY"
            );
            for (r, row) in builtin::RULES.iter().zip(&rows) {
                let mut outcome = row["outcome"].as_str().unwrap_or_default().to_string();
                if row["enabled"] == false {
                    outcome = "disabled".into();
                }
                let _ = writeln!(
                    out,
                    "{:<24} {:<17} {:<9} {}",
                    r.id,
                    outcome,
                    r.severity.as_str(),
                    r.title
                );
                if a.verbose {
                    let _ = writeln!(out, "    {}", r.description);
                    let _ = writeln!(out, "    fix: {}\n", r.docs);
                }
            }
            if let Some(p) = &params {
                let _ = writeln!(
                    out,
                    "\nparams: backup_retention_min_days={} required_tags=[{}] production_envs=[{}] stateful_approvers=[{}] open_ingress_approvers=[{}] stateful_types={} types",
                    p.backup_retention_min_days,
                    p.required_tags.join(", "),
                    p.production_envs.join(", "),
                    p.stateful_approvers.join(", "),
                    p.open_ingress_approvers.join(", "),
                    p.stateful_types.len()
                );
                let _ = writeln!(
                    out,
                    "        k8s_required_resources=[{}] k8s_loadbalancer_namespaces=[{}] k8s_loadbalancer_approvers=[{}]",
                    p.k8s_required_resources.join(", "),
                    p.k8s_loadbalancer_namespaces.join(", "),
                    p.k8s_loadbalancer_approvers.join(", "),
                );
            }
            emit(&out);
        }
    }
    Ok(exit::OK)
}

// ---------------------------------------------------------------------------------------------
// policy test

fn run_test(a: TestArgs) -> i32 {
    if a.builtin {
        // Both halves of the pack (plan rules and Kubernetes rules), reported as one.
        let timeout = Duration::from_millis(a.timeout_ms.max(1));
        let mut merged: Option<testing::TestReport> = None;
        let bundles = match builtin::bundles(&Params::default()) {
            Ok(b) => b,
            Err(e) => return fail(&e),
        };
        for (_, b) in bundles {
            let r = match testing::run(&b, None, timeout) {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            match &mut merged {
                None => merged = Some(r),
                Some(m) => {
                    m.version = format!("{} {}", m.version, r.version);
                    m.passed += r.passed;
                    m.failed += r.failed;
                    m.tests.extend(r.tests);
                }
            }
        }
        let report = merged.expect("the pack has bundles");
        return finish_test(&a, &report);
    }
    let bundle = {
        let dir = a
            .dir
            .as_deref()
            .expect("clap requires DIR without --builtin");
        Bundle::from_dir(dir).map(|b| if a.rego_v0 { b.with_rego_v0(true) } else { b })
    };
    let report = match bundle
        .and_then(|b| testing::run(&b, None, Duration::from_millis(a.timeout_ms.max(1))))
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    finish_test(&a, &report)
}

fn finish_test(a: &TestArgs, report: &testing::TestReport) -> i32 {
    match a.format {
        Format::Json => print_json(report),
        Format::Text => emit(&report.render_text(a.verbose)),
    }
    if report.failed > 0 || report.tests.is_empty() {
        exit::BLOCKED
    } else {
        exit::OK
    }
}

// ---------------------------------------------------------------------------------------------
// policy gatekeeper-test

fn run_gatekeeper_test(a: GatekeeperTestArgs) -> i32 {
    if !(0.0..=1.0).contains(&a.min_agreement) {
        eprintln!(
            "error: --min-agreement {} must be between 0 and 1",
            a.min_agreement
        );
        return exit::USAGE;
    }
    let report = match sluice_policy::gatekeeper::run_suites(
        &a.lib_dir,
        Duration::from_millis(a.timeout_ms.max(1)),
    ) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    match a.format {
        Format::Json => print_json(&json!({
            "schema": "sluice.gatekeeper-test/v1",
            "library": report.library,
            "suites": report.suites,
            "cases": report.cases,
            "agreed": report.agreed,
            "rate": report.rate,
            "min_agreement": a.min_agreement,
            "disagreements": report.disagreements().collect::<Vec<_>>(),
            "results": if a.verbose { Some(&report.results) } else { None },
        })),
        Format::Text => emit(&report.render_text(a.verbose)),
    }
    if report.rate + 1e-12 >= a.min_agreement {
        exit::OK
    } else {
        exit::BLOCKED
    }
}

// ---------------------------------------------------------------------------------------------
// policy eval

fn run_eval(a: EvalArgs) -> Result<i32, PipelineError> {
    let now = match parse_now(a.now.as_deref()) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let file = a.plan_json.display().to_string();
    crate::pages::huge_pages_for_input(&a.plan_json);
    let bytes = match std::fs::read(&a.plan_json) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {file}: {e}");
            return Ok(exit::USAGE);
        }
    };
    let plan = match Plan::parse(&file, &bytes) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::USAGE);
        }
    };
    drop(bytes);

    let rev = match &a.repo {
        Some(repo) => Some(org_config(repo, &a.rev)?),
        None => None,
    };
    let setup = match build_setup(&a, rev.as_ref(), now) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    let org = rev.map(|r| r.config);
    let rules = match &org {
        Some(org) => match sluice_iac::config::PlanConfig::from_section(org.sections.get("plan")) {
            Ok(c) => c.redaction_rules(),
            Err(errors) => {
                for e in errors {
                    eprintln!("error: sluice.yaml: {e}");
                }
                return Ok(exit::USAGE);
            }
        },
        None => RedactionRules::default(),
    };
    for w in &setup.warnings {
        eprintln!("warning: {w}");
    }
    for n in &setup.notices {
        eprintln!("warning: {}:{}: {}", n.file, n.line, n.message);
    }
    let production = a.production
        || org
            .as_ref()
            .is_some_and(|o: &OrgConfig| !a.env.is_empty() && o.is_protected(&a.env));
    let change = ChangeContext {
        correlation_id: None,
        env: a.env.clone(),
        stack: a.stack.clone(),
        production: Some(production),
        ..Default::default()
    };
    // Policies see the redacted projection of the plan (never prior_state or variable values).
    let projected = redact::redact_plan_owned(plan, &rules);
    let input = EvalInput::plan(projected, &change, json!({"id": a.stack, "env": a.env}));
    let record = match setup.engine.evaluate(&input) {
        Ok(r) => r,
        Err(e) => return Ok(fail(&e)),
    };
    match a.format {
        Format::Json => emit(&format!("{}\n", record.to_canonical_json())),
        Format::Text => emit(&render_record(&record)),
    }
    Ok(if record.outcome == Decision::Deny {
        exit::BLOCKED
    } else {
        exit::OK
    })
}

/// The policy stage the flags describe: sluice.yaml's `policy` section (with --repo) or the
/// defaults, then the flags on top: --no-builtin, --namespace, --timeout-ms, --bundle folders
/// added to the revision's bundles, --exceptions instead of the org's folder.
fn build_setup(
    a: &EvalArgs,
    rev: Option<&workspace::Revision>,
    now: Timestamp,
) -> Result<PolicySetup, PolicyError> {
    let mut config = match rev {
        Some(r) => sluice_policy::config::from_org(&r.config)?,
        None => PolicyConfig::default(),
    };
    if a.no_builtin {
        config.builtin = None;
    }
    if !a.namespaces.is_empty() {
        config.options.namespaces = a.namespaces.clone();
    }
    if let Some(ms) = a.timeout_ms {
        config.options.timeout = Duration::from_millis(ms.max(1));
    }
    let mut bundles = match rev {
        Some(r) => sluice_policy::revision_bundles(&r.snapshot, &r.config, &config)?,
        None => Vec::new(),
    };
    for dir in &a.bundles {
        let b = Bundle::from_dir(dir)?;
        bundles.push(if a.rego_v0 { b.with_rego_v0(true) } else { b });
    }
    let loaded = match (&a.exceptions, rev) {
        (Some(dir), _) => exceptions::load_dir(dir),
        (None, Some(r)) => sluice_policy::revision_exceptions(&r.snapshot, &r.config, &config),
        (None, None) => LoadedExceptions::default(),
    };
    sluice_policy::assemble(config, bundles, loaded, now)
}

/// The record as lines a reviewer scans: decision first, then findings by severity of
/// outcome, passes last.
fn render_record(r: &DecisionRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "decision: {}  (input {}, {} results)",
        r.outcome.as_str(),
        r.input_digest,
        r.results.len()
    );
    for b in &r.bundles {
        let _ = writeln!(out, "bundle: {} {}", b.name, b.version);
    }
    let order = [
        Outcome::Deny,
        Outcome::RequireApproval,
        Outcome::Warn,
        Outcome::Excepted,
        Outcome::Pass,
    ];
    for outcome in order {
        for res in r.results.iter().filter(|x| x.outcome == outcome) {
            let label = match outcome {
                Outcome::Deny => "DENY",
                Outcome::RequireApproval => "REQUIRE",
                Outcome::Warn => "WARN",
                Outcome::Excepted => "EXCEPTED",
                Outcome::Pass => "PASS",
            };
            let _ = write!(out, "{label:<9} {}", res.rule);
            if let Some(a) = &res.resource {
                let _ = write!(out, "  {a}");
            }
            if !res.message.is_empty() {
                let _ = write!(out, ": {}", res.message);
            }
            if !res.groups.is_empty() {
                let _ = write!(out, " (approvers: {})", res.groups.join(", "));
            }
            if let Some(e) = &res.exception {
                let _ = write!(out, " (exception {e})");
            }
            if !res.expired_exceptions.is_empty() {
                let _ = write!(
                    out,
                    " (expired exception not honoured: {})",
                    res.expired_exceptions.join(", ")
                );
            }
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// exceptions list

fn run_exceptions_list(a: ExceptionsListArgs) -> Result<i32, PipelineError> {
    let now = match parse_now(a.now.as_deref()) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let (loaded, known, max_days) = match &a.dir {
        Some(dir) => (
            exceptions::load_dir(dir),
            None,
            exception::DEFAULT_MAX_VALIDITY_DAYS,
        ),
        None => {
            let rev = org_config(&a.repo, &a.rev)?;
            let config = match sluice_policy::config::from_org(&rev.config) {
                Ok(c) => c,
                Err(e) => return Ok(fail(&e)),
            };
            let loaded = sluice_policy::revision_exceptions(&rev.snapshot, &rev.config, &config);
            // The policy ids the org's bundles can produce, to flag exceptions that can
            // never apply.
            let known = sluice_policy::revision_bundles(&rev.snapshot, &rev.config, &config)
                .and_then(|bundles| {
                    PolicyEngine::new(EngineSpec {
                        builtin: config.builtin.clone(),
                        bundles,
                        exceptions: Vec::new(),
                        now: Some(now),
                        options: config.options.clone(),
                    })
                })
                .map(|e| e.known_rule_ids());
            let known = match known {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("warning: policy ids not checked: {e}");
                    None
                }
            };
            (loaded, known, config.exceptions_max_days)
        }
    };
    let notices = exception::review(&loaded.exceptions, known.as_ref(), now, max_days);
    let rows: Vec<serde_json::Value> = loaded
        .exceptions
        .iter()
        .filter(|e| !a.expired || e.status(now) == ExceptionStatus::Expired)
        .map(|e| {
            let mut v = serde_json::to_value(e).expect("exceptions serialize");
            v["status"] = json!(e.status(now));
            v["days_left"] = json!(now.days_until(e.expires_at).max(0));
            v
        })
        .collect();
    match a.format {
        Format::Json => print_json(&json!({
            "schema": "sluice.exceptions/v1",
            "now": now,
            "exceptions": rows,
            "notices": notices,
            "warnings": loaded.warnings,
            "errors": loaded.errors,
        })),
        Format::Text => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{:<16} {:<24} {:<8} {:<21} {:<16} RESOURCE",
                "ID", "POLICY", "STATUS", "EXPIRES", "OWNER"
            );
            for r in &rows {
                let _ = writeln!(
                    out,
                    "{:<16} {:<24} {:<8} {:<21} {:<16} {}",
                    r["id"].as_str().unwrap_or_default(),
                    r["policy"].as_str().unwrap_or_default(),
                    r["status"].as_str().unwrap_or_default(),
                    r["expiresAt"].as_str().unwrap_or_default(),
                    r["owner"].as_str().unwrap_or_default(),
                    r["resource"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default(),
                );
            }
            let _ = writeln!(
                out,
                "{} exceptions ({} shown), {} expired",
                loaded.exceptions.len(),
                rows.len(),
                loaded
                    .exceptions
                    .iter()
                    .filter(|e| e.status(now) == ExceptionStatus::Expired)
                    .count()
            );
            emit(&out);
        }
    }
    for n in &notices {
        eprintln!("warning: {}:{}: {}", n.file, n.line, n.message);
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    Ok(if loaded.errors.is_empty() {
        exit::OK
    } else {
        exit::USAGE
    })
}

// ---------------------------------------------------------------------------------------------
// bench policy

#[derive(serde::Serialize)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
}

fn timing(mut samples: Vec<f64>) -> Timing {
    samples.sort_by(|a, b| a.total_cmp(b));
    Timing {
        median_ms: samples[samples.len() / 2],
        min_ms: samples[0],
    }
}

#[derive(serde::Serialize)]
struct PolicyBench {
    changes: usize,
    plan_bytes: usize,
    compile_ms: f64,
    /// Plan::parse + redaction (the policy input projection).
    parse_and_redact: Timing,
    /// Input digest, engine evaluation of the whole built-in pack, decision record.
    evaluate: Timing,
    /// Canonical JSON of the record and its digest.
    record: Timing,
    total: Timing,
    results: usize,
    outcome: &'static str,
}

fn bench_once(
    engine: &PolicyEngine,
    bytes: &[u8],
    runs: usize,
) -> Result<PolicyBench, PipelineError> {
    let rules = RedactionRules::default();
    let change = ChangeContext {
        env: "prod".into(),
        stack: "prod/eu-west-1/bench".into(),
        production: Some(true),
        ..Default::default()
    };
    let (mut parse, mut eval, mut rec, mut total) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for i in 0..=runs {
        let t0 = Instant::now();
        let plan = Plan::parse("generated.json", bytes)
            .map_err(|e| PipelineError::failed("parsing", e))?;
        let projected = redact::redact_plan_owned(plan, &rules);
        let input = EvalInput::plan(projected, &change, json!({"id": change.stack}));
        let t1 = Instant::now();
        let record = engine
            .evaluate(&input)
            .map_err(|e| PipelineError::failed("evaluating", e))?;
        let t2 = Instant::now();
        let text = record.to_canonical_json();
        let digest = record.digest();
        std::hint::black_box((&text, &digest));
        let t3 = Instant::now();
        if i > 0 {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
            parse.push(ms(t0, t1));
            eval.push(ms(t1, t2));
            rec.push(ms(t2, t3));
            total.push(ms(t0, t3));
        }
        last = Some(record);
    }
    let record = last.expect("at least one run");
    Ok(PolicyBench {
        changes: 0,
        plan_bytes: bytes.len(),
        compile_ms: 0.0,
        parse_and_redact: timing(parse),
        evaluate: timing(eval),
        record: timing(rec),
        total: timing(total),
        results: record.results.len(),
        outcome: record.outcome.as_str(),
    })
}

pub fn run_bench_policy(a: BenchPolicyArgs) -> Result<i32, PipelineError> {
    let t = Instant::now();
    let engine = PolicyEngine::new(EngineSpec {
        builtin: Some(BuiltinSettings::default()),
        now: Some(sluice_policy::now()),
        ..Default::default()
    })
    .map_err(|e| PipelineError::failed("compiling the built-in pack", e))?;
    let compile_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut benches = Vec::new();
    for changes in [a.changes, 50] {
        let doc = plangen::generate_plan(changes, a.seed);
        let bytes = serde_json::to_vec(&doc).expect("plan serializes");
        drop(doc);
        let mut b = bench_once(&engine, &bytes, a.runs.max(1))?;
        b.changes = changes;
        b.compile_ms = compile_ms;
        benches.push(b);
    }
    match a.format {
        Format::Json => print_json(&json!({"schema": "sluice.bench.policy/v1", "runs": benches})),
        Format::Text => {
            let mut out = format!(
                "built-in pack ({} rules) compiled in {compile_ms:.1} ms\n",
                builtin::RULES.len()
            );
            for b in &benches {
                let _ = writeln!(
                    out,
                    "{} changes ({} KiB plan JSON), median of {} runs (min):\n  parse + redact  {:>8.1} ms ({:.1})\n  policy eval     {:>8.1} ms ({:.1})\n  decision record {:>8.1} ms ({:.1})\n  total           {:>8.1} ms ({:.1})   {} results, decision {}",
                    b.changes,
                    b.plan_bytes / 1024,
                    a.runs.max(1),
                    b.parse_and_redact.median_ms,
                    b.parse_and_redact.min_ms,
                    b.evaluate.median_ms,
                    b.evaluate.min_ms,
                    b.record.median_ms,
                    b.record.min_ms,
                    b.total.median_ms,
                    b.total.min_ms,
                    b.results,
                    b.outcome
                );
            }
            emit(&out);
        }
    }
    Ok(exit::OK)
}
