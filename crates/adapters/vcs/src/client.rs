//! The GitHub App client: the app's JWT, installation tokens (cached until shortly before they
//! expire), check runs, the PR comment kept up to date, and collaborator permissions.
//!
//! A thin adapter over GitHub's REST API (version `2022-11-28`): each call is a typed request
//! and response shaped after GitHub's documentation, sent with [`retry::decide`] deciding what
//! to do after a failure. The API base URL is configurable for GitHub Enterprise Server
//! (`https://HOST/api/v3`). Tokens and the private key never appear in errors or `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_model::exception::{TimeError, Timestamp};
use tokio::sync::Mutex;

use crate::command::Permission;
use crate::comment::{CommentMarker, CommentOp, ExistingComment, plan_sync};
use crate::event::{InstallationId, RepoName};
use crate::retry::{self, Answer, Failure, RetryPolicy, Verdict};

/// github.com's API; GitHub Enterprise Server uses `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
pub const API_VERSION: &str = "2022-11-28";
const MEDIA_TYPE: &str = "application/vnd.github+json";

/// An installation token is fetched again when it has less than this left (they last an hour).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// GitHub accepts an app JWT for at most ten minutes; the issue time is set back a minute for
/// clock drift, as GitHub recommends.
const JWT_BACKDATE_SECS: u64 = 60;
const JWT_LIFETIME_SECS: u64 = 9 * 60;

/// A check run's summary and text are each limited to 65,535 characters.
pub const MAX_CHECK_TEXT_CHARS: usize = 65_535;

/// Comments listed per page (GitHub's maximum).
const PER_PAGE: usize = 100;

