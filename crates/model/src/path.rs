//! Repository-relative paths: '/'-separated, no leading `./` or `/`, never escaping the root.
//!
//! Every path that crosses a module boundary in sluice is in this form, so comparisons are plain
//! string comparisons and "is under" is a prefix test on whole components.

/// Join `rel` onto the directory `base` and normalise `.` and `..`. `None` when the result
/// would escape the repository root (or `rel` is absolute).
pub fn join(base: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Normalise a repository-relative path (`a/./b/../c` → `a/c`).
pub fn normalize(path: &str) -> Option<String> {
    join("", path)
}

/// Whether `path` is `dir` or lies below it. The empty `dir` is the repository root.
pub fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

/// The parent directory of a repository path (`""` for a top-level entry).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// The last component of a repository path (`a/b/c.tf` → `c.tf`).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `path` relative to the directory `root` (`None` when it is not below it). The empty `root`
/// is the repository root.
pub fn strip_dir<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    if root.is_empty() {
        return Some(path);
    }
    if path == root {
        return Some("");
    }
    path.strip_prefix(root)?.strip_prefix('/')
}

/// The directories containing `path`, innermost first, ending with the root `""`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = (!path.is_empty()).then(|| parent(path));
    std::iter::from_fn(move || {
        let p = next?;
        next = (!p.is_empty()).then(|| parent(p));
        Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn joins_and_rejects_escapes() {
        assert_eq!(join("a/b", "../c").as_deref(), Some("a/c"));
        assert_eq!(join("a/b", "./c/./d/").as_deref(), Some("a/b/c/d"));
        assert_eq!(join("a", "../../etc"), None);
        assert_eq!(join("a", "/etc"), None);
        assert_eq!(join("", "..").as_deref(), None);
    }

    #[test]
    fn under_is_component_wise() {
        assert!(is_under("a/b/c", "a/b"));
        assert!(is_under("a/b", "a/b"));
        assert!(!is_under("a/bc", "a/b"));
        assert!(is_under("x", ""));
    }

    #[test]
    fn names_and_relative_paths() {
        assert_eq!(file_name("a/b/c.tf"), "c.tf");
        assert_eq!(file_name("c.tf"), "c.tf");
        assert_eq!(strip_dir("a/b/c", "a"), Some("b/c"));
        assert_eq!(strip_dir("ab/c", "a"), None);
        assert_eq!(strip_dir("a", "a"), Some(""));
        assert_eq!(strip_dir("x/y", ""), Some("x/y"));
    }

    #[test]
    fn ancestors_walk_to_root() {
        let v: Vec<_> = ancestors("a/b/c.tf").collect();
        assert_eq!(v, vec!["a/b", "a", ""]);
        assert_eq!(ancestors("c.tf").collect::<Vec<_>>(), vec![""]);
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_clean(parts in proptest::collection::vec("(\\.\\.|\\.|[a-z]{1,3})", 0..8)) {
            let p = parts.join("/");
            if let Some(n) = normalize(&p) {
                let again = normalize(&n);
                prop_assert_eq!(again.as_deref(), Some(n.as_str()));
                prop_assert!(!n.split('/').any(|c| c == ".." || c == "."));
                prop_assert!(!n.starts_with('/'));
            }
        }

        #[test]
        fn every_ancestor_contains_the_path(parts in proptest::collection::vec("[a-z]{1,3}", 1..6)) {
            let p = parts.join("/");
            for a in ancestors(&p) {
                prop_assert!(is_under(&p, a));
            }
        }
    }
}
