//! What each client does next: the operation mix, the key it touches, the value it writes.
//!
//! A [`Mix`] weighs the six operations; a [`Picker`] (one per client) draws an operation
//! and a key from it with the run's [`Distribution`], and a scan's length. Inserts take new key numbers from
//! the run's one [`InsertSequence`], so no two clients insert the same key, and reads
//! skewed to the latest keys never ask for a key whose insert is still in flight.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use serde::Serialize;

use crate::distribution::{Distribution, Latest, ScrambledZipfian, fnv1a64};

/// One operation of a workload. An operation is one request, except a read-modify-write,
/// which is two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A GET of an existing record; a 404 counts as a `not_found` error.
    Read,
    /// A PUT with the causal context this client last saw for the key (from a GET or a
    /// PUT's answer), or without one if it has seen none: how a Dynamo client updates.
    Update,
    /// A blind PUT of a new key beyond the current record count.
    Insert,
    /// A GET, then a PUT carrying that GET's context (a missing key is written anew).
    Rmw,
    /// A blind PUT, never with a context.
    Put,
    /// A listing of the keys from an existing record on (YCSB's scan): one page of
    /// [`Pick::scan_length`] keys.
    Scan,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 6] = [Op::Read, Op::Update, Op::Insert, Op::Rmw, Op::Put, Op::Scan];

    /// How many operations there are: the length of per-operation arrays.
    pub const COUNT: usize = Op::ALL.len();

    /// The operation's name, as `--mix` and the report write it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::Rmw => "rmw",
            Op::Put => "put",
            Op::Scan => "scan",
        }
    }

    /// Position in [`Op::ALL`], for per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of the six operations, indexed like [`Op::ALL`]. At least one is
/// positive and none is negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    weights: [f64; Op::COUNT],
}

impl Mix {
    /// A mix of `(operation, weight)` pairs; operations not named weigh nothing.
    ///
    /// # Errors
    /// A negative or non-finite weight, or weights that sum to zero.
    pub fn new(pairs: &[(Op, f64)]) -> Result<Mix, String> {
        let mut weights = [0.0; Op::COUNT];
        for &(op, w) in pairs {
            if !w.is_finite() || w < 0.0 {
                return Err(format!("the weight of {op} must be a non-negative number, not {w}"));
            }
            weights[op.index()] += w;
        }
        if weights.iter().sum::<f64>() <= 0.0 {
            return Err("the weights of a mix must sum to more than zero".into());
        }
        Ok(Mix { weights })
    }

    fn of(pairs: &[(Op, f64)]) -> Mix {
        let mut weights = [0.0; Op::COUNT];
        for &(op, w) in pairs {
            weights[op.index()] = w;
        }
        Mix { weights }
    }

    /// YCSB core workload A: 50% reads, 50% updates.
    pub fn ycsb_a() -> Mix {
        Mix::of(&[(Op::Read, 0.5), (Op::Update, 0.5)])
    }

    /// YCSB core workload B: 95% reads, 5% updates.
    pub fn ycsb_b() -> Mix {
        Mix::of(&[(Op::Read, 0.95), (Op::Update, 0.05)])
    }

    /// YCSB core workload C: reads only.
    pub fn ycsb_c() -> Mix {
        Mix::of(&[(Op::Read, 1.0)])
    }

    /// YCSB core workload D: 95% reads, 5% inserts (read with the latest distribution).
    pub fn ycsb_d() -> Mix {
        Mix::of(&[(Op::Read, 0.95), (Op::Insert, 0.05)])
    }

    /// YCSB core workload E: 95% scans, 5% inserts.
    pub fn ycsb_e() -> Mix {
        Mix::of(&[(Op::Scan, 0.95), (Op::Insert, 0.05)])
    }

    /// YCSB core workload F: 50% reads, 50% read-modify-writes.
    pub fn ycsb_f() -> Mix {
        Mix::of(&[(Op::Read, 0.5), (Op::Rmw, 0.5)])
    }

    /// The share of `op` in `[0, 1]`.
    pub fn share(&self, op: Op) -> f64 {
        self.weights[op.index()] / self.weights.iter().sum::<f64>()
    }

    /// Whether `op` happens at all.
    pub fn has(&self, op: Op) -> bool {
        self.weights[op.index()] > 0.0
    }

    /// Whether any operation reads records the run expects to exist (read,
    /// read-modify-write or scan): what decides whether `--load auto` loads.
    pub fn reads(&self) -> bool {
        self.has(Op::Read) || self.has(Op::Rmw) || self.has(Op::Scan)
    }

