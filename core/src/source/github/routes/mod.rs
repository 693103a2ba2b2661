//! Routes: which key loads which file, or which directory listing.
//!
//! A route's `key` is a pattern of literal text and `{placeholders}`; a
//! placeholder matches one or more characters other than `:`. A key that
//! matches a route loads the file at its `path` template (from the raw
//! host) or, for a `listing` route, the names in a directory (from the
//! contents API, as a JSON array of strings). A key no route matches is
//! not GitHub's: a read of it is a plain miss, and no request is made.
//!
//! Values follow the JSON convention every host shares (Python's and
//! Node's `get` decode JSON): a file is stored as a JSON string of its
//! UTF-8 text (`"format": "text"`, the default), or as its bytes as they
//! are (`"format": "raw"`, for `get_bytes`/`getBuffer` and C); a listing
//! is a JSON array of names.
//!
//! Every placeholder's value must be 1–128 characters of `A-Z a-z 0-9 . _ -`,
//! neither starting with `.` nor holding `..`: a key whose parts could
//! leave the path template (`..`, `/`, `\`, any percent-encoding) is an
//! [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) error before any
//! request.
//!
//! This file holds the routes as written, the table and the preset;
//! compiling a route and matching keys against it is in `pattern`.

mod pattern;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::invalid;
use crate::error::Result;
use pattern::{Compiled, capture, check_part, compile, fill};

/// The shadcn/ui v4 registry, as the MCP server serves it (owner
/// `shadcn-ui`, repo `ui`, ref `main`, under
/// `apps/v4/registry/new-york-v4/`), for the framework `react`:
///
/// | key | loads |
/// |---|---|
/// | `component:react:{name}` | `ui/{name}.tsx` |
/// | `component-demo:react:{name}` | `examples/{name}-demo.tsx` |
/// | `block:react:{name}` | `blocks/{name}.tsx` |
/// | `components:react` | the names in `ui/` (`.tsx` files) |
/// | `blocks:react` | the names in `blocks/` (`.tsx` files and directories) |
pub const SHADCN_V4: &str = "shadcn-v4";

const SHADCN_BASE: &str = "apps/v4/registry/new-york-v4";

/// The longest placeholder value accepted.
pub const MAX_PART_LEN: usize = 128;

/// One route, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The key pattern, e.g. `component:{framework}:{name}`.
    pub key: String,
    /// The repository's owner.
    pub owner: String,
    /// The repository.
    pub repo: String,
    /// The branch, tag or commit.
    #[serde(rename = "ref", default = "default_ref")]
    pub git_ref: String,
    /// A file route: the file's path in the repository, with placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A listing route: the directory whose entries are listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<String>,
    /// For a listing: only files ending with this are listed, without it
    /// (directories are listed by name); none: every entry, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// For a listing: the key pattern of the items it lists, with `{name}`
    /// for each name listed and the listing's own placeholders (e.g.
    /// `component:{framework}:{name}` for `components:{framework}`), so
    /// that `tierstack warm` can fetch every item of a listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
    /// For a file: how its bytes are stored.
    #[serde(default, skip_serializing_if = "is_text")]
    pub format: Format,
    /// Allowed values of placeholders; a key with another value is not
    /// this route's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub only: BTreeMap<String, Vec<String>>,
}

/// How a file route stores what it fetches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The file's UTF-8 text as a JSON string (a file that is not UTF-8 is
    /// a failure of the source).
    #[default]
    Text,
    /// The bytes as they are.
    Raw,
}

fn is_text(format: &Format) -> bool {
    *format == Format::Text
}

fn default_ref() -> String {
    "main".to_owned()
}

/// What a key loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file: `{raw_url}/{owner}/{repo}/{ref}/{path}`.
    File {
        /// `owner/repo/ref/path`, every part checked.
        raw_path: String,
        /// How it is stored.
        format: Format,
    },
    /// A directory listing: `{api_url}/repos/{owner}/{repo}/contents/{dir}?ref={ref}`.
    Listing {
        /// `repos/{owner}/{repo}/contents/{dir}`.
        api_path: String,
        /// The ref, for the query.
        git_ref: String,
        /// Only files with this suffix, without it.
        suffix: Option<String>,
    },
}

