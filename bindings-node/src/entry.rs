//! What reads report (`lookup`, `getMetadata`) and the options of a write,
//! as JS objects.

use napi::bindgen_prelude::Unknown;
use napi::{Env, ValueType};
use napi_derive::napi;
use tierstack::key::quote;
use tierstack::{Error, config::ttl_from_seconds};

use crate::error::argument;
use crate::js_values::{self, Value};
use crate::stats::EpochDate;

/// What `lookup` reports: the value, the tier that served it, whether it was
/// a stale copy, and its age.
#[napi(object, object_from_js = false)]
pub struct LookupResult<'env> {
    /// The value (decoded JSON).
    pub value: Unknown<'env>,
    /// The tier that served it: `"memory"`, `"sqlite"`, or `"source"` for
    /// a value just loaded.
    #[napi(ts_type = "'memory' | 'sqlite' | 'source'")]
    pub tier: String,
    /// Whether the value had expired and was served as a stale copy.
    pub stale: bool,
    /// Seconds since the value was written.
    pub age: f64,
}

/// What `getMetadata` reports about a fresh entry (the StorageMetadata of
/// the design it replaces, plus `expiresAt`, `staleUntil` and `tags`).
#[napi(object, object_from_js = false)]
pub struct Metadata {
    /// The key.
    pub key: String,
    /// Bytes of the stored value: its JSON text (UTF-8), or a `Buffer`'s bytes.
    pub size: f64,
    /// The time to live, in seconds, the value was written with (the tier
    /// default if none was given).
    pub ttl: f64,
    /// When the key was first written; a rewrite keeps it (a `delete`,
    /// `clear` or `invalidateTag` forgets the key).
    #[napi(ts_type = "Date")]
    pub created_at: EpochDate,
    /// When the value was written (the latest write).
    #[napi(ts_type = "Date")]
    pub updated_at: EpochDate,
    /// The latest read or write. Reads answered from memory are timed by
    /// the pass that hands them to the SQLite file (about once a second);
    /// without a file, the latest write.
    #[napi(ts_type = "Date")]
    pub accessed_at: EpochDate,
    /// Reads of the key since its first write, memory hits included: exact
    /// for this process's reads; other processes' arrive within about a
    /// second. `has` and `getMetadata` are not reads.
    pub access_count: f64,
    /// When the value stops being fresh (`updatedAt + ttl`).
    #[napi(ts_type = "Date")]
    pub expires_at: EpochDate,
    /// When it stops being usable even as a stale copy (`expiresAt +
    /// failSafe.maxStale`; without a SQLite file, `expiresAt`).
    #[napi(ts_type = "Date")]
    pub stale_until: EpochDate,
    /// Tags given at write time.
    pub tags: Vec<String>,
}

/// Options of a write: `set(key, value, { ttl, tags })`. Any other key is
/// refused with `code === 'invalid_argument'`.
#[napi(object)]
pub struct SetOptions {
    /// Time to live in seconds (fractions allowed). Absent or `0`: the tier
    /// default. Negative, `NaN`, infinite, or over 100 years (3153600000
    /// seconds): refused with `code === 'invalid_argument'`, nothing stored.
    pub ttl: Option<f64>,
    /// Tags stored with the entry, for `invalidateTag`.
    pub tags: Option<Vec<String>>,
}

/// The JS object of a lookup whose value is already decoded.
pub(crate) fn lookup_to_js<'e>(
    env: &'e Env,
    lookup: &tierstack::Lookup,
    value: Value,
) -> Result<Value<'e>, Error> {
    let result = LookupResult {
        value,
        tier: lookup.tier.as_str().to_owned(),
        stale: lookup.stale,
        age: lookup.age.as_secs_f64(),
    };
    js_values::to_js(env, result)
}

/// The JS object of an entry's metadata.
pub(crate) fn metadata_to_js(env: &Env, entry: tierstack::Entry) -> Result<Value<'_>, Error> {
    let meta = entry.meta;
    let metadata = Metadata {
        key: entry.key,
        size: entry.value.len() as f64,
        ttl: meta.expires_ms.saturating_sub(meta.created_ms) as f64 / 1000.0,
        created_at: EpochDate(meta.first_written_ms as f64),
        updated_at: EpochDate(meta.created_ms as f64),
        accessed_at: EpochDate(meta.last_access_ms as f64),
        access_count: meta.access_count as f64,
        expires_at: EpochDate(meta.expires_ms as f64),
        stale_until: EpochDate(meta.stale_until_ms as f64),
        tags: meta.tags,
    };
    js_values::to_js(env, metadata)
}

/// The keys of [`SetOptions`], as JS spells them.
const SET_OPTIONS: [&str; 2] = ["ttl", "tags"];

/// The options of a write from its optional third argument: a TTL in
/// seconds, or `{ ttl, tags }` (another own key is an error, as in a
/// config). The TTL follows the rule of every host
/// ([`ttl_from_seconds`]).
pub(crate) fn set_options(env: &Env, arg: Option<Value>) -> Result<tierstack::SetOptions, Error> {
    let Some(arg) = arg.filter(|&a| !js_values::is_nullish(Some(a))) else {
        return Ok(tierstack::SetOptions::new());
    };
    match js_values::type_of(arg) {
        ValueType::Number => with_ttl(tierstack::SetOptions::new(), arg),
        ValueType::Object if !js_values::is_array(arg) => {
            for name in js_values::own_keys(env, arg)? {
                let name = js_values::string_arg(env, name, "an option name")?;
                if !SET_OPTIONS.contains(&name.as_str()) {
                    return Err(argument(format!(
                        "unknown option {}, expected one of: {}",
                        quote(&name),
                        SET_OPTIONS.join(", ")
                    )));
                }
            }
            let mut options = tierstack::SetOptions::new();
            let ttl = js_values::get_named(env, arg, c"ttl")?;
            if !js_values::is_nullish(Some(ttl)) {
                options = with_ttl(options, ttl)?;
            }
            let tags = js_values::get_named(env, arg, c"tags")?;
            if !js_values::is_nullish(Some(tags)) {
                if !js_values::is_array(tags) {
                    return Err(argument(format!(
                        "tags must be an array of strings, got {}",
                        js_values::type_name(tags)
                    )));
                }
                let tags = js_values::elements(env, tags)?
                    .into_iter()
                    .map(|tag| js_values::string_arg(env, tag, "a tag"))
                    .collect::<Result<Vec<_>, _>>()?;
                options = options.tags(tags);
            }
            Ok(options)
        }
        _ => Err(argument(format!(
            "ttlSeconds must be a number or an options object, got {}",
            js_values::type_name(arg)
        ))),
    }
}

fn with_ttl(options: tierstack::SetOptions, ttl: Value) -> Result<tierstack::SetOptions, Error> {
    let seconds = js_values::as_number(ttl).ok_or_else(|| {
        argument(format!(
            "ttl must be a number of seconds, got {}",
            js_values::type_name(ttl)
        ))
    })?;
    Ok(match ttl_from_seconds(seconds)? {
        Some(ttl) => options.ttl(ttl),
        None => options,
    })
}

/// The options of a load (`getOrLoad`'s third argument, as `set`'s): the
/// TTL and tags of a loaded value.
pub(crate) fn get_options(env: &Env, arg: Option<Value>) -> Result<tierstack::GetOptions, Error> {
    let set = set_options(env, arg)?;
    let mut options = tierstack::GetOptions::new().tags(set.tags);
    if let Some(ttl) = set.ttl {
        options = options.ttl(ttl);
    }
    Ok(options)
}
