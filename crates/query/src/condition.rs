//! Conditions and how a record is tested against them.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use shoal_store::key::compare;

use crate::error::QueryError;

/// Deepest nesting of condition groups below the top level, in every interface: REST
/// parentheses and brackets, `search_by_conditions` groups. Sixteen is far past what a
/// person writes (`a|b|c` and `a&b&c` stay flat at any length), and it keeps every
/// recursion over a condition (parsing, checking, matching, index planning, dropping)
/// a few kilobytes of stack, whatever a request holds.
pub const MAX_DEPTH: usize = 16;

/// How a condition compares an attribute with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// Equal (numbers by value).
    Equals,
    /// Not equal; a missing attribute is not equal.
    NotEqual,
    /// String contains the text, or array contains the element.
    Contains,
    /// String starts with the text.
    StartsWith,
    /// String ends with the text.
    EndsWith,
    /// Greater than (same type only).
    GreaterThan,
    /// Greater than or equal (same type only).
    GreaterThanEqual,
    /// Less than (same type only).
    LessThan,
    /// Less than or equal (same type only).
    LessThanEqual,
    /// Between two values, inclusive; the value is `[low, high]`.
    Between,
}

impl Comparator {
    /// Parses Harper's comparator names (and the short forms its REST language uses).
    pub fn parse(name: &str) -> Result<Self, QueryError> {
        Ok(match name {
            "equals" | "eq" | "=" | "==" => Comparator::Equals,
            "not_equal" | "ne" | "!=" => Comparator::NotEqual,
            "contains" | "ct" => Comparator::Contains,
            "starts_with" | "sw" => Comparator::StartsWith,
            "ends_with" | "ew" => Comparator::EndsWith,
            "greater_than" | "gt" | ">" => Comparator::GreaterThan,
            "greater_than_equal" | "ge" | ">=" => Comparator::GreaterThanEqual,
            "less_than" | "lt" | "<" => Comparator::LessThan,
            "less_than_equal" | "le" | "<=" => Comparator::LessThanEqual,
            "between" => Comparator::Between,
            other => {
                return Err(QueryError::Invalid(format!("unknown comparator '{other}'")));
            }
        })
    }
}

/// How the conditions of a group combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// All must hold.
    And,
    /// At least one must hold.
    Or,
}

/// A condition tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// One attribute compared with a value.
    Compare {
        /// Top-level attribute name.
        attribute: String,
        /// Comparison.
        comparator: Comparator,
        /// The value (`[low, high]` for between).
        value: Value,
    },
    /// A group of conditions.
    Group {
        /// How they combine.
        operator: Operator,
        /// The members.
        conditions: Vec<Condition>,
    },
}

impl Condition {
    /// Groups on the longest path from the top down (0 for a single comparison), counted
    /// without recursion, so that a tree built deeper than any parser allows is refused
    /// before anything recurses over it.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 0)];
        while let Some((condition, depth)) = stack.pop() {
            if let Condition::Group { conditions, .. } = condition {
                deepest = deepest.max(depth + 1);
                stack.extend(conditions.iter().map(|c| (c, depth + 1)));
            }
        }
        deepest
    }

    /// Checks the nesting and value types up front, so a bad query fails before it scans
    /// anything.
    pub fn validate(&self) -> Result<(), QueryError> {
        // The top level is a group of its own; MAX_DEPTH counts the groups below it.
        if self.depth() > MAX_DEPTH + 1 {
            return Err(QueryError::TooDeep);
        }
        self.validate_values()
    }

    fn validate_values(&self) -> Result<(), QueryError> {
        match self {
            Condition::Compare {
                attribute,
                comparator,
                value,
            } => {
                let fail = |why: &str| {
                    Err(QueryError::Invalid(format!(
                        "condition on '{attribute}': {why}"
                    )))
                };
                match comparator {
                    Comparator::Between => match value.as_array().map(Vec::as_slice) {
                        Some([lo, hi]) if is_scalar(lo) && is_scalar(hi) => Ok(()),
                        _ => fail("between needs a value of two scalars, [low, high]"),
                    },
                    Comparator::StartsWith | Comparator::EndsWith if !value.is_string() => {
                        fail("the value must be a string")
                    }
                    _ if !is_scalar(value) => {
                        fail("the value must be a string, number, boolean or null")
                    }
                    _ => Ok(()),
                }
            }
            Condition::Group { conditions, .. } => {
                conditions.iter().try_for_each(Condition::validate_values)
            }
        }
    }

    /// Whether `record` satisfies the condition.
    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        match self {
            Condition::Compare {
                attribute,
                comparator,
                value,
            } => {
                let field = record.get(attribute).unwrap_or(&Value::Null);
                match comparator {
                    Comparator::NotEqual => !any(field, |x| equal(x, value)),
                    Comparator::Contains => match (field, value) {
                        (Value::String(s), Value::String(t)) => s.contains(t.as_str()),
                        (Value::Array(items), v) => items.iter().any(|x| equal(x, v)),
                        _ => false,
                    },
                    _ => any(field, |x| compare_one(x, *comparator, value)),
                }
            }
            Condition::Group {
                operator: Operator::And,
                conditions,
            } => conditions.iter().all(|c| c.matches(record)),
            Condition::Group {
                operator: Operator::Or,
                conditions,
            } => conditions.iter().any(|c| c.matches(record)),
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Applies `f` to the value, or to each element of an array (as the index does).
fn any(field: &Value, f: impl Fn(&Value) -> bool) -> bool {
    match field {
        Value::Array(items) => items.iter().any(f),
        v => f(v),
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Number(_), Value::Number(_))
            | (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Null, Value::Null)
    )
}

