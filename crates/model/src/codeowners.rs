//! CODEOWNERS with GitHub's semantics: gitignore-style patterns, the last matching line wins,
//! and a matching line without owners leaves the path unowned.

use globset::GlobSetBuilder;

use crate::glob::compile;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: String,
    pub owners: Vec<String>,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWarning {
    pub line: u32,
    pub message: String,
}

/// A parsed CODEOWNERS file.
#[derive(Debug, Clone)]
pub struct CodeOwners {
    rules: Vec<Rule>,
    /// Pattern index → rule index (one rule may compile to two globs).
    glob_rule: Vec<usize>,
    set: globset::GlobSet,
}

impl CodeOwners {
    /// Parse the file text. Lines GitHub would reject (bad patterns, `!` negation, `[...]`
    /// ranges) become warnings and are skipped, as GitHub skips them.
    pub fn parse(text: &str) -> (Self, Vec<ParseWarning>) {
        let mut rules = Vec::new();
        let mut glob_rule = Vec::new();
        let mut builder = GlobSetBuilder::new();
        let mut warnings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i as u32 + 1;
            let content = strip_comment(raw).trim();
            if content.is_empty() {
                continue;
            }
            let mut tokens = content.split_whitespace();
            let Some(pattern) = tokens.next() else {
                continue;
            };
            let owners: Vec<String> = tokens.map(str::to_string).collect();
            if pattern.starts_with('!') || pattern.contains('[') {
                warnings.push(ParseWarning {
                    line,
                    message: format!(
                        "`{pattern}`: negation and character ranges are not supported by CODEOWNERS"
                    ),
                });
                continue;
            }
            if let Some(bad) = owners.iter().find(|o| !o.contains('@')) {
                warnings.push(ParseWarning {
                    line,
                    message: format!("owner `{bad}` is neither @user, @org/team nor an email"),
                });
                continue;
            }
            let globs = match to_globs(pattern)
                .iter()
                .map(|g| compile(g))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(g) => g,
                Err(e) => {
                    warnings.push(ParseWarning {
                        line,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            for g in globs {
                builder.add(g);
                glob_rule.push(rules.len());
            }
            rules.push(Rule {
                pattern: pattern.to_string(),
                owners,
                line,
            });
        }
        let set = builder
            .build()
            .unwrap_or_else(|_| globset::GlobSet::empty());
        (
            CodeOwners {
                rules,
                glob_rule,
                set,
            },
            warnings,
        )
    }

    pub fn empty() -> Self {
        CodeOwners::parse("").0
    }

    /// The rule deciding ownership of `path`: the last matching line.
    pub fn rule_for(&self, path: &str) -> Option<&Rule> {
        self.set
            .matches(path)
            .into_iter()
            .map(|g| self.glob_rule[g])
            .max()
            .map(|r| &self.rules[r])
    }

    pub fn owners_of(&self, path: &str) -> &[String] {
        self.rule_for(path).map_or(&[], |r| r.owners.as_slice())
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// `#` starts a comment unless escaped as `\#`.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

/// Translate one CODEOWNERS pattern into globs over repository paths.
///
/// A pattern with a slash at the start or in the middle is anchored at the root; otherwise it
/// matches at any depth. A pattern naming a directory owns everything below it, except that a
/// final `/*` owns only the directory's direct children (GitHub documents `docs/*` that way).
fn to_globs(pattern: &str) -> Vec<String> {
    let dir_only = pattern.ends_with('/');
    let trimmed = pattern.trim_end_matches('/');
    let anchored = trimmed.starts_with('/') || trimmed.contains('/');
    let body = trimmed.trim_start_matches('/').replace("\\#", "#");
    if body.is_empty() {
        return vec!["**".into()];
    }
    let base = if anchored || body.starts_with("**") {
        body
    } else {
        format!("**/{body}")
    };
    let descendants = format!("{base}/**");
    if dir_only {
        vec![descendants]
    } else if base.ends_with("/*") && !base.ends_with("**/*") {
        vec![base]
    } else {
        vec![base, descendants]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
# default owners
*       @acme/platform
*.js    @acme/frontend
/infra-live/accounts/prod/ @acme/sre @acme/platform
docs/*  docs@example.com
apps/   @acme/apps
/infra-live/accounts/prod/ap-southeast-1/rds-payments/ @acme/payments-dba
/build/logs/
";

    #[test]
    fn last_match_wins() {
        let (co, warnings) = CodeOwners::parse(SAMPLE);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(co.owners_of("README.md"), ["@acme/platform"]);
        assert_eq!(co.owners_of("web/x/app.js"), ["@acme/frontend"]);
        assert_eq!(
            co.owners_of("infra-live/accounts/prod/eu-west-1/network/terragrunt.hcl"),
            ["@acme/sre", "@acme/platform"]
        );
        assert_eq!(
            co.owners_of("infra-live/accounts/prod/ap-southeast-1/rds-payments/terragrunt.hcl"),
            ["@acme/payments-dba"]
        );
    }

    #[test]
    fn directory_star_is_not_recursive() {
        let (co, _) = CodeOwners::parse(SAMPLE);
        assert_eq!(
            co.owners_of("docs/getting-started.md"),
            ["docs@example.com"]
        );
        assert_eq!(
            co.owners_of("docs/build-app/troubleshooting.md"),
            ["@acme/platform"]
        );
    }

    #[test]
    fn unanchored_directory_matches_anywhere() {
        let (co, _) = CodeOwners::parse(SAMPLE);
        assert_eq!(
            co.owners_of("env-gitops/apps/payments/k.yaml"),
            ["@acme/apps"]
        );
        assert_eq!(co.owners_of("apps/x"), ["@acme/apps"]);
    }

    #[test]
    fn pattern_without_owners_unowns() {
        let (co, _) = CodeOwners::parse(SAMPLE);
        assert!(co.owners_of("build/logs/today.log").is_empty());
        assert_eq!(co.rule_for("build/logs/today.log").unwrap().line, 8);
    }

    #[test]
    fn bad_lines_warn_with_line_numbers() {
        let (co, warnings) = CodeOwners::parse("!x @a\n*.md notanowner\n*.rs @rust\n");
        assert_eq!(
            warnings.iter().map(|w| w.line).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(co.owners_of("src/lib.rs"), ["@rust"]);
    }

    proptest! {
        /// Appending a catch-all line makes it the owner of every path (last match wins).
        #[test]
        fn appended_catch_all_wins(path in proptest::collection::vec("[a-z]{1,5}", 1..5), team in "[a-z]{2,6}") {
            let text = format!("{SAMPLE}* @acme/{team}\n");
            let (co, _) = CodeOwners::parse(&text);
            let owner = format!("@acme/{team}");
            prop_assert_eq!(co.owners_of(&path.join("/")), [owner]);
        }

        /// An anchored directory rule owns exactly the paths under that directory.
        #[test]
        fn anchored_dir_owns_its_subtree(dir in "[a-z]{1,4}", rest in proptest::collection::vec("[a-z]{1,4}", 1..4), other in "[a-z]{5,6}") {
            let (co, _) = CodeOwners::parse(&format!("/{dir}/ @owner\n"));
            let inside = format!("{dir}/{}", rest.join("/"));
            let outside = format!("{other}/{}", rest.join("/"));
            prop_assert_eq!(co.owners_of(&inside), ["@owner".to_string()]);
            prop_assert!(co.owners_of(&outside).is_empty());
        }
    }
}
