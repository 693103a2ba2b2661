//! Standard output that reports write failures as tierstack errors and
//! treats a closed pipe (`tierstack keys | head`) as the end of the output.

use std::fmt;
use std::io::{self, Write};

use tierstack::{Error, ErrorKind, Result};

/// The process's standard output.
pub struct Out {
    stdout: io::Stdout,
    closed: bool,
}

impl Out {
    pub fn stdout() -> Self {
        Self {
            stdout: io::stdout(),
            closed: false,
        }
    }

    /// Writes `bytes` as they are.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let mut lock = self.stdout.lock();
        let written = lock.write_all(bytes).and_then(|()| lock.flush());
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => {
                Err(Error::new(ErrorKind::Io, format!("writing to stdout: {e}")).with_source(e))
            }
        }
    }

    /// Writes one line.
    pub fn line(&mut self, args: fmt::Arguments<'_>) -> Result<()> {
        self.bytes(format!("{args}\n").as_bytes())
    }

    /// Writes `value` as pretty-printed JSON on its own lines.
    pub fn json(&mut self, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("encoding JSON: {e}")).with_source(e)
        })?;
        self.line(format_args!("{text}"))
    }
}
