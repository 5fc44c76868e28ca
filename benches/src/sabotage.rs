//! `sabotage`: the scheduler's own placement and consensus rules (its pure core, not a model
//! of it) against saboteurs who cooperate: each under an owner of its own, all asking for
//! work one right after the other, agreeing on one forged result per task. For each share
//! of saboteurs and each strategy it runs a batch to the end twice — with tasks taken in
//! the order of requests, as the scheduler did before, and drawn at random as it does now
//! (`Asker::choose`) — and prints the share of accepted results that are forged.
//!
//! Every runner has one slot; in a round each asks once, in an order drawn for the round
//! in which the saboteurs stand together, then each reports. As in the store, a request
//! draws from the lowest-id tasks that want a replica, as many as the round's requests and
//! the pool's spare beyond.

use helio_scheduler::rules::{Asker, Draws};
use helio_scheduler::task::{Effect, Phase, Reputation, TaskState};
use helio_sdk::{Blake3Hash, Redundancy, Tier};

/// Tasks the store's pool reads beyond a group's demand (`store/lease.rs`).
const POOL_SPARE: usize = 64;

/// The benchmark's settings.
#[derive(clap::Args, Clone)]
pub struct SabotageArgs {
    /// Tasks per batch.
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Honest runners.
    #[arg(long, default_value_t = 40)]
    pub honest: usize,
    /// Batches per case (each with its own seed).
    #[arg(long, default_value_t = 5)]
    pub runs: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    /// Lie on every task.
    Always,
    /// Lie only on a task a fellow saboteur also holds; be honest otherwise.
    WhenPaired,
}

#[derive(Clone, Copy, PartialEq)]
enum Placement {
    /// The lowest-id tasks a runner may take, in the order of requests.
    InOrder,
    /// Drawn at random from the pool.
    Drawn,
}

struct Runner {
    id: String,
    owner: String,
    saboteur: bool,
}

/// What one batch came to.
#[derive(Default)]
struct Tally {
    accepted: u64,
    forged: u64,
    replicas: u64,
}

/// Runs every case and prints a Markdown table.
pub fn sabotage(args: &SabotageArgs) {
    println!(
        "\n## Cooperating saboteurs against placement ({} tasks, {} honest runners, {} batches per case)\n",
        args.batch, args.honest, args.runs
    );
    println!(
        "| saboteurs | strategy | placement | forged / accepted | forged share | replicas per task |"
    );
    println!("|---|---|---|---|---|---|");
    for share in [0.1, 0.2, 0.35] {
        let saboteurs = ((args.honest as f64 * share) / (1.0 - share)).round() as usize;
        for (strategy, name) in [
            (Strategy::Always, "always lie"),
            (Strategy::WhenPaired, "lie when paired"),
        ] {
            for (placement, how) in [
                (Placement::InOrder, "in request order"),
                (Placement::Drawn, "drawn"),
            ] {
                let mut t = Tally::default();
                for seed in 0..args.runs {
                    let run = batch(args, saboteurs, strategy, placement, seed);
                    t.accepted += run.accepted;
                    t.forged += run.forged;
                    t.replicas += run.replicas;
                }
                println!(
                    "| {saboteurs} of {} ({:.0}%) | {name} | {how} | {} / {} | {:.2e} | {:.2} |",
                    saboteurs + args.honest,
                    share * 100.0,
                    t.forged,
                    t.accepted,
                    t.forged as f64 / t.accepted.max(1) as f64,
                    t.replicas as f64 / t.accepted.max(1) as f64,
                );
            }
        }
    }
}

fn truth(task: usize) -> Blake3Hash {
    Blake3Hash::of(format!("true {task}").as_bytes())
}

fn forged(task: usize) -> Blake3Hash {
    Blake3Hash::of(format!("forged {task}").as_bytes())
}

/// One batch to the end (or 100 rounds per task).
fn batch(
    args: &SabotageArgs,
    saboteurs: usize,
    strategy: Strategy,
    placement: Placement,
    seed: u64,
) -> Tally {
    let red = Redundancy {
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
    };
    let mut tasks: Vec<TaskState> = (0..args.batch).map(|_| TaskState::new(red)).collect();
    let runners: Vec<Runner> = (0..args.honest + saboteurs)
        .map(|i| Runner {
            id: format!("r{i}"),
            owner: format!("o{i}"),
            saboteur: i >= args.honest,
        })
        .collect();
    let mut draws = Draws(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xdead_beef);
    let mut t = Tally::default();
    for round in 0..100 * args.batch as i64 {
        if tasks
            .iter()
            .all(|s| matches!(s.phase, Phase::Accepted { .. }))
        {
            break;
        }
        let order = round_order(&runners, &mut draws);
        let mut held: Vec<(usize, usize)> = Vec::new();
        for &r in &order {
            let runner = &runners[r];
            let asker = Asker {
                runner: &runner.id,
                owner: &runner.owner,
                tier: Tier::Cpu,
                slots: 1,
                reputation: Reputation::default(),
                active: 0,
            };
            let pool = tasks
                .iter()
                .enumerate()
                .filter(|(_, s)| s.wanted > 0)
                .take(order.len() + POOL_SPARE)
                .map(|(i, s)| (i as i64, Tier::Cpu, s));
            let chosen = match placement {
                Placement::InOrder => pool
                    .filter(|(_, tier, s)| asker.may_take(*tier, s))
                    .map(|(i, _, _)| i)
                    .take(1)
                    .collect(),
                Placement::Drawn => asker.choose(pool, 1, draws.next()),
            };
            for i in chosen {
                let i = i as usize;
                if tasks[i].lease(&runner.id, &runner.owner, i64::MAX).is_ok() {
                    held.push((r, i));
                }
            }
        }
        for &(r, i) in &held {
            let runner = &runners[r];
            let paired = held
                .iter()
                .any(|&(o, j)| j == i && o != r && runners[o].saboteur);
            let lie = runner.saboteur && (strategy == Strategy::Always || paired);
            let digest = if lie { forged(i) } else { truth(i) };
            let effect = tasks[i].report(&runner.id, Some(digest), round);
            let effect = match effect {
                Ok(Effect::RunAuthority) => tasks[i].authority(truth(i)),
                Ok(effect) => effect,
                Err(_) => continue,
            };
            if let Effect::Accepted { digest, .. } = effect {
                t.accepted += 1;
                t.forged += u64::from(digest != truth(i));
                t.replicas += tasks[i].replicas.len() as u64;
            }
        }
    }
    t
}

/// The order runners ask in this round: the honest shuffled, the saboteurs one after the
/// other at a place drawn among them.
fn round_order(runners: &[Runner], draws: &mut Draws) -> Vec<usize> {
    let mut honest: Vec<usize> = (0..runners.len())
        .filter(|&r| !runners[r].saboteur)
        .collect();
    for i in (1..honest.len()).rev() {
        let j = (draws.next() % (i as u64 + 1)) as usize;
        honest.swap(i, j);
    }
    let at = (draws.next() % (honest.len() as u64 + 1)) as usize;
    let saboteurs = (0..runners.len()).filter(|&r| runners[r].saboteur);
    honest.splice(at..at, saboteurs);
    honest
}
