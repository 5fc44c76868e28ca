//! Submitters' controls against a real database: fair share between submitters, priority,
//! quotas, pause and resume, cancel, and deadlines.

use super::tests::{
    fixture, fixture_keys, kept_counts, manifest, signed, success, warm_runner, warm_runner_with,
};
use super::*;
use helio_sdk::wire::BatchState;

/// Submits a batch of `tasks` tasks (replicas 2, quorum 2) named `name` as `submitter`.
async fn submit_as(
    store: &Store,
    submitter: &str,
    name: &str,
    tasks: usize,
    steer: Steer,
    now: i64,
) -> Result<BatchId> {
    let batch = manifest(name, tasks);
    let submitted = store.submit(&batch, submitter, &steer, now).await?;
    Ok(submitted.batch.parse().unwrap())
}

/// A store with warm runners of the given owners and slots, and no batch.
async fn bare(owners: &[(&str, u32)]) -> (tempfile::TempDir, Store, Vec<RunnerRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    let mut runners = Vec::new();
    for (i, (owner, slots)) in owners.iter().enumerate() {
        runners.push(warm_runner(&store, i, owner, *slots).await.0);
    }
    (dir, store, runners)
}

/// Ledger entries for `batch`.
async fn entries(store: &Store, batch: &BatchId) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM ledger WHERE batch_id = $1")
        .bind(batch.as_str())
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// The batches of `leases`, counted.
fn by_batch(leases: &[Lease]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for l in leases {
        *n.entry(l.batch.clone()).or_default() += 1;
    }
    n
}

/// Replicas of `batch` leased now, counted from the rows.
async fn leased_rows(store: &Store, batch: &BatchId) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) FROM replicas r JOIN tasks t ON t.id = r.task_id \
         WHERE t.batch_id = $1 AND r.state = 'leased'",
    )
    .bind(batch.as_str())
    .fetch_one(&store.pool)
    .await
    .unwrap()
    .try_get(0)
    .unwrap()
}

/// Alice's big batch came first and fills the first runners' slots; Bob's ten tasks, which
/// come after, get every lease until Bob has as many out as Alice, instead of waiting
/// behind her batch (which a first-come queue would make them do).
#[tokio::test]
async fn a_later_submitters_few_tasks_are_served_before_an_earlier_ones_many() {
    let owners = [("o1", 5), ("o2", 5), ("o3", 5), ("o4", 5)];
    let (_dir, store, runners) = bare(&owners).await;
    let alice = submit_as(&store, "alice", "big", 200, Steer::default(), 1)
        .await
        .unwrap();
    for r in &runners[..2] {
        let leases = store.lease(r, 5, 2, 60_000).await.unwrap();
        assert_eq!(by_batch(&leases).get(alice.as_str()), Some(&5));
    }
    let bob = submit_as(&store, "bob", "small", 10, Steer::default(), 3)
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    for r in &runners[2..] {
        for (batch, n) in by_batch(&store.lease(r, 5, 4, 60_000).await.unwrap()) {
            *got.entry(batch).or_insert(0) += n;
        }
    }
    assert_eq!(got.get(bob.as_str()), Some(&10), "{got:?}");
    // Even now: ten leases out each.
    assert_eq!(leased_rows(&store, &alice).await, 10);
    assert_eq!(leased_rows(&store, &bob).await, 10);
}

