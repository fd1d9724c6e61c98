//! The one place where Runnel's error types become Kafka error codes.

use kafka_protocol::ResponseError;
use runnel_log::LogError;
use runnel_metadata::controller::ControllerError;
use runnel_model::batch::BatchError;

/// A Kafka error code with an optional message for the response's `error_message` field.
#[derive(Debug, Clone)]
pub struct KafkaError {
    pub code: ResponseError,
    pub message: Option<String>,
}

impl KafkaError {
    pub fn new(code: ResponseError) -> Self {
        KafkaError {
            code,
            message: None,
        }
    }
    pub fn with_message(code: ResponseError, message: impl Into<String>) -> Self {
        KafkaError {
            code,
            message: Some(message.into()),
        }
    }
    pub fn code(&self) -> i16 {
        self.code.code()
    }
}

impl From<ResponseError> for KafkaError {
    fn from(code: ResponseError) -> Self {
        KafkaError::new(code)
    }
}

impl From<&LogError> for KafkaError {
    fn from(e: &LogError) -> Self {
        let code = match e {
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::InvalidRecords(_) => ResponseError::CorruptMessage,
            LogError::RecordSetTooLarge { .. } | LogError::OffsetOverflow { .. } => {
                ResponseError::RecordListTooLarge
            }
            LogError::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            LogError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
            LogError::TransactionCoordinatorFenced { .. } => {
                ResponseError::TransactionCoordinatorFenced
            }
            LogError::Closed { .. } => ResponseError::NotLeaderOrFollower,
            LogError::InvalidConfig(_) => ResponseError::InvalidConfig,
            // Our own bytes are damaged, or the disk failed: the data is at risk, not the
            // request at fault.
            LogError::Corrupt { .. } | LogError::Io { .. } | LogError::Failed { .. } => {
                ResponseError::KafkaStorageError
            }
        };
        KafkaError::with_message(code, e.to_string())
    }
}

impl From<&BatchError> for KafkaError {
    fn from(e: &BatchError) -> Self {
        match e {
            BatchError::UnsupportedMagic { .. } => {
                KafkaError::with_message(ResponseError::UnsupportedForMessageFormat, e.to_string())
            }
            BatchError::UnknownCompression { .. } => {
                KafkaError::with_message(ResponseError::UnsupportedCompressionType, e.to_string())
            }
            BatchError::InvalidRecordCount { .. } => {
                KafkaError::with_message(ResponseError::InvalidRecord, e.to_string())
            }
            _ => KafkaError::with_message(ResponseError::CorruptMessage, e.to_string()),
        }
    }
}

impl From<&ControllerError> for KafkaError {
    fn from(e: &ControllerError) -> Self {
        let code = ResponseError::try_from_code(e.kafka_error_code())
            .unwrap_or(ResponseError::UnknownServerError);
        KafkaError::with_message(code, e.message())
    }
}

/// Whether a log error deserves an ERROR line where a request meets it: data at risk that
/// nobody has reported yet (a failed read or write, damaged bytes). A log that failed
/// earlier logged its failure once, at ERROR, when it failed; every later request it
/// refuses with KAFKA_STORAGE_ERROR is logged at DEBUG, or a consumer polling it would
/// repeat that line many times a second. Refusals of the request itself are never errors.
pub(crate) fn is_unreported_storage_failure(e: &LogError) -> bool {
    matches!(e, LogError::Io { .. } | LogError::Corrupt { .. })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn only_new_storage_failures_are_logged_as_errors() {
        let dir = PathBuf::from("/data/t-0");
        let io = LogError::Io {
            op: "write",
            path: dir.clone(),
            source: std::io::Error::from_raw_os_error(5),
        };
        let failed = LogError::Failed {
            dir: dir.clone(),
            reason: "fsync failed".into(),
        };
        let closed = LogError::Closed { dir };
        assert!(is_unreported_storage_failure(&io));
        assert!(!is_unreported_storage_failure(&failed));
        assert!(!is_unreported_storage_failure(&closed));
        // All three still answer the request with their Kafka code.
        assert_eq!(KafkaError::from(&io).code, ResponseError::KafkaStorageError);
        assert_eq!(
            KafkaError::from(&failed).code,
            ResponseError::KafkaStorageError
        );
        assert_eq!(
            KafkaError::from(&closed).code,
            ResponseError::NotLeaderOrFollower
        );
    }
}