fn equal(a: &Value, b: &Value) -> bool {
    same_type(a, b) && compare(a, b) == Ordering::Equal
}

fn compare_one(x: &Value, comparator: Comparator, value: &Value) -> bool {
    let ordered = |v: &Value| same_type(x, v).then(|| compare(x, v));
    match comparator {
        Comparator::Equals => equal(x, value),
        Comparator::StartsWith => {
            matches!((x, value), (Value::String(s), Value::String(p)) if s.starts_with(p.as_str()))
        }
        Comparator::EndsWith => {
            matches!((x, value), (Value::String(s), Value::String(p)) if s.ends_with(p.as_str()))
        }
        Comparator::GreaterThan => ordered(value) == Some(Ordering::Greater),
        Comparator::GreaterThanEqual => ordered(value).is_some_and(Ordering::is_ge),
        Comparator::LessThan => ordered(value) == Some(Ordering::Less),
        Comparator::LessThanEqual => ordered(value).is_some_and(Ordering::is_le),
        Comparator::Between => match value.as_array().map(Vec::as_slice) {
            Some([lo, hi]) => {
                ordered(lo).is_some_and(Ordering::is_ge) && ordered(hi).is_some_and(Ordering::is_le)
            }
            _ => false,
        },
        Comparator::NotEqual | Comparator::Contains => unreachable!("handled by the caller"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn leaf(attribute: &str, comparator: Comparator, value: Value) -> Condition {
        Condition::Compare {
            attribute: attribute.into(),
            comparator,
            value,
        }
    }

    #[test]
    fn comparators() {
        let rec = json!({"age": 5, "name": "Penny", "tags": ["a", "b"]});
        let rec = rec.as_object().unwrap();
        use Comparator::*;
        let cases = [
            (leaf("age", Equals, json!(5.0)), true),
            (leaf("age", Equals, json!("5")), false),
            (leaf("age", NotEqual, json!(4)), true),
            (leaf("missing", NotEqual, json!(4)), true),
            (leaf("name", Contains, json!("enn")), true),
            (leaf("tags", Contains, json!("b")), true),
            (leaf("name", StartsWith, json!("Pe")), true),
            (leaf("name", EndsWith, json!("ny")), true),
            (leaf("age", GreaterThan, json!(5)), false),
            (leaf("age", GreaterThanEqual, json!(5)), true),
            (leaf("age", LessThan, json!(6)), true),
            (leaf("age", LessThanEqual, json!(4)), false),
            (leaf("age", GreaterThan, json!("a")), false),
            (leaf("age", Between, json!([3, 7])), true),
            (leaf("age", Between, json!([6, 7])), false),
            (leaf("tags", Equals, json!("a")), true),
        ];
        for (cond, expected) in cases {
            assert_eq!(cond.matches(rec), expected, "{cond:?}");
        }
        let or = Condition::Group {
            operator: Operator::Or,
            conditions: vec![
                leaf("age", Equals, json!(1)),
                leaf("name", Equals, json!("Penny")),
            ],
        };
        assert!(or.matches(rec));
    }

    #[test]
    fn trees_deeper_than_the_limit_are_refused_before_any_recursion() {
        let mut tree = leaf("a", Comparator::Equals, json!(1));
        for _ in 0..=MAX_DEPTH {
            tree = Condition::Group {
                operator: Operator::And,
                conditions: vec![tree, leaf("b", Comparator::Equals, json!(2))],
            };
        }
        assert_eq!(tree.depth(), MAX_DEPTH + 1);
        tree.validate().unwrap();
        let deeper = Condition::Group {
            operator: Operator::Or,
            conditions: vec![tree],
        };
        assert!(matches!(deeper.validate(), Err(QueryError::TooDeep)));
        assert_eq!(leaf("a", Comparator::Equals, json!(1)).depth(), 0);
    }

    #[test]
    fn validation_rejects_bad_values() {
        assert!(
            leaf("a", Comparator::Between, json!([1]))
                .validate()
                .is_err()
        );
        assert!(
            leaf("a", Comparator::StartsWith, json!(1))
                .validate()
                .is_err()
        );
        assert!(
            leaf("a", Comparator::Equals, json!({"x": 1}))
                .validate()
                .is_err()
        );
        assert!(Comparator::parse("like").is_err());
    }
}
