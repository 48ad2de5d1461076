//! Strata's benchmark: the same librdkafka workloads against Strata (S3-protocol server
//! and local store), Tansu (S3-protocol server and memory), Apache Kafka, a null sink,
//! and the null sink writing to the S3-protocol server (store sink) or to the local
//! filesystem (local sink), one after another in one run, each started fresh for each
//! workload.
//! Prints one table, the target ratios, and writes every row as JSON.
//!
//! `benches/run.sh` installs what it needs and runs it; `strata-bench --help` for knobs.

mod cold;
mod load;
mod proxy;
mod report;
mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use load::{ClientSettings, Produced};
use report::Row;
use target::{cpu_seconds, peak_rss_mib, Kind, Programs, Running};

#[derive(Parser, Debug)]
struct Args {
    /// Targets to run, comma separated: strata-s3, strata-local, tansu-s3,
    /// tansu-memory, kafka, null-sink, store-sink and local-sink (the null sink
    /// writing every produced byte once per wal.flush.ms to the S3-protocol server or
    /// to the local filesystem).
    #[arg(
        long,
        default_value = "strata-s3,strata-local,tansu-s3,tansu-memory,kafka,null-sink,store-sink,local-sink"
    )]
    targets: String,
    /// Throughput workloads as RECORDS:BYTES, comma separated (empty for none).
    #[arg(long, default_value = "1000000:100,200000:1024")]
    workloads: String,
    /// Partition counts, comma separated.
    #[arg(long, default_value = "1,8")]
    partitions: String,
    /// acks settings, comma separated.
    #[arg(long, default_value = "1,all")]
    acks: String,
    /// Runs of each throughput workload per target. A run lasts well under a second,
    /// so one run's rate moves by a third from noise alone on a shared machine; each
    /// row reports the median run, and the targets take turns within a workload so a
    /// slow spell of the machine falls on all of them.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// End-to-end latency: records/s produced while a consumer tails (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    latency_rate: u32,
    /// End-to-end latency: seconds to produce for.
    #[arg(long, default_value_t = 15)]
    latency_secs: u32,
    /// End-to-end latency: the producer's linger.ms (5 is librdkafka's and the Java
    /// client's default; 0 sends every record in its own request).
    #[arg(long, default_value_t = 5)]
    latency_linger_ms: u32,
    /// End-to-end latency: the producer's acks.
    #[arg(long, default_value = "all")]
    latency_acks: String,
    /// Cold replay: bytes to write, then read back from the object store after the
    /// cache is dropped (strata-s3 only; 0 skips it).
    #[arg(long, default_value_t = 2 << 30)]
    cold_bytes: u64,
    /// Cold replay: rounds of replay and raw GETs over the same objects; the round
    /// with the median ratio is reported.
    #[arg(long, default_value_t = 3)]
    cold_repeat: usize,
    /// Kafka's fetch.wait.max.ms for every consumer.
    #[arg(long, default_value_t = 10)]
    fetch_wait_max_ms: u32,
    /// Strata's --wal-flush-ms.
    #[arg(long, default_value_t = 5)]
    wal_flush_ms: u64,
    /// Strata's --cache-memory-bytes.
    #[arg(long, default_value_t = 256 << 20)]
    cache_memory_bytes: u64,
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    #[arg(long, default_value = "target/release/strata-null-sink")]
    null_sink: PathBuf,
    #[arg(long, env = "TANSU_BIN", default_value = "tansu")]
    tansu: PathBuf,
    #[arg(long, default_value = "benches/kafka/kafka.sh")]
    kafka_sh: PathBuf,
    #[arg(long, env = "S3S_FS_BIN", default_value = "s3s-fs")]
    s3s_fs: PathBuf,
    /// Write every row (and the ratios) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Record payloads cut from a pseudo-random pool: a broker that compresses segments
/// gains nothing a real, varied stream would not give it.
pub struct Payloads(Vec<u8>);

