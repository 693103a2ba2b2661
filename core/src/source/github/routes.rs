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
//! [`ErrorKind::InvalidKey`] error before any request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::invalid;
use crate::error::{Error, ErrorKind, Result};
use crate::key;

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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Compiled {
    pattern: Vec<Piece>,
    route: Route,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Hole(String),
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
    /// [`ErrorKind::InvalidConfig`] and name the route.
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
    /// [`ErrorKind::InvalidKey`] error when its parts are unsafe.
    pub fn resolve(&self, key: &str) -> Result<Option<Target>> {
        Ok(self
            .matching(key)?
            .map(|compiled| compiled.target(&capture(&compiled.pattern, key).expect("matched"))))
    }

    /// The keys of the items a listing key lists, given the names its
    /// value holds: `Ok(None)` when `key` is not a listing with an `items`
    /// pattern. Names that would make an unsafe key are an
    /// [`ErrorKind::InvalidKey`] error.
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

impl Compiled {
    fn target(&self, values: &[(String, String)]) -> Target {
        let r = &self.route;
        match (&r.path, &r.listing) {
            (Some(path), _) => Target::File {
                raw_path: format!(
                    "{}/{}/{}/{}",
                    r.owner,
                    r.repo,
                    r.git_ref,
                    fill(path, values)
                ),
                format: r.format,
            },
            (None, Some(dir)) => Target::Listing {
                api_path: format!(
                    "repos/{}/{}/contents/{}",
                    r.owner,
                    r.repo,
                    fill(dir, values)
                ),
                git_ref: r.git_ref.clone(),
                suffix: r.suffix.clone(),
            },
            (None, None) => unreachable!("checked by compile"),
        }
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

fn compile(route: Route) -> std::result::Result<Compiled, String> {
    let pattern = parse_pattern(&route.key)?;
    let holes: Vec<&str> = pattern
        .iter()
        .filter_map(|p| match p {
            Piece::Hole(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
        .collect();
    for (what, text) in [("owner", &route.owner), ("repo", &route.repo)] {
        if !is_safe_part(text) {
            return Err(format!(
                "{what} {text:?} must be 1-128 characters of A-Z a-z 0-9 . _ -, not starting with '.'"
            ));
        }
    }
    if route.git_ref.is_empty() || !route.git_ref.split('/').all(is_safe_part) {
        return Err(format!(
            "ref {:?} must be '/'-separated parts of A-Z a-z 0-9 . _ -",
            route.git_ref
        ));
    }
    let template = match (&route.path, &route.listing) {
        (Some(_), Some(_)) => return Err("has both path and listing; give one".to_owned()),
        (None, None) => return Err("has neither path nor listing; give one".to_owned()),
        (Some(path), None) => path,
        (None, Some(dir)) => dir,
    };
    if route.listing.is_none() && (route.suffix.is_some() || route.items.is_some()) {
        return Err("suffix and items are only for a listing".to_owned());
    }
    if route.listing.is_some() && route.format != Format::Text {
        return Err("format is only for a file (a listing is a JSON array)".to_owned());
    }
    if let Some(items) = &route.items {
        for piece in parse_pattern(items)? {
            if let Piece::Hole(name) = piece
                && name != "name"
                && !holes.contains(&name.as_str())
            {
                return Err(format!(
                    "items {items:?} uses {{{name}}}, which is neither {{name}} nor in the key pattern {:?}",
                    route.key
                ));
            }
        }
    }
    for piece in parse_pattern(template)? {
        match piece {
            Piece::Hole(name) if !holes.contains(&name.as_str()) => {
                return Err(format!(
                    "the template {template:?} uses {{{name}}}, which the key pattern {:?} does not have",
                    route.key
                ));
            }
            Piece::Hole(_) => {}
            Piece::Text(text) => {
                let bad = text.split('/').any(|seg| seg == "." || seg == "..")
                    || text.contains('\\')
                    || text.contains('%')
                    || text.contains('?')
                    || text.contains('#')
                    || text.chars().any(char::is_control);
                if bad {
                    return Err(format!(
                        "the template {template:?} must be a plain relative path (no '..', '\\', '%', '?', '#')"
                    ));
                }
            }
        }
    }
    if template.starts_with('/') {
        return Err(format!("the template {template:?} must be relative"));
    }
    for name in route.only.keys() {
        if !holes.contains(&name.as_str()) {
            return Err(format!(
                "only names {{{name}}}, which the key pattern {:?} does not have",
                route.key
            ));
        }
    }
    Ok(Compiled { pattern, route })
}

fn parse_pattern(text: &str) -> std::result::Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("{text:?} has an unclosed '{{'"))?;
                let name = &rest[1..end];
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!("{text:?} has a bad placeholder {{{name}}}"));
                }
                if matches!(pieces.last(), Some(Piece::Hole(_))) {
                    return Err(format!(
                        "{text:?} has two placeholders with nothing between them"
                    ));
                }
                pieces.push(Piece::Hole(name.to_owned()));
                rest = &rest[end + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                if rest[..end].contains('}') {
                    return Err(format!("{text:?} has a '}}' without a '{{'"));
                }
                pieces.push(Piece::Text(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
    }
    if pieces.is_empty() {
        return Err("the key pattern is empty".to_owned());
    }
    Ok(pieces)
}

/// The placeholders' values if `key` matches `pattern`.
fn capture(pattern: &[Piece], key: &str) -> Option<Vec<(String, String)>> {
    let mut values = Vec::new();
    let mut rest = key;
    for (i, piece) in pattern.iter().enumerate() {
        match piece {
            Piece::Text(text) => rest = rest.strip_prefix(text.as_str())?,
            Piece::Hole(name) => {
                // Up to the next literal (which follows a hole, never another
                // hole), within one ':'-separated part; the last hole takes
                // the rest of the part.
                let part_end = rest.find(':').unwrap_or(rest.len());
                let end = match pattern.get(i + 1) {
                    Some(Piece::Text(next)) => rest[..part_end]
                        .find(next.as_str())
                        .or_else(|| next.starts_with(':').then_some(part_end))?,
                    _ => part_end,
                };
                if end == 0 {
                    return None;
                }
                values.push((name.clone(), rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(values)
}

fn fill(template: &str, values: &[(String, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

fn is_safe_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_PART_LEN
        && !part.starts_with('.')
        && !part.contains("..")
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_part(key: &str, name: &str, value: &str) -> Result<()> {
    if is_safe_part(value) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidKey,
        format!(
            "key {}: its {{{name}}} part must be 1-{MAX_PART_LEN} characters of A-Z a-z 0-9 . _ -, \
             not starting with '.' nor holding '..' (no '/', '\\' or percent-encoding)",
            key::quote(key)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shadcn() -> RouteTable {
        RouteTable::preset(SHADCN_V4).unwrap()
    }

    #[test]
    fn the_preset_routes_components_demos_blocks_and_listings() {
        let t = shadcn();
        assert_eq!(
            t.resolve("component:react:button").unwrap(),
            Some(Target::File {
                raw_path: "shadcn-ui/ui/main/apps/v4/registry/new-york-v4/ui/button.tsx".into(),
                format: Format::Text,
            })
        );
        assert_eq!(
            t.resolve("component-demo:react:alert-dialog").unwrap(),
            Some(Target::File {
                raw_path:
                    "shadcn-ui/ui/main/apps/v4/registry/new-york-v4/examples/alert-dialog-demo.tsx"
                        .into(),
                format: Format::Text,
            })
        );
        assert_eq!(
            t.resolve("block:react:login-01").unwrap(),
            Some(Target::File {
                raw_path: "shadcn-ui/ui/main/apps/v4/registry/new-york-v4/blocks/login-01.tsx"
                    .into(),
                format: Format::Text,
            })
        );
        assert_eq!(
            t.resolve("components:react").unwrap(),
            Some(Target::Listing {
                api_path: "repos/shadcn-ui/ui/contents/apps/v4/registry/new-york-v4/ui".into(),
                git_ref: "main".into(),
                suffix: Some(".tsx".into()),
            })
        );
    }

    #[test]
    fn a_listing_names_the_keys_of_its_items() {
        let t = shadcn();
        let names = vec!["button".to_owned(), "card".to_owned()];
        assert_eq!(
            t.item_keys("components:react", &names).unwrap(),
            Some(vec![
                "component:react:button".to_owned(),
                "component:react:card".to_owned()
            ])
        );
        assert_eq!(
            t.item_keys("blocks:react", &names[..1]).unwrap(),
            Some(vec!["block:react:button".to_owned()])
        );
        assert_eq!(t.item_keys("component:react:button", &names).unwrap(), None);
        assert_eq!(t.item_keys("session:1", &names).unwrap(), None);
        let bad = vec!["../x".to_owned()];
        assert_eq!(
            t.item_keys("components:react", &bad).unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
    }

    #[test]
    fn keys_no_route_serves_are_not_githubs() {
        let t = shadcn();
        for key in [
            "component:vue:button",
            "component:react",
            "component:react:button:extra",
            "session:42",
            "components:react:x",
            "component:react:",
        ] {
            assert_eq!(t.resolve(key).unwrap(), None, "{key}");
        }
    }

    #[test]
    fn parts_that_could_leave_the_template_are_invalid_keys() {
        let t = shadcn();
        for key in [
            "component:react:..",
            "component:react:../secrets",
            "component:react:a/b",
            "component:react:a\\b",
            "component:react:%2e%2e",
            "component:react:%2fetc",
            "component:react:.hidden",
            "component:react:a..b",
            "component:react:bu%74ton",
            "component:..:button",
            "component:react:a b",
            "component:react:a?b",
            "component:react:a#b",
        ] {
            let err = t.resolve(key).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key}");
        }
        let long = format!("component:react:{}", "a".repeat(MAX_PART_LEN + 1));
        assert_eq!(t.resolve(&long).unwrap_err().kind(), ErrorKind::InvalidKey);
    }

    #[test]
    fn custom_routes_are_checked_and_resolved() {
        let json = r#"[{"key": "doc:{name}", "owner": "me", "repo": "docs", "ref": "v1",
                        "path": "pages/{name}.md", "format": "raw"},
                       {"key": "docs", "owner": "me", "repo": "docs", "listing": "pages", "suffix": ".md"}]"#;
        let routes: Vec<Route> = serde_json::from_str(json).unwrap();
        let t = RouteTable::new(routes).unwrap();
        assert_eq!(
            t.resolve("doc:intro").unwrap(),
            Some(Target::File {
                raw_path: "me/docs/v1/pages/intro.md".into(),
                format: Format::Raw,
            })
        );
        assert_eq!(
            t.resolve("docs").unwrap(),
            Some(Target::Listing {
                api_path: "repos/me/docs/contents/pages".into(),
                git_ref: "main".into(),
                suffix: Some(".md".into())
            })
        );
    }

    #[test]
    fn bad_routes_are_invalid_config_naming_the_route() {
        let base = Route {
            key: "k:{name}".into(),
            owner: "o".into(),
            repo: "r".into(),
            git_ref: "main".into(),
            path: Some("{name}.txt".into()),
            listing: None,
            suffix: None,
            items: None,
            format: Format::Text,
            only: BTreeMap::new(),
        };
        let cases: Vec<(Route, &str)> = vec![
            (
                Route {
                    path: Some("../{name}".into()),
                    ..base.clone()
                },
                "plain relative path",
            ),
            (
                Route {
                    path: Some("{other}".into()),
                    ..base.clone()
                },
                "does not have",
            ),
            (
                Route {
                    owner: "a/b".into(),
                    ..base.clone()
                },
                "owner",
            ),
            (
                Route {
                    git_ref: "..".into(),
                    ..base.clone()
                },
                "ref",
            ),
            (
                Route {
                    listing: Some("x".into()),
                    ..base.clone()
                },
                "both",
            ),
            (
                Route {
                    path: None,
                    ..base.clone()
                },
                "neither",
            ),
            (
                Route {
                    key: "k:{a}{b}".into(),
                    ..base.clone()
                },
                "two placeholders",
            ),
            (
                Route {
                    key: "k:{".into(),
                    ..base.clone()
                },
                "unclosed",
            ),
            (
                Route {
                    suffix: Some(".x".into()),
                    ..base.clone()
                },
                "only for a listing",
            ),
            (
                Route {
                    items: Some("x:{name}".into()),
                    ..base.clone()
                },
                "only for a listing",
            ),
        ];
        for (route, needle) in cases {
            let err = RouteTable::new(vec![base.clone(), route]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            assert!(err.message().contains("github.routes[1]"), "{err}");
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
        assert!(
            RouteTable::preset("nope")
                .unwrap_err()
                .message()
                .contains("preset")
        );
        assert!(RouteTable::new(vec![]).is_err());
    }
}
