//! The seed content: shadcn/ui's new-york-v4 registry, one deterministic
//! TSX file per path.

use crate::encoding::fnv1a;

/// The owner of the seeded repository.
pub const OWNER: &str = "shadcn-ui";
/// The seeded repository.
pub const REPO: &str = "ui";
/// The seeded ref.
pub const REF: &str = "main";
/// The directory the seeded files live under (with a trailing slash).
pub const BASE: &str = "apps/v4/registry/new-york-v4/";

/// The components seeded as `{BASE}ui/{name}.tsx`, each with an example
/// at `{BASE}examples/{name}-demo.tsx`.
pub const COMPONENTS: &[&str] = &[
    "accordion",
    "alert",
    "alert-dialog",
    "aspect-ratio",
    "avatar",
    "badge",
    "breadcrumb",
    "button",
    "calendar",
    "card",
    "carousel",
    "chart",
    "checkbox",
    "collapsible",
    "command",
    "context-menu",
    "dialog",
    "drawer",
    "dropdown-menu",
    "form",
    "hover-card",
    "input",
    "input-otp",
    "label",
    "menubar",
    "navigation-menu",
    "pagination",
    "popover",
    "progress",
    "radio-group",
    "resizable",
    "scroll-area",
    "select",
    "separator",
    "sheet",
    "sidebar",
    "skeleton",
    "slider",
    "sonner",
    "switch",
    "table",
    "tabs",
    "textarea",
    "toggle",
    "toggle-group",
    "tooltip",
];

/// The blocks seeded as `{BASE}blocks/{name}.tsx`.
pub const BLOCKS: &[&str] = &[
    "dashboard-01",
    "login-01",
    "login-02",
    "sidebar-01",
    "signup-01",
];

/// Every seeded path, relative to the repository root: the components,
/// their examples, then the blocks.
#[must_use]
pub fn seed_paths() -> Vec<String> {
    let ui = COMPONENTS.iter().map(|c| format!("{BASE}ui/{c}.tsx"));
    let examples = COMPONENTS
        .iter()
        .map(|c| format!("{BASE}examples/{c}-demo.tsx"));
    let blocks = BLOCKS.iter().map(|b| format!("{BASE}blocks/{b}.tsx"));
    ui.chain(examples).chain(blocks).collect()
}

/// The seeded content of `path`: TSX of 1.5–2 KB whose first line is
/// `// {path}`, the same for the same path on every run. Any path gets
/// content; the seed only places files at [`seed_paths`].
#[must_use]
pub fn seed_content(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    let name = pascal_case(stem);
    // The ui component a file is about: its own name for ui files, the
    // demoed one for examples; blocks compose cards.
    let slot = if path.contains("/blocks/") {
        "card"
    } else {
        stem.strip_suffix("-demo").unwrap_or(stem)
    };
    let hash = fnv1a(&[path.as_bytes()], 0);
    let target = 1536 + (hash % 448) as usize;

    let mut out = format!("// {path}\n\"use client\"\n\nimport * as React from \"react\"\n");
    if path.contains("/examples/") || path.contains("/blocks/") {
        let component = pascal_case(slot);
        out.push_str(&format!(
            "\nimport {{ {component} }} from \"@/registry/new-york-v4/ui/{slot}\"\n\
             \nexport default function {name}() {{\n\
             \x20 const [open, setOpen] = React.useState(false)\n\n\
             \x20 return (\n\
             \x20   <div className=\"flex min-h-[350px] w-full items-center justify-center p-10\">\n\
             \x20     <{component} data-open={{open}} onClick={{() => setOpen(!open)}}>\n\
             \x20       {name}\n\
             \x20     </{component}>\n\
             \x20   </div>\n\
             \x20 )\n\
             }}\n"
        ));
    } else {
        out.push_str(&format!(
            "\nimport {{ cn }} from \"@/lib/utils\"\n\
             \nfunction {name}({{\n\
             \x20 className,\n\
             \x20 ...props\n\
             }}: React.ComponentProps<\"div\">) {{\n\
             \x20 return (\n\
             \x20   <div\n\
             \x20     data-slot=\"{slot}\"\n\
             \x20     className={{cn(\n\
             \x20       \"relative flex w-full items-center gap-2 rounded-md border px-3 py-2 text-sm shadow-xs\",\n\
             \x20       className\n\
             \x20     )}}\n\
             \x20     {{...props}}\n\
             \x20   />\n\
             \x20 )\n\
             }}\n\
             \nexport {{ {name} }}\n"
        ));
    }

    const WORDS: &[&str] = &[
        "focus", "ring", "border", "muted", "accent", "radius", "shadow", "motion", "state",
        "slot", "variant", "size", "theme", "token", "layout", "spacing",
    ];
    out.push_str("\n/*\n");
    let mut line = 0u64;
    while out.len() < target {
        let word = |k: u64| WORDS[(fnv1a(&[path.as_bytes()], line * 4 + k) % 16) as usize];
        out.push_str(&format!(
            " * {name} note {line}: the {} {} follows the {} {}.\n",
            word(0),
            word(1),
            word(2),
            word(3)
        ));
        line += 1;
    }
    out.push_str(" */\n");
    out
}

/// `alert-dialog` → `AlertDialog`, `dashboard-01` → `Dashboard01`.
fn pascal_case(stem: &str) -> String {
    stem.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_file_is_deterministic_tsx_of_the_right_size() {
        let paths = seed_paths();
        assert_eq!(paths.len(), COMPONENTS.len() * 2 + BLOCKS.len());
        for path in &paths {
            let content = seed_content(path);
            assert_eq!(content, seed_content(path));
            assert_eq!(content.lines().next(), Some(format!("// {path}").as_str()));
            assert!(
                (1536..=2048).contains(&content.len()),
                "{path}: {} bytes",
                content.len()
            );
        }
    }

    #[test]
    fn component_names_derive_from_the_file_name() {
        assert!(
            seed_content(&format!("{BASE}ui/alert-dialog.tsx")).contains("function AlertDialog(")
        );
        let demo = seed_content(&format!("{BASE}examples/button-demo.tsx"));
        assert!(demo.contains("export default function ButtonDemo()"));
        assert!(demo.contains("from \"@/registry/new-york-v4/ui/button\""));
        assert_eq!(pascal_case("dashboard-01"), "Dashboard01");
    }
}
