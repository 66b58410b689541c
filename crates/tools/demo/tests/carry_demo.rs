//! The demo's last act with the real engine: PR #413 planned, approved by the registered
//! approvers (the author refused), applied once under its lock, and its bundle verified with
//! plan, policy, approve and apply statements that agree on the plan digest.
//!
//! Skipped with a notice when `terraform` is not on PATH; a failure when
//! `SLUICE_REQUIRE_TERRAFORM=1`.

use std::path::Path;

use sluice_demo::demo::{self, carry};

/// Every file below `dir`, outside `.git`, whose text holds a private key.
fn private_keys_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b).contains("PRIVATE KEY"))
                .unwrap_or(false)
            {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[test]
fn demo_carries_a_change_through_approval_and_apply() {
    let Some(_tf) = sluice_testkit::terraform() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = demo::run(&dir.path().join("org"), demo::PlanMode::DemoWritten).unwrap();
    let c = match &run.carried {
        carry::Carried::Done(c) => c,
        carry::Carried::Skipped { reason } => panic!("the act was skipped: {reason}"),
    };

    // Stage 4: the engine planned the flags stack (R3: platform and security approve).
    let stack = c
        .report
        .stacks
        .iter()
        .find(|s| s.id == carry::FLAGS_STACK)
        .expect("the flags stack is in PR #413's report");
    assert_eq!(c.change_id, stack.change_id.to_string());
    assert_eq!(c.plan_summary, "1 to add, 0 to change, 0 to destroy");
    let joined = c.requirements.join(" | ");
    assert!(
        joined.contains("@acme/platform") && joined.contains("@acme/security"),
        "{joined}"
    );

    // Stage 6: the author refused; alice and carol approved for their groups.
    assert!(
        c.self_approval_refused
            .contains("bob authored this change and cannot approve it"),
        "{}",
        c.self_approval_refused
    );
    let approvals: Vec<(&str, Vec<String>)> = c
        .approvals
        .iter()
        .map(|a| (a.name.as_str(), a.groups.clone()))
        .collect();
    assert_eq!(
        approvals,
        vec![
            ("alice", vec!["@acme/platform".to_string()]),
            ("carol", vec!["@acme/security".to_string()]),
        ]
    );

    // Stage 7: exactly the approved plan, once; the state holds the new value.
    let a = &c.applied;
    assert_eq!(a.result, "applied");
    assert_eq!(a.plan_digest, c.plan_digest);
    assert_eq!(a.approved_by, vec!["alice", "carol"]);
    assert!(a.fencing_token.0 >= 1);
    assert!(a.state_before.is_none(), "the stack had no state before");
    let after = a.state_after.as_ref().expect("state after the apply");
    let state = std::fs::read_to_string(&c.state_file).unwrap();
    assert!(state.contains("\"rollout_percent\""), "{state}");
    assert!(state.contains(&after.lineage), "{state}");
    assert!(
        c.second_apply_refused.contains("already applied"),
        "{}",
        c.second_apply_refused
    );

    // The bundle: plan, policy, approve ×2 and apply, verified offline.
    assert!(c.verified, "{}", c.verification);
    for stage in ["plan", "policy", "approve", "apply"] {
        assert!(
            c.bundle_stages.iter().any(|s| s == stage),
            "{stage} missing from {:?}",
            c.bundle_stages
        );
    }
    assert_eq!(
        c.bundle_stages.iter().filter(|s| *s == "approve").count(),
        2
    );
    // Independently of the verifier: the bundle's apply statement names the planned digest.
    let bundle = std::fs::read_to_string(&c.bundle_path).unwrap();
    assert!(
        bundle.contains(&c.plan_digest[7..]),
        "plan digest in bundle"
    );

    // Keys: public ones registered in the committed sluice.yaml, private ones never in the
    // repository.
    let yaml = std::fs::read_to_string(run.repo.dir.join("sluice.yaml")).unwrap();
    for (name, _, _) in carry::PEOPLE {
        assert!(yaml.contains(&format!("  {name}: {{ emails:")), "{yaml}");
    }
    assert!(yaml.contains("ssh-ed25519 "), "{yaml}");
    assert_eq!(private_keys_in(&run.repo.dir), Vec::<String>::new());
    // The PR #412 stack stays unapplied, and the bundle says so.
    assert!(run.evidence.verification.contains("not run: apply"));
}

#[test]
fn without_an_engine_the_act_is_skipped_and_says_why() {
    let empty = tempfile::tempdir().unwrap();
    let path = std::env::join_paths([empty.path()]).unwrap();
    let reason = carry::engine_on_path(Some(&path)).unwrap_err();
    assert!(
        reason.contains("neither tofu nor terraform is on PATH"),
        "{reason}"
    );
    let bin = tempfile::tempdir().unwrap();
    let tf = bin.path().join("terraform");
    std::fs::write(&tf, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths([empty.path(), bin.path()]).unwrap();
    assert_eq!(carry::engine_on_path(Some(&path)), Ok("terraform"));
}

#[test]
fn the_apply_not_run_reason_names_why() {
    assert!(
        demo::apply_not_run_reason(demo::PlanMode::DemoWritten)
            .contains("written by the demo, not by an engine")
    );
    assert!(demo::apply_not_run_reason(demo::PlanMode::Engine).contains("AWS"));
}
