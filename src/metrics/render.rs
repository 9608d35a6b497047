//! The two ways metrics are shown: the Prometheus text exposition format (0.0.4) and a
//! one-line summary for the log.

use std::fmt::Write;

use super::{Gauges, Metrics, Snapshot};

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Label set (`{op="get_blob"}` or "") and value.
    samples: Vec<(String, String)>,
}

fn single(name: &'static str, kind: &'static str, help: &'static str, value: u64) -> Family {
    Family {
        name,
        help,
        kind,
        samples: vec![(String::new(), value.to_string())],
    }
}

fn families(s: &Snapshot, g: &Gauges) -> Vec<Family> {
    let (counter, gauge) = ("counter", "gauge");
    let mut f = vec![
        Family {
            name: "blobmount_requests_total",
            help: "Requests to the Blob service, one per attempt (retries included), by operation and HTTP status (error: no answer).",
            kind: counter,
            samples: s
                .requests
                .iter()
                .map(|r| {
                    (
                        format!("{{op=\"{}\",status=\"{}\"}}", r.op.label(), r.status),
                        r.count.to_string(),
                    )
                })
                .collect(),
        },
        Family {
            name: "blobmount_retries_total",
            help: "Attempts after the first of one operation (after a transient failure, or with a new SAS).",
            kind: counter,
            samples: s
                .retries
                .iter()
                .map(|(op, n)| (format!("{{op=\"{}\"}}", op.label()), n.to_string()))
                .collect(),
        },
        single("blobmount_bytes_received_total", counter,
            "Body bytes received from the Blob service (downloads, listings, error answers).",
            s.bytes_received),
        single("blobmount_bytes_sent_total", counter,
            "Body bytes sent to the Blob service (blocks, blobs, block lists).",
            s.bytes_sent),
        single("blobmount_cache_hits_total", counter,
            "Blocks reads needed that were in the block cache.",
            s.cache_hits),
        single("blobmount_cache_misses_total", counter,
            "Blocks reads needed that were not in the block cache (fetched, or waited for while being fetched).",
            s.cache_misses),
        single("blobmount_cache_hit_bytes_total", counter,
            "Bytes of reads served from blocks that were in the block cache.",
            s.cache_hit_bytes),
        single("blobmount_cache_miss_bytes_total", counter,
            "Bytes of reads served from blocks that were not in the block cache.",
            s.cache_miss_bytes),
        single("blobmount_files_fetched_ahead_total", counter,
            "Small files fetched ahead of a program reading their directory in listing order.",
            s.files_fetched_ahead),
        single("blobmount_cache_bytes", gauge,
            "Bytes the block cache holds: cached blocks and blocks being fetched.",
            g.cache_bytes),
        single("blobmount_cache_budget_bytes", gauge,
            "Size of the block cache (--cache-size).",
            g.cache_budget_bytes),
        single("blobmount_dirty_bytes", gauge,
            "Write buffer held by blocks written and not yet uploaded, uploads in progress included (each counts its full block size, at most half the buffer).",
            g.dirty_bytes),
        single("blobmount_write_buffer_bytes", gauge,
            "Size of the write buffer (--write-buffer).",
            g.write_buffer_bytes),
        single("blobmount_open_files", gauge,
            "Open file handles.",
            g.open_files),
        single("blobmount_files_open_for_writing", gauge,
            "Files open for writing (each has one local copy, shared by its write handles).",
            g.files_open_for_writing),
        single("blobmount_resume_pending_files", gauge,
            "Files an earlier mount left uncommitted in its staging journal, still to be finished.",
            g.resume_pending_files),
        single("blobmount_resume_committed_files", gauge,
            "Files an earlier mount left uncommitted, committed under their name by this one.",
            g.resume_committed_files),
        single("blobmount_resume_saved_beside_files", gauge,
            "Files an earlier mount left uncommitted, saved beside their blob (.partial- or .conflict-).",
            g.resume_saved_beside_files),
        single("blobmount_resume_left_files", gauge,
            "Files an earlier mount left that could not be finished (refused or failed): left in its journal.",
            g.resume_left_files),
        single("blobmount_resume_blocks_kept", gauge,
            "Blocks of resumed files found in the service, not sent again.",
            g.resume_blocks_kept),
        single("blobmount_resume_blocks_sent", gauge,
            "Blocks of resumed files sent again from their local copy.",
            g.resume_blocks_sent),
        single("blobmount_write_blocks_reused", gauge,
            "Blocks written here that an interrupted write had staged with the same bytes: committed under its id, not sent again.",
            g.write_blocks_reused),
        single("blobmount_write_bytes_reused", gauge,
            "Bytes of those blocks (not sent again).",
            g.write_bytes_reused),
        single("blobmount_write_back_pending_files", gauge,
            "With --write-back: files closed and not committed yet (on local disk, in the journal).",
            g.write_back_pending_files),
        single("blobmount_write_back_pending_bytes", gauge,
            "With --write-back: bytes of the files closed and not committed yet.",
            g.write_back_pending_bytes),
        single("blobmount_write_back_committed_files", gauge,
            "With --write-back: files committed after their close returned.",
            g.write_back_committed_files),
        single("blobmount_write_back_failed_files", gauge,
            "With --write-back: files whose commit after close failed for good (saved as a conflict copy or locally; see the log).",
            g.write_back_failed_files),
    ];
    if let Some(secs) = g.token_seconds_left {
        f.push(Family {
            name: "blobmount_token_seconds_left",
            help: "Seconds until the SAS in force expires (negative: expired); absent when it has no expiry.",
            kind: gauge,
            samples: vec![(String::new(), secs.to_string())],
        });
    }
    f.sort_by_key(|f| f.name);
    f
}

