//! The crates' module structure, read from their source: no module imports one that imports
//! it back; lockboxd's layers import only downwards (ARCHITECTURE.md names them), its
//! front-end does not reach past the service, and nothing below the front-end uses the wire.
//!
//! The check reads each file's `crate::`, `super::` and `self::` paths (outside comments,
//! string literals and the `#[cfg(test)]` module at the end of a file) and draws an edge from
//! the file's module to the module each path names. It looks at two levels: the top-level
//! modules of each crate, and the files of each folder among themselves (a file using an
//! item of its folder's `mod.rs` is a child using its parent, not a cycle). Re-exports are
//! not followed: a path is counted where it points, which is what a reader of the file sees.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test of the source tree: any failure aborts

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// lockboxd's layers, top first; a module may import only from layers below its own.
const DAEMON_LAYERS: &[&[&str]] = &[
    &["main", "config"],
    &["server"],
    &["service"],
    &["crypto", "iam", "store"],
    &["model"],
    &["error", "random"],
];

/// A module path inside a crate, e.g. `["service", "payload"]`; empty for the crate root.
type ModPath = Vec<String>;

/// One source file: its module and the module paths it names.
struct Source {
    module: ModPath,
    named: Vec<ModPath>,
}

/// The source files of the crate rooted at `dir`, leaving out the folders in `skip`.
fn sources(dir: &Path, skip: &[&str]) -> Vec<Source> {
    let mut files = Vec::new();
    collect(dir, dir, skip, &mut files);
    files
        .into_iter()
        .map(|(path, module)| {
            let text = std::fs::read_to_string(&path).unwrap();
            let named = named_paths(&strip(&text), &module);
            Source { module, named }
        })
        .collect()
}

fn collect(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<(PathBuf, ModPath)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(root).unwrap();
        if path.is_dir() {
            if !skip.iter().any(|s| relative == Path::new(s)) {
                collect(root, &path, skip, out);
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let mut module: ModPath = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            module.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            let last = module.pop().unwrap();
            // A binary's root is a module of its own beside the library's.
            if last == "main" && module.is_empty() {
                module.push("main".into());
            }
        }
        out.push((path, module));
    }
}

/// The code of a file without comments, string and character literals, or its test module.
fn strip(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '"' && !escaped {
                        break;
                    }
                    escaped = c == '\\' && !escaped;
                }
                out.push_str("\"\"");
            }
            // A raw string: r"…" or r#"…"#.
            'r' if chars.peek() == Some(&'"') || chars.clone().take(2).eq(['#', '"']) => {
                let hashes = if chars.peek() == Some(&'#') {
                    "\"#"
                } else {
                    "\""
                };
                let mut seen = String::new();
                chars.nth(hashes.len() - 1);
                for c in chars.by_ref() {
                    seen.push(c);
                    if seen.ends_with(hashes) {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            // A character literal ('x', '\n', '\''), not a lifetime ('a).
            '\'' if chars.peek() == Some(&'\\') => {
                chars.nth(1);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
            }
            '\'' if chars.clone().nth(1) == Some('\'') => {
                chars.nth(1);
            }
            c => out.push(c),
        }
    }
    out
}

