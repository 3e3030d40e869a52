//! Unit tests of the REST query parser.

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
        "date:2024-01-01Z",
        "date:+2024-01-01",
        "date:-2024-01-01",
        "date:2024-01-01T12:00:00+24:00",
        "date:2024-01-01T12:00:00-24",
        "date:2024-01-01T12:00:00 +01:00",
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
