//! Order-preserving encoding of JSON scalars.
//!
//! Layout (see docs/format.md): one tag byte, then the payload.
//!
//! | tag  | value  | payload                                                        |
//! |------|--------|----------------------------------------------------------------|
//! | 0x01 | null   | none                                                           |
//! | 0x02 | false  | none                                                           |
//! | 0x03 | true   | none                                                           |
//! | 0x04 | number | f64 bits, big-endian, sign bit flipped (all bits if negative)  |
//! | 0x05 | string | UTF-8 with 0x00 escaped as 0x00 0xFF, ended by 0x00 0x00       |
//!
//! Byte order of encodings equals [`compare`] order of values, and every encoding is
//! self-delimiting, so composite keys (table, attribute, value, primary key) can be
//! concatenated and split again.

use std::cmp::Ordering;

use serde_json::{Number, Value};

const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const NUMBER: u8 = 0x04;
const STRING: u8 = 0x05;

/// Appends the encoding of a scalar to `out`; returns false (and appends nothing) for arrays
/// and objects, which have no key encoding.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) -> bool {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => encode_number(n.as_f64().unwrap_or(0.0), out),
        Value::String(s) => encode_str(s, usize::MAX, out),
        Value::Array(_) | Value::Object(_) => return false,
    }
    true
}

/// Encodes a scalar, or `None` for arrays and objects.
pub fn encode(value: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out).then_some(out)
}

/// Like [`encode_into`], but keeps at most `max_string` bytes of a string. Truncation is monotonic (`a <= b` implies `trunc(a) <= trunc(b)`),
/// so an index of truncated values still answers range scans when the bounds are
/// truncated the same way and candidates are re-checked against the record.
pub fn encode_truncated_into(value: &Value, max_string: usize, out: &mut Vec<u8>) -> bool {
    match value {
        Value::String(s) => {
            encode_str(s, max_string, out);
            true
        }
        other => encode_into(other, out),
    }
}

fn encode_number(f: f64, out: &mut Vec<u8>) {
    // -0.0 and 0.0 are the same JSON number.
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 0 {
        bits ^ (1 << 63)
    } else {
        !bits
    };
    out.push(NUMBER);
    out.extend_from_slice(&ordered.to_be_bytes());
}

fn encode_str(s: &str, max: usize, out: &mut Vec<u8>) {
    // Cut on bytes, not characters: a byte prefix keeps byte order, a character boundary
    // would not. A cut value may end inside a character, which only index keys ever hold.
    let raw = &s.as_bytes()[..s.len().min(max)];
    out.push(STRING);
    for &b in raw {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0x00, 0x00]);
}

