//! Methods and status codes of `/{database}/{table}/{id}`, `ETag` / `If-None-Match`, `POST`
//! locations and the body limit.

use std::time::{Duration, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};
use shoal_testkit::{admin, create_table, insert, start, start_with, strip_timestamps};

use crate::answers::{assert_api_error, get_json, ids_of, query, send};

#[tokio::test]
async fn record_methods_and_status_codes() -> anyhow::Result<()> {
    let node = start("rest-methods").await?;
    create_table(&node, "dog").await?;

    // PUT creates (204, no body) and replaces.
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex", "age": 3})))
        .await?;
    assert_eq!(put.status, 204, "PUT new: {:?}", put.text());
    assert!(put.body.is_empty(), "PUT answers without a body");
    let got = get_json(&node, "/dev/dog/1").await?;
    assert_eq!(
        strip_timestamps(&got),
        json!({"name": "Rex", "age": 3, "id": 1})
    );
    let created = got["__createdtime__"].clone();
    assert!(created.is_number(), "timestamps are maintained: {got}");

    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"id": 1, "name": "Rexy"})))
        .await?;
    assert_eq!(put.status, 204, "PUT replace: {:?}", put.text());
    let got = get_json(&node, "/dev/dog/1").await?;
    assert_eq!(
        strip_timestamps(&got),
        json!({"id": 1, "name": "Rexy"}),
        "PUT replaces the whole record (age is gone)"
    );
    assert_eq!(
        got["__createdtime__"], created,
        "a replacement keeps the creation time"
    );

    // GET answers JSON with validators.
    let resp = send(admin(&node, Method::GET, "/dev/dog/1")).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.mime(), "application/json");
    assert!(resp.header("etag").is_some(), "GET has an ETag");
    assert!(
        resp.header("last-modified").is_some(),
        "GET has Last-Modified"
    );

    // A string id.
    let put = send(admin(&node, Method::PUT, "/dev/dog/abc").json(&json!({"name": "Str"}))).await?;
    assert_eq!(put.status, 204);
    assert_eq!(
        strip_timestamps(&get_json(&node, "/dev/dog/abc").await?),
        json!({"name": "Str", "id": "abc"})
    );
    // A percent-encoded id.
    let put =
        send(admin(&node, Method::PUT, "/dev/dog/a%20b").json(&json!({"name": "Sp"}))).await?;
    assert_eq!(put.status, 204);
    assert_eq!(get_json(&node, "/dev/dog/a%20b").await?["id"], json!("a b"));

    // PATCH merges (204); PATCH of a missing record is 404.
    let patch =
        send(admin(&node, Method::PATCH, "/dev/dog/1").json(&json!({"age": 4, "color": "brown"})))
            .await?;
    assert_eq!(patch.status, 204, "PATCH: {:?}", patch.text());
    assert!(patch.body.is_empty());
    assert_eq!(
        strip_timestamps(&get_json(&node, "/dev/dog/1").await?),
        json!({"id": 1, "name": "Rexy", "age": 4, "color": "brown"})
    );
    let patch = send(admin(&node, Method::PATCH, "/dev/dog/999").json(&json!({"age": 4}))).await?;
    assert_api_error(&patch, 404, "PATCH missing");
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/999"))
            .await?
            .status,
        404,
        "PATCH of a missing record must not create it"
    );

    // GET of a missing record: 404 with a JSON error.
    let missing = send(admin(&node, Method::GET, "/dev/dog/2")).await?;
    let message = assert_api_error(&missing, 404, "GET missing");
    assert!(message.contains('2'), "the error names the id: {message}");

    // HEAD: same status and headers, no body.
    let head = send(admin(&node, Method::HEAD, "/dev/dog/1")).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert!(head.header("etag").is_some(), "HEAD has the ETag");
    assert_eq!(head.mime(), "application/json");
    let head = send(admin(&node, Method::HEAD, "/dev/dog/2")).await?;
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty(), "HEAD 404 has no body");
    let head = send(admin(&node, Method::HEAD, "/dev/dog/")).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD of a query has no body");

    // OPTIONS: 204 with Allow, on a record, a collection and a table.
    for path in ["/dev/dog/1", "/dev/dog/", "/dev/dog"] {
        let options = send(admin(&node, Method::OPTIONS, path)).await?;
        assert_eq!(options.status, 204, "OPTIONS {path}");
        let allow = options.header("allow").unwrap_or_default();
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        for method in ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"] {
            assert!(
                allowed.contains(&method),
                "OPTIONS {path}: Allow {allow:?} lacks {method}"
            );
        }
    }

    // DELETE: 204, then 404 for GET and for a second DELETE.
    let delete = send(admin(&node, Method::DELETE, "/dev/dog/abc")).await?;
    assert_eq!(delete.status, 204, "DELETE: {:?}", delete.text());
    assert!(delete.body.is_empty());
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/abc"))
            .await?
            .status,
        404
    );
    let again = send(admin(&node, Method::DELETE, "/dev/dog/abc")).await?;
    assert_api_error(&again, 404, "DELETE deleted");
    let never = send(admin(&node, Method::DELETE, "/dev/dog/nope")).await?;
    assert_api_error(&never, 404, "DELETE missing");
    // A deleted record can be created again.
    let put =
        send(admin(&node, Method::PUT, "/dev/dog/abc").json(&json!({"name": "Back"}))).await?;
    assert_eq!(put.status, 204);
    assert_eq!(
        get_json(&node, "/dev/dog/abc").await?["name"],
        json!("Back")
    );

    // POST creates with a generated id: 201, Location, the id as the body.
    let post = send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"name": "New"}))).await?;
    assert_eq!(post.status, 201, "POST: {:?}", post.text());
    let location = post
        .header("location")
        .expect("POST has a Location")
        .to_owned();
    let id = post.json();
    let id_text = id.as_str().expect("a generated id is a string");
    assert_eq!(location, format!("/dev/dog/{id_text}"));

    // Wrong methods: 405 with a JSON error.
    for (method, path) in [
        (Method::POST, "/dev/dog/1"),
        (Method::PUT, "/dev/dog/"),
        (Method::PATCH, "/dev/dog/"),
        (Method::POST, "/dev/dog"),
        (Method::DELETE, "/dev/dog"),
        (Method::PUT, "/dev/dog"),
    ] {
        let resp = send(admin(&node, method.clone(), path).json(&json!({"name": "x"}))).await?;
        assert_api_error(&resp, 405, &format!("{method} {path}"));
    }

    // Unknown database, table, or path: 404.
    for path in [
        "/dev/cat/1",
        "/nodb/dog/1",
        "/dev/cat/",
        "/nowhere",
        "/dev/cat",
    ] {
        let resp = send(admin(&node, Method::GET, path)).await?;
        assert_api_error(&resp, 404, &format!("GET {path}"));
    }
    let resp = send(admin(&node, Method::PUT, "/dev/cat/1").json(&json!({"a": 1}))).await?;
    assert_api_error(&resp, 404, "PUT to a missing table");

    // Bad bodies: 400.
    let bad = send(
        admin(&node, Method::PUT, "/dev/dog/5")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await?;
    assert_api_error(&bad, 400, "PUT invalid JSON");
    let bad = send(admin(&node, Method::PUT, "/dev/dog/5").json(&json!([1, 2]))).await?;
    assert_api_error(&bad, 400, "PUT a non-object");
    let bad = send(admin(&node, Method::PUT, "/dev/dog/5").json(&json!({"id": 6, "a": 1}))).await?;
    assert_api_error(&bad, 400, "PUT with a mismatching id");
    let bad = send(admin(&node, Method::PATCH, "/dev/dog/1").json(&json!({"id": 2}))).await?;
    assert_api_error(&bad, 400, "PATCH with a mismatching id");
    let bad = send(admin(&node, Method::POST, "/dev/dog/").json(&json!("str"))).await?;
    assert_api_error(&bad, 400, "POST a non-object");
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/5")).await?.status,
        404
    );
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/6")).await?.status,
        404
    );

    // Unsupported media types: 415 for bodies, 406 for Accept.
    let resp = send(
        admin(&node, Method::PUT, "/dev/dog/5")
            .header("content-type", "application/xml")
            .body("<dog/>"),
    )
    .await?;
    assert_api_error(&resp, 415, "PUT XML");
    let resp = send(
        admin(&node, Method::PUT, "/dev/dog/5")
            .header("content-type", "text/csv")
            .body("id,name\r\n5,x\r\n"),
    )
    .await?;
    assert_api_error(&resp, 415, "PUT CSV");
    let resp = send(admin(&node, Method::GET, "/dev/dog/1").header("accept", "image/png")).await?;
    assert_api_error(&resp, 406, "Accept image/png");
    let resp = send(admin(&node, Method::GET, "/dev/dog/").header("accept", "text/html")).await?;
    assert_api_error(&resp, 406, "query with Accept text/html");

    Ok(())
}

