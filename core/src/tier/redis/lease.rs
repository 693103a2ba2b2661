//! Load leases across machines: one machine loads a key from the source
//! while the others wait for its value (or its "not found").

use std::time::Duration;

use super::{OWN, RedisTier};

/// How a lease on a key's load went (see [`RedisTier::lease`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// This caller holds it now.
    Taken,
    /// Another machine holds it.
    Held,
    /// Another machine found the key missing at the source.
    NotFound,
}

/// The lease value a holder leaves behind when the source had no value.
const NOT_FOUND_MARK: &str = "-";

/// Takes a lease unless one is there: the one there, or nil.
const LEASE_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
    if v then return v end \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return false";

/// Ends a lease this caller holds: deleted, or (`ARGV[2]` > 0) left as the
/// not-found mark for that many milliseconds.
const END_LEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
    if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2]) \
    else redis.call('DEL', KEYS[1]) end return 1";

impl RedisTier {
    fn lease_key(&self, key: &str) -> String {
        format!("{}{OWN}lease:{key}", self.prefix)
    }
    /// Takes the lease on loading `key` for `token`, for `lease`; `None`
    /// if Redis failed.
    pub(crate) async fn lease(
        &self,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> Option<LeaseState> {
        let (key, token) = (self.lease_key(key), token.to_owned());
        let px = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let there: Option<String> = self
            .call_async(self.timeout, move |mut c| async move {
                ::redis::cmd("EVAL")
                    .arg(LEASE_SCRIPT)
                    .arg(1)
                    .arg(key)
                    .arg(token)
                    .arg(px)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Some(match there.as_deref() {
            None => LeaseState::Taken,
            Some(NOT_FOUND_MARK) => LeaseState::NotFound,
            Some(_) => LeaseState::Held,
        })
    }

    /// Ends `token`'s lease on `key`; `not_found`: the source had no value,
    /// remembered by the lease for that long. A failure is logged; the
    /// lease then ends at its expiry.
    pub(crate) async fn end_lease(&self, key: &str, token: &str, not_found: Option<Duration>) {
        let (key, token) = (self.lease_key(key), token.to_owned());
        let px = not_found.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.call_async(self.timeout, move |mut c| async move {
            ::redis::cmd("EVAL")
                .arg(END_LEASE_SCRIPT)
                .arg(1)
                .arg(key)
                .arg(token)
                .arg(px)
                .arg(NOT_FOUND_MARK)
                .query_async::<i64>(&mut c)
                .await
        })
        .await;
    }
}
