//! What the loading tests share: the key they load, a cache on a file, a
//! loader that counts its calls, and a value as text.

#![allow(dead_code)] // each test binary uses a part of this module

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tierstack::Fetched;
use tierstack::blocking::Cache;

pub const KEY: &str = "component:button";

pub fn open(path: &Path) -> Cache {
    Cache::builder()
        .sqlite_path(path)
        .ttl_jitter(0.0)
        .build_blocking()
        .unwrap()
}

pub fn text(v: Option<tierstack::Bytes>) -> Option<String> {
    v.map(|v| String::from_utf8(v.to_vec()).unwrap())
}

/// A loader counting its calls, answering `value` after `delay`.
pub fn counted(
    calls: &Arc<AtomicUsize>,
    value: &'static str,
    delay: Duration,
) -> impl FnOnce(&str) -> tierstack::Result<Fetched> + Send + 'static {
    let calls = calls.clone();
    move |_key| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        Ok(Fetched::value(value))
    }
}
