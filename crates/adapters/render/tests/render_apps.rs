//! Rendering apps from git objects: plain folders of realistic manifests (written here, not
//! from ../shared), Kustomize through the real `kubectl kustomize` (skipped with a notice when
//! neither kustomize nor kubectl is installed; CI has kubectl), Helm through a test double of
//! the helm CLI, bad input, and a planted Secret that must never show.

mod common;

use std::path::Path;

use common::{config, files, repo};
use sluice_render::diff::diff;
use sluice_render::error::RenderError;
use sluice_render::manifest::{Limits, parse_documents};
use sluice_render::render::{self, AppSpec, Options, find_app, render_app};
use sluice_render::report;
use sluice_render::schema::{self, validate};

const APP: &str = "gitops/clusters/prod-eu/apps/shop";

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n";

const CERT_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  names:
    kind: Certificate
    listKind: CertificateList
    plural: certificates
    shortNames: [cert, certs]
    singular: certificate
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              required: [issuerRef, secretName]
              properties:
                commonName: {type: string}
                dnsNames:
                  type: array
                  items: {type: string}
                duration: {type: string}
                renewBefore: {type: string}
                secretName: {type: string}
                privateKey:
                  type: object
                  properties:
                    algorithm:
                      type: string
                      enum: [RSA, ECDSA, Ed25519]
                    size: {type: integer}
                issuerRef:
                  type: object
                  required: [name]
                  properties:
                    group: {type: string}
                    kind: {type: string}
                    name: {type: string}
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"#;

const CERTIFICATE: &str = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: storefront-tls\nspec:\n  secretName: storefront-tls\n  duration: 2160h\n  renewBefore: 360h\n  dnsNames:\n    - shop.example.com\n    - www.shop.example.com\n  privateKey:\n    algorithm: ECDSA\n    size: 256\n  issuerRef:\n    name: letsencrypt-prod\n    kind: ClusterIssuer\n    group: cert-manager.io\n";

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: storefront
  labels:
    app.kubernetes.io/name: storefront
    app.kubernetes.io/component: web
  annotations:
    reloader.stakater.com/auto: "true"
spec:
  replicas: 3
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      app.kubernetes.io/name: storefront
  template:
    metadata:
      labels:
        app.kubernetes.io/name: storefront
    spec:
      serviceAccountName: storefront
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: storefront
      containers:
        - name: storefront
          image: ghcr.io/acme/storefront:2.14.1@sha256:3b8e0f6c0d52e3d6f1a8b4c2e9d7f5a1b3c5e7f9a1b3c5d7e9f1a3b5c7d9e1f3
          imagePullPolicy: IfNotPresent
          args: ["--listen=:8080", "--metrics=:9090"]
          ports:
            - {name: http, containerPort: 8080}
            - {name: metrics, containerPort: 9090}
          env:
            - name: GOMEMLIMIT
              valueFrom:
                resourceFieldRef:
                  resource: limits.memory
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef: {name: storefront-db, key: url}
          envFrom:
            - configMapRef: {name: storefront-config}
          resources:
            requests: {cpu: 250m, memory: 256Mi}
            limits: {cpu: "1", memory: 512Mi}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            initialDelaySeconds: 10
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
      volumes:
        - name: tmp
          emptyDir: {}
"#;

const SERVICE_AND_INGRESS: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: storefront
spec:
  selector:
    app.kubernetes.io/name: storefront
  ports:
    - name: http
      port: 80
      targetPort: http
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: storefront
  annotations:
    cert-manager.io/cluster-issuer: letsencrypt-prod
spec:
  ingressClassName: nginx
  tls:
    - hosts: [shop.example.com]
      secretName: storefront-tls
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: storefront
                port:
                  name: http
"#;

const SCALING: &str = r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: storefront
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: storefront
  minReplicas: 3
  maxReplicas: 12
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 65
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: storefront
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: storefront
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: storefront-ingress
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: storefront
  policyTypes: [Ingress]
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: ingress-nginx
      ports:
        - port: 8080
          protocol: TCP
"#;

const SERVICE_MONITOR: &str = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: storefront\nspec:\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: storefront\n  endpoints:\n    - port: metrics\n      interval: 30s\n";

