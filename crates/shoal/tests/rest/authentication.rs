//! Credentials on the HTTP port.

use reqwest::{Method, RequestBuilder};
use serde_json::json;
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, admin, anon, create_table, start, strip_timestamps,
};

use crate::answers::{assert_api_error, get_json, query, send};

#[tokio::test]
async fn rest_requires_authentication() -> anyhow::Result<()> {
    let node = start("rest-auth").await?;
    create_table(&node, "dog").await?;
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex"}))).await?;
    assert_eq!(put.status, 204);

    let requests = || {
        vec![
            (Method::GET, "/dev/dog/1"),
            (Method::GET, "/dev/dog/"),
            (Method::GET, "/dev/dog/?name=Rex"),
            (Method::GET, "/dev/dog"),
            (Method::HEAD, "/dev/dog/1"),
            (Method::OPTIONS, "/dev/dog/1"),
            (Method::PUT, "/dev/dog/1"),
            (Method::PATCH, "/dev/dog/1"),
            (Method::POST, "/dev/dog/"),
            (Method::DELETE, "/dev/dog/1"),
            (Method::DELETE, "/dev/dog/?name=Rex"),
            (Method::GET, "/dev/missing/1"),
        ]
    };
    type Auth = fn(RequestBuilder) -> RequestBuilder;
    let credentials: [(&str, Auth); 5] = [
        ("no credentials", |rb| rb),
        ("wrong password", |rb| {
            rb.basic_auth(DEFAULT_ADMIN_USER, Some("wrong-password"))
        }),
        ("unknown user", |rb| {
            rb.basic_auth("nobody", Some(DEFAULT_ADMIN_PASSWORD))
        }),
        ("bearer token", |rb| rb.bearer_auth("token")),
        ("garbage", |rb| {
            rb.header("authorization", "Basic !!!not-base64")
        }),
    ];
    for (what, auth) in credentials {
        for (method, path) in requests() {
            let rb = auth(anon(&node, method.clone(), path).json(&json!({"name": "Evil"})));
            let resp = send(rb).await?;
            let context = format!("{method} {path} with {what}");
            assert_eq!(resp.status, 401, "{context}");
            if method != Method::HEAD {
                assert_api_error(&resp, 401, &context);
            }
        }
    }
    // Nothing was written or deleted by the rejected requests.
    assert_eq!(
        strip_timestamps(&get_json(&node, "/dev/dog/1").await?),
        json!({"name": "Rex", "id": 1})
    );
    assert_eq!(query(&node, "dog", "").await?.len(), 1);
    // Health needs no credentials.
    assert_eq!(node.http_get("/health").await?.0, 200);
    Ok(())
}
