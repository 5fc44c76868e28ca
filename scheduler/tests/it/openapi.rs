//! The OpenAPI document: generated from the API's types, kept in `scheduler/openapi.json`,
//! read back by its library, naming every route, and describing what the routes answer.

use std::collections::BTreeSet;

use helio_scheduler::api::{openapi_document, openapi_json};
use helio_scheduler::service;
use helio_scheduler::store::Role;
use serde_json::Value;

use super::grid::{Db, TestGrid, cold_runner, hashchain_batch, run_health_check};

/// The checked-in copy (for readers and client generators without a scheduler running) is
/// the document the scheduler serves.
#[test]
fn the_checked_in_document_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let kept = std::fs::read_to_string(path).unwrap();
    assert!(
        kept == openapi_json(),
        "scheduler/openapi.json differs from the document the API's types give; \
         write it again with `cargo run -p helio-scheduler -- openapi > scheduler/openapi.json`"
    );
}

/// The document round-trips through its library: read back into utoipa's model, it holds
/// every route and schema, and written again it is the same text, to the byte.
#[test]
fn the_document_round_trips_through_utoipa() {
    let made = openapi_document();
    let read: utoipa::openapi::OpenApi = serde_json::from_str(openapi_json()).unwrap();
    assert_eq!(read.paths.paths.len(), made.paths.paths.len());
    let schemas = |doc: &utoipa::openapi::OpenApi| -> Vec<String> {
        doc.components
            .as_ref()
            .unwrap()
            .schemas
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(schemas(&read), schemas(&made));
    assert!(schemas(&read).len() > 40, "{:?}", schemas(&read));
    let mut again = read.to_pretty_json().unwrap();
    again.push('\n');
    assert_eq!(again, openapi_json());
}

/// Every route the router has is in the document with each of its methods, and the
/// document names no route or method the router lacks.
#[test]
fn the_document_names_every_route_and_method_and_no_other() {
    let source = include_str!("../../src/api/mod.rs");
    let mut routes = BTreeSet::new();
    for line in source
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with(".route(\""))
    {
        let path = line.split('"').nth(1).unwrap();
        let handlers = &line[line.find(", ").unwrap() + 2..];
        for method in ["get", "post", "put", "patch", "delete"] {
            if handlers.starts_with(&format!("{method}("))
                || handlers.contains(&format!(".{method}("))
            {
                routes.insert((path.to_string(), method.to_string()));
            }
        }
    }
    assert!(
        routes.len() > 30,
        "the router's routes were not read: {routes:?}"
    );
    let doc: Value = serde_json::from_str(openapi_json()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((path.clone(), method.clone()));
        }
    }
    assert_eq!(routes, documented);
}

/// What `path`'s `method` answers with `status`, as JSON, according to the document.
fn answer_schema<'d>(doc: &'d Value, method: &str, path: &str, status: u16) -> &'d Value {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} documents no {status} JSON answer"
    );
    schema
}

/// Checks `value` against `schema` of `doc`, strictly: an object holds every required
/// property and no property its schema does not name (unless the schema allows any). The
/// error names where the value breaks the schema. JSON Schema keywords the document uses
/// that constrain shape are checked; `pattern` and `format` are not.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    conforms_as(doc, schema, value, at, true)
}

fn resolve<'d>(doc: &'d Value, schema: &'d Value) -> &'d Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("a local ref");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The property names an object schema allows, through `allOf` and `oneOf`; `None` when it
/// allows any.
fn allowed(doc: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    let schema = resolve(doc, schema);
    let mut names = BTreeSet::new();
    let mut open = false;
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in schema[key].as_array().into_iter().flatten() {
            match allowed(doc, part) {
                Some(n) => names.extend(n),
                None => open = true,
            }
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        names.extend(props.keys().cloned());
    } else if schema["type"] == "object" || schema.get("additionalProperties").is_some() {
        open = true;
    }
    if schema["additionalProperties"].is_object() {
        open = true;
    }
    (!open).then_some(names)
}

fn conforms_as(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    strict: bool,
) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            conforms_as(doc, part, value, at, false)?;
        }
    }
    if let Some(parts) = schema["oneOf"].as_array() {
        let fits = parts
            .iter()
            .filter(|p| conforms_as(doc, p, value, at, strict).is_ok())
            .count();
        if fits != 1 {
            return Err(format!(
                "{at}: fits {fits} of oneOf's {} schemas: {value}",
                parts.len()
            ));
        }
    }
    if let Some(types) = match &schema["type"] {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    } {
        let is = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            other => panic!("a schema type the check does not know: {other}"),
        };
        if !types.iter().any(|t| is(t)) {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is none of {options:?}"));
    }
    if let (Some(least), Some(n)) = (schema["minimum"].as_f64(), value.as_f64())
        && n < least
    {
        return Err(format!("{at}: {n} is below the minimum {least}"));
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, item) in list.iter().enumerate() {
            conforms_as(doc, items, item, &format!("{at}[{i}]"), true)?;
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: lacks the required {name:?}: {value}"));
            }
        }
        let props = schema["properties"].as_object();
        for (key, field) in object {
            let at = format!("{at}.{key}");
            if let Some(prop) = props.and_then(|p| p.get(key)) {
                conforms_as(doc, prop, field, &at, true)?;
            } else if let Some(rest) = schema.get("additionalProperties").filter(|r| r.is_object())
            {
                conforms_as(doc, rest, field, &at, true)?;
            }
        }
        if strict
            && let Some(names) = allowed(doc, schema)
            && let Some(extra) = object.keys().find(|k| !names.contains(*k))
        {
            return Err(format!("{at}: {extra:?} is not in the schema: {value}"));
        }
    }
    Ok(())
}

