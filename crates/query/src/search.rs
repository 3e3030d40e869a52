//! Running a query against a snapshot: pick index scans for what they can answer, fetch
//! the candidates, re-check every condition on the record, then sort, page and project.
//!
//! Memory stays bounded whatever the table holds ([`Limits`]): an index lookup collects
//! at most `max_candidates` keys (past that, a scan re-checks every record instead), and
//! a sort holds at most `sort_buffer_bytes` of results. A sort that would hold more walks
//! the first sort key's index in order and emits as it goes; with no index to walk, it is
//! refused ([`QueryError::SortBufferFull`]).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde_json::{Map, Value};
use shoal_store::key::{self, compare};
use shoal_store::{Snapshot, TableDef};

use crate::condition::{Comparator, Condition, Operator};
use crate::error::QueryError;

/// Memory bounds of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of results one query holds to sort them (by an attribute with no index,
    /// or to order the records that tie on the first of several sort keys).
    pub sort_buffer_bytes: usize,
    /// Most primary keys an index lookup collects for one condition; past it the
    /// condition is answered by a scan that re-checks every record.
    pub max_candidates: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sort_buffer_bytes: 64 << 20,
            max_candidates: 100_000,
        }
    }
}

/// Which attributes a result carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Projection {
    /// The whole record.
    #[default]
    All,
    /// These attributes, `null` when absent.
    Only(Vec<String>),
}

impl Projection {
    /// Harper's `get_attributes`: `["*"]` (or nothing) means all.
    pub fn from_attributes(attributes: Option<Vec<String>>) -> Self {
        match attributes {
            Some(list) if !list.iter().any(|a| a == "*") => Projection::Only(list),
            _ => Projection::All,
        }
    }

    /// The JSON of a record as the projection shows it.
    pub fn render(
        &self,
        json: &[u8],
        record: Option<&Map<String, Value>>,
    ) -> Result<Vec<u8>, QueryError> {
        match self {
            Projection::All => Ok(json.to_vec()),
            Projection::Only(attributes) => {
                let record = parsed(json, record)?;
                let out: Map<String, Value> = attributes
                    .iter()
                    .map(|a| (a.clone(), record.get(a).cloned().unwrap_or(Value::Null)))
                    .collect();
                Ok(serde_json::to_vec(&out).expect("maps serialise"))
            }
        }
    }
}

/// Most attributes one sort may have: REST `sort(a,b,...)`, or the `next` chain of a
/// search's `sort` object. Comparing and dropping a chain recurse once per key.
pub const MAX_SORT_KEYS: usize = 16;

/// A sort key, with an optional next key for ties.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// Attribute to sort by.
    pub attribute: String,
    /// Largest first.
    pub descending: bool,
    /// Tie-breaker.
    pub next: Option<Box<Sort>>,
}

impl Sort {
    /// The keys of the chain, first to last, counted without recursion.
    fn keys(&self) -> Vec<&Sort> {
        std::iter::successors(Some(self), |s| s.next.as_deref()).collect()
    }
}

/// A search over one table.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// What records must satisfy; `None` means every record.
    pub condition: Option<Condition>,
    /// Result order; primary key order when absent.
    pub sort: Option<Sort>,
    /// Results to skip.
    pub offset: usize,
    /// Most results returned.
    pub limit: Option<usize>,
    /// Attributes returned.
    pub projection: Projection,
    /// Memory bounds.
    pub limits: Limits,
}

/// Records by primary key, in the order asked, leaving out those that do not exist,
/// each (projected) handed to `emit`, which returns false to stop early.
pub fn by_ids(
    snapshot: &Snapshot,
    table: &TableDef,
    ids: &[Value],
    projection: &Projection,
    mut emit: impl FnMut(&[u8]) -> Result<bool, QueryError>,
) -> Result<(), QueryError> {
    for id in ids {
        if let Some(json) = snapshot.get(table, id)?.and_then(|v| v.json)
            && !emit(&projection.render(json, None)?)?
        {
            break;
        }
    }
    Ok(())
}

