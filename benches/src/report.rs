//! Rows of figures, the printed table, and the targets checked as ratios within one run.

use serde_json::json;

use crate::load::percentile_ms;
use crate::proxy::Snapshot;
use crate::target::Kind;

/// One target on one workload.
#[derive(Debug, Clone)]
pub struct Row {
    pub target: Kind,
    pub workload: &'static str,
    pub records: usize,
    pub size: usize,
    pub partitions: i32,
    pub acks: String,
    pub produce_msgs_s: Option<f64>,
    pub produce_mb_s: Option<f64>,
    /// Produce: send to acknowledgement. End-to-end: send to consumed.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub consume_msgs_s: Option<f64>,
    pub consume_mb_s: Option<f64>,
    pub cpu_produce_s: f64,
    pub cpu_consume_s: f64,
    pub peak_rss_mib: f64,
    pub puts_per_s: Option<f64>,
    pub gets_per_s: Option<f64>,
    pub put_p99_ms: Option<f64>,
    pub store_cpu_s: Option<f64>,
    /// Throughput runs, while producing: the store's CPU seconds, and this process's
    /// (the librdkafka producer and the request-counting proxy).
    pub produce_store_cpu_s: Option<f64>,
    pub produce_client_cpu_s: Option<f64>,
    /// Cold replay: CPU seconds of this process (the librdkafka consumer and the
    /// request-counting proxy in front of the store) while replaying.
    pub client_cpu_s: Option<f64>,
    /// Cold replay's raw ranged GETs: their seconds, and the store's and this
    /// process's CPU seconds meanwhile.
    pub raw_secs: Option<f64>,
    pub raw_store_cpu_s: Option<f64>,
    pub raw_client_cpu_s: Option<f64>,
    pub raw_get_mb_s: Option<f64>,
    pub raw_gets: Option<u64>,
    /// Cold replay: every round's replay MB/s over its raw GETs' MB/s.
    pub cold_ratios: Vec<f64>,
    pub e2e_rate: Option<u32>,
    /// Fixed-rate runs: send to acknowledgement.
    pub ack_p50_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
    pub ack_p999_ms: Option<f64>,
    /// Throughput rows: msgs/s of every run the row is the median of, in run order.
    pub produce_runs: Vec<f64>,
    pub consume_runs: Vec<f64>,
}

impl Row {
    pub fn new(
        target: Kind,
        workload: &'static str,
        records: usize,
        size: usize,
        partitions: i32,
        acks: &str,
    ) -> Row {
        Row {
            target,
            workload,
            records,
            size,
            partitions,
            acks: acks.to_string(),
            produce_msgs_s: None,
            produce_mb_s: None,
            p50_ms: None,
            p99_ms: None,
            p999_ms: None,
            consume_msgs_s: None,
            consume_mb_s: None,
            cpu_produce_s: 0.0,
            cpu_consume_s: 0.0,
            peak_rss_mib: f64::NAN,
            puts_per_s: None,
            gets_per_s: None,
            put_p99_ms: None,
            store_cpu_s: None,
            produce_store_cpu_s: None,
            produce_client_cpu_s: None,
            client_cpu_s: None,
            raw_secs: None,
            raw_store_cpu_s: None,
            raw_client_cpu_s: None,
            raw_get_mb_s: None,
            raw_gets: None,
            cold_ratios: Vec::new(),
            e2e_rate: None,
            ack_p50_ms: None,
            ack_p99_ms: None,
            ack_p999_ms: None,
            produce_runs: Vec::new(),
            consume_runs: Vec::new(),
        }
    }

    fn mb(&self) -> f64 {
        (self.records * self.size) as f64 / 1e6
    }

    pub fn set_produce(&mut self, secs: f64, sorted_us: &[u32]) {
        self.produce_msgs_s = Some(self.records as f64 / secs);
        self.produce_mb_s = Some(self.mb() / secs);
        self.set_percentiles(sorted_us);
    }

    /// Cold replay: the replay's MB/s over the raw GETs' MB/s.
    pub fn cold_ratio(&self) -> Option<f64> {
        Some(self.consume_mb_s? / self.raw_get_mb_s?)
    }

    pub fn set_consume(&mut self, secs: f64) {
        self.consume_msgs_s = Some(self.records as f64 / secs);
        self.consume_mb_s = Some(self.mb() / secs);
    }