const SA_AND_CONFIG: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: storefront\nautomountServiceAccountToken: false\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: storefront-config\ndata:\n  LOG_FORMAT: json\n  FEATURES: \"checkout,wishlist\"\n  nginx.conf: |\n    server {\n      listen 8080;\n      location / { proxy_pass http://127.0.0.1:3000; }\n    }\n";

fn shop_files() -> Vec<(String, String)> {
    [
        ("00-namespace.yaml", NAMESPACE),
        ("crd-certificates.yaml", CERT_CRD),
        ("certificate.yaml", CERTIFICATE),
        ("deployment.yaml", DEPLOYMENT),
        ("service.yml", SERVICE_AND_INGRESS),
        ("scaling.yaml", SCALING),
        ("servicemonitor.yaml", SERVICE_MONITOR),
        ("serviceaccount.json", ""),
        ("config.yaml", SA_AND_CONFIG),
        ("README.md", "# shop\nnot a manifest\n"),
        (
            "extras/not-rendered.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nested}\n",
        ),
    ]
    .iter()
    .filter(|(_, c)| !c.is_empty())
    .map(|(n, c)| (format!("{APP}/{n}"), c.to_string()))
    .collect()
}

fn as_files(list: &[(String, String)]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let pairs: Vec<(&str, &str)> = list.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    files(&pairs)
}

#[test]
fn plain_folder_of_real_manifests_renders_and_validates() {
    let r = repo(&[as_files(&shop_files())]);
    let snap = &r.snapshots[0];
    let app = find_app(&config(snap), snap, "prod-eu/shop").unwrap();
    assert_eq!(app.kind, sluice_model::kustomize::AppKind::Plain);
    assert_eq!(app.env.as_deref(), Some("prod"));
    let rendered = render_app(snap, &app, &Options::default()).unwrap();
    assert_eq!(rendered.namespace, "shop");
    let ids: Vec<String> = rendered
        .objects
        .iter()
        .map(|o| o.identity.to_string())
        .collect();
    assert_eq!(
        ids,
        [
            "Namespace shop",
            "apiextensions.k8s.io/CustomResourceDefinition certificates.cert-manager.io",
            "cert-manager.io/Certificate shop/storefront-tls",
            "ConfigMap shop/storefront-config",
            "apps/Deployment shop/storefront",
            "autoscaling/HorizontalPodAutoscaler shop/storefront",
            "networking.k8s.io/Ingress shop/storefront",
            "networking.k8s.io/NetworkPolicy shop/storefront-ingress",
            "policy/PodDisruptionBudget shop/storefront",
            "Service shop/storefront",
            "ServiceAccount shop/storefront",
            "monitoring.coreos.com/ServiceMonitor shop/storefront",
        ]
    );
    assert!(rendered.tool.is_none());
    let v = validate(
        &rendered.objects,
        &rendered.schemas,
        schema::Options::default(),
    );
    assert!(v.passed(), "{:#?}", v.findings);
    // Only the ServiceMonitor lacks a schema (no CRD for it in the repository).
    assert_eq!(v.no_schema, 1, "{:#?}", v.findings);
    assert_eq!(v.findings[0].rule, "schema/missing");
    assert_eq!(v.findings[0].file, format!("{APP}/servicemonitor.yaml"));
    assert_eq!(v.valid, 11);
    assert!(
        !validate(
            &rendered.objects,
            &rendered.schemas,
            schema::Options { strict: true }
        )
        .passed()
    );

    // The digest depends on the objects, not on how they are spread over files.
    let mut regrouped: Vec<(String, String)> = shop_files()
        .into_iter()
        .filter(|(p, _)| !p.ends_with("scaling.yaml") && !p.ends_with("service.yml"))
        .collect();
    regrouped.push((
        format!("{APP}/zz-all.yaml"),
        format!("{SCALING}---\n{SERVICE_AND_INGRESS}"),
    ));
    let r2 = repo(&[as_files(&regrouped)]);
    let again = render_app(&r2.snapshots[0], &app, &Options::default()).unwrap();
    assert_eq!(again.digest, rendered.digest);
    assert!(rendered.digest.starts_with("sha256:") && rendered.digest.len() == 71);
}

