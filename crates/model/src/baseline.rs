//! Judging the change, not the repository: findings computed at the merge base and at the
//! head are matched and each head finding is classified `new` or `pre-existing`; base findings
//! the head no longer has are `fixed`. By default only new findings block, so a replica bump
//! is not denied for a limit that was missing long before it.
//!
//! Findings are matched by a [`FindingKey`]: the rule plus what the finding is about, never a
//! line number alone (a line inserted above a finding moves it without changing it). Callers
//! build the subject from what identifies the finding where they found it: the object
//! (`Kind/namespace/name`) and field path for manifests, the file and a fingerprint of the
//! offending content for file checks. Keys form a multiset: two identical findings at the base
//! and three at the head make one new finding. A finding on content the change touched is new
//! even when an identical one existed: the author wrote that line.
//!
//! What a pre-existing finding does is the org's choice ([`PreexistingPolicy`], from
//! `policy.preexisting` in `sluice.yaml`): `warn` (the default: counted and shown collapsed),
//! `block` (as a new one would) or `ignore` (counted only), per rule or environment.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// How a finding relates to the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The change introduced it (absent at the merge base, or on content the change touched).
    New,
    /// Present at the merge base and untouched by the change.
    PreExisting,
    /// Present at the merge base and gone at the head.
    Fixed,
}

impl Baseline {
    pub fn as_str(self) -> &'static str {
        match self {
            Baseline::New => "new",
            Baseline::PreExisting => "pre-existing",
            Baseline::Fixed => "fixed",
        }
    }
}

/// What identifies a finding across revisions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingKey {
    pub rule: String,
    /// The resource identity and field path, or the file and a content fingerprint.
    pub subject: String,
}

impl FindingKey {
    pub fn new(rule: impl Into<String>, subject: impl Into<String>) -> Self {
        FindingKey {
            rule: rule.into(),
            subject: subject.into(),
        }
    }
}

/// One head finding to classify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadFinding {
    pub key: FindingKey,
    /// The change touched the content the finding is about.
    pub touched: bool,
}

/// The classification of a change's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// One class per head finding, in the order given: `New` or `PreExisting`.
    pub head: Vec<Baseline>,
    /// Indexes of the base findings the head no longer has.
    pub fixed: Vec<usize>,
}

/// Match `head` findings against `base` findings (multiset by key, in order) and classify.
/// A touched head finding is new; it still consumes a matching base finding, so that finding
/// is not credited as fixed (it was rewritten, not removed).
pub fn classify(base: &[FindingKey], head: &[HeadFinding]) -> Classified {
    let mut available: HashMap<&FindingKey, Vec<usize>> = HashMap::new();
    for (i, k) in base.iter().enumerate().rev() {
        available.entry(k).or_default().push(i);
    }
    let mut consumed = vec![false; base.len()];
    let head = head
        .iter()
        .map(|h| {
            let matched = available.get_mut(&h.key).and_then(Vec::pop);
            if let Some(i) = matched {
                consumed[i] = true;
            }
            match (matched, h.touched) {
                (Some(_), false) => Baseline::PreExisting,
                _ => Baseline::New,
            }
        })
        .collect();
    let fixed = consumed
        .iter()
        .enumerate()
        .filter(|(_, c)| !**c)
        .map(|(i, _)| i)
        .collect();
    Classified { head, fixed }
}

/// A short, stable fingerprint of some content (a line of a file, a matched secret): the first
/// 16 hex digits of its FNV-1a hash, white space at either end ignored. Not a security hash:
/// it only has to tell findings apart within one change.
pub fn content_fingerprint(content: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in content.trim().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What a pre-existing finding does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    /// Blocks like a new finding.
    Block,
    /// Counted and shown collapsed; does not block.
    Warn,
    /// Counted only.
    Ignore,
}

impl Treatment {
    fn parse(s: &str) -> Option<Treatment> {
        match s {
            "block" => Some(Treatment::Block),
            "warn" => Some(Treatment::Warn),
            "ignore" => Some(Treatment::Ignore),
            _ => None,
        }
    }
}

/// `policy.preexisting`: a treatment for every pre-existing finding, or a mapping
/// `{ default, envs: { ENV: T }, rules: { RULE: T } }`. A rule entry ending in `*` matches
/// rule ids by prefix (`secret/*`). The most specific wins: rule, then environment, then
/// default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreexistingPolicy {
    pub default: Treatment,
    pub envs: BTreeMap<String, Treatment>,
    pub rules: BTreeMap<String, Treatment>,
}

impl Default for PreexistingPolicy {
    fn default() -> Self {
        PreexistingPolicy {
            default: Treatment::Warn,
            envs: BTreeMap::new(),
            rules: BTreeMap::new(),
        }
    }
}

