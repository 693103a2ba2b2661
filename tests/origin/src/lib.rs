//! A GitHub-shaped HTTP origin on loopback, for tests and the demo.
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
//! Files and listings carry an `ETag`; `If-None-Match` with it gets a 304
//! (which the rate limit does not count). Connections are HTTP/1.1 and
//! persistent unless the client sends `Connection: close`.
//!
//! The seed is shadcn-ui/ui at `main`: [`COMPONENTS`], their examples and
//! [`BLOCKS`] under [`BASE`], with [`seed_content`] as their bytes.
//!
//! A test injects misbehaviour with [`Fault`]s (a status, extra headers, a
//! delay, a truncated body, an oversized body, a redirect, a dropped
//! connection), sets the [`RateLimit`], changes files, and reads the
//! [`Request`] log. Tests in other languages run the `tierstack-origin`
//! binary, which prints its URLs as one line of JSON, and do the same over
//! HTTP under `/_origin/` on the api host:
//!
//! | request | effect |
//! |---|---|
//! | `GET /_origin/requests` | `{"count": n, "requests": [...]}` |
//! | `POST /_origin/clear_log` | empties the log |
//! | `POST /_origin/reset` | seed content, no faults, fresh rate limit, empty log |
//! | `POST /_origin/clear_faults` | removes every fault |
//! | `POST /_origin/fault` | adds a [`Fault`] (JSON; fields default) |
//! | `POST /_origin/rate_limit` | `{"limit","remaining","reset"}` |
//! | `POST /_origin/file` | `{"owner","repo","ref","path","content"}` |
//! | `POST /_origin/remove_file` | `{"owner","repo","ref","path"}` |
//!
//! Each answers `200 {"ok":true}` (or the JSON asked for); a body that does
//! not parse gets `400 {"ok":false,"message":...}`. Control requests are
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

pub use model::{Fault, Host, RateLimit, Request};
pub use origin::Origin;
pub use seed::{BASE, BLOCKS, COMPONENTS, OWNER, REF, REPO, seed_content, seed_paths};
