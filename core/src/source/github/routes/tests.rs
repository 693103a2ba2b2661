//! Unit tests of the route table: the preset, listings, keys no route
//! serves, unsafe parts, and custom routes and their errors.

use super::*;
use crate::error::ErrorKind;

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
            raw_path: "shadcn-ui/ui/main/apps/v4/registry/new-york-v4/blocks/login-01.tsx".into(),
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
