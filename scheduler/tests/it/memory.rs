//! Leasing within a runner's memory: the tasks it is leased fit, with those it holds, in
//! the memory it may use, and a task is passed over only when it does not fit.

use std::collections::BTreeMap;

use helio_scheduler::rules::{Offer, memory_free};
use helio_scheduler::share::{Queue, Shares};
use helio_scheduler::task::TaskState;
use helio_sdk::{Redundancy, Tier};
use proptest::prelude::*;

use super::share::trusted_asker;

/// Two submitters' queues, their tasks of the given sizes alternating between them.
fn offers<'t>(state: &'t TaskState, sizes: &[u64]) -> (Shares, Vec<Offer<'t>>) {
    let queue = |batch: &str, submitter: &str, since_ms| Queue {
        batch: batch.into(),
        submitter: submitter.into(),
        priority: 0,
        since_ms,
    };
    let shares = Shares::new(
        vec![queue("a", "alice", 0), queue("b", "bob", 1)],
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    let offers = sizes
        .iter()
        .enumerate()
        .map(|(i, &memory)| Offer {
            id: i as i64,
            queue: i % 2,
            tier: Tier::Cpu,
            memory,
            state,
        })
        .collect();
    (shares, offers)
}

proptest! {
    /// What is chosen fits in what is free; when fewer tasks are chosen than asked for,
    /// every task passed over needs more than the chosen ones left.
    #[test]
    fn what_is_chosen_fits_and_only_what_does_not_fit_is_passed_over(
        memory in 0u64..(16 << 30),
        leased in 0u64..(16 << 30),
        sizes in proptest::collection::vec(0u64..(4 << 30), 0..24),
        n in 1u32..8,
        draw in any::<u64>(),
    ) {
        let state = TaskState::new(Redundancy { replicas: 1, quorum: 1, max_replicas: 1 });
        let (shares, offers) = offers(&state, &sizes);
        let free = memory_free(memory, leased);
        let chosen = trusted_asker(n).choose_within(offers, n, draw, &shares, free);
        let used: u64 = chosen.iter().map(|&id| sizes[id as usize]).sum();
        prop_assert!(used <= free, "{used} of {free}");
        if memory > 0 {
            prop_assert!(used + leased.min(memory) <= memory);
        }
        prop_assert!(chosen.len() as u32 <= n);
        if (chosen.len() as u32) < n {
            let left = free - used;
            for (id, size) in sizes.iter().enumerate() {
                prop_assert!(
                    chosen.contains(&(id as i64)) || *size > left,
                    "task {} of {} bytes passed over with {} left", id, size, left
                );
            }
        }
    }
}

/// Fair share picks the first queue's large tasks first; once they no longer fit, the next
/// queue's small one is taken instead of leaving the slot empty.
#[test]
fn a_queue_whose_tasks_no_longer_fit_is_passed_over() {
    let state = TaskState::new(Redundancy {
        replicas: 1,
        quorum: 1,
        max_replicas: 1,
    });
    let mib = 1 << 20;
    // Alice's tasks 0, 2, 4 of 384 MiB; Bob's task 1 of 128 MiB and task 3 of 900 MiB.
    let (shares, offers) = offers(
        &state,
        &[384 * mib, 128 * mib, 384 * mib, 900 * mib, 384 * mib],
    );
    let chosen = trusted_asker(4).choose_within(offers, 4, 1, &shares, 1024 * mib);
    let used: u64 = chosen
        .iter()
        .map(|&id| [384, 128, 384, 900, 384][id as usize] * mib)
        .sum();
    assert_eq!(chosen.len(), 3, "{chosen:?}");
    assert!(chosen.contains(&1), "{chosen:?}");
    assert_eq!(used, 896 * mib);
}
