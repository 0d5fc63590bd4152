//! The demand of `availability`: a seeded trace of claim arrivals (steady plus
//! bursts), and what each claim of it ended as, seen from the client.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::harness::API_KEY;

/// The shape of the demand: Poisson arrivals plus bursts at a fixed period.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Every arrival falls in `[0, length)`.
    pub length: Duration,
    /// Mean gap between steady arrivals (the gaps are exponentially distributed).
    pub mean_gap: Duration,
    /// When the first burst starts; the next ones follow every `burst_every`.
    pub first_burst: Duration,
    /// The period of the bursts (positive).
    pub burst_every: Duration,
    /// Claims per burst.
    pub burst_size: usize,
    /// A burst's claims arrive uniformly within this long.
    pub burst_spread: Duration,
    /// No burst starts at or after this (a busy period, then quiet again).
    pub bursts_until: Duration,
}

impl Shape {
    /// Arrival offsets from the start of the trace, sorted; the same for the same seed.
    pub fn arrivals(&self, seed: u64) -> Vec<Duration> {
        let mut rng = StdRng::seed_from_u64(seed);
        let (length, spread) = (self.length.as_secs_f64(), self.burst_spread.as_secs_f64());
        let mut at = Vec::new();
        let mut t = 0.0;
        loop {
            let u: f64 = rng.random();
            t += -(1.0 - u).ln() * self.mean_gap.as_secs_f64();
            if t >= length {
                break;
            }
            at.push(t);
        }
        let every = self.burst_every.as_secs_f64().max(1.0);
        let mut start = self.first_burst.as_secs_f64();
        let until = self.bursts_until.as_secs_f64().min(length - spread);
        while start < until {
            at.extend((0..self.burst_size).map(|_| start + rng.random::<f64>() * spread));
            start += every;
        }
        at.sort_by(f64::total_cmp);
        at.into_iter().map(Duration::from_secs_f64).collect()
    }

    /// Which burst (0-based) an arrival at `offset` falls in, if any: a steady arrival
    /// inside a burst's window counts with it, as the pool sees it.
    pub fn burst_of(&self, offset: Duration) -> Option<usize> {
        let (at, first) = (offset.as_secs_f64(), self.first_burst.as_secs_f64());
        let every = self.burst_every.as_secs_f64().max(1.0);
        let k = ((at - first) / every).floor();
        let start = first + k * every;
        let inside = k >= 0.0 && at - start <= self.burst_spread.as_secs_f64();
        (inside && (k as usize) < self.bursts()).then_some(k as usize)
    }

    /// How many bursts [`Shape::arrivals`] puts in the trace.
    pub fn bursts(&self) -> usize {
        let (length, spread) = (self.length.as_secs_f64(), self.burst_spread.as_secs_f64());
        let (first, every) = (self.first_burst.as_secs_f64(), self.burst_every.as_secs_f64().max(1.0));
        let until = self.bursts_until.as_secs_f64().min(length - spread);
        if first >= until { 0 } else { ((until - first) / every).ceil() as usize }
    }

    /// The shape as JSON, in seconds.
    pub fn json(&self) -> Value {
        json!({
            "secs": self.length.as_secs_f64(),
            "mean_gap_secs": self.mean_gap.as_secs_f64(),
            "first_burst_secs": self.first_burst.as_secs_f64(),
            "burst_every_secs": self.burst_every.as_secs_f64(),
            "burst_size": self.burst_size,
            "burst_spread_secs": self.burst_spread.as_secs_f64(),
            "bursts_until_secs": self.bursts_until.as_secs_f64(),
            "bursts": self.bursts(),
        })
    }
}

/// How a claim of the trace ended, from the client's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// 200 with a `succeeded` job: an instance is bound to the claim.
    Bound,
    /// 503 `no_idle_instance`, or a finished job that failed with it.
    NoIdle,
    /// 202: the job was still queued or running when the wait ran out.
    Pending,
    /// Anything else (a transport error, another status or failure), as seen.
    Other(String),
}

/// One claim of the trace: when it arrived, how it ended and how long its answer took.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Its offset in the trace.
    pub at: Duration,
    pub ending: Ending,
    pub answered: Duration,
}

