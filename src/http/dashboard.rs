//! The operator dashboard: static files compiled into the binary (nothing is fetched
//! from outside at run time). The page asks for the API key itself and keeps it in
//! the browser session; the server never embeds it.
//!
//! The scripts are plain files run in the order `index.html` lists them (no build
//! step); `vendor/` holds uPlot 1.6.32 (MIT, licence in `vendor/uPlot.LICENSE`).

use axum::{
    Router,
    http::header::{CACHE_CONTROL, CONTENT_TYPE},
    response::IntoResponse,
    routing::get,
};

use super::AppState;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file of the dashboard: its path, content type and contents.
const ASSETS: [(&str, &str, &str); 14] = [
    ("/", HTML, include_str!("dashboard/index.html")),
    ("/style.css", CSS, include_str!("dashboard/style.css")),
    ("/css/panels.css", CSS, include_str!("dashboard/css/panels.css")),
    ("/js/core.js", JS, include_str!("dashboard/js/core.js")),
    ("/js/pool.js", JS, include_str!("dashboard/js/pool.js")),
    ("/js/fleet.js", JS, include_str!("dashboard/js/fleet.js")),
    ("/js/jobs.js", JS, include_str!("dashboard/js/jobs.js")),
    ("/js/kinds.js", JS, include_str!("dashboard/js/kinds.js")),
    ("/js/job-detail.js", JS, include_str!("dashboard/js/job-detail.js")),
    ("/js/charts.js", JS, include_str!("dashboard/js/charts.js")),
    ("/app.js", JS, include_str!("dashboard/app.js")),
    ("/vendor/uPlot.iife.min.js", JS, include_str!("dashboard/vendor/uPlot.iife.min.js")),
    ("/vendor/uPlot.min.css", CSS, include_str!("dashboard/vendor/uPlot.min.css")),
    ("/vendor/uPlot.LICENSE", TEXT, include_str!("dashboard/vendor/uPlot.LICENSE")),
];

pub fn router() -> Router<AppState> {
    ASSETS.iter().fold(Router::new(), |router, &(path, content_type, body)| {
        router.route(path, get(move || async move { asset(content_type, body) }))
    })
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // Short cache: a deploy's new page shows up within a minute.
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=60")], body)
}

#[cfg(test)]
mod tests {
    /// The dashboard reads the job kinds from `/api/jobs/kinds`: a kind added to the
    /// worker shows up in it with no change here.
    #[test]
    fn the_dashboard_names_no_job_kind() {
        for (path, _, contents) in super::ASSETS.iter().filter(|(path, ..)| !path.starts_with("/vendor/")) {
            for kind in crate::jobs::KINDS {
                for quoted in [format!("'{kind}'"), format!("\"{kind}\""), format!("`{kind}`")] {
                    assert!(!contents.contains(&quoted), "{path} names the job kind {kind}");
                }
            }
        }
    }
}
