//! The docs stay true to the code: every file path that README.md and docs/*.md cite, and every
//! function, type or test name they cite next to one, must still exist.
//!
//! What counts as a citation, in a code span (`` `...` ``) or a relative Markdown link:
//! - a path ending in a source or doc extension (`crates/walker/src/walk.rs`, `tests/data/x.py`,
//!   or a bare `maps.rs`), or a directory under one of the repository's top folders
//!   (`tests/integration/`);
//! - followed by `::name` or `: name` (`record.rs::run`, `elf.rs: open_mapped`,
//!   `formats.rs::svg_escapes_hostile_names`): every `::`-separated segment of the name must
//!   occur as a word in the file (stamped tests may end in an interpreter of the registry);
//! - a lone `::name` names something in the last file cited in the same paragraph.
//!
//! A path is looked up from the repository root, then next to the files cited before it in the
//! same paragraph or in its section heading, then as the end of any path in the repository (so
//! `safety_lifecycle.rs` finds `tests/integration/safety_lifecycle.rs`). Paths with shell
//! patterns (`v3_X{,d,t}.rs`, `*`) and absolute paths (`/proc/PID/maps`) are not citations.
//! The test lists every stale citation with its file and line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

const EXTENSIONS: &[&str] = &[
    ".rs", ".py", ".sh", ".md", ".toml", ".json", ".c", ".txt", ".svg",
];
const SOURCE_EXTENSIONS: &[&str] = &[".rs", ".py", ".sh", ".md", ".toml", ".c"];
const TOP_DIRS: &[&str] = &[
    "crates/",
    "tests/",
    "docs/",
    "benches/",
    "python-abi/",
    ".ci/",
    "src/",
    "demo/",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Every file of the repository (relative paths), without build output and VCS data.
fn repo_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Build output (the root's target/ only: crates/target is a crate) and VCS data.
            if name == ".git" || (dir == root && name == "target") {
                continue;
            }
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if entry.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// A citation found in a doc.
#[derive(Debug)]
struct Citation {
    line: usize,
    text: String,
    /// The cited path, if any (`None` for a lone `::name`).
    path: Option<String>,
    /// The cited name, if any.
    name: Option<String>,
    /// The last path cited before it in its paragraph (else in its section heading).
    last_path: Option<String>,
}

/// Splits a code span into a path and a name, if it is a citation at all.
fn parse_span(span: &str) -> Option<(Option<String>, Option<String>)> {
    let span = span.trim();
    if let Some(name) = span.strip_prefix("::") {
        return is_name(name).then(|| (None, Some(name.to_string())));
    }
    let (path, name) = if let Some((p, n)) = span.split_once("::") {
        (p, Some(n))
    } else if let Some((p, n)) = span.split_once(": ") {
        (p, Some(n))
    } else {
        (span, None)
    };
    let path = path.trim();
    if path.is_empty()
        || path.starts_with('/')
        || path.contains(|c: char| c.is_whitespace() || "{}*<>$~|".contains(c))
    {
        return None;
    }
    // CPython's own files (`Objects/locations.md`, `Include/cpython/code.h`) are not ours.
    if path.contains('/') && path.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    // Without a directory only source files count: `strobe-demo.svg` and `.json` in prose are
    // names of output files.
    let extensions = if path.contains('/') {
        EXTENSIONS
    } else {
        SOURCE_EXTENSIONS
    };
    if path.starts_with('.') && !path.contains('/') {
        return None;
    }
    let is_file = extensions.iter().any(|e| path.ends_with(e));
    let is_dir = path.ends_with('/') && TOP_DIRS.iter().any(|d| path.starts_with(d));
    if !is_file && !is_dir {
        return None;
    }
    let name = name.map(str::trim).filter(|n| is_name(n));
    Some((Some(path.to_string()), name.map(String::from)))
}

fn is_name(n: &str) -> bool {
    !n.is_empty()
        && n.split("::").all(|seg| {
            !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Code spans and relative link targets of one line.
fn spans(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut parts = line.split('`');
    parts.next();
    while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
        out.push(inside.to_string());
    }
    // An odd number of backticks leaves the last span unclosed: not a span.
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split('#').next().unwrap_or("");
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target.to_string());
        }
        rest = &after[end..];
    }
    out
}

/// The citations of one document, each with the paths cited before it in its paragraph and
/// its section heading (where bare names are looked up first).
fn citations(text: &str) -> Vec<(Citation, Vec<String>)> {
    let mut out = Vec::new();
    let mut heading_ctx: Vec<String> = Vec::new();
    let mut para_ctx: Vec<String> = Vec::new();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if trimmed.is_empty() {
            para_ctx.clear();
            continue;
        }
        let heading = trimmed.starts_with('#');
        if heading {
            heading_ctx.clear();
            para_ctx.clear();
        }
        for span in spans(line) {
            let Some((path, name)) = parse_span(&span) else {
                continue;
            };
            let mut ctx = para_ctx.clone();
            ctx.extend(heading_ctx.iter().cloned());
            let last_path = para_ctx.last().or(heading_ctx.last()).cloned();
            out.push((
                Citation {
                    line: i + 1,
                    text: span.clone(),
                    path: path.clone(),
                    name,
                    last_path,
                },
                ctx,
            ));
            if let Some(p) = path {
                if heading {
                    heading_ctx.push(p);
                } else {
                    para_ctx.push(p);
                }
            }
        }
    }
    out
}

