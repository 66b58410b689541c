//! Bad input for `sluice affected` (and the commands sharing its loading path): each case gets
//! its documented exit code and a message naming the thing that is wrong, or a warning naming
//! file and line when the run can still give an exact answer. Nothing crashes.

use sluice_testkit::*;

/// A small valid org on `main` with one commit; the caller changes it on branch `change`.
fn small_org() -> (Repo, String) {
    let repo = org_repo();
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&tg("b"), plain_stack("b = 1"));
    let base = repo.commit("base");
    repo.checkout_new("change");
    (repo, base)
}

#[test]
fn not_a_git_repository_exits_3_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.yaml"), sluice_yaml("")).unwrap();
    let run = affected_run(dir.path(), "main", "HEAD");
    run.expect_code(Exit::REPOSITORY);
    assert_has(&run.stderr, &["not a git repository", s(dir.path())]);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let missing = dir.path().join("does-not-exist");
    let run = affected_run(&missing, "main", "HEAD");
    run.expect_code(Exit::REPOSITORY);
    assert_has(&run.stderr, &["does-not-exist"]);

    for cmd in ["graph", "stacks"] {
        let run = sluice(&[cmd, "--repo", s(dir.path())]);
        run.expect_code(Exit::REPOSITORY);
        assert!(
            run.stderr.contains("not a git repository"),
            "{cmd}: {}",
            run.stderr
        );
    }
}

#[test]
fn unknown_revision_exits_3_naming_the_revision() {
    let (repo, base) = small_org();
    let head = repo.commit("empty change");
    for (b, h, bad) in [
        (base.as_str(), "no-such-branch", "no-such-branch"),
        ("nope/base", head.as_str(), "nope/base"),
        (
            base.as_str(),
            "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
            "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
        ),
        (base.as_str(), "HEAD~5", "HEAD~5"),
    ] {
        let run = affected_run(repo.path(), b, h);
        run.expect_code(Exit::REPOSITORY);
        assert!(run.stderr.contains(bad), "{bad}: {}", run.stderr);
        assert_has(&run.stderr, &["unknown revision"]);
    }
    let run = sluice(&["graph", "--repo", repo.arg(), "--rev", "v9.9.9"]);
    run.expect_code(Exit::REPOSITORY);
    assert_has(&run.stderr, &["v9.9.9"]);
}

#[test]
fn revision_that_is_not_a_commit_exits_3() {
    let (repo, base) = small_org();
    // A tree and a blob are objects, not commits.
    let tree = repo.git(&["rev-parse", "HEAD^{tree}"]);
    let run = affected_run(repo.path(), &base, &tree);
    run.expect_code(Exit::REPOSITORY);
    assert_has(&run.stderr, &[&tree]);
}

#[test]
fn missing_sluice_yaml_at_head_exits_2() {
    let (repo, base) = small_org();
    repo.remove("sluice.yaml");
    let head = repo.commit("drop config");
    let run = affected_run(repo.path(), &base, &head);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["sluice.yaml"]);
    assert!(
        run.stderr.contains(&head),
        "names the revision: {}",
        run.stderr
    );
}

#[test]
fn base_without_sluice_yaml_uses_the_head_config() {
    // Adopting sluice: the base predates sluice.yaml.
    let repo = Repo::new();
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&tg("b"), plain_stack("b = 1"));
    let base = repo.commit("before sluice");
    repo.write("sluice.yaml", sluice_yaml(""));
    repo.write(&tg("a"), plain_stack("a = 2"));
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
}

#[test]
fn malformed_sluice_yaml_exits_2_with_line_and_column() {
    let (repo, base) = small_org();
    repo.write(
        "sluice.yaml",
        "version: 1\norg: test\nenvironments:\n  dev: { order: 1 }\nstacks: [unclosed\n",
    );
    let head = repo.commit("broken yaml");
    let run = affected_run(repo.path(), &base, &head);
    run.expect_code(Exit::USAGE);
    let re_pos = run
        .stderr
        .lines()
        .any(|l| has_file_line_col(l, "sluice.yaml"));
    assert!(re_pos, "no sluice.yaml:LINE:COL in: {}", run.stderr);
}

