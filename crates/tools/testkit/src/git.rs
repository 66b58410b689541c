//! Real git repositories built in a test with the `git` CLI (isolated from the user's and the
//! system's configuration, dates fixed so commit ids are stable): files, commits, branches,
//! authors, tags and bare clones.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Who a commit is by. The default author of [`Repo::commit`] is `t <t@t>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Author<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// A work-tree git repository on branch `main` in a temporary directory (removed on drop).
pub struct Repo {
    dir: TempDir,
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}

impl Repo {
    pub fn new() -> Self {
        let repo = Repo {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A repository whose `main` holds exactly `files`, in one commit; returns it and the commit.
    pub fn with_files<P: AsRef<str>, C: AsRef<[u8]>>(files: &[(P, C)]) -> (Self, String) {
        let repo = Repo::new();
        let commit = repo.commit_tree(files, "files");
        (repo, commit)
    }

    /// Make the work tree hold exactly `files` (everything else removed) and commit it on the
    /// current branch; returns the commit. Successive calls give one commit per file set.
    pub fn commit_tree<P: AsRef<str>, C: AsRef<[u8]>>(
        &self,
        files: &[(P, C)],
        message: &str,
    ) -> String {
        for entry in std::fs::read_dir(self.path()).expect("read work tree") {
            let entry = entry.expect("dir entry");
            if entry.file_name() != ".git" {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).expect("rm -r");
                } else {
                    std::fs::remove_file(&p).expect("rm");
                }
            }
        }
        self.write_all(files);
        self.commit(message)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The work tree as a command-line argument.
    pub fn arg(&self) -> &str {
        crate::s(self.path())
    }

    /// Write (or overwrite) a file, creating its parent directories.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        self
    }

    /// Write every `(path, content)` pair.
    pub fn write_all<P: AsRef<str>, C: AsRef<[u8]>>(&self, files: &[(P, C)]) -> &Self {
        for (p, c) in files {
            self.write(p.as_ref(), c);
        }
        self
    }

    /// A file of the work tree as text.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// Remove a file or a whole directory.
    pub fn remove(&self, rel: &str) -> &Self {
        let p = self.path().join(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("rm -r");
        } else {
            std::fs::remove_file(&p).expect("rm");
        }
        self
    }

    /// `git mv` a file or directory.
    pub fn rename(&self, from: &str, to: &str) -> &Self {
        let dest = self.path().join(to);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        self.git(&["mv", from, to]);
        self
    }

    /// A symbolic link at `rel` whose stored target is `target` (as git records it).
    #[cfg(unix)]
    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, &p).expect("symlink");
        self
    }

    /// Run git in the repository; panics with its stderr on failure; returns trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }

    /// Stage everything and commit as the default author; returns the new commit's full SHA.
    pub fn commit(&self, message: &str) -> String {
        self.commit_as(
            Author {
                name: "t",
                email: "t@t",
            },
            message,
        )
    }

    /// Stage everything and commit as `author`; returns the new commit's full SHA.
    pub fn commit_as(&self, author: Author<'_>, message: &str) -> String {
        self.git(&["add", "-A"]);
        run_git(
            self.path(),
            &[
                "commit",
                "-q",
                "--allow-empty",
                "--no-verify",
                "-m",
                message,
            ],
            &[
                ("GIT_AUTHOR_NAME", author.name),
                ("GIT_AUTHOR_EMAIL", author.email),
            ],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// Create branch `branch` at the current commit and switch to it.
    pub fn checkout_new(&self, branch: &str) {
        self.git(&["checkout", "-q", "-b", branch]);
    }

    pub fn checkout(&self, rev: &str) {
        self.git(&["checkout", "-q", rev]);
    }

    /// A lightweight tag `name` at `rev`.
    pub fn tag(&self, name: &str, rev: &str) {
        self.git(&["tag", name, rev]);
    }

    /// An annotated tag `name` at `rev`.
    pub fn tag_annotated(&self, name: &str, rev: &str, message: &str) {
        self.git(&["tag", "-a", name, "-m", message, rev]);
    }

    /// A bare clone of this repository (all branches and tags), in its own temporary directory.
    pub fn bare_clone(&self) -> (TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let bare = tmp.path().join("org.git");
        git_in(
            tmp.path(),
            &["clone", "-q", "--bare", self.arg(), crate::s(&bare)],
        );
        (tmp, bare)
    }
}

/// Run git in `dir` with the kit's isolated configuration; panics with its stderr on failure;
/// returns trimmed stdout.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    run_git(dir, args, &[])
}

fn run_git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "core.symlinks=true",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .envs(env.iter().copied())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_carry_their_author_and_tags_and_branches_resolve() {
        let repo = Repo::new();
        repo.write("a.txt", "1\n");
        let first = repo.commit("first");
        repo.checkout_new("topic");
        repo.write("a.txt", "2\n");
        let second = repo.commit_as(
            Author {
                name: "Mona",
                email: "mona@example.com",
            },
            "second",
        );
        assert_eq!(
            repo.git(&["log", "-1", "--format=%an <%ae>"]),
            "Mona <mona@example.com>"
        );
        assert_eq!(repo.git(&["log", "-1", "--format=%an", &first]), "t");
        repo.tag("v1", &first);
        repo.tag_annotated("v2", &second, "release");
        assert_eq!(repo.git(&["rev-parse", "v1"]), first);
        assert_eq!(repo.git(&["rev-parse", "v2^{commit}"]), second);
        assert_eq!(repo.git(&["rev-parse", "main"]), first);
        assert_eq!(repo.read("a.txt"), "2\n");
    }

    #[test]
    fn commit_tree_holds_exactly_the_given_files() {
        let (repo, first) = Repo::with_files(&[("x/a.txt", "a"), ("b.txt", "b")]);
        let second = repo.commit_tree(&[("c.txt", "c")], "replace");
        assert_eq!(
            repo.git(&["ls-tree", "-r", "--name-only", &first]),
            "b.txt\nx/a.txt"
        );
        assert_eq!(
            repo.git(&["ls-tree", "-r", "--name-only", &second]),
            "c.txt"
        );
        let (_tmp, bare) = repo.bare_clone();
        assert_eq!(git_in(&bare, &["rev-parse", "main"]), second);
    }
}