/// Harper's `search_by_value`: `*` alone matches every record; a leading and/or trailing
/// `*` makes a string value an ends-with, starts-with or contains match.
pub fn value_condition(attribute: &str, value: &Value) -> Option<Condition> {
    let leaf = |comparator, value| {
        Some(Condition::Compare {
            attribute: attribute.to_owned(),
            comparator,
            value,
        })
    };
    let Some(text) = value.as_str() else {
        return leaf(Comparator::Equals, value.clone());
    };
    if text.chars().all(|c| c == '*') && !text.is_empty() {
        return None;
    }
    match (text.strip_prefix('*'), text.strip_suffix('*')) {
        (Some(rest), Some(_)) if text.len() >= 2 => {
            leaf(Comparator::Contains, Value::from(&rest[..rest.len() - 1]))
        }
        (Some(rest), _) => leaf(Comparator::EndsWith, Value::from(rest)),
        (None, Some(rest)) => leaf(Comparator::StartsWith, Value::from(rest)),
        (None, None) => leaf(Comparator::Equals, value.clone()),
    }
}

/// How many results a query gives (after offset and limit), without sorting them.
pub fn count(snapshot: &Snapshot, table: &TableDef, query: &Query) -> Result<usize, QueryError> {
    let unsorted = Query {
        sort: None,
        projection: Projection::All,
        ..query.clone()
    };
    let mut n = 0;
    for_each(snapshot, table, &unsorted, |_| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// Runs a query, handing each result (the JSON of one projected record) to `emit` as it
/// is found, so that results can be streamed; `emit` returns false to stop early.
///
/// Unsorted results come in primary key order. A sort on the primary key walks the
/// records in key order. Any other sort is done in memory when it can be bounded (a
/// limit keeps only the best `offset + limit`; a condition the indexes narrowed, or a
/// small table, holds few records) and fits [`Limits::sort_buffer_bytes`]; otherwise the
/// first sort key's index is walked in value order, the records missing the attribute
/// (which sort as null) and those holding an array or object (which sort after every
/// scalar) being found by scans at their places. Only a sort on an attribute with no
/// index can fail for its size ([`QueryError::SortBufferFull`]), before anything is
/// emitted. Ties keep primary key order, in both directions.
pub fn for_each(
    snapshot: &Snapshot,
    table: &TableDef,
    query: &Query,
    mut emit: impl FnMut(&[u8]) -> Result<bool, QueryError>,
) -> Result<(), QueryError> {
    if let Some(c) = &query.condition {
        c.validate()?;
    }
    let keys = SortKeys::new(query.sort.as_ref());
    if keys.0.len() > MAX_SORT_KEYS {
        return Err(QueryError::Invalid(format!(
            "a sort takes at most {MAX_SORT_KEYS} attributes"
        )));
    }
    if query.limit == Some(0) {
        return Ok(());
    }
    let limits = query.limits;
    let candidates = match &query.condition {
        Some(c) => candidates(snapshot, table, c, limits.max_candidates)?,
        None => None,
    };
    let exact = candidates.is_some()
        && query
            .condition
            .as_ref()
            .is_some_and(|c| exact_by_index(table, c));
    let source = Source {
        snapshot,
        table,
        condition: query.condition.as_ref(),
        candidates: candidates.as_ref(),
        exact,
    };
    let mut page = Page {
        offset: query.offset,
        limit: query.limit,
        skipped: 0,
        sent: 0,
        stopped: false,
        projection: &query.projection,
        emit: &mut emit,
    };
    let Some(first) = &query.sort else {
        return source.each(false, false, |json, record| page.push(json, record));
    };
    if first.attribute == table.primary_key {
        // Primary keys are unique: the later sort keys never decide anything.
        return source.each(first.descending, false, |json, record| {
            page.push(json, record)
        });
    }
    if first.next.is_none() && fixed_by_equality(query.condition.as_ref(), &first.attribute) {
        // Every match sits under the same entry of the sorted attribute's index (an
        // array under the element that matched), so index order is primary-key order:
        // the order Harper's search_by_value answers in, with no record parsed to sort.
        return source.each(false, false, |json, record| page.push(json, record));
    }
    let indexed = table.is_indexed(&first.attribute);
    let few = query.limit.is_some()
        || candidates.is_some()
        || snapshot.record_count(table)? <= limits.max_candidates as u64;
    if few || !indexed {
        let mut buffer = SortBuffer::strict(&keys, page.wanted(), limits.sort_buffer_bytes);
        let gathered = source.each(false, true, |json, record| {
            buffer.push(json, record, page.projection)?;
            Ok(true)
        });
        match gathered {
            Ok(()) => return buffer.drain(&mut page).map(drop),
            // Nothing was emitted yet: the index walk starts afresh.
            Err(QueryError::SortBufferFull { .. }) if indexed => {}
            Err(e) => return Err(e),
        }
    }
    walk_index(&source, &keys, limits, &mut page)
}

/// Whether `condition` is an equality on `attribute` with a scalar value.
fn fixed_by_equality(condition: Option<&Condition>, attribute: &str) -> bool {
    matches!(condition, Some(Condition::Compare { attribute: a, comparator: Comparator::Equals, value })
        if a == attribute && !matches!(value, Value::Array(_) | Value::Object(_)))
}

/// Where the records a query considers come from: the candidates the indexes found, or
/// every record of the table; each re-checked against the condition (unless the index
/// answered it exactly).
struct Source<'a> {
    snapshot: &'a Snapshot,
    table: &'a TableDef,
    condition: Option<&'a Condition>,
    candidates: Option<&'a Keys>,
    exact: bool,
}

impl Source<'_> {
    /// Calls `f` with each matching record (its JSON, and the parsed record when
    /// `parsed`, or when checking the condition needed it) in primary key order, or
    /// reversed, until `f` returns false.
    fn each(
        &self,
        reverse: bool,
        parsed: bool,
        mut f: impl FnMut(&[u8], Option<&Map<String, Value>>) -> Result<bool, QueryError>,
    ) -> Result<(), QueryError> {
        let mut consider = |json: &[u8]| -> Result<bool, QueryError> {
            if self.exact && !parsed {
                return f(json, None);
            }
            let record = parse(json)?;
            if self.exact || self.condition.is_none_or(|c| c.matches(&record)) {
                return f(json, Some(&record));
            }
            Ok(true)
        };
        match self.candidates {
            Some(keys) => {
                let mut pks: Box<dyn Iterator<Item = &Value>> = if reverse {
                    Box::new(keys.values().rev())
                } else {
                    Box::new(keys.values())
                };
                pks.try_for_each(|pk| {
                    match self.snapshot.get(self.table, pk)?.and_then(|v| v.json) {
                        Some(json) if !consider(json)? => Err(Stop::Done),
                        _ => Ok(()),
                    }
                })
            }
            None => self
                .snapshot
                .scan(self.table, Bound::Unbounded, Bound::Unbounded, reverse)?
                .try_for_each(|row| {
                    let (_, version) = row?;
                    if consider(version.json.unwrap_or_default())? {
                        Ok(())
                    } else {
                        Err(Stop::Done)
                    }
                }),
        }
        .or_else(Stop::finish)
    }

    /// The record `pk` if it is live, a candidate and matches the condition.
    fn get(&self, pk: &Value) -> Result<Option<Found<'_>>, QueryError> {
        if let Some(keys) = self.candidates
            && !key::encode(pk).is_some_and(|k| keys.contains_key(&k))
        {
            return Ok(None);
        }
        let Some(json) = self.snapshot.get(self.table, pk)?.and_then(|v| v.json) else {
            return Ok(None);
        };
        let record = parse(json)?;
        let matched = self.exact || self.condition.is_none_or(|c| c.matches(&record));
        Ok(matched.then_some((json, record)))
    }
}

