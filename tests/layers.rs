//! The crate's top-level modules depend on each other one way: no import circles. Read from
//! the source (every `crate::MODULE` path outside test code), so a new `use` that closes a
//! circle fails here with the circle it makes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`src/fs/write.rs` → `fs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The code of a file that builds outside tests: test files, and everything from the first
/// `#[cfg(test)]` on (test modules sit at the end of a file), left out.
fn non_test_code(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    if name == "tests.rs" || name.ends_with("_tests.rs") || name.ends_with("_test.rs") {
        return None;
    }
    let text = std::fs::read_to_string(file).unwrap();
    let code = match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    // Comments name modules without depending on them.
    Some(
        code.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Module → the other top-level modules its code names as `crate::OTHER`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let (Some(module), Some(code)) = (module_of(&src, &file), non_test_code(&file)) else {
            continue;
        };
        let entry = deps.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
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

/// A circle through `start`, if there is one: the modules along it.
fn circle(
    deps: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in deps.get(at).into_iter().flatten() {
        if next == start {
            let mut c = path.clone();
            c.push(start.to_string());
            return Some(c);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(c) = circle(deps, start, next, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn top_level_modules_have_no_import_circles() {
    let deps = graph();
    assert!(
        deps.get("fs").is_some_and(|d| d.contains("blob")),
        "the reader finds dependencies: {deps:?}"
    );
    assert_no_circle(&deps, "src");
}

/// Fails with the first circle found in `deps` (of the modules in `place`).
fn assert_no_circle(deps: &BTreeMap<String, BTreeSet<String>>, place: &str) {
    for module in deps.keys() {
        if let Some(c) = circle(deps, module, module, &mut vec![module.clone()]) {
            panic!(
                "import circle in {place}: {}\nall: {deps:#?}",
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn the_lower_layers_know_nothing_of_the_filesystem() {
    let deps = graph();
    for low in ["sas", "credential", "blob", "cache", "token", "metrics"] {
        for high in ["fs", "fuse", "mount", "options", "cli"] {
            assert!(
                !deps.get(low).is_some_and(|d| d.contains(high)),
                "{low} depends on {high}: {:?}",
                deps[low]
            );
        }
    }
}

#[test]
fn the_blob_layer_and_the_read_path_speak_no_errno() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for dir in ["blob", "cache", "credential.rs"] {
        let mut files = Vec::new();
        let path = src.join(dir);
        if path.is_dir() {
            sources(&path, &mut files);
        } else {
            files.push(path);
        }
        for file in files {
            if let Some(code) = non_test_code(&file) {
                assert!(
                    !code.contains("libc::E"),
                    "{} maps to errno: that is fs::error's job",
                    file.display()
                );
            }
        }
    }
}

/// The sibling modules of one directory module (`src/fs`, `src/fs/upload`) that each file
/// names, through `super::NAME`, `super::{NAME, …}` or `crate::fs::NAME` (`mod.rs`, the hub that
/// declares them, left out).
fn sibling_graph(dir: &Path, crate_path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let stem = |p: &Path| p.file_stem().unwrap().to_str().unwrap().to_string();
    let mut nodes: BTreeSet<String> = files.iter().map(|f| stem(f)).collect();
    // Directory modules (`upload/`) are siblings too.
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            nodes.insert(stem(&path));
        }
    }
    nodes.remove("mod");
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = stem(&file);
        let Some(code) = non_test_code(&file).filter(|_| module != "mod") else {
            continue;
        };
        let entry = deps.entry(module.clone()).or_default();
        let mut named = |name: &str| {
            if nodes.contains(name) && name != module {
                entry.insert(name.to_string());
            }
        };
        for prefix in ["super::".to_string(), format!("{crate_path}::")] {
            for (i, _) in code.match_indices(&prefix) {
                let rest = &code[i + prefix.len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `super::{a, b::c, d}`: the first segment of each path.
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    for item in group.split(',') {
                        named(item.trim().split("::").next().unwrap_or(""));
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    named(&name);
                }
            }
        }
    }
    deps
}

#[test]
fn the_parts_of_the_filesystem_core_have_no_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (dir, crate_path) in [("fs", "crate::fs"), ("fs/upload", "crate::fs::upload")] {
        let deps = sibling_graph(&src.join(dir), crate_path);
        assert!(
            deps.get("write").is_some_and(|d| d.contains("open_files"))
                || deps.get("commit").is_some_and(|d| d.contains("plan")),
            "the reader finds dependencies in {dir}: {deps:?}"
        );
        assert_no_circle(&deps, dir);
    }
}

/// The parts of `fs` that own state (and their locks) know nothing of the `Fs` that
/// coordinates them: they are used by the operations, never reach into the others' state.
#[test]
fn the_parts_of_the_filesystem_core_know_nothing_of_fs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fs");
    let parts = [
        "dircache.rs",
        "error.rs",
        "gate.rs",
        "handles.rs",
        "inode.rs",
        "lifecycle.rs",
        "metadata.rs",
        "open_files.rs",
        "recovery.rs",
        "unlinked.rs",
        "upload",
    ];
    for part in parts {
        let path = src.join(part);
        let mut files = Vec::new();
        if path.is_dir() {
            sources(&path, &mut files);
        } else {
            files.push(path);
        }
        for file in files {
            let Some(code) = non_test_code(&file) else {
                continue;
            };
            let names_fs = code
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == "Fs");
            assert!(
                !names_fs,
                "{} names the coordinator Fs: a part owns its own state",
                file.display()
            );
        }
    }
}
