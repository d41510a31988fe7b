//! When a request that asked several replicas is done: the counting, as a pure state
//! machine with no I/O, shared by reads, writes, hint delivery and anti-entropy.
//!
//! A [`Tally`] is told each replica's [`Answer`] as it arrives and says, after each,
//! whether the request's [`Rule`] is met, can no longer be met, or needs more answers.
//! A failed replica may be replaced by a spare (a fallback node of a sloppy quorum):
//! [`Tally::record`] says when to send one. The deadline passing is [`Tally::expire`]:
//! every call still in flight counts as failed.
//!
//! The laws: the verdict is [`Verdict::Met`] exactly when at least `rule.acks`
//! acknowledgements arrived of which at least `rule.durable` were durable, and
//! [`Verdict::Failed`] as soon as the answers still possible cannot get there.

pub use quorumkv_ring::Quorum;

/// What a request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Acknowledgements (answers, for a read) needed.
    pub acks: usize,
    /// Of those, how many must be durable (fsynced before they were sent).
    pub durable: usize,
}

impl Rule {
    /// A read of `r` answers.
    pub fn read(r: usize) -> Rule {
        Rule { acks: r, durable: 0 }
    }

    /// A write of `w` acknowledgements, `dw` of them durable.
    pub fn write(w: usize, dw: usize) -> Rule {
        Rule { acks: w, durable: dw }
    }
}

/// One replica's answer, as far as counting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answered (for a write: applied, in the journal).
    Ack,
    /// Applied and fsynced.
    DurableAck,
    /// Refused, unreachable, or timed out.
    Failed,
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// More answers are needed and may still come.
    Waiting,
    /// The rule is met: answer the client.
    Met,
    /// The rule can no longer be met.
    Failed,
}

/// What to do after recording an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing to send.
    Wait,
    /// The failed replica's copy should go to the next spare (one was reserved).
    SendToSpare,
}

/// The count of one request's answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    rule: Rule,
    /// Calls sent and not yet answered.
    in_flight: usize,
    /// Spares not yet used.
    spares: usize,
    acks: usize,
    durable: usize,
    failed: usize,
}

impl Tally {
    /// A request that sent `calls` calls, with `spares` replacements available.
    pub fn new(rule: Rule, calls: usize, spares: usize) -> Tally {
        Tally { rule, in_flight: calls, spares, acks: 0, durable: 0, failed: 0 }
    }

    /// Records one answer to a call in flight. A failure is handed to a spare while any
    /// remain (the spare's call is then in flight in its place).
    pub fn record(&mut self, answer: Answer) -> Next {
        self.in_flight = self.in_flight.saturating_sub(1);
        match answer {
            Answer::Ack => self.acks += 1,
            Answer::DurableAck => {
                self.acks += 1;
                self.durable += 1;
            }
            Answer::Failed => {
                self.failed += 1;
                if self.spares > 0 {
                    self.spares -= 1;
                    self.in_flight += 1;
                    return Next::SendToSpare;
                }
            }
        }
        Next::Wait
    }

    /// The deadline passed: nothing in flight will count.
    pub fn expire(&mut self) {
        self.failed += self.in_flight;
        self.in_flight = 0;
        self.spares = 0;
    }

    pub fn verdict(&self) -> Verdict {
        if self.acks >= self.rule.acks && self.durable >= self.rule.durable {
            Verdict::Met
        } else if self.acks + self.in_flight < self.rule.acks
            || self.durable + self.in_flight < self.rule.durable
        {
            Verdict::Failed
        } else {
            Verdict::Waiting
        }
    }

    /// Calls sent and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The figures a quorum failure reports: what was required and what arrived, for
    /// the part of the rule that fell short (durability first).
    pub fn shortfall(&self) -> (usize, usize) {
        if self.durable < self.rule.durable {
            (self.rule.durable, self.durable)
        } else {
            (self.rule.acks, self.acks)
        }
    }

