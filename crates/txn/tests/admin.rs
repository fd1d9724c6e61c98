//! ListTransactions, DescribeTransactions, and the answers a runtime gives when the shard
//! cannot handle a request.

mod common;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_txn::{error_response, ShardRequest, TxnRequest, TxnResponse};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// "a" Empty, "b" Ongoing since T0, "c" Ongoing since T0 + 5 s, "d" CompleteCommit.
fn four_transactions(h: &mut Harness) -> Vec<(i64, i16)> {
    let a = h.init("a");
    let b = h.init("b");
    h.add("b", b, &[("orders", &[2, 0]), ("payments", &[1])]);
    h.now += 5_000;
    let c = h.init("c");
    h.add("c", c, &[("orders", &[1])]);
    let d = h.init("d");
    h.add("d", d, &[("orders", &[3])]);
    h.end("d", d, true);
    h.write_markers();
    vec![a, b, c, d]
}

fn listed(r: &ListTransactionsResponse) -> Vec<(String, i64, String)> {
    r.transaction_states
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.producer_id.0,
                t.transaction_state.to_string(),
            )
        })
        .collect()
}

fn names(r: &ListTransactionsResponse) -> Vec<String> {
    listed(r).into_iter().map(|t| t.0).collect()
}

#[test]
fn given_no_filter_when_listing_should_show_every_transactional_id_and_state() {
    let mut h = Harness::default();
    let ids = four_transactions(&mut h);
    let r = h.list(0, ListTransactionsRequest::default());
    assert_eq!(r.error_code, 0);
    assert_eq!(
        listed(&r),
        vec![
            ("a".into(), ids[0].0, "Empty".into()),
            ("b".into(), ids[1].0, "Ongoing".into()),
            ("c".into(), ids[2].0, "Ongoing".into()),
            ("d".into(), ids[3].0, "CompleteCommit".into()),
        ]
    );
}

#[test]
fn given_state_and_producer_filters_when_listing_should_keep_only_matches() {
    let mut h = Harness::default();
    let ids = four_transactions(&mut h);
    let r = h.list(
        0,
        ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing"), s("Bogus")]),
    );
    assert_eq!(names(&r), vec!["b", "c"]);
    assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);
    let r = h.list(
        0,
        ListTransactionsRequest::default()
            .with_producer_id_filters(vec![ProducerId(ids[0].0), ProducerId(ids[3].0)]),
    );
    assert_eq!(names(&r), vec!["a", "d"]);
    // Only unknown states: nothing matches.
    let r = h.list(
        0,
        ListTransactionsRequest::default().with_state_filters(vec![s("Bogus")]),
    );
    assert!(names(&r).is_empty());
}

#[test]
fn given_a_duration_filter_when_listing_v1_should_keep_transactions_running_longer() {
    let mut h = Harness::default();
    four_transactions(&mut h);
    h.now = T0 + 8_000;
    let req = ListTransactionsRequest::default()
        .with_state_filters(vec![s("Ongoing")])
        .with_duration_filter(4_000);
    assert_eq!(names(&h.list(1, req.clone())), vec!["b"]);
    // v0 has no duration filter.
    assert_eq!(names(&h.list(0, req)), vec!["b", "c"]);
}

#[test]
fn given_a_transactional_id_pattern_when_listing_v2_should_match_whole_ids() {
    let mut h = Harness::default();
    h.init("orders-1");
    h.init("orders-2");
    h.init("payments-orders");
    let req = |p: Option<&str>| {
        ListTransactionsRequest::default().with_transactional_id_pattern(p.map(s))
    };
    assert_eq!(
        names(&h.list(2, req(Some("orders-.*")))),
        vec!["orders-1", "orders-2"]
    );
    assert_eq!(names(&h.list(2, req(Some("orders")))), Vec::<String>::new());
    assert_eq!(names(&h.list(2, req(Some("")))).len(), 3);
    assert_eq!(names(&h.list(2, req(None))).len(), 3);
    let bad = h.list(2, req(Some("orders-(")));
    assert_eq!(
        bad.error_code,
        ResponseError::InvalidRegularExpression.code()
    );
    assert!(bad.transaction_states.is_empty());
}

