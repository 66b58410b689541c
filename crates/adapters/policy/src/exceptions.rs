//! Reading exception files (the org's `security-exceptions` folder) with positions.
//!
//! Each YAML document is one exception (a mapping), a list of them, or a mapping with an
//! `exceptions:` list. The fields are validated by `sluice_model::exception`; this module turns
//! its field errors into `file:line:col` diagnostics. A file that fails to parse, or an
//! exception with an invalid field, is reported and not honoured; the others still load.

use std::path::Path;

use sluice_model::exception::{Exception, ExceptionSpec, SourceRef};
use sluice_model::tree::Tree;
use sluice_model::yaml::{self, Node, Value};

/// Exception files larger than this are rejected unread.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

const FIELDS: &[&str] = &[
    "id",
    "policy",
    "resource",
    "owner",
    "approvedBy",
    "reason",
    "expiresAt",
    "constraints",
];

/// A problem in an exception file at a position (1-based).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error, serde::Serialize)]
#[error("{file}:{line}:{col}: {message}")]
pub struct LoadError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// The outcome of reading a folder of exception files.
#[derive(Debug, Clone, Default)]
pub struct LoadedExceptions {
    /// Valid exceptions, in file then document order.
    pub exceptions: Vec<Exception>,
    /// Invalid files and exceptions: not honoured.
    pub errors: Vec<LoadError>,
    /// Unknown fields and the like: loaded anyway.
    pub warnings: Vec<LoadError>,
}

