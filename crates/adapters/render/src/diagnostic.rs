//! Findings of render and schema validation: severity, a stable rule id, the object, the JSON
//! path inside it and the source file and line. Messages never echo field values (a value may
//! be a secret).

use std::fmt;

use serde::Serialize;
use sluice_model::finding::{Finding, Severity};

use crate::object::{Identity, Source};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: u32,
    /// 0-based document index in the file or tool output.
    pub document: usize,
    pub severity: Severity,
    /// `schema/invalid`, `schema/unknown-field`, `schema/missing`, `schema/crd`, `render/...`.
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Identity>,
    /// JSON pointer into the object (`/spec/replicas`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
    /// The repository file a tool's output object most likely came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// How the finding relates to the change (`new`, `pre_existing`, `fixed`), when the base
    /// revision was validated too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<sluice_model::baseline::Baseline>,
}

impl Diagnostic {
    pub fn new(
        severity: Severity,
        rule: &str,
        source: &Source,
        object: Option<&Identity>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: source.file.clone(),
            line: source.line,
            document: source.document,
            severity,
            rule: rule.to_string(),
            object: object.cloned(),
            path: None,
            message: message.into(),
            origin: source.origin.clone(),
            baseline: None,
        }
    }

    /// As a stage finding (the PR report's shape).
    pub fn to_finding(&self) -> Finding {
        let mut message = String::new();
        if let Some(o) = &self.object {
            message.push_str(&o.to_string());
            if let Some(p) = &self.path {
                message.push_str(&format!(" at {p}"));
            }
            message.push_str(": ");
        }
        message.push_str(&self.message);
        Finding::new(
            &self.rule,
            self.severity,
            self.origin.as_deref().unwrap_or(&self.file),
            self.line.max(1),
            1,
            message,
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.file, self.line)?;
        } else {
            write!(f, "{} (document {}): ", self.file, self.document + 1)?;
        }
        write!(f, "{}: ", self.severity.as_str())?;
        if let Some(o) = &self.object {
            write!(f, "{o}")?;
            if let Some(p) = &self.path {
                write!(f, " {p}")?;
            }
            f.write_str(": ")?;
        }
        write!(f, "{} [{}]", self.message, self.rule)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}
