//! Canonical JSON for decision records and input digests: the workspace's one canonical form,
//! `sluice_model::canonical` (RFC 8785 key order), which evidence statements use too; this
//! module adds the `sha256:<hex>` digests the policy engine names inputs and records by.

use sha2::{Digest, Sha256};

pub use sluice_model::canonical::{MAX_READ_DEPTH, Readback, to_string, to_string_checked};

/// `sha256:<hex>` of the canonical form of `value`.
pub fn digest(value: &serde_json::Value) -> String {
    digest_bytes(to_string(value).as_bytes())
}

/// `sha256:<hex>` of raw bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            digest(&json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn decision_records_and_evidence_share_one_canonical_form() {
        let v = json!({"\u{fb01}": [1, {"b": 2.5, "a": "\u{1}"}], "\u{1f600}": null});
        assert_eq!(
            to_string(&v).into_bytes(),
            sluice_model::canonical::to_vec(&v)
        );
        assert_eq!(
            to_string(&v),
            "{\"\u{1f600}\":null,\"\u{fb01}\":[1,{\"a\":\"\\u0001\",\"b\":2.5}]}"
        );
    }
}
