//! `sluice policy test`: run a bundle's `test_*` rules the way `opa test` does. Each test rule
//! must evaluate to `true`; undefined, `false`, another value or an error is a failure.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bundle::{Bundle, FileKind};
use crate::engine::compile_bundle;
use crate::error::{self, PolicyError};
use crate::guard;

#[derive(Debug, Clone, Serialize)]
pub struct TestCase {
    /// The file declaring the test (display path).
    pub file: String,
    pub line: u32,
    pub package: String,
    pub name: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub duration_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub bundle: String,
    pub version: String,
    pub tests: Vec<TestCase>,
    pub passed: usize,
    pub failed: usize,
}

impl TestReport {
    /// `opa test`-style text: failures with their reason, then the summary line.
    pub fn render_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for t in &self.tests {
            if t.passed && !verbose {
                continue;
            }
            let status = if t.passed { "PASS" } else { "FAIL" };
            out.push_str(&format!(
                "{}:{}: data.{}.{}: {status} ({:.1} ms)",
                t.file,
                t.line,
                t.package,
                t.name,
                t.duration_us as f64 / 1000.0
            ));
            if let Some(m) = &t.message {
                out.push_str(&format!("\n    {m}"));
            }
            out.push('\n');
        }
        if self.tests.is_empty() {
            out.push_str("no test_* rules found\n");
        }
        out.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        out
    }
}

/// Names of rules that look like tests: an identifier starting `test_` at the start of a line
/// (the candidates are confirmed with the parsed module).
fn test_candidates(source: &str) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, i as u32 + 1));
        }
    }
    out
}

/// Run every `test_*` rule of the bundle (test files and policy files alike).
pub fn run(
    bundle: &Bundle,
    extra_data: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<TestReport, PolicyError> {
    let mut engine = compile_bundle(bundle, true, extra_data)?;
    let packages = engine
        .get_policy_package_components()
        .map_err(|e| PolicyError::Compile {
            bundle: bundle.name.clone(),
            message: e.to_string(),
        })?;
    let mut tests = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in bundle.files.iter().filter(|f| {
        matches!(
            crate::bundle::file_kind(&f.path),
            Some(FileKind::Test | FileKind::Policy)
        )
    }) {
        let display = bundle.display_path(&f.path);
        let Some(pkg) = packages.iter().find(|p| p.source_file == display) else {
            continue;
        };
        let package = pkg.components.join(".");
        let source = String::from_utf8_lossy(&f.content);
        for (name, line) in test_candidates(&source) {
            if !engine
                .has_declared_rule_rooted_at(&display, &name)
                .unwrap_or(false)
                || !seen.insert((package.clone(), name.clone()))
            {
                continue;
            }
            let path = format!("data.{package}.{name}");
            engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
                limit: timeout,
                check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
            });
            let started = Instant::now();
            let outcome = guard::catch(|| engine.eval_rule(path));
            let duration_us = started.elapsed().as_micros() as u64;
            let (passed, message) = match outcome {
                // A panic fails the test; `eval_rule` clears the evaluation state it starts
                // from, so the next test may use this engine.
                Err(panic) => (false, Some(format!("error: {panic}"))),
                Ok(Ok(regorus::Value::Bool(true))) => (true, None),
                Ok(Ok(regorus::Value::Undefined)) => (
                    false,
                    Some("undefined: a condition of the test does not hold".to_string()),
                ),
                Ok(Ok(v)) => (
                    false,
                    Some(format!(
                        "evaluated to {}, expected true",
                        error::truncate(&v.to_json_str().unwrap_or_default(), 200)
                    )),
                ),
                Ok(Err(e)) => (
                    false,
                    Some(format!("error: {}", error::summarize(&e.to_string()))),
                ),
            };
            tests.push(TestCase {
                file: display.clone(),
                line,
                package: package.clone(),
                name,
                passed,
                message,
                duration_us,
            });
        }
    }
    let passed = tests.iter().filter(|t| t.passed).count();
    Ok(TestReport {
        bundle: bundle.name.clone(),
        version: bundle.version(),
        failed: tests.len() - passed,
        passed,
        tests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_rules_at_line_starts() {
        let src = "package x\n\ntest_a if { true }\n  test_not_top if true\ntest_b := true\ntest_a if { 1 == 1 }\n# test_comment\n";
        assert_eq!(
            test_candidates(src),
            vec![("test_a".to_string(), 3), ("test_b".to_string(), 5)]
        );
    }
}
