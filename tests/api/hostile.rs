//! Hostile input, table-driven: every case gets the contract's answer (a plain HTTP 400/405/413
//! for transport problems, a GraphQL error with the right `extensions.code` otherwise), within
//! a bound, without changing anything it should not; afterwards the server is healthy.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

/// Longest any single hostile request may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

enum Req {
    /// `POST /graphql` with this content type (none if empty) and body, no token.
    Raw {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// `POST /graphql` of `{query, variables}` with this `Authorization` header, if any.
    Gql {
        auth: Option<String>,
        query: String,
        variables: Value,
    },
    /// Any method on a path, no body.
    Bare {
        method: reqwest::Method,
        path: String,
        auth: Option<String>,
    },
}

enum Expect {
    /// A plain HTTP answer with this status.
    Status(u16),
    /// One of these HTTP statuses.
    StatusIn(&'static [u16]),
    /// HTTP 200 and a GraphQL error with this code.
    Code(&'static str),
    /// HTTP 200 and no error at all (for a batch: in none of its answers).
    Data,
}

struct Case {
    what: String,
    req: Req,
    expect: Expect,
}

fn gql(
    what: impl Into<String>,
    auth: Option<&str>,
    query: impl Into<String>,
    variables: Value,
    expect: Expect,
) -> Case {
    Case {
        what: what.into(),
        req: Req::Gql {
            auth: auth.map(|t| format!("Bearer {t}")),
            query: query.into(),
            variables,
        },
        expect,
    }
}

fn raw(
    what: impl Into<String>,
    content_type: &'static str,
    body: impl Into<Vec<u8>>,
    expect: Expect,
) -> Case {
    Case {
        what: what.into(),
        req: Req::Raw {
            content_type,
            body: body.into(),
        },
        expect,
    }
}

const AUDIENCE: &str = "onsale-hostile-test";
const ISSUER: &str = "https://login.example";

/// A good token for the app of the hostile table (audience and issuer set).
fn token(sub: &str, admin: bool) -> String {
    sign(
        &json!({"sub": sub, "exp": now() + 3600, "role": admin.then_some("admin"), "aud": AUDIENCE, "iss": ISSUER}),
        JWT_SECRET,
    )
}

/// Creates a one-row event of `seats` seats with `admin`'s token; returns its id and seat ids.
async fn create_event_as(app: &TestApp, admin: &str, seats: usize) -> (String, Vec<String>) {
    let body = app
        .gql(
            Some(admin),
            CREATE_EVENT,
            event_input("Night", "Main", "A", json!(seats), json!(1000)),
        )
        .await;
    let event_id = data(&body, "createEvent")["id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let ids = app.seat_map(&event_id).await["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| s["id"].as_str().expect("seat id").to_owned())
        .collect();
    (event_id, ids)
}

const CREATE_EVENT: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id name venue startsAt seatCount } }";
const HOLD_BEST: &str = "mutation($e: ID!, $c: Int!, $s: String) { holdBestAvailable(eventId: $e, count: $c, section: $s) { id } }";
const CANCEL_BOOKING: &str = "mutation($b: ID!) { cancelBooking(bookingId: $b) { id status } }";
const SEAT_MAP: &str = "query($e: ID!) { seatMap(eventId: $e) { seq } }";

/// A one-row event for `createEvent`, with the given name, section, row label, seats, price.
fn event_input(name: &str, section: &str, label: &str, seats: Value, price: Value) -> Value {
    json!({"input": {
        "name": name,
        "venue": "Hall",
        "startsAt": "2030-01-01T20:00:00Z",
        "sections": [{"name": section, "rows": [{"label": label, "seats": seats, "priceCents": price}]}]
    }})
}

/// Sends one case and returns (HTTP status, JSON body or the text as a string, time taken).
async fn send(app: &TestApp, req: &Req) -> (u16, Value, Duration) {
    let url = format!("{}/graphql", app.base);
    let started = Instant::now();
    let request = match req {
        Req::Raw { content_type, body } => {
            let mut r = app.client.post(&url).body(body.clone());
            if !content_type.is_empty() {
                r = r.header("content-type", *content_type);
            }
            r
        }
        Req::Gql {
            auth,
            query,
            variables,
        } => {
            let mut r = app
                .client
                .post(&url)
                .json(&json!({"query": query, "variables": variables}));
            if let Some(auth) = auth {
                r = r.header("authorization", auth);
            }
            r
        }
        Req::Bare { method, path, auth } => {
            let mut r = app
                .client
                .request(method.clone(), format!("{}{path}", app.base));
            if let Some(auth) = auth {
                r = r.header("authorization", auth);
            }
            r
        }
    };
    let resp = tokio::time::timeout(ANSWER_WITHIN, request.send())
        .await
        .expect("answered in time")
        .expect("an HTTP answer, not a dropped connection");
    let status = resp.status().as_u16();
    let text = tokio::time::timeout(ANSWER_WITHIN, resp.text())
        .await
        .expect("body in time")
        .expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, started.elapsed())
}

