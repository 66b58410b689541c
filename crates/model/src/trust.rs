//! The trust policy (DESIGN.md §8): which verified machine identities may do what.
//!
//! A runner presents an OIDC token; once its signature, expiry, issuer and audience are verified
//! (the identity adapter), its claims come here. The `trust:` section of `sluice.yaml` lists the
//! trusted issuers and rules; a rule matches claims (`sub`, `repository`, `ref`,
//! `job_workflow_ref`, `environment`, …) and grants stages (plan, apply), state access (globs over
//! stack ids) and the cloud role per unit. [`TrustPolicy::authorize`] is the one pure decision:
//! claims + action + unit → a [`Grant`] or a [`Refusal`] that says why.
//!
//! The rules encode the security model rather than leave it to each config:
//! - a token from a trusted issuer is not enough: every rule constrains `sub` or `repository`
//!   with a pattern that is not only wildcards, and a claim a rule names but the token lacks is a
//!   mismatch, never a wildcard;
//! - plan identities are read-only: `state.write` requires the `apply` stage;
//! - apply identities are per environment: a rule granting apply names one `environment`, and a
//!   write or apply is granted only on units of the environment the token was issued for;
//! - write implies read (Terraform reads the state it replaces), nothing else does, so an apply
//!   identity for `prod/*/network` cannot read `prod/*/rds-payments`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::glob::{self, GlobList};
use crate::stage::Stage;

// ---------------------------------------------------------------------------------------------
// Claims and identity
// ---------------------------------------------------------------------------------------------

/// The verified claims of a runner's token that the trust policy reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub issuer: String,
    pub subject: String,
    pub audience: Vec<String>,
    /// Every other string-valued claim (`repository`, `ref`, `job_workflow_ref`, `environment`…).
    pub other: BTreeMap<String, String>,
}

impl Claims {
    /// A claim by its JWT name; `iss` and `sub` included, `aud` is a list and not returned here.
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "iss" => Some(&self.issuer),
            "sub" => Some(&self.subject),
            _ => self.other.get(name).map(String::as_str),
        }
    }

    pub fn identity(&self) -> Identity {
        Identity {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// A machine identity as evidence statements record it: `oidc:<iss>#<sub>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oidc:{}#{}", self.issuer, self.subject)
    }
}

impl Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// ---------------------------------------------------------------------------------------------
// The `trust:` section as written
// ---------------------------------------------------------------------------------------------

/// The `trust:` section as written in `sluice.yaml`, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSpec {
    pub issuers: Vec<IssuerSpec>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// The `iss` value, also the base of `/.well-known/openid-configuration`.
    pub issuer: String,
    /// Accepted `aud` values (one string or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Required when more than one issuer is trusted.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Claim name → pattern; every one must match.
    pub when: BTreeMap<String, String>,
    pub grant: GrantSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// `plan` and/or `apply`.
    #[serde(default)]
    pub stages: Vec<String>,
    #[serde(default)]
    pub state: StateSpec,
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    #[serde(default, deserialize_with = "one_or_many")]
    pub read: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub write: Vec<String>,
}

