//! Per-request consistency and deadline settings, with per-client defaults.

use std::time::Duration;

use crate::error::Error;

/// How many replicas a read (`r`) or a write (`w`) waits for: the node's own
/// definition, so the client accepts and refuses exactly what the node does.
pub use quorumkv_ring::Quorum;

/// The tunables of one request. `None` means "use the client's default", and where the
/// client has none either, the node's configured default (API.md).
///
/// Reads use `r`, `sloppy` and `timeout`; writes use `w`, `dw`, `sloppy` and `timeout`.
///
/// ```
/// use std::time::Duration;
/// use quorumkv_client::{Options, Quorum};
///
/// let strict = Options {
///     r: Some(Quorum::All),
///     timeout: Some(Duration::from_millis(500)),
///     ..Options::default()
/// };
/// assert_eq!(strict.w, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Replicas a read waits for.
    pub r: Option<Quorum>,
    /// Replicas a write waits for.
    pub w: Option<Quorum>,
    /// Of the `w` acknowledgements, how many must come after an fsync (0 to w).
    pub dw: Option<usize>,
    /// Whether fallback nodes holding a hint may count toward `w` (the API's default: yes).
    pub sloppy: Option<bool>,
    /// The deadline of the whole call, retries included. The node is told the remaining
    /// time, so it answers with a quorum failure, not silence, when replicas are slow.
    pub timeout: Option<Duration>,
}

impl Options {
    /// These options, with every unset field taken from `defaults`.
    #[must_use]
    pub fn or(&self, defaults: &Options) -> Options {
        Options {
            r: self.r.or(defaults.r),
            w: self.w.or(defaults.w),
            dw: self.dw.or(defaults.dw),
            sloppy: self.sloppy.or(defaults.sloppy),
            timeout: self.timeout.or(defaults.timeout),
        }
    }

    /// Checks what can be checked without knowing N.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        for (name, q) in [("r", self.r), ("w", self.w)] {
            if let Some(Quorum::Count(0)) = q {
                return Err(Error::invalid(
                    "invalid_parameter",
                    format!("`{name}=0`: {}", quorumkv_ring::QuorumError::Spelling("0".into())),
                ));
            }
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::invalid("invalid_parameter", "a timeout must be longer than zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_round_trips_through_its_api_spelling() {
        for q in [Quorum::One, Quorum::Majority, Quorum::All, Quorum::Count(1), Quorum::Count(7)] {
            assert_eq!(q.to_string().parse::<Quorum>().unwrap(), q);
        }
        assert!("0".parse::<Quorum>().is_err());
        assert!("most".parse::<Quorum>().is_err());
    }

    #[test]
    fn request_options_win_over_defaults() {
        let defaults = Options {
            r: Some(Quorum::One),
            w: Some(Quorum::All),
            timeout: Some(Duration::from_secs(1)),
            ..Options::default()
        };
        let mine = Options { r: Some(Quorum::Majority), ..Options::default() };
        let merged = mine.or(&defaults);
        assert_eq!(merged.r, Some(Quorum::Majority));
        assert_eq!(merged.w, Some(Quorum::All));
        assert_eq!(merged.timeout, Some(Duration::from_secs(1)));
        assert_eq!(merged.sloppy, None);
    }
}