    /// The operations that happen, in report order.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        Op::ALL.into_iter().filter(|&op| self.has(op))
    }

    /// Cumulative shares, for drawing an operation from one uniform number.
    fn thresholds(&self) -> [f64; Op::COUNT] {
        let total: f64 = self.weights.iter().sum();
        let mut sum = 0.0;
        self.weights.map(|w| {
            sum += w / total;
            sum
        })
    }
}

impl FromStr for Mix {
    type Err = String;

    /// Parses `read=90,update=10`: operations `read`, `update`, `insert`, `rmw`, `put`,
    /// `scan`, each named once, with non-negative weights that sum to more than zero.
    fn from_str(text: &str) -> Result<Mix, String> {
        let mut pairs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, weight)) = part.split_once('=') else {
                return Err(format!("`{part}` is not `operation=weight` (e.g. read=90,update=10)"));
            };
            let op = Op::ALL.into_iter().find(|op| op.name() == name.trim()).ok_or_else(|| {
                format!("unknown operation `{}`: use read, update, insert, rmw, put or scan", name.trim())
            })?;
            if pairs.iter().any(|&(o, _)| o == op) {
                return Err(format!("{op} is named twice"));
            }
            let weight: f64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("the weight of {op}, `{weight}`, is not a number"))?;
            pairs.push((op, weight));
        }
        if pairs.is_empty() {
            return Err("a mix names at least one operation, e.g. read=90,update=10".into());
        }
        Mix::new(&pairs)
    }
}

impl fmt::Display for Mix {
    /// `read 50%, update 50%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.ops().map(|op| format!("{op} {}%", percent(self.share(op)))).collect();
        f.write_str(&parts.join(", "))
    }
}

impl Serialize for Mix {
    /// A map of each operation that happens to its share (0 to 1).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for op in self.ops() {
            map.serialize_entry(op.name(), &self.share(op))?;
        }
        map.end()
    }
}

/// A share as a percentage with at most two decimals and no trailing zeros.
fn percent(share: f64) -> String {
    let text = format!("{:.2}", share * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Value sizes in bytes: one size, or a range `min..max` (both included). Each key has its
/// own size, uniform over the range and the same on every write of the key, so repeated
/// blind writes of a key store identical bytes (which the node keeps as one sibling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ValueSize {
    /// Smallest size.
    pub min: usize,
    /// Largest size.
    pub max: usize,
}

/// The largest value size `--value-size` takes (the node's own limit is lower by default).
pub const MAX_VALUE_SIZE: usize = 256 << 20;

impl ValueSize {
    /// The size of every value written under key number `key`.
    pub fn of(&self, key: u64) -> usize {
        if self.min == self.max {
            return self.min;
        }
        let span = (self.max - self.min) as u64 + 1;
        self.min + (fnv1a64(key ^ 0x76a1_5e5f) % span) as usize
    }
}

impl FromStr for ValueSize {
    type Err = String;

    /// Parses `1024` or `512..2048`.
    fn from_str(text: &str) -> Result<ValueSize, String> {
        let bytes = |s: &str| -> Result<usize, String> {
            let n: usize = s.trim().parse().map_err(|_| {
                format!("`{}` is not a size in bytes (write 1024, or a range like 512..2048)", s.trim())
            })?;
            if n > MAX_VALUE_SIZE {
                return Err(format!("{n} bytes is more than the {MAX_VALUE_SIZE} a value may have here"));
            }
            Ok(n)
        };
        let (min, max) = match text.split_once("..") {
            Some((lo, hi)) => (bytes(lo)?, bytes(hi.trim_start_matches('='))?),
            None => {
                let n = bytes(text)?;
                (n, n)
            }
        };
        if min > max {
            return Err(format!("`{text}`: the smallest size comes first (e.g. 512..2048)"));
        }
        Ok(ValueSize { min, max })
    }
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max { write!(f, "{}", self.min) } else { write!(f, "{}..{}", self.min, self.max) }
    }
}

/// The bytes every write of a run takes its value from: `max` printable bytes, of which a
/// key's value is the first [`ValueSize::of`] (a cheap slice, shared with the others).
#[derive(Debug, Clone)]
pub struct Values {
    size: ValueSize,
    bytes: Bytes,
}

impl Values {
    /// The values of a run with sizes `size`.
    pub fn new(size: ValueSize) -> Values {
        Values { size, bytes: Bytes::from(value_bytes(size.max)) }
    }

