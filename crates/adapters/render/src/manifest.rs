//! Reading manifests: a YAML (or JSON) stream becomes Kubernetes object documents, each with
//! its file, document index and line. Everything a careless or hostile input can do is an
//! error naming the source: invalid syntax (file:line:col), duplicate keys, alias bombs,
//! oversized documents, documents that are not objects. `List` documents are expanded into
//! their items, as kubectl and Kustomize do.

use std::sync::Arc;

use sluice_model::yaml::{self, Node, Value};

use crate::error::RenderError;
use crate::object::Source;

/// Default cap on one YAML document (after the `---` split), in bytes.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Input limits for one render.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_document_bytes: usize,
    /// Nodes materialised through YAML aliases per stream.
    pub alias_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            alias_budget: yaml::DEFAULT_ALIAS_BUDGET,
        }
    }
}

/// One object document as written (not yet normalised).
#[derive(Debug, Clone)]
pub struct Document {
    pub value: serde_json::Value,
    pub source: Source,
    /// The parsed tree, to map a JSON path back to a line (kept for repository files only:
    /// lines of a tool's output mean nothing to the author).
    pub tree: Option<Arc<Node>>,
}

/// Parse every object of a stream. Empty documents (blank, comments only) are skipped but
/// still counted, so document numbers match what the author sees.
pub fn parse_documents(
    file: &str,
    bytes: &[u8],
    limits: &Limits,
    keep_tree: bool,
) -> Result<Vec<Document>, RenderError> {
    let text = std::str::from_utf8(bytes).map_err(|e| RenderError::Syntax {
        file: file.to_string(),
        line: line_at(bytes, e.valid_up_to()),
        col: 1,
        message: format!("not UTF-8 text: {e}"),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_sizes(file, text, limits.max_document_bytes)?;
    let nodes = parse_nodes(file, text, limits)?;
    let mut out = Vec::new();
    for (index, node) in nodes.into_iter().enumerate() {
        if node.value == Value::Null {
            continue;
        }
        let source = Source {
            file: file.to_string(),
            document: index,
            line: node.line,
            origin: None,
        };
        expand(node, source, keep_tree, &mut out)?;
    }
    Ok(out)
}

fn parse_nodes(file: &str, text: &str, limits: &Limits) -> Result<Vec<Node>, RenderError> {
    match yaml::parse_stream_with_budget(text, limits.alias_budget) {
        Ok(nodes) => Ok(nodes),
        Err(e) => {
            // JSON is YAML, except for a few layouts (tabs) the YAML scanner refuses; a JSON
            // file that parses as JSON is accepted, but never to hide a duplicate key.
            if file.ends_with(".json")
                && !e.message.contains("duplicate key")
                && let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
            {
                return Ok(vec![json_node(&value)]);
            }
            Err(RenderError::Syntax {
                file: file.to_string(),
                line: e.line,
                col: e.col,
                message: e.message,
            })
        }
    }
}

/// A position-less node for a document that only JSON could read.
fn json_node(v: &serde_json::Value) -> Node {
    use serde_json::Value as J;
    let value = match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::Seq(items.iter().map(json_node).collect()),
        J::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| {
                    (
                        Node {
                            value: Value::Str(k.clone()),
                            line: 1,
                            col: 1,
                        },
                        json_node(v),
                    )
                })
                .collect(),
        ),
    };
    Node {
        value,
        line: 1,
        col: 1,
    }
}

fn manifest_error(source: &Source, line: u32, message: impl Into<String>) -> RenderError {
    RenderError::Manifest {
        file: source.file.clone(),
        document: source.document,
        line,
        message: message.into(),
    }
}

/// A document becomes one object, or several when it is a `List`.
fn expand(
    node: Node,
    source: Source,
    keep_tree: bool,
    out: &mut Vec<Document>,
) -> Result<(), RenderError> {
    if node.as_map().is_none() {
        return Err(manifest_error(
            &source,
            node.line,
            format!(
                "expected a Kubernetes object (a mapping), found a {}",
                node.type_name()
            ),
        ));
    }
    check_type_fields(&node, &source)?;
    if is_list(&node) {
        let items = node.get("items").and_then(Node::as_seq).unwrap_or_default();
        for item in items {
            let item_source = Source {
                line: item.line,
                ..source.clone()
            };
            // A List inside a List is not something kubectl accepts either.
            if item.as_map().is_none() {
                return Err(manifest_error(
                    &source,
                    item.line,
                    format!("List item is a {}, not an object", item.type_name()),
                ));
            }
            check_type_fields(item, &item_source)?;
            out.push(document(item.clone(), item_source, keep_tree));
        }
        return Ok(());
    }
    out.push(document(node, source, keep_tree));
    Ok(())
}

fn document(node: Node, source: Source, keep_tree: bool) -> Document {
    Document {
        value: node.to_json(),
        source,
        tree: keep_tree.then(|| Arc::new(node)),
    }
}

/// `v1 List` and typed lists (`ConfigMapList`, ...) with an `items` sequence.
fn is_list(node: &Node) -> bool {
    let kind = node.get("kind").and_then(Node::as_str).unwrap_or_default();
    kind.ends_with("List") && node.get("items").and_then(Node::as_seq).is_some()
}

