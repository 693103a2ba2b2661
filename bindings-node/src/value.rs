//! The JSON convention of the Node host, and the JS built-ins it uses.
//!
//! A value handed to `set` is stored as compact UTF-8 JSON, exactly what
//! `JSON.stringify` gives (no spaces, non-ASCII kept as UTF-8), except a
//! `Buffer` or `Uint8Array`, whose bytes are stored as they are. What Rust,
//! C or Python store as JSON bytes reads back here as the parsed value.
//! Reading bytes that are not UTF-8 JSON through `get` fails with
//! `invalid_value` (they stay readable with `getBuffer`), and so does
//! storing a value that `JSON.stringify` cannot encode (`undefined`, a
//! function, a symbol, a `BigInt`, a cycle).
//!
//! The built-ins (`JSON.parse`, `JSON.stringify`, `Map`, `Array.from`) are
//! captured when a storage is created, so later changes to the globals do
//! not change how it encodes.

use bytes::Bytes;
use napi::{Env, ValueType};
use tierstack::{Error, ErrorKind};

use crate::error::argument;
use crate::js_values::{self, Held, Value};

/// The JS built-ins one storage calls.
pub(crate) struct Builtins {
    parse: Held,
    stringify: Held,
    map: Held,
    map_set: Held,
    array_from: Held,
}

impl Builtins {
    /// Captures the built-ins of the current environment.
    pub(crate) fn capture(env: &Env) -> Result<Self, Error> {
        let global = js_values::global(env)?;
        let json = js_values::get_named(env, global, c"JSON")?;
        let map = js_values::get_named(env, global, c"Map")?;
        let map_prototype = js_values::get_named(env, map, c"prototype")?;
        let array = js_values::get_named(env, global, c"Array")?;
        Ok(Self {
            parse: Held::new(env, js_values::get_named(env, json, c"parse")?)?,
            stringify: Held::new(env, js_values::get_named(env, json, c"stringify")?)?,
            map: Held::new(env, map)?,
            map_set: Held::new(env, js_values::get_named(env, map_prototype, c"set")?)?,
            array_from: Held::new(env, js_values::get_named(env, array, c"from")?)?,
        })
    }

    /// Lets the built-ins go.
    pub(crate) fn release(self, env: &Env) {
        for held in [
            self.parse,
            self.stringify,
            self.map,
            self.map_set,
            self.array_from,
        ] {
            held.release(env);
        }
    }

    /// The JS value of stored bytes: `JSON.parse` of their UTF-8 text.
    pub(crate) fn decode<'e>(&self, env: &'e Env, bytes: &[u8]) -> Result<Value<'e>, Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidValue,
                "the stored value is not UTF-8 JSON; read it with getBuffer",
            )
        })?;
        let text = js_values::string(env, text)?;
        let undefined = js_values::undefined(env)?;
        match js_values::call(env, self.parse.get(env)?, undefined, &[text])? {
            Ok(value) => Ok(value),
            Err(exception) => Err(Error::new(
                ErrorKind::InvalidValue,
                format!(
                    "the stored value is not JSON ({}); read it with getBuffer",
                    js_values::message_of(env, exception)
                ),
            )),
        }
    }

    /// The bytes to store for a JS value: a `Uint8Array`'s own bytes, or the
    /// value's JSON.
    pub(crate) fn encode(&self, env: &Env, value: Value) -> Result<Bytes, Error> {
        match js_values::uint8_bytes(value) {
            Some(bytes) => Ok(Bytes::from(bytes)),
            None => self.stringify(env, value).map(Bytes::from),
        }
    }

    /// `JSON.stringify(value)`; an [`ErrorKind::InvalidValue`] error when it
    /// throws or gives `undefined`.
    pub(crate) fn stringify(&self, env: &Env, value: Value) -> Result<String, Error> {
        let undefined = js_values::undefined(env)?;
        match js_values::call(env, self.stringify.get(env)?, undefined, &[value])? {
            Ok(json) if js_values::type_of(json) == ValueType::String => {
                js_values::read_long_str(env, json)
            }
            Ok(_) => Err(Error::new(
                ErrorKind::InvalidValue,
                format!(
                    "a value of type {} cannot be encoded as JSON",
                    js_values::type_name(value)
                ),
            )),
            Err(exception) => Err(Error::new(
                ErrorKind::InvalidValue,
                format!(
                    "the value cannot be encoded as JSON: {}",
                    js_values::message_of(env, exception)
                ),
            )),
        }
    }

    /// A new `Map` of `entries`, in order.
    pub(crate) fn new_map<'e>(
        &self,
        env: &'e Env,
        entries: &[(Value, Value)],
    ) -> Result<Value<'e>, Error> {
        let map = js_values::construct(env, self.map.get(env)?, &[])?;
        let set = self.map_set.get(env)?;
        for &(key, value) in entries {
            js_values::call(env, set, map, &[key, value])?
                .map_err(|e| Error::new(ErrorKind::Internal, js_values::message_of(env, e)))?;
        }
        Ok(map)
    }

    /// The entries of a `Map` or of a plain object's own enumerable
    /// string-keyed properties. What a getter or an iterator throws is the
    /// error (see [`js_values::Thrown`]).
    pub(crate) fn entries<'e>(
        &self,
        env: &'e Env,
        value: Value<'e>,
    ) -> Result<Vec<(Value<'e>, Value<'e>)>, Error> {
        let not_entries = || {
            argument(format!(
                "entries must be a Map or a plain object, got {}",
                js_values::type_name(value)
            ))
        };
        if js_values::type_of(value) != ValueType::Object
            || js_values::is_array(value)
            || js_values::is_typed_array(value)
        {
            return Err(not_entries());
        }
        if js_values::instance_of(env, value, self.map.get(env)?)? {
            let undefined = js_values::undefined(env)?;
            let pairs = js_values::call(env, self.array_from.get(env)?, undefined, &[value])?
                .map_err(|e| js_values::thrown(e, "reading the entries of a Map"))?;
            return js_values::elements(env, pairs)?
                .into_iter()
                .map(|pair| match js_values::elements(env, pair)?[..] {
                    [key, value] => Ok((key, value)),
                    _ => Err(Error::new(ErrorKind::Internal, "a Map entry is not a pair")),
                })
                .collect();
        }
        js_values::own_keys(env, value)?
            .into_iter()
            .map(|key| Ok((key, js_values::get_property(env, value, key)?)))
            .collect()
    }
}
