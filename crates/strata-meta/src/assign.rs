//! Partition leadership: which live broker leads each partition. [`plan`] is
//! the pure decision (balanced by partition count); [`run_assigner`] applies
//! it through [`Metadata::acquire_partition`], whose epoch bump fences the
//! previous leader's commits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use strata_common::{Clock, TopicPartition};
use tokio_util::sync::CancellationToken;

use crate::{ClusterView, Metadata};

/// Moves that make every partition led by a live broker, with leader counts
/// differing by at most one. `keep` names brokers whose partitions must not
/// move even though they are not live (a freshly started service gives
/// brokers one session timeout to register again).
pub fn plan(view: &ClusterView, keep: &BTreeSet<i32>) -> Vec<(TopicPartition, i32)> {
    let live: BTreeSet<i32> = view.brokers.iter().map(|b| b.id).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let mut led: BTreeMap<i32, Vec<TopicPartition>> = live.iter().map(|b| (*b, vec![])).collect();
    let mut orphans = Vec::new();
    for p in &view.leaders {
        match led.get_mut(&p.leader) {
            Some(v) => v.push(p.tp.clone()),
            None if keep.contains(&p.leader) => {}
            None => orphans.push(p.tp.clone()),
        }
    }
    let mut moves = Vec::new();
    let least = |led: &BTreeMap<i32, Vec<TopicPartition>>| {
        led.iter()
            .min_by_key(|(id, v)| (v.len(), **id))
            .map(|(id, _)| *id)
            .unwrap()
    };
    for tp in orphans {
        let to = least(&led);
        led.get_mut(&to).unwrap().push(tp.clone());
        moves.push((tp, to));
    }
    if !keep.is_empty() {
        // Rebalancing waits until every broker had its chance to return.
        return moves;
    }
    loop {
        let (max_id, max_n) = led
            .iter()
            .max_by_key(|(id, v)| (v.len(), std::cmp::Reverse(**id)))
            .map(|(id, v)| (*id, v.len()))
            .unwrap();
        let to = least(&led);
        if max_n <= led[&to].len() + 1 {
            break;
        }
        let tp = led.get_mut(&max_id).unwrap().pop().unwrap();
        led.get_mut(&to).unwrap().push(tp.clone());
        moves.push((tp, to));
    }
    moves
}

/// Runs the assignment loop while this replica holds the assignment lead.
/// For `grace_ms` after start, leaders that have not registered yet keep
/// their partitions, so a restarted metadata service does not move
/// everything to whichever broker re-registers first.
pub async fn run_assigner(
    meta: Arc<dyn Metadata>,
    replica: String,
    clock: Arc<dyn Clock>,
    grace_ms: i64,
    every: Duration,
    stop: CancellationToken,
) {
    let started = clock.now_ms();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match meta.assignment_leader(&replica).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "assignment lead check failed");
                continue;
            }
        }
        let view = match meta.cluster().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "reading the cluster view failed");
                continue;
            }
        };
        let keep: BTreeSet<i32> = if clock.now_ms() - started < grace_ms {
            view.leaders
                .iter()
                .map(|p| p.leader)
                .filter(|l| *l >= 0)
                .collect()
        } else {
            BTreeSet::new()
        };
        for (tp, to) in plan(&view, &keep) {
            match meta.acquire_partition(&tp, to).await {
                Ok(m) => {
                    tracing::info!(%tp, broker = to, epoch = m.leader_epoch, "partition assigned")
                }
                Err(e) => {
                    tracing::warn!(%tp, broker = to, error = %e, "assigning partition failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BrokerInfo, PartitionLeader};

    fn view(brokers: &[i32], leaders: &[i32]) -> ClusterView {
        ClusterView {
            brokers: brokers
                .iter()
                .map(|id| BrokerInfo {
                    id: *id,
                    host: "h".into(),
                    port: 9092,
                })
                .collect(),
            leaders: leaders
                .iter()
                .enumerate()
                .map(|(p, l)| PartitionLeader {
                    tp: TopicPartition::new("t", p as i32),
                    leader: *l,
                    epoch: 1,
                })
                .collect(),
        }
    }

    fn apply(v: &mut ClusterView, moves: &[(TopicPartition, i32)]) {
        for (tp, to) in moves {
            let p = v.leaders.iter_mut().find(|p| p.tp == *tp).unwrap();
            p.leader = *to;
        }
    }

    fn counts(v: &ClusterView) -> BTreeMap<i32, usize> {
        let mut c = BTreeMap::new();
        for p in &v.leaders {
            *c.entry(p.leader).or_default() += 1;
        }
        c
    }

    #[test]
    fn new_partitions_spread_evenly() {
        let mut v = view(&[1, 2, 3], &[-1; 12]);
        let m = plan(&v, &BTreeSet::new());
        assert_eq!(m.len(), 12);
        apply(&mut v, &m);
        assert_eq!(counts(&v), BTreeMap::from([(1, 4), (2, 4), (3, 4)]));
        assert!(
            plan(&v, &BTreeSet::new()).is_empty(),
            "stable once balanced"
        );
    }

    #[test]
    fn a_dead_brokers_partitions_move_and_only_they_move() {
        let mut v = view(&[1, 3], &[1, 2, 3, 1, 2, 3]);
        let m = plan(&v, &BTreeSet::new());
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|(tp, _)| tp.partition % 3 == 1));
        apply(&mut v, &m);
        assert_eq!(counts(&v), BTreeMap::from([(1, 3), (3, 3)]));
    }

    #[test]
    fn a_joining_broker_takes_a_fair_share() {
        let mut v = view(&[1, 2, 3], &[1, 2, 1, 2, 1, 2, 1, 2, 1]);
        let m = plan(&v, &BTreeSet::new());
        apply(&mut v, &m);
        assert_eq!(counts(&v), BTreeMap::from([(1, 3), (2, 3), (3, 3)]));
        assert_eq!(m.len(), 3, "no more moves than needed");
    }

    #[test]
    fn brokers_in_their_grace_period_keep_their_partitions() {
        let v = view(&[1], &[1, 2, -1]);
        let m = plan(&v, &BTreeSet::from([2]));
        assert_eq!(m, vec![(TopicPartition::new("t", 2), 1)]);
        assert!(plan(&view(&[], &[-1]), &BTreeSet::new()).is_empty());
    }
}
