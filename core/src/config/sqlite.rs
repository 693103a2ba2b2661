//! The `sqlite` section: the L2 SQLite file, and which paths name one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, seconds};
use crate::error::Result;
#[cfg(doc)]
use crate::{config::Config, error::ErrorKind};

/// The L2 SQLite tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// Keep an L2 file.
    pub enabled: bool,
    /// The file; see [`Config::resolved_sqlite_path`] for the fallbacks.
    pub path: Option<PathBuf>,
    /// Budget in bytes (key + value + a fixed per-row overhead), enforced by
    /// background eviction of the least recently used rows.
    pub max_bytes: u64,
    /// Default time to live of an entry.
    #[serde(with = "seconds")]
    pub ttl: Duration,
    /// How often, at most, L1 is checked against the file for changes made
    /// by other processes (see [`crate::coherence`]): the longest time this
    /// process may serve, from L1, a value another process replaced. Zero
    /// checks on every access.
    #[serde(with = "seconds")]
    pub coherence_interval: Duration,
    /// What to do when SQLite finds the file damaged.
    pub on_corrupt: OnCorrupt,
}

/// What to do when SQLite reports a tierstack cache file damaged
/// (`SQLITE_CORRUPT` or `SQLITE_NOTADB`), at open or on any later call.
///
/// Only a file whose header shows it is a tierstack cache (its
/// `application_id`) is ever moved; any other file is left untouched and
/// reported as [`ErrorKind::Corrupt`] whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCorrupt {
    /// Rename the damaged file (and its `-wal`) to `<name>.corrupt-<unix
    /// time>`, create a fresh one, log a warning, count it in
    /// [`crate::Stats::sqlite_rebuilds`], and carry on: the call that found
    /// the damage runs again on the fresh file. What the damaged file held
    /// is lost to the cache (it stays in the renamed file).
    #[default]
    Rebuild,
    /// Report [`ErrorKind::Corrupt`] and touch nothing (`tierstack check`
    /// shows the damage; `tierstack clear` or deleting the file starts
    /// afresh).
    Fail,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            max_bytes: 100 * 1024 * 1024,
            ttl: Duration::from_secs(24 * 3600),
            coherence_interval: Duration::from_millis(50),
            on_corrupt: OnCorrupt::Rebuild,
        }
    }
}

/// The L2 is a file every process opens by its path: SQLite's names for
/// other things (`:memory:`, a `file:` URI) are refused before anything is
/// created.
pub(super) fn check_sqlite_path(name: &str, path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return Err(invalid(format!("{name} is empty")));
    }
    if text == ":memory:" {
        return Err(invalid(format!(
            "{name} is \":memory:\", which is not a file: the sqlite tier is a file shared \
             by every process; for a memory-only cache set sqlite.enabled to false"
        )));
    }
    if text.starts_with("file:") {
        return Err(invalid(format!(
            "{name} {text:?} is a SQLite URI, which is not supported: give a file path"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::ErrorKind;

    #[test]
    fn on_corrupt_is_rebuild_or_fail() {
        let config = Config::from_json(r#"{"sqlite": {"on_corrupt": "fail"}}"#).unwrap();
        assert_eq!(config.sqlite.on_corrupt, OnCorrupt::Fail);
        assert_eq!(Config::from_json(&config.to_json()).unwrap(), config);
        let err = Config::from_json(r#"{"sqlite": {"on_corrupt": "repair"}}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message()
                .contains("unknown variant `repair`, expected `rebuild` or `fail`"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn sqlite_names_that_are_not_file_paths_are_invalid_configs() {
        let cases = [
            (
                r#"{"sqlite": {"path": ":memory:"}}"#,
                "sqlite.path is \":memory:\"",
            ),
            (r#"{"sqlite": {"path": "file:x.db"}}"#, "is a SQLite URI"),
            (
                r#"{"sqlite": {"path": "file:/tmp/x/y.db?mode=memory"}}"#,
                "is a SQLite URI",
            ),
            (r#"{"sqlite": {"path": ""}}"#, "sqlite.path is empty"),
        ];
        for (json, needle) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
            assert!(err.message().contains(needle), "{json}: {}", err.message());
        }
        // A path that merely contains those words is a path.
        Config::from_json(r#"{"sqlite": {"path": "dir/file:x.db"}}"#).unwrap();
        Config::from_json(r#"{"sqlite": {"path": "./:memory:"}}"#).unwrap();
    }
}
