//! The files the origin serves, by (owner, repo, ref, path), and the
//! answers the contents API builds from them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::encoding::{base64_lines, content_id, etag};
use crate::seed::{OWNER, REF, REPO, seed_content, seed_paths};

/// One repository at one ref.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tree {
    pub(crate) owner: String,
    pub(crate) repo: String,
    pub(crate) git_ref: String,
}

impl Tree {
    pub(crate) fn new(owner: &str, repo: &str, git_ref: &str) -> Tree {
        Tree {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            git_ref: git_ref.to_owned(),
        }
    }
}

/// What a path names in a tree.
pub(crate) enum Entry<'a> {
    /// A file and its bytes.
    File(&'a [u8]),
    /// A directory and the JSON listing of its direct children.
    Dir(Vec<Value>),
}

/// Every file, by tree and path (paths without leading or trailing `/`).
#[derive(Debug, Default)]
pub(crate) struct Store {
    files: BTreeMap<Tree, BTreeMap<String, Vec<u8>>>,
}

impl Store {
    /// The seed: shadcn-ui/ui at main.
    pub(crate) fn seeded() -> Store {
        let mut store = Store::default();
        let tree = Tree::new(OWNER, REPO, REF);
        for path in seed_paths() {
            let content = seed_content(&path).into_bytes();
            store.set(tree.clone(), &path, content);
        }
        store
    }

    pub(crate) fn set(&mut self, tree: Tree, path: &str, content: Vec<u8>) {
        let path = path.trim_matches('/').to_owned();
        self.files.entry(tree).or_default().insert(path, content);
    }

    pub(crate) fn remove(&mut self, tree: &Tree, path: &str) {
        if let Some(files) = self.files.get_mut(tree) {
            files.remove(path.trim_matches('/'));
        }
    }

    /// The bytes of a file.
    pub(crate) fn file(&self, tree: &Tree, path: &str) -> Option<&[u8]> {
        self.files
            .get(tree)?
            .get(path.trim_matches('/'))
            .map(Vec::as_slice)
    }

    /// What `path` names: a file, a directory with its listing (entries as
    /// the contents API gives them, sorted by name, each directory once),
    /// or nothing. `raw_url` is the base of each file's `download_url`.
    pub(crate) fn entry(&self, tree: &Tree, path: &str, raw_url: &str) -> Option<Entry<'_>> {
        let files = self.files.get(tree)?;
        let path = path.trim_matches('/');
        if let Some(content) = files.get(path) {
            return Some(Entry::File(content));
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut children: BTreeMap<&str, Value> = BTreeMap::new();
        for (file, content) in files.range(prefix.clone()..) {
            let Some(rest) = file.strip_prefix(&prefix) else {
                break;
            };
            let value = match rest.split_once('/') {
                Some((dir, _)) => {
                    if children.contains_key(dir) {
                        continue;
                    }
                    let dir_path = format!("{prefix}{dir}");
                    json!({
                        "name": dir,
                        "path": dir_path,
                        "sha": content_id("tree", dir_path.as_bytes()),
                        "size": 0,
                        "type": "dir",
                        "download_url": null,
                    })
                }
                None => json!({
                    "name": rest,
                    "path": file,
                    "sha": content_id("blob", content),
                    "size": content.len(),
                    "type": "file",
                    "download_url": raw_download_url(raw_url, tree, file),
                }),
            };
            let name = rest.split('/').next().unwrap_or(rest);
            children.insert(name, value);
        }
        if children.is_empty() {
            None
        } else {
            Some(Entry::Dir(children.into_values().collect()))
        }
    }
}

/// The raw host's URL of a file.
pub(crate) fn raw_download_url(raw_url: &str, tree: &Tree, path: &str) -> String {
    format!(
        "{raw_url}/{}/{}/{}/{path}",
        tree.owner, tree.repo, tree.git_ref
    )
}

/// The contents API's object for one file.
pub(crate) fn file_object(raw_url: &str, tree: &Tree, path: &str, content: &[u8]) -> Value {
    let path = path.trim_matches('/');
    json!({
        "name": path.rsplit('/').next().unwrap_or(path),
        "path": path,
        "sha": content_id("blob", content),
        "size": content.len(),
        "type": "file",
        "encoding": "base64",
        "content": base64_lines(content),
        "download_url": raw_download_url(raw_url, tree, path),
    })
}

/// The ETag of a file, or of a listing's body.
pub(crate) fn etag_of(path: &str, content: &[u8]) -> String {
    etag(path.trim_matches('/'), content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{BASE, BLOCKS, COMPONENTS};

    fn names(entry: Option<Entry<'_>>) -> Vec<(String, String)> {
        let Some(Entry::Dir(list)) = entry else {
            panic!("not a directory");
        };
        list.iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_owned(),
                    v["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn listings_hold_direct_children_once_sorted() {
        let store = Store::seeded();
        let tree = Tree::new(OWNER, REPO, REF);
        let base = names(store.entry(&tree, BASE, "http://raw"));
        let dir = |n: &str| (n.to_owned(), "dir".to_owned());
        assert_eq!(base, [dir("blocks"), dir("examples"), dir("ui")]);
        let root = names(store.entry(&tree, "", "http://raw"));
        assert_eq!(root, [dir("apps")]);
        let blocks = names(store.entry(&tree, &format!("{BASE}blocks"), "http://raw"));
        let expected: Vec<_> = BLOCKS
            .iter()
            .map(|b| (format!("{b}.tsx"), "file".to_owned()))
            .collect();
        assert_eq!(blocks, expected);
        let ui = names(store.entry(&tree, &format!("{BASE}ui/"), "http://raw"));
        assert_eq!(ui.len(), COMPONENTS.len());
    }

    #[test]
    fn a_prefix_of_a_name_is_not_a_directory() {
        let store = Store::seeded();
        let tree = Tree::new(OWNER, REPO, REF);
        assert!(
            store
                .entry(&tree, "apps/v4/registry/new-york", "")
                .is_none()
        );
        assert!(
            store
                .entry(&Tree::new(OWNER, REPO, "dev"), BASE, "")
                .is_none()
        );
    }
}
