//! The group APIs of Kafka's classic protocol: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups and
//! DeleteGroups. The work is the coordinator's (`crate::group`); this module
//! translates between it and each API version's fields.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, RequestHeader, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Reply;
use crate::group::state::{JoinOutcome, JoinRequest, SyncOutcome};
use crate::{codes, Broker};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// READ, DELETE and DESCRIBE on a group, as Kafka's AclOperation bits.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub(crate) async fn find_coordinator(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: FindCoordinatorRequest,
) -> Reply {
    let v = header.request_api_version;
    let keys: Vec<StrBytes> = if v >= 4 {
        req.coordinator_keys
    } else {
        vec![req.key]
    };
    // Transactions are not served, so there is no transaction coordinator
    // to name; clients report the error instead of retrying elsewhere.
    let txn = req.key_type == 1;
    let entries: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let mut c = Coordinator::default().with_key(key);
            if txn {
                c.error_code = codes::COORDINATOR_NOT_AVAILABLE;
                c.error_message = Some(s("transactions are not supported by strata"));
                c.node_id = BrokerId(-1);
                c.host = s("");
                c.port = -1;
            } else {
                let b = broker.coordinator_for(&key_of(&c));
                c.node_id = BrokerId(b.id);
                c.host = s(b.host);
                c.port = b.port;
            }
            c
        })
        .collect();
    let mut resp = FindCoordinatorResponse::default();
    if v >= 4 {
        resp.coordinators = entries;
    } else if let Some(c) = entries.into_iter().next() {
        resp.error_code = c.error_code;
        if v >= 1 {
            resp.error_message = c.error_message;
        }
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    Reply::frame(header, &resp)
}

fn key_of(c: &Coordinator) -> String {
    c.key.to_string()
}

fn join_response(v: i16, o: JoinOutcome) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default()
        .with_error_code(o.error)
        .with_generation_id(o.generation)
        .with_leader(s(o.leader))
        .with_member_id(s(o.member_id));
    if v >= 7 {
        r.protocol_type = o.protocol_type.map(s);
        r.protocol_name = o.protocol_name.map(s);
    } else {
        r.protocol_name = Some(s(o.protocol_name.unwrap_or_default()));
    }
    r.members = o
        .members
        .into_iter()
        .map(|(id, inst, metadata)| {
            let mut m = JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_metadata(metadata);
            if v >= 5 {
                m.group_instance_id = inst.map(s);
            }
            m
        })
        .collect();
    r
}

pub(crate) async fn join(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: JoinGroupRequest,
    peer: SocketAddr,
) -> Reply {
    let v = header.request_api_version;
    let group = req.group_id.0.to_string();
    let refused = if group.is_empty() {
        Some(codes::INVALID_GROUP_ID)
    } else if !broker.is_coordinator(&group) {
        Some(codes::NOT_COORDINATOR)
    } else {
        None
    };
    if let Some(error) = refused {
        let o = JoinOutcome {
            error,
            generation: -1,
            member_id: req.member_id.to_string(),
            ..Default::default()
        };
        return Reply::frame(header, &join_response(v, o));
    }
    let request = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: if v >= 5 {
            req.group_instance_id.map(|i| i.to_string())
        } else {
            None
        },
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: v >= 4,
    };
    let member_id = request.member_id.clone();
    let rx = broker.groups.join(&group, request);
    let header = header.clone();
    Reply::Later(Box::pin(async move {
        // A dropped sender means the request was superseded (the member
        // joined again); the client retries the join.
        let o = rx.await.unwrap_or_else(|_| JoinOutcome {
            error: codes::REBALANCE_IN_PROGRESS,
            generation: -1,
            member_id,
            ..Default::default()
        });
        crate::conn::frame(&header, &join_response(v, o))
    }))
}

pub(crate) async fn sync(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: SyncGroupRequest,
) -> Reply {
    let v = header.request_api_version;
    let group = req.group_id.0.to_string();
    if !broker.is_coordinator(&group) {
        return Reply::frame(
            header,
            &SyncGroupResponse::default().with_error_code(codes::NOT_COORDINATOR),
        );
    }
    let instance = if v >= 3 {
        req.group_instance_id.map(|i| i.to_string())
    } else {
        None
    };
    let (ptype, pname) = if v >= 5 {
        (
            req.protocol_type.map(|p| p.to_string()),
            req.protocol_name.map(|p| p.to_string()),
        )
    } else {
        (None, None)
    };
    let rx = broker.groups.sync(
        &group,
        &req.member_id,
        instance.as_deref(),
        req.generation_id,
        ptype.as_deref(),
        pname.as_deref(),
        req.assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    );
    let header = header.clone();
    Reply::Later(Box::pin(async move {
        let o = rx.await.unwrap_or_else(|_| SyncOutcome {
            error: codes::REBALANCE_IN_PROGRESS,
            ..Default::default()
        });
        let mut r = SyncGroupResponse::default()
            .with_error_code(o.error)
            .with_assignment(o.assignment);
        if v >= 5 {
            r.protocol_type = o.protocol_type.map(s);
            r.protocol_name = o.protocol_name.map(s);
        }
        crate::conn::frame(&header, &r)
    }))
}