    /// The value of key number `key`.
    pub fn of(&self, key: u64) -> Bytes {
        self.bytes.slice(..self.size.of(key))
    }

    /// The sizes.
    pub fn size(&self) -> ValueSize {
        self.size
    }

    /// The longest value (every value is a prefix of it).
    pub fn longest(&self) -> &Bytes {
        &self.bytes
    }
}

/// `size` bytes of printable filler.
pub fn value_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Key numbers handed to inserts, and how many keys can be read.
///
/// [`claim`](InsertSequence::claim) gives each insert its own new key number (a shared
/// atomic counter); [`acknowledge`](InsertSequence::acknowledge) marks it done (written
/// or failed). [`readable`](InsertSequence::readable) is one past the highest key below
/// which every insert is done, like YCSB's `AcknowledgedCounterGenerator`: reads skewed
/// to the latest keys read no key still being written. No lock: a ring of flags, one per
/// key between `readable` and the newest claim.
#[derive(Debug)]
pub struct InsertSequence {
    next: AtomicU64,
    readable: AtomicU64,
    /// How far claims may run ahead of `readable`.
    limit: u64,
    /// Done inserts at or above `readable`, by key number modulo its length.
    done: Box<[AtomicBool]>,
}

/// How many inserts may be claimed beyond the oldest one still in flight (YCSB's window).
const INSERT_WINDOW: u64 = 1 << 20;

impl InsertSequence {
    /// A sequence after `records` existing keys, for a run of `clients` clients (each
    /// with at most one insert in flight).
    pub fn new(records: u64, clients: u64) -> InsertSequence {
        InsertSequence::with_window(records, clients, INSERT_WINDOW)
    }

    /// A sequence for a run without inserts: nothing can be claimed, `readable` stays
    /// `records`.
    pub fn fixed(records: u64) -> InsertSequence {
        InsertSequence::with_window(records, 1, 0)
    }

