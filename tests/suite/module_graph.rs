//! The module graph (issue 9): no top-level module of the crate imports a
//! module that imports it back. Read from the source, so a `use` added
//! anywhere shows up here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each top-level module names as `crate::<module>`
/// (binary-only `cli` and `main` use the library by its name, so they are
/// outside this graph but for `cli`'s own `crate::` paths).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = deps.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                entry.insert(name);
            }
        }
    }
    deps
}

/// The pairs of modules that import each other, `a < b`.
fn cycles(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (a, outs) in deps {
        for b in outs {
            if a < b && deps.get(b).is_some_and(|o| o.contains(a)) {
                found.push(format!("{a} <-> {b}"));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let deps = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The graph is read: the modules issue 9 named are in it.
    for m in [
        "server",
        "config",
        "clients",
        "authority",
        "oauth",
        "client",
        "session",
        "jwks",
    ] {
        assert!(deps.contains_key(m), "{m} not found in src/: {:?}", deps.keys());
    }
    assert!(deps["authority"].contains("oauth") && deps["server"].contains("authority"));
    assert_eq!(cycles(&deps), Vec::<String>::new(), "modules that import each other");
}

#[test]
fn the_reader_finds_a_cycle_in_a_file_tree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("a/inner.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "fn f() { crate::a::g() }\n").unwrap();
    std::fs::write(dir.path().join("c.rs"), "use crate::a::X;\n").unwrap();
    let deps = graph(dir.path());
    assert_eq!(cycles(&deps), ["a <-> b"]);
}
