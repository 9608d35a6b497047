use std::path::{Path, PathBuf};
use std::time::Duration;

use super::resolve::resolve;
use super::*;

/// A valid value for every option: adding an option without a sample here fails the tests
/// below, which check that every option goes through every layer.
fn sample(name: &str) -> &'static str {
    match name {
        "config" => "/etc/blobmount/other.toml",
        "foreground" | "read-only" | "allow-other" | "allow-root" | "allow-non-empty"
        | "noexec" => "true",
        "uid" | "gid" | "prefetch-files" => "42",
        "umask" | "file-mode" | "dir-mode" => "0700",
        "cache-size" | "block-size" | "write-buffer" | "write-back-limit" => "8M",
        "metadata-ttl"
        | "sas-command-timeout"
        | "refresh-before"
        | "refresh-interval"
        | "request-timeout"
        | "shutdown-timeout"
        | "write-back" => "7s",
        "staging-dir" | "sas-file" | "log-file" => "/x/y",
        "sas-command" => "echo token",
        "metrics-addr" => "127.0.0.1:9180",
        "log-level" => "debug",
        other => panic!("no sample value for option --{other}: add one"),
    }
}

fn every_option_but(skip: &str) -> Settings {
    let args: Vec<String> = option_names()
        .into_iter()
        .filter(|n| n != skip)
        .map(|n| format!("--{n}={}", sample(&n)))
        .collect();
    Settings::from_long_args(&args, "test").unwrap()
}

#[test]
fn every_option_crosses_every_layer() {
    let full = every_option_but("sas-command");
    assert_eq!(Settings::default().over(full.clone()), full);
    assert_eq!(full.clone().over(Settings::default()), full);
    // Debug shows every field: only the one left out is `None`, so every other was reached.
    assert_eq!(format!("{full:?}").matches("None").count(), 1, "{full:?}");
    let full = every_option_but("sas-file");
    assert_eq!(Settings::default().over(full.clone()), full);
}

#[test]
fn upper_layer_wins_and_token_sources_replace_each_other() {
    let upper = Settings::from_long_args(&["--cache-size=1G".into()], "t").unwrap();
    let lower = Settings::from_long_args(
        &[
            "--cache-size=2G".into(),
            "--uid=5".into(),
            "--sas-command=x".into(),
        ],
        "t",
    )
    .unwrap();
    let m = upper.over(lower.clone());
    assert_eq!(m.cache_size, Some(1 << 30));
    assert_eq!(m.uid, Some(5));
    assert_eq!(m.sas_command.as_deref(), Some("x"));
    let upper = Settings::from_long_args(&["--sas-file=/f".into()], "t").unwrap();
    let m = upper.over(lower);
    assert_eq!(m.sas_file.as_deref(), Some(Path::new("/f")));
    assert_eq!(m.sas_command, None);
    let e = Settings::from_long_args(&["--sas-file=/f".into(), "--sas-command=x".into()], "t")
        .unwrap_err();
    assert!(e.contains("cannot be used with"), "{e}");
}

