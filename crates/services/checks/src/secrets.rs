//! Secret scanning with rules in the gitleaks rule-file format.
//!
//! Platform teams already maintain gitleaks configurations, so sluice reads that format rather
//! than inventing one: `[[rules]]` with `regex`, `secretGroup`, `entropy`, `keywords`, `path`,
//! per-rule allowlists (`[rules.allowlist]` and `[[rules.allowlists]]`) and global allowlists
//! (`[allowlist]` and `[[allowlists]]`, with `targetRules`). Matching follows gitleaks'
//! detector: a keyword prefilter picks the rules worth running on a file, the secret is the
//! chosen capture group, low-entropy secrets are dropped, allowlists are checked against the
//! secret, the match or the line, and a `generic*` rule yields to a specific rule that found
//! the same secret on the same line. Not supported: `[extend]` (use sluice's
//! `validate.default_secret_rules` instead), commit allowlists (sluice scans a revision's
//! files, not commits), composite rules and decoding of base64/hex payloads.
//!
//! Rule files come from users, so a rule that cannot be used (a Go-only regex construct, a
//! missing id) is a warning naming the rule and is skipped; only a TOML syntax error fails the
//! load.
//!
//! The secret itself never leaves [`SecretRules::scan`]: a [`SecretMatch`] carries the rule, the
//! position and a fingerprint (a truncated SHA-256 over the rule id and the secret) that lets a
//! secret be tracked across runs without being printed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// sluice's default rules (our own, gitleaks format).
const BUILTIN_TOML: &str = include_str!("../rules/secrets.toml");
const BUILTIN_ORIGIN: &str = "sluice:rules/secrets.toml";

/// gitleaks' rules are written for Go's RE2, whose `\w`, `\s`, `\d` and `\b` are ASCII; an
/// ASCII-mode Rust regex matches the same text and keeps the automata small. The limit only
/// guards against pathological user rules.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

/// A secret found in a file. It deliberately has no field for the secret or the matched text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SecretMatch {
    pub rule: String,
    pub description: String,
    /// 1-based line of the secret's first character.
    pub line: u32,
    /// 1-based column (in characters) of the secret's first character.
    pub col: u32,
    /// First 12 hex characters of SHA-256 over `rule_id + "\0" + secret`.
    pub fingerprint: String,
}

/// A rule file that is not valid TOML (or not the gitleaks shape at the top level).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{col}: {message}")]
pub struct RulesError {
    pub origin: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// A compiled set of secret rules.
#[derive(Clone)]
pub struct SecretRules {
    origin: String,
    rules: Vec<Rule>,
    /// Global allowlists that apply to every rule (targeted ones are attached to their rules).
    global: Vec<Allowlist>,
    prefilter: Prefilter,
}

#[derive(Clone)]
struct Rule {
    id: String,
    description: String,
    regex: Option<Regex>,
    /// 0: the first non-empty capture group, else the whole match (gitleaks' default).
    secret_group: usize,
    entropy: Option<f64>,
    /// Lower-cased.
    keywords: Vec<String>,
    path: Option<Regex>,
    allowlists: Vec<Allowlist>,
    /// Rule ids containing "generic" give way to specific rules that found the same secret.
    generic: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Secret,
    Match,
    Line,
}

#[derive(Clone)]
struct Allowlist {
    /// `condition = "AND"`: every populated check must hold; otherwise any one suffices.
    and: bool,
    target: Target,
    regexes: Vec<Regex>,
    paths: Vec<Regex>,
    stopwords: Option<AhoCorasick>,
    /// Commits cannot be evaluated against a tree; a commit check counts as "not allowed".
    has_commits: bool,
    target_rules: Vec<String>,
}

/// Keyword prefilter: one Aho-Corasick automaton over every rule's keywords.
#[derive(Clone, Default)]
struct Prefilter {
    automaton: Option<AhoCorasick>,
    rules_by_keyword: Vec<Vec<usize>>,
    /// Rules without keywords run on every file.
    always: Vec<usize>,
}

impl fmt::Debug for SecretRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRules")
            .field("origin", &self.origin)
            .field("rules", &self.rules.len())
            .field("global_allowlists", &self.global.len())
            .finish()
    }
}

