//! Rebuilds the crate when a migration is added or edited: `sqlx::migrate!` embeds the
//! `migrations/` directories at compile time, and a new file changes no Rust source, so
//! without this an incremental build keeps the old set of migrations.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
