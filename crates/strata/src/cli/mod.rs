//! The client half of the `strata` binary: `topic`, `group`, `produce` and
//! `consume` speak the Kafka protocol (through librdkafka) to any
//! Kafka-compatible broker, Strata or Kafka itself. This module holds what
//! every command shares: connection flags, client configuration, turning
//! librdkafka errors into one-line messages, and table printing.

pub mod consume;
pub mod datetime;
pub mod group;
pub mod offsets;
pub mod produce;
pub mod topic;

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;

/// Connection flags taken by every client command.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Broker(s) to bootstrap from: HOST:PORT[,HOST:PORT...].
    #[arg(
        short = 'b',
        long,
        env = "STRATA_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap_server: String,
    /// A librdkafka client property, KEY=VALUE (repeatable, like kcat's -X);
    /// wins over anything the command sets itself.
    #[arg(
        short = 'X',
        long = "command-property",
        value_name = "KEY=VALUE",
        global = true
    )]
    pub properties: Vec<String>,
    /// Give up on an unreachable broker or an unanswered request after this long.
    #[arg(long, default_value_t = 10_000, value_name = "MS", global = true)]
    pub request_timeout_ms: u64,
}

impl ClientArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Client configuration: the bootstrap server, then the command's own
    /// settings, then `-X` properties, so the user always has the last word.
    pub fn config(&self, settings: &[(&str, &str)]) -> anyhow::Result<ClientConfig> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_server)
            .set("client.id", "strata-cli")
            // Without this, librdkafka keeps retrying a dead address for the
            // whole request timeout before saying why.
            .set(
                "socket.connection.setup.timeout.ms",
                self.request_timeout_ms.max(1000).to_string(),
            );
        for (k, v) in settings {
            c.set(*k, *v);
        }
        for p in &self.properties {
            let (k, v) =
                split_key_value(p, "=").with_context(|| format!("-X {p:?} is not KEY=VALUE"))?;
            c.set(k, v);
        }
        Ok(c)
    }

    /// Creates a librdkafka client of any kind, reporting a bad `-X` property
    /// by name.
    pub fn create<T: rdkafka::config::FromClientConfig>(
        &self,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<T> {
        self.config(settings)?.create().map_err(creation_error)
    }

    /// Like [`ClientArgs::create`], with a context of the command's own.
    pub fn create_with_context<C, T>(
        &self,
        settings: &[(&str, &str)],
        context: C,
    ) -> anyhow::Result<T>
    where
        C: ClientContext,
        T: rdkafka::config::FromClientConfigAndContext<C>,
    {
        self.config(settings)?
            .create_with_context(context)
            .map_err(creation_error)
    }

    /// Fetches metadata (for one topic or all), which also proves the broker
    /// is reachable; an unreachable broker gets a message that says so.
    pub fn metadata<C: ClientContext>(
        &self,
        client: &Client<C>,
        topic: Option<&str>,
    ) -> anyhow::Result<Metadata> {
        client
            .fetch_metadata(topic, self.timeout())
            .map_err(|e| self.unreachable_or(e, "fetching metadata"))
    }

    /// Maps errors that mean "no broker answered" to one clear message, and
    /// anything else to `doing: reason`.
    pub fn unreachable_or(&self, e: KafkaError, doing: &str) -> anyhow::Error {
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::BrokerNotAvailable,
            ) => anyhow!(
                "cannot reach a broker at {} within {} ms ({})",
                self.bootstrap_server,
                self.request_timeout_ms,
                reason(&e)
            ),
            _ => anyhow!("{doing}: {}", reason(&e)),
        }
    }
}

fn creation_error(e: KafkaError) -> anyhow::Error {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            anyhow!("invalid client property {key}={value}: {desc}")
        }
        other => anyhow!("creating the Kafka client: {}", reason(&other)),
    }
}

/// The part of a librdkafka error worth showing: the broker's or client's
/// reason without rdkafka's "KafkaError (...)" wrapping.
pub fn reason(e: &KafkaError) -> String {
    match e {
        KafkaError::AdminOp(code) => describe(*code),
        other => match other.rdkafka_error_code() {
            Some(code) => describe(code),
            None => other.to_string(),
        },
    }
}

/// librdkafka's text for an error code, e.g. "Broker: Unknown topic or
/// partition", without the variant name rdkafka puts in front of it.
pub fn describe(code: RDKafkaErrorCode) -> String {
    let full = code.to_string();
    match full.split_once(" (") {
        Some((_, text)) if full.ends_with(')') => text[..text.len() - 1].to_string(),
        _ => full,
    }
}

/// Splits `k<sep>v` at the first separator.
pub fn split_key_value<'a>(s: &'a str, sep: &str) -> anyhow::Result<(&'a str, &'a str)> {
    match s.split_once(sep) {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => bail!("expected KEY{sep}VALUE"),
    }
}

/// Parses repeated `k=v` flags, naming the flag in the error.
pub fn parse_pairs<'a>(flag: &str, items: &'a [String]) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    items
        .iter()
        .map(|s| split_key_value(s, "=").with_context(|| format!("{flag} {s:?}")))
        .collect()
}

/// Fails with "unknown topic" when metadata says the topic is not there, and
/// returns its partition ids otherwise.
pub fn topic_partitions(metadata: &Metadata, topic: &str) -> anyhow::Result<Vec<i32>> {
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("unknown topic '{topic}'");
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition || t.partitions().is_empty() {
            bail!("unknown topic '{topic}'");
        }
        bail!("topic '{topic}': {}", describe(code));
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Column-aligned text, like the tables Kafka's shell tools print.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let mut t = Table::new(&["GROUP", "LAG", "HOST"]);
        t.row(vec!["g".into(), "10".into(), "-".into()]);
        t.row(vec!["longer-group".into(), "0".into(), "".into()]);
        assert_eq!(
            t.render(),
            "GROUP         LAG  HOST\ng             10   -\nlonger-group  0\n"
        );
    }

    #[test]
    fn key_values_split_at_the_first_separator() {
        assert_eq!(split_key_value("a=b=c", "=").unwrap(), ("a", "b=c"));
        assert_eq!(split_key_value("k::v", "::").unwrap(), ("k", "v"));
        assert!(split_key_value("novalue", "=").is_err());
        assert!(split_key_value("=v", "=").is_err());
    }
}
