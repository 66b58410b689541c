//! Typed GitHub webhook events: only the events, actions and fields sluice acts on.
//!
//! [`Event::parse`] reads the `action` first and picks the shape from the (event, action) pair; an
//! event or action sluice does not act on becomes [`Event::Unsupported`], which the server
//! acknowledges and ignores. A payload for a supported pair that lacks a field sluice needs is an
//! error naming the field's path (`pull_request.head.sha`), never a default.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The `X-GitHub-Event` header: lower-case letters and `_` (`pull_request_review`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(String);

impl EventName {
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        ok.then(|| EventName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `owner/name` of a repository. Both parts are checked against GitHub's naming rules because
/// they end up in API paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName {
    owner: String,
    name: String,
}

impl RepoName {
    pub fn new(owner: &str, name: &str) -> Result<Self, RepoNameError> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 100
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if valid(owner) && valid(name) {
            Ok(RepoName {
                owner: owner.to_owned(),
                name: name.to_owned(),
            })
        } else {
            Err(RepoNameError(format!("{owner}/{name}")))
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::str::FromStr for RepoName {
    type Err = RepoNameError;

    fn from_str(full_name: &str) -> Result<Self, Self::Err> {
        let (owner, name) = full_name
            .split_once('/')
            .ok_or_else(|| RepoNameError(full_name.to_owned()))?;
        RepoName::new(owner, name)
    }
}

/// Checked while the string is read (not after), so a bad name's error carries its field path.
impl<'de> Deserialize<'de> for RepoName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RepoName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a repository name `owner/name`")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RepoName, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a repository name: expected `owner/name` of letters, digits, `-`, `_` and `.`"
)]
pub struct RepoNameError(String);

/// The GitHub App installation a delivery came through; the client needs it for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct InstallationId(pub u64);

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    pub full_name: RepoName,
    pub default_branch: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub login: String,
}

/// `installation` in a payload: only its id is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Installation {
    pub id: InstallationId,
}

/// One side of a pull request: `head` (what is proposed) or `base` (what it merges into).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Branch {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
    /// `None` when the head's fork has been deleted.
    pub repo: Option<BranchRepo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BranchRepo {
    pub full_name: RepoName,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    /// The author.
    pub user: User,
    pub head: Branch,
    pub base: Branch,
    #[serde(default)]
    pub draft: bool,
}