    pub fn set_e2e(&mut self, rate: u32, e2e_us: &[u32], ack_us: &[u32]) {
        self.e2e_rate = Some(rate);
        self.set_percentiles(e2e_us);
        self.ack_p50_ms = Some(percentile_ms(ack_us, 0.50));
        self.ack_p99_ms = Some(percentile_ms(ack_us, 0.99));
        self.ack_p999_ms = Some(percentile_ms(ack_us, 0.999));
    }

    fn set_percentiles(&mut self, sorted_us: &[u32]) {
        self.p50_ms = Some(percentile_ms(sorted_us, 0.50));
        self.p99_ms = Some(percentile_ms(sorted_us, 0.99));
        self.p999_ms = Some(percentile_ms(sorted_us, 0.999));
    }

    pub fn set_store(&mut self, produce: &Snapshot, p_secs: f64, consume: &Snapshot, c_secs: f64) {
        self.puts_per_s = Some(produce.puts as f64 / p_secs);
        self.gets_per_s = Some(consume.gets as f64 / c_secs);
        let mut put = produce.put_us.clone();
        put.sort_unstable();
        if !put.is_empty() {
            self.put_p99_ms = Some(percentile_ms(&put, 0.99));
        }
    }

    fn label(&self) -> String {
        format!(
            "{} {}x{}B p{} acks={}",
            self.workload, self.records, self.size, self.partitions, self.acks
        )
    }

    pub fn line(&self) -> String {
        let f = |v: Option<f64>, prec: usize| match v {
            Some(v) if v.is_finite() => format!("{v:.prec$}"),
            _ => "-".to_string(),
        };
        format!(
            "{:<13} {:<40} | {:>9} {:>7} | {:>8} {:>8} {:>8} | {:>9} {:>7} | {:>7} | {:>7.1} {:>6.0} | {:>6} {:>6}",
            self.target.name(),
            self.label(),
            f(self.produce_msgs_s, 0),
            f(self.produce_mb_s, 1),
            f(self.p50_ms, 2),
            f(self.p99_ms, 2),
            f(self.p999_ms, 2),
            f(self.consume_msgs_s, 0),
            f(self.consume_mb_s, 1),
            f(self.ack_p99_ms, 2),
            self.cpu_produce_s + self.cpu_consume_s,
            self.peak_rss_mib,
            f(self.puts_per_s, 0),
            f(self.gets_per_s, 0),
        )
    }

    /// Where the machine's cores went while producing: whether a producer short of the
    /// null sink's rate was short of CPU (client, broker and store share the cores).
    pub fn produce_cpu_line(&self) -> String {
        let secs = self.records as f64 / self.produce_msgs_s.unwrap_or(f64::NAN);
        let store = self.produce_store_cpu_s.unwrap_or(0.0);
        let client = self.produce_client_cpu_s.unwrap_or(f64::NAN);
        let broker = self.cpu_produce_s;
        let store_part = match self.produce_store_cpu_s {
            Some(s) => format!(" + store {s:.2} s"),
            None => String::new(),
        };
        format!(
            "  produce CPU: broker {broker:.2} s{store_part} + client/proxy {client:.2} s over {secs:.2} s = {:.2} cores",
            (broker + store + client) / secs,
        )
    }