/// A record found: its stored JSON and the record.
type Found<'a> = (&'a [u8], Map<String, Value>);

/// Ends an iteration early, or with an error.
enum Stop {
    /// The consumer wants no more.
    Done,
    /// Something failed.
    Failed(QueryError),
}

impl Stop {
    fn finish(self) -> Result<(), QueryError> {
        match self {
            Stop::Done => Ok(()),
            Stop::Failed(e) => Err(e),
        }
    }
}

impl<E: Into<QueryError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.into())
    }
}

/// Offset and limit, applied to results in their final order on their way out.
struct Page<'a> {
    offset: usize,
    limit: Option<usize>,
    skipped: usize,
    sent: usize,
    /// `emit` wants no more (its client went away).
    stopped: bool,
    projection: &'a Projection,
    emit: &'a mut dyn FnMut(&[u8]) -> Result<bool, QueryError>,
}

impl Page<'_> {
    /// Results still to skip or send, when there is a limit.
    fn wanted(&self) -> Option<usize> {
        self.limit.map(|limit| {
            self.offset
                .saturating_add(limit)
                .saturating_sub(self.skipped + self.sent)
        })
    }

    /// Whether the page takes more results.
    fn open(&self) -> bool {
        !self.stopped && self.wanted() != Some(0)
    }

    /// Hands a result to `emit`.
    fn send(&mut self, rendered: &[u8]) -> Result<bool, QueryError> {
        self.sent += 1;
        self.stopped = !(self.emit)(rendered)?;
        Ok(self.open())
    }

    /// Takes one result; false once no more are wanted.
    fn push(
        &mut self,
        json: &[u8],
        record: Option<&Map<String, Value>>,
    ) -> Result<bool, QueryError> {
        if !self.open() {
            return Ok(false);
        }
        if self.skipped < self.offset {
            self.skipped += 1;
            return Ok(true);
        }
        let rendered = self.projection.render(json, record)?;
        self.send(&rendered)
    }

    /// Takes one result already projected.
    fn push_rendered(&mut self, rendered: &[u8]) -> Result<bool, QueryError> {
        if !self.open() {
            return Ok(false);
        }
        if self.skipped < self.offset {
            self.skipped += 1;
            return Ok(true);
        }
        self.send(rendered)
    }
}

