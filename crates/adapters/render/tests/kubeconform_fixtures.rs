//! kubeconform's fixtures (../shared/corpus/k8s/kubeconform-fixtures) must get their expected
//! outcome. Expectations follow kubeconform's `acceptance.bats` where it states one (valid,
//! invalid, resource counts, strict mode); the rest are derived from file names and contents
//! and listed in docs/render.md ("kubeconform fixtures") with the reason for each decision.

use std::path::{Path, PathBuf};

use sluice_render::assemble::assemble;
use sluice_render::error::RenderError;
use sluice_render::manifest::{Limits, parse_documents};
use sluice_render::schema::{Options, SchemaSet, Validation, validate};

fn fixtures() -> Option<PathBuf> {
    sluice_testkit::corpus("k8s/kubeconform-fixtures/fixtures")
}

#[derive(Debug)]
enum Outcome {
    /// Rendered and validated: (objects, validation).
    Checked(usize, Validation),
    /// Refused before validation (syntax, missing fields, duplicates).
    Refused(RenderError),
}

fn check(
    dir: &Path,
    files: &[&str],
    namespace: &str,
    schemas: &mut SchemaSet,
    strict: bool,
) -> Outcome {
    let mut docs = Vec::new();
    for f in files {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        match parse_documents(f, &bytes, &Limits::default(), true) {
            Ok(d) => docs.extend(d),
            Err(e) => return Outcome::Refused(e),
        }
    }
    match assemble(docs, Some(namespace), schemas) {
        Ok(a) => {
            let v = validate(&a.objects, schemas, Options { strict });
            Outcome::Checked(a.objects.len(), v)
        }
        Err(e) => Outcome::Refused(e),
    }
}

fn run(dir: &Path, files: &[&str], strict: bool) -> Outcome {
    check(dir, files, "default", &mut SchemaSet::new(), strict)
}

#[track_caller]
fn assert_valid(o: Outcome, count: usize) -> Validation {
    match o {
        Outcome::Checked(n, v) => {
            assert!(v.passed(), "expected valid, got {:#?}", v.findings);
            assert_eq!(n, count, "resource count");
            v
        }
        Outcome::Refused(e) => panic!("expected valid, refused: {e}"),
    }
}

#[track_caller]
fn assert_invalid(o: Outcome) -> Validation {
    match o {
        Outcome::Checked(_, v) => {
            assert!(
                !v.passed(),
                "expected invalid, got valid: {:#?}",
                v.findings
            );
            v
        }
        Outcome::Refused(e) => panic!("expected schema findings, refused: {e}"),
    }
}