/// The metrics in the Prometheus text exposition format 0.0.4: families sorted by name,
/// each with `# HELP` and `# TYPE`, counters named `*_total`. Request counters appear once
/// their (operation, status) has been seen; retries appear for every operation.
pub fn render_prometheus(m: &Metrics, g: &Gauges) -> String {
    let mut out = String::new();
    for f in families(&m.snapshot(), g) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in &f.samples {
            let _ = writeln!(out, "{}{labels} {value}", f.name);
        }
    }
    out
}

/// Request counts shown by [`summary`] before "…".
const SUMMARY_REQUESTS: usize = 6;

/// One line for the log, e.g. `requests 1234 (get_blob 206×1000, put_block 201×200, …),
/// retries 3 (get_blob 3), in 1.2 GiB, out 300 MiB, cache hits 90% of 1000 blocks (…),
/// cache 1.0 GiB of 2.0 GiB, dirty 0 B of 256 MiB, open files 3 (1 for writing), token
/// 3h12m left`.
pub fn summary(m: &Metrics, g: &Gauges) -> String {
    let s = m.snapshot();
    let mut out = format!("requests {}", s.total_requests());
    let mut by_count: Vec<_> = s.requests.iter().collect();
    by_count.sort_by(|a, b| b.count.cmp(&a.count).then(a.op.cmp(&b.op)));
    if !by_count.is_empty() {
        let mut parts: Vec<String> = by_count
            .iter()
            .take(SUMMARY_REQUESTS)
            .map(|r| format!("{} {}×{}", r.op.label(), r.status, r.count))
            .collect();
        if by_count.len() > SUMMARY_REQUESTS {
            parts.push("…".into());
        }
        let _ = write!(out, " ({})", parts.join(", "));
    }
    let _ = write!(out, ", retries {}", s.total_retries());
    let retried: Vec<String> = s
        .retries
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{} {n}", op.label()))
        .collect();
    if !retried.is_empty() {
        let _ = write!(out, " ({})", retried.join(", "));
    }
    let _ = write!(
        out,
        ", in {}, out {}",
        bytes(s.bytes_received),
        bytes(s.bytes_sent)
    );
    let blocks = s.cache_hits + s.cache_misses;
    match s.cache_hits.saturating_mul(100).checked_div(blocks) {
        Some(percent) => {
            let _ = write!(
                out,
                ", cache hits {percent}% of {blocks} blocks ({} of {})",
                bytes(s.cache_hit_bytes),
                bytes(s.cache_hit_bytes + s.cache_miss_bytes)
            );
        }
        None => out.push_str(", cache hits - (no reads)"),
    }
    let _ = write!(
        out,
        ", cache {} of {}, dirty {} of {}, open files {} ({} for writing), token {}",
        bytes(g.cache_bytes),
        bytes(g.cache_budget_bytes),
        bytes(g.dirty_bytes),
        bytes(g.write_buffer_bytes),
        g.open_files,
        g.files_open_for_writing,
        token(g.token_seconds_left)
    );
    out
}

