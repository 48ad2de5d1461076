//! The `strata` client commands against a real `strata serve`: topic
//! administration, produce/consume round trips with keys and headers,
//! consumer group lag and offset resets, and the one-line errors.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `strata serve` on a free port with its own data directory, killed on drop.
struct Server {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "strata serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Runs `strata <args> --bootstrap-server <this server>` with `stdin`.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .args(["--bootstrap-server", &self.bootstrap])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, "")
    }

    fn ok_with(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "strata {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, "");
        assert!(!out.status.success(), "strata {args:?} succeeded");
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn topics_are_created_listed_described_altered_and_deleted() {
    let s = Server::start();
    let created = s.ok(&[
        "topic",
        "create",
        "--topic",
        "orders",
        "--partitions",
        "6",
        "--config",
        "retention.ms=3600000",
    ]);
    assert_eq!(created, "Created topic orders.\n");
    let again = s.fails(&["topic", "create", "--topic", "orders", "--partitions", "6"]);
    assert_eq!(again, "error: topic 'orders' already exists\n");
    s.ok(&["topic", "create", "--topic", "orders", "--if-not-exists"]);
    s.ok(&["topic", "create", "--topic", "audit", "--partitions", "1"]);
    assert_eq!(s.ok(&["topic", "list"]), "audit\norders\n");

    let described = s.ok(&["topic", "describe", "--topic", "orders"]);
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines.len(), 7, "{described}");
    assert!(
        lines[0].starts_with("Topic: orders\tPartitionCount: 6\tReplicationFactor: 1\tConfigs: "),
        "{described}"
    );
    assert!(lines[0].contains("retention.ms=3600000"), "{described}");
    for (p, line) in lines[1..].iter().enumerate() {
        assert_eq!(
            *line,
            format!("\tTopic: orders\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1")
        );
    }
    let everything = s.ok(&["topic", "describe"]);
    assert!(everything.starts_with("Topic: audit\t"), "{everything}");
    assert_eq!(everything.lines().count(), 2 + 7);

    s.ok(&[
        "topic",
        "alter",
        "--topic",
        "orders",
        "--partitions",
        "8",
        "--config",
        "segment.ms=60000",
        "--delete-config",
        "retention.ms",
    ]);
    let described = s.ok(&["topic", "describe", "--topic", "orders"]);
    let head = described.lines().next().unwrap();
    assert!(head.contains("PartitionCount: 8"), "{described}");
    assert!(head.contains("segment.ms=60000"), "{described}");
    assert!(!head.contains("retention.ms"), "{described}");
    assert_eq!(described.lines().count(), 9);

    let shrink = s.fails(&["topic", "alter", "--topic", "orders", "--partitions", "4"]);
    assert!(shrink.contains("can only increase"), "{shrink}");
    let bad = s.fails(&[
        "topic",
        "alter",
        "--topic",
        "orders",
        "--config",
        "retention.ms=soon",
    ]);
    assert!(
        bad.starts_with("error: altering configs of topic 'orders'"),
        "{bad}"
    );

    assert_eq!(
        s.ok(&["topic", "delete", "--topic", "orders"]),
        "Deleted topic orders.\n"
    );
    assert_eq!(s.ok(&["topic", "list"]), "audit\n");
    let gone = s.fails(&["topic", "describe", "--topic", "orders"]);
    assert_eq!(gone, "error: unknown topic 'orders'\n");
    let gone = s.fails(&["topic", "delete", "--topic", "orders"]);
    assert_eq!(gone, "error: unknown topic 'orders'\n");
}

