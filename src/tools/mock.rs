//! `mock-kafka`: librdkafka's mock cluster served over loopback to other
//! processes, so tests and benchmarks run against a Kafka protocol broker
//! without one installed.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("--topic {0:?}: expected NAME:PARTITIONS with a positive number")]
    Topic(String),
    #[error("mock cluster: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Starts a mock cluster of `brokers` brokers holding `topics`
/// (`NAME:PARTITIONS`, partitions default to 1). It lives as long as the
/// returned value.
pub fn start(
    brokers: i32,
    topics: &[String],
) -> Result<MockCluster<'static, DefaultProducerContext>, MockError> {
    let mock = MockCluster::new(brokers)?;
    for t in topics {
        let (name, parts) = t.rsplit_once(':').unwrap_or((t.as_str(), "1"));
        let parts: i32 = parts
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| MockError::Topic(t.clone()))?;
        mock.create_topic(name, parts, 1)?;
    }
    Ok(mock)
}