#[tokio::test]
async fn describe_collection_and_delete_by_query() -> anyhow::Result<()> {
    let node = start("rest-collection").await?;
    create_table(&node, "dog").await?;
    let records: Vec<Value> = (1..=10)
        .map(|i| json!({"id": i, "kind": if i % 2 == 0 { "even" } else { "odd" }, "n": i}))
        .collect();
    insert(&node, "dog", Value::Array(records)).await?;

    // GET /T describes the table.
    let describe = get_json(&node, "/dev/dog").await?;
    assert_eq!(describe["name"], json!("dog"));
    assert_eq!(describe["database"], json!("dev"));
    assert_eq!(describe["primary_key"], json!("id"));
    assert_eq!(describe["record_count"], json!(10));
    let attributes: Vec<&str> = describe["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .filter_map(|a| a["attribute"].as_str())
        .collect();
    for a in ["id", "kind", "n", "__createdtime__", "__updatedtime__"] {
        assert!(attributes.contains(&a), "describe lists {a}: {describe}");
    }
    let head = send(admin(&node, Method::HEAD, "/dev/dog")).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // GET /T/ lists every record in key order.
    let all = query(&node, "dog", "").await?;
    assert_eq!(ids_of(&all), (1..=10).collect::<Vec<_>>());
    let all = get_json(&node, "/dev/dog/").await?;
    assert_eq!(all.as_array().map(Vec::len), Some(10));

    // DELETE /T/?query: 200 with the count, and only the matches are gone.
    let resp = send(admin(&node, Method::DELETE, "/dev/dog/?kind=even&n=gt=4")).await?;
    assert_eq!(resp.status, 200, "DELETE by query: {:?}", resp.text());
    let body = resp.json();
    assert_eq!(
        body["message"],
        json!("3 records successfully deleted"),
        "{body}"
    );
    let mut deleted: Vec<u64> = body["deleted_hashes"]
        .as_array()
        .expect("deleted_hashes")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, vec![6, 8, 10]);
    assert_eq!(
        ids_of(&query(&node, "dog", "").await?),
        vec![1, 2, 3, 4, 5, 7, 9]
    );
    // Nothing matches: 200 with a zero count.
    let resp = send(admin(&node, Method::DELETE, "/dev/dog/?kind=none")).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json()["message"],
        json!("0 records successfully deleted")
    );
    // A malformed query deletes nothing.
    let resp = send(admin(&node, Method::DELETE, "/dev/dog/?kind=(odd")).await?;
    assert_api_error(&resp, 400, "DELETE with a malformed query");
    assert_eq!(query(&node, "dog", "").await?.len(), 7);
    assert_eq!(get_json(&node, "/dev/dog").await?["record_count"], json!(7));
    Ok(())
}

