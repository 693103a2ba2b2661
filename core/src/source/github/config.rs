//! The `github` section of the config.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::routes::{Route, RouteTable};
use crate::error::{Error, ErrorKind, Result};

/// The environment variables a token is read from when the config has
/// none, in this order.
pub const TOKEN_ENV: [&str; 2] = ["GITHUB_PERSONAL_ACCESS_TOKEN", "GITHUB_TOKEN"];

/// The largest `github.max_body_bytes` accepted: 1 GiB.
pub const MAX_BODY_LIMIT: u64 = 1 << 30;

/// GitHub as the source of truth: present in a config, plain reads load
/// through it (see [`crate::source::github`]).
///
/// | key | default | meaning |
/// |---|---|---|
/// | `enabled` | `true` | `false` keeps the section but loads nothing through it |
/// | `token` | `$GITHUB_PERSONAL_ACCESS_TOKEN`, else `$GITHUB_TOKEN`, else none | sent to `api_url` only; never logged, shown or stored |
/// | `api_url` | `"https://api.github.com"` | the REST API (directory listings) |
/// | `raw_url` | `"https://raw.githubusercontent.com"` | file contents |
/// | `timeout` | 30 | seconds one HTTP request may take |
/// | `max_body_bytes` | 5242880 (5 MiB) | a larger body is refused (a failure of the source) |
/// | `routes` | `"shadcn-v4"` | the route table: a preset's name, or a list of routes |
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitHubConfig {
    /// Load through GitHub.
    pub enabled: bool,
    /// The token; see [`GitHubConfig::resolved_token`].
    pub token: Option<Secret>,
    /// The REST API's base URL.
    pub api_url: String,
    /// The base URL files are read from.
    pub raw_url: String,
    /// How long one HTTP request may take.
    #[serde(with = "crate::config::seconds")]
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_body_bytes: u64,
    /// Which keys load which files.
    pub routes: Routes,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token: None,
            api_url: "https://api.github.com".to_owned(),
            raw_url: "https://raw.githubusercontent.com".to_owned(),
            timeout: Duration::from_secs(30),
            max_body_bytes: 5 * 1024 * 1024,
            routes: Routes::default(),
        }
    }
}

impl fmt::Debug for GitHubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubConfig")
            .field("enabled", &self.enabled)
            .field("token", &self.token)
            .field("api_url", &self.api_url)
            .field("raw_url", &self.raw_url)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("routes", &self.routes)
            .finish()
    }
}

impl GitHubConfig {
    /// The token: the configured one, else the first of [`TOKEN_ENV`] set
    /// and non-empty.
    pub fn resolved_token(&self) -> Option<Secret> {
        if let Some(token) = &self.token {
            return Some(token.clone());
        }
        TOKEN_ENV
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|t| !t.trim().is_empty())
            .map(Secret::new)
    }

    /// Checks every value; errors are [`ErrorKind::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        check_url("github.api_url", &self.api_url)?;
        check_url("github.raw_url", &self.raw_url)?;
        if self.timeout.is_zero() || self.timeout > crate::config::MAX_TTL {
            return Err(invalid(
                "github.timeout must be more than 0 and at most 100 years",
            ));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_LIMIT {
            return Err(invalid(format!(
                "github.max_body_bytes {} must be between 1 and {MAX_BODY_LIMIT}",
                self.max_body_bytes
            )));
        }
        if let Some(token) = &self.token
            && (token.expose().trim().is_empty()
                || token.expose().chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(invalid(
                "github.token must be non-empty, without spaces or control characters",
            ));
        }
        self.routes.table()?;
        Ok(())
    }
}

/// A secret string (the GitHub token). Its `Debug` shows `***`, and it
/// serialises as `null`: a config written back out never carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The route table: a preset by name, or routes of one's own.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Routes {
    /// A preset: `"shadcn-v4"` (see [`super::routes::SHADCN_V4`]).
    Preset(String),
    /// Routes, tried in order.
    Table(Vec<Route>),
}

impl<'de> Deserialize<'de> for Routes {
    /// A string names a preset; a list holds routes, each read on its own
    /// so that an error names the route (`github.routes[2]: unknown field
    /// ...`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(name) => Ok(Routes::Preset(name)),
            serde_json::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    serde_json::from_value::<Route>(item)
                        .map_err(|e| D::Error::custom(format!("github.routes[{i}]: {e}")))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Routes::Table),
            _ => Err(D::Error::custom(
                "github.routes must be a preset's name or a list of routes",
            )),
        }
    }
}

impl Default for Routes {
    fn default() -> Self {
        Routes::Preset("shadcn-v4".to_owned())
    }
}

impl Routes {
    /// The table these name, checked.
    pub fn table(&self) -> Result<RouteTable> {
        match self {
            Routes::Preset(name) => RouteTable::preset(name),
            Routes::Table(routes) => RouteTable::new(routes.clone()),
        }
    }
}

fn check_url(name: &str, url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("{name} {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(format!(
            "{name} {url:?} must be an http or https URL with a host"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(invalid(format!(
            "{name} {url:?} must not carry a query, a fragment or credentials"
        )));
    }
    Ok(())
}

pub(super) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}
