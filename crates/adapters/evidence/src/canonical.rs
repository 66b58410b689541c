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
