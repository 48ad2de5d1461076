//! Small shared types: topic-partition ids, the clock abstraction and the
//! Kafka topic-config names with Strata's defaults.
//!
//! Everything here is pure so that every other crate may depend on it.

pub mod config;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A topic name plus partition index: the unit of ordering and leadership.
#[derive(
    Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize,
)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Wall-clock time, behind a trait so tests and simulations can drive it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Default, Clone, Copy, Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Object key of a sealed segment: one folder per partition, so analytics
/// engines can glob `topics/<topic>/<partition>/*.parquet`.
pub fn segment_key(topic: &str, partition: i32, base_offset: i64) -> String {
    format!("topics/{topic}/{partition}/{base_offset:020}.parquet")
}

/// Folder holding every sealed segment of a topic.
pub fn topic_prefix(topic: &str) -> String {
    format!("topics/{topic}/")
}

/// Is `name` a legal Kafka topic name (same rule as Kafka: 1..=249 chars of
/// `[a-zA-Z0-9._-]`, not `.` or `..`)?
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(valid_topic_name("orders.v1_eu-west"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name("a/b"));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn segment_keys_sort_by_offset() {
        let a = segment_key("t", 0, 9);
        let b = segment_key("t", 0, 10);
        assert!(a < b, "{a} < {b}");
    }
}
