//! Request bodies as JSON values, from JSON, CBOR or MessagePack, with one nesting limit
//! for all three: [`MAX_DEPTH`].
//!
//! The limit is the store's ([`shoal_store::MAX_DEPTH`]): the store keeps records as JSON
//! and reads them back with serde_json, whose own limit is 128 levels, so a body deeper
//! than what the store accepts could never become a record anyway. Each decoder has its
//! own limit (serde_json 128, ciborium 256, rmp_serde 1024) with its own way of counting
//! and its own message; none of them decides here. The values are built by one visitor
//! that counts levels the same way for every format and stops at the limit, before the
//! decoder recurses any deeper.

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::ApiError;

/// Deepest nesting of a request body: an object or array is one level, each one inside
/// it one more (a record sent alone is level 1, its attributes' objects level 2).
pub(crate) const MAX_DEPTH: usize = shoal_store::MAX_DEPTH;

/// Why a body could not be decoded.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Not valid in its format; the decoder's message.
    Invalid(String),
}

impl BodyError {
    /// The 400 it answers; a decoder's message follows `what` ("Invalid JSON", ...).
    pub(crate) fn bad_request(self, what: &str) -> ApiError {
        match self {
            BodyError::TooDeep => ApiError::bad_request(self.to_string()),
            BodyError::Invalid(why) => ApiError::bad_request(format!("{what}: {why}")),
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooDeep => write!(f, "the body nests deeper than {MAX_DEPTH} levels"),
            BodyError::Invalid(why) => f.write_str(why),
        }
    }
}

/// A JSON body.
pub(crate) fn json(bytes: &[u8]) -> Result<Value, BodyError> {
    bounded(|| serde_json::from_slice::<Bounded>(bytes))
}

/// A CBOR body.
pub(crate) fn cbor(bytes: &[u8]) -> Result<Value, BodyError> {
    bounded(|| ciborium::from_reader::<Bounded, _>(bytes))
}

/// A MessagePack body.
pub(crate) fn msgpack(bytes: &[u8]) -> Result<Value, BodyError> {
    bounded(|| rmp_serde::from_slice::<Bounded>(bytes))
}

thread_local! {
    // ciborium takes only `DeserializeOwned` types, so the count cannot travel in a
    // seed; decoding is synchronous, so it lives with the thread for one decode.
    /// Levels open around the value being decoded.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Whether this decode went past the limit (the decoder wraps the error in its own).
    static TOO_DEEP: Cell<bool> = const { Cell::new(false) };
}

fn bounded<E: fmt::Display>(
    decode: impl FnOnce() -> Result<Bounded, E>,
) -> Result<Value, BodyError> {
    DEPTH.set(0);
    TOO_DEEP.set(false);
    let result = decode();
    if TOO_DEEP.get() {
        return Err(BodyError::TooDeep);
    }
    result
        .map(|b| b.0)
        .map_err(|e| BodyError::Invalid(e.to_string()))
}

/// One level of nesting, left when dropped (also when decoding inside it fails).
struct Level;

impl Level {
    fn enter<E: de::Error>() -> Result<Level, E> {
        let depth = DEPTH.get();
        if depth >= MAX_DEPTH {
            TOO_DEEP.set(true);
            return Err(E::custom(BodyError::TooDeep));
        }
        DEPTH.set(depth + 1);
        Ok(Level)
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
    }
}

/// A value decoded within the limit; accepts what `serde_json::Value` accepts.
struct Bounded(Value);

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BoundedVisitor).map(Bounded)
    }
}

struct BoundedVisitor;

impl<'de> Visitor<'de> for BoundedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Number::deserialize(de::value::I128Deserializer::new(v)).map(Value::Number)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Number::deserialize(de::value::U128Deserializer::new(v)).map(Value::Number)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Bounded::deserialize(d).map(|b| b.0)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let _level = Level::enter()?;
        let mut items = Vec::new();
        while let Some(Bounded(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let _level = Level::enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Bounded(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `depth` nested objects around a scalar: `{"a":{"a":...1}}`.
    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(1), |inner, i| {
            if i % 2 == 0 {
                json!({ "a": inner })
            } else {
                json!([inner])
            }
        })
    }

    fn all_formats(value: &Value) -> [Result<Value, BodyError>; 3] {
        let mut cbor_bytes = Vec::new();
        ciborium::into_writer(value, &mut cbor_bytes).unwrap();
        [
            json(&serde_json::to_vec(value).unwrap()),
            cbor(&cbor_bytes),
            msgpack(&rmp_serde::to_vec_named(value).unwrap()),
        ]
    }

    #[test]
    fn every_format_decodes_up_to_the_limit_and_refuses_past_it() {
        for depth in [0, 1, 2, MAX_DEPTH - 1, MAX_DEPTH] {
            let value = nested(depth);
            for decoded in all_formats(&value) {
                assert_eq!(decoded.unwrap(), value, "depth {depth}");
            }
        }
        // 300 levels: past serde_json's 128 and ciborium's 256, under rmp_serde's 1024.
        for depth in [MAX_DEPTH + 1, 300] {
            for decoded in all_formats(&nested(depth)) {
                assert!(
                    matches!(decoded, Err(BodyError::TooDeep)),
                    "depth {depth}: {decoded:?}"
                );
            }
        }
    }

    #[test]
    fn a_body_deeper_than_any_stack_is_refused_early() {
        let deep = "[".repeat(1_000_000);
        assert!(matches!(json(deep.as_bytes()), Err(BodyError::TooDeep)));
        // CBOR indefinite-length arrays (0x9f) and MessagePack fixarrays of one (0x91).
        assert!(matches!(cbor(&[0x9f; 1_000_000]), Err(BodyError::TooDeep)));
        assert!(matches!(
            msgpack(&[0x91; 1_000_000]),
            Err(BodyError::TooDeep)
        ));
    }

    #[test]
    fn a_refused_body_leaves_no_count_behind() {
        assert!(json(nested(MAX_DEPTH + 1).to_string().as_bytes()).is_err());
        assert!(json(b"{\"a\": [1, }").is_err());
        let value = nested(MAX_DEPTH);
        assert_eq!(json(value.to_string().as_bytes()).unwrap(), value);
    }

    #[test]
    fn other_errors_keep_the_decoders_message() {
        match json(b"{\"a\": }") {
            Err(BodyError::Invalid(why)) => assert!(why.contains("expected value"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A CBOR byte string is not JSON.
        assert!(matches!(cbor(&[0x41, 0x00]), Err(BodyError::Invalid(_))));
    }
}