/// The tag bytes that begin the encodings of `value`'s type: every value of that type
/// encodes to bytes in `[first, past)` (booleans span two tags). `None` for arrays and
/// objects.
pub fn type_span(value: &Value) -> Option<(u8, u8)> {
    Some(match value {
        Value::Null => (NULL, FALSE),
        Value::Bool(_) => (FALSE, NUMBER),
        Value::Number(_) => (NUMBER, STRING),
        Value::String(_) => (STRING, STRING + 1),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// The bytes after the encoded value at the front of `bytes`, without decoding it (a
/// truncated string in an index key need not be valid UTF-8).
pub fn skip(bytes: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = bytes.split_first()?;
    match tag {
        NULL | FALSE | TRUE => Some(rest),
        NUMBER => rest.get(8..),
        STRING => {
            let mut i = 0;
            loop {
                match *rest.get(i)? {
                    0x00 => match *rest.get(i + 1)? {
                        0x00 => return Some(&rest[i + 2..]),
                        0xFF => i += 2,
                        _ => return None,
                    },
                    _ => i += 1,
                }
            }
        }
        _ => None,
    }
}

/// Decodes one value from the front of `bytes`, returning it and the rest.
pub fn decode(bytes: &[u8]) -> Option<(Value, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    match tag {
        NULL => Some((Value::Null, rest)),
        FALSE => Some((Value::Bool(false), rest)),
        TRUE => Some((Value::Bool(true), rest)),
        NUMBER => {
            let (raw, rest) = rest.split_first_chunk::<8>()?;
            let ordered = u64::from_be_bytes(*raw);
            let bits = if ordered >> 63 == 1 {
                ordered ^ (1 << 63)
            } else {
                !ordered
            };
            Some((number_value(f64::from_bits(bits)), rest))
        }
        STRING => {
            let mut s = Vec::new();
            let mut i = 0;
            loop {
                match *rest.get(i)? {
                    0x00 => match *rest.get(i + 1)? {
                        0x00 => break,
                        0xFF => s.push(0),
                        _ => return None,
                    },
                    b => {
                        s.push(b);
                        i += 1;
                        continue;
                    }
                }
                i += 2;
            }
            let s = String::from_utf8(s).ok()?;
            Some((Value::String(s), &rest[i + 2..]))
        }
        _ => None,
    }
}

/// Integral floats within the exactly representable range come back as integers, so a
/// key written as `1` reads back as `1`, not `1.0`.
fn number_value(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if f.fract() == 0.0 && f.abs() < EXACT {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// The order the encoding preserves: null < false < true < numbers < strings; numbers by
/// value, strings by UTF-8 bytes. Arrays and objects sort after everything, unordered.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(false) => 1,
            Value::Bool(true) => 2,
            Value::Number(_) => 3,
            Value::String(_) => 4,
            Value::Array(_) | Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Whether `a` and `b` name the same record as primary keys: both scalars that encode
/// alike (so `1` and `1.0` do, `1` and `"1"` do not). Arrays and objects name none.
pub fn same(a: &Value, b: &Value) -> bool {
    type_span(a).is_some() && type_span(b).is_some() && compare(a, b) == Ordering::Equal
}

/// Smallest encoding that sorts after every encoding starting with `prefix`: used as the
/// exclusive upper bound of a prefix scan.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
            "[a\\x00b]{0,6}".prop_map(Value::String),
        ]
    }

    proptest! {
        #[test]
        fn byte_order_matches_value_order(a in scalar(), b in scalar()) {
            let (ea, eb) = (encode(&a).unwrap(), encode(&b).unwrap());
            prop_assert_eq!(ea.cmp(&eb), compare(&a, &b), "{:?} vs {:?}", a, b);
        }

        #[test]
        fn decode_inverts_encode(a in scalar(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = encode(&a).unwrap();
            bytes.extend_from_slice(&tail);
            let (back, rest) = decode(&bytes).unwrap();
            prop_assert_eq!(compare(&back, &a), Ordering::Equal);
            prop_assert_eq!(rest, &tail[..]);
            prop_assert_eq!(skip(&bytes).unwrap(), &tail[..]);
        }

        #[test]
        fn same_keys_are_those_that_encode_alike(a in scalar(), b in scalar()) {
            prop_assert_eq!(same(&a, &b), encode(&a) == encode(&b), "{:?} vs {:?}", a, b);
            prop_assert!(same(&a, &a));
        }

        #[test]
        fn truncation_is_monotonic(a in ".{0,40}", b in ".{0,40}", max in 1usize..20) {
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            encode_truncated_into(&Value::String(a.clone()), max, &mut ea);
            encode_truncated_into(&Value::String(b.clone()), max, &mut eb);
            if a.as_bytes() <= b.as_bytes() {
                prop_assert!(ea <= eb);
            }
        }
    }

    #[test]
    fn integers_round_trip_as_integers() {
        let (v, _) = decode(&encode(&Value::from(42)).unwrap()).unwrap();
        assert_eq!(v, Value::from(42));
        let (v, _) = decode(&encode(&Value::from(-2.5)).unwrap()).unwrap();
        assert_eq!(v, Value::from(-2.5));
    }

    #[test]
    fn type_spans_hold_every_value_of_the_type() {
        for v in [
            json!(null),
            json!(false),
            json!(true),
            json!(-1e300),
            json!(""),
        ] {
            let (first, past) = type_span(&v).unwrap();
            let e = encode(&v).unwrap();
            assert!(first <= e[0] && e[0] < past, "{v}");
        }
        assert_eq!(type_span(&json!(true)), type_span(&json!(false)));
        assert_eq!(type_span(&json!([1])), None);
    }

    #[test]
    fn same_key_across_number_forms_but_not_types() {
        assert!(same(&json!(1), &json!(1.0)));
        assert!(same(&json!(0.0), &json!(-0.0)));
        assert!(!same(&json!(1), &json!("1")));
        assert!(!same(&json!(null), &json!(false)));
        assert!(!same(&json!([1]), &json!([1])), "arrays are no key");
        assert!(!same(&json!({}), &json!({})), "objects are no key");
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        let p = encode(&Value::from("ab")).unwrap();
        let p = &p[..p.len() - 2];
        let end = prefix_end(p);
        assert!(encode(&Value::from("abzzz")).unwrap() < end);
        assert!(encode(&Value::from("ac")).unwrap() >= end);
    }
}
