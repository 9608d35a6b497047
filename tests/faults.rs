//! The fault matrix: every mutating operation through a real mount, with one fault at each of
//! the mutating requests it makes (PUT, DELETE), of every kind the network has: the answer lost
//! after the service carried the request out, the connection reset before it, a 500, an answer
//! stalled past the client's timeout. Then the container is read directly by REST: it must
//! hold exactly the operation's result (nothing lost, no stray copies, no conflict or partial
//! siblings), and the operation must have succeeded, as docs/SEMANTICS.md promises for a single
//! fault (every request is retried; a retry that meets its own earlier success knows it).
//!
//! Each case runs in a directory of its own in one container, so one mount serves them all.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// What one blob holds, as far as these tests care: content and the metadata blobmount keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    content: Vec<u8>,
    meta: BTreeMap<String, String>,
}

/// Blob name (below the case directory) to what it holds.
type State = BTreeMap<String, Held>;

fn file(content: &[u8]) -> Held {
    Held {
        content: content.to_vec(),
        meta: BTreeMap::new(),
    }
}

fn with_meta(content: &[u8], meta: &[(&str, &str)]) -> Held {
    Held {
        content: content.to_vec(),
        meta: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn dir_marker() -> Held {
    with_meta(b"", &[("hdi_isfolder", "true")])
}

/// One operation: the blobs it starts from, the shell command (run in the case directory),
/// and the blobs it must leave.
struct Op {
    name: &'static str,
    before: Vec<(&'static str, Held)>,
    command: &'static str,
    after: Vec<(&'static str, Held)>,
}

fn ops() -> Vec<Op> {
    let tree = || {
        vec![
            ("d", dir_marker()),
            ("d/x", file(b"X")),
            ("d/y", file(b"Y")),
            ("d/s/z", file(b"Z")),
        ]
    };
    vec![
        Op {
            name: "create",
            before: vec![],
            command: "printf new > f",
            after: vec![("f", file(b"new"))],
        },
        Op {
            name: "create-empty",
            before: vec![],
            command: ": > e",
            after: vec![("e", file(b""))],
        },
        Op {
            name: "overwrite",
            before: vec![("f", file(b"old content"))],
            command: "printf new > f",
            after: vec![("f", file(b"new"))],
        },
        Op {
            name: "append",
            before: vec![("f", file(b"old"))],
            command: "printf more >> f",
            after: vec![("f", file(b"oldmore"))],
        },
        Op {
            name: "truncate",
            before: vec![("f", file(b"0123456789"))],
            command: "truncate -s 4 f",
            after: vec![("f", file(b"0123"))],
        },
        Op {
            name: "rename-file",
            before: vec![("a", file(b"A"))],
            command: "mv a b",
            after: vec![("b", file(b"A"))],
        },
        Op {
            name: "rename-over",
            before: vec![("a", file(b"A")), ("b", file(b"B"))],
            command: "mv a b",
            after: vec![("b", file(b"A"))],
        },
        Op {
            name: "rename-dir",
            before: tree(),
            command: "mv d e",
            after: vec![
                ("e", dir_marker()),
                ("e/x", file(b"X")),
                ("e/y", file(b"Y")),
                ("e/s/z", file(b"Z")),
            ],
        },
        Op {
            name: "rm-r",
            before: tree(),
            command: "rm -r d",
            after: vec![],
        },
        Op {
            name: "unlink",
            before: vec![("f", file(b"gone"))],
            command: "rm f",
            after: vec![],
        },
        Op {
            name: "mkdir",
            before: vec![],
            command: "mkdir n",
            after: vec![("n", dir_marker())],
        },
        Op {
            name: "rmdir",
            before: vec![("n", dir_marker())],
            command: "rmdir n",
            after: vec![],
        },
        Op {
            name: "chmod",
            before: vec![("f", file(b"x"))],
            command: "chmod 600 f",
            after: vec![("f", with_meta(b"x", &[("mode", "0600")]))],
        },
        Op {
            name: "utimes",
            before: vec![("f", file(b"x"))],
            command: "touch -m -d @1700000000 f",
            after: vec![("f", with_meta(b"x", &[("mtime", "2023-11-14T22:13:20Z")]))],
        },
        Op {
            name: "symlink",
            before: vec![],
            command: "ln -s some/target l",
            after: vec![("l", with_meta(b"some/target", &[("is_symlink", "true")]))],
        },
        Op {
            name: "chown",
            before: vec![("f", file(b"x"))],
            command: "chown 7:8 f",
            after: vec![("f", with_meta(b"x", &[("uid", "7"), ("gid", "8")]))],
        },
        Op {
            name: "mkfifo",
            before: vec![],
            command: "mkfifo -m 0640 p",
            after: vec![("p", with_meta(b"", &[("mode", "10640")]))],
        },
        Op {
            name: "setxattr",
            before: vec![("f", file(b"x"))],
            command: "setfattr -n user.k -v v f",
            after: vec![("f", with_meta(b"x", &[("xattr_6b", "dg==")]))],
        },
        // Not idempotent: a retry must not fail on its own earlier success (ENODATA).
        Op {
            name: "removexattr",
            before: vec![("f", with_meta(b"x", &[("xattr_6b", "dg==")]))],
            command: "setfattr -x user.k f",
            after: vec![("f", file(b"x"))],
        },
    ]
}

/// Operations that read (their expected output is what the same command prints on a local
/// directory with the same files).
fn read_ops() -> Vec<Op> {
    let big = pseudo_random_bytes(300 << 10, 4);
    let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };
    let big: &'static [u8] = leak(big);
    vec![
        Op {
            name: "cat",
            before: vec![("f", file(big))],
            command: "cksum < f",
            after: vec![("f", file(big))],
        },
        Op {
            name: "ls",
            before: vec![("a", file(b"A")), ("b", file(b"BB")), ("d/x", file(b"X"))],
            command: "ls -1A && stat -c '%n %s' a b",
            after: vec![("a", file(b"A")), ("b", file(b"BB")), ("d/x", file(b"X"))],
        },
        Op {
            name: "find",
            before: vec![("d/e/x", file(b"X")), ("d/y", file(b"Y"))],
            command: "find . -type f | sort && cat d/e/x d/y",
            after: vec![("d/e/x", file(b"X")), ("d/y", file(b"Y"))],
        },
    ]
}

/// The faults of the matrix, by name (a body cut short only where answers have one).
fn faults(kind: Kind) -> Vec<(&'static str, Fault)> {
    let mut faults = vec![
        ("lost answer", Fault::LoseAnswer),
        ("reset before", Fault::Reset),
        ("500", Fault::internal_error()),
        // Past the mount's --request-timeout below.
        ("stalled answer", Fault::StallAnswer(Duration::from_secs(3))),
    ];
    if let Kind::Reading = kind {
        faults.push(("truncated body", Fault::TruncateBody { after: 10 }));
    }
    faults
}

/// Metadata keys blobmount writes (others, such as Azurite's own, are not compared).
const KEPT_META: [&str; 7] = [
    "mode",
    "mtime",
    "hdi_isfolder",
    "is_symlink",
    "uid",
    "gid",
    "xattr_6b",
];

/// A case directory `dir`, seeded with `blobs` (and a `.keep` blob, so the directory exists).
fn seed(fx: &Fixture, dir: &str, blobs: &[(&str, Held)]) {
    fx.put(&format!("{dir}/.keep"), b"");
    for (name, held) in blobs {
        let meta: Vec<(&str, &str)> = held
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        fx.rest.put_blob_with_metadata(
            &fx.container,
            &format!("{dir}/{name}"),
            &held.content,
            &meta,
        );
    }
}

/// What the container holds under `dir`, read directly by REST.
fn state(fx: &Fixture, dir: &str) -> State {
    let prefix = format!("{dir}/");
    fx.names(&prefix)
        .into_iter()
        .filter_map(|name| {
            let rel = name.strip_prefix(&prefix)?.to_string();
            if rel == ".keep" {
                return None;
            }
            let props = fx.rest.blob_properties(&fx.container, &name)?;
            let content = fx.blob(&name)?;
            let meta = props
                .metadata
                .into_iter()
                .filter(|(k, _)| KEPT_META.contains(&k.as_str()))
                .collect();
            Some((rel, Held { content, meta }))
        })
        .collect()
}

fn expected(blobs: &[(&str, Held)]) -> State {
    blobs
        .iter()
        .map(|(n, h)| (n.to_string(), h.clone()))
        .collect()
}

/// Which requests a matrix puts its faults on.
#[derive(Clone, Copy)]
enum Kind {
    /// PUT and DELETE: the writes.
    Mutating,
    /// GET and HEAD, listings included: the reads.
    Reading,
}

/// Whether a request of `kind` is about `dir` (a blob under it, or a listing of it).
fn touches(kind: Kind, r: &RecordedRequest, container: &str, dir: &str) -> bool {
    let method = match kind {
        Kind::Mutating => r.method == "PUT" || r.method == "DELETE",
        Kind::Reading => r.method == "GET" || r.method == "HEAD",
    };
    let under = r.decoded_path().contains(&format!("/{container}/{dir}/"))
        || (r.is_list()
            && r.query_param("prefix")
                .is_some_and(|p| p.starts_with(&format!("{dir}/"))));
    method && under
}

/// Runs `op` in a fresh directory with the `k`-th request of `kind` (1-based) meeting `fault`
/// (none for `k == 0`); returns the command's outcome (its stdout) and how many requests of
/// that kind it made.
fn run_case(
    fx: &Fixture,
    m: &Mount,
    op: &Op,
    dir: &str,
    (kind, k): (Kind, usize),
    fault: &Fault,
) -> (Result<String, String>, usize) {
    seed(fx, dir, &op.before);
    let seen = Arc::new(AtomicUsize::new(0));
    let (container, d) = (fx.container.clone(), dir.to_string());
    let counter = seen.clone();
    fx.proxy.fail_next(
        usize::from(k > 0),
        move |r| {
            touches(kind, r, &container, &d) && counter.fetch_add(1, Ordering::SeqCst) + 1 == k
        },
        fault.clone(),
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(op.command)
        .current_dir(m.path().join(dir))
        .output()
        .unwrap();
    let pending = fx.proxy.pending_faults();
    fx.proxy.clear_rules();
    let result = if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert!(
        k == 0 || pending == 0,
        "{} {dir}: the fault was never met",
        op.name
    );
    let made = fx
        .proxy
        .count(|r| touches(kind, r, &fx.container, dir) && !r.injected);
    (result, made)
}

/// The whole matrix for the operations whose names are given, with faults on their requests
/// of `kind`.
fn matrix(kind: Kind, names: &[&str]) {
    let fx = Fixture::writable("faults");
    let m = fx.mount(&["--request-timeout", "1s"]);
    let mut failures = Vec::new();
    let mut cases = 0;
    let all = ops().into_iter().chain(read_ops()).collect::<Vec<_>>();
    for op in all.iter().filter(|o| names.contains(&o.name)) {
        // Without faults first: the requests it makes, and that it works at all.
        let base = format!("{}-0", op.name);
        let (result, n) = run_case(&fx, &m, op, &base, (kind, 0), &Fault::Reset);
        let output = result.unwrap_or_else(|e| panic!("{} without faults: {e}", op.name));
        assert_eq!(
            state(&fx, &base),
            expected(&op.after),
            "{} without faults",
            op.name
        );
        assert!(n > 0, "{} made no request of the kind", op.name);
        for k in 1..=n {
            for (fault_name, fault) in faults(kind) {
                cases += 1;
                let dir = format!("{}-{k}-{}", op.name, fault_name.replace(' ', "-"));
                let (result, _) = run_case(&fx, &m, op, &dir, (kind, k), &fault);
                let got = state(&fx, &dir);
                let want = expected(&op.after);
                if result.as_ref() != Ok(&output) || got != want {
                    failures.push(format!(
                        "{}: {fault_name} at mutating request {k} of {n}: {result:?}\n  \
                         container: {got:?}\n  expected:  {want:?}",
                        op.name
                    ));
                }
            }
        }
    }
    eprintln!("{cases} cases, {} failed", failures.len());
    let log = m.log();
    for sig in signature_forms(&fx.url()) {
        assert!(!log.contains(&sig), "the signature is in the log");
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn files_survive_one_fault_at_any_request() {
    matrix(
        Kind::Mutating,
        &["create", "create-empty", "overwrite", "append", "truncate"],
    );
}

#[test]
fn renames_survive_one_fault_at_any_request() {
    matrix(
        Kind::Mutating,
        &["rename-file", "rename-over", "rename-dir"],
    );
}

#[test]
fn removals_survive_one_fault_at_any_request() {
    matrix(Kind::Mutating, &["rm-r", "unlink", "rmdir"]);
}

#[test]
fn directories_links_and_attributes_survive_one_fault_at_any_request() {
    matrix(
        Kind::Mutating,
        &[
            "mkdir",
            "chmod",
            "utimes",
            "symlink",
            "chown",
            "mkfifo",
            "setxattr",
            "removexattr",
        ],
    );
}

#[test]
fn reads_and_the_reads_of_writes_survive_one_fault_at_any_request() {
    matrix(
        Kind::Reading,
        &["cat", "ls", "find", "append", "rename-file"],
    );
}
