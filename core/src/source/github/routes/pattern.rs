//! A route compiled: its key pattern and placeholders, matching a key,
//! checking the parts it captured, and filling the route's templates.

use super::{Format, MAX_PART_LEN, Route, Target};
use crate::error::{Error, ErrorKind, Result};
use crate::key;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Compiled {
    pub(super) pattern: Vec<Piece>,
    pub(super) route: Route,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    Hole(String),
}

impl Compiled {
    pub(super) fn target(&self, values: &[(String, String)]) -> Target {
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

pub(super) fn compile(route: Route) -> std::result::Result<Compiled, String> {
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
pub(super) fn capture(pattern: &[Piece], key: &str) -> Option<Vec<(String, String)>> {
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

pub(super) fn fill(template: &str, values: &[(String, String)]) -> String {
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

pub(super) fn check_part(key: &str, name: &str, value: &str) -> Result<()> {
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
