//! Canonical JSON: the byte form that decision records and input digests are computed over.
//!
//! Object keys are sorted by their UTF-8 bytes, there is no insignificant whitespace, strings use
//! serde_json's escaping and numbers its shortest round-trip form. Two equal `serde_json::Value`s
//! therefore always yield the same bytes, whatever order their keys were inserted in (the
//! workspace builds serde_json with `preserve_order`, so `to_string` alone would not do).

use sha2::{Digest, Sha256};

/// Serialise `value` canonically.
pub fn to_string(value: &serde_json::Value) -> String {
    let mut out = String::with_capacity(256);
    write(value, &mut out, &mut Readback::default());
    out
}

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
}

/// [`to_string`], also saying whether parsing the text gives back `value` (see [`Readback`]).
pub fn to_string_checked(value: &serde_json::Value) -> (String, Readback) {
    let mut out = String::with_capacity(256);
    let mut readback = Readback::default();
    write(value, &mut out, &mut readback);
    (out, readback)
}

/// `sha256:<hex>` of the canonical form of `value`.
pub fn digest(value: &serde_json::Value) -> String {
    digest_bytes(to_string(value).as_bytes())
}

/// `sha256:<hex>` of raw bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write(value: &serde_json::Value, out: &mut String, rb: &mut Readback) {
    use serde_json::Value as J;
    match value {
        J::Null => out.push_str("null"),
        J::Bool(true) => out.push_str("true"),
        J::Bool(false) => out.push_str("false"),
        J::Number(n) => {
            let text = n.to_string();
            // Integers always read back; a float does when the parser is exact for it.
            if rb.floats_exact && n.is_f64() {
                rb.floats_exact = serde_json::from_str::<f64>(&text).ok() == n.as_f64();
            }
            out.push_str(&text);
        }
        J::String(s) => write_str(s, out),
        J::Array(items) => {
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
        J::Object(map) => {
            rb.enter();
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
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

impl Readback {
    fn enter(&mut self) {
        self.depth += 1;
        self.max_depth = self.max_depth.max(self.depth);
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
            None => out.push_str(&format!("\\u{b:04x}")),
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, {"z": null, "a": true}], "a": "x\n\u0001" }"#)
                .unwrap();
        assert_eq!(
            to_string(&v),
            r#"{"a":"x\n\u0001","b":[1,2.5,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            digest(&json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            // Eighths are exact in binary, so parsing the text back is exact too.
            any::<i32>().prop_map(|i| serde_json::Value::from(f64::from(i) / 8.0)),
            "\\PC{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec(("[a-z\"\\\\]{0,4}", inner), 0..6)
                    .prop_map(|kv| { serde_json::Value::Object(kv.into_iter().collect()) }),
            ]
        })
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

    proptest! {
        #[test]
        fn checked_text_is_the_canonical_text_and_reads_back(v in arb_json(), f in any::<f64>()) {
            let v = json!([v, f.is_finite().then_some(f)]);
            let (text, rb) = to_string_checked(&v);
            prop_assert_eq!(&text, &to_string(&v));
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(rb.is_exact(), back == v);
        }

        #[test]
        fn canonical_form_parses_back_to_the_same_value(v in arb_json()) {
            let text = to_string(&v);
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &v);
            // Re-canonicalising is a fixed point, whatever the key insertion order was.
            prop_assert_eq!(to_string(&back), text);
        }

        #[test]
        fn key_order_does_not_matter(kv in prop::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..8)) {
            let fwd: serde_json::Map<String, serde_json::Value> = kv.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let rev: serde_json::Map<String, serde_json::Value> = kv.iter().rev().map(|(k, v)| (k.clone(), json!(v))).collect();
            prop_assert_eq!(to_string(&serde_json::Value::Object(fwd)), to_string(&serde_json::Value::Object(rev)));
        }
    }
}
