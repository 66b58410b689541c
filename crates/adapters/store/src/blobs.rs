//! The artifact store: content-addressed blobs (plan files, plan JSON, rendered manifests, DSSE
//! envelopes) named by their SHA-256, written create-only and durably, verified on every read.
//!
//! Local disk is the default: `.sluice/blobs/sha256/ab/cdef…` (the first two hex digits fan the
//! files out over 256 directories). A write goes to a temporary file in the target directory,
//! is fsynced, hard-linked to its final name (which fails if the name exists, so an existing
//! blob is never rewritten) and the directory is fsynced, so an acknowledged blob survives a
//! crash and a crash never leaves a half-written blob under a digest name. Secrets are written
//! with mode 0600.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::records::{ArtifactRecord, Digest, now_millis};
use crate::store::Store;

/// Content-addressed, create-only blob storage.
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under their SHA-256 and returns it. A blob that exists is left as it is.
    fn put(&self, bytes: Vec<u8>, secret: bool) -> impl Future<Output = Result<Digest>> + Send;

    /// The blob's bytes, after checking they hash to `digest`.
    fn get(&self, digest: &Digest) -> impl Future<Output = Result<Vec<u8>>> + Send;

    fn contains(&self, digest: &Digest) -> impl Future<Output = Result<bool>> + Send;
}

/// Blobs in a directory on local disk.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root` (created on first write), e.g. `.sluice/blobs`.
    pub fn new(root: impl Into<PathBuf>) -> LocalBlobs {
        LocalBlobs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `digest` lives.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

fn fsync_failed(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::BlobDurability { path, source }
}

/// Fsyncs a directory so that a name created in it survives a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .map_err(io("opening directory", dir))?
        .sync_all()
        .map_err(fsync_failed(dir))
}

/// Creates `dir`, fsyncing the parent of every directory that had to be created, so the new
/// path itself survives a crash.
fn create_dirs_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    std::fs::create_dir_all(dir).map_err(io("creating directory", dir))?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn put_blocking(blobs: &LocalBlobs, bytes: &[u8], secret: bool) -> Result<Digest> {
    let digest = Digest::of(bytes);
    let path = blobs.path_of(&digest);
    if path.exists() {
        return Ok(digest);
    }
    let dir = path.parent().expect("a blob path has a directory");
    create_dirs_durably(dir)?;
    // Unique per process and per write: concurrent writers of the same content must never
    // share (and remove) each other's temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        &digest.hex()[..16],
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut file = opts.open(&tmp).map_err(io("creating", &tmp))?;
        file.write_all(bytes).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(fsync_failed(&tmp))?;
        drop(file);
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {}
            // Someone stored the same content first: theirs stays, byte for byte equal.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("linking", &path)(e)),
        }
        sync_dir(dir)
    })();
    let _ = std::fs::remove_file(&tmp);
    result.map(|()| digest)
}

fn get_blocking(blobs: &LocalBlobs, digest: &Digest) -> Result<Vec<u8>> {
    let path = blobs.path_of(digest);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound {
                what: "artifact",
                key: digest.to_string(),
            });
        }
        Err(e) => return Err(io("reading", &path)(e)),
    };
    if Digest::of(&bytes) != *digest {
        return Err(StoreError::BlobCorrupt {
            digest: digest.to_string(),
            path: path.display().to_string(),
        });
    }
    Ok(bytes)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            op: "running blob I/O",
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?
}

impl BlobStore for LocalBlobs {
    async fn put(&self, bytes: Vec<u8>, secret: bool) -> Result<Digest> {
        let blobs = self.clone();
        blocking(move || put_blocking(&blobs, &bytes, secret)).await
    }

    async fn get(&self, digest: &Digest) -> Result<Vec<u8>> {
        let (blobs, digest) = (self.clone(), *digest);
        blocking(move || get_blocking(&blobs, &digest)).await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.path_of(digest).is_file())
    }
}

