//! `tierstack-origin`: runs an [`Origin`] for tests written in other
//! languages.
//!
//! It prints one line of JSON, `{"api":"http://…","raw":"http://…",
//! "other":"http://…"}`, then serves until its stdin reaches end of file,
//! so that it ends with the process that spawned it (give it a pipe, not
//! `/dev/null`). SIGTERM and SIGINT end it too, by their default action.

use std::io::{Read, Write};
use std::process::ExitCode;

use tierstack_origin::Origin;

fn main() -> ExitCode {
    let origin = match Origin::start() {
        Ok(origin) => origin,
        Err(e) => {
            eprintln!("tierstack-origin: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let urls = serde_json::json!({
        "api": origin.api_url(),
        "raw": origin.raw_url(),
        "other": origin.other_url(),
    });
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{urls}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);

    // Serve until stdin ends: read and discard whatever arrives.
    let mut stdin = std::io::stdin().lock();
    let mut sink = [0u8; 4096];
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    drop(origin);
    ExitCode::SUCCESS
}