/// The sort keys, first to last: (attribute, descending).
struct SortKeys(Vec<(String, bool)>);

impl SortKeys {
    fn new(sort: Option<&Sort>) -> Self {
        SortKeys(
            sort.map(Sort::keys)
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.attribute.clone(), s.descending))
                .collect(),
        )
    }

    /// A record's values for the keys, as far as sorting sees them: a missing attribute
    /// is null, and arrays and objects, which all sort alike, are kept as an empty array.
    fn values(&self, record: &Map<String, Value>) -> Vec<Value> {
        self.0
            .iter()
            .map(|(attribute, _)| match record.get(attribute) {
                None => Value::Null,
                Some(Value::Array(_) | Value::Object(_)) => Value::Array(Vec::new()),
                Some(v) => v.clone(),
            })
            .collect()
    }

    fn compare(&self, a: &[Value], b: &[Value]) -> Ordering {
        for (((_, descending), x), y) in self.0.iter().zip(a).zip(b) {
            let ord = compare(x, y);
            let ord = if *descending { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }
}

/// Results held to be sorted: all of them, or (with a limit) the best `keep`, within a
/// byte budget. A strict buffer fails past its budget; a buffer for one of several passes
/// keeps the smallest results that fit and notes that it dropped some, so that the next
/// pass takes up after the last one it sent.
struct SortBuffer<'k> {
    keys: &'k SortKeys,
    keep: Option<usize>,
    budget: usize,
    strict: bool,
    used: usize,
    items: Vec<Held>,
    arrived: u64,
    /// Only results after this one (the last sent by the previous pass) are taken.
    after: Option<Place>,
    /// Every result dropped to stay within the budget sorts at or after this one.
    cutoff: Option<Place>,
}

/// Where a result sorts: its sort values, then its arrival.
type Place = (Vec<Value>, u64);

/// One result held for sorting.
struct Held {
    values: Vec<Value>,
    /// Arrival order: primary key order, which ties keep.
    arrived: u64,
    rendered: Vec<u8>,
    size: usize,
}

impl<'k> SortBuffer<'k> {
    /// A buffer that fails past `budget`.
    fn strict(keys: &'k SortKeys, keep: Option<usize>, budget: usize) -> Self {
        SortBuffer {
            keys,
            keep,
            budget,
            strict: true,
            used: 0,
            items: Vec::new(),
            arrived: 0,
            after: None,
            cutoff: None,
        }
    }

    /// A buffer for one pass over results that arrive in the same order every pass,
    /// taking only those after `after`.
    fn pass(keys: &'k SortKeys, keep: Option<usize>, budget: usize, after: Option<Place>) -> Self {
        SortBuffer {
            strict: false,
            after,
            ..SortBuffer::strict(keys, keep, budget)
        }
    }

    fn order(&self, a: (&[Value], u64), b: (&[Value], u64)) -> Ordering {
        self.keys.compare(a.0, b.0).then(a.1.cmp(&b.1))
    }

    fn held_order(&self, a: &Held, b: &Held) -> Ordering {
        self.order((&a.values, a.arrived), (&b.values, b.arrived))
    }

