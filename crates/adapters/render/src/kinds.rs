//! Built-in Kubernetes kinds of the configured version: their group, version, scope and JSON
//! schema, all derived from k8s-openapi (the version is the one feature the workspace enables),
//! so the table follows the Kubernetes release instead of being maintained by hand.

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::schemars::{self, JsonSchema};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};

/// The Kubernetes minor version whose schemas and scopes are compiled in.
pub const KUBERNETES_VERSION: &str = "1.33";

/// One built-in kind at one API version.
#[derive(Clone, Copy)]
pub struct BuiltinKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Generates the kind's JSON schema (draft 2020-12, with `$defs`).
    pub schema: fn() -> serde_json::Value,
}

impl std::fmt::Debug for BuiltinKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.group, self.version, self.kind)
    }
}

/// Maps k8s-openapi's scope marker types to "is namespaced".
trait Scope {
    const NAMESPACED: bool;
}
impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn schema_of<T: JsonSchema>() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    generator.root_schema_for::<T>().to_value()
}

fn builtin<T>() -> BuiltinKind
where
    T: Resource + JsonSchema,
    T::Scope: Scope,
{
    BuiltinKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        namespaced: <T::Scope as Scope>::NAMESPACED,
        schema: schema_of::<T>,
    }
}

macro_rules! builtins {
    ($($path:path),* $(,)?) => {
        fn all_builtins() -> Vec<BuiltinKind> {
            vec![$(builtin::<$path>()),*]
        }
    };
}

// Every top-level resource type of k8s-openapi's version module (sub-resources such as Scale
// and Eviction, and meta types such as Status, are not manifests).
builtins![
    k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
    k8s_openapi::api::admissionregistration::v1beta1::ValidatingAdmissionPolicy,
    k8s_openapi::api::admissionregistration::v1beta1::ValidatingAdmissionPolicyBinding,
    k8s_openapi::api::apiserverinternal::v1alpha1::StorageVersion,
    k8s_openapi::api::apps::v1::ControllerRevision,
    k8s_openapi::api::apps::v1::DaemonSet,
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::apps::v1::ReplicaSet,
    k8s_openapi::api::apps::v1::StatefulSet,
    k8s_openapi::api::authentication::v1::SelfSubjectReview,
    k8s_openapi::api::authentication::v1::TokenReview,
    k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
    k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
    k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
    k8s_openapi::api::authorization::v1::SubjectAccessReview,
    k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
    k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
    k8s_openapi::api::batch::v1::CronJob,
    k8s_openapi::api::batch::v1::Job,
    k8s_openapi::api::certificates::v1::CertificateSigningRequest,
    k8s_openapi::api::certificates::v1alpha1::ClusterTrustBundle,
    k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle,
    k8s_openapi::api::coordination::v1::Lease,
    k8s_openapi::api::coordination::v1alpha2::LeaseCandidate,
    k8s_openapi::api::coordination::v1beta1::LeaseCandidate,
    k8s_openapi::api::core::v1::Binding,
    k8s_openapi::api::core::v1::ComponentStatus,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::Endpoints,
    k8s_openapi::api::core::v1::Event,
    k8s_openapi::api::core::v1::LimitRange,
    k8s_openapi::api::core::v1::Namespace,
    k8s_openapi::api::core::v1::Node,
    k8s_openapi::api::core::v1::PersistentVolume,
    k8s_openapi::api::core::v1::PersistentVolumeClaim,
    k8s_openapi::api::core::v1::Pod,
    k8s_openapi::api::core::v1::PodTemplate,
    k8s_openapi::api::core::v1::ReplicationController,
    k8s_openapi::api::core::v1::ResourceQuota,
    k8s_openapi::api::core::v1::Secret,
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::ServiceAccount,
    k8s_openapi::api::discovery::v1::EndpointSlice,
    k8s_openapi::api::events::v1::Event,
    k8s_openapi::api::flowcontrol::v1::FlowSchema,
    k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration,
    k8s_openapi::api::networking::v1::Ingress,
    k8s_openapi::api::networking::v1::IngressClass,
    k8s_openapi::api::networking::v1::IPAddress,
    k8s_openapi::api::networking::v1::NetworkPolicy,
    k8s_openapi::api::networking::v1::ServiceCIDR,
    k8s_openapi::api::networking::v1beta1::IPAddress,
    k8s_openapi::api::networking::v1beta1::ServiceCIDR,
    k8s_openapi::api::node::v1::RuntimeClass,
    k8s_openapi::api::policy::v1::PodDisruptionBudget,
    k8s_openapi::api::rbac::v1::ClusterRole,
    k8s_openapi::api::rbac::v1::ClusterRoleBinding,
    k8s_openapi::api::rbac::v1::Role,
    k8s_openapi::api::rbac::v1::RoleBinding,
    k8s_openapi::api::resource::v1alpha3::DeviceClass,
    k8s_openapi::api::resource::v1alpha3::DeviceTaintRule,
    k8s_openapi::api::resource::v1alpha3::ResourceClaim,
    k8s_openapi::api::resource::v1alpha3::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1alpha3::ResourceSlice,
    k8s_openapi::api::resource::v1beta1::DeviceClass,
    k8s_openapi::api::resource::v1beta1::ResourceClaim,
    k8s_openapi::api::resource::v1beta1::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1beta1::ResourceSlice,
    k8s_openapi::api::resource::v1beta2::DeviceClass,
    k8s_openapi::api::resource::v1beta2::ResourceClaim,
    k8s_openapi::api::resource::v1beta2::ResourceClaimTemplate,
    k8s_openapi::api::resource::v1beta2::ResourceSlice,
    k8s_openapi::api::scheduling::v1::PriorityClass,
    k8s_openapi::api::storage::v1::CSIDriver,
    k8s_openapi::api::storage::v1::CSINode,
    k8s_openapi::api::storage::v1::CSIStorageCapacity,
    k8s_openapi::api::storage::v1::StorageClass,
    k8s_openapi::api::storage::v1::VolumeAttachment,
    k8s_openapi::api::storage::v1alpha1::VolumeAttributesClass,
    k8s_openapi::api::storage::v1beta1::VolumeAttributesClass,
    k8s_openapi::api::storagemigration::v1alpha1::StorageVersionMigration,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
];

