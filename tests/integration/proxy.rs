//! TCP proxies in front of the database for the processes under test: one that
//! delays every chunk in both directions (a slow database, or one far away), and one
//! whose open connections can be frozen (a blackholed connection).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Starts a proxy to `target` (`host:port`) adding `delay` to every chunk each way;
/// returns its port. It lives as long as the test's runtime.
pub async fn latency_proxy(target: String, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let port = listener.local_addr().expect("proxy address").port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(&target).await else { return };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::join!(pipe(ri, wo, delay), pipe(ro, wi, delay));
            });
        }
    });
    port
}

async fn pipe(mut from: impl AsyncReadExt + Unpin, mut to: impl AsyncWriteExt + Unpin, delay: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tokio::time::sleep(delay).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// `url` (a `postgres://…@host:port/db` URL) pointed at the proxy on `port`.
pub fn via_proxy(url: &str, port: u16) -> String {
    let (scheme_auth, rest) = url.split_once('@').expect("URL with credentials");
    let (_, path) = rest.split_once('/').expect("URL with a database");
    format!("{scheme_auth}@127.0.0.1:{port}/{path}")
}

/// The `host:port` of a `postgres://…@host:port/db` URL.
pub fn server_of(url: &str) -> String {
    let (_, rest) = url.split_once('@').expect("URL with credentials");
    rest.split_once('/').expect("URL with a database").0.to_owned()
}

/// A proxy whose connections can be frozen: they stay open but carry nothing more
/// (a blackholed connection that neither answers nor fails): every open one, the
/// ones on given ports (as Postgres sees them: `pg_stat_activity.client_port`), or
/// every new one.
pub struct FreezableProxy {
    pub port: u16,
    /// Connections numbered up to this one are frozen.
    cutoff: Arc<AtomicU64>,
    opened: Arc<AtomicU64>,
    /// Connections whose port towards Postgres is one of these are frozen.
    ports: Arc<Mutex<HashSet<u16>>>,
    /// Connections opened while this is set are frozen.
    new_frozen: Arc<AtomicBool>,
}

impl FreezableProxy {
    /// Starts a proxy to `target` (`host:port`); it lives as long as the test's runtime.
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (cutoff, opened) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (ports, new_frozen) = (Arc::new(Mutex::new(HashSet::new())), Arc::new(AtomicBool::new(false)));
        let (cut, open, frozen_ports, frozen_new) = (cutoff.clone(), opened.clone(), ports.clone(), new_frozen.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (target, cutoff, ports) = (target.clone(), cut.clone(), frozen_ports.clone());
                let n = open.fetch_add(1, Ordering::SeqCst) + 1;
                let born_frozen = frozen_new.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else { return };
                    let port = outbound.local_addr().map(|a| a.port()).unwrap_or_default();
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let frozen = move || {
                        born_frozen
                            || cutoff.load(Ordering::SeqCst) >= n
                            || ports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&port)
                    };
                    tokio::join!(pipe_unless(ri, wo, frozen.clone()), pipe_unless(ro, wi, frozen));
                });
            }
        });
        Self { port, cutoff, opened, ports, new_frozen }
    }

    /// Freezes, for good, the connections whose port towards Postgres is in `ports`.
    pub fn freeze_ports(&self, ports: &[u16]) {
        self.ports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(ports);
    }

    /// Freezes (or no longer freezes) every connection opened from now on.
    pub fn freeze_new_connections(&self, frozen: bool) {
        self.new_frozen.store(frozen, Ordering::SeqCst);
    }

    /// Freezes every connection open now, for good.
    pub fn freeze_open_connections(&self) {
        self.cutoff.store(self.opened.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

async fn pipe_unless(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    frozen: impl Fn() -> bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen() {
            // Holds the bytes and the connection: the peer waits for ever.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