/// Blobs in an object store: S3 or an S3-compatible service (MinIO, Ceph, R2) for the
/// scale-out deployment, laid out like the local store (`PREFIX/sha256/ab/cdef…`).
///
/// Create-only by a conditional PUT (`If-None-Match: *`); a service without conditional writes
/// gets a HEAD first, and since a name is its content's digest, two writers racing past the HEAD
/// write the same bytes. A PUT returns once the service has stored the object durably. The
/// secret flag has no effect here: access to the bucket is governed by its policy (and
/// server-side encryption), which the operator configures.
#[derive(Debug, Clone)]
pub struct ObjectBlobs {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    location: String,
}

impl ObjectBlobs {
    /// Blobs in `store` under `prefix` (may be empty).
    pub fn new(store: std::sync::Arc<dyn object_store::ObjectStore>, prefix: &str) -> ObjectBlobs {
        let prefix = object_store::path::Path::from(prefix.trim_matches('/'));
        ObjectBlobs {
            location: format!("{store}/{prefix}"),
            store,
            prefix,
        }
    }

    /// S3 or an S3-compatible store from `s3://BUCKET[/PREFIX]`. Credentials, region and endpoint
    /// come from the environment as the AWS tools read them (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for an S3-compatible service,
    /// `AWS_ALLOW_HTTP=true` for one without TLS).
    pub fn s3(url: &str) -> Result<ObjectBlobs> {
        let bad = |reason: String| StoreError::BadLocation {
            input: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("an artifact store URL must start with s3://".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing".into()));
        }
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| bad(format!("cannot configure S3: {e}")))?;
        Ok(ObjectBlobs::new(std::sync::Arc::new(store), prefix))
    }

    fn key(&self, digest: &Digest) -> object_store::path::Path {
        let hex = digest.hex();
        let mut key = self.prefix.clone();
        for part in ["sha256", &hex[..2], &hex[2..]] {
            key = key.clone().join(part);
        }
        key
    }

    fn io(&self, op: &'static str, digest: &Digest, e: object_store::Error) -> StoreError {
        StoreError::Io {
            op,
            path: PathBuf::from(format!("{}/{}", self.location, self.key(digest))),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

impl BlobStore for ObjectBlobs {
    async fn put(&self, bytes: Vec<u8>, _secret: bool) -> Result<Digest> {
        use object_store::ObjectStoreExt as _;
        let digest = Digest::of(&bytes);
        let key = self.key(&digest);
        let create = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        // Cheap to clone: the fallback below sends the same buffer.
        let payload = object_store::PutPayload::from(bytes);
        match self.store.put_opts(&key, payload.clone(), create).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(digest),
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                match self.store.head(&key).await {
                    Ok(_) => return Ok(digest),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.io("checking", &digest, e)),
                }
                self.store
                    .put(&key, payload)
                    .await
                    .map_err(|e| self.io("writing", &digest, e))?;
                Ok(digest)
            }
            Err(e) => Err(self.io("writing", &digest, e)),
        }
    }

    async fn get(&self, digest: &Digest) -> Result<Vec<u8>> {
        use object_store::ObjectStoreExt as _;
        let key = self.key(digest);
        let result = match self.store.get(&key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NotFound {
                    what: "artifact",
                    key: digest.to_string(),
                });
            }
            Err(e) => return Err(self.io("reading", digest, e)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.io("reading", digest, e))?;
        if Digest::of(&bytes) != *digest {
            return Err(StoreError::BlobCorrupt {
                digest: digest.to_string(),
                path: format!("{}/{}", self.location, key),
            });
        }
        Ok(bytes.to_vec())
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        use object_store::ObjectStoreExt as _;
        match self.store.head(&self.key(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.io("checking", digest, e)),
        }
    }
}

/// Stores an artifact's bytes and indexes them: the blob first, so the index never names a blob
/// that is not there.
pub async fn put_artifact<S, B>(
    store: &S,
    blobs: &B,
    bytes: Vec<u8>,
    media_type: &str,
    secret: bool,
) -> Result<ArtifactRecord>
where
    S: Store + ?Sized,
    B: BlobStore + ?Sized,
{
    let size = bytes.len() as u64;
    let digest = blobs.put(bytes, secret).await?;
    let record = ArtifactRecord {
        digest,
        size,
        media_type: media_type.to_string(),
        secret,
        created_at: now_millis(),
    };
    store.put_artifact(&record).await?;
    Ok(store.artifact(&digest).await?.unwrap_or(record))
}