#[test]
fn invalid_sluice_yaml_schema_points_at_the_key() {
    let (repo, base) = small_org();
    // Line 8 is `  layout: ...` in the generated config; misspell it.
    let text = sluice_yaml("").replace("  layout: \"{env}", "  layuot: \"{env}");
    assert_eq!(
        text.lines().nth(7).unwrap().trim_start().get(..6),
        Some("layuot")
    );
    repo.write("sluice.yaml", text);
    let head = repo.commit("typo");
    let run = affected_run(repo.path(), &base, &head);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["sluice.yaml:8:3", "layuot"]);
    assert!(
        run.stderr.contains("layout"),
        "hint names the right key: {}",
        run.stderr
    );

    // A wrong type is reported at its value.
    let text = sluice_yaml("  dependents: maybe\n");
    repo.write("sluice.yaml", text);
    let head = repo.commit("bad bool");
    let run = affected_run(repo.path(), &base, &head);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["sluice.yaml:9:", "dependents"]);
}

/// Whether `line` contains `<file>:<digits>:<digits>`.
fn has_file_line_col(line: &str, file: &str) -> bool {
    line.match_indices(&format!("{file}:")).any(|(i, m)| {
        let rest = &line[i + m.len()..];
        let mut parts = rest.splitn(3, ':');
        let is_num = |s: Option<&str>| {
            s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        };
        is_num(parts.next()) && is_num(parts.next())
    })
}

#[test]
fn dependency_cycle_exits_4_and_prints_the_cycle() {
    let (repo, base) = small_org();
    repo.write(&tg("a"), dependency_on("b"));
    repo.write(&tg("b"), dependency_on("a"));
    repo.write(&tg("c"), plain_stack("c = 1"));
    let head = repo.commit("cycle");
    let run = affected_run(repo.path(), &base, &head);
    run.expect_code(Exit::INCONSISTENT_ORG);
    assert_has(
        &run.stderr,
        &["cycle", "dev/eu-west-1/a", "dev/eu-west-1/b"],
    );
    assert_lacks(&run.stderr, &["dev/eu-west-1/c"]);

    let run = sluice(&["graph", "--repo", repo.arg(), "--rev", &head]);
    run.expect_code(Exit::INCONSISTENT_ORG);
    assert_has(&run.stderr, &["cycle", "dev/eu-west-1/a"]);
}

#[test]
fn cycle_through_sluice_yaml_depends_on_exits_4() {
    let repo =
        org_repo_with("  depends_on:\n    - { stack: dev/eu-west-1/a, on: [dev/eu-west-1/c] }\n");
    repo.write(&tg("a"), plain_stack("a = 1"));
    repo.write(&tg("b"), dependency_on("a"));
    repo.write(&tg("c"), dependency_on("b"));
    let head = repo.commit("cycle of three");
    let run = affected_run(repo.path(), &head, &head);
    run.expect_code(Exit::INCONSISTENT_ORG);
    for id in ["dev/eu-west-1/a", "dev/eu-west-1/b", "dev/eu-west-1/c"] {
        assert!(run.stderr.contains(id), "{id}: {}", run.stderr);
    }
}

#[test]
fn layer_violation_exits_4_naming_both_stacks() {
    let layers = "  layers: [network, { name: data, stacks: [\"rds-*\"] }]\n";
    let repo = org_repo_with(layers);
    repo.write(&tg("network"), plain_stack("a = 1"));
    repo.write(&tg("rds-main"), dependency_on("network"));
    let base = repo.commit("allowed direction");
    // The allowed direction (data reads network) is fine.
    let ok = affected_run(repo.path(), &base, &base);
    ok.expect_code(Exit::OK);

    repo.write(
        &tg("network"),
        "dependency \"db\" {\n  config_path = \"../rds-other\"\n}\n",
    );
    repo.write(&tg("rds-other"), plain_stack("b = 1"));
    let head = repo.commit("network reads a data stack");
    let run = affected_run(repo.path(), &base, &head);
    run.expect_code(Exit::INCONSISTENT_ORG);
    assert_has(
        &run.stderr,
        &["dev/eu-west-1/network", "dev/eu-west-1/rds-other", "layer"],
    );

    let run = sluice(&["graph", "--repo", repo.arg(), "--format", "json"]);
    run.expect_code(Exit::INCONSISTENT_ORG);
    let g = run.json();
    let violations = g["errors"]["layer_violations"].as_array().expect("list");
    assert_eq!(violations.len(), 1, "{g:#}");
}

