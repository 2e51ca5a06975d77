//! The guide's links: every relative link in the book's pages and the READMEs leads to a
//! file that exists and, with a `#fragment`, to a heading of that page (as mdBook names
//! headings); the book's pages link only within the book, which is all mdBook publishes;
//! and SUMMARY.md lists every page of `docs/src`, and no page that is not there.
//!
//! mdBook itself only warns about none of this: a broken link is a 404 a reader finds.

#![allow(
    clippy::expect_used,
    reason = "a test fails on the first thing it cannot read"
)]

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The repository's root (this crate lives in `docs/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("docs/ has a parent")
        .to_path_buf()
}

fn book() -> PathBuf {
    root().join("docs").join("src")
}

/// The options mdBook 0.5 parses with (mdbook-markdown), so that headings, tables and
/// explicit `{#id}`s read as they do there.
fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES
}

/// The id mdBook gives a heading of this text: trimmed, lowercased, letters, digits, `_`
/// and `-` kept, whitespace turned into `-`, everything else dropped (mdbook-html's
/// `id_from_content`).
fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// A page's headings' ids and its links, in order.
struct Page {
    anchors: HashSet<String>,
    links: Vec<String>,
}

fn read_page(path: &Path) -> Page {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut anchors = HashSet::new();
    let mut links = Vec::new();
    // The heading being read: its explicit id, if any, and its text so far.
    let mut heading: Option<(Option<String>, String)> = None;
    for event in Parser::new_ext(&text, options()) {
        match event {
            Event::Start(Tag::Heading { id, .. }) => {
                heading = Some((id.map(|id| id.to_string()), String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, content)) = &mut heading {
                    content.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((explicit, content)) = heading.take() {
                    let id = explicit.unwrap_or_else(|| slug(&content));
                    anchors.insert(unique(&id, &anchors));
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push(dest_url.to_string());
            }
            _ => {}
        }
    }
    Page { anchors, links }
}

/// mdBook's way of keeping ids unique on a page: `id`, then `id-1`, `id-2`, ...
fn unique(id: &str, used: &HashSet<String>) -> String {
    if !used.contains(id) {
        return id.to_owned();
    }
    (1..)
        .map(|n| format!("{id}-{n}"))
        .find(|candidate| !used.contains(candidate))
        .expect("some suffix is free")
}

/// `a/./b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn is_external(link: &str) -> bool {
    link.starts_with("//")
        || link.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
}

/// The book's pages, by file name.
fn book_pages() -> BTreeSet<String> {
    fs::read_dir(book())
        .expect("docs/src is readable")
        .map(|entry| {
            entry
                .expect("a readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md") && name != "SUMMARY.md")
        .collect()
}

/// Every page checked: the book's, the repository's README and the crates' READMEs.
fn checked_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = book_pages().iter().map(|name| book().join(name)).collect();
    pages.push(book().join("SUMMARY.md"));
    pages.push(root().join("README.md"));
    for entry in fs::read_dir(root()).expect("the root is readable") {
        let readme = entry.expect("a readable entry").path().join("README.md");
        if readme.is_file() {
            pages.push(readme);
        }
    }
    pages
}

/// What is wrong with `link` on the page at `from`, if anything.
fn check_link(from: &Path, link: &str) -> Option<String> {
    if is_external(link) {
        return None;
    }
    let (path, fragment) = match link.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (link, None),
    };
    let target = if path.is_empty() {
        from.to_path_buf()
    } else {
        normalize(&from.parent().expect("a page is in a folder").join(path))
    };
    if from.starts_with(book()) && !target.starts_with(book()) {
        return Some(format!(
            "`{link}` leaves docs/src, which is all the book publishes: link the repository's file by its URL"
        ));
    }
    if !target.exists() {
        return Some(format!("`{link}`: no such file ({})", target.display()));
    }
    let fragment = fragment?;
    if target.extension().is_none_or(|e| e != "md") {
        return Some(format!("`{link}`: a fragment on a file that is not a page"));
    }
    let page = read_page(&target);
    (!page.anchors.contains(fragment)).then(|| {
        let mut known: Vec<_> = page.anchors.into_iter().collect();
        known.sort();
        format!("`{link}`: no heading `#{fragment}` in it; its headings: {known:?}")
    })
}

#[test]
fn every_relative_link_leads_to_a_page_and_heading_that_exist() {
    let mut broken = Vec::new();
    for page in checked_pages() {
        for link in read_page(&page).links {
            if let Some(problem) = check_link(&page, &link) {
                let shown = page
                    .strip_prefix(root())
                    .unwrap_or(&page)
                    .display()
                    .to_string();
                broken.push(format!("{shown}: {problem}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_summary_lists_every_page_of_the_book_and_only_those() {
    let summary = read_page(&book().join("SUMMARY.md"));
    let listed: BTreeSet<String> = summary
        .links
        .iter()
        .map(|l| l.split('#').next().unwrap_or(l).to_owned())
        .collect();
    let pages = book_pages();
    let unlisted: Vec<_> = pages.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&pages).collect();
    assert!(
        unlisted.is_empty() && missing.is_empty(),
        "pages in docs/src that SUMMARY.md does not list: {unlisted:?}; \
         SUMMARY.md entries with no page: {missing:?}"
    );
}

#[test]
fn headings_are_named_as_mdbook_names_them() {
    assert_eq!(slug("Running on PostgreSQL"), "running-on-postgresql");
    assert_eq!(slug("What `catch_up` waits for"), "what-catch_up-waits-for");
    assert_eq!(
        slug("Backup and restore: what goes together"),
        "backup-and-restore-what-goes-together"
    );
    assert_eq!(slug("  Given/when/then  "), "givenwhenthen");

    let page = std::env::temp_dir().join(format!("es-guide-slugs-{}.md", std::process::id()));
    fs::write(
        &page,
        "# Title\n\n## Again\n\n## Again\n\n## With `code`, and *emphasis*\n\n## Custom {#mine}\n",
    )
    .expect("the temp dir is writable");
    let anchors = read_page(&page).anchors;
    fs::remove_file(&page).ok();
    let expected: HashSet<String> = [
        "title",
        "again",
        "again-1",
        "with-code-and-emphasis",
        "mine",
    ]
    .map(String::from)
    .into();
    assert_eq!(anchors, expected);
}

#[test]
fn external_links_are_told_from_relative_ones() {
    assert!(is_external("https://docs.rs/cqrs-es"));
    assert!(is_external("mailto:someone@example.com"));
    assert!(!is_external("guarantees.md#appends"));
    assert!(!is_external("#a-heading"));
    assert!(!is_external("../README.md"));
}
