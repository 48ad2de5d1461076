//! A random script of every metadata operation, valid and not, whose
//! answers and final state must be identical on every backend.

use std::collections::BTreeMap;

use strata_common::TopicPartition;
use strata_meta::{CommittedOffset, Metadata, WalCommit};

use super::{commit, segment, tp};

/// A small linear congruential generator: the script must be the same on
/// both backends.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Random operations of every kind, valid and not; returns what each
/// answered and the final state, for comparing backends.
pub async fn script(m: &dyn Metadata, seed: u64, steps: usize) -> Vec<String> {
    let mut r = Lcg(seed);
    let mut log = Vec::new();
    let mut topics: BTreeMap<String, i32> = BTreeMap::new();
    let mut sent: Vec<WalCommit> = Vec::new();
    for step in 0..steps {
        let pick = |r: &mut Lcg, topics: &BTreeMap<String, i32>| -> TopicPartition {
            let names: Vec<&String> = topics.keys().collect();
            if names.is_empty() {
                return tp("none", 0);
            }
            let name = names[r.below(names.len() as u64) as usize];
            // Now and then one past the last partition.
            tp(name, r.below(topics[name] as u64 + 1) as i32)
        };
        let line = match r.below(20) {
            0 => {
                let name = format!("t{}", r.below(4));
                let n = 1 + r.below(12) as i32;
                let res = m.create_topic(&name, n, BTreeMap::new()).await;
                if res.is_ok() {
                    topics.insert(name.clone(), n);
                }
                format!("create {name} {n}: {:?}", res.map(|t| t.partitions))
            }
            1 => {
                let name = format!("t{}", r.below(4));
                let res = m.delete_topic(&name).await;
                topics.remove(&name);
                format!("delete {name}: {:?}", res.map(|(t, freed)| (t.name, freed)))
            }
            2 => {
                let t = pick(&mut r, &topics);
                let total = topics.get(&*t.topic).copied().unwrap_or(1) + r.below(3) as i32;
                let res = m.create_partitions(&t.topic, total).await;
                if res.is_ok() {
                    topics.insert(t.topic.to_string(), total);
                }
                format!("grow {} {total}: {:?}", t.topic, res.map(|t| t.partitions))
            }
            3 | 4 => {
                let t = pick(&mut r, &topics);
                let broker = r.below(3) as i32;
                format!("acquire {t}: {:?}", m.acquire_partition(&t, broker).await)
            }
            5..=11 => {
                let key = format!("wal/{}/{step}", r.below(3));
                let mut commits = Vec::new();
                for _ in 0..1 + r.below(8) {
                    let t = pick(&mut r, &topics);
                    let (epoch, end) = match m.manifest(&t).await {
                        Ok(man) => (man.leader_epoch, man.end_offset),
                        Err(_) => (1, 0),
                    };
                    let epoch = epoch - i32::from(r.below(8) == 0);
                    let base = end + i64::from(r.below(10) == 0);
                    commits.push(commit(&t, epoch, &key, base, base + r.below(3) as i64));
                }
                if !sent.is_empty() && r.below(4) == 0 {
                    commits.push(sent[r.below(sent.len() as u64) as usize].clone());
                }
                sent.extend(commits.iter().cloned());
                format!(
                    "commit_wal {commits:?}: {:?}",
                    m.commit_wal(commits.clone()).await
                )
            }
            12..=14 => {
                let t = pick(&mut r, &topics);
                match m.manifest(&t).await {
                    Ok(man) => {
                        let base = man
                            .segments
                            .last()
                            .map_or(man.log_start_offset, |s| s.last_offset + 1);
                        let last = man.end_offset - r.below(3) as i64;
                        let epoch = man.leader_epoch - i32::from(r.below(6) == 0);
                        let seg = segment(&format!("seg/{step}"), base, last);
                        format!(
                            "seal {t} {base}..={last}: {:?}",
                            m.commit_segment(&t, epoch, seg).await
                        )
                    }
                    Err(e) => format!("seal {t}: {e:?}"),
                }
            }
            15 | 16 => {
                let t = pick(&mut r, &topics);
                match m.manifest(&t).await {
                    Ok(man) => {
                        let start = if r.below(2) == 0 {
                            man.end_offset - r.below(2) as i64
                        } else {
                            r.below(man.end_offset as u64 + 2) as i64 - 1
                        };
                        let res = m.truncate_front(&t, man.leader_epoch, start).await;
                        format!("truncate {t} {start}: {res:?}")
                    }
                    Err(e) => format!("truncate {t}: {e:?}"),
                }
            }
            17 => {
                let group = format!("g/{}", r.below(3));
                let offsets = (0..1 + r.below(12))
                    .map(|i| {
                        let o = CommittedOffset {
                            offset: i as i64 + step as i64,
                            leader_epoch: -1,
                            metadata: format!("m{step}"),
                            commit_timestamp: step as i64,
                        };
                        (pick(&mut r, &topics), o)
                    })
                    .collect();
                format!(
                    "commit_offsets: {:?}",
                    m.commit_offsets(&group, offsets).await
                )
            }
            18 => {
                let group = format!("g/{}", r.below(3));
                let which = (r.below(2) == 0).then(|| vec![pick(&mut r, &topics)]);
                format!(
                    "delete_offsets {which:?}: {:?}",
                    m.delete_offsets(&group, which.clone()).await
                )
            }
            _ => {
                let t = pick(&mut r, &topics);
                let value = if r.below(3) == 0 { "10" } else { "1048576" };
                let configs = BTreeMap::from([("segment.bytes".to_string(), value.to_string())]);
                let res = m.set_topic_configs(&t.topic, configs).await;
                format!("configs {}: {:?}", t.topic, res.map(|t| t.configs))
            }
        };
        log.push(format!("{step}: {line}"));
    }
    for t in m.topics().await.expect("topics") {
        log.push(format!("topic {} {} {:?}", t.name, t.partitions, t.configs));
        for p in 0..t.partitions {
            log.push(format!("{:?}", m.manifest(&tp(&t.name, p)).await));
        }
    }
    log.push(format!("{:?}", m.cluster().await.expect("cluster").leaders));
    for g in m.offset_groups().await.expect("groups") {
        log.push(format!("{g}: {:?}", m.fetch_offsets(&g).await));
    }
    log
}
