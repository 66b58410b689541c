//! The one canonical JSON of sluice: the bytes that policy decision records, input digests,
//! signed statements and envelope digests are computed over.
//!
//! Object keys are sorted by their UTF-16 code units, as RFC 8785 (JCS) sorts them; there is no
//! insignificant whitespace; strings are escaped the JSON way (`\"`, `\\`, `\b`, `\f`, `\n`,
//! `\r`, `\t`, `\u00xx` in lowercase hex for the other control characters, everything else as
//! UTF-8); numbers are written as serde_json writes them: integers in decimal, floats in their
//! shortest round-trip form (`2.5`, `1e-7`, `1.0`; RFC 8785 would write `1` for the last, which
//! is why sluice's own records hold integers only). Two equal `serde_json::Value`s always
//! yield the same bytes whatever order their keys were inserted in (the workspace builds
//! serde_json with `preserve_order`, so `to_string` alone would not do).

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::Value;

/// Nesting a JSON reader accepts: serde_json's parser stops at 128 levels.
pub const MAX_READ_DEPTH: usize = 120;

/// Whether reading a canonical text back yields the value it was written from, as far as the
/// writer can tell: nesting within [`MAX_READ_DEPTH`] and every float written in a form that
/// parses back to the same float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readback {
    depth: usize,
    pub max_depth: usize,
    pub floats_exact: bool,
}

impl Default for Readback {
    fn default() -> Self {
        Readback {
            depth: 0,
            max_depth: 0,
            floats_exact: true,
        }
    }
}

impl Readback {
    pub fn is_exact(&self) -> bool {
        self.floats_exact && self.max_depth <= MAX_READ_DEPTH
    }

    fn enter(&mut self) {
        self.depth += 1;
        self.max_depth = self.max_depth.max(self.depth);
    }
}

/// The canonical text of `value`.
pub fn to_string(value: &Value) -> String {
    to_string_checked(value).0
}

/// [`to_string`], also saying whether parsing the text gives back `value` (see [`Readback`]).
pub fn to_string_checked(value: &Value) -> (String, Readback) {
    let mut out = String::with_capacity(256);
    let mut readback = Readback::default();
    write(value, &mut out, &mut readback);
    (out, readback)
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    to_string(value).into_bytes()
}

/// RFC 8785 key order: by UTF-16 code units. That is code point order (UTF-8 byte order) except
/// where a character above U+FFFF meets one in U+E000..U+FFFF: as a surrogate pair (D800..DFFF)
/// the former sorts first. Byte comparison up to the first differing character keeps the common
/// (ASCII) case as fast as a plain byte sort.
pub fn key_order(a: &str, b: &str) -> Ordering {
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    // Back up to the start of the character the difference is in.
    let mut at = common;
    while !a.is_char_boundary(at) {
        at -= 1;
    }
    match (a[at..].chars().next(), b[at..].chars().next()) {
        (Some(x), Some(y)) => {
            let utf16_rank = |c: char| {
                let c = c as u32;
                if c > 0xFFFF { 0xD800 } else { c }
            };
            match (x as u32 > 0xFFFF, y as u32 > 0xFFFF) {
                (true, false) | (false, true) => utf16_rank(x).cmp(&utf16_rank(y)),
                _ => x.cmp(&y),
            }
        }
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

fn write(value: &Value, out: &mut String, rb: &mut Readback) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            let start = out.len();
            let _ = write!(out, "{n}");
            // Integers always read back; a float does when the parser is exact for it.
            if rb.floats_exact && n.is_f64() {
                rb.floats_exact = serde_json::from_str::<f64>(&out[start..]).ok() == n.as_f64();
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            rb.enter();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out, rb);
            }
            out.push(']');
            rb.depth -= 1;
        }
        Value::Object(map) => {
            rb.enter();
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| key_order(a.0, b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write(v, out, rb);
            }
            out.push('}');
            rb.depth -= 1;
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `sha256:<hex>` of the canonical form of `value`: how decision records and policy inputs are named.
pub fn digest(value: &Value) -> String {
    digest_bytes(to_string(value).as_bytes())
}

/// `sha256:<hex>` of raw bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [1, 2.5, {"z": null, "a": true}], "a": "x\n\u0001", "é": 1, "Z": -3 }"#,
        )
        .unwrap();
        assert_eq!(
            to_string(&v),
            r#"{"Z":-3,"a":"x\n\u0001","b":[1,2.5,{"a":true,"z":null}],"é":1}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units_like_jcs() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16, so it sorts before U+FB01; in UTF-8
        // byte order (F0.. vs EF..) it would sort after.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2, "a\u{1f600}": 3, "a\u{e000}": 4, "a": 5});
        assert_eq!(
            to_string(&v),
            "{\"a\":5,\"a\u{1f600}\":3,\"a\u{e000}\":4,\"\u{1f600}\":2,\"\u{fb01}\":1}"
        );
    }

    #[test]
    fn escapes_like_serde_json() {
        for s in ["\u{1}\t\"\\", "\u{1f}\u{7f}\u{8}\u{c}\r", "plain é 😀"] {
            let mut mine = String::new();
            write_str(s, &mut mine);
            assert_eq!(mine, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn readback_flags_deep_nesting() {
        let mut deep = json!(1);
        for _ in 0..MAX_READ_DEPTH {
            deep = json!([deep]);
        }
        let (text, rb) = to_string_checked(&deep);
        assert_eq!(text, to_string(&deep));
        assert_eq!(rb.max_depth, MAX_READ_DEPTH);
        assert!(rb.is_exact());
        let (_, rb) = to_string_checked(&json!({ "a": deep }));
        assert!(!rb.is_exact());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            // Eighths are exact in binary, so parsing the text back is exact too.
            any::<i32>().prop_map(|i| Value::from(f64::from(i) / 8.0)),
            "\\PC{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,4}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn key_order_is_utf16_order(a in "\\PC{0,6}", b in "\\PC{0,6}") {
            prop_assert_eq!(key_order(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }

        #[test]
        fn checked_text_is_the_canonical_text_and_reads_back(v in arb_json(), f in any::<f64>()) {
            let v = json!([v, f.is_finite().then_some(f)]);
            let (text, rb) = to_string_checked(&v);
            prop_assert_eq!(&text, &to_string(&v));
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(rb.is_exact(), back == v);
        }

        #[test]
        fn canonical_form_parses_back_to_a_fixed_point(v in arb_json()) {
            let text = to_string(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(to_string(&back), text);
        }

        #[test]
        fn key_order_of_the_input_does_not_matter(
            kv in prop::collection::btree_map("\\PC{1,4}", any::<i32>(), 0..8)
        ) {
            let fwd: serde_json::Map<String, Value> =
                kv.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let rev: serde_json::Map<String, Value> =
                kv.iter().rev().map(|(k, v)| (k.clone(), json!(v))).collect();
            prop_assert_eq!(to_string(&Value::Object(fwd)), to_string(&Value::Object(rev)));
        }
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digest_is_sha256_of_the_canonical_bytes() {
        assert_eq!(
            digest(&json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            digest(&json!({"b": 1, "a": 2})),
            digest(&json!({"a": 2, "b": 1}))
        );
    }
}
