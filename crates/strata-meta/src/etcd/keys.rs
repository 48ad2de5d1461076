//! Where each piece of metadata lives in etcd. Everything sits under one
//! prefix `P`, so several clusters can share an etcd:
//!
//! ```text
//! P/cluster_id                    uuid, created once
//! P/topics/<topic>                TopicMeta (JSON)
//! P/partitions/<topic>/<p>        PartitionManifest (JSON)
//! P/leaders/<topic>/<p>           {leader, epoch}, written with the manifest by
//!                                 acquire, so `cluster()` never reads manifests
//! P/groups/<group>/<topic>/<p>    CommittedOffset (JSON)
//! P/producer_id                   next producer id (decimal)
//! P/brokers/<id>                  BrokerInfo (JSON), on the broker's lease
//! P/assigner                      replica name, on the holder's lease
//! P/walrefs/<wal key>             references to a WAL object (decimal)
//! P/releases/<ms>-<uuid>          references still to subtract (JSON)
//! ```
//!
//! Group and topic names inside group keys are escaped (`%` and `/`), so a
//! group's keys are exactly one prefix and no group's prefix holds another's.

use strata_common::TopicPartition;

/// The first key after every key starting with `prefix`: the `range_end`
/// that makes a range a prefix scan.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only for a prefix of 0xff bytes (never ours): "every key".
    vec![0]
}

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn unescape(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

pub(crate) struct Keys {
    root: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            root: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub(crate) fn cluster_id(&self) -> String {
        format!("{}/cluster_id", self.root)
    }

    pub(crate) fn topics(&self) -> String {
        format!("{}/topics/", self.root)
    }

    pub(crate) fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topics())
    }

    pub(crate) fn partitions(&self, topic: &str) -> String {
        format!("{}/partitions/{topic}/", self.root)
    }

    pub(crate) fn partition(&self, tp: &TopicPartition) -> String {
        format!("{}{}", self.partitions(&tp.topic), tp.partition)
    }

    pub(crate) fn all_leaders(&self) -> String {
        format!("{}/leaders/", self.root)
    }

    pub(crate) fn leaders(&self, topic: &str) -> String {
        format!("{}{topic}/", self.all_leaders())
    }

    pub(crate) fn leader(&self, tp: &TopicPartition) -> String {
        format!("{}{}", self.leaders(&tp.topic), tp.partition)
    }

    /// The partition a `leader` key belongs to.
    pub(crate) fn parse_leader(&self, key: &str) -> Option<(String, i32)> {
        let rest = key.strip_prefix(&self.all_leaders())?;
        let (topic, p) = rest.rsplit_once('/')?;
        Some((topic.to_string(), p.parse().ok()?))
    }

    pub(crate) fn all_groups(&self) -> String {
        format!("{}/groups/", self.root)
    }

    pub(crate) fn group(&self, group: &str) -> String {
        format!("{}{}/", self.all_groups(), escape(group))
    }

    pub(crate) fn offset(&self, group: &str, tp: &TopicPartition) -> String {
        format!(
            "{}{}/{}",
            self.group(group),
            escape(&tp.topic),
            tp.partition
        )
    }

    /// Group, topic and partition of an `offset` key.
    pub(crate) fn parse_offset(&self, key: &str) -> Option<(String, TopicPartition)> {
        let rest = key.strip_prefix(&self.all_groups())?;
        let mut parts = rest.split('/');
        let (g, t, p) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let tp = TopicPartition::new(unescape(t), p.parse().ok()?);
        Some((unescape(g), tp))
    }

    pub(crate) fn producer_id(&self) -> String {
        format!("{}/producer_id", self.root)
    }

    pub(crate) fn brokers(&self) -> String {
        format!("{}/brokers/", self.root)
    }

    pub(crate) fn broker(&self, id: i32) -> String {
        format!("{}{id}", self.brokers())
    }

    pub(crate) fn assigner(&self) -> String {
        format!("{}/assigner", self.root)
    }

    pub(crate) fn walref(&self, wal_key: &str) -> String {
        format!("{}/walrefs/{wal_key}", self.root)
    }

    pub(crate) fn releases(&self) -> String {
        format!("{}/releases/", self.root)
    }

    /// A new release record's key; the creation time leads so that records
    /// older than a cutoff are one range.
    pub(crate) fn release(&self, now_ms: i64) -> String {
        format!(
            "{}{now_ms:020}-{}",
            self.releases(),
            uuid::Uuid::new_v4().simple()
        )
    }

    /// The end of the range of release records created before `ms`.
    pub(crate) fn releases_before(&self, ms: i64) -> String {
        format!("{}{:020}", self.releases(), ms.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_round_trip_and_never_nest() {
        let k = Keys::new("/strata/");
        let tp = TopicPartition::new("orders", 12);
        let key = k.offset("a/b%c", &tp);
        assert_eq!(key, "/strata/groups/a%2Fb%25c/orders/12");
        assert_eq!(k.parse_offset(&key), Some(("a/b%c".to_string(), tp)));
        assert!(!k
            .offset("a/b", &TopicPartition::new("t", 0))
            .starts_with(&k.group("a")));
    }

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end("a/"), b"a0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        let k = Keys::new("p");
        assert!(k.releases_before(5) < k.release(5));
        assert!(k.release(4) < k.releases_before(5));
        assert_eq!(
            k.parse_leader(&k.leader(&TopicPartition::new("t.x", 3))),
            Some(("t.x".to_string(), 3))
        );
    }
}
