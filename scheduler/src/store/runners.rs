//! Tokens and runners: registration, heartbeats, going offline, and their activity log.

use super::*;

pub(super) fn runner_record(r: &AnyRow) -> Result<RunnerRecord> {
    let key: String = r.try_get(1)?;
    Ok(RunnerRecord {
        id: r.try_get(0)?,
        public_key: wire::parse_public_key(&key).map_err(StoreError::Corrupt)?,
        owner: r.try_get(2)?,
        tier: tier_of(r.try_get(3)?),
        slots: r.try_get::<i64, _>(4)? as u32,
        reputation: reputation_at(r, 5)?,
        last_seen_ms: r.try_get(10)?,
        online: r.try_get::<i64, _>(11)? == 1,
        location: r.try_get(12)?,
        green_energy: r.try_get(13)?,
        uptime_ms: r.try_get(14)?,
        warm: r.try_get::<i64, _>(15)? == 1,
        checks_failed: r.try_get::<i64, _>(16)? as u64,
        memory_bytes: r.try_get::<i64, _>(17)?.max(0) as u64,
    })
}

/// Appends an entry to a runner's activity log.
pub(super) async fn event_in(
    tx: &mut Transaction<'static, Any>,
    runner: &str,
    at: i64,
    event: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO runner_events (runner_id, at_ms, event, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(runner)
    .bind(at)
    .bind(event)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Creates a token with `role` that never expires; returns the token, which is stored
    /// only as its hash.
    pub async fn create_token(&self, role: Role, name: &str) -> Result<String> {
        self.create_token_until(role, name, None).await
    }

    /// Creates a token with `role`, valid until `expires_ms` (never, if `None`); returns
    /// the token, which is stored only as its hash.
    pub async fn create_token_until(
        &self,
        role: Role,
        name: &str,
        expires_ms: Option<i64>,
    ) -> Result<String> {
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::Conflict(format!("no randomness for a token: {e}")))?;
        let token = format!("helio_{}", wire::to_hex(&secret));
        sqlx::query(
            "INSERT INTO tokens (hash, role, name, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(Blake3Hash::of(token.as_bytes()).to_string())
        .bind(role.as_str())
        .bind(name)
        .bind(now_ms())
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// What `token` is at `now`: valid (its role and name), expired, revoked, or unknown.
    pub async fn token(&self, token: &str, now: i64) -> Result<TokenLookup> {
        let row =
            sqlx::query("SELECT role, name, expires_ms, revoked_ms FROM tokens WHERE hash = $1")
                .bind(Blake3Hash::of(token.as_bytes()).to_string())
                .fetch_optional(&self.reads)
                .await?;
        let Some(row) = row else {
            return Ok(TokenLookup::Unknown);
        };
        if let Some(at_ms) = row.try_get::<Option<i64>, _>(3)? {
            return Ok(TokenLookup::Revoked { at_ms });
        }
        if let Some(at_ms) = row.try_get::<Option<i64>, _>(2)?
            && at_ms <= now
        {
            return Ok(TokenLookup::Expired { at_ms });
        }
        let role: String = row.try_get(0)?;
        let role = role.parse().map_err(StoreError::Corrupt)?;
        Ok(TokenLookup::Valid {
            role,
            name: row.try_get(1)?,
        })
    }

    /// Every token (none of them readable: each is named by the start of its hash).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        sqlx::query(
            "SELECT hash, role, name, created_ms, expires_ms, revoked_ms FROM tokens \
             ORDER BY created_ms, hash",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            let hash: String = r.try_get(0)?;
            let role: String = r.try_get(1)?;
            Ok(TokenInfo {
                id: hash[..TOKEN_ID_LEN].to_string(),
                role: role.parse().map_err(StoreError::Corrupt)?,
                name: r.try_get(2)?,
                created_ms: r.try_get(3)?,
                expires_ms: r.try_get(4)?,
                revoked_ms: r.try_get(5)?,
            })
        })
        .collect()
    }

    /// Revokes the one token whose id (the start of its hash, as [`Store::tokens`] shows)
    /// begins with `id`, at `now`. Refused when `id` names none, or more than one.
    pub async fn revoke_token(&self, id: &str, now: i64) -> Result<TokenInfo> {
        if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Conflict(format!(
                "{id:?} is not a token id: give at least 4 hex digits, as `scheduler token list` shows"
            )));
        }
        let id = id.to_ascii_lowercase();
        let matching: Vec<TokenInfo> = self
            .tokens()
            .await?
            .into_iter()
            .filter(|t| t.id.starts_with(&id) || id.starts_with(&t.id))
            .collect();
        let token = match &matching[..] {
            [one] => one.clone(),
            [] => return Err(StoreError::NotFound(format!("token {id}"))),
            more => {
                return Err(StoreError::Conflict(format!(
                    "{id} names {} tokens; give more of the id",
                    more.len()
                )));
            }
        };
        sqlx::query("UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, $2) WHERE hash LIKE $1")
            .bind(format!("{}%", token.id))
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(TokenInfo {
            revoked_ms: token.revoked_ms.or(Some(now)),
            ..token
        })
    }

    /// Registers a runner, or updates what it offers when its key is known, once its owner
    /// key is found to hold its owner name (or admitted to, see [`crate::owners`]).
    pub async fn register_runner(
        &self,
        reg: &RegisterRunner,
        enrollment: &Enrollment,
        now: i64,
    ) -> Result<Registered> {
        let key = wire::parse_public_key(&reg.public_key)
            .map_err(|e| StoreError::Conflict(format!("public_key {e}")))?;
        let id = wire::runner_id(&key);
        if reg.owner == self.policy.cooperative {
            return Err(StoreError::Conflict(format!(
                "owner {:?} is the cooperative fund's name; choose another owner",
                reg.owner
            )));
        }
        let mut tx = self.pool.begin().await?;
        let admitted = owners::admit_in(&mut tx, reg, &id, enrollment, now).await?;
        let known = sqlx::query("SELECT 1 FROM runners WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO runners (id, public_key, owner, tier, slots, cores, memory_bytes, \
             fuel_per_second, profile, registered_ms, last_seen_ms, location, green_energy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET tier = $4, slots = $5, cores = $6, \
             memory_bytes = $7, fuel_per_second = $8, profile = $9, last_seen_ms = $10, \
             location = $11, green_energy = $12, online = 1, warm = 0",
        )
        .bind(&id)
        .bind(&reg.public_key)
        .bind(&reg.owner)
        .bind(tier_rank(reg.tier))
        .bind(i64::from(reg.slots))
        .bind(i64::from(reg.cores))
        .bind(reg.memory_bytes as i64)
        .bind(reg.fuel_per_second as i64)
        .bind(&reg.profile)
        .bind(now)
        .bind(reg.location.as_deref().unwrap_or(""))
        .bind(reg.green_energy)
        .execute(&mut *tx)
        .await?;
        // A key belongs to one owner for good: credits already granted name it.
        let owner: String = sqlx::query("SELECT owner FROM runners WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if owner != reg.owner {
            return Err(StoreError::Conflict(format!(
                "runner {id} is registered to owner {owner:?}, not {:?}; a new owner needs a new key",
                reg.owner
            )));
        }
        let detail = format!(
            "owner {}, tier {}, {} slots, {} cores, {} MiB, {} fuel/s{}{}",
            reg.owner,
            reg.tier,
            reg.slots,
            reg.cores,
            reg.memory_bytes >> 20,
            reg.fuel_per_second,
            reg.location
                .as_deref()
                .map(|l| format!(", in {l}"))
                .unwrap_or_default(),
            reg.green_energy
                .map(|g| format!(", {:.0}% green energy", g * 100.0))
                .unwrap_or_default(),
        );
        // Registered again (a restart, new hardware): cold until it passes a new check.
        drop_checks_in(&mut tx, &id, now).await?;
        let event = if known {
            "registered again"
        } else {
            "registered"
        };
        let detail = match admitted {
            crate::owners::Admitted::Known => detail,
            new => format!("{detail}; owner admitted ({})", new.as_str()),
        };
        event_in(&mut tx, &id, now, event, &detail).await?;
        tx.commit().await?;
        Ok(Registered {
            runner: id,
            heartbeat_seconds: 0,
        })
    }

    /// The runner with `id`.
    pub async fn runner(&self, id: &str) -> Result<Option<RunnerRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RUNNER_COLUMNS} FROM runners WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reads)
        .await?;
        row.map(|r| runner_record(&r)).transpose()
    }

    /// Records that `runner` (as read a moment ago) was heard from: the time since it was
    /// last heard from counts as online unless it exceeds the offline limit; a runner marked
    /// offline is online again.
    pub async fn touch(&self, runner: &RunnerRecord, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE runners SET uptime_ms = uptime_ms + CASE WHEN online = 1 \
             AND $2 - last_seen_ms <= $3 THEN $2 - last_seen_ms ELSE 0 END, \
             last_seen_ms = $2 WHERE id = $1 AND last_seen_ms < $2",
        )
        .bind(&runner.id)
        .bind(now)
        .bind(self.policy.offline_after_ms)
        .execute(&self.pool)
        .await?;
        if !runner.online {
            let mut tx = self.pool.begin().await?;
            let back = sqlx::query("UPDATE runners SET online = 1 WHERE id = $1 AND online = 0")
                .bind(&runner.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if back == 1 {
                let away = (now - runner.last_seen_ms) / 1000;
                let detail = format!("heard from again after {away} s");
                event_in(&mut tx, &runner.id, now, "online", &detail).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Marks offline every online runner not heard from within the offline limit, and hands
    /// the tasks it holds to other runners. Returns the runners marked.
    pub async fn mark_offline(&self, now: i64) -> Result<Vec<String>> {
        let silent = now - self.policy.offline_after_ms;
        let ids: Vec<String> =
            sqlx::query("SELECT id FROM runners WHERE online = 1 AND last_seen_ms < $1 LIMIT 1000")
                .bind(silent)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
        let mut marked = Vec::new();
        for id in ids {
            let mut tx = self.pool.begin().await?;
            let changed = sqlx::query(
                "UPDATE runners SET online = 0, warm = 0 \
                 WHERE id = $1 AND online = 1 AND last_seen_ms < $2",
            )
            .bind(&id)
            .bind(silent)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                continue;
            }
            let tasks: Vec<i64> = sqlx::query(
                "SELECT task_id FROM replicas WHERE runner_id = $1 AND state = 'leased'",
            )
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
            let mut p = Pending::default();
            let handed = self.hand_back(&mut tx, &mut p, &id, tasks).await?;
            let work = self.flush(&mut tx, p).await?;
            drop_checks_in(&mut tx, &id, now).await?;
            let detail = format!(
                "not heard from for {} s; {handed} leased task{} handed to other runners",
                self.policy.offline_after_ms / 1000,
                if handed == 1 { "" } else { "s" }
            );
            event_in(&mut tx, &id, now, "offline", &detail).await?;
            self.commit(tx, work).await?;
            tracing::info!(runner = %id, leases = handed, "runner went offline");
            marked.push(id);
        }
        Ok(marked)
    }

    /// The newest `limit` entries of a runner's activity log, newest first.
    pub async fn runner_events(&self, id: &str, limit: u32) -> Result<Vec<RunnerEvent>> {
        if sqlx::query("SELECT 1 FROM runners WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("runner {id}")));
        }
        sqlx::query(
            "SELECT at_ms, event, detail FROM runner_events WHERE runner_id = $1 \
             ORDER BY at_ms DESC LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            Ok(RunnerEvent {
                at_ms: r.try_get(0)?,
                event: r.try_get(1)?,
                detail: r.try_get(2)?,
            })
        })
        .collect()
    }

    /// Runners of `tier` online now.
    pub async fn online_in_tier(&self, tier: Tier) -> Result<u64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM runners WHERE tier = $1 AND online = 1")
                .bind(tier_rank(tier))
                .fetch_one(&self.reads)
                .await?
                .try_get::<i64, _>(0)? as u64,
        )
    }

    /// Every runner, most recently seen first.
    pub async fn runners(&self) -> Result<Vec<RunnerRecord>> {
        sqlx::query(&format!(
            "SELECT {RUNNER_COLUMNS} FROM runners ORDER BY last_seen_ms DESC, id"
        ))
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(runner_record)
        .collect()
    }
}