/// The cloud role the engine runs as for the units matching `stacks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(deserialize_with = "one_or_many")]
    pub stacks: Vec<String>,
    #[serde(default)]
    pub aws: Option<AwsRole>,
    #[serde(default)]
    pub gcp: Option<GcpRole>,
    #[serde(default)]
    pub azure: Option<AzureRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsRole {
    /// `arn:aws:iam::123456789012:role/iac-apply-prod-network`.
    pub role_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GcpRole {
    /// `projects/123/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`.
    pub workload_identity_provider: String,
    /// `iac-apply-prod-network@PROJECT.iam.gserviceaccount.com`.
    pub service_account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureRole {
    pub client_id: String,
    pub tenant_id: String,
    #[serde(default)]
    pub subscription_id: Option<String>,
}

/// The roles one unit's engine assumes; clouds are independent (a stack may use AWS and Azure
/// providers), at least one is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudRole {
    pub aws: Option<AwsRole>,
    pub gcp: Option<GcpRole>,
    pub azure: Option<AzureRole>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

// ---------------------------------------------------------------------------------------------
// The validated policy
// ---------------------------------------------------------------------------------------------

/// A problem in the `trust:` section, at a path such as `trust.rules[1].when.sub`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TrustError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> TrustError {
    TrustError {
        path: path.into(),
        message: message.into(),
    }
}

/// Claims that verification owns; a rule matching on them would be confusing or meaningless.
const RESERVED_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat", "jti"];

#[derive(Debug, Clone)]
pub struct TrustPolicy {
    issuers: Vec<TrustedIssuer>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    pub issuer: String,
    pub audience: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    issuer: String,
    when: Vec<(String, GlobList)>,
    plan: bool,
    apply: bool,
    read: GlobList,
    write: GlobList,
    roles: Vec<(GlobList, CloudRole)>,
}

impl TrustPolicy {
    /// Read the `trust:` section (as JSON, the way the config loader keeps later sections).
    pub fn from_json(value: &serde_json::Value) -> Result<TrustPolicy, TrustError> {
        let spec: TrustSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let at = e.path().to_string();
            let path = if at == "." {
                "trust".to_string()
            } else {
                format!("trust.{at}")
            };
            err(path, e.into_inner().to_string())
        })?;
        TrustPolicy::new(spec)
    }

    pub fn new(spec: TrustSpec) -> Result<TrustPolicy, TrustError> {
        if spec.issuers.is_empty() {
            return Err(err(
                "trust.issuers",
                "list at least one trusted issuer (e.g. https://token.actions.githubusercontent.com)",
            ));
        }
        let mut issuers: Vec<TrustedIssuer> = Vec::new();
        for (i, s) in spec.issuers.iter().enumerate() {
            let at = format!("trust.issuers[{i}]");
            check_issuer_url(&s.issuer).map_err(|m| err(format!("{at}.issuer"), m))?;
            if issuers.iter().any(|t| t.issuer == s.issuer) {
                return Err(err(
                    format!("{at}.issuer"),
                    format!("issuer `{}` is listed twice", s.issuer),
                ));
            }
            if s.audience.is_empty() || s.audience.iter().any(|a| a.is_empty()) {
                return Err(err(
                    format!("{at}.audience"),
                    "name the audience sluice's tokens are minted for (e.g. `sluice`)",
                ));
            }
            issuers.push(TrustedIssuer {
                issuer: s.issuer.clone(),
                audience: s.audience.clone(),
            });
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in spec.rules.iter().enumerate() {
            let rule = compile_rule(&format!("trust.rules[{i}]"), r, &issuers)?;
            if rules.iter().any(|o| o.name == rule.name) {
                return Err(err(
                    format!("trust.rules[{i}].name"),
                    format!("rule name `{}` is used twice", rule.name),
                ));
            }
            rules.push(rule);
        }
        Ok(TrustPolicy { issuers, rules })
    }

    pub fn issuers(&self) -> &[TrustedIssuer] {
        &self.issuers
    }

    pub fn issuer(&self, iss: &str) -> Option<&TrustedIssuer> {
        self.issuers.iter().find(|t| t.issuer == iss)
    }
}

/// An `http://` URL on a loopback host (a local issuer in tests, a sidecar on the same host).
pub fn is_loopback_http(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            url.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
        })
}

/// HTTPS only, except a loopback issuer: the issuer's keys are fetched from this URL.
fn check_issuer_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") && url.len() > "https://".len() || is_loopback_http(url) {
        Ok(())
    } else {
        Err(format!(
            "issuer `{url}` must be an https:// URL (its keys are fetched from it)"
        ))
    }
}

fn is_only_wildcards(pattern: &str) -> bool {
    pattern.chars().all(|c| matches!(c, '*' | '?' | '/' | ':'))
}