impl SecretRules {
    /// Load a gitleaks-format rule file. Unusable rules and allowlists are skipped with a
    /// warning (naming `origin`, the line and the rule id); only invalid TOML is an error.
    pub fn from_toml(src: &str, origin: &str) -> Result<(SecretRules, Vec<String>), RulesError> {
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |s| line_col(src, s.start));
            RulesError {
                origin: origin.to_string(),
                line,
                col,
                message: e.message().trim().to_string(),
            }
        })?;
        let mut warnings = Vec::new();
        let warn_at = |warnings: &mut Vec<String>, offset: usize, msg: String| {
            let (line, _) = line_col(src, offset);
            warnings.push(format!("{origin}:{line}: {msg}"));
        };

        for key in raw.other.keys() {
            warnings.push(format!("{origin}: unknown top-level key `{key}` ignored"));
        }
        if raw.extend.is_some() {
            warnings.push(format!(
                "{origin}: [extend] is not supported and was ignored; set validate.default_secret_rules to keep sluice's own rules"
            ));
        }

        let mut global = Vec::new();
        let raw_globals = raw
            .allowlist
            .into_iter()
            .chain(raw.allowlists)
            .map(|a| (a, "global allowlist".to_string()));
        for (a, what) in raw_globals {
            let (start, a) = (a.span().start, a.into_inner());
            match compile_allowlist(a, &what) {
                Ok(a) => global.push(a),
                Err(msg) => warn_at(&mut warnings, start, msg),
            }
        }

        let mut rules: Vec<Rule> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for (n, spanned) in raw.rules.into_iter().enumerate() {
            let start = spanned.span().start;
            let raw_rule: RawRule = match toml::Value::Table(spanned.into_inner()).try_into() {
                Ok(r) => r,
                Err(e) => {
                    warn_at(
                        &mut warnings,
                        start,
                        format!("rule #{} skipped: {}", n + 1, e.message().trim()),
                    );
                    continue;
                }
            };
            let id = raw_rule.id.clone().unwrap_or_default();
            match compile_rule(raw_rule, &mut |msg| warn_at(&mut warnings, start, msg)) {
                Ok(rule) => {
                    if let Some(&i) = index_of.get(&rule.id) {
                        warn_at(
                            &mut warnings,
                            start,
                            format!(
                                "rule `{id}` is defined more than once; the last definition wins"
                            ),
                        );
                        rules[i] = rule;
                    } else {
                        index_of.insert(rule.id.clone(), rules.len());
                        rules.push(rule);
                    }
                }
                Err(msg) => {
                    let name = if id.is_empty() {
                        format!("rule #{}", n + 1)
                    } else {
                        format!("rule `{id}`")
                    };
                    warn_at(&mut warnings, start, format!("{name} skipped: {msg}"));
                }
            }
        }

        // gitleaks applies a global allowlist with `targetRules` only to those rules.
        let (targeted, untargeted): (Vec<_>, Vec<_>) =
            global.into_iter().partition(|a| !a.target_rules.is_empty());
        for a in targeted {
            for id in &a.target_rules {
                match index_of.get(id) {
                    Some(&i) => rules[i].allowlists.push(a.clone()),
                    None => warnings.push(format!(
                        "{origin}: global allowlist targets unknown rule `{id}`"
                    )),
                }
            }
        }

        let mut set = SecretRules {
            origin: origin.to_string(),
            rules,
            global: untargeted,
            prefilter: Prefilter::default(),
        };
        set.build_prefilter();
        Ok((set, warnings))
    }

    /// sluice's own default rules (`rules/secrets.toml`).
    pub fn builtin() -> SecretRules {
        static BUILTIN: OnceLock<SecretRules> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                let (rules, warnings) = SecretRules::from_toml(BUILTIN_TOML, BUILTIN_ORIGIN)
                    .expect("the built-in secret rules are valid TOML");
                debug_assert!(warnings.is_empty(), "built-in rule warnings: {warnings:?}");
                rules
            })
            .clone()
    }

    /// No rules at all (for orgs that disable scanning).
    pub fn empty() -> SecretRules {
        SecretRules {
            origin: String::new(),
            rules: Vec::new(),
            global: Vec::new(),
            prefilter: Prefilter::default(),
        }
    }

    /// Combine two rule sets: a rule of `other` replaces a rule of `self` with the same id, and
    /// the global allowlists of both apply to all rules (as one gitleaks file with both).
    pub fn merge(mut self, other: SecretRules) -> SecretRules {
        for rule in other.rules {
            match self.rules.iter_mut().find(|r| r.id == rule.id) {
                Some(existing) => *existing = rule,
                None => self.rules.push(rule),
            }
        }
        self.global.extend(other.global);
        if !other.origin.is_empty() {
            self.origin = if self.origin.is_empty() {
                other.origin
            } else {
                format!("{}+{}", self.origin, other.origin)
            };
        }
        self.build_prefilter();
        self
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    pub fn description(&self, rule_id: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.id == rule_id)
            .map(|r| r.description.as_str())
    }

    fn build_prefilter(&mut self) {
        let mut keywords: Vec<String> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut rules_by_keyword: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (r, rule) in self.rules.iter().enumerate() {
            let usable: Vec<&String> = rule.keywords.iter().filter(|k| !k.is_empty()).collect();
            if usable.is_empty() {
                always.push(r);
                continue;
            }
            for k in usable {
                let i = *index.entry(k.clone()).or_insert_with(|| {
                    keywords.push(k.clone());
                    rules_by_keyword.push(Vec::new());
                    keywords.len() - 1
                });
                rules_by_keyword[i].push(r);
            }
        }
        // Keywords are lower-cased at load; matching ASCII-case-insensitively equals gitleaks'
        // search in the lower-cased file for ASCII keywords without copying every file.
        let automaton = if keywords.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&keywords)
                .ok()
        };
        if automaton.is_none() {
            // Without an automaton every rule must run, or keyword rules would never fire.
            always = (0..self.rules.len()).collect();
        }
        self.prefilter = Prefilter {
            automaton,
            rules_by_keyword,
            always,
        };
    }

    /// Scan one file. `path` is the repository-relative path (rules and allowlists may match
    /// on it); `text` is the file's content.
    pub fn scan(&self, path: &str, text: &str) -> Vec<SecretMatch> {
        let hay = text.as_bytes();
        if self.global.iter().any(|a| a.allows_path(path)) {
            return Vec::new();
        }

        let mut active = vec![false; self.rules.len()];
        for &r in &self.prefilter.always {
            active[r] = true;
        }
        if let Some(ac) = &self.prefilter.automaton {
            let mut seen = vec![false; self.prefilter.rules_by_keyword.len()];
            for m in ac.find_overlapping_iter(hay) {
                let k = m.pattern().as_usize();
                if !std::mem::replace(&mut seen[k], true) {
                    for &r in &self.prefilter.rules_by_keyword[k] {
                        active[r] = true;
                    }
                }
            }
        }

        let lines = LineIndex::new(text);
        let mut found: Vec<RawMatch> = Vec::new();
        for (r, rule) in self.rules.iter().enumerate() {
            if active[r] {
                rule.detect(r, path, hay, &self.global, &mut found);
            }
        }
        drop_generic_duplicates(&mut found, &self.rules, hay, &lines);

        let mut out: Vec<SecretMatch> = found
            .into_iter()
            .map(|m| {
                let rule = &self.rules[m.rule];
                let (secret, (line, col)) = match &m.secret {
                    SecretSpan::Text(range) => (&hay[range.clone()], lines.locate(range.start)),
                    SecretSpan::Path => (path.as_bytes(), (1, 1)),
                };
                SecretMatch {
                    rule: rule.id.clone(),
                    description: rule.description.clone(),
                    line,
                    col,
                    fingerprint: fingerprint(&rule.id, secret),
                }
            })
            .collect();
        out.sort_by(|a, b| (a.line, a.col, &a.rule).cmp(&(b.line, b.col, &b.rule)));
        out.dedup();
        out
    }
}

