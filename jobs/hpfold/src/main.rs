//! `hpfold --sequence HPHPPH... [--max-attempts N] [--target E]`: searches for a low-energy
//! fold of the sequence in the 2D HP model with the task's random stream (its `seed`), and
//! writes `/out/fold.json`: the best energy, the fold as moves (`R`, `U`, `L`, `D`) and the
//! attempts made. With `--target`, it stops once that energy is reached.
use helio_guest::{Error, output, params, progress, rng};
use hpfold::{Search, directions, energy, fold, parse_sequence};
use serde::Serialize;

#[derive(Serialize)]
struct Result {
    sequence: String,
    length: usize,
    energy: i32,
    directions: String,
    attempts: u64,
    target: Option<i32>,
    reached_target: Option<bool>,
}

fn main() {
    helio_guest::run(|| {
        let params = params();
        let text: String = params.get("sequence")?;
        let defaults = Search::default();
        let search = Search {
            max_attempts: params.get_or("max-attempts", defaults.max_attempts)?,
            target: match params.get_or::<i32>("target", 1)? {
                1 => None,
                t => Some(t),
            },
            ..defaults
        };
        params.finish()?;
        let seq =
            parse_sequence(&text).map_err(|e| Error::msg(format!("parameter --sequence: {e}")))?;
        let rng = std::cell::RefCell::new(rng());
        let mut reports = 0u64;
        let found = fold(
            &seq,
            &search,
            &mut |n| rng.borrow_mut().below(n),
            &mut || rng.borrow_mut().f64(),
            &mut |attempts, best| {
                // About a hundred progress lines, whatever the budget.
                if attempts >= reports * (search.max_attempts / 100).max(1) {
                    reports += 1;
                    progress(attempts, search.max_attempts);
                    helio_guest::log!("best energy so far {best}");
                }
            },
        );
        // Check the answer independently of the search's own bookkeeping.
        let checked = energy(&seq, &found.sites).ok_or_else(|| {
            Error::msg("internal error: the fold found is not a self-avoiding walk")
        })?;
        if checked != found.energy {
            return Err(Error::msg(format!(
                "internal error: the fold's energy is {checked}, the search said {}",
                found.energy
            )));
        }
        let result = Result {
            sequence: text.trim().to_ascii_uppercase(),
            length: seq.len(),
            energy: found.energy,
            directions: directions(&found.sites),
            attempts: found.attempts,
            target: search.target,
            reached_target: search.target.map(|t| found.energy <= t),
        };
        let mut out = output("fold.json")?;
        out.json(&result)?;
        out.finish()?;
        println!(
            "E = {} after {} attempts: {}",
            result.energy, result.attempts, result.directions
        );
        Ok(())
    })
}
