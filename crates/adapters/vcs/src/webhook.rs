//! Receiving a GitHub webhook delivery: size limit, signature, headers, then parsing (DESIGN.md §8).
//!
//! The order is the point. The body's size is checked first, then its `X-Hub-Signature-256`
//! HMAC-SHA256 over the raw bytes (compared in constant time), and only a delivery that proves it
//! came from the holder of the secret is parsed at all: a forged body never reaches serde. The
//! server maps each [`WebhookError`] to an HTTP status; this module only says what is wrong.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::event::{Event, EventName, PayloadError};

/// The largest body accepted. GitHub caps webhook payloads at 25 MB and does not deliver larger
/// ones, so anything above this did not come from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Header names GitHub sends with every delivery (lower case, as `http` stores them).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const DELIVERY_HEADER: &str = "x-github-delivery";
pub const EVENT_HEADER: &str = "x-github-event";

/// Longest delivery id accepted; GitHub's are 36-character GUIDs.
const MAX_DELIVERY_ID_LEN: usize = 64;

/// The webhook secret shared with GitHub (from `SLUICE_GITHUB_WEBHOOK_SECRET`). Its `Debug`
/// never shows the bytes.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// An empty secret would make every signature forgeable, so it is refused.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, WebhookError> {
        let bytes = secret.into();
        if bytes.is_empty() {
            return Err(WebhookError::EmptySecret);
        }
        Ok(WebhookSecret(bytes))
    }

    /// `sha256=<hex>` for `body`: what GitHub puts in `X-Hub-Signature-256`. Used by load
    /// generators and tests that replay deliveries.
    pub fn sign(&self, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(self.mac(body).finalize().into_bytes())
        )
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        mac
    }

    /// Check `header` (the value of `X-Hub-Signature-256`) against `body` in constant time.
    pub fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<(), WebhookError> {
        let header = header.ok_or(WebhookError::MissingSignature)?;
        let tag = parse_signature(header)?;
        // `verify_slice` compares with `subtle`'s constant-time equality.
        self.mac(body)
            .verify_slice(&tag)
            .map_err(|_| WebhookError::SignatureMismatch)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The 32-byte tag from `sha256=<64 hex digits>`.
fn parse_signature(header: &str) -> Result<[u8; 32], WebhookError> {
    let malformed = |reason: &'static str| WebhookError::MalformedSignature { reason };
    let hex_digits = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(malformed("expected `sha256=` followed by 64 hex digits"))?;
    if hex_digits.len() != 64 {
        return Err(malformed("the digest must be 64 hex digits"));
    }
    let mut tag = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut tag)
        .map_err(|_| malformed("the digest is not hexadecimal"))?;
    Ok(tag)
}

/// `X-GitHub-Delivery`: GitHub's id for one delivery, the same on a redelivery, so the server
/// deduplicates on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_DELIVERY_ID_LEN
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(DeliveryId(text.to_owned()))
        } else {
            Err(WebhookError::MalformedDeliveryId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The three headers a delivery is judged by, borrowed from whatever request type the server has.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryHeaders<'a> {
    pub signature: Option<&'a str>,
    pub delivery: Option<&'a str>,
    pub event: Option<&'a str>,
}

impl<'a> DeliveryHeaders<'a> {
    /// A header that is not valid UTF-8 counts as absent (and is then reported as missing).
    pub fn from_map(headers: &'a http::HeaderMap) -> Self {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        DeliveryHeaders {
            signature: get(SIGNATURE_HEADER),
            delivery: get(DELIVERY_HEADER),
            event: get(EVENT_HEADER),
        }
    }
}

/// A verified, parsed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event: Event,
}

/// Why a delivery was rejected. Everything before [`WebhookError::Payload`] is decided without
/// parsing the body.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook secret is empty")]
    EmptySecret,
    #[error("body of {len} bytes is over the {limit}-byte limit")]
    BodyTooLarge { len: usize, limit: usize },
    #[error("missing X-Hub-Signature-256 header")]
    MissingSignature,
    #[error("malformed X-Hub-Signature-256 header: {reason}")]
    MalformedSignature { reason: &'static str },
    #[error("X-Hub-Signature-256 does not match the body (wrong secret or altered body)")]
    SignatureMismatch,
    #[error("missing X-GitHub-Delivery header")]
    MissingDeliveryId,
    #[error("malformed X-GitHub-Delivery header: expected up to 64 letters, digits and `-`")]
    MalformedDeliveryId,
    #[error("missing X-GitHub-Event header")]
    MissingEvent,
    #[error("malformed X-GitHub-Event header: expected lower-case letters and `_`")]
    MalformedEvent,
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

impl WebhookError {
    /// True when the delivery could not be shown to come from GitHub (the server answers 401).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            WebhookError::MissingSignature
                | WebhookError::MalformedSignature { .. }
                | WebhookError::SignatureMismatch
        )
    }
}