#[test]
fn crds_elsewhere_in_the_repository_are_used() {
    let mut list = shop_files();
    list.retain(|(p, _)| !p.ends_with("crd-certificates.yaml"));
    list.push(("platform/crds/cert-manager.yaml".into(), CERT_CRD.into()));
    list.push((format!("{APP}/bad-cert.yaml"), "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: broken\nspec:\n  dnsNames: shop.example.com\n  issuerRef: {name: x}\n".into()));
    let r = repo(&[as_files(&list)]);
    let snap = &r.snapshots[0];
    let app = find_app(&config(snap), snap, "prod-eu/shop").unwrap();
    let rendered = render_app(snap, &app, &Options::default()).unwrap();
    let v = validate(
        &rendered.objects,
        &rendered.schemas,
        schema::Options::default(),
    );
    let errors: Vec<String> = v
        .findings
        .iter()
        .filter(|f| f.rule == "schema/invalid")
        .map(|f| f.to_string())
        .collect();
    assert_eq!(
        errors,
        [
            format!(
                "{APP}/bad-cert.yaml:5: error: cert-manager.io/Certificate shop/broken /spec: missing required field `secretName` [schema/invalid]"
            ),
            format!(
                "{APP}/bad-cert.yaml:6: error: cert-manager.io/Certificate shop/broken /spec/dnsNames: expected array, found string [schema/invalid]"
            ),
        ]
    );
}

#[test]
fn unknown_apps_list_the_known_ones() {
    let r = repo(&[as_files(&shop_files())]);
    let snap = &r.snapshots[0];
    let err = find_app(&config(snap), snap, "prod-eu/shoe").unwrap_err();
    assert_eq!(
        err.to_string(),
        "app `prod-eu/shoe` not found at this revision; known apps: prod-eu/shop"
    );
    assert!(matches!(err, RenderError::UnknownApp { .. }));
}

fn plain_error(extra: &[(&str, &str)], options: &Options) -> RenderError {
    let mut list = vec![(
        format!("{APP}/ok.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n".to_string(),
    )];
    list.extend(
        extra
            .iter()
            .map(|(n, c)| (format!("{APP}/{n}"), c.to_string())),
    );
    let r = repo(&[as_files(&list)]);
    let snap = &r.snapshots[0];
    let app = find_app(&config(snap), snap, "prod-eu/shop").unwrap();
    render_app(snap, &app, options).unwrap_err()
}

#[test]
fn bad_input_names_the_source() {
    let o = Options::default();
    let e = plain_error(
        &[(
            "bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {a: b\n",
        )],
        &o,
    );
    assert!(
        e.to_string().starts_with(&format!("{APP}/bad.yaml:")),
        "{e}"
    );
    assert!(
        matches!(e, RenderError::Syntax { .. } | RenderError::Manifest { .. }),
        "{e}"
    );

    let e = plain_error(
        &[(
            "dup.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n",
        )],
        &o,
    );
    assert_eq!(
        e.to_string(),
        format!("{APP}/dup.yaml:5:3: duplicate key `name` (first defined at line 4)")
    );

    let e = plain_error(
        &[("nokind.yaml", "apiVersion: v1\nmetadata: {name: x}\n")],
        &o,
    );
    assert!(
        e.to_string()
            .contains("nokind.yaml:1: document 1: missing `kind`"),
        "{e}"
    );

    let e = plain_error(
        &[(
            "twice.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: shop}\n",
        )],
        &o,
    );
    assert_eq!(
        e.to_string(),
        format!("ConfigMap shop/ok is defined twice: at {APP}/ok.yaml:1 and at {APP}/twice.yaml:1")
    );

    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: \"{}\"\n",
        "x".repeat(5000)
    );
    let small = Options {
        limits: sluice_render::manifest::Limits {
            max_document_bytes: 4096,
            ..Default::default()
        },
        ..Options::default()
    };
    let e = plain_error(&[("big.yaml", &big)], &small);
    assert!(matches!(e, RenderError::Oversized { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{APP}/big.yaml:1: document 1 is")),
        "{e}"
    );
}

const CANARY_OLD: &str = "sluice-canary-5f1d0c9e7a3b-old";
const CANARY_NEW: &str = "sluice-canary-b2e8a4f6c1d3-new";

#[test]
fn planted_plaintext_secret_never_appears_in_render_or_diff_output() {
    let secret = |v: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: storefront-db\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: '{{\"stringData\":{{\"url\":\"{v}\"}}}}'\ntype: Opaque\nstringData:\n  url: postgres://app:{v}@db:5432/shop\n  user: app\n"
        )
    };
    let mut base = shop_files();
    base.push((format!("{APP}/secret.yaml"), secret(CANARY_OLD)));
    let mut head = shop_files();
    head.push((format!("{APP}/secret.yaml"), secret(CANARY_NEW)));
    let r = repo(&[as_files(&base), as_files(&head)]);
    let app = find_app(&config(&r.snapshots[0]), &r.snapshots[0], "prod-eu/shop").unwrap();
    let b = render_app(&r.snapshots[0], &app, &Options::default()).unwrap();
    let h = render_app(&r.snapshots[1], &app, &Options::default()).unwrap();
    assert_ne!(
        b.digest, h.digest,
        "a changed secret value changes the digest"
    );
    let d = diff(&b.objects, &h.objects);
    assert_eq!((d.changed, d.added, d.removed), (1, 0, 0));
    assert_eq!(d.objects[0].secret_keys.len(), 1);
    assert_eq!(d.objects[0].secret_keys[0].key, "stringData.url");
    let v = validate(&h.objects, &h.schemas, schema::Options::default());
    let sides = (
        report::DiffSide::of("main", Some(&b)),
        report::DiffSide::of("pr", Some(&h)),
    );
    let outputs = [
        report::diff_text("prod-eu/shop", &sides.0, &sides.1, &d),
        report::diff_json("prod-eu/shop", &sides.0, &sides.1, &d, &h.notes).to_string(),
        report::render_text(&h, Some(&v)),
        report::render_json(&h, Some(&v)).to_string(),
        report::render_yaml(&h),
    ];
    for out in &outputs {
        for canary in [CANARY_OLD, CANARY_NEW, "postgres://app:"] {
            assert!(!out.contains(canary), "{canary} leaked into:\n{out}");
        }
    }
    assert!(
        outputs[0].contains("secret key stringData.url Changed (value not shown)"),
        "{}",
        outputs[0]
    );

    // --out files are redacted too.
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("render");
    sluice_render::output::write_dir(
        &target,
        &h.objects,
        &serde_json::json!({"digest": h.digest}),
    )
    .unwrap();
    for entry in std::fs::read_dir(&target).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(CANARY_NEW), "{text}");
    }
}

