//! `sabotage`: the scheduler's own rules (its pure core, not a model of it) against
//! saboteurs who cooperate, each under an owner of its own, asking for work one right after
//! the other and agreeing on one forged result per task. Two grids are compared on the same
//! populations:
//!
//! - **fixed 2×**: every task to two runners of distinct owners, accepted when both agree
//!   (the manifest's default redundancy), the quorum alone deciding;
//! - **adaptive**: a task goes to one runner and is accepted when the agreeing runners'
//!   credibility meets a target error of 1e-4 ([`helio_scheduler::credibility`]), a
//!   newcomer's task goes next to an established runner, a share of accepted results is
//!   re-run by the scheduler unannounced (spot checks), and when a runner is found false
//!   every result it vouched for that is no longer believed is re-run by the scheduler and,
//!   where it was forged, overruled and its credit reversed.
//!
//! Honest runners are established (a long record of verified results); saboteurs arrive
//! as newcomers, except those who build a record first ("trusted, then lie"), who start
//! with the same record as the honest. Every runner has one slot; in a round each asks once,
//! in an order drawn for the round in which the saboteurs stand together, then each reports.

mod sim;

use sim::{Mode, Strategy, Tally};

/// The benchmark's settings.
#[derive(clap::Args, Clone)]
pub struct SabotageArgs {
    /// Tasks per batch.
    #[arg(long, default_value_t = 20_000)]
    pub batch: usize,
    /// Honest runners.
    #[arg(long, default_value_t = 40)]
    pub honest: usize,
    /// Batches per case (each with its own seed).
    #[arg(long, default_value_t = 3)]
    pub runs: u64,
    /// The share of results accepted on credibility that the scheduler spot-checks (the
    /// scheduler's default when not given).
    #[arg(long)]
    pub spot_rate: Option<f64>,
    /// Only these shares of saboteurs (comma-separated; default 0.1, 0.2 and 0.35).
    #[arg(long, value_delimiter = ',')]
    pub shares: Vec<f64>,
}

/// Runs every case and prints a Markdown table.
pub fn sabotage(args: &SabotageArgs) {
    println!(
        "\n## Cooperating saboteurs ({} tasks per batch, {} honest runners, {} batches per case)\n",
        args.batch, args.honest, args.runs
    );
    println!(
        "| saboteurs | strategy | rate s | grid | forged / accepted | forged share | runs per task | saboteurs' credit kept | caught | tasks until caught (mean / max) | honest flagged |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let shares = if args.shares.is_empty() {
        vec![0.1, 0.2, 0.35]
    } else {
        args.shares.clone()
    };
    for share in shares {
        let saboteurs = ((args.honest as f64 * share) / (1.0 - share)).round() as usize;
        for strategy in Strategy::ALL {
            for rate in [1.0, 0.1] {
                for mode in [Mode::Fixed, Mode::Adaptive] {
                    let mut t = Tally::default();
                    for seed in 0..args.runs {
                        let config = sim::Config {
                            batch: args.batch,
                            honest: args.honest,
                            saboteurs,
                            strategy,
                            rate,
                            mode,
                            seed,
                            spot_rate: args.spot_rate,
                        };
                        t.add(&sim::run(&config));
                    }
                    print_row(saboteurs + args.honest, share, strategy, rate, mode, &t);
                }
            }
        }
    }
}

fn print_row(runners: usize, share: f64, strategy: Strategy, rate: f64, mode: Mode, t: &Tally) {
    let caught = if t.identities == 0 {
        "–".to_string()
    } else {
        format!("{} of {}", t.caught, t.identities)
    };
    let until = if t.caught == 0 {
        "–".to_string()
    } else {
        format!(
            "{:.1} / {}",
            t.tasks_until_caught as f64 / t.caught as f64,
            t.most_until_caught
        )
    };
    println!(
        "| {} of {runners} ({:.0}%) | {} | {rate} | {} | {} / {} | {:.1e} | {:.3} | {:.2}% | {caught} | {until} | {} |",
        ((runners as f64) * share).round(),
        share * 100.0,
        strategy.name(),
        mode.name(),
        t.forged,
        t.accepted,
        t.forged as f64 / t.accepted.max(1) as f64,
        t.runs as f64 / t.accepted.max(1) as f64,
        100.0 * t.saboteur_credit.max(0) as f64 / t.credit.max(1) as f64,
        t.honest_flagged,
    );
}