fn check_type_fields(node: &Node, source: &Source) -> Result<(), RenderError> {
    for field in ["apiVersion", "kind"] {
        match node.get(field) {
            None => {
                return Err(manifest_error(
                    source,
                    node.line,
                    format!("missing `{field}`: every Kubernetes object needs apiVersion and kind"),
                ));
            }
            Some(v) => match v.as_str() {
                Some(s) if !s.trim().is_empty() => {}
                _ => {
                    return Err(manifest_error(
                        source,
                        v.line,
                        format!(
                            "`{field}` must be a non-empty string, found {}",
                            if v.value == Value::Null {
                                "nothing".to_string()
                            } else {
                                format!("a {}", v.type_name())
                            }
                        ),
                    ));
                }
            },
        }
    }
    if is_list(node) {
        return Ok(());
    }
    let metadata = node.get("metadata");
    let name = metadata.and_then(|m| m.get("name"));
    let generate_name = metadata.and_then(|m| m.get("generateName"));
    let has = |n: Option<&Node>| n.and_then(Node::as_str).is_some_and(|s| !s.is_empty());
    if !has(name) && !has(generate_name) {
        let line = node.key_node("metadata").map_or(node.line, |m| m.line);
        return Err(manifest_error(
            source,
            line,
            "missing `metadata.name` (or `metadata.generateName`)",
        ));
    }
    Ok(())
}

/// 1-based line of a byte offset.
fn line_at(bytes: &[u8], offset: usize) -> u32 {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u32
}

/// Split on document markers (`---` at column 0) and reject a document over the cap before
/// the parser materialises it.
pub fn check_sizes(file: &str, text: &str, cap: usize) -> Result<(), RenderError> {
    if text.len() <= cap {
        return Ok(());
    }
    let mut start = 0usize;
    let mut start_line = 1u32;
    let mut document = 0usize;
    let mut offset = 0usize;
    let check = |from: usize, to: usize, doc: usize, at: u32| {
        if to - from > cap {
            Err(RenderError::Oversized {
                file: file.to_string(),
                document: doc,
                line: at,
                bytes: to - from,
                cap,
            })
        } else {
            Ok(())
        }
    };
    for (line, raw) in (1u32..).zip(text.split_inclusive('\n')) {
        let is_marker = raw.starts_with("---")
            && raw[3..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == '\t' || c == '\n' || c == '\r');
        if is_marker {
            check(start, offset, document, start_line)?;
            if !text[start..offset].trim().is_empty() {
                document += 1;
            }
            start = offset;
            start_line = line;
        }
        offset += raw.len();
    }
    check(start, text.len(), document, start_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Document>, RenderError> {
        parse_documents("m.yaml", text.as_bytes(), &Limits::default(), true)
    }

    #[test]
    fn multi_document_with_positions_and_empty_documents() {
        let docs = parse(
            "---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].source.line, 4);
        assert_eq!(docs[1].source.line, 10);
        assert!(docs[1].source.document > docs[0].source.document);
        assert_eq!(docs[1].value["metadata"]["name"], "b");
    }

    #[test]
    fn lists_are_expanded() {
        let docs = parse(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].source.line, 7);
        assert!(
            parse("apiVersion: v1\nkind: List\nitems: []\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn missing_fields_name_the_position() {
        let err = parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m.yaml:3: document 1: missing `metadata.name`"),
            "{err}"
        );
        let err = parse("kind: ConfigMap\nmetadata: {name: x}\n").unwrap_err();
        assert!(err.to_string().contains("missing `apiVersion`"), "{err}");
        let err = parse("kind:\n").unwrap_err();
        assert!(err.to_string().contains("missing `apiVersion`"), "{err}");
        let err = parse("apiVersion: v1\nkind:\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("`kind` must be a non-empty string, found nothing"),
            "{err}"
        );
        let err = parse("- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("found a sequence"), "{err}");
    }

    #[test]
    fn syntax_and_duplicate_keys_carry_file_line_col() {
        let err = parse("apiVersion: v1\nkind: ConfigMap\nkind: Secret\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.yaml:3:1: duplicate key `kind` (first defined at line 2)"
        );
        let err = parse("a: [1, 2\n").unwrap_err();
        assert!(matches!(err, RenderError::Syntax { .. }), "{err}");
        assert!(err.to_string().starts_with("m.yaml:"));
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let big = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: b}}\ndata:\n  x: \"{}\"\n",
            "y".repeat(2000)
        );
        let limits = Limits {
            max_document_bytes: 1000,
            ..Limits::default()
        };
        let err = parse_documents("big.yaml", big.as_bytes(), &limits, false).unwrap_err();
        match err {
            RenderError::Oversized { line, document, .. } => {
                assert_eq!(line, 4);
                assert_eq!(document, 1);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn alias_bombs_are_errors() {
        let mut src = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\na: &a [x, x, x, x, x, x, x, x, x, x]\n",
        );
        let mut prev = 'a';
        for name in 'b'..='k' {
            src.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        let err = parse(&src).unwrap_err();
        assert!(err.to_string().contains("alias"), "{err}");
        assert!(err.to_string().starts_with("m.yaml:"), "{err}");
    }

    #[test]
    fn json_with_tabs_is_read() {
        let docs = parse_documents(
            "x.json",
            b"{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"ConfigMap\",\n\t\"metadata\": {\"name\": \"a\"}\n}\n",
            &Limits::default(),
            false,
        )
        .unwrap();
        assert_eq!(docs[0].value["kind"], "ConfigMap");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(src in "\\PC{0,300}") {
            let _ = parse(&src);
        }
    }
}