/// How the client reaches GitHub and who it is there.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// API base URL: [`DEFAULT_API_URL`] or a GitHub Enterprise Server `https://HOST/api/v3`.
    pub api_url: Url,
    /// The GitHub App's id (the JWT issuer).
    pub app_id: u64,
    /// The app's bot account (`my-app[bot]`). When set, only its comments are taken for sluice's;
    /// otherwise any bot's comment with the marker is (users cannot post as a bot).
    pub bot_login: Option<String>,
    pub user_agent: String,
    /// Per-call timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl GitHubConfig {
    pub fn new(app_id: u64) -> Self {
        GitHubConfig {
            api_url: Url::parse(DEFAULT_API_URL).expect("a valid URL"),
            app_id,
            bot_login: None,
            user_agent: concat!("sluice/", env!("CARGO_PKG_VERSION")).to_owned(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// The app's private key (the PEM file GitHub lets you download, PKCS#1 or PKCS#8).
#[derive(Clone)]
pub struct AppKey(jsonwebtoken::EncodingKey);

impl AppKey {
    pub fn from_pem(pem: &[u8]) -> Result<Self, GitHubError> {
        jsonwebtoken::EncodingKey::from_rsa_pem(pem)
            .map(AppKey)
            .map_err(GitHubError::Key)
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("the GitHub App private key is not an RSA key in PEM form")]
    Key(#[source] jsonwebtoken::errors::Error),
    #[error("could not sign the GitHub App JWT")]
    Jwt(#[source] jsonwebtoken::errors::Error),
    #[error("cannot build an HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the GitHub API URL `{0}` is not an http(s) URL")]
    ApiUrl(String),
    #[error("GitHub returned an installation token that is not a valid header value")]
    TokenFormat,
    #[error("{method} {path}: request failed")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: GitHub answered {status}: {message}")]
    Status {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: rate limited by GitHub; try again in {}s", .wait.as_secs())]
    RateLimited {
        method: Method,
        path: String,
        wait: Duration,
    },
    #[error("{method} {path}: unexpected response at `{field}`")]
    Decode {
        method: Method,
        path: String,
        field: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("installation token expiry `{value}` is not a date-time")]
    Expiry {
        value: String,
        #[source]
        source: TimeError,
    },
}

/// An installation token, ready to send, with the instant it stops working.
#[derive(Clone)]
struct CachedToken {
    bearer: Bearer,
    expires_at: Timestamp,
}

/// The GitHub App: signs JWTs, holds installation tokens, and hands out per-installation clients.
pub struct GitHubApp {
    http: reqwest::Client,
    config: GitHubConfig,
    key: AppKey,
    tokens: Mutex<HashMap<InstallationId, CachedToken>>,
}

impl fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubApp")
            .field("api_url", &self.config.api_url.as_str())
            .field("app_id", &self.config.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
    expires_at: String,
}

/// How a call authenticates: as the app (its JWT) or as an installation (its token). Both are
/// sent as `Authorization: Bearer …`, marked sensitive so HTTP tooling does not print them.
#[derive(Clone)]
struct Bearer(HeaderValue);

impl Bearer {
    fn new(secret: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {secret}")).ok()?;
        value.set_sensitive(true);
        Some(Bearer(value))
    }
}

/// One REST call: method, path segments under the API URL, query and JSON body.
struct Call<'a> {
    method: Method,
    segments: Vec<String>,
    query: Vec<(&'a str, String)>,
    body: Option<serde_json::Value>,
}

impl<'a> Call<'a> {
    fn new(method: Method, segments: &[&str]) -> Self {
        Call {
            method,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
        }
    }

    /// A call under `/repos/{owner}/{repo}/`.
    fn repo(method: Method, repo: &RepoName, rest: &[&dyn fmt::Display]) -> Self {
        let mut call = Call::new(method, &["repos", repo.owner(), repo.name()]);
        call.segments.extend(rest.iter().map(|s| s.to_string()));
        call
    }

    fn query(mut self, name: &'a str, value: impl ToString) -> Self {
        self.query.push((name, value.to_string()));
        self
    }

    fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Some(serde_json::to_value(body).expect("request bodies serialise"));
        self
    }

    /// The path as errors show it (no query: it can hold user input but never secrets anyway).
    fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now() -> Timestamp {
    Timestamp::from_unix(now_secs() as i64, 0)
}

impl GitHubApp {
    pub fn new(config: GitHubConfig, key: AppKey) -> Result<Self, GitHubError> {
        let url = &config.api_url;
        if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
            return Err(GitHubError::ApiUrl(url.to_string()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MEDIA_TYPE));
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .default_headers(headers)
            .timeout(config.timeout)
            .build()
            .map_err(GitHubError::Client)?;
        Ok(GitHubApp {
            http,
            config,
            key,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &GitHubConfig {
        &self.config
    }

    /// The app's JWT (RS256), valid for nine minutes from a minute ago.
    pub fn jwt(&self) -> Result<String, GitHubError> {
        let now = now_secs();
        let claims = Claims {
            iat: now.saturating_sub(JWT_BACKDATE_SECS),
            exp: now + JWT_LIFETIME_SECS,
            iss: self.config.app_id.to_string(),
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &claims, &self.key.0).map_err(GitHubError::Jwt)
    }

    /// A client acting as `installation`.
    pub fn installation(&self, installation: InstallationId) -> InstallationClient<'_> {
        InstallationClient {
            app: self,
            installation,
        }
    }

    /// The installation's token: the cached one while it has more than
    /// [`TOKEN_REFRESH_MARGIN`] left, else a new one. The lock is held while fetching so
    /// concurrent callers do not each mint a token.
    async fn token(&self, installation: InstallationId) -> Result<Bearer, GitHubError> {
        let mut tokens = self.tokens.lock().await;
        let fresh_until = now().plus_seconds(TOKEN_REFRESH_MARGIN.as_secs() as i64);
        if let Some(cached) = tokens.get(&installation)
            && cached.expires_at > fresh_until
        {
            return Ok(cached.bearer.clone());
        }
        let id = installation.to_string();
        let call = Call::new(
            Method::POST,
            &["app", "installations", &id, "access_tokens"],
        );
        let jwt = Bearer::new(&self.jwt()?).expect("a JWT is base64url and dots");
        let response: TokenResponse = self.send_json(&jwt, call).await?;
        let expires_at = Timestamp::parse_rfc3339(&response.expires_at).map_err(|source| {
            GitHubError::Expiry {
                value: response.expires_at.clone(),
                source,
            }
        })?;
        let bearer = Bearer::new(&response.token).ok_or(GitHubError::TokenFormat)?;
        let cached = CachedToken {
            bearer: bearer.clone(),
            expires_at,
        };
        tokens.insert(installation, cached);
        Ok(bearer)
    }

    fn url(&self, call: &Call<'_>) -> Url {
        let mut url = self.config.api_url.clone();
        url.path_segments_mut()
            .expect("checked in GitHubApp::new: the API URL can be a base")
            .pop_if_empty()
            .extend(&call.segments);
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        url
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        auth: &Bearer,
        call: Call<'_>,
    ) -> Result<T, GitHubError> {
        let bytes = self.send(auth, &call).await?;
        decode(&call, &bytes)
    }

    /// Send `call`, retrying as [`retry::decide`] says; the status and body of the success.
    async fn send(&self, auth: &Bearer, call: &Call<'_>) -> Result<Vec<u8>, GitHubError> {
        let url = self.url(call);
        let policy = &self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(call.method.clone(), url.clone())
                .header(AUTHORIZATION, auth.0.clone());
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let (failure, error) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = response
                        .bytes()
                        .await
                        .map_err(|source| GitHubError::Transport {
                            method: call.method.clone(),
                            path: call.path(),
                            source,
                        })?;
                    if status.is_success() {
                        return Ok(body.to_vec());
                    }
                    let message = error_message(&body);
                    let answer = answer_of(status, &headers, &message);
                    let error = GitHubError::Status {
                        method: call.method.clone(),
                        path: call.path(),
                        status: status.as_u16(),
                        message,
                    };
                    (Failure::Answer(answer), error)
                }
                Err(source) if source.is_connect() || source.is_timeout() => (
                    Failure::Transport,
                    GitHubError::Transport {
                        method: call.method.clone(),
                        path: call.path(),
                        source,
                    },
                ),
                Err(source) => {
                    return Err(GitHubError::Transport {
                        method: call.method.clone(),
                        path: call.path(),
                        source,
                    });
                }
            };
            match retry::decide(&failure, attempt, now_secs(), policy) {
                Verdict::RetryAfter(wait) => tokio::time::sleep(wait).await,
                Verdict::WaitTooLong(wait) => {
                    return Err(GitHubError::RateLimited {
                        method: call.method.clone(),
                        path: call.path(),
                        wait,
                    });
                }
                Verdict::Final | Verdict::Exhausted => return Err(error),
            }
        }
    }
}

fn decode<T: DeserializeOwned>(call: &Call<'_>, bytes: &[u8]) -> Result<T, GitHubError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| GitHubError::Decode {
        method: call.method.clone(),
        path: call.path(),
        field: e.path().to_string(),
        source: e.into_inner(),
    })
}

/// GitHub's `{"message": …}`, shortened; the raw start of the body when it is not JSON.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    truncate(message.trim(), 300)
}

fn answer_of(status: StatusCode, headers: &HeaderMap, message: &str) -> Answer {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Answer {
        status: status.as_u16(),
        retry_after: number("retry-after"),
        remaining: number("x-ratelimit-remaining"),
        reset: number("x-ratelimit-reset"),
        secondary: message
            .to_ascii_lowercase()
            .contains("secondary rate limit"),
    }
}

/// `text` cut to at most `max` characters, saying so when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    const CUT: &str = "\n… (truncated)";
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(CUT.chars().count());
    let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    format!("{}{CUT}", &text[..end])
}

/// How a finished check run ends; `action_required` links to where the action is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    Failure,
    ActionRequired {
        details_url: String,
    },
    /// Superseded by a newer push.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    InProgress,
    Completed(Conclusion),
}