#[test]
fn produced_lines_come_back_with_keys_headers_partitions_and_offsets() {
    let s = Server::start();
    s.ok(&["topic", "create", "--topic", "lines", "--partitions", "3"]);
    s.ok_with(
        &[
            "produce",
            "--topic",
            "lines",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--header",
            "n=1",
            "--partition",
            "1",
        ],
        "alice:hello\nbob:with:colons\r\ncarol:\n",
    );
    s.ok_with(
        &[
            "produce",
            "--topic",
            "lines",
            "--partition",
            "2",
            "--acks",
            "1",
        ],
        "plain value\n",
    );

    let out = s.ok(&[
        "consume",
        "--topic",
        "lines",
        "--from-beginning",
        "--max-messages",
        "4",
        "--timeout-ms",
        "20000",
        "--print-key",
        "--print-headers",
        "--print-partition",
        "--print-offset",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "Partition:1\tOffset:0\tsource:cli,n:1\talice\thello",
            "Partition:1\tOffset:1\tsource:cli,n:1\tbob\twith:colons",
            "Partition:1\tOffset:2\tsource:cli,n:1\tcarol\t",
            "Partition:2\tOffset:0\tNO_HEADERS\tnull\tplain value",
        ]
    );

    // One partition from an offset, another separator, values only.
    let out = s.ok(&[
        "consume",
        "--topic",
        "lines",
        "--partition",
        "1",
        "--offset",
        "1",
        "--timeout-ms",
        "3000",
        "--print-key",
        "--key-separator",
        " => ",
    ]);
    assert_eq!(out, "bob => with:colons\ncarol => \n");
    let out = s.ok(&[
        "consume",
        "--topic",
        "lines",
        "--offset",
        "latest",
        "--timeout-ms",
        "1000",
    ]);
    assert_eq!(out, "");

    let missing = s.run(
        &["produce", "--topic", "lines", "--key-separator", "|"],
        "a|b\nno separator\n",
    );
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("line 2 has no key separator"), "{err}");
    let bad = s.fails(&["produce", "--topic", "lines", "--partition", "7"]);
    assert!(bad.contains("there is no partition 7"), "{bad}");
}

#[test]
fn failures_are_one_line_with_a_nonzero_exit() {
    let s = Server::start();
    let unknown = s.fails(&["consume", "--topic", "nope", "--timeout-ms", "1000"]);
    assert_eq!(unknown, "error: unknown topic 'nope'\n");

    let nobody = format!("127.0.0.1:{}", free_port());
    for args in [
        &["topic", "list"][..],
        &["group", "list"],
        &["consume", "--topic", "t", "--timeout-ms", "1000"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .args([
                "--bootstrap-server",
                &nobody,
                "--request-timeout-ms",
                "2000",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!(
                "error: cannot reach a broker at {nobody} within 2000 ms"
            )),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    let bad = s.fails(&["topic", "list", "-X", "no.such.property=1"]);
    assert!(
        bad.starts_with("error: invalid client property no.such.property=1"),
        "{bad}"
    );
}

/// Rows of `group describe` as (topic, partition) -> (current, end, lag, consumer).
fn describe(s: &Server, group: &str) -> Vec<(String, String, String, String, String, String)> {
    let out = s.ok(&["group", "describe", "--group", group]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );
    lines
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(c[0], group, "{out}");
            (
                c[1].to_string(),
                c[2].to_string(),
                c[3].to_string(),
                c[4].to_string(),
                c[5].to_string(),
                c[6].to_string(),
            )
        })
        .collect()
}

/// (current, end, lag) for partitions 0..n of `topic`, from `group describe`.
fn lags(s: &Server, group: &str, topic: &str) -> Vec<(String, String, String)> {
    let rows = describe(s, group);
    let rows: Vec<_> = rows.into_iter().filter(|r| r.0 == topic).collect();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.1, i.to_string(), "partitions out of order: {rows:?}");
    }
    rows.into_iter().map(|r| (r.2, r.3, r.4)).collect()
}

fn triple(current: i64, end: i64) -> (String, String, String) {
    (
        current.to_string(),
        end.to_string(),
        (end - current).to_string(),
    )
}

