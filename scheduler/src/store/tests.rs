use super::*;
use std::collections::BTreeSet;

use helio_sdk::ids::LeaseId;

use crate::rules::Asker;

#[test]
fn statistics_go_stale_past_a_thousand_changes_and_a_tenth_of_the_rows() {
    assert!(!statistics_stale(0, 1_000));
    assert!(statistics_stale(0, 1_001));
    assert!(!statistics_stale(100_000, 11_000));
    assert!(statistics_stale(100_000, 11_001));
}

/// A store with a batch of four tasks (replicas 2) and two runners of their own owners.
async fn group_fixture() -> (tempfile::TempDir, Store, Vec<RunnerRecord>) {
    fixture(4, &[("alice", 2), ("bob", 2)]).await
}

/// A store with a batch of `tasks` tasks (replicas 2, quorum 2) and warm runners of the
/// given owners and slots.
pub(super) async fn fixture(
    tasks: usize,
    owners: &[(&str, u32)],
) -> (tempfile::TempDir, Store, Vec<RunnerRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    let batch = manifest("group", tasks);
    store
        .submit(&batch, "test", &Steer::default(), 0)
        .await
        .unwrap();
    let mut runners = Vec::new();
    for (i, (owner, slots)) in owners.iter().enumerate() {
        runners.push(warm_runner(&store, i, owner, *slots).await.0);
    }
    (dir, store, runners)
}

/// A batch `name` of `tasks` tasks (replicas 2, quorum 2) of one module.
pub(super) fn manifest(name: &str, tasks: usize) -> BatchManifest {
    let module = Blake3Hash::of(b"module").to_string();
    let tasks: Vec<_> = (0..tasks)
        .map(|i| serde_json::json!({ "name": format!("t{i}") }))
        .collect();
    BatchManifest::from_value(serde_json::json!({
        "schema_version": 1,
        "batch": name,
        "defaults": {
            "module": { "uri": "m.wasm", "blake3": module },
            "limits": { "fuel": 1000 },
        },
        "redundancy": { "replicas": 2, "quorum": 2, "max_replicas": 3 },
        "tasks": tasks,
    }))
    .unwrap()
}

/// Registers runner `i` (its key made from `i`) of `owner` with `slots`, and passes its
/// health check: warm.
/// The owner key of the tests' owner `name`: the same for every runner of the name.
pub(super) fn owner_key(name: &str) -> wire::OwnerKey {
    wire::OwnerKey::from_secret(*blake3::hash(format!("test owner {name}").as_bytes()).as_bytes())
}

/// Registrations from one test address, with no limit on new owners.
pub(super) fn anywhere() -> Enrollment {
    Enrollment {
        admission: crate::owners::Admission::Open {
            per_address_per_day: u32::MAX,
        },
        address: "test".into(),
    }
}

pub(super) async fn warm_runner(
    store: &Store,
    i: usize,
    owner: &str,
    slots: u32,
) -> (RunnerRecord, wire::RunnerKey) {
    warm_runner_with(store, i, owner, slots, 64 << 30).await
}

/// [`warm_runner`], saying it may use `memory_bytes` of memory.
pub(super) async fn warm_runner_with(
    store: &Store,
    i: usize,
    owner: &str,
    slots: u32,
    memory_bytes: u64,
) -> (RunnerRecord, wire::RunnerKey) {
    let key = wire::RunnerKey::from_secret([i as u8 + 1; 32]);
    let registered = store
        .register_runner(
            &RegisterRunner {
                public_key: key.public_hex(),
                owner: owner.to_string(),
                tier: Tier::Cpu,
                slots,
                cores: 2,
                memory_bytes,
                fuel_per_second: 1,
                profile: helio_sdk::DETERMINISM_PROFILE.to_string(),
                location: None,
                green_energy: None,
                owner_key: None,
                endorsement: None,
                invite: None,
            }
            .endorsed_by(&owner_key(owner)),
            &anywhere(),
            0,
        )
        .await
        .unwrap();
    let runner = store.runner(&registered.runner).await.unwrap().unwrap();
    let check = store.lease(&runner, 1, 0, 0).await.unwrap();
    let digest = Blake3Hash::of(b"check");
    let Ok(LeaseId::Check(id)) = LeaseId::from_wire(check[0].task_id) else {
        panic!("a cold runner's first lease is its health check: {check:?}");
    };
    assert!(
        store
            .finish_check(id, &runner.id, &digest, &digest, 0)
            .await
            .unwrap()
    );
    (runner, key)
}