    pub fn acks(&self) -> usize {
        self.acks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written case: rule, calls, spares, answers in order, verdict after each.
    type Case<'a> = (Rule, usize, usize, &'a [Answer], &'a [Verdict]);

    #[test]
    fn table() {
        use Answer::{Ack as A, DurableAck as D, Failed as F};
        use Verdict::{Failed as X, Met as M, Waiting as W};
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            // N=3, R=2: two answers, done; one failure still leaves room.
            (Rule::read(2), 3, 0, &[A, A], &[W, M]),
            (Rule::read(2), 3, 0, &[F, A, A], &[W, W, M]),
            (Rule::read(2), 3, 0, &[F, F], &[W, X]),
            (Rule::read(3), 3, 0, &[A, F], &[W, X]),
            (Rule::read(1), 3, 0, &[F, F, A], &[W, W, M]),
            // W=2, DW=1: a plain ack and a durable one.
            (Rule::write(2, 1), 3, 0, &[A, A, D], &[W, W, M]),
            (Rule::write(2, 1), 3, 0, &[D, A], &[W, M]),
            (Rule::write(2, 2), 3, 0, &[A, A, D], &[W, X, X]),
            (Rule::write(2, 0), 3, 0, &[F, F, A], &[W, X, X]),
            // A spare keeps a write going after failures.
            (Rule::write(3, 0), 3, 2, &[F, F, A, A, A], &[W, W, W, W, M]),
            (Rule::write(3, 0), 3, 1, &[F, F], &[W, X]),
            // N=1.
            (Rule::write(1, 1), 1, 0, &[D], &[M]),
            (Rule::write(1, 1), 1, 0, &[A], &[X]),
        ];
        for (i, (rule, calls, spares, answers, verdicts)) in cases.iter().enumerate() {
            let mut t = Tally::new(*rule, *calls, *spares);
            for (j, (a, v)) in answers.iter().zip(verdicts.iter()).enumerate() {
                t.record(*a);
                assert_eq!(t.verdict(), *v, "case {i}, after answer {j}: {t:?}");
            }
        }
    }

    #[test]
    fn the_deadline_fails_what_is_not_met_and_keeps_what_is() {
        let mut t = Tally::new(Rule::read(2), 3, 0);
        t.record(Answer::Ack);
        assert_eq!(t.verdict(), Verdict::Waiting);
        t.expire();
        assert_eq!(t.verdict(), Verdict::Failed);
        assert_eq!(t.shortfall(), (2, 1));

        let mut t = Tally::new(Rule::write(1, 0), 3, 0);
        t.record(Answer::Ack);
        t.expire();
        assert_eq!(t.verdict(), Verdict::Met);

        let mut t = Tally::new(Rule::write(2, 2), 3, 0);
        t.record(Answer::DurableAck);
        t.record(Answer::Ack);
        t.expire();
        assert_eq!(t.shortfall(), (2, 1), "durability is what fell short");
    }

    fn answers_of(code: usize, calls: usize) -> Vec<Option<Answer>> {
        // Each call: 0 ack, 1 durable ack, 2 failed, 3 no answer before the deadline.
        (0..calls)
            .map(|i| match (code / 4usize.pow(i as u32)) % 4 {
                0 => Some(Answer::Ack),
                1 => Some(Answer::DurableAck),
                2 => Some(Answer::Failed),
                _ => None,
            })
            .collect()
    }

    /// Every N from 1 to 5, every R/W and DW, every combination of answers, failures and
    /// timeouts, with and without spares: the verdict obeys the laws in the module docs,
    /// never turns back once decided, and never decides before it must.
    #[test]
    fn every_combination_obeys_the_laws() {
        for n in 1..=5usize {
            for acks in 1..=n {
                for durable in 0..=acks {
                    let rule = Rule { acks, durable };
                    for spares in 0..=2usize {
                        for code in 0..4usize.pow(n as u32) {
                            check(rule, n, spares, &answers_of(code, n));
                        }
                    }
                }
            }
        }
    }

    fn check(rule: Rule, n: usize, spares: usize, answers: &[Option<Answer>]) {
        let mut t = Tally::new(rule, n, spares);
        let mut spares_left = spares;
        // The answers that arrive, in order; a failure handed to a spare is followed by
        // the spare's answer (an ack, so spares help as much as they can).
        let mut arrived = Vec::new();
        let mut decided: Option<Verdict> = None;
        let mut queue: std::collections::VecDeque<Answer> = answers.iter().flatten().copied().collect();
        while let Some(a) = queue.pop_front() {
            arrived.push(a);
            if t.record(a) == Next::SendToSpare {
                assert!(spares_left > 0, "a spare was asked for when none was left");
                spares_left -= 1;
                queue.push_back(Answer::Ack);
            }
            let v = t.verdict();
            let (acks, dur) = count(&arrived);
            let met = acks >= rule.acks && dur >= rule.durable;
            assert_eq!(v == Verdict::Met, met, "{rule:?} {answers:?}: {t:?}");
            if let Some(d) = decided {
                assert_eq!(v, d, "a decided verdict changed: {rule:?} {answers:?}");
            }
            if v != Verdict::Waiting {
                decided = Some(v);
            }
            if v == Verdict::Failed {
                // Failed only when even every call in flight acking durably falls short.
                let possible = t.in_flight();
                assert!(acks + possible < rule.acks || dur + possible < rule.durable);
            }
        }
        t.expire();
        let (acks, dur) = count(&arrived);
        let met = acks >= rule.acks && dur >= rule.durable;
        assert_eq!(t.verdict(), if met { Verdict::Met } else { Verdict::Failed }, "{rule:?} {answers:?}");
    }

    fn count(arrived: &[Answer]) -> (usize, usize) {
        let acks = arrived.iter().filter(|a| **a != Answer::Failed).count();
        let dur = arrived.iter().filter(|a| **a == Answer::DurableAck).count();
        (acks, dur)
    }
}
