//! `footprint`: resident memory of `pool web` and `pool worker` at idle and under the
//! K = 8 claim load of the `claim` scenario.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    claim,
    harness::{Proc, Stack, mb, read_mem},
    report,
};

/// Idle time before the idle reading.
const SETTLE: Duration = Duration::from_secs(3);
/// How often RSS is sampled during the load.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
const CLAIMS: usize = 2000;
const CLAIMS_QUICK: usize = 100;
const K: usize = 8;

/// RSS in kB of one process at each point of the run.
#[derive(Default)]
struct Reading {
    idle_kb: u64,
    load_max_rss_kb: u64,
    peak_hwm_kb: u64,
    after_kb: u64,
}

impl Reading {
    fn json(&self) -> Value {
        json!({
            "idle_rss_mb": mb(self.idle_kb),
            "load_max_rss_mb": mb(self.load_max_rss_kb),
            "peak_hwm_mb": mb(self.peak_hwm_kb),
            "after_rss_mb": mb(self.after_kb),
        })
    }

    fn cells(&self, name: &str) -> Vec<String> {
        let mut cells = vec![name.to_owned()];
        cells.extend(
            [self.idle_kb, self.load_max_rss_kb, self.peak_hwm_kb, self.after_kb].map(|kb| format!("{:.1}", mb(kb))),
        );
        cells
    }
}

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let claims = if quick { CLAIMS_QUICK } else { CLAIMS };
    let stack = claim::start("footprint", claims + 200).await?;
    let measured = measure(&stack, claims).await;
    let stopped = stack.stop().await;
    let (web, worker, load) = measured?;
    stopped?;
    let headers = ["process", "idle RSS MB", "max RSS under load MB", "peak (VmHWM) MB", "after load MB"];
    let title = format!("footprint: idle after {SETTLE:?}, then {claims} claims at K={K}");
    report::table(&title, &headers, &[web.cells("pool web"), worker.cells("pool worker")]);
    Ok(json!({
        "scenario": "footprint",
        "quick": quick,
        "web": web.json(),
        "worker": worker.json(),
        "load": load.json(),
    }))
}

async fn measure(stack: &Stack, claims: usize) -> anyhow::Result<(Reading, Reading, claim::Load)> {
    tokio::time::sleep(SETTLE).await;
    let mut web = Reading { idle_kb: stack.web.mem().rss_kb, ..Reading::default() };
    let mut worker = Reading { idle_kb: stack.worker.mem().rss_kb, ..Reading::default() };
    let web_max = Arc::new(AtomicU64::new(0));
    let worker_max = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler =
        tokio::spawn(sample([(stack.web.pid, web_max.clone()), (stack.worker.pid, worker_max.clone())], done.clone()));
    let load = claim::load(stack, K, claims).await;
    done.store(true, Ordering::SeqCst);
    sampler.await?;
    let load = load?;
    finish(&mut web, &stack.web, &web_max);
    finish(&mut worker, &stack.worker, &worker_max);
    Ok((web, worker, load))
}

fn finish(reading: &mut Reading, process: &Proc, max: &AtomicU64) {
    let mem = process.mem();
    reading.load_max_rss_kb = max.load(Ordering::SeqCst);
    reading.peak_hwm_kb = mem.hwm_kb;
    reading.after_kb = mem.rss_kb;
}

/// Keeps the largest `VmRSS` seen per process until `done`.
async fn sample(processes: [(u32, Arc<AtomicU64>); 2], done: Arc<AtomicBool>) {
    while !done.load(Ordering::SeqCst) {
        for (pid, max) in &processes {
            if let Some(mem) = read_mem(*pid) {
                max.fetch_max(mem.rss_kb, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}
