//! What a test does when something outside the repository is missing (the corpus, Terraform,
//! PostgreSQL): skip with a printed notice on a developer's machine, fail under CI, where
//! `.ci/run` sets the matching `SLUICE_REQUIRE_*` variable to `1`.

/// Something a test needs from outside the repository, and the variable that makes it required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// `../shared/corpus` beside the workspace; required by `SLUICE_REQUIRE_CORPUS=1`.
    Corpus,
    /// `terraform` on PATH; required by `SLUICE_REQUIRE_TERRAFORM=1`.
    Terraform,
    /// The PostgreSQL server; required by `SLUICE_REQUIRE_POSTGRES=1`.
    Postgres,
}

impl Requirement {
    /// The environment variable that turns a skip into a failure.
    pub fn variable(self) -> &'static str {
        match self {
            Requirement::Corpus => "SLUICE_REQUIRE_CORPUS",
            Requirement::Terraform => "SLUICE_REQUIRE_TERRAFORM",
            Requirement::Postgres => "SLUICE_REQUIRE_POSTGRES",
        }
    }

    /// Whether this run must have it (the variable is `1`).
    pub fn required(self) -> bool {
        std::env::var(self.variable()).as_deref() == Ok("1")
    }

    /// The answer for a test that found it missing: a panic naming `what` when required, else
    /// a notice on stderr and `None`, so the caller can `let Some(x) = … else { return }`.
    #[track_caller]
    pub fn missing<T>(self, what: &str) -> Option<T> {
        if self.required() {
            panic!("{what}, and {}=1 requires it", self.variable());
        }
        eprintln!(
            "notice: {what}; skipping (set {}=1 to fail instead)",
            self.variable()
        );
        None
    }
}
