use super::*;
use crate::delivery::DeliveryFailure;
use rdkafka::producer::FutureRecord;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn consumed(records: &[(i32, i64)]) -> Vec<Consumed> {
    let received = Instant::now();
    records
        .iter()
        .map(|&(partition, offset)| Consumed {
            partition,
            offset,
            received,
        })
        .collect()
}

#[test]
fn stores_the_last_offset_consumed_of_each_partition() {
    let records = consumed(&[(0, 5), (1, 9), (0, 6), (2, 1), (0, 7), (1, 10)]);
    assert_eq!(last_per_partition(&records), vec![(1, 10), (0, 7), (2, 1)]);
}

#[test]
fn a_partition_rewound_mid_batch_keeps_its_lower_offset() {
    // Revoked and assigned again: the consumer restarts from the last
    // commit, so the records after it must be read again.
    let records = consumed(&[(0, 100), (0, 101), (0, 50)]);
    assert_eq!(last_per_partition(&records), vec![(0, 50)]);
}

#[test]
fn an_empty_batch_stores_nothing() {
    assert!(last_per_partition(&[]).is_empty());
}

#[test]
fn a_batch_settles_once_closed_and_every_output_is_reported() {
    use futures::FutureExt;
    let acks = Arc::new(Acks::default());
    acks.expect();
    acks.expect();
    acks.ack();
    let mut settled = Box::pin(acks.settled());
    // One output is still unreported.
    assert!((&mut settled).now_or_never().is_none());
    acks.ack();
    assert_eq!(settled.now_or_never(), Some(Ok(())));
}

fn failure(topic: &str, code: RDKafkaErrorCode) -> DeliveryFailure {
    DeliveryFailure {
        topic: topic.into(),
        error: KafkaError::MessageProduction(code),
    }
}

#[test]
fn a_batch_reports_its_first_failure_after_every_output() {
    use futures::FutureExt;
    let acks = Arc::new(Acks::default());
    for _ in 0..3 {
        acks.expect();
    }
    acks.failed(None, failure("a", RDKafkaErrorCode::MessageTimedOut));
    acks.ack();
    acks.failed(None, failure("b", RDKafkaErrorCode::MessageSizeTooLarge));
    acks.ack();
    let mut settled = Box::pin(acks.settled());
    assert!((&mut settled).now_or_never().is_none());
    acks.ack();
    assert_eq!(
        settled.now_or_never(),
        Some(Err(failure("a", RDKafkaErrorCode::MessageTimedOut)))
    );
}

/// Offset `offset` of partition 2, as the record an output was for.
fn of_record(offset: i64) -> Option<Consumed> {
    consumed(&[(2, offset)]).pop()
}

/// A record's own output refused for good makes that record refused
/// (once, whatever number of its outputs were), not the batch failed;
/// a failure that retrying may cure, or of an output covering the
/// batch, fails the batch as before.
#[test]
fn a_records_output_refused_for_good_refuses_the_record_not_the_batch() {
    use futures::FutureExt;
    let acks = Arc::new(Acks::default());
    for _ in 0..3 {
        acks.expect();
    }
    acks.failed(
        of_record(7),
        failure("v", RDKafkaErrorCode::MessageSizeTooLarge),
    );
    acks.failed(of_record(7), failure("a", RDKafkaErrorCode::InvalidRecord));
    for _ in 0..3 {
        acks.ack();
    }
    assert_eq!(Box::pin(acks.settled()).now_or_never(), Some(Ok(())));
    let refused = acks.take_refused();
    assert_eq!(
        refused
            .iter()
            .map(|r| (r.partition, r.offset, r.failure.topic.as_str()))
            .collect::<Vec<_>>(),
        [(2, 7, "v")]
    );
    let acks = Arc::new(Acks::default());
    acks.failed(
        of_record(8),
        failure("v", RDKafkaErrorCode::MessageTimedOut),
    );
    acks.failed(None, failure("d", RDKafkaErrorCode::MessageSizeTooLarge));
    assert!(acks.take_refused().is_empty());
    assert_eq!(
        Box::pin(acks.settled()).now_or_never(),
        Some(Err(failure("v", RDKafkaErrorCode::MessageTimedOut)))
    );
}

/// The producer refusing a record of the one being handled at once
/// (over `message.max.bytes`) is no error of `send`: the record is
/// refused. Refused the same way while the batch's covering outputs are
/// made, it is the error it was.
#[tokio::test]
async fn an_output_the_producer_refuses_at_once_refuses_its_record() {
    let kafka = KafkaArgs {
        brokers: "127.0.0.1:9".into(),
        properties: vec![("message.max.bytes".into(), "1000".into())],
    };
    let producer = batch_producer(&kafka).unwrap();
    let big = vec![0u8; 5_000];
    let mut batch = Batch::default();
    batch.consumed(1, 41);
    batch
        .send(&producer, FutureRecord::to("t").payload(&big[..]))
        .await
        .expect("refused, not failed");
    batch.covering();
    let err = batch
        .send(&producer, FutureRecord::to("t").payload(&big[..]))
        .await
        .unwrap_err();
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    let settled = tokio::time::timeout(Duration::from_secs(10), batch.settle())
        .await
        .expect("nothing was handed over, nothing to wait for");
    assert!(settled.result.is_ok());
    assert_eq!(
        settled
            .refused
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>(),
        [(1, 41)]
    );
}

#[tokio::test]
async fn a_waiting_batch_is_woken_by_the_last_report_from_another_thread() {
    let acks = Arc::new(Acks::default());
    for _ in 0..100 {
        acks.expect();
    }
    let reporter = {
        let acks = acks.clone();
        std::thread::spawn(move || {
            for _ in 0..100 {
                acks.ack();
            }
        })
    };
    let settled = tokio::time::timeout(Duration::from_secs(10), acks.settled()).await;
    reporter.join().unwrap();
    assert_eq!(settled.expect("not woken"), Ok(()));
    assert_eq!(acks.pending.load(Ordering::Acquire), 0);
}

#[tokio::test]
async fn an_output_that_cannot_be_delivered_fails_its_batch() {
    // Nothing listens on the discard port of loopback: the record times
    // out in the producer and its delivery report is an error.
    let kafka = KafkaArgs {
        brokers: "127.0.0.1:9".into(),
        properties: vec![("message.timeout.ms".into(), "300".into())],
    };
    let producer = batch_producer(&kafka).unwrap();
    let mut batch = Batch::default();
    batch.consumed(0, 41);
    batch
        .send(&producer, FutureRecord::to("t").payload(&b"x"[..]))
        .await
        .unwrap();
    let settled = tokio::time::timeout(Duration::from_secs(30), batch.settle())
        .await
        .expect("the delivery report never came");
    let error = settled.result.unwrap_err().to_string();
    assert!(error.starts_with("delivery to t failed:"), "{error}");
    assert_eq!(settled.records.len(), 1);
}

#[test]
fn flight_bounds_are_at_least_one_and_a_batch_fits_in_flight() {
    let f = InFlight::new(0, 0);
    assert_eq!((f.max, f.max_batch), (1, 1));
    let f = InFlight::new(100, 500);
    assert_eq!((f.max, f.max_batch), (100, 100));
}
