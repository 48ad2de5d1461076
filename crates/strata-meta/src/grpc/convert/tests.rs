use super::*;
use tonic::Code;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn roundtrip<T: ToPb + FromPb<Pb = <T as ToPb>::Pb> + PartialEq + std::fmt::Debug>(v: T) {
    let back = T::from_pb(v.to_pb()).expect("converts back");
    assert_eq!(back, v);
}

fn segment(producers: Option<ProducerSnapshot>) -> SegmentEntry {
    SegmentEntry {
        base_offset: 10,
        last_offset: 19,
        key: "topics/t/0/10.parquet".into(),
        size_bytes: 4096,
        max_timestamp: 1_700_000_000_000,
        producers,
    }
}

#[test]
fn every_type_survives_the_wire() {
    roundtrip(TopicMeta {
        name: "orders".into(),
        id: uuid::Uuid::new_v4(),
        partitions: 3,
        configs: [("retention.ms".to_string(), "1000".to_string())].into(),
    });
    roundtrip(segment(None));
    roundtrip(segment(Some(ProducerSnapshot {
        complete: true,
        producers: vec![ProducerEntry {
            producer_id: 7,
            epoch: i16::MAX,
            last_seen_ms: 5,
            batches: vec![ProducerBatch {
                first_seq: 0,
                last_seq: 4,
                base_offset: 10,
                last_offset: 14,
                timestamp: -1,
            }],
        }],
    })));
    // An empty snapshot is not the same as none.
    roundtrip(segment(Some(ProducerSnapshot::default())));
    let range = WalRange {
        key: "wal/1/2".into(),
        start: 5,
        end: 99,
        base_offset: 20,
        last_offset: 29,
        max_timestamp: 3,
    };
    roundtrip(PartitionManifest {
        leader_epoch: 4,
        leader: -1,
        log_start_offset: 10,
        end_offset: 30,
        segments: vec![segment(None)],
        wal: vec![range.clone()],
    });
    roundtrip(WalCommit {
        tp: tp("t", 2),
        epoch: 4,
        range,
    });
    roundtrip((
        tp("t", 1),
        CommittedOffset {
            offset: 42,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 9,
        },
    ));
    roundtrip(ClusterView {
        brokers: vec![BrokerInfo {
            id: 1,
            host: "h".into(),
            port: 9092,
        }],
        leaders: vec![PartitionLeader {
            tp: tp("t", 0),
            leader: 1,
            epoch: 2,
        }],
    });
    roundtrip(Freed {
        segments: vec![segment(None)],
        wal_keys: vec!["wal/a".into()],
    });
}

#[test]
fn out_of_range_and_missing_fields_are_refused() {
    let mut entry = ProducerEntry {
        producer_id: 1,
        epoch: 0,
        last_seen_ms: 0,
        batches: vec![],
    }
    .to_pb();
    entry.producer_epoch = i32::from(i16::MAX) + 1;
    assert!(ProducerEntry::from_pb(entry).is_err());
    let mut topic = TopicMeta {
        name: "t".into(),
        id: uuid::Uuid::new_v4(),
        partitions: 1,
        configs: BTreeMap::new(),
    }
    .to_pb();
    topic.topic_id = "not-a-uuid".into();
    assert!(TopicMeta::from_pb(topic).is_err());
    assert!(WalCommit::from_pb(pb::WalCommit::default()).is_err());
}

#[test]
fn every_error_variant_round_trips_through_a_status() {
    let errors = [
        MetaError::TopicExists("t".into()),
        MetaError::UnknownTopic("t".into()),
        MetaError::UnknownPartition(tp("t", 3)),
        MetaError::InvalidPartitions("too few".into()),
        MetaError::Fenced {
            tp: tp("t", 1),
            current: 5,
            given: 4,
        },
        MetaError::OffsetMismatch {
            tp: tp("t", 1),
            end: 10,
            given: 12,
        },
        MetaError::InvalidOffset(-3),
        MetaError::Storage("invalid topic config".into()),
        MetaError::UnknownBroker(9),
    ];
    for e in errors {
        let status = to_status(&e);
        assert_eq!(status.message(), e.to_string());
        // Through the bytes a real response carries, not just the struct.
        let wire = Status::with_details(
            status.code(),
            status.message(),
            status.details().to_vec().into(),
        );
        let back = from_status(&wire).expect("typed detail");
        assert_eq!(format!("{back:?}"), format!("{e:?}"));
        assert_eq!(back.is_retriable(), e.is_retriable());
        assert_eq!(back.is_fenced(), e.is_fenced());
    }
}

#[test]
fn a_status_without_our_detail_is_not_a_backend_error() {
    assert!(from_status(&Status::unavailable("tcp connect error")).is_none());
    let foreign = Status::with_details(Code::Internal, "x", vec![1, 2, 3].into());
    assert!(from_status(&foreign).is_none());
}

#[test]
fn status_codes_follow_grpc_meaning() {
    assert_eq!(
        to_status(&MetaError::TopicExists("t".into())).code(),
        Code::AlreadyExists
    );
    assert_eq!(
        to_status(&MetaError::Storage("disk".into())).code(),
        Code::Unavailable
    );
    let fenced = MetaError::Fenced {
        tp: tp("t", 0),
        current: 2,
        given: 1,
    };
    assert_eq!(to_status(&fenced).code(), Code::FailedPrecondition);
}