/// A match inside `scan`; it points into the file and is dropped before `scan` returns.
struct RawMatch {
    rule: usize,
    secret: SecretSpan,
}

enum SecretSpan {
    Text(Range<usize>),
    /// A path-only rule: the "secret" is the file path.
    Path,
}

impl Rule {
    fn detect(
        &self,
        index: usize,
        path: &str,
        hay: &[u8],
        global: &[Allowlist],
        out: &mut Vec<RawMatch>,
    ) {
        if self.allowlists.iter().any(|a| a.allows_path(path)) {
            return;
        }
        if let Some(p) = &self.path {
            if !p.is_match(path.as_bytes()) {
                return;
            }
            if self.regex.is_none() {
                out.push(RawMatch {
                    rule: index,
                    secret: SecretSpan::Path,
                });
                return;
            }
        }
        let Some(regex) = &self.regex else { return };
        for caps in regex.captures_iter(hay) {
            let whole = caps.get(0).expect("group 0 always participates");
            let matched = trim_newlines(hay, whole.range());
            let secret = if caps.len() >= 2 {
                if self.secret_group > 0 {
                    caps.get(self.secret_group).map(|g| g.range())
                } else {
                    (1..caps.len())
                        .filter_map(|i| caps.get(i))
                        .find(|g| !g.is_empty())
                        .map(|g| g.range())
                        .or(Some(matched.clone()))
                }
            } else {
                Some(matched.clone())
            };
            // A rule whose secret group did not take part found nothing worth reporting.
            let Some(secret) = secret.filter(|s| !s.is_empty()) else {
                continue;
            };
            if let Some(threshold) = self.entropy
                && threshold != 0.0
                && shannon_entropy(&hay[secret.clone()]) <= threshold
            {
                continue;
            }
            let candidate = Candidate {
                path,
                secret: &hay[secret.clone()],
                matched: &hay[matched.clone()],
                line: &hay[line_bounds(hay, matched.clone())],
            };
            if global
                .iter()
                .chain(&self.allowlists)
                .any(|a| a.allows(&candidate))
            {
                continue;
            }
            out.push(RawMatch {
                rule: index,
                secret: SecretSpan::Text(secret),
            });
        }
    }
}

struct Candidate<'a> {
    path: &'a str,
    secret: &'a [u8],
    matched: &'a [u8],
    line: &'a [u8],
}

impl Allowlist {
    /// Whether the whole file is allowed (gitleaks' commit-or-path check).
    fn allows_path(&self, path: &str) -> bool {
        let path_ok = self.paths.iter().any(|r| r.is_match(path.as_bytes()));
        if !self.and {
            return path_ok;
        }
        // An AND allowlist with content checks is decided per finding.
        if !self.regexes.is_empty() || self.stopwords.is_some() {
            return false;
        }
        let mut checks = Vec::new();
        if self.has_commits {
            checks.push(false);
        }
        if !self.paths.is_empty() {
            checks.push(path_ok);
        }
        !checks.is_empty() && checks.iter().all(|&c| c)
    }

    /// Whether one finding is allowed.
    fn allows(&self, c: &Candidate<'_>) -> bool {
        let target = match self.target {
            Target::Secret => c.secret,
            Target::Match => c.matched,
            Target::Line => c.line,
        };
        let regex_ok = self.regexes.iter().any(|r| r.is_match(target));
        let stopword_ok = self
            .stopwords
            .as_ref()
            .is_some_and(|ac| ac.is_match(&c.secret.to_ascii_lowercase()));
        if !self.and {
            return regex_ok || stopword_ok;
        }
        let mut checks = Vec::new();
        if self.has_commits {
            checks.push(false);
        }
        if !self.paths.is_empty() {
            checks.push(self.paths.iter().any(|r| r.is_match(c.path.as_bytes())));
        }
        if !self.regexes.is_empty() {
            checks.push(regex_ok);
        }
        if self.stopwords.is_some() {
            checks.push(stopword_ok);
        }
        !checks.is_empty() && checks.iter().all(|&c| c)
    }
}

/// gitleaks' `filter`: a generic rule's finding is dropped when a specific rule found a secret
/// containing it on the same line.
fn drop_generic_duplicates(
    found: &mut Vec<RawMatch>,
    rules: &[Rule],
    hay: &[u8],
    lines: &LineIndex,
) {
    let text_of = |m: &RawMatch| match &m.secret {
        SecretSpan::Text(r) => Some((&hay[r.clone()], lines.locate(r.start).0)),
        SecretSpan::Path => None,
    };
    let keep: Vec<bool> = found
        .iter()
        .map(|m| {
            if !rules[m.rule].generic {
                return true;
            }
            let Some((secret, line)) = text_of(m) else {
                return true;
            };
            !found.iter().any(|other| {
                other.rule != m.rule
                    && !rules[other.rule].generic
                    && text_of(other).is_some_and(|(s, l)| l == line && contains(s, secret))
            })
        })
        .collect();
    let mut keep = keep.into_iter();
    found.retain(|_| keep.next().unwrap_or(true));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The fingerprint of a secret found by a rule: the first 12 hex characters of
/// SHA-256(`rule_id` NUL `secret`). Stable across runs, useless for recovering the secret.
pub fn fingerprint(rule_id: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0u8]);
    h.update(secret);
    let digest = h.finalize();
    hex::encode(&digest[..6])
}

