//! A stored version of a record: its value (or a tombstone), HLC timestamp and origin.
//!
//! Layout (see docs/format.md):
//! `[format=1][flags: bit0 = tombstone][hlc: u64 BE][origin length: u8][origin][JSON]`.
//! The JSON is stored as the bytes a client receives, so a point read can answer without
//! parsing and re-serialising.

use serde_json::Value;

use crate::error::StoreError;

const FORMAT: u8 = 1;
const TOMBSTONE: u8 = 1;

/// One version of a record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Version<'a> {
    /// Hybrid logical clock timestamp of the write.
    pub hlc: u64,
    /// Name of the node where the write was made.
    pub origin: &'a str,
    /// The record's JSON, or `None` for a tombstone.
    pub json: Option<&'a [u8]>,
}

impl<'a> Version<'a> {
    /// Encodes a version for storage.
    pub fn encode(hlc: u64, origin: &str, json: Option<&[u8]>) -> Vec<u8> {
        let origin = &origin.as_bytes()[..origin.len().min(255)];
        let mut out = Vec::with_capacity(11 + origin.len() + json.map_or(0, <[u8]>::len));
        out.push(FORMAT);
        out.push(if json.is_none() { TOMBSTONE } else { 0 });
        out.extend_from_slice(&hlc.to_be_bytes());
        out.push(origin.len() as u8);
        out.extend_from_slice(origin);
        if let Some(json) = json {
            out.extend_from_slice(json);
        }
        out
    }

    /// Decodes a stored version, borrowing from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("record version".into());
        let [format, flags, rest @ ..] = bytes else {
            return Err(corrupt());
        };
        if *format != FORMAT {
            return Err(corrupt());
        }
        let (hlc, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let (&len, rest) = rest.split_first().ok_or_else(corrupt)?;
        let origin = rest.get(..usize::from(len)).ok_or_else(corrupt)?;
        let origin = std::str::from_utf8(origin).map_err(|_| corrupt())?;
        let body = &rest[usize::from(len)..];
        Ok(Version {
            hlc: u64::from_be_bytes(*hlc),
            origin,
            json: (flags & TOMBSTONE == 0).then_some(body),
        })
    }

    /// The record as a JSON object, or `None` for a tombstone.
    pub fn value(&self) -> Result<Option<serde_json::Map<String, Value>>, StoreError> {
        self.json
            .map(|json| {
                serde_json::from_slice(json).map_err(|_| StoreError::Corrupt("record json".into()))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = Version::encode(77, "node-a", Some(br#"{"id":1}"#));
        let v = Version::decode(&bytes).unwrap();
        assert_eq!(v.hlc, 77);
        assert_eq!(v.origin, "node-a");
        assert_eq!(v.json, Some(&br#"{"id":1}"#[..]));
        let bytes = Version::encode(78, "n", None);
        assert_eq!(Version::decode(&bytes).unwrap().json, None);
        assert!(Version::decode(&[2, 0]).is_err());
    }
}