    fn push(
        &mut self,
        json: &[u8],
        record: Option<&Map<String, Value>>,
        projection: &Projection,
    ) -> Result<(), QueryError> {
        let record = parsed(json, record)?;
        let values = self.keys.values(&record);
        let arrived = self.arrived;
        self.arrived += 1;
        let key = (&values[..], arrived);
        let seen = |bound: &Option<Place>| bound.as_ref().map(|(v, n)| self.order(key, (v, *n)));
        if seen(&self.after).is_some_and(Ordering::is_le)
            || seen(&self.cutoff).is_some_and(Ordering::is_ge)
        {
            return Ok(());
        }
        let rendered = projection.render(json, Some(&record))?;
        // What the held result costs, roughly: its bytes, its key values, the bookkeeping.
        let size = rendered.len()
            + values
                .iter()
                .map(|v| 32 + v.as_str().map_or(0, str::len))
                .sum::<usize>()
            + 64;
        self.used += size;
        self.items.push(Held {
            values,
            arrived,
            rendered,
            size,
        });
        if let Some(keep) = self.keep
            && self.items.len() > keep
            && (self.items.len() >= 2 * keep || self.used > self.budget)
        {
            let mut items = std::mem::take(&mut self.items);
            items.select_nth_unstable_by(keep, |a, b| self.held_order(a, b));
            self.drop_from(&mut items, keep);
            self.items = items;
        }
        if self.used > self.budget {
            if self.strict {
                return Err(QueryError::SortBufferFull { limit: self.budget });
            }
            // Keep the smallest half (at least one result, so that every pass sends
            // something), remembering where the dropped ones begin.
            let mut items = std::mem::take(&mut self.items);
            items.sort_unstable_by(|a, b| self.held_order(a, b));
            let mut kept = 0;
            let mut size = 0;
            while kept < items.len() && (kept == 0 || size + items[kept].size <= self.budget / 2) {
                size += items[kept].size;
                kept += 1;
            }
            self.drop_from(&mut items, kept);
            self.items = items;
        }
        Ok(())
    }

    /// Drops `items[at..]`, all sorting after `items[..at]`, lowering the cutoff to the
    /// first of them.
    fn drop_from(&mut self, items: &mut Vec<Held>, at: usize) {
        let smallest = items[at..]
            .iter()
            .min_by(|a, b| self.held_order(a, b))
            .map(|h| (h.values.clone(), h.arrived));
        if let Some(smallest) = smallest
            && self
                .cutoff
                .as_ref()
                .is_none_or(|c| self.order((&smallest.0, smallest.1), (&c.0, c.1)).is_lt())
        {
            self.cutoff = Some(smallest);
        }
        items.truncate(at);
        self.used = items.iter().map(|h| h.size).sum();
    }

    /// Sends the held results in order. Returns whether the page takes more, and, when
    /// this pass dropped results it will need, where the next pass starts.
    fn drain(mut self, page: &mut Page) -> Result<(bool, Option<Place>), QueryError> {
        let mut items = std::mem::take(&mut self.items);
        items.sort_unstable_by(|a, b| self.held_order(a, b));
        let mut last = None;
        for held in items {
            if !page.push_rendered(&held.rendered)? {
                return Ok((false, None));
            }
            last = Some((held.values, held.arrived));
        }
        let next = self.cutoff.is_some().then_some(last).flatten();
        Ok((page.open(), next))
    }
}