impl LoadedExceptions {
    fn extend(&mut self, other: LoadedExceptions) {
        self.exceptions.extend(other.exceptions);
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

fn is_exception_file(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Read every `.yaml`/`.yml` file below `dir` of a snapshot (a missing folder holds none).
pub fn load_snapshot(snapshot: &dyn Tree, dir: &str) -> LoadedExceptions {
    let mut out = LoadedExceptions::default();
    for path in snapshot.files_under(dir.trim_matches('/')) {
        if !is_exception_file(path) {
            continue;
        }
        match snapshot.read_file(path) {
            Ok(Some(bytes)) => out.extend(parse_bytes(path, &bytes)),
            Ok(None) => {}
            Err(e) => out.errors.push(at(path, 1, 1, format!("cannot read: {e}"))),
        }
    }
    out
}

/// Read every `.yaml`/`.yml` file below a folder on disk (symlinks are not followed).
pub fn load_dir(dir: &Path) -> LoadedExceptions {
    let mut out = LoadedExceptions::default();
    let mut files = Vec::new();
    if let Err(e) = collect(dir, dir, &mut files) {
        out.errors.push(at(&dir.display().to_string(), 1, 1, e));
        return out;
    }
    files.sort();
    for (display, full) in files {
        match std::fs::read(&full) {
            Ok(bytes) => out.extend(parse_bytes(&display, &bytes)),
            Err(e) => out
                .errors
                .push(at(&display, 1, 1, format!("cannot read: {e}"))),
        }
    }
    out
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read folder: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let ft = entry.file_type().map_err(|e| e.to_string())?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if ft.is_dir() && !name.starts_with('.') {
            collect(root, &path, out)?;
        } else if ft.is_file() && is_exception_file(&name) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let display = Path::new(&root.display().to_string())
                .join(rel)
                .display()
                .to_string();
            out.push((display, path));
        }
    }
    Ok(())
}

fn at(file: &str, line: u32, col: u32, message: impl Into<String>) -> LoadError {
    LoadError {
        file: file.to_string(),
        line,
        col,
        message: message.into(),
    }
}

fn parse_bytes(file: &str, bytes: &[u8]) -> LoadedExceptions {
    let mut out = LoadedExceptions::default();
    if bytes.len() > MAX_FILE_BYTES {
        out.errors.push(at(
            file,
            1,
            1,
            format!(
                "{} bytes, more than the limit of {MAX_FILE_BYTES}",
                bytes.len()
            ),
        ));
        return out;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_file(file, text),
        Err(e) => {
            out.errors.push(at(file, 1, 1, format!("not UTF-8: {e}")));
            out
        }
    }
}

/// Parse one exception file.
pub fn parse_file(file: &str, text: &str) -> LoadedExceptions {
    let mut out = LoadedExceptions::default();
    let docs = match yaml::parse_stream(text) {
        Ok(d) => d,
        Err(e) => {
            out.errors.push(at(
                file,
                e.line,
                e.col,
                format!("invalid YAML: {}", e.message),
            ));
            return out;
        }
    };
    for doc in &docs {
        let items: Vec<&Node> = match &doc.value {
            Value::Null => continue,
            Value::Seq(items) => items.iter().collect(),
            Value::Map(_) => match doc.get("exceptions") {
                Some(list) if doc.as_map().is_some_and(|m| m.len() == 1) => match list.as_seq() {
                    Some(items) => items.iter().collect(),
                    None => {
                        out.errors.push(at(
                            file,
                            list.line,
                            list.col,
                            format!("`exceptions`: expected a list, found {}", list.type_name()),
                        ));
                        continue;
                    }
                },
                _ => vec![doc],
            },
            _ => {
                out.errors.push(at(
                    file,
                    doc.line,
                    doc.col,
                    format!(
                        "expected an exception (a mapping) or a list of them, found {}",
                        doc.type_name()
                    ),
                ));
                continue;
            }
        };
        for item in items {
            match read_exception(file, text, item, &mut out.warnings) {
                Ok(e) => out.exceptions.push(e),
                Err(e) => out.errors.push(e),
            }
        }
    }
    out
}

fn read_exception(
    file: &str,
    text: &str,
    node: &Node,
    warnings: &mut Vec<LoadError>,
) -> Result<Exception, LoadError> {
    let Some(map) = node.as_map() else {
        return Err(at(
            file,
            node.line,
            node.col,
            format!("expected an exception mapping, found {}", node.type_name()),
        ));
    };
    let label = node
        .get("id")
        .and_then(Node::scalar_text)
        .map(|id| format!("exception `{id}`: "))
        .unwrap_or_default();
    for (k, _) in map {
        let key = k.scalar_text().unwrap_or_default();
        if !FIELDS.contains(&key.as_str()) {
            warnings.push(at(
                file,
                k.line,
                k.col,
                format!(
                    "{label}unknown field `{key}` (known: {})",
                    FIELDS.join(", ")
                ),
            ));
        }
    }
    let err = |n: &Node, message: String| at(file, n.line, n.col, format!("{label}{message}"));
    let string = |field: &str| -> Result<String, LoadError> {
        match node.get(field) {
            None => Ok(String::new()),
            Some(v) => match &v.value {
                Value::Str(s) => Ok(s.clone()),
                Value::Int(_) | Value::Float(_) => Ok(v.scalar_text().unwrap_or_default()),
                Value::Null => Ok(String::new()),
                _ => Err(err(
                    v,
                    format!("`{field}`: expected a string, found {}", v.type_name()),
                )),
            },
        }
    };
    let strings = |field: &str| -> Result<Vec<String>, LoadError> {
        match node.get(field) {
            None => Ok(Vec::new()),
            Some(v) => match &v.value {
                Value::Str(s) => Ok(vec![s.clone()]),
                Value::Null => Ok(Vec::new()),
                Value::Seq(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_string).ok_or_else(|| {
                            err(
                                i,
                                format!("`{field}`: expected strings, found {}", i.type_name()),
                            )
                        })
                    })
                    .collect(),
                _ => Err(err(
                    v,
                    format!(
                        "`{field}`: expected a string or a list of strings, found {}",
                        v.type_name()
                    ),
                )),
            },
        }
    };
    let expires_at = match node.get("expiresAt") {
        None => None,
        Some(v) => match &v.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                return Err(err(
                    v,
                    format!(
                        "`expiresAt`: expected an RFC 3339 date-time string such as 2025-06-30T00:00:00Z, found {}",
                        v.type_name()
                    ),
                ));
            }
        },
    };
    let constraints = match node.get("constraints") {
        None => serde_json::Value::Null,
        Some(v) => v.to_json(),
    };
    let spec = ExceptionSpec {
        id: string("id")?,
        policy: string("policy")?,
        resources: strings("resource")?,
        owner: string("owner")?,
        approved_by: strings("approvedBy")?,
        reason: string("reason")?,
        expires_at,
        constraints,
    };
    let source = SourceRef {
        file: file.to_string(),
        line: node.line,
    };
    Exception::new(spec, source).map_err(|e| {
        // Point at the value when the field is present, else at the exception itself.
        let (line, mut col) = match node.get(e.field) {
            Some(v) => (v.line, v.col),
            None => (node.line, node.col),
        };
        if let (Some(offset), Some(v)) = (e.offset, node.get(e.field)) {
            col += offset as u32 + u32::from(starts_with_quote(text, v));
        }
        at(file, line, col, format!("{label}{e}"))
    })
}

