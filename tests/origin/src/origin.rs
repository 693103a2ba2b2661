//! The `Origin` handle: starts the listeners on a thread of their own and
//! reads and changes the shared state.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::model::{Delivery, Fault, Host, RateLimit, Request};
use crate::serve::accept_loop;
use crate::state::{Shared, State, lock};
use crate::store::Tree;
use crate::writes::is_status;

/// A running origin: three loopback listeners (api, raw, other) served by a
/// thread with its own current-thread tokio runtime, so it works from sync
/// tests and from inside another runtime alike. Dropping it stops the
/// listeners and closes their connections.
///
/// `Origin` is `Send + Sync`; every method takes `&self`.
///
/// ```
/// use std::io::{Read, Write};
///
/// let origin = tierstack_origin::Origin::start()?;
/// let addr = origin.raw_url().trim_start_matches("http://").to_owned();
/// let mut stream = std::net::TcpStream::connect(addr)?;
/// stream.write_all(
///     b"GET /shadcn-ui/ui/main/apps/v4/registry/new-york-v4/ui/button.tsx HTTP/1.1\r\n\
///       Host: raw\r\nConnection: close\r\n\r\n",
/// )?;
/// let mut answer = String::new();
/// stream.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert_eq!(origin.count(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Origin {
    shared: Shared,
    api: SocketAddr,
    raw: SocketAddr,
    other: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds an ephemeral port on `ip`.
