//! A deterministic generator of realistic manifests for benchmarks: Deployments, Services,
//! ConfigMaps, ServiceAccounts, StatefulSets, Ingresses, HPAs, PDBs, NetworkPolicies, CronJobs,
//! Roles and RoleBindings, spread over namespaces. The same count and seed always give the same
//! bytes.

use std::fmt::Write as _;

use sluice_model::splitmix::SplitMix64;

/// Kinds per generated service, in order; the second Deployment and Service are the
/// service's worker (names get a `-worker` suffix).
const KINDS: &[&str] = &[
    "Deployment",
    "Service",
    "ConfigMap",
    "ServiceAccount",
    "Deployment+worker",
    "Service+worker",
    "StatefulSet",
    "Ingress",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "CronJob",
    "Role",
    "RoleBinding",
];

/// `count` manifests, one YAML document each. With `namespaced = false` no object carries a
/// namespace (for Kustomize overlays that set one).
pub fn manifests(count: usize, seed: u64, namespaced: bool) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|i| {
            let (kind, worker) = match KINDS[i % KINDS.len()].split_once('+') {
                Some((k, _)) => (k, true),
                None => (KINDS[i % KINDS.len()], false),
            };
            let service = i / KINDS.len();
            let app = if worker {
                format!("svc-{service:05}-worker")
            } else {
                format!("svc-{service:05}")
            };
            // One namespace per service, so that names never collide.
            let ns = format!("team-{:02}", service % 40);
            manifest(kind, &app, namespaced.then_some(ns.as_str()), &mut rng)
        })
        .collect()
}

fn metadata(out: &mut String, name: &str, ns: Option<&str>, app: &str) {
    let _ = writeln!(out, "metadata:\n  name: {name}");
    if let Some(ns) = ns {
        let _ = writeln!(out, "  namespace: {ns}");
    }
    let _ = writeln!(
        out,
        "  labels:\n    app.kubernetes.io/name: {app}\n    app.kubernetes.io/part-of: generated"
    );
}

