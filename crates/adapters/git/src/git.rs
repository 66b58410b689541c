//! Git access through gix, in process and without a checkout (bare repositories work).
//!
//! A [`Snapshot`] is the tree of one commit: every file's path and object id, listed once, plus
//! lazily read, cached blob contents. Discovery, affected detection and validation read files
//! through it, so a revision is never checked out and nothing in the work tree is trusted.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use sluice_model::affected::{ChangedFile, FileStatus};
use sluice_model::tree::{Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path}: not a git repository ({message})")]
    NotARepository { path: PathBuf, message: String },
    #[error("unknown revision `{rev}`: {message}")]
    UnknownRevision { rev: String, message: String },
    /// The clone lacks the history the command needs (a CI checkout with a shallow depth).
    #[error("{what}: this is a shallow clone and {missing} is not in it; {FETCH_HINT}")]
    Shallow { what: String, missing: String },
    #[error("git: {0}")]
    Other(String),
}

/// What to do about a shallow clone, in the words CI users search for.
pub const FETCH_HINT: &str = "fetch the history: `fetch-depth: 0` in actions/checkout (GitLab: \
     `GIT_DEPTH: 0`), or `git fetch --deepen=100` (or `git fetch --unshallow`) before running sluice";

/// The plain-words reason a revision does not resolve (gix's parser errors name internals).
fn revision_problem(rev: &str, shallow: bool, cause: &str) -> GitError {
    let walks_back = rev.contains('~') || rev.contains('^');
    if walks_back && shallow {
        return GitError::Shallow {
            what: format!("`{rev}`"),
            missing: "the commit it names".into(),
        };
    }
    let message = if walks_back {
        let start = rev.split(['~', '^']).next().unwrap_or(rev);
        format!(
            "`{start}` has fewer ancestors than `{rev}` asks for (the first commit has no \
             parent), or `{start}` itself is unknown"
        )
    } else if rev.contains("..") {
        "give a single revision, not a range: `--base main --head HEAD`".to_string()
    } else if let Some(branch) = rev.strip_prefix("origin/") {
        format!(
            "no remote-tracking branch of that name here; fetch it first (`git fetch origin \
             {branch}`) or check the spelling"
        )
    } else if shallow {
        format!(
            "no branch, tag or commit of that name in this clone; it is shallow, so {FETCH_HINT}"
        )
    } else {
        format!("no branch, tag or commit of that name in this repository ({cause})")
    };
    GitError::UnknownRevision {
        rev: rev.to_string(),
        message,
    }
}

fn other(e: impl std::fmt::Display) -> GitError {
    GitError::Other(e.to_string())
}

/// An opened repository, shareable across threads.
pub struct GitRepo {
    sync: gix::ThreadSafeRepository,
    id: u64,
}

static NEXT_REPO_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// gix repositories are per thread; keep one per opened repository on each worker.
    static LOCAL: RefCell<Vec<(u64, gix::Repository)>> = const { RefCell::new(Vec::new()) };
}

