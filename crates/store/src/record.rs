//! A stored record: its live attributes (or a tombstone), with the timestamps that let
//! any two nodes merge their states of it to the same result in any order.
//!
//! A record's state is a *base* — the last full write (a put) or delete, with its
//! `(hlc, origin)` stamp — plus the attributes written since, each with the stamp of its
//! last write. Merging two states keeps the greater base and, for each attribute, the
//! value with the greater stamp if that stamp is not older than the base. The merge is
//! commutative, associative and idempotent, so replicas converge whatever order puts,
//! patches and deletes reach them in; a patch merges attribute by attribute against the
//! writes it did not see.
//!
//! Layout (format 2, see docs/format.md):
//! `[2][flags: bit0 tombstone][hlc u64][origin len u8][origin]`
//! `[base hlc u64][base origin len u8][base origin][base kind: 0 put, 1 delete]`
//! `[n u16][n × (name len u16, name, hlc u64, origin len u8, origin)][JSON]`
//! where `hlc`/`origin` are the newest stamp in the record, the `n` entries are the
//! attributes whose stamp is not the base's, and the JSON is the live attributes as a
//! client receives them (empty for a tombstone), so a point read serves stored bytes.
//! Format 1 (no base section, no attribute stamps) is still read.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::StoreError;

const FORMAT_1: u8 = 1;
const FORMAT: u8 = 2;
const TOMBSTONE: u8 = 1;

/// When and where a write was made; writes are ordered by these, node name breaking ties.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Hybrid logical clock timestamp.
    pub hlc: u64,
    /// Node name.
    pub origin: String,
}

impl Stamp {
    /// A stamp.
    pub fn new(hlc: u64, origin: &str) -> Self {
        Stamp {
            hlc,
            origin: origin.to_owned(),
        }
    }
}

/// One record as stored, borrowed from the storage page.
#[derive(Debug, Clone, PartialEq)]
pub struct Version<'a> {
    /// Newest write's hybrid logical clock timestamp.
    pub hlc: u64,
    /// Node where the newest write was made.
    pub origin: &'a str,
    /// The record's JSON, or `None` for a tombstone.
    pub json: Option<&'a [u8]>,
    /// The base and attribute stamps, still encoded.
    stamps: &'a [u8],
    format: u8,
    /// The whole stored value.
    raw: &'a [u8],
}

impl<'a> Version<'a> {
    /// Decodes a stored record, borrowing from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StoreError> {
        let mut r = Reader(bytes);
        let format = r.u8()?;
        if format != FORMAT && format != FORMAT_1 {
            return Err(corrupt());
        }
        let flags = r.u8()?;
        let hlc = r.u64()?;
        let origin = r.str8()?;
        let stamps_start = bytes.len() - r.0.len();
        if format == FORMAT {
            r.u64()?;
            r.str8()?;
            r.u8()?;
            for _ in 0..r.u16()? {
                let len = usize::from(r.u16()?);
                r.take(len)?;
                r.u64()?;
                r.str8()?;
            }
        }
        let stamps = &bytes[stamps_start..bytes.len() - r.0.len()];
        Ok(Version {
            hlc,
            origin,
            json: (flags & TOMBSTONE == 0).then_some(r.0),
            stamps,
            format,
            raw: bytes,
        })
    }

    /// The stored bytes, as a full copy ships them.
    pub fn bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The record as a JSON object, or `None` for a tombstone.
    pub fn value(&self) -> Result<Option<Map<String, Value>>, StoreError> {
        self.json
            .map(|json| serde_json::from_slice(json).map_err(|_| corrupt()))
            .transpose()
    }

    /// The full state, for merging.
    pub fn state(&self) -> Result<RecordState, StoreError> {
        let attrs = self.value()?.unwrap_or_default();
        if self.format == FORMAT_1 {
            return Ok(RecordState {
                base: Stamp::new(self.hlc, self.origin),
                deleted: self.json.is_none(),
                attrs,
                stamps: BTreeMap::new(),
            });
        }
        let mut r = Reader(self.stamps);
        let base = Stamp::new(r.u64()?, r.str8()?);
        let deleted = r.u8()? == 1;
        let mut stamps = BTreeMap::new();
        for _ in 0..r.u16()? {
            let len = usize::from(r.u16()?);
            let name = std::str::from_utf8(r.take(len)?).map_err(|_| corrupt())?;
            stamps.insert(name.to_owned(), Stamp::new(r.u64()?, r.str8()?));
        }
        Ok(RecordState {
            base,
            deleted,
            attrs,
            stamps,
        })
    }
}