#[tokio::test]
async fn etag_and_conditional_get() -> anyhow::Result<()> {
    let node = start("rest-etag").await?;
    create_table(&node, "dog").await?;
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex"}))).await?;
    assert_eq!(put.status, 204);

    let first = send(admin(&node, Method::GET, "/dev/dog/1")).await?;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("ETag").to_owned();
    let modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    assert!(
        modified.ends_with(" GMT"),
        "Last-Modified is an HTTP date: {modified}"
    );
    // The ETag is the quoted hex HLC of the version: its milliseconds are those of the
    // record's update time.
    let hex = etag
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or_else(|| panic!("ETag is quoted: {etag}"));
    let hlc = u64::from_str_radix(hex, 16).expect("ETag is hex");
    let record = first.json();
    let updated = record["__updatedtime__"].as_f64().expect("__updatedtime__");
    assert_eq!(
        (hlc >> 16) as f64,
        updated.floor(),
        "ETag {etag} is the HLC of the version updated at {updated}"
    );
    assert_eq!(
        modified,
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(hlc >> 16)),
        "Last-Modified is the version's time"
    );

    // If-None-Match with the current tag (plain, weak, in a list, or *): 304, no body.
    for value in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".to_owned(),
    ] {
        let resp =
            send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", &value)).await?;
        assert_eq!(resp.status, 304, "If-None-Match: {value}");
        assert!(resp.body.is_empty(), "304 has no body");
        assert_eq!(
            resp.header("etag"),
            Some(etag.as_str()),
            "304 repeats the ETag"
        );
    }
    // Another tag: 200 with the record.
    let resp =
        send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", "\"other\"")).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), record);
    // Also in other formats.
    let resp =
        send(admin(&node, Method::GET, "/dev/dog/1.cbor").header("if-none-match", &etag)).await?;
    assert_eq!(resp.status, 304, "CBOR with If-None-Match");

    // Every kind of write changes the tag.
    let mut seen = vec![etag.clone()];
    let writes = [
        admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex", "age": 2})),
        admin(&node, Method::PATCH, "/dev/dog/1").json(&json!({"age": 3})),
        admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex", "age": 3})),
    ];
    for write in writes {
        let resp = send(write).await?;
        assert_eq!(resp.status, 204, "{:?}", resp.text());
        let resp =
            send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", &etag)).await?;
        assert_eq!(
            resp.status, 200,
            "the old tag no longer matches after a write"
        );
        let new = resp.header("etag").expect("ETag").to_owned();
        assert!(
            !seen.contains(&new),
            "ETag {new} changes with every write: {seen:?}"
        );
        let again =
            send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", &new)).await?;
        assert_eq!(again.status, 304, "the new tag matches");
        seen.push(new);
    }
    // A write through the Operations API changes it too.
    node.op_ok(json!({
        "operation": "update", "database": "dev", "table": "dog", "records": [{"id": 1, "age": 4}]
    }))
    .await?;
    let resp =
        send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", seen.last().unwrap()))
            .await?;
    assert_eq!(resp.status, 200, "an ops API update changes the ETag");
    assert_eq!(resp.json()["age"], json!(4));
    // A deleted record: 404 even with If-None-Match: *.
    assert_eq!(
        send(admin(&node, Method::DELETE, "/dev/dog/1"))
            .await?
            .status,
        204
    );
    let resp = send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", "*")).await?;
    assert_eq!(resp.status, 404);
    Ok(())
}

