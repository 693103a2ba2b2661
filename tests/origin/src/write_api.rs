//! The HTTP answers of the writable store, `/store/{key}` on the api host:
//! `PUT` and `DELETE` with an `Idempotency-Key`, and a plain `GET`. These
//! requests are not in the request log, and neither [`Fault`]s nor the rate
//! limit apply to them; write faults do.
//!
//! [`Fault`]: crate::Fault

use std::time::Duration;

use serde_json::json;

use crate::encoding::percent_decode_bytes;
use crate::http::{HttpRequest, Response};
use crate::state::{Shared, lock};
use crate::writes::Applied;

/// The store's path on the api host; keys follow after a `/`.
const PATH: &str = "/store";

/// Whether `path` is the store's.
pub(crate) fn is_store_path(path: &str) -> bool {
    path.strip_prefix(PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn message(status: u16, message: &str) -> Response {
    Response::json(status, &json!({ "message": message }))
}

/// The key a store path names: everything after `/store/`, percent-decoded.
fn key_of(path: &str) -> Result<String, Response> {
    let raw = path
        .strip_prefix(PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or("");
    if raw.is_empty() {
        return Err(message(400, "no key: use /store/{key}"));
    }
    String::from_utf8(percent_decode_bytes(raw))
        .map_err(|_| message(400, "the key is not UTF-8 once percent-decoded"))
}

/// Answers one request to the store.
pub(crate) async fn answer(request: &HttpRequest, shared: &Shared) -> Response {
    match request.method.as_str() {
        "GET" => read(request, shared),
        "PUT" | "DELETE" => write(request, shared).await,
        _ => {
            let mut response = message(405, "the store takes GET, PUT and DELETE");
            response.set_header("Allow", "GET, PUT, DELETE");
            response
        }
    }
}

/// `GET /store/{key}`: the value, or 404.
fn read(request: &HttpRequest, shared: &Shared) -> Response {
    let key = match key_of(&request.path) {
        Ok(key) => key,
        Err(response) => return response,
    };
    match lock(shared).writes.value(&key) {
        Some(value) => Response::new(200, "application/octet-stream", value),
        None => message(404, "Not Found"),
    }
}

/// `PUT` or `DELETE /store/{key}`. Counted at once; then the write delay;
/// then a write fault answers in place of the store, whatever the request
/// carries; then the key and the `Idempotency-Key` are checked, and the
/// write is applied unless its idempotency key was applied before.
async fn write(request: &HttpRequest, shared: &Shared) -> Response {
    let arrival = lock(shared).writes.arrive();
    if arrival.delay > Duration::ZERO {
        tokio::time::sleep(arrival.delay).await;
    }
    if let Some(status) = arrival.failure {
        return message(status, "write failure injected by the origin");
    }
    let key = match key_of(&request.path) {
        Ok(key) => key,
        Err(response) => return response,
    };
    let Some(idempotency_key) = request.header("idempotency-key").filter(|k| !k.is_empty()) else {
        return message(400, "a write needs an Idempotency-Key header");
    };
    let value = (request.method == "PUT").then(|| request.body.clone());
    let applied = lock(shared)
        .writes
        .apply(arrival, &key, idempotency_key, value);
    match applied {
        Applied::Delivered | Applied::Duplicate => Response::empty(204),
        Applied::Stale => message(503, "the origin was reset while this write waited"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_owns_its_path_and_nothing_that_merely_starts_alike() {
        assert!(is_store_path("/store"));
        assert!(is_store_path("/store/"));
        assert!(is_store_path("/store/a/b"));
        assert!(!is_store_path("/storefront"));
        assert!(!is_store_path("/repos/o/r/contents/store"));
    }

    #[test]
    fn keys_are_everything_after_the_prefix_percent_decoded() {
        assert_eq!(key_of("/store/user%3A42").unwrap(), "user:42");
        assert_eq!(key_of("/store/a:b/c%2Fd%20e").unwrap(), "a:b/c/d e");
        assert_eq!(key_of("/store/100%25").unwrap(), "100%");
        assert_eq!(key_of("/store/caf%C3%A9").unwrap(), "café");
        for path in ["/store", "/store/", "/store/%FF"] {
            assert_eq!(key_of(path).unwrap_err().status, 400, "{path}");
        }
    }
}
