//! Results: a report checked and applied, the acceptance and credits its effect implies, the
//! scheduler's own runs, and the blobs an accepted result names.

use super::*;
use crate::rules;

/// Why one result was not recorded.
enum Refusal {
    /// The result is refused, for this reason (told to its runner).
    Refused(String),
    /// The database failed: the whole request fails.
    Failed(StoreError),
}
use Refusal::{Failed, Refused};

/// The blobs an accepted result names: its outputs and, unless empty, its standard output.
pub fn result_blobs(report: &RunReport) -> Vec<Blake3Hash> {
    let mut blobs: Vec<Blake3Hash> = report.outputs.iter().map(|o| o.blake3).collect();
    if report.stdout_blake3 != Blake3Hash::of(b"") {
        blobs.push(report.stdout_blake3);
    }
    blobs.sort();
    blobs.dedup();
    blobs
}

impl Store {
    /// Records results `runner` reports, each checked (lease, digest, signature) and
    /// applied in the same transaction as the acceptance and credits it completes; then,
    /// when `lease` asks for `(max, grace_ms)` (`max` above 0), leases new tasks as [`Store::lease`] does,
    /// in that transaction too.
    pub async fn report(
        &self,
        runner: &RunnerRecord,
        results: &[ResultReport],
        lease: Option<(u32, i64)>,
        now: i64,
    ) -> Result<(Vec<ReportAck>, Vec<Lease>)> {
        // Signatures of results whose task's batch and name are known here are checked
        // now, on this request's own thread, not by the committer.
        let names: Vec<_> = {
            let held = self.group.names.lock().expect("not poisoned");
            results
                .iter()
                .map(|r| held.get(&r.task_id).cloned())
                .collect()
        };
        let signed = results
            .iter()
            .zip(names)
            .map(|(r, name)| {
                name.is_some_and(|(batch, name)| {
                    rules::signed(&runner.public_key, &batch, &name, r)
                })
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        self.grouped(
            Job::Report {
                runner: runner.clone(),
                results: results.to_vec(),
                signed,
                lease,
                now,
                reply,
            },
            answer,
        )
        .await
    }

    pub(super) async fn report_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &RunnerRecord,
        results: &[ResultReport],
        signed: &[bool],
        now: i64,
    ) -> Result<Vec<ReportAck>> {
        // In task order, as `run_jobs` read (and on PostgreSQL locked) them.
        let mut order: Vec<usize> = (0..results.len()).collect();
        order.sort_by_key(|&i| results[i].task_id);
        let mut acks: Vec<Option<ReportAck>> = vec![None; results.len()];
        for i in order {
            let ack = match self
                .report_one(tx, p, runner, &results[i], signed[i], now)
                .await
            {
                Ok(ack) => ack,
                Err(Refused(error)) => ReportAck {
                    task_id: results[i].task_id,
                    status: ReportStatus::Refused,
                    error: Some(error),
                    micro_credits: 0,
                    upload: Vec::new(),
                },
                Err(Failed(e)) => return Err(e),
            };
            acks[i] = Some(ack);
        }
        Ok(acks
            .into_iter()
            .map(|a| a.expect("every result answered"))
            .collect())
    }

    /// Records one result: refused (with the reason) when its task is unknown, it is
    /// inconsistent or unsigned, or the task's state refuses it; else applied.
    async fn report_one(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &RunnerRecord,
        r: &ResultReport,
        signed: bool,
        now: i64,
    ) -> Result<ReportAck, Refusal> {
        let (before, info) = match self.load(tx, p, r.task_id).await {
            Ok(x) => x,
            Err(StoreError::NotFound(what)) => return Err(Refused(format!("{what} not found"))),
            Err(e) => return Err(Failed(e)),
        };
        if info.batch_cancelled {
            // Its batch was cancelled and this task may not be yet: it is now. Nothing more
            // of a cancelled batch is taken or credited, a late result of an accepted task
            // either.
            let mut after = before.clone();
            if !after.cancel().is_empty() || after.phase != before.phase {
                p.save(r.task_id, after, None);
            }
            return Err(Refused(crate::task::Refusal::Cancelled.to_string()));
        }
        if !signed {
            rules::check_report(&runner.public_key, &info.batch_id, &info.name, r)
                .map_err(Refused)?;
        } else if let Some(error) = rules::inconsistent(&r.report) {
            return Err(Refused(error));
        }
        let bounds = rules::Bounds::of(&info.manifest().map_err(Failed)?);
        if let Some(why) = rules::impossible(&r.report, &bounds) {
            // Signed, so the runner's own word: it counts against it.
            let flagged = format!("is impossible: {why}");
            self.flag_for(tx, p, &runner.id, &info, &flagged, now)
                .await
                .map_err(Failed)?;
            return Err(Refused(format!("an impossible result: {why}")));
        }
        let report = &r.report;
        let mut after = before;
        let digest = report.outcome.is_deterministic().then_some(report.digest);
        let effect = after
            .report(&runner.id, digest, now)
            .map_err(|refusal| Refused(refusal.to_string()))?;
        let mut ack = ReportAck {
            task_id: r.task_id,
            status: rules::report_status(&effect, &runner.id),
            error: None,
            micro_credits: 0,
            upload: Vec::new(),
        };
        if effect == Effect::Duplicate {
            return Ok(ack);
        }
        let signed = SignedReport {
            runner: runner.id.clone(),
            report: serde_json::to_string(report).expect("a report serializes"),
            signature: r.signature.clone(),
            at: now,
            wall_ms: report.wall_ms.min(i64::MAX as u64) as i64,
        };
        p.save(r.task_id, after.clone(), Some(signed));
        let applied = self
            .apply(tx, p, &info, &after, &effect, Some(report), now)
            .await
            .map_err(Failed)?;
        ack.micro_credits = applied.get(&runner.id).copied().unwrap_or(0);
        // The blobs to upload if the store lacks them (the caller checks which it holds).
        if ack.status == ReportStatus::Accepted {
            ack.upload = result_blobs(report);
        }
        Ok(ack)
    }

    /// Applies an effect's consequences: acceptance, credits, flags, reputation. Returns the
    /// micro-credits granted per runner.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        info: &TaskInfo,
        state: &TaskState,
        effect: &Effect,
        report: Option<&RunReport>,
        now: i64,
    ) -> Result<BTreeMap<String, u64>> {
        let task_id = info.id;
        let mut granted = BTreeMap::new();
        match effect {
            Effect::Accepted {
                digest,
                agreeing,
                disagreeing,
            } => {
                // The accepted result: this report if it agrees, else an agreeing one's.
                let result = match report.filter(|r| r.digest == *digest) {
                    Some(r) => r.clone(),
                    None => self.agreeing_report(tx, p, task_id, digest).await?,
                };
                // Every blob the result names is wanted until `blob_stored` says the store
                // holds it; a result that names none has all its outputs stored.
                let wanted = result_blobs(&result);
                p.tasks
                    .get_mut(&task_id)
                    .ok_or_else(|| StoreError::Corrupt(format!("task {task_id} not read")))?
                    .accepted = Some(Accepted {
                    result: serde_json::to_string(&result).expect("a report serializes"),
                    succeeded: result.outcome.is_success(),
                    at: now,
                    outputs_stored: wanted.is_empty(),
                    replaces: None,
                });
                for blob in wanted {
                    sqlx::query(
                        "INSERT INTO wanted_blobs (blake3, task_id) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(blob.to_string())
                    .bind(task_id)
                    .execute(&mut **tx)
                    .await?;
                }
                // Whether it counts as an agreement: not where a runner's word alone decided.
                let by_scheduler = matches!(
                    state.phase,
                    Phase::Accepted {
                        by_scheduler: true,
                        ..
                    }
                );
                let verified = credibility::verifies(agreeing.len(), by_scheduler);
                for runner in agreeing {
                    let credit = self
                        .credit(tx, p, info, state, runner, &result, now)
                        .await?;
                    granted.insert(runner.clone(), credit);
                    if verified {
                        p.reputation.entry(runner.clone()).or_default().agreements += 1;
                    }
                }
                self.maybe_spot_check(tx, task_id, state, by_scheduler)
                    .await?;
                for runner in disagreeing {
                    self.flag(tx, p, runner, info, now).await?;
                }
            }
            Effect::Late { runner, agreed } => {
                if *agreed && let Some(result) = report {
                    let credit = self.credit(tx, p, info, state, runner, result, now).await?;
                    granted.insert(runner.clone(), credit);
                    p.reputation.entry(runner.clone()).or_default().agreements += 1;
                } else {
                    self.flag(tx, p, runner, info, now).await?;
                }
            }
            Effect::Overruled {
                vouched,
                vindicated,
                overruled,
                ..
            } => {
                let result = report.ok_or_else(|| {
                    StoreError::Corrupt(format!("task {task_id}: overruled without a run"))
                })?;
                let correction = format!(
                    "the scheduler's own run gave {}, not the accepted {overruled}; the {} \
                     runner(s) that reported {overruled} were flagged and their credits for \
                     it reversed",
                    result.digest,
                    vouched.len()
                );
                self.accept_instead(tx, p, task_id, result, &correction, now)
                    .await?;
                let why = "vouched for a digest the scheduler's own run overruled";
                // Their agreements, where the acceptance counted as one, are taken back.
                let counted = credibility::verifies(vouched.len(), false);
                for runner in vouched {
                    if counted {
                        p.reputation.entry(runner.clone()).or_default().agreements -= 1;
                    }
                    self.flag_for(tx, p, runner, info, why, now).await?;
                    self.reverse(tx, p, info, runner, now).await?;
                }
                for runner in vindicated {
                    // Outvoted and flagged for it: the flag is taken back, the credit given.
                    let conduct = p.reputation.entry(runner.clone()).or_default();
                    conduct.disagreements -= 1;
                    conduct.agreements += 1;
                    let credit = self.credit(tx, p, info, state, runner, result, now).await?;
                    granted.insert(runner.clone(), credit);
                }
            }
            Effect::RunAuthority => {
                tracing::info!(
                    task = task_id,
                    "no quorum within max_replicas; the scheduler will run the task itself"
                );
            }
            Effect::Nothing | Effect::Duplicate | Effect::Issue(_) => {}
        }
        Ok(granted)
    }

    /// The earliest report of `task_id` with `digest`: those committed come first, then
    /// those this transaction holds, then the task's stored result.
    pub(super) async fn agreeing_report(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &Pending,
        task_id: i64,
        digest: &Blake3Hash,
    ) -> Result<RunReport> {
        let row = sqlx::query(
            "SELECT report FROM replicas WHERE task_id = $1 AND digest = $2 \
             AND report IS NOT NULL ORDER BY report_seq LIMIT 1",
        )
        .bind(task_id)
        .bind(digest.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let held = p.tasks.get(&task_id).and_then(|t| {
            t.reports.iter().find(|s| {
                t.state.replicas.iter().any(|r| {
                    r.runner == s.runner
                        && matches!(r.state, ReplicaState::Reported { digest: Some(d), .. } if d == *digest)
                })
            })
        });
        let text: String = match (row, held) {
            (Some(row), _) => row.try_get(0)?,
            (None, Some(signed)) => signed.report.clone(),
            (None, None) => sqlx::query("SELECT result FROM tasks WHERE id = $1")
                .bind(task_id)
                .fetch_one(&mut **tx)
                .await?
                .try_get::<Option<String>, _>(0)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("task {task_id}: no report of its digest"))
                })?,
        };
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("task {task_id}: a bad report: {e}")))
    }

    /// Task `task_id`, accepted, is accepted with `result` instead (the scheduler's own run,
    /// whose outputs the caller stores): the batch's counts follow if it succeeded where the
    /// other did not, or the reverse; the blobs the other named are no longer awaited.
    async fn accept_instead(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        task_id: i64,
        result: &RunReport,
        why: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE tasks SET corrected_ms = $2, correction = $3 WHERE id = $1")
            .bind(task_id)
            .bind(now)
            .bind(why)
            .execute(&mut **tx)
            .await?;
        let was: i64 = sqlx::query("SELECT succeeded FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_one(&mut **tx)
            .await?
            .try_get::<Option<i64>, _>(0)?
            .unwrap_or(0);
        sqlx::query("DELETE FROM wanted_blobs WHERE task_id = $1")
            .bind(task_id)
            .execute(&mut **tx)
            .await?;
        p.tasks
            .get_mut(&task_id)
            .ok_or_else(|| StoreError::Corrupt(format!("task {task_id} not read")))?
            .accepted = Some(Accepted {
            result: serde_json::to_string(result).expect("a report serializes"),
            succeeded: result.outcome.is_success(),
            at: now,
            outputs_stored: true,
            replaces: Some(was != 0),
        });
        Ok(())
    }

    /// Flags `runner`, whose result of `info` disagreed with the accepted one.
    pub(super) async fn flag(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &str,
        info: &TaskInfo,
        now: i64,
    ) -> Result<()> {
        let why = "disagreed with the accepted one";
        self.flag_for(tx, p, runner, info, why, now).await
    }

    /// Flags `runner` (a disagreement on its record), whose result of `info` was `why`.
    pub(super) async fn flag_for(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &str,
        info: &TaskInfo,
        why: &str,
        now: i64,
    ) -> Result<()> {
        tracing::warn!(runner, task = info.id, "runner's result {why}; flagged");
        p.reputation
            .entry(runner.to_string())
            .or_default()
            .disagreements += 1;
        self.recheck_vouched(tx, runner).await?;
        let detail = format!(
            "its result of task {} of batch {} {why}",
            info.name, info.batch_id
        );
        event_in(tx, runner, now, "flagged", &detail).await
    }

    /// Tasks the scheduler must run itself: those no quorum decided, and accepted ones whose
    /// outputs no runner uploaded within `upload_wait_ms`. Each list is taken in id order
    /// from past its cursor in `turns`, a few at a time, and starts again from the lowest id
    /// once it is through: every such task gets its turn, however many others fail again.
    pub async fn authority_jobs(
        &self,
        now: i64,
        upload_wait_ms: i64,
        turns: &mut Turns,
    ) -> Result<Vec<AuthorityJob>> {
        let deciding = sqlx::query(&format!(
            "SELECT id, manifest, NULL FROM tasks WHERE phase = 'deciding' AND id > $1 \
             ORDER BY id LIMIT {TURN}"
        ))
        .bind(turns.deciding)
        .fetch_all(&self.pool)
        .await?;
        let recovering = sqlx::query(&format!(
            "SELECT id, manifest, digest FROM tasks WHERE phase = 'accepted' \
             AND outputs_stored = 0 AND accepted_ms < $1 AND id > $2 ORDER BY id LIMIT {TURN}"
        ))
        .bind(now - upload_wait_ms)
        .bind(turns.recovering)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = self.checking_jobs(&mut turns.checking).await?;
        for (rows, cursor) in [
            (deciding, &mut turns.deciding),
            (recovering, &mut turns.recovering),
        ] {
            let through = rows.len() < TURN as usize;
            for row in rows {
                let task_id: i64 = row.try_get(0)?;
                let manifest: String = row.try_get(1)?;
                let expect: Option<String> = row.try_get(2)?;
                *cursor = task_id;
                jobs.push(AuthorityJob {
                    task_id: TaskId::new(task_id)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    manifest: parse_manifest(task_id, &manifest)?,
                    expect: expect.as_deref().map(hash).transpose()?,
                });
            }
            if through {
                *cursor = 0;
            }
        }
        Ok(jobs)
    }

    /// The scheduler's own run of an accepted task (to recover its outputs) gave `report`,
    /// whose blobs are stored: where its digest is not the accepted one, it wins
    /// ([`TaskState::overrule`]). Returns whether it did.
    pub async fn overrule(&self, task_id: TaskId, report: &RunReport, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let (effect, work) = self
            .own_run(&mut tx, task_id.get(), report, now, TaskState::overrule)
            .await?;
        if effect != Effect::Nothing {
            tracing::warn!(
                task = %task_id,
                ?effect,
                "the scheduler's own run overruled the accepted result"
            );
        }
        self.commit(tx, work).await?;
        Ok(effect != Effect::Nothing)
    }

    /// The scheduler's own run of a deciding task gave `report`: it decides the task.
    pub async fn authority(&self, task_id: TaskId, report: &RunReport, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (_, work) = self
            .own_run(&mut tx, task_id.get(), report, now, TaskState::authority)
            .await?;
        sqlx::query("UPDATE tasks SET by_scheduler = 1 WHERE id = $1")
            .bind(task_id.get())
            .execute(&mut *tx)
            .await?;
        self.commit(tx, work).await?;
        Ok(())
    }

    /// Applies what `decide` makes of task `task_id` given the scheduler's own `report`, in
    /// `tx`; returns the effect, and whether work appeared (for [`Store::commit`]).
    async fn own_run(
        &self,
        tx: &mut Transaction<'static, Any>,
        task_id: i64,
        report: &RunReport,
        now: i64,
        decide: fn(&mut TaskState, Blake3Hash) -> Effect,
    ) -> Result<(Effect, bool)> {
        let mut p = Pending::default();
        let (mut state, info) = self.load(tx, &mut p, task_id).await?;
        let effect = decide(&mut state, report.digest);
        let confirmed = (effect == Effect::Nothing).then_some(report.digest);
        self.checked(tx, &mut p, task_id, &state, confirmed).await?;
        p.save(task_id, state.clone(), None);
        self.apply(tx, &mut p, &info, &state, &effect, Some(report), now)
            .await?;
        let work = self.flush(tx, p).await?;
        Ok((effect, work))
    }

    /// Whether some accepted result names `blob` and the blob store lacks it: a runner may
    /// upload it.
    pub async fn blob_wanted(&self, blob: &Blake3Hash) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM wanted_blobs WHERE blake3 = $1 LIMIT 1")
                .bind(blob.to_string())
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Records that the blob store now holds `blob`; marks the tasks whose outputs are now
    /// all stored.
    pub async fn blob_stored(&self, blob: &Blake3Hash) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let tasks: Vec<i64> =
            sqlx::query("DELETE FROM wanted_blobs WHERE blake3 = $1 RETURNING task_id")
                .bind(blob.to_string())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
        for id in tasks {
            sqlx::query(
                "UPDATE tasks SET outputs_stored = 1 WHERE id = $1 AND NOT EXISTS \
                 (SELECT 1 FROM wanted_blobs w WHERE w.task_id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