/// A checked route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Compiled>,
}

impl RouteTable {
    /// A preset by name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            SHADCN_V4 => Self::new(shadcn_v4()),
            other => Err(invalid(format!(
                "github.routes {other:?} is not a preset (presets: {SHADCN_V4:?}); give a list of routes instead"
            ))),
        }
    }

    /// A table of `routes`, checked: errors are
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) and
    /// name the route.
    pub fn new(routes: Vec<Route>) -> Result<Self> {
        if routes.is_empty() {
            return Err(invalid("github.routes is empty"));
        }
        let routes = routes
            .into_iter()
            .enumerate()
            .map(|(i, route)| {
                compile(route).map_err(|e| invalid(format!("github.routes[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { routes })
    }

    /// What `key` loads: `Ok(None)` when no route serves it, an
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) error when its
    /// parts are unsafe.
    pub fn resolve(&self, key: &str) -> Result<Option<Target>> {
        Ok(self
            .matching(key)?
            .map(|compiled| compiled.target(&capture(&compiled.pattern, key).expect("matched"))))
    }

    /// The keys of the items a listing key lists, given the names its
    /// value holds: `Ok(None)` when `key` is not a listing with an `items`
    /// pattern. Names that would make an unsafe key are an
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) error.
    pub fn item_keys(&self, key: &str, names: &[String]) -> Result<Option<Vec<String>>> {
        let Some(compiled) = self.matching(key)? else {
            return Ok(None);
        };
        let (Some(items), Some(_)) = (&compiled.route.items, &compiled.route.listing) else {
            return Ok(None);
        };
        let values = capture(&compiled.pattern, key).expect("matched");
        names
            .iter()
            .map(|name| {
                check_part(key, "name", name)?;
                let mut with_name = values.clone();
                with_name.retain(|(n, _)| n != "name");
                with_name.push(("name".to_owned(), name.clone()));
                Ok(fill(items, &with_name))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The route serving `key`, its parts checked.
    fn matching(&self, key: &str) -> Result<Option<&Compiled>> {
        for compiled in &self.routes {
            let Some(values) = capture(&compiled.pattern, key) else {
                continue;
            };
            for (name, value) in &values {
                check_part(key, name, value)?;
            }
            let allowed = compiled.route.only.iter().all(|(name, allowed)| {
                values
                    .iter()
                    .any(|(n, v)| n == name && allowed.iter().any(|a| a == v))
            });
            if allowed {
                return Ok(Some(compiled));
            }
        }
        Ok(None)
    }
}

fn shadcn_v4() -> Vec<Route> {
    let route = |key: &str, path: Option<String>, listing: Option<(String, &str)>| {
        let (listing, items) = listing.unzip();
        Route {
            key: key.to_owned(),
            owner: "shadcn-ui".to_owned(),
            repo: "ui".to_owned(),
            git_ref: "main".to_owned(),
            path,
            suffix: listing.as_ref().map(|_| ".tsx".to_owned()),
            listing,
            items: items.map(str::to_owned),
            format: Format::Text,
            only: BTreeMap::from([("framework".to_owned(), vec!["react".to_owned()])]),
        }
    };
    let file = |key: &str, path: &str| route(key, Some(format!("{SHADCN_BASE}/{path}")), None);
    let listing = |key: &str, dir: &str, items| {
        route(key, None, Some((format!("{SHADCN_BASE}/{dir}"), items)))
    };
    vec![
        file("component:{framework}:{name}", "ui/{name}.tsx"),
        file(
            "component-demo:{framework}:{name}",
            "examples/{name}-demo.tsx",
        ),
        file("block:{framework}:{name}", "blocks/{name}.tsx"),
        listing(
            "components:{framework}",
            "ui",
            "component:{framework}:{name}",
        ),
        listing("blocks:{framework}", "blocks", "block:{framework}:{name}"),
    ]
}
