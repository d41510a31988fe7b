//! The crate's one error type.

use std::fmt;

/// Why a ring could not be built, changed or received.
///
/// `Display` names the offending field and the rule it broke, so the message
/// can be shown to an operator as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingError {
    /// `partitions` is not a power of two in `1..=65536`.
    InvalidPartitions {
        /// The rejected value.
        partitions: u32,
    },
    /// `replicas` is 0.
    InvalidReplicas {
        /// The rejected value.
        replicas: usize,
    },
    /// `vnodes` is 0 or above [`MAX_VNODES`](crate::MAX_VNODES).
    InvalidVnodes {
        /// The rejected value.
        vnodes: u32,
    },
    /// The member set is empty (or would become empty).
    NoMembers,
    /// More members than [`MAX_MEMBERS`](crate::MAX_MEMBERS).
    TooManyMembers {
        /// How many there are (or would be).
        members: usize,
    },
    /// A received ring's members are not sorted ascending without
    /// duplicates.
    UnsortedMembers,
    /// A received ring's primaries table does not have one row per
    /// partition.
    WrongPartitionCount {
        /// The ring's partition count.
        expected: u32,
        /// The number of rows received.
        found: usize,
    },
    /// A partition of a received ring does not have `min(N, members)`
    /// primaries.
    WrongReplicaCount {
        /// The partition.
        partition: u32,
        /// How many primaries it must have.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// A partition of a received ring names a member index past the end of
    /// the member list.
    UnknownMemberIndex {
        /// The partition.
        partition: u32,
        /// The index.
        index: u16,
    },
    /// A partition of a received ring lists a member twice among its
    /// primaries.
    DuplicatePrimary {
        /// The partition.
        partition: u32,
        /// The repeated member index.
        index: u16,
    },
    /// A change names a node that is not a member.
    UnknownMember {
        /// The node.
        node: crate::NodeId,
    },
    /// A member's weight is 0 or above [`MAX_WEIGHT`](crate::MAX_WEIGHT).
    InvalidWeight {
        /// The member.
        node: crate::NodeId,
        /// The rejected weight.
        weight: u32,
    },
    /// A member's zone is empty or longer than
    /// [`MAX_ZONE_LEN`](crate::MAX_ZONE_LEN) bytes.
    InvalidZone {
        /// The member.
        node: crate::NodeId,
    },
    /// A received ring does not have one weight and one zone per member.
    WrongMemberAttributes {
        /// How many members it has.
        members: usize,
    },
    /// A change adds a node that is a member already.
    AlreadyMember {
        /// The node.
        node: crate::NodeId,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMember { node } => write!(f, "`{node}` is not a member of the ring"),
            Self::AlreadyMember { node } => write!(f, "`{node}` is a member of the ring already"),
            Self::InvalidPartitions { partitions } => write!(
                f,
                "invalid ring parameter `partitions` = {partitions}: must be a power of two from 1 to {}",
                crate::MAX_PARTITIONS
            ),
            Self::InvalidReplicas { replicas } => {
                write!(f, "invalid ring parameter `replicas` = {replicas}: must be at least 1")
            }
            Self::InvalidVnodes { vnodes } => write!(
                f,
                "invalid ring parameter `vnodes` = {vnodes}: must be from 1 to {}",
                crate::MAX_VNODES
            ),
            Self::InvalidWeight { node, weight } => {
                write!(f, "invalid weight {weight} for `{node}`: must be from 1 to {}", crate::MAX_WEIGHT)
            }
            Self::InvalidZone { node } => {
                write!(f, "invalid zone for `{node}`: a zone name must be 1 to {} bytes", crate::MAX_ZONE_LEN)
            }
            Self::WrongMemberAttributes { members } => {
                write!(
                    f,
                    "invalid ring: it must carry one weight and one zone for each of its {members} members"
                )
            }
            Self::NoMembers => f.write_str("a ring needs at least one member"),
            Self::TooManyMembers { members } => write!(
                f,
                "a ring of {members} members is too large: at most {} are supported",
                crate::MAX_MEMBERS
            ),
            Self::UnsortedMembers => {
                f.write_str("invalid ring: its members are not sorted ascending without duplicates")
            }
            Self::WrongPartitionCount { expected, found } => write!(
                f,
                "invalid ring: its primaries table has {found} partitions, its parameters say {expected}"
            ),
            Self::WrongReplicaCount { partition, expected, found } => write!(
                f,
                "invalid ring: partition {partition} has {found} primaries, it must have {expected}"
            ),
            Self::UnknownMemberIndex { partition, index } => write!(
                f,
                "invalid ring: partition {partition} names member index {index}, past the end of the member list"
            ),
            Self::DuplicatePrimary { partition, index } => write!(
                f,
                "invalid ring: partition {partition} lists member index {index} twice among its primaries"
            ),
        }
    }
}

impl std::error::Error for RingError {}
