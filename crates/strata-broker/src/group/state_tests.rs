use super::*;

const DELAY: i64 = 3_000;

fn req(member: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

fn join(g: &mut Group, r: JoinRequest, now: i64) -> oneshot::Receiver<JoinOutcome> {
    let (tx, rx) = oneshot::channel();
    g.join(r, now, tx);
    rx
}

/// Joins with an empty id, takes the id from MEMBER_ID_REQUIRED, rejoins.
fn join_new(
    g: &mut Group,
    protocols: &[&str],
    now: i64,
) -> (String, oneshot::Receiver<JoinOutcome>) {
    let mut first = join(g, req("", protocols), now);
    let out = first.try_recv().unwrap();
    assert_eq!(out.error, codes::MEMBER_ID_REQUIRED);
    let id = out.member_id;
    (id.clone(), join(g, req(&id, protocols), now))
}

fn sync(
    g: &mut Group,
    id: &str,
    gen: i32,
    assign: Vec<(String, Bytes)>,
    now: i64,
) -> oneshot::Receiver<SyncOutcome> {
    let (tx, rx) = oneshot::channel();
    g.sync(id, None, gen, None, None, assign, now, tx);
    rx
}

/// Two members form generation 1 with assignments "A" and "B".
fn stable_pair() -> (Group, String, String) {
    let mut g = Group::new("g", DELAY);
    let (a, mut ja) = join_new(&mut g, &["range"], 0);
    let (b, mut jb) = join_new(&mut g, &["range"], 100);
    assert!(ja.try_recv().is_err(), "initial delay holds the join");
    g.tick(100 + DELAY);
    let oa = ja.try_recv().unwrap();
    let ob = jb.try_recv().unwrap();
    assert_eq!((oa.error, oa.generation, ob.generation), (0, 1, 1));
    assert_eq!(oa.leader, a, "first joiner leads");
    assert_eq!(oa.members.len(), 2, "leader sees every member");
    assert!(ob.members.is_empty());
    let mut sb = sync(&mut g, &b, 1, vec![], 3_200);
    assert!(
        sb.try_recv().is_err(),
        "followers wait for the leader's sync"
    );
    let mut sa = sync(
        &mut g,
        &a,
        1,
        vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))],
        3_300,
    );
    assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from("A"));
    assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from("B"));
    assert_eq!(g.state, GroupState::Stable);
    (g, a, b)
}

