//! Findings of static validation (stage 2): a stable rule id, a severity and a precise location.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    /// Errors block the change; warnings and notes are reported only.
    pub fn blocks(self) -> bool {
        self == Severity::Error
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub rule: String,
    pub severity: Severity,
    pub message: String,
    /// For secrets: a short fingerprint of the match so the same secret can be tracked across
    /// runs without ever printing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// How the finding relates to the change (`new`, `pre_existing`), when the merge base was
    /// validated too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::baseline::Baseline>,
}

impl Finding {
    pub fn new(
        rule: &str,
        severity: Severity,
        file: &str,
        line: u32,
        col: u32,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            file: file.to_string(),
            line,
            col,
            rule: rule.to_string(),
            severity,
            message: message.into(),
            fingerprint: None,
            baseline: None,
        }
    }
}

/// Whether any finding blocks the change.
pub fn blocking(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity.blocks())
}