#[test]
fn consumer_group_lag_and_offset_resets() {
    let s = Server::start();
    s.ok(&["topic", "create", "--topic", "events", "--partitions", "6"]);
    for p in 0..6 {
        let lines: String = (0..5).map(|i| format!("p{p}-{i}\n")).collect();
        s.ok_with(
            &[
                "produce",
                "--topic",
                "events",
                "--partition",
                &p.to_string(),
            ],
            &lines,
        );
    }
    let out = s.ok(&[
        "consume",
        "--topic",
        "events",
        "--group",
        "readers",
        "--from-beginning",
        "--max-messages",
        "30",
        "--timeout-ms",
        "30000",
    ]);
    assert_eq!(out.lines().count(), 30, "{out}");
    assert!(s.ok(&["group", "list"]).lines().any(|g| g == "readers"));
    assert_eq!(lags(&s, "readers", "events"), vec![triple(5, 5); 6]);

    s.ok_with(
        &["produce", "--topic", "events", "--partition", "2"],
        "a\nb\nc\n",
    );
    s.ok_with(&["produce", "--topic", "events", "--partition", "4"], "d\n");
    let mut want = vec![triple(5, 5); 6];
    want[2] = triple(5, 8);
    want[4] = triple(5, 6);
    assert_eq!(lags(&s, "readers", "events"), want);

    // A dry run prints the plan and changes nothing.
    let plan = s.ok(&[
        "group",
        "reset-offsets",
        "--group",
        "readers",
        "--topic",
        "events",
        "--to-earliest",
    ]);
    assert_eq!(plan.lines().count(), 7, "{plan}");
    assert!(plan.lines().skip(1).all(|l| l.ends_with(" 0")), "{plan}");
    assert_eq!(lags(&s, "readers", "events"), want);

    s.ok(&[
        "group",
        "reset-offsets",
        "--group",
        "readers",
        "--topic",
        "events",
        "--to-earliest",
        "--execute",
    ]);
    let ends = [5, 5, 8, 5, 6, 5];
    let at_zero: Vec<_> = ends.iter().map(|&e| triple(0, e)).collect();
    assert_eq!(lags(&s, "readers", "events"), at_zero);

    s.ok(&[
        "group",
        "reset-offsets",
        "--group",
        "readers",
        "--topic",
        "events:2,4",
        "--shift-by",
        "3",
        "--execute",
    ]);
    s.ok(&[
        "group",
        "reset-offsets",
        "--group",
        "readers",
        "--topic",
        "events:0",
        "--to-offset",
        "99",
        "--execute",
    ]);
    let mut want: Vec<_> = ends.iter().map(|&e| triple(0, e)).collect();
    want[0] = triple(5, 5);
    want[2] = triple(3, 8);
    want[4] = triple(3, 6);
    assert_eq!(lags(&s, "readers", "events"), want);
    s.ok(&[
        "group",
        "reset-offsets",
        "--group",
        "readers",
        "--all-topics",
        "--to-latest",
        "--execute",
    ]);
    let caught_up: Vec<_> = ends.iter().map(|&e| triple(e, e)).collect();
    assert_eq!(lags(&s, "readers", "events"), caught_up);

    // With a member present, resetting and deleting are refused.
    let mut member = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "consume",
            "--topic",
            "events",
            "--group",
            "readers",
            "--timeout-ms",
            "60000",
        ])
        .args(["--bootstrap-server", &s.bootstrap])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while describe(&s, "readers").iter().all(|r| r.5 == "-") {
        assert!(Instant::now() < deadline, "the consumer never joined");
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = s.fails(&[
        "group",
        "reset-offsets",
        "--group",
        "readers",
        "--topic",
        "events",
        "--to-earliest",
        "--execute",
    ]);
    assert!(
        refused.contains("can only be reset if the group 'readers' is inactive"),
        "{refused}"
    );
    let refused = s.fails(&["group", "delete", "--group", "readers"]);
    assert!(refused.contains("has active members"), "{refused}");
    // SIGTERM: the consumer commits and leaves the group on its way out.
    Command::new("kill")
        .args(["-TERM", &member.id().to_string()])
        .status()
        .unwrap();
    assert!(member.wait().unwrap().success());

    assert_eq!(
        s.ok(&["group", "delete", "--group", "readers"]),
        "Deleted consumer group 'readers'.\n"
    );
    assert!(!s.ok(&["group", "list"]).lines().any(|g| g == "readers"));
}