/// Shannon entropy in bits per character, computed as gitleaks does (characters counted as
/// Unicode scalar values, frequencies relative to the byte length).
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let text = String::from_utf8_lossy(data);
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let inv = 1.0 / text.len() as f64;
    counts
        .values()
        .map(|&n| {
            let p = n as f64 * inv;
            -p * p.log2()
        })
        .sum()
}

fn trim_newlines(hay: &[u8], mut r: Range<usize>) -> Range<usize> {
    while r.start < r.end && hay[r.start] == b'\n' {
        r.start += 1;
    }
    while r.end > r.start && hay[r.end - 1] == b'\n' {
        r.end -= 1;
    }
    r
}

/// The full lines a range lies on (gitleaks' `finding.Line`).
fn line_bounds(hay: &[u8], r: Range<usize>) -> Range<usize> {
    let start = hay[..r.start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let end = hay[r.end..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(hay.len(), |i| r.end + i);
    start..end
}

/// Byte offset → 1-based (line, column in characters), with the newline table built once.
pub(crate) struct LineIndex<'a> {
    text: &'a [u8],
    newlines: OnceLock<Vec<usize>>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        LineIndex {
            text: text.as_bytes(),
            newlines: OnceLock::new(),
        }
    }

    pub(crate) fn locate(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let newlines = self.newlines.get_or_init(|| {
            self.text
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i)
                .collect()
        });
        let line = newlines.partition_point(|&nl| nl < offset);
        let start = if line == 0 { 0 } else { newlines[line - 1] + 1 };
        // Count characters, not bytes: UTF-8 continuation bytes do not start a character.
        let col = self.text[start..offset]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count();
        (line as u32 + 1, col as u32 + 1)
    }
}

fn line_col(src: &str, offset: usize) -> (u32, u32) {
    LineIndex::new(src).locate(offset)
}

