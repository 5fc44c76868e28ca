//! Authentication: runners by an Ed25519 signature of each request (and a cache of who they
//! are), submitters and operators by bearer tokens; and each runner's request rate.

use super::*;

/// Runners recently read from the database, by id, with when they were read. A runner's key
/// never changes (its id is the key's); its tier and slots change only by registering again,
/// which refreshes the entry. Its reputation is read inside the transactions that use it.
/// Reading a runner also records that it was heard from, so `last_seen_ms` lags by at most
/// [`RunnerCache::REFRESH_MS`] — far below the heartbeat interval offline detection uses.
#[derive(Default)]
pub struct RunnerCache(std::sync::Mutex<std::collections::HashMap<String, (RunnerRecord, i64)>>);

impl RunnerCache {
    /// How long an entry is used before the runner is read (and touched) again.
    pub const REFRESH_MS: i64 = 2_000;

    pub(super) fn get(&self, id: &str, now: i64) -> Option<RunnerRecord> {
        let map = self.0.lock().expect("runner cache");
        map.get(id)
            .filter(|(_, read)| now - read < Self::REFRESH_MS)
            .map(|(r, _)| r.clone())
    }

    pub(super) fn put(&self, runner: RunnerRecord, now: i64) {
        let mut map = self.0.lock().expect("runner cache");
        if map.len() > 100_000 {
            map.retain(|_, (_, read)| now - *read < Self::REFRESH_MS);
        }
        map.insert(runner.id.clone(), (runner, now));
    }

    pub(super) fn forget(&self, id: &str) {
        self.0.lock().expect("runner cache").remove(id);
    }
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a runner's signed request; the runner must be registered.
pub(super) async fn runner_auth(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer<RunnerRecord> {
    let id: RunnerId = header(headers, wire::RUNNER_HEADER)
        .ok_or_else(|| Fail::unauthorized(format!("missing header {}", wire::RUNNER_HEADER)))?
        .parse()
        .map_err(|e| Fail::unauthorized(format!("header {}: {e}", wire::RUNNER_HEADER)))?;
    let id = id.as_str();
    let now = now_ms();
    if let Some(runner) = app.runners.get(id, now) {
        check_signature(method, uri, headers, body, &runner.public_key)?;
        check_rate(app, &runner, now)?;
        return Ok(runner);
    }
    let runner = app.store.runner(id).await?.ok_or_else(|| {
        Fail::unauthorized(format!(
            "runner {id} is not registered (POST /v1/runners first)"
        ))
    })?;
    check_signature(method, uri, headers, body, &runner.public_key)?;
    check_rate(app, &runner, now)?;
    app.store.touch(&runner, now).await?;
    app.runners.put(runner.clone(), now);
    Ok(runner)
}

pub(super) fn check_rate(app: &App, runner: &RunnerRecord, now: i64) -> Answer<()> {
    let flagged = runner.reputation.flagged();
    app.limits.check(&runner.id, flagged, now).map_err(|wait| {
        let rate = app.config.runner_rate
            * if flagged {
                crate::limits::FLAGGED_SHARE
            } else {
                1.0
            };
        Fail::later(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "runner {} makes more than {rate} requests a second{}; try again in {wait} ms",
                runner.id,
                if flagged {
                    " (the limit of a flagged runner)"
                } else {
                    ""
                }
            ),
            wait,
        )
    })
}

pub(super) fn check_signature(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    key: &wire::PublicKey,
) -> Answer<()> {
    let time: i64 = header(headers, wire::TIME_HEADER)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            Fail::unauthorized(format!("missing or bad header {}", wire::TIME_HEADER))
        })?;
    if (time - now_ms()).abs() > wire::MAX_CLOCK_SKEW_MS {
        return Err(Fail::unauthorized(format!(
            "the request's time is {} s away from the scheduler's clock (at most {} s allowed)",
            (time - now_ms()) / 1000,
            wire::MAX_CLOCK_SKEW_MS / 1000
        )));
    }
    let signature = header(headers, wire::SIGNATURE_HEADER)
        .ok_or_else(|| Fail::unauthorized(format!("missing header {}", wire::SIGNATURE_HEADER)))?;
    let message = wire::request_message(method.as_str(), uri.path(), time, body);
    if !key.verifies(&message, signature) {
        return Err(Fail::unauthorized(
            "the request's signature does not verify with the runner's key",
        ));
    }
    Ok(())
}

/// Checks a bearer token and that its role allows `need` (an admin may do anything).
pub(super) async fn token_auth(app: &App, headers: &HeaderMap, need: Role) -> Answer<String> {
    Ok(token_who(app, headers, need).await?.1)
}

/// Checks a bearer token of role `need` (or admin); returns its role and name.
pub(super) async fn token_who(
    app: &App,
    headers: &HeaderMap,
    need: Role,
) -> Answer<(Role, String)> {
    let token = header(headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Fail::unauthorized("missing `Authorization: Bearer <token>` (create one with `scheduler token create`)")
        })?;
    let (role, name) = match app.store.token(token.trim(), now_ms()).await? {
        TokenLookup::Valid { role, name } => (role, name),
        TokenLookup::Unknown => return Err(Fail::unauthorized("unknown token")),
        TokenLookup::Expired { at_ms } => {
            return Err(Fail::unauthorized(format!(
                "the token expired {} s ago (create another with `scheduler token create`)",
                (now_ms() - at_ms) / 1000
            )));
        }
        TokenLookup::Revoked { at_ms } => {
            return Err(Fail::unauthorized(format!(
                "the token was revoked {} s ago",
                (now_ms() - at_ms) / 1000
            )));
        }
    };
    if role != need && role != Role::Admin {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            format!(
                "a {} token may not do this; it needs role {}",
                role.as_str(),
                need.as_str()
            ),
        ));
    }
    Ok((role, name))
}