/// Sorts by walking the first sort key's index: records missing the attribute (null
/// sorts first) by a scan, then the index's values in order, then records holding an
/// array or object (after every scalar) by a scan; descending, the other way round.
fn walk_index(
    source: &Source,
    keys: &SortKeys,
    limits: Limits,
    page: &mut Page,
) -> Result<(), QueryError> {
    let (attribute, descending) = (&keys.0[0].0, keys.0[0].1);
    let budget = limits.sort_buffer_bytes;
    let pk = &source.table.primary_key;
    let null = key::encode(&Value::Null).unwrap_or_default();
    let scanned = |pick: fn(Option<&Value>) -> bool| {
        move |reverse: bool, f: &mut Each| {
            source.each(reverse, true, |json, record| match record {
                Some(r) if pick(r.get(attribute)) => f(json, r),
                _ => Ok(true),
            })
        }
    };
    let nulls = scanned(|v| matches!(v, None | Some(Value::Null)));
    let compounds = scanned(|v| matches!(v, Some(Value::Array(_) | Value::Object(_))));
    // A condition on the sorted attribute narrows the walk, and rules out nulls.
    let range = admitted(source.condition, attribute);
    let (low, high) = match &range {
        Some((low, high)) => (
            low.as_ref().map(Vec::as_slice),
            high.as_ref().map(Vec::as_slice),
        ),
        None => (Bound::Excluded(&null[..]), Bound::Unbounded),
    };
    let no_nulls = |_: bool, _: &mut Each| Ok(());
    let nulls: &dyn Fn(bool, &mut Each) -> Result<(), QueryError> =
        if range.is_some() { &no_nulls } else { &nulls };
    let first = if descending { &compounds } else { nulls };
    if !emit_run(page, keys, pk, budget, false, first)? {
        return Ok(());
    }
    // The index's values one after another, each run read by itself.
    let mut done: Option<Vec<u8>> = None;
    loop {
        let (lower, upper) = match (&done, descending) {
            (None, _) => (low, high),
            (Some(v), false) => (Bound::Excluded(&v[..]), high),
            (Some(v), true) => (low, Bound::Excluded(&v[..])),
        };
        let next = source
            .snapshot
            .index_entries(source.table, attribute, lower, upper, descending)?
            .next()
            .transpose()?
            .map(|(value, _)| value.to_vec());
        let Some(value) = next else {
            break;
        };
        let read = |reverse: bool, f: &mut Each| {
            let entries = source.snapshot.index_entries(
                source.table,
                attribute,
                Bound::Included(&value),
                Bound::Included(&value),
                reverse,
            )?;
            for entry in entries {
                let (_, pk) = entry?;
                let Some((json, record)) = source.get(&pk)? else {
                    continue;
                };
                // A record holding an array has an entry per element; it sorts with the
                // other compound values.
                if matches!(
                    record.get(attribute),
                    None | Some(Value::Null | Value::Array(_) | Value::Object(_))
                ) {
                    continue;
                }
                if !f(json, &record)? {
                    break;
                }
            }
            Ok(())
        };
        if !emit_run(page, keys, pk, budget, maybe_cut(&value), &read)? {
            return Ok(());
        }
        done = Some(value);
    }
    let last = if descending { nulls } else { &compounds };
    emit_run(page, keys, pk, budget, false, last).map(drop)
}

/// What a run's reader hands each record to; false stops the reading.
type Each<'f> = dyn FnMut(&[u8], &Map<String, Value>) -> Result<bool, QueryError> + 'f;

/// Sends one run of records that tie on the first sort key, in sort order; `read` reads
/// the run's matching records in primary key order (or reversed), the same every time,
/// and `cut` says that the index cut their values short (they may still differ).
/// Returns whether the page takes more.
///
/// A run needs no buffer when primary key order is its order. Otherwise it is sorted in
/// passes: each keeps the smallest results that fit the sort buffer, sends them, and the
/// next takes up after the last one sent, so memory stays bounded however long the run.
fn emit_run(
    page: &mut Page,
    keys: &SortKeys,
    pk: &str,
    budget: usize,
    cut: bool,
    read: &dyn Fn(bool, &mut Each) -> Result<(), QueryError>,
) -> Result<bool, QueryError> {
    let by_key = match keys.0.get(1) {
        None => Some(false),
        Some((attribute, descending)) if attribute == pk => Some(*descending),
        Some(_) => None,
    };
    if let (Some(reverse), false) = (by_key, cut) {
        read(reverse, &mut |json, record| page.push(json, Some(record)))?;
        return Ok(page.open());
    }
    let mut after = None;
    loop {
        let mut buffer = SortBuffer::pass(keys, page.wanted(), budget, after);
        read(false, &mut |json, record| {
            buffer
                .push(json, Some(record), page.projection)
                .map(|()| true)
        })?;
        let (more, next) = buffer.drain(page)?;
        match next {
            Some(next) if more => after = Some(next),
            _ => return Ok(more),
        }
    }
}

/// Whether an encoded index value may be a string the index cut short (or is exactly as
/// long as what it keeps), so that records sharing it may differ further on.
fn maybe_cut(encoded: &[u8]) -> bool {
    match key::decode(encoded) {
        Some((Value::String(s), _)) => s.len() >= shoal_store::MAX_INDEXED_STRING,
        Some(_) => false,
        // Cut inside a character.
        None => true,
    }
}