    /// Where the machine's cores went during a cold replay and during the raw GETs
    /// it is compared with: whether the replay was short of CPU or of requests.
    pub fn cold_cpu_line(&self) -> String {
        let secs =
            self.records as f64 * self.size as f64 / 1e6 / self.consume_mb_s.unwrap_or(f64::NAN);
        let (store, client) = (
            self.store_cpu_s.unwrap_or(f64::NAN),
            self.client_cpu_s.unwrap_or(f64::NAN),
        );
        let broker = self.cpu_consume_s;
        let raw = self.raw_secs.unwrap_or(f64::NAN);
        let (rs, rc) = (
            self.raw_store_cpu_s.unwrap_or(f64::NAN),
            self.raw_client_cpu_s.unwrap_or(f64::NAN),
        );
        format!(
            "cold replay CPU: broker {broker:.1} s + store {store:.1} s + client/proxy {client:.1} s over {secs:.1} s = {:.2} cores; \
             raw GETs: store {rs:.1} s + reader/proxy {rc:.1} s over {raw:.1} s = {:.2} cores",
            (broker + store + client) / secs,
            (rs + rc) / raw,
        )
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "target": self.target.name(), "workload": self.workload,
            "records": self.records, "record_bytes": self.size,
            "partitions": self.partitions, "acks": self.acks,
            "produce_msgs_per_s": self.produce_msgs_s, "produce_mb_per_s": self.produce_mb_s,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "p999_ms": self.p999_ms,
            "consume_msgs_per_s": self.consume_msgs_s, "consume_mb_per_s": self.consume_mb_s,
            "broker_cpu_produce_s": self.cpu_produce_s, "broker_cpu_consume_s": self.cpu_consume_s,
            "broker_peak_rss_mib": self.peak_rss_mib,
            "store_puts_per_s": self.puts_per_s, "store_gets_per_s": self.gets_per_s,
            "store_put_p99_ms": self.put_p99_ms, "store_cpu_s": self.store_cpu_s,
            "produce_store_cpu_s": self.produce_store_cpu_s,
            "produce_client_cpu_s": self.produce_client_cpu_s,
            "raw_get_mb_per_s": self.raw_get_mb_s, "raw_gets": self.raw_gets,
            "client_cpu_s": self.client_cpu_s, "raw_secs": self.raw_secs,
            "raw_store_cpu_s": self.raw_store_cpu_s, "raw_client_cpu_s": self.raw_client_cpu_s,
            "cold_ratio_rounds": self.cold_ratios,
            "e2e_rate_per_s": self.e2e_rate,
            "ack_p50_ms": self.ack_p50_ms, "ack_p99_ms": self.ack_p99_ms,
            "ack_p999_ms": self.ack_p999_ms,
            "produce_msgs_per_s_runs": self.produce_runs,
            "consume_msgs_per_s_runs": self.consume_runs,
        })
    }
}

/// The cold replay round whose replay/raw ratio is the median, carrying every round's
/// ratio and the highest peak RSS of all rounds: memory is checked against the worst
/// round, not the median one. With an even count the lower of the two middle ratios
/// counts, as the slower run does in [`median`]. Needs at least one round.
pub fn median_round(mut rounds: Vec<Row>) -> Row {
    let ratio = |r: &Row| r.cold_ratio().unwrap_or(f64::NAN);
    let peak_rss = rounds.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    let ratios: Vec<f64> = rounds.iter().map(ratio).collect();
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let mut row = rounds.swap_remove((rounds.len() - 1) / 2);
    row.peak_rss_mib = peak_rss;
    row.cold_ratios = ratios;
    row
}

/// One row for several runs of the same target and workload: the produce figures
/// (rate, latencies, CPU, PUTs) of the run with the median produce rate, the consume
/// figures of the run with the median consume rate, and the highest peak RSS of any.
/// With an even count the slower of the two middle runs counts. `None` without runs.
pub fn median(runs: Vec<Row>) -> Option<Row> {
    fn middle(runs: &[Row], rate: impl Fn(&Row) -> f64) -> Option<&Row> {
        let mut order: Vec<&Row> = runs.iter().collect();
        order.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        order.get((order.len().checked_sub(1)?) / 2).copied()
    }
    let produce = |r: &Row| r.produce_msgs_s.unwrap_or(f64::NAN);
    let consume = |r: &Row| r.consume_msgs_s.unwrap_or(f64::NAN);
    let mut row = middle(&runs, produce)?.clone();
    let c = middle(&runs, consume)?;
    row.consume_msgs_s = c.consume_msgs_s;
    row.consume_mb_s = c.consume_mb_s;
    row.cpu_consume_s = c.cpu_consume_s;
    row.gets_per_s = c.gets_per_s;
    row.peak_rss_mib = runs.iter().map(|r| r.peak_rss_mib).fold(f64::NAN, f64::max);
    row.produce_runs = runs.iter().map(produce).collect();
    row.consume_runs = runs.iter().map(consume).collect();
    Some(row)
}

pub fn header() -> String {
    format!(
        "{:<13} {:<40} | {:>9} {:>7} | {:>8} {:>8} {:>8} | {:>9} {:>7} | {:>7} | {:>7} {:>6} | {:>6} {:>6}",
        "target",
        "workload",
        "prod/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "cons/s",
        "MB/s",
        "ack p99",
        "cpu s",
        "RSS",
        "PUT/s",
        "GET/s"
    )
}

