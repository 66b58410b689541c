//! YAML with positions.
//!
//! Every YAML document sluice reads (its own `sluice.yaml`, Kustomize files, Kubernetes manifests)
//! goes through this module so that a diagnostic can always name a line and column. It builds a
//! small node tree from saphyr's event stream and enforces what serde-style loaders silently
//! accept: duplicate keys are errors, and alias expansion has a budget so that a "billion laughs"
//! document fails fast instead of exhausting memory.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// Upper bound on nodes materialised through aliases in one stream (alias bombs).
pub const DEFAULT_ALIAS_BUDGET: usize = 100_000;

/// A YAML node and where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique (checked while loading).
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax or structure error at a position (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct YamlError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under a string key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node (for its position) of a string key of a mapping.
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    /// The node a dotted field path names (`plan.redact.secret_names[1]`,
    /// `policy.builtin.overrides.sg-open-ingress.outcome`), as the loaders of `sluice.yaml`
    /// sections name a bad field; or, when the path leaves the document (a missing or unknown
    /// field), the deepest node it reached, so that an error still points into the right
    /// block. A mapping key may itself contain dots: the longest key that fits is taken.
    pub fn at_field(&self, path: &str) -> &Node {
        let mut node = self;
        let mut rest = path.trim_start_matches('.');
        while !rest.is_empty() {
            let next = match &node.value {
                Value::Seq(items) => rest
                    .strip_prefix('[')
                    .and_then(|r| r.split_once(']'))
                    .and_then(|(i, after)| {
                        let item = items.get(i.parse::<usize>().ok()?)?;
                        Some((item, after))
                    }),
                Value::Map(entries) => entries
                    .iter()
                    .filter_map(|(k, v)| {
                        let key = k.scalar_text()?;
                        let after = rest.strip_prefix(key.as_str())?;
                        (after.is_empty() || after.starts_with(['.', '['])).then_some((
                            key.len(),
                            v,
                            after,
                        ))
                    })
                    .max_by_key(|(len, _, _)| *len)
                    .map(|(_, v, after)| (v, after)),
                _ => None,
            };
            let Some((child, after)) = next else {
                break;
            };
            node = child;
            rest = after.trim_start_matches('.');
        }
        node
    }

    /// Human name of the node's type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }

    /// Scalar rendered as text (keys of any scalar type are used as strings by Kubernetes tools).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The node as JSON (mapping keys become strings); positions are dropped.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scalar_text() {
            Some(s) => f.write_str(&s),
            None => f.write_str(self.type_name()),
        }
    }
}

/// Parse every document of a YAML stream. Empty documents are returned as `Null` nodes so that
/// document indexes stay aligned with the `---` separators a user counts.
pub fn parse_stream(src: &str) -> Result<Vec<Node>, YamlError> {
    parse_stream_with_budget(src, DEFAULT_ALIAS_BUDGET)
}

/// saphyr's message for a quoted scalar whose continuation line is indented less than the
/// block it sits in. libyaml and go-yaml (so `kubectl`) accept such scalars, and real manifests
/// have them (shell scripts in a container's `command`).
const QUOTED_INDENT: &str = "invalid indentation in quoted scalar";

/// At most this many such scalars are repaired per stream (each repair re-parses).
const MAX_QUOTED_REPAIRS: usize = 64;

pub fn parse_stream_with_budget(src: &str, alias_budget: usize) -> Result<Vec<Node>, YamlError> {
    let mut text = std::borrow::Cow::Borrowed(src);
    for _ in 0..MAX_QUOTED_REPAIRS {
        match parse_events(&text, alias_budget) {
            Err(e) if e.message == QUOTED_INDENT => match indent_quoted(&text, e.line, e.col) {
                Some(repaired) => text = std::borrow::Cow::Owned(repaired),
                None => return Err(e),
            },
            other => return other,
        }
    }
    parse_events(&text, alias_budget)
}

/// The stream with the continuation lines of the quoted scalar starting at `line`:`col`
/// (1-based) indented to the scalar's own column. Leading white space of a quoted scalar's
/// continuation lines is not part of its value (YAML 1.2 §7.3, line folding), so the value is
/// unchanged; line numbers are too. `None` if no quoted scalar starts there or it never ends.
fn indent_quoted(src: &str, line: u32, col: u32) -> Option<String> {
    let line_start = if line <= 1 {
        0
    } else {
        src.match_indices('\n').nth(line as usize - 2)?.0 + 1
    };
    let target = col.saturating_sub(1) as usize;
    let (quote_at, quote) = src[line_start..]
        .char_indices()
        .nth(target)
        .map(|(i, c)| (line_start + i, c))?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let mut out = String::with_capacity(src.len() + 64);
    out.push_str(&src[..=quote_at]);
    let mut chars = src[quote_at + 1..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        out.push(c);
        match c {
            '\\' if quote == '"' => {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                    if next == '\n' {
                        pad_line(&src[quote_at + 1 + i + 2..], target, &mut out);
                    }
                }
            }
            '\'' if quote == '\'' => {
                if chars.peek().map(|(_, c)| *c) == Some('\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    out.push_str(&src[quote_at + 1 + i + 1..]);
                    return Some(out);
                }
            }
            '"' if quote == '"' => {
                out.push_str(&src[quote_at + 1 + i + 1..]);
                return Some(out);
            }
            '\n' => pad_line(&src[quote_at + 1 + i + 1..], target, &mut out),
            _ => {}
        }
    }
    None
}

