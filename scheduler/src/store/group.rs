//! The group commit: lease and report requests that queue up while one transaction commits are
//! committed together in the next.

use super::*;

/// Runners' leases and reports waiting to be committed: whatever queues up while one
/// transaction commits is committed together in the next (group commit), so that a busy
/// grid pays one synchronous disk write for many requests, not one each.
#[derive(Default)]
pub(super) struct Group {
    pub(super) queue: std::sync::Mutex<Vec<Job>>,
    /// Whether a committer task is running (see [`Store::grouped`]).
    pub(super) committer: std::sync::atomic::AtomicBool,
    /// Held while a group commits.
    pub(super) committing: tokio::sync::Mutex<()>,
    /// The batch and name of tasks leased and not yet accepted (they never change), so
    /// that a result's signature, which covers them, is checked before its request joins a
    /// group, not by the committer while every other request waits. A result whose task
    /// is not here (a scheduler restarted since the lease) is checked in the transaction.
    pub(super) names: std::sync::Mutex<HashMap<i64, BatchAndName>>,
}

/// A task's batch id and name.
pub(super) type BatchAndName = (Arc<str>, Arc<str>);

/// The most tasks [`Group::names`] holds; when full it starts over (a miss only moves a
/// signature check into the transaction).
pub(super) const NAMES_HELD: usize = 100_000;

/// One request in a group, and where its answer goes.
pub(super) enum Job {
    Lease {
        runner: RunnerRecord,
        max: u32,
        now: i64,
        grace_ms: i64,
        reply: oneshot::Sender<Result<Vec<Lease>>>,
    },
    Report {
        runner: RunnerRecord,
        results: Vec<ResultReport>,
        /// Whether each result's signature was already found good.
        signed: Vec<bool>,
        /// New leases wanted after the results are recorded: at most this many, with this
        /// grace.
        lease: Option<(u32, i64)>,
        now: i64,
        reply: oneshot::Sender<Result<(Vec<ReportAck>, Vec<Lease>)>>,
    },
}

/// A job's answer, before it is sent.
pub(super) enum Done {
    Leases(Vec<Lease>),
    Acks(Vec<ReportAck>, Vec<Lease>),
}

impl Job {
    fn answer(self, done: Result<Done>) {
        // A requester that went away no longer wants its answer; what committed stays.
        match (self, done) {
            (Job::Lease { reply, .. }, Ok(Done::Leases(l))) => drop(reply.send(Ok(l))),
            (Job::Report { reply, .. }, Ok(Done::Acks(a, l))) => drop(reply.send(Ok((a, l)))),
            (Job::Lease { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Job::Report { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            _ => unreachable!("each job is answered in its own kind"),
        }
    }
}

impl Store {
    /// Queues `job` and commits it with whatever else is queued. One committer task at a
    /// time takes the queue and commits it, again and again until it finds the queue empty;
    /// a request starts one only if none is running. (A task per request, each waiting its
    /// turn, piled up faster than they drained under load: every one that found work
    /// committed it, so the line grew by all but one of the requests that came in during
    /// each commit, and the scheduler's memory with it.) The committer is a task of its
    /// own, so a requester that goes away never cuts a group's transaction short.
    pub(super) async fn grouped<T>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
        use std::sync::atomic::Ordering::SeqCst;
        self.group.queue.lock().expect("not poisoned").push(job);
        if !self.group.committer.swap(true, SeqCst) {
            let store = self.clone();
            tokio::spawn(async move {
                loop {
                    let _committing = store.group.committing.lock().await;
                    let jobs =
                        std::mem::take(&mut *store.group.queue.lock().expect("not poisoned"));
                    if !jobs.is_empty() {
                        store.commit_group(jobs).await;
                        continue;
                    }
                    // Nothing queued: stop, unless a job came in after the look and its
                    // requester, seeing this committer still running, started none.
                    store.group.committer.store(false, SeqCst);
                    let queued = !store.group.queue.lock().expect("not poisoned").is_empty();
                    if !queued || store.group.committer.swap(true, SeqCst) {
                        break;
                    }
                }
            });
        }
        answer
            .await
            .map_err(|_| StoreError::Corrupt("a grouped commit ended without an answer".into()))?
    }

    /// Runs `jobs` in one transaction and answers each. If any fails, the transaction is
    /// rolled back and each job runs again in its own, so that one bad request costs the
    /// others nothing.
    pub(super) async fn commit_group(&self, jobs: Vec<Job>) {
        if jobs.len() > 1 {
            match self.run_jobs(&jobs).await {
                Ok(done) => {
                    for (job, done) in jobs.into_iter().zip(done) {
                        job.answer(Ok(done));
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, jobs = jobs.len(), "a group failed; committing its requests one by one")
                }
            }
        }
        for job in jobs {
            let done = self
                .run_jobs(std::slice::from_ref(&job))
                .await
                .map(|mut d| d.pop().expect("one answer per job"));
            job.answer(done);
        }
    }

    pub(super) async fn run_jobs(&self, jobs: &[Job]) -> Result<Vec<Done>> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        // Every task the group's reports name, read in one query.
        let reported: Vec<i64> = jobs
            .iter()
            .flat_map(|job| match job {
                Job::Report { results, .. } => results.iter().map(|r| r.task_id).collect(),
                Job::Lease { .. } => Vec::new(),
            })
            .collect();
        self.fetch(&mut tx, &mut p, &reported).await?;
        // Every runner that leases, read in one query.
        let mut leasing: Vec<&str> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::Lease { runner, .. }
                | Job::Report {
                    runner,
                    lease: Some(_),
                    ..
                } => Some(runner.id.as_str()),
                Job::Report { .. } => None,
            })
            .collect();
        leasing.sort_unstable();
        leasing.dedup();
        for chunk in leasing.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "{LEASING_COLUMNS} WHERE r.id IN ({})",
                params(self.postgres, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                let (id, runner) = leasing_runner(&row)?;
                p.runners.insert(id, runner);
            }
        }
        // The tasks the group's leases will most likely go to, read after the reported ones:
        // on PostgreSQL fetching those waits for their row locks, which must not happen while
        // this transaction holds the pool's (taken without waiting), or two transactions
        // could each wait for the other.
        self.pool(&mut tx, &mut p, jobs).await?;
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            done.push(match job {
                Job::Lease {
                    runner,
                    max,
                    now,
                    grace_ms,
                    ..
                } => Done::Leases(
                    self.lease_in(&mut tx, &mut p, runner, *max, *now, *grace_ms)
                        .await?,
                ),
                Job::Report {
                    runner,
                    results,
                    signed,
                    lease,
                    now,
                    ..
                } => {
                    let acks = self
                        .report_in(&mut tx, &mut p, runner, results, signed, *now)
                        .await?;
                    let leases = match *lease {
                        Some((max, grace_ms)) => {
                            self.lease_in(&mut tx, &mut p, runner, max, *now, grace_ms)
                                .await?
                        }
                        None => Vec::new(),
                    };
                    Done::Acks(acks, leases)
                }
            });
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(done)
    }

    /// Remembers a leased task's batch and name (see [`Group::names`]).
    pub(super) fn remember_name(&self, lease: &Lease) {
        let mut held = self.group.names.lock().expect("not poisoned");
        if held.len() >= NAMES_HELD {
            held.clear();
        }
        held.entry(lease.task_id).or_insert_with(|| {
            (
                Arc::from(lease.batch.as_str()),
                Arc::from(lease.manifest.name.as_str()),
            )
        });
    }
}
