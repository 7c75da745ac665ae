//! The shape ARCHITECTURE.md describes, checked on the source: the modules'
//! import graph has no circle, the crates that only one module may know
//! stay there, and no file grows past what one reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, but the binaries in `src/bin/`.
fn files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path != src().join("bin") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to: `src/bus/redis/keys.rs` is `bus`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The code of a file without comments and string literals, roughly: enough
/// that a path named in a doc comment is not an import.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.trim_start() {
            t if t.starts_with("//") => "",
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file's code names through `crate::`.
fn uses(text: &str) -> BTreeSet<String> {
    let code = code(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c};`: the first name of each item.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files() {
        let m = module_of(&path);
        // lib.rs declares every module and main.rs only calls the CLI.
        if m == "lib" || m == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        let deps = g.entry(m.clone()).or_default();
        for d in uses(&text) {
            if d != m {
                deps.insert(d);
            }
        }
    }
    g
}

#[test]
fn the_module_graph_has_no_circle() {
    let g = graph();
    // Depth-first search for a back edge, naming the circle found.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        circles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_owned());
            circles.push(c.join(" -> "));
            return;
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            visit(d, g, path, done, circles);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "import circles: {circles:#?}\ngraph: {g:#?}"
    );
    // Positive control: the graph was read (the session knows the hub).
    assert!(g["session"].contains("hub"), "{g:#?}");
}

/// Which module may name which external crate.
#[test]
fn only_their_modules_know_redis_and_tungstenite() {
    let mut wrong = Vec::new();
    for path in files() {
        let m = module_of(&path);
        let text = code(&std::fs::read_to_string(&path).expect("source"));
        let names_redis = text.contains("redis::") || text.contains("use redis");
        let names_ws = text.contains("tungstenite");
        if names_redis && m != "bus" {
            wrong.push(format!("{} names redis", path.display()));
        }
        if names_ws && !["session", "http"].contains(&m.as_str()) {
            wrong.push(format!("{} names tungstenite", path.display()));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_source_file_is_over_800_lines() {
    let long: Vec<String> = files()
        .into_iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(&p).expect("source").lines().count();
            (n > 800).then(|| format!("{}: {n} lines", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "{long:#?}");
}

#[test]
fn the_reader_finds_imports() {
    let text =
        "use crate::{hub::Hub, audience};\nfn f() { crate::auth::unix_now(); }\n// crate::doc\n";
    let found = uses(text);
    assert_eq!(
        found,
        ["audience", "auth", "hub"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
