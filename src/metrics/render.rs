//! The `/metrics` page, and how histograms become Prometheus counter rows.

use std::time::Duration;

use sqlx::PgPool;

use super::{
    BUCKETS, HISTOGRAMS, handle,
    pending::{Delta, Key},
};
use crate::{
    buffer,
    store::{self, jobs},
};

/// The counter rows a batch adds to: counters as they are; histograms as cumulative
/// `_bucket{le}` rows, `_sum` and `_count`.
pub(super) fn counter_rows(batch: &[(Key, Delta)]) -> Vec<(String, String, f64)> {
    let mut rows = Vec::new();
    for ((name, labels), delta) in batch {
        let Some(buckets) = &delta.buckets else {
            rows.push(((*name).to_owned(), labels.clone(), delta.count));
            continue;
        };
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), f64::to_string);
            rows.push((format!("{name}_bucket"), format!("{labels}{sep}le=\"{le}\""), cumulative as f64));
        }
        rows.push((format!("{name}_sum"), labels.clone(), delta.sum));
        rows.push((format!("{name}_count"), labels.clone(), delta.count));
    }
    rows
}

/// `(kind, state, jobs)`.
type KindTotal = (String, String, i64);

/// The full `/metrics` page: scrape-time gauges from the database, the fleet's
/// counters and histograms, then this process's recorder (HTTP requests).
pub async fn render(db: &PgPool, settings: buffer::Settings, rescue_after: Duration) -> sqlx::Result<String> {
    let min_idle = settings.min_idle;
    let view = buffer::view(db, settings).await?;
    let counts = view.counts;
    let by_status = [
        ("provisioning", counts.provisioning),
        ("idle", counts.idle),
        ("claiming", counts.claiming),
        ("claimed", counts.claimed),
        ("crashed", counts.crashed),
        ("draining", counts.draining),
    ];
    let commit = option_env!("POOL_GIT_COMMIT").unwrap_or("unknown");
    let mut out = format!(
        "# HELP pool_build_info The running build.\n# TYPE pool_build_info gauge\n\
         pool_build_info{{version=\"{}\",commit=\"{commit}\"}} 1\n\
         # HELP pool_min_idle POOL_MIN_IDLE: idle + provisioning is kept at least this high.\n\
         # TYPE pool_min_idle gauge\npool_min_idle {min_idle}\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("# HELP pool_instances Instances by status.\n# TYPE pool_instances gauge\n");
    for (status, n) in by_status {
        out.push_str(&format!("pool_instances{{status=\"{status}\"}} {n}\n"));
    }
    // Rescue presumes a worker dead after this much silence; the same horizon here.
    let workers = jobs::lifecycle::live_workers(db, rescue_after).await?;
    out.push_str("# HELP pool_workers_alive Worker processes whose heartbeat is recent.\n");
    out.push_str(&format!("# TYPE pool_workers_alive gauge\npool_workers_alive {workers}\n"));
    out.push_str("# HELP pool_jobs Jobs in the table by kind and status.\n# TYPE pool_jobs gauge\n");
    // Scrapes need no fresher totals than this; the table may be large.
    static TOTALS: crate::memo::Memo<Vec<KindTotal>> = crate::memo::Memo::new(Duration::from_secs(5));
    for (kind, state, n) in TOTALS.get_or_try(|| jobs::totals_by_kind(db)).await? {
        out.push_str(&format!("pool_jobs{{kind=\"{kind}\",status=\"{state}\"}} {n}\n"));
    }
    buffer_gauges(&mut out, &view);
    glance_gauges(&mut out, &view.glance);
    let paused = jobs::pauses::paused(db).await?;
    out.push_str("# HELP pool_job_kind_paused 1 while a job kind is paused (its jobs stay queued).\n");
    out.push_str("# TYPE pool_job_kind_paused gauge\n");
    for kind in crate::jobs::KINDS {
        let on = u8::from(paused.iter().any(|p| p.kind == *kind));
        out.push_str(&format!("pool_job_kind_paused{{kind=\"{kind}\"}} {on}\n"));
    }
    fleet_counters(&mut out, store::metrics::counters(db).await?);
    handle().run_upkeep();
    out.push_str(&handle().render());
    Ok(out)
}

/// The warm target and what it is made of, waiting claims, instances per image.
fn buffer_gauges(out: &mut String, view: &buffer::View) {
    let (target, waiting) = (&view.target, view.waiting);
    let gauges = [
        ("pool_warm_target", "idle + provisioning replenish keeps (before waiting claims).", target.target.into()),
        ("pool_claims_waiting", "Claims waiting for an instance (Prefer: wait).", waiting as f64),
        ("pool_claim_rate_per_minute", "Smoothed claims per minute the target plans for.", target.claims_per_minute),
        ("pool_lead_time_seconds_p90", "Create to idle, p90 of the last hour.", target.lead_time_seconds),
        ("pool_orphan_services", "Provider services no row owns; delete them at the provider.", view.orphans as f64),
    ];
    for (name, help, value) in gauges {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
    }
    if let Some(forecast) = target.forecast_claims {
        out.push_str(&format!(
            "# HELP pool_warm_forecast Claims expected within one lead time from the same phase of earlier periods.\n\
             # TYPE pool_warm_forecast gauge\npool_warm_forecast {forecast}\n"
        ));
    }
    out.push_str("# HELP pool_instances_by_image Live instances (not draining) per image.\n");
    out.push_str("# TYPE pool_instances_by_image gauge\n");
    for (image, n) in &view.images {
        out.push_str(&format!("pool_instances_by_image{{image=\"{}\"}} {n}\n", image.replace(['"', '\\', '\n'], "_")));
    }
    if let Some(max) = target.max_warm {
        out.push_str(&format!(
            "# HELP pool_max_warm POOL_MAX_WARM.\n# TYPE pool_max_warm gauge\npool_max_warm {max}\n"
        ));
    }
}

/// Cost and service over the last hour and day.
fn glance_gauges(out: &mut String, glance: &store::metrics::AtAGlance) {
    let windows = [("hour", &glance.hour), ("day", &glance.day)];
    out.push_str("# HELP pool_warm_instance_hours Warm (idle + provisioning) instance-hours over the window.\n");
    out.push_str("# TYPE pool_warm_instance_hours gauge\n");
    for (window, g) in windows {
        out.push_str(&format!("pool_warm_instance_hours{{window=\"{window}\"}} {}\n", g.warm_instance_hours));
    }
    out.push_str(
        "# HELP pool_claims_bound_at_once_ratio Share of claims bound to an instance at once over the window.\n",
    );
    out.push_str("# TYPE pool_claims_bound_at_once_ratio gauge\n");
    for (window, g) in windows {
        if let Some(share) = g.bound_at_once_share {
            out.push_str(&format!("pool_claims_bound_at_once_ratio{{window=\"{window}\"}} {share}\n"));
        }
    }
}

/// The fleet's counters, a histogram's rows together and its buckets in order.
fn fleet_counters(out: &mut String, mut rows: Vec<(String, String, f64)>) {
    let family = |name: &str| {
        HISTOGRAMS.iter().find(|h| name.strip_prefix(**h).is_some_and(|rest| rest.starts_with('_'))).copied()
    };
    // `(labels without le, le)`: the buckets of one series in order.
    let split = |labels: &str| match labels.rsplit_once("le=\"") {
        Some((rest, v)) => {
            (rest.trim_end_matches(',').to_owned(), v.trim_end_matches('"').parse().unwrap_or(f64::INFINITY))
        }
        None => (labels.to_owned(), f64::NEG_INFINITY),
    };
    rows.sort_by(|a, b| {
        let (fa, fb) = (family(&a.0).unwrap_or(&a.0), family(&b.0).unwrap_or(&b.0));
        let ((la, lea), (lb, leb)) = (split(&a.1), split(&b.1));
        (fa, &a.0, la, lea).partial_cmp(&(fb, &b.0, lb, leb)).unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut last = String::new();
    for (name, labels, value) in &rows {
        let (base, kind) = family(name).map_or((name.as_str(), "counter"), |h| (h, "histogram"));
        if base != last {
            out.push_str(&format!("# TYPE {base} {kind}\n"));
            last = base.to_owned();
        }
        out.push_str(&format!("{name}{{{labels}}} {value}\n"));
    }
}