/// Spaces so that the line `rest` begins reaches column `target`.
fn pad_line(rest: &str, target: usize, out: &mut String) {
    let spaces = rest.bytes().take_while(|b| *b == b' ').count();
    if spaces < target && !rest.starts_with('\n') {
        out.extend(std::iter::repeat_n(' ', target - spaces));
    }
}

fn parse_events(src: &str, alias_budget: usize) -> Result<Vec<Node>, YamlError> {
    let mut builder = Builder {
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: HashMap::new(),
        alias_budget,
    };
    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(scan_error)?;
        builder.event(event, span)?;
    }
    Ok(builder.docs)
}

/// Parse a stream that must hold exactly one document (an empty stream is `Null`).
pub fn parse_one(src: &str) -> Result<Node, YamlError> {
    let mut docs = parse_stream(src)?;
    match docs.len() {
        0 => Ok(Node {
            value: Value::Null,
            line: 1,
            col: 1,
        }),
        1 => Ok(docs.remove(0)),
        _ => Err(YamlError {
            line: docs[1].line,
            col: docs[1].col,
            message: "expected a single YAML document, found several".into(),
        }),
    }
}

fn scan_error(e: ScanError) -> YamlError {
    let m = e.marker();
    YamlError {
        line: m.line() as u32,
        col: m.col() as u32 + 1,
        message: e.info().to_string(),
    }
}

enum Frame {
    Seq {
        node: Node,
        anchor: usize,
    },
    Map {
        node: Node,
        anchor: usize,
        pending_key: Option<Node>,
        /// Indexes of entries that came from `<<` merges; an explicit key may override them.
        merged: Vec<usize>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    alias_budget: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let (line, col) = (span.start.line() as u32, span.start.col() as u32 + 1);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => self.anchors.clear(),
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(YamlError {
                        line,
                        col,
                        message: "alias refers to an unknown anchor".into(),
                    });
                };
                let cost = count_nodes(target);
                if cost > self.alias_budget {
                    return Err(YamlError {
                        line,
                        col,
                        message: "alias expansion exceeds the budget (possible alias bomb)".into(),
                    });
                }
                self.alias_budget -= cost;
                let mut node = target.clone();
                node.line = line;
                node.col = col;
                self.push_value(node)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                let node = Node { value, line, col };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                node: Node {
                    value: Value::Seq(Vec::new()),
                    line,
                    col,
                },
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                node: Node {
                    value: Value::Map(Vec::new()),
                    line,
                    col,
                },
                anchor,
                pending_key: None,
                merged: Vec::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { node, anchor }) | Some(Frame::Map { node, anchor, .. }) => {
                        (node, anchor)
                    }
                    None => return Ok(()),
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node)?;
            }
        }
        Ok(())
    }

    fn push_value(&mut self, node: Node) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { node: seq, .. }) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map {
                node: map,
                pending_key,
                merged,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    let Value::Map(entries) = &mut map.value else {
                        return Ok(());
                    };
                    if key.as_str() == Some("<<") {
                        merge_into(entries, merged, node);
                        return Ok(());
                    }
                    match entries.iter().position(|(k, _)| k.value == key.value) {
                        Some(i) if merged.contains(&i) => {
                            merged.retain(|m| *m != i);
                            entries[i] = (key, node);
                        }
                        Some(i) => {
                            return Err(YamlError {
                                line: key.line,
                                col: key.col,
                                message: format!(
                                    "duplicate key `{key}` (first defined at line {})",
                                    entries[i].0.line
                                ),
                            });
                        }
                        None => entries.push((key, node)),
                    }
                }
            },
        }
        Ok(())
    }
}

