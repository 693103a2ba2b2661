//! The Redis tier in a build without the `redis` Cargo feature: no cache
//! has one, and a config with a `redis` section is refused at open.

use std::sync::Arc;

use crate::breaker::BreakerStatus;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::stats::Counters;
use crate::tier::envelope::Stored;
use crate::tier::sqlite::Row;

/// A read's ticket (never made: no cache has the tier).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket;

/// A change under way (never made: no cache has the tier). Dropped where
/// the tier's own ends the change.
pub(crate) struct Changing;

impl Drop for Changing {
    fn drop(&mut self) {}
}

/// No value of this type exists: the engine's `Option<RedisTier>` is
/// always `None`, and the calls below are never made.
pub(crate) enum RedisTier {}

impl RedisTier {
    /// `None` without a `redis` section; an
    /// [`ErrorKind::InvalidConfig`] error with one.
    pub(crate) fn open(
        config: &Config,
        _clock: Clock,
        _counters: Arc<Counters>,
    ) -> Result<Option<Self>> {
        match &config.redis {
            None => Ok(None),
            Some(_) => Err(Error::new(
                ErrorKind::InvalidConfig,
                "redis: this build of tierstack has no Redis support (built without the \
                 `redis` Cargo feature); remove the redis section or use a build with it",
            )),
        }
    }

    pub(crate) fn get(&self, _key: &str) -> Option<Option<Stored>> {
        match *self {}
    }

    pub(crate) fn get_many(&self, _keys: &[&str]) -> Option<Vec<Option<Stored>>> {
        match *self {}
    }

    pub(crate) fn put(&self, _rows: &[Row], _now: u64) -> bool {
        match *self {}
    }

    pub(crate) fn delete(&self, _keys: &[&str], _quietly: bool) -> bool {
        match *self {}
    }

    pub(crate) fn invalidate_tag(&self, _tag: &str, _keys: &[&str]) -> bool {
        match *self {}
    }

    pub(crate) fn ticket(&self, _key: &str) -> ReadTicket {
        match *self {}
    }

    pub(crate) fn still_valid(&self, _ticket: ReadTicket) -> bool {
        match *self {}
    }

    pub(crate) fn keep_if<R>(&self, _ticket: ReadTicket, _keep: impl FnOnce() -> R) -> Option<R> {
        match *self {}
    }

    pub(crate) fn changing<'k>(&self, _keys: impl IntoIterator<Item = &'k str>) -> Changing {
        match *self {}
    }

    pub(crate) fn changing_all(&self) -> Changing {
        match *self {}
    }

    pub(crate) fn clear(&self) -> Option<u64> {
        match *self {}
    }

    pub(crate) fn breaker_status(&self) -> BreakerStatus {
        match *self {}
    }

    pub(crate) fn set_file(&self, _id: i64) {
        match *self {}
    }

    pub(crate) fn announces(&self) -> bool {
        match *self {}
    }

    pub(crate) fn halt(&self) {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, RedisConfig};
    use crate::error::ErrorKind;

    #[test]
    fn a_redis_section_is_refused_at_open() {
        let mut config = Config::default();
        config.sqlite.enabled = false;
        config.redis = Some(RedisConfig::new("redis://127.0.0.1:6379/0"));
        let err = crate::Cache::open(config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message()
                .contains("this build of tierstack has no Redis support"),
            "{}",
            err.message()
        );
    }
}
