//! The write path: set (through or behind the source, as the strategy
//! says), delete, clear and tag invalidation, across every tier.

use bytes::Bytes;

use super::{Engine, ms};
use crate::config::Strategy;
use crate::entry::SetOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::outbox::Outbox;
use crate::tier::memory::{self, L1, MemEntry, MemoryTier};
use crate::tier::redis::RedisTier;
use crate::tier::sqlite::{self, Journaled, Outcome, Row, Tried, Write};

impl Engine {
    pub(crate) fn set_many(&self, items: Vec<(String, Bytes)>, options: &SetOptions) -> Result<()> {
        self.check_open()?;
        if let ([(_, value)], Some(_)) = (items.as_slice(), &self.sqlite) {
            // Copied into the journal below (see `value::prefetch`). Not
            // for a batch: the lines of its first values would be gone
            // again before they were copied.
            crate::value::prefetch(value.as_ptr(), value.len(), false);
        }
        let now = self.clock.now_ms();
        let rows = self.rows(items, options, now)?;
        match (self.config.strategy, &self.outbox) {
            (Strategy::WriteThrough, Some(outbox)) => {
                // The source first, key by key: a failure leaves that key's
                // tiers (and those of the keys after it) unchanged.
                let mut stored = Vec::with_capacity(rows.len());
                let mut failed = None;
                for row in rows {
                    match outbox.write_through(&row.key, Some(row.value.clone())) {
                        Ok(()) => stored.push(row),
                        Err(err) => {
                            failed = Some(err);
                            break;
                        }
                    }
                }
                if !stored.is_empty() {
                    self.write_rows(stored, options, now, None, false)?;
                }
                failed.map_or(Ok(()), Err)
            }
            (Strategy::WriteBehind, Some(outbox)) => {
                if self.write_rows(rows, options, now, Some(outbox), false)? == Some(true) {
                    outbox.wake.get().notify_one();
                }
                Ok(())
            }
            _ => self.write_rows(rows, options, now, None, false).map(drop),
        }
    }

    /// [`Engine::set_many`] if it is done at once, without waiting for
    /// another thread's or process's write, the network or a source: the
    /// strategy writes only the tiers, there is no Redis tier, and the L2
    /// file's write lock is free (see `SqliteTier::try_write`). Returns
    /// `false`, having written nothing, when it would wait.
    pub(crate) fn set_many_at_once(
        &self,
        items: Vec<(String, Bytes)>,
        options: &SetOptions,
    ) -> Result<bool> {
        self.check_open()?;
        let tiers_only = matches!(
            self.config.strategy,
            Strategy::ReadThrough | Strategy::CacheAside
        );
        if !tiers_only || self.redis.is_some() {
            return Ok(false);
        }
        let now = self.clock.now_ms();
        let rows = self.rows(items, options, now)?;
        Ok(self.write_rows(rows, options, now, None, true)?.is_some())
    }

