//! `businesses`: reads `/in/businesses.csv` and the filter `/in/criteria.json`, writes the
//! matching rows to `/out/matches.csv` and the totals to `/out/summary.json`.
use businesses::{Criteria, process};
use helio_guest::{Error, input, output};

fn main() {
    helio_guest::run(|| {
        helio_guest::params().finish()?;
        let criteria: Criteria = input("criteria.json")?.json()?;
        let mut matches = output("matches.csv")?;
        let summary = process(&criteria, input("businesses.csv")?, &mut matches)
            .map_err(|e| Error::msg(format!("businesses.csv: {e}")))?;
        matches.finish()?;
        let mut out = output("summary.json")?;
        out.json(&summary)?;
        out.finish()?;
        println!("{} of {} businesses match", summary.matched, summary.rows);
        Ok(())
    })
}
