//! Scale figures for the evidence log (not asserted; CI does not run it). Run in release:
//! `cargo test --release -p sluice-evidence --test perf -- --ignored --nocapture`.

#[test]
#[ignore = "measurement: run in release with --ignored --nocapture"]
fn evidence_log_at_one_million_leaves() {
    let leaves = std::env::var("SLUICE_BENCH_LEAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("{}", sluice_evidence::bench::run(leaves, 1000, 20_000));
}