/// Cluster-scoped kinds of API versions the compiled-in release no longer serves; their scope
/// still matters when an old manifest is rendered (namespaces must not be added to them).
const LEGACY_CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("policy", "PodSecurityPolicy"),
    ("extensions", "PodSecurityPolicy"),
];

struct Table {
    by_gvk: HashMap<(&'static str, &'static str, &'static str), BuiltinKind>,
    /// Scope by group and kind over every version (scope never changes between versions).
    scope_by_gk: HashMap<(&'static str, &'static str), bool>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut by_gvk = HashMap::new();
        let mut scope_by_gk = HashMap::new();
        for k in all_builtins() {
            by_gvk.insert((k.group, k.version, k.kind), k);
            scope_by_gk.insert((k.group, k.kind), k.namespaced);
        }
        for (g, k) in LEGACY_CLUSTER_SCOPED {
            scope_by_gk.insert((*g, *k), false);
        }
        Table {
            by_gvk,
            scope_by_gk,
        }
    })
}

/// The built-in kind at exactly this group, version and kind.
pub fn builtin_kind(group: &str, version: &str, kind: &str) -> Option<BuiltinKind> {
    table().by_gvk.get(&(group, version, kind)).copied()
}

/// Whether a built-in kind (any version of its group) is namespaced; `None` for kinds the
/// compiled-in release does not know.
pub fn builtin_namespaced(group: &str, kind: &str) -> Option<bool> {
    table().scope_by_gk.get(&(group, kind)).copied()
}

/// Every built-in kind, for listings and tests.
pub fn builtins() -> impl Iterator<Item = &'static BuiltinKind> {
    table().by_gvk.values()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_k8s_openapi() {
        assert_eq!(builtin_namespaced("apps", "Deployment"), Some(true));
        assert_eq!(builtin_namespaced("", "Namespace"), Some(false));
        assert_eq!(builtin_namespaced("", "PersistentVolume"), Some(false));
        assert_eq!(
            builtin_namespaced("rbac.authorization.k8s.io", "ClusterRole"),
            Some(false)
        );
        assert_eq!(
            builtin_namespaced("apiextensions.k8s.io", "CustomResourceDefinition"),
            Some(false)
        );
        assert_eq!(builtin_namespaced("example.com", "Widget"), None);
        assert!(builtin_kind("apps", "v1", "Deployment").is_some());
        assert!(builtin_kind("apps", "v1beta1", "Deployment").is_none());
        assert!(builtins().count() > 80);
    }

    #[test]
    fn schemas_reference_their_definitions() {
        let k = builtin_kind("apps", "v1", "Deployment").unwrap();
        let schema = (k.schema)();
        assert!(schema["$defs"]["io.k8s.api.apps.v1.DeploymentSpec"].is_object());
        assert!(schema["properties"]["spec"]["$ref"].is_string());
    }
}
