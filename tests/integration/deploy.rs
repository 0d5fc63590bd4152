//! The deploy files give each service its `Procfile` role: `railway.toml` (web) and
//! `railway.worker.toml` (worker) start the Procfile's commands and migrate first.

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The value of `key = "..."` (or `key = ["..."]`) in a TOML file, ignoring comments.
fn toml_value(text: &str, key: &str) -> Option<String> {
    text.lines().map(str::trim).filter(|l| !l.starts_with('#')).find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(['[', ']']).trim_matches('"').to_owned())
    })
}

fn procfile(role: &str) -> String {
    read("Procfile")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{role}:")).map(|c| c.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {role} in Procfile"))
}

#[test]
fn each_railway_service_runs_its_procfile_role() {
    for (file, role) in [("railway.toml", "web"), ("railway.worker.toml", "worker")] {
        let config = read(file);
        assert_eq!(toml_value(&config, "startCommand"), Some(procfile(role)), "{file}");
        assert_eq!(toml_value(&config, "preDeployCommand"), Some(procfile("release")), "{file}");
        assert_eq!(toml_value(&config, "dockerfilePath").as_deref(), Some("Dockerfile"), "{file}");
    }
    assert_eq!(toml_value(&read("railway.toml"), "healthcheckPath").as_deref(), Some("/readyz"));
    assert_eq!(toml_value(&read("railway.worker.toml"), "healthcheckPath"), None, "a worker has no HTTP port");
}
