//! What the write-behind outbox reports (`outboxStats()`, `deadLetters()`,
//! `getStats().outbox`), as JS objects: counts as numbers, ages in seconds,
//! times as `Date`s.

use napi::Env;
use napi::bindgen_prelude::{Either, Null};
use napi_derive::napi;
use tierstack::Error;

use crate::js_values::{self, Value};
use crate::stats::EpochDate;

/// The outbox's figures: those of the SQLite file (every process's writes)
/// for `pending`, `oldestAge`, `retrying` and `dead`; this process's for
/// `retries` and `delivered`.
#[napi(object, object_from_js = false)]
pub struct OutboxStats {
    /// Whether the outbox survives a crash: `true` when it is in the SQLite
    /// file, `false` without one (`sqlite.enabled: false`: it is in memory).
    pub durable: bool,
    /// Writes waiting for the source.
    pub pending: f64,
    /// Seconds since the oldest pending write was made; `null` when none is
    /// pending.
    pub oldest_age: Either<f64, Null>,
    /// Pending writes that failed at least once.
    pub retrying: f64,
    /// Failed attempts made by this process.
    pub retries: f64,
    /// Writes delivered by this process.
    pub delivered: f64,
    /// Writes in the dead letters.
    pub dead: f64,
}

impl From<tierstack::OutboxStats> for OutboxStats {
    fn from(stats: tierstack::OutboxStats) -> Self {
        Self {
            durable: stats.durable,
            pending: stats.pending as f64,
            oldest_age: match stats.oldest_age_ms {
                Some(ms) => Either::A(ms as f64 / 1000.0),
                None => Either::B(Null),
            },
            retrying: stats.retrying as f64,
            retries: stats.retries as f64,
            delivered: stats.delivered as f64,
            dead: stats.dead as f64,
        }
    }
}

/// A write the outbox gave up on after `outbox.maxAttempts` attempts.
#[napi(object, object_from_js = false)]
pub struct DeadLetter {
    /// The key.
    pub key: String,
    /// `'store'` (a `set`) or `'remove'` (a `delete`).
    #[napi(ts_type = "'store' | 'remove'")]
    pub op: String,
    /// Attempts made.
    pub attempts: f64,
    /// The last attempt's error: the message of what the source's function
    /// threw or rejected with.
    pub last_error: String,
    /// When it gave up.
    #[napi(ts_type = "Date")]
    pub failed_at: EpochDate,
    /// When the write was made.
    #[napi(ts_type = "Date")]
    pub created_at: EpochDate,
}

impl From<tierstack::DeadLetter> for DeadLetter {
    fn from(dead: tierstack::DeadLetter) -> Self {
        Self {
            key: dead.key,
            op: dead.op.to_owned(),
            attempts: f64::from(dead.attempts),
            last_error: dead.last_error,
            failed_at: EpochDate(dead.failed_ms as f64),
            created_at: EpochDate(dead.created_ms as f64),
        }
    }
}

/// The JS array of `dead` letters, oldest first as the core lists them.
pub(crate) fn dead_letters_to_js(
    env: &Env,
    dead: Vec<tierstack::DeadLetter>,
) -> Result<Value<'_>, Error> {
    let letters = dead
        .into_iter()
        .map(|d| js_values::to_js(env, DeadLetter::from(d)))
        .collect::<Result<Vec<_>, _>>()?;
    js_values::array(env, &letters)
}