/// One target of the issue, as measured in this run.
pub struct Check {
    pub what: String,
    pub value: f64,
    pub limit: f64,
    /// True when the value must be at least the limit; false for at most.
    pub at_least: bool,
    /// For a throughput ratio: a sink's rate over the peer's, the most any broker
    /// could reach in this run with this client on this machine, and which sink. For
    /// strata-s3 the sink is the store sink when it ran (it writes every byte to the
    /// same S3-protocol server once, which any broker keeping data there must do), for
    /// strata-local the local sink (the same on the local filesystem), so their ratios
    /// to the null sink are ceilings too; otherwise the null sink.
    pub ceiling: Option<(f64, Kind)>,
}

impl Check {
    pub fn pass(&self) -> bool {
        if self.at_least {
            self.value >= self.limit
        } else {
            self.value <= self.limit
        }
    }

    /// False when even the null sink would miss the target against this peer.
    pub fn reachable(&self) -> bool {
        self.ceiling.is_none_or(|(c, _)| c >= self.limit)
    }

    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {}: {:.2} ({} {:.2})",
            if self.pass() { "PASS" } else { "MISS" },
            self.what,
            self.value,
            if self.at_least { ">=" } else { "<=" },
            self.limit
        );
        if let Some((c, sink)) = self.ceiling.filter(|_| !self.pass() && !self.reachable()) {
            line += &format!(" unreachable here: {}/peer is {c:.2}", sink.name());
        }
        line
    }

    pub fn json(&self) -> serde_json::Value {
        json!({"check": self.what, "value": self.value, "limit": self.limit,
               "at_least": self.at_least, "pass": self.pass(),
               "ceiling": self.ceiling.map(|(c, _)| c),
               "ceiling_from": self.ceiling.map(|(_, sink)| sink.name()),
               "reachable": self.reachable()})
    }
}

fn same_workload(a: &Row, b: &Row) -> bool {
    a.workload == b.workload
        && a.records == b.records
        && a.size == b.size
        && a.partitions == b.partitions
        && a.acks == b.acks
}

