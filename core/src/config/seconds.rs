//! Durations as seconds (fractions allowed) in JSON: the serde `with`
//! module of every duration in the config.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    if d.subsec_nanos() == 0 {
        s.serialize_u64(d.as_secs())
    } else {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(D::Error::custom(format!(
            "{secs} is not a number of seconds >= 0"
        )));
    }
    // Past what a Duration holds is past 100 years too: `validate`
    // refuses it with the name of the key.
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    #[test]
    fn fractional_seconds_round_trip() {
        let config =
            Config::from_json(r#"{"memory": {"ttl": 0.25}, "sqlite": {"ttl": 90}}"#).unwrap();
        assert_eq!(config.memory.ttl, Duration::from_millis(250));
        assert_eq!(Config::from_json(&config.to_json()).unwrap(), config);
    }
}