/// Every error in a GraphQL answer (single or batch) carries one of the contract's codes and,
/// for INTERNAL, no internals.
fn errors_are_well_formed(body: &Value) -> Result<(), String> {
    let answers: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for answer in answers {
        for err in answer["errors"].as_array().into_iter().flatten() {
            let code = err["extensions"]["code"].as_str().unwrap_or("<none>");
            if !CODES.contains(&code) {
                return Err(format!("an error without a contract code ({code}): {err}"));
            }
            if code == "INTERNAL" && err["message"] != "internal error" {
                return Err(format!("INTERNAL with details: {err}"));
            }
        }
    }
    Ok(())
}

/// Checks one answer against the expectation; `Err` says what was wrong.
fn check(expect: &Expect, status: u16, body: &Value) -> Result<(), String> {
    if status >= 500 {
        return Err(format!("HTTP {status}"));
    }
    let short = || {
        let text = body.to_string();
        text.chars().take(300).collect::<String>()
    };
    match expect {
        Expect::Status(want) if status != *want => {
            Err(format!("HTTP {status}, want {want}: {}", short()))
        }
        Expect::StatusIn(want) if !want.contains(&status) => {
            Err(format!("HTTP {status}, want one of {want:?}: {}", short()))
        }
        Expect::Status(_) | Expect::StatusIn(_) => Ok(()),
        Expect::Code(want) => {
            if status != 200 {
                return Err(format!("HTTP {status}, want 200 with {want}: {}", short()));
            }
            errors_are_well_formed(body)?;
            match error_code(body) {
                Some(code) if code == *want => Ok(()),
                other => Err(format!("code {other:?}, want {want}: {}", short())),
            }
        }
        Expect::Data => {
            if status != 200 {
                return Err(format!("HTTP {status}, want 200: {}", short()));
            }
            errors_are_well_formed(body)?;
            let answers: Vec<&Value> = match body {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            if answers
                .iter()
                .any(|a| !a["errors"].is_null() || a["data"].is_null())
            {
                return Err(format!("errors, want data: {}", short()));
            }
            Ok(())
        }
    }
}

/// Runs every case; panics listing every case answered wrongly.
async fn run_table(app: &TestApp, cases: &[Case]) {
    let mut wrong = Vec::new();
    let mut slowest = (Duration::ZERO, "");
    for case in cases {
        let (status, body, took) = send(app, &case.req).await;
        if took > slowest.0 {
            slowest = (took, &case.what);
        }
        if let Err(problem) = check(&case.expect, status, &body) {
            wrong.push(format!("{}: {problem}", case.what));
        }
    }
    println!(
        "{} hostile cases; slowest {:?} ({})",
        cases.len(),
        slowest.0,
        slowest.1
    );
    assert!(
        wrong.is_empty(),
        "answered wrongly:\n  {}",
        wrong.join("\n  ")
    );
}

/// Transport-level abuse: bodies that are not GraphQL JSON, too big, too deep; methods and
/// content types the endpoint does not take; batches.
fn transport_cases() -> Vec<Case> {
    let deep_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!(
        "{{\"query\": \"{{ events {{ id }} }}\", \"variables\": {{\"x\": {}1{}}}}}",
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    let over_limit = format!(
        "{{\"query\": \"{{ events {{ id }} }}\", \"variables\": {{\"pad\": \"{}\"}}}}",
        "x".repeat((1 << 20) + 1)
    );
    let padded = format!(
        "{}{{\"query\": \"{{ events {{ id }} }}\"}}",
        " ".repeat(900_000)
    );
    let valid = br#"{"query": "{ events { id } }"}"#.to_vec();
    let many_keys: String = (0..50_000).map(|i| format!("\"k{i}\": {i},")).collect();
    let wide_variables = format!(
        "{{\"query\": \"{{ events {{ id }} }}\", \"variables\": {{{many_keys} \"end\": 0}}}}"
    );
    let batch_of_two = json!([
        {"query": "{ events { id } }"},
        {"query": "query($e: ID!) { event(id: $e) { id } }", "variables": {"e": "1"}}
    ]);
    vec![
        raw("truncated JSON", "application/json", &b"{\"query\": "[..], Expect::Status(400)),
        raw("not JSON at all", "application/json", &b"hello"[..], Expect::Status(400)),
        raw("empty body", "application/json", Vec::new(), Expect::Status(400)),
        raw("JSON null", "application/json", &b"null"[..], Expect::Status(400)),
        raw("a JSON string", "application/json", &b"\"{ events { id } }\""[..], Expect::Status(400)),
        raw("query is a number", "application/json", &b"{\"query\": 5}"[..], Expect::Status(400)),
        raw(
            "variables is a string",
            "application/json",
            &br#"{"query": "{ events { id } }", "variables": "x"}"#[..],
            Expect::Status(400),
        ),
        raw(
            "variables is a list",
            "application/json",
            &br#"{"query": "{ events { id } }", "variables": [1]}"#[..],
            Expect::Status(400),
        ),
        raw("JSON nested 100k deep (arrays)", "application/json", deep_arrays, Expect::Status(400)),
        raw("JSON nested 100k deep (objects)", "application/json", deep_objects, Expect::Status(400)),
        raw(
            "lone UTF-16 surrogate in a string",
            "application/json",
            &br#"{"query": "query($s: String) { events { id } }", "variables": {"s": "\ud800"}}"#[..],
            Expect::Status(400),
        ),
        raw(
            "invalid UTF-8",
            "application/json",
            &b"{\"query\": \"{ events { id } }\xff\xfe\"}"[..],
            Expect::Status(400),
        ),
        raw("body over 1 MiB", "application/json", over_limit, Expect::Status(413)),
        raw("900 KB of whitespace, then a query", "application/json", padded, Expect::Data),
        raw("50,000 unused variables", "application/json", wide_variables, Expect::Data),
        raw("a batch of two", "application/json", batch_of_two.to_string(), Expect::Data),
        raw("an empty batch", "application/json", &b"[]"[..], Expect::Code("BAD_USER_INPUT")),
        // The body is JSON whatever the header says; a server may also refuse it (415).
        raw("text/plain", "text/plain", valid.clone(), Expect::StatusIn(&[200, 415])),
        raw("no content type", "", valid, Expect::StatusIn(&[200, 415])),
        raw(
            "a form",
            "application/x-www-form-urlencoded",
            &b"query=%7B+events+%7B+id+%7D+%7D"[..],
            Expect::StatusIn(&[400, 415]),
        ),
        raw(
            "multipart",
            "multipart/form-data; boundary=x",
            &b"--x\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n{ events { id } }\r\n--x--\r\n"[..],
            Expect::StatusIn(&[400, 415]),
        ),
        Case {
            what: "PUT /graphql".into(),
            req: Req::Bare { method: reqwest::Method::PUT, path: "/graphql".into(), auth: None },
            expect: Expect::Status(405),
        },
        Case {
            what: "DELETE /graphql".into(),
            req: Req::Bare { method: reqwest::Method::DELETE, path: "/graphql".into(), auth: None },
            expect: Expect::Status(405),
        },
        // GET serves GraphiQL (or could run a read-only query); never a mutation: see below.
        Case {
            what: "GET /graphql with a query string".into(),
            req: Req::Bare {
                method: reqwest::Method::GET,
                path: "/graphql?query=%7B%20events%20%7B%20id%20%7D%20%7D".into(),
                auth: None,
            },
            expect: Expect::StatusIn(&[200, 400, 405]),
        },
    ]
}

/// Queries that are too deep, too wide or malformed in GraphQL itself.
fn query_shape_cases() -> Vec<Case> {
    let deep_selection = format!(
        "{{{} id{}}}",
        " events {".repeat(10_000),
        " }".repeat(10_000)
    );
    let deep_braces = format!("{}{}", "{".repeat(100_000), "}".repeat(100_000));
    let deep_list = format!(
        "{{ seatMap(eventId: {}\"1\"{}) {{ seq }} }}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let deep_object = format!(
        "mutation {{ createEvent(input: {}1{}) {{ id }} }}",
        "{a: ".repeat(20_000),
        "}".repeat(20_000)
    );
    let type_chain = (0..20).fold("name".to_owned(), |inner, _| {
        format!("name ofType {{ {inner} }}")
    });
    let deep_introspection =
        format!("{{ __schema {{ types {{ fields {{ type {{ {type_chain} }} }} }} }} }}");
    let aliased_events: String = (0..3_000)
        .map(|i| format!("a{i}: events {{ id }} "))
        .collect();
    let aliased_names: String = (0..20_000).map(|i| format!("n{i}: name ")).collect();
    let spreads = "...F ".repeat(10_000);
    let directives = "@skip(if: false) ".repeat(1_000);
    let variables: String = (0..5_000).map(|i| format!("$v{i}: Int ")).collect();
    vec![
        gql(
            "syntax error",
            None,
            "{ events { id ",
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "unknown field",
            None,
            "{ nope }",
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "selection nested 10,000 deep",
            None,
            deep_selection,
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "braces nested 100,000 deep",
            None,
            deep_braces,
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "list literal nested 50,000 deep",
            None,
            deep_list,
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "object literal nested 20,000 deep",
            None,
            deep_object,
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "introspection 24 levels deep",
            None,
            deep_introspection,
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "3,000 aliases of events",
            None,
            format!("{{ {aliased_events} }}"),
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "20,000 aliased fields",
            None,
            format!("{{ events {{ {aliased_names} }} }}"),
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "10,000 fragment spreads",
            None,
            format!("{{ events {{ id {spreads} }} }} fragment F on Event {{ name }}"),
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "fragment cycle",
            None,
            "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "1,000 directives",
            None,
            format!("{{ events {directives} {{ id }} }}"),
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "5,000 variable definitions",
            None,
            format!("query({variables}) {{ events {{ id }} }}"),
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "two operations, no operationName",
            None,
            "query A { events { id } } query B { events { id } }",
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "a variable of the wrong type",
            None,
            SEAT_MAP,
            json!({"e": {"id": 1}}),
            Expect::Code("BAD_USER_INPUT"),
        ),
        gql(
            "an unknown enum value",
            None,
            "{ myHolds(status: BOGUS) { id } }",
            json!({}),
            Expect::Code("BAD_USER_INPUT"),
        ),
    ]
}

both_backends!(hostile_input_table, |backend| async move {
    // Production-like tokens: audience and issuer required; no rate limit, so that the
    // many mutations of the table get their own answers rather than RETRY_LATER.
    let app = TestApp::spawn_with(
        backend,
        Options::default()
            .set("JWT_AUDIENCE", AUDIENCE)
            .set("JWT_ISSUER", ISSUER)
            .set("RATE_LIMIT_USER_PER_SEC", 0),
    )
    .await;
    let alice = token("alice", false);
    let mallory = token("mallory", false);
    let admin = token("admin", true);
    let (event_id, seats) = create_event_as(&app, &admin, 5).await;
    let (other_event, _) = create_event_as(&app, &admin, 2).await;
    let e = event_id.as_str();

    // Alice holds seat 0 and books seat 1: what mallory will go after.
    let body = app.hold_seats(&alice, e, &[&seats[0]]).await;
    let alice_hold = data(&body, "holdSeats")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let body = app.hold_seats(&alice, e, &[&seats[1]]).await;
    let to_book = data(&body, "holdSeats")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let body = app
        .gql(Some(&alice), CONFIRM_HOLD, json!({"h": to_book}))
        .await;
    let alice_booking = data(&body, "confirmHold")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let mut cases = transport_cases();
    cases.extend(query_shape_cases());

    // Numbers out of range.
    let best = |c: Value| json!({"e": e, "c": c});
    for (what, count) in [
        ("count 2^31 (Int overflow)", json!(2_147_483_648_i64)),
        ("count -2^31 - 1", json!(-2_147_483_649_i64)),
        ("count 2^63", json!(9_223_372_036_854_775_808_u64)),
        ("count -1", json!(-1)),
        ("count 0", json!(0)),
        ("count 2^31 - 1", json!(i32::MAX)),
        ("count 1.5", json!(1.5)),
        ("count 1e300", json!(1e300)),
        ("count as a string", json!("2")),
    ] {
        cases.push(gql(
            what,
            Some(&alice),
            HOLD_BEST,
            best(count),
            Expect::Code("BAD_USER_INPUT"),
        ));
    }
    cases.push(gql(
        "count 2^31 as a literal",
        Some(&alice),
        format!("mutation {{ holdBestAvailable(eventId: \"{e}\", count: 2147483648) {{ id }} }}"),
        json!({}),
        Expect::Code("BAD_USER_INPUT"),
    ));
    for (what, seats_in_row, price) in [
        ("priceCents negative", json!(1), json!(-1)),
        ("priceCents -2^31", json!(1), json!(i32::MIN)),
        (
            "priceCents 2^31 (Int overflow)",
            json!(1),
            json!(2_147_483_648_i64),
        ),
        (
            "priceCents 2^31 - 1 (over the price cap)",
            json!(1),
            json!(i32::MAX),
        ),
        ("seats 0", json!(0), json!(100)),
        ("seats negative", json!(-5), json!(100)),
        ("seats 2^31 - 1", json!(i32::MAX), json!(100)),
        (
            "seats 2^31 (Int overflow)",
            json!(2_147_483_648_i64),
            json!(100),
        ),
    ] {
        cases.push(gql(
            what,
            Some(&admin),
            CREATE_EVENT,
            event_input("Numbers", "Main", "A", seats_in_row, price),
            Expect::Code("BAD_USER_INPUT"),
        ));
    }
    for (what, id) in [
        ("event id -1", "-1"),
        ("event id 0", "0"),
        ("event id 2^63 - 1", "9223372036854775807"),
        ("event id 2^63", "9223372036854775808"),
        ("event id 1e3", "1e3"),
        ("event id empty", ""),
        ("event id of full-width digits", "１２"),
        ("event id with a NUL", "1\u{0}"),
    ] {
        cases.push(gql(
            what,
            None,
            SEAT_MAP,
            json!({"e": id}),
            Expect::Code("NOT_FOUND"),
        ));
    }

    // Huge and odd seat id lists.
    let many: Vec<String> = (1..=10_000).map(|i| i.to_string()).collect();
    let hold = |s: Value| json!({"e": e, "s": s});
    for (what, list, code) in [
        ("10,000 seat ids", json!(many), "BAD_USER_INPUT"),
        (
            "10,000 copies of one seat id",
            json!(vec![seats[2].clone(); 10_000]),
            "BAD_USER_INPUT",
        ),
        (
            "80,000 seat ids",
            json!(vec!["1"; 80_000]),
            "BAD_USER_INPUT",
        ),
        ("seat id 2^63", json!(["9223372036854775808"]), "NOT_FOUND"),
        ("seat id -1", json!(["-1"]), "NOT_FOUND"),
        ("seat ids null", Value::Null, "BAD_USER_INPUT"),
        ("a null seat id", json!([null]), "BAD_USER_INPUT"),
        (
            "nested seat id lists",
            json!([[seats[2]]]),
            "BAD_USER_INPUT",
        ),
    ] {
        cases.push(gql(
            what,
            Some(&alice),
            HOLD_SEATS,
            hold(list),
            Expect::Code(code),
        ));
    }
    cases.push(gql(
        "a 10 KB idempotency key",
        Some(&alice),
        HOLD_SEATS,
        json!({"e": e, "s": [seats[2]], "k": "k".repeat(10_000)}),
        Expect::Code("BAD_USER_INPUT"),
    ));
    cases.push(gql(
        "an idempotency key with a NUL",
        Some(&alice),
        HOLD_SEATS,
        json!({"e": e, "s": [seats[2]], "k": "a\u{0}b"}),
        Expect::Code("BAD_USER_INPUT"),
    ));

    // Unicode and control characters in what an admin types.
    for (what, name, section, label) in [
        ("NUL in the name", "Night\u{0}", "Main", "A"),
        ("a newline in the name", "Night\nTwo", "Main", "A"),
        ("a tab in the name", "Night\tTwo", "Main", "A"),
        ("BEL in the name", "Night\u{7}", "Main", "A"),
        ("DEL in the name", "Night\u{7f}", "Main", "A"),
        ("a C1 control (NEL) in the name", "Ni\u{85}ght", "Main", "A"),
        ("ESC sequence in the name", "\u{1b}[31mred", "Main", "A"),
        ("NUL in the section", "Night", "Ma\u{0}in", "A"),
        (
            "a control character in the row label",
            "Night",
            "Main",
            "A\u{8}",
        ),
        ("a blank name", " \u{3000} ", "Main", "A"),
        ("a name of 201 characters", &"n".repeat(201), "Main", "A"),
        (
            "a section of 101 characters",
            "Night",
            &"s".repeat(101),
            "A",
        ),
    ] {
        cases.push(gql(
            what,
            Some(&admin),
            CREATE_EVENT,
            event_input(name, section, label, json!(2), json!(100)),
            Expect::Code("BAD_USER_INPUT"),
        ));
    }
    cases.push(gql(
        "startsAt that is not a date",
        Some(&admin),
        CREATE_EVENT,
        json!({"input": {"name": "x", "venue": "v", "startsAt": "tomorrow", "sections": []}}),
        Expect::Code("BAD_USER_INPUT"),
    ));
    cases.push(gql(
        "createEvent by a customer",
        Some(&alice),
        CREATE_EVENT,
        event_input("Mine", "Main", "A", json!(1), json!(100)),
        Expect::Code("FORBIDDEN"),
    ));
    cases.push(gql(
        "createEvent without a token",
        None,
        CREATE_EVENT,
        event_input("Mine", "Main", "A", json!(1), json!(100)),
        Expect::Code("UNAUTHENTICATED"),
    ));

    // Tokens that must not let anyone in. Each differs from a good token in one way only.
    let good =
        json!({"sub": "eve", "exp": now() + 3600, "role": "admin", "aud": AUDIENCE, "iss": ISSUER});
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let without = |key: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().expect("claims").remove(key);
        claims
    };
    let header = |h: &str| URL_SAFE_NO_PAD.encode(h);
    let encoded = |c: &Value| URL_SAFE_NO_PAD.encode(c.to_string());
    let alg_none = format!(
        "{}.{}.",
        header(r#"{"alg":"none","typ":"JWT"}"#),
        encoded(&good)
    );
    let alg_none_cased = format!(
        "{}.{}.",
        header(r#"{"alg":"None","typ":"JWT"}"#),
        encoded(&good)
    );
    let alice_signature = alice.rsplit('.').next().expect("signature").to_owned();
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign");
    let tokens = [
        ("forged signature", sign(&good, "not-the-secret-0123456789")),
        ("alg none", alg_none.clone()),
        ("alg None", alg_none_cased),
        ("HS512 instead of HS256", hs512),
        (
            "another token's signature on new claims",
            format!(
                "{}.{}.{alice_signature}",
                header(r#"{"alg":"HS256","typ":"JWT"}"#),
                encoded(&good)
            ),
        ),
        (
            "expired two minutes ago",
            sign(&with("exp", json!(now() - 120)), JWT_SECRET),
        ),
        ("no exp", sign(&without("exp"), JWT_SECRET)),
        (
            "exp as a string",
            sign(&with("exp", json!((now() + 3600).to_string())), JWT_SECRET),
        ),
        ("exp 1e300", sign(&with("exp", json!(1e300)), JWT_SECRET)),
        (
            "wrong audience",
            sign(&with("aud", json!("some-other-service")), JWT_SECRET),
        ),
        ("no audience", sign(&without("aud"), JWT_SECRET)),
        (
            "audience list without ours",
            sign(&with("aud", json!(["a", "b"])), JWT_SECRET),
        ),
        (
            "wrong issuer",
            sign(&with("iss", json!("https://evil.example")), JWT_SECRET),
        ),
        ("no issuer", sign(&without("iss"), JWT_SECRET)),
        ("no sub", sign(&without("sub"), JWT_SECRET)),
        ("blank sub", sign(&with("sub", json!("  ")), JWT_SECRET)),
        (
            "sub with a NUL",
            sign(&with("sub", json!("eve\u{0}")), JWT_SECRET),
        ),
        (
            "sub of 10,000 characters",
            sign(&with("sub", json!("e".repeat(10_000))), JWT_SECRET),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
        ("three dots", "a.b.c".to_owned()),
        (
            "a valid token cut short",
            alice[..alice.len() - 3].to_owned(),
        ),
    ];
    cases.push(gql(
        "token: a good one (control)",
        Some(&sign(&good, JWT_SECRET)),
        "{ myHolds { id } }",
        json!({}),
        Expect::Data,
    ));
    for (what, token) in &tokens {
        cases.push(gql(
            format!("token: {what}"),
            Some(token),
            HOLD_SEATS,
            hold(json!([seats[2]])),
            Expect::Code("UNAUTHENTICATED"),
        ));
    }
    cases.push(gql(
        "token: alg none claiming admin, on createEvent",
        Some(&alg_none),
        CREATE_EVENT,
        event_input("Forged", "Main", "A", json!(1), json!(100)),
        Expect::Code("UNAUTHENTICATED"),
    ));
    for (what, auth) in [
        ("Basic credentials", "Basic YWxpY2U6c2VjcmV0"),
        ("Bearer and nothing", "Bearer "),
        ("a token without the Bearer scheme", alice.as_str()),
    ] {
        cases.push(Case {
            what: format!("authorization: {what}"),
            req: Req::Gql {
                auth: Some(auth.to_owned()),
                query: HOLD_SEATS.to_owned(),
                variables: hold(json!([seats[2]])),
            },
            expect: Expect::Code("UNAUTHENTICATED"),
        });
    }

    // Other people's holds and bookings.
    cases.push(gql(
        "confirm someone else's hold",
        Some(&mallory),
        CONFIRM_HOLD,
        json!({"h": alice_hold}),
        Expect::Code("FORBIDDEN"),
    ));
    cases.push(gql(
        "release someone else's hold",
        Some(&mallory),
        RELEASE_HOLD,
        json!({"h": alice_hold}),
        Expect::Code("FORBIDDEN"),
    ));
    cases.push(gql(
        "read someone else's hold",
        Some(&mallory),
        "query($id: ID!) { hold(id: $id) { id seats { id } } }",
        json!({"id": alice_hold}),
        Expect::Code("FORBIDDEN"),
    ));
    cases.push(gql(
        "cancel someone else's booking",
        Some(&mallory),
        CANCEL_BOOKING,
        json!({"b": alice_booking}),
        Expect::Code("FORBIDDEN"),
    ));
    cases.push(gql(
        "confirm a booking id as a hold id",
        Some(&mallory),
        CONFIRM_HOLD,
        json!({"h": alice_booking}),
        Expect::Code("NOT_FOUND"),
    ));
    cases.push(gql(
        "cancel a hold id as a booking id",
        Some(&alice),
        CANCEL_BOOKING,
        json!({"b": alice_hold}),
        Expect::Code("NOT_FOUND"),
    ));
    // A mutation sent with GET must never run.
    let get_mutation = format!(
        "/graphql?query={}",
        url_encode(&format!(
            "mutation {{ holdSeats(eventId: \"{e}\", seatIds: [\"{}\"]) {{ id }} }}",
            seats[3]
        ))
    );
    cases.push(Case {
        what: "GET /graphql with a mutation".into(),
        req: Req::Bare {
            method: reqwest::Method::GET,
            path: get_mutation,
            auth: Some(format!("Bearer {mallory}")),
        },
        expect: Expect::StatusIn(&[200, 400, 405]),
    });

    run_table(&app, &cases).await;

    // Nothing above changed anything: alice's hold and booking stand, every other seat is free.
    let statuses = app.seat_statuses(e).await;
    let expected: Vec<&str> = vec!["HELD", "BOOKED", "AVAILABLE", "AVAILABLE", "AVAILABLE"];
    let got: Vec<&str> = seats.iter().map(|s| statuses[s].as_str()).collect();
    assert_eq!(got, expected);
    assert_eq!(app.seat_map(&other_event).await["event"]["available"], 2);
    let body = app
        .gql(
            Some(&alice),
            "query($id: ID!) { hold(id: $id) { status } }",
            json!({"id": alice_hold}),
        )
        .await;
    assert_eq!(data(&body, "hold")["status"], "ACTIVE");
    let body = app
        .gql(Some(&alice), "{ myBookings { id status } }", json!({}))
        .await;
    assert_eq!(
        data(&body, "myBookings"),
        &json!([{"id": alice_booking, "status": "CONFIRMED"}])
    );
    let events = app.gql(None, "{ events { id } }", json!({})).await;
    assert_eq!(
        data(&events, "events").as_array().map(Vec::len),
        Some(2),
        "no event was created"
    );

    // Mallory reusing alice's idempotency key gets a hold of her own, not alice's.
    let body = app
        .gql(
            Some(&alice),
            HOLD_SEATS,
            json!({"e": e, "s": [seats[2]], "k": "shared-key"}),
        )
        .await;
    let alice_keyed = data(&body, "holdSeats")["id"].clone();
    let body = app
        .gql(
            Some(&mallory),
            HOLD_SEATS,
            json!({"e": e, "s": [seats[3]], "k": "shared-key"}),
        )
        .await;
    let mallory_keyed = data(&body, "holdSeats");
    assert_ne!(mallory_keyed["id"], alice_keyed);
    assert_eq!(mallory_keyed["seats"][0]["id"], seats[3].as_str());

    assert_healthy(&app).await;
    app.stop().await;
});

// Names in any script (and emoji, and right-to-left marks) are stored and served exactly, and
// can be used to pick a section.
both_backends!(unicode_names_round_trip, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let name = "Nuit Blanche — 夜 🎭 \u{202e}ɹǝʌo\u{202c} Ω";
    let section = "Parterre Ünïcödé 🎟";
    let body = app
        .gql(
            Some(&app.admin_token()),
            CREATE_EVENT,
            event_input(name, section, "Ряд 1", json!(3), json!(0)),
        )
        .await;
    let event = data(&body, "createEvent");
    assert_eq!(event["name"], name);
    let event_id = event["id"].as_str().expect("id").to_owned();
    let body = app
        .gql(
            None,
            "query($e: ID!, $s: String) { seatMap(eventId: $e, section: $s) { seats { section row } } }",
            json!({"e": event_id, "s": section}),
        )
        .await;
    let seats = data(&body, "seatMap")["seats"]
        .as_array()
        .expect("seats")
        .clone();
    assert_eq!(seats.len(), 3);
    assert_eq!(seats[0], json!({"section": section, "row": "Ряд 1"}));
    let body = app
        .gql(
            Some(&app.token("ünïcode-üser-名前")),
            HOLD_BEST,
            json!({"e": event_id, "c": 2, "s": section}),
        )
        .await;
    assert!(data(&body, "holdBestAvailable")["id"].is_string());
    // 200 four-byte characters is within the 200-character limit.
    let body = app
        .gql(
            Some(&app.admin_token()),
            CREATE_EVENT,
            event_input(&"🎭".repeat(200), "Main", "A", json!(1), json!(0)),
        )
        .await;
    assert_eq!(data(&body, "createEvent")["name"], "🎭".repeat(200));
    assert_healthy(&app).await;
    app.stop().await;
});

/// WebSocket abuse: garbage frames, a frame over the limit, subscribing before
/// `connection_init`, and invalid subscriptions. The socket may be closed; the server stays up
/// and errors it sends carry the contract's codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_hostile_frames() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let url = format!("{}/graphql/ws", app.base.replace("http://", "ws://"));
    let connect = || async {
        let mut request = url.as_str().into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connect")
            .0
    };
    let frames: Vec<(&str, Message)> = vec![
        ("garbage text", Message::Text("}{ not json".into())),
        ("binary junk", Message::Binary(vec![0xff; 1024].into())),
        (
            "a frame over the 1 MiB message limit",
            Message::Text(format!("{{\"type\":\"connection_init\",\"payload\":{{\"x\":\"{}\"}}}}", "x".repeat(1_100_000)).into()),
        ),
        (
            "subscribe before connection_init",
            Message::Text(json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { seatChanges(eventId: \"1\") { seq } }"}}).to_string().into()),
        ),
        ("JSON nested 100k deep", Message::Text(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into())),
    ];
    for (what, frame) in frames {
        let mut socket = connect().await;
        let _ = socket.send(frame).await;
        // The server answers by closing (or with an error); it must not hang the socket open
        // forever on junk, and must not fall over.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(msg) = socket.next().await {
                match msg {
                    Ok(Message::Close(_)) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
            true
        })
        .await
        .unwrap_or(false);
        assert!(closed, "{what}: the server closes the socket");
    }

    // Subscriptions the service refuses get GraphQL errors with contract codes.
    for (what, query, code) in [
        (
            "negative afterSeq",
            "subscription($e: ID!) { seatChanges(eventId: $e, afterSeq: -1) { seq } }",
            "BAD_USER_INPUT",
        ),
        (
            "afterSeq ahead of the log",
            "subscription($e: ID!) { seatChanges(eventId: $e, afterSeq: 2147483647) { seq } }",
            "BAD_USER_INPUT",
        ),
        (
            "unknown event",
            "subscription { seatChanges(eventId: \"9223372036854775807\") { seq } }",
            "NOT_FOUND",
        ),
    ] {
        assert_eq!(
            subscription_error_code(&app, query, json!({"e": event_id})).await,
            code,
            "{what}"
        );
    }
    // A forged token in connection_init does not stop public reads, and grants nothing.
    let mut sub = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        json!({"Authorization": "Bearer forged.token.here"}),
        "subscription($e: ID!) { seatChanges(eventId: $e) { seatId status seq } }",
        json!({"e": event_id}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.hold_seats(&app.token("alice"), &event_id, &[&seats[0]])
        .await;
    assert_eq!(sub.next_change(Duration::from_secs(2)).await["seq"], 1);
    sub.close().await;
    assert_healthy(&app).await;
    app.stop().await;
}

/// Subscribes over `graphql-transport-ws` and returns the code of the error that comes back.
async fn subscription_error_code(app: &TestApp, query: &str, variables: Value) -> String {
    let mut sub = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        json!({}),
        query,
        variables,
    )
    .await;
    let payload = sub
        .next(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("an error for {query}"));
    sub.close().await;
    payload["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no extensions.code: {payload}"))
        .to_owned()
}