/// Every path the code names through `crate::`, `super::` or `self::`, resolved against
/// `module` (a folder's `mod.rs` is the folder's module): the segments after the anchors, and
/// for a `{ }` group those of each item in it.
fn named_paths(code: &str, module: &ModPath) -> Vec<ModPath> {
    let mut named = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let (word, end) = ident(code, at);
        let after_path = code[..at].ends_with(|c: char| c.is_alphanumeric() || "_:$".contains(c));
        if word.is_empty() || after_path || !matches!(word, "crate" | "super" | "self") {
            at = if word.is_empty() {
                next_char(code, at)
            } else {
                end
            };
            continue;
        }
        let mut base: ModPath = match word {
            "crate" => Vec::new(),
            "self" => module.clone(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        let mut pos = end;
        // Further `super`s climb on.
        while let Some((next, next_end)) = segment(code, pos).filter(|(n, _)| *n == "super") {
            let _ = next;
            base.pop();
            pos = next_end;
        }
        at = path_from(code, pos, base, &mut named);
    }
    named
}

/// The identifier starting at `at` (empty if none) and where it ends.
fn ident(code: &str, at: usize) -> (&str, usize) {
    let end = code[at..]
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(code.len(), |n| at + n);
    (&code[at..end], end)
}

fn next_char(code: &str, at: usize) -> usize {
    code[at..]
        .chars()
        .next()
        .map_or(code.len(), |c| at + c.len_utf8())
}

fn skip_ws(code: &str, at: usize) -> usize {
    code[at..]
        .find(|c: char| !c.is_whitespace())
        .map_or(code.len(), |n| at + n)
}

/// The identifier after a `::` at `at`, and where it ends.
fn segment(code: &str, at: usize) -> Option<(&str, usize)> {
    let p = skip_ws(code, at);
    code[p..].starts_with("::").then(|| {
        let p = skip_ws(code, p + 2);
        ident(code, p)
    })
}

/// Reads the `::a::b` segments (or a `::{..}` group) at `at` onto `base`, records the paths
/// in `named`, and returns where the path ends.
fn path_from(code: &str, mut at: usize, mut base: ModPath, named: &mut Vec<ModPath>) -> usize {
    loop {
        let p = skip_ws(code, at);
        if !code[p..].starts_with("::") {
            break;
        }
        let p = skip_ws(code, p + 2);
        let (next, end) = ident(code, p);
        if !next.is_empty() {
            base.push(next.to_owned());
            at = end;
            continue;
        }
        if code[p..].starts_with('{') {
            return group_from(code, p + 1, &base, named);
        }
        break;
    }
    named.push(base);
    at
}

/// Reads the items of a group whose `{` ends just before `at`, each a path on `base`.
fn group_from(code: &str, mut at: usize, base: &ModPath, named: &mut Vec<ModPath>) -> usize {
    loop {
        at = skip_ws(code, at);
        match code[at..].chars().next() {
            None => return at,
            Some('}') => return at + 1,
            Some(',') => at += 1,
            Some(_) => {
                let (item, end) = ident(code, at);
                if item.is_empty() {
                    at = next_char(code, at);
                    continue;
                }
                let mut path = base.clone();
                if item != "self" {
                    path.push(item.to_owned());
                }
                at = path_from(code, end, path, named);
                // `a as b`, `*`: skip to the next item.
                let rest = code[at..].find([',', '}']).map_or(code.len(), |n| at + n);
                at = rest;
            }
        }
    }
}

/// Edges between the modules `group` maps paths to (a prefix of the path; `None`: not
/// counted), leaving out loops and paths to items rather than modules.
fn edges(
    sources: &[Source],
    group: impl Fn(&ModPath) -> Option<ModPath>,
) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&[String]> = sources
        .iter()
        .flat_map(|s| (1..=s.module.len()).map(|n| &s.module[..n]))
        .collect();
    let name = |path: &ModPath| path.last().cloned().unwrap_or_default();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let Some(from) = group(&source.module) else {
            continue;
        };
        for named in &source.named {
            if let Some(to) = group(named).filter(|to| *to != from && modules.contains(&to[..])) {
                graph.entry(name(&from)).or_default().insert(name(&to));
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the nodes along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut found = stack[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, stack) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// The top-level module of a path, for the graph of a crate's top-level modules.
fn top_level(path: &ModPath) -> Option<ModPath> {
    path.first().map(|m| vec![m.clone()])
}

/// Cycles among the top-level modules of a crate and among the files of each of its folders.
fn cycles(sources: &[Source]) -> Vec<Vec<String>> {
    let mut found: Vec<Vec<String>> = cycle(&edges(sources, top_level)).into_iter().collect();
    let folders: BTreeSet<ModPath> = sources
        .iter()
        .filter(|s| !s.module.is_empty())
        .map(|s| s.module[..s.module.len() - 1].to_vec())
        .collect();
    for folder in folders.iter().filter(|f| !f.is_empty()) {
        let in_folder = |path: &ModPath| {
            (path.len() > folder.len() && path[..folder.len()] == folder[..])
                .then(|| path[..=folder.len()].to_vec())
        };
        found.extend(cycle(&edges(sources, in_folder)));
    }
    found
}

fn crate_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

#[test]
fn no_crate_has_an_import_cycle() {
    let crates = [
        ("proto", crate_dir("proto"), vec![]),
        ("rpc", crate_dir("rpc"), vec![]),
        ("kms", crate_dir("kms"), vec![]),
        ("daemon", crate_dir("daemon"), vec![]),
        ("client", crate_dir("client"), vec!["bin"]),
        (
            "client bin",
            crate_dir("client").join("bin/lockbox"),
            vec![],
        ),
        ("benches", crate_dir("benches"), vec![]),
    ];
    for (name, dir, skip) in crates {
        let sources = sources(&dir, &skip);
        assert!(
            sources.len() > 1,
            "{name}: no sources found in {}",
            dir.display()
        );
        assert_eq!(cycles(&sources), Vec::<Vec<String>>::new(), "{name}");
    }
}

#[test]
fn lockboxd_imports_only_downwards() {
    let layer_of = |module: &str| {
        DAEMON_LAYERS
            .iter()
            .position(|layer| layer.contains(&module))
            .unwrap_or_else(|| panic!("daemon/src/{module} is in no layer of DAEMON_LAYERS"))
    };
    let sources = sources(&crate_dir("daemon"), &[]);
    let graph = edges(&sources, top_level);
    // The reading finds the edges there are, or this test would pass on anything.
    for (from, to) in [
        ("server", "service"),
        ("service", "store"),
        ("store", "model"),
    ] {
        assert!(
            graph.get(from).is_some_and(|tos| tos.contains(to)),
            "{from} -> {to}"
        );
    }
    let mut upwards = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if layer_of(to) <= layer_of(from) {
                upwards.push(format!("{from} -> {to}"));
            }
        }
    }
    assert_eq!(
        upwards,
        Vec::<String>::new(),
        "edges to the same layer or above"
    );
    // Every top-level module has its place.
    for source in &sources {
        if let Some(top) = source.module.first() {
            layer_of(top);
        }
    }
}

/// What the daemon's modules below the front-end may use of `lockbox-proto`: its buffers and
/// byte helpers, id shapes, the service-account token format, `Principal` (a caller as
/// the KMS is told of it) and the backup directory's layout (a file format the store's
/// restore reads); not its messages, frames or error codes.
const PROTO_BELOW_SERVER: &[&str] = &["Wiping", "bytes", "ids", "token", "Principal", "backup"];

/// The daemon's files allowed the whole of `lockbox-proto`: the front-end, the binary, and
/// the link to lockbox-kms (a client of the KMS's own wire).
fn speaks_the_wire(relative: &Path) -> bool {
    relative.starts_with("server")
        || relative == Path::new("main.rs")
        || relative == Path::new("crypto/kms_link.rs")
}

/// The first segment after every `lockbox_proto::` in `code`.
fn proto_uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut named = Vec::new();
    for (at, _) in code.match_indices("lockbox_proto") {
        named.clear();
        path_from(code, at + "lockbox_proto".len(), Vec::new(), &mut named);
        found.extend(named.iter().filter_map(|p| p.first().cloned()));
    }
    found
}