/// `512 B`, `1.5 KiB`, `300 MiB`, `1.2 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if v < 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.0} {}", UNITS[unit]),
    }
}

/// `3h12m`, `45m`, `30s`, `2d3h`: the two largest units.
fn duration(secs: u64) -> String {
    let units = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.concat()
}

fn token(seconds_left: Option<i64>) -> String {
    match seconds_left {
        None => "without expiry".into(),
        Some(s) if s >= 0 => format!("{} left", duration(s as u64)),
        Some(s) => format!("expired {} ago", duration(s.unsigned_abs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Op;

    fn sample() -> (Metrics, Gauges) {
        let m = Metrics::new();
        for _ in 0..3 {
            m.request(Op::GetBlob, Some(206));
        }
        m.request(Op::GetBlob, Some(503));
        m.request(Op::PutBlock, Some(201));
        m.request(Op::ListBlobs, None);
        m.retry(Op::GetBlob);
        m.received(3 << 20);
        m.sent(1024);
        m.cache_hit(4096);
        m.cache_hit(4096);
        m.cache_hit(4096);
        m.cache_miss(100);
        let g = Gauges {
            cache_bytes: 8192,
            cache_budget_bytes: 1 << 30,
            dirty_bytes: 4 << 20,
            write_buffer_bytes: 256 << 20,
            open_files: 3,
            files_open_for_writing: 1,
            token_seconds_left: Some(3 * 3600 + 12 * 60 + 5),
            resume_pending_files: 2,
            resume_committed_files: 0,
            resume_saved_beside_files: 0,
            resume_left_files: 0,
            resume_blocks_kept: 5,
            resume_blocks_sent: 0,
            write_blocks_reused: 2,
            write_bytes_reused: 16,
            write_back_pending_files: 3,
            write_back_pending_bytes: 300,
            write_back_committed_files: 7,
            write_back_failed_files: 0,
        };
        (m, g)
    }

    #[test]
    fn prometheus_text_has_help_type_and_values() {
        let (m, g) = sample();
        let text = render_prometheus(&m, &g);
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# HELP blobmount_requests_total Requests to the Blob service, one per attempt (retries included), by operation and HTTP status (error: no answer).",
            "# TYPE blobmount_requests_total counter",
            "blobmount_requests_total{op=\"get_blob\",status=\"206\"} 3",
            "blobmount_requests_total{op=\"get_blob\",status=\"503\"} 1",
            "blobmount_requests_total{op=\"list_blobs\",status=\"error\"} 1",
            "blobmount_requests_total{op=\"put_block\",status=\"201\"} 1",
            "# TYPE blobmount_retries_total counter",
            "blobmount_retries_total{op=\"get_blob\"} 1",
            "blobmount_retries_total{op=\"put_block\"} 0",
            "blobmount_bytes_received_total 3145728",
            "blobmount_bytes_sent_total 1024",
            "blobmount_cache_hits_total 3",
            "blobmount_cache_misses_total 1",
            "blobmount_cache_hit_bytes_total 12288",
            "blobmount_cache_miss_bytes_total 100",
            "# TYPE blobmount_cache_bytes gauge",
            "blobmount_cache_bytes 8192",
            "blobmount_cache_budget_bytes 1073741824",
            "blobmount_dirty_bytes 4194304",
            "blobmount_write_buffer_bytes 268435456",
            "blobmount_open_files 3",
            "blobmount_files_open_for_writing 1",
            "blobmount_resume_pending_files 2",
            "blobmount_resume_blocks_kept 5",
            "blobmount_write_bytes_reused 16",
            "# TYPE blobmount_token_seconds_left gauge",
            "blobmount_token_seconds_left 11525",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(
            !text.contains("status=\"200\""),
            "unseen pairs are left out"
        );
        // Every family: HELP, then TYPE, then its samples; families sorted; counters _total.
        let mut names = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let help = lines[i].strip_prefix("# HELP ").expect(lines[i]);
            let name = help.split(' ').next().unwrap();
            let kind = lines[i + 1]
                .strip_prefix(&format!("# TYPE {name} "))
                .expect(lines[i + 1]);
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
            i += 2;
            while i < lines.len() && !lines[i].starts_with('#') {
                let (series, value) = lines[i].rsplit_once(' ').unwrap();
                assert!(series == name || series.starts_with(&format!("{name}{{")));
                value.parse::<i64>().unwrap();
                i += 1;
            }
            names.push(name);
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 28);
        assert!(text.ends_with('\n'));
        assert_eq!(text, render_prometheus(&m, &g), "deterministic");
    }

    #[test]
    fn prometheus_text_without_token_expiry_or_traffic() {
        let text = render_prometheus(&Metrics::new(), &Gauges::default());
        assert!(!text.contains("token"));
        assert!(text.contains("# TYPE blobmount_requests_total counter\n# HELP"));
        assert!(text.contains("blobmount_retries_total{op=\"copy_blob\"} 0\n"));
        assert!(text.contains("\nblobmount_cache_hits_total 0\n"));
        let g = Gauges {
            token_seconds_left: Some(-5),
            ..Default::default()
        };
        assert!(
            render_prometheus(&Metrics::new(), &g).contains("\nblobmount_token_seconds_left -5\n")
        );
    }

    #[test]
    fn summary_line() {
        let (m, g) = sample();
        assert_eq!(
            summary(&m, &g),
            "requests 6 (get_blob 206×3, get_blob 503×1, list_blobs error×1, put_block 201×1), \
             retries 1 (get_blob 1), in 3.0 MiB, out 1.0 KiB, cache hits 75% of 4 blocks \
             (12 KiB of 12 KiB), cache 8.0 KiB of 1.0 GiB, dirty 4.0 MiB of 256 MiB, \
             open files 3 (1 for writing), token 3h12m left"
        );
        assert_eq!(
            summary(&Metrics::new(), &Gauges::default()),
            "requests 0, retries 0, in 0 B, out 0 B, cache hits - (no reads), cache 0 B of 0 B, \
             dirty 0 B of 0 B, open files 0 (0 for writing), token without expiry"
        );
        let m = Metrics::new();
        for (i, op) in Op::ALL.iter().enumerate() {
            for _ in 0..=i {
                m.request(*op, Some(200));
            }
        }
        let line = summary(&m, &Gauges::default());
        assert!(
            line.starts_with("requests 66 (set_blob_metadata 200×11, put_block_list 200×10, "),
            "{line}"
        );
        assert!(line.contains("list_blobs 200×6, …), retries 0"), "{line}");
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(300 << 20), "300 MiB");
        assert_eq!(bytes((12 << 30) / 10), "1.2 GiB");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(30), "30s");
        assert_eq!(duration(45 * 60), "45m");
        assert_eq!(duration(3 * 3600 + 12 * 60 + 59), "3h12m");
        assert_eq!(duration(2 * 86400 + 3 * 3600 + 7), "2d3h");
        assert_eq!(duration(86400 + 59), "1d");
        assert_eq!(token(Some(-300)), "expired 5m ago");
        assert_eq!(token(None), "without expiry");
    }
}
