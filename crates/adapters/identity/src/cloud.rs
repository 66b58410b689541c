//! The environment an engine process (terraform, tofu) receives: the runner's environment
//! without any cloud credential of its own, plus the unit's workload-identity role and the job's
//! OIDC token file, so each plan or apply runs as the one execution role of its environment and
//! domain and nothing longer-lived than the token.
//!
//! Pure: the caller passes the runner's environment and writes the files this returns. In a
//! protected environment, long-lived keys in the runner's environment refuse the job (the
//! refusal names the variables, never their values); elsewhere they are stripped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_model::trust::CloudRole;

/// Variables that carry (or point at) a long-lived credential. Always stripped; in a protected
/// environment their presence refuses the job.
pub const LONG_LIVED: &[&str] = &[
    // AWS: static keys, and profiles/files that resolve to them.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    // GCP: key files and inline keys the google provider reads.
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CREDENTIALS",
    "GOOGLE_CLOUD_KEYFILE_JSON",
    "GCLOUD_KEYFILE_JSON",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "CLOUDSDK_AUTH_ACCESS_TOKEN",
    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
    // Azure: client secrets, certificates, passwords, storage keys.
    "ARM_CLIENT_SECRET",
    "ARM_CLIENT_CERTIFICATE_PATH",
    "ARM_CLIENT_CERTIFICATE_PASSWORD",
    "ARM_ACCESS_KEY",
    "ARM_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
];

/// Variables sluice sets itself, or that would let the engine obtain another identity (the
/// runner's own role, a fresh OIDC token for any audience). Stripped silently.
pub const REPLACED: &[&str] = &[
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "GOOGLE_IMPERSONATE_SERVICE_ACCOUNT",
    "ARM_CLIENT_ID",
    "ARM_TENANT_ID",
    "ARM_SUBSCRIPTION_ID",
    "ARM_USE_OIDC",
    "ARM_OIDC_TOKEN",
    "ARM_OIDC_TOKEN_FILE_PATH",
    "ARM_OIDC_REQUEST_TOKEN",
    "ARM_OIDC_REQUEST_URL",
    "ARM_USE_MSI",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
];

/// What the engine of one job runs as.
#[derive(Debug, Clone)]
pub struct EngineCredentials<'a> {
    pub role: &'a CloudRole,
    /// The job's OIDC token, written by the runner (mode 0600).
    pub token_file: &'a Path,
    /// Where sluice writes the files it generates for the engine (GCP credential config).
    pub work_dir: &'a Path,
    /// Names the cloud session in audit logs (`sluice-<change id>`); sanitized for AWS.
    pub session_name: &'a str,
    /// The unit's environment is protected.
    pub protected: bool,
}

/// A file the runner writes before starting the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// The engine's complete environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEnv {
    pub vars: BTreeMap<String, String>,
    pub files: Vec<GeneratedFile>,
    /// Names of the runner's variables that were removed (for the job log; names only).
    pub stripped: Vec<String>,
}

/// Long-lived credentials found in a protected environment's job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to run in a protected environment: the runner's environment holds long-lived cloud credentials ({}); remove them, the engine runs with the unit's workload-identity role only",
    variables.join(", ")
)]
pub struct LongLivedCredentials {
    pub variables: Vec<String>,
}

/// AWS session names: 2–64 of `[\w+=,.@-]`.
fn aws_session_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    while s.len() < 2 {
        s.push('-');
    }
    s
}

/// The GCP `external_account` credential configuration: exchange the job's token at Google
/// STS for the pool's federated token, then impersonate the unit's service account.
fn gcp_credential_config(provider: &str, service_account: &str, token_file: &Path) -> String {
    let config = serde_json::json!({
        "type": "external_account",
        "audience": format!("//iam.googleapis.com/{provider}"),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "service_account_impersonation_url": format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken"
        ),
        "credential_source": { "file": token_file.display().to_string() },
    });
    serde_json::to_string_pretty(&config).expect("JSON values serialize")
}