fn pod_spec(out: &mut String, app: &str, rng: &mut SplitMix64, indent: &str) {
    let tag = format!("v{}.{}.{}", rng.below(4), rng.below(20), rng.below(50));
    let cpu = [100, 250, 500, 1000][rng.below(4)];
    let mem = [128, 256, 512, 1024][rng.below(4)];
    let port = 8000 + rng.below(100);
    let _ = write!(
        out,
        "{indent}serviceAccountName: {app}
{indent}securityContext:
{indent}  runAsNonRoot: true
{indent}containers:
{indent}- name: {app}
{indent}  image: ghcr.io/acme/{app}:{tag}
{indent}  args: [\"--port={port}\", \"--log-level=info\"]
{indent}  ports:
{indent}  - name: http
{indent}    containerPort: {port}
{indent}  env:
{indent}  - name: APP_NAME
{indent}    value: {app}
{indent}  - name: POD_NAMESPACE
{indent}    valueFrom:
{indent}      fieldRef: {{fieldPath: metadata.namespace}}
{indent}  resources:
{indent}    requests: {{cpu: {cpu}m, memory: {mem}Mi}}
{indent}    limits: {{cpu: \"{}\", memory: {}Mi}}
{indent}  readinessProbe:
{indent}    httpGet: {{path: /healthz, port: http}}
{indent}  livenessProbe:
{indent}    httpGet: {{path: /healthz, port: http}}
{indent}    initialDelaySeconds: 10
",
        (cpu * 2) as f64 / 1000.0,
        mem * 2
    );
}

fn manifest(kind: &str, app: &str, ns: Option<&str>, rng: &mut SplitMix64) -> String {
    let mut out = String::with_capacity(1024);
    match kind {
        "Deployment" | "StatefulSet" => {
            let name = if kind == "StatefulSet" {
                format!("{app}-db")
            } else {
                app.to_string()
            };
            let _ = writeln!(out, "apiVersion: apps/v1\nkind: {kind}");
            metadata(&mut out, &name, ns, app);
            let _ = writeln!(out, "spec:");
            if kind == "StatefulSet" {
                let _ = writeln!(out, "  serviceName: {name}");
            }
            let _ = writeln!(
                out,
                "  replicas: {}\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {name}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: {name}\n    spec:",
                1 + rng.below(5)
            );
            pod_spec(&mut out, app, rng, "      ");
        }
        "Service" => {
            let _ = writeln!(out, "apiVersion: v1\nkind: Service");
            metadata(&mut out, app, ns, app);
            let _ = writeln!(
                out,
                "spec:\n  selector:\n    app.kubernetes.io/name: {app}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http"
            );
        }
        "ConfigMap" => {
            let _ = writeln!(out, "apiVersion: v1\nkind: ConfigMap");
            metadata(&mut out, &format!("{app}-config"), ns, app);
            let _ = writeln!(
                out,
                "data:\n  LOG_LEVEL: info\n  FEATURE_FLAGS: \"checkout,search\"\n  app.properties: |\n    server.port={}\n    cache.ttl={}s\n",
                8000 + rng.below(100),
                rng.below(600)
            );
        }
        "ServiceAccount" => {
            let _ = writeln!(out, "apiVersion: v1\nkind: ServiceAccount");
            metadata(&mut out, app, ns, app);
            let _ = writeln!(out, "automountServiceAccountToken: false");
        }
        "Ingress" => {
            let _ = writeln!(out, "apiVersion: networking.k8s.io/v1\nkind: Ingress");
            metadata(&mut out, app, ns, app);
            let _ = writeln!(
                out,
                "spec:\n  ingressClassName: nginx\n  rules:\n  - host: {app}.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: {app}\n            port: {{name: http}}"
            );
        }
        "HorizontalPodAutoscaler" => {
            let _ = writeln!(
                out,
                "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler"
            );
            metadata(&mut out, app, ns, app);
            let _ = writeln!(
                out,
                "spec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {app}}}\n  minReplicas: 2\n  maxReplicas: {}\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target: {{type: Utilization, averageUtilization: 70}}",
                3 + rng.below(20)
            );
        }
        "PodDisruptionBudget" => {
            let _ = writeln!(out, "apiVersion: policy/v1\nkind: PodDisruptionBudget");
            metadata(&mut out, app, ns, app);
            let _ = writeln!(
                out,
                "spec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {app}"
            );
        }
        "NetworkPolicy" => {
            let _ = writeln!(out, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy");
            metadata(&mut out, app, ns, app);
            let _ = writeln!(
                out,
                "spec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: {app}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels: {{kubernetes.io/metadata.name: ingress-nginx}}\n    ports:\n    - port: http"
            );
        }
        "CronJob" => {
            let _ = writeln!(out, "apiVersion: batch/v1\nkind: CronJob");
            metadata(&mut out, &format!("{app}-report"), ns, app);
            let _ = writeln!(
                out,
                "spec:\n  schedule: \"{} {} * * *\"\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure",
                rng.below(60),
                rng.below(24)
            );
            pod_spec(&mut out, app, rng, "          ");
        }
        "Role" => {
            let _ = writeln!(out, "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role");
            metadata(&mut out, app, ns, app);
            let _ = writeln!(
                out,
                "rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]"
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding"
            );
            metadata(&mut out, app, ns, app);
            let _ = writeln!(
                out,
                "roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {app}}}\nsubjects:\n- kind: ServiceAccount\n  name: {app}"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::assemble;
    use crate::manifest::{Limits, parse_documents};
    use crate::schema::{Options, SchemaSet, validate};

    #[test]
    fn deterministic_and_schema_valid() {
        let a = manifests(60, 7, true);
        assert_eq!(a, manifests(60, 7, true));
        assert_ne!(a, manifests(60, 8, true));
        let text = a.join("---\n");
        let docs = parse_documents("gen.yaml", text.as_bytes(), &Limits::default(), true).unwrap();
        let mut set = SchemaSet::new();
        let objs = assemble(docs, None, &mut set).unwrap().objects;
        assert_eq!(objs.len(), 60);
        let v = validate(&objs, &set, Options { strict: true });
        assert!(v.findings.is_empty(), "{:#?}", v.findings);
    }
}