/// Judge one delivery: size, signature, delivery id, event name, and only then the payload.
pub fn receive(
    secret: &WebhookSecret,
    headers: DeliveryHeaders<'_>,
    body: &[u8],
) -> Result<Delivery, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::BodyTooLarge {
            len: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    secret.verify(headers.signature, body)?;
    let id = DeliveryId::parse(headers.delivery.ok_or(WebhookError::MissingDeliveryId)?)?;
    let event = EventName::parse(headers.event.ok_or(WebhookError::MissingEvent)?)
        .ok_or(WebhookError::MalformedEvent)?;
    let event = Event::parse(&event, body)?;
    Ok(Delivery { id, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example in GitHub's "Validating webhook deliveries" documentation.
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secret() -> WebhookSecret {
        WebhookSecret::new(DOC_SECRET).unwrap()
    }

    #[test]
    fn matches_githubs_documented_example() {
        assert_eq!(secret().sign(DOC_BODY), DOC_SIGNATURE);
        secret().verify(Some(DOC_SIGNATURE), DOC_BODY).unwrap();
    }

    #[test]
    fn missing_malformed_and_wrong_signatures_are_distinct() {
        let s = secret();
        assert!(matches!(
            s.verify(None, DOC_BODY),
            Err(WebhookError::MissingSignature)
        ));
        for bad in [
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "",
        ] {
            let err = s.verify(Some(bad), DOC_BODY).unwrap_err();
            assert!(
                matches!(err, WebhookError::MalformedSignature { .. }),
                "{bad}: {err}"
            );
            assert!(err.is_unauthenticated());
        }
        // Right shape, wrong secret; and the right signature over an altered body.
        let other = WebhookSecret::new("another secret").unwrap();
        assert!(matches!(
            other.verify(Some(DOC_SIGNATURE), DOC_BODY),
            Err(WebhookError::SignatureMismatch)
        ));
        assert!(matches!(
            s.verify(Some(DOC_SIGNATURE), b"Hello, World?"),
            Err(WebhookError::SignatureMismatch)
        ));
    }

    #[test]
    fn empty_secret_is_refused_and_debug_hides_the_secret() {
        assert!(matches!(
            WebhookSecret::new(""),
            Err(WebhookError::EmptySecret)
        ));
        assert!(!format!("{:?}", secret()).contains("Secret to Everybody"));
    }

    #[test]
    fn checks_size_then_signature_before_looking_at_the_body() {
        let s = secret();
        // Not JSON at all, but unsigned: the signature error wins, so nothing was parsed.
        let headers = DeliveryHeaders {
            signature: None,
            delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            event: Some("push"),
        };
        assert!(matches!(
            receive(&s, headers, b"not json"),
            Err(WebhookError::MissingSignature)
        ));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let headers = DeliveryHeaders {
            signature: Some(DOC_SIGNATURE),
            ..headers
        };
        assert!(matches!(
            receive(&s, headers, &big),
            Err(WebhookError::BodyTooLarge { len, .. }) if len == MAX_BODY_BYTES + 1
        ));
    }

    #[test]
    fn delivery_and_event_headers_are_required_and_checked() {
        let s = secret();
        let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
        let sig = s.sign(body);
        let good = DeliveryHeaders {
            signature: Some(&sig),
            delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            event: Some("ping"),
        };
        let ok = receive(&s, good, body).unwrap();
        assert_eq!(ok.id.as_str(), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        type Expect = fn(&WebhookError) -> bool;
        let cases: [(DeliveryHeaders, Expect); 4] = [
            (
                DeliveryHeaders {
                    delivery: None,
                    ..good
                },
                |e| matches!(e, WebhookError::MissingDeliveryId),
            ),
            (
                DeliveryHeaders {
                    delivery: Some("../etc/passwd"),
                    ..good
                },
                |e| matches!(e, WebhookError::MalformedDeliveryId),
            ),
            (
                DeliveryHeaders {
                    event: None,
                    ..good
                },
                |e| matches!(e, WebhookError::MissingEvent),
            ),
            (
                DeliveryHeaders {
                    event: Some("Push Event"),
                    ..good
                },
                |e| matches!(e, WebhookError::MalformedEvent),
            ),
        ];
        for (headers, expected) in cases {
            let err = receive(&s, headers, body).unwrap_err();
            assert!(expected(&err), "{headers:?}: {err}");
            assert!(!err.is_unauthenticated());
        }
    }

    #[test]
    fn headers_are_read_from_an_http_header_map() {
        let mut map = http::HeaderMap::new();
        map.insert("X-Hub-Signature-256", DOC_SIGNATURE.parse().unwrap());
        map.insert("X-GitHub-Delivery", "abc-123".parse().unwrap());
        map.insert("X-GitHub-Event", "push".parse().unwrap());
        let h = DeliveryHeaders::from_map(&map);
        assert_eq!(h.signature, Some(DOC_SIGNATURE));
        assert_eq!(h.delivery, Some("abc-123"));
        assert_eq!(h.event, Some("push"));
    }

    proptest! {
        #[test]
        fn only_the_right_secret_and_body_verify(
            secret in prop::collection::vec(any::<u8>(), 1..64),
            body in prop::collection::vec(any::<u8>(), 0..512),
            flip in any::<prop::sample::Index>(),
            header in "\\PC{0,80}",
        ) {
            let s = WebhookSecret::new(secret).unwrap();
            let sig = s.sign(&body);
            prop_assert!(s.verify(Some(&sig), &body).is_ok());
            if !body.is_empty() {
                let mut altered = body.clone();
                altered[flip.index(body.len())] ^= 0x01;
                prop_assert!(matches!(s.verify(Some(&sig), &altered), Err(WebhookError::SignatureMismatch)));
            }
            // An arbitrary header never verifies unless it is the signature itself.
            if header.trim() != sig {
                prop_assert!(s.verify(Some(&header), &body).unwrap_err().is_unauthenticated());
            }
        }
    }
}
