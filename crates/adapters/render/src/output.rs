//! `--out DIR`: the rendered objects as files, one per object plus `render.json`, written all
//! or nothing. Files are written into a sibling temporary folder and renamed into place, so an
//! error (or a crash) never leaves a half-written render behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::emit;
use crate::error::RenderError;
use crate::object::Object;
use crate::redact::redacted;

/// File name of one object: its position (render order) and identity, filesystem-safe.
pub fn file_name(index: usize, o: &Object) -> String {
    let id = &o.identity;
    let mut parts = vec![format!("{index:04}")];
    if !id.group.is_empty() {
        parts.push(id.group.clone());
    }
    parts.push(id.kind.clone());
    if !id.namespace.is_empty() {
        parts.push(id.namespace.clone());
    }
    parts.push(id.name.clone());
    let name: String = parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{name}.yaml")
}

/// Write `objects` (redacted) and `summary` (as `render.json`) to `dir`, which must not exist
/// or be empty.
pub fn write_dir(
    dir: &Path,
    objects: &[Object],
    summary: &serde_json::Value,
) -> Result<PathBuf, RenderError> {
    let io = |what: &str, e: std::io::Error| RenderError::io(what, e);
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| io(&dir.display().to_string(), e))?;
        if entries.next().is_some() {
            return Err(RenderError::Refused(format!(
                "{} exists and is not empty; choose a new folder (a render is never merged into another)",
                dir.display()
            )));
        }
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io(&parent.display().to_string(), e))?;
    let staging = tempfile::Builder::new()
        .prefix(".sluice-render-")
        .tempdir_in(&parent)
        .map_err(|e| io("creating a staging folder", e))?;
    for (i, o) in objects.iter().enumerate() {
        write_synced(
            &staging.path().join(file_name(i, o)),
            emit::to_yaml(&redacted(o)).as_bytes(),
        )
        .map_err(|e| io("writing an object", e))?;
    }
    let mut json = serde_json::to_vec_pretty(summary).expect("summaries serialise");
    json.push(b'\n');
    write_synced(&staging.path().join("render.json"), &json)
        .map_err(|e| io("writing render.json", e))?;
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        io(&format!("moving the render into {}", dir.display()), e)
    })?;
    Ok(dir.to_path_buf())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Identity, Source};

    fn obj(kind: &str, ns: &str, name: &str) -> Object {
        Object {
            identity: Identity {
                group: "apps".into(),
                kind: kind.into(),
                namespace: ns.into(),
                name: name.into(),
            },
            api_version: "apps/v1".into(),
            source: Source::default(),
            tree: None,
            value: serde_json::json!({"kind": kind}),
        }
    }

    #[test]
    fn names_are_ordered_and_safe() {
        assert_eq!(
            file_name(3, &obj("Deployment", "pay", "web")),
            "0003_apps_deployment_pay_web.yaml"
        );
        assert_eq!(
            file_name(0, &obj("X", "", "a/b:c")),
            "0000_apps_x_a-b-c.yaml"
        );
    }

    #[test]
    fn writes_all_or_nothing() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("render");
        write_dir(
            &out,
            &[obj("Deployment", "pay", "web")],
            &serde_json::json!({"digest": "x"}),
        )
        .unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["0000_apps_deployment_pay_web.yaml", "render.json"]);
        // A non-empty target is refused and left as it was; no staging folder remains.
        let err = write_dir(&out, &[], &serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
