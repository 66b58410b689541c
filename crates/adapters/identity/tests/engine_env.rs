//! What an engine process actually receives: the computed environment handed to a real child
//! process (`env`), read back from its output.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use sluice_identity::{EngineCredentials, engine_env};
use sluice_model::trust::{AwsRole, CloudRole};

#[test]
fn the_engine_process_sees_the_role_and_no_runner_keys() {
    let runner: BTreeMap<String, String> = [
        (
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("AWS_ACCESS_KEY_ID", "AKIACANARYCANARY".into()),
        ("AWS_SECRET_ACCESS_KEY", "canary-secret-value-0123".into()),
        ("AWS_PROFILE", "admin".into()),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "canary-request-token".into(),
        ),
        ("TF_IN_AUTOMATION", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let role = CloudRole {
        aws: Some(AwsRole {
            role_arn: "arn:aws:iam::222222222222:role/iac-plan-prod".into(),
        }),
        ..CloudRole::default()
    };
    let dir = std::env::temp_dir();
    let token = dir.join("sluice-identity-test-token");
    let creds = EngineCredentials {
        role: &role,
        token_file: &token,
        work_dir: Path::new(&dir),
        session_name: "sluice-plan",
        protected: false,
    };
    let engine = engine_env(&runner, &creds).unwrap();

    let out = Command::new("env")
        .env_clear()
        .envs(&engine.vars)
        .output()
        .expect("`env` runs");
    assert!(out.status.success());
    let seen: BTreeMap<String, String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        seen, engine.vars,
        "the child sees exactly the computed environment"
    );
    assert_eq!(
        seen["AWS_ROLE_ARN"],
        "arn:aws:iam::222222222222:role/iac-plan-prod"
    );
    assert_eq!(
        seen["AWS_WEB_IDENTITY_TOKEN_FILE"],
        token.display().to_string()
    );
    assert_eq!(seen["TF_IN_AUTOMATION"], "1");
    for gone in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ] {
        assert!(!seen.contains_key(gone), "{gone} reached the engine");
    }
    assert!(
        !seen.values().any(|v| v.contains("canary")),
        "no runner secret reached the engine"
    );

    // The same runner in a protected environment: no engine is started at all.
    let protected = EngineCredentials {
        protected: true,
        ..creds
    };
    let refusal = engine_env(&runner, &protected).unwrap_err();
    assert_eq!(
        refusal.variables,
        ["AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_SECRET_ACCESS_KEY"]
    );
}
