//! Configuration parsing: defaults, named errors, no secrets in output.

use super::*;
use secrecy::ExposeSecret;
use std::collections::HashMap;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

const BASE: [(&str, &str); 3] =
    [("POOL_API_KEY", "k"), ("DATABASE_URL", "postgres://u:secretpw@h/db"), ("SERVICES_URL", "http://127.0.0.1:3002/")];

#[test]
fn defaults_apply_when_only_required_vars_are_set() {
    let c = load(&BASE).unwrap();
    assert_eq!(c.port, 3001);
    assert_eq!(c.min_idle, 1);
    assert_eq!(c.environment, Environment::Staging);
    assert_eq!(c.services.url, "http://127.0.0.1:3002");
    assert_eq!(c.stuck_timeout, Duration::from_millis(900_000));
    assert_eq!(c.api_key.expose_secret(), "k");
    assert_eq!((c.buffer, c.max_warm, c.idle_max_age), (crate::buffer::Mode::Adaptive, Some(10), None));
    assert_eq!((c.jobs.heartbeat, c.jobs.rescue_after), (Duration::from_secs(3), Duration::from_secs(12)));
}

#[test]
fn liveness_timings_parse_and_leave_room_for_heartbeats() {
    let mut vars = BASE.to_vec();
    vars.extend([("JOB_HEARTBEAT_MS", "250"), ("JOB_RESCUE_AFTER_MS", "1500")]);
    let c = load(&vars).unwrap();
    assert_eq!((c.jobs.heartbeat, c.jobs.rescue_after), (Duration::from_millis(250), Duration::from_millis(1500)));
    vars.pop();
    vars.push(("JOB_RESCUE_AFTER_MS", "500"));
    assert!(load(&vars).unwrap_err().to_string().contains("at least 3 x JOB_HEARTBEAT_MS"));
}

#[test]
fn buffer_settings_parse() {
    let mut vars = BASE.to_vec();
    vars.extend([("POOL_MIN_IDLE", "5"), ("POOL_IDLE_MAX_AGE", "12h"), ("POOL_BUFFER", "static")]);
    let c = load(&vars).unwrap();
    assert_eq!((c.max_warm, c.idle_max_age), (Some(20), Some(Duration::from_secs(12 * 3600))));
    assert_eq!(c.buffer, crate::buffer::Mode::Static);
    vars.push(("POOL_MAX_WARM", "4"));
    assert!(load(&vars).unwrap_err().to_string().contains("at least POOL_MIN_IDLE"));
}

#[test]
fn missing_required_variable_is_named() {
    for name in ["POOL_API_KEY", "DATABASE_URL", "SERVICES_URL"] {
        let vars: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != name).collect();
        let err = load(&vars).expect_err("must fail");
        assert_eq!(err, ConfigError::Missing(name));
        assert!(err.to_string().contains(name));
    }
}

#[test]
fn malformed_values_are_named() {
    let cases = [
        ("PORT", "eighty"),
        ("POOL_MIN_IDLE", "-1"),
        ("POOL_ENVIRONMENT", "prod"),
        ("SERVICES_URL", "not a url"),
        ("RECONCILE_SCHEDULE", "*/30 * * * *"),
        ("JOB_MAX_ATTEMPTS", "0"),
        ("POOL_BUFFER", "dynamic"),
        ("POOL_MAX_WARM", "0"),
        ("POOL_IDLE_MAX_AGE", "2 weeks"),
        ("POOL_IDLE_MAX_AGE", "0"),
        ("JOB_HEARTBEAT_MS", "0"),
        ("JOB_RESCUE_AFTER_MS", "soon"),
    ];
    for (name, value) in cases {
        let mut vars = BASE.to_vec();
        vars.retain(|(k, _)| *k != name);
        vars.push((name, value));
        let err = load(&vars).err().unwrap_or_else(|| panic!("{name}={value} accepted"));
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn debug_output_never_contains_secrets() {
    let mut vars = BASE.to_vec();
    vars.push(("SERVICES_API_KEY", "svc-secret"));
    let printed = format!("{:?}", load(&vars).unwrap());
    assert!(!printed.contains("secretpw") && !printed.contains("svc-secret"), "{printed}");
}
