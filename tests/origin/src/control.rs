//! Control over HTTP, for tests in other languages that spawn the binary:
//! the paths under `/_origin/` on the api listener. They are never logged,
//! faulted or rate limited.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::encoding::base64;
use crate::http::{HttpRequest, Response};
use crate::model::{Delivery, Fault, RateLimit};
use crate::state::{Shared, lock};
use crate::store::Tree;
use crate::writes::is_status;

/// The path prefix of the control API.
pub(crate) const PREFIX: &str = "/_origin/";

/// The body of `POST /_origin/file`.
#[derive(Deserialize)]
struct FileBody {
    owner: String,
    repo: String,
    #[serde(rename = "ref")]
    git_ref: String,
    path: String,
    content: String,
}

/// The body of `POST /_origin/remove_file`.
#[derive(Deserialize)]
struct RemoveFileBody {
    owner: String,
    repo: String,
    #[serde(rename = "ref")]
    git_ref: String,
    path: String,
}

/// The body of `POST /_origin/fail_writes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailWritesBody {
    /// How many writes fail; `None` (omitted or null): every write.
    count: Option<u32>,
    status: u16,
}

/// The body of `POST /_origin/write_delay`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteDelayBody {
    ms: u64,
}

/// A delivery as `GET /_origin/deliveries` lists it: the value as text
/// where it is UTF-8, and always as base64; both null for a delete.
fn delivery_json(delivery: &Delivery) -> Value {
    let value = delivery.value.as_deref();
    json!({
        "key": delivery.key,
        "idempotency_key": delivery.idempotency_key,
        "value": value.and_then(|v| std::str::from_utf8(v).ok()),
        "value_base64": value.map(base64),
        "seq": delivery.seq,
    })
}

fn ok() -> Response {
    Response::json(200, &json!({ "ok": true }))
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({ "ok": false, "message": message }))
}

fn parse<T: DeserializeOwned>(request: &HttpRequest) -> Result<T, Response> {
    serde_json::from_slice(&request.body).map_err(|e| error(400, &format!("bad body: {e}")))
}

/// Answers one control request.
pub(crate) fn answer(request: &HttpRequest, shared: &Shared) -> Response {
    let action = &request.path[PREFIX.len()..];
    let expected = if matches!(action, "requests" | "deliveries") {
        "GET"
    } else {
        "POST"
    };
    let known = [
        "requests",
        "deliveries",
        "fail_writes",
        "clear_write_faults",
        "write_delay",
        "clear_log",
        "reset",
        "clear_faults",
        "fault",
        "rate_limit",
        "file",
        "remove_file",
    ];
    if !known.contains(&action) {
        return error(404, &format!("no control action {action:?}"));
    }
    if request.method != expected {
        return error(405, &format!("{action} takes {expected}"));
    }
    match apply(action, request, shared) {
        Ok(response) | Err(response) => response,
    }
}

fn apply(action: &str, request: &HttpRequest, shared: &Shared) -> Result<Response, Response> {
    match action {
        "requests" => {
            let requests = lock(shared).requests();
            let value: Value = json!({ "count": requests.len(), "requests": requests });
            return Ok(Response::json(200, &value));
        }
        "deliveries" => {
            let state = lock(shared);
            let writes = &state.writes;
            let deliveries: Vec<Value> = writes.deliveries().iter().map(delivery_json).collect();
            let value = json!({
                "count": deliveries.len(),
                "attempts": writes.attempts(),
                "duplicates": writes.duplicates(),
                "deliveries": deliveries,
            });
            return Ok(Response::json(200, &value));
        }
        "fail_writes" => {
            let body: FailWritesBody = parse(request)?;
            if !is_status(body.status) {
                return Err(error(400, "status must be between 200 and 599"));
            }
            lock(shared).writes.fail(body.count, body.status);
        }
        "clear_write_faults" => lock(shared).writes.clear_faults(),
        "write_delay" => {
            let body: WriteDelayBody = parse(request)?;
            let delay = Duration::from_millis(body.ms);
            lock(shared).writes.set_delay(delay);
        }
        "clear_log" => lock(shared).clear_log(),
        "reset" => lock(shared).reset(),
        "clear_faults" => lock(shared).clear_faults(),
        "fault" => {
            let fault: Fault = parse(request)?;
            lock(shared).add_fault(fault);
        }
        "rate_limit" => {
            let rate: RateLimit = parse(request)?;
            lock(shared).rate = rate;
        }
        "file" => {
            let body: FileBody = parse(request)?;
            let tree = Tree::new(&body.owner, &body.repo, &body.git_ref);
            lock(shared)
                .store
                .set(tree, &body.path, body.content.into_bytes());
        }
        "remove_file" => {
            let body: RemoveFileBody = parse(request)?;
            let tree = Tree::new(&body.owner, &body.repo, &body.git_ref);
            lock(shared).store.remove(&tree, &body.path);
        }
        _ => return Err(error(404, &format!("no control action {action:?}"))),
    }
    Ok(ok())
}