/// A problem in `policy.preexisting`: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PreexistingError {
    pub field: String,
    pub message: String,
}

impl PreexistingPolicy {
    /// From the `policy` section as JSON (`None`: not configured).
    pub fn from_policy_section(
        policy: Option<&serde_json::Value>,
    ) -> Result<PreexistingPolicy, PreexistingError> {
        match policy.and_then(|p| p.get("preexisting")) {
            None => Ok(PreexistingPolicy::default()),
            Some(v) => Self::from_json(v),
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Result<PreexistingPolicy, PreexistingError> {
        const FIELD: &str = "policy.preexisting";
        let treatment = |v: &serde_json::Value, field: &str| {
            v.as_str()
                .and_then(Treatment::parse)
                .ok_or_else(|| PreexistingError {
                    field: field.to_string(),
                    message: "expected `block`, `warn` or `ignore`".into(),
                })
        };
        if let Some(_s) = v.as_str() {
            return Ok(PreexistingPolicy {
                default: treatment(v, FIELD)?,
                ..Default::default()
            });
        }
        let Some(map) = v.as_object() else {
            return Err(PreexistingError {
                field: FIELD.into(),
                message: "expected `block`, `warn`, `ignore` or a mapping with `default`, \
                          `envs`, `rules`"
                    .into(),
            });
        };
        let mut out = PreexistingPolicy::default();
        for (k, v) in map {
            match k.as_str() {
                "default" => out.default = treatment(v, &format!("{FIELD}.default"))?,
                "envs" | "rules" => {
                    let field = format!("{FIELD}.{k}");
                    let entries = v.as_object().ok_or_else(|| PreexistingError {
                        field: field.clone(),
                        message: "expected a mapping of names to `block`, `warn` or `ignore`"
                            .into(),
                    })?;
                    for (name, t) in entries {
                        let t = treatment(t, &format!("{field}.{name}"))?;
                        if k == "envs" {
                            out.envs.insert(name.clone(), t);
                        } else {
                            out.rules.insert(name.clone(), t);
                        }
                    }
                }
                other => {
                    return Err(PreexistingError {
                        field: format!("{FIELD}.{other}"),
                        message: "unknown field (known: default, envs, rules)".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The treatment of a pre-existing finding of `rule` in environment `env`.
    pub fn treatment(&self, rule: &str, env: Option<&str>) -> Treatment {
        let by_rule = self.rules.get(rule).copied().or_else(|| {
            self.rules
                .iter()
                .filter_map(|(pattern, t)| {
                    let prefix = pattern.strip_suffix('*')?;
                    rule.starts_with(prefix).then_some((prefix.len(), *t))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, t)| t)
        });
        by_rule
            .or_else(|| env.and_then(|e| self.envs.get(e).copied()))
            .unwrap_or(self.default)
    }

    /// Whether a blocking finding of this class blocks the change.
    pub fn blocks(&self, class: Baseline, rule: &str, env: Option<&str>) -> bool {
        match class {
            Baseline::New => true,
            Baseline::PreExisting => self.treatment(rule, env) == Treatment::Block,
            Baseline::Fixed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn k(rule: &str, subject: &str) -> FindingKey {
        FindingKey::new(rule, subject)
    }

    fn h(rule: &str, subject: &str, touched: bool) -> HeadFinding {
        HeadFinding {
            key: k(rule, subject),
            touched,
        }
    }

    #[test]
    fn old_problems_are_pre_existing_new_ones_new_and_removed_ones_fixed() {
        let base = [
            k("limits", "Deployment/dev/web"),
            k("hostpath", "Pod/dev/a"),
            k("hostpath", "Pod/dev/b"),
        ];
        let head = [
            h("limits", "Deployment/dev/web", false),
            h("hostpath", "Pod/dev/a", false),
            h("latest-tag", "Deployment/dev/web", false),
        ];
        let c = classify(&base, &head);
        assert_eq!(
            c.head,
            [Baseline::PreExisting, Baseline::PreExisting, Baseline::New]
        );
        assert_eq!(c.fixed, [2]);
    }

    #[test]
    fn touched_findings_are_new_and_not_credited_as_fixed() {
        let base = [k("secret/aws", "a.env#f1")];
        let c = classify(&base, &[h("secret/aws", "a.env#f1", true)]);
        assert_eq!(c.head, [Baseline::New]);
        assert!(c.fixed.is_empty());
    }

    #[test]
    fn duplicates_are_matched_one_for_one() {
        let base = [k("r", "x"), k("r", "x")];
        let head = [h("r", "x", false), h("r", "x", false), h("r", "x", false)];
        let c = classify(&base, &head);
        assert_eq!(
            c.head,
            [Baseline::PreExisting, Baseline::PreExisting, Baseline::New]
        );
    }

    #[test]
    fn preexisting_policy_parses_and_picks_the_most_specific() {
        let p = PreexistingPolicy::from_json(&json!("block")).unwrap();
        assert_eq!(p.treatment("any", None), Treatment::Block);
        let p = PreexistingPolicy::from_json(&json!({
            "default": "ignore",
            "envs": {"prod": "block"},
            "rules": {"secret/*": "block", "secret/generic": "warn", "k8s/*": "warn"}
        }))
        .unwrap();
        assert_eq!(p.treatment("k8s/x", Some("dev")), Treatment::Warn);
        assert_eq!(p.treatment("secret/aws", Some("dev")), Treatment::Block);
        assert_eq!(p.treatment("secret/generic", Some("prod")), Treatment::Warn);
        assert_eq!(p.treatment("iac/x", Some("prod")), Treatment::Block);
        assert_eq!(p.treatment("iac/x", Some("dev")), Treatment::Ignore);
        assert!(p.blocks(Baseline::New, "iac/x", Some("dev")));
        assert!(!p.blocks(Baseline::PreExisting, "iac/x", Some("dev")));
        assert!(!p.blocks(Baseline::Fixed, "iac/x", Some("prod")));
        assert_eq!(
            PreexistingPolicy::from_json(&json!({"envs": {"prod": "deny"}}))
                .unwrap_err()
                .field,
            "policy.preexisting.envs.prod"
        );
        assert!(PreexistingPolicy::from_json(&json!({"defualt": "warn"})).is_err());
        assert_eq!(
            PreexistingPolicy::from_policy_section(Some(&json!({"builtin": {}}))).unwrap(),
            PreexistingPolicy::default()
        );
    }

    #[test]
    fn fingerprints_ignore_surrounding_space_only() {
        assert_eq!(
            content_fingerprint("  image: nginx:latest"),
            content_fingerprint("image: nginx:latest  ")
        );
        assert_ne!(
            content_fingerprint("image: nginx:latest"),
            content_fingerprint("image: nginx:1.27")
        );
    }

    fn keys() -> impl Strategy<Value = Vec<FindingKey>> {
        prop::collection::vec(
            (0u8..4, 0u8..4).prop_map(|(r, s)| k(&format!("r{r}"), &format!("s{s}"))),
            0..12,
        )
    }

    proptest! {
        /// Every base finding is either matched by a head finding or fixed, never both; every
        /// head finding gets a class; pre-existing ones never outnumber the base.
        #[test]
        fn classification_accounts_for_every_finding(base in keys(), head in keys(), touch in prop::collection::vec(any::<bool>(), 12)) {
            let head: Vec<HeadFinding> = head.into_iter().zip(touch).map(|(key, touched)| HeadFinding { key, touched }).collect();
            let c = classify(&base, &head);
            prop_assert_eq!(c.head.len(), head.len());
            let pre = c.head.iter().filter(|b| **b == Baseline::PreExisting).count();
            prop_assert!(pre + c.fixed.len() <= base.len());
            for (class, f) in c.head.iter().zip(&head) {
                if f.touched { prop_assert_eq!(*class, Baseline::New); }
                if !base.contains(&f.key) { prop_assert_eq!(*class, Baseline::New); }
            }
            // A fixed base finding has no remaining twin at the head.
            for i in &c.fixed {
                let key = &base[*i];
                let at_base = base.iter().filter(|k| *k == key).count();
                let at_head = head.iter().filter(|h| &h.key == key).count();
                prop_assert!(at_head < at_base);
            }
        }

        /// Nothing changed, nothing touched: everything is pre-existing, nothing fixed.
        #[test]
        fn an_unchanged_repository_has_only_preexisting_findings(base in keys()) {
            let head: Vec<HeadFinding> = base.iter().cloned().map(|key| HeadFinding { key, touched: false }).collect();
            let c = classify(&base, &head);
            prop_assert!(c.head.iter().all(|b| *b == Baseline::PreExisting));
            prop_assert!(c.fixed.is_empty());
        }

        /// The counts do not depend on the order findings were reported in.
        #[test]
        fn counts_do_not_depend_on_order(base in keys(), head in keys()) {
            let hf = |v: &[FindingKey]| v.iter().cloned().map(|key| HeadFinding { key, touched: false }).collect::<Vec<_>>();
            let a = classify(&base, &hf(&head));
            let mut rb = base.clone(); rb.reverse();
            let mut rh = head.clone(); rh.reverse();
            let b = classify(&rb, &hf(&rh));
            let count = |c: &Classified| (c.head.iter().filter(|x| **x == Baseline::New).count(), c.fixed.len());
            prop_assert_eq!(count(&a), count(&b));
        }
    }
}
