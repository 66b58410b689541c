//! Writing commits through gix, for the demo org and the benchmark generator: a flat map of
//! paths to contents becomes trees, a commit and a branch, with fixed identities and times so
//! the same input always yields the same commit ids.

use std::collections::BTreeMap;
use std::path::Path;

pub use gix::ObjectId;
use gix::objs::tree::{Entry, EntryKind};
use gix::refs::transaction::PreviousValue;

use crate::git::{GitError, other as err};

/// Who wrote a commit, and when (seconds since the epoch, UTC).
#[derive(Debug, Clone)]
pub struct Author<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub time: i64,
}

pub struct Writer {
    repo: gix::Repository,
}

impl Writer {
    /// Create a new repository with a work tree at `dir` (which must not exist or be empty).
    pub fn init(dir: &Path) -> Result<Self, GitError> {
        let repo = gix::init(dir).map_err(err)?;
        Ok(Writer { repo })
    }

    /// Open the repository at `dir` to add commits to it.
    pub fn open(dir: &Path) -> Result<Self, GitError> {
        let repo = gix::open(dir).map_err(err)?;
        Ok(Writer { repo })
    }

    /// The id of a commit given in hex (as [`Writer::commit`] returned it, printed).
    pub fn object_id(hex: &str) -> Result<ObjectId, GitError> {
        ObjectId::from_hex(hex.as_bytes()).map_err(err)
    }

    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }

    /// Write `files` as a commit on `branch` with `parent`, and point the branch at it.
    pub fn commit(
        &self,
        branch: &str,
        files: &BTreeMap<String, Vec<u8>>,
        parent: Option<ObjectId>,
        message: &str,
        author: &Author<'_>,
    ) -> Result<ObjectId, GitError> {
        let tree = self.write_tree(files, "")?;
        let signature = gix::actor::Signature {
            name: author.name.into(),
            email: author.email.into(),
            time: gix::date::Time {
                seconds: author.time,
                offset: 0,
            },
        };
        let commit = gix::objs::Commit {
            tree,
            parents: parent.into_iter().collect(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        let id = self.repo.write_object(&commit).map_err(err)?.detach();
        self.repo
            .reference(
                format!("refs/heads/{branch}").as_str(),
                id,
                PreviousValue::Any,
                format!("commit: {}", message.lines().next().unwrap_or_default()),
            )
            .map_err(err)?;
        Ok(id)
    }

    /// Write the subtree of `files` below `prefix` and return its id.
    fn write_tree(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
        prefix: &str,
    ) -> Result<ObjectId, GitError> {
        let start = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut entries = Vec::new();
        let mut subdirs: Vec<&str> = Vec::new();
        for (path, content) in files.range(start.clone()..) {
            let Some(rest) = path.strip_prefix(&start) else {
                break;
            };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    if subdirs.last() != Some(&dir) {
                        subdirs.push(dir);
                    }
                }
                None => {
                    let oid = self.repo.write_blob(content).map_err(err)?.detach();
                    entries.push(Entry {
                        mode: EntryKind::Blob.into(),
                        filename: rest.into(),
                        oid,
                    });
                }
            }
        }
        for dir in subdirs {
            let oid = self.write_tree(files, &format!("{start}{dir}"))?;
            entries.push(Entry {
                mode: EntryKind::Tree.into(),
                filename: dir.into(),
                oid,
            });
        }
        entries.sort();
        let tree = gix::objs::Tree { entries };
        Ok(self.repo.write_object(&tree).map_err(err)?.detach())
    }

    /// Check out `branch` whose tip `commit` holds `files`: point HEAD at it (symbolically, as
    /// `git checkout` does), write the files into the work tree and the index from its tree,
    /// so that `git status` is clean.
    pub fn checkout(
        &self,
        branch: &str,
        commit: ObjectId,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), GitError> {
        std::fs::write(
            self.repo.git_dir().join("HEAD"),
            format!("ref: refs/heads/{branch}\n"),
        )
        .map_err(err)?;
        let work_dir = self
            .repo
            .workdir()
            .ok_or_else(|| err("repository has no work tree"))?
            .to_path_buf();
        export(&work_dir, files)?;
        let tree = self
            .repo
            .find_commit(commit)
            .map_err(err)?
            .tree_id()
            .map_err(err)?
            .detach();
        let mut index = self.repo.index_from_tree(&tree).map_err(err)?;
        index.write(Default::default()).map_err(err)
    }
}

/// Write `files` below `dir`, creating folders.
pub fn export(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), GitError> {
    for (path, content) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(&target, content).map_err(err)?;
    }
    Ok(())
}
