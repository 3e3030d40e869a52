//! Users and authentication for Shoal.
//!
//! Users live in the `system` database (`hdb_user`, keyed by username), with passwords
//! hashed by argon2id. [`Auth::authenticate`] checks an `Authorization: Basic` header;
//! verified headers are remembered in memory so that only the first request of a client
//! pays for the (deliberately slow) hash, and the memory is cleared whenever a user changes.

mod error;
pub mod proof;
mod users;

pub use error::AuthError;
pub use users::{Auth, SYSTEM_DATABASE, USER_TABLE, User};
