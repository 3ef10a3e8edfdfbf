//! The crate's error type and the mapping from gRPC statuses and PD response headers.

use atoll_proto::pdpb;

/// Result of a PD client operation.
pub type Result<T> = std::result::Result<T, Error>;

/// An error talking to PD.
///
/// Retryable errors ([`Error::is_retryable`]) mean "PD could not be reached or did not answer in
/// time"; the request may or may not have been executed. Everything else is an answer from PD
/// (or a local misuse) and retrying the same request will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The connection failed, the stream broke, or PD said it is not (or no longer) the leader.
    #[error("PD transport error: {0}")]
    Transport(String),
    /// PD answered with an error in the response header.
    #[error("PD error {}: {message}", error_type_name(*kind))]
    Pd {
        /// A `pdpb::ErrorType` value, as `i32`.
        kind: i32,
        message: String,
    },
    /// `Bootstrap` was called on a cluster that is already bootstrapped.
    #[error("PD cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// A PD answered for a different cluster than the one this client is bound to.
    #[error("PD cluster id mismatch: expected {expected}, got {actual}")]
    ClusterIdMismatch { expected: u64, actual: u64 },
    /// PD did not answer within the request timeout.
    #[error("PD request timed out")]
    Timeout,
    /// Anything else: malformed responses, unsupported endpoints, gRPC errors that are not
    /// transport failures (e.g. `Unimplemented`, `InvalidArgument`), a stopped client.
    #[error("PD client error: {0}")]
    Other(String),
}

impl Error {
    /// Whether retrying the request (possibly against a newly elected leader) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transport(_) | Error::Timeout)
    }

    /// The PD error type of an [`Error::Pd`], if it is a known one.
    pub fn pd_error_type(&self) -> Option<pdpb::ErrorType> {
        match self {
            Error::Pd { kind, .. } => pdpb::ErrorType::try_from(*kind).ok(),
            Error::AlreadyBootstrapped => Some(pdpb::ErrorType::AlreadyBootstrapped),
            _ => None,
        }
    }

    /// Maps a gRPC status. Connection-level failures and PD's "not leader" (`Unavailable`) are
    /// [`Error::Transport`]; `DeadlineExceeded` is [`Error::Timeout`]; the rest is
    /// [`Error::Other`].
    pub(crate) fn from_status(status: &tonic::Status) -> Error {
        use tonic::Code;
        let text = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::DeadlineExceeded => Error::Timeout,
            Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal
            | Code::ResourceExhausted => Error::Transport(text),
            _ => Error::Other(text),
        }
    }

    /// Maps a failure to dial an endpoint, keeping the whole source chain in the message
    /// (tonic's own `Display` is only "transport error").
    pub(crate) fn from_transport(context: &str, err: &dyn std::error::Error) -> Error {
        let mut text = format!("{context}: {err}");
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Transport(text)
    }
}

fn error_type_name(kind: i32) -> String {
    match pdpb::ErrorType::try_from(kind) {
        Ok(t) => t.as_str_name().to_owned(),
        Err(_) => format!("ErrorType({kind})"),
    }
}

/// Checks a response header: an error in it becomes [`Error::Pd`] (or
/// [`Error::AlreadyBootstrapped`]); a non-zero cluster id other than `cluster_id` becomes
/// [`Error::ClusterIdMismatch`]. `cluster_id == 0` skips the id check (before it is known).
pub(crate) fn check_header(header: Option<&pdpb::ResponseHeader>, cluster_id: u64) -> Result<()> {
    let Some(header) = header else {
        return Ok(());
    };
    if let Some(err) = &header.error {
        if err.r#type == pdpb::ErrorType::AlreadyBootstrapped as i32 {
            return Err(Error::AlreadyBootstrapped);
        }
        if err.r#type != pdpb::ErrorType::Ok as i32 {
            return Err(Error::Pd {
                kind: err.r#type,
                message: err.message.clone(),
            });
        }
    }
    if cluster_id != 0 && header.cluster_id != 0 && header.cluster_id != cluster_id {
        return Err(Error::ClusterIdMismatch {
            expected: cluster_id,
            actual: header.cluster_id,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cluster_id: u64, error: Option<(pdpb::ErrorType, &str)>) -> pdpb::ResponseHeader {
        pdpb::ResponseHeader {
            cluster_id,
            error: error.map(|(t, m)| pdpb::Error {
                r#type: t as i32,
                message: m.to_owned(),
            }),
        }
    }

    #[test]
    fn header_errors_map_to_variants() {
        assert_eq!(check_header(None, 7), Ok(()));
        assert_eq!(check_header(Some(&header(7, None)), 7), Ok(()));
        assert_eq!(
            check_header(Some(&header(7, Some((pdpb::ErrorType::Ok, "")))), 7),
            Ok(())
        );
        assert_eq!(
            check_header(
                Some(&header(7, Some((pdpb::ErrorType::AlreadyBootstrapped, "x")))),
                7
            ),
            Err(Error::AlreadyBootstrapped)
        );
        let err = check_header(
            Some(&header(7, Some((pdpb::ErrorType::NotBootstrapped, "no")))),
            7,
        )
        .expect_err("not bootstrapped");
        assert_eq!(err.pd_error_type(), Some(pdpb::ErrorType::NotBootstrapped));
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), "PD error NOT_BOOTSTRAPPED: no");
        assert_eq!(
            check_header(Some(&header(8, None)), 7),
            Err(Error::ClusterIdMismatch {
                expected: 7,
                actual: 8
            })
        );
        // Unknown cluster id on either side skips the check.
        assert_eq!(check_header(Some(&header(8, None)), 0), Ok(()));
        assert_eq!(check_header(Some(&header(0, None)), 7), Ok(()));
    }

    #[test]
    fn status_mapping_splits_transport_from_answers() {
        assert!(Error::from_status(&tonic::Status::unavailable("not leader")).is_retryable());
        assert!(Error::from_status(&tonic::Status::unknown("transport error")).is_retryable());
        assert_eq!(
            Error::from_status(&tonic::Status::deadline_exceeded("slow")),
            Error::Timeout
        );
        assert!(!Error::from_status(&tonic::Status::unimplemented("nope")).is_retryable());
        assert!(!Error::from_status(&tonic::Status::failed_precondition("mismatch")).is_retryable());
        assert!(!Error::Other("x".into()).is_retryable());
        assert!(Error::Timeout.is_retryable());
    }
}
