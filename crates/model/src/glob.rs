//! Path globs with the semantics users expect of repository paths: `*` stays within one
//! directory, `**` crosses directories (globset with `literal_separator`).

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob `{pattern}`: {message}")]
pub struct GlobError {
    pub pattern: String,
    pub message: String,
}

pub fn compile(pattern: &str) -> Result<Glob, GlobError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| GlobError {
            pattern: pattern.to_string(),
            message: e.kind().to_string(),
        })
}

/// A set of globs that reports which of them matched.
#[derive(Debug, Clone)]
pub struct GlobList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl GlobList {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, GlobError> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(compile(p.as_ref())?);
        }
        let set = b.build().map_err(|e| GlobError {
            pattern: String::new(),
            message: e.to_string(),
        })?;
        Ok(GlobList {
            patterns: patterns.iter().map(|p| p.as_ref().to_string()).collect(),
            set,
        })
    }

    pub fn empty() -> Self {
        GlobList {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.set.is_match(path)
    }

    /// Indexes of the patterns matching `path`, in ascending order.
    pub fn matches(&self, path: &str) -> Vec<usize> {
        self.set.matches(path)
    }

    pub fn pattern(&self, index: usize) -> &str {
        &self.patterns[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn star_stays_in_one_directory() {
        let g = GlobList::new(&["infra/*.hcl", "shared/**"]).unwrap();
        assert!(g.is_match("infra/a.hcl"));
        assert!(!g.is_match("infra/x/a.hcl"));
        assert!(g.is_match("shared/x/y/z"));
        assert_eq!(g.matches("shared/a.hcl"), vec![1]);
    }

    #[test]
    fn bad_glob_names_pattern() {
        let e = GlobList::new(&["a/[b"]).unwrap_err();
        assert_eq!(e.pattern, "a/[b");
    }

    proptest! {
        #[test]
        fn literal_paths_match_themselves(parts in proptest::collection::vec("[a-z0-9_-]{1,6}", 1..5)) {
            let p = parts.join("/");
            let g = GlobList::new(&[p.as_str()]).unwrap();
            prop_assert!(g.is_match(&p));
            let deeper = format!("{p}/x");
            prop_assert!(!g.is_match(&deeper));
        }

        #[test]
        fn single_star_never_crosses_a_slash(a in "[a-z]{1,5}", b in "[a-z]{1,5}", c in "[a-z]{1,5}") {
            let g = GlobList::new(&[format!("{a}/*")]).unwrap();
            let direct = format!("{a}/{b}");
            let nested = format!("{a}/{b}/{c}");
            prop_assert!(g.is_match(&direct));
            prop_assert!(!g.is_match(&nested));
        }
    }
}