fn kustomize_available() -> bool {
    let found = sluice_render::tool::kustomize(None).is_ok();
    if !found {
        eprintln!(
            "notice: neither kustomize nor kubectl on PATH; skipping Kustomize render tests (CI has kubectl)"
        );
    }
    found
}

fn kustomize_repo(app_kustomization: &str) -> common::Repo {
    repo(&[files(&[
        (
            "gitops/base/api/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n  - service.yaml\nlabels:\n  - pairs: {app.kubernetes.io/name: api}\n    includeSelectors: true\n",
        ),
        (
            "gitops/base/api/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n        - name: api\n          image: ghcr.io/acme/api:1.0.0\n          envFrom:\n            - configMapRef: {name: api-env}\n          resources:\n            requests: {cpu: 100m, memory: 128Mi}\n",
        ),
        (
            "gitops/base/api/service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  ports:\n    - port: 80\n      targetPort: 8080\n",
        ),
        (
            "gitops/components/tracing/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n  - target: {kind: Deployment}\n    patch: |-\n      - op: add\n        path: /spec/template/metadata/annotations\n        value: {sidecar.opentelemetry.io/inject: \"true\"}\n",
        ),
        (
            "gitops/clusters/prod-eu/apps/api/kustomization.yaml",
            app_kustomization,
        ),
        (
            "gitops/clusters/prod-eu/apps/api/api.env",
            "LOG_LEVEL=info\nREGION=eu-west-1\n",
        ),
        (
            "gitops/clusters/prod-eu/apps/api/replicas.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 4\n",
        ),
    ])])
}

const API_KUSTOMIZATION: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: api-prod\nresources:\n  - ../../../../base/api\ncomponents:\n  - ../../../../components/tracing\nimages:\n  - name: ghcr.io/acme/api\n    newTag: 1.1.0\nconfigMapGenerator:\n  - name: api-env\n    envs: [api.env]\npatches:\n  - path: replicas.yaml\n";

