//! A GitHub-shaped HTTP origin on loopback, with a writable key-value store
//! beside it, for tests and the demo.
//!
//! [`Origin::start`] serves three hosts, each on an ephemeral port:
//!
//! - **api** (`127.0.0.1`): GitHub's REST contents API.
//!   `GET /repos/{owner}/{repo}/contents/{path}?ref={ref}` answers a file
//!   as a JSON object whose `content` is base64 in lines of 60 characters
//!   (as GitHub sends it), and a directory as a JSON array of its direct
//!   children sorted by name; `404 {"message":"Not Found"}` otherwise.
//!   Every answer carries `X-RateLimit-Limit`, `-Remaining`, `-Reset` and
//!   `-Used`; when the window is used up the answer is GitHub's 403.
//! - **raw** (`127.0.0.1`): raw.githubusercontent.com's layout,
//!   `GET /{owner}/{repo}/{ref}/{path}`, the file's bytes or
//!   `404: Not Found`.
//! - **other** (`127.0.0.2`, or `127.0.0.1` where that cannot be bound): the
//!   raw layout again, as a second host to redirect to.
//!
//! The api host also serves a writable key-value store, the source of truth
//! for tests of write strategies, at [`Origin::store_url`]
//! (`{api}/store`):
//!
//! - `PUT /store/{key}` with the value as the body (any bytes, up to
//!   16 MiB) and an `Idempotency-Key: <id>` header answers `204`;
//!   `DELETE /store/{key}` with an `Idempotency-Key` answers `204`, also
//!   when the key holds nothing. Either without an `Idempotency-Key` (or
//!   with an empty one) answers `400`.
//! - `GET /store/{key}` answers `200` with the bytes
//!   (`application/octet-stream`), or `404`. Reads are not counted, delayed
//!   or failed.
//! - `{key}` is everything after `/store/`, percent-decoded (`user%3A42` and
//!   `user:42` name the same key; `%2F` and a bare `/` are both `/`; a `?`
//!   must be sent as `%3F`). A key that is empty, or not UTF-8 once decoded,
//!   answers `400`.
//! - A write is applied once per idempotency key, across all keys: a repeat
//!   of one already applied answers `204`, counts as a duplicate and changes
//!   nothing, so a late retry of an old write cannot undo a newer one. A
//!   write that failed was not applied, so its retry is.
//! - Each applied write is a [`Delivery`] (`value: None` for a delete),
//!   numbered by `seq` from 0 in the order writes were applied.
//! - Write faults, separate from [`Fault`]s (which never touch the store):
//!   the next n writes, or every write, answer a chosen status without
//!   being applied; a write delay holds each write before it is applied and
//!   answered. A write is counted as an attempt when it arrives (applied,
//!   duplicate, failed or malformed alike); the delay comes next, then an
//!   injected failure answers whatever the request carries. A write still
//!   waiting out its delay when the origin is reset answers `503` and is
//!   not applied.
//! - Store requests are not in the request log ([`Origin::requests`],
//!   [`Origin::count`]) and the rate limit does not apply to them; the
//!   store keeps its own counts ([`Origin::write_attempts`],
//!   [`Origin::duplicates`]).
//!
//! Files and listings carry an `ETag`; `If-None-Match` with it gets a 304
//! (which the rate limit does not count). Connections are HTTP/1.1 and
//! persistent unless the client sends `Connection: close`. A request's
//! `Expect: 100-continue` gets no interim answer: curl, which asks for one
//! before a large body (over 1 MiB in curl 7.88), then waits a second
//! before sending the body anyway; `-H 'Expect:'` turns that off.
//!
//! The seed is shadcn-ui/ui at `main`: [`COMPONENTS`], their examples and
//! [`BLOCKS`] under [`BASE`], with [`seed_content`] as their bytes.
//!
//! A test injects misbehaviour with [`Fault`]s (a status, extra headers, a
//! delay, a truncated body, an oversized body, a redirect, a dropped
//! connection), sets the [`RateLimit`], changes files, reads the
//! [`Request`] log, sets write faults and reads the [`Delivery`] log and the
//! store. Tests in other languages run the `tierstack-origin`
//! binary, which prints its URLs as one line of JSON, and do the same over
//! HTTP under `/_origin/` on the api host:
//!
//! | request | effect |
//! |---|---|
//! | `GET /_origin/requests` | `{"count": n, "requests": [...]}` |
//! | `POST /_origin/clear_log` | empties the log |
//! | `POST /_origin/reset` | seed content, no faults, fresh rate limit, empty log; empty store, no deliveries, zero write counters, no write faults |
//! | `POST /_origin/clear_faults` | removes every fault |
//! | `POST /_origin/fault` | adds a [`Fault`] (JSON; fields default) |
//! | `POST /_origin/rate_limit` | `{"limit","remaining","reset"}` |
//! | `POST /_origin/file` | `{"owner","repo","ref","path","content"}` |
//! | `POST /_origin/remove_file` | `{"owner","repo","ref","path"}` |
//! | `GET /_origin/deliveries` | `{"count": n, "attempts": a, "duplicates": d, "deliveries": [{"key","idempotency_key","value","value_base64","seq"}]}`; `value` is the value as a string where it is UTF-8 (else `null`), `value_base64` always the bytes in base64; both `null` for a delete |
//! | `POST /_origin/fail_writes` | `{"count": n, "status": 500}`: the next n writes answer `status` (200–599); `count` omitted or `null`: every write; replaces the failure set before, `count` 0 leaves none |
//! | `POST /_origin/clear_write_faults` | no write failure, no write delay |
//! | `POST /_origin/write_delay` | `{"ms": n}`: each write waits n ms before it is applied and answered; 0 for none |
//!
//! Each answers `200 {"ok":true}` (or the JSON asked for); a body that does
//! not parse (for `fail_writes` and `write_delay`, one with a field not
//! listed too) gets `400 {"ok":false,"message":...}`. Control requests are
//! never logged, faulted or rate limited.

mod control;
mod encoding;
mod http;
mod model;
mod origin;
mod seed;
mod serve;
mod state;
mod store;
mod write_api;
mod writes;

pub use model::{Delivery, Fault, Host, RateLimit, Request};
pub use origin::Origin;
pub use seed::{BASE, BLOCKS, COMPONENTS, OWNER, REF, REPO, seed_content, seed_paths};