/// Percent-encodes a query string value.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- cases that once found server bugs (fixed) ----

/// Complexity counts a `seatMap` as a handful of fields whatever its size, so one small query
/// can ask for the same seat map a thousand times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aliased_seat_maps_are_refused() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, _) = app.create_event(10, 40).await;
    let aliases: String = (0..1_000)
        .map(|i| format!("m{i}: seatMap(eventId: \"{event_id}\") {{ seats {{ id status }} }} "))
        .collect();
    let started = Instant::now();
    let (status, body) = app
        .post(None, &json!({"query": format!("{{ {aliases} }}")}))
        .await;
    let maps = body["data"]
        .as_object()
        .map_or(0, |m| m.values().filter(|v| !v.is_null()).count());
    let errors = body["errors"].as_array().map_or(0, Vec::len);
    println!(
        "1,000 aliased seat maps answered in {:?}: {maps} maps, {errors} errors (first: {})",
        started.elapsed(),
        body["errors"][0]
    );
    assert_eq!(status, 200);
    assert_eq!(
        error_code(&body).as_deref(),
        Some("BAD_USER_INPUT"),
        "refused as too complex"
    );
    assert_healthy(&app).await;
    app.stop().await;
}

/// A JSON array of operations is a batch; each operation passes the limits on its own, so
/// without a cap on the batch one request runs them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_of_a_thousand_operations_is_refused() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, seats) = app.create_event(10, 100).await;
    let mallory = app.token("mallory");
    let batch: Vec<Value> = seats
        .iter()
        .map(|s| json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [s]}}))
        .collect();
    let (status, body) = {
        let resp = app
            .client
            .post(format!("{}/graphql", app.base))
            .bearer_auth(&mallory)
            .json(&batch)
            .send()
            .await
            .expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let refused = (status == 400 || status == 413)
        || (status == 200 && error_code(&body).as_deref() == Some("BAD_USER_INPUT"));
    assert!(
        refused,
        "HTTP {status}: {}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert_eq!(
        app.seat_map(&event_id).await["event"]["held"],
        0,
        "none of it ran"
    );
    assert_healthy(&app).await;
    app.stop().await;
}