    /// Builds the rows for a write, checking keys and sizes first so that a
    /// bad item leaves everything untouched.
    pub(super) fn rows(
        &self,
        items: Vec<(String, Bytes)>,
        options: &SetOptions,
        now: u64,
    ) -> Result<Vec<Row>> {
        let ttl = options.ttl_override().unwrap_or(self.config.sqlite.ttl);
        if ttl > crate::config::MAX_TTL {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "ttl is longer than 100 years",
            ));
        }
        for tag in &options.tags {
            validate_tag(tag)?;
        }
        let expires_ms = now.saturating_add(ms(ttl));
        let stale_until_ms = expires_ms.saturating_add(ms(self.config.fail_safe.max_stale));
        items
            .into_iter()
            .map(|(key, value)| {
                key::validate(&key).map_err(|e| e.context(format!("key {}", key::quote(&key))))?;
                self.check_fits(&key, value.len())?;
                Ok(Row {
                    key,
                    value,
                    created_ms: now,
                    expires_ms,
                    stale_until_ms,
                    tags: options.tags.clone(),
                    etag: None,
                })
            })
            .collect()
    }

    /// Whether an enabled tier can hold a value of `value_len` bytes under
    /// `key`; `invalid_argument`, naming the budget and the sizes, if none
    /// can.
    ///
    /// With an L2, every value is written there and L1 holds copies of its
    /// rows, so the value must fit `sqlite.max_bytes`; one larger than an
    /// L1 entry may take is kept in L2 only. Without an L2, it must fit one
    /// L1 entry: one shard's share of `memory.max_bytes`.
    pub(crate) fn check_fits(&self, key: &str, value_len: usize) -> Result<()> {
        if let Some(sqlite) = &self.sqlite {
            let size = sqlite::row_size(key, value_len);
            if size > sqlite.max_bytes() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "value for {} needs {size} bytes in L2; sqlite.max_bytes is {} \
                         (with sqlite enabled every value is stored in L2, and L1 holds copies of its rows)",
                        key::quote(key),
                        sqlite.max_bytes()
                    ),
                ));
            }
        } else if let Some(memory) = self.memory.as_ref().map(L1::get) {
            let size = memory::entry_size(key, value_len);
            if size > memory.max_entry() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "value for {} needs {size} bytes in L1, over the {} bytes one L1 entry \
                         may take (memory.max_bytes is {}, split over {} shards); \
                         sqlite is disabled, so no tier can hold it",
                        key::quote(key),
                        memory.max_entry(),
                        memory.max_bytes(),
                        memory.shards()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Writes `rows` to the tiers; with `behind`, also queues them for the
    /// source in its outbox. With no Redis tier, or with `behind`, L2 is
    /// written through this process's journal, whose drain commits them
    /// (with their outbox rows; see `tier::sqlite::journal`).
    /// Returns whether the outbox's worker should be woken; `None` when,
    /// with `at_once`, L2 could not be written without waiting, and
    /// nothing was written.
    pub(super) fn write_rows(
        &self,
        rows: Vec<Row>,
        options: &SetOptions,
        now: u64,
        behind: Option<&Outbox>,
        at_once: bool,
    ) -> Result<Option<bool>> {
        self.loads
            .forget_not_found(rows.iter().map(|r| r.key.as_str()));
        let count = rows.len() as u64;
        let memory_ttl = options
            .ttl_override()
            .map_or(self.config.memory.ttl, |t| t.min(self.config.memory.ttl));
        let memory_expires = now.saturating_add(ms(memory_ttl));
        let memory = self.memory.as_ref().map(L1::get);
        // Announced before L2 is written; see `tier::memory`.
        let l1: Vec<_> = match memory {
            Some(memory) => rows
                .iter()
                .map(|r| {
                    let entry = MemEntry::new(r.value.clone(), now, memory_expires)
                        .refresh_at(self.refresh_ms(now, r.expires_ms));
                    (
                        memory.begin(&r.key),
                        memory::Key::from(r.key.as_str()),
                        entry,
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        // Written to Redis after L2 and L1; a copy of these keys read from
        // Redis meanwhile is not kept.
        let changing = self
            .redis
            .as_ref()
            .map(|redis| redis.changing(rows.iter().map(|r| r.key.as_str())));
        let shared = self.redis.as_ref().map(|redis| (redis, rows.clone()));
        let mut wake = behind.is_some();
        // Taken when applied in the journal's order.
        let mut l1 = Some(l1);
        // One outcome per row when L2 committed them (none through the
        // journal, or without L2).
        let written: Vec<Outcome> = match &self.sqlite {
            // Through the journal: committed to the file by the next drain
            // (see `tier::sqlite::journal`), the outbox's worker's with
            // write-behind, the maintenance task's otherwise; applied to L1
            // under the journal's lock (see `tier::memory::ordering`). With
            // Redis, where a write goes after L2, the tiers' writes commit
            // directly.
            Some(sqlite) if behind.is_some() || self.redis.is_none() => {
                let journaled = rows
                    .into_iter()
                    .map(|row| (row, behind.map(|outbox| outbox.behind(now))))
                    .collect();
                let mut apply = || {
                    if let (Some(memory), Some(l1)) = (memory, l1.take()) {
                        for (pending, key, entry) in l1 {
                            memory.apply_journaled(&pending, &key, entry, &options.tags);
                        }
                    }
                };
                let written = sqlite.journal_write(journaled, at_once, &mut apply);
                self.follow_file_swap();
                match written? {
                    Journaled::Appended { first } => {
                        wake = first;
                        if first && behind.is_none() {
                            sqlite.wakeup().ask_drain();
                        }
                        Vec::new()
                    }
                    Journaled::Committed(outcomes) => outcomes,
                    // The L1 writes announced above end unapplied.
                    Journaled::WouldWait => return Ok(None),
                }
            }
            Some(sqlite) => {
                let writes = rows.into_iter().map(Write::Put).collect();
                let written = match at_once {
                    false => sqlite.write(writes),
                    true => match sqlite.try_write(writes)? {
                        Tried::Done(outcomes) => Ok(outcomes),
                        // The L1 writes announced above end unapplied.
                        Tried::WouldWait => return Ok(None),
                    },
                };
                self.follow_file_swap();
                written?
            }
            None => {
                if let Some(outbox) = behind {
                    for row in &rows {
                        outbox.enqueue_in_memory(&row.key, Some(row.value.clone()), now);
                    }
                }
                Vec::new()
            }
        };
        if let (Some(memory), Some(l1)) = (memory, l1) {
            let outcomes = written.into_iter().map(Some).chain(std::iter::repeat(None));
            for ((pending, key, entry), outcome) in l1.into_iter().zip(outcomes) {
                let (seq, row) = outcome.map_or((None, None), |o| (Some(o.seq), o.row));
                let entry = entry.in_row(row.unwrap_or(0));
                memory.apply(&pending, &key, Some(entry), &options.tags, seq);
            }
        }
        if let Some((redis, rows)) = shared {
            // A failure is counted and logged by the tier; the write stands.
            redis.put(&rows, now);
        }
        drop(changing);
        self.counters.sets.add(count);
        Ok(Some(wake))
    }

    pub(crate) fn delete(&self, key: &str) -> Result<bool> {
        self.check_open()?;
        key::validate(key)?;
        let now = self.clock.now_ms();
        let behind = match (self.config.strategy, &self.outbox) {
            (Strategy::WriteThrough, Some(outbox)) => {
                outbox.write_through(key, None)?;
                None
            }
            (Strategy::WriteBehind, Some(outbox)) => Some(outbox),
            _ => None,
        };
        let memory = self.l1(now);
        let pending = memory.map(|m| m.begin(key));
        let changing = self.redis.as_ref().map(|redis| redis.changing([key]));
        let mut existed = memory.is_some_and(|m| m.contains_fresh(key, now));
        let mut seq = None;
        if let (None, Some(outbox)) = (&self.sqlite, behind) {
            outbox.enqueue_in_memory(key, None, now);
        }
        if let Some(sqlite) = &self.sqlite {
            let write = match behind {
                Some(outbox) => Write::DeleteBehind(key.to_owned(), outbox.behind(now)),
                None => Write::Delete(key.to_owned()),
            };
            let outcome = sqlite.write(vec![write]);
            self.follow_file_swap();
            let outcome = outcome?;
            let outcome = outcome.first().ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    "a delete came back without its outcome",
                )
            })?;
            existed |= outcome.removed_expires_ms.is_some_and(|e| now < e);
            seq = Some(outcome.seq);
        }
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            memory.apply(pending, key, None, &[], seq);
        }
        if let Some(redis) = &self.redis {
            redis.delete(&[key], false);
        }
        drop(changing);
        if existed {
            self.counters.deletes.incr();
        }
        if let Some(outbox) = behind {
            outbox.wake.get().notify_one();
        }
        Ok(existed)
    }

    pub(crate) fn clear(&self) -> Result<()> {
        self.check_open()?;
        let memory = self.memory.as_ref().map(L1::get);
        let pending = memory.map(MemoryTier::begin_all);
        let _changing = self.redis.as_ref().map(RedisTier::changing_all);
        let seq = match &self.sqlite {
            Some(sqlite) => Some(sqlite.clear()?),
            None => None,
        };
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            memory.invalidate_all(pending, seq);
        }
        if let Some(redis) = &self.redis {
            redis.clear();
        }
        Ok(())
    }

    pub(crate) fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        self.check_open()?;
        validate_tag(tag)?;
        let now = self.clock.now_ms();
        let memory = self.memory.as_ref().map(L1::get);
        let pending = memory.map(MemoryTier::begin_all);
        let _changing = self.redis.as_ref().map(RedisTier::changing_all);
        let (mut removed, seq) = match &self.sqlite {
            Some(sqlite) => {
                let removed = sqlite.delete_tagged(tag, now);
                self.follow_file_swap();
                let (removed, seq) = removed?;
                (removed, Some(seq))
            }
            None => (Vec::new(), None),
        };
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            // L1 may also hold tagged entries L2 no longer has (evicted, or
            // no L2 at all).
            let tags = [tag.to_owned()];
            removed.extend(memory.invalidate(pending, &removed, &tags, seq, now).1);
        }
        removed.sort_unstable();
        removed.dedup();
        if let Some(redis) = &self.redis {
            // The keys this host held; the backplane carries the tag to the
            // other machines, which remove theirs.
            let keys: Vec<&str> = removed.iter().map(String::as_str).collect();
            redis.invalidate_tag(tag, &keys);
        }
        let count = removed.len() as u64;
        self.counters.deletes.add(count);
        Ok(count)
    }
}

/// A tag is 1–255 bytes without control characters. The error quotes it
/// as [`key::quote`] quotes a key: at most 64 bytes and its length, so a
/// huge tag does not make a huge message.
fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > key::MAX_KEY_LEN || tag.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "tag {} must be 1-255 bytes without control characters",
                key::quote(tag)
            ),
        ));
    }
    Ok(())
}
