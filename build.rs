//! Rebuild when a migration is added (`sqlx::migrate!` embeds the folder at compile
//! time, and cargo does not watch it on its own), and stamp the git commit into the
//! binary for `/version` when the build environment does not (`POOL_GIT_COMMIT`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=POOL_GIT_COMMIT");
    let given = std::env::var("POOL_GIT_COMMIT").ok().filter(|c| !c.is_empty() && c != "unknown");
    let commit = given.or_else(|| {
        println!("cargo:rerun-if-changed=.git/HEAD");
        println!("cargo:rerun-if-changed=.git/refs/heads");
        let out = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    if let Some(commit) = commit {
        println!("cargo:rustc-env=POOL_GIT_COMMIT={commit}");
    }
}
