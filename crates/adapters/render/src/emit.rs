//! A YAML emitter for rendered objects, in the block style `kubectl kustomize` prints (list
//! items at their key's indentation). Strings are written plain only when every YAML reader
//! (1.1 and 1.2) reads them back as the same string; otherwise they are quoted, or written as
//! literal blocks when they span lines. Output is deterministic: the same value, the same bytes.

use std::fmt::Write as _;

use serde_json::Value;

/// One document (no `---` marker), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        scalar => {
            write_scalar(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

/// Several documents separated by `---`.
pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml(v));
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, level: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            indent(out, level);
        }
        write_string(out, k, level, true);
        out.push(':');
        write_value_after_key(out, v, level);
    }
}

fn write_value_after_key(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            indent(out, level + 2);
            write_map(out, m, level + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            indent(out, level);
            write_seq(out, a, level);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            indent(out, level);
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => write_map(out, m, level + 2),
            Value::Array(a) if !a.is_empty() => write_seq(out, a, level + 2),
            scalar => {
                write_scalar(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar (or an empty collection) at the current position; `block_indent` is the
/// indentation of a literal block's content.
fn write_scalar(out: &mut String, v: &Value, block_indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s, block_indent, false),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

fn write_string(out: &mut String, s: &str, block_indent: usize, is_key: bool) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if !is_key && can_be_literal_block(s) {
        write_literal(out, s, block_indent);
    } else {
        write_double_quoted(out, s);
    }
}

/// Strings YAML 1.1 or 1.2 would read as something else, or that need quoting to parse.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s || s.len() > 1024 {
        return false;
    }
    if "?:,[]{}#&*!|>'\"%@`".contains(first) || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    // `-x` is a plain scalar; `- x` and `-` are not.
    if first == '-' && s[1..].chars().next().is_none_or(|c| c == ' ') {
        return false;
    }
    // Anything a YAML 1.1 or 1.2 reader might take for a number or a timestamp (ints in any
    // base, 1_000, floats, 1.5.0, 1:30, 2024-01-01, .5, +1, -1e3) is quoted; `250m` and
    // `256Mi` are not numbers and stay plain, as kubectl prints them.
    if (first.is_ascii_digit() || matches!(first, '.' | '+' | '-'))
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || "+-._:xXoObB ".contains(c))
    {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if s.chars().any(|c| {
        c.is_control() || c == '\u{feff}' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}'
    }) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "null"
            | "~"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".inf"
            | ".nan"
            | "<<"
            | "="
    )
}

/// Multi-line text of printable characters reads best as a literal block.
fn can_be_literal_block(s: &str) -> bool {
    s.contains('\n')
        && s.trim_end_matches('\n').contains(|c: char| c != '\n')
        && !s
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{feff}' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}')
        // Trailing spaces on a line survive a literal block, but editors and diff tools mangle
        // them; and a first line that starts with spaces needs an indentation indicator, which
        // we give below.
        && !s.lines().any(|l| l.ends_with(' ') || l.ends_with('\t'))
}

fn write_literal(out: &mut String, s: &str, block_indent: usize) {
    let block_indent = block_indent.max(2);
    let trailing = s.len() - s.trim_end_matches('\n').len();
    out.push('|');
    // A reader takes the block's indentation from its first line that is not empty, so a
    // first text line (after any empty ones) that starts with spaces needs the indicator.
    if s.split('\n')
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with(' '))
    {
        let _ = write!(out, "{}", 2);
    }
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    let body = s.trim_end_matches('\n');
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, block_indent);
            out.push_str(line);
        }
    }
    // Keep trailing newlines for `+`; the final newline comes from the caller.
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn round_trip(v: &Value) -> Value {
        let text = to_yaml(v);
        let node = sluice_model::yaml::parse_one(&text)
            .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e}\n{text}"));
        node.to_json()
    }

    #[test]
    fn kubectl_style_layout() {
        let mut v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {}},
            "spec": {"template": {"spec": {"containers": [{"image": "nginx:1.27", "name": "web", "args": ["--port", "80", "-1"]}]}}}});
        crate::normalize::sort_keys(&mut v);
        insta::assert_snapshot!(to_yaml(&v), @r#"
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          labels: {}
          name: web
        spec:
          template:
            spec:
              containers:
              - args:
                - --port
                - "80"
                - "-1"
                image: nginx:1.27
                name: web
        "#);
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        let v = json!({"a": "yes", "b": "1.5", "c": "", "d": "true", "e": "- x", "f": "x: y", "g": "0x1F", "h": "null", "5": "five", "i": "plain text"});
        let text = to_yaml(&v);
        assert!(text.contains("a: \"yes\"\n"), "{text}");
        assert!(text.contains("\"5\": five\n"), "{text}");
        assert!(text.contains("i: plain text\n"), "{text}");
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let v = json!({"script": "#!/bin/sh\necho hi\n", "nochomp": "a\nb", "keep": "a\n\n", "lead": "  indented\nx\n",
            "empty-then-lead": "\n A", "empties-then-lead": "\n\n  b\nc\n", "seq": ["\n A"]});
        let text = to_yaml(&v);
        assert!(
            text.contains("script: |\n  #!/bin/sh\n  echo hi\n"),
            "{text}"
        );
        assert_eq!(round_trip(&v), v);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[ -~\\n\\t]{0,30}".prop_map(Value::String),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z0-9_.:/ -]{1,12}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn emitted_yaml_reads_back_as_the_same_value(v in json_value()) {
            prop_assert_eq!(round_trip(&v), v);
        }
    }
}
