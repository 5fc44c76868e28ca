//! Credibility: how far the scheduler believes a runner's result, from the runner's history,
//! and when a group of agreeing runners is believed enough to accept their digest.
//!
//! After Sarmenta's credibility-based fault tolerance (Future Generation Computer Systems
//! 18(4), 2002): a runner nothing has verified yet is wrong with the probability the operator
//! assumes for a saboteur, `prior` (f); one whose results were verified `k` times and never
//! found false is wrong with probability at most `f / ((1 - f) k e)` (spot checking with
//! blacklisting, against a saboteur that picks its sabotage rate to do the most harm); one
//! ever found false counts for nothing. A runner's credibility is kept as the log-odds of its
//! result being right ([`Weight`]), so that the credibility of runners who agree is a sum.
//!
//! Where several digests were reported, the chance that group `g` is the right one, given that
//! at most one is, is `exp(W_g) / (1 + Σ_h exp(W_h))` over every group `h`: a group is
//! believed when that chance of being wrong is at most the batch's target error.
//!
//! **Pure**, like the rest of the core: the history and the random draws are passed in.

use crate::task::Reputation;

/// The log-odds that a runner's result is right, in thousandths of a nat: 0 is a coin toss
/// (a runner found false counts for nothing), about 1,386 a newcomer when one runner in five
/// is assumed a saboteur, 9,210 an error of 1 in 10,000.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weight(pub i64);

impl Weight {
    /// The weight of an error probability `error` (in (0, 1)).
    pub fn of_error(error: f64) -> Weight {
        let error = error.clamp(1e-15, 0.5);
        Weight((((1.0 - error) / error).ln() * 1000.0).round() as i64)
    }

    /// The error probability it stands for.
    pub fn error(self) -> f64 {
        1.0 / (1.0 + self.nats().exp())
    }

    fn nats(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

/// How a grid weighs its runners: the operator's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The share of runners assumed to be saboteurs (f): a newcomer's error.
    pub prior: f64,
    /// The most error a batch accepts a result with (a target, e.g. 1e-4).
    pub target: f64,
    /// The share of results accepted on runners' credibility that the scheduler re-runs
    /// itself, unannounced (spot checks).
    pub spot_rate: f64,
}

impl Default for Policy {
    /// One runner in five assumed a saboteur, an error of 1 in 10,000 accepted, one result
    /// in ten spot-checked (decision 059: at one in twenty, saboteurs that lie rarely once
    /// trusted were not all caught within a batch of 20,000 tasks).
    fn default() -> Self {
        Policy {
            prior: 0.2,
            target: 1e-4,
            spot_rate: 0.1,
        }
    }
}

impl Policy {
    /// The weight a group of agreeing runners needs, alone, for a result to be accepted.
    pub fn need(&self) -> Weight {
        Weight::of_error(self.target)
    }

    /// The results of a runner with `reputation` that count as verified: its agreements
    /// (each co-signed by other runners or by the scheduler's own run) and spot checks
    /// passed, less one for every deadline missed and every lease handed back, so that a
    /// runner cannot pick the tasks it keeps for free.
    pub fn verified(reputation: &Reputation) -> u64 {
        (reputation.agreements + reputation.spot_checks)
            .saturating_sub(reputation.missed_deadlines + reputation.returns)
    }

    /// The credibility of a runner with `reputation`.
    pub fn weight(&self, reputation: &Reputation) -> Weight {
        if reputation.flagged() {
            return Weight(0);
        }
        let f = self.prior.clamp(1e-9, 0.5);
        let k = Self::verified(reputation) as f64;
        let error = if k == 0.0 {
            f
        } else {
            (f / ((1.0 - f) * k * std::f64::consts::E)).min(f)
        };
        Weight::of_error(error)
    }

    /// Whether a runner with `weight` is established: its result alone meets the target.
    pub fn established(&self, weight: Weight) -> bool {
        weight >= self.need()
    }

