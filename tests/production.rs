//! The binary as the Dockerfile builds it (`--no-default-features`) carries no
//! simulator: no `pool sim` or `pool dev` (nor a `pool bench`), and none of the simulator's
//! routes in its bytes. `./scripts/test` runs this file built that way; in the default
//! build it is empty.
#![cfg(not(feature = "dev-tools"))]

use std::process::Command;

const POOL: &str = env!("CARGO_BIN_EXE_pool");

#[test]
fn the_production_binary_has_no_developer_subcommands() {
    for subcommand in ["sim", "dev", "bench"] {
        let out = Command::new(POOL).args([subcommand, "--help"]).output().expect("pool runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "pool {subcommand} exists in the production build");
        assert!(stderr.contains("unrecognized subcommand"), "pool {subcommand}: {stderr}");
    }
    let out = Command::new(POOL).arg("--help").output().expect("pool runs");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("worker"));
}

#[test]
fn the_production_binary_contains_no_simulator_route() {
    let bytes = std::fs::read(POOL).expect("read the binary");
    for route in ["/_sim/", "/i/{id}/pool/provision"] {
        let found = bytes.windows(route.len()).any(|w| w == route.as_bytes());
        assert!(!found, "the production binary contains the simulator route {route}");
    }
}
