//! Tokens for sluice's HTTP surfaces: made once, shown once, stored as the SHA-256 of their
//! secret, checked for a scope. `read` and `admin` tokens are the read API's bearer tokens;
//! `state` tokens are accepted only by the Terraform `http` state backend, for the stacks their
//! [`StateGrants`] name (least privilege: a state token cannot read the API, an API token cannot
//! touch state).
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

/// What a token may do. `Admin` includes `Read`; `State` is only for the state backend, and
/// what it may touch there is in its [`StateGrants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Admin,
    State,
    /// A plan runner (`sluice runner`): may claim runner jobs and upload their results through
    /// `/api/v1/runner`, nothing else.
    Runner,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::State => "state",
            Scope::Runner => "runner",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            "state" => Some(Scope::State),
            "runner" => Some(Scope::Runner),
            _ => None,
        }
    }

    /// Whether a token of this scope may do what `needed` allows. A `state` token allows
    /// nothing but itself (its stacks are decided by its grants), and so does a `runner` token.
    pub fn allows(self, needed: Scope) -> bool {
        matches!(
            (self, needed),
            (Scope::Admin, Scope::Read | Scope::Admin)
                | (Scope::Read, Scope::Read)
                | (Scope::State, Scope::State)
                | (Scope::Runner, Scope::Runner)
        )
    }
}

/// The stacks a `state` token may touch: globs over stack ids. Writing implies reading
/// (Terraform reads the state it replaces); reading implies nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StateGrants {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

impl StateGrants {
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }
}

/// A presented token that verified: who it is and what it may do (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub state: StateGrants,
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
    pub state: StateGrants,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    /// When it stops verifying unless renewed; `None`: never.
    pub expires_at: Option<UnixMillis>,
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

/// A stored grant list (a JSON array of globs).
pub(crate) fn grant_list(text: &str, id: &str, field: &'static str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| {
        crate::backend::bad_row(
            "api_tokens",
            id,
            field,
            format!("not a JSON list of globs: {e}"),
        )
    })
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

    /// Makes a `state` token for the stacks `grants` names (at least one glob); the returned
    /// string is the only copy of its secret.
    fn create_state_token(
        &self,
        name: &str,
        grants: &StateGrants,
    ) -> impl Future<Output = Result<IssuedToken>> + Send;

    /// The scope of a valid, unrevoked token; `None` for anything else.
    fn verify_token(&self, token: &str) -> impl Future<Output = Result<Option<Scope>>> + Send;

    /// A valid, unrevoked token's id, name, scope and state grants; `None` for anything else.
    fn verify_token_grants(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<VerifiedToken>>> + Send;

    fn revoke_token(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Makes a token of `scope` (not `state`) that stops verifying at `expires_at` unless
    /// [`TokenStore::renew_token`] moves it: for a credential a process mints for itself and
    /// may not live to revoke (`sluice serve --runner`).
    fn create_expiring_token(
        &self,
        scope: Scope,
        name: &str,
        expires_at: UnixMillis,
    ) -> impl Future<Output = Result<IssuedToken>> + Send;

    /// Moves an expiring token's expiry to `expires_at`; `false` when the token is revoked,
    /// already expired, unknown, or does not expire.
    fn renew_token(
        &self,
        id: &str,
        expires_at: UnixMillis,
    ) -> impl Future<Output = Result<bool>> + Send;

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
        // State tokens are for the state backend alone, and API tokens never reach state.
        assert!(!Scope::State.allows(Scope::Read));
        assert!(!Scope::Admin.allows(Scope::State));
        assert!(Scope::State.allows(Scope::State));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
