//! The operator dashboard: static files compiled into the binary (nothing is fetched
//! from outside at run time). The page asks for the API key itself and keeps it in
//! the browser session; the server never embeds it.

use axum::{
    Router,
    http::header::{CACHE_CONTROL, CONTENT_TYPE},
    response::IntoResponse,
    routing::get,
};

use super::AppState;

const INDEX: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // Short cache: a deploy's new page shows up within a minute.
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=60")], body)
}
