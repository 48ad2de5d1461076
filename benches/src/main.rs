//! Produce/consume benchmark through librdkafka against a fresh `strata
//! serve` per run: msgs/s, MB/s, produce latency percentiles (acks=1 and
//! acks=all) and the broker's peak RSS.
//!
//! `cargo run --release -p strata-bench -- --help`

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, TopicPartitionList};

#[derive(Parser, Debug)]
struct Args {
    /// Path of the strata binary.
    #[arg(long, default_value = "target/release/strata")]
    strata: String,
    /// Workloads as RECORDS:BYTES, comma separated.
    #[arg(long, default_value = "1000000:100,200000:1024")]
    workloads: String,
    /// Partition counts to run, comma separated.
    #[arg(long, default_value = "1,8")]
    partitions: String,
    /// acks settings to run, comma separated.
    #[arg(long, default_value = "1,all")]
    acks: String,
    /// Broker's --wal-flush-ms.
    #[arg(long, default_value_t = 5)]
    wal_flush_ms: u64,
    /// Write the rows as JSON here too.
    #[arg(long)]
    json: Option<String>,
}

struct Latencies(Arc<Mutex<Vec<u32>>>);

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        if result.is_ok() {
            let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
            self.0.lock().unwrap().push(us);
        }
    }
}

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: &str, flush_ms: u64) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                &addr,
                "--wal-flush-ms",
                &flush_ms.to_string(),
                "--data-dir",
            ])
            .arg(dir.path())
            .env("STRATA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                bail!("strata did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server {
            child,
            addr,
            _dir: dir,
        })
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

struct Row {
    records: usize,
    size: usize,
    partitions: i32,
    acks: String,
    produce_msgs: f64,
    produce_mb: f64,
    p50: f64,
    p99: f64,
    consume_msgs: f64,
    consume_mb: f64,
    rss: f64,
}

fn run(
    args: &Args,
    records: usize,
    size: usize,
    partitions: i32,
    acks: &str,
) -> anyhow::Result<Row> {
    let server = Server::start(&args.strata, args.wal_flush_ms)?;
    let topic = "bench";
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .create()?;
    let rt = std::thread::spawn({
        let admin_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        move || {
            let opts = AdminOptions::new();
            futures_block(admin.create_topics(&[admin_topic], &opts))
        }
    });
    for r in rt
        .join()
        .map_err(|_| anyhow::anyhow!("admin thread panicked"))??
    {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }

    let lat = Arc::new(Mutex::new(Vec::with_capacity(records)));
    let producer: BaseProducer<Latencies> = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "false")
        .create_with_context(Latencies(lat.clone()))?;
    let payload = vec![b'x'; size];
    let start = Instant::now();
    for i in 0..records {
        let p = (i % partitions as usize) as i32;
        let mut rec =
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload[..])
                .partition(p);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    let produce_secs = start.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    if l.len() != records {
        bail!("only {} of {records} deliveries succeeded", l.len());
    }
    l.sort_unstable();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut start = Instant::now();
    let mut got = 0usize;
    let deadline = start + Duration::from_secs(600);
    while got < records {
        if Instant::now() > deadline {
            bail!("consumed only {got} of {records}");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            if m.payload().map(|p| p.len()) != Some(size) {
                bail!("record of wrong size at offset {}", m.offset());
            }
            // Throughput is timed from the first record, as Kafka's
            // consumer perf test does, so client start-up is not counted.
            if got == 0 {
                start = Instant::now();
            }
            got += 1;
        }
    }
    let consume_secs = start.elapsed().as_secs_f64();
    let mb = (records * size) as f64 / 1e6;
    Ok(Row {
        records,
        size,
        partitions,
        acks: acks.to_string(),
        produce_msgs: records as f64 / produce_secs,
        produce_mb: mb / produce_secs,
        p50: percentile(&l, 0.50),
        p99: percentile(&l, 0.99),
        consume_msgs: records as f64 / consume_secs,
        consume_mb: mb / consume_secs,
        rss: server.peak_rss_mib(),
    })
}

/// Drives one admin future to completion on a throwaway runtime-free loop.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    println!(
        "{:>9} {:>6} {:>5} {:>4} | {:>10} {:>8} {:>9} {:>9} | {:>10} {:>8} | {:>8}",
        "records",
        "bytes",
        "parts",
        "acks",
        "prod msg/s",
        "prod MB/s",
        "p50 ms",
        "p99 ms",
        "cons msg/s",
        "cons MB/s",
        "peak RSS"
    );
    for w in args.workloads.split(',') {
        let (n, s) = w.split_once(':').context("workload is RECORDS:BYTES")?;
        let (n, s): (usize, usize) = (n.parse()?, s.parse()?);
        for p in args.partitions.split(',') {
            let p: i32 = p.parse()?;
            for acks in args.acks.split(',') {
                let r = run(&args, n, s, p, acks)?;
                println!(
                    "{:>9} {:>6} {:>5} {:>4} | {:>10.0} {:>9.1} {:>9.2} {:>9.2} | {:>10.0} {:>9.1} | {:>6.0} MiB",
                    r.records, r.size, r.partitions, r.acks, r.produce_msgs, r.produce_mb, r.p50, r.p99, r.consume_msgs, r.consume_mb, r.rss
                );
                rows.push(r);
            }
        }
    }
    if let Some(path) = &args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "target": "strata-local", "records": r.records, "record_bytes": r.size,
                    "partitions": r.partitions, "acks": r.acks,
                    "produce_msgs_per_s": r.produce_msgs, "produce_mb_per_s": r.produce_mb,
                    "produce_p50_ms": r.p50, "produce_p99_ms": r.p99,
                    "consume_msgs_per_s": r.consume_msgs, "consume_mb_per_s": r.consume_mb,
                    "peak_rss_mib": r.rss,
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}
