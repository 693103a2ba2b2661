//! The `circuit_breaker` config: defaults, JSON, and validation.

use super::*;
use crate::config::MAX_TTL;
use crate::error::ErrorKind;

#[test]
fn config_defaults_and_json() {
    let config: CircuitBreakerConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, CircuitBreakerConfig::default());
    config.validate().unwrap();
    let config: CircuitBreakerConfig =
        serde_json::from_str(r#"{"threshold": 3, "window": 1.5, "max_timeout": 900}"#).unwrap();
    assert_eq!(
        config,
        CircuitBreakerConfig {
            threshold: 3,
            window: ms(1_500),
            max_timeout: Duration::from_secs(900),
            ..Default::default()
        }
    );
    let json = serde_json::to_value(CircuitBreakerConfig::default()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "threshold": 5, "failure_rate": 0.5, "minimum_calls": 10,
            "window": 60, "slow_call": 10, "timeout": 60,
            "max_timeout": 600, "half_open_probes": 1, "success_threshold": 2,
        })
    );
    let back: CircuitBreakerConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, CircuitBreakerConfig::default());

    let err =
        serde_json::from_str::<CircuitBreakerConfig>(r#"{"successThreshold": 3}"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `successThreshold`"),
        "{err}"
    );
    let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{"timeout": -1}"#).unwrap_err();
    assert!(err.to_string().contains("not a number of seconds"), "{err}");
}

#[test]
fn config_validation_names_the_key() {
    let base = CircuitBreakerConfig::default;
    let long = MAX_TTL + Duration::from_secs(1);
    let cases = [
        (
            CircuitBreakerConfig {
                threshold: 0,
                ..base()
            },
            "circuit_breaker.threshold must be at least 1",
        ),
        (
            CircuitBreakerConfig {
                failure_rate: 0.0,
                ..base()
            },
            "circuit_breaker.failure_rate must be greater than 0 and at most 1",
        ),
        (
            CircuitBreakerConfig {
                failure_rate: 1.01,
                ..base()
            },
            "circuit_breaker.failure_rate must be greater than 0 and at most 1",
        ),
        (
            CircuitBreakerConfig {
                failure_rate: f64::NAN,
                ..base()
            },
            "circuit_breaker.failure_rate must be greater than 0 and at most 1",
        ),
        (
            CircuitBreakerConfig {
                minimum_calls: 0,
                ..base()
            },
            "circuit_breaker.minimum_calls must be at least 1",
        ),
        (
            CircuitBreakerConfig {
                minimum_calls: 4097,
                ..base()
            },
            "circuit_breaker.minimum_calls must be at most 4096",
        ),
        (
            CircuitBreakerConfig {
                window: Duration::ZERO,
                ..base()
            },
            "circuit_breaker.window must be greater than 0 seconds",
        ),
        (
            CircuitBreakerConfig {
                slow_call: Duration::ZERO,
                ..base()
            },
            "circuit_breaker.slow_call must be greater than 0 seconds",
        ),
        (
            CircuitBreakerConfig {
                timeout: Duration::ZERO,
                ..base()
            },
            "circuit_breaker.timeout must be greater than 0 seconds",
        ),
        (
            CircuitBreakerConfig {
                window: long,
                ..base()
            },
            "circuit_breaker.window is longer than 100 years",
        ),
        (
            CircuitBreakerConfig {
                max_timeout: long,
                ..base()
            },
            "circuit_breaker.max_timeout is longer than 100 years",
        ),
        (
            CircuitBreakerConfig {
                timeout: Duration::from_secs(700),
                ..base()
            },
            "circuit_breaker.max_timeout must be at least circuit_breaker.timeout",
        ),
        (
            CircuitBreakerConfig {
                half_open_probes: 0,
                ..base()
            },
            "circuit_breaker.half_open_probes must be at least 1",
        ),
        (
            CircuitBreakerConfig {
                success_threshold: 0,
                ..base()
            },
            "circuit_breaker.success_threshold must be at least 1",
        ),
    ];
    for (config, needle) in cases {
        let err = config.validate().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{needle}");
        assert!(err.message().starts_with(needle), "{}", err.message());
    }
    let edges = CircuitBreakerConfig {
        failure_rate: 1.0,
        minimum_calls: 4096,
        timeout: MAX_TTL,
        max_timeout: MAX_TTL,
        ..base()
    };
    edges.validate().unwrap();
}
