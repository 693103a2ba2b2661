//! The three listeners: the accept loops, one task per connection, and the
//! answers of the api and raw hosts with faults and the rate limit applied
//! (the control API and the writable store answer for themselves).

use std::time::Duration;

use serde_json::json;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use crate::control;
use crate::encoding::{percent_decode, query_param};
use crate::http::{Body, HttpRequest, ReadError, Response, read_request, write_response};
use crate::model::{Fault, Host, Request, epoch_now};
use crate::state::{RateVerdict, Shared, State, lock};
use crate::store::{Entry, Tree, etag_of, file_object};
use crate::write_api;

/// The ref the contents API uses when a request names none.
const DEFAULT_REF: &str = "main";

/// Accepts connections on `listener` until the task is dropped.
pub(crate) async fn accept_loop(listener: TcpListener, host: Host, shared: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, host, shared.clone()));
            }
            // Out of descriptors and the like: wait, then accept again.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Answers requests on one connection until either side closes it.
async fn serve_connection(stream: TcpStream, host: Host, shared: Shared) {
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    loop {
        let request = match read_request(&mut conn).await {
            Ok(Some(request)) => request,
            Ok(None) | Err(ReadError::Closed) => return,
            Err(ReadError::Malformed(why)) => {
                let response = Response::new(400, "text/plain; charset=utf-8", why);
                let _ = write_response(conn.get_mut(), &response, false).await;
                return;
            }
        };
        let keep_alive = request.keep_alive();
        let Some(response) = answer(&request, host, &shared).await else {
            return;
        };
        match write_response(conn.get_mut(), &response, keep_alive).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// The answer to one request; `None`: close without answering.
async fn answer(request: &HttpRequest, host: Host, shared: &Shared) -> Option<Response> {
    if host == Host::Api && request.path.starts_with(control::PREFIX) {
        return Some(control::answer(request, shared));
    }
    if host == Host::Api && write_api::is_store_path(&request.path) {
        return Some(write_api::answer(request, shared).await);
    }
    let (id, fault) = {
        let mut state = lock(shared);
        let id = state.log(Request {
            host,
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            authorization: request.header("authorization").map(str::to_owned),
            if_none_match: request.header("if-none-match").map(str::to_owned),
            status: 0,
        });
        (id, state.take_fault(host, &request.path))
    };
    let fault = fault.unwrap_or_default();
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    if fault.close {
        return None;
    }

    let mut state = lock(shared);
    let mut response = match canned(&fault, request) {
        Some(mut response) => {
            if host == Host::Api {
                rate_headers(&state, &mut response);
            }
            response
        }
        None => match host {
            Host::Api => api(&mut state, request),
            Host::Raw | Host::Other => raw(&state, request),
        },
    };
    for (name, value) in &fault.headers {
        response.set_header(name, value.clone());
    }
    response.truncate = fault.truncate;
    state.answered(id, response.status);
    Some(response)
}

/// The answer a fault puts in place of the real one, if it does.
fn canned(fault: &Fault, request: &HttpRequest) -> Option<Response> {
    if let Some(base) = &fault.redirect {
        let mut location = format!("{}{}", base.trim_end_matches('/'), request.path);
        if let Some(query) = &request.query {
            location.push('?');
            location.push_str(query);
        }
        let mut response = Response::empty(302);
        response.set_header("Location", location);
        return Some(response);
    }
    if let Some(size) = fault.oversize {
        let mut response = Response::new(200, "application/octet-stream", Vec::new());
        response.body = Body::Filler(size);
        return Some(response);
    }
    let status = fault.status?;
    let body = fault.body.clone().unwrap_or_default();
    let content_type = if body.starts_with(['{', '[']) {
        "application/json; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    Some(Response::new(status, content_type, body))
}

/// Adds GitHub's `X-RateLimit-*` headers from the current window.
fn rate_headers(state: &State, response: &mut Response) {
    let rate = state.rate;
    response.set_header("X-RateLimit-Limit", rate.limit.to_string());
    response.set_header("X-RateLimit-Remaining", rate.remaining.to_string());
    response.set_header("X-RateLimit-Reset", rate.reset.to_string());
    response.set_header("X-RateLimit-Used", rate.used().to_string());
    response.set_header("X-RateLimit-Resource", "core");
}

/// Whether `If-None-Match` names `etag` (a list, weak tags or `*` too).
fn not_modified(request: &HttpRequest, etag: &str) -> bool {
    request.header("if-none-match").is_some_and(|value| {
        value.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        })
    })
}

/// A 200 with an ETag, or a 304 when the client has it already.
fn with_etag(request: &HttpRequest, etag: String, ok: Response) -> Response {
    let mut response = if not_modified(request, &etag) {
        Response::empty(304)
    } else {
        ok
    };
    response.set_header("ETag", etag);
    response
}

fn not_found_json() -> Response {
    Response::json(404, &json!({ "message": "Not Found" }))
}

/// The contents API: `GET /repos/{owner}/{repo}/contents/{path}?ref=`.
fn api(state: &mut State, request: &HttpRequest) -> Response {
    if state.admit(epoch_now()) == RateVerdict::Exceeded {
        let mut response = Response::json(
            403,
            &json!({ "message": "API rate limit exceeded for 127.0.0.1." }),
        );
        rate_headers(state, &mut response);
        return response;
    }
    let response = api_contents(state, request);
    if response.status != 304 {
        state.charge();
    }
    let mut response = response;
    rate_headers(state, &mut response);
    response
}

fn api_contents(state: &State, request: &HttpRequest) -> Response {
    if request.method != "GET" {
        return Response::json(405, &json!({ "message": "Method Not Allowed" }));
    }
    let Some(rest) = request.path.strip_prefix("/repos/") else {
        return not_found_json();
    };
    let mut parts = rest.splitn(4, '/');
    let (Some(owner), Some(repo), Some("contents")) = (parts.next(), parts.next(), parts.next())
    else {
        return not_found_json();
    };
    let path = percent_decode(parts.next().unwrap_or(""));
    let git_ref = query_param(request.query.as_deref(), "ref")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REF.to_owned());
    let tree = Tree::new(&percent_decode(owner), &percent_decode(repo), &git_ref);
    match state.store.entry(&tree, &path, &state.raw_url) {
        None => not_found_json(),
        Some(Entry::File(content)) => {
            let etag = etag_of(&path, content);
            let object = file_object(&state.raw_url, &tree, &path, content);
            with_etag(request, etag, Response::json(200, &object))
        }
        Some(Entry::Dir(listing)) => {
            let body = serde_json::Value::Array(listing).to_string();
            let etag = etag_of(&path, body.as_bytes());
            let ok = Response::new(200, "application/json; charset=utf-8", body);
            with_etag(request, etag, ok)
        }
    }
}

/// raw.githubusercontent.com's layout: `GET /{owner}/{repo}/{ref}/{path}`.
fn raw(state: &State, request: &HttpRequest) -> Response {
    let not_found = || Response::new(404, "text/plain; charset=utf-8", "404: Not Found");
    if request.method != "GET" {
        return Response::new(405, "text/plain; charset=utf-8", "405: Method Not Allowed");
    }
    let mut parts = request.path.trim_start_matches('/').splitn(4, '/');
    let (Some(owner), Some(repo), Some(git_ref), Some(path)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return not_found();
    };
    let tree = Tree::new(
        &percent_decode(owner),
        &percent_decode(repo),
        &percent_decode(git_ref),
    );
    let path = percent_decode(path);
    match state.store.file(&tree, &path) {
        None => not_found(),
        Some(content) => {
            let etag = etag_of(&path, content);
            let ok = Response::new(200, "text/plain; charset=utf-8", content);
            with_etag(request, etag, ok)
        }
    }
}
