//! Components: Harper-style application folders under `<root>/components/<name>/`, each
//! with a `config.yaml` (`rest: true`, `graphqlSchema: {files: schema.graphql}`) and a
//! GraphQL schema declaring tables.
//!
//! This crate owns the components folder and what it means:
//! - **Reading.** [`Components::load`] reads every component's config and schema files
//!   ([`parse_schema`]), has the tables they declare created through [`Tables`] (which
//!   the server implements, so a new table is announced like any other), and keeps the
//!   REST exports they name ([`Components::export`]). A component that fails to load is
//!   skipped and reported ([`Components::tree`]); it never stops the others, or the node.
//! - **Changing.** [`Components::add`], [`Components::set_file`] and
//!   [`Components::remove`] change the folder only through validated names (Harper's
//!   rule for projects; plain relative paths for files) and never leave it half-changed:
//!   a file is written to a temporary name and renamed into place, folders are created
//!   only for a write that can succeed and removed again if it fails, and a project is
//!   added or dropped by one rename. Each change reloads the components.
//!
//! Bounds: names and paths within [`NAME_MAX`], [`PATH_MAX`] and [`PATH_DEPTH_MAX`];
//! schemas nest at most [`MAX_DEPTH`] levels (the parser stops there, so hostile input
//! cannot overflow the stack).
//!
//! ```
//! use shoal_components::parse_schema;
//! let tables = parse_schema(
//!     r#"type Dog @table(database: "dev") @export {
//!          id: ID @primaryKey
//!          name: String @indexed
//!        }"#,
//! )
//! .unwrap();
//! assert_eq!(tables[0].database, "dev");
//! assert_eq!(tables[0].export.as_deref(), Some("Dog"));
//! assert!(tables[0].attributes[1].indexed);
//! ```
//!
//! Non-goals: no component code is run (schemas and configs only); nothing here knows
//! HTTP or Harper's error shape (the server maps [`ComponentError`]), nor how a table is
//! stored or replicated.

mod components;
mod config;
mod error;
mod files;
mod listing;
mod names;
mod schema;

pub use components::{Components, Tables};
pub use error::ComponentError;
pub use listing::{Entry, Status};
pub use names::{NAME_MAX, PATH_DEPTH_MAX, PATH_MAX};
pub use schema::{AttributeDecl, MAX_DEPTH, SchemaError, TableDecl, parse_schema};
