//! End-to-end tests of the Operations API: every test starts its own `shoal` process
//! and talks to it over HTTP only, checking the answers against HarperDB's Operations
//! API as described by the compatibility spec.

mod conditions;
mod helpers;
mod logs;
mod node;
mod operations;
mod schema;
mod searches;
mod writes;
