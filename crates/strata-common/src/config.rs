//! Topic configuration under Kafka's own names, so admin tools and habits
//! carry over. Values are kept as strings (as Kafka's admin API carries
//! them) and parsed into [`TopicConfig`] where the log needs them.

use std::collections::BTreeMap;

/// Strata's defaults. Where they differ from Kafka's the reason is given.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.type", "producer"),
    ("delete.retention.ms", "86400000"),
    ("file.delete.delay.ms", "60000"),
    ("flush.messages", "9223372036854775807"),
    ("flush.ms", "9223372036854775807"),
    ("index.interval.bytes", "4096"),
    ("local.retention.bytes", "-2"),
    ("local.retention.ms", "-2"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.after.max.ms", "9223372036854775807"),
    ("message.timestamp.before.max.ms", "9223372036854775807"),
    ("message.timestamp.type", "CreateTime"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.compaction.lag.ms", "0"),
    ("min.insync.replicas", "1"),
    ("preallocate", "false"),
    ("remote.storage.enable", "false"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    // Kafka's 1 GiB would hold a whole segment in memory until sealed; a
    // smaller segment bounds memory and makes data queryable as Parquet sooner.
    ("segment.bytes", "67108864"),
    ("segment.index.bytes", "10485760"),
    ("segment.jitter.ms", "0"),
    // Kafka's default is 7 days; sealed Parquet is what analytics read, so
    // Strata seals idle segments after 10 minutes.
    ("segment.ms", "600000"),
    ("unclean.leader.election.enable", "false"),
];

/// The default value of a known topic config, or `None` for an unknown name.
pub fn default_value(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Why a config was refused; the broker maps it to INVALID_CONFIG.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown topic config {0}")]
    Unknown(String),
    #[error("invalid value {value:?} for topic config {name}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: &'static str,
    },
}

/// Checks one name/value pair the way Kafka's topic config validation does
/// for the configs Strata acts on; other known names are accepted as given.
pub fn validate(name: &str, value: &str) -> Result<(), ConfigError> {
    if default_value(name).is_none() {
        return Err(ConfigError::Unknown(name.to_string()));
    }
    let invalid = |reason| ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    };
    match name {
        "retention.ms" | "retention.bytes" => {
            let v: i64 = value.parse().map_err(|_| invalid("not a number"))?;
            if v < -1 {
                return Err(invalid("must be -1 or more"));
            }
        }
        "segment.bytes" => {
            let v: i64 = value.parse().map_err(|_| invalid("not a number"))?;
            if !(14..=i32::MAX as i64).contains(&v) {
                return Err(invalid("must be between 14 and 2147483647"));
            }
        }
        "segment.ms" => {
            let v: i64 = value.parse().map_err(|_| invalid("not a number"))?;
            if v < 1 {
                return Err(invalid("must be at least 1"));
            }
        }
        "max.message.bytes" => {
            let v: i64 = value.parse().map_err(|_| invalid("not a number"))?;
            if !(0..=i32::MAX as i64).contains(&v) {
                return Err(invalid("must be between 0 and 2147483647"));
            }
        }
        "cleanup.policy" => {
            for p in value.split(',') {
                if !matches!(p.trim(), "delete" | "compact") {
                    return Err(invalid("must be delete, compact or both"));
                }
            }
        }
        "message.timestamp.type" if !matches!(value, "CreateTime" | "LogAppendTime") => {
            return Err(invalid("must be CreateTime or LogAppendTime"));
        }
        _ => {}
    }
    Ok(())
}

/// The parsed configs the log acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    /// Compacted topics are kept whole: compaction is not implemented, and
    /// deleting by age would lose the latest value of a key.
    pub compact: bool,
    pub log_append_time: bool,
}

impl TopicConfig {
    /// Parses overrides over the defaults; unparsable values fall back to
    /// the default (they were validated when set).
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| -> String {
            overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| default_value(name).unwrap_or_default().to_string())
        };
        let num = |name: &str| -> i64 {
            get(name).parse().unwrap_or_else(|_| {
                default_value(name)
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0)
            })
        };
        Self {
            retention_ms: num("retention.ms"),
            retention_bytes: num("retention.bytes"),
            segment_bytes: num("segment.bytes"),
            segment_ms: num("segment.ms"),
            max_message_bytes: num("max.message.bytes").clamp(0, i32::MAX as i64) as i32,
            compact: get("cleanup.policy").contains("compact"),
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self::from_overrides(&BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_defaults() {
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "-1".to_string());
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        let c = TopicConfig::from_overrides(&o);
        assert_eq!(c.retention_ms, -1);
        assert!(c.compact);
        assert_eq!(c.segment_bytes, 67108864);
        assert_eq!(c.max_message_bytes, 1048588);
    }

    #[test]
    fn validation_rejects_what_kafka_rejects() {
        assert!(matches!(
            validate("no.such", "1"),
            Err(ConfigError::Unknown(_))
        ));
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("segment.bytes", "10").is_err());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("preallocate", "true").is_ok());
    }
}