fn parse(json: &[u8]) -> Result<Map<String, Value>, QueryError> {
    serde_json::from_slice(json)
        .map_err(|e| QueryError::Invalid(format!("stored record is not a JSON object: {e}")))
}

/// The record of `json`: `record` if the caller parsed it already, else parsed now.
fn parsed<'r>(
    json: &[u8],
    record: Option<&'r Map<String, Value>>,
) -> Result<Cow<'r, Map<String, Value>>, QueryError> {
    match record {
        Some(record) => Ok(Cow::Borrowed(record)),
        None => parse(json).map(Cow::Owned),
    }
}

/// Whether the index alone decides `condition`: an equality on the primary key or an
/// indexed attribute, with a value the index holds whole (not a string it cuts short),
/// so candidates need no re-check.
fn exact_by_index(table: &TableDef, condition: &Condition) -> bool {
    let Condition::Compare {
        attribute,
        comparator: Comparator::Equals,
        value,
    } = condition
    else {
        return false;
    };
    let whole = match value {
        Value::String(s) => s.len() < shoal_store::MAX_INDEXED_STRING,
        Value::Number(_) | Value::Bool(_) => true,
        _ => false,
    };
    whole && (*attribute == table.primary_key || table.is_indexed(attribute))
}

/// Bounds on encoded index values.
type Range = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The encoded index values of `attribute` that `condition` admits, when it demands a
/// comparison of `attribute` with a scalar (alone or in a top-level and-group): a record
/// whose scalar value lies outside cannot match, nor can one missing the attribute. Bounds
/// are inclusive of values the index cut short; candidates are re-checked.
fn admitted(condition: Option<&Condition>, attribute: &str) -> Option<Range> {
    let range = |c: &Condition| {
        let Condition::Compare {
            attribute: a,
            comparator,
            value,
        } = c
        else {
            return None;
        };
        if a != attribute || value.is_null() {
            return None;
        }
        let encoded = |v: &Value| {
            let mut out = Vec::new();
            key::encode_truncated_into(v, shoal_store::MAX_INDEXED_STRING, &mut out).then_some(out)
        };
        let (first, past) = key::type_span(value)?;
        Some(match comparator {
            Comparator::Equals => (
                Bound::Included(encoded(value)?),
                Bound::Included(encoded(value)?),
            ),
            Comparator::GreaterThan | Comparator::GreaterThanEqual => (
                Bound::Included(encoded(value)?),
                Bound::Excluded(vec![past]),
            ),
            Comparator::LessThan | Comparator::LessThanEqual => (
                Bound::Included(vec![first]),
                Bound::Included(encoded(value)?),
            ),
            Comparator::Between => match value.as_array().map(Vec::as_slice) {
                Some([lo, hi]) => (Bound::Included(encoded(lo)?), Bound::Included(encoded(hi)?)),
                _ => return None,
            },
            Comparator::StartsWith => {
                let mut start = encoded(value)?;
                start.truncate(start.len() - 2); // the terminator: a prefix of longer strings
                let end = key::prefix_end(&start);
                (Bound::Included(start), Bound::Excluded(end))
            }
            _ => return None,
        })
    };
    match condition? {
        c @ Condition::Compare { .. } => range(c),
        Condition::Group {
            operator: Operator::And,
            conditions,
        } => conditions.iter().find_map(range),
        Condition::Group { .. } => None,
    }
}

/// Keys by encoded primary key (so in key order and without repeats).
type Keys = BTreeMap<Vec<u8>, Value>;

/// Primary keys that may satisfy `condition`, from indexes; `None` when some part of it
/// can only be answered by reading every record, or when the indexes would give more
/// than `cap` keys (a scan then answers, in bounded memory).
fn candidates(
    snapshot: &Snapshot,
    table: &TableDef,
    condition: &Condition,
    cap: usize,
) -> Result<Option<Keys>, QueryError> {
    match condition {
        Condition::Compare {
            attribute,
            comparator,
            value,
        } => leaf_candidates(snapshot, table, attribute, *comparator, value, cap),
        Condition::Group {
            operator: Operator::And,
            conditions,
        } => {
            let mut best: Option<Keys> = None;
            for c in conditions {
                if let Some(keys) = candidates(snapshot, table, c, cap)? {
                    best = Some(match best {
                        None => keys,
                        Some(prev) => prev
                            .into_iter()
                            .filter(|(k, _)| keys.contains_key(k))
                            .collect(),
                    });
                }
            }
            Ok(best)
        }
        Condition::Group {
            operator: Operator::Or,
            conditions,
        } => {
            let mut all = Keys::new();
            for c in conditions {
                match candidates(snapshot, table, c, cap)? {
                    Some(keys) => all.extend(keys),
                    None => return Ok(None),
                }
                if all.len() > cap {
                    return Ok(None);
                }
            }
            Ok(Some(all))
        }
    }
}

