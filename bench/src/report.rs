//! Numbers and their presentation: latency percentiles, rates, and the human table
//! printed before each scenario's JSON line.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples_ms` (sorted in place); zeros when empty.
    pub fn of(samples_ms: &mut [f64]) -> Self {
        if samples_ms.is_empty() {
            return Self::default();
        }
        samples_ms.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = (p / 100.0 * samples_ms.len() as f64).ceil() as usize;
            round2(samples_ms[rank.clamp(1, samples_ms.len()) - 1])
        };
        Self { p50_ms: at(50.0), p95_ms: at(95.0), p99_ms: at(99.0), max_ms: at(100.0) }
    }

    /// The four values as table cells.
    pub fn cells(&self) -> Vec<String> {
        [self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms].iter().map(|v| format!("{v:.2}")).collect()
    }
}

/// Two decimals, for JSON that stays readable.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `count` per second over `elapsed`, one decimal.
pub fn per_sec(count: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 { 0.0 } else { (count as f64 / secs * 10.0).round() / 10.0 }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> f64 {
    round2(d.as_secs_f64() * 1000.0)
}

/// Prints `title` and an aligned table to stdout.
pub fn table(title: &str, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
        println!("  {}", padded.join("  "));
    };
    println!("\n{title}");
    line(headers.to_vec());
    line(widths.iter().map(|w| &"--------------------------------"[..(*w).min(32)]).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Latency::of(&mut []).max_ms, 0.0);
    }

    #[test]
    fn rates_handle_zero_time() {
        assert_eq!(per_sec(10, Duration::ZERO), 0.0);
        assert_eq!(per_sec(10, Duration::from_millis(500)), 20.0);
    }
}