#[test]
fn members_join_sync_and_get_the_leaders_assignment() {
    let (mut g, a, b) = stable_pair();
    assert_eq!(g.heartbeat(&a, None, 1, 4_000), codes::NONE);
    assert_eq!(g.heartbeat(&b, None, 0, 4_000), codes::ILLEGAL_GENERATION);
    assert_eq!(
        g.heartbeat("nobody", None, 1, 4_000),
        codes::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_leaving_member_triggers_a_rebalance_of_the_rest() {
    let (mut g, a, b) = stable_pair();
    assert_eq!(g.leave(&a, None, 5_000), codes::NONE);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&b, None, 1, 5_100),
        codes::REBALANCE_IN_PROGRESS
    );
    let mut jb = join(&mut g, req(&b, &["range"]), 5_200);
    let out = jb.try_recv().unwrap();
    assert_eq!((out.generation, out.leader.as_str()), (2, b.as_str()));
    assert_eq!(out.members.len(), 1);
    assert_eq!(g.leave(&a, None, 5_300), codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn an_expired_session_removes_the_member() {
    let (mut g, a, b) = stable_pair();
    // b keeps heartbeating, a goes silent.
    for t in (4_000..14_000).step_by(2_000) {
        assert_eq!(g.heartbeat(&b, None, 1, t), codes::NONE);
        g.tick(t);
    }
    g.tick(13_400);
    assert!(!g.members.contains_key(&a));
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped() {
    let (mut g, a, b) = stable_pair();
    // a rejoins (as after a subscription change); b never does.
    let mut ja = join(&mut g, req(&a, &["range", "roundrobin"]), 4_000);
    assert!(ja.try_recv().is_err());
    for t in (4_000..34_000).step_by(3_000) {
        let _ = g.heartbeat(&b, None, 1, t);
        g.tick(t);
    }
    g.tick(34_001);
    let out = ja.try_recv().unwrap();
    assert_eq!((out.generation, out.members.len()), (2, 1));
    assert!(!g.members.contains_key(&b));
}

#[test]
fn the_protocol_all_members_rank_highest_wins_and_misfits_are_refused() {
    let mut g = Group::new("g", 100);
    let (_, mut ja) = join_new(&mut g, &["cooperative-sticky", "range"], 0);
    let (_, mut jb) = join_new(&mut g, &["range", "cooperative-sticky"], 0);
    let (_, mut jc) = join_new(&mut g, &["range"], 0);
    g.tick(200);
    assert_eq!(
        ja.try_recv().unwrap().protocol_name.as_deref(),
        Some("range")
    );
    assert!(jb.try_recv().is_ok() && jc.try_recv().is_ok());
    let mut bad = join(&mut g, req("", &["roundrobin"]), 10);
    assert_eq!(
        bad.try_recv().unwrap().error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut r = req("", &["range"]);
    r.session_timeout_ms = 10;
    let mut bad = join(&mut g, r, 10);
    assert_eq!(
        bad.try_recv().unwrap().error,
        codes::INVALID_SESSION_TIMEOUT
    );
}

#[test]
fn a_static_member_rejoining_keeps_its_assignment_and_fences_its_old_id() {
    let mut g = Group::new("g", 100);
    let mut ra = req("", &["range"]);
    ra.instance_id = Some("leader-host".into());
    let mut ja = join(&mut g, ra.clone(), 0);
    let mut rb = req("", &["range"]);
    rb.instance_id = Some("host-b".into());
    let mut jb = join(&mut g, rb.clone(), 0);
    g.tick(200);
    let (oa, ob) = (ja.try_recv().unwrap(), jb.try_recv().unwrap());
    assert_eq!(
        (oa.error, ob.error),
        (0, 0),
        "static members skip MEMBER_ID_REQUIRED"
    );
    let (a, b) = (oa.member_id, ob.member_id);
    let mut sa = sync(&mut g, &a, 1, vec![(b.clone(), Bytes::from("B"))], 201);
    assert!(sa.try_recv().is_ok());
    // b restarts and comes back with no member id, same instance id.
    let mut jb2 = join(&mut g, rb, 300);
    let ob2 = jb2.try_recv().unwrap();
    assert_eq!((ob2.error, ob2.generation), (0, 1), "no rebalance");
    assert_ne!(ob2.member_id, b);
    assert_eq!(g.state, GroupState::Stable);
    let mut sb = sync(&mut g, &ob2.member_id, 1, vec![], 301);
    assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from("B"));
    assert_eq!(
        g.heartbeat(&b, Some("host-b"), 1, 302),
        codes::FENCED_INSTANCE_ID
    );
    assert_eq!(g.leave("", Some("host-b"), 303), codes::NONE);
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn commits_are_fenced_by_member_and_generation() {
    let (mut g, a, _) = stable_pair();
    assert_eq!(g.check_commit(&a, None, 1, 4_000), Ok(()));
    assert_eq!(
        g.check_commit(&a, None, 0, 4_000),
        Err(codes::ILLEGAL_GENERATION)
    );
    assert_eq!(
        g.check_commit("x", None, 1, 4_000),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        g.check_commit("", None, -1, 4_000),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    let mut empty = Group::new("e", 0);
    assert_eq!(empty.check_commit("", None, -1, 0), Ok(()));
}

#[test]
fn a_pending_member_id_that_never_rejoins_expires() {
    let mut g = Group::new("g", 0);
    let mut first = join(&mut g, req("", &["range"]), 0);
    assert_eq!(first.try_recv().unwrap().error, codes::MEMBER_ID_REQUIRED);
    assert!(!g.is_empty());
    g.tick(10_001);
    assert!(g.is_empty());
}