#[test]
fn kustomize_apps_render_from_git_through_the_real_tool() {
    if !kustomize_available() {
        return;
    }
    let r = kustomize_repo(API_KUSTOMIZATION);
    let snap = &r.snapshots[0];
    let app = find_app(&config(snap), snap, "prod-eu/api").unwrap();
    let rendered = render_app(snap, &app, &Options::default()).unwrap();
    let tool = rendered.tool.as_ref().unwrap();
    assert!(
        tool.name.contains("kustomize") && tool.version != "unknown",
        "{tool:?}"
    );
    let ids: Vec<String> = rendered
        .objects
        .iter()
        .map(|o| o.identity.to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids[0].starts_with("ConfigMap api-prod/api-env-"),
        "hashed generator name: {ids:?}"
    );
    assert_eq!(ids[1], "apps/Deployment api-prod/api");
    assert_eq!(ids[2], "Service api-prod/api");
    let deploy = &rendered.objects[1];
    assert_eq!(deploy.value["spec"]["replicas"], 4);
    assert_eq!(
        deploy.value["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/api:1.1.0"
    );
    assert_eq!(
        deploy.value["spec"]["template"]["metadata"]["annotations"]["sidecar.opentelemetry.io/inject"],
        "true"
    );
    assert_eq!(
        deploy.source.origin.as_deref(),
        Some("gitops/base/api/deployment.yaml:1")
    );
    // the Deployment refers to the hashed ConfigMap, as Kustomize rewrites references
    let env_ref = deploy.value["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"].as_str().unwrap();
    assert_eq!(format!("ConfigMap api-prod/{env_ref}"), ids[0]);
    let v = validate(
        &rendered.objects,
        &rendered.schemas,
        schema::Options { strict: true },
    );
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
}

#[test]
fn kustomize_errors_surface_the_tools_message() {
    if !kustomize_available() {
        return;
    }
    let r = kustomize_repo("resources:\n  - ../../../../base/api\n  - missing.yaml\n");
    let snap = &r.snapshots[0];
    let app = find_app(&config(snap), snap, "prod-eu/api").unwrap();
    let err = render_app(snap, &app, &Options::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RenderError::Tool { .. }), "{text}");
    assert!(text.contains("gitops/clusters/prod-eu/apps/api"), "{text}");
    assert!(text.contains("missing.yaml"), "{text}");
    assert!(
        !text.contains("sluice-render-"),
        "temporary paths are made relative: {text}"
    );
}

/// A test double of the helm CLI (Helm cannot be installed here): it answers `version --short`
/// and `template RELEASE CHART --namespace NS --include-crds [--values FILE]...` by printing
/// the chart's templates with `# Source:` headers, substituting the release name, namespace
/// and `image.tag` from the last values file that sets it, and logs its arguments to `@LOG@`.
const HELM_TEST_DOUBLE: &str = r##"#!/bin/sh
# helm-test-double: a test stand-in for the helm CLI, never a product default
echo "$@" >> "@LOG@"
case "$1" in
  version) echo "v3.16.3+gtestdouble"; exit 0 ;;
  template) ;;
  *) echo "Error: unknown command \"$1\" for \"helm\"" >&2; exit 1 ;;
esac
release="$2"; chart="$3"; shift 3
ns=default; tag=""
[ -f "$chart/values.yaml" ] && tag=$(sed -n 's/^  tag: *//p' "$chart/values.yaml")
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) ns="$2"; shift 2 ;;
    --values|-f) t=$(sed -n 's/^  tag: *//p' "$2"); [ -n "$t" ] && tag="$t"; shift 2 ;;
    *) shift ;;
  esac