/// However many requests wait while a group commits, one committer task waits with them
/// (a task per request once piled up under load, and the scheduler's memory with them),
/// and it ends once the queue is empty.
#[tokio::test]
async fn requests_waiting_for_a_commit_share_one_committer() {
    let (_dir, store, runners) = group_fixture().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    const WAITING: usize = 40;
    let held = store.group.committing.lock().await;
    let requests: Vec<_> = (0..WAITING)
        .map(|i| {
            let store = store.clone();
            let runner = runners[i % 2].clone();
            tokio::spawn(async move { store.lease(&runner, 1, 1, 60_000).await })
        })
        .collect();
    while store.group.queue.lock().unwrap().len() < WAITING {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The requests and at most one committer (the runtime's other tasks may end meanwhile).
    let alive = metrics.num_alive_tasks().saturating_sub(before);
    assert!(
        alive <= WAITING + 1,
        "{alive} tasks for {WAITING} waiting requests"
    );
    drop(held);
    for r in requests {
        r.await.unwrap().unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metrics.num_alive_tasks() > before {
        assert!(
            std::time::Instant::now() < deadline,
            "the committer is still running with nothing queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // A request after the committer ended starts another.
    store.lease(&runners[0], 1, 2, 60_000).await.unwrap();
}

/// A group's lease requests draw their tasks from the lowest-id tasks that want a replica,
/// read once for the group; a runner none of those fit (its owner holds a replica of each)
/// draws from tasks it reads itself. Every draw is the scheduler's: the same draw makes the
/// same choice, and different draws different ones.
#[tokio::test]
async fn a_lease_the_group_pool_cannot_fill_reads_its_own_tasks() {
    let spare = POOL_SPARE as usize;
    let owners = [("alice", spare as u32 + 4), ("alice", 2), ("bob", 2)];
    let (_dir, store, runners) = fixture(spare + 10, &owners).await;
    let batch = store.recent_batches(1).await.unwrap()[0].0.clone();
    let mut all = BTreeSet::new();
    for i in 0..spare + 10 {
        all.insert(store.task_id(&batch, &format!("t{i}")).await.unwrap().get());
    }
    let ids = |leases: Vec<Lease>| leases.iter().map(|l| l.task_id).collect::<BTreeSet<_>>();
    let held = ids(store.lease(&runners[0], 100, 1, 60_000).await.unwrap());
    assert_eq!(held.len(), spare + 4);
    // Both in one group: alice's second runner and bob's.
    let hold = store.group.committing.lock().await;
    let ask = |runner: RunnerRecord| {
        let store = store.clone();
        tokio::spawn(async move { store.lease(&runner, 2, 2, 60_000).await })
    };
    let (second, bob) = (ask(runners[1].clone()), ask(runners[2].clone()));
    while store.group.queue.lock().unwrap().len() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(hold);
    let second = ids(second.await.unwrap().unwrap());
    let bob = ids(bob.await.unwrap().unwrap());
    assert_eq!(
        second.len(),
        2,
        "alice's second runner gets two: {second:?}"
    );
    assert!(
        second.is_disjoint(&held),
        "none that alice holds: {second:?}"
    );
    assert_eq!(bob.len(), 2);
    assert!(bob.is_subset(&all));

    // What alice may still take: the four tasks she holds no replica of, read by the
    // runner itself; each draw takes two of them.
    let left: BTreeSet<i64> = all
        .difference(&held)
        .copied()
        .collect::<BTreeSet<_>>()
        .difference(&second)
        .copied()
        .collect();
    assert_eq!(left.len(), 4);
    let alice = &runners[1];
    let asker = Asker {
        runner: &alice.id,
        owner: &alice.owner,
        tier: alice.tier,
        slots: 4,
        reputation: Reputation::default(),
        active: 0,
        weight: crate::credibility::Weight(0),
        established_online: false,
    };
    let mut drawn = BTreeSet::new();
    for draw in 0..20u64 {
        let mut tx = store.pool.begin().await.unwrap();
        let mut p = Pending::default();
        let chosen = store
            .candidates(&mut tx, &mut p, (&asker, u64::MAX), 2, draw)
            .await
            .unwrap();
        let again = store
            .candidates(&mut tx, &mut p, (&asker, u64::MAX), 2, draw)
            .await
            .unwrap();
        assert_eq!(chosen, again, "the same draw, the same choice");
        assert_eq!(chosen.len(), 2);
        assert!(
            chosen.iter().all(|id| left.contains(id)),
            "{chosen:?} of {left:?}"
        );
        drawn.insert(chosen);
    }
    assert!(
        drawn.len() > 2,
        "twenty draws make more than two choices: {drawn:?}"
    );
}

/// The keys of the first `n` runners [`fixture`] registers.
pub(super) fn fixture_keys(n: u8) -> Vec<wire::RunnerKey> {
    (1..=n)
        .map(|i| wire::RunnerKey::from_secret([i; 32]))
        .collect()
}

/// A batch's pending, running and deciding tasks as `batch_status` keeps them, asserted
/// equal to a count of the rows.
pub(super) async fn kept_counts(store: &Store, batch: &str) -> (u64, u64, u64) {
    let status = store.batch_status(&batch.parse().unwrap()).await.unwrap();
    let kept = (status.pending, status.running, status.deciding);
    assert_eq!(
        kept,
        store.recount_batch(batch).await.unwrap(),
        "{status:?}"
    );
    kept
}

/// `store`'s database taken back to schema 6 (no kept running or deciding counts), then
/// opened again, which migrates it to the current schema.
async fn schema_6_again(dir: &tempfile::TempDir, store: Store) -> Store {
    store.close().await;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(
        "ALTER TABLE batches DROP COLUMN running; ALTER TABLE batches DROP COLUMN deciding; \
         DELETE FROM _sqlx_migrations WHERE version = 7;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    Store::open(&url).await.unwrap()
}

/// A batch's counts, kept as its task moves, agree with a count of the rows after each
/// move: a lease, a lease handed back, one that expires, reports that disagree until
/// the replicas run out, and the scheduler's own run that decides.
#[tokio::test]
async fn a_batchs_counts_follow_every_move_of_its_task() {
    let owners = [
        ("alice", 1),
        ("bob", 1),
        ("carol", 1),
        ("dave", 1),
        ("erin", 1),
    ];
    let (dir, mut store, runners) = fixture(1, &owners).await;
    let keys = fixture_keys(5);
    let batch = store.recent_batches(1).await.unwrap()[0].0.clone();
    assert_eq!(kept_counts(&store, &batch).await, (1, 0, 0));

    let lease = store.lease(&runners[0], 1, 1, 0).await.unwrap();
    let task = TaskId::new(lease[0].task_id).unwrap();
    assert_eq!(kept_counts(&store, &batch).await, (0, 1, 0));
    assert_eq!(
        store.give_back(&runners[0].id, &[task], 2).await.unwrap(),
        1
    );
    assert_eq!(kept_counts(&store, &batch).await, (1, 0, 0));

    assert_eq!(store.lease(&runners[1], 1, 3, 0).await.unwrap().len(), 1);
    assert_eq!(kept_counts(&store, &batch).await, (0, 1, 0));
    assert_eq!(store.expire(i64::MAX / 2).await.unwrap(), 1);
    assert_eq!(kept_counts(&store, &batch).await, (1, 0, 0));

    // Three runners, three answers: no quorum, and no replica left to ask.
    let answer = |n: u8| {
        RunReport::new(
            helio_sdk::Outcome::Exited { exit_code: 0 },
            7,
            Blake3Hash::of(&[n]),
            Vec::new(),
            1,
        )
    };
    for (i, runner) in runners.iter().enumerate().skip(2) {
        let lease = store.lease(runner, 1, 10, 60_000).await.unwrap();
        assert_eq!(lease.len(), 1, "{} got no lease", runner.owner);
        let report = answer(i as u8);
        let result = signed(&lease[0], &keys[i], &report, &report.digest);
        let (acks, _) = store.report(runner, &[result], None, 11).await.unwrap();
        assert_eq!(acks[0].status, ReportStatus::Recorded, "{acks:?}");
        let expected = if i < 4 { (0, 1, 0) } else { (0, 0, 1) };
        assert_eq!(kept_counts(&store, &batch).await, expected);
        // A database from before the counts (schema 6) gets them from its rows.
        if i == 2 || i == 4 {
            store = schema_6_again(&dir, store).await;
            assert_eq!(kept_counts(&store, &batch).await, expected);
        }
    }
    store.authority(task, &answer(2), 12).await.unwrap();
    assert_eq!(kept_counts(&store, &batch).await, (0, 0, 0));
    let status = store.batch_status(&batch.parse().unwrap()).await.unwrap();
    assert_eq!((status.succeeded, status.failed), (1, 0));
}

/// A successful run's report.
pub(super) fn success() -> RunReport {
    RunReport::new(
        helio_sdk::Outcome::Exited { exit_code: 0 },
        7,
        Blake3Hash::of(b"out"),
        Vec::new(),
        1,
    )
}

/// `report` of `lease`'s task, with `key`'s signature of `digest`.
pub(super) fn signed(
    lease: &Lease,
    key: &wire::RunnerKey,
    report: &RunReport,
    digest: &Blake3Hash,
) -> ResultReport {
    ResultReport {
        task_id: lease.task_id,
        report: report.clone(),
        signature: key.sign(&wire::result_message(
            &lease.batch,
            lease.manifest.name.as_str(),
            digest,
        )),
    }
}

/// The ledger and its anchor are read as of one moment: a ledger read while tasks are
/// being accepted (entries and anchor appended by other transactions) always verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_read_as_of_one_moment_while_tasks_are_accepted() {
    const TASKS: usize = 60;
    let (_dir, store, runners) = fixture(TASKS, &[("alice", 4), ("bob", 4)]).await;
    let keys = fixture_keys(2);
    let report = success();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let (entries, len, head) = store.ledger().await.unwrap();
                if let Err(e) = crate::ledger::verify_anchored(&entries, len, &head) {
                    panic!("a sound ledger read as {len} entries failed: {e}");
                }
                reads += 1;
            }
            reads
        })
    };
    let mut now = 1;
    let mut accepted = 0;
    while accepted < TASKS {
        for (runner, key) in runners.iter().zip(&keys) {
            now += 1;
            let leases = store.lease(runner, 4, now, 60_000).await.unwrap();
            let results: Vec<_> = leases
                .iter()
                .map(|l| signed(l, key, &report, &report.digest))
                .collect();
            let (acks, _) = store.report(runner, &results, None, now).await.unwrap();
            accepted += acks
                .iter()
                .filter(|a| a.status == ReportStatus::Accepted)
                .count();
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.await.unwrap() > 0);
    let (entries, len, head) = store.ledger().await.unwrap();
    assert!(
        len >= TASKS as u64,
        "{len} entries for {TASKS} accepted tasks"
    );
    crate::ledger::verify_anchored(&entries, len, &head).unwrap();
}

/// Requests that queue up while a group commits are committed together; one that fails
/// (a runner the database does not know) costs the others nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_in_a_group_costs_the_others_nothing() {
    let (_dir, store, runners) = group_fixture().await;
    let mut ghost = runners[0].clone();
    ghost.id = "never-registered".into();

    // Hold the commit while three requests queue, so that they form one group.
    let held = store.group.committing.lock().await;
    let requests: Vec<_> = [runners[0].clone(), ghost, runners[1].clone()]
        .into_iter()
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move { store.lease(&r, 2, 1, 60_000).await })
        })
        .collect();
    while store.group.queue.lock().unwrap().len() < 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(held);
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.unwrap());
    }
    assert_eq!(answers[0].as_ref().unwrap().len(), 2);
    assert!(
        matches!(&answers[1], Err(StoreError::NotFound(w)) if w.contains("never-registered")),
        "{:?}",
        answers[1].as_ref().err()
    );
    let bob = answers[2].as_ref().unwrap();
    assert_eq!(bob.len(), 2);
    // Each got two distinct tasks of the four, drawn for it.
    let ids = |l: &Vec<Lease>| l.iter().map(|l| l.task_id).collect::<BTreeSet<_>>();
    assert_eq!(ids(answers[0].as_ref().unwrap()).len(), 2);
    assert_eq!(ids(bob).len(), 2);
}

