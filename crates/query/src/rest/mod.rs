//! Harper's REST URL query language, as it appears after the `?` of a collection URL:
//! `name=Penny&age=gt=3|(rating=5&[tag=fast|tag=new])&select(name,age)&sort(-age)&limit(10)`.
//!
//! Parsing works on the raw, still percent-encoded text, so an encoded `%26`, `%7C`, `%28`
//! or `%3D` is always part of a name or value and never syntax.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use serde_json::{Number, Value};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::parsing::Parsed;
use time::{Date, PrimitiveDateTime, Time, UtcOffset};

use crate::condition::{Comparator, Condition, MAX_DEPTH, Operator};
use crate::error::QueryError;
use crate::search::{MAX_SORT_KEYS, Projection, Sort};

/// A parsed REST query string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestQuery {
    /// What records must satisfy; `None` means every record.
    pub condition: Option<Condition>,
    /// Attributes returned, from `select(...)`.
    pub select: Projection,
    /// Results to skip, from `limit(start,end)`.
    pub offset: usize,
    /// Most results returned, from `limit(n)` or `limit(start,end)`.
    pub limit: Option<usize>,
    /// Result order, from `sort(...)`.
    pub sort: Option<Sort>,
}

/// Parses the raw (still percent-encoded) query string, e.g.
/// `name=Penny&age=gt=3&select(name,age)&limit(10)`.
///
/// A leading `?` is ignored; an empty string gives [`RestQuery::default`].
///
/// **Conditions.** `attr=value` and `attr==value` are equals; `attr!=value` is not-equal;
/// `attr=op=value` takes the FIQL operators `eq`, `ne`, `gt`, `ge`, `lt`, `le`, `ct`
/// (contains), `sw` (starts with) and `ew` (ends with), or the long names (`equals`,
/// `not_equal`, `greater_than`, `greater_than_equal`, `less_than`, `less_than_equal`,
/// `contains`, `starts_with`, `ends_with`); `attr<v`, `attr<=v`, `attr>v`, `attr>=v` work
/// too. `attr==Pen*` (or `attr=eq=Pen*`) is starts-with `Pen`, as in Harper; `*` elsewhere
/// in such a value is an error, and `%2A` is a literal star. `attr===v` and `attr!==v`
/// are Harper's strict forms: the value is always the decoded string.
///
/// **Ranges.** A bound with no attribute name right after `&` chains onto the condition
/// before it: `age=gt=1&lt=9` or `age=gt=1&=lt=9`. Only a lower bound (`gt`/`ge`) with an
/// upper bound (`lt`/`le`), in either order, chains. Two inclusive bounds give a
/// [`Comparator::Between`] `[low, high]`; otherwise the two comparisons are an `And`
/// group. A bare `lt=9` that does not follow a matching bound is an ordinary equals
/// condition on an attribute called `lt`; `=lt=9` there is an error.
///
/// **Precedence.** Terms are joined by `&` (and) and `|` (or); `&` binds tighter than
/// `|`, so `a=1|b=2&c=3` is `a=1 | (b=2 & c=3)`. (Harper itself rejects mixing the two
/// in one group; this parser accepts it with the usual precedence.) `(...)` and `[...]`
/// group, at most [`MAX_DEPTH`] levels deep. Groups keep their shape: `(a=1&b=2)&c=3` is
/// an `And` holding an `And`, and a group of one condition is just that condition. Empty
/// terms between `&`s (`a=1&&b=2`, a trailing `&`) are ignored; an empty side of `|` or
/// an empty group is an error.
///
/// **Values.** Names and values are percent-decoded (`%20` is a space, `%2C` a comma);
/// `+` stays a literal plus, as with JavaScript's `decodeURIComponent` that Harper uses.
/// A type prefix fixes the type: `number:5`, `string:5`, `boolean:true`, and
/// `date:2024-01-05T20:07:27.955Z` (milliseconds since the epoch, as a number; the
/// colons may be raw or `%3A`). A date is `YYYY-MM-DD` with an optional
/// `THH:MM[:SS[.fff]]` and an optional `Z` or `±HH:MM` offset; a date or time without an
/// offset is taken as UTC, and a `date:` value of only digits is already milliseconds.
/// Without a known prefix the value is auto-typed, standing in for the per-attribute
/// typing Harper gets from a schema: `null`, `true` and `false` become JSON null and
/// booleans, text that is a JSON number (`5`, `-1.5`, `2e3`, not `05` or `+5`) becomes a
/// number, and anything else stays a string. `ct`, `sw` and `ew` are text comparisons, so
/// their values stay strings unless prefixed. An unknown prefix (`time==10:30`) is just
/// part of the text.
///
/// **Functions.** `select(a,b)` gives [`Projection::Only`] (`select(a,)` is the same as
/// `select(a)`, and `*` selects everything); `limit(n)` gives `limit = n`;
/// `limit(start,end)` gives `offset = start`, `limit = end - start`; `sort(+a,-b)` or
/// `sort(a,-b)` gives a [`Sort`] chain (`-` is descending) of at most [`MAX_SORT_KEYS`]
/// attributes. Functions may appear anywhere at the top level, each at most once, and do
/// not take part in the and/or structure; they are not allowed inside a group.
///
/// Malformed input (unbalanced brackets, an unknown operator or function, an empty
/// attribute name, a bad `limit`, a bad typed value, bad percent-encoding, or a value of
/// the wrong type for its comparator) is a [`QueryError::Invalid`] naming the problem.
pub fn parse_rest_query(raw: &str) -> Result<RestQuery, QueryError> {
    let text = raw.strip_prefix('?').unwrap_or(raw);
    // Clients percent-encode '<' and '>' (they are not allowed raw in a URL); as
    // operators they must be seen, and inside values they decode the same either way.
    let text = decode_angle_brackets(text);
    let mut parser = Parser {
        text: &text,
        pos: 0,
        select: None,
        limit: None,
        sort: None,
    };
    let condition = parser.parse_or(0)?;
    if let Some(c) = parser.peek() {
        return Err(if matches!(c, b')' | b']') {
            invalid(format!(
                "unbalanced '{}' at byte {}: there is no group to close",
                c as char, parser.pos
            ))
        } else {
            invalid(format!("expected '&' or '|' but found {}", parser.found()))
        });
    }
    if let Some(condition) = &condition {
        condition.validate()?;
    }
    let (offset, limit) = parser.limit.unwrap_or((0, None));
    Ok(RestQuery {
        condition,
        select: parser.select.unwrap_or_default(),
        offset,
        limit,
        sort: parser.sort,
    })
}