#[test]
fn unresolvable_config_path_is_a_warning_with_file_and_line() {
    let (repo, base) = small_org();
    let file = tg("c");
    repo.write(
        &file,
        "locals {\n  some_map = jsondecode(get_env(\"DEPS_JSON\"))\n}\n\ndependency \"x\" {\n  config_path = local.some_map.x\n}\n",
    );
    repo.write(&tg("a"), plain_stack("a = 2"));
    let r = affected_since(&repo, &base);
    // No guessed edge: c is added (new), a modified, and nothing depends on a.
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/a", "modified"),
            ("dev/eu-west-1/c", "added"),
        ],
    );
    let ws = warnings(&r);
    let w = ws
        .iter()
        .find(|w| w.0 == file)
        .unwrap_or_else(|| panic!("no warning for {file}: {ws:?}"));
    assert_eq!(w.1, 6, "line of config_path: {ws:?}");
    assert!(
        w.2.contains("local.some_map.x"),
        "names the expression: {ws:?}"
    );
}

#[test]
fn unresolvable_module_source_is_a_warning() {
    let (repo, base) = small_org();
    let file = tg("c");
    repo.write(
        &file,
        "terraform {\n  source = \"${get_env(\"MODULES\")}//vpc\"\n}\n",
    );
    let r = affected_since(&repo, &base);
    let ws = warnings(&r);
    assert!(
        ws.iter().any(|w| w.0 == file && w.1 == 2),
        "warning at {file}:2 expected: {ws:?}"
    );
}

#[test]
fn config_path_escaping_the_repository_is_a_warning() {
    let (repo, base) = small_org();
    let file = tg("c");
    repo.write(
        &file,
        "dependency \"etc\" {\n  config_path = \"../../../../../../../etc\"\n}\n\nlocals {\n  x = read_terragrunt_config(\"../../../../../../passwd.hcl\")\n}\n",
    );
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/c", "added")]);
    let ws = warnings(&r);
    let lines: Vec<u64> = ws
        .iter()
        .filter(|w| w.0 == file && w.2.contains("escapes the repository"))
        .map(|w| w.1)
        .collect();
    assert_eq!(lines, [2, 6], "{ws:?}");
}

#[cfg(unix)]
#[test]
fn symlinks_leading_outside_the_repository_are_never_followed() {
    let (repo, base) = small_org();
    // A symlinked file and a symlinked folder, absolute and relative, read by the stack.
    repo.symlink(&format!("{R}/a/secrets.auto.tfvars"), "/etc/passwd");
    repo.symlink(
        &format!("{R}/a/env.hcl"),
        "../../../../../../../../../etc/passwd",
    );
    repo.symlink("modules/escape", "/etc");
    repo.write(
        &tg("a"),
        "terraform {\n  source = \"../../../../modules//escape\"\n}\n\nlocals {\n  env = read_terragrunt_config(\"env.hcl\")\n  pw  = file(\"secrets.auto.tfvars\")\n}\n",
    );
    // A symlink named like a stack file is not a stack.
    repo.symlink(&tg("linked"), "/etc/hostname");
    let head = repo.commit("symlinks");
    for args in [
        vec![
            "affected", "--base", &base, "--head", &head, "--format", "json",
        ],
        vec![
            "affected", "--base", &base, "--head", &head, "--format", "text",
        ],
        vec!["graph", "--rev", &head, "--format", "json"],
        vec!["stacks", "--rev", &head, "--format", "json"],
    ] {
        let mut full = args.clone();
        full.extend(["--repo", repo.arg()]);
        let run = sluice(&full);
        run.expect_code(Exit::OK);
        assert!(
            !run.all_output().contains("root:x:0:0"),
            "{args:?} printed /etc/passwd: {}",
            run.all_output()
        );
    }
    let r = affected(repo.path(), &base, &head);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
    // The symlinks are changed entries under the stack; nothing under /etc is an input.
    let paths: Vec<String> = kind_paths(&r, "stacks", "dev/eu-west-1/a")
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert!(paths.iter().all(|p| !p.starts_with('/')), "{paths:?}");
    assert!(paths.contains(&tg("a")), "{paths:?}");
    // Each reference that would have gone through a symlink is a warning at its line.
    let file = tg("a");
    let ws = warnings(&r);
    for line in [2, 6, 7] {
        assert!(
            ws.iter().any(|w| w.0 == file && w.1 == line),
            "warning at {file}:{line}: {ws:?}"
        );
    }
}