#[tokio::test]
async fn post_location_resolves() -> anyhow::Result<()> {
    let node = start("rest-post").await?;
    create_table(&node, "dog").await?;

    // A generated id.
    let post = send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"name": "Gen"}))).await?;
    assert_eq!(post.status, 201, "{:?}", post.text());
    assert_eq!(post.mime(), "application/json");
    let id = post.json();
    let location = post.header("location").expect("Location").to_owned();
    let got = get_json(&node, &location).await?;
    assert_eq!(strip_timestamps(&got), json!({"name": "Gen", "id": id}));
    // Two POSTs make two records.
    let second =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"name": "Gen"}))).await?;
    assert_eq!(second.status, 201);
    assert_ne!(second.header("location"), Some(location.as_str()));

    // An id given in the body: a number, and a string that needs escaping.
    let post =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": 500, "n": 1}))).await?;
    assert_eq!(post.status, 201);
    assert_eq!(post.json(), json!(500));
    assert_eq!(post.header("location"), Some("/dev/dog/500"));
    assert_eq!(get_json(&node, "/dev/dog/500").await?["n"], json!(1));
    let post =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": "x/y z?&#%", "n": 2})))
            .await?;
    assert_eq!(post.status, 201, "{:?}", post.text());
    assert_eq!(post.json(), json!("x/y z?&#%"));
    let location = post.header("location").expect("Location").to_owned();
    assert_eq!(location, "/dev/dog/x%2Fy%20z%3F%26%23%25");
    let got = get_json(&node, &location).await?;
    assert_eq!(got["id"], json!("x/y z?&#%"), "Location resolves");

    // An existing id: 409, and the record is untouched.
    let post =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": 500, "n": 9}))).await?;
    assert_api_error(&post, 409, "POST an existing id");
    assert_eq!(get_json(&node, "/dev/dog/500").await?["n"], json!(1));
    // The table without a slash is the table itself: POST is not allowed there.
    let post = send(admin(&node, Method::POST, "/dev/dog").json(&json!({"n": 1}))).await?;
    assert_api_error(&post, 405, "POST /dev/dog");
    assert_eq!(query(&node, "dog", "").await?.len(), 4);
    Ok(())
}

