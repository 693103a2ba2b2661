//! Replaying the journals of processes that ended without committing
//! theirs (see the module docs, "Ownership").

use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;

use super::record::records;
use super::{ABANDONED_AFTER, GENERATION, REPLAY_CHUNK};
use crate::error::Result;
use crate::tier::sqlite::SqliteTier;
use crate::tier::sqlite::file::io_error;
use crate::tier::sqlite::row::{Replayed, Write};

impl SqliteTier {
    /// Replays the journals of processes that ended without committing
    /// theirs, then deletes them; how many records were replayed.
    pub(crate) fn replay_orphans(&self) -> Result<usize> {
        let entries = match std::fs::read_dir(&self.journal.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => {
                return Err(io_error(&self.journal.dir, "list the journals", err));
            }
        };
        let (mut replayed, mut removed) = (0, false);
        for entry in entries.flatten() {
            if entry.file_name() == GENERATION {
                continue;
            }
            let path = entry.path();
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            // Held by a live process (this one's included), or being
            // replayed by another.
            if file.try_lock().is_err() {
                continue;
            }
            let _held = Unlocks(&file);
            // Replayed and deleted by another process meanwhile.
            let Ok(metadata) = file.metadata() else {
                continue;
            };
            if metadata.nlink() == 0 {
                continue;
            }
            let temporary = entry.file_name().to_string_lossy().starts_with('.');
            // A journal being made is locked a moment after it is created:
            // only one left for a minute was abandoned.
            let age = metadata.modified().ok().and_then(|m| m.elapsed().ok());
            if temporary && age.is_none_or(|age| age < ABANDONED_AFTER) {
                continue;
            }
            if !temporary {
                let bytes =
                    std::fs::read(&path).map_err(|e| io_error(&path, "read a journal", e))?;
                let found = records(&bytes);
                for chunk in found.chunks(REPLAY_CHUNK) {
                    let writes = chunk
                        .iter()
                        .map(|q| {
                            let (row, behind) = (q.row.clone(), q.behind.clone());
                            Write::Replay(row, behind, q.order, Replayed::Ended)
                        })
                        .collect();
                    self.write_settled(writes)?;
                }
                replayed += found.len();
                if !found.is_empty() {
                    tracing::info!(journal = %path.display(), records = found.len(),
                        "replayed the journal of a process that ended");
                }
            }
            std::fs::remove_file(&path)
                .map_err(|e| io_error(&path, "delete a replayed journal", e))?;
            removed = true;
        }
        if removed {
            // Those waiting for it list the journals again.
            self.journal.peers.bump();
        }
        Ok(replayed)
    }
}

/// Releases the lock of a journal being replayed, whichever way the replay
/// ends. Closing the descriptor would not be enough: a child forked
/// meanwhile shares it, and its copy would keep the journal locked as long
/// as the child lives, so that every process on the file (the child
/// included) took the journal's owner for alive and waited for it.
struct Unlocks<'a>(&'a std::fs::File);

impl Drop for Unlocks<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