/// A result's signature is checked whether the scheduler still knows its task's batch
/// and name from the lease (checked before the group commit) or not (after a restart:
/// checked in the transaction): a signature by another key, or over another digest, is
/// refused either way, and a good one is taken.
#[tokio::test]
async fn a_result_signature_is_checked_before_and_after_a_restart() {
    // One task, so that both runners get a replica of it.
    let (dir, store, runners) = fixture(1, &[("alice", 2), ("bob", 2)]).await;
    let keys = fixture_keys(2);
    let alice = store.lease(&runners[0], 1, 1, 60_000).await.unwrap();
    let acks = bad_signatures_then_good(&store, &runners[0], &alice[0], &keys, 0, 2).await;
    assert_eq!(acks[0].status, ReportStatus::Recorded, "{acks:?}");
    let bob = store.lease(&runners[1], 1, 3, 60_000).await.unwrap();
    assert_eq!(bob[0].task_id, alice[0].task_id);
    store.close().await;

    // Restarted: the task's name is read in the transaction.
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    assert!(store.group.names.lock().unwrap().is_empty());
    let acks = bad_signatures_then_good(&store, &runners[1], &bob[0], &keys, 1, 4).await;
    assert_eq!(acks[0].status, ReportStatus::Accepted, "{acks:?}");
}

