//! sluice's VCS host adapter (DESIGN.md §4, `vcs`): GitHub today, GitLab later.
//!
//! It turns what GitHub sends into typed data and carries out what sluice decided to tell GitHub,
//! and decides nothing else. [`webhook::receive`] verifies a delivery's HMAC signature over the
//! raw body before anything parses it, then [`event::Event::parse`] reads the events sluice acts
//! on (pull requests, reviews, comments, pushes, check re-runs). [`command`] parses comment
//! commands and says who may run them; [`comment`] splits the PR report into marked parts and
//! plans how to update them in place. [`client`] is the GitHub App client (app JWT, cached
//! installation tokens, check runs, the PR comment, collaborator permissions) with the retry
//! rules of [`retry`]. The pure parts are tested as pure functions; the client against a mock
//! GitHub. What a GitHub App needs to be installed for sluice is in `docs/github.md`.

pub mod client;
pub mod command;
pub mod comment;
pub mod event;
pub mod retry;
pub mod webhook;

pub use client::{AppKey, GitHubApp, GitHubConfig, GitHubError, InstallationClient};
pub use event::{Event, EventName, InstallationId, RepoName};
pub use webhook::{Delivery, DeliveryHeaders, DeliveryId, WebhookError, WebhookSecret, receive};
