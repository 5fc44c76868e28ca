use helio_scheduler::ledger::{
    Credit, Ledger, LedgerError, micro_credits, verify, verify_anchored,
};
use helio_sdk::Blake3Hash;
use proptest::prelude::*;

fn credit(task: u8, runner: u8) -> Credit {
    Credit {
        batch: "b".into(),
        task: format!("t{task}"),
        runner: format!("r{runner}"),
        owner: format!("o{}", runner % 3),
        digest: Blake3Hash::from_bytes([task; 32]),
        fuel: 1_000_000 * (task as u64 + 1),
        micro_credits: micro_credits(1_000_000 * (task as u64 + 1), 1.0),
    }
}

#[test]
fn a_credit_is_a_thousandth_of_the_fuel_in_micro_credits() {
    assert_eq!(micro_credits(1_000_000_000, 1.0), 1_000_000);
    assert_eq!(micro_credits(1_999, 1.0), 1);
    assert_eq!(micro_credits(1_000_000_000, 0.5), 500_000);
    assert_eq!(micro_credits(1_000_000_000, 0.0), 0);
}

#[test]
fn a_runner_is_credited_once_per_task() {
    let mut ledger = Ledger::new();
    ledger.append(credit(1, 1)).unwrap();
    ledger.append(credit(1, 2)).unwrap();
    assert!(matches!(
        ledger.append(credit(1, 1)),
        Err(LedgerError::AlreadyCredited { .. })
    ));
    assert_eq!(ledger.entries().len(), 2);
    verify(ledger.entries()).unwrap();
}

proptest! {
    /// Any sequence of credits, duplicates included, leaves a ledger that verifies and holds
    /// each (task, runner) once; editing, dropping or swapping any entry is caught at it.
    #[test]
    fn the_chain_catches_every_edit_drop_and_swap(
        credits in proptest::collection::vec((0u8..6, 0u8..4), 1..30),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut ledger = Ledger::new();
        let mut seen = std::collections::BTreeSet::new();
        for (task, runner) in &credits {
            let fresh = seen.insert((*task, *runner));
            prop_assert_eq!(ledger.append(credit(*task, *runner)).is_ok(), fresh);
        }
        let entries = ledger.entries().to_vec();
        prop_assert_eq!(entries.len(), seen.len());
        prop_assert!(verify(&entries).is_ok());
        let i = pick.index(entries.len());

        let mut edited = entries.clone();
        edited[i].credit.micro_credits += 1;
        let caught = matches!(verify(&edited), Err(LedgerError::Broken { seq, .. }) if seq == i as u64);
        prop_assert!(caught);

        let (len, head) = (entries.len() as u64, entries.last().unwrap().hash);
        prop_assert!(verify_anchored(&entries, len, &head).is_ok());
        let mut dropped = entries.clone();
        dropped.remove(i);
        if i < dropped.len() {
            prop_assert!(verify(&dropped).is_err());
        }
        // Cut off the end, the chain is still whole; the anchor shows it.
        prop_assert!(verify_anchored(&dropped, len, &head).is_err());

        if entries.len() > 1 {
            let j = (i + 1) % entries.len();
            let mut swapped = entries.clone();
            swapped.swap(i, j);
            prop_assert!(verify(&swapped).is_err());
        }
    }
}
