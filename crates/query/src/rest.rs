//! Harper's REST URL query language, as it appears after the `?` of a collection URL:
//! `name=Penny&age=gt=3|(rating=5&[tag=fast|tag=new])&select(name,age)&sort(-age)&limit(10)`.
//!
//! Parsing works on the raw, still percent-encoded text, so an encoded `%26`, `%7C`, `%28`
//! or `%3D` is always part of a name or value and never syntax.

use serde_json::{Number, Value};

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
fn decode_angle_brackets(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('%') {
        return std::borrow::Cow::Borrowed(text);
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
    std::borrow::Cow::Owned(out)
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
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                let end = (i + 3).min(bytes.len());
                return Err(invalid(format!(
                    "bad percent-encoding '{}' in '{raw}': '%' must be followed by two hex digits",
                    String::from_utf8_lossy(&bytes[i..end])
                )));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
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

/// Milliseconds since the Unix epoch for an ISO-8601 / RFC 3339 date, or for a string of
/// digits that already is milliseconds.
fn parse_date(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| "milliseconds out of range".to_owned());
    }
    let mut cursor = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let shape = "expected YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]";
    let year = cursor.number(4).ok_or(shape)?;
    let month = cursor.after(b'-').ok_or(shape)?;
    let day = cursor.after(b'-').ok_or(shape)?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!(
            "day {day} is out of range for {year:04}-{month:02}"
        ));
    }
    let mut millis = days_from_civil(year, month, day) * 86_400_000;
    if cursor.eat(b'T') || cursor.eat(b't') || cursor.eat(b' ') {
        let hour = cursor.number(2).ok_or(shape)?;
        let minute = cursor.after(b':').ok_or(shape)?;
        let mut second = 0;
        let mut fraction = 0;
        if cursor.eat(b':') {
            second = cursor.number(2).ok_or(shape)?;
            if cursor.eat(b'.') || cursor.eat(b',') {
                let digits = cursor.digits();
                if digits.is_empty() {
                    return Err("expected digits after the decimal point".to_owned());
                }
                // Milliseconds: the first three digits, padded; finer digits are dropped.
                fraction = digits
                    .bytes()
                    .chain(std::iter::repeat(b'0'))
                    .take(3)
                    .fold(0, |n, b| n * 10 + i64::from(b - b'0'));
            }
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(format!(
                "time {hour:02}:{minute:02}:{second:02} is out of range"
            ));
        }
        millis += ((hour * 60 + minute) * 60 + second) * 1000 + fraction;
        let utc = cursor.eat(b'Z') || cursor.eat(b'z');
        if !utc && let Some(sign) = [b'+', b'-'].into_iter().find(|s| cursor.eat(*s)) {
            let hours = cursor.number(2).ok_or(shape)?;
            let minutes = if cursor.eat(b':') {
                cursor.number(2).ok_or(shape)?
            } else {
                cursor.number(2).unwrap_or(0)
            };
            if hours > 23 || minutes > 59 {
                return Err(format!("offset {hours:02}:{minutes:02} is out of range"));
            }
            let offset = (hours * 60 + minutes) * 60_000;
            millis -= if sign == b'+' { offset } else { -offset };
        }
    }
    if cursor.at != text.len() {
        return Err(format!(
            "unexpected '{}' ({shape})",
            &text[cursor.at.min(text.len())..]
        ));
    }
    Ok(millis)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.bytes.get(self.at) == Some(&b);
        self.at += usize::from(hit);
        hit
    }

    /// `sep` and then two ASCII digits.
    fn after(&mut self, sep: u8) -> Option<i64> {
        if self.eat(sep) { self.number(2) } else { None }
    }

    /// Exactly `n` ASCII digits.
    fn number(&mut self, n: usize) -> Option<i64> {
        let digits = self.bytes.get(self.at..self.at + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += n;
        Some(digits.iter().fold(0, |v, b| v * 10 + i64::from(b - b'0')))
    }

    /// All the ASCII digits from here on.
    fn digits(&mut self) -> &str {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII digits")
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use Comparator::*;
    use serde_json::json;

    fn parse(raw: &str) -> RestQuery {
        parse_rest_query(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn condition(raw: &str) -> Condition {
        parse(raw)
            .condition
            .unwrap_or_else(|| panic!("{raw}: no condition"))
    }

    fn error(raw: &str) -> String {
        match parse_rest_query(raw) {
            Err(QueryError::Invalid(message)) => message,
            other => panic!("{raw}: expected an Invalid error, got {other:?}"),
        }
    }

    fn assert_error(raw: &str, needle: &str) {
        let message = error(raw);
        assert!(
            message.contains(needle),
            "{raw}: message {message:?} should mention {needle:?}"
        );
    }

    fn cmp(attribute: &str, comparator: Comparator, value: Value) -> Condition {
        Condition::Compare {
            attribute: attribute.into(),
            comparator,
            value,
        }
    }

    fn and(conditions: Vec<Condition>) -> Condition {
        Condition::Group {
            operator: Operator::And,
            conditions,
        }
    }

    fn or(conditions: Vec<Condition>) -> Condition {
        Condition::Group {
            operator: Operator::Or,
            conditions,
        }
    }

    fn value(raw: &str) -> Value {
        match condition(&format!("a=={raw}")) {
            Condition::Compare { value, .. } => value,
            other => panic!("{raw}: {other:?}"),
        }
    }

    fn sort_keys(keys: &[(&str, bool)]) -> Option<Sort> {
        keys.iter()
            .rev()
            .fold(None, |next, (attribute, descending)| {
                Some(Sort {
                    attribute: (*attribute).into(),
                    descending: *descending,
                    next: next.map(Box::new),
                })
            })
    }

    // --- empty input -------------------------------------------------------------------

    #[test]
    fn empty_query_is_all_defaults() {
        for raw in ["", "?", "&", "&&"] {
            let q = parse(raw);
            assert_eq!(q, RestQuery::default(), "{raw}");
            assert_eq!(q.condition, None);
            assert_eq!(q.select, Projection::All);
            assert_eq!(q.offset, 0);
            assert_eq!(q.limit, None);
            assert_eq!(q.sort, None);
        }
    }

    #[test]
    fn leading_question_mark_is_ignored() {
        assert_eq!(
            condition("?name=Penny"),
            cmp("name", Equals, json!("Penny"))
        );
    }

    // --- operators ---------------------------------------------------------------------

    #[test]
    fn equals_forms() {
        assert_eq!(condition("name=Penny"), cmp("name", Equals, json!("Penny")));
        assert_eq!(
            condition("name==Penny"),
            cmp("name", Equals, json!("Penny"))
        );
        assert_eq!(
            condition("name=eq=Penny"),
            cmp("name", Equals, json!("Penny"))
        );
        assert_eq!(
            condition("name=equals=Penny"),
            cmp("name", Equals, json!("Penny"))
        );
        assert_eq!(condition("age=5"), cmp("age", Equals, json!(5)));
        assert_eq!(condition("age==5"), cmp("age", Equals, json!(5)));
    }

    #[test]
    fn fiql_operators() {
        let cases = [
            ("age=ne=5", NotEqual, json!(5)),
            ("age=gt=5", GreaterThan, json!(5)),
            ("age=ge=5", GreaterThanEqual, json!(5)),
            ("age=lt=5", LessThan, json!(5)),
            ("age=le=5", LessThanEqual, json!(5)),
            ("age=ct=5", Contains, json!("5")),
            ("age=sw=5", StartsWith, json!("5")),
            ("age=ew=5", EndsWith, json!("5")),
        ];
        for (raw, comparator, v) in cases {
            assert_eq!(condition(raw), cmp("age", comparator, v), "{raw}");
        }
    }

    #[test]
    fn long_operator_names() {
        let cases = [
            ("a=not_equal=1", NotEqual, json!(1)),
            ("a=greater_than=1", GreaterThan, json!(1)),
            ("a=greater_than_equal=1", GreaterThanEqual, json!(1)),
            ("a=less_than=1", LessThan, json!(1)),
            ("a=less_than_equal=1", LessThanEqual, json!(1)),
            ("a=contains=x", Contains, json!("x")),
            ("a=starts_with=x", StartsWith, json!("x")),
            ("a=ends_with=x", EndsWith, json!("x")),
        ];
        for (raw, comparator, v) in cases {
            assert_eq!(condition(raw), cmp("a", comparator, v), "{raw}");
        }
    }

    #[test]
    fn percent_encoded_angle_brackets_are_operators() {
        use Comparator::*;
        assert_eq!(condition("age%3C3"), cmp("age", LessThan, json!(3)));
        assert_eq!(condition("age%3c=3"), cmp("age", LessThanEqual, json!(3)));
        assert_eq!(condition("age%3E14"), cmp("age", GreaterThan, json!(14)));
        assert_eq!(condition("name=a%3Cb"), cmp("name", Equals, json!("a<b")));
    }

    #[test]
    fn symbol_operators() {
        let cases = [
            ("age!=5", NotEqual, json!(5)),
            ("age<5", LessThan, json!(5)),
            ("age<=5", LessThanEqual, json!(5)),
            ("age>5", GreaterThan, json!(5)),
            ("age>=5", GreaterThanEqual, json!(5)),
        ];
        for (raw, comparator, v) in cases {
            assert_eq!(condition(raw), cmp("age", comparator, v), "{raw}");
        }
    }

    #[test]
    fn strict_operators_keep_strings() {
        assert_eq!(condition("age===5"), cmp("age", Equals, json!("5")));
        assert_eq!(condition("age!==5"), cmp("age", NotEqual, json!("5")));
        assert_eq!(condition("a===null"), cmp("a", Equals, json!("null")));
        assert_eq!(
            condition("a===number:5"),
            cmp("a", Equals, json!("number:5"))
        );
    }

    #[test]
    fn not_equal_null() {
        assert_eq!(
            condition("discount!=null"),
            cmp("discount", NotEqual, json!(null))
        );
        assert_eq!(
            condition("discount=null"),
            cmp("discount", Equals, json!(null))
        );
    }

    #[test]
    fn wildcard_equals_is_starts_with() {
        assert_eq!(
            condition("name==Key*"),
            cmp("name", StartsWith, json!("Key"))
        );
        assert_eq!(
            condition("name=eq=Key*"),
            cmp("name", StartsWith, json!("Key"))
        );
        assert_eq!(
            condition("name==a%20b*"),
            cmp("name", StartsWith, json!("a b"))
        );
        assert_eq!(condition("name==12*"), cmp("name", StartsWith, json!("12")));
        // Plain `=` and an encoded star are literal.
        assert_eq!(condition("name=Key*"), cmp("name", Equals, json!("Key*")));
        assert_eq!(
            condition("name==Key%2A"),
            cmp("name", Equals, json!("Key*"))
        );
        assert_error("name==K*y", "wildcard");
        assert_error("name==Key**", "wildcard");
    }

    #[test]
    fn attribute_names_are_decoded_and_may_contain_dots() {
        assert_eq!(
            condition("first%20name=Penny"),
            cmp("first name", Equals, json!("Penny"))
        );
        assert_eq!(
            condition("brand.name=x"),
            cmp("brand.name", Equals, json!("x"))
        );
    }

    #[test]
    fn empty_value_is_empty_string() {
        assert_eq!(condition("name="), cmp("name", Equals, json!("")));
        assert_eq!(
            condition("name=&age=1"),
            and(vec![
                cmp("name", Equals, json!("")),
                cmp("age", Equals, json!(1)),
            ])
        );
    }

    // --- value typing ------------------------------------------------------------------

    #[test]
    fn auto_typing() {
        assert_eq!(value("5"), json!(5));
        assert_eq!(value("-12"), json!(-12));
        assert_eq!(value("1.5"), json!(1.5));
        assert_eq!(value("2e3"), json!(2000.0));
        assert_eq!(value("18446744073709551615"), json!(u64::MAX));
        assert_eq!(value("true"), json!(true));
        assert_eq!(value("false"), json!(false));
        assert_eq!(value("null"), json!(null));
        // Not JSON numbers or literals: strings.
        for raw in [
            "05", "+5", ".5", "5.", "1.2.3", "0x10", "NaN", "Infinity", "abc", "True", "NULL",
        ] {
            assert_eq!(value(raw), json!(raw), "{raw}");
        }
        assert_eq!(value("%205"), json!(" 5"));
        assert_eq!(value("1e999"), json!("1e999"));
    }

    #[test]
    fn text_comparators_are_not_auto_typed() {
        assert_eq!(condition("a=ct=true"), cmp("a", Contains, json!("true")));
        assert_eq!(condition("a=sw=null"), cmp("a", StartsWith, json!("null")));
        assert_eq!(condition("a=ew=1.5"), cmp("a", EndsWith, json!("1.5")));
        assert_eq!(
            condition("tags=ct=number:5"),
            cmp("tags", Contains, json!(5))
        );
        assert_eq!(
            condition("tags=ct=boolean:true"),
            cmp("tags", Contains, json!(true))
        );
    }

    #[test]
    fn number_prefix() {
        assert_eq!(value("number:5"), json!(5));
        assert_eq!(value("number:-5"), json!(-5));
        assert_eq!(value("number:1.25"), json!(1.25));
        assert_eq!(value("number:1e3"), json!(1000.0));
        assert_eq!(value("number:+5"), json!(5.0));
        assert_eq!(value("number:.5"), json!(0.5));
        assert_eq!(value("number:%35"), json!(5));
        assert_eq!(
            condition("age=gt=number:3"),
            cmp("age", GreaterThan, json!(3))
        );
        assert_eq!(condition("age=number:3"), cmp("age", Equals, json!(3)));
        for bad in [
            "number:abc",
            "number:",
            "number:1x",
            "number:inf",
            "number:NaN",
            "number:1e999",
        ] {
            assert_error(&format!("a=={bad}"), "not a valid number");
        }
    }

    #[test]
    fn string_prefix() {
        assert_eq!(value("string:5"), json!("5"));
        assert_eq!(value("string:true"), json!("true"));
        assert_eq!(value("string:null"), json!("null"));
        assert_eq!(value("string:"), json!(""));
        assert_eq!(value("string:some%20text"), json!("some text"));
        assert_eq!(value("string:a:b"), json!("a:b"));
        assert_eq!(value("string:number:5"), json!("number:5"));
    }

    #[test]
    fn boolean_prefix() {
        assert_eq!(value("boolean:true"), json!(true));
        assert_eq!(value("boolean:false"), json!(false));
        assert_error("a==boolean:yes", "not a valid boolean");
        assert_error("a==boolean:", "not a valid boolean");
        assert_error("a==boolean:TRUE", "not a valid boolean");
    }

    #[test]
    fn unknown_prefix_is_plain_text() {
        assert_eq!(value("time:10"), json!("time:10"));
        assert_eq!(value("10:30"), json!("10:30"));
        assert_eq!(value("http://x"), json!("http://x"));
        // An encoded colon is never a prefix.
        assert_eq!(value("number%3A5"), json!("number:5"));
    }

    #[test]
    fn date_prefix() {
        let cases = [
            ("date:1970-01-01", 0_i64),
            ("date:1970-01-01T00:00:00Z", 0),
            ("date:2024-01-01T00:00:00Z", 1_704_067_200_000),
            ("date:2024-01-01T00%3A00%3A00Z", 1_704_067_200_000),
            ("date:2024-01-01T00%3A00%3A00.000Z", 1_704_067_200_000),
            ("date:2024-01-01", 1_704_067_200_000),
            ("date:2024-01-01T00:00", 1_704_067_200_000),
            ("date:2024-01-01T00:00Z", 1_704_067_200_000),
            ("date:2024-01-01t00:00:00z", 1_704_067_200_000),
            ("date:2024-01-01T01:00:00+01:00", 1_704_067_200_000),
            ("date:2023-12-31T19:00:00-05:00", 1_704_067_200_000),
            ("date:2023-12-31T18:30:00-0530", 1_704_067_200_000),
            ("date:2024-01-01T00:00:00.5Z", 1_704_067_200_500),
            ("date:2024-01-01T00:00:00.123456Z", 1_704_067_200_123),
            ("date:2024-01-05T20:07:27.955Z", 1_704_485_247_955),
            ("date:2024-02-29T12:00:00Z", 1_709_208_000_000),
            ("date:2000-02-29", 951_782_400_000),
            ("date:1969-12-31T23:59:59Z", -1000),
            ("date:1900-01-01", -2_208_988_800_000),
            ("date:1700000000000", 1_700_000_000_000),
            ("date:-1000", -1000),
        ];
        for (raw, millis) in cases {
            assert_eq!(value(raw), json!(millis), "{raw}");
        }
        assert_eq!(
            condition("listDate=gt=date:2017-03-08T09%3A30%3A00.000Z"),
            cmp("listDate", GreaterThan, json!(1_488_965_400_000_i64))
        );
    }

    #[test]
    fn bad_dates() {
        for raw in [
            "date:",
            "date:yesterday",
            "date:2024-1-01",
            "date:2024-13-01",
            "date:2024-00-10",
            "date:2023-02-29",
            "date:1900-02-29",
            "date:2024-04-31",
            "date:2024-01-01T24:00:00Z",
            "date:2024-01-01T12:60Z",
            "date:2024-01-01T12:00:60Z",
            "date:2024-01-01T12",
            "date:2024-01-01T12:00:00.Z",
            "date:2024-01-01T12:00:00+25:00",
            "date:2024-01-01T12:00:00+01:",
            "date:2024-01-01T12:00:00Zjunk",
            "date:2024-01-01junk",
            "date:99999999999999999999",
        ] {
            assert_error(&format!("a=={raw}"), "not a valid date");
        }
    }

    // --- percent-decoding --------------------------------------------------------------

    #[test]
    fn percent_decoding() {
        assert_eq!(value("a%20b"), json!("a b"));
        assert_eq!(value("a%2Cb"), json!("a,b"));
        assert_eq!(value("a%2cb"), json!("a,b"));
        assert_eq!(value("Caf%C3%A9"), json!("Café"));
        assert_eq!(value("100%25"), json!("100%"));
        assert_eq!(value("%35"), json!(5));
        // Encoded syntax characters are data.
        assert_eq!(value("a%26b%7Cc%28d%29%5Be%5D%3Df"), json!("a&b|c(d)[e]=f"));
        assert_eq!(
            condition("q=x%26y&z=1"),
            and(vec![
                cmp("q", Equals, json!("x&y")),
                cmp("z", Equals, json!(1)),
            ])
        );
    }

    #[test]
    fn plus_stays_a_plus() {
        assert_eq!(value("a+b"), json!("a+b"));
        assert_eq!(value("1+1"), json!("1+1"));
        assert_eq!(value("%2B"), json!("+"));
    }

    #[test]
    fn raw_unicode_passes_through() {
        assert_eq!(condition("név=Zoë"), cmp("név", Equals, json!("Zoë")));
    }

    #[test]
    fn bad_percent_encoding() {
        assert_error("a=%zz", "bad percent-encoding '%zz'");
        assert_error("a=abc%2", "bad percent-encoding '%2'");
        assert_error("a=abc%", "bad percent-encoding");
        assert_error("a%G0=1", "bad percent-encoding");
        assert_error("a=%FF", "valid UTF-8");
        assert_error("a==string:%E9", "valid UTF-8");
    }

    #[test]
    fn balanced_parentheses_in_values_are_literal() {
        assert_eq!(value("foo(bar)"), json!("foo(bar)"));
        assert_eq!(value("f(g(x))y"), json!("f(g(x))y"));
        assert_eq!(
            condition("(name=f(x)|a=1)"),
            or(vec![
                cmp("name", Equals, json!("f(x)")),
                cmp("a", Equals, json!(1))
            ])
        );
        assert_eq!(
            condition("[name=f(x)|a=1]"),
            or(vec![
                cmp("name", Equals, json!("f(x)")),
                cmp("a", Equals, json!(1))
            ])
        );
        assert_error("a=foo(", "unbalanced '('");
        assert_error("a=f(x&b=1)", "unbalanced '('");
    }

    // --- ranges ------------------------------------------------------------------------

    #[test]
    fn exclusive_ranges_are_and_groups() {
        assert_eq!(
            condition("age=gt=1&lt=9"),
            and(vec![
                cmp("age", GreaterThan, json!(1)),
                cmp("age", LessThan, json!(9))
            ])
        );
        assert_eq!(
            condition("age=gt=1&le=9"),
            and(vec![
                cmp("age", GreaterThan, json!(1)),
                cmp("age", LessThanEqual, json!(9))
            ])
        );
        assert_eq!(
            condition("age=ge=1&lt=9"),
            and(vec![
                cmp("age", GreaterThanEqual, json!(1)),
                cmp("age", LessThan, json!(9))
            ])
        );
    }

    #[test]
    fn inclusive_ranges_are_between() {
        assert_eq!(
            condition("age=ge=1&le=9"),
            cmp("age", Between, json!([1, 9]))
        );
        assert_eq!(condition("age>=1&le=9"), cmp("age", Between, json!([1, 9])));
        // Upper bound first: still [low, high].
        assert_eq!(
            condition("age=le=9&ge=1"),
            cmp("age", Between, json!([1, 9]))
        );
        assert_eq!(
            condition("age=lt=9&gt=1"),
            and(vec![
                cmp("age", LessThan, json!(9)),
                cmp("age", GreaterThan, json!(1))
            ])
        );
    }

    #[test]
    fn explicit_chained_bound() {
        assert_eq!(
            condition("age=ge=1&=le=9"),
            cmp("age", Between, json!([1, 9]))
        );
        assert_eq!(
            condition("age=gt=1&=lt=9"),
            and(vec![
                cmp("age", GreaterThan, json!(1)),
                cmp("age", LessThan, json!(9))
            ])
        );
        assert_eq!(
            condition("price=gt=100&=less_than=200"),
            and(vec![
                cmp("price", GreaterThan, json!(100)),
                cmp("price", LessThan, json!(200))
            ])
        );
    }

    #[test]
    fn ranges_with_typed_values() {
        assert_eq!(
            condition("d=ge=date:2024-01-01&le=date:2024-01-02"),
            cmp(
                "d",
                Between,
                json!([1_704_067_200_000_i64, 1_704_153_600_000_i64])
            )
        );
        assert_eq!(
            condition("name=ge=string:a&le=string:m"),
            cmp("name", Between, json!(["a", "m"]))
        );
    }

    #[test]
    fn ranges_inside_larger_queries() {
        assert_eq!(
            condition("name=x&age=ge=1&le=9&kind=cat"),
            and(vec![
                cmp("name", Equals, json!("x")),
                cmp("age", Between, json!([1, 9])),
                cmp("kind", Equals, json!("cat")),
            ])
        );
        assert_eq!(
            condition("age=gt=1&lt=9|x=1"),
            or(vec![
                and(vec![
                    cmp("age", GreaterThan, json!(1)),
                    cmp("age", LessThan, json!(9))
                ]),
                cmp("x", Equals, json!(1)),
            ])
        );
        assert_eq!(
            condition("(age=ge=1&le=9)|x=1"),
            or(vec![
                cmp("age", Between, json!([1, 9])),
                cmp("x", Equals, json!(1))
            ])
        );
    }

    #[test]
    fn bare_bound_names_that_do_not_chain_are_attributes() {
        // Nothing to chain onto.
        assert_eq!(condition("lt=9"), cmp("lt", Equals, json!(9)));
        // The previous condition is not a range bound.
        assert_eq!(
            condition("age=1&lt=9"),
            and(vec![
                cmp("age", Equals, json!(1)),
                cmp("lt", Equals, json!(9))
            ])
        );
        // Same side of the range.
        assert_eq!(
            condition("age=gt=1&gt=9"),
            and(vec![
                cmp("age", GreaterThan, json!(1)),
                cmp("gt", Equals, json!(9))
            ])
        );
        // Joined by `|`, not `&`.
        assert_eq!(
            condition("age=gt=1|lt=9"),
            or(vec![
                cmp("age", GreaterThan, json!(1)),
                cmp("lt", Equals, json!(9))
            ])
        );
        // Only one bound chains; a third is an attribute again.
        assert_eq!(
            condition("age=gt=1&lt=9&le=10"),
            and(vec![
                and(vec![
                    cmp("age", GreaterThan, json!(1)),
                    cmp("age", LessThan, json!(9))
                ]),
                cmp("le", Equals, json!(10)),
            ])
        );
        // `lt==9` is an explicit equals on `lt`.
        assert_eq!(
            condition("age=gt=1&lt==9"),
            and(vec![
                cmp("age", GreaterThan, json!(1)),
                cmp("lt", Equals, json!(9))
            ])
        );
    }

    #[test]
    fn bad_explicit_chains() {
        for raw in [
            "=lt=9",
            "a=1&=lt=9",
            "age=gt=1&=gt=9",
            "age=gt=1&=ne=9",
            "age=gt=1|=lt=9",
            "age=gt=1&lt=9&=le=10",
            "(age=gt=1)&=lt=9",
            "age=gt=1&limit(5)&=lt=9",
        ] {
            assert_error(raw, "no attribute name");
        }
    }

    // --- and / or / grouping -----------------------------------------------------------

    #[test]
    fn and_or() {
        assert_eq!(
            condition("a=1&b=2&c=3"),
            and(vec![
                cmp("a", Equals, json!(1)),
                cmp("b", Equals, json!(2)),
                cmp("c", Equals, json!(3)),
            ])
        );
        assert_eq!(
            condition("rating=5|featured=true"),
            or(vec![
                cmp("rating", Equals, json!(5)),
                cmp("featured", Equals, json!(true))
            ])
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let (a, b, c) = (
            cmp("a", Equals, json!(1)),
            cmp("b", Equals, json!(2)),
            cmp("c", Equals, json!(3)),
        );
        assert_eq!(
            condition("a=1|b=2&c=3"),
            or(vec![a.clone(), and(vec![b.clone(), c.clone()])])
        );
        assert_eq!(
            condition("a=1&b=2|c=3"),
            or(vec![and(vec![a.clone(), b.clone()]), c.clone()])
        );
        assert_eq!(
            condition("a=1&b=2|c=3&a=1"),
            or(vec![and(vec![a.clone(), b.clone()]), and(vec![c, a])])
        );
    }

    #[test]
    fn parentheses_group() {
        assert_eq!(
            condition("(a=1|b=2)&c=3"),
            and(vec![
                or(vec![cmp("a", Equals, json!(1)), cmp("b", Equals, json!(2))]),
                cmp("c", Equals, json!(3)),
            ])
        );
        assert_eq!(
            condition("a=1&(b=2|c=3)"),
            and(vec![
                cmp("a", Equals, json!(1)),
                or(vec![cmp("b", Equals, json!(2)), cmp("c", Equals, json!(3))]),
            ])
        );
    }

    #[test]
    fn groups_keep_their_shape() {
        assert_eq!(condition("(a=1)"), cmp("a", Equals, json!(1)));
        assert_eq!(condition("((a=1))"), cmp("a", Equals, json!(1)));
        assert_eq!(
            condition("(a=1&b=2)&c=3"),
            and(vec![
                and(vec![cmp("a", Equals, json!(1)), cmp("b", Equals, json!(2))]),
                cmp("c", Equals, json!(3)),
            ])
        );
    }

    #[test]
    fn nested_groups() {
        assert_eq!(
            condition("a=1&(b=2|(c=3&d=4))"),
            and(vec![
                cmp("a", Equals, json!(1)),
                or(vec![
                    cmp("b", Equals, json!(2)),
                    and(vec![cmp("c", Equals, json!(3)), cmp("d", Equals, json!(4))]),
                ]),
            ])
        );
        assert_eq!(
            condition("((a=1|b=2)&(c=3|d=4))|e=5"),
            or(vec![
                and(vec![
                    or(vec![cmp("a", Equals, json!(1)), cmp("b", Equals, json!(2))]),
                    or(vec![cmp("c", Equals, json!(3)), cmp("d", Equals, json!(4))]),
                ]),
                cmp("e", Equals, json!(5)),
            ])
        );
    }

    #[test]
    fn square_brackets_group() {
        assert_eq!(
            condition("rating=5&[tag=fast|tag=scalable|tag=efficient]"),
            and(vec![
                cmp("rating", Equals, json!(5)),
                or(vec![
                    cmp("tag", Equals, json!("fast")),
                    cmp("tag", Equals, json!("scalable")),
                    cmp("tag", Equals, json!("efficient")),
                ]),
            ])
        );
        assert_eq!(
            condition("price=lt=100|[rating=5&[tag=fast|tag=scalable]&inStock=true]"),
            or(vec![
                cmp("price", LessThan, json!(100)),
                and(vec![
                    cmp("rating", Equals, json!(5)),
                    or(vec![
                        cmp("tag", Equals, json!("fast")),
                        cmp("tag", Equals, json!("scalable"))
                    ]),
                    cmp("inStock", Equals, json!(true)),
                ]),
            ])
        );
        assert_eq!(
            condition("[a=1|(b=2&c=3)]"),
            or(vec![
                cmp("a", Equals, json!(1)),
                and(vec![cmp("b", Equals, json!(2)), cmp("c", Equals, json!(3))]),
            ])
        );
    }

    #[test]
    fn empty_and_terms_are_ignored() {
        let expected = and(vec![cmp("a", Equals, json!(1)), cmp("b", Equals, json!(2))]);
        assert_eq!(condition("a=1&&b=2"), expected);
        assert_eq!(condition("&a=1&b=2&"), expected);
        assert_eq!(condition("a=1&"), cmp("a", Equals, json!(1)));
        assert_eq!(condition("(a=1&)"), cmp("a", Equals, json!(1)));
    }

    // --- functions ---------------------------------------------------------------------

    #[test]
    fn select() {
        let only = |names: &[&str]| Projection::Only(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(parse("select(name)").select, only(&["name"]));
        assert_eq!(parse("select(a,b,c)").select, only(&["a", "b", "c"]));
        assert_eq!(parse("select(a,)").select, only(&["a"]));
        assert_eq!(
            parse("select(first%20name,b%2Cc)").select,
            only(&["first name", "b,c"])
        );
        assert_eq!(parse("select(*)").select, Projection::All);
        assert_eq!(parse("select(name)").condition, None);
    }

    #[test]
    fn limit() {
        let q = parse("limit(10)");
        assert_eq!((q.offset, q.limit), (0, Some(10)));
        let q = parse("limit(10,30)");
        assert_eq!((q.offset, q.limit), (10, Some(20)));
        let q = parse("limit(0)");
        assert_eq!((q.offset, q.limit), (0, Some(0)));
        let q = parse("limit(5,5)");
        assert_eq!((q.offset, q.limit), (5, Some(0)));
        assert_eq!(parse("limit(10)").condition, None);
    }

    #[test]
    fn sort() {
        assert_eq!(parse("sort(name)").sort, sort_keys(&[("name", false)]));
        assert_eq!(parse("sort(+name)").sort, sort_keys(&[("name", false)]));
        assert_eq!(parse("sort(-name)").sort, sort_keys(&[("name", true)]));
        assert_eq!(
            parse("sort(+rating,-price)").sort,
            sort_keys(&[("rating", false), ("price", true)])
        );
        assert_eq!(
            parse("sort(a,-b,c)").sort,
            sort_keys(&[("a", false), ("b", true), ("c", false)])
        );
        assert_eq!(parse("sort(%2Dprice)").sort, sort_keys(&[("price", true)]));
        let chain = parse("sort(a,-b)").sort.unwrap();
        assert_eq!(chain.attribute, "a");
        assert!(!chain.descending);
        let next = chain.next.unwrap();
        assert_eq!((next.attribute.as_str(), next.descending), ("b", true));
        assert!(next.next.is_none());
    }

    #[test]
    fn function_arguments_are_trimmed() {
        assert_eq!(
            parse("select(a,%20b)").select,
            Projection::Only(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse("limit(%205)").limit, Some(5));
    }

    // --- combinations ------------------------------------------------------------------

    #[test]
    fn full_example() {
        let q = parse("name=Penny&age=gt=3&select(name,age)&limit(10)");
        assert_eq!(
            q.condition,
            Some(and(vec![
                cmp("name", Equals, json!("Penny")),
                cmp("age", GreaterThan, json!(3)),
            ]))
        );
        assert_eq!(
            q.select,
            Projection::Only(vec!["name".into(), "age".into()])
        );
        assert_eq!((q.offset, q.limit), (0, Some(10)));
        assert_eq!(q.sort, None);
    }

    #[test]
    fn functions_anywhere_at_the_top_level() {
        let q = parse("sort(-age)&limit(5,15)&age=ge=1&le=9&select(name)&kind=dog");
        assert_eq!(
            q.condition,
            Some(and(vec![
                cmp("age", Between, json!([1, 9])),
                cmp("kind", Equals, json!("dog"))
            ]))
        );
        assert_eq!(q.select, Projection::Only(vec!["name".into()]));
        assert_eq!((q.offset, q.limit), (5, Some(10)));
        assert_eq!(q.sort, sort_keys(&[("age", true)]));
    }

    #[test]
    fn functions_stay_out_of_the_boolean_structure() {
        let q = parse("rating=5|featured=true&limit(10)");
        assert_eq!(
            q.condition,
            Some(or(vec![
                cmp("rating", Equals, json!(5)),
                cmp("featured", Equals, json!(true))
            ]))
        );
        assert_eq!(q.limit, Some(10));
        let q = parse("a=1|limit(3)");
        assert_eq!(q.condition, Some(cmp("a", Equals, json!(1))));
        assert_eq!(q.limit, Some(3));
    }

    #[test]
    fn groups_with_functions() {
        let q = parse("(a=1|b=2)&c=gt=3&sort(-c)&select(a,c)&limit(2,4)");
        assert_eq!(
            q.condition,
            Some(and(vec![
                or(vec![cmp("a", Equals, json!(1)), cmp("b", Equals, json!(2))]),
                cmp("c", GreaterThan, json!(3)),
            ]))
        );
        assert_eq!(q.sort, sort_keys(&[("c", true)]));
        assert_eq!(q.select, Projection::Only(vec!["a".into(), "c".into()]));
        assert_eq!((q.offset, q.limit), (2, Some(2)));
    }

    // --- malformed input ---------------------------------------------------------------

    #[test]
    fn unbalanced_parentheses() {
        assert_error("(a=1", "unbalanced '('");
        assert_error("((a=1)", "unbalanced '('");
        assert_error("(a=1|b=2", "expected ')'");
        assert_error("a=1)", "unbalanced ')'");
        assert_error("(a=1))", "unbalanced ')'");
        assert_error("a=1]", "unbalanced ']'");
        assert_error("[a=1", "unbalanced '['");
        assert_error("[a=1)", "expected ']'");
        assert_error("(a=1]", "expected ')'");
        assert_error("select(a", "unbalanced '('");
    }

    #[test]
    fn groups_nest_at_most_max_depth_levels() {
        let nested = |depth: usize, open: char, close: char| {
            let mut raw = "t=1&".to_owned();
            for i in 0..depth {
                raw.push(open);
                raw.push_str(&format!("a{i}=1&"));
            }
            raw.push_str("z=1");
            raw.extend(std::iter::repeat_n(close, depth));
            raw
        };
        let deepest = condition(&nested(MAX_DEPTH, '(', ')'));
        assert_eq!(
            deepest.depth(),
            MAX_DEPTH + 1,
            "the top level is a group too"
        );
        condition(&nested(MAX_DEPTH, '[', ']'));
        for raw in [
            nested(MAX_DEPTH + 1, '(', ')'),
            nested(MAX_DEPTH + 1, '[', ']'),
            // Deep enough to overflow a worker's stack if the parser recursed into it.
            format!("{}a=1{}", "(".repeat(20_000), ")".repeat(20_000)),
            "[".repeat(100_000),
        ] {
            assert!(
                matches!(parse_rest_query(&raw), Err(QueryError::TooDeep)),
                "{}...",
                &raw[..40]
            );
        }
    }

    #[test]
    fn sort_takes_at_most_max_sort_keys() {
        let keys = |n: usize| {
            (0..n)
                .map(|i| format!("a{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(
            parse(&format!("sort({})", keys(MAX_SORT_KEYS)))
                .sort
                .is_some()
        );
        assert_error(
            &format!("sort({})", keys(MAX_SORT_KEYS + 1)),
            "at most 16 attributes",
        );
    }

    #[test]
    fn empty_groups_and_alternatives() {
        assert_error("()", "empty group '()'");
        assert_error("[]", "empty group '[]'");
        assert_error("a=1&()", "empty group");
        assert_error("a=1|", "'|' needs a condition on each side");
        assert_error("|a=1", "'|' needs a condition on each side");
        assert_error("a=1||b=2", "'|' needs a condition on each side");
        assert_error("(|)", "'|' needs a condition on each side");
    }

    #[test]
    fn unknown_operators() {
        assert_error("a=foo=1", "unknown operator '=foo='");
        assert_error("a=b=c", "unknown operator '=b='");
        assert_error("a=GT=1", "unknown operator '=GT='");
        assert_error("a=between=1", "unknown operator '=between='");
        assert_error("a=in=1", "unknown operator '=in='");
        assert_error("a!b", "unexpected '!'");
    }

    #[test]
    fn empty_attribute_names() {
        assert_error("=1", "empty attribute name");
        assert_error("==1", "empty attribute name");
        assert_error("!=1", "empty attribute name");
        assert_error("<5", "empty attribute name");
        assert_error("a=1&=2", "empty attribute name");
    }

    #[test]
    fn terms_without_operators() {
        assert_error("name", "'name' at byte 0 is not a condition");
        assert_error("a=1&name", "'name' at byte 4 is not a condition");
        assert_error("(a=1)b=2", "expected '&' or '|'");
        assert_error("limit(5)x=1", "expected '&' or '|'");
    }

    #[test]
    fn syntax_characters_in_values() {
        assert_error("a=1=2", "unexpected '='");
        assert_error("a=gt==5", "unexpected '='");
        assert_error("a=x[1]", "unexpected '['");
        assert_error("a[b]=1", "'attribute[...]' is not supported");
    }

    #[test]
    fn bad_limits() {
        assert_error("limit(x)", "non-negative integers, but 'x'");
        assert_error("limit()", "non-negative integers");
        assert_error("limit(-1)", "non-negative integers, but '-1'");
        assert_error("limit(1.5)", "non-negative integers");
        assert_error("limit(1,x)", "non-negative integers, but 'x'");
        assert_error("limit(1,2,3)", "one or two arguments");
        assert_error("limit(10,5)", "end must not be before the start");
        assert_error("limit(1)&limit(2)", "more than once");
    }

    #[test]
    fn bad_select_and_sort() {
        assert_error("select()", "needs attribute names");
        assert_error("select(a,,b)", "needs attribute names");
        assert_error("select(,a)", "needs attribute names");
        assert_error("select(name,brand{name})", "nested lists and property sets");
        assert_error("select([a,b])", "nested lists and property sets");
        assert_error("select(a)&select(b)", "more than once");
        assert_error("sort()", "needs attribute names");
        assert_error("sort(-)", "needs attribute names");
        assert_error("sort(a,)", "needs attribute names");
        assert_error("sort(a)&sort(b)", "more than once");
    }

    #[test]
    fn unknown_and_misplaced_functions() {
        assert_error("foo(1)", "unknown query function 'foo()'");
        assert_error("group-by(a)", "unknown query function");
        assert_error("(limit(5))", "must be at the top level");
        assert_error("a=1&(b=2&sort(a))", "must be at the top level");
        assert_error("[select(a)]", "must be at the top level");
    }

    #[test]
    fn values_of_the_wrong_type_are_rejected() {
        assert_error("name=sw=number:5", "must be a string");
        assert_error("name=ew=boolean:true", "must be a string");
    }

    #[test]
    fn errors_are_invalid() {
        for raw in [
            "(a=1",
            "a=x=1",
            "limit(x)",
            "=1",
            "a==number:abc",
            "a==date:nope",
        ] {
            assert!(
                matches!(parse_rest_query(raw), Err(QueryError::Invalid(_))),
                "{raw}"
            );
        }
    }
}
