//! Load generated through librdkafka: a producer at full speed, a consumer from the
//! beginning, and a fixed-rate producer beside a tailing consumer for end-to-end latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, TopicPartitionList};

use crate::Payloads;

/// The client settings every target gets alike.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Kafka's fetch.wait.max.ms: Tansu answers a fetch only when it expires, so every
    /// broker gets the same small value.
    pub fetch_wait_max_ms: u32,
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

/// Sends one record, waiting for room while the client's queue is full.
fn send<'a>(
    producer: &BaseProducer<Latencies>,
    mut rec: BaseRecord<'a, (), [u8], Box<Instant>>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("produce failed: {e}"),
        }
    }
}

pub fn create_topic(
    addr: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = futures_block(admin.create_topics(&[new], &AdminOptions::new()))?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// A finished produce run: wall time and every record's send-to-acknowledgement time.
pub struct Produced {
    pub secs: f64,
    /// Sorted, in microseconds.
    pub latencies_us: Vec<u32>,
}

pub fn produce(
    addr: &str,
    topic: &str,
    payloads: &Payloads,
    records: usize,
    size: usize,
    partitions: i32,
    acks: &str,
) -> anyhow::Result<Produced> {
    let lat = Arc::new(Mutex::new(Vec::with_capacity(records)));
    let producer: BaseProducer<Latencies> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "300000")
        .create_with_context(Latencies(lat.clone()))?;
    let start = Instant::now();
    for i in 0..records {
        let p = (i % partitions as usize) as i32;
        let rec =
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(payloads.get(i, size))
                .partition(p);
        send(&producer, rec)?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(600))?;
    let secs = start.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    if l.len() != records {
        bail!("only {} of {records} deliveries succeeded", l.len());
    }
    l.sort_unstable();
    Ok(Produced {
        secs,
        latencies_us: l,
    })
}

fn consumer(addr: &str, settings: &ClientSettings) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string())
        // librdkafka stops fetching for fetch.queue.backoff.ms (1 s) whenever its
        // local queue holds queued.min.messages (100k): with records consumed one
        // poll at a time that stall, not the broker, set the rate.
        .set("queued.min.messages", "10000000")
        .set("queued.max.messages.kbytes", "1048576")
        .set("fetch.queue.backoff.ms", "1")
        .create()?)
}

/// Reads `records` records of `size` bytes from the beginning of every partition and
/// returns the seconds from the first record to the last, as Kafka's consumer perf
/// test counts them (client start-up is not the broker's cost).
pub fn consume(
    addr: &str,
    topic: &str,
    records: usize,
    size: usize,
    partitions: i32,
    settings: &ClientSettings,
) -> anyhow::Result<f64> {
    let consumer = consumer(addr, settings)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut start = Instant::now();
    let mut got = 0usize;
    let deadline = start + Duration::from_secs(900);
    while got < records {
        if Instant::now() > deadline {
            bail!("consumed only {got} of {records}");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            if m.payload().map(|p| p.len()) != Some(size) {
                bail!("record of wrong size at offset {}", m.offset());
            }
            if got == 0 {
                start = Instant::now();
            }
            got += 1;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Fixed-rate run: every record's send-to-acknowledgement and send-to-consumed time,
/// in microseconds, sorted.
pub struct Paced {
    pub ack_us: Vec<u32>,
    pub e2e_us: Vec<u32>,
}

/// Produces `rate` records/s of `size` bytes for `secs` seconds to partition 0 while a
/// consumer tails it, after two seconds of warm-up that is not counted (the first
/// records also wait for metadata and connections). The send time travels in the
/// payload; both ends share one clock.
/// A fixed-rate run's shape.
pub struct Pace<'a> {
    pub rate: u32,
    pub secs: u32,
    pub size: usize,
    pub acks: &'a str,
    pub linger_ms: u32,
}

pub fn end_to_end(
    addr: &str,
    topic: &str,
    pace: &Pace<'_>,
    settings: &ClientSettings,
) -> anyhow::Result<Paced> {
    let Pace {
        rate,
        secs,
        size,
        acks,
        linger_ms,
    } = *pace;
    let warmup = 2 * rate as usize;
    let total = 1 + warmup + (rate * secs) as usize;
    let epoch = Instant::now();
    let consumer = consumer(addr, settings)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let done = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let done = done.clone();
        move || -> anyhow::Result<Vec<u32>> {
            let mut seen = Vec::with_capacity(total);
            let mut got = 0usize;
            while got < total && !done.load(Ordering::Relaxed) {
                if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                    let m = m?;
                    let p = m.payload().context("record without payload")?;
                    let sent = u64::from_le_bytes(p[..8].try_into()?);
                    let now = epoch.elapsed().as_micros() as u64;
                    got += 1;
                    if p[8] == 1 {
                        seen.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                    }
                }
            }
            Ok(seen)
        }
    });
    let acks_seen = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let producer: BaseProducer<Latencies> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .set("linger.ms", linger_ms.to_string())
        .set("enable.idempotence", "false")
        .create_with_context(Latencies(acks_seen.clone()))?;
    let mut payload = vec![b'x'; size.max(9)];
    // One record through before the clock starts: leaders elected, connections up.
    payload[8] = 0;
    producer
        .send(
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload[..])
                .partition(0),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(60))?;
    let started = Instant::now();
    for i in 0..total - 1 {
        // Paced against the schedule, not the previous send, so a stall is caught up
        // rather than hiding latency (coordinated omission).
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if i == warmup {
            acks_seen.lock().unwrap().clear();
        }
        payload[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_le_bytes());
        payload[8] = u8::from(i >= warmup);
        let rec =
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload[..])
                .partition(0);
        send(&producer, rec)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))?;
    let wait_until = Instant::now() + Duration::from_secs(60);
    while !reader.is_finished() && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(50));
    }
    done.store(true, Ordering::Relaxed);
    let mut e2e_us = reader
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    let measured = total - warmup - 1;
    if e2e_us.len() < measured {
        bail!(
            "consumed only {} of {measured} latency records",
            e2e_us.len()
        );
    }
    e2e_us.sort_unstable();
    let mut ack_us = acks_seen.lock().unwrap().clone();
    ack_us.sort_unstable();
    Ok(Paced { ack_us, e2e_us })
}

/// Milliseconds at quantile `p` of sorted microsecond samples.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[idx] as f64 / 1000.0
}

/// Drives one admin future to completion without an async runtime.
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
