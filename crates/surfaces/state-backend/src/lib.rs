//! The Terraform / OpenTofu `http` state backend as an axum [`Router`], speaking exactly what
//! their `http` backend client sends (DESIGN.md §4: the HTTP surface chooses the statuses).
//! `sluice serve` mounts it under `/state`:
//!
//! ```ignore
//! let app = Router::new().nest("/state", sluice_state_backend::router(backend, auth, Options::default()));
//! ```
//!
//! Per unit `/state/<stack id>` (the id keeps its slashes: `/state/dev/ap-southeast-1/network`):
//!
//! | request | answer |
//! |---|---|
//! | `GET` | 200 with the newest state (and its `Content-MD5`), 404 when there is none yet |
//! | `POST ?ID=<lock id>` (or `PUT`) | 200: a new version (or the same body again); only from the lock holder |
//! | `LOCK` with the client's lock info JSON | 200; 423 with the holder's lock info when held by someone else |
//! | `UNLOCK` with the lock info JSON (`force-unlock` sends only `ID`) | 200 |
//! | `DELETE` | 405: state history is immutable (roll back instead) |
//!
//! Authentication is HTTP basic auth whose password is the credential (a runner's OIDC JWT or a
//! sluice token), checked by an [`Authenticator`]: 401 without or with bad credentials, 403 when
//! the trust policy does not grant the unit. Bodies are checked against `Content-MD5` (400 on a
//! mismatch; a write without one is refused). Other refusals: 400 for a body that is not a
//! state or bad lock info, 409 for a serial regression, a lineage change, a write without the
//! lock or with a stale lock id or fencing token. Every refusal is an audit event.

pub mod bench;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use sluice_model::state::BackendLockInfo;
use sluice_state::{
    AuthError, Authenticator, BackendStore, Principal, StateBackend, StateError, Written,
    md5_mismatch, md5_of,
};

/// The request methods the backend answers to besides `GET`, `POST`/`PUT` and `DELETE`; match
/// them to the client's `lock_method` and `unlock_method`.
#[derive(Debug, Clone)]
pub struct Options {
    pub lock_method: String,
    pub unlock_method: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lock_method: "LOCK".into(),
            unlock_method: "UNLOCK".into(),
        }
    }
}

struct Shared<S> {
    backend: Arc<StateBackend<S>>,
    auth: Arc<dyn Authenticator>,
    options: Options,
}

/// The router for `/state/<id>` paths relative to where it is mounted (see the module docs).
pub fn router<S: BackendStore>(
    backend: Arc<StateBackend<S>>,
    auth: Arc<dyn Authenticator>,
    options: Options,
) -> Router {
    // Room for the largest state plus the request's framing; larger bodies get 413.
    let limit = backend.config().max_state_bytes + 64 * 1024;
    let shared = Arc::new(Shared {
        backend,
        auth,
        options,
    });
    Router::new()
        .route("/{*id}", any(handle::<S>))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    #[serde(rename = "ID")]
    id: Option<String>,
    change: Option<String>,
    fencing_token: Option<u64>,
}

enum Op {
    Read,
    Write,
    Lock,
    Unlock,
    Delete,
}

impl Op {
    fn action(&self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Lock => "lock",
            Op::Unlock => "unlock",
            Op::Delete => "delete",
        }
    }
}

async fn handle<S: BackendStore>(
    State(shared): State<Arc<Shared<S>>>,
    Path(id): Path<String>,
    method: Method,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unit = id.trim_matches('/').to_string();
    let op = match method.as_str() {
        "GET" => Op::Read,
        "POST" | "PUT" => Op::Write,
        "DELETE" => Op::Delete,
        m if m == shared.options.lock_method => Op::Lock,
        m if m == shared.options.unlock_method => Op::Unlock,
        _ => {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{method} is not a state backend method (GET, POST, {}, {})",
                    shared.options.lock_method, shared.options.unlock_method
                ),
            );
        }
    };
    let backend = &shared.backend;
    let who = match authenticate(shared.auth.as_ref(), &headers).await {
        Ok(p) => p,
        Err(e) => {
            let _ = backend
                .audit_refusal(&unit, op.action(), "unauthenticated", &e.to_string())
                .await;
            return if e.is_credentials() {
                let mut r = text(StatusCode::UNAUTHORIZED, e.to_string());
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"sluice state\""),
                );
                r
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            };
        }
    };
    // Content-MD5: a write must carry it (the backend hashes the body beside its other work
    // and compares); a lock request's small body is checked here when it has one.
    let checked = match op {
        Op::Read | Op::Delete => Ok(None),
        Op::Write => content_md5(&headers).and_then(|claimed| {
            claimed.map(Some).ok_or_else(|| {
                "Content-MD5 is missing: state writes must carry the body's MD5".into()
            })
        }),
        Op::Lock | Op::Unlock => check_md5(&headers, &body),
    };
    let content_md5 = match checked {
        Ok(md5) => md5,
        Err(problem) => {
            let _ = backend
                .audit_refusal(&unit, op.action(), &who.identity(), &problem)
                .await;
            return text(StatusCode::BAD_REQUEST, problem);
        }
    };
    let result = match op {
        Op::Read => match backend.read(&who, &unit, None).await {
            Ok(Some(pulled)) => return state_response(pulled.body, &pulled.md5),
            Ok(None) => return text(StatusCode::NOT_FOUND, format!("`{unit}` has no state yet")),
            Err(e) => Err(e),
        },
        Op::Write => backend
            .write(
                &who,
                &unit,
                params.id.as_deref(),
                &body,
                content_md5.expect("a write carries Content-MD5"),
            )
            .await
            .map(|w| match w {
                Written::New(r) => format!("stored version {} (serial {})", r.version, r.serial),
                Written::Unchanged(r) => format!("unchanged: version {}", r.version),
            }),
        Op::Lock => match lock_info(&body) {
            Ok(info) => {
                let fence = match (&params.change, params.fencing_token) {
                    (Some(c), Some(t)) => Some((c.as_str(), t)),
                    _ => None,
                };
                backend
                    .lock(&who, &unit, &info, fence)
                    .await
                    .map(|()| format!("locked with {}", info.id))
            }
            Err(e) => Err(e),
        },
        Op::Unlock => match lock_info(&body) {
            Ok(info) => backend
                .unlock(&who, &unit, &info)
                .await
                .map(|()| format!("unlocked {}", info.id)),
            Err(e) => Err(e),
        },
        Op::Delete => {
            let reason = "state history is immutable: DELETE is not supported; roll back to a \
                          version instead (sluice state rollback)";
            let _ = backend
                .audit_refusal(&unit, "delete", &who.identity(), reason)
                .await;
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, reason.to_string());
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, POST, PUT, LOCK, UNLOCK"),
            );
            return r;
        }
    };
    match result {
        Ok(message) => text(StatusCode::OK, message),
        Err(e) => error_response(&unit, op.action(), e),
    }
}