/// Reports `lease`'s result as `runners`' runner `own` twice with a bad signature (the
/// other runner's key; its own key over another digest), asserting each is refused for
/// its signature, then signed right; returns the last report's acks.
async fn bad_signatures_then_good(
    store: &Store,
    runner: &RunnerRecord,
    lease: &Lease,
    keys: &[wire::RunnerKey],
    own: usize,
    now: i64,
) -> Vec<ReportAck> {
    let report = success();
    let bad = [
        signed(lease, &keys[1 - own], &report, &report.digest),
        signed(lease, &keys[own], &report, &Blake3Hash::of(b"other")),
    ];
    for r in bad {
        let (acks, _) = store.report(runner, &[r], None, now).await.unwrap();
        assert!(
            acks.iter().all(|a| a.status == ReportStatus::Refused
                && a.error.as_deref().is_some_and(|e| e.contains("signature"))),
            "{acks:?}"
        );
    }
    let good = signed(lease, &keys[own], &report, &report.digest);
    store.report(runner, &[good], None, now).await.unwrap().0
}

/// The scheduler's own runs take each list a turn at a time, in id order from past where
/// the last turn stopped, and start over once through: a task that fails again and again
/// (and stays in its list) never keeps the others from their turn.
#[tokio::test]
async fn every_task_the_scheduler_must_run_gets_its_turn() {
    let n = TURN as usize + 5;
    let (_dir, store, _) = fixture(2 * n, &[]).await;
    // The first n tasks wait to be decided; the next n wait for their outputs.
    sqlx::query("UPDATE tasks SET phase = 'deciding' WHERE id <= $1")
        .bind(n as i64)
        .execute(&store.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE tasks SET phase = 'accepted', outputs_stored = 0, accepted_ms = 0, digest = $2 \
         WHERE id > $1",
    )
    .bind(n as i64)
    .bind(Blake3Hash::of(b"accepted").to_string())
    .execute(&store.pool)
    .await
    .unwrap();
    let mut turns = Turns::default();
    let (mut decided, mut recovered) = (BTreeMap::new(), BTreeMap::new());
    // Nothing they are given is ever done: each turn finds every task still waiting.
    for _ in 0..4 {
        for job in store.authority_jobs(10, 5, &mut turns).await.unwrap() {
            let list = match job.expect {
                None => &mut decided,
                Some(_) => &mut recovered,
            };
            *list.entry(job.task_id.get()).or_insert(0) += 1;
        }
    }
    let ids = |range: std::ops::RangeInclusive<usize>| range.map(|i| i as i64).collect::<Vec<_>>();
    assert_eq!(decided.keys().copied().collect::<Vec<_>>(), ids(1..=n));
    assert_eq!(
        recovered.keys().copied().collect::<Vec<_>>(),
        ids(n + 1..=2 * n)
    );
    // Four turns of 16: two rounds through 21 tasks, each task twice.
    assert!(
        decided.values().chain(recovered.values()).all(|&k| k == 2),
        "{decided:?} {recovered:?}"
    );
}