/// `%3C` / `%3E` (either case) as `<` / `>`.
fn decode_angle_brackets(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).map(str::to_ascii_uppercase);
        match code.as_deref() {
            Some("3C") => out.push('<'),
            Some("3E") => out.push('>'),
            _ => {
                out.push('%');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn invalid(message: impl Into<String>) -> QueryError {
    QueryError::Invalid(message.into())
}

/// How a comparison's raw value becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// Type prefixes, then auto-typing.
    Typed,
    /// Type prefixes, otherwise a string.
    Text,
    /// As `Typed`, but a trailing `*` makes it a starts-with.
    Wildcard,
    /// Always the decoded string.
    Strict,
}

/// One comparison as written, before range chaining.
struct Comparison {
    /// `None` for a chained bound written `=lt=9`.
    attribute: Option<String>,
    comparator: Comparator,
    value: Value,
    /// The bound a bare `lt=9` (attribute `lt`, plain `=`) stands for, if chained.
    bare_bound: Option<Comparator>,
    /// The term's text, for messages.
    text: String,
}

enum Term {
    /// Nothing between two separators.
    Empty,
    /// A query function, already recorded on the parser.
    Function,
    /// A bracketed group.
    Group(Condition),
    /// A comparison.
    Compare(Comparison),
}

/// A comparison that may still take a chained range bound.
struct Leaf {
    attribute: String,
    comparator: Comparator,
    value: Value,
    chained: Option<(Comparator, Value)>,
}

enum Item {
    Leaf(Leaf),
    Done(Condition),
}

fn is_lower(c: Comparator) -> bool {
    matches!(c, Comparator::GreaterThan | Comparator::GreaterThanEqual)
}

fn is_upper(c: Comparator) -> bool {
    matches!(c, Comparator::LessThan | Comparator::LessThanEqual)
}

impl Leaf {
    fn accepts(&self, bound: Comparator) -> bool {
        self.chained.is_none()
            && ((is_lower(self.comparator) && is_upper(bound))
                || (is_upper(self.comparator) && is_lower(bound)))
    }

    fn finish(self) -> Condition {
        let compare = |attribute: &str, comparator, value| Condition::Compare {
            attribute: attribute.to_owned(),
            comparator,
            value,
        };
        let Some((comparator, value)) = self.chained else {
            return compare(&self.attribute, self.comparator, self.value);
        };
        let first = (self.comparator, self.value);
        let second = (comparator, value);
        let (low, high) = if is_lower(first.0) {
            (&first, &second)
        } else {
            (&second, &first)
        };
        if low.0 == Comparator::GreaterThanEqual && high.0 == Comparator::LessThanEqual {
            let pair = Value::Array(vec![low.1.clone(), high.1.clone()]);
            return compare(&self.attribute, Comparator::Between, pair);
        }
        Condition::Group {
            operator: Operator::And,
            conditions: vec![
                compare(&self.attribute, first.0, first.1),
                compare(&self.attribute, second.0, second.1),
            ],
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    select: Option<Projection>,
    limit: Option<(usize, Option<usize>)>,
    sort: Option<Sort>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Describes what is at the current position, for messages.
    fn found(&self) -> String {
        match self.text[self.pos..].chars().next() {
            Some(c) => format!("'{c}' at byte {}", self.pos),
            None => "the end of the query".to_owned(),
        }
    }

    /// `and_expr ('|' and_expr)*`.
    fn parse_or(&mut self, depth: usize) -> Result<Option<Condition>, QueryError> {
        let mut alternatives = Vec::new();
        let mut empty_at = None;
        let mut bars = 0;
        loop {
            let start = self.pos;
            let (condition, had_function) = self.parse_and(depth)?;
            match condition {
                Some(condition) => alternatives.push(condition),
                None if !had_function => {
                    empty_at.get_or_insert(start);
                }
                None => {}
            }
            if self.peek() != Some(b'|') {
                break;
            }
            self.pos += 1;
            bars += 1;
        }
        if bars > 0
            && let Some(at) = empty_at
        {
            return Err(invalid(format!(
                "missing condition at byte {at}: '|' needs a condition on each side"
            )));
        }
        Ok(match alternatives.len() {
            0 | 1 => alternatives.pop(),
            _ => Some(Condition::Group {
                operator: Operator::Or,
                conditions: alternatives,
            }),
        })
    }

    /// `term ('&' term)*`; also reports whether a query function was among the terms.
    fn parse_and(&mut self, depth: usize) -> Result<(Option<Condition>, bool), QueryError> {
        let mut items: Vec<Item> = Vec::new();
        let mut had_function = false;
        // Whether the last item is a leaf written directly before this `&`, so that a
        // range bound may chain onto it.
        let mut chainable = false;
        loop {
            match self.parse_term(depth)? {
                Term::Empty => {}
                Term::Function => {
                    had_function = true;
                    chainable = false;
                }
                Term::Group(condition) => {
                    items.push(Item::Done(condition));
                    chainable = false;
                }
                Term::Compare(comparison) => {
                    // The bound this term adds to the previous leaf, if it chains onto it.
                    let bound = match &comparison.attribute {
                        None => Some(comparison.comparator),
                        Some(_) => comparison.bare_bound,
                    };
                    let target = match items.last_mut() {
                        Some(Item::Leaf(leaf))
                            if chainable && bound.is_some_and(|b| leaf.accepts(b)) =>
                        {
                            Some(leaf)
                        }
                        _ => None,
                    };
                    if let (Some(leaf), Some(bound)) = (target, bound) {
                        leaf.chained = Some((bound, comparison.value));
                        chainable = false;
                    } else if let Some(attribute) = comparison.attribute {
                        items.push(Item::Leaf(Leaf {
                            attribute,
                            comparator: comparison.comparator,
                            value: comparison.value,
                            chained: None,
                        }));
                        chainable = true;
                    } else {
                        return Err(invalid(format!(
                            "'{}' has no attribute name; a range bound without one must \
                             follow '&' right after a gt/ge or lt/le condition on the \
                             attribute, pairing a lower with an upper bound \
                             (e.g. 'age=gt=1&lt=9')",
                            comparison.text
                        )));
                    }
                }
            }
            if self.peek() != Some(b'&') {
                break;
            }
            self.pos += 1;
        }
        let mut conditions: Vec<Condition> = items
            .into_iter()
            .map(|item| match item {
                Item::Leaf(leaf) => leaf.finish(),
                Item::Done(condition) => condition,
            })
            .collect();
        let condition = match conditions.len() {
            0 | 1 => conditions.pop(),
            _ => Some(Condition::Group {
                operator: Operator::And,
                conditions,
            }),
        };
        Ok((condition, had_function))
    }

    /// A group, a query function, a comparison, or nothing.
    fn parse_term(&mut self, depth: usize) -> Result<Term, QueryError> {
        let start = self.pos;
        match self.peek() {
            None | Some(b'&' | b'|' | b')' | b']') => Ok(Term::Empty),
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                // Checked before descending: the parser recurses once per level.
                if depth >= MAX_DEPTH {
                    return Err(QueryError::TooDeep);
                }
                self.pos += 1;
                let inner = self.parse_or(depth + 1)?;
                if self.peek() != Some(close) {
                    return Err(invalid(format!(
                        "unbalanced '{}' at byte {start}: expected '{}' to close it but found {}",
                        open as char,
                        close as char,
                        self.found()
                    )));
                }
                self.pos += 1;
                inner.map(Term::Group).ok_or_else(|| {
                    invalid(format!(
                        "empty group '{}{}' at byte {start}",
                        open as char, close as char
                    ))
                })
            }
            Some(_) => {
                let rest = &self.text[start..];
                let len = rest
                    .find(|c| "=!<>&|()[]".contains(c))
                    .unwrap_or(rest.len());
                let name = &rest[..len];
                self.pos += len;
                match self.peek() {
                    Some(b'(') => self
                        .parse_function(name, start, depth)
                        .map(|()| Term::Function),
                    Some(b'=' | b'!' | b'<' | b'>') => {
                        self.parse_comparison(name, start).map(Term::Compare)
                    }
                    Some(b'[') => Err(invalid(format!(
                        "unexpected '[' at byte {} after '{name}'; 'attribute[...]' is not \
                         supported (percent-encode a literal '[' as %5B)",
                        self.pos
                    ))),
                    _ => Err(invalid(format!(
                        "'{name}' at byte {start} is not a condition: expected an operator, \
                         as in 'name=value' or 'age=gt=3'"
                    ))),
                }
            }
        }
    }

    /// `name(arg,...)`, with the position at the `(`.
    fn parse_function(&mut self, name: &str, start: usize, depth: usize) -> Result<(), QueryError> {
        let open = self.pos;
        let inside = &self.text[open + 1..];
        let Some(len) = inside.find(|c| "()[]{}".contains(c)) else {
            return Err(invalid(format!(
                "unbalanced '(' at byte {open}: '{name}(' is never closed"
            )));
        };
        if inside.as_bytes()[len] != b')' {
            return Err(invalid(format!(
                "unexpected '{}' at byte {} in {name}(): nested lists and property sets are \
                 not supported",
                &inside[len..=len],
                open + 1 + len
            )));
        }
        let raw_args = &inside[..len];
        self.pos = open + len + 2;
        let call = format!("{name}({raw_args})");
        if depth > 0 {
            return Err(invalid(format!(
                "'{call}' at byte {start} is inside a group; query functions must be at the top \
                 level"
            )));
        }
        let args = raw_args
            .split(',')
            .map(|arg| decode(arg).map(|a| a.trim().to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        match name {
            "select" => {
                if self.select.is_some() {
                    return Err(invalid("select() is given more than once"));
                }
                let mut names = args;
                if names.len() > 1 && names.last().is_some_and(String::is_empty) {
                    names.pop();
                }
                if names.iter().any(String::is_empty) {
                    return Err(invalid(format!(
                        "'{call}' needs attribute names separated by commas"
                    )));
                }
                self.select = Some(if names.iter().any(|n| n == "*") {
                    Projection::All
                } else {
                    Projection::Only(names)
                });
            }
            "limit" => {
                if self.limit.is_some() {
                    return Err(invalid("limit() is given more than once"));
                }
                if args.len() > 2 {
                    return Err(invalid(format!(
                        "'{call}' takes one or two arguments: limit(count) or limit(start,end)"
                    )));
                }
                let numbers = args
                    .iter()
                    .map(|arg| {
                        arg.parse::<usize>().map_err(|_| {
                            invalid(format!(
                                "'{call}' takes non-negative integers, but '{arg}' is not one"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.limit = Some(match numbers[..] {
                    [count] => (0, Some(count)),
                    [start, end] if end >= start => (start, Some(end - start)),
                    _ => {
                        return Err(invalid(format!(
                            "'{call}': the end must not be before the start"
                        )));
                    }
                });
            }
            "sort" => {
                if self.sort.is_some() {
                    return Err(invalid("sort() is given more than once"));
                }
                let mut keys = Vec::with_capacity(args.len());
                for arg in &args {
                    let (descending, attribute) = match arg.as_bytes().first() {
                        Some(b'-') => (true, &arg[1..]),
                        Some(b'+') => (false, &arg[1..]),
                        _ => (false, &arg[..]),
                    };
                    if attribute.is_empty() {
                        return Err(invalid(format!(
                            "'{call}' needs attribute names, each optionally prefixed by '+' or '-'"
                        )));
                    }
                    keys.push((attribute.to_owned(), descending));
                }
                if keys.len() > MAX_SORT_KEYS {
                    return Err(invalid(format!(
                        "sort() takes at most {MAX_SORT_KEYS} attributes"
                    )));
                }
                self.sort = keys
                    .into_iter()
                    .rev()
                    .fold(None, |next, (attribute, descending)| {
                        Some(Sort {
                            attribute,
                            descending,
                            next: next.map(Box::new),
                        })
                    });
            }
            _ => {
                return Err(invalid(format!(
                    "unknown query function '{name}()' at byte {start}; expected select(), \
                     limit() or sort()"
                )));
            }
        }
        Ok(())
    }

    /// `name op value`, with the position at the operator.
    fn parse_comparison(&mut self, name: &str, start: usize) -> Result<Comparison, QueryError> {
        use Comparator::*;
        let rest = &self.text[self.pos..];
        let mut fiql = false;
        let mut plain = false;
        let (len, mut comparator, decoding) = if rest.starts_with("!==") {
            (3, NotEqual, Decode::Strict)
        } else if rest.starts_with("!=") {
            (2, NotEqual, Decode::Typed)
        } else if rest.starts_with('!') {
            return Err(invalid(format!(
                "unexpected '!' at byte {} in '{}'; expected '!=' or '!=='",
                self.pos,
                &self.text[start..=self.pos]
            )));
        } else if rest.starts_with("===") {
            (3, Equals, Decode::Strict)
        } else if rest.starts_with("==") {
            (2, Equals, Decode::Wildcard)
        } else if rest.starts_with("<=") {
            (2, LessThanEqual, Decode::Typed)
        } else if rest.starts_with('<') {
            (1, LessThan, Decode::Typed)
        } else if rest.starts_with(">=") {
            (2, GreaterThanEqual, Decode::Typed)
        } else if rest.starts_with('>') {
            (1, GreaterThan, Decode::Typed)
        } else {
            let ident = rest[1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            let operator = &rest[1..1 + ident];
            if ident > 0
                && !operator.as_bytes()[0].is_ascii_digit()
                && rest.as_bytes().get(1 + ident) == Some(&b'=')
            {
                fiql = true;
                let (comparator, decoding) = fiql_operator(operator).ok_or_else(|| {
                    let why = if operator == "between" {
                        "; write a range as 'attr=ge=low&le=high'".to_owned()
                    } else {
                        String::new()
                    };
                    invalid(format!(
                        "unknown operator '={operator}=' in '{}'{why}",
                        &self.text[start..self.pos + ident + 2]
                    ))
                })?;
                (ident + 2, comparator, decoding)
            } else {
                plain = true;
                (1, Equals, Decode::Typed)
            }
        };
        self.pos += len;
        let value_start = self.pos;
        let mut open = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'&' | b'|' | b')' | b']' if open == 0 => break,
                b'(' => open += 1,
                b')' => open -= 1,
                b'&' | b'|' => break,
                b'[' | b']' | b'=' => {
                    return Err(invalid(format!(
                        "unexpected '{}' at byte {} in the value of '{}'; percent-encode a \
                         literal '{}' as %{:02X}",
                        b as char,
                        self.pos,
                        &self.text[start..=self.pos],
                        b as char,
                        b
                    )));
                }
                _ => {}
            }
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        if open > 0 {
            return Err(invalid(format!(
                "unbalanced '(' in the value of '{text}'; percent-encode a literal '(' as %28"
            )));
        }
        let raw = &self.text[value_start..self.pos];
        let attribute = if name.is_empty() {
            if !fiql {
                return Err(invalid(format!("empty attribute name in '{text}'")));
            }
            None
        } else {
            Some(decode(name)?)
        };
        let bare_bound = match name {
            _ if !plain => None,
            "gt" => Some(GreaterThan),
            "ge" => Some(GreaterThanEqual),
            "lt" => Some(LessThan),
            "le" => Some(LessThanEqual),
            _ => None,
        };
        let value = match decoding {
            Decode::Strict => Value::String(decode(raw)?),
            Decode::Typed => typed_value(raw, true)?,
            Decode::Text => typed_value(raw, false)?,
            Decode::Wildcard => match raw.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => {
                    comparator = StartsWith;
                    Value::String(decode(prefix)?)
                }
                _ if raw.contains('*') => {
                    return Err(invalid(format!(
                        "wildcard '*' is only allowed once, at the end of the value, in \
                         '{text}'; percent-encode a literal '*' as %2A"
                    )));
                }
                _ => typed_value(raw, true)?,
            },
        };
        Ok(Comparison {
            attribute,
            comparator,
            value,
            bare_bound,
            text: text.to_owned(),
        })
    }
}

/// The comparator named in `=name=`, and how its value is typed.
fn fiql_operator(name: &str) -> Option<(Comparator, Decode)> {
    use Comparator::*;
    Some(match name {
        "eq" => (Equals, Decode::Wildcard),
        "equals" => (Equals, Decode::Typed),
        "ne" | "not_equal" => (NotEqual, Decode::Typed),
        "gt" | "greater_than" => (GreaterThan, Decode::Typed),
        "ge" | "greater_than_equal" => (GreaterThanEqual, Decode::Typed),
        "lt" | "less_than" => (LessThan, Decode::Typed),
        "le" | "less_than_equal" => (LessThanEqual, Decode::Typed),
        "ct" | "contains" => (Contains, Decode::Text),
        "sw" | "starts_with" => (StartsWith, Decode::Text),
        "ew" | "ends_with" => (EndsWith, Decode::Text),
        _ => return None,
    })
}

/// Percent-decodes `raw` (`+` stays a plus) into UTF-8 text.
fn decode(raw: &str) -> Result<String, QueryError> {
    // The decoder passes a '%' without two hex digits through as it is; here that is a
    // mistake worth naming.
    let malformed = raw.match_indices('%').map(|(i, _)| &raw[i..]).find(|at| {
        !at.as_bytes()
            .get(1..3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if let Some(at) = malformed {
        let shown: String = at.chars().take(3).collect();
        return Err(invalid(format!(
            "bad percent-encoding '{shown}' in '{raw}': '%' must be followed by two hex digits"
        )));
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| invalid(format!("'{raw}' does not percent-decode to valid UTF-8")))
}

/// A value with an optional type prefix; without one, auto-typed when `auto`, else text.
fn typed_value(raw: &str, auto: bool) -> Result<Value, QueryError> {
    if let Some((prefix, rest)) = raw.split_once(':') {
        match prefix {
            "number" => {
                return parse_number(&decode(rest)?)
                    .map(Value::Number)
                    .ok_or_else(|| invalid(format!("'{raw}' is not a valid number")));
            }
            "string" => return Ok(Value::String(decode(rest)?)),
            "boolean" => {
                return match decode(rest)?.as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => Err(invalid(format!(
                        "'{raw}' is not a valid boolean; expected 'true' or 'false'"
                    ))),
                };
            }
            "date" => {
                return parse_date(&decode(rest)?)
                    .map(Value::from)
                    .map_err(|why| invalid(format!("'{raw}' is not a valid date: {why}")));
            }
            _ => {}
        }
    }
    let text = decode(raw)?;
    Ok(if auto {
        auto_value(text)
    } else {
        Value::String(text)
    })
}

/// `null`, `true`, `false` and JSON numbers become those; anything else stays a string.
fn auto_value(text: String) -> Value {
    match text.as_str() {
        "null" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match json_number(&text) {
            Some(n) => Value::Number(n),
            None => Value::String(text),
        },
    }
}

/// `text` exactly as a JSON number (no surrounding whitespace), if finite.
fn json_number(text: &str) -> Option<Number> {
    let trimmed = !text.is_empty() && text.trim() == text;
    trimmed
        .then(|| serde_json::from_str::<Number>(text).ok())
        .flatten()
}

/// A JSON number, or failing that any finite decimal Rust can read (`+5`, `.5`, `5.`).
fn parse_number(text: &str) -> Option<Number> {
    json_number(text).or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
}

/// What `date:` accepts besides plain milliseconds.
const DATE_SHAPE: &str = "expected YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]";

/// [`DATE_SHAPE`], also with a lower-case `t` or a space before the time, a `,` before
/// the fraction, a lower-case `z`, and offsets written `±HH`, `±HHMM` or `±HH:MM`.
const DATE_FORMAT: &[BorrowedFormatItem<'static>] = format_description!(
    version = 2,
    "[year]-[month]-[day][optional [[first [T][t][ ]][hour]:[minute]\
     [optional [:[second][optional [[first [.][,]][subsecond digits:1+]]]]]\
     [optional [[first [Z][z][[offset_hour sign:mandatory][optional [[optional [:]][offset_minute]]]]]]]]]"
);

/// Milliseconds since the Unix epoch for an ISO-8601 / RFC 3339 date, or for a string of
/// digits that already is milliseconds.
fn parse_date(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| "milliseconds out of range".to_owned());
    }
    // The year parser would also take a sign, which no date here starts with.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(DATE_SHAPE.to_owned());
    }
    let mut parsed = Parsed::new();
    let rest = parsed
        .parse_items(text.as_bytes(), DATE_FORMAT)
        .map_err(|e| format!("{e} ({DATE_SHAPE})"))?;
    if !rest.is_empty() {
        return Err(format!(
            "unexpected '{}' ({DATE_SHAPE})",
            String::from_utf8_lossy(rest)
        ));
    }
    let date = Date::try_from(parsed).map_err(|e| e.to_string())?;
    let time = match parsed.hour_24() {
        Some(_) => Time::try_from(parsed).map_err(|e| e.to_string())?,
        None => Time::MIDNIGHT,
    };
    let offset = match parsed.offset_hour() {
        // Real offsets stay within a day; `time` allows a little more.
        Some(hours) if hours.abs() > 23 => {
            return Err(format!("offset of {hours} hours is out of range"));
        }
        Some(_) => UtcOffset::try_from(parsed).map_err(|e| e.to_string())?,
        None => UtcOffset::UTC,
    };
    let nanos = PrimitiveDateTime::new(date, time)
        .assume_offset(offset)
        .unix_timestamp_nanos();
    // Finer digits than milliseconds are dropped, towards the past.
    i64::try_from(nanos.div_euclid(1_000_000)).map_err(|_| "out of range".to_owned())
}

#[cfg(test)]
mod tests;