/// The basic-auth password (the credential) and user name.
async fn authenticate(
    auth: &dyn Authenticator,
    headers: &HeaderMap,
) -> Result<Principal, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or(AuthError::Unrecognised)?;
    let decoded = B64
        .decode(encoded.trim())
        .map_err(|_| AuthError::Unrecognised)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Unrecognised)?;
    let (user, password) = decoded.split_once(':').ok_or(AuthError::Unrecognised)?;
    if password.is_empty() {
        return Err(AuthError::Missing);
    }
    auth.authenticate(user, password).await
}

/// The MD5 a request's `Content-MD5` header claims (base64 of 16 bytes, RFC 1864); `None`
/// without the header.
fn content_md5(headers: &HeaderMap) -> Result<Option<[u8; 16]>, String> {
    let Some(value) = headers.get("content-md5") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| B64.decode(v.trim()).ok())
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .map(Some)
        .ok_or_else(|| "Content-MD5 is not the base64 of an MD5".into())
}

/// Checks `Content-MD5` against `body` when the header is present; returns the MD5 checked.
fn check_md5(headers: &HeaderMap, body: &[u8]) -> Result<Option<[u8; 16]>, String> {
    let Some(claimed) = content_md5(headers)? else {
        return Ok(None);
    };
    let actual = md5_of(body);
    if claimed == actual {
        Ok(Some(actual))
    } else {
        Err(md5_mismatch().to_string())
    }
}

fn lock_info(body: &[u8]) -> Result<BackendLockInfo, StateError> {
    serde_json::from_slice(body)
        .map_err(|e| StateError::BadRequest(format!("the lock info is not lock-info JSON: {e}")))
}

/// The state with its `Content-MD5`: the MD5 stored with the version (not recomputed over the
/// body on every read).
fn state_response(body: Vec<u8>, md5: &[u8; 16]) -> Response {
    let md5 = B64.encode(md5);
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&md5) {
        h.insert("content-md5", v);
    }
    r
}

fn text(status: StatusCode, message: String) -> Response {
    let mut body = message;
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The one place a state error becomes a status.
pub fn status_of(e: &StateError) -> StatusCode {
    match e {
        StateError::BadRequest(_) | StateError::BadBody(_) => StatusCode::BAD_REQUEST,
        StateError::Forbidden { .. } => StatusCode::FORBIDDEN,
        StateError::Locked { .. } => StatusCode::LOCKED,
        StateError::LockConflict(_) | StateError::Refused(_) => StatusCode::CONFLICT,
        StateError::NotFound(_) => StatusCode::NOT_FOUND,
        StateError::Tampered { .. } | StateError::Seal(_) | StateError::Store(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn error_response(unit: &str, action: &str, e: StateError) -> Response {
    let status = status_of(&e);
    // A refusal is the client's to read (and audited); a failure of the server is also the
    // operator's: Terraform retries a 5xx and then reports it without the body's reason.
    if status.is_server_error() {
        tracing::error!(unit, action, status = status.as_u16(), error = %e, "state request failed");
    }
    match e {
        // Terraform reads the holder's lock info from the body of a 423.
        StateError::Locked { holder, .. } => {
            let body = serde_json::to_vec(&holder).expect("lock info serialises");
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        other => text(status, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_read_and_checked() {
        let body = b"{\"version\":4}";
        let md5 = md5_of(body);
        let mut h = HeaderMap::new();
        assert_eq!(content_md5(&h), Ok(None));
        assert_eq!(check_md5(&h, body), Ok(None));
        h.insert(
            "content-md5",
            HeaderValue::from_str(&B64.encode(md5)).unwrap(),
        );
        assert_eq!(content_md5(&h), Ok(Some(md5)));
        assert_eq!(check_md5(&h, body), Ok(Some(md5)));
        assert!(check_md5(&h, b"{\"version\":5}").is_err());
        h.insert("content-md5", HeaderValue::from_static("!!"));
        assert!(content_md5(&h).is_err());
        // Base64, but not of 16 bytes.
        h.insert("content-md5", HeaderValue::from_static("AAAA"));
        assert!(content_md5(&h).is_err());
    }
}
