//! Classification of engine failures and the redacted stderr excerpt shown with them.
//!
//! A failed plan blocks the change with no approval possible (DESIGN.md §2, stage 4), so the
//! report must tell the reader *whose* problem it is: the runner's credentials (auth), a
//! locked or unreadable state (state/lock), a module that cannot be fetched (module), a
//! provider that cannot be installed (init/provider), the engine not being installed at all,
//! or the configuration itself (plan). The decision is pure: the stage that failed, its exit
//! code and its stderr, matched against the messages Terraform, OpenTofu, Terragrunt and the
//! major providers print. Auth wins over the rest because an expired token surfaces as
//! "failed to load state" or "failed to download module" too.

use serde::Serialize;
use sluice_model::redact::RedactionRules;

/// Why planning a stack failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The engine (or terragrunt) is not installed or not executable.
    EngineMissing,
    /// `init` could not install providers or configure the backend.
    InitProvider,
    /// Credentials are missing, expired or not allowed.
    Auth,
    /// A module could not be found or downloaded.
    Module,
    /// The state is locked by someone else, or cannot be read.
    StateLock,
    /// The configuration does not plan (errors in HCL, provider validation, `show` failures).
    Plan,
    /// A command ran longer than `plan.timeout_seconds`.
    Timeout,
    /// sluice could not prepare or store the plan (export, IO).
    Internal,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::EngineMissing => "engine missing",
            FailureClass::InitProvider => "init/provider",
            FailureClass::Auth => "auth",
            FailureClass::Module => "module",
            FailureClass::StateLock => "state/lock",
            FailureClass::Plan => "plan",
            FailureClass::Timeout => "timeout",
            FailureClass::Internal => "internal",
        }
    }

    /// What the reader should do about it.
    pub fn hint(self) -> &'static str {
        match self {
            FailureClass::EngineMissing => {
                "install the engine on the runner's PATH or set `plan.engine` in sluice.yaml"
            }
            FailureClass::InitProvider => {
                "check provider version constraints, .terraform.lock.hcl and registry access"
            }
            FailureClass::Auth => {
                "the plan identity's credentials are missing, expired or lack read permission"
            }
            FailureClass::Module => "check module sources and refs, and access to their hosts",
            FailureClass::StateLock => {
                "another run holds the state lock or the state backend is unreachable; retry \
                 later or resolve the lock explicitly"
            }
            FailureClass::Plan => "fix the configuration error shown below",
            FailureClass::Timeout => "raise `plan.timeout_seconds` or find the slow provider call",
            FailureClass::Internal => "sluice could not prepare the run; see the message",
        }
    }
}

/// The step of a stack's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Export,
    Version,
    Init,
    Plan,
    Show,
    Store,
}

const AUTH: &[&str] = &[
    "nocredentialproviders",
    "no valid credential sources",
    "invalidclienttokenid",
    "expiredtoken",
    "token has expired",
    "unrecognizedclientexception",
    "signaturedoesnotmatch",
    "unable to locate credentials",
    "failed to refresh cached credentials",
    "could not find default credentials",
    "invalid_grant",
    "aadsts",
    "authorizationfailed",
    "accessdenied",
    "access denied",
    "not authorized to perform",
    "unauthorized",
    "403 forbidden",
    "statuscode: 403",
    "status code: 403",
    "error: 401",
    "please run 'az login'",
    "authentication failed",
    "permission denied on resource project",
];

const STATE_LOCK: &[&str] = &[
    "error acquiring the state lock",
    "error locking state",
    "conditionalcheckfailedexception",
    "state lock",
    "lock info:",
    "failed to load state",
    "error loading state",
    "failed to read state",
    "state snapshot was created by",
    "failed to get existing workspaces",
    "error refreshing state",
    "backend initialization required",
    "backend configuration changed",
    "failed to persist state",
    "failed to save state",
];

const MODULE: &[&str] = &[
    "module not installed",
    "failed to download module",
    "module source has changed",
    "unreadable module directory",
    "module not found",
    "invalid module source address",
    "error downloading modules",
    "could not download module",
    "failed to fetch module",
    "module version requirements have changed",
    "unsupported module source",
];

const INIT_PROVIDER: &[&str] = &[
    "failed to query available provider packages",
    "failed to install provider",
    "failed to install providers",
    "inconsistent dependency lock file",
    "could not retrieve the list of available versions for provider",
    "required plugins are not installed",
    "failed to instantiate provider",
    "incompatible provider version",
    "provider registry",
    "the cached package for",
    "does not match any of the checksums",
    "plugin did not respond",
    "missing required provider",
    "provider produced inconsistent",
    "error: failed to load plugin schemas",
    "could not load plugin",
];

/// Shells and wrappers (terragrunt, a `terraform` shim) exit 126 when the program they start
/// cannot be executed and 127 when it is not found.
const EXIT_NOT_EXECUTABLE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