/// A record's mergeable state.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordState {
    /// The last put or delete.
    pub base: Stamp,
    /// Whether the base is a delete.
    pub deleted: bool,
    /// Attributes written at or after the base.
    pub attrs: Map<String, Value>,
    /// Stamps of attributes written after the base (the rest carry the base's).
    pub stamps: BTreeMap<String, Stamp>,
}

impl RecordState {
    /// No record at all: what a key that was never written holds.
    pub fn absent() -> Self {
        RecordState {
            base: Stamp::default(),
            deleted: true,
            attrs: Map::new(),
            stamps: BTreeMap::new(),
        }
    }

    /// A full write: these attributes, and no others older than it.
    pub fn put(stamp: Stamp, attrs: Map<String, Value>) -> Self {
        RecordState {
            base: stamp,
            deleted: false,
            attrs,
            stamps: BTreeMap::new(),
        }
    }

    /// A delete: no attribute older than it.
    pub fn delete(stamp: Stamp) -> Self {
        RecordState {
            base: stamp,
            ..RecordState::absent()
        }
    }

    /// A patch: these attributes, at this stamp, over whatever else there is.
    pub fn patch(stamp: Stamp, attrs: Map<String, Value>) -> Self {
        let stamps = attrs.keys().map(|k| (k.clone(), stamp.clone())).collect();
        RecordState {
            base: Stamp::default(),
            deleted: true,
            attrs,
            stamps,
        }
    }

    /// An attribute's value with its stamp.
    fn pick(&self, attribute: &str) -> Option<(Stamp, &Value)> {
        self.attrs
            .get(attribute)
            .map(|v| (self.stamp(attribute).clone(), v))
    }

    /// The stamp of an attribute's value.
    fn stamp(&self, attribute: &str) -> &Stamp {
        self.stamps.get(attribute).unwrap_or(&self.base)
    }

    /// Whether the record exists: a put is its base, or something was written since the
    /// delete that is.
    pub fn is_live(&self) -> bool {
        !self.deleted || !self.attrs.is_empty()
    }

    /// The live attributes, or `None` for a tombstone.
    pub fn live(&self) -> Option<&Map<String, Value>> {
        self.is_live().then_some(&self.attrs)
    }

    /// The newest stamp in the record.
    pub fn newest(&self) -> &Stamp {
        self.stamps.values().fold(&self.base, |a, b| a.max(b))
    }