fn leaf_candidates(
    snapshot: &Snapshot,
    table: &TableDef,
    attribute: &str,
    comparator: Comparator,
    value: &Value,
    cap: usize,
) -> Result<Option<Keys>, QueryError> {
    let (lower, upper) = match (comparator, value) {
        // A missing attribute counts as null, and the index has no entry for it.
        (_, Value::Null) => return Ok(None),
        (Comparator::Equals, v) => (Bound::Included(v), Bound::Included(v)),
        (Comparator::GreaterThan | Comparator::GreaterThanEqual, v) => {
            (Bound::Included(v), Bound::Unbounded)
        }
        (Comparator::LessThan | Comparator::LessThanEqual, v) => {
            (Bound::Unbounded, Bound::Included(v))
        }
        (Comparator::Between, Value::Array(pair)) if pair.len() == 2 => {
            (Bound::Included(&pair[0]), Bound::Included(&pair[1]))
        }
        (Comparator::StartsWith, Value::String(prefix)) if table.is_indexed(attribute) => {
            return collect(snapshot.index_prefix(table, attribute, prefix)?, cap);
        }
        _ => return Ok(None),
    };
    if attribute == table.primary_key {
        let rows = snapshot.scan(table, lower, upper, false)?;
        return collect(rows.map(|r| r.map(|(pk, _)| pk)), cap);
    }
    if !table.is_indexed(attribute) {
        return Ok(None);
    }
    collect(snapshot.index_scan(table, attribute, lower, upper)?, cap)
}

/// The keys, or `None` past `cap` of them.
fn collect(
    keys: impl Iterator<Item = shoal_store::Result<Value>>,
    cap: usize,
) -> Result<Option<Keys>, QueryError> {
    let mut out = Keys::new();
    for pk in keys {
        let pk = pk?;
        let encoded = key::encode(&pk).unwrap_or_default();
        out.insert(encoded, pk);
        if out.len() > cap {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_index_matches() {
        let table = TableDef {
            id: 1,
            name: "dog".into(),
            primary_key: "id".into(),
            attributes: vec![],
            indexed: Some(["age".to_owned()].into()),
            replicate: true,
            created: 0,
        };
        let eq = |attribute: &str, value: Value| Condition::Compare {
            attribute: attribute.into(),
            comparator: Comparator::Equals,
            value,
        };
        assert!(exact_by_index(&table, &eq("age", json!(3))));
        assert!(exact_by_index(&table, &eq("id", json!("a"))));
        assert!(
            !exact_by_index(&table, &eq("name", json!("a"))),
            "not indexed"
        );
        assert!(
            !exact_by_index(&table, &eq("age", json!(null))),
            "null is answered by a scan"
        );
        let long = "x".repeat(shoal_store::MAX_INDEXED_STRING);
        assert!(
            !exact_by_index(&table, &eq("age", json!(long))),
            "cut in the index"
        );
    }

    #[test]
    fn wildcards() {
        let c = |v: Value| value_condition("name", &v);
        assert_eq!(c(json!("*")), None);
        let cmp = |cond: Option<Condition>| match cond {
            Some(Condition::Compare {
                comparator, value, ..
            }) => (comparator, value),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            cmp(c(json!("Pen*"))),
            (Comparator::StartsWith, json!("Pen"))
        );
        assert_eq!(cmp(c(json!("*ny"))), (Comparator::EndsWith, json!("ny")));
        assert_eq!(cmp(c(json!("*en*"))), (Comparator::Contains, json!("en")));
        assert_eq!(cmp(c(json!("Penny"))), (Comparator::Equals, json!("Penny")));
        assert_eq!(cmp(c(json!(5))), (Comparator::Equals, json!(5)));
    }
}
