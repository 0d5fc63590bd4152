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
    assert_eq!(c.keys.scope_of("k"), Some(Scope::Operator));
    assert_eq!(c.keys.instance().expose_secret(), "k", "staging without POOL_INSTANCE_KEY");
    assert!(c.keys.instance_is_operator());
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
    assert_eq!(c.max_waiting, 100, "the default line");
    assert_eq!(c.surplus_cooldown, Duration::from_secs(300));
    vars.push(("POOL_SURPLUS_COOLDOWN", "90s"));
    assert_eq!(load(&vars).unwrap().surplus_cooldown, Duration::from_secs(90));
    assert_eq!(c.demand_period, Some(Duration::from_secs(86_400)), "a day");
    vars.push(("POOL_DEMAND_PERIOD", "60s"));
    assert_eq!(load(&vars).unwrap().demand_period, Some(Duration::from_secs(60)));
    vars.push(("POOL_DEMAND_PERIOD", "off"));
    assert_eq!(load(&vars).unwrap().demand_period, None);
    vars.push(("POOL_MAX_WAITING", "7"));
    assert_eq!(load(&vars).unwrap().max_waiting, 7);
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
        ("POOL_MAX_WAITING", "0"),
        ("POOL_IDLE_MAX_AGE", "2 weeks"),
        ("POOL_IDLE_MAX_AGE", "0"),
        ("POOL_SURPLUS_COOLDOWN", "5 minutes"),
        ("POOL_DEMAND_PERIOD", "weekly"),
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

const STRONG: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn keys_have_scopes_and_rotate() {
    let mut vars = BASE.to_vec();
    vars.extend([
        ("POOL_API_KEY", "op-old, op-new"),
        ("POOL_CLAIM_KEYS", "claim-a,claim-b"),
        ("POOL_INSTANCE_KEY", "inst"),
    ]);
    let c = load(&vars).unwrap();
    for (token, scope) in
        [("op-old", Some(Scope::Operator)), ("op-new", Some(Scope::Operator)), ("claim-b", Some(Scope::Claim))]
    {
        assert_eq!(c.keys.scope_of(token), scope, "{token}");
    }
    for refused in ["inst", "", "op-ol", "op-old,", "claim-a,claim-b"] {
        assert_eq!(c.keys.scope_of(refused), None, "{refused:?}");
    }
    assert_eq!(c.keys.instance().expose_secret(), "inst");
    assert!(!c.keys.instance_is_operator());
}

#[test]
fn keys_are_checked() {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = BASE.to_vec();
        vars.extend(extra.iter().copied());
        load(&vars).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(with(&[("POOL_INSTANCE_KEY", "k")]).unwrap_err().contains("POOL_INSTANCE_KEY"), "the API never takes it");
    assert!(with(&[("POOL_API_KEY", "a\u{0}b")]).unwrap_err().contains("POOL_API_KEY"));
    let production = [("POOL_ENVIRONMENT", "production"), ("POOL_API_KEY", STRONG), ("POOL_INSTANCE_KEY", STRONG)];
    assert!(with(&production).unwrap_err().contains("POOL_INSTANCE_KEY"), "must differ");
    let instance = "fedcba9876543210fedcba9876543210";
    with(&[production[0], production[1], ("POOL_INSTANCE_KEY", instance)]).expect("strong keys");
    let missing = with(&[production[0], production[1]]).unwrap_err();
    assert!(missing.contains("POOL_INSTANCE_KEY"), "required in production: {missing}");
    for weak in [DEV_KEY, "short-key"] {
        let err = with(&[production[0], ("POOL_API_KEY", weak), ("POOL_INSTANCE_KEY", instance)]).unwrap_err();
        assert!(err.contains("POOL_API_KEY") && !err.contains(weak), "{err}");
    }
    with(&[("POOL_API_KEY", DEV_KEY)]).expect("the development key outside production");
}