// ---------------------------------------------------------------------------------------------
// Loading

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    #[allow(dead_code)]
    title: Option<String>,
    #[serde(default, rename = "minVersion")]
    #[allow(dead_code)]
    min_version: Option<String>,
    #[serde(default)]
    extend: Option<toml::Value>,
    #[serde(default)]
    rules: Vec<toml::Spanned<toml::Table>>,
    #[serde(default)]
    allowlist: Option<toml::Spanned<RawAllowlist>>,
    #[serde(default)]
    allowlists: Vec<toml::Spanned<RawAllowlist>>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawRule {
    id: Option<String>,
    description: Option<String>,
    regex: Option<String>,
    #[serde(rename = "secretGroup")]
    secret_group: Option<i64>,
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    path: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    tags: Vec<String>,
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
    #[serde(rename = "skipReport")]
    skip_report: Option<bool>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawAllowlist {
    #[allow(dead_code)]
    description: Option<String>,
    condition: Option<String>,
    #[serde(rename = "regexTarget")]
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
    #[serde(default, rename = "targetRules")]
    target_rules: Vec<String>,
}

fn compile_rule(raw: RawRule, warn: &mut dyn FnMut(String)) -> Result<Rule, String> {
    let id = raw.id.unwrap_or_default();
    if id.trim().is_empty() {
        return Err("it has no `id`".into());
    }
    if raw.skip_report == Some(true) {
        return Err(
            "`skipReport` rules only feed composite rules, which sluice does not support".into(),
        );
    }
    for key in raw.other.keys() {
        match key.as_str() {
            "required" => warn(format!(
                "rule `{id}`: composite conditions (`required`) are not supported; the rule is checked on its own"
            )),
            _ => warn(format!("rule `{id}`: unknown key `{key}` ignored")),
        }
    }
    if raw.regex.is_none() && raw.path.is_none() {
        return Err("it has neither `regex` nor `path`".into());
    }
    let regex = raw
        .regex
        .as_deref()
        .map(|p| compile_re2(p).map_err(|e| format!("`regex` does not compile: {e}")))
        .transpose()?;
    let path = raw
        .path
        .as_deref()
        .map(|p| compile_re2(p).map_err(|e| format!("`path` does not compile: {e}")))
        .transpose()?;
    let secret_group = match raw.secret_group {
        None | Some(0) => 0,
        Some(g) if g < 0 => return Err(format!("`secretGroup` {g} is negative")),
        Some(g) => {
            let groups = regex.as_ref().map_or(0, |r| r.captures_len() - 1);
            if g as usize > groups {
                return Err(format!(
                    "`secretGroup` {g} exceeds the {groups} capture group(s) of its regex"
                ));
            }
            g as usize
        }
    };
    let mut allowlists = Vec::new();
    for (i, a) in raw.allowlist.into_iter().chain(raw.allowlists).enumerate() {
        match compile_allowlist(a, &format!("rule `{id}` allowlist #{}", i + 1)) {
            Ok(a) => allowlists.push(a),
            Err(msg) => warn(msg),
        }
    }
    Ok(Rule {
        generic: id.to_lowercase().contains("generic"),
        description: raw.description.unwrap_or_else(|| id.clone()),
        keywords: raw.keywords.iter().map(|k| k.to_lowercase()).collect(),
        entropy: raw.entropy,
        regex,
        secret_group,
        path,
        allowlists,
        id,
    })
}

/// An allowlist that cannot be compiled is dropped whole: dropping one of its checks could turn
/// an AND allowlist into a broader one and hide real secrets.
fn compile_allowlist(raw: RawAllowlist, what: &str) -> Result<Allowlist, String> {
    let and = match raw
        .condition
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("OR") | Some("") => false,
        Some("AND") => true,
        Some(other) => {
            return Err(format!(
                "{what} skipped: unknown condition `{other}` (OR or AND)"
            ));
        }
    };
    let target = match raw.regex_target.as_deref() {
        None | Some("") | Some("secret") => Target::Secret,
        Some("match") => Target::Match,
        Some("line") => Target::Line,
        Some(other) => {
            return Err(format!(
                "{what} skipped: unknown regexTarget `{other}` (secret, match or line)"
            ));
        }
    };
    let compile_all = |patterns: &[String], field: &str| -> Result<Vec<Regex>, String> {
        patterns
            .iter()
            .map(|p| {
                compile_re2(p)
                    .map_err(|e| format!("{what} skipped: a `{field}` entry does not compile: {e}"))
            })
            .collect()
    };
    let regexes = compile_all(&raw.regexes, "regexes")?;
    let paths = compile_all(&raw.paths, "paths")?;
    let words: Vec<String> = raw
        .stopwords
        .iter()
        .map(|w| w.to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    let stopwords = if words.is_empty() {
        None
    } else {
        Some(AhoCorasick::new(&words).map_err(|e| format!("{what} skipped: stopwords: {e}"))?)
    };
    if regexes.is_empty() && paths.is_empty() && stopwords.is_none() && raw.commits.is_empty() {
        return Err(format!(
            "{what} skipped: it has no regexes, paths, stopwords or commits"
        ));
    }
    Ok(Allowlist {
        and,
        target,
        regexes,
        paths,
        stopwords,
        has_commits: !raw.commits.is_empty(),
        target_rules: raw.target_rules,
    })
}

/// Compile a Go RE2 pattern: ASCII semantics first (RE2's), Unicode mode when the pattern needs
/// it (`\pL`, non-ASCII classes).
fn compile_re2(pattern: &str) -> Result<Regex, String> {
    let translated = translate_re2(pattern);
    let build = |unicode: bool| {
        RegexBuilder::new(&translated)
            .unicode(unicode)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    build(false)
        .or_else(|_| build(true))
        .map_err(|e| one_line(&e.to_string()))
}

/// regex errors are multi-line (pattern, caret, message); a warning wants the message.
fn one_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("error:")
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| message.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Rewrite the RE2 constructs Rust's regex reads differently: a `{` that does not start a
/// repetition is a literal in RE2 (an error in Rust), and inside a character class `[` is a
/// literal in RE2 (a nested class in Rust) as are `&&` and `~~` (set operators in Rust).
fn translate_re2(pattern: &str) -> String {
    let b = pattern.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                out.push(c);
                if let Some(&n) = b.get(i + 1) {
                    out.push(n);
                    i += 1;
                }
            }
            b'[' if !in_class => {
                in_class = true;
                out.push(c);
                if b.get(i + 1) == Some(&b'^') {
                    out.push(b'^');
                    i += 1;
                }
                // A `]` first in a class is a literal in both; escaping it is unambiguous.
                if b.get(i + 1) == Some(&b']') {
                    out.extend_from_slice(b"\\]");
                    i += 1;
                }
            }
            b'[' => {
                let posix = b[i..]
                    .starts_with(b"[:")
                    .then(|| find(&b[i + 2..], b":]").map(|e| i + 2 + e + 2))
                    .flatten();
                match posix {
                    Some(end) => {
                        out.extend_from_slice(&b[i..end]);
                        i = end;
                        continue;
                    }
                    None => out.extend_from_slice(b"\\["),
                }
            }
            b']' if in_class => {
                in_class = false;
                out.push(c);
            }
            b'&' | b'~' if in_class && b.get(i + 1) == Some(&c) => {
                out.extend_from_slice(&[b'\\', c, b'\\', c]);
                i += 1;
            }
            b'{' if !in_class && !is_repetition(&b[i..]) => out.extend_from_slice(b"\\{"),
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| pattern.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `s`.
fn is_repetition(s: &[u8]) -> bool {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if s.get(i) == Some(&b',') {
        i += 1;
        digits(&mut i);
    }
    s.get(i) == Some(&b'}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AWS_ID: &str = "AKIAQYLPMN5HHHFPZAM2";
    const AWS_SECRET: &str = "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";

    fn rules(src: &str) -> SecretRules {
        let (rules, warnings) = SecretRules::from_toml(src, "test.toml").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        rules
    }

    fn ids(found: &[SecretMatch]) -> Vec<&str> {
        found.iter().map(|m| m.rule.as_str()).collect()
    }

    #[test]
    fn builtin_rules_load_without_warnings() {
        let (r, warnings) = SecretRules::from_toml(BUILTIN_TOML, BUILTIN_ORIGIN).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(r.len() >= 15);
        assert!(r.rule_ids().any(|id| id == "generic-credential"));
    }

    #[test]
    fn builtin_finds_common_credentials() {
        let r = SecretRules::builtin();
        let cases: &[(&str, &str)] = &[
            (
                "aws-access-key-id",
                "access_key = \"AKIAQYLPMN5HHHFPZAM2\"\n",
            ),
            (
                "aws-secret-access-key",
                "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYzXq7Q2pK9m\n",
            ),
            (
                "github-token",
                "token: ghp_R8x2Lq9ZkT4vB7nW1mY6cJ3pD5sF0hG2aE8u\n",
            ),
            (
                "github-fine-grained-pat",
                "t = github_pat_11ABCDEFG0123456789abc_Qw3rTy9UiOp4AsDfGhJkLzXcVbNm1234567890QwErTyUiOpAsDfGhJkLzX\n",
            ),
            ("gitlab-token", "GITLAB=glpat-x8Kq2LmZ9vT4bN7wR1yC\n"),
            (
                "slack-token",
                "SLACK=xoxb-2304958102-4938572019-Fq8LmZ2vT9kN4bW7\n",
            ),
            (
                "slack-webhook",
                "url: https://hooks.slack.com/services/T0ABC1234/B0DEF5678/q8LmZ2vT9kN4bW7xR1yC3pD\n",
            ),
            (
                "stripe-live-key",
                "STRIPE_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc9x\n",
            ),
            (
                "google-api-key",
                "key=AIzaSyD8x2Lq9ZkT4vB7nW1mY6cJ3pD5sF0hG2a\n",
            ),
            (
                "jwt",
                "auth: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n",
            ),
            (
                "database-connection-string",
                "DATABASE_URL=postgres://app:Hx7rTq2Lm@db.internal:5432/app\n",
            ),
            ("generic-credential", "password = \"Zq8vN2pLr7xTe4Kd\"\n"),
            ("generic-credential", "db_password: Zq8#vN2!pLr7@xTe\n"),
            (
                "npm-token",
                "//registry.npmjs.org/:_authToken=npm_Fq8LmZ2vT9kN4bW7xR1yC3pD5sG6hJ0kQ2aE\n",
            ),
        ];
        for (rule, text) in cases {
            let found = r.scan("x.env", text);
            assert!(
                ids(&found).contains(rule),
                "{rule} not found in {text:?}: {found:?}"
            );
        }
        let pem = "key: |\n  -----BEGIN RSA PRIVATE KEY-----\n  MIIEpAIBAAKCAQEA7x2Lq9ZkT4vB7nW1mY6cJ3pD5sF0hG2aE8uR8x2Lq9ZkT4vB\n  -----END RSA PRIVATE KEY-----\n";
        let found = r.scan("k.yaml", pem);
        assert_eq!(ids(&found), vec!["private-key"]);
        assert_eq!((found[0].line, found[0].col), (2, 3));
    }

    #[test]
    fn builtin_stays_quiet_on_references_and_names() {
        let r = SecretRules::builtin();
        let quiet = [
            "password = var.db_password\n",
            "password = random_password.db.result\n",
            "secret_string = jsonencode({ a = 1 })\n",
            "token: ${{ secrets.GITHUB_TOKEN }}\n",
            "password: \"{{ .Values.db.password }}\"\n",
            "secretName: payments-db-credentials-v2\n",
            "existingSecret: db-secret-v2\n",
            "password_length = 32\n",
            "token_url: https://auth.example.com/oauth/token\n",
            "\"Action\": [\"secretsmanager:GetSecretValue\"]\n",
            "Resource: arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf\n",
            "access_key = \"AKIAIOSFODNN7EXAMPLE\"\n",
            "password: ENC[AES256_GCM,data:q8LmZ2vT9kN4,iv:abc,tag:def,type:str]\n",
            "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app\n",
            "client_secret_method: client_secret_basic\n",
            "iam_web_identity_token = \"__FILL_IN_IDENTITY_TOKEN_FILE_PATH__\"\n",
        ];
        for text in quiet {
            let found = r.scan("x.yaml", text);
            assert!(
                found.is_empty(),
                "unexpected finding in {text:?}: {found:?}"
            );
        }
        // Lock files are never scanned.
        assert!(
            r.scan(
                "infra/.terraform.lock.hcl",
                "password = \"Zq8vN2pLr7xTe4Kd\"\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn generic_yields_to_specific_rule_on_same_secret() {
        let r = SecretRules::builtin();
        let found = r.scan("c.yaml", &format!("aws_secret_access_key: {AWS_SECRET}\n"));
        assert_eq!(ids(&found), vec!["aws-secret-access-key"]);
    }

    #[test]
    fn secret_group_entropy_and_position() {
        let r = rules(
            r#"
[[rules]]
id = "kv"
description = "kv"
regex = '''(key)=([a-z0-9]+)'''
secretGroup = 2
entropy = 2.0
keywords = ["KEY="]
"#,
        );
        let found = r.scan("a", "x\n  key=aaaa\n  key=abc123xyz\n");
        assert_eq!(found.len(), 1, "low-entropy value dropped: {found:?}");
        assert_eq!((found[0].line, found[0].col), (3, 7));
        assert_eq!(found[0].fingerprint, fingerprint("kv", b"abc123xyz"));
        // Keywords are a prefilter: no keyword, no scan.
        let r2 = rules("[[rules]]\nid = \"kv\"\nregex = '''key=(\\w+)'''\nkeywords = [\"zzz\"]\n");
        assert!(r2.scan("a", "key=abcdef").is_empty());
    }

    #[test]
    fn default_secret_is_first_non_empty_group_else_match() {
        let r = rules(
            "[[rules]]\nid = \"alt\"\nregex = '''(?:a=(\\w+)|b=(\\w+))'''\n[[rules]]\nid = \"whole\"\nregex = '''tok_[a-z]{4}'''\n",
        );
        let found = r.scan("f", "b=zzz tok_abcd");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].fingerprint, fingerprint("alt", b"zzz"));
        assert_eq!(found[1].fingerprint, fingerprint("whole", b"tok_abcd"));
        assert_eq!(found[1].col, 7);
    }

    #[test]
    fn columns_count_characters() {
        let r = rules("[[rules]]\nid = \"t\"\nregex = '''tok_[a-z]{4}'''\n");
        let found = r.scan("f", "é✓ tok_abcd");
        assert_eq!((found[0].line, found[0].col), (1, 4));
    }

    #[test]
    fn path_only_and_path_scoped_rules() {
        let r = rules(
            r#"
[[rules]]
id = "pkcs12-file"
description = "PKCS#12 file"
path = '''\.p12$'''
[[rules]]
id = "tf-only"
regex = '''pw=(\w+)'''
path = '''\.tf$'''
"#,
        );
        let found = r.scan("certs/a.p12", "");
        assert_eq!(ids(&found), vec!["pkcs12-file"]);
        assert_eq!((found[0].line, found[0].col), (1, 1));
        assert_eq!(ids(&r.scan("main.tf", "pw=abcdef")), vec!["tf-only"]);
        assert!(r.scan("main.yaml", "pw=abcdef").is_empty());
    }

    #[test]
    fn allowlists_old_new_global_and_conditions() {
        let r = rules(
            r#"
[allowlist]
paths = ['''^fixtures/''']
stopwords = ["dummy"]

[[allowlists]]
targetRules = ["t"]
regexes = ['''^zzzz$''']

[[rules]]
id = "t"
regex = '''tok_([a-z]{4})\b'''
secretGroup = 0
[rules.allowlist]
regexes = ['''^skip$''']
[[rules.allowlists]]
condition = "AND"
regexTarget = "line"
regexes = ['''# ok''']
paths = ['''\.md$''']
[[rules.allowlists]]
regexTarget = "match"
regexes = ['''tok_mmmm''']

[[rules]]
id = "u"
regex = '''tok_[a-z]{4}'''
"#,
        );
        assert!(
            r.scan("fixtures/a.txt", "tok_abcd").is_empty(),
            "global path allowlist"
        );
        assert!(
            ids(&r.scan("a.txt", "tok_skip")).eq(&["u"]),
            "old-style rule allowlist"
        );
        assert_eq!(
            ids(&r.scan("a.txt", "tok_zzzz")),
            vec!["u"],
            "targetRules only applies to t"
        );
        assert_eq!(
            ids(&r.scan("a.txt", "tok_mmmm")),
            vec!["u"],
            "regexTarget match"
        );
        assert_eq!(
            ids(&r.scan("a.md", "tok_abcd # ok")),
            vec!["u"],
            "AND: path and line"
        );
        assert_eq!(
            ids(&r.scan("a.txt", "tok_abcd # ok")),
            vec!["u", "t"],
            "AND needs the path too"
        );
        let r2 = rules(
            "[allowlist]\nstopwords = [\"DUMMY\"]\n[[rules]]\nid = \"w\"\nregex = '''w_([a-z]+)'''\n",
        );
        assert!(
            r2.scan("a", "w_xxdummyxx").is_empty(),
            "stopwords are case-insensitive"
        );
        assert_eq!(r2.scan("a", "w_real").len(), 1);
    }

    #[test]
    fn commit_allowlists_never_allow() {
        let r = rules(
            "[[rules]]\nid = \"t\"\nregex = '''tok_[a-z]{4}'''\n[[rules.allowlists]]\ncommits = [\"abc\"]\n",
        );
        assert_eq!(r.scan("a", "tok_abcd").len(), 1);
    }

    #[test]
    fn bad_rules_are_warnings_not_errors() {
        let src = r#"
title = "t"
[extend]
useDefault = true

[[rules]]
id = "bad-regex"
regex = '''(?<=x)abc'''

[[rules]]
description = "no id"
regex = '''abc'''

[[rules]]
id = "no-pattern"

[[rules]]
id = "bad-group"
regex = '''(a)b'''
secretGroup = 3

[[rules]]
id = "wrong-type"
entropy = "high"

[[rules]]
id = "good"
regex = '''go{2}d\${x}'''
"#;
        let (r, warnings) = SecretRules::from_toml(src, "user.toml").unwrap();
        assert_eq!(r.rule_ids().collect::<Vec<_>>(), vec!["good"]);
        let all = warnings.join("\n");
        for needle in [
            "[extend]",
            "bad-regex",
            "rule #2",
            "no-pattern",
            "bad-group",
            "user.toml:",
        ] {
            assert!(all.contains(needle), "{needle} missing in {all}");
        }
        assert!(
            all.contains("user.toml:6:"),
            "warnings carry the rule's line: {all}"
        );
        assert_eq!(
            r.scan("a", "good${x}").len(),
            1,
            "a literal `{{` in RE2 stays a literal"
        );
    }

    #[test]
    fn toml_syntax_error_has_position() {
        let err =
            SecretRules::from_toml("title = \"x\"\n[[rules]\nid = 1\n", "bad.toml").unwrap_err();
        assert_eq!(err.origin, "bad.toml");
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("bad.toml:2:"), "{err}");
    }

    #[test]
    fn merge_replaces_same_id_and_keeps_others() {
        let a = rules("[[rules]]\nid = \"x\"\nregex = '''aaa_[a-z]+'''\n");
        let b = rules(
            "[[rules]]\nid = \"x\"\nregex = '''bbb_[a-z]+'''\n[[rules]]\nid = \"y\"\nregex = '''ccc_[a-z]+'''\n",
        );
        let m = a.merge(b);
        assert_eq!(m.len(), 2);
        assert!(m.scan("f", "aaa_q").is_empty());
        assert_eq!(ids(&m.scan("f", "bbb_q ccc_q")), vec!["x", "y"]);
        let merged = SecretRules::builtin().merge(SecretRules::empty());
        assert_eq!(merged.len(), SecretRules::builtin().len());
    }

    #[test]
    fn translate_keeps_valid_syntax_and_escapes_re2_literals() {
        assert_eq!(translate_re2(r"a{2,3}b{1}c{4,}"), r"a{2,3}b{1}c{4,}");
        assert_eq!(translate_re2(r"^\${(?:[A-Z_]+)}$"), r"^\$\{(?:[A-Z_]+)}$");
        assert_eq!(translate_re2(r"[[:alnum:]_]"), r"[[:alnum:]_]");
        assert_eq!(translate_re2(r"[a[b]"), r"[a\[b]");
        assert_eq!(translate_re2(r"[]a]"), r"[\]a]");
        assert_eq!(translate_re2(r"[a&&b]"), r"[a\&\&b]");
    }

    #[test]
    fn entropy_matches_gitleaks() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!(shannon_entropy(AWS_SECRET.as_bytes()) > 4.5);
    }

    #[test]
    fn debug_output_has_no_secret() {
        let r = SecretRules::builtin();
        let found = r.scan("a.yaml", &format!("aws_access_key_id: {AWS_ID}\n"));
        assert_eq!(found.len(), 1);
        let dbg = format!("{found:?} {r:?}");
        assert!(!dbg.contains(AWS_ID), "{dbg}");
    }

    /// The real gitleaks rule file (DESIGN.md §11: read the corpus in place).
    fn gitleaks_corpus() -> Option<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../../shared/corpus/secrets/gitleaks/config/gitleaks.toml"
        );
        match std::fs::read_to_string(path) {
            Ok(src) => Some(src),
            Err(e) if std::env::var("SLUICE_REQUIRE_CORPUS").as_deref() == Ok("1") => {
                panic!("corpus file {path} is required (SLUICE_REQUIRE_CORPUS=1): {e}")
            }
            Err(e) => {
                eprintln!("notice: corpus file {path} not available ({e}); test skipped");
                None
            }
        }
    }

    #[test]
    fn corpus_gitleaks_rules_load_and_find_planted_credentials() {
        let Some(src) = gitleaks_corpus() else { return };
        let started = std::time::Instant::now();
        let (r, warnings) = SecretRules::from_toml(&src, "gitleaks.toml").unwrap();
        eprintln!(
            "gitleaks.toml: {} usable rules, {} warnings, loaded in {:?}",
            r.len(),
            warnings.len(),
            started.elapsed()
        );
        for w in &warnings {
            eprintln!("  warning: {w}");
        }
        assert!(r.len() >= 200, "only {} rules usable", r.len());

        let text = format!(
            "provider \"aws\" {{\n  access_key = \"{AWS_ID}\"\n  region = \"eu-west-1\"\n}}\n\
             github: ghp_R8x2Lq9ZkT4vB7nW1mY6cJ3pD5sF0hG2aE8u\n\
             stripe: sk_live_4eC39HqLyjWDarjtT1zdp7dc9xQ2\n\
             -----BEGIN OPENSSH PRIVATE KEY-----\n\
             b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
             QyNTUxOQAAACDx2Lq9ZkT4vB7nW1mY6cJ3pD5sF0hG2aE8uR8x2Lq9ZkT4vB7nW1mY6cJ3\n\
             -----END OPENSSH PRIVATE KEY-----\n"
        );
        let found = r.scan("infra/main.tf", &text);
        let got = ids(&found);
        for want in [
            "aws-access-token",
            "github-pat",
            "stripe-access-token",
            "private-key",
        ] {
            assert!(got.contains(&want), "{want} not found: {got:?}");
        }
        let aws = found.iter().find(|m| m.rule == "aws-access-token").unwrap();
        assert_eq!((aws.line, aws.col), (2, 17));
        let shown = format!("{found:?}");
        assert!(
            !shown.contains(AWS_ID) && !shown.contains("ghp_R8x2"),
            "{shown}"
        );
        // The global allowlist of the file is honoured.
        assert!(r.scan("site/logo.png", &text).is_empty());

        // Throughput on real files (a figure, not an assertion): the keyword prefilter is what
        // keeps 222 rules over thousands of files cheap.
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/corpus");
        let mut files = Vec::new();
        collect_text_files(std::path::Path::new(root), &mut files);
        let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
        let started = std::time::Instant::now();
        let hits: usize = files.iter().map(|(p, t)| r.scan(p, t).len()).sum();
        eprintln!(
            "scanned {} corpus files ({} KiB) in {:?}: {hits} matches",
            files.len(),
            bytes / 1024,
            started.elapsed()
        );
    }

    fn collect_text_files(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect_text_files(&path, out);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                out.push((path.to_string_lossy().into_owned(), text));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,400}", path in "[a-z/._]{0,30}") {
            let _ = SecretRules::builtin().scan(&path, &text);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = SecretRules::builtin().scan("f", &text);
        }

        #[test]
        fn planted_token_is_found_where_planted(
            before in proptest::collection::vec("[a-z ]{0,30}", 0..6),
            prefix in "[a-z ]{0,20}",
            body in "[A-Za-z0-9]{36}",
            after in "[a-z ]{0,30}",
        ) {
            // Bodies the entropy filter rejects are not credentials; skip them.
            let token = format!("ghp_{body}");
            prop_assume!(shannon_entropy(token.as_bytes()) > 3.0);
            let mut text: String = before.iter().map(|l| format!("{l}\n")).collect();
            let line = before.len() as u32 + 1;
            text.push_str(&format!("{prefix} {token} {after}\n"));
            let found = SecretRules::builtin().scan("notes.txt", &text);
            let hit = found.iter().find(|m| m.rule == "github-token");
            prop_assert!(hit.is_some(), "not found: {:?}", found);
            let hit = hit.unwrap();
            prop_assert_eq!((hit.line, hit.col), (line, prefix.chars().count() as u32 + 2));
            prop_assert_eq!(&hit.fingerprint, &fingerprint("github-token", token.as_bytes()));
            prop_assert_eq!(hit.fingerprint.len(), 12);
            let again = SecretRules::builtin().scan("other.txt", &text);
            prop_assert_eq!(&again.iter().find(|m| m.rule == "github-token").unwrap().fingerprint, &hit.fingerprint);
            let shown = format!("{hit:?}");
            prop_assert!(!shown.contains(&token) && !shown.contains(&body));
        }
    }
}