pub const GCP_CREDENTIAL_FILE: &str = "gcp-credentials.json";

/// Compute the engine's environment from the runner's.
pub fn engine_env(
    runner_env: &BTreeMap<String, String>,
    creds: &EngineCredentials<'_>,
) -> Result<EngineEnv, LongLivedCredentials> {
    let offending: Vec<String> = runner_env
        .keys()
        .filter(|k| LONG_LIVED.contains(&k.as_str()))
        .cloned()
        .collect();
    if creds.protected && !offending.is_empty() {
        return Err(LongLivedCredentials {
            variables: offending,
        });
    }
    let mut vars = BTreeMap::new();
    let mut stripped = Vec::new();
    for (k, v) in runner_env {
        if LONG_LIVED.contains(&k.as_str()) || REPLACED.contains(&k.as_str()) {
            stripped.push(k.clone());
        } else {
            vars.insert(k.clone(), v.clone());
        }
    }
    let token = creds.token_file.display().to_string();
    let mut set = |k: &str, v: String| {
        vars.insert(k.to_string(), v);
    };
    let mut files = Vec::new();
    if let Some(aws) = &creds.role.aws {
        set("AWS_ROLE_ARN", aws.role_arn.clone());
        set("AWS_WEB_IDENTITY_TOKEN_FILE", token.clone());
        set(
            "AWS_ROLE_SESSION_NAME",
            aws_session_name(creds.session_name),
        );
    }
    if let Some(gcp) = &creds.role.gcp {
        let path = creds.work_dir.join(GCP_CREDENTIAL_FILE);
        set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
        files.push(GeneratedFile {
            path,
            contents: gcp_credential_config(
                &gcp.workload_identity_provider,
                &gcp.service_account,
                creds.token_file,
            ),
        });
    }
    if let Some(az) = &creds.role.azure {
        // azurerm/azuread providers read ARM_*, Azure SDKs AZURE_*.
        set("ARM_USE_OIDC", "true".into());
        set("ARM_CLIENT_ID", az.client_id.clone());
        set("ARM_TENANT_ID", az.tenant_id.clone());
        set("ARM_OIDC_TOKEN_FILE_PATH", token.clone());
        set("AZURE_CLIENT_ID", az.client_id.clone());
        set("AZURE_TENANT_ID", az.tenant_id.clone());
        set("AZURE_FEDERATED_TOKEN_FILE", token.clone());
        if let Some(sub) = &az.subscription_id {
            set("ARM_SUBSCRIPTION_ID", sub.clone());
        }
    }
    Ok(EngineEnv {
        vars,
        files,
        stripped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::trust::{AwsRole, AzureRole, GcpRole};

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn aws_role() -> CloudRole {
        CloudRole {
            aws: Some(AwsRole {
                role_arn: "arn:aws:iam::222222222222:role/iac-apply-prod-network".into(),
            }),
            ..CloudRole::default()
        }
    }

    fn creds<'a>(role: &'a CloudRole, protected: bool) -> EngineCredentials<'a> {
        EngineCredentials {
            role,
            token_file: Path::new("/run/sluice/job-7/token"),
            work_dir: Path::new("/run/sluice/job-7"),
            session_name: "sluice-infra-live#412@9f3a12c/prod/network",
            protected,
        }
    }

    #[test]
    fn aws_keys_are_replaced_by_the_units_role() {
        let runner = env(&[
            ("PATH", "/usr/bin"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "canary-secret-value"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/runner-own-role"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "canary-request-token"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let role = aws_role();
        let out = engine_env(&runner, &creds(&role, false)).unwrap();
        assert_eq!(
            out.vars,
            env(&[
                ("PATH", "/usr/bin"),
                ("AWS_REGION", "eu-west-1"),
                (
                    "AWS_ROLE_ARN",
                    "arn:aws:iam::222222222222:role/iac-apply-prod-network"
                ),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/run/sluice/job-7/token"),
                (
                    "AWS_ROLE_SESSION_NAME",
                    "sluice-infra-live-412@9f3a12c-prod-network"
                ),
            ])
        );
        assert_eq!(
            out.stripped,
            [
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                "AWS_ACCESS_KEY_ID",
                "AWS_ROLE_ARN",
                "AWS_SECRET_ACCESS_KEY"
            ]
        );
        assert!(out.files.is_empty());
    }

    #[test]
    fn protected_environments_refuse_long_lived_keys_by_name_only() {
        let runner = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("ARM_CLIENT_SECRET", "canary-secret-value"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/home/runner/key.json"),
            ("AWS_ROLE_ARN", "replaced, not refused"),
        ]);
        let role = aws_role();
        let e = engine_env(&runner, &creds(&role, true)).unwrap_err();
        assert_eq!(
            e.variables,
            [
                "ARM_CLIENT_SECRET",
                "AWS_ACCESS_KEY_ID",
                "GOOGLE_APPLICATION_CREDENTIALS"
            ]
        );
        let msg = e.to_string();
        assert!(msg.contains("ARM_CLIENT_SECRET, AWS_ACCESS_KEY_ID"));
        for value in runner.values() {
            assert!(!msg.contains(value.as_str()), "value leaked: {msg}");
        }
        // The same runner with only replaceable variables is fine.
        let clean = env(&[("AWS_ROLE_ARN", "arn:aws:iam::1:role/x"), ("HOME", "/root")]);
        assert!(engine_env(&clean, &creds(&role, true)).is_ok());
    }

    #[test]
    fn gcp_and_azure_use_workload_identity() {
        let role = CloudRole {
            aws: None,
            gcp: Some(GcpRole {
                workload_identity_provider:
                    "projects/123/locations/global/workloadIdentityPools/ci/providers/github".into(),
                service_account: "iac-apply-prod-network@acme.iam.gserviceaccount.com".into(),
            }),
            azure: Some(AzureRole {
                client_id: "00000000-0000-0000-0000-000000000001".into(),
                tenant_id: "00000000-0000-0000-0000-000000000002".into(),
                subscription_id: Some("00000000-0000-0000-0000-000000000003".into()),
            }),
        };
        let runner = env(&[("GOOGLE_CREDENTIALS", "{\"private_key\":\"canary\"}")]);
        let out = engine_env(&runner, &creds(&role, false)).unwrap();
        assert_eq!(
            out.vars["GOOGLE_APPLICATION_CREDENTIALS"],
            "/run/sluice/job-7/gcp-credentials.json"
        );
        assert!(!out.vars.contains_key("GOOGLE_CREDENTIALS"));
        assert_eq!(
            out.vars["ARM_OIDC_TOKEN_FILE_PATH"],
            "/run/sluice/job-7/token"
        );
        assert_eq!(
            out.vars["AZURE_FEDERATED_TOKEN_FILE"],
            "/run/sluice/job-7/token"
        );
        assert_eq!(out.vars["ARM_USE_OIDC"], "true");
        assert_eq!(
            out.vars["ARM_SUBSCRIPTION_ID"],
            "00000000-0000-0000-0000-000000000003"
        );
        assert!(!out.vars.contains_key("AWS_ROLE_ARN"));
        let [file] = out.files.as_slice() else {
            panic!("one GCP credential file")
        };
        let config: serde_json::Value = serde_json::from_str(&file.contents).unwrap();
        assert_eq!(config["type"], "external_account");
        assert_eq!(
            config["audience"],
            "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/github"
        );
        assert_eq!(
            config["credential_source"]["file"],
            "/run/sluice/job-7/token"
        );
        assert!(
            config["service_account_impersonation_url"]
                .as_str()
                .unwrap()
                .contains(
                    "iac-apply-prod-network@acme.iam.gserviceaccount.com:generateAccessToken"
                )
        );
    }

    #[test]
    fn session_names_fit_aws_rules() {
        assert_eq!(aws_session_name("a"), "a-");
        assert_eq!(aws_session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(aws_session_name("a b/c#d"), "a-b-c-d");
    }
}