    /// The state that holds both: the greater base, and per attribute the newer value
    /// unless the base is newer still. Attributes keep the order of the state with the
    /// greater base, then the other's.
    pub fn merge(&self, other: &RecordState) -> RecordState {
        let (first, second) = if other.base > self.base {
            (other, self)
        } else {
            (self, other)
        };
        let mut merged = RecordState {
            base: first.base.clone(),
            deleted: first.deleted,
            ..RecordState::absent()
        };
        for name in first.attrs.keys().chain(second.attrs.keys()) {
            if merged.attrs.contains_key(name) {
                continue;
            }
            let (stamp, value) = match (first.pick(name), second.pick(name)) {
                (Some(a), Some(b)) => {
                    if b.0 > a.0 {
                        b
                    } else {
                        a
                    }
                }
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => continue,
            };
            if stamp < merged.base {
                continue;
            }
            merged.attrs.insert(name.clone(), value.clone());
            if stamp != merged.base {
                merged.stamps.insert(name.clone(), stamp);
            }
        }
        merged
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let newest = self.newest().clone();
        let live = self.is_live();
        let mut out = Vec::with_capacity(64 + self.attrs.len() * 16);
        out.push(FORMAT);
        out.push(if live { 0 } else { TOMBSTONE });
        out.extend_from_slice(&newest.hlc.to_be_bytes());
        push_str8(&mut out, &newest.origin);
        out.extend_from_slice(&self.base.hlc.to_be_bytes());
        push_str8(&mut out, &self.base.origin);
        out.push(u8::from(self.deleted));
        let stamps: Vec<_> = self
            .stamps
            .iter()
            .filter(|(k, _)| self.attrs.contains_key(*k))
            .collect();
        out.extend_from_slice(&(stamps.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        for (name, stamp) in stamps.into_iter().take(usize::from(u16::MAX)) {
            let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&stamp.hlc.to_be_bytes());
            push_str8(&mut out, &stamp.origin);
        }
        if live {
            serde_json::to_writer(&mut out, &self.attrs).expect("maps serialise");
        }
        out
    }
}

fn push_str8(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("record version".into())
}

/// Reads the fixed-width fields of a stored record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("two bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("eight bytes"),
        ))
    }
    fn str8(&mut self) -> Result<&'a str, StoreError> {
        let len = usize::from(self.u8()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn round_trip() {
        let state = RecordState::put(Stamp::new(7, "a"), map(json!({"id": 1}))).merge(
            &RecordState::patch(Stamp::new(9, "b"), map(json!({"n": 2}))),
        );
        let bytes = state.encode();
        let v = Version::decode(&bytes).unwrap();
        assert_eq!((v.hlc, v.origin), (9, "b"));
        assert_eq!(v.json, Some(&br#"{"id":1,"n":2}"#[..]));
        assert_eq!(v.state().unwrap(), state);
        let tomb = RecordState::delete(Stamp::new(3, "a")).encode();
        assert_eq!(Version::decode(&tomb).unwrap().json, None);
        assert!(Version::decode(&[9, 0]).is_err());
        assert!(Version::decode(&bytes[..12]).is_err());
    }

    #[test]
    fn a_patch_after_a_delete_keeps_only_its_attributes_everywhere() {
        let created = RecordState::put(Stamp::new(1, "a"), map(json!({"id": 1, "c": 1, "x": 1})));
        let deleted = RecordState::delete(Stamp::new(2, "a"));
        let patched = RecordState::patch(Stamp::new(3, "b"), map(json!({"id": 1, "x": 2})));
        let one = created.merge(&deleted).merge(&patched);
        let two = created.merge(&patched).merge(&deleted);
        assert_eq!(one, two);
        assert_eq!(one.live().unwrap(), &map(json!({"id": 1, "x": 2})));
    }

    /// A write without its stamp: every write gets its own (as the HLC guarantees).
    fn write() -> impl Strategy<Value = (u8, Map<String, Value>, bool)> {
        let attrs = proptest::collection::btree_map("[xyz]", 0i64..3, 0..3).prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect::<Map<_, _>>()
        });
        (0u8..3, attrs, any::<bool>())
    }

    fn stamped(writes: &[(u8, Map<String, Value>, bool)]) -> Vec<RecordState> {
        writes
            .iter()
            .enumerate()
            .map(|(i, (kind, attrs, b))| {
                let stamp = Stamp::new(i as u64 + 1, if *b { "b" } else { "a" });
                match kind {
                    0 => RecordState::put(stamp, attrs.clone()),
                    1 => RecordState::delete(stamp),
                    _ => RecordState::patch(stamp, attrs.clone()),
                }
            })
            .collect()
    }

    fn same(a: &RecordState, b: &RecordState) -> bool {
        // Attribute order may differ; content may not.
        a.base == b.base
            && a.deleted == b.deleted
            && a.stamps == b.stamps
            && a.attrs.len() == b.attrs.len()
            && a.attrs.iter().all(|(k, v)| b.attrs.get(k) == Some(v))
    }

    proptest! {
        #[test]
        fn merge_converges_in_any_order(writes in proptest::collection::vec(write(), 1..6), seed in any::<u64>()) {
            let writes = stamped(&writes);
            let forward = writes.iter().fold(RecordState::absent(), |s, w| s.merge(w));
            let mut shuffled = writes.clone();
            let n = shuffled.len();
            for i in 0..n {
                shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n);
            }
            let other = shuffled.iter().fold(RecordState::absent(), |s, w| s.merge(w));
            prop_assert!(same(&forward, &other), "{:?} vs {:?}", forward, other);
            prop_assert!(same(&forward.merge(&forward), &forward), "idempotent");
        }
    }
}
