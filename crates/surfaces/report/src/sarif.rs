//! Findings as SARIF 2.1.0, the format code-scanning tools (GitHub, GitLab, IDEs) import.
//!
//! One run whose driver is sluice: its rules are the catalogue of [`sluice_checks::validate::RULES`]
//! (so a tool can describe a rule even when this run did not trigger it) plus the `secret/*`
//! rules that occur. Locations are repository-relative URIs with 1-based line and column;
//! columns count Unicode code points, as sluice's positions do. Secret findings carry their
//! fingerprint in `partialFingerprints` so that a tool tracks the same secret across commits;
//! the secret itself is never part of a finding, so it cannot reach this output.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice_model::finding::{Finding, Severity};

use sluice_checks::validate::{RULES, SECRET_PREFIX};

pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
pub const SARIF_VERSION: &str = "2.1.0";
/// Where a SARIF consumer links the tool: the package's repository, or the workspace's when the
/// package does not inherit it.
pub const INFORMATION_URI: &str = match env!("CARGO_PKG_REPOSITORY").as_bytes() {
    [] => "https://example.invalid/sluice",
    _ => env!("CARGO_PKG_REPOSITORY"),
};
/// The key of sluice's fingerprint in `partialFingerprints`.
pub const FINGERPRINT_KEY: &str = "secretFingerprint/v1";

/// Render findings (already sorted by the caller) as a SARIF log.
pub fn to_sarif(findings: &[Finding], tool_version: &str) -> Value {
    let mut descriptors: Vec<Value> = RULES
        .iter()
        .map(|r| descriptor(r.id, r.name, r.description, r.default_severity))
        .collect();
    let mut index: BTreeMap<String, usize> = RULES
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.to_string(), i))
        .collect();

    // Rules outside the catalogue (secret rules come from the org's rule file) are described
    // from their findings, in id order so that the output does not depend on finding order.
    let mut extra: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in findings {
        if !index.contains_key(&f.rule) {
            extra.entry(f.rule.as_str()).or_insert(f);
        }
    }
    for (id, f) in extra {
        index.insert(id.to_string(), descriptors.len());
        descriptors.push(match id.strip_prefix(SECRET_PREFIX) {
            Some(secret_rule) => {
                let description = f.message.split_once(" (fingerprint ").map_or_else(
                    || format!("Secret matched by rule `{secret_rule}`."),
                    |(d, _)| format!("{d} (secret rule `{secret_rule}`)."),
                );
                descriptor(
                    id,
                    &format!("Secret{}", camel(secret_rule)),
                    &description,
                    Severity::Error,
                )
            }
            None => descriptor(id, &camel(id), &format!("sluice rule `{id}`."), f.severity),
        });
    }

    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut location = json!({ "artifactLocation": { "uri": uri(&f.file) } });
            // Line 0 would be invalid SARIF; such a finding is about the file as a whole.
            if f.line > 0 {
                location["region"] = json!({
                    "startLine": f.line,
                    "startColumn": f.col.max(1),
                });
            }
            let mut result = json!({
                "ruleId": f.rule,
                "ruleIndex": index[&f.rule],
                "level": level(f.severity),
                "message": { "text": f.message },
                "locations": [{ "physicalLocation": location }],
            });
            if let Some(fp) = &f.fingerprint {
                result["partialFingerprints"] = json!({ FINGERPRINT_KEY: fp });
            }
            result
        })
        .collect();

    json!({
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {
                "driver": {
                    "name": "sluice",
                    "informationUri": INFORMATION_URI,
                    "version": tool_version,
                    "rules": descriptors,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

fn descriptor(id: &str, name: &str, description: &str, severity: Severity) -> Value {
    json!({
        "id": id,
        "name": name,
        "shortDescription": { "text": description },
        "defaultConfiguration": { "level": level(severity) },
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// `aws-access-key-id` → `AwsAccessKeyId`, `graph/cycle` → `GraphCycle`.
fn camel(id: &str) -> String {
    id.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A repository-relative path as a URI reference: `/` kept, everything outside RFC 3986's
/// unreserved set percent-encoded (spaces, `#`, `?`, non-ASCII).
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings() -> Vec<Finding> {
        let mut secret = Finding::new(
            "secret/aws-access-key-id",
            Severity::Error,
            "infra-live/accounts/prod/eu-west-1/network/main.tf",
            3,
            17,
            "AWS access key id (fingerprint 0123456789ab); rotate it and load it from a secret store instead of the repository",
        );
        secret.fingerprint = Some("0123456789ab".into());
        vec![
            Finding::new(
                "iac/unpinned-module",
                Severity::Error,
                "infra-live/accounts/prod/eu-west-1/network/terragrunt.hcl",
                6,
                12,
                "module source `git::https://github.com/acme/modules.git//vpc?ref=main` is pinned to `main`, which can move (a branch or a short SHA); pin a release tag (`?ref=v1.8.3`) or a full 40-character commit SHA",
            ),
            secret,
            Finding::new(
                "file/too-large",
                Severity::Warning,
                "docs/big dump.json",
                1,
                1,
                "file is 2000000 bytes, over validate.max_file_bytes (1048576); it was not parsed or scanned for secrets",
            ),
            Finding::new(
                "file/binary",
                Severity::Info,
                "docs/logo.png",
                1,
                1,
                "binary file (NUL byte in the first 8 KiB); not checked",
            ),
        ]
    }

    #[test]
    fn sarif_snapshot() {
        insta::assert_json_snapshot!(to_sarif(&findings(), "0.0.0-test"));
    }

    #[test]
    fn rules_and_indexes_are_consistent() {
        let log = to_sarif(&findings(), "1.2.3");
        let run = &log["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), RULES.len() + 1);
        for result in run["results"].as_array().unwrap() {
            let i = result["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[i]["id"], result["ruleId"]);
        }
        let secret = &run["results"][1];
        assert_eq!(
            secret["partialFingerprints"][FINGERPRINT_KEY],
            "0123456789ab"
        );
        assert_eq!(rules[RULES.len()]["name"], "SecretAwsAccessKeyId");
        assert_eq!(run["results"][3]["level"], "note");
        assert_eq!(
            run["results"][2]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "docs/big%20dump.json"
        );
    }

    #[test]
    fn no_findings_is_a_valid_empty_run() {
        let log = to_sarif(&[], "1.2.3");
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 0);
        assert_eq!(
            log["runs"][0]["tool"]["driver"]["rules"]
                .as_array()
                .unwrap()
                .len(),
            RULES.len()
        );
    }

    #[test]
    fn names_are_camel_case() {
        assert_eq!(camel("aws-access-key-id"), "AwsAccessKeyId");
        assert_eq!(camel("graph/missing-dependency"), "GraphMissingDependency");
    }
}
