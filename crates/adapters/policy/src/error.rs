//! Errors of loading and compiling policy. Evaluation never returns these: a policy that fails
//! at evaluation time becomes a `deny` result in the decision record (fail closed).

/// A problem with a policy bundle, its configuration or its exceptions, always naming the file
/// (and position when there is one) or the configuration field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("bundle {bundle}: {message}")]
    Bundle { bundle: String, message: String },
    #[error("{file}: {message}")]
    Data { file: String, message: String },
    /// A Rego module that does not parse or compile.
    #[error("{file}:{line}:{col}: {message}")]
    Rego {
        file: String,
        line: u32,
        col: u32,
        message: String,
    },
    /// A bundle-level compile problem regorus reported without a position.
    #[error("bundle {bundle}: {message}")]
    Compile { bundle: String, message: String },
    #[error("sluice.yaml: {field}: {message}")]
    Config { field: String, message: String },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Exceptions(Vec<crate::exceptions::LoadError>),
    #[error("policy input: {0}")]
    Input(String),
}

/// A regorus diagnostic split into its parts. regorus renders errors as
/// `\n--> FILE:LINE:COL\n  |\nN | source\n  |   ^\nerror: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// Extract the first located diagnostic from a regorus error text.
pub fn parse_diagnostic(text: &str) -> Option<Diagnostic> {
    let start = text.find("--> ")? + 4;
    let loc_line = text[start..].lines().next()?;
    // FILE may itself contain ':'; LINE and COL are the last two fields.
    let mut parts = loc_line.rsplitn(3, ':');
    let col = parts.next()?.trim().parse().ok()?;
    let line = parts.next()?.trim().parse().ok()?;
    let file = parts.next()?.to_string();
    let message = text[start..]
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| first_line(text).to_string());
    Some(Diagnostic {
        file,
        line,
        col,
        message,
    })
}

/// A one-line summary of an error text: the located form when regorus gave a position, else
/// its first non-empty line, cut to a bounded length (messages end up in PR comments).
pub fn summarize(text: &str) -> String {
    let s = match parse_diagnostic(text) {
        Some(d) => format!("{}:{}:{}: {}", d.file, d.line, d.col, d.message),
        None => first_line(text).to_string(),
    };
    truncate(&s, 400)
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_regorus_rendering() {
        let text = "\n--> policy/main.rego:4:12\n  |\n4 | deny contains msg if {\n  |            ^\nerror: unexpected token";
        assert_eq!(
            parse_diagnostic(text),
            Some(Diagnostic {
                file: "policy/main.rego".into(),
                line: 4,
                col: 12,
                message: "unexpected token".into()
            })
        );
        assert_eq!(summarize(text), "policy/main.rego:4:12: unexpected token");
        assert_eq!(summarize("plain failure\nmore"), "plain failure");
    }

    #[test]
    fn file_names_with_colons() {
        let d = parse_diagnostic("--> c:/x/a.rego:1:2\nerror: e").unwrap();
        assert_eq!((d.file.as_str(), d.line, d.col), ("c:/x/a.rego", 1, 2));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse_diagnostic(&s);
            prop_assert!(summarize(&s).len() <= 404);
        }
    }
}