pub(crate) async fn heartbeat(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: HeartbeatRequest,
) -> Reply {
    let instance = if header.request_api_version >= 3 {
        req.group_instance_id.map(|i| i.to_string())
    } else {
        None
    };
    if !broker.is_coordinator(&req.group_id.0) {
        return Reply::frame(
            header,
            &HeartbeatResponse::default().with_error_code(codes::NOT_COORDINATOR),
        );
    }
    let code = broker.groups.heartbeat(
        &req.group_id.0,
        &req.member_id,
        instance.as_deref(),
        req.generation_id,
    );
    Reply::frame(header, &HeartbeatResponse::default().with_error_code(code))
}

pub(crate) async fn leave(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: LeaveGroupRequest,
) -> Reply {
    let v = header.request_api_version;
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    if !broker.is_coordinator(&req.group_id.0) {
        return Reply::frame(
            header,
            &LeaveGroupResponse::default().with_error_code(codes::NOT_COORDINATOR),
        );
    }
    let codes_out = broker.groups.leave(&req.group_id.0, &members);
    let mut resp = LeaveGroupResponse::default();
    if v >= 3 {
        resp.members = members
            .into_iter()
            .zip(codes_out)
            .map(|((id, inst), code)| {
                MemberResponse::default()
                    .with_member_id(s(id))
                    .with_group_instance_id(inst.map(s))
                    .with_error_code(code)
            })
            .collect();
    } else {
        resp.error_code = codes_out.first().copied().unwrap_or(codes::NONE);
    }
    Reply::frame(header, &resp)
}

pub(crate) async fn list(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: ListGroupsRequest,
) -> Reply {
    let v = header.request_api_version;
    let resp = match broker.groups.list().await {
        Err(code) => ListGroupsResponse::default().with_error_code(code),
        Ok(groups) => {
            let states: Vec<String> = req.states_filter.iter().map(|x| x.to_lowercase()).collect();
            let types: Vec<String> = req.types_filter.iter().map(|x| x.to_lowercase()).collect();
            let groups = groups
                .into_iter()
                // Each broker lists the groups it coordinates; admin
                // clients ask every broker, as with Kafka.
                .filter(|(id, _, _)| broker.is_coordinator(id))
                .filter(|(_, _, state)| {
                    v < 4 || states.is_empty() || states.contains(&state.to_lowercase())
                })
                // Every Strata group is a classic-protocol group.
                .filter(|_| v < 5 || types.is_empty() || types.iter().any(|t| t == "classic"))
                .map(|(id, ptype, state)| {
                    let mut g = ListedGroup::default()
                        .with_group_id(GroupId(s(id)))
                        .with_protocol_type(s(ptype));
                    if v >= 4 {
                        g.group_state = s(state);
                    }
                    if v >= 5 {
                        g.group_type = s("classic");
                    }
                    g
                })
                .collect();
            ListGroupsResponse::default().with_groups(groups)
        }
    };
    Reply::frame(header, &resp)
}

pub(crate) async fn describe(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: DescribeGroupsRequest,
) -> Reply {
    let v = header.request_api_version;
    let mut out = Vec::new();
    for id in req.groups {
        let mut d = DescribedGroup::default().with_group_id(id.clone());
        if v >= 3 {
            d.authorized_operations = if req.include_authorized_operations {
                GROUP_OPERATIONS
            } else {
                i32::MIN
            };
        }
        if !broker.is_coordinator(&id.0) {
            d.error_code = codes::NOT_COORDINATOR;
            out.push(d);
            continue;
        }
        match broker.groups.describe(&id.0).await {
            Err(code) => d.error_code = code,
            Ok(None) => {
                d.group_state = s("Dead");
                if v >= 6 {
                    d.error_code = codes::GROUP_ID_NOT_FOUND;
                    d.error_message = Some(s(format!("group {} not found", &*id.0)));
                }
            }
            Ok(Some(g)) => {
                d.group_state = s(g.state);
                d.protocol_type = s(g.protocol_type);
                d.protocol_data = s(g.protocol);
                d.members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default()
                            .with_member_id(s(m.member_id))
                            .with_client_id(s(m.client_id))
                            .with_client_host(s(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment);
                        if v >= 4 {
                            dm.group_instance_id = m.instance_id.map(s);
                        }
                        dm
                    })
                    .collect();
            }
        }
        out.push(d);
    }
    Reply::frame(header, &DescribeGroupsResponse::default().with_groups(out))
}

pub(crate) async fn delete(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: DeleteGroupsRequest,
) -> Reply {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut results = Vec::new();
    for id in req.groups_names {
        let code = if broker.is_coordinator(&id.0) {
            broker.groups.delete(&id.0).await
        } else {
            codes::NOT_COORDINATOR
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    Reply::frame(
        header,
        &DeleteGroupsResponse::default().with_results(results),
    )
}
