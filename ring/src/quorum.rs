//! Replica counts as clients write them (`r`, `w`): one definition for the node, the
//! client and the CLI, so all three accept and refuse the same spellings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many replicas a read must hear from (`r`) or a write must be acknowledged by (`w`).
///
/// Spelled `one`, `quorum`, `all` or a number from 1. It is resolved against the
/// cluster's N by [`Quorum::resolve`]: [`One`](Quorum::One) is 1,
/// [`Majority`](Quorum::Majority) is `N / 2 + 1`, [`All`](Quorum::All) is N, and a
/// [`Count`](Quorum::Count) outside `1..=N` is refused, never clamped.
///
/// ```
/// use quorumkv_ring::Quorum;
///
/// assert_eq!("quorum".parse::<Quorum>().unwrap(), Quorum::Majority);
/// assert_eq!("2".parse::<Quorum>().unwrap(), Quorum::Count(2));
/// assert!("0".parse::<Quorum>().is_err());
/// assert_eq!(Quorum::Majority.resolve(3), Ok(2));
/// assert!(Quorum::Count(4).resolve(3).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quorum {
    /// One replica.
    One,
    /// A majority of the N replicas: the API's `quorum`.
    Majority,
    /// Every one of the N replicas.
    All,
    /// Exactly this many replicas (1 to N).
    Count(usize),
}

/// A replica count that is not one, or not one for this cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// Not `one`, `quorum`, `all` or a number from 1.
    #[error("`{0}` is not a replica count: expected one, quorum, all or a number from 1")]
    Spelling(String),
    /// A number outside `1..=n`.
    #[error("{count} replicas is out of range: expected 1 to {n} (N), one, quorum or all")]
    OutOfRange { count: usize, n: usize },
}

impl Quorum {
    /// The number of replicas this count means for a key with `n` replicas.
    ///
    /// # Errors
    /// [`QuorumError::OutOfRange`] for a [`Count`](Quorum::Count) of 0 or above `n`.
    pub fn resolve(self, n: usize) -> Result<usize, QuorumError> {
        match self {
            Quorum::One => Ok(1.min(n)),
            Quorum::Majority => Ok(n / 2 + 1),
            Quorum::All => Ok(n),
            Quorum::Count(c) if (1..=n).contains(&c) => Ok(c),
            Quorum::Count(count) => Err(QuorumError::OutOfRange { count, n }),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Majority => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::Count(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Quorum {
    type Err = QuorumError;

    fn from_str(s: &str) -> Result<Quorum, QuorumError> {
        match s {
            "one" => Ok(Quorum::One),
            "quorum" => Ok(Quorum::Majority),
            "all" => Ok(Quorum::All),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Quorum::Count(n)),
                _ => Err(QuorumError::Spelling(s.to_owned())),
            },
        }
    }
}

impl Serialize for Quorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Quorum, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string().parse().map_err(serde::de::Error::custom),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_zero_is_refused() {
        for q in [Quorum::One, Quorum::Majority, Quorum::All, Quorum::Count(1), Quorum::Count(7)] {
            assert_eq!(q.to_string().parse::<Quorum>(), Ok(q));
        }
        for bad in ["0", "-1", "most", "", "1.5", "QUORUM"] {
            assert!(bad.parse::<Quorum>().is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_against_n_refuses_what_does_not_fit() {
        assert_eq!(Quorum::Majority.resolve(3), Ok(2));
        assert_eq!(Quorum::Majority.resolve(5), Ok(3));
        assert_eq!(Quorum::All.resolve(3), Ok(3));
        assert_eq!(Quorum::One.resolve(3), Ok(1));
        assert_eq!(Quorum::Count(3).resolve(3), Ok(3));
        assert!(Quorum::Count(4).resolve(3).is_err());
        assert!(Quorum::Count(0).resolve(3).is_err());
    }

    #[test]
    fn config_files_may_write_a_number_or_a_word() {
        #[derive(Deserialize)]
        struct C {
            q: Quorum,
        }
        let parse = |t: &str| serde_json::from_str::<C>(t).map(|c| c.q);
        assert_eq!(parse(r#"{"q": 2}"#).ok(), Some(Quorum::Count(2)));
        assert_eq!(parse(r#"{"q": "all"}"#).ok(), Some(Quorum::All));
        assert!(parse(r#"{"q": 0}"#).is_err());
    }
}
