//! Reading an operation's fields, with Harper's names, legacy aliases and messages.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::ops::{Operation, UnknownOperation};

/// The database an operation names when it names none.
pub(crate) const DEFAULT_DATABASE: &str = "data";

/// An operation's JSON body.
pub(crate) struct OpRequest {
    fields: Map<String, Value>,
}

impl OpRequest {
    /// Wraps a parsed body; it must be an object with a string `operation`, which is
    /// returned parsed (or, if no operation has that name, the error that says so: it is
    /// answered only after the permission check).
    pub(crate) fn new(
        body: Value,
    ) -> Result<(Result<Operation, UnknownOperation>, Self), ApiError> {
        let Value::Object(fields) = body else {
            return Err(ApiError::bad_request("Invalid JSON."));
        };
        let operation = match fields.get("operation") {
            Some(Value::String(op)) => op.parse(),
            Some(_) => return Err(ApiError::bad_request("'operation' must be a string")),
            None => {
                return Err(ApiError::bad_request(
                    "Request body must include an 'operation' property.",
                ));
            }
        };
        Ok((operation, OpRequest { fields }))
    }

    /// The whole body, for operations that read nested fields (a copy: not for hot paths).
    pub(crate) fn to_value(&self) -> Value {
        Value::Object(self.fields.clone())
    }

    /// The first present field among `names`.
    pub(crate) fn get(&self, names: &[&str]) -> Option<&Value> {
        names
            .iter()
            .find_map(|n| self.fields.get(*n).filter(|v| !v.is_null()))
    }

    /// Removes and returns the first present field among `names` (avoids copying large
    /// record arrays).
    pub(crate) fn take(&mut self, names: &[&str]) -> Option<Value> {
        names
            .iter()
            .find_map(|n| self.fields.remove(*n).filter(|v| !v.is_null()))
    }

    /// A required string field, named by its first name in messages.
    pub(crate) fn string(&self, names: &[&str]) -> Result<String, ApiError> {
        match self.get(names) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::bad_request(format!(
                "'{}' must be a string",
                names[0]
            ))),
            None => Err(ApiError::bad_request(format!("'{}' is required", names[0]))),
        }
    }

    /// An optional field of a given type.
    pub(crate) fn optional<T: DeserializeOwned>(
        &self,
        names: &[&str],
    ) -> Result<Option<T>, ApiError> {
        self.get(names)
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|_| {
                    ApiError::bad_request(format!("'{}' has the wrong type", names[0]))
                })
            })
            .transpose()
    }

    /// `database` (legacy `schema`), defaulting to `data`.
    pub(crate) fn database(&self) -> Result<String, ApiError> {
        match self.get(&["database", "schema"]) {
            None => Ok(DEFAULT_DATABASE.to_owned()),
            Some(_) => self.string(&["database", "schema"]),
        }
    }

    /// `table`, required.
    pub(crate) fn table(&self) -> Result<String, ApiError> {
        self.string(&["table"])
    }

    /// Harper's `get_attributes`.
    pub(crate) fn get_attributes(&self) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(&["get_attributes"]) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::bad_request("'get_attributes' must contain strings")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request("'get_attributes' must be an array")),
        }
    }

    /// A non-negative integer field.
    pub(crate) fn count(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.get(&[name]) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                ApiError::bad_request(format!("'{name}' must be a non-negative integer"))
            }),
        }
    }
}
