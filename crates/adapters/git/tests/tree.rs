//! A commit's snapshot seen as `sluice_model::tree::Tree`, the only way the other adapters read
//! a revision: listing, reading and the revision id agree with what was committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_git::git::GitRepo;
use sluice_git::git_write::{Author, Writer};
use sluice_model::tree::Tree;

#[test]
fn a_snapshot_is_read_through_the_tree_trait() {
    let dir = tempfile::tempdir().unwrap();
    let files: BTreeMap<String, Vec<u8>> = [
        ("a/x.yaml", "x: 1\n"),
        ("a/b/y.tf", "# y\n"),
        // A sibling whose name starts with the folder's: not under `a`.
        ("ab/z.txt", "z\n"),
        ("top.md", "top\n"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
    .collect();
    let writer = Writer::init(dir.path()).unwrap();
    let author = Author {
        name: "test",
        email: "test@sluice.invalid",
        time: 1_700_000_000,
    };
    let commit = writer
        .commit("main", &files, None, "files", &author)
        .unwrap();
    let repo = Arc::new(GitRepo::open(dir.path()).unwrap());
    let snapshot = repo.snapshot(commit).unwrap();
    let tree: &dyn Tree = &snapshot;

    assert_eq!(tree.revision(), commit.to_string());
    assert_eq!(
        tree.files_under("a").collect::<Vec<_>>(),
        ["a/b/y.tf", "a/x.yaml"]
    );
    assert_eq!(tree.files_under("").count(), files.len());
    assert_eq!(
        tree.read_file("a/x.yaml").unwrap().as_deref(),
        Some(&b"x: 1\n"[..])
    );
    assert_eq!(tree.read("a/missing.yaml"), None);
    assert!(tree.read_file("a/missing.yaml").unwrap().is_none());
    assert!(tree.is_file("a/b/y.tf"));
    assert!(!tree.is_file("a/b"));
    assert!(tree.is_dir("a/b"));
    assert!(!tree.is_dir("a/x.yaml"));
    assert_eq!(tree.list_dir("a"), ["x.yaml"]);
    assert!(!tree.is_symlink("a/x.yaml"));
}