done
name=$(sed -n 's/^name: *//p' "$chart/Chart.yaml")
for f in "$chart"/templates/*.yaml; do
  if grep -q '{{ fail' "$f"; then
    echo "Error: execution error at ($name/templates/$(basename "$f")): image.tag is required" >&2
    exit 1
  fi
  echo "---"
  echo "# Source: $name/templates/$(basename "$f")"
  sed -e "s/{{ .Release.Name }}/$release/g" -e "s/{{ .Release.Namespace }}/$ns/g" -e "s/{{ .Values.image.tag }}/$tag/g" "$f"
done
"##;

fn helm_double(dir: &Path, log: &Path) -> std::ffi::OsString {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("helm-test-double");
    std::fs::create_dir_all(&bin).unwrap();
    let helm = bin.join("helm");
    std::fs::write(
        &helm,
        HELM_TEST_DOUBLE.replace("@LOG@", &log.display().to_string()),
    )
    .unwrap();
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();
    // sh, sed and grep for the double itself; no real helm can be on this PATH first.
    format!("{}:/usr/bin:/bin", bin.display()).into()
}

fn chart_repo(template_extra: &str) -> common::Repo {
    repo(&[files(&[
        (
            "gitops/clusters/prod-eu/apps/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.3.0\nappVersion: \"2.0\"\n",
        ),
        (
            "gitops/clusters/prod-eu/apps/web/values.yaml",
            "image:\n  repository: ghcr.io/acme/web\n  tag: 2.0.0\n",
        ),
        (
            "gitops/clusters/prod-eu/apps/web/values-prod.yaml",
            "image:\n  tag: 2.0.1\n",
        ),
        (
            "gitops/clusters/prod-eu/apps/web/values-prod-eu.yaml",
            "replicaCount: 3\n",
        ),
        (
            "gitops/clusters/prod-eu/apps/web/templates/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: ghcr.io/acme/web:{{ .Values.image.tag }}\n",
        ),
        (
            "gitops/clusters/prod-eu/apps/web/templates/service.yaml",
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{{{ .Release.Name }}}}\nspec:\n  ports:\n    - port: 80\n{template_extra}"
            ),
        ),
    ])])
}

#[test]
fn helm_apps_render_through_the_helm_cli_test_double() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("helm.log");
    let r = chart_repo("");
    let snap = &r.snapshots[0];
    let app = find_app(&config(snap), snap, "prod-eu/web").unwrap();
    assert_eq!(app.kind, sluice_model::kustomize::AppKind::Helm);
    let options = Options {
        search_path: Some(helm_double(tmp.path(), &log)),
        ..Options::default()
    };
    let rendered = render_app(snap, &app, &options).unwrap();
    let tool = rendered.tool.as_ref().unwrap();
    assert_eq!(
        (tool.name.as_str(), tool.version.as_str()),
        ("helm", "v3.16.3+gtestdouble")
    );
    let ids: Vec<String> = rendered
        .objects
        .iter()
        .map(|o| o.identity.to_string())
        .collect();
    assert_eq!(ids, ["apps/Deployment web/web", "Service web/web"]);
    assert_eq!(
        rendered.objects[0].value["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/acme/web:2.0.1",
        "values-prod.yaml overrides values.yaml"
    );
    assert_eq!(
        rendered.objects[0].source.origin.as_deref(),
        Some("gitops/clusters/prod-eu/apps/web/templates/deployment.yaml")
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let template = calls.lines().find(|l| l.starts_with("template")).unwrap();
    assert_eq!(
        template,
        "template web gitops/clusters/prod-eu/apps/web --namespace web --include-crds --values gitops/clusters/prod-eu/apps/web/values-prod.yaml --values gitops/clusters/prod-eu/apps/web/values-prod-eu.yaml"
    );
    let v = validate(
        &rendered.objects,
        &rendered.schemas,
        schema::Options { strict: true },
    );
    assert!(v.findings.is_empty(), "{:#?}", v.findings);

    // A failing template surfaces helm's message.
    let broken = chart_repo("{{ fail \"image.tag is required\" }}\n");
    let err = render_app(&broken.snapshots[0], &app, &options).unwrap_err();
    assert!(matches!(err, RenderError::Tool { .. }), "{err}");
    assert!(err.to_string().contains("helm failed for gitops/clusters/prod-eu/apps/web: Error: execution error at (web/templates/service.yaml): image.tag is required"), "{err}");

    // Without helm on PATH: a clear error, exit 5.
    let empty = tempfile::tempdir().unwrap();
    let none = Options {
        search_path: Some(empty.path().as_os_str().to_owned()),
        ..Options::default()
    };
    let err = render_app(snap, &app, &none).unwrap_err();
    assert!(matches!(err, RenderError::ToolMissing { .. }), "{err}");
    assert!(
        err.to_string().starts_with("helm not found on PATH"),
        "{err}"
    );
}

#[test]
fn render_options_default_to_the_app_name_namespace() {
    let spec = AppSpec {
        id: "x/y".into(),
        path: "a/y".into(),
        kind: sluice_model::kustomize::AppKind::Plain,
        env: None,
        cluster: None,
        name: "y".into(),
    };
    assert_eq!(render::helm_values_files(&spec, &[]), Vec::<String>::new());
}

/// StatefulSets shaped like the real ones whose multi-line quoted `command` scripts were once
/// refused ("invalid indentation in quoted scalar"): continuation lines indented less than the
/// sequence they sit in, blank lines, escapes, a single-quoted script and a `\` line break.
const QUOTED_COMMAND_STATEFULSETS: &[(&str, &str)] = &[
    (
        "redis.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: redis\nspec:\n  serviceName: redis\n  selector:\n    matchLabels: {app: redis}\n  template:\n    metadata:\n      labels: {app: redis}\n    spec:\n      containers:\n        - name: redis\n          image: redis:7.2\n          command:\n            - sh\n            - -c\n            - \"set -e\n  if [ -f /data/nodes.conf ]; then\n    sed -i -e \\\"/myself/ s/[0-9.]*:6379/${POD_IP}:6379/\\\" /data/nodes.conf\n  fi\n\n  exec redis-server /conf/redis.conf\"\n",
    ),
    (
        "zookeeper.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: zk\nspec:\n  serviceName: zk\n  selector:\n    matchLabels: {app: zk}\n  template:\n    metadata:\n      labels: {app: zk}\n    spec:\n      containers:\n      - name: zk\n        image: zookeeper:3.9\n        command:\n        - bash\n        - -c\n        - 'ZK_ID=$((${HOSTNAME##*-}+1))\n  echo \"$ZK_ID\" > /data/myid;\n\n  exec zkServer.sh start-foreground'\n",
    ),
    (
        "etcd.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: etcd\nspec:\n  serviceName: etcd\n  selector:\n    matchLabels: {app: etcd}\n  template:\n    metadata:\n      labels: {app: etcd}\n    spec:\n      containers:\n        - name: etcd\n          image: quay.io/coreos/etcd:v3.5.17\n          command: [\"/bin/sh\", \"-ec\", \"PEERS=\\\"etcd-0=http://etcd-0.etcd:2380\\\"\n  exec etcd --name ${HOSTNAME} \\\n    --initial-cluster ${PEERS}\\t--data-dir /var/run/etcd\"]\n",
    ),
];

/// Each StatefulSet as `kubectl kustomize` (or `kustomize build`) reads it, parsed back.
fn as_kustomize_reads_it(name: &str, text: &str) -> serde_json::Value {
    let tool = sluice_render::tool::kustomize(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!("resources: [{name}]\n"),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(&tool.program);
    if tool.name != "kustomize" {
        cmd.arg("kustomize");
    } else {
        cmd.arg("build");
    }
    let out = cmd.arg(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{} refused {name}: {}",
        tool.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = parse_documents(name, &out.stdout, &Limits::default(), false).unwrap();
    assert_eq!(docs.len(), 1, "{name}");
    docs.into_iter().next().unwrap().value
}

#[test]
fn statefulsets_with_multi_line_quoted_commands_parse_as_kubectl_reads_them() {
    if !kustomize_available() {
        return;
    }
    let mut cases: Vec<(String, String)> = QUOTED_COMMAND_STATEFULSETS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    // The corpus's own StatefulSets, read in place.
    if let Some(dir) = sluice_testkit::corpus(
        "gatekeeper-library/library/general/storageclass/samples/storageclass",
    ) {
        for f in [
            "example_allowed_ss.yaml",
            "example_disallowed_ssvct_badnamename.yaml",
            "example_disallowed_ssvct_nonamename.yaml",
        ] {
            cases.push((f.to_string(), std::fs::read_to_string(dir.join(f)).unwrap()));
        }
    }
    for (name, text) in &cases {
        let ours = parse_documents(name, text.as_bytes(), &Limits::default(), true)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ours.len(), 1, "{name}");
        assert_eq!(
            ours[0].value,
            as_kustomize_reads_it(name, text),
            "{name}: sluice and kustomize read different objects"
        );
    }
    // The scripts keep their line structure where YAML folding keeps it (a blank line is a
    // newline) and lose the under-indentation, as kubectl's parser does.
    let redis = parse_documents(
        "r",
        QUOTED_COMMAND_STATEFULSETS[0].1.as_bytes(),
        &Limits::default(),
        false,
    )
    .unwrap();
    let script = redis[0].value["spec"]["template"]["spec"]["containers"][0]["command"][2]
        .as_str()
        .unwrap();
    assert!(
        script.starts_with("set -e if [ -f /data/nodes.conf ]"),
        "{script}"
    );
    assert!(script.contains("fi\nexec redis-server"), "{script}");
}
