//! A rendered Kubernetes object: its JSON, its identity (group/kind/namespace/name, what the API
//! server keys objects by) and where it came from, so every diagnostic can point at a file.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// What makes two objects "the same object" on a cluster. The API version is not part of it:
/// `apps/v1` and `apps/v1beta1` Deployments of one name are one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Identity {
    /// API group; empty for the core group (`v1`).
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Identity {
    /// `apps/Deployment payments/web`, `Namespace payments`, `v1 ConfigMap default/x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        f.write_str(&self.kind)?;
        if self.namespace.is_empty() {
            write!(f, " {}", self.name)
        } else {
            write!(f, " {}/{}", self.namespace, self.name)
        }
    }
}

/// Where a rendered object came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct Source {
    /// Repository-relative file, or a description of a tool's output
    /// (`kustomize build env-gitops/clusters/prod/apps/payments`).
    pub file: String,
    /// 0-based index of the YAML document in that file or output.
    pub document: usize,
    /// 1-based line where the document starts (0 when unknown).
    pub line: u32,
    /// For Kustomize and Helm output: the repository file the object most likely comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}", self.file, self.line)?;
        } else {
            write!(f, "{} (document {})", self.file, self.document + 1)?;
        }
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// One normalised object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object {
    pub identity: Identity,
    pub api_version: String,
    pub source: Source,
    /// The parsed document, to map a JSON path to a line (repository files only).
    #[serde(skip)]
    pub tree: Option<Arc<sluice_model::yaml::Node>>,
    /// The object, normalised (keys sorted, empty values dropped, namespace applied).
    pub value: serde_json::Value,
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The version of an `apiVersion` (`apps/v1` → `v1`).
pub fn version_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or(api_version, |(_, v)| v)
}

impl Object {
    pub fn kind(&self) -> &str {
        &self.identity.kind
    }

    pub fn is_secret(&self) -> bool {
        self.identity.group.is_empty() && self.identity.kind == "Secret"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_parts() {
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
        assert_eq!(version_of("v1"), "v1");
        assert_eq!(version_of("rbac.authorization.k8s.io/v1"), "v1");
    }

    #[test]
    fn identity_display() {
        let id = Identity {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "pay".into(),
            name: "web".into(),
        };
        assert_eq!(id.to_string(), "apps/Deployment pay/web");
        let ns = Identity {
            group: String::new(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "pay".into(),
        };
        assert_eq!(ns.to_string(), "Namespace pay");
    }
}