    fn with_window(records: u64, clients: u64, limit: u64) -> InsertSequence {
        // Claims that passed the limit check together overshoot it by at most `clients`.
        let slots = (limit + clients.max(1)).next_power_of_two() as usize;
        InsertSequence {
            next: AtomicU64::new(records),
            readable: AtomicU64::new(records),
            limit,
            done: (0..slots).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// A new key number, never handed out before; `None` while a stalled insert holds
    /// `readable` back by the whole window (the caller does something else meanwhile).
    pub fn claim(&self) -> Option<u64> {
        let ahead = self.next.load(Ordering::Relaxed).saturating_sub(self.readable.load(Ordering::Acquire));
        if ahead >= self.limit {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn slot(&self, key: u64) -> &AtomicBool {
        &self.done[(key % self.done.len() as u64) as usize]
    }

    /// Marks the insert of `key` (from [`claim`](Self::claim)) as done, and moves
    /// `readable` past every done key.
    pub fn acknowledge(&self, key: u64) {
        self.slot(key).store(true, Ordering::Release);
        loop {
            let readable = self.readable.load(Ordering::Acquire);
            let next = self.slot(readable);
            if !next.load(Ordering::Acquire) {
                return;
            }
            // Whoever moves `readable` past a key clears its slot; claims stay within the
            // ring's length of `readable`, so the slot is not reused before that.
            if self
                .readable
                .compare_exchange(readable, readable + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                next.store(false, Ordering::Release);
            }
        }
    }

    /// How many keys can be read: every key below this has been written (or its insert
    /// failed).
    pub fn readable(&self) -> u64 {
        self.readable.load(Ordering::Acquire)
    }

    /// How many new keys have been claimed in all.
    pub fn claimed(&self, records: u64) -> u64 {
        self.next.load(Ordering::Relaxed).saturating_sub(records)
    }
}

/// How a client draws keys.
#[derive(Debug, Clone, Copy)]
enum Keys {
    Uniform,
    Zipfian(ScrambledZipfian),
    Latest(Latest),
}

/// Draws operations and keys for one client. Deterministic for a seed (given the same
/// inserts), so two clients with different seeds do not walk the keys in step.
#[derive(Debug, Clone)]
pub struct Picker {
    thresholds: [f64; Op::COUNT],
    records: u64,
    inserts: bool,
    keys: Keys,
    max_scan_length: u64,
    rng: SplitMix64,
}

/// The longest scan by default: YCSB's `maxscanlength`.
pub const DEFAULT_MAX_SCAN_LENGTH: u64 = 100;

/// What a client does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The operation.
    pub op: Op,
    /// The key number (a new one for an insert: acknowledge it when done; the first key
    /// of a scan).
    pub key: u64,
    /// How many keys a scan asks for, uniform over 1 to the picker's maximum (YCSB's
    /// default `scanlengthdistribution`); 0 for every other operation.
    pub scan_length: u64,
}

impl Picker {
    /// A picker over `records` keys. `latest` is the run's [`Latest`] (built once, so its
    /// zeta is computed once); it is used only with [`Distribution::Latest`].
    pub fn new(
        mix: &Mix,
        distribution: Distribution,
        records: u64,
        latest: Option<Latest>,
        seed: u64,
    ) -> Picker {
        let records = records.max(1);
        let keys = match (distribution, latest) {
            (Distribution::Uniform, _) => Keys::Uniform,
            (Distribution::Zipfian, _) => Keys::Zipfian(ScrambledZipfian::new(records)),
            (Distribution::Latest, Some(latest)) => Keys::Latest(latest),
            (Distribution::Latest, None) => Keys::Latest(Latest::new(records)),
        };
        Picker {
            thresholds: mix.thresholds(),
            records,
            inserts: mix.has(Op::Insert),
            keys,
            max_scan_length: DEFAULT_MAX_SCAN_LENGTH,
            rng: SplitMix64(seed),
        }
    }

    /// Scans ask for 1 to `max` keys [default: [`DEFAULT_MAX_SCAN_LENGTH`]].
    pub fn max_scan_length(mut self, max: u64) -> Picker {
        self.max_scan_length = max.max(1);
        self
    }

    /// The next operation and its key; an insert claims its key from `sequence`.
    pub fn pick(&mut self, sequence: &InsertSequence) -> Pick {
        let u = self.rng.unit();
        let op = match self.thresholds.iter().position(|&t| u < t) {
            Some(i) => Op::ALL[i],
            // Rounding left the last threshold a hair below one: the last operation that
            // has weight.
            None => Op::ALL[self.thresholds.iter().rposition(|&t| t > 0.0).unwrap_or(0)],
        };
        let op = match op {
            Op::Insert => match sequence.claim() {
                Some(key) => return Pick { op, key, scan_length: 0 },
                None => Op::Read,
            },
            other => other,
        };
        // Without inserts the record count is fixed; with them, only acknowledged keys.
        let count = if self.inserts { sequence.readable().max(1) } else { self.records };
        let u = self.rng.unit();
        let key = match &mut self.keys {
            Keys::Uniform => self.rng.below(count),
            Keys::Zipfian(z) => z.next(u),
            Keys::Latest(l) => l.next(count, u),
        };
        // Drawn only for scans, so the other workloads' sequences stay as they were.
        let scan_length = if op == Op::Scan { 1 + self.rng.below(self.max_scan_length) } else { 0 };
        Pick { op, key, scan_length }
    }
}

/// The name of key number `index`: `k` and ten digits, so names sort like their numbers.
pub fn key_name(index: u64) -> String {
    format!("k{index:010}")
}

/// The `after` of a listing that starts at key number `start`: the name of the key just
/// before it, or `None` for key 0 (a listing from the bucket's first key). Key names sort
/// like their numbers, so the listing's first key is `start`'s when that exists.
pub fn scan_after(start: u64) -> Option<String> {
    start.checked_sub(1).map(key_name)
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, fast generator, plenty for choosing
/// keys; not for anything that must be unpredictable.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-40 for our n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_fixed_width() {
        assert_eq!(key_name(0), "k0000000000");
        assert_eq!(key_name(99_999), "k0000099999");
    }

    #[test]
    fn mixes_parse_and_refuse_clearly() {
        let m: Mix = "read=90,update=10".parse().unwrap();
        assert_eq!((m.share(Op::Read), m.share(Op::Update)), (0.9, 0.1));
        assert_eq!(m.to_string(), "read 90%, update 10%");
        let m: Mix = " rmw = 1 , put=1, insert=2 ".parse().unwrap();
        assert_eq!((m.share(Op::Rmw), m.share(Op::Insert)), (0.25, 0.5));
        assert!(!m.reads() || m.has(Op::Rmw));
        let m: Mix = "read=1,update=0".parse().unwrap();
        assert!(!m.has(Op::Update));
        let m: Mix = "scan=1".parse().unwrap();
        assert_eq!((m.share(Op::Scan), m.to_string()), (1.0, "scan 100%".to_string()));
        assert!(m.reads(), "scans read the records, so --load auto loads them");
        for (bad, says) in [
            ("", "at least one"),
            ("read", "operation=weight"),
            ("list=5", "unknown operation `list`: use read, update, insert, rmw, put or scan"),
            ("read=-1,update=2", "non-negative"),
            ("read=0,update=0", "sum to more than zero"),
            ("read=x", "is not a number"),
            ("read=1,read=2", "named twice"),
            ("read=inf", "non-negative number"),
        ] {
            let err = bad.parse::<Mix>().unwrap_err();
            assert!(err.contains(says), "{bad:?} gave {err:?}");
        }
    }

    #[test]
    fn core_workloads_have_ycsb_shares() {
        assert_eq!(Mix::ycsb_a().to_string(), "read 50%, update 50%");
        assert_eq!(Mix::ycsb_b().to_string(), "read 95%, update 5%");
        assert_eq!(Mix::ycsb_c().to_string(), "read 100%");
        assert_eq!(Mix::ycsb_d().to_string(), "read 95%, insert 5%");
        assert_eq!(Mix::ycsb_e().to_string(), "insert 5%, scan 95%");
        assert_eq!(Mix::ycsb_f().to_string(), "read 50%, rmw 50%");
        assert!(Mix::ycsb_e().reads() && !"put=1,insert=1".parse::<Mix>().unwrap().reads());
        let json = serde_json::to_value(Mix::ycsb_e()).unwrap();
        assert_eq!(json, serde_json::json!({"insert": 0.05, "scan": 0.95}));
        let json = serde_json::to_value(Mix::ycsb_b()).unwrap();
        assert_eq!(json, serde_json::json!({"read": 0.95, "update": 0.05}));
    }

    #[test]
    fn value_sizes_parse_and_stay_in_range() {
        assert_eq!("1024".parse(), Ok(ValueSize { min: 1024, max: 1024 }));
        assert_eq!("512..2048".parse(), Ok(ValueSize { min: 512, max: 2048 }));
        assert_eq!("512..=2048".parse(), Ok(ValueSize { min: 512, max: 2048 }));
        assert_eq!("0".parse(), Ok(ValueSize { min: 0, max: 0 }));
        assert!("2048..512".parse::<ValueSize>().unwrap_err().contains("smallest size comes first"));
        assert!("1k".parse::<ValueSize>().is_err());
        assert!("..5".parse::<ValueSize>().is_err());
        assert!(format!("{}", MAX_VALUE_SIZE + 1).parse::<ValueSize>().is_err());
        let range = ValueSize { min: 512, max: 2048 };
        let sizes: Vec<usize> = (0..10_000).map(|k| range.of(k)).collect();
        assert!(sizes.iter().all(|s| (512..=2048).contains(s)));
        assert!(sizes.iter().any(|&s| s < 600) && sizes.iter().any(|&s| s > 1950), "spread over the range");
        assert_eq!(range.of(7), range.of(7), "a key always gets the same size");
        let values = Values::new(range);
        assert_eq!(values.of(7).len(), range.of(7));
        assert_eq!(&values.of(7)[..3], b"abc");
    }

    #[test]
    fn ops_follow_the_mix() {
        let seq = InsertSequence::new(100, 4);
        let count = |mix: Mix, op: Op| {
            let mut p = Picker::new(&mix, Distribution::Uniform, 100, None, 42);
            (0..10_000).filter(|_| p.pick(&seq).op == op).count()
        };
        assert_eq!(count(Mix::ycsb_c(), Op::Read), 10_000);
        assert!((4_700..5_300).contains(&count(Mix::ycsb_a(), Op::Update)));
        assert!((300..700).contains(&count(Mix::ycsb_b(), Op::Update)));
        assert!((4_700..5_300).contains(&count(Mix::ycsb_f(), Op::Rmw)));
        assert!((9_300..9_700).contains(&count(Mix::ycsb_e(), Op::Scan)));
        assert_eq!(count("put=1".parse().unwrap(), Op::Put), 10_000);
    }

    #[test]
    fn scan_lengths_are_uniform_up_to_the_maximum() {
        let seq = InsertSequence::new(1000, 1);
        let mut p = Picker::new(&Mix::ycsb_e(), Distribution::Zipfian, 1000, None, 3).max_scan_length(10);
        let mut seen = [0u32; 11];
        for _ in 0..10_000 {
            let pick = p.pick(&seq);
            if pick.op == Op::Scan {
                seen[pick.scan_length as usize] += 1;
            } else {
                assert_eq!(pick.scan_length, 0, "{pick:?}");
                seq.acknowledge(pick.key);
            }
        }
        assert_eq!(seen[0], 0, "a scan asks for at least one key");
        assert!(seen[1..].iter().all(|&n| (800..1100).contains(&n)), "{seen:?}");
        let mut one = Picker::new(&Mix::ycsb_e(), Distribution::Uniform, 10, None, 3).max_scan_length(1);
        assert!((0..1000).map(|_| one.pick(&seq)).all(|p| p.op != Op::Scan || p.scan_length == 1));
        let mut default = Picker::new(&"scan=1".parse().unwrap(), Distribution::Uniform, 10, None, 3);
        let lengths: Vec<u64> = (0..10_000).map(|_| default.pick(&seq).scan_length).collect();
        assert_eq!((lengths.iter().min(), lengths.iter().max()), (Some(&1), Some(&DEFAULT_MAX_SCAN_LENGTH)));
    }

    #[test]
    fn scans_list_from_their_start_record() {
        assert_eq!(scan_after(0), None, "record 0 lists from the bucket's start");
        assert_eq!(scan_after(1).as_deref(), Some("k0000000000"));
        assert_eq!(scan_after(100_000).as_deref(), Some("k0000099999"));
        // The first key after `after` is the start record's, across a change of digits.
        for start in [1, 9, 10, 99_999, 1 << 32] {
            let after = scan_after(start).unwrap();
            let first = (start.saturating_sub(20)..start + 20).map(key_name).filter(|k| *k > after).min();
            assert_eq!(first, Some(key_name(start)), "{start}");
        }
    }

    #[test]
    fn uniform_keys_cover_the_range() {
        let seq = InsertSequence::new(10, 1);
        let mut p = Picker::new(&Mix::ycsb_c(), Distribution::Uniform, 10, None, 7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[p.pick(&seq).key as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn inserts_take_new_keys_and_reads_follow_acknowledgements() {
        let seq = InsertSequence::new(1000, 8);
        let mut p = Picker::new(&Mix::ycsb_d(), Distribution::Latest, 1000, Some(Latest::new(1000)), 9);
        let mut inserted = Vec::new();
        for _ in 0..2_000 {
            let pick = p.pick(&seq);
            match pick.op {
                Op::Insert => {
                    assert!(pick.key >= 1000 && !inserted.contains(&pick.key));
                    inserted.push(pick.key);
                    seq.acknowledge(pick.key);
                }
                _ => assert!(pick.key < seq.readable(), "{pick:?} beyond {}", seq.readable()),
            }
        }
        assert!(!inserted.is_empty());
        assert_eq!(seq.readable(), 1000 + inserted.len() as u64);
        assert_eq!(seq.claimed(1000), inserted.len() as u64);
    }

    #[test]
    fn readable_waits_for_the_oldest_insert_in_flight() {
        let seq = InsertSequence::new(10, 4);
        let (a, b, c) = (seq.claim().unwrap(), seq.claim().unwrap(), seq.claim().unwrap());
        assert_eq!((a, b, c), (10, 11, 12));
        seq.acknowledge(b);
        seq.acknowledge(c);
        assert_eq!(seq.readable(), 10, "key 10 is still being written");
        seq.acknowledge(a);
        assert_eq!(seq.readable(), 13);
        // The window's slots are reused once passed.
        for _ in 0..100 {
            let k = seq.claim().unwrap();
            seq.acknowledge(k);
        }
        assert_eq!(seq.readable(), 113);
    }

    #[test]
    fn claims_stop_at_the_window_behind_a_stalled_insert() {
        let seq = InsertSequence::with_window(0, 2, 8);
        let stalled = seq.claim().unwrap();
        for _ in 0..7 {
            let k = seq.claim().unwrap();
            seq.acknowledge(k);
        }
        assert_eq!(seq.claim(), None, "eight keys ahead of readable");
        seq.acknowledge(stalled);
        assert_eq!(seq.readable(), 8);
        assert_eq!(seq.claim(), Some(8));
    }

    #[test]
    fn concurrent_inserts_never_share_a_key() {
        let seq = std::sync::Arc::new(InsertSequence::new(0, 4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let seq = std::sync::Arc::clone(&seq);
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|_| {
                            let k = seq.claim().unwrap();
                            seq.acknowledge(k);
                            k
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
        assert_eq!(seq.readable(), 4000);
    }
}
