//! The project files a user or contributor looks for: the licence is the one the crates declare,
//! and the README points at it, the changelog, the security policy and the contributing guide.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_licence_is_the_declared_apache_2_0_text() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""), "the workspace declares Apache-2.0");
    let licence = read("LICENSE");
    for part in [
        "Apache License",
        "Version 2.0, January 2004",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "END OF TERMS AND CONDITIONS",
    ] {
        assert!(licence.contains(part), "LICENSE lacks {part:?}");
    }
    assert!(licence.len() > 10_000, "the whole text, not a pointer to it");
}

#[test]
fn the_readme_points_at_every_project_file_and_each_says_what_it_must() {
    let readme = read("README.md");
    for file in ["LICENSE", "CHANGELOG.md", "SECURITY.md", "CONTRIBUTING.md"] {
        assert!(root().join(file).is_file(), "{file} exists");
        assert!(readme.contains(&format!("({file})")), "the README links {file}");
    }
    let security = read("SECURITY.md");
    for part in ["## Reporting a vulnerability", "## In scope", "## Out of scope", "client key"] {
        assert!(security.contains(part), "SECURITY.md says {part:?}");
    }
    let changelog = read("CHANGELOG.md");
    assert!(changelog.contains("## [Unreleased]"), "CHANGELOG.md keeps an Unreleased section");
    let contributing = read("CONTRIBUTING.md");
    assert!(contributing.contains("make test"), "CONTRIBUTING.md names the test command");
}

/// The README stays a front page (what it is, the two commands, a quick start, merchants, a
/// production checklist, links), and every link in it and in `docs/` leads somewhere.
#[test]
fn the_readme_is_short_and_every_relative_link_resolves() {
    let readme = read("README.md");
    assert!(readme.lines().count() <= 200, "README.md has {} lines: move detail into docs/", readme.lines().count());
    for part in ["make run", "make test", "## Quick start", "## Configure your merchants", "## Production checklist"] {
        assert!(readme.contains(part), "the README has {part:?}");
    }
    let mut pages = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut checked = 0;
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')' && !c.is_whitespace()).collect();
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || target.starts_with("http") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            assert!(dir.join(file).exists(), "{}: the link ({target}) leads nowhere", page.display());
        }
    }
    assert!(checked > 15, "links were found: {checked}");
}