fn starts_with_quote(text: &str, node: &Node) -> bool {
    text.lines()
        .nth(node.line.saturating_sub(1) as usize)
        .and_then(|l| l.chars().nth(node.col.saturating_sub(1) as usize))
        .is_some_and(|c| c == '"' || c == '\'')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id: EXC-101
policy: db-public-access
resource: "prod/*/data/aws_db_instance.reporting"
owner: team-analytics
approvedBy: [alice, bob]
reason: vendor BI tool connects over the internet until PrivateLink lands
expiresAt: "2025-07-01T00:00:00Z"
constraints:
  allowed_cidrs: [203.0.113.0/24]
"#;

    #[test]
    fn reads_a_valid_exception() {
        let l = parse_file("security-exceptions/exc-101.yaml", GOOD);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let e = &l.exceptions[0];
        assert_eq!(e.id, "EXC-101");
        assert_eq!(e.approved_by, ["alice", "bob"]);
        assert_eq!(e.expires_at.to_rfc3339(), "2025-07-01T00:00:00Z");
        assert_eq!(e.constraints["allowed_cidrs"][0], "203.0.113.0/24");
        assert_eq!(e.source.line, 2);
    }

    #[test]
    fn missing_expiry_names_file_position_and_field() {
        let text = GOOD.replace("expiresAt: \"2025-07-01T00:00:00Z\"\n", "");
        let l = parse_file("security-exceptions/x.yaml", &text);
        assert!(l.exceptions.is_empty());
        assert_eq!(
            l.errors[0].to_string(),
            "security-exceptions/x.yaml:2:1: exception `EXC-101`: `expiresAt`: is required: every exception expires (RFC 3339, e.g. 2025-06-30T00:00:00Z)"
        );
    }

    #[test]
    fn bad_date_points_inside_the_value() {
        let text = GOOD.replace("2025-07-01T00:00:00Z", "2025-07-32T00:00:00Z");
        let l = parse_file("x.yaml", &text);
        let e = &l.errors[0];
        // Line 8, the value starts at column 12 with a quote; the day starts 8 characters in.
        assert_eq!((e.line, e.col), (8, 21), "{e}");
        assert!(e.message.contains("day 32"), "{e}");
        let unquoted = GOOD.replace("\"2025-07-01T00:00:00Z\"", "2025-07-01");
        let e = &parse_file("x.yaml", &unquoted).errors[0];
        assert_eq!((e.line, e.col), (8, 22), "{e}");
        assert!(e.message.contains("date alone"), "{e}");
    }

    #[test]
    fn lists_unknown_fields_and_invalid_yaml() {
        let text = format!("{GOOD}expiresat: tomorrow\n");
        let l = parse_file("x.yaml", &text);
        assert_eq!(l.exceptions.len(), 1);
        assert_eq!(l.warnings[0].line, 11);
        assert!(l.warnings[0].message.contains("unknown field `expiresat`"));
        let l = parse_file("x.yaml", "id: [unclosed\n");
        assert!(
            l.errors[0].message.starts_with("invalid YAML"),
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn several_exceptions_per_file() {
        let second = GOOD.replace("EXC-101", "EXC-102");
        let l = parse_file("x.yaml", &format!("{GOOD}---\n{second}"));
        assert_eq!(l.exceptions.len(), 2);
        let list = format!(
            "exceptions:\n{}",
            GOOD.trim()
                .lines()
                .enumerate()
                .map(|(i, line)| if i == 0 {
                    format!("  - {line}\n")
                } else {
                    format!("    {line}\n")
                })
                .collect::<String>()
        );
        let l = parse_file("x.yaml", &list);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.exceptions[0].id, "EXC-101");
    }

    #[test]
    fn loads_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("team")).unwrap();
        std::fs::write(dir.path().join("team/a.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("README.md"), "not an exception").unwrap();
        std::fs::write(dir.path().join("b.yml"), "id: [").unwrap();
        let l = load_dir(dir.path());
        assert_eq!(l.exceptions.len(), 1);
        assert_eq!(l.errors.len(), 1);
        assert!(l.errors[0].file.ends_with("b.yml"));
    }
}
