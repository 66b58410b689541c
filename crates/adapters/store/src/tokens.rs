//! Bearer tokens for sluice's HTTP surfaces (the read API today, the state backend next): made
//! once, shown once, stored as the SHA-256 of their secret, checked for a scope.
//!
//! A token reads `sluice_<id>_<secret>`: `id` (12 hex digits) is public and names the row;
//! `secret` (32 random bytes, base64url) is never stored. [`TokenStore::verify_token`] looks the
//! id up and compares the secret's hash in constant time; a revoked or unknown token and a wrong
//! secret are one answer, so a caller learns nothing about which ids exist.

use std::future::Future;

use base64::Engine as _;
use serde::Serialize;
use sha2::Digest as _;

use crate::error::{Result, StoreError};
use crate::records::UnixMillis;

const PREFIX: &str = "sluice_";

/// What a token may do. `Admin` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a token of this scope may do what `needed` allows.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// A token just made: the whole secret string exists only here.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub id: String,
    pub scope: Scope,
    /// `sluice_<id>_<secret>`: show once, never log.
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A stored token (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub scope: Scope,
    pub name: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// The two halves of a presented token, if it has the shape of one.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// The stored form of a secret.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// Equal in time independent of where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh id and secret from the operating system's random source.
pub(crate) fn generate() -> Result<(String, String)> {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    let fill = |buf: &mut [u8]| {
        getrandom::fill(buf).map_err(|e| StoreError::Invalid {
            record: "token",
            field: "secret",
            problem: format!("no random source: {e}"),
        })
    };
    fill(&mut id)?;
    fill(&mut secret)?;
    Ok((
        hex::encode(id),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    ))
}

pub(crate) fn format_token(id: &str, secret: &str) -> String {
    format!("{PREFIX}{id}_{secret}")
}

/// Bearer tokens, stored hashed.
pub trait TokenStore: Send + Sync + 'static {
    /// Makes a token of `scope`; the returned string is the only copy of its secret.
    fn create_token(
        &self,
        scope: Scope,
        name: &str,
    ) -> impl Future<Output = Result<IssuedToken>> + Send;

    /// The scope of a valid, unrevoked token; `None` for anything else.
    fn verify_token(&self, token: &str) -> impl Future<Output = Result<Option<Scope>>> + Send;

    fn revoke_token(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;

    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_shape_split_reads() {
        let (id, secret) = generate().unwrap();
        let token = format_token(&id, &secret);
        assert_eq!(split_token(&token), Some((id.as_str(), secret.as_str())));
        let (id2, secret2) = generate().unwrap();
        assert_ne!((id.clone(), secret.clone()), (id2, secret2));
        for bad in [
            "",
            "sluice_",
            &format!("sluice_{id}"),
            &format!("other_{id}_{secret}"),
            &format!("sluice_{id}_{}", &secret[1..]),
            &format!("sluice_zz{}_{secret}", &id[2..]),
        ] {
            assert_eq!(split_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn admin_includes_read() {
        assert!(Scope::Admin.allows(Scope::Read));
        assert!(Scope::Read.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Admin));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
