//! Owner accounts: the name an owner key holds, checked (and made, when the operator's
//! admission lets the owner in) as a runner registers. The rule is [`crate::owners::admit`].

use super::*;
use crate::owners::{Admission, Admitted, Found, Refused};

/// Where a registration came from, and how this scheduler admits new owners: what the API
/// passes to [`Store::register_runner`] beside the registration.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The operator's admission policy.
    pub admission: Admission,
    /// The network address the registration came from.
    pub address: String,
}

/// An owner account, as the operator's list and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct OwnerInfo {
    /// The owner's name.
    pub name: String,
    /// Its owner key's id (`o-` and 16 hex digits).
    pub key: String,
    /// When it was admitted.
    pub created_ms: i64,
    /// How: `open` or `invite`.
    pub admitted: String,
    /// Its runners, and how many are online.
    pub runners: u64,
    /// Its runners online.
    pub online: u64,
}

/// Checks that `reg`'s owner key endorses it, and that the key holds (or may now take)
/// the owner name, for the runner `runner`; makes the account when it is new.
pub(super) async fn admit_in(
    tx: &mut Transaction<'static, Any>,
    reg: &RegisterRunner,
    runner: &str,
    enrollment: &Enrollment,
    now: i64,
) -> Result<Admitted> {
    let (Some(key_hex), Some(endorsement)) = (&reg.owner_key, &reg.endorsement) else {
        return Err(StoreError::Forbidden(
            "a runner registers with its owner's key: owner_key and endorsement are missing \
             (update the runner; it makes an owner key when it has none)"
                .into(),
        ));
    };
    let key = wire::parse_public_key(key_hex)
        .map_err(|e| StoreError::Conflict(format!("owner_key {e}")))?;
    if !key.verifies(
        &wire::endorsement_message(&reg.owner, &reg.public_key),
        endorsement,
    ) {
        return Err(StoreError::Forbidden(format!(
            "the endorsement is not owner key {}'s signature of owner {:?} and this runner's key",
            wire::owner_key_id(&key),
            reg.owner
        )));
    }
    let key_hex = wire::to_hex(key.as_bytes());
    let folded = reg.owner.to_ascii_lowercase();
    let mut found = Found::default();
    if let Some(row) = sqlx::query("SELECT name, public_key FROM owners WHERE folded = $1")
        .bind(&folded)
        .fetch_optional(&mut **tx)
        .await?
    {
        let holder: String = row.try_get(1)?;
        found.name_held = Some((row.try_get(0)?, holder == key_hex));
    } else {
        found.key_holds = sqlx::query("SELECT name FROM owners WHERE public_key = $1")
            .bind(&key_hex)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN id = $2 THEN 1 ELSE 0 END), 0) \
             FROM runners WHERE owner = $1",
        )
        .bind(&reg.owner)
        .bind(runner)
        .fetch_one(&mut **tx)
        .await?;
        let (earlier, mine): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        found.earlier_runners = (earlier > 0).then_some(mine > 0);
        found.from_address_today =
            sqlx::query("SELECT COUNT(*) FROM owners WHERE address = $1 AND created_ms > $2")
                .bind(&enrollment.address)
                .bind(now - 86_400_000)
                .fetch_one(&mut **tx)
                .await?
                .try_get::<i64, _>(0)? as u64;
    }
    if let Some(invite) = &reg.invite
        && found.name_held.is_none()
    {
        found.invited = true;
        let used = sqlx::query(
            "UPDATE tokens SET revoked_ms = $2 WHERE hash = $1 AND role = 'invite' \
             AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $2)",
        )
        .bind(Blake3Hash::of(invite.trim().as_bytes()).to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Err(StoreError::Forbidden(
                "the invitation is unknown, used, expired or revoked; ask the operator for another"
                    .into(),
            ));
        }
    }
    let admitted =
        crate::owners::admit(enrollment.admission, &reg.owner, &found).map_err(|refused| {
            match refused {
                Refused::TooMany(_) => StoreError::TooMany(refused.to_string()),
                Refused::NeedsInvite => StoreError::Forbidden(refused.to_string()),
                _ => StoreError::Conflict(refused.to_string()),
            }
        })?;
    if admitted != Admitted::Known {
        let made = sqlx::query(
            "INSERT INTO owners (name, folded, public_key, created_ms, admitted, address) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&reg.owner)
        .bind(&folded)
        .bind(&key_hex)
        .bind(now)
        .bind(admitted.as_str())
        .bind(&enrollment.address)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if made != 1 {
            return Err(StoreError::Conflict(format!(
                "owner name {:?} (or this owner key) was just taken by another registration; \
                 try again",
                reg.owner
            )));
        }
    }
    Ok(admitted)
}

impl Store {
    /// How many owner accounts there are.
    pub async fn owner_count(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM owners")
            .fetch_one(&self.reads)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// Every owner account, by name, with its runners.
    pub async fn owners(&self) -> Result<Vec<OwnerInfo>> {
        sqlx::query(
            "SELECT o.name, o.public_key, o.created_ms, o.admitted, COUNT(r.id), \
             COALESCE(SUM(CASE WHEN r.online = 1 THEN 1 ELSE 0 END), 0) \
             FROM owners o LEFT JOIN runners r ON r.owner = o.name \
             GROUP BY o.name, o.public_key, o.created_ms, o.admitted ORDER BY o.name",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            let key: String = r.try_get(1)?;
            let key = wire::parse_public_key(&key)
                .map_err(|e| StoreError::Corrupt(format!("an owner key that {e}")))?;
            Ok(OwnerInfo {
                name: r.try_get(0)?,
                key: wire::owner_key_id(&key),
                created_ms: r.try_get(2)?,
                admitted: r.try_get(3)?,
                runners: r.try_get::<i64, _>(4)? as u64,
                online: r.try_get::<i64, _>(5)? as u64,
            })
        })
        .collect()
    }
}
