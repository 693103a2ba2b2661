//! Reads: `GET` and `MGET` of the cache's keys, decoded.

use super::RedisTier;
use crate::tier::envelope::{self, Stored};

impl RedisTier {
    /// The entry of `key`: `None` if the call was skipped or failed,
    /// `Some(None)` if Redis holds no entry.
    pub(crate) fn get(&self, key: &str) -> Option<Option<Stored>> {
        let mut get = ::redis::cmd("GET");
        get.arg(self.key(key));
        let blob: Option<Vec<u8>> = self.read(get)?;
        Some(blob.as_deref().and_then(envelope::decode))
    }
    /// The entries of `keys`, in order, with one `MGET`; `None` if the call
    /// was skipped or failed.
    pub(crate) fn get_many(&self, keys: &[&str]) -> Option<Vec<Option<Stored>>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let mut mget = ::redis::cmd("MGET");
        mget.arg(keys.iter().map(|k| self.key(k)).collect::<Vec<_>>());
        let blobs: Vec<Option<Vec<u8>>> = self.read(mget)?;
        Some(
            blobs
                .iter()
                .map(|b| b.as_deref().and_then(envelope::decode))
                .collect(),
        )
    }
    /// [`RedisTier::get`], from async code.
    pub(crate) async fn get_async(&self, key: &str) -> Option<Option<Stored>> {
        let key = self.key(key);
        let blob: Option<Vec<u8>> = self
            .call_async(self.timeout, move |mut c| async move {
                ::redis::cmd("GET").arg(key).query_async(&mut c).await
            })
            .await?;
        Some(blob.as_deref().and_then(envelope::decode))
    }
}