#[test]
fn given_known_and_unknown_ids_when_describing_should_answer_each() {
    let mut h = Harness::default();
    let ids = four_transactions(&mut h);
    let r = h.describe(&["b", "zzz", ""]);
    assert_eq!(r.transaction_states.len(), 3);
    let b = &r.transaction_states[0];
    assert_eq!(b.error_code, 0);
    assert_eq!(b.transactional_id.0.as_str(), "b");
    assert_eq!(b.transaction_state.as_str(), "Ongoing");
    assert_eq!((b.producer_id.0, b.producer_epoch), ids[1]);
    assert_eq!(b.transaction_timeout_ms, 60_000);
    assert_eq!(b.transaction_start_time_ms, T0);
    let topics: Vec<(String, Vec<i32>)> = b
        .topics
        .iter()
        .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
        .collect();
    assert_eq!(
        topics,
        vec![("orders".into(), vec![0, 2]), ("payments".into(), vec![1])]
    );
    assert_eq!(
        r.transaction_states[1].error_code,
        ResponseError::TransactionalIdNotFound.code()
    );
    assert_eq!(
        r.transaction_states[2].error_code,
        ResponseError::InvalidRequest.code()
    );
    let d = &h.describe(&["d"]).transaction_states[0];
    assert_eq!(d.transaction_state.as_str(), "CompleteCommit");
    assert!(d.topics.is_empty());
}

#[test]
fn given_a_request_the_runtime_cannot_route_when_answering_with_an_error_should_cover_every_part() {
    let add_v3 = ShardRequest {
        version: 3,
        body: TxnRequest::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_topics(request_topics(&[("orders", &[0, 1])])),
        ),
    };
    let TxnResponse::AddPartitionsToTxn(r) = error_response(&add_v3, ResponseError::NotCoordinator)
    else {
        panic!()
    };
    let nc = ResponseError::NotCoordinator.code();
    assert_eq!(
        flatten(&r.results_by_topic_v3_and_below),
        vec![("orders".into(), 0, nc), ("orders".into(), 1, nc)]
    );
    let add_v4 = ShardRequest {
        version: 4,
        body: TxnRequest::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default().with_transactions(vec![
                batched("a", 1, 0, &[("orders", &[0])], false),
                batched("b", 2, 0, &[("payments", &[1])], true),
            ]),
        ),
    };
    let TxnResponse::AddPartitionsToTxn(r) =
        error_response(&add_v4, ResponseError::CoordinatorLoadInProgress)
    else {
        panic!()
    };
    assert_eq!(r.results_by_transaction.len(), 2);
    assert_eq!(
        flatten(&r.results_by_transaction[1].topic_results),
        vec![(
            "payments".into(),
            1,
            ResponseError::CoordinatorLoadInProgress.code()
        )]
    );
    let describe = ShardRequest {
        version: 0,
        body: TxnRequest::DescribeTransactions(
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![txn_id("x"), txn_id("y")]),
        ),
    };
    let TxnResponse::DescribeTransactions(r) =
        error_response(&describe, ResponseError::NotCoordinator)
    else {
        panic!()
    };
    assert!(r.transaction_states.iter().all(|t| t.error_code == nc));
    let end = ShardRequest {
        version: 4,
        body: TxnRequest::EndTxn(EndTxnRequest::default()),
    };
    let TxnResponse::EndTxn(r) = error_response(&end, ResponseError::NotCoordinator) else {
        panic!()
    };
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (nc, -1, -1)
    );
    for body in [
        TxnRequest::InitProducerId(InitProducerIdRequest::default()),
        TxnRequest::AddOffsetsToTxn(AddOffsetsToTxnRequest::default()),
        TxnRequest::ListTransactions(ListTransactionsRequest::default()),
    ] {
        let r = error_response(
            &ShardRequest { version: 1, body },
            ResponseError::NotCoordinator,
        );
        let code = match r {
            TxnResponse::InitProducerId(r) => r.error_code,
            TxnResponse::AddOffsetsToTxn(r) => r.error_code,
            TxnResponse::ListTransactions(r) => r.error_code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code, nc);
    }
}
