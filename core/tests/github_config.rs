//! GitHub's config: refused with a source handed in, bad values named by their
//! key, routes that do not parse; each against a GitHub-shaped origin on
//! loopback (`tierstack-origin`: a real HTTP server that counts its requests
//! and injects faults). Every scenario asserts the origin's request count
//! exactly.

#[path = "support/github.rs"]
mod github_support;

use serde_json::json;
use tierstack::blocking::Cache;
use tierstack::{Config, ErrorKind};
use tierstack_origin::Origin;

use github_support::config;

#[test]
fn github_with_a_source_handed_in_is_a_config_error() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = Cache::builder()
        .config(config(&origin, &dir.path().join("c.db"), json!({})))
        .source(tierstack::source::from_fn(|_k: String| async {
            Ok(tierstack::Fetched::NotFound)
        }))
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn bad_github_configs_are_refused_naming_the_key() {
    for (github, needle) in [
        (json!({"api_url": "ftp://x"}), "github.api_url"),
        (json!({"raw_url": "not a url"}), "github.raw_url"),
        (json!({"timeout": 0}), "github.timeout"),
        (json!({"max_body_bytes": 0}), "github.max_body_bytes"),
        (json!({"routes": "nope"}), "preset"),
        (json!({"routes": []}), "github.routes is empty"),
        (json!({"token": ""}), "github.token"),
        (json!({"tokn": "x"}), "tokn"),
    ] {
        let err = Config::from_json(&json!({ "github": github }).to_string()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{github}");
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn a_route_that_does_not_parse_is_named() {
    for (routes, needle) in [
        (
            json!([{"key": "a:{n}", "owner": "o", "repo": "r", "path": "{n}"},
                   {"key": "b", "owner": "o", "repo": "r", "path": "b", "branch": "x"}]),
            "github.routes[1]: unknown field `branch`",
        ),
        (
            json!([{"key": "a", "repo": "r", "path": "a"}]),
            "github.routes[0]: missing field `owner`",
        ),
        (
            json!([{"key": "a", "owner": "o", "repo": "r", "path": "a", "format": "xml"}]),
            "github.routes[0]: unknown variant `xml`",
        ),
        (json!(5), "a preset's name or a list of routes"),
    ] {
        let err =
            Config::from_json(&json!({"github": {"routes": routes}}).to_string()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
}