/// Every variable the configuration reads is in `.env.example` and in the `--help`
/// of `pool web` or `pool worker`: both lists are written by hand, so this keeps
/// them true. Per-kind variables appear as their `<KIND>` pattern.
#[test]
fn every_variable_read_is_in_env_example_and_help() {
    let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let map: HashMap<String, String> = BASE.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|k| {
        read.borrow_mut().insert(k.to_owned());
        map.get(k).cloned()
    })
    .unwrap();
    let example = include_str!("../../.env.example");
    let help = format!("{}\n{}", crate::cli::WEB_ENV, crate::cli::WORKER_ENV);
    let missing: std::collections::BTreeSet<String> = read
        .into_inner()
        .into_iter()
        .map(|name| match crate::jobs::KINDS.iter().find(|k| name.ends_with(&format!("_{}", k.to_uppercase()))) {
            Some(kind) => format!("{}_<KIND>", &name[..name.len() - kind.len() - 1]),
            None => name,
        })
        .filter(|name| !example.contains(name.as_str()) || !help.contains(name.trim_end_matches("_<KIND>")))
        .collect();
    assert!(missing.is_empty(), "read by the configuration but not in .env.example or --help: {missing:?}");
}

/// The settings a default changes, for comparing a configuration with the defaults.
fn settings(c: &Config) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        c.port,
        c.host,
        c.header_read_timeout,
        c.environment,
        c.join_hosts,
        c.claim_contract,
        c.min_idle,
        c.max_waiting,
        c.buffer,
        c.max_warm,
        c.surplus_cooldown,
        c.demand_period,
        c.idle_max_age,
        c.target_image,
        c.stuck_timeout,
        (c.database.max_connections, c.database.acquire_timeout),
        c.metrics_flush,
        c.services,
        (&c.railway_project_id, &c.railway_environment_id),
        c.jobs,
    )
}

/// Every value `.env.example` sets is the default: copying the file changes nothing,
/// and a default changed in the code without the file (or the reverse) fails here.
/// Variables the file leaves empty, and the required ones, are not compared.
#[test]
fn every_value_in_env_example_is_the_default() {
    let defaults = settings(&load(&BASE).unwrap());
    let example = include_str!("../../.env.example");
    let mut compared = 0;
    for line in example.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.split_once('=') else { continue };
        if value.is_empty() || BASE.iter().any(|(base, _)| *base == name) {
            continue;
        }
        let mut vars = BASE.to_vec();
        vars.push((name, value));
        let Ok(config) = load(&vars) else { panic!(".env.example's {name}={value} does not load") };
        assert_eq!(settings(&config), defaults, ".env.example's {name}={value} is not the default");
        compared += 1;
    }
    assert!(compared > 20, "only {compared} variables compared");
}

/// Every `NAME=value` in the `--help` of `pool web` and `pool worker` is the default:
/// loaded, it changes no setting, so the help cannot drift from the code either.
#[test]
fn every_default_in_help_is_the_default() {
    let defaults = settings(&load(&BASE).unwrap());
    let help = format!("{}\n{}", crate::cli::WEB_ENV, crate::cli::WORKER_ENV);
    let shown = defaults_in(&help);
    for (name, value) in &shown {
        let mut vars = BASE.to_vec();
        vars.push((name, value));
        let read = std::cell::Cell::new(false);
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        let Ok(config) = Config::from_lookup(|k| {
            read.set(read.get() || k == *name);
            map.get(k).map(|v| (*v).to_owned())
        }) else {
            panic!("--help's {name}={value} does not load")
        };
        assert!(read.get(), "--help shows a default for {name}, which the configuration does not read");
        assert_eq!(settings(&config), defaults, "--help's {name}={value} is not the default");
    }
    assert!(shown.len() > 25, "only {} defaults shown", shown.len());
}

/// `NAME=value` and `NAME="value with spaces"` in `text`.
fn defaults_in(text: &str) -> Vec<(&str, &str)> {
    let is_name = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        let name_start = rest[..at].rfind(|c: char| !is_name(c)).map_or(0, |i| i + 1);
        let (name, after) = (&rest[name_start..at], &rest[at + 1..]);
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').expect("a closed quote"),
            None => after.split_at(after.find(|c: char| c.is_whitespace() || c == ',').unwrap_or(after.len())),
        };
        if !name.is_empty() && name.starts_with(|c: char| c.is_ascii_uppercase()) {
            found.push((name, value));
        }
        rest = next;
    }
    found
}