/// Classify a failed step. `exit_code` is `None` when the process did not exit normally.
///
/// What the engine printed decides first (an expired token wins over everything). Without a
/// known message the exit status says what it can: 126/127 mean the engine behind a wrapper
/// could not be started, and a process killed by a signal (out of memory, a crash) is the
/// runner's problem, not the configuration's. Only then does the step decide.
pub fn classify(step: Step, exit_code: Option<i32>, stderr: &str) -> FailureClass {
    let text = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if any(AUTH) {
        FailureClass::Auth
    } else if any(STATE_LOCK) {
        FailureClass::StateLock
    } else if any(MODULE) {
        FailureClass::Module
    } else if any(INIT_PROVIDER) {
        FailureClass::InitProvider
    } else {
        match (exit_code, step) {
            (Some(EXIT_NOT_EXECUTABLE | EXIT_NOT_FOUND), _) => FailureClass::EngineMissing,
            (None, _) => FailureClass::Internal,
            (Some(_), Step::Init) => FailureClass::InitProvider,
            (Some(_), Step::Export | Step::Store) => FailureClass::Internal,
            (Some(_), Step::Version) => FailureClass::EngineMissing,
            (Some(_), Step::Plan | Step::Show) => FailureClass::Plan,
        }
    }
}

/// How many trailing lines of stderr a failure shows.
pub const EXCERPT_LINES: usize = 20;
const MAX_LINE_CHARS: usize = 300;

/// The last [`EXCERPT_LINES`] meaningful lines of stderr, without colour codes or the box
/// drawing of Terraform's diagnostics, each run through the redaction rules.
pub fn excerpt(stderr: &str, rules: &RedactionRules) -> Vec<String> {
    let cleaned = strip_ansi(stderr);
    let lines: Vec<String> = cleaned
        .lines()
        .map(|l| {
            l.trim_start_matches(['│', '╷', '╵', ' '])
                .trim_end()
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(EXCERPT_LINES);
    // Redact the whole tail at once: a `password = "..."` pair or a PEM block may span lines.
    let tail = lines[start..].join("\n");
    rules
        .redact_text(&tail)
        .lines()
        .map(|l| {
            if l.chars().count() > MAX_LINE_CHARS {
                format!("{}…", l.chars().take(MAX_LINE_CHARS).collect::<String>())
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Remove ANSI escape sequences (engines colour output even with `-no-color` in places, and
/// terragrunt logs always do).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_stderr() {
        let cases = [
            (
                Step::Plan,
                "Error: No valid credential sources found for AWS Provider.",
                FailureClass::Auth,
            ),
            (
                Step::Init,
                "Error: error configuring S3 Backend: NoCredentialProviders: no valid providers in chain",
                FailureClass::Auth,
            ),
            (
                Step::Plan,
                "Error: Error acquiring the state lock\n\nLock Info:\n  ID: 1234",
                FailureClass::StateLock,
            ),
            (
                Step::Init,
                "Error: Failed to download module\n  Could not download module \"vpc\"",
                FailureClass::Module,
            ),
            (
                Step::Plan,
                "Error: Module not installed",
                FailureClass::Module,
            ),
            (
                Step::Init,
                "Error: Failed to query available provider packages",
                FailureClass::InitProvider,
            ),
            (
                Step::Init,
                "Error: Inconsistent dependency lock file",
                FailureClass::InitProvider,
            ),
            (
                Step::Init,
                "something unexpected",
                FailureClass::InitProvider,
            ),
            (
                Step::Plan,
                "Error: Unsupported argument\n  on main.tf line 3",
                FailureClass::Plan,
            ),
            (
                Step::Show,
                "Error: Failed to read the given file",
                FailureClass::Plan,
            ),
        ];
        for (step, stderr, want) in cases {
            assert_eq!(classify(step, Some(1), stderr), want, "{stderr}");
        }
    }

    #[test]
    fn exit_status_decides_when_stderr_says_nothing_known() {
        // A wrapper could not start the engine: not a configuration error.
        assert_eq!(
            classify(Step::Plan, Some(127), "terraform: command not found"),
            FailureClass::EngineMissing
        );
        assert_eq!(
            classify(Step::Init, Some(126), "permission denied"),
            FailureClass::EngineMissing
        );
        // Killed by a signal (OOM killer, crash): the runner's problem.
        assert_eq!(classify(Step::Plan, None, ""), FailureClass::Internal);
        assert_eq!(classify(Step::Plan, Some(1), ""), FailureClass::Plan);
        // A known message still wins over the exit status.
        assert_eq!(
            classify(Step::Plan, None, "Error: error acquiring the state lock"),
            FailureClass::StateLock
        );
    }

    #[test]
    fn excerpt_is_tail_clean_and_redacted() {
        let mut stderr = String::new();
        for i in 0..40 {
            stderr.push_str(&format!("\u{1b}[31m│\u{1b}[0m line {i}\n"));
        }
        stderr.push_str("│   password = \"CANARY-s3cr3t\"\n╵\n");
        stderr.push_str("Error: postgres://admin:CANARY-2@db:5432/x unreachable\n");
        let lines = excerpt(&stderr, &RedactionRules::default());
        assert_eq!(lines.len(), EXCERPT_LINES);
        assert_eq!(lines[0], "line 22");
        let all = lines.join("\n");
        assert!(!all.contains("CANARY"), "{all}");
        assert!(!all.contains('\u{1b}') && !all.contains('│'), "{all}");
        assert!(all.contains("password = \"(sensitive)\""), "{all}");
    }

    #[test]
    fn long_lines_are_cut() {
        let line = "x".repeat(1000);
        let lines = excerpt(&line, &RedactionRules::default());
        assert_eq!(lines[0].chars().count(), MAX_LINE_CHARS + 1);
    }

    proptest::proptest! {
        #[test]
        fn strip_ansi_never_panics_and_removes_escapes(s in "\\PC{0,200}") {
            let out = strip_ansi(&s);
            proptest::prop_assert!(!out.contains('\x1b'));
        }
    }
}