impl GitRepo {
    /// Open the repository (work tree or bare) at `path`, or, as git does, the one `path` is
    /// inside of (running from a subfolder works).
    pub fn open(path: &Path) -> Result<Self, GitError> {
        let repo = gix::open_opts(path, gix::open::Options::isolated())
            .or_else(|e| {
                gix::discover_opts(path, Default::default(), gix::open::Options::isolated())
                    .map_err(|_| e)
            })
            .map_err(|e| GitError::NotARepository {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(GitRepo {
            sync: repo.into_sync(),
            id: NEXT_REPO_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The work tree's root (`None` for a bare repository).
    pub fn work_dir(&self) -> Option<PathBuf> {
        self.sync.work_dir().map(Path::to_path_buf)
    }

    /// Whether this is a shallow clone (history cut at some depth).
    pub fn is_shallow(&self) -> bool {
        self.with_local(|repo| repo.is_shallow().unwrap_or(false))
    }

    fn with_local<R>(&self, f: impl FnOnce(&gix::Repository) -> R) -> R {
        LOCAL.with(|cell| {
            let mut repos = cell.borrow_mut();
            if !repos.iter().any(|(id, _)| *id == self.id) {
                let mut local = self.sync.to_thread_local();
                local.object_cache_size_if_unset(16 * 1024 * 1024);
                repos.push((self.id, local));
            }
            let (_, repo) = repos
                .iter()
                .find(|(id, _)| *id == self.id)
                .expect("inserted above");
            f(repo)
        })
    }

    /// Resolve a revision (branch, tag, sha, `HEAD~2`) to a commit id.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, GitError> {
        self.with_local(|repo| {
            let unknown = |message: String| GitError::UnknownRevision {
                rev: rev.to_string(),
                message,
            };
            let shallow = repo.is_shallow().unwrap_or(false);
            let id = repo
                .rev_parse_single(rev)
                .map_err(|e| revision_problem(rev, shallow, &e.to_string()))?;
            let commit = id
                .object()
                .map_err(|e| unknown(e.to_string()))?
                .peel_to_commit()
                .map_err(|e| unknown(format!("not a commit: {e}")))?;
            Ok(commit.id().detach())
        })
    }

    /// The best common ancestor of two commits, as `git merge-base` finds it; `None` for
    /// unrelated histories. In a shallow clone a missing merge base is an error that says to
    /// fetch the history: the cut-off history would otherwise pass for unrelated, and the
    /// change would be judged against the whole base branch.
    pub fn merge_base(&self, one: ObjectId, two: ObjectId) -> Result<Option<ObjectId>, GitError> {
        self.with_local(|repo| {
            let shallow = repo.is_shallow().unwrap_or(false);
            let missing = || GitError::Shallow {
                what: format!("the merge base of {} and {}", short(one), short(two)),
                missing: "the commit where the two branches meet".into(),
            };
            match repo.merge_base(one, two) {
                Ok(Some(id)) => Ok(Some(id.detach())),
                Ok(None) | Err(_) if shallow => Err(missing()),
                Ok(None) => Ok(None),
                Err(e) => Err(other(e)),
            }
        })
    }

    /// List the tree of `commit` into a snapshot.
    pub fn snapshot(self: &Arc<Self>, commit: ObjectId) -> Result<Snapshot, GitError> {
        let root = self.with_local(|repo| -> Result<ObjectId, GitError> {
            let commit = repo.find_commit(commit).map_err(other)?;
            Ok(commit.tree_id().map_err(other)?.detach())
        })?;
        let mut entries = BTreeMap::new();
        self.with_local(|repo| list_tree(repo, root, "", &mut entries))?;
        Ok(Snapshot::new(self.clone(), commit, entries))
    }

    /// The author signature of `commit`, as git recorded it.
    pub fn author(&self, commit: ObjectId) -> Result<Author, GitError> {
        self.with_local(|repo| {
            let commit = repo.find_commit(commit).map_err(other)?;
            let sig = commit.author().map_err(other)?;
            Ok(Author {
                name: sig.name.to_string(),
                email: sig.email.to_string(),
            })
        })
    }

    /// The authors of the commits a change adds: `head` and its ancestors down to (not
    /// including) `base`, at most `limit` commits. Who authored a change decides who may not
    /// approve it, so a commit an author slipped in under someone else's head commit counts
    /// too. A merge of the base branch into the PR brings the base's commits along until
    /// `base` itself is reached; at worst that bars more people, never fewer.
    pub fn authors_between(
        &self,
        base: Option<ObjectId>,
        head: ObjectId,
        limit: usize,
    ) -> Result<Vec<Author>, GitError> {
        self.with_local(|repo| {
            let mut seen = HashSet::new();
            let mut queue = std::collections::VecDeque::from([head]);
            let mut out: Vec<Author> = Vec::new();
            while let Some(id) = queue.pop_front() {
                if Some(id) == base || !seen.insert(id) || seen.len() > limit {
                    continue;
                }
                let commit = repo.find_commit(id).map_err(other)?;
                let sig = commit.author().map_err(other)?;
                let author = Author {
                    name: sig.name.to_string(),
                    email: sig.email.to_string(),
                };
                if !out.contains(&author) {
                    out.push(author);
                }
                queue.extend(commit.parent_ids().map(|p| p.detach()));
            }
            Ok(out)
        })
    }

    fn read_blob(&self, id: ObjectId) -> Result<Arc<[u8]>, GitError> {
        self.with_local(|repo| {
            let blob = repo.find_blob(id).map_err(other)?;
            Ok(Arc::from(blob.data.as_slice()))
        })
    }
}

fn short(id: ObjectId) -> String {
    id.to_hex_with_len(7).to_string()
}

/// Kind of a tree entry as sluice cares about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Symlink,
    Submodule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: ObjectId,
    pub kind: EntryType,
}

fn list_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    prefix: &str,
    out: &mut BTreeMap<String, Entry>,
) -> Result<(), GitError> {
    let object = repo.find_object(tree).map_err(other)?;
    let entries = gix::objs::TreeRefIter::from_bytes(&object.data, repo.object_hash())
        .entries()
        .map_err(other)?;
    let mut subtrees = Vec::new();
    for e in entries {
        let name = String::from_utf8_lossy(e.filename);
        let path = if prefix.is_empty() {
            name.into_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = match e.mode.kind() {
            EntryKind::Tree => {
                subtrees.push((e.oid.to_owned(), path));
                continue;
            }
            EntryKind::Blob | EntryKind::BlobExecutable => EntryType::File,
            EntryKind::Link => EntryType::Symlink,
            EntryKind::Commit => EntryType::Submodule,
        };
        out.insert(
            path,
            Entry {
                id: e.oid.to_owned(),
                kind,
            },
        );
    }
    drop(object);
    for (id, path) in subtrees {
        list_tree(repo, id, &path, out)?;
    }
    Ok(())
}

/// Who wrote a commit. A claim the committer made, not an authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// The files of one commit.
pub struct Snapshot {
    repo: Arc<GitRepo>,
    pub commit: ObjectId,
    entries: BTreeMap<String, Entry>,
    dirs: HashSet<String>,
    files_in: HashMap<String, Vec<String>>,
    cache: Mutex<HashMap<String, Option<Arc<[u8]>>>>,
}

impl Snapshot {
    fn new(repo: Arc<GitRepo>, commit: ObjectId, entries: BTreeMap<String, Entry>) -> Self {
        let mut dirs = HashSet::new();
        let mut files_in: HashMap<String, Vec<String>> = HashMap::new();
        dirs.insert(String::new());
        for (path, entry) in &entries {
            let parent = sluice_model::path::parent(path);
            if entry.kind == EntryType::File {
                let name = sluice_model::path::file_name(path);
                files_in
                    .entry(parent.to_string())
                    .or_default()
                    .push(name.to_string());
            }
            for dir in sluice_model::path::ancestors(path) {
                if !dirs.insert(dir.to_string()) {
                    break;
                }
            }
        }
        Snapshot {
            repo,
            commit,
            entries,
            dirs,
            files_in,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The author of this snapshot's commit.
    pub fn author(&self) -> Result<Author, GitError> {
        self.repo.author(self.commit)
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Regular files in path order.
    pub fn files(&self) -> impl Iterator<Item = &str> + Clone {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == EntryType::File)
            .map(|(p, _)| p.as_str())
    }

    /// Files below `dir` (recursively), in path order.
    pub fn files_under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let start = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.entries
            .range(start.clone()..)
            .take_while(move |(p, _)| p.starts_with(&start))
            .filter(|(_, e)| e.kind == EntryType::File)
            .map(|(p, _)| p.as_str())
    }

    /// Read a regular file's content. Symlinks are never followed and read as absent.
    pub fn read_file(&self, path: &str) -> Result<Option<Arc<[u8]>>, GitError> {
        if let Some(hit) = self.cache.lock().expect("cache lock").get(path) {
            return Ok(hit.clone());
        }
        let value = match self.entries.get(path) {
            Some(e) if e.kind == EntryType::File => Some(self.repo.read_blob(e.id)?),
            _ => None,
        };
        self.cache
            .lock()
            .expect("cache lock")
            .insert(path.to_string(), value.clone());
        Ok(value)
    }

    /// Symlinks whose target leaves the repository, with the target as stored.
    pub fn escaping_symlinks(&self) -> Result<Vec<(String, String)>, GitError> {
        let mut out = Vec::new();
        for (path, e) in &self.entries {
            if e.kind != EntryType::Symlink {
                continue;
            }
            let target = String::from_utf8_lossy(&self.repo.read_blob(e.id)?).into_owned();
            let parent = sluice_model::path::parent(path);
            if target.starts_with('/') || sluice_model::path::join(parent, &target).is_none() {
                out.push((path.clone(), target));
            }
        }
        Ok(out)
    }
}

impl Tree for Snapshot {
    fn revision(&self) -> String {
        self.commit.to_string()
    }

    fn files_under<'a>(&'a self, dir: &'a str) -> Box<dyn Iterator<Item = &'a str> + 'a> {
        Box::new(Snapshot::files_under(self, dir))
    }

    fn read(&self, path: &str) -> Option<Arc<[u8]>> {
        self.read_file(path).ok().flatten()
    }

    fn read_file(&self, path: &str) -> Result<Option<Arc<[u8]>>, TreeError> {
        Snapshot::read_file(self, path).map_err(TreeError::new)
    }

    fn is_file(&self, path: &str) -> bool {
        self.entries
            .get(path)
            .is_some_and(|e| e.kind == EntryType::File)
    }

    fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }

    fn list_dir(&self, dir: &str) -> Vec<String> {
        self.files_in.get(dir).cloned().unwrap_or_default()
    }

    fn is_symlink(&self, path: &str) -> bool {
        self.entries
            .get(path)
            .is_some_and(|e| e.kind == EntryType::Symlink)
    }
}

/// Files that differ between two snapshots, in path order. A file replaced by a symlink (or
/// the reverse) counts as modified.
pub fn diff(base: &Snapshot, head: &Snapshot) -> Vec<ChangedFile> {
    let mut out = Vec::new();
    for (path, h) in &head.entries {
        match base.entries.get(path) {
            None => out.push(ChangedFile {
                path: path.clone(),
                status: FileStatus::Added,
            }),
            Some(b) if b != h => out.push(ChangedFile {
                path: path.clone(),
                status: FileStatus::Modified,
            }),
            Some(_) => {}
        }
    }
    for path in base.entries.keys() {
        if !head.entries.contains_key(path) {
            out.push(ChangedFile {
                path: path.clone(),
                status: FileStatus::Deleted,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
