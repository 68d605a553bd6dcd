//! The services' group consumers: rebalances (where each assigned partition
//! resumes, logged), consumer lag as a metric, each record admitted by
//! [`crate::continuity`], and the static membership id.

use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;

use crate::continuity::{Admit, Change, Changes, Positions};
use crate::metrics::Metrics;
use forecast_kafka::from_start;

/// Context of the services' group consumers: publishes librdkafka's
/// consumer lag as a metric, logs rebalances, and notes where each assigned
/// partition resumes (see [`crate::continuity`]).
#[derive(Debug, Clone)]
pub struct GroupContext {
    pub metrics: std::sync::Arc<Metrics>,
    pub changes: std::sync::Arc<Changes>,
}

/// Where the partitions of `tpl` resume (their committed offsets), noted
/// as changes; each partition with one is set to start reading there, one
/// without at its start.
/// When the broker does not answer, librdkafka finds the starts itself.
fn resume_points<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    tpl: &mut rdkafka::TopicPartitionList,
) -> Vec<Change> {
    use rdkafka::consumer::Consumer;
    let committed = crate::supervise::blocking(|| {
        consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))
    })
        .inspect_err(|e| {
            tracing::warn!(error = %e, "committed offsets not read; the assigned partitions resume where librdkafka finds them")
        })
        .ok();
    let partitions: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let mut changes = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let from =
            committed
                .as_ref()
                .and_then(|c| match c.find_partition(&topic, partition)?.offset() {
                    rdkafka::Offset::Offset(o) => Some(o),
                    _ => None,
                });
        // With the committed offsets read, every start is explicit (a
        // partition never committed starts at 0, as `auto.offset.reset =
        // earliest` would), so librdkafka does not ask the broker again.
        let start = match from {
            Some(from) => Some(rdkafka::Offset::Offset(from)),
            None if committed.is_some() => Some(from_start()),
            None => None,
        };
        // A start that could not be set leaves the resume point unknown.
        let from = match start.map(|s| tpl.set_partition_offset(&topic, partition, s)) {
            Some(Err(e)) => {
                tracing::warn!(topic, partition, error = %e, "start offset not set");
                None
            }
            _ => from,
        };
        changes.push(Change::Assigned { partition, from });
    }
    changes
}

/// `topic/partition` of each element, comma-separated.
fn describe(tpl: &rdkafka::TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

impl rdkafka::ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Lag of the partitions this instance consumes (-1: unknown yet).
        let lags = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag);
        let (mut total, mut any) = (0i64, false);
        for lag in lags {
            total += lag;
            any = true;
        }
        self.metrics.set_lag(if any { total } else { -1 });
    }
}

impl rdkafka::consumer::ConsumerContext for GroupContext {
    /// Applies a rebalance as rdkafka's default does, except that each
    /// assigned partition starts at an explicit offset, its committed one
    /// (`resume_points`). Logs the partitions
    /// assigned or revoked: when an instance is added or removed, these
    /// lines tell that the group has rebalanced.
    fn rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut rdkafka::TopicPartitionList,
    ) {
        use rdkafka::consumer::{Consumer, RebalanceProtocol};
        use rdkafka::types::RDKafkaRespErr;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let changes = resume_points(consumer, tpl);
                let resume: Vec<String> = changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::Assigned {
                            partition,
                            from: Some(o),
                        } => Some(format!("{partition}@{o}")),
                        _ => None,
                    })
                    .collect();
                tracing::info!(partitions = %describe(tpl), committed = %resume.join(","), "partitions assigned");
                self.changes.push(changes);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = %describe(tpl), "partitions revoked");
                self.changes
                    .push(tpl.elements().iter().map(|e| Change::Revoked {
                        partition: e.partition(),
                    }));
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(error = %RDKafkaErrorCode::from(other), "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(e) = applied {
            tracing::error!(error = %e, "the rebalance could not be applied");
        }
    }
}

/// Decides about the record at `offset` of `topic`/`partition` with
/// `positions` ([`crate::continuity`]) and acts on it: seeks `consumer`
/// back when the broker passed records over, logs and counts re-reads and
/// gaps. Returns whether to hand the record on; an error naming the
/// partition when the seek failed (the record is then dropped, and the
/// records it was to re-read are not read): the caller decides whether
/// that matters.
pub fn follow<C, K>(
    positions: &mut Positions,
    consumer: &K,
    topic: &str,
    partition: i32,
    offset: i64,
    metrics: Option<&Metrics>,
) -> anyhow::Result<bool>
where
    C: rdkafka::consumer::ConsumerContext,
    K: rdkafka::consumer::Consumer<C>,
{
    match positions.admit(partition, offset) {
        Admit::Handle => Ok(true),
        Admit::Skip => Ok(false),
        Admit::AfterGap(gap) => {
            tracing::warn!(
                topic,
                partition,
                from = gap.from,
                to = gap.to,
                "offsets with no record the broker can return ({}); going on after them",
                if gap.empty {
                    "read twice around them"
                } else {
                    "the partition now starts after them: deleted"
                }
            );
            if let Some(m) = metrics {
                m.offsets_passed(gap.to - gap.from);
            }
            Ok(true)
        }
        Admit::Rewind(to) => {
            tracing::info!(
                topic,
                partition,
                // A rewind leaves the offset expected as it was.
                expected = positions.expected(partition),
                received = offset,
                from = to,
                "the broker passed over records; reading the partition again from an earlier offset"
            );
            if let Some(m) = metrics {
                m.reread();
            }
            crate::supervise::blocking(|| {
                consumer.seek(
                    topic,
                    partition,
                    rdkafka::Offset::Offset(to),
                    Duration::from_secs(10),
                )
            })
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot seek {topic}/{partition} back to offset {to} to read records the broker passed over: {e}"
                    )
                })?;
            Ok(false)
        }
    }
}

/// The default static membership id of a service on this host:
/// `<service>-<hostname>` (unique per container, stable across restarts).
pub fn default_instance_id(service: &str) -> Option<String> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())?;
    Some(format!("{service}-{host}"))
}