impl Payloads {
    fn new() -> Payloads {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let pool = (0..(16 << 20) + 4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        Payloads(pool)
    }

    pub fn get(&self, i: usize, size: usize) -> &[u8] {
        let at = i.wrapping_mul(7919) % (16 << 20);
        &self.0[at..at + size]
    }
}

fn throughput(
    kind: Kind,
    programs: &Programs,
    payloads: &Payloads,
    settings: &ClientSettings,
    (records, size, partitions): (usize, usize, i32),
    acks: &str,
) -> anyhow::Result<Row> {
    let run = Running::start(kind, programs)?;
    let topic = "bench";
    load::create_topic(&run.addr, topic, partitions, &[])?;
    let pid = run.pid();
    let store_before = run.s3.as_ref().map(|s| s.counts.snapshot());
    let me = std::process::id();
    let store_pid = run.s3.as_ref().map(|s| s.pid());
    let (cpu0, client0) = (cpu_seconds(pid), cpu_seconds(me));
    let store0 = store_pid.map(cpu_seconds);
    let Produced {
        secs: produce_secs,
        latencies_us,
    } = load::produce(&run.addr, topic, payloads, records, size, partitions, acks)
        .with_context(|| format!("producing; broker log:\n{}", run.log_tail()))?;
    let (cpu1, client1) = (cpu_seconds(pid), cpu_seconds(me));
    let store1 = store_pid.map(cpu_seconds);
    let store_mid = run.s3.as_ref().map(|s| s.counts.snapshot());
    let consume_secs = load::consume(&run.addr, topic, records, size, partitions, settings)
        .with_context(|| format!("consuming; broker log:\n{}", run.log_tail()))?;
    let cpu2 = cpu_seconds(pid);
    let store_after = run.s3.as_ref().map(|s| s.counts.snapshot());
    let mut row = Row::new(kind, "throughput", records, size, partitions, acks);
    row.set_produce(produce_secs, &latencies_us);
    row.set_consume(consume_secs);
    row.cpu_produce_s = cpu1 - cpu0;
    row.cpu_consume_s = cpu2 - cpu1;
    row.produce_client_cpu_s = Some(client1 - client0);
    row.produce_store_cpu_s = store0.zip(store1).map(|(a, b)| b - a);
    row.peak_rss_mib = peak_rss_mib(pid);
    if let (Some(a), Some(b), Some(c)) = (store_before, store_mid, store_after) {
        row.set_store(&b.since(&a), produce_secs, &c.since(&b), consume_secs);
    }
    if let Some(s3) = &run.s3 {
        row.store_cpu_s = Some(cpu_seconds(s3.pid()));
    }
    Ok(row)
}

fn latency(
    kind: Kind,
    programs: &Programs,
    settings: &ClientSettings,
    rate: u32,
    secs: u32,
    acks: &str,
    linger_ms: u32,
) -> anyhow::Result<Row> {
    let run = Running::start(kind, programs)?;
    let topic = "latency";
    load::create_topic(&run.addr, topic, 1, &[])?;
    let cpu0 = cpu_seconds(run.pid());
    let store_before = run.s3.as_ref().map(|s| s.counts.snapshot());
    // The store's requests are counted from here, warm-up included, so their rate is
    // over the whole run's time rather than the measured seconds alone.
    let started = std::time::Instant::now();
    let paced = load::end_to_end(
        &run.addr,
        topic,
        &load::Pace {
            rate,
            secs,
            size: 100,
            acks,
            linger_ms,
        },
        settings,
    )
    .with_context(|| format!("end-to-end run; broker log:\n{}", run.log_tail()))?;
    let mut row = Row::new(kind, "e2e-latency", paced.e2e_us.len(), 100, 1, acks);
    row.set_e2e(rate, &paced.e2e_us, &paced.ack_us);
    if let (Some(s3), Some(before)) = (&run.s3, store_before) {
        let d = s3.counts.snapshot().since(&before);
        let elapsed = started.elapsed().as_secs_f64();
        row.set_store(&d, elapsed, &d, elapsed);
    }
    row.cpu_produce_s = cpu_seconds(run.pid()) - cpu0;
    row.peak_rss_mib = peak_rss_mib(run.pid());
    Ok(row)
}

fn cold_replay(
    programs: &Programs,
    payloads: &Payloads,
    settings: &ClientSettings,
    bytes: u64,
    rounds: usize,
) -> anyhow::Result<Row> {
    let size = 1024usize;
    let records = (bytes / size as u64) as usize;
    let partitions = 8;
    let mut run = Running::start(Kind::StrataS3, programs)?;
    let topic = "cold";
    // Idle tails seal after 2 s (the default is 10 minutes), and the broker is
    // stopped only once the store has been quiet: the replay then reads Parquet
    // segments, not WAL objects reloaded into memory and sealed during the replay.
    load::create_topic(&run.addr, topic, partitions, &[("segment.ms", "2000")])?;
    load::produce(&run.addr, topic, payloads, records, size, partitions, "1")?;
    wait_for_quiet_store(&run, Duration::from_secs(5), Duration::from_secs(300))?;
    // Each round restarts the broker without its cache, replays, then reads the same
    // objects with raw GETs: the two measurements of a round are seconds apart, and
    // the round with the median ratio is reported, as the throughput cells report
    // their median run (one replay and one raw read moved the ratio by 0.15 between
    // identical runs).
    let mut done = Vec::new();
    for round in 1..=rounds.max(1) {
        let row = cold_round(
            &mut run, programs, settings, topic, records, size, partitions,
        )?;
        if rounds > 1 {
            println!("  round {round}/{rounds}: {}", row.cold_cpu_line());
        }
        done.push(row);
    }
    Ok(report::median_round(done))
}

/// One round of the cold replay: the broker restarted with its cache folder deleted
/// replays the topic, then the raw GETs read the same bytes with the broker stopped.
fn cold_round(
    run: &mut Running,
    programs: &Programs,
    settings: &ClientSettings,
    topic: &str,
    records: usize,
    size: usize,
    partitions: i32,
) -> anyhow::Result<Row> {
    run.stop()?;
    let cache = run.dir.path().join("strata").join("cache");
    if cache.exists() {
        std::fs::remove_dir_all(&cache)?;
    }
    run.spawn(programs)?;
    let s3 = run.s3.as_ref().context("strata-s3 has a store")?;
    let before = s3.counts.snapshot();
    let me = std::process::id();
    let (cpu0, store0, client0) = (
        cpu_seconds(run.pid()),
        cpu_seconds(s3.pid()),
        cpu_seconds(me),
    );
    let secs = load::consume(&run.addr, topic, records, size, partitions, settings)
        .with_context(|| format!("cold replay; broker log:\n{}", run.log_tail()))?;
    let (cpu1, store1, client1) = (
        cpu_seconds(run.pid()),
        cpu_seconds(s3.pid()),
        cpu_seconds(me),
    );
    let read = s3.counts.snapshot().since(&before);
    let rss = peak_rss_mib(run.pid());
    // Stopped first: sealing would otherwise delete WAL objects mid-listing.
    run.stop()?;
    let s3 = run.s3.as_ref().context("strata-s3 has a store")?;
    let (store2, client2) = (cpu_seconds(s3.pid()), cpu_seconds(me));
    let raw = cold::raw_get_rate(s3, "strata", records as u64 * size as u64)?;
    let (store3, client3) = (cpu_seconds(s3.pid()), cpu_seconds(me));
    let mut row = Row::new(
        Kind::StrataS3,
        "cold-replay",
        records,
        size,
        partitions,
        "1",
    );
    row.set_consume(secs);
    row.cpu_consume_s = cpu1 - cpu0;
    row.peak_rss_mib = rss;
    row.set_store(&Default::default(), 1.0, &read, secs);
    row.raw_get_mb_s = Some(raw.bytes as f64 / 1e6 / raw.secs);
    row.raw_gets = Some(raw.gets);
    row.store_cpu_s = Some(store1 - store0);
    row.client_cpu_s = Some(client1 - client0);
    row.raw_store_cpu_s = Some(store3 - store2);
    row.raw_client_cpu_s = Some(client3 - client2);
    row.raw_secs = Some(raw.secs);
    Ok(row)
}

/// Waits until the broker has written nothing to the store for `quiet` (its seals
/// are done), or gives up after `limit`.
fn wait_for_quiet_store(run: &Running, quiet: Duration, limit: Duration) -> anyhow::Result<()> {
    let s3 = run.s3.as_ref().context("strata-s3 has a store")?;
    let started = Instant::now();
    let writes = || {
        let s = s3.counts.snapshot();
        s.puts + s.other
    };
    let (mut last, mut since) = (writes(), Instant::now());
    while started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(250));
        let now = writes();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return Ok(());
        }
    }
    anyhow::bail!("the broker still wrote to the store {limit:?} after producing")
}