/// Priority orders one submitter's batches; between two submitters, fair share decides,
/// whatever their priorities. A quota of leases out holds; raised, work flows again.
#[tokio::test]
async fn priority_orders_a_submitters_own_batches_and_quotas_hold() {
    let owners = [("o1", 4), ("o2", 4), ("o3", 4)];
    let (_dir, store, runners) = bare(&owners).await;
    let low = submit_as(&store, "alice", "low", 20, Steer::default(), 1)
        .await
        .unwrap();
    let urgent = Steer {
        priority: 9,
        deadline_ms: None,
    };
    let high = submit_as(&store, "alice", "high", 20, urgent, 2)
        .await
        .unwrap();
    let leases = store.lease(&runners[0], 4, 3, 60_000).await.unwrap();
    assert_eq!(by_batch(&leases).get(high.as_str()), Some(&4), "{leases:?}");
    // Raised later, the low batch is served first.
    let raise = wire::BatchChange {
        priority: Some(10),
        ..Default::default()
    };
    store.change_batch(&low, &raise).await.unwrap();
    let leases = store.lease(&runners[1], 4, 4, 60_000).await.unwrap();
    assert_eq!(by_batch(&leases).get(low.as_str()), Some(&4), "{leases:?}");
    // A quota of 8 leases out: Alice has 8, so the third runner gets none of hers.
    store
        .set_grant(&SubmitterGrant {
            name: "alice".into(),
            share: 1,
            max_running: Some(8),
            max_tasks: None,
        })
        .await
        .unwrap();
    assert!(
        store
            .lease(&runners[2], 4, 5, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    // Bob's batch, at the lowest priority, is served: priority never crosses submitters.
    let bob = submit_as(
        &store,
        "bob",
        "bobs",
        5,
        Steer {
            priority: -5,
            deadline_ms: None,
        },
        6,
    )
    .await
    .unwrap();
    let leases = store.lease(&runners[2], 4, 7, 60_000).await.unwrap();
    assert_eq!(by_batch(&leases), BTreeMap::from([(bob.to_string(), 4)]));
    // The quota of unfinished tasks refuses a batch past it, whole.
    store
        .set_grant(&SubmitterGrant {
            name: "alice".into(),
            share: 1,
            max_running: None,
            max_tasks: Some(45),
        })
        .await
        .unwrap();
    let refused = submit_as(&store, "alice", "more", 6, Steer::default(), 8).await;
    let Err(StoreError::Forbidden(why)) = refused else {
        panic!("a batch past the quota: {refused:?}");
    };
    assert!(why.contains("at most 45 unfinished tasks"), "{why}");
    assert!(why.contains("it has 40"), "{why}");
    submit_as(&store, "alice", "fits", 5, Steer::default(), 9)
        .await
        .unwrap();
}

/// Paused, a batch's tasks are not leased, and its leases out still report; resumed, they
/// are leased again.
#[tokio::test]
async fn a_paused_batch_is_not_leased_until_resumed() {
    let (_dir, store, runners) = fixture(4, &[("o1", 2), ("o2", 4)]).await;
    let batch: BatchId = store.recent_batches(1).await.unwrap()[0].0.parse().unwrap();
    let keys = fixture_keys(2);
    let out = store.lease(&runners[0], 2, 1, 60_000).await.unwrap();
    store.set_paused(&batch, true).await.unwrap();
    let status = store.batch_status(&batch).await.unwrap();
    assert_eq!((status.state, status.running), (BatchState::Paused, 2));
    assert!(
        store
            .lease(&runners[1], 4, 2, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    let report = success();
    let result = signed(&out[0], &keys[0], &report, &report.digest);
    let (acks, _) = store.report(&runners[0], &[result], None, 3).await.unwrap();
    assert_eq!(acks[0].status, ReportStatus::Recorded, "{acks:?}");
    store.set_paused(&batch, false).await.unwrap();
    assert_eq!(
        store.lease(&runners[1], 4, 4, 60_000).await.unwrap().len(),
        4
    );
}

/// Cancelled, a batch has no lease out and wants none; a result reported for it after is
/// refused and credits nothing; its counts agree with its rows; accepted results stay.
#[tokio::test]
async fn cancel_leaves_no_lease_and_grants_no_credit() {
    let (_dir, store, runners) = fixture(4, &[("o1", 4), ("o2", 4), ("o3", 4)]).await;
    let batch: BatchId = store.recent_batches(1).await.unwrap()[0].0.parse().unwrap();
    let keys = fixture_keys(3);
    let report = success();
    // One task accepted (two agreeing results) before the cancellation.
    let a = store.lease(&runners[0], 4, 1, 60_000).await.unwrap();
    let b = store.lease(&runners[1], 4, 1, 60_000).await.unwrap();
    let first = a
        .iter()
        .find(|l| b.iter().any(|m| m.task_id == l.task_id))
        .unwrap();
    let second = b.iter().find(|m| m.task_id == first.task_id).unwrap();
    for (runner, key, lease) in [
        (&runners[0], &keys[0], first),
        (&runners[1], &keys[1], second),
    ] {
        let result = signed(lease, key, &report, &report.digest);
        store.report(runner, &[result], None, 2).await.unwrap();
    }
    let credited = entries(&store, &batch).await;
    assert_eq!(store.batch_status(&batch).await.unwrap().succeeded, 1);
    assert!(credited >= 2, "both agreeing runners credited: {credited}");
    assert!(leased_rows(&store, &batch).await > 0);

    assert_eq!(
        store.cancel(&batch, "cancelled by test", 3).await.unwrap(),
        3
    );
    assert_eq!(leased_rows(&store, &batch).await, 0);
    let status = store.batch_status(&batch).await.unwrap();
    assert_eq!(status.state, BatchState::Cancelled);
    assert_eq!((status.cancelled, status.succeeded), (3, 1));
    assert_eq!(status.ended.as_deref(), Some("cancelled by test"));
    assert_eq!(
        status.succeeded + status.failed + status.cancelled,
        status.tasks
    );
    assert_eq!(kept_counts(&store, batch.as_str()).await, (0, 0, 0));
    // Every result reported after is refused and credits nothing.
    for (runner, key, leases) in [(&runners[0], &keys[0], &a), (&runners[1], &keys[1], &b)] {
        let results: Vec<_> = leases
            .iter()
            .map(|l| signed(l, key, &report, &report.digest))
            .collect();
        let (acks, _) = store.report(runner, &results, None, 4).await.unwrap();
        for ack in acks {
            assert_eq!(ack.status, ReportStatus::Refused, "{ack:?}");
            assert_eq!(ack.micro_credits, 0);
        }
    }
    assert_eq!(entries(&store, &batch).await, credited);
    // Nothing to lease, and nothing comes back by expiry.
    assert!(
        store
            .lease(&runners[2], 4, 5, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.expire(i64::MAX / 2).await.unwrap(), 0);
    // Cancelled is final.
    assert!(matches!(
        store.set_paused(&batch, false).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.cancel(&batch, "again", 6).await.unwrap(), 0);
    assert_eq!(
        store.batch_status(&batch).await.unwrap().ended.as_deref(),
        Some("cancelled by test")
    );
}

/// Past its deadline, what is left of a batch is cancelled; a cancellation a stop
/// interrupted (the batch's state committed, its tasks not) is finished the same way.
#[tokio::test]
async fn a_deadline_cancels_what_is_left() {
    let (_dir, store, runners) = bare(&[("o1", 2)]).await;
    let steer = Steer {
        priority: 0,
        deadline_ms: Some(1_000),
    };
    let batch = submit_as(&store, "alice", "timed", 3, steer, 1)
        .await
        .unwrap();
    store.lease(&runners[0], 2, 2, 60_000).await.unwrap();
    assert!(store.end_overdue(999).await.unwrap().is_empty());
    assert_eq!(
        store.end_overdue(1_001).await.unwrap(),
        vec![batch.to_string()]
    );
    let status = store.batch_status(&batch).await.unwrap();
    assert_eq!((status.state, status.cancelled), (BatchState::Cancelled, 3));
    assert!(status.ended.unwrap().contains("deadline"));
    assert_eq!(leased_rows(&store, &batch).await, 0);

    // Interrupted: the state says cancelled, the tasks are open still.
    let other = submit_as(&store, "alice", "other", 2, Steer::default(), 3)
        .await
        .unwrap();
    sqlx::query("UPDATE batches SET state = 'cancelled' WHERE id = $1")
        .bind(other.as_str())
        .execute(&store.pool)
        .await
        .unwrap();
    assert!(
        store
            .lease(&runners[0], 2, 4, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    store.end_overdue(5).await.unwrap();
    let status = store.batch_status(&other).await.unwrap();
    assert_eq!((status.cancelled, status.pending), (2, 0));
}

/// A runner is leased only as many tasks as their declared memory fits in what it may use,
/// together: with 1 GiB and four slots it holds two 384 MiB tasks and a 128 MiB one, not a
/// third 384 MiB one; a report frees the memory of its task.
#[tokio::test]
async fn a_runner_holds_no_more_tasks_than_their_memory_fits() {
    let (_dir, store, _) = bare(&[]).await;
    let (runner, key) = warm_runner_with(&store, 0, "small", 4, 1 << 30).await;
    let mut big = manifest("big", 4);
    for task in &mut big.tasks {
        task.limits.memory_bytes = 384 << 20;
    }
    let big_id = store
        .submit(&big, "alice", &Steer::default(), 1)
        .await
        .unwrap()
        .batch;
    let mut small = manifest("small", 1);
    small.tasks[0].limits.memory_bytes = 128 << 20;
    store
        .submit(&small, "alice", &Steer::default(), 1)
        .await
        .unwrap();
    let leases = store.lease(&runner, 4, 2, 60_000).await.unwrap();
    let counts = by_batch(&leases);
    assert_eq!(counts.get(&big_id), Some(&2), "{counts:?}");
    assert_eq!(leases.len(), 3, "{counts:?}");
    // Full as its memory goes: nothing more, though a slot is free.
    assert!(store.lease(&runner, 4, 3, 60_000).await.unwrap().is_empty());
    // One big task reported: its memory is free for another.
    let done = leases.iter().find(|l| l.batch == big_id).unwrap();
    let report = success();
    let result = signed(done, &key, &report, &report.digest);
    store.report(&runner, &[result], None, 4).await.unwrap();
    let again = store.lease(&runner, 4, 5, 60_000).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|l| l.manifest.limits.memory_bytes)
            .collect::<Vec<_>>(),
        vec![384 << 20]
    );
}