#[test]
fn modes() {
    assert_eq!(parse_mode("0644").unwrap(), 0o644);
    assert_eq!(parse_mode("755").unwrap(), 0o755);
    assert!(parse_mode("999").is_err());
    assert!(parse_mode("17777").is_err());
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn named_mount_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        r#"
cache_size = "64M"
metadata_ttl = "3s"
[mount.data]
url = "http://127.0.0.1:1/acct/data"
mountpoint = "/mnt/data"
sas_file = "data.sas"
options = "ro,umask=077"
metadata_ttl = "4s"
"#,
    );
    let cli = Settings {
        config: Some(path.clone()),
        metadata_ttl: Some(Duration::from_secs(9)),
        ..Default::default()
    };
    let r = resolve("data", None, cli).unwrap();
    let o = r.opts;
    assert_eq!(o.sas_url, "http://127.0.0.1:1/acct/data");
    assert_eq!(o.mountpoint, Path::new("/mnt/data"));
    assert_eq!(o.name.as_deref(), Some("data"));
    assert!(o.read_only);
    assert_eq!((o.file_mode, o.dir_mode), (0o600, 0o700));
    assert_eq!(o.cache_size, 64 << 20);
    // Command line over [mount.data] over the top level.
    assert_eq!(o.metadata_ttl, Duration::from_secs(9));
    assert_eq!(o.sas_file, Some(dir.path().join("data.sas")));
    assert!(!r.foreground);
    // A mountpoint given wins over the file's.
    let cli = Settings {
        config: Some(path.clone()),
        ..Default::default()
    };
    let r = resolve("data", Some("/elsewhere".into()), cli.clone()).unwrap();
    assert_eq!(r.opts.mountpoint, Path::new("/elsewhere"));
    assert_eq!(r.opts.metadata_ttl, Duration::from_secs(4));
    // A URL source takes the top level only.
    let r = resolve("http://127.0.0.1:1/acct/c", Some("/m".into()), cli.clone()).unwrap();
    assert_eq!(r.opts.metadata_ttl, Duration::from_secs(3));
    assert!(!r.opts.read_only);
    assert_eq!(r.opts.name, None);
    // Unknown names say which exist.
    let e = resolve("nope", None, cli).unwrap_err().message;
    assert!(
        e.contains("no [mount.nope]") && e.contains("(it has data)"),
        "{e}"
    );
}

#[test]
fn defaults_and_missing_pieces() {
    let r = resolve("http://h/a/c", Some("/m".into()), Settings::default()).unwrap();
    assert_eq!((r.opts.file_mode, r.opts.dir_mode), (0o644, 0o755));
    assert_eq!(r.opts.cache_size, 256 << 20);
    assert_eq!(r.opts.shutdown_timeout, Duration::from_secs(60));
    let e = resolve("http://h/a/c", None, Settings::default()).unwrap_err();
    assert!(e.message.contains("MOUNTPOINT is missing"));
    let cli = Settings {
        config: Some("/nonexistent/blobmount.toml".into()),
        ..Default::default()
    };
    let e = resolve("data", None, cli).unwrap_err().message;
    assert!(
        e.contains("cannot read config file /nonexistent/blobmount.toml"),
        "{e}"
    );
}

#[test]
fn a_umask_wins_over_modes_from_a_lower_layer() {
    let config = Settings::from_long_args(&["--file-mode=0644".into()], "t").unwrap();
    let fstab = Settings::from_long_args(&["--umask=077".into()], "t").unwrap();
    let m = fstab.over(config);
    assert_eq!((m.file_mode, m.dir_mode), (Some(0o600), Some(0o700)));
    // Within one layer, explicit modes win over its umask.
    let one =
        Settings::from_long_args(&["--umask=077".into(), "--file-mode=0640".into()], "t").unwrap();
    let m = one.over(Settings::default());
    assert_eq!((m.file_mode, m.dir_mode), (Some(0o640), Some(0o700)));
}

#[test]
fn a_mistyped_sas_url_is_shown_without_its_signature() {
    for source in [
        "https:acct.blob.core.windows.net/c?sv=1&sig=SECRETSIG",
        "c?sig=SECRETSIG",
    ] {
        let e = resolve(source, Some("/m".into()), Settings::default()).unwrap_err();
        assert!(!e.message.contains("SECRETSIG"), "{}", e.message);
    }
}

#[test]
fn the_readme_option_table_names_every_option_and_no_other() {
    let readme = include_str!("../../README.md");
    let table = readme
        .split("### Options")
        .nth(1)
        .and_then(|s| s.split("\n\n").find(|p| p.starts_with("| option")))
        .expect("README has an option table");
    let documented: std::collections::BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .filter_map(|t| t.strip_prefix("--"))
                .map(|t| t.split(' ').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let options: std::collections::BTreeSet<String> = option_names().into_iter().collect();
    let missing: Vec<_> = options.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&options).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README's option table lacks {missing:?} and names unknown {unknown:?}"
    );
}
