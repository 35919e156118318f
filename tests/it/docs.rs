//! The README and docs/ stand on their own: every Markdown link points inside the repository,
//! at a file that exists and, with a `#fragment`, at a heading that file has (GitHub's anchor
//! for it). A section renamed in one document breaks no link in another unnoticed.

use std::path::{Path, PathBuf};
use testkit::repo_path;

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (outside fenced code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every `](target)` of a Markdown text outside fenced code blocks and inline code.
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code (`…`) is not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![repo_path("README.md")];
    for entry in std::fs::read_dir(repo_path("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs
}

#[test]
fn every_link_in_the_readme_and_docs_resolves_inside_the_repository() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let dir = doc.parent().unwrap_or(Path::new("."));
        for link in links(&text) {
            checked += 1;
            let name = doc.file_name().unwrap().to_string_lossy().into_owned();
            if link.contains("://") || link.starts_with("mailto:") || link.starts_with('/') {
                broken.push(format!("{name}: {link} points outside the repository"));
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            let Ok(target_text) = std::fs::read_to_string(&target) else {
                if !target.is_dir() {
                    broken.push(format!("{name}: {link}: no such file"));
                }
                continue;
            };
            if !fragment.is_empty() && !anchors(&target_text).iter().any(|a| a == fragment) {
                broken.push(format!("{name}: {link}: no such heading"));
            }
        }
    }
    assert!(checked > 20, "the documents have links: {checked}");
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        anchor(" Rolling out: observe, percent, upgrade"),
        "rolling-out-observe-percent-upgrade"
    );
    assert_eq!(
        anchor("Trusting grantshift's CA"),
        "trusting-grantshifts-ca"
    );
    assert_eq!(
        anchor("Reloading the config (SIGHUP)"),
        "reloading-the-config-sighup"
    );
    assert_eq!(anchor("`grantshift report`"), "grantshift-report");
    assert_eq!(
        links("see [a](docs/x.md#y) and `[b](c)` and [d](#e)"),
        ["docs/x.md#y", "#e"]
    );
}