/// What a check run on a PR head should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRunReport {
    /// The check's name (`sluice`): one check run per name and head commit.
    pub name: String,
    pub head_sha: String,
    pub state: CheckState,
    pub title: String,
    /// Markdown; cut to [`MAX_CHECK_TEXT_CHARS`].
    pub summary: String,
    /// The change's correlation id, for finding it again.
    pub external_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct CheckOutput<'a> {
    title: &'a str,
    summary: String,
}

/// The body of "create a check run"; "update a check run" takes the same fields, so one shape
/// serves both.
#[derive(Debug, Serialize)]
struct CheckRunBody<'a> {
    name: &'a str,
    head_sha: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conclusion: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    output: CheckOutput<'a>,
}

impl<'a> CheckRunBody<'a> {
    fn of(report: &'a CheckRunReport) -> Self {
        let (status, conclusion, details_url) = match &report.state {
            CheckState::InProgress => ("in_progress", None, None),
            CheckState::Completed(c) => {
                let (conclusion, url) = match c {
                    Conclusion::Success => ("success", None),
                    Conclusion::Failure => ("failure", None),
                    Conclusion::ActionRequired { details_url } => {
                        ("action_required", Some(details_url.as_str()))
                    }
                    Conclusion::Cancelled => ("cancelled", None),
                };
                ("completed", Some(conclusion), url)
            }
        };
        CheckRunBody {
            name: &report.name,
            head_sha: &report.head_sha,
            status,
            conclusion,
            details_url,
            external_id: report.external_id.as_deref(),
            output: CheckOutput {
                title: &report.title,
                summary: truncate(&report.summary, MAX_CHECK_TEXT_CHARS),
            },
        }
    }
}

