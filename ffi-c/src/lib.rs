//! tierstack's C ABI: `libtierstack.so` / `libtierstack.a` and the header
//! `include/tierstack.h`, generated from this crate by cbindgen.
//!
//! Conventions, the same in every function:
//! - Names are `tierstack_<type>_<verb>`; handles (`tierstack_cache`,
//!   `tierstack_value`) are opaque `Box`es, each with one `_free` that does
//!   nothing on NULL. The answer handles of a loader (`tierstack_load`,
//!   `tierstack_load_batch`) and of a source's writes (`tierstack_write`)
//!   live only during the callback and are never freed by C.
//! - Fallible functions return a [`tierstack_result`]: 0 for success, else
//!   the stable code of the engine's error kind. Out-parameters are written
//!   only on success. A failure also records a thread-local message
//!   (`tierstack_last_error_message`).
//! - Keys are byte strings with a length (not NUL-terminated) and must be
//!   UTF-8; a NULL pointer with length 0 is the empty string. A NULL pointer
//!   where one is required is `TIERSTACK_RESULT_INVALID_ARGUMENT`.
//! - A panic never crosses into C: every body runs behind one boundary
//!   ([`panic`]) that turns it into `TIERSTACK_RESULT_INTERNAL`.

#![allow(clippy::missing_safety_doc)] // Each function's doc states its contract for C callers.

pub mod answer;
pub mod breaker;
pub mod cache;
pub mod clock;
pub mod entry;
pub mod error;
mod handle;
pub mod load;
pub mod outbox;
mod panic;
pub mod source;
pub mod strings;
pub mod write;

pub use answer::{tierstack_load, tierstack_load_batch};
pub use cache::tierstack_cache;
pub use entry::tierstack_value;
pub use error::tierstack_result;
pub use source::tierstack_source;
pub use write::tierstack_write;
