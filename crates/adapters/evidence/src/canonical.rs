//! Canonical JSON for signed payloads and envelope digests: object keys sorted (by UTF-16 code
//! units, as RFC 8785 JCS sorts them), no insignificant whitespace, strings escaped the JSON way
//! (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u00xx` for other control characters, everything
//! else as UTF-8). The same value always yields the same bytes, so digests are stable no matter
//! how a bundle file was re-indented. sluice emits integers only; a float in free-form details is
//! written in its shortest round-trip form.

use serde::Serialize;
use serde_json::Value;

/// Canonical bytes of any serialisable value.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    Ok(value_to_vec(&value))
}

/// Canonical bytes of a JSON value.
pub fn value_to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            serde_json::to_writer(&mut *out, n).expect("writing a number to a Vec cannot fail")
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is exactly the JCS one; reuse it rather than re-derive it.
    serde_json::to_writer(&mut *out, s).expect("writing a str to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The number forms docs/evidence.md specifies for verifiers (not RFC 8785's).
    #[test]
    fn numbers_are_written_as_the_docs_say() {
        let cases = [
            (json!(-3), "-3"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(1.0), "1.0"),
            (json!(0.5), "0.5"),
            (json!(1e16), "1e+16"),
            (json!(1.5e-7), "1.5e-7"),
            (json!(1e21), "1e+21"),
            (json!(0.00001), "0.00001"),
            (json!(0.000001), "1e-6"),
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|(v, _)| String::from_utf8(value_to_vec(v)).unwrap())
            .collect();
        let want: Vec<&str> = cases.iter().map(|(_, t)| *t).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v = json!({"b": [1, {"z": null, "a": true}], "a": "x\ny", "é": 1, "Z": -3});
        assert_eq!(
            String::from_utf8(value_to_vec(&v)).unwrap(),
            r#"{"Z":-3,"a":"x\ny","b":[1,{"a":true,"z":null}],"é":1}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units_like_jcs() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16, so it sorts before U+FB01; in UTF-8
        // byte order (F0.. vs EF..) it would sort after.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(
            String::from_utf8(value_to_vec(&v)).unwrap(),
            "{\"\u{1f600}\":2,\"\u{fb01}\":1}"
        );
    }

    #[test]
    fn escapes_control_characters() {
        let v = json!({"k": "\u{1}\t\"\\"});
        assert_eq!(
            String::from_utf8(value_to_vec(&v)).unwrap(),
            r#"{"k":"\u0001\t\"\\"}"#
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips_and_is_a_fixed_point(v in arb_json()) {
            let bytes = value_to_vec(&v);
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(value_to_vec(&back), bytes);
        }

        #[test]
        fn key_order_of_the_input_does_not_matter(
            m in prop::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..8)
        ) {
            let forward: serde_json::Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let reverse: serde_json::Map<String, Value> =
                m.iter().rev().map(|(k, v)| (k.clone(), json!(v))).collect();
            prop_assert_eq!(
                value_to_vec(&Value::Object(forward)),
                value_to_vec(&Value::Object(reverse))
            );
        }
    }
}