/// Any response of which only the id is needed.
#[derive(Deserialize)]
struct WithId {
    id: u64,
}

#[derive(Deserialize)]
struct CheckRunList {
    check_runs: Vec<WithId>,
}

#[derive(Deserialize)]
struct CommentUser {
    login: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct IssueComment {
    id: u64,
    body: Option<String>,
    user: Option<CommentUser>,
}

#[derive(Serialize)]
struct CommentBody<'a> {
    body: &'a str,
}

#[derive(Deserialize)]
struct PermissionResponse {
    permission: String,
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct MembershipResponse {
    state: String,
}

/// Calls made as one installation of the app.
pub struct InstallationClient<'a> {
    app: &'a GitHubApp,
    installation: InstallationId,
}

impl InstallationClient<'_> {
    /// Send `call` as the installation. A 401 means the token was revoked or expired early: it
    /// is forgotten so the next call gets a new one (this call is not repeated; a 4xx is final).
    async fn send(&self, call: &Call<'_>) -> Result<Vec<u8>, GitHubError> {
        let auth = self.app.token(self.installation).await?;
        let result = self.app.send(&auth, call).await;
        if let Err(GitHubError::Status { status: 401, .. }) = result {
            self.app.tokens.lock().await.remove(&self.installation);
        }
        result
    }

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, GitHubError> {
        let bytes = self.send(&call).await?;
        decode(&call, &bytes)
    }

    /// Create or update the check run named `report.name` on `report.head_sha`: one per head.
    /// Returns its id.
    pub async fn publish_check_run(
        &self,
        repo: &RepoName,
        report: &CheckRunReport,
    ) -> Result<u64, GitHubError> {
        let existing = self
            .find_check_run(repo, &report.head_sha, &report.name)
            .await?;
        let call = match existing {
            Some(id) => Call::repo(Method::PATCH, repo, &[&"check-runs", &id]),
            None => Call::repo(Method::POST, repo, &[&"check-runs"]),
        };
        let call = call.json(&CheckRunBody::of(report));
        Ok(self.json::<WithId>(call).await?.id)
    }

    /// This app's latest check run called `name` on commit `sha`, if any.
    pub async fn find_check_run(
        &self,
        repo: &RepoName,
        sha: &str,
        name: &str,
    ) -> Result<Option<u64>, GitHubError> {
        let call = Call::repo(Method::GET, repo, &[&"commits", &sha, &"check-runs"])
            .query("check_name", name)
            .query("app_id", self.app.config.app_id)
            .query("filter", "latest");
        let list: CheckRunList = self.json(call).await?;
        Ok(list.check_runs.first().map(|c| c.id))
    }

    /// Keep the PR's `marker` comment equal to the report `parts` (see
    /// [`CommentMarker::render`]): sluice's existing parts are edited in place, missing ones
    /// created and extra ones deleted; an unchanged part is not touched. Returns the ids of the
    /// comments, in order.
    pub async fn upsert_comment(
        &self,
        repo: &RepoName,
        issue: u64,
        marker: &CommentMarker,
        parts: &[impl AsRef<str>],
    ) -> Result<Vec<u64>, GitHubError> {
        let existing = self.own_comments(repo, issue, marker).await?;
        let mut ids: Vec<u64> = existing.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        let desired = marker.render(parts);
        ids.truncate(desired.len());
        for op in plan_sync(existing, desired) {
            match op {
                CommentOp::Update { id, body } => self.update_comment(repo, id, &body).await?,
                CommentOp::Create { body } => {
                    ids.push(self.create_comment(repo, issue, &body).await?)
                }
                CommentOp::Delete { id } => self.delete_comment(repo, id).await?,
            }
        }
        Ok(ids)
    }

    /// Sluice's comments with `marker` on issue or PR `issue`, across all pages.
    async fn own_comments(
        &self,
        repo: &RepoName,
        issue: u64,
        marker: &CommentMarker,
    ) -> Result<Vec<ExistingComment>, GitHubError> {
        let bot = self.app.config.bot_login.as_deref();
        let mut own = Vec::new();
        for page in 1.. {
            let call = Call::repo(Method::GET, repo, &[&"issues", &issue, &"comments"])
                .query("per_page", PER_PAGE)
                .query("page", page);
            let comments: Vec<IssueComment> = self.json(call).await?;
            let last = comments.len() < PER_PAGE;
            own.extend(comments.into_iter().filter_map(|c| {
                let user = c.user?;
                let body = c.body?;
                let ours = match bot {
                    Some(login) => user.login == login,
                    None => user.kind == "Bot",
                };
                (ours && marker.marks(&body)).then_some(ExistingComment { id: c.id, body })
            }));
            if last {
                break;
            }
        }
        Ok(own)
    }

    /// Post a new comment (a reply to a command); returns its id.
    pub async fn create_comment(
        &self,
        repo: &RepoName,
        issue: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let call = Call::repo(Method::POST, repo, &[&"issues", &issue, &"comments"])
            .json(&CommentBody { body });
        Ok(self.json::<WithId>(call).await?.id)
    }

    async fn update_comment(
        &self,
        repo: &RepoName,
        id: u64,
        body: &str,
    ) -> Result<(), GitHubError> {
        let call = Call::repo(Method::PATCH, repo, &[&"issues", &"comments", &id])
            .json(&CommentBody { body });
        self.json::<WithId>(call).await.map(drop)
    }

    async fn delete_comment(&self, repo: &RepoName, id: u64) -> Result<(), GitHubError> {
        let call = Call::repo(Method::DELETE, repo, &[&"issues", &"comments", &id]);
        self.send(&call).await.map(drop)
    }

    /// `login`'s permission on `repo`. A user GitHub does not know (404) has none, and so has a
    /// login that is not a user's (`dependabot[bot]`): bots do not run commands.
    pub async fn collaborator_permission(
        &self,
        repo: &RepoName,
        login: &str,
    ) -> Result<Permission, GitHubError> {
        if !is_user_login(login) {
            return Ok(Permission::None);
        }
        let call = Call::repo(
            Method::GET,
            repo,
            &[&"collaborators", &login, &"permission"],
        );
        match self.json::<PermissionResponse>(call).await {
            Ok(p) => Ok(Permission::from_api(&p.permission, p.role_name.as_deref())),
            Err(GitHubError::Status { status: 404, .. }) => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    /// Whether `login` is an active member of the team `team` (`@org/slug`): GitHub's "get
    /// team membership for a user". A pending invitation, an unknown team or user (404) and a
    /// principal that is not a team all answer `false`.
    pub async fn team_member(&self, team: &str, login: &str) -> Result<bool, GitHubError> {
        let Some((org, slug)) = team_of(team) else {
            return Ok(false);
        };
        if !is_user_login(login) {
            return Ok(false);
        }
        let call = Call::new(
            Method::GET,
            &["orgs", org, "teams", slug, "memberships", login],
        );
        match self.json::<MembershipResponse>(call).await {
            Ok(m) => Ok(m.state == "active"),
            Err(GitHubError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The organization and team slug of a team principal as CODEOWNERS and the approval matrix
/// write it (`@acme/platform-team`), when it names one that can go into an API path.
pub fn team_of(principal: &str) -> Option<(&str, &str)> {
    let (org, slug) = principal.strip_prefix('@')?.split_once('/')?;
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && p != "."
            && p != ".."
    };
    (part_ok(org) && part_ok(slug)).then_some((org, slug))
}

/// A GitHub user name: up to 39 letters, digits and single inner hyphens.
fn is_user_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= 39
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !login.starts_with('-')
        && !login.ends_with('-')
        && !login.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_logins() {
        for ok in ["octocat", "a", "mona-lisa", "A1-b2"] {
            assert!(is_user_login(ok), "{ok}");
        }
        for bad in [
            "",
            "dependabot[bot]",
            "-x",
            "x-",
            "a--b",
            "a/b",
            "../x",
            &"a".repeat(40),
        ] {
            assert!(!is_user_login(bad), "{bad}");
        }
    }

    #[test]
    fn team_principals() {
        assert_eq!(team_of("@acme/platform"), Some(("acme", "platform")));
        for not_a_team in [
            "@alice",
            "alice@acme.example",
            "acme/platform",
            "@acme/",
            "@/x",
            "@a/../b",
            "@a/b c",
        ] {
            assert_eq!(team_of(not_a_team), None, "{not_a_team}");
        }
    }

    #[test]
    fn truncation_keeps_the_limit_and_says_so() {
        assert_eq!(truncate("short", 10), "short");
        let long = "ü".repeat(100);
        let cut = truncate(&long, 50);
        assert_eq!(cut.chars().count(), 50);
        assert!(cut.ends_with("(truncated)"));
    }

    #[test]
    fn check_run_bodies_follow_the_state() {
        let report = |state| CheckRunReport {
            name: "sluice".into(),
            head_sha: "abc".into(),
            state,
            title: "t".into(),
            summary: "s".into(),
            external_id: None,
        };
        let body = |state| serde_json::to_value(CheckRunBody::of(&report(state))).unwrap();
        assert_eq!(
            body(CheckState::InProgress),
            serde_json::json!({"name": "sluice", "head_sha": "abc", "status": "in_progress",
                               "output": {"title": "t", "summary": "s"}})
        );
        let action = body(CheckState::Completed(Conclusion::ActionRequired {
            details_url: "https://sluice.example/changes/1".into(),
        }));
        assert_eq!(action["conclusion"], "action_required");
        assert_eq!(action["details_url"], "https://sluice.example/changes/1");
        assert_eq!(
            body(CheckState::Completed(Conclusion::Failure))["conclusion"],
            "failure"
        );
    }
}
