//! Requests on the HTTP port (REST, subscriptions), with or without the admin's credentials.

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, RequestBuilder};

use crate::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node};

/// A request on the HTTP port with the admin's credentials.
pub fn admin(node: &Node, method: Method, path: &str) -> RequestBuilder {
    anon(node, method, path).basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
}

/// A request on the HTTP port without credentials.
pub fn anon(node: &Node, method: Method, path: &str) -> RequestBuilder {
    node.client().request(method, node.http_url(path))
}

/// The admin's `Authorization` header value, for requests written by hand.
pub fn basic(node: &Node) -> String {
    let request = node
        .client()
        .get("http://127.0.0.1/")
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
        .build()
        .expect("a request with Basic credentials");
    let value = request.headers()[AUTHORIZATION].to_str();
    value.expect("Basic credentials are ASCII").to_owned()
}