#[test]
fn only_lockboxds_front_end_knows_the_wire_or_the_store() {
    let dir = crate_dir("daemon");
    let mut files = Vec::new();
    collect(&dir, &dir, &[], &mut files);
    let mut misuses = Vec::new();
    for (path, _) in &files {
        let relative = path.strip_prefix(&dir).unwrap();
        if speaks_the_wire(relative) {
            continue;
        }
        let code = strip(&std::fs::read_to_string(path).unwrap());
        for used in proto_uses(&code) {
            if !PROTO_BELOW_SERVER.contains(&used.as_str()) {
                misuses.push(format!("{}: lockbox_proto::{used}", relative.display()));
            }
        }
    }
    assert_eq!(misuses, Vec::<String>::new());
    assert!(
        proto_uses("use lockbox_proto::{Wiping, lockbox::LockboxRequest};")
            == ["Wiping", "lockbox"],
        "the reading finds what a file uses"
    );
    // The front-end calls the service; storage and encryption are the service's business.
    let graph = edges(&sources(&dir, &[]), top_level);
    let server = graph.get("server").cloned().unwrap_or_default();
    assert!(server.contains("service"));
    for below in ["store", "crypto"] {
        assert!(!server.contains(below), "server -> {below}");
    }
}

#[test]
fn the_check_finds_cycles_and_resolves_paths() {
    let module = |p: &str| -> ModPath { p.split("::").map(str::to_owned).collect() };
    let source = |m: &str, code: &str| Source {
        module: module(m),
        named: named_paths(&strip(code), &module(m)),
    };
    // Paths through comments, strings and test modules do not count; groups and chains do.
    let s = source(
        "service::payload",
        "use crate::{model::x, store};\nuse super::super::error::E;\nuse super::read_cache::C;\n\
         // crate::server\nlet s = \"crate::server\";\nlet r = r#\"\"crate::server\"\"#;\n\
         fn f<'a>(c: char) -> bool { c == '\\'' || c == '\"' && crate::iam::x() }\n\
         #[cfg(test)]\nmod tests { use crate::server; }\n",
    );
    let named: BTreeSet<ModPath> = s.named.into_iter().collect();
    let expected: BTreeSet<ModPath> = [
        "model::x",
        "store",
        "error::E",
        "service::read_cache::C",
        "iam::x",
    ]
    .into_iter()
    .map(module)
    .collect();
    assert_eq!(named, expected);
    // A cycle between top-level modules, and one between the files of a folder; paths to
    // items of a crate's root or a folder's `mod.rs` are not edges.
    let acyclic = [
        source("server", "use crate::service::S;"),
        source("service", "use crate::model::M;"),
        source(
            "service::a",
            "use super::b::B; use super::Lockbox; use crate::Root;",
        ),
        source("service::b", "use super::Lockbox;"),
        source("model", "fn m() {}"),
    ];
    assert!(cycles(&acyclic).is_empty());
    let top = [
        source("server", "use crate::service::S;"),
        source("service::a", "use crate::server::H;"),
    ];
    assert_eq!(cycles(&top), vec![vec!["server", "service", "server"]]);
    let siblings = [
        source("service::a", "use super::b::B;"),
        source("service::b", "use crate::service::a::A;"),
    ];
    assert_eq!(cycles(&siblings), vec![vec!["a", "b", "a"]]);
}