/// The targets, each a ratio or bound within this run's rows.
pub fn checks(rows: &[Row], flush_ms: u64, cache_bytes: u64) -> Vec<Check> {
    let mut out = Vec::new();
    let find = |kind: Kind, like: &Row| {
        rows.iter()
            .find(|r| r.target == kind && same_workload(r, like))
    };
    // At most one PUT per flush interval, for any strata-s3 row that counted them.
    let puts_check = |r: &Row| {
        r.puts_per_s.map(|puts| Check {
            what: format!("{} strata-s3 PUTs/s while producing", r.label()),
            value: puts,
            limit: 1000.0 / flush_ms as f64,
            at_least: false,
            ceiling: None,
        })
    };
    let ratios = [
        (Kind::StrataS3, Kind::TansuS3, 3.0),
        (Kind::StrataLocal, Kind::TansuMemory, 1.0),
        (Kind::StrataLocal, Kind::Kafka, 1.0),
        (Kind::StrataS3, Kind::NullSink, 0.7),
        (Kind::StrataLocal, Kind::NullSink, 0.7),
    ];
    for r in rows.iter().filter(|r| r.workload == "throughput") {
        for (ours, theirs, limit) in ratios {
            if r.target != ours {
                continue;
            }
            let Some(other) = find(theirs, r) else {
                continue;
            };
            let sink = match ours {
                Kind::StrataS3 => Kind::StoreSink,
                Kind::StrataLocal => Kind::LocalSink,
                _ => Kind::NullSink,
            };
            let sink = find(sink, r).map_or(Kind::NullSink, |_| sink);
            let ceiling = find(sink, r).filter(|_| theirs != sink);
            for (side, a, b, n) in [
                (
                    "produce",
                    r.produce_msgs_s,
                    other.produce_msgs_s,
                    ceiling.and_then(|n| n.produce_msgs_s),
                ),
                (
                    "consume",
                    r.consume_msgs_s,
                    other.consume_msgs_s,
                    ceiling.and_then(|n| n.consume_msgs_s),
                ),
            ] {
                if let (Some(a), Some(b)) = (a, b) {
                    out.push(Check {
                        what: format!("{} {side} {}/{}", r.label(), ours.name(), theirs.name()),
                        value: a / b,
                        limit,
                        at_least: true,
                        ceiling: n.map(|n| (n / b, sink)),
                    });
                }
            }
        }
        let strata = matches!(r.target, Kind::StrataS3 | Kind::StrataLocal);
        if strata {
            out.push(Check {
                what: format!("{} {} peak RSS MiB", r.label(), r.target.name()),
                value: r.peak_rss_mib,
                limit: (cache_bytes >> 20) as f64 + 256.0,
                at_least: false,
                ceiling: None,
            });
        }
        if r.target == Kind::StrataS3 {
            out.extend(puts_check(r));
        }
    }
    // Latency targets are checked at the fixed rate: in a saturating run a record's
    // acknowledgement time is mostly its wait in the client's queue.
    for r in rows
        .iter()
        .filter(|r| r.workload == "e2e-latency" && r.acks == "all")
    {
        if r.target == Kind::StrataS3 {
            if let (Some(p99), Some(put)) = (r.ack_p99_ms, r.put_p99_ms) {
                out.push(Check {
                    what: format!("{} strata-s3 ack p99 ms vs flush+PUT p99+5", r.label()),
                    value: p99,
                    limit: flush_ms as f64 + put + 5.0,
                    at_least: false,
                    ceiling: None,
                });
            }
            // A producer sending a request every linger.ms, about one per flush
            // interval, is where pacing the flushes matters most.
            out.extend(puts_check(r));
        }
        if r.target == Kind::StrataLocal {
            let kafka = find(Kind::Kafka, r).and_then(|k| k.ack_p99_ms);
            if let (Some(p99), Some(k)) = (r.ack_p99_ms, kafka) {
                out.push(Check {
                    what: format!("{} strata-local ack p99 ms vs kafka's+flush", r.label()),
                    value: p99,
                    limit: k + flush_ms as f64,
                    at_least: false,
                    ceiling: None,
                });
            }
        }
    }
    for r in rows.iter().filter(|r| r.workload == "cold-replay") {
        if let Some(ratio) = r.cold_ratio() {
            out.push(Check {
                what: "cold replay MB/s / raw ranged-GET MB/s".to_string(),
                value: ratio,
                limit: 0.8,
                at_least: true,
                ceiling: None,
            });
        }
        out.push(Check {
            what: "cold replay peak RSS MiB".to_string(),
            value: r.peak_rss_mib,
            limit: (cache_bytes >> 20) as f64 + 256.0,
            at_least: false,
            ceiling: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(produce: f64, consume: f64, rss: f64) -> Row {
        let mut r = Row::new(Kind::StrataLocal, "throughput", 1000, 100, 1, "1");
        r.set_produce(1000.0 / produce, &[1, 2, 3]);
        r.set_consume(1000.0 / consume);
        r.cpu_produce_s = produce / 1e6;
        r.cpu_consume_s = consume / 1e6;
        r.peak_rss_mib = rss;
        r
    }

    #[test]
    fn median_takes_each_side_from_its_own_middle_run_and_the_highest_rss() {
        let row = median(vec![
            run(300.0, 900.0, 10.0),
            run(100.0, 700.0, 30.0),
            run(200.0, 800.0, 20.0),
        ])
        .unwrap();
        assert_eq!(row.produce_msgs_s.map(f64::round), Some(200.0));
        assert_eq!(row.cpu_produce_s, 200.0 / 1e6);
        assert_eq!(row.consume_msgs_s.map(f64::round), Some(800.0));
        assert_eq!(row.cpu_consume_s, 800.0 / 1e6);
        assert_eq!(row.peak_rss_mib, 30.0);
        let rounded = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
        assert_eq!(rounded(&row.produce_runs), [300.0, 100.0, 200.0]);
        assert_eq!(rounded(&row.consume_runs), [900.0, 700.0, 800.0]);
    }

    /// A throughput row of 1,000 records produced and consumed at `rate` records/s.
    fn at(kind: Kind, rate: f64) -> Row {
        let mut r = Row::new(kind, "throughput", 1000, 100, 1, "all");
        r.set_produce(1000.0 / rate, &[1]);
        r.set_consume(1000.0 / rate);
        r
    }

    fn check<'a>(checks: &'a [Check], what: &str) -> &'a Check {
        let found = checks.iter().find(|c| c.what.ends_with(what));
        found.unwrap_or_else(|| panic!("no check {what}"))
    }

    #[test]
    fn strata_ceilings_come_from_the_sinks_that_store_when_they_ran() {
        let rows = [
            at(Kind::StrataS3, 450.0),
            at(Kind::TansuS3, 100.0),
            at(Kind::StrataLocal, 700.0),
            at(Kind::TansuMemory, 800.0),
            at(Kind::NullSink, 1000.0),
            at(Kind::StoreSink, 500.0),
        ];
        let checks = checks(&rows, 5, 256 << 20);
        let vs_null = check(&checks, "produce strata-s3/null-sink");
        assert_eq!(vs_null.ceiling, Some((0.5, Kind::StoreSink)));
        assert!(!vs_null.pass() && !vs_null.reachable());
        assert!(vs_null
            .line()
            .ends_with("unreachable here: store-sink/peer is 0.50"));
        let vs_tansu = check(&checks, "produce strata-s3/tansu-s3");
        assert_eq!(vs_tansu.ceiling, Some((5.0, Kind::StoreSink)));
        assert!(vs_tansu.pass());
        let local = check(&checks, "produce strata-local/tansu-memory");
        assert_eq!(local.ceiling, Some((1.25, Kind::NullSink)));
        assert!(!local.pass() && local.reachable());
        assert_eq!(
            check(&checks, "produce strata-local/null-sink").ceiling,
            None
        );

        // The local sink is strata-local's ceiling, as the store sink is strata-s3's.
        let mut with_local = rows.to_vec();
        with_local.push(at(Kind::LocalSink, 640.0));
        let checks = super::checks(&with_local, 5, 256 << 20);
        let local = check(&checks, "produce strata-local/tansu-memory");
        assert_eq!(local.ceiling, Some((0.8, Kind::LocalSink)));
        assert!(!local.reachable());
        let local = check(&checks, "produce strata-local/null-sink");
        assert_eq!(local.ceiling, Some((0.64, Kind::LocalSink)));
        assert!(!local.reachable());
        let vs_null = check(&checks, "produce strata-s3/null-sink");
        assert_eq!(vs_null.ceiling, Some((0.5, Kind::StoreSink)));

        // Without the sinks that store, Strata is held to the null sink as before.
        let checks = super::checks(&rows[..5], 5, 256 << 20);
        let vs_null = check(&checks, "produce strata-s3/null-sink");
        assert_eq!(vs_null.ceiling, None);
        assert!(vs_null.reachable());
        let vs_tansu = check(&checks, "produce strata-s3/tansu-s3");
        assert_eq!(vs_tansu.ceiling, Some((10.0, Kind::NullSink)));
    }

    #[test]
    fn median_of_two_is_the_slower_and_of_none_is_nothing() {
        let row = median(vec![run(300.0, 900.0, 1.0), run(100.0, 700.0, 1.0)]).unwrap();
        assert_eq!(row.produce_msgs_s.map(f64::round), Some(100.0));
        assert_eq!(row.consume_msgs_s.map(f64::round), Some(700.0));
        assert!(median(Vec::new()).is_none());
    }

    #[test]
    fn the_cold_replay_reports_its_median_round_with_every_ratio_and_the_worst_rss() {
        let round = |replay: f64, raw: f64, rss: f64| {
            let mut r = Row::new(Kind::StrataS3, "cold-replay", 1000, 1024, 8, "1");
            r.consume_mb_s = Some(replay);
            r.raw_get_mb_s = Some(raw);
            r.peak_rss_mib = rss;
            r
        };
        let row = median_round(vec![
            round(300.0, 400.0, 380.0),
            round(360.0, 400.0, 410.0),
            round(200.0, 400.0, 390.0),
        ]);
        assert_eq!(
            row.consume_mb_s,
            Some(300.0),
            "the round with the middle ratio"
        );
        assert_eq!(row.peak_rss_mib, 410.0, "the highest RSS of any round");
        assert_eq!(
            row.cold_ratios,
            vec![0.75, 0.9, 0.5],
            "every round, in order"
        );
        // Of two, the lower ratio: the faster replay that had a faster raw read beside it.
        let row = median_round(vec![round(300.0, 400.0, 1.0), round(400.0, 800.0, 1.0)]);
        assert_eq!(row.consume_mb_s, Some(400.0));
    }
}