/// PostgreSQL text cannot hold NUL; a section name with one reaches the database unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nul_in_a_section_filter_is_bad_input() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let app = TestApp::spawn(backend).await;
        let (event_id, _) = app.create_event(1, 3).await;
        let body = app
            .gql(
                Some(&app.token("alice")),
                HOLD_BEST,
                json!({"e": event_id, "c": 1, "s": "Ma\u{0}in"}),
            )
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT", "{backend:?}: {body}");
        app.stop().await;
    }
}

/// `DateTime` is RFC 3339, which has four-digit years; chrono accepts years up to ±262,143 and
/// the server then serves them back in a form that is not RFC 3339.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_at_outside_rfc3339_years_is_refused() {
    let app = TestApp::spawn(Backend::Postgres).await;
    for starts_at in ["+262142-01-01T00:00:00Z", "-000001-01-01T00:00:00Z"] {
        let body = app
            .gql(
                Some(&app.admin_token()),
                CREATE_EVENT,
                json!({"input": {
                    "name": "Far future",
                    "venue": "Hall",
                    "startsAt": starts_at,
                    "sections": [{"name": "Main", "rows": [{"label": "A", "seats": 1, "priceCents": 0}]}]
                }}),
            )
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT", "{starts_at}: {body}");
    }
    app.stop().await;
}

/// Over HTTP, errors the engine raises without a code (parse, validation, limits) get
/// BAD_USER_INPUT; over WebSocket they reach the client with no `extensions.code` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_validation_errors_carry_codes() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, _) = app.create_event(1, 2).await;
    let deep = format!(
        "subscription {{ seatChanges(eventId: \"1\") {}seq{} }}",
        "{ ".repeat(100),
        " }".repeat(100)
    );
    for (what, query) in [
        ("unknown field", "subscription { nope }".to_owned()),
        ("syntax error", "subscription { seatChanges(".to_owned()),
        (
            "afterSeq Int overflow",
            "subscription($e: ID!) { seatChanges(eventId: $e, afterSeq: 2147483648) { seq } }"
                .to_owned(),
        ),
        ("too deep", deep),
    ] {
        assert_eq!(
            subscription_error_code(&app, &query, json!({"e": event_id})).await,
            "BAD_USER_INPUT",
            "{what}"
        );
    }
    app.stop().await;
}