/// What the routes answer, taken live from a scheduler that ran a batch, fits the schema the
/// document gives each answer; and the check fails on an answer that breaks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_answers_fit_their_documented_schemas() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let doc: Value = serde_json::from_str(openapi_json()).unwrap();
    let http = reqwest::Client::new();
    let admin = service::open_store(&grid.config)
        .await
        .unwrap()
        .create_token(Role::Admin, "auditor")
        .await
        .unwrap();

    // A runner's answers, through the typed client: the server serializes the same types.
    let client = cold_runner(&grid.url, "alice", 1).await;
    let ack = serde_json::to_value(client.heartbeat().await.unwrap()).unwrap();
    conforms(
        &doc,
        answer_schema(&doc, "post", "/v1/heartbeat", 200),
        &ack,
        "heartbeat",
    )
    .unwrap();
    let (lease, output) = run_health_check(&client).await;
    let leases = serde_json::json!({ "leases": [lease] });
    conforms(
        &doc,
        answer_schema(&doc, "post", "/v1/leases", 200),
        &leases,
        "leases",
    )
    .unwrap();
    let (acks, more) = client
        .report_and_lease(vec![client.result(&lease, &output.report)], 1)
        .await
        .unwrap();
    let reported = serde_json::json!({ "results": acks, "leases": more });
    conforms(
        &doc,
        answer_schema(&doc, "post", "/v1/results", 200),
        &reported,
        "results",
    )
    .unwrap();

    // A batch run by two volunteers, then every JSON answer a submitter, an operator or
    // anyone reads.
    let manifest = hashchain_batch(grid.dir.path(), 3, 1_000, 60);
    let batch = grid.submit(&manifest).await;
    let volunteers = [grid.runner("bob", 2), grid.runner("carol", 2)];
    grid.wait_for(&batch, |s| s.done()).await;
    let paid = http
        .post(format!("{}/v1/payouts", grid.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "threshold": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let paid: Value = paid.json().await.unwrap();
    assert!(!paid["payouts"].as_array().unwrap().is_empty(), "{paid}");
    conforms(
        &doc,
        answer_schema(&doc, "post", "/v1/payouts", 200),
        &paid,
        "payout",
    )
    .unwrap();

    let runner = client.runner_id();
    let reads = [
        ("/health", None),
        ("/v1/dashboard", Some(&grid.token)),
        ("/v1/dashboard", None),
        ("/v1/runners", None),
        ("/v1/owners", None),
        ("/v1/credits?by=runner", None),
        ("/v1/payouts", None),
        ("/v1/ledger", Some(&admin)),
        (&format!("/v1/runners/{runner}/events"), Some(&admin)),
        ("/v1/batches", Some(&grid.token)),
        (&format!("/v1/batches/{batch}"), Some(&grid.token)),
        (&format!("/v1/batches/{batch}/results"), Some(&grid.token)),
    ];
    let mut answers = Vec::new();
    for (uri, token) in reads {
        let mut request = http.get(format!("{}{uri}", grid.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 200, "{uri}");
        let value: Value = answer.json().await.unwrap();
        let route = uri
            .split('?')
            .next()
            .unwrap()
            .replace(&batch, "{id}")
            .replace(&runner, "{id}");
        let schema = answer_schema(&doc, "get", &route, 200);
        conforms(&doc, schema, &value, uri).unwrap_or_else(|e| panic!("{e}"));
        answers.push((schema.clone(), value));
    }
    let (results_schema, results) = answers.pop().unwrap();
    assert_eq!(results["tasks"].as_array().unwrap().len(), 3, "{results}");

    // The check has teeth: an answer with a field the schema lacks, without one it requires,
    // or with a value of the wrong type is refused.
    let mut extra = results.clone();
    extra["tasks"][0]["result"]["surprise"] = 1.into();
    let e = conforms(&doc, &results_schema, &extra, "results").unwrap_err();
    assert!(e.contains("surprise"), "{e}");
    let mut lacking = results.clone();
    lacking["tasks"][1]["result"]
        .as_object_mut()
        .unwrap()
        .remove("digest");
    let e = conforms(&doc, &results_schema, &lacking, "results").unwrap_err();
    assert!(e.contains("digest"), "{e}");
    let mut wrong = results.clone();
    wrong["tasks"][2]["result"]["fuel_consumed"] = "many".into();
    let e = conforms(&doc, &results_schema, &wrong, "results").unwrap_err();
    assert!(e.contains("fuel_consumed"), "{e}");
    let mut outcome = results;
    outcome["tasks"][0]["result"]["outcome"] = "finished".into();
    let e = conforms(&doc, &results_schema, &outcome, "results").unwrap_err();
    assert!(e.contains("oneOf"), "{e}");

    for (stop, task) in volunteers {
        stop.send(helio_runner::agent::Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }
    grid.stop().await;
}