/// `POST /api/pool/claim` with `Prefer: wait=<wait>` and an empty body, for the
/// arrival at offset `at`.
pub async fn claim(http: &reqwest::Client, url: &str, wait: Duration, at: Duration) -> Outcome {
    let sent = Instant::now();
    let ending = claim_ending(http, url, wait).await;
    Outcome { at, ending, answered: sent.elapsed() }
}

async fn claim_ending(http: &reqwest::Client, url: &str, wait: Duration) -> Ending {
    let sent = http
        .post(url)
        .bearer_auth(API_KEY)
        .header("Prefer", format!("wait={}", wait.as_secs()))
        .json(&json!({}))
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(err) => return Ending::Other(format!("request failed: {err}")),
    };
    let status = response.status().as_u16();
    match response.json::<Value>().await {
        Ok(body) => classify(status, &body),
        Err(err) => Ending::Other(format!("HTTP {status}: unreadable body: {err}")),
    }
}

/// The ending of an answer: `status` and its JSON body.
pub fn classify(status: u16, body: &Value) -> Ending {
    let failed_no_idle = matches!(body["status"].as_str(), Some("failed" | "cancelled"))
        && body["error"].as_str().is_some_and(|e| e.contains("no_idle_instance"));
    match status {
        200 if body["status"] == "succeeded" => Ending::Bound,
        200 if failed_no_idle => Ending::NoIdle,
        503 if body["code"] == "no_idle_instance" => Ending::NoIdle,
        202 => Ending::Pending,
        _ => Ending::Other(format!("HTTP {status}: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            length: Duration::from_secs(120),
            mean_gap: Duration::from_secs(8),
            first_burst: Duration::from_secs(15),
            burst_every: Duration::from_secs(45),
            burst_size: 9,
            burst_spread: Duration::from_secs(2),
            bursts_until: Duration::from_secs(120),
        }
    }

    #[test]
    fn the_trace_depends_only_on_the_seed() {
        let s = shape();
        assert_eq!(s.arrivals(7), s.arrivals(7));
        assert_ne!(s.arrivals(7), s.arrivals(8));
        let at = s.arrivals(7);
        assert!(at.windows(2).all(|w| w[0] <= w[1]));
        assert!(at.last().is_some_and(|last| *last < s.length));
        assert_eq!(s.bursts(), 3);
        let in_burst = |a: &&Duration| [15.0, 60.0, 105.0].iter().any(|b| (*b..=b + 2.0).contains(&a.as_secs_f64()));
        assert!(at.iter().filter(in_burst).count() >= 27);
        let busy = Shape { bursts_until: Duration::from_secs(61), ..s };
        assert_eq!(busy.bursts(), 2, "no burst starts after the busy period");
        assert_eq!(busy.arrivals(7).len(), at.len() - 9);
    }

    #[test]
    fn arrivals_fall_in_the_burst_whose_window_holds_them() {
        let s = shape();
        let at = Duration::from_secs_f64;
        assert_eq!(s.burst_of(at(14.9)), None, "before the first burst");
        assert_eq!(s.burst_of(at(15.0)), Some(0));
        assert_eq!(s.burst_of(at(17.0)), Some(0), "the window's end");
        assert_eq!(s.burst_of(at(17.1)), None, "between bursts");
        assert_eq!(s.burst_of(at(61.0)), Some(1));
        assert_eq!(s.burst_of(at(106.0)), Some(2));
        assert_eq!(Shape { bursts_until: at(61.0), ..s }.burst_of(at(106.0)), None, "no burst after the busy period");
        let bursts = s.arrivals(7).into_iter().filter_map(|a| s.burst_of(a)).collect::<Vec<_>>();
        assert!((0..3).all(|k| bursts.iter().filter(|&&b| b == k).count() >= 9));
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, &json!({ "status": "succeeded" })), Ending::Bound);
        let failed = json!({ "status": "failed", "error": "no_idle_instance: no idle instance to claim" });
        assert_eq!(classify(200, &failed), Ending::NoIdle);
        assert_eq!(classify(503, &json!({ "code": "no_idle_instance", "error": "…" })), Ending::NoIdle);
        assert_eq!(classify(202, &json!({ "status": "running" })), Ending::Pending);
        assert!(matches!(classify(200, &json!({ "status": "failed", "error": "boom" })), Ending::Other(_)));
        assert!(matches!(classify(500, &json!({})), Ending::Other(_)));
    }
}