fn list<T: std::str::FromStr>(s: &str) -> anyhow::Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse::<T>().map_err(Into::into))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kinds: Vec<Kind> = args
        .targets
        .split(',')
        .map(|t| Kind::parse(t.trim()))
        .collect::<anyhow::Result<_>>()?;
    let programs = Programs {
        strata: args.strata.clone(),
        null_sink: args.null_sink.clone(),
        tansu: args.tansu.clone(),
        kafka_sh: args.kafka_sh.clone(),
        s3s_fs: args.s3s_fs.clone(),
        wal_flush_ms: args.wal_flush_ms,
        cache_memory_bytes: args.cache_memory_bytes,
    };
    let settings = ClientSettings {
        fetch_wait_max_ms: args.fetch_wait_max_ms,
    };
    let payloads = Payloads::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut record = |what: String, result: anyhow::Result<Row>| match result {
        Ok(row) => {
            println!("{}", row.line());
            rows.push(row);
        }
        Err(e) => println!("{what}: FAILED: {e:#}"),
    };
    println!("{}", report::header());
    let repeat = args.repeat.max(1);
    for w in args.workloads.split(',').filter(|w| !w.is_empty()) {
        let (n, s) = w.split_once(':').context("workload is RECORDS:BYTES")?;
        let (n, s): (usize, usize) = (n.parse()?, s.parse()?);
        for &p in &list::<i32>(&args.partitions)? {
            for acks in args.acks.split(',') {
                let what = |kind: Kind| format!("{} {n}x{s}B p={p} acks={acks}", kind.name());
                let mut runs: Vec<Vec<Row>> = vec![Vec::new(); kinds.len()];
                for round in 1..=repeat {
                    for (i, &kind) in kinds.iter().enumerate() {
                        match throughput(kind, &programs, &payloads, &settings, (n, s, p), acks) {
                            Ok(row) => {
                                println!("  run {round}/{repeat}: {}", row.line());
                                println!("  {}", row.produce_cpu_line());
                                runs[i].push(row);
                            }
                            Err(e) => {
                                println!("{} run {round}/{repeat}: FAILED: {e:#}", what(kind))
                            }
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                for (&kind, runs) in kinds.iter().zip(runs) {
                    record(what(kind), report::median(runs).context("every run failed"));
                }
            }
        }
    }
    if args.latency_rate > 0 {
        // The sinks serve copies of one batch, so a record's send time cannot
        // travel through them.
        for &kind in kinds.iter().filter(|k| !k.is_sink()) {
            let what = format!("{} end-to-end latency", kind.name());
            let r = latency(
                kind,
                &programs,
                &settings,
                args.latency_rate,
                args.latency_secs,
                &args.latency_acks,
                args.latency_linger_ms,
            );
            record(what, r);
        }
    }
    if args.cold_bytes > 0 && kinds.contains(&Kind::StrataS3) {
        let r = cold_replay(
            &programs,
            &payloads,
            &settings,
            args.cold_bytes,
            args.cold_repeat,
        );
        if let Ok(row) = &r {
            println!("{}", row.cold_cpu_line());
        }
        record("strata-s3 cold replay".into(), r);
    }
    let checks = report::checks(&rows, args.wal_flush_ms, args.cache_memory_bytes);
    println!();
    println!(
        "throughput: median of {repeat} runs; fetch.wait.max.ms={} wal.flush.ms={} cache.memory.bytes={} latency: {} rec/s, linger.ms={}",
        args.fetch_wait_max_ms,
        args.wal_flush_ms,
        args.cache_memory_bytes,
        args.latency_rate,
        args.latency_linger_ms
    );
    for c in &checks {
        println!("{}", c.line());
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "settings": {
                "fetch_wait_max_ms": args.fetch_wait_max_ms,
                "repeat": repeat,
                "wal_flush_ms": args.wal_flush_ms,
                "cache_memory_bytes": args.cache_memory_bytes,
                "latency_rate": args.latency_rate,
                "latency_secs": args.latency_secs,
                "latency_linger_ms": args.latency_linger_ms,
                "cold_bytes": args.cold_bytes,
                "cold_repeat": args.cold_repeat,
            },
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
            "checks": checks.iter().map(report::Check::json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}
