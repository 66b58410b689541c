//! Canonical JSON for signed payloads and envelope digests: the workspace's one canonical form,
//! `sluice_model::canonical` (RFC 8785 key order, the bytes policy decision records are digested
//! over too). The same value always yields the same bytes, so digests are stable no matter how a
//! bundle file was re-indented.

use serde::Serialize;
use serde_json::Value;

/// Canonical bytes of any serialisable value.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    Ok(value_to_vec(&value))
}

/// Canonical bytes of a JSON value.
pub fn value_to_vec(value: &Value) -> Vec<u8> {
    sluice_model::canonical::to_vec(value)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn serialisable_values_take_the_canonical_form() {
        #[derive(Serialize)]
        struct S {
            z: u8,
            a: &'static str,
        }
        assert_eq!(
            to_vec(&S { z: 1, a: "x\ny" }).unwrap(),
            br#"{"a":"x\ny","z":1}"#.to_vec()
        );
        assert_eq!(
            value_to_vec(&json!({"\u{fb01}": 1, "\u{1f600}": 2})),
            "{\"\u{1f600}\":2,\"\u{fb01}\":1}".as_bytes()
        );
    }
}