/// A body whose id agrees with the URL's (the server accepts `"1"` for `/T/1`, and `2.0`
/// is the same key as `2`) addresses the record the URL names: PUT replaces it and PATCH
/// merges into it, or the request is refused; it never writes some other record.
#[tokio::test]
async fn body_id_agreeing_with_the_url_addresses_the_same_record() -> anyhow::Result<()> {
    let node = start("rest-body-id").await?;
    create_table(&node, "dog").await?;
    for id in [1, 2, 3] {
        let put =
            send(admin(&node, Method::PUT, &format!("/dev/dog/{id}")).json(&json!({"name": "a"})))
                .await?;
        assert_eq!(put.status, 204);
    }
    let mut failures = Vec::new();

    // PUT /dev/dog/1 with the id as a string.
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"id": "1", "name": "b"})))
        .await?;
    let got = get_json(&node, "/dev/dog/1").await?;
    if put.status == 204 && got["name"] != json!("b") {
        failures.push(format!(
            "PUT /dev/dog/1 {{\"id\": \"1\"}} answered 204 but GET /dev/dog/1 still gives {got}"
        ));
    } else if put.status != 204 && put.status != 400 {
        failures.push(format!(
            "PUT /dev/dog/1 {{\"id\": \"1\"}}: status {}",
            put.status
        ));
    }
    // PATCH /dev/dog/2 (which exists) with the id as a string.
    let patch =
        send(admin(&node, Method::PATCH, "/dev/dog/2").json(&json!({"id": "2", "age": 3}))).await?;
    let got = get_json(&node, "/dev/dog/2").await?;
    if patch.status == 204 && got["age"] != json!(3) {
        failures.push(format!(
            "PATCH /dev/dog/2 {{\"id\": \"2\"}} answered 204 but GET /dev/dog/2 gives {got}"
        ));
    } else if patch.status != 204 && patch.status != 400 {
        failures.push(format!(
            "PATCH /dev/dog/2 {{\"id\": \"2\"}} of an existing record: status {} {}",
            patch.status,
            patch.text()
        ));
    }
    // PUT /dev/dog/3 with the id as the float 3.0 (the same key as 3).
    let put = send(admin(&node, Method::PUT, "/dev/dog/3").json(&json!({"id": 3.0, "name": "c"})))
        .await?;
    if put.status != 204 {
        failures.push(format!(
            "PUT /dev/dog/3 {{\"id\": 3.0}}: status {} {}",
            put.status,
            put.text()
        ));
    } else if get_json(&node, "/dev/dog/3").await?["name"] != json!("c") {
        failures.push("PUT /dev/dog/3 {\"id\": 3.0} did not replace record 3".to_owned());
    }
    // Whatever happened, no second record appeared.
    let all = query(&node, "dog", "").await?;
    if all.len() != 3 {
        failures.push(format!("the table should still hold 3 records: {all:?}"));
    }
    // A body id naming the URL's record ("1", 1.0 for /1) addresses that same record.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// The `Location` of a POST resolves even when the id ends like a format suffix.
#[tokio::test]
async fn post_location_resolves_for_ids_ending_in_a_format_suffix() -> anyhow::Result<()> {
    let node = start("rest-post-suffix").await?;
    create_table(&node, "dog").await?;
    let mut failures = Vec::new();
    for id in ["report.csv", "data.json", "blob.cbor", "pack.msgpack"] {
        let post =
            send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": id, "n": 1}))).await?;
        assert_eq!(post.status, 201, "POST {id}: {:?}", post.text());
        let location = post.header("location").expect("Location").to_owned();
        let resp = send(admin(&node, Method::GET, &location)).await?;
        let record: Option<Value> =
            (resp.status == 200 && resp.mime() == "application/json").then(|| resp.json());
        if record.as_ref().map(|r| &r["id"]) != Some(&json!(id)) {
            failures.push(format!(
                "POST id {id:?}: Location {location} answers {} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
    }
    // The Location escapes the `.`, so the end of the id is not read as a format suffix.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn oversized_body_is_413() -> anyhow::Result<()> {
    let node = start_with("rest-413", &["--max-body-bytes", "1000"]).await?;
    create_table(&node, "dog").await?;
    let big = json!({"blob": "x".repeat(2000)});
    for (method, path) in [
        (Method::PUT, "/dev/dog/1"),
        (Method::POST, "/dev/dog/"),
        (Method::PATCH, "/dev/dog/1"),
    ] {
        let resp = send(admin(&node, method.clone(), path).json(&big)).await?;
        assert_api_error(&resp, 413, &format!("{method} {path} with 2000 bytes"));
    }
    let small = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"blob": "x"}))).await?;
    assert_eq!(small.status, 204);
    assert_eq!(query(&node, "dog", "").await?.len(), 1);
    Ok(())
}
