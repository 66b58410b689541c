//! Who is asking: the [`Principal`] behind a request, and the [`Authenticator`] trait that turns
//! the credentials of HTTP basic auth into one.
//!
//! Terraform's `http` backend sends basic auth with a fixed user name and a password; sluice
//! takes the password as the credential: a sluice `state` token ([`TokenAuthenticator`], over
//! the store's hashed tokens) or a runner's OIDC JWT ([`OidcAuthenticator`]); [`FirstOf`] tries
//! them in turn, each answering [`AuthError::Unrecognised`] for a credential that is not its
//! kind. What a principal may do is decided by [`crate::StateBackend`] (the trust policy for
//! runners, the token's own grants for sluice tokens).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use futures_util::future::BoxFuture;
use sluice_identity::{JwksError, OidcVerifier, TokenError, VerifierConfig};
use sluice_model::trust::{Claims, TokenStateGrants, TrustPolicy};
use sluice_store::{Scope, StoreError, TokenStore};

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A runner or CI job with a verified OIDC token; the trust policy decides what it may do.
    Runner(Claims),
    /// A sluice `state` token: may touch only the stacks its grants name.
    Token(Arc<TokenPrincipal>),
    /// A person or service acting as a state administrator (the local CLI): may read, write,
    /// force and roll back any unit, always with audit events naming them.
    Admin { name: String },
}

/// A verified sluice `state` token: its public id, its name and its compiled grants.
#[derive(Debug)]
pub struct TokenPrincipal {
    pub id: String,
    pub name: String,
    pub grants: TokenStateGrants,
}

impl PartialEq for TokenPrincipal {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for TokenPrincipal {}

impl Principal {
    /// How audit events and version records name the principal: `oidc:<iss>#<sub>` or
    /// `user:<name>`.
    pub fn identity(&self) -> String {
        match self {
            Principal::Runner(claims) => claims.identity().to_string(),
            Principal::Token(t) => format!("token:{}#{}", t.name, t.id),
            Principal::Admin { name } => format!("user:{name}"),
        }
    }
}

/// Why credentials were refused. Messages never contain the credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: send HTTP basic auth whose password is a sluice token or an OIDC token"
    )]
    Missing,
    #[error("the credentials are not a token sluice accepts")]
    Unrecognised,
    /// Shaped like a sluice token, but unknown, revoked, wrong, or not a `state` token.
    #[error("{0}")]
    SluiceToken(String),
    /// The token store could not be read (503).
    #[error("checking the sluice token: {0}")]
    Store(#[from] StoreError),
    #[error("OIDC token refused: {0}")]
    Token(#[from] TokenError),
    #[error("OIDC token issuer `{0}` is not trusted")]
    UnknownIssuer(String),
    #[error("the issuer's keys could not be fetched: {0}")]
    Keys(#[from] JwksError),
}

impl AuthError {
    /// True when the caller's credentials are wrong (401), false when sluice could not check
    /// them (503: the issuer was unreachable).
    pub fn is_credentials(&self) -> bool {
        !matches!(
            self,
            AuthError::Keys(_) | AuthError::Token(TokenError::Keys(_)) | AuthError::Store(_)
        )
    }
}

/// Turns basic-auth credentials into a principal.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

/// sluice tokens (`sluice_<id>_<secret>`, stored hashed by [`TokenStore`]): only `state`
/// tokens are accepted, with the stacks they were created for. A password that is not shaped
/// like a sluice token is [`AuthError::Unrecognised`], so the next authenticator (OIDC) gets it.
pub struct TokenAuthenticator<S> {
    store: S,
}

impl<S: TokenStore> TokenAuthenticator<S> {
    pub fn new(store: S) -> Self {
        TokenAuthenticator { store }
    }
}

impl<S: TokenStore> Authenticator for TokenAuthenticator<S> {
    fn authenticate<'a>(
        &'a self,
        _user: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(async move {
            if sluice_store::tokens::split_token(password).is_none() {
                return Err(AuthError::Unrecognised);
            }
            let Some(token) = self.store.verify_token_grants(password).await? else {
                return Err(AuthError::SluiceToken(
                    "the sluice token is not valid (unknown, revoked or wrong)".into(),
                ));
            };
            if token.scope != Scope::State {
                return Err(AuthError::SluiceToken(format!(
                    "sluice token {} has scope `{}`: the state backend takes only `state` \
                     tokens (sluice token create --scope state --state-write GLOB)",
                    token.id,
                    token.scope.as_str()
                )));
            }
            // Stored grants were validated when the token was made; a row that no longer
            // compiles grants nothing rather than failing open.
            let grants = TokenStateGrants::new(&token.state.read, &token.state.write)
                .map_err(|e| AuthError::SluiceToken(format!("sluice token {}: {e}", token.id)))?;
            Ok(Principal::Token(Arc::new(TokenPrincipal {
                id: token.id,
                name: token.name,
                grants,
            })))
        })
    }
}

/// Runner OIDC tokens, verified against the JWKS of the issuers the trust policy lists (keys
/// cached and rotated by [`OidcVerifier`]).
pub struct OidcAuthenticator {
    verifiers: BTreeMap<String, OidcVerifier>,
}

impl OidcAuthenticator {
    /// One verifier per trusted issuer, with the audiences the policy accepts for it.
    pub fn new(policy: &TrustPolicy) -> Result<OidcAuthenticator, JwksError> {
        let mut verifiers = BTreeMap::new();
        for issuer in policy.issuers() {
            let config = VerifierConfig::new(issuer.issuer.clone(), issuer.audience.clone());
            verifiers.insert(issuer.issuer.clone(), OidcVerifier::new(config)?);
        }
        Ok(OidcAuthenticator { verifiers })
    }

    pub fn verifier(&self, issuer: &str) -> Option<&OidcVerifier> {
        self.verifiers.get(issuer)
    }
}

/// The `iss` a JWT claims, read before verification only to pick the issuer's verifier (which
/// then checks the signature and that same `iss`). `None` when the password is not a JWT.
pub fn claimed_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_string)
}

impl Authenticator for OidcAuthenticator {
    fn authenticate<'a>(
        &'a self,
        _user: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(async move {
            let issuer = claimed_issuer(password).ok_or(AuthError::Unrecognised)?;
            let verifier = self
                .verifiers
                .get(&issuer)
                .ok_or(AuthError::UnknownIssuer(issuer))?;
            let verified = verifier.verify(password).await?;
            Ok(Principal::Runner(verified.claims))
        })
    }
}

/// Tries authenticators in order: the first that recognises the credential decides (a JWT
/// that fails verification is refused, not handed to the next).
pub struct FirstOf(pub Vec<Arc<dyn Authenticator>>);

impl Authenticator for FirstOf {
    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(async move {
            for a in &self.0 {
                match a.authenticate(user, password).await {
                    Err(AuthError::Unrecognised) => continue,
                    other => return other,
                }
            }
            Err(AuthError::Unrecognised)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_issuer_reads_only_jwts() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"iss":"https://issuer.example","sub":"x"}"#)
        );
        assert_eq!(
            claimed_issuer(&jwt).as_deref(),
            Some("https://issuer.example")
        );
        assert_eq!(claimed_issuer("sluice_tok_abc"), None);
        assert_eq!(claimed_issuer("a.b.c.d"), None);
        assert_eq!(claimed_issuer(&format!("x.{}.y", b64("[]"))), None);
    }
}