fn has_glob_syntax(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

fn globs(path: &str, patterns: &[String]) -> Result<GlobList, TrustError> {
    GlobList::new(patterns).map_err(|e: glob::GlobError| err(path, e.to_string()))
}

fn compile_rule(at: &str, r: &RuleSpec, issuers: &[TrustedIssuer]) -> Result<Rule, TrustError> {
    if r.name.trim().is_empty() {
        return Err(err(format!("{at}.name"), "a rule needs a name"));
    }
    let issuer = match (&r.issuer, issuers) {
        (Some(i), _) if issuers.iter().any(|t| &t.issuer == i) => i.clone(),
        (Some(i), _) => {
            return Err(err(
                format!("{at}.issuer"),
                format!("issuer `{i}` is not listed under trust.issuers"),
            ));
        }
        (None, [only]) => only.issuer.clone(),
        (None, _) => {
            return Err(err(
                format!("{at}.issuer"),
                "several issuers are trusted: name the one this rule is for",
            ));
        }
    };
    for reserved in RESERVED_CLAIMS {
        if r.when.contains_key(*reserved) {
            return Err(err(
                format!("{at}.when.{reserved}"),
                format!("`{reserved}` is checked by token verification, not by rules"),
            ));
        }
    }
    let anchors: Vec<&str> = ["sub", "repository"]
        .into_iter()
        .filter(|k| r.when.get(*k).is_some_and(|p| !is_only_wildcards(p)))
        .collect();
    if anchors.is_empty() {
        return Err(err(
            format!("{at}.when"),
            "a token from a trusted issuer is not enough: constrain `sub` or `repository` \
             (e.g. `sub: repo:acme/infra-live:environment:prod`)",
        ));
    }
    let mut when = Vec::new();
    for (claim, pattern) in &r.when {
        if pattern.is_empty() {
            return Err(err(format!("{at}.when.{claim}"), "empty pattern"));
        }
        when.push((
            claim.clone(),
            globs(&format!("{at}.when.{claim}"), std::slice::from_ref(pattern))?,
        ));
    }
    let mut plan = false;
    let mut apply = false;
    for (i, s) in r.grant.stages.iter().enumerate() {
        match s.as_str() {
            "plan" => plan = true,
            "apply" => apply = true,
            other => {
                return Err(err(
                    format!("{at}.grant.stages[{i}]"),
                    format!("`{other}` is not a runner stage: use `plan` or `apply`"),
                ));
            }
        }
    }
    let read = globs(&format!("{at}.grant.state.read"), &r.grant.state.read)?;
    let write = globs(&format!("{at}.grant.state.write"), &r.grant.state.write)?;
    if !write.is_empty() && !apply {
        return Err(err(
            format!("{at}.grant.state.write"),
            "plan identities are read-only: writing state needs the `apply` stage",
        ));
    }
    if apply && write.is_empty() {
        return Err(err(
            format!("{at}.grant.state.write"),
            "an apply identity needs the stacks it applies (state.write globs)",
        ));
    }
    if apply {
        match r.when.get("environment") {
            Some(env) if !has_glob_syntax(env) => {}
            _ => {
                return Err(err(
                    format!("{at}.when.environment"),
                    "apply identities are per environment: match one `environment` exactly",
                ));
            }
        }
    }
    let mut roles = Vec::new();
    for (i, role) in r.grant.roles.iter().enumerate() {
        let rat = format!("{at}.grant.roles[{i}]");
        let stacks = globs(&format!("{rat}.stacks"), &role.stacks)?;
        let cloud = CloudRole {
            aws: role.aws.clone(),
            gcp: role.gcp.clone(),
            azure: role.azure.clone(),
        };
        check_cloud_role(&rat, &cloud)?;
        roles.push((stacks, cloud));
    }
    Ok(Rule {
        name: r.name.clone(),
        issuer,
        when,
        plan,
        apply,
        read,
        write,
        roles,
    })
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_cloud_role(at: &str, role: &CloudRole) -> Result<(), TrustError> {
    if role.aws.is_none() && role.gcp.is_none() && role.azure.is_none() {
        return Err(err(at, "name at least one of `aws`, `gcp`, `azure`"));
    }
    if let Some(aws) = &role.aws {
        let ok = aws.role_arn.starts_with("arn:aws") && aws.role_arn.contains(":role/");
        if !ok {
            return Err(err(
                format!("{at}.aws.role_arn"),
                format!(
                    "`{}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
                    aws.role_arn
                ),
            ));
        }
    }
    if let Some(gcp) = &role.gcp {
        let p = &gcp.workload_identity_provider;
        if !(p.starts_with("projects/")
            && p.contains("/workloadIdentityPools/")
            && p.contains("/providers/"))
        {
            return Err(err(
                format!("{at}.gcp.workload_identity_provider"),
                "expected projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
            ));
        }
        if !gcp.service_account.contains('@') {
            return Err(err(
                format!("{at}.gcp.service_account"),
                "expected a service account email",
            ));
        }
    }
    if let Some(az) = &role.azure {
        for (name, v) in [("client_id", &az.client_id), ("tenant_id", &az.tenant_id)] {
            if !is_guid(v) {
                return Err(err(
                    format!("{at}.azure.{name}"),
                    format!("`{v}` is not a GUID"),
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------------------------

/// What a runner asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "stage")]
pub enum Action {
    /// Run a stage on a unit; only `plan` and `apply` run on runners.
    Run(Stage),
    ReadState,
    WriteState,
}

/// The unit (stack) an action is for, with the environment discovery gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub id: String,
    pub env: String,
}

/// Permission to do one action on one unit, and what the runner hands the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub identity: Identity,
    /// The trust rule that granted it (for the evidence statement).
    pub rule: String,
    pub action: Action,
    pub unit: String,
    /// For stage runs: the role for this unit, when the rule names one.
    pub cloud_role: Option<CloudRole>,
}

/// Why one rule's claims did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ClaimMismatch {
    /// The rule names a claim the token does not carry.
    Missing { rule: String, claim: String },
    /// The claim is present and does not match the rule's pattern.
    Differs { rule: String, claim: String },
}

/// Why a matching rule still did not grant the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GrantGap {
    StageNotGranted {
        rule: String,
        stage: Stage,
    },
    UnitNotCovered {
        rule: String,
    },
    /// Apply and state writes only in the environment the token was issued for.
    OtherEnvironment {
        rule: String,
        token_env: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "refusal")]
pub enum Refusal {
    #[error("issuer `{issuer}` is not trusted")]
    UnknownIssuer { issuer: String },
    #[error("token audience {audience:?} is not one sluice accepts")]
    WrongAudience { audience: Vec<String> },
    #[error("`{stage:?}` does not run on runners")]
    NotARunnerStage { stage: Stage },
    #[error("no trust rule matches {identity}")]
    NoRuleMatches {
        identity: Identity,
        mismatches: Vec<ClaimMismatch>,
    },
    #[error("{identity} may not {action:?} on `{unit}`")]
    NotGranted {
        identity: Identity,
        action: Action,
        unit: String,
        gaps: Vec<GrantGap>,
    },
}

impl Rule {
    fn mismatch(&self, claims: &Claims) -> Option<ClaimMismatch> {
        self.when
            .iter()
            .find_map(|(claim, pattern)| match claims.get(claim) {
                None => Some(ClaimMismatch::Missing {
                    rule: self.name.clone(),
                    claim: claim.clone(),
                }),
                Some(v) if !pattern.is_match(v) => Some(ClaimMismatch::Differs {
                    rule: self.name.clone(),
                    claim: claim.clone(),
                }),
                Some(_) => None,
            })
    }

    fn gap(&self, claims: &Claims, action: Action, unit: &Unit) -> Option<GrantGap> {
        let name = || self.name.clone();
        let (stage_ok, covered, writes) = match action {
            Action::Run(Stage::Plan) => (self.plan, self.read.is_match(&unit.id), false),
            Action::Run(Stage::Apply) => (self.apply, self.write.is_match(&unit.id), true),
            Action::Run(stage) => {
                return Some(GrantGap::StageNotGranted {
                    rule: name(),
                    stage,
                });
            }
            Action::ReadState => (
                true,
                self.read.is_match(&unit.id) || self.write.is_match(&unit.id),
                false,
            ),
            Action::WriteState => (true, self.write.is_match(&unit.id), true),
        };
        if !stage_ok {
            let Action::Run(stage) = action else {
                unreachable!("only stage runs can lack a stage")
            };
            return Some(GrantGap::StageNotGranted {
                rule: name(),
                stage,
            });
        }
        if !covered {
            return Some(GrantGap::UnitNotCovered { rule: name() });
        }
        let token_env = claims.get("environment");
        if writes && token_env != Some(unit.env.as_str()) {
            return Some(GrantGap::OtherEnvironment {
                rule: name(),
                token_env: token_env.map(str::to_string),
            });
        }
        None
    }

    fn cloud_role(&self, unit: &str) -> Option<CloudRole> {
        self.roles
            .iter()
            .find(|(stacks, _)| stacks.is_match(unit))
            .map(|(_, role)| role.clone())
    }
}

impl TrustPolicy {
    /// Whether the verified `claims` may do `action` on `unit`. The first rule (in file order)
    /// that matches the claims and covers the action grants it.
    pub fn authorize(
        &self,
        claims: &Claims,
        action: Action,
        unit: &Unit,
    ) -> Result<Grant, Refusal> {
        let issuer = self
            .issuer(&claims.issuer)
            .ok_or_else(|| Refusal::UnknownIssuer {
                issuer: claims.issuer.clone(),
            })?;
        if !claims.audience.iter().any(|a| issuer.audience.contains(a)) {
            return Err(Refusal::WrongAudience {
                audience: claims.audience.clone(),
            });
        }
        if let Action::Run(stage) = action
            && !matches!(stage, Stage::Plan | Stage::Apply)
        {
            return Err(Refusal::NotARunnerStage { stage });
        }
        let identity = claims.identity();
        let mut mismatches = Vec::new();
        let mut gaps = Vec::new();
        for rule in self.rules.iter().filter(|r| r.issuer == claims.issuer) {
            if let Some(m) = rule.mismatch(claims) {
                mismatches.push(m);
                continue;
            }
            match rule.gap(claims, action, unit) {
                Some(gap) => gaps.push(gap),
                None => {
                    return Ok(Grant {
                        identity,
                        rule: rule.name.clone(),
                        action,
                        unit: unit.id.clone(),
                        cloud_role: match action {
                            Action::Run(_) => rule.cloud_role(&unit.id),
                            _ => None,
                        },
                    });
                }
            }
        }
        if gaps.is_empty() {
            Err(Refusal::NoRuleMatches {
                identity,
                mismatches,
            })
        } else {
            Err(Refusal::NotGranted {
                identity,
                action,
                unit: unit.id.clone(),
                gaps,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sluice tokens for state
// ---------------------------------------------------------------------------------------------

/// What a sluice `state` token (made with `sluice token create --scope state --state-read GLOB
/// --state-write GLOB`) may touch: globs over stack ids. The same least-privilege rule as the
/// trust policy's `state:` grant: writing (and locking) needs a write glob; reading needs a read
/// or a write glob (Terraform reads the state it replaces); nothing else is implied.
#[derive(Debug, Clone)]
pub struct TokenStateGrants {
    read: GlobList,
    write: GlobList,
}

/// Why a token's grant list was refused, naming the flag and the glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} `{pattern}`: {message}")]
pub struct TokenGrantError {
    pub field: &'static str,
    pub pattern: String,
    pub message: String,
}

impl TokenStateGrants {
    /// Compiles the two lists; a glob that is only wildcards (`**`, `*`) is refused, so a
    /// token always names which stacks it is for.
    pub fn new<S: AsRef<str>>(read: &[S], write: &[S]) -> Result<Self, TokenGrantError> {
        let compile = |field: &'static str, list: &[S]| {
            for p in list {
                let p = p.as_ref();
                if p.trim().is_empty() || p.chars().all(|c| matches!(c, '*' | '/' | '?')) {
                    return Err(TokenGrantError {
                        field,
                        pattern: p.to_string(),
                        message: "name the stacks (e.g. `dev/*/network`), not only wildcards"
                            .into(),
                    });
                }
            }
            GlobList::new(list).map_err(|e| TokenGrantError {
                field,
                pattern: e.pattern.clone(),
                message: e.message,
            })
        };
        Ok(TokenStateGrants {
            read: compile("--state-read", read)?,
            write: compile("--state-write", write)?,
        })
    }

    /// Whether `action` on stack `unit` is granted; the refusal says what is missing.
    pub fn authorize(&self, action: Action, unit: &str) -> Result<(), String> {
        match action {
            Action::WriteState if self.write.is_match(unit) => Ok(()),
            Action::WriteState => Err(format!(
                "the token may not lock or write the state of `{unit}` (no --state-write glob \
                 matches it)"
            )),
            Action::ReadState if self.read.is_match(unit) || self.write.is_match(unit) => Ok(()),
            Action::ReadState => Err(format!(
                "the token may not read the state of `{unit}` (no --state-read or \
                 --state-write glob matches it)"
            )),
            Action::Run(stage) => Err(format!("a sluice token may not run `{stage:?}`")),
        }
    }
}

#[cfg(test)]
mod token_grant_tests {
    use super::*;

    #[test]
    fn token_grants_are_least_privilege() {
        let g = TokenStateGrants::new(&["dev/**"], &["dev/*/network"]).unwrap();
        assert!(g.authorize(Action::WriteState, "dev/ap/network").is_ok());
        assert!(g.authorize(Action::ReadState, "dev/ap/network").is_ok());
        assert!(g.authorize(Action::ReadState, "dev/ap/rds").is_ok());
        let refused = g.authorize(Action::WriteState, "dev/ap/rds").unwrap_err();
        assert!(refused.contains("dev/ap/rds"), "{refused}");
        assert!(g.authorize(Action::ReadState, "prod/ap/network").is_err());
        assert!(
            g.authorize(Action::Run(Stage::Apply), "dev/ap/network")
                .is_err()
        );
        // Write implies read; read implies nothing else.
        let w = TokenStateGrants::new::<&str>(&[], &["dev/*/network"]).unwrap();
        assert!(w.authorize(Action::ReadState, "dev/ap/network").is_ok());
        let r = TokenStateGrants::new::<&str>(&["dev/**"], &[]).unwrap();
        assert!(r.authorize(Action::WriteState, "dev/ap/network").is_err());
    }

    #[test]
    fn token_grants_name_stacks() {
        for bad in ["**", "*/*", "", "*"] {
            let e = TokenStateGrants::new(&[bad], &[]).unwrap_err();
            assert_eq!(e.field, "--state-read", "{bad}");
        }
        let e = TokenStateGrants::new(&["dev/**"], &["dev/[a"]).unwrap_err();
        assert_eq!(e.field, "--state-write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const GH: &str = "https://token.actions.githubusercontent.com";

    fn policy() -> TrustPolicy {
        TrustPolicy::from_json(&json!({
            "issuers": [{ "issuer": GH, "audience": "sluice" }],
            "rules": [
                {
                    "name": "plan-prod",
                    "when": {
                        "repository": "acme/infra-live",
                        "sub": "repo:acme/infra-live:pull_request",
                        "job_workflow_ref": "acme/infra-live/.github/workflows/plan.yml@refs/pull/*/merge"
                    },
                    "grant": {
                        "stages": ["plan"],
                        "state": { "read": ["prod/**", "dev/**"] },
                        "roles": [{ "stacks": "**", "aws": { "role_arn": "arn:aws:iam::111111111111:role/iac-plan" } }]
                    }
                },
                {
                    "name": "apply-prod-network",
                    "when": {
                        "sub": "repo:acme/infra-live:environment:prod",
                        "environment": "prod",
                        "ref": "refs/heads/main",
                        "job_workflow_ref": "acme/infra-live/.github/workflows/apply-network.yml@refs/heads/main"
                    },
                    "grant": {
                        "stages": ["apply", "plan"],
                        "state": { "write": ["prod/*/network"] },
                        "roles": [{ "stacks": ["prod/*/network"], "aws": { "role_arn": "arn:aws:iam::222222222222:role/iac-apply-prod-network" } }]
                    }
                },
                {
                    "name": "apply-dev",
                    "when": { "sub": "repo:acme/infra-live:environment:dev", "environment": "dev" },
                    "grant": { "stages": ["apply"], "state": { "write": ["dev/**"] } }
                }
            ]
        }))
        .unwrap()
    }

    fn claims(sub: &str, other: &[(&str, &str)]) -> Claims {
        Claims {
            issuer: GH.into(),
            subject: sub.into(),
            audience: vec!["sluice".into()],
            other: other
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn apply_network_claims() -> Claims {
        claims(
            "repo:acme/infra-live:environment:prod",
            &[
                ("repository", "acme/infra-live"),
                ("environment", "prod"),
                ("ref", "refs/heads/main"),
                (
                    "job_workflow_ref",
                    "acme/infra-live/.github/workflows/apply-network.yml@refs/heads/main",
                ),
            ],
        )
    }

    fn unit(id: &str) -> Unit {
        Unit {
            id: id.into(),
            env: id.split('/').next().unwrap().into(),
        }
    }

    #[test]
    fn identity_renders_for_evidence() {
        let c = apply_network_claims();
        assert_eq!(
            c.identity().to_string(),
            "oidc:https://token.actions.githubusercontent.com#repo:acme/infra-live:environment:prod"
        );
        assert_eq!(
            serde_json::to_value(c.identity()).unwrap(),
            json!(c.identity().to_string())
        );
    }

    #[test]
    fn prod_network_apply_identity_applies_network_with_its_role() {
        let g = policy()
            .authorize(
                &apply_network_claims(),
                Action::Run(Stage::Apply),
                &unit("prod/ap-southeast-1/network"),
            )
            .unwrap();
        assert_eq!(g.rule, "apply-prod-network");
        assert_eq!(
            g.cloud_role.unwrap().aws.unwrap().role_arn,
            "arn:aws:iam::222222222222:role/iac-apply-prod-network"
        );
        for action in [Action::ReadState, Action::WriteState] {
            let g = policy()
                .authorize(
                    &apply_network_claims(),
                    action,
                    &unit("prod/ap-southeast-1/network"),
                )
                .unwrap();
            assert_eq!(g.cloud_role, None, "state access needs no cloud role");
        }
    }

    #[test]
    fn prod_network_apply_identity_cannot_read_prod_rds_payments_state() {
        let r = policy()
            .authorize(
                &apply_network_claims(),
                Action::ReadState,
                &unit("prod/ap-southeast-1/rds-payments"),
            )
            .unwrap_err();
        assert_eq!(
            r,
            Refusal::NotGranted {
                identity: apply_network_claims().identity(),
                action: Action::ReadState,
                unit: "prod/ap-southeast-1/rds-payments".into(),
                gaps: vec![GrantGap::UnitNotCovered {
                    rule: "apply-prod-network".into()
                }],
            }
        );
        for action in [Action::WriteState, Action::Run(Stage::Apply)] {
            assert!(matches!(
                policy().authorize(
                    &apply_network_claims(),
                    action,
                    &unit("prod/ap-southeast-1/rds-payments")
                ),
                Err(Refusal::NotGranted { .. })
            ));
        }
    }

    #[test]
    fn token_from_github_is_not_enough() {
        // Right issuer and audience, but none of the claims the rules ask for.
        let bare = claims("repo:acme/infra-live:environment:prod", &[]);
        let r = policy()
            .authorize(&bare, Action::ReadState, &unit("prod/eu-west-1/network"))
            .unwrap_err();
        let Refusal::NoRuleMatches { mismatches, .. } = r else {
            panic!("expected NoRuleMatches, got {r:?}")
        };
        assert!(mismatches.contains(&ClaimMismatch::Missing {
            rule: "apply-prod-network".into(),
            claim: "environment".into()
        }));
        // Another repository of the same org, same environment name.
        let other = claims(
            "repo:acme/other:environment:prod",
            &[("repository", "acme/other"), ("environment", "prod")],
        );
        assert!(matches!(
            policy().authorize(&other, Action::ReadState, &unit("prod/eu-west-1/network")),
            Err(Refusal::NoRuleMatches { .. })
        ));
    }

    #[test]
    fn a_rule_must_constrain_sub_or_repository() {
        for when in [
            json!({ "environment": "prod" }),
            json!({ "sub": "*", "environment": "prod" }),
            json!({ "repository": "**" }),
        ] {
            let e = TrustPolicy::from_json(&json!({
                "issuers": [{ "issuer": GH, "audience": "sluice" }],
                "rules": [{ "name": "r", "when": when, "grant": { "state": { "read": "**" } } }]
            }))
            .unwrap_err();
            assert_eq!(e.path, "trust.rules[0].when", "{when}");
        }
    }

    #[test]
    fn plan_identity_cannot_apply_or_write() {
        let c = claims(
            "repo:acme/infra-live:pull_request",
            &[
                ("repository", "acme/infra-live"),
                (
                    "job_workflow_ref",
                    "acme/infra-live/.github/workflows/plan.yml@refs/pull/7/merge",
                ),
            ],
        );
        let u = unit("prod/eu-west-1/rds-payments");
        let g = policy()
            .authorize(&c, Action::Run(Stage::Plan), &u)
            .unwrap();
        assert_eq!(g.rule, "plan-prod");
        assert!(
            g.cloud_role
                .unwrap()
                .aws
                .unwrap()
                .role_arn
                .ends_with("iac-plan")
        );
        assert!(policy().authorize(&c, Action::ReadState, &u).is_ok());
        assert!(matches!(
            policy().authorize(&c, Action::Run(Stage::Apply), &u),
            Err(Refusal::NotGranted { gaps, .. }) if gaps == vec![GrantGap::StageNotGranted { rule: "plan-prod".into(), stage: Stage::Apply }]
        ));
        assert!(policy().authorize(&c, Action::WriteState, &u).is_err());
    }

    #[test]
    fn plan_identities_are_read_only_in_config() {
        let e = TrustPolicy::from_json(&json!({
            "issuers": [{ "issuer": GH, "audience": "sluice" }],
            "rules": [{ "name": "p", "when": { "sub": "repo:a/b:*" },
                        "grant": { "stages": ["plan"], "state": { "write": "dev/**" } } }]
        }))
        .unwrap_err();
        assert_eq!(e.path, "trust.rules[0].grant.state.write");
        assert!(e.message.contains("read-only"));
    }

    #[test]
    fn apply_identities_name_one_environment() {
        for when in [
            json!({ "sub": "repo:a/b:*" }),
            json!({ "sub": "repo:a/b:*", "environment": "prod*" }),
        ] {
            let e = TrustPolicy::from_json(&json!({
                "issuers": [{ "issuer": GH, "audience": "sluice" }],
                "rules": [{ "name": "a", "when": when,
                            "grant": { "stages": ["apply"], "state": { "write": "prod/**" } } }]
            }))
            .unwrap_err();
            assert_eq!(e.path, "trust.rules[0].when.environment");
        }
    }

    #[test]
    fn apply_is_refused_outside_the_tokens_environment() {
        // A rule whose globs are wider than its environment still cannot cross it.
        let p = TrustPolicy::from_json(&json!({
            "issuers": [{ "issuer": GH, "audience": "sluice" }],
            "rules": [{ "name": "wide", "when": { "sub": "repo:acme/infra-live:*", "environment": "dev" },
                        "grant": { "stages": ["apply"], "state": { "write": "**" } } }]
        }))
        .unwrap();
        let c = claims(
            "repo:acme/infra-live:environment:dev",
            &[("environment", "dev")],
        );
        assert!(
            p.authorize(&c, Action::Run(Stage::Apply), &unit("dev/x/net"))
                .is_ok()
        );
        let r = p
            .authorize(&c, Action::WriteState, &unit("prod/x/net"))
            .unwrap_err();
        assert!(matches!(r, Refusal::NotGranted { gaps, .. }
            if gaps == vec![GrantGap::OtherEnvironment { rule: "wide".into(), token_env: Some("dev".into()) }]));
        // Reading is not environment-bound.
        assert!(
            p.authorize(&c, Action::ReadState, &unit("prod/x/net"))
                .is_ok()
        );
    }

    #[test]
    fn unknown_issuer_wrong_audience_and_non_runner_stage_are_refused() {
        let mut c = apply_network_claims();
        c.issuer = "https://gitlab.example.com".into();
        assert!(matches!(
            policy().authorize(&c, Action::ReadState, &unit("prod/a/network")),
            Err(Refusal::UnknownIssuer { .. })
        ));
        let mut c = apply_network_claims();
        c.audience = vec!["https://github.com/acme".into()];
        assert!(matches!(
            policy().authorize(&c, Action::ReadState, &unit("prod/a/network")),
            Err(Refusal::WrongAudience { .. })
        ));
        assert_eq!(
            policy().authorize(
                &apply_network_claims(),
                Action::Run(Stage::Approve),
                &unit("prod/a/network")
            ),
            Err(Refusal::NotARunnerStage {
                stage: Stage::Approve
            })
        );
    }

    #[test]
    fn config_errors_name_their_path() {
        let cases = [
            (json!({ "issuers": [] }), "trust.issuers"),
            (
                json!({ "issuers": [{ "issuer": "http://evil.example", "audience": "s" }] }),
                "trust.issuers[0].issuer",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": [] }] }),
                "trust.issuers[0].audience",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s", "extra": 1 }] }),
                "trust.issuers[0].extra",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*" }, "grant": { "stages": ["deploy"] } }] }),
                "trust.rules[0].grant.stages[0]",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*", "aud": "x" }, "grant": {} }] }),
                "trust.rules[0].when.aud",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*" }, "grant": { "state": { "read": "a/[b" } } }] }),
                "trust.rules[0].grant.state.read",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*" },
                                    "grant": { "roles": [{ "stacks": "**", "aws": { "role_arn": "iac-plan" } }] } }] }),
                "trust.rules[0].grant.roles[0].aws.role_arn",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*" },
                                    "grant": { "roles": [{ "stacks": "**", "azure": { "client_id": "x", "tenant_id": "y" } }] } }] }),
                "trust.rules[0].grant.roles[0].azure.client_id",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*" }, "grant": { "roles": [{ "stacks": "**" }] } }] }),
                "trust.rules[0].grant.roles[0]",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }, { "issuer": "https://gitlab.com", "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*" }, "grant": {} }] }),
                "trust.rules[0].issuer",
            ),
            (
                json!({ "issuers": [{ "issuer": GH, "audience": "s" }],
                        "rules": [{ "name": "r", "when": { "sub": "repo:a/b:*" }, "grant": {} },
                                  { "name": "r", "when": { "sub": "repo:a/c:*" }, "grant": {} }] }),
                "trust.rules[1].name",
            ),
        ];
        for (value, path) in cases {
            let e = TrustPolicy::from_json(&value).unwrap_err();
            assert_eq!(e.path, path, "{value}: {e}");
        }
    }

    #[test]
    fn loopback_http_issuers_are_allowed_for_local_issuers() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "https://a.example",
        ] {
            assert!(check_issuer_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1.evil.example",
            "https://",
            "ftp://x",
            "http://a",
        ] {
            assert!(check_issuer_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_cloud_role_parses() {
        let p = TrustPolicy::from_json(&json!({
            "issuers": [{ "issuer": GH, "audience": ["sluice", "sts.amazonaws.com"] }],
            "rules": [{ "name": "r", "when": { "repository": "acme/infra-live" },
                        "grant": { "stages": ["plan"], "state": { "read": "**" }, "roles": [{ "stacks": "**",
                          "gcp": { "workload_identity_provider": "projects/1/locations/global/workloadIdentityPools/p/providers/gh",
                                   "service_account": "iac-plan@proj.iam.gserviceaccount.com" },
                          "azure": { "client_id": "00000000-0000-0000-0000-000000000001",
                                     "tenant_id": "00000000-0000-0000-0000-000000000002" } }] } }]
        }))
        .unwrap();
        let c = claims(
            "repo:acme/infra-live:pull_request",
            &[("repository", "acme/infra-live")],
        );
        let role = p
            .authorize(&c, Action::Run(Stage::Plan), &unit("dev/a/b"))
            .unwrap()
            .cloud_role
            .unwrap();
        assert!(role.aws.is_none());
        assert_eq!(
            role.gcp.unwrap().service_account,
            "iac-plan@proj.iam.gserviceaccount.com"
        );
        assert_eq!(role.azure.unwrap().subscription_id, None);
    }

    proptest! {
        /// Whatever the claims, a grant is only ever for a unit the granting rule covers, and
        /// writes only in the token's environment.
        #[test]
        fn grants_stay_inside_their_rule(
            env in prop::sample::select(vec!["dev", "prod", "stage"]),
            region in "[a-z]{2}-[a-z]{4}-[1-3]",
            stack in prop::sample::select(vec!["network", "rds-payments", "cluster"]),
            token_env in prop::option::of(prop::sample::select(vec!["dev", "prod"])),
            sub_env in prop::sample::select(vec!["dev", "prod", "stage"]),
            action in prop::sample::select(vec![Action::ReadState, Action::WriteState, Action::Run(Stage::Plan), Action::Run(Stage::Apply)]),
        ) {
            let mut other = vec![("repository", "acme/infra-live"), ("ref", "refs/heads/main"),
                ("job_workflow_ref", "acme/infra-live/.github/workflows/apply-network.yml@refs/heads/main")];
            if let Some(e) = token_env { other.push(("environment", e)); }
            let sub = format!("repo:acme/infra-live:environment:{sub_env}");
            let c = claims(&sub, &other);
            let u = Unit { id: format!("{env}/{region}/{stack}"), env: env.to_string() };
            if let Ok(g) = policy().authorize(&c, action, &u) {
                let writes = matches!(action, Action::WriteState | Action::Run(Stage::Apply));
                if writes {
                    prop_assert_eq!(token_env, Some(env));
                }
                if g.rule == "apply-prod-network" {
                    prop_assert_eq!(stack, "network");
                    prop_assert_eq!(env, "prod");
                }
                if g.rule == "apply-dev" {
                    prop_assert_eq!(env, "dev");
                }
            }
        }
    }
}
