//! How many replicas a request waits for: `r`, `w` and their defaults.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A replica count as a client writes it: `one`, `quorum`, `all` or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    One,
    Majority,
    All,
    Count(usize),
}

impl Quorum {
    /// The number of replicas for a key with `n` replicas (never above `n`).
    pub fn resolve(self, n: usize) -> usize {
        match self {
            Quorum::One => 1,
            Quorum::Majority => n / 2 + 1,
            Quorum::All => n,
            Quorum::Count(c) => c.min(n),
        }
    }
}

impl FromStr for Quorum {
    type Err = String;
    fn from_str(s: &str) -> Result<Quorum, String> {
        match s {
            "one" => Ok(Quorum::One),
            "quorum" => Ok(Quorum::Majority),
            "all" => Ok(Quorum::All),
            _ => s
                .parse::<usize>()
                .map(Quorum::Count)
                .map_err(|_| format!("`{s}` is not a replica count (a number, one, quorum or all)")),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Majority => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::Count(c) => write!(f, "{c}"),
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
            Raw::N(n) => Ok(Quorum::Count(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}