impl PullRequest {
    /// A PR from a fork: its head lives in another repository (or in one since deleted).
    pub fn is_from_fork(&self) -> bool {
        match (&self.head.repo, &self.base.repo) {
            (Some(head), Some(base)) => head.full_name != base.full_name,
            _ => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullRequestAction {
    Opened,
    Reopened,
    /// New commits on the head: `before` is the old head, `after` the new one.
    Synchronize {
        before: String,
        after: String,
    },
    Closed {
        merged: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    pub action: PullRequestAction,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub installation: Option<Installation>,
    pub sender: User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    #[serde(alias = "APPROVED")]
    Approved,
    #[serde(alias = "CHANGES_REQUESTED")]
    ChangesRequested,
    #[serde(alias = "COMMENTED")]
    Commented,
    #[serde(alias = "DISMISSED")]
    Dismissed,
    #[serde(alias = "PENDING")]
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Review {
    pub id: u64,
    /// The reviewer.
    pub user: User,
    pub state: ReviewState,
    /// The commit the review was given on: an approval binds to it (DESIGN.md §3).
    pub commit_id: String,
    pub submitted_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewAction {
    Submitted,
    Dismissed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewEvent {
    pub action: ReviewAction,
    pub review: Review,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub installation: Option<Installation>,
    pub sender: User,
}

/// The `pull_request` link an issue has when it is a pull request; its fields are not needed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestLink {}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub user: User,
    pub pull_request: Option<PullRequestLink>,
}

impl Issue {
    /// Commands only make sense on a pull request's conversation, not on a plain issue.
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    /// The comment's author: the user whose permission a command is checked against.
    pub user: User,
}

/// A new comment on an issue or a pull request (only `created`: an edit does not re-run a
/// command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentEvent {
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Repository,
    pub installation: Option<Installation>,
    pub sender: User,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pusher {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushEvent {
    /// The full ref pushed: `refs/heads/main`, `refs/tags/v1`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    pub created: bool,
    pub deleted: bool,
    pub forced: bool,
    pub repository: Repository,
    pub pusher: Pusher,
    pub sender: User,
    pub installation: Option<Installation>,
}

impl PushEvent {
    /// The push moved the repository's default branch (a merge landed): the reconciler's cue.
    /// A deletion of the default branch does not count.
    pub fn is_to_default_branch(&self) -> bool {
        !self.deleted
            && self.git_ref.strip_prefix("refs/heads/") == Some(&self.repository.default_branch)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct App {
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRunPullRequest {
    pub number: u64,
    pub head: CheckRunBranch,
    pub base: CheckRunBranch,
}

/// A PR side as a check run lists it: no author, no repository name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRunBranch {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub external_id: Option<String>,
    /// The app that owns the check run: sluice re-runs only its own.
    pub app: Option<App>,
    #[serde(default)]
    pub pull_requests: Vec<CheckRunPullRequest>,
}

/// Someone pressed "Re-run" on a check run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRunEvent {
    pub check_run: CheckRun,
    pub repository: Repository,
    pub installation: Option<Installation>,
    pub sender: User,
}

/// A delivery's meaning, for the (event, action) pairs sluice acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PullRequest(PullRequestEvent),
    PullRequestReview(ReviewEvent),
    IssueComment(CommentEvent),
    Push(PushEvent),
    CheckRunRerequested(CheckRunEvent),
    /// Acknowledged and ignored: `ping`, `pull_request` `labeled`, `issue_comment` `edited`, ….
    Unsupported {
        event: String,
        action: Option<String>,
    },
}

/// Why a payload did not parse: the event, the path of the field (empty for the whole body) and
/// serde's message with its line and column.
#[derive(Debug, thiserror::Error)]
#[error("{event} payload: {}{source}", field_prefix(.path))]
pub struct PayloadError {
    pub event: String,
    pub path: String,
    #[source]
    pub source: serde_json::Error,
}

fn field_prefix(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("field `{path}`: ")
    }
}

fn from_json<T: DeserializeOwned>(event: &EventName, body: &[u8]) -> Result<T, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| PayloadError {
        event: event.to_string(),
        path: e.path().to_string(),
        source: e.into_inner(),
    })?;
    de.end().map_err(|source| PayloadError {
        event: event.to_string(),
        path: String::new(),
        source,
    })?;
    Ok(value)
}

/// What every payload is read for first.
#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    pull_request: PullRequest,
    repository: Repository,
    installation: Option<Installation>,
    sender: User,
}

/// The extra fields of `synchronize`.
#[derive(Deserialize)]
struct SynchronizePayload {
    before: String,
    after: String,
}

/// The extra field of `closed`.
#[derive(Deserialize)]
struct ClosedPayload {
    pull_request: MergedFlag,
}

#[derive(Deserialize)]
struct MergedFlag {
    merged: bool,
}

#[derive(Deserialize)]
struct ReviewPayload {
    review: Review,
    pull_request: PullRequest,
    repository: Repository,
    installation: Option<Installation>,
    sender: User,
}

#[derive(Deserialize)]
struct CommentPayload {
    issue: Issue,
    comment: Comment,
    repository: Repository,
    installation: Option<Installation>,
    sender: User,
}

impl Event {
    /// Parse `body` as the payload of `event`. Only call this on a verified body
    /// ([`crate::webhook::receive`] does both).
    pub fn parse(event: &EventName, body: &[u8]) -> Result<Event, PayloadError> {
        let action = from_json::<Envelope>(event, body)?.action;
        let parsed = match (event.as_str(), action.as_deref()) {
            ("pull_request", Some(a @ ("opened" | "reopened" | "synchronize" | "closed"))) => {
                let p: PullRequestPayload = from_json(event, body)?;
                let action = match a {
                    "opened" => PullRequestAction::Opened,
                    "reopened" => PullRequestAction::Reopened,
                    "synchronize" => {
                        let s: SynchronizePayload = from_json(event, body)?;
                        PullRequestAction::Synchronize {
                            before: s.before,
                            after: s.after,
                        }
                    }
                    _ => PullRequestAction::Closed {
                        merged: from_json::<ClosedPayload>(event, body)?.pull_request.merged,
                    },
                };
                Event::PullRequest(PullRequestEvent {
                    action,
                    pull_request: p.pull_request,
                    repository: p.repository,
                    installation: p.installation,
                    sender: p.sender,
                })
            }
            ("pull_request_review", Some(a @ ("submitted" | "dismissed"))) => {
                let p: ReviewPayload = from_json(event, body)?;
                Event::PullRequestReview(ReviewEvent {
                    action: if a == "submitted" {
                        ReviewAction::Submitted
                    } else {
                        ReviewAction::Dismissed
                    },
                    review: p.review,
                    pull_request: p.pull_request,
                    repository: p.repository,
                    installation: p.installation,
                    sender: p.sender,
                })
            }
            ("issue_comment", Some("created")) => {
                let p: CommentPayload = from_json(event, body)?;
                Event::IssueComment(CommentEvent {
                    issue: p.issue,
                    comment: p.comment,
                    repository: p.repository,
                    installation: p.installation,
                    sender: p.sender,
                })
            }
            // A push has no action.
            ("push", _) => Event::Push(from_json(event, body)?),
            ("check_run", Some("rerequested")) => {
                Event::CheckRunRerequested(from_json(event, body)?)
            }
            (other, _) => Event::Unsupported {
                event: other.to_owned(),
                action,
            },
        };
        Ok(parsed)
    }

    /// The repository the event is about, when sluice acts on it.
    pub fn repository(&self) -> Option<&Repository> {
        match self {
            Event::PullRequest(e) => Some(&e.repository),
            Event::PullRequestReview(e) => Some(&e.repository),
            Event::IssueComment(e) => Some(&e.repository),
            Event::Push(e) => Some(&e.repository),
            Event::CheckRunRerequested(e) => Some(&e.repository),
            Event::Unsupported { .. } => None,
        }
    }

    /// The installation to answer through (absent on deliveries from a plain repository hook).
    pub fn installation(&self) -> Option<InstallationId> {
        let installation = match self {
            Event::PullRequest(e) => e.installation,
            Event::PullRequestReview(e) => e.installation,
            Event::IssueComment(e) => e.installation,
            Event::Push(e) => e.installation,
            Event::CheckRunRerequested(e) => e.installation,
            Event::Unsupported { .. } => None,
        };
        installation.map(|i| i.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> EventName {
        EventName::parse(s).unwrap()
    }

    const PR: &str = r#"{
        "action": "ACTION",
        "number": 7,
        "before": "1111111111111111111111111111111111111111",
        "after": "2222222222222222222222222222222222222222",
        "pull_request": {
            "number": 7, "title": "t", "user": {"login": "alice"}, "merged": MERGED,
            "head": {"ref": "feature", "sha": "2222222222222222222222222222222222222222",
                     "repo": {"full_name": "fork/infra-live"}},
            "base": {"ref": "main", "sha": "3333333333333333333333333333333333333333",
                     "repo": {"full_name": "acme/infra-live"}}
        },
        "repository": {"full_name": "acme/infra-live", "default_branch": "main"},
        "installation": {"id": 42},
        "sender": {"login": "alice"}
    }"#;

    fn pr(action: &str, merged: &str) -> Vec<u8> {
        PR.replace("ACTION", action)
            .replace("MERGED", merged)
            .into_bytes()
    }

    #[test]
    fn pull_request_actions_carry_their_data() {
        let e = Event::parse(&name("pull_request"), &pr("closed", "true")).unwrap();
        let Event::PullRequest(e) = e else {
            panic!("{e:?}")
        };
        assert_eq!(e.action, PullRequestAction::Closed { merged: true });
        assert!(e.pull_request.is_from_fork());
        assert_eq!(e.repository.full_name.owner(), "acme");
        let e = Event::parse(&name("pull_request"), &pr("synchronize", "null")).unwrap();
        assert!(matches!(
            e,
            Event::PullRequest(PullRequestEvent { action: PullRequestAction::Synchronize { ref before, .. }, .. })
                if before.starts_with("1111")
        ));
        assert_eq!(e.installation(), Some(InstallationId(42)));
    }

    #[test]
    fn errors_name_the_field_path() {
        // `closed` needs `merged` to be a boolean.
        let err = Event::parse(&name("pull_request"), &pr("closed", "null")).unwrap_err();
        assert_eq!(err.path, "pull_request.merged");
        assert!(
            err.to_string().contains("field `pull_request.merged`"),
            "{err}"
        );
        let body = PR
            .replace("ACTION", "opened")
            .replace("MERGED", "false")
            .replace(
                r#""sha": "2222222222222222222222222222222222222222""#,
                r#""sha": 5"#,
            );
        let err = Event::parse(&name("pull_request"), body.as_bytes()).unwrap_err();
        assert_eq!(err.path, "pull_request.head.sha");
        let err = Event::parse(&name("pull_request"), b"{\"action\": ").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let body = PR
            .replace("ACTION", "opened")
            .replace("MERGED", "false")
            .replace("acme/infra-live", "acme/../x");
        let err = Event::parse(&name("pull_request"), body.as_bytes()).unwrap_err();
        assert_eq!(err.path, "pull_request.base.repo.full_name");
    }

    #[test]
    fn unknown_events_and_actions_are_unsupported_not_errors() {
        let e = Event::parse(&name("pull_request"), &pr("labeled", "false")).unwrap();
        assert_eq!(
            e,
            Event::Unsupported {
                event: "pull_request".into(),
                action: Some("labeled".into())
            }
        );
        // The body of an unsupported event is not required to have any particular shape.
        let e = Event::parse(&name("ping"), br#"{"zen": "x"}"#).unwrap();
        assert_eq!(
            e,
            Event::Unsupported {
                event: "ping".into(),
                action: None
            }
        );
        assert!(e.repository().is_none());
    }

    #[test]
    fn push_to_default_branch() {
        let push = |git_ref: &str, deleted: bool| PushEvent {
            git_ref: git_ref.into(),
            before: "a".into(),
            after: "b".into(),
            created: false,
            deleted,
            forced: false,
            repository: Repository {
                full_name: "acme/infra-live".parse().unwrap(),
                default_branch: "main".into(),
            },
            pusher: Pusher { name: "bob".into() },
            sender: User {
                login: "bob".into(),
            },
            installation: None,
        };
        assert!(push("refs/heads/main", false).is_to_default_branch());
        assert!(!push("refs/heads/main", true).is_to_default_branch());
        assert!(!push("refs/heads/main-2", false).is_to_default_branch());
        assert!(!push("refs/tags/main", false).is_to_default_branch());
        assert!(!push("main", false).is_to_default_branch());
    }

    #[test]
    fn repo_names_are_checked() {
        let r: RepoName = "acme/infra-live".parse().unwrap();
        assert_eq!((r.owner(), r.name()), ("acme", "infra-live"));
        assert_eq!(r.to_string(), "acme/infra-live");
        for bad in [
            "acme", "acme/", "/x", "acme/..", "a/b/c", "a b/c", "a/b?x=1",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }

    /// Fields sluice reads from a `synchronize` payload, as JSON pointers.
    const READ_FIELDS: &[&str] = &[
        "/before",
        "/after",
        "/pull_request/number",
        "/pull_request/title",
        "/pull_request/user/login",
        "/pull_request/head/ref",
        "/pull_request/head/sha",
        "/pull_request/base/ref",
        "/pull_request/base/sha",
        "/pull_request/base/repo/full_name",
        "/repository/full_name",
        "/repository/default_branch",
        "/installation/id",
        "/sender/login",
    ];

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(
            event in prop::sample::select(vec!["pull_request", "pull_request_review", "issue_comment", "push", "check_run", "ping"]),
            body in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = Event::parse(&name(event), &body);
        }

        #[test]
        fn a_field_of_the_wrong_type_is_named_by_its_path(
            field in prop::sample::select(READ_FIELDS.to_vec()),
            wrong in prop::sample::select(vec![json_wrong("[]"), json_wrong("{}"), json_wrong("true"), json_wrong("-1")]),
        ) {
            let mut v: serde_json::Value = serde_json::from_slice(&pr("synchronize", "false")).unwrap();
            let (parent, key) = field.rsplit_once('/').unwrap();
            let target = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            // A number is right for ids and numbers; make it wrong there too.
            let wrong = if target[key].is_number() { serde_json::json!("text") } else { wrong };
            target.insert(key.to_owned(), wrong);
            let err = Event::parse(&name("pull_request"), v.to_string().as_bytes()).unwrap_err();
            prop_assert_eq!(err.path, field[1..].replace('/', "."));
        }
    }

    fn json_wrong(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }
}
