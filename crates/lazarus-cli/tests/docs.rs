//! The documentation is checked like code, so it cannot drift:
//!
//! - every relative link in README.md, docs/*.md and test/README.md names
//!   a file that exists, and every `#anchor` a heading that exists
//!   (anchors made as GitHub makes them);
//! - docs/cli.md holds, below its marker line, the `--help` of `lazarus`
//!   and of every subcommand exactly as the binary prints it.
//!
//! After a change to the CLI's arguments or help text, regenerate the
//! reference with `LAZARUS_BLESS=1 cargo test -p lazarus-cli --test docs`
//! and review the diff of docs/cli.md.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The line in docs/cli.md below which everything is generated.
const GENERATED_MARKER: &str =
    "<!-- Generated from `lazarus --help` below this line: edit the CLI, then run LAZARUS_BLESS=1 cargo test -p lazarus-cli --test docs -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository's root")
}

/// A path as the repository names it, for messages.
fn shown(path: &Path) -> String {
    let root = repo_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The documents whose links are checked: README.md, test/README.md and
/// every page in docs/.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("test/README.md"));
    docs.insert(0, root.join("README.md"));
    docs
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The lines outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut prose = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m && trimmed.trim_end() == m => fence = None,
            (None, None) => prose.push((index + 1, line)),
            _ => {}
        }
    }
    prose
}

/// The line without its inline code spans (`like this`), which are never
/// links.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let delimiter = &rest[start..start + ticks];
        match rest[start + ticks..].find(delimiter) {
            Some(len) => rest = &rest[start + ticks + len + ticks..],
            None => {
                rest = &rest[start + ticks..];
                out.push_str(delimiter);
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the inline links `[text](target)` and images on a line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_string());
        rest = &after[end..];
    }
    targets
}

/// A heading's anchor as GitHub makes it: the text as rendered (code
/// spans' and links' text kept), lower case, every character that is not
/// a letter, digit, space, hyphen or underscore dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    let mut text = heading.to_string();
    // A link in a heading renders as its text.
    while let (Some(open), Some(close)) = (text.find("]("), text.rfind(')')) {
        if close < open {
            break;
        }
        let end = open + text[open..].find(')').expect("a ) after ](");
        text.replace_range(open..=end, "");
    }
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown file defines: its headings' slugs, repeated
/// ones numbered as GitHub numbers them (`name`, `name-1`, `name-2`).
fn anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    anchors
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// What is wrong with one link from `doc`, if anything.
fn check_link(doc: &Path, target: &str) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        doc.to_path_buf()
    } else {
        doc.parent().expect("a document's directory").join(path)
    };
    if !file.exists() {
        return Some(format!("{} does not exist", shown(&file)));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if file.extension().is_none_or(|ext| ext != "md") {
        return None;
    }
    if anchors(&read(&file)).contains(anchor) {
        None
    } else {
        Some(format!("no heading in {} makes #{anchor}", shown(&file)))
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                checked += 1;
                if let Some(problem) = check_link(&doc, &target) {
                    broken.push(format!("{}:{number}: ({target}) {problem}", shown(&doc)));
                }
            }
        }
    }
    assert!(checked > 0, "no relative link found: is the parser broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `lazarus ARGS --help`, in an empty environment so that nothing of the
/// caller's (sockets, terminal width, colours) shows in the text.
fn help(command: &[String]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .args(command)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run lazarus --help");
    assert!(
        output.status.success(),
        "lazarus {} --help failed: {}",
        command.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The subcommands a help text lists under "Commands:", `help` left out.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        // A wrapped description goes on further indented; a name starts
        // at the list's own indent.
        .filter(|line| !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The reference as it must read below the marker: each command's heading
/// and its help, the top level first, then every subcommand depth first.
fn generated_reference() -> String {
    let mut out = String::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(command) = pending.pop() {
        let text = help(&command);
        let title = format!("lazarus {}", command.join(" "));
        let title = title.trim_end();
        out.push_str(&format!(
            "\n## {title}\n\n```text\n{}\n```\n",
            text.trim_end()
        ));
        for sub in listed_subcommands(&text).into_iter().rev() {
            let mut path = command.clone();
            path.push(sub);
            pending.push(path);
        }
    }
    out
}

#[test]
fn cli_reference_matches_the_binary_help() {
    let path = repo_root().join("docs/cli.md");
    let current = read(&path);
    let (head, _) = current
        .split_once(GENERATED_MARKER)
        .unwrap_or_else(|| panic!("docs/cli.md lacks its marker line:\n{GENERATED_MARKER}"));
    let expected = format!("{head}{GENERATED_MARKER}\n{}", generated_reference());
    if std::env::var_os("LAZARUS_BLESS").is_some() {
        fs::write(&path, &expected).expect("write docs/cli.md");
        return;
    }
    if current != expected {
        let line = current
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(expected.lines().count()));
        panic!(
            "docs/cli.md differs from the binary's --help from line {}: \
             run LAZARUS_BLESS=1 cargo test -p lazarus-cli --test docs and review the diff",
            line + 1
        );
    }
}

#[test]
fn slugs_are_made_as_github_makes_them() {
    assert_eq!(slug("Migration's page streams"), "migrations-page-streams");
    assert_eq!(
        slug("`lazarus checkpoint --export`"),
        "lazarus-checkpoint---export"
    );
    assert_eq!(slug("Limits (honest list)"), "limits-honest-list");
    assert_eq!(slug("See [the CLI](cli.md) now"), "see-the-cli-now");
    assert_eq!(slug("cgroup v1/v2"), "cgroup-v1v2");
    let repeated = anchors("# A\n## A\n```\n# not a heading\n```\n### A\n");
    let expected: HashSet<String> = ["a", "a-1", "a-2"].map(String::from).into();
    assert_eq!(repeated, expected);
}

#[test]
fn subcommands_are_read_from_the_commands_list() {
    let help = "Usage: x\n\nCommands:\n  one   does\n        on\n  two   too\n  help  Print\n\nOptions:\n  -h\n";
    assert_eq!(listed_subcommands(help), ["one", "two"]);
}

#[test]
fn links_in_code_are_not_links() {
    let targets = link_targets("see [x](a.md#b), `[y](c.md)` and ![z](img.svg \"t\")");
    assert_eq!(targets, ["a.md#b", "img.svg"]);
    let text = "```\n[x](gone.md)\n```\n[y](here.md)\n";
    let lines: Vec<usize> = prose_lines(text).iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, [4]);
}
