//! The local artifact store: content addressing, create-only writes, secret permissions and
//! corruption detection, on real plan JSON from the corpus.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;

use sluice_store::{ArtifactIndex, BlobStore, Digest, LocalBlobs, StoreError, put_artifact};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/corpus");

/// Real plan JSON files from the corpus, or `None` (with a notice) when it is absent.
fn corpus_plans() -> Option<Vec<PathBuf>> {
    let dir = PathBuf::from(CORPUS).join("tf-plans/terraform-json/testdata");
    if !dir.is_dir() {
        if std::env::var("SLUICE_REQUIRE_CORPUS").as_deref() == Ok("1") {
            panic!(
                "corpus missing at {} (SLUICE_REQUIRE_CORPUS=1)",
                dir.display()
            );
        }
        eprintln!("notice: corpus missing at {}; skipping", dir.display());
        return None;
    }
    let mut plans: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path().join("plan.json");
            p.is_file().then_some(p)
        })
        .collect();
    plans.sort();
    assert!(!plans.is_empty(), "no plan.json under {}", dir.display());
    Some(plans)
}

fn no_temp_files(root: &std::path::Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                assert!(
                    !name.starts_with(".tmp-"),
                    "temporary file left behind: {}",
                    p.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn corpus_plans_round_trip_by_digest() {
    let Some(plans) = corpus_plans() else { return };
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobs::new(dir.path().join(".sluice/blobs"));
    for plan in &plans {
        let bytes = std::fs::read(plan).unwrap();
        let digest = blobs.put(bytes.clone(), true).await.unwrap();
        assert_eq!(digest, Digest::of(&bytes));
        let hex = digest.hex();
        let path = dir
            .path()
            .join(".sluice/blobs/sha256")
            .join(&hex[..2])
            .join(&hex[2..]);
        assert_eq!(blobs.path_of(&digest), path);
        assert!(path.is_file());
        assert_eq!(blobs.get(&digest).await.unwrap(), bytes);
        assert!(blobs.contains(&digest).await.unwrap());
    }
    no_temp_files(blobs.root());
}

#[tokio::test]
async fn existing_blobs_are_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobs::new(dir.path());
    let digest = blobs.put(b"plan bytes".to_vec(), false).await.unwrap();
    let path = blobs.path_of(&digest);
    let before = std::fs::metadata(&path).unwrap();
    assert_eq!(
        blobs.put(b"plan bytes".to_vec(), false).await.unwrap(),
        digest
    );
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    // Many writers of the same content at once: one file, all told the same digest.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let blobs = blobs.clone();
        tasks.push(tokio::spawn(async move {
            blobs.put(b"same content".to_vec(), false).await
        }));
    }
    let mut digests = Vec::new();
    for t in tasks {
        digests.push(t.await.unwrap().unwrap());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    no_temp_files(blobs.root());
}

#[tokio::test]
async fn secrets_are_private_to_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobs::new(dir.path());
    let secret = blobs
        .put(b"db_password = hunter2".to_vec(), true)
        .await
        .unwrap();
    let public = blobs
        .put(b"rendered manifest".to_vec(), false)
        .await
        .unwrap();
    let mode = |d: &Digest| {
        std::fs::metadata(blobs.path_of(d))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&public), 0o644);
}

#[tokio::test]
async fn a_corrupt_blob_is_named_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobs::new(dir.path());
    let digest = blobs.put(b"original plan".to_vec(), false).await.unwrap();
    let path = blobs.path_of(&digest);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"original plaN").unwrap();
    let err = blobs.get(&digest).await.unwrap_err();
    assert!(matches!(err, StoreError::BlobCorrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&digest.to_string()), "{msg}");
    // Create-only holds even for a damaged blob: a put does not paper over it.
    blobs.put(b"original plan".to_vec(), false).await.unwrap();
    assert!(blobs.get(&digest).await.is_err());
    let missing = Digest::of(b"never stored");
    assert!(matches!(
        blobs.get(&missing).await.unwrap_err(),
        StoreError::NotFound {
            what: "artifact",
            ..
        }
    ));
}

#[tokio::test]
async fn artifacts_are_stored_then_indexed() {
    let fx = common::sqlite().await;
    let blobs = LocalBlobs::new(fx.dir.path().join(".sluice/blobs"));
    let bytes = b"{\"format_version\":\"1.2\"}".to_vec();
    let rec = put_artifact(&fx.store, &blobs, bytes.clone(), "application/json", true)
        .await
        .unwrap();
    assert_eq!(rec.digest, Digest::of(&bytes));
    assert_eq!(rec.size, bytes.len() as u64);
    assert!(rec.secret);
    assert_eq!(fx.store.artifact(&rec.digest).await.unwrap().unwrap(), rec);
    assert_eq!(blobs.get(&rec.digest).await.unwrap(), bytes);
    // Again: the first index entry stays.
    let again = put_artifact(&fx.store, &blobs, bytes, "application/json", true)
        .await
        .unwrap();
    assert_eq!(again, rec);
}

mod object_store_blobs {
    use std::sync::Arc;

    use object_store::ObjectStoreExt as _;
    use sluice_store::{BlobStore, Digest, ObjectBlobs, StoreError};

    #[tokio::test]
    async fn create_only_and_verified_on_read() {
        // object_store's in-memory store: the same trait the S3 client implements.
        let raw: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let blobs = ObjectBlobs::new(raw.clone(), "/evidence/");
        let digest = blobs.put(b"plan file".to_vec(), true).await.unwrap();
        assert_eq!(digest, Digest::of(b"plan file"));
        let hex = digest.hex();
        let key =
            object_store::path::Path::from(format!("evidence/sha256/{}/{}", &hex[..2], &hex[2..]));
        let meta = raw.head(&key).await.unwrap();
        assert_eq!(meta.size, 9);
        // Again: no rewrite (the object's version stays).
        assert_eq!(
            blobs.put(b"plan file".to_vec(), true).await.unwrap(),
            digest
        );
        assert_eq!(raw.head(&key).await.unwrap().e_tag, meta.e_tag);
        assert_eq!(blobs.get(&digest).await.unwrap(), b"plan file");
        assert!(blobs.contains(&digest).await.unwrap());
        assert!(!blobs.contains(&Digest::of(b"other")).await.unwrap());
        assert!(matches!(
            blobs.get(&Digest::of(b"other")).await.unwrap_err(),
            StoreError::NotFound { .. }
        ));
        // Someone with bucket access swaps the bytes: the read names the digest.
        raw.put(&key, b"plan filE".to_vec().into()).await.unwrap();
        let err = blobs.get(&digest).await.unwrap_err();
        assert!(matches!(err, StoreError::BlobCorrupt { .. }), "{err}");
        assert!(err.to_string().contains(&digest.to_string()));
    }

    #[test]
    fn s3_urls_are_checked() {
        assert!(
            ObjectBlobs::s3("https://bucket")
                .unwrap_err()
                .to_string()
                .contains("s3://")
        );
        assert!(
            ObjectBlobs::s3("s3:///prefix")
                .unwrap_err()
                .to_string()
                .contains("bucket")
        );
    }
}