#[cfg(unix)]
#[test]
fn escaping_symlink_warning_says_it_is_a_symlink() {
    let (repo, base) = small_org();
    repo.symlink(&format!("{R}/a/env.hcl"), "/etc/passwd");
    repo.write(
        &tg("a"),
        "locals {\n  env = read_terragrunt_config(\"env.hcl\")\n}\n",
    );
    let r = affected_since(&repo, &base);
    let ws = warnings(&r);
    assert!(
        ws.iter().any(|w| w.0 == tg("a")
            && w.1 == 2
            && w.2.contains("symlink")
            && w.2.contains(&format!("{R}/a/env.hcl"))),
        "{ws:?}"
    );
}

/// Commit the work tree and run `sluice affected` over a change some stack config of which
/// does not parse: exit 4 (its edges are unknown), and with `--allow-errors` exit 0 and the
/// parsed report.
fn affected_with_errors(repo: &Repo, base: &str) -> serde_json::Value {
    let head = repo.commit("change");
    affected_run(repo.path(), base, &head).expect_code(Exit::INCONSISTENT_ORG);
    let run = sluice_change(
        "affected",
        repo.path(),
        base,
        &head,
        &["--format", "json", "--allow-errors"],
    );
    run.expect_code(Exit::OK);
    run.json()
}

#[test]
fn binary_files_do_not_crash() {
    let (repo, base) = small_org();
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut png = vec![
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d,
    ];
    png.extend_from_slice(&binary);
    repo.write(&format!("{R}/a/logo.png"), &png);
    repo.write("modules/vpc/blob.bin", &binary);
    repo.write(
        "gitops/clusters/dev-eu/apps/web/kustomization.yaml",
        &binary,
    );
    // A stack whose config is not text at all.
    repo.write(&tg("bin"), &binary);
    let r = affected_with_errors(&repo, &base);
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/a", "modified"),
            ("dev/eu-west-1/bin", "added"),
        ],
    );
    assert_eq!(
        kind_paths(&r, "stacks", "dev/eu-west-1/a"),
        vec![("file".into(), format!("{R}/a/logo.png"))]
    );
    // The undecodable stack config is reported, naming the file.
    let ws = warnings(&r);
    assert!(ws.iter().any(|w| w.0 == tg("bin")), "{ws:?}");
    assert!(
        ws.iter()
            .any(|w| w.0 == "gitops/clusters/dev-eu/apps/web/kustomization.yaml"),
        "{ws:?}"
    );

    // Binary modifications (not just additions) too.
    let head = repo.head();
    repo.write(&format!("{R}/a/logo.png"), &binary[..1000]);
    let r = affected_with_errors(&repo, &head);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
}

#[test]
fn malformed_hcl_in_a_stack_is_reported_with_file_and_line() {
    let (repo, base) = small_org();
    let file = tg("b");
    repo.write(
        &file,
        "inputs = {\n  b = 2\n\ndependency \"a\" {\n  config_path = \n}\n",
    );
    let r = affected_with_errors(&repo, &base);
    // The change is still attributed to its stack.
    assert_units(&r, "stacks", &[("dev/eu-west-1/b", "modified")]);
    let ws = warnings(&r);
    let w = ws
        .iter()
        .find(|w| w.0 == file)
        .unwrap_or_else(|| panic!("no warning for {file}: {ws:?}"));
    assert!(w.1 >= 1, "{ws:?}");
}

#[test]
fn very_large_files_do_not_crash() {
    let (repo, base) = small_org();
    // 4 MiB: a large state-like JSON blob in a stack and a large HCL file.
    let big_json = format!("{{\"data\": \"{}\"}}\n", "x".repeat(4 << 20));
    repo.write(&format!("{R}/a/big.json"), &big_json);
    let mut big_hcl = String::from("inputs = {\n");
    for i in 0..100_000 {
        big_hcl.push_str(&format!("  key_{i} = \"value-{i}\"\n"));
    }
    big_hcl.push_str("}\n");
    repo.write(&tg("b"), &big_hcl);
    let started = std::time::Instant::now();
    let r = affected_with_errors(&repo, &base);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_units(
        &r,
        "stacks",
        &[
            ("dev/eu-west-1/a", "modified"),
            ("dev/eu-west-1/b", "modified"),
        ],
    );
    // The oversized HCL file is not parsed, and the report says so, naming it.
    let file = tg("b");
    let ws = warnings(&r);
    assert!(ws.iter().any(|w| w.0 == file), "{ws:?}");
}

