//! Owner accounts, played by volunteers who would pass for others or mint identities: an
//! owner name is held by the owner key that first registered it; a runner registers only
//! with its owner key's endorsement; new owners are limited per address a day, or admitted by
//! invitation only.

use helio_scheduler::owners::Admission;
use helio_scheduler::store::Role;
use helio_sdk::wire::{OwnerKey, RegisterRunner, RunnerKey};
use reqwest::StatusCode;

use super::grid::{Db, TestGrid, owner_key};
use super::nodes::{error, new_key, registration, signed};

fn fresh_owner_key() -> OwnerKey {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    OwnerKey::from_secret(secret)
}

/// `runner` sending registration `reg` from `address` (as a proxy in front would say).
async fn register(
    grid: &TestGrid,
    runner: &RunnerKey,
    reg: RegisterRunner,
    address: &str,
) -> reqwest::Response {
    let body = serde_json::to_value(&reg).unwrap();
    signed_from(grid, runner, &body, address).await
}

async fn signed_from(
    grid: &TestGrid,
    runner: &RunnerKey,
    body: &serde_json::Value,
    address: &str,
) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::HeaderName::from_static("x-forwarded-for"),
                address.parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    signed(&http, &grid.url, runner, "/v1/runners", body).await
}

fn as_owner(runner: &RunnerKey, owner: &str, key: &OwnerKey) -> RegisterRunner {
    RegisterRunner {
        owner_key: None,
        endorsement: None,
        ..registration(runner, owner)
    }
    .endorsed_by(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_name_is_held_by_its_key_and_new_owners_are_limited() {
    let grid = TestGrid::start_with(Db::Sqlite, |c| {
        c.api.admission = Admission::Open {
            per_address_per_day: 2,
        };
        c.api.address_header = Some("x-forwarded-for".into());
    })
    .await;
    let home = "198.51.100.7";
    let ada = fresh_owner_key();

    // No owner key: refused, saying what is missing.
    let r1 = new_key();
    let bare = RegisterRunner {
        owner_key: None,
        endorsement: None,
        ..registration(&r1, "ada")
    };
    let (status, _, msg) = error(register(&grid, &r1, bare, home).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{msg}");
    assert!(
        msg.contains("owner_key and endorsement are missing"),
        "{msg}"
    );
    // An endorsement of another runner (or another name) is no endorsement of this one.
    let stolen = RegisterRunner {
        endorsement: as_owner(&new_key(), "ada", &ada).endorsement,
        ..as_owner(&r1, "ada", &ada)
    };
    let (status, _, msg) = error(register(&grid, &r1, stolen, home).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{msg}");
    assert!(msg.contains("is not owner key"), "{msg}");

    // The first registration makes the account; the key's other runners join it.
    let ok = register(&grid, &r1, as_owner(&r1, "ada", &ada), home).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let r2 = new_key();
    let ok = register(&grid, &r2, as_owner(&r2, "ada", &ada), home).await;
    assert_eq!(ok.status(), StatusCode::OK);

    // Another key may not take the name, spelt any way; nor may ada's key hold a second.
    let mallory = fresh_owner_key();
    for name in ["ada", "ADA"] {
        let m = new_key();
        let (status, _, msg) =
            error(register(&grid, &m, as_owner(&m, name, &mallory), home).await).await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}: {msg}");
        assert!(msg.contains("held by another owner key"), "{msg}");
    }
    let r3 = new_key();
    let (status, _, msg) =
        error(register(&grid, &r3, as_owner(&r3, "ada2", &ada), home).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{msg}");
    assert!(msg.contains("holds the name \"ada\""), "{msg}");

    // A second new owner from the address is let in, a third is not (for a day) ...
    let b = new_key();
    let ok = register(&grid, &b, as_owner(&b, "bob", &fresh_owner_key()), home).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let c = new_key();
    let carol = fresh_owner_key();
    let (status, retry, msg) =
        error(register(&grid, &c, as_owner(&c, "carol", &carol), home).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{msg}");
    assert!(msg.contains("2 new owners came from this address"), "{msg}");
    assert!(retry.is_some());
    // ... but from another address, or with an invitation, which admits once.
    let store = helio_scheduler::service::open_store(&grid.config)
        .await
        .unwrap();
    let invite = store.create_token(Role::Invite, "carol").await.unwrap();
    let invited = RegisterRunner {
        invite: Some(invite.clone()),
        ..as_owner(&c, "carol", &carol)
    };
    assert_eq!(
        register(&grid, &c, invited, home).await.status(),
        StatusCode::OK
    );
    let d = new_key();
    let again = RegisterRunner {
        invite: Some(invite.clone()),
        ..as_owner(&d, "dave", &fresh_owner_key())
    };
    let (status, _, msg) = error(register(&grid, &d, again, home).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{msg}");
    assert!(msg.contains("invitation is unknown, used"), "{msg}");
    let e = new_key();
    let elsewhere = register(
        &grid,
        &e,
        as_owner(&e, "erin", &fresh_owner_key()),
        "203.0.113.5",
    );
    assert_eq!(elsewhere.await.status(), StatusCode::OK);
    // An invitation is no submitter token.
    let other = store.create_token(Role::Invite, "x").await.unwrap();
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/batches", grid.url))
        .bearer_auth(&other)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // The accounts, as the leaderboard and the operator see them.
    let owners: Vec<serde_json::Value> = reqwest::get(format!("{}/v1/owners", grid.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = owners.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ada", "bob", "carol", "erin"]);
    assert_eq!(owners[0]["key"], ada.id());
    assert_eq!(owners[0]["runners"], 2);
    assert_eq!(owners[2]["admitted"], "invite");
    assert_eq!(owners[3]["admitted"], "open");
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_invitation_only_a_new_owner_needs_one() {
    let grid = TestGrid::start_with(Db::Sqlite, |c| c.api.admission = Admission::Invite).await;
    let r = new_key();
    let (status, _, msg) =
        error(register(&grid, &r, as_owner(&r, "ada", &owner_key("ada")), "x").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{msg}");
    assert!(msg.contains("by invitation"), "{msg}");
    grid.stop().await;
}

/// A name runners used before owner keys is claimed only through one of those runners:
/// whoever registers first with a new key does not take over a volunteer's name and credits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_from_before_owner_keys_is_claimed_by_its_own_runners() {
    use sqlx::Connection;
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let old = new_key();
    let first = register(
        &grid,
        &old,
        as_owner(&old, "grace", &owner_key("grace")),
        "x",
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    // As a database from before migration 10 holds it: the runner, and no account.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&grid.config.database_url())
        .await
        .unwrap();
    sqlx::query("DELETE FROM owners")
        .execute(&mut conn)
        .await
        .unwrap();
    let grabber = fresh_owner_key();
    let other = new_key();
    let (status, _, msg) =
        error(register(&grid, &other, as_owner(&other, "grace", &grabber), "x").await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{msg}");
    assert!(msg.contains("runners from before owner keys"), "{msg}");
    // Grace herself, through her old runner, with the owner key she makes now.
    let graces = fresh_owner_key();
    let claimed = register(&grid, &old, as_owner(&old, "grace", &graces), "x").await;
    assert_eq!(claimed.status(), StatusCode::OK);
    grid.stop().await;
}