    /// The verified results a runner needs to be established (see [`Policy::verified`]).
    pub fn established_after(&self) -> u64 {
        let at = |k: u64| {
            self.established(self.weight(&Reputation {
                agreements: k,
                ..Reputation::default()
            }))
        };
        let mut high = 1u64;
        while !at(high) {
            if high >= 1 << 40 {
                return u64::MAX;
            }
            high *= 2;
        }
        let mut low = 0;
        // The least k in (low, high] that is enough.
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if at(mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        high
    }

    /// The verified results of the runner a batch's target is measured against: one the grid
    /// has checked a thousand times, about what it takes to be established at 1e-4.
    pub const REFERENCE_VERIFIED: u64 = 1_000;

    /// Whether `max_replicas` agreeing runners can ever accept a result at `target`: each
    /// weighing what a runner with [`Policy::REFERENCE_VERIFIED`] verified results weighs.
    /// A target beyond that would leave every task to the scheduler's own sandbox, so that a
    /// submitter could make the scheduler run a whole batch itself; such a batch is refused,
    /// saying which `max_replicas` or which target would do.
    pub fn reachable(&self, target: f64, max_replicas: u32) -> Result<(), String> {
        let reference = self.weight(&Reputation {
            agreements: Self::REFERENCE_VERIFIED,
            ..Reputation::default()
        });
        let need = Weight::of_error(target);
        if reference.0 <= 0 {
            return Err("the grid's prior leaves no runner any credibility".into());
        }
        let runners = (need.0.max(0) as u64).div_ceil(reference.0 as u64).max(1);
        if runners <= u64::from(max_replicas) {
            return Ok(());
        }
        let reachable = Weight(reference.0 * i64::from(max_replicas)).error();
        Err(format!(
            "target_error {target:e} needs {runners} established runners to agree, more than \
             redundancy.max_replicas {max_replicas}: raise max_replicas to {runners}, or \
             target_error to at least {reachable:.1e}"
        ))
    }

    /// Whether an accepted result is spot-checked, given the scheduler's random `draw`.
    pub fn spot_checked(&self, draw: u64) -> bool {
        (draw as f64) < self.spot_rate.clamp(0.0, 1.0) * u64::MAX as f64
    }
}

/// Whether an accepted result verifies the runners that agreed on it, so that each counts
/// it as an agreement: when it was not their word alone, that is, `agreeing` runners (two
/// or more) or the scheduler's own run decided it. A runner accepted alone gains nothing
/// from it: otherwise its own unchecked results would make it credible.
pub fn verifies(agreeing: usize, by_scheduler: bool) -> bool {
    agreeing >= 2 || by_scheduler
}

/// Whether the group weighing `group` is believed against the other groups' weights
/// `others` (runners who reported other digests), with `need` the weight the target asks of
/// a group alone: its odds of being the right one, `exp(W_g) / (1 + Σ_h≠g exp(W_h))`, are
/// at least `exp(need)`.
pub fn believed(group: Weight, others: &[Weight], need: Weight) -> bool {
    let rivals: f64 = others.iter().map(|w| w.nats().exp()).sum();
    group.nats() - (1.0 + rivals).ln() >= need.nats()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(agreements: u64) -> Reputation {
        Reputation {
            agreements,
            ..Reputation::default()
        }
    }

    #[test]
    fn a_newcomer_weighs_the_prior_and_the_verified_weigh_more() {
        let p = Policy::default();
        // A newcomer is wrong one time in five: odds 4 to 1.
        assert_eq!(p.weight(&rep(0)), Weight::of_error(0.2));
        assert!((p.weight(&rep(0)).error() - 0.2).abs() < 1e-3);
        let mut last = p.weight(&rep(0));
        for k in [1, 10, 100, 1_000] {
            let w = p.weight(&rep(k));
            assert!(w >= last, "{k}: {w:?} < {last:?}");
            last = w;
        }
        // f / ((1 - f) k e) <= 1e-4 from k = 920 on.
        assert!(!p.established(p.weight(&rep(919))));
        assert!(p.established(p.weight(&rep(920))));
        assert_eq!(p.established_after(), 920);
    }

    #[test]
    fn a_runner_found_false_counts_for_nothing() {
        let p = Policy::default();
        let caught = Reputation {
            agreements: 10_000,
            disagreements: 1,
            ..Reputation::default()
        };
        assert_eq!(p.weight(&caught), Weight(0));
    }

    #[test]
    fn hand_backs_and_missed_deadlines_cost_verified_results() {
        let p = Policy::default();
        let picky = Reputation {
            agreements: 1_000,
            returns: 200,
            missed_deadlines: 100,
            ..Reputation::default()
        };
        assert_eq!(Policy::verified(&picky), 700);
        assert!(!p.established(p.weight(&picky)));
    }

    #[test]
    fn agreement_adds_and_rivals_subtract() {
        let need = Policy::default().need();
        let newcomer = Weight::of_error(0.2);
        let established = Weight::of_error(1e-5);
        assert!(!believed(newcomer, &[], need));
        assert!(believed(established, &[], need));
        // Two newcomers together: 1 in 17 wrong; never enough.
        assert!(!believed(Weight(2 * newcomer.0), &[], need));
        // An established runner with one rival as credible as itself is not believed.
        assert!(!believed(established, &[established], need));
        // A rival that counts for nothing takes away almost nothing.
        assert!(believed(established, &[Weight(0)], Weight(need.0 - 700)));
    }

    #[test]
    fn a_target_that_no_replicas_could_reach_is_refused() {
        let p = Policy::default();
        assert!(p.reachable(1e-4, 1).is_ok());
        assert!(p.reachable(1e-4, 2).is_ok());
        // A reference runner weighs about 9.3 nats: 1e-8 takes two, 1e-15 four.
        let two = p.reachable(1e-8, 1).unwrap_err();
        assert!(two.contains("needs 2 established runners"), "{two}");
        assert!(p.reachable(1e-8, 2).is_ok());
        let err = p.reachable(1e-15, 3).unwrap_err();
        assert!(err.contains("raise max_replicas to 4"), "{err}");
        // The target it proposes is reachable with the replicas given.
        let at_least: f64 = err.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(p.reachable(at_least * 1.01, 3).is_ok(), "{at_least}");
    }

    #[test]
    fn spot_checks_take_their_share_of_draws() {
        let p = Policy::default();
        let mut draws = crate::rules::Draws(3);
        let checked = (0..100_000)
            .filter(|_| p.spot_checked(draws.next()))
            .count();
        assert!((9_500..10_500).contains(&checked), "{checked}");
        let never = Policy {
            spot_rate: 0.0,
            ..p
        };
        assert!(!never.spot_checked(0));
    }
}