#[test]
fn dependency_on_a_missing_directory_is_a_warning() {
    let (repo, base) = small_org();
    let file = tg("c");
    repo.write(
        &file,
        "dependency \"gone\" {\n  config_path = \"../does-not-exist\"\n}\n",
    );
    let r = affected_since(&repo, &base);
    let ws = warnings(&r);
    assert!(
        ws.iter()
            .any(|w| w.0 == file && w.1 == 2 && w.2.contains("does-not-exist")),
        "{ws:?}"
    );
}

#[test]
fn bad_flags_exit_2() {
    let run = sluice(&["affected", "--base", "main"]);
    run.expect_code(Exit::USAGE);
    assert_has(&run.stderr, &["--head"]);
    let run = sluice(&["affected", "--base", "a", "--head", "b", "--format", "xml"]);
    run.expect_code(Exit::USAGE);
    let run = sluice(&["no-such-command"]);
    run.expect_code(Exit::USAGE);
}

#[test]
fn git_dir_and_linked_worktree_paths_work() {
    let (repo, base) = small_org();
    repo.write(&tg("a"), plain_stack("a = 2"));
    let head = repo.commit("a");
    let want = affected_run(repo.path(), &base, &head);
    want.expect_code(Exit::OK);
    let via_git_dir = affected_run(&repo.path().join(".git"), &base, &head);
    via_git_dir.expect_code(Exit::OK);
    assert_eq!(via_git_dir.stdout, want.stdout);

    let tmp = tempfile::tempdir().unwrap();
    let wt = tmp.path().join("wt");
    repo.git(&["worktree", "add", "-q", "--detach", s(&wt), &base]);
    let via_worktree = affected_run(&wt, &base, &head);
    via_worktree.expect_code(Exit::OK);
    assert_eq!(via_worktree.stdout, want.stdout);
}

#[test]
fn shallow_clone_missing_the_base_exits_3() {
    let (repo, base) = small_org();
    repo.write(&tg("a"), plain_stack("a = 2"));
    repo.commit("a");
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.arg());
    let shallow = tmp.path().join("shallow");
    git_in(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "--branch",
            "change",
            &url,
            s(&shallow),
        ],
    );
    let run = affected_run(&shallow, &base, "HEAD");
    run.expect_code(Exit::REPOSITORY);
    assert_has(&run.stderr, &[&base]);
    let run = affected_run(&shallow, "HEAD~1", "HEAD");
    run.expect_code(Exit::REPOSITORY);
    assert_has(&run.stderr, &["HEAD~1"]);

    // Deep enough for the change: works.
    let deeper = tmp.path().join("deeper");
    git_in(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "2",
            "--branch",
            "change",
            &url,
            s(&deeper),
        ],
    );
    let r = affected(&deeper, "HEAD~1", "HEAD");
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
}

#[test]
fn submodule_entries_do_not_crash() {
    let (repo, base) = small_org();
    // A gitlink (submodule pointer) under a stack, without the submodule's objects.
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{base},{R}/a/vendor"),
    ]);
    repo.git(&["commit", "-q", "-m", "submodule"]);
    let head = repo.head();
    let r = affected(repo.path(), &base, &head);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
    assert_eq!(
        kind_paths(&r, "stacks", "dev/eu-west-1/a"),
        vec![("file".into(), format!("{R}/a/vendor"))]
    );
}

#[cfg(target_os = "linux")]
#[test]
fn non_utf8_file_names_do_not_crash() {
    use std::os::unix::ffi::OsStrExt;
    let (repo, base) = small_org();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.tfvars");
    let dir = repo.path().join(R).join("a");
    std::fs::write(dir.join(name), "x = 1\n").unwrap();
    let r = affected_since(&repo, &base);
    assert_units(&r, "stacks", &[("dev/eu-west-1/a", "modified")]);
}

#[test]
fn self_dependency_is_a_cycle() {
    let (repo, base) = small_org();
    repo.write(
        &tg("a"),
        "dependency \"me\" {\n  config_path = \"../a\"\n}\n",
    );
    let head = repo.commit("self");
    let run = affected_run(repo.path(), &base, &head);
    run.expect_code(Exit::INCONSISTENT_ORG);
    assert_has(&run.stderr, &["cycle", "dev/eu-west-1/a"]);
}
