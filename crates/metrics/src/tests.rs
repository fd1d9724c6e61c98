use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};

use super::*;

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// Renders and parses with a Prometheus text-format parser: a render that does not parse
/// fails the test.
fn scrape(m: &Metrics) -> Exposition {
    let text = m.render();
    parse_prometheus(&text).unwrap_or_else(|e| panic!("exposition does not parse: {e}\n{text}"))
}

fn family_type(e: &Exposition, family: &str) -> PrometheusType {
    e.families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"))
        .family_type
        .clone()
}

/// The value of the sample of `family` whose labels are exactly `labels`.
fn sample(e: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<PrometheusValue> {
    let f = e.families.get(family)?;
    f.iter_samples()
        .find(|s| {
            let set = s.get_labelset().expect("labelset");
            set.iter().count() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| s.value.clone())
}

fn number(e: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match sample(e, family, labels)? {
        PrometheusValue::Counter(c) => Some(c.value.as_f64()),
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => Some(n.as_f64()),
        other => panic!("{family} is not a number: {other:?}"),
    }
}

/// `(upper bound, cumulative count)` of each bucket, then the sum and the count.
fn histogram(e: &Exposition, family: &str, labels: &[(&str, &str)]) -> (Vec<(f64, f64)>, f64, u64) {
    match sample(e, family, labels).unwrap_or_else(|| panic!("no {family} {labels:?}")) {
        PrometheusValue::Histogram(h) => (
            h.buckets
                .iter()
                .map(|b| (b.upper_bound, b.count.as_f64()))
                .collect(),
            h.sum.expect("sum").as_f64(),
            h.count.expect("count"),
        ),
        other => panic!("{family} is not a histogram: {other:?}"),
    }
}

#[test]
fn given_the_logs_dropped_hint_count_should_report_it_as_a_counter_at_each_scrape() {
    let m = Metrics::new();
    let total = Arc::new(AtomicI64::new(0));
    {
        let total = total.clone();
        m.register_source(move |sink: &mut dyn SampleSink| {
            sink.writeback_hints_dropped(total.load(Ordering::SeqCst) as u64);
        });
    }
    let scraped = |m: &Metrics| number(&scrape(m), "runnel_log_writeback_hints_dropped_total", &[]);
    assert_eq!(scraped(&m), Some(0.0));
    total.store(5, Ordering::SeqCst);
    assert_eq!(scraped(&m), Some(5.0), "the current count, not a stale one");
    assert_eq!(scraped(&m), Some(5.0), "twice the same, not added up");
    total.store(9, Ordering::SeqCst);
    assert_eq!(scraped(&m), Some(9.0));
}

#[test]
fn given_requests_when_rendered_should_count_them_per_api_and_version_with_errors() {
    let m = Metrics::new();
    m.request("Produce", 9, Duration::from_micros(300), false);
    m.request("Produce", 9, Duration::from_micros(300), true);
    m.request("Produce", 3, Duration::from_micros(300), false);
    m.request("Fetch", 12, Duration::from_millis(2), false);

    let e = scrape(&m);
    assert_eq!(
        family_type(&e, "runnel_requests_total"),
        PrometheusType::Counter
    );
    assert_eq!(
        number(
            &e,
            "runnel_requests_total",
            &[("api", "Produce"), ("version", "9")]
        ),
        Some(2.0)
    );
    assert_eq!(
        number(
            &e,
            "runnel_requests_total",
            &[("api", "Produce"), ("version", "3")]
        ),
        Some(1.0)
    );
    assert_eq!(
        number(
            &e,
            "runnel_requests_total",
            &[("api", "Fetch"), ("version", "12")]
        ),
        Some(1.0)
    );
    assert_eq!(
        number(&e, "runnel_request_errors_total", &[("api", "Produce")]),
        Some(1.0)
    );
    assert_eq!(
        number(&e, "runnel_request_errors_total", &[("api", "Fetch")]),
        Some(0.0)
    );
}

#[test]
fn given_a_cached_api_handle_when_recording_should_move_the_same_counters_as_by_name() {
    let m = Metrics::new();
    let produce = m.api("Produce");
    produce.record(9, Duration::from_micros(100), false);
    m.request("Produce", 9, Duration::from_micros(100), false);
    assert_eq!(produce.name(), "Produce");

    let e = scrape(&m);
    assert_eq!(
        number(
            &e,
            "runnel_requests_total",
            &[("api", "Produce"), ("version", "9")]
        ),
        Some(2.0)
    );
}

#[test]
fn given_a_version_beyond_the_cached_slots_when_recorded_should_still_count_it() {
    let m = Metrics::new();
    m.request("Metadata", 100, Duration::ZERO, false);
    m.request("Metadata", -1, Duration::ZERO, false);

    let e = scrape(&m);
    assert_eq!(
        number(
            &e,
            "runnel_requests_total",
            &[("api", "Metadata"), ("version", "100")]
        ),
        Some(1.0)
    );
    assert_eq!(
        number(
            &e,
            "runnel_requests_total",
            &[("api", "Metadata"), ("version", "-1")]
        ),
        Some(1.0)
    );
}

#[test]
fn given_latencies_when_observed_should_fall_in_the_right_histogram_buckets() {
    let m = Metrics::new();
    m.request("Fetch", 12, Duration::from_micros(50), false); // <= 0.1 ms
    m.request("Fetch", 12, Duration::from_millis(3), false); // <= 5 ms
    m.request("Fetch", 12, Duration::from_secs(20), false); // only +Inf

    let e = scrape(&m);
    assert_eq!(
        family_type(&e, "runnel_request_duration_seconds"),
        PrometheusType::Histogram
    );
    let (buckets, sum, count) =
        histogram(&e, "runnel_request_duration_seconds", &[("api", "Fetch")]);
    assert_eq!(count, 3);
    assert!((sum - 20.00305).abs() < 1e-9, "sum {sum}");
    let bounds: Vec<f64> = buckets.iter().map(|b| b.0).collect();
    let mut expected_bounds = REQUEST_DURATION_BUCKETS_SECONDS.to_vec();
    expected_bounds.push(f64::INFINITY);
    assert_eq!(bounds, expected_bounds);
    let cumulative = |le: f64| buckets.iter().find(|b| b.0 == le).expect("bucket").1;
    assert_eq!(cumulative(0.0001), 1.0);
    assert_eq!(cumulative(0.0025), 1.0);
    assert_eq!(cumulative(0.005), 2.0);
    assert_eq!(cumulative(10.0), 2.0);
    assert_eq!(cumulative(f64::INFINITY), 3.0);
}

#[test]
fn given_topic_traffic_when_rendered_should_count_bytes_and_records_per_topic() {
    let m = Metrics::new();
    let orders = m.topic("orders");
    orders.bytes_in(1000, 10);
    orders.bytes_out(400, 4);
    m.bytes_in("orders", 24, 1);
    m.bytes_out("payments", 7, 1);

    let e = scrape(&m);
    let t = |name| [("topic", name)];
    assert_eq!(
        number(&e, "runnel_topic_produced_bytes_total", &t("orders")),
        Some(1024.0)
    );
    assert_eq!(
        number(&e, "runnel_topic_produced_records_total", &t("orders")),
        Some(11.0)
    );
    assert_eq!(
        number(&e, "runnel_topic_fetched_bytes_total", &t("orders")),
        Some(400.0)
    );
    assert_eq!(
        number(&e, "runnel_topic_fetched_records_total", &t("orders")),
        Some(4.0)
    );
    assert_eq!(
        number(&e, "runnel_topic_fetched_bytes_total", &t("payments")),
        Some(7.0)
    );
    assert_eq!(
        number(&e, "runnel_topic_produced_bytes_total", &t("payments")),
        Some(0.0)
    );
}

#[test]
fn given_a_removed_topic_when_rendered_should_no_longer_export_it() {
    let m = Metrics::new();
    m.bytes_in("gone", 10, 1);
    m.bytes_in("kept", 10, 1);
    m.remove_topic("gone");

    let e = scrape(&m);
    assert_eq!(
        number(
            &e,
            "runnel_topic_produced_bytes_total",
            &[("topic", "gone")]
        ),
        None
    );
    assert_eq!(
        number(
            &e,
            "runnel_topic_produced_bytes_total",
            &[("topic", "kept")]
        ),
        Some(10.0)
    );

    // Created again under the same name: counts from zero.
    m.bytes_in("gone", 3, 1);
    let e = scrape(&m);
    assert_eq!(
        number(
            &e,
            "runnel_topic_produced_bytes_total",
            &[("topic", "gone")]
        ),
        Some(3.0)
    );
}

#[test]
fn given_connections_when_opened_and_closed_should_track_active_and_total() {
    let m = Metrics::new();
    m.connection_opened();
    m.connection_opened();
    m.connection_closed();
    {
        let _guard = m.connection();
        let e = scrape(&m);
        assert_eq!(number(&e, "runnel_connections_active", &[]), Some(2.0));
    }

    let e = scrape(&m);
    assert_eq!(
        family_type(&e, "runnel_connections_active"),
        PrometheusType::Gauge
    );
    assert_eq!(number(&e, "runnel_connections_active", &[]), Some(1.0));
    assert_eq!(
        number(&e, "runnel_connections_opened_total", &[]),
        Some(3.0)
    );
}

#[test]
fn given_waiting_requests_when_rendered_should_report_purgatory_sizes() {
    let m = Metrics::new();
    m.set_purgatory(Purgatory::Produce, 3);
    let a = m.enter_purgatory(Purgatory::Fetch);
    let b = m.enter_purgatory(Purgatory::Fetch);

    let e = scrape(&m);
    assert_eq!(
        number(&e, "runnel_purgatory_requests", &[("kind", "produce")]),
        Some(3.0)
    );
    assert_eq!(
        number(&e, "runnel_purgatory_requests", &[("kind", "fetch")]),
        Some(2.0)
    );

    drop((a, b));
    m.set_purgatory(Purgatory::Produce, 0);
    let e = scrape(&m);
    assert_eq!(
        number(&e, "runnel_purgatory_requests", &[("kind", "fetch")]),
        Some(0.0)
    );
    assert_eq!(
        number(&e, "runnel_purgatory_requests", &[("kind", "produce")]),
        Some(0.0)
    );
}

#[test]
fn given_a_source_when_scraped_should_be_called_at_each_scrape_with_current_values() {
    let m = Metrics::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let end_offset = Arc::new(AtomicI64::new(5));
    {
        let calls = calls.clone();
        let end_offset = end_offset.clone();
        m.register_source(move |sink: &mut dyn SampleSink| {
            calls.fetch_add(1, Ordering::SeqCst);
            let leo = end_offset.load(Ordering::SeqCst);
            sink.partition(
                "orders",
                0,
                PartitionSample {
                    log_start_offset: 2,
                    log_end_offset: leo,
                    high_watermark: leo,
                    size_bytes: 4096,
                    failed: false,
                },
            );
            sink.group_partition(
                "billing",
                "orders",
                0,
                GroupPartitionSample {
                    committed_offset: 3,
                    end_offset: leo,
                },
            );
        });
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "not called before a scrape"
    );

    let p = &[("topic", "orders"), ("partition", "0")][..];
    let g = &[
        ("group", "billing"),
        ("topic", "orders"),
        ("partition", "0"),
    ][..];
    let e = scrape(&m);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        family_type(&e, "runnel_partition_log_end_offset"),
        PrometheusType::Gauge
    );
    assert_eq!(
        number(&e, "runnel_partition_log_start_offset", p),
        Some(2.0)
    );
    assert_eq!(number(&e, "runnel_partition_log_end_offset", p), Some(5.0));
    assert_eq!(number(&e, "runnel_partition_high_watermark", p), Some(5.0));
    assert_eq!(
        number(&e, "runnel_partition_log_size_bytes", p),
        Some(4096.0)
    );
    assert_eq!(number(&e, "runnel_partition_log_failed", p), Some(0.0));
    assert_eq!(
        number(&e, "runnel_consumer_group_committed_offset", g),
        Some(3.0)
    );
    assert_eq!(
        number(&e, "runnel_consumer_group_lag_records", g),
        Some(2.0)
    );

    end_offset.store(42, Ordering::SeqCst);
    let e = scrape(&m);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(number(&e, "runnel_partition_log_end_offset", p), Some(42.0));
    assert_eq!(
        number(&e, "runnel_consumer_group_lag_records", g),
        Some(39.0)
    );
}

#[test]
fn given_a_partition_that_disappears_when_scraped_again_should_no_longer_report_it() {
    let m = Metrics::new();
    let partitions = Arc::new(Mutex::new(vec![0, 1]));
    {
        let partitions = partitions.clone();
        m.register_source(move |sink: &mut dyn SampleSink| {
            for &p in partitions.lock().unwrap().iter() {
                sink.partition("t", p, PartitionSample::default());
            }
        });
    }
    let e = scrape(&m);
    let p1 = &[("topic", "t"), ("partition", "1")][..];
    assert_eq!(number(&e, "runnel_partition_log_end_offset", p1), Some(0.0));

    partitions.lock().unwrap().pop();
    let e = scrape(&m);
    assert_eq!(number(&e, "runnel_partition_log_end_offset", p1), None);
    assert_eq!(
        number(
            &e,
            "runnel_partition_log_end_offset",
            &[("topic", "t"), ("partition", "0")]
        ),
        Some(0.0)
    );
}

#[test]
fn given_several_sources_when_scraped_should_merge_their_samples() {
    struct Partitions;
    impl GaugeSource for Partitions {
        fn collect(&self, sink: &mut dyn SampleSink) {
            sink.partition("a", 0, PartitionSample::default());
        }
    }
    let m = Metrics::new();
    m.register_source(Partitions);
    m.register_source(|sink: &mut dyn SampleSink| {
        sink.partition("b", 3, PartitionSample::default());
    });

    let e = scrape(&m);
    let f = &e.families["runnel_partition_log_end_offset"];
    assert_eq!(f.iter_samples().count(), 2);
}

#[test]
fn given_a_committed_offset_past_the_end_when_scraped_should_report_zero_lag() {
    let s = GroupPartitionSample {
        committed_offset: 10,
        end_offset: 7,
    };
    assert_eq!(s.lag(), 0);
    let s = GroupPartitionSample {
        committed_offset: -1,
        end_offset: i64::MAX,
    };
    assert_eq!(s.lag(), i64::MAX);
}

#[test]
fn given_a_group_id_with_quotes_and_newlines_when_rendered_should_escape_it_validly() {
    let m = Metrics::new();
    m.register_source(|sink: &mut dyn SampleSink| {
        sink.group_partition(
            "we\"ird\\group\nid",
            "t",
            0,
            GroupPartitionSample {
                committed_offset: 1,
                end_offset: 2,
            },
        );
    });

    let e = scrape(&m);
    // The parser keeps label values as written, escapes included.
    let g = &[
        ("group", r#"we\"ird\\group\nid"#),
        ("topic", "t"),
        ("partition", "0"),
    ][..];
    assert_eq!(
        number(&e, "runnel_consumer_group_lag_records", g),
        Some(1.0)
    );
}

#[test]
fn given_every_kind_of_metric_when_rendered_should_parse_with_runnel_prefix_and_types() {
    let m = Metrics::new();
    m.request("Produce", 9, Duration::from_millis(1), false);
    m.bytes_in("t", 1, 1);
    m.bytes_out("t", 1, 1);
    m.connection_opened();
    m.set_purgatory(Purgatory::Fetch, 1);
    m.register_source(|sink: &mut dyn SampleSink| {
        sink.partition("t", 0, PartitionSample::default());
        sink.group_partition("g", "t", 0, GroupPartitionSample::default());
    });

    let text = m.render();
    let e = parse_prometheus(&text).expect("valid exposition");
    let expected = [
        ("runnel_requests_total", PrometheusType::Counter),
        ("runnel_request_errors_total", PrometheusType::Counter),
        ("runnel_request_duration_seconds", PrometheusType::Histogram),
        ("runnel_topic_produced_bytes_total", PrometheusType::Counter),
        (
            "runnel_topic_produced_records_total",
            PrometheusType::Counter,
        ),
        ("runnel_topic_fetched_bytes_total", PrometheusType::Counter),
        (
            "runnel_topic_fetched_records_total",
            PrometheusType::Counter,
        ),
        ("runnel_connections_active", PrometheusType::Gauge),
        ("runnel_connections_opened_total", PrometheusType::Counter),
        ("runnel_fetch_disk_reads_total", PrometheusType::Counter),
        (
            "runnel_log_writeback_hints_dropped_total",
            PrometheusType::Counter,
        ),
        ("runnel_purgatory_requests", PrometheusType::Gauge),
        ("runnel_partition_log_start_offset", PrometheusType::Gauge),
        ("runnel_partition_log_end_offset", PrometheusType::Gauge),
        ("runnel_partition_high_watermark", PrometheusType::Gauge),
        ("runnel_partition_log_size_bytes", PrometheusType::Gauge),
        ("runnel_partition_log_failed", PrometheusType::Gauge),
        (
            "runnel_consumer_group_committed_offset",
            PrometheusType::Gauge,
        ),
        ("runnel_consumer_group_lag_records", PrometheusType::Gauge),
    ];
    for (name, ty) in &expected {
        assert_eq!(&family_type(&e, name), ty, "{name}");
        assert!(!e.families[*name].help.is_empty(), "{name} has help");
    }
    assert_eq!(e.families.len(), expected.len(), "{text}");
    assert!(e.families.keys().all(|k| k.starts_with("runnel_")));
    assert!(CONTENT_TYPE.starts_with(prometheus::TEXT_FORMAT));
}

#[test]
fn given_a_fresh_registry_when_rendered_should_parse() {
    let m = Metrics::new();
    let e = scrape(&m);
    assert_eq!(number(&e, "runnel_connections_active", &[]), Some(0.0));
}

#[test]
fn given_concurrent_updates_when_finished_should_lose_no_increment() {
    let m = Arc::new(Metrics::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                let t = m.topic("t");
                for _ in 0..10_000 {
                    m.request("Produce", 9, Duration::from_micros(10), false);
                    t.bytes_in(2, 1);
                    // Scrapes may happen during updates.
                    if m.api("Produce").name().is_empty() {
                        unreachable!();
                    }
                }
            })
        })
        .collect();
    let _ = m.render();
    for t in threads {
        t.join().unwrap();
    }
    let e = scrape(&m);
    assert_eq!(
        number(
            &e,
            "runnel_requests_total",
            &[("api", "Produce"), ("version", "9")]
        ),
        Some(40_000.0)
    );
    assert_eq!(
        number(&e, "runnel_topic_produced_bytes_total", &[("topic", "t")]),
        Some(80_000.0)
    );
    let (_, _, count) = histogram(&e, "runnel_request_duration_seconds", &[("api", "Produce")]);
    assert_eq!(count, 40_000);
}

/// The parser the tests rely on rejects malformed lines, duplicate series and counters
/// without `_total`: the checks above are not vacuous.
#[test]
fn given_malformed_exposition_when_parsed_should_be_rejected() {
    for bad in [
        "runnel_x{a=\"b} 1\n",
        "runnel_x abc\n",
        "# TYPE runnel_x counter\nrunnel_x 1\n",
        "runnel_x{a=\"1\"} 1\nrunnel_x{a=\"1\"} 2\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "{bad:?} parsed");
    }
}