fn bind(ip: Ipv4Addr) -> std::io::Result<StdListener> {
    let listener = StdListener::bind((ip, 0))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl Origin {
    /// Binds the listeners (api and raw on 127.0.0.1; other on 127.0.0.2,
    /// or on 127.0.0.1 where 127.0.0.2 cannot be bound), seeds the files,
    /// and starts serving.
    pub fn start() -> std::io::Result<Origin> {
        let api = bind(Ipv4Addr::LOCALHOST)?;
        let raw = bind(Ipv4Addr::LOCALHOST)?;
        let other = bind(Ipv4Addr::new(127, 0, 0, 2)).or_else(|_| bind(Ipv4Addr::LOCALHOST))?;
        let (api_addr, raw_addr, other_addr) =
            (api.local_addr()?, raw.local_addr()?, other.local_addr()?);
        let shared: Shared = Arc::new(Mutex::new(State::new(format!("http://{raw_addr}"))));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tierstack-origin".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listen = |listener, host| {
                        let listener = TcpListener::from_std(listener);
                        let state = state.clone();
                        async move {
                            match listener {
                                Ok(listener) => accept_loop(listener, host, state).await,
                                // Registering with the runtime failed: this
                                // host refuses connections; the others serve.
                                Err(_) => std::future::pending().await,
                            }
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = listen(api, Host::Api) => {}
                        () = listen(raw, Host::Raw) => {}
                        () = listen(other, Host::Other) => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })?;
        Ok(Origin {
            shared,
            api: api_addr,
            raw: raw_addr,
            other: other_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The api host's base URL, `http://127.0.0.1:PORT` (no trailing slash).
    #[must_use]
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The raw host's base URL, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn raw_url(&self) -> String {
        format!("http://{}", self.raw)
    }

    /// The other host's base URL, `http://127.0.0.2:PORT` (or 127.0.0.1).
    #[must_use]
    pub fn other_url(&self) -> String {
        format!("http://{}", self.other)
    }

    /// Every request logged since the start or the last clear, oldest first.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared).requests()
    }

    /// How many requests are logged.
    #[must_use]
    pub fn count(&self) -> usize {
        self.count_matching("")
    }

    /// How many logged requests have a path containing `path_contains`.
    #[must_use]
    pub fn count_matching(&self, path_contains: &str) -> usize {
        lock(&self.shared).count_matching(path_contains)
    }

    /// Empties the request log.
    pub fn clear_log(&self) {
        lock(&self.shared).clear_log();
    }

    /// Adds a fault after those already set; the first that matches a
    /// request applies.
    pub fn fault(&self, fault: Fault) {
        lock(&self.shared).add_fault(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared).clear_faults();
    }

    /// Replaces the api host's rate-limit window.
    pub fn rate_limit(&self, limit: RateLimit) {
        lock(&self.shared).rate = limit;
    }

    /// Serves `content` at `path` in `owner/repo` at `git_ref`, on every host.
    pub fn set_file(&self, owner: &str, repo: &str, git_ref: &str, path: &str, content: &[u8]) {
        let tree = Tree::new(owner, repo, git_ref);
        lock(&self.shared).store.set(tree, path, content.to_vec());
    }

    /// Stops serving the file at `path` (nothing happens if there is none).
    pub fn remove_file(&self, owner: &str, repo: &str, git_ref: &str, path: &str) {
        lock(&self.shared)
            .store
            .remove(&Tree::new(owner, repo, git_ref), path);
    }

    /// The writable store's base URL, `http://127.0.0.1:PORT/store` on the
    /// api host: `PUT`, `DELETE` and `GET` `{store_url}/{key}`.
    #[must_use]
    pub fn store_url(&self) -> String {
        format!("{}/store", self.api_url())
    }

    /// Every write applied to the store since the start or the last reset,
    /// in the order they were applied (duplicates and failed attempts are
    /// not deliveries).
    #[must_use]
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.shared).writes.deliveries().to_vec()
    }

    /// The deliveries to `key` (percent-decoded, as stored), in order.
    #[must_use]
    pub fn deliveries_for(&self, key: &str) -> Vec<Delivery> {
        let state = lock(&self.shared);
        let all = state.writes.deliveries().iter();
        all.filter(|d| d.key == key).cloned().collect()
    }

    /// The store's current value for `key`; `None` if it was never written
    /// or was deleted last.
    #[must_use]
    pub fn stored(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.shared).writes.value(key).map(<[u8]>::to_vec)
    }

    /// How many `PUT` and `DELETE` requests reached the store: applied,
    /// duplicate, failed by a write fault or refused as malformed.
    #[must_use]
    pub fn write_attempts(&self) -> usize {
        lock(&self.shared).writes.attempts()
    }

    /// How many writes answered 204 without applying, because their
    /// idempotency key had been applied before.
    #[must_use]
    pub fn duplicates(&self) -> usize {
        lock(&self.shared).writes.duplicates()
    }

    /// The next `n` `PUT`/`DELETE` requests to the store, whatever they
    /// carry, answer `status` without applying anything; replaces the write
    /// failure set before (`n == 0` leaves none). GET [`Fault`]s are
    /// separate and never touch the store.
    ///
    /// # Panics
    ///
    /// If `status` is not between 200 and 599.
    pub fn fail_writes(&self, n: u32, status: u16) {
        assert!(is_status(status), "not an HTTP status: {status}");
        lock(&self.shared).writes.fail(Some(n), status);
    }

    /// Every `PUT`/`DELETE` request to the store answers `status` until
    /// [`Origin::clear_write_faults`] (or a reset).
    ///
    /// # Panics
    ///
    /// If `status` is not between 200 and 599.
    pub fn fail_writes_always(&self, status: u16) {
        assert!(is_status(status), "not an HTTP status: {status}");
        lock(&self.shared).writes.fail(None, status);
    }

    /// Removes the write failure and the write delay.
    pub fn clear_write_faults(&self) {
        lock(&self.shared).writes.clear_faults();
    }

    /// Every `PUT`/`DELETE` request to the store waits `delay` before it is
    /// applied and answered (counted as an attempt at once);
    /// `Duration::ZERO` for none.
    pub fn write_delay(&self, delay: Duration) {
        lock(&self.shared).writes.set_delay(delay);
    }

    /// Back to the start: the seed content, no faults, a fresh rate limit,
    /// an empty log, an empty store with no deliveries, zero write counters
    /// and no write faults.
    pub fn reset(&self) {
        lock(&self.shared).reset();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
