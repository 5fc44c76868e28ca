use helio_scheduler::ledger::{
    Credit, Kind, Ledger, LedgerError, entry_hash, micro_credits, split, verify, verify_anchored,
};
use helio_sdk::Blake3Hash;
use proptest::prelude::*;

fn credit(task: u8, runner: u8) -> Credit {
    Credit {
        kind: Kind::Task,
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

fn payout(owner: &str, micro_credits: u64, n: u32) -> Credit {
    Credit {
        kind: Kind::Payout,
        batch: String::new(),
        task: format!("payout {n}"),
        runner: String::new(),
        owner: owner.into(),
        digest: Blake3Hash::ZERO,
        fuel: 0,
        micro_credits,
    }
}

#[test]
fn the_fund_gets_its_share_rounded_down_and_nothing_is_lost() {
    assert_eq!(split(1_000, 0.0), (1_000, 0));
    assert_eq!(split(1_000, 0.1), (900, 100));
    assert_eq!(split(999, 0.1), (900, 99));
    assert_eq!(split(7, 1.0), (0, 7));
    // Out-of-range shares are clamped, never more than the credit.
    assert_eq!(split(10, 2.0), (0, 10));
    assert_eq!(split(10, -1.0), (10, 0));
}

#[test]
fn a_fund_entry_beside_the_task_credit_is_not_a_second_credit() {
    let mut ledger = Ledger::new();
    let task = credit(1, 1);
    let fund = Credit {
        kind: Kind::Fund,
        owner: "cooperative".into(),
        micro_credits: 10,
        ..task.clone()
    };
    ledger.append(task).unwrap();
    ledger.append(fund.clone()).unwrap();
    assert!(matches!(
        ledger.append(fund),
        Err(LedgerError::AlreadyCredited { .. })
    ));
    assert_eq!(ledger.balance("cooperative"), 10);
    verify(ledger.entries()).unwrap();
}

#[test]
fn payouts_never_exceed_the_balance() {
    let mut ledger = Ledger::new();
    ledger.append(credit(0, 1)).unwrap(); // o1 earns 1_000
    ledger.append(credit(1, 4)).unwrap(); // o1 earns 2_000
    assert_eq!(ledger.balance("o1"), 3_000);
    ledger.append(payout("o1", 2_500, 0)).unwrap();
    assert_eq!(ledger.balance("o1"), 500);
    assert!(matches!(
        ledger.append(payout("o1", 501, 1)),
        Err(LedgerError::Broken { seq: 3, .. })
    ));
    ledger.append(payout("o1", 500, 1)).unwrap();
    assert_eq!(ledger.balance("o1"), 0);
    verify(ledger.entries()).unwrap();

    // A forged payout, rehashed so that the chain holds, is still caught: it pays more
    // than was earned.
    let mut forged = ledger.entries().to_vec();
    forged[3].credit.micro_credits = 600;
    let mut prev = forged[2].hash;
    for e in &mut forged[3..] {
        e.prev = prev;
        e.hash = entry_hash(&e.prev, e.seq, &e.credit);
        prev = e.hash;
    }
    let err = verify(&forged).unwrap_err();
    assert!(
        matches!(&err, LedgerError::Broken { seq: 3, reason } if reason.contains("more than its balance")),
        "{err}"
    );
}

/// A credit taken back: the reversal names exactly the credit it compensates, once; after a
/// payout it leaves its owner owing, and what the owner earns next pays that back first.
#[test]
fn a_reversal_takes_back_one_credit_once_even_after_a_payout() {
    let mut ledger = Ledger::new();
    let earned = credit(1, 1); // o1 earns 2_000
    ledger.append(earned.clone()).unwrap();
    ledger.append(payout("o1", 2_000, 0)).unwrap();
    let reversal = Credit {
        kind: Kind::Reversal,
        ..earned.clone()
    };
    ledger.append(reversal.clone()).unwrap();
    assert_eq!(ledger.balance("o1"), -2_000, "paid, then taken back: owed");
    assert!(matches!(
        ledger.append(reversal.clone()),
        Err(LedgerError::AlreadyCredited { .. })
    ));
    // Nothing is paid until the debt is earned back.
    assert!(ledger.append(payout("o1", 1, 1)).is_err());
    ledger.append(credit(4, 4)).unwrap(); // o1 earns 5_000
    assert_eq!(ledger.balance("o1"), 3_000);
    verify(ledger.entries()).unwrap();

    // A reversal of a credit never made, or of another amount, is refused and caught.
    let mut fresh = Ledger::new();
    fresh.append(earned.clone()).unwrap();
    for (bad, says) in [
        (
            Credit {
                task: "t9".into(),
                ..reversal.clone()
            },
            "never made",
        ),
        (
            Credit {
                micro_credits: 1,
                ..reversal.clone()
            },
            "were credited",
        ),
        (
            Credit {
                kind: Kind::FundReversal,
                ..reversal.clone()
            },
            "never made",
        ),
    ] {
        let err = fresh.clone().append(bad.clone()).unwrap_err();
        assert!(
            matches!(&err, LedgerError::Broken { reason, .. } if reason.contains(says)),
            "{err}"
        );
        // Written anyway, and rehashed so that the chain holds: verify still catches it.
        let mut entries = fresh.entries().to_vec();
        let prev = entries[0].hash;
        entries.push(helio_scheduler::ledger::Entry {
            seq: 1,
            hash: entry_hash(&prev, 1, &bad),
            credit: bad,
            prev,
        });
        assert!(verify(&entries).is_err());
    }
}

#[test]
fn changing_an_entrys_kind_breaks_its_hash() {
    let mut ledger = Ledger::new();
    ledger.append(credit(2, 2)).unwrap();
    let mut entries = ledger.entries().to_vec();
    for kind in [Kind::Fund, Kind::Uptime, Kind::Payout] {
        entries[0].credit.kind = kind;
        assert!(
            matches!(verify(&entries), Err(LedgerError::Broken { seq: 0, .. })),
            "a task credit relabelled {kind:?} verified"
        );
    }
    for kind in Kind::ALL {
        assert_eq!(Kind::parse(kind.as_str()), Some(kind));
    }
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