#[track_caller]
fn assert_refused(o: Outcome, needle: &str) -> RenderError {
    match o {
        Outcome::Refused(e) => {
            assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`");
            e
        }
        Outcome::Checked(_, v) => panic!("expected a refusal containing `{needle}`, got {v:#?}"),
    }
}

#[test]
fn valid_fixtures_pass() {
    let Some(dir) = fixtures() else { return };
    // acceptance.bats: valid, counts as kubeconform reports them
    for (file, count) in [
        ("valid.yaml", 1),
        ("valid.json", 1),
        ("int_or_string.yaml", 1),
        ("generate_name.yaml", 1),
        ("quantity.yaml", 1),
        ("null_string.yaml", 1),
        ("multi_valid.yaml", 6),
        ("blank.yaml", 0),
        ("comment.yaml", 0),
        ("list_valid.yaml", 6),
        ("list_empty_valid.yaml", 0),
        ("multi_with_list.yaml", 2),
        // derived from names and contents
        ("multi_valid_source.yaml", 6),
        ("null_array.yaml", 1),
        ("full_domain_group.yaml", 1),
        ("valid_version.yaml", 1),
        ("unconventional_keys.yaml", 1),
        ("same-object-different-namespace.yaml", 2),
        ("same-object-different-namespace-default.yaml", 2),
    ] {
        let v = assert_valid(run(&dir, &[file], true), count);
        assert!(v.findings.is_empty(), "{file}: {:#?}", v.findings);
    }
    // "Pass when parsing a folder containing valid YAML files": 7 resources in 2 files
    assert_valid(
        run(
            &dir,
            &["folder/valid.yaml", "folder/multi_valid.yaml"],
            true,
        ),
        7,
    );
}

#[test]
fn invalid_fixtures_fail_with_path_and_line() {
    let Some(dir) = fixtures() else { return };
    let v = assert_invalid(run(&dir, &["invalid.yaml"], false));
    let replicas = v
        .findings
        .iter()
        .find(|f| f.path.as_deref() == Some("/spec/replicas"))
        .expect("replicas finding");
    assert_eq!((replicas.file.as_str(), replicas.line), ("invalid.yaml", 6));
    assert_eq!(replicas.message, "expected integer, found string");
    assert_eq!(
        replicas.object.as_ref().unwrap().to_string(),
        "ReplicationController default/bob"
    );
    // `templates` (a typo of `template`) is an unknown field
    assert!(
        v.findings
            .iter()
            .any(|f| f.rule == "schema/unknown-field"
                && f.path.as_deref() == Some("/spec/templates"))
    );

    let v = assert_invalid(run(&dir, &["multi_invalid.yaml"], false));
    assert_eq!(v.invalid, 1);
    assert_eq!(v.valid, 5);
    assert!(
        v.findings
            .iter()
            .any(|f| f.path.as_deref() == Some("/spec/ports/0/port") && f.line == 12)
    );

    // acceptance.bats: "Summary: 2 resources found - Valid: 1, Invalid: 1"
    let v = assert_invalid(run(&dir, &["list_invalid.yaml"], false));
    assert_eq!((v.valid, v.invalid), (1, 1));
    let f = v
        .findings
        .iter()
        .find(|f| f.rule == "schema/invalid")
        .unwrap();
    assert_eq!(f.path.as_deref(), Some("/spec/replicas"));
    assert_eq!(f.line, 26, "line inside the List item");
}

#[test]
fn strict_mode_matches_kubeconform_strict() {
    let Some(dir) = fixtures() else { return };
    // "Pass when parsing a config with additional properties" / "... and strict set" fails
    let v = assert_valid(run(&dir, &["extra_property.yaml"], false), 1);
    assert_eq!(v.warnings(), 1);
    assert_eq!(v.findings[0].path.as_deref(), Some("/spec/replicas"));
    assert_invalid(run(&dir, &["extra_property.yaml"], true));
}

#[test]
fn documents_that_are_not_objects_are_refused() {
    let Some(dir) = fixtures() else { return };
    assert_refused(
        run(&dir, &["missing_kind.yaml"], false),
        "missing `apiVersion`",
    );
    assert_refused(
        run(&dir, &["missing_apiversion.yaml"], false),
        "missing `apiVersion`",
    );
    assert_refused(
        run(&dir, &["missing_kind_value.yaml"], false),
        "missing_kind_value.yaml:1",
    );
    assert_refused(
        run(&dir, &["multi_invalid_resources.yaml"], false),
        "multi_invalid_resources.yaml:1",
    );
    // kubeconform passes this without -strict; sluice always refuses a duplicate key (the
    // second `containers` would silently win in kubectl).
    assert_refused(
        run(&dir, &["duplicate_property.yaml"], false),
        "duplicate_property.yaml:16:7: duplicate key `containers`",
    );
}

#[test]
fn duplicate_identities_are_refused() {
    let Some(dir) = fixtures() else { return };
    for (file, ns) in [
        ("duplicates.yaml", "default"),
        ("duplicates-non-namespaced.yaml", "default"),
        ("duplicates-with-namespace.yaml", "default"),
        ("duplicates-skipped-kinds.yaml", "default"),
        // the object without a namespace lands in the destination namespace
        (
            "duplicates-with-namespace-default.yaml",
            "the-default-namespace",
        ),
        // apps/v1 and apps/v1beta1 Deployments of one name are one object on a cluster
        ("same-kind-different-api.yaml", "default"),
    ] {
        let e = assert_refused(
            check(&dir, &[file], ns, &mut SchemaSet::new(), false),
            "defined twice",
        );
        assert!(e.to_string().contains(file), "{e}");
        assert!(matches!(e, RenderError::Duplicate(_)), "{e}");
    }
    // Different destination: no duplicate.
    assert_valid(
        check(
            &dir,
            &["duplicates-with-namespace-default.yaml"],
            "elsewhere",
            &mut SchemaSet::new(),
            true,
        ),
        2,
    );
}

#[test]
fn custom_resources_need_a_crd_or_schema() {
    let Some(dir) = fixtures() else { return };
    // "Fail when parsing a config with CRD" (no schema): a warning, an error in strict mode,
    // as kubeconform without and with -ignore-missing-schemas.
    let v = assert_valid(run(&dir, &["test_crd.yaml"], false), 1);
    assert_eq!(v.no_schema, 1);
    assert_eq!(v.findings[0].rule, "schema/missing");
    assert_invalid(run(&dir, &["test_crd.yaml"], true));
    assert_valid(run(&dir, &["httpproxy.yaml"], false), 1);

    // With the CRD in the same render (apiextensions.k8s.io/v1beta1 layout), the custom
    // resource validates. The v1beta1 CRD object itself has no schema in 1.33: a warning.
    let v = assert_valid(
        run(
            &dir,
            &[
                "registry/sagemaker.aws.amazon.com_trainingjobs.yaml",
                "test_crd.yaml",
            ],
            false,
        ),
        2,
    );
    assert_eq!(
        v.no_schema, 1,
        "only the v1beta1 CRD object: {:#?}",
        v.findings
    );
    assert_eq!(v.valid, 1);
    let v = assert_valid(run(&dir, &["crd_schema.yaml", "test_crd.yaml"], false), 2);
    assert_eq!(v.valid, 1);

    // kubeconform-style JSON schema files register per kind.
    let mut set = SchemaSet::new();
    let schema = serde_json::from_slice(
        &std::fs::read(dir.join("registry/trainingjob-sagemaker-v1.json")).unwrap(),
    )
    .unwrap();
    set.add_schema(
        "sagemaker.aws.amazon.com",
        "v1",
        "TrainingJob",
        schema,
        "trainingjob-sagemaker-v1.json",
    );
    let v = assert_valid(
        check(&dir, &["test_crd.yaml"], "default", &mut set, true),
        1,
    );
    assert!(v.findings.is_empty(), "{:#?}", v.findings);

    let mut set = SchemaSet::new();
    let schema = serde_json::from_slice(
        &std::fs::read(dir.join("grafanaalertrulegroup_v1beta1.json")).unwrap(),
    )
    .unwrap();
    set.add_schema(
        "grafana.integreatly.org",
        "v1beta1",
        "GrafanaAlertRuleGroup",
        schema,
        "grafanaalertrulegroup_v1beta1.json",
    );
    let v = assert_valid(
        check(
            &dir,
            &["grafana-alert-rule-group-sample.yaml"],
            "default",
            &mut set,
            true,
        ),
        1,
    );
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
}