/// The repository files `path` can mean, given the paths cited before it.
fn resolve(files: &[String], doc_dir: &str, path: &str, ctx: &[String]) -> Vec<String> {
    let exact = |p: &str| files.iter().any(|f| f == p);
    let clean = path.trim_start_matches("./");
    if exact(clean) {
        return vec![clean.to_string()];
    }
    // Relative to the document (Markdown links).
    let beside_doc = format!("{doc_dir}{clean}");
    if exact(&beside_doc) {
        return vec![beside_doc];
    }
    let near: Vec<String> = ctx
        .iter()
        .filter_map(|c| {
            let dir = if c.ends_with('/') {
                c.as_str()
            } else {
                c.rsplit_once('/').map_or("", |(d, _)| d)
            };
            let dir = if dir.is_empty() || dir.ends_with('/') {
                dir.to_string()
            } else {
                format!("{dir}/")
            };
            let p = format!("{dir}{clean}");
            exact(&p).then_some(p)
        })
        .collect();
    if !near.is_empty() {
        return near;
    }
    let suffix = format!("/{clean}");
    files
        .iter()
        .filter(|f| f.ends_with(&suffix))
        .cloned()
        .collect()
}

/// Whether `word` occurs in `text` as a whole identifier.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn name_found(root: &Path, candidates: &[String], name: &str) -> bool {
    let interpreters: Vec<&str> = strobe_testkit::interpreters::ALL
        .iter()
        .map(|i| i.name)
        .collect();
    candidates.iter().any(|file| {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            return false;
        };
        let segments: Vec<&str> = name.split("::").collect();
        segments.iter().enumerate().all(|(i, seg)| {
            has_word(&text, seg)
                // `stacks.rs::dump::pyenv_3_12`: stamped by per_interpreter!, not written out.
                || (i + 1 == segments.len() && interpreters.contains(seg))
        })
    })
}

/// Every stale citation in `docs`, as `doc:line: \`span\`: what is wrong`.
fn stale_citations(root: &Path, docs: &[String]) -> Vec<String> {
    let files = repo_files(root);
    let mut stale = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let doc_dir = doc
            .rsplit_once('/')
            .map_or(String::new(), |(d, _)| format!("{d}/"));
        for (c, ctx) in citations(&text) {
            let (candidates, shown_path) = match &c.path {
                Some(p) => (resolve(&files, &doc_dir, p, &ctx), p.clone()),
                None => match &c.last_path {
                    Some(last) => (resolve(&files, &doc_dir, last, &ctx), last.clone()),
                    None => {
                        stale.push(format!(
                            "{doc}:{}: `{}`: no file cited before it in its paragraph",
                            c.line, c.text
                        ));
                        continue;
                    }
                },
            };
            if candidates.is_empty() {
                stale.push(format!(
                    "{doc}:{}: `{}`: no file {shown_path} in the repository",
                    c.line, c.text
                ));
                continue;
            }
            if let Some(name) = &c.name {
                if !name_found(root, &candidates, name) {
                    stale.push(format!(
                        "{doc}:{}: `{}`: {name} not found in {}",
                        c.line,
                        c.text,
                        candidates.join(", ")
                    ));
                }
            }
        }
    }
    stale
}

fn documents(root: &Path) -> Vec<String> {
    let mut docs = vec!["README.md".to_string()];
    let mut in_docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    in_docs.sort();
    docs.extend(in_docs);
    docs
}

#[test]
fn every_path_and_name_the_docs_cite_exists() {
    let root = repo_root();
    let docs = documents(&root);
    assert!(docs.len() >= 5, "{docs:?}");
    let stale = stale_citations(&root, &docs);
    assert!(
        stale.is_empty(),
        "{} stale citations in the docs (fix the doc, or the code it describes):\n{}",
        stale.len(),
        stale.join("\n")
    );
}

/// The checker itself: it finds what exists, and reports what does not, on a fixture doc.
#[test]
fn the_checker_reports_missing_files_and_names() {
    let root = repo_root();
    let dir = strobe_testkit::TempDir::new_in(&root.join("target"));
    let doc_rel = dir
        .path()
        .strip_prefix(&root)
        .unwrap()
        .join("fixture.md")
        .to_string_lossy()
        .into_owned();
    std::fs::write(
        root.join(&doc_rel),
        "# Fixture\n\
         \n\
         - `crates/testkit/src/interpreters.rs::per_interpreter` and `::require_sid`;\n\
         - `tempdir.rs: named_in`, `crates/testkit/`;\n\
         - `crates/testkit/src/nowhere.rs`;\n\
         - `crates/testkit/src/rng.rs::no_such_function`;\n\
         - `::nonexistent_thing` `/proc/PID/maps` `v3_X{,d,t}.rs` `strobe record -o x.svg`;\n\
         - `docs_citations.rs::the_checker_reports_missing_files_and_names`.\n",
    )
    .unwrap();
    // The fixture lives under target/, which the file list skips: only its citations count.
    let stale = stale_citations(&root, std::slice::from_ref(&doc_rel));
    let lines: Vec<&str> = stale
        .iter()
        .map(|s| s.split_once(": ").unwrap().1)
        .collect();
    assert_eq!(
        lines,
        [
            "`crates/testkit/src/nowhere.rs`: no file crates/testkit/src/nowhere.rs in the repository",
            "`crates/testkit/src/rng.rs::no_such_function`: no_such_function not found in crates/testkit/src/rng.rs",
            "`::nonexistent_thing`: nonexistent_thing not found in crates/testkit/src/rng.rs",
        ],
        "{stale:#?}"
    );
}
