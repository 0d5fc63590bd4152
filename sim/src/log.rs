//! The request log tests read: every services API and instance call with its final
//! status, recorded by a middleware so early exits (auth, faults) are logged too.

use std::{collections::VecDeque, sync::Arc, sync::Mutex};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{SimState, lock};

/// Oldest entries are dropped beyond this, so a long `pool dev` run stays bounded.
pub const LOG_CAP: usize = 200_000;

/// Create bodies are tiny; anything bigger is not worth parsing for the log.
const ID_SNIFF_LIMIT: usize = 64 * 1024;

/// One request the simulator answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// Milliseconds since the simulator was created.
    pub at_ms: u64,
    /// Wall-clock arrival time.
    pub at: DateTime<Utc>,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// The instance the call was about, when it names exactly one.
    pub instance_id: Option<String>,
    /// The status code the simulator answered with; [`HUNG_UP`] when the caller
    /// went away before the answer.
    pub status: u16,
}

/// A bounded FIFO of [`LoggedRequest`]s.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<VecDeque<LoggedRequest>>,
}

impl RequestLog {
    pub fn push(&self, entry: LoggedRequest) {
        let mut entries = lock(&self.entries);
        if entries.len() >= LOG_CAP {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub fn snapshot(&self) -> Vec<LoggedRequest> {
        lock(&self.entries).iter().cloned().collect()
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
    }
}

/// Middleware recording each request with the status it finally got.
pub(crate) async fn record(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let at_ms = u64::try_from(state.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let at = Utc::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let (instance_id, request) = match id_from_path(&path) {
        Some(id) => (Some(id), request),
        None if path == "/create-instance" => id_from_body(request).await,
        None => (None, request),
    };
    let mut pending =
        Pending { state: &state, entry: Some(LoggedRequest { at_ms, at, method, path, instance_id, status: 0 }) };
    let response = next.run(request).await;
    pending.finish(response.status().as_u16());
    response
}

/// Status logged for a request whose caller hung up before the answer (nginx's
/// "client closed request"): upstream may still be acting on it.
pub const HUNG_UP: u16 = 499;

/// A request on its way: logged when answered, or as [`HUNG_UP`] when its caller
/// went away first (the handler's future is then dropped).
struct Pending<'a> {
    state: &'a SimState,
    entry: Option<LoggedRequest>,
}

impl Pending<'_> {
    fn finish(&mut self, status: u16) {
        if let Some(mut entry) = self.entry.take() {
            entry.status = status;
            self.state.log.push(entry);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.finish(HUNG_UP);
    }
}

/// The id in `/i/:id/...`, `/destroy/:id`, `/configure/:id` or `/redeploy/:id`.
fn id_from_path(path: &str) -> Option<String> {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some("i" | "destroy" | "configure" | "redeploy"), Some(id)) if !id.is_empty() => Some(id.to_owned()),
        _ => None,
    }
}

/// Reads the `instanceId` of a create body, then rebuilds the request for the handler.
async fn id_from_body(request: Request) -> (Option<String>, Request) {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ID_SNIFF_LIMIT).await else {
        // The body is gone; an empty one makes the handler answer 400, which is fair
        // for a body too large to be a create request.
        return (None, Request::from_parts(parts, Body::empty()));
    };
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("instanceId")?.as_str().map(str::to_owned));
    (id, Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_from_path_finds_the_instance() {
        assert_eq!(id_from_path("/i/abc/pool/health").as_deref(), Some("abc"));
        assert_eq!(id_from_path("/destroy/abc").as_deref(), Some("abc"));
        assert_eq!(id_from_path("/status/batch"), None);
        assert_eq!(id_from_path("/i/"), None);
    }
}