/// `<<: *base` merge keys: explicit entries win over merged ones, as in YAML 1.1 and kubectl.
fn merge_into(entries: &mut Vec<(Node, Node)>, merged_at: &mut Vec<usize>, merged: Node) {
    let sources = match merged.value {
        Value::Map(m) => vec![m],
        Value::Seq(items) => items
            .into_iter()
            .filter_map(|n| match n.value {
                Value::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => return,
    };
    for source in sources {
        for (k, v) in source {
            if !entries.iter().any(|(e, _)| e.value == k.value) {
                merged_at.push(entries.len());
                entries.push((k, v));
            }
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    } else if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    } else if looks_numeric(text) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

/// Rust's float parser accepts "inf" and "nan"; YAML does not, so gate on the YAML number shape.
fn looks_numeric(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse_one("a: 1\nb:\n  c: [x, y]\n").unwrap();
        let b = doc.get("b").unwrap();
        let c = b.get("c").unwrap();
        assert_eq!((c.line, c.col), (3, 6));
        assert_eq!(doc.key_node("b").unwrap().line, 2);
        assert_eq!(doc.get("a").unwrap().value, Value::Int(1));
    }

    #[test]
    fn duplicate_keys_are_errors_with_position() {
        let err = parse_one("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((err.line, err.col), (3, 1));
        assert!(err.message.contains("duplicate key `a`"), "{err}");
    }

    #[test]
    fn syntax_errors_carry_position() {
        let err = parse_one("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.line >= 1);
    }

    #[test]
    fn alias_bomb_hits_budget() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in 'b'..='k' {
            src.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        let err = parse_stream(&src).unwrap_err();
        assert!(err.message.contains("alias"), "{err}");
    }

    #[test]
    fn merge_keys_and_multi_documents() {
        let docs =
            parse_stream("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n---\n---\nk: v\n").unwrap();
        assert_eq!(docs.len(), 3);
        let d = docs[0].get("d").unwrap();
        assert_eq!(d.get("x").unwrap().value, Value::Int(1));
        assert_eq!(d.get("y").unwrap().value, Value::Int(3));
        assert_eq!(docs[1].value, Value::Null);
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let doc = parse_one("a: \"1\"\nb: 'true'\nc: yes\nd: 1.5\ne: inf\n").unwrap();
        assert_eq!(doc.get("a").unwrap().value, Value::Str("1".into()));
        assert_eq!(doc.get("b").unwrap().value, Value::Str("true".into()));
        assert_eq!(doc.get("c").unwrap().value, Value::Str("yes".into()));
        assert_eq!(doc.get("d").unwrap().value, Value::Float(1.5));
        assert_eq!(doc.get("e").unwrap().value, Value::Str("inf".into()));
    }

    /// The shape of real StatefulSets' `command` scripts: continuation lines of a quoted scalar
    /// indented less than the sequence it sits in. kubectl (go-yaml) accepts them.
    #[test]
    fn under_indented_quoted_scalars_parse_as_kubectl_reads_them() {
        let src = "spec:\n  containers:\n    - name: db\n      command:\n        - sh\n        - -c\n        - \"set -e\n  if [ -f /x ]; then\n\n    echo 'ok'; fi\"\n        - 'a\nb ''c'''\n      image: x\n";
        let doc = parse_one(src).unwrap();
        let c = &doc
            .get("spec")
            .unwrap()
            .get("containers")
            .unwrap()
            .as_seq()
            .unwrap()[0];
        let cmd: Vec<String> = c
            .get("command")
            .unwrap()
            .as_seq()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            cmd,
            [
                "sh",
                "-c",
                "set -e if [ -f /x ]; then\necho 'ok'; fi",
                "a b 'c'"
            ]
        );
        assert_eq!(c.get("image").unwrap().line, 13);
        // An unterminated scalar is still an error at its position.
        let err = parse_stream("a:\n  - \"x\n y\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn field_paths_find_their_node() {
        let doc = parse_one(
            "plan:\n  engine: tofu\n  redact:\n    secret_names: [a, \"(\"]\npolicy:\n  builtin:\n    overrides:\n      sg.open: { outcome: maybe }\n",
        )
        .unwrap();
        let at = |p: &str| {
            let n = doc.at_field(p);
            (n.line, n.col)
        };
        assert_eq!(at("plan.engine"), (2, 11));
        assert_eq!(at("plan.redact.secret_names[1]"), (4, 23));
        // A key with a dot in it, then a field below it.
        assert_eq!(at("policy.builtin.overrides.sg.open.outcome"), (8, 27));
        // Unknown fields and indexes out of range stop at the deepest node reached.
        assert_eq!(at("plan.redact.nope"), (4, 5));
        assert_eq!(at("plan.redact.secret_names[9]"), (4, 19));
        assert_eq!(at(""), (1, 1));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(src in "\\PC{0,200}") {
            let _ = parse_stream(&src);
        }

        #[test]
        fn plain_strings_round_trip_through_json(key in "[a-z]{1,8}", val in "[a-z][a-z0-9 ]{0,20}[a-z0-9]") {
            let doc = parse_one(&format!("{key}: {val}\n")).unwrap();
            let expected = match resolve_plain(&val) { Value::Str(s) => serde_json::Value::String(s), Value::Null => serde_json::Value::Null, Value::Bool(b) => serde_json::Value::Bool(b), _ => return Ok(()) };
            proptest::prop_assert_eq!(doc.to_json()[&key].clone(), expected);
        }
    }
}
