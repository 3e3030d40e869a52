//! End-to-end tests of the REST interface on the HTTP port: every test starts its own
//! `shoal` process and talks to it over HTTP only.
//!
//! Covered: every method and status code of `/{database}/{table}/{id}`, the URL query
//! language (each operator and function, combinations, malformed input), content
//! negotiation (JSON, CBOR, MessagePack and CSV), `ETag` / `If-None-Match`, `POST`
//! locations, component exports, body limits, large streamed answers and
//! authentication. Query answers are checked against ids computed here over a
//! deterministic data set, once on a table whose attributes are all indexed and once
//! on a table with no indexes (so both the index and the full-scan paths are covered).

mod answers;
mod authentication;
mod components;
mod content_types;
mod dataset;
mod queries;
mod records;
