//! The schema-to-tables mapping, over the inputs Harper applications write and the
//! ones they get wrong.

use super::*;

/// Shorthand for building an expected attribute.
fn attr(name: &str, type_name: &str, indexed: bool, required: bool) -> AttributeDecl {
    AttributeDecl {
        name: name.into(),
        type_name: type_name.into(),
        indexed,
        required,
    }
}

/// Parses and unwraps, printing the error on failure.
fn ok(text: &str) -> Vec<TableDecl> {
    match parse_schema(text) {
        Ok(t) => t,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Parses and returns the error, failing if parsing succeeded.
fn err(text: &str) -> String {
    match parse_schema(text) {
        Ok(t) => panic!("expected an error, got {t:?}"),
        Err(e) => e.to_string(),
    }
}

const EXAMPLE: &str = r#"# comment
type Dog @table(database: "dev", table: "dog") @export(name: "Dog") {
  id: ID @primaryKey
  name: String @indexed
  age: Int
  tags: [String] @indexed
  owner: Owner @relationship(from: ownerId)
}
type Breed @table @export { id: ID! @primaryKey  name: String! }
"#;

#[test]
fn parses_the_example() {
    let tables = ok(EXAMPLE);
    assert_eq!(
        tables,
        vec![
            TableDecl {
                type_name: "Dog".into(),
                database: "dev".into(),
                table: "dog".into(),
                export: Some("Dog".into()),
                primary_key: "id".into(),
                attributes: vec![
                    attr("id", "ID", false, false),
                    attr("name", "String", true, false),
                    attr("age", "Int", false, false),
                    attr("tags", "[String]", true, false),
                    attr("owner", "Owner", false, false),
                ],
            },
            TableDecl {
                type_name: "Breed".into(),
                database: "data".into(),
                table: "Breed".into(),
                export: Some("Breed".into()),
                primary_key: "id".into(),
                attributes: vec![
                    attr("id", "ID", false, true),
                    attr("name", "String", false, true)
                ],
            },
        ]
    );
}

#[test]
fn applies_defaults() {
    let t = ok("type Cat @table { id: ID name: String }");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].database, "data");
    assert_eq!(t[0].table, "Cat");
    assert_eq!(t[0].export, None);
    assert_eq!(t[0].primary_key, "id");
    let t = ok("type Cat @table(database: \"zoo\") @export { id: ID }");
    assert_eq!(t[0].database, "zoo");
    assert_eq!(t[0].table, "Cat");
    assert_eq!(t[0].export.as_deref(), Some("Cat"));
}

#[test]
fn explicit_primary_key_wins_over_id() {
    let t = ok("type User @table { id: Int  email: String! @primaryKey @indexed }");
    assert_eq!(t[0].primary_key, "email");
    assert_eq!(t[0].attributes[1], attr("email", "String", true, true));
}

#[test]
fn parses_multiple_types_in_order() {
    let t = ok(r#"
        type A @table { id: ID }
        type B @table(table: "bees") @export(name: "bees") { key: String @primaryKey }
        type C @table(database: "other") { id: ID }
    "#);
    let names: Vec<_> = t
        .iter()
        .map(|t| (t.type_name.as_str(), t.table.as_str()))
        .collect();
    assert_eq!(names, [("A", "A"), ("B", "bees"), ("C", "C")]);
    assert_eq!(t[1].export.as_deref(), Some("bees"));
    assert_eq!(t[1].primary_key, "key");
    assert_eq!(t[2].database, "other");
}

#[test]
fn accepts_expiration_audit_and_other_table_args() {
    let t = ok(
        r#"type S @table(expiration: 3600, audit: true, eviction: 60, scanInterval: 10, replicate: false)
                 { id: ID }"#,
    );
    assert_eq!(t[0].table, "S");
    assert_eq!(t[0].database, "data");
}

#[test]
fn ignores_other_directives() {
    let t = ok(r#"
        type Post @table @sealed @export(name: "posts") @custom(a: [1, 2.5e3, {x: null, y: "v"}], b: ENUM) {
          id: ID! @primaryKey
          created: Long @createdTime
          updated: Float @updatedTime
          author: User @relationship(from: authorId)
          comments: [Comment] @relationship(to: "postId")
          embedding: [Float] @indexed(type: "HNSW", distance: "cosine")
          full: String @computed(from: "a + b") @anything
        }
    "#);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].export.as_deref(), Some("posts"));
    assert_eq!(t[0].attributes.len(), 7);
    assert!(t[0].attributes[5].indexed);
    assert!(!t[0].attributes[3].indexed);
}

#[test]
fn ignores_non_table_definitions() {
    let t = ok(r#"
        schema { query: Query mutation: Mutation }
        scalar Date @specifiedBy(url: "https://example.com")
        enum Color { RED GREEN "described" BLUE @deprecated }
        enum Empty
        interface Node { id: ID! }
        input NewDog { name: String! = "rex", age: Int = 1 @deprecated }
        union Pet = | Dog | Cat
        directive @custom(a: [Int] = [1]) repeatable on FIELD_DEFINITION | OBJECT
        type Query { dogs(limit: Int = 10, "desc" where: NewDog): [Dog!]! }
        type Plain { name: String }
        type Dog implements Node & Named @table { id: ID! }
        extend type Dog @table(database: "ignored") { extra: String }
        extend schema @foo
        extend enum Color { PURPLE }
    "#);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].type_name, "Dog");
    assert_eq!(t[0].database, "data");
    assert_eq!(t[0].attributes, vec![attr("id", "ID", false, true)]);
}

#[test]
fn non_table_types_need_no_primary_key() {
    assert_eq!(ok("type Owner { name: String } input I { x: Int }"), vec![]);
}

#[test]
fn handles_comments_and_descriptions() {
    let t = ok(r#"
        # leading comment with "quote" and { brace
        """
        Block description with } and # and "quotes" and \""" escaped
        """
        type Dog @table { # trailing comment }
          "field description with } and #"
          id: ID @primaryKey # another
          """multi
          line"""
          name: String
        }
        "description before non-table" scalar X
    "#);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].attributes.len(), 2);
}

#[test]
fn tolerates_commas_and_crlf() {
    let t = ok(
        "type A @table(database: \"d\",, table: \"t\",) {\r\n id: ID,\r\n name: String,\r\n}\r\n",
    );
    assert_eq!((t[0].database.as_str(), t[0].table.as_str()), ("d", "t"));
    assert_eq!(t[0].attributes.len(), 2);
    let e = err("type A @table {\r\n id: ID\r\n name: String\r\n bad\r\n}");
    assert_eq!(e, "line 5, column 1: expected a type, found `}`");
}

#[test]
fn list_and_non_null_types() {
    let t = ok("type A @table { id: ID! a: [String!]! b: [[Int]] c: [Int]! }");
    let a = &t[0].attributes;
    assert_eq!(a[1], attr("a", "[String!]", false, true));
    assert_eq!(a[2], attr("b", "[[Int]]", false, false));
    assert_eq!(a[3], attr("c", "[Int]", false, true));
}

#[test]
fn string_escapes_in_arguments() {
    let t = ok(r#"type A @table(table: "a\"b\\c\u00e9\u{1F600}\uD83D\uDE00") { id: ID }"#);
    assert_eq!(t[0].table, "a\"b\\c\u{e9}\u{1F600}\u{1F600}");
    let t = ok("type A @table(table: \"\"\"\n    blocky\n  \"\"\") { id: ID }");
    assert_eq!(t[0].table, "blocky");
    let e = err(r#"type A @table(table: "bad \q") { id: ID }"#);
    assert_eq!(
        e,
        r#"line 1, column 22: unexpected escaped character, found `"bad \q"`"#
    );
    let e = err(r#"type A @table(table: "\u12") { id: ID }"#);
    assert!(
        e.starts_with("line 1, column 22: incomplete unicode escape sequence"),
        "{e}"
    );
}

#[test]
fn missing_primary_key() {
    let e = err("\n\ntype Dog @table {\n  name: String\n}");
    assert_eq!(
        e,
        "line 3: type Dog has no primary key (expected a field marked @primaryKey or named `id`)"
    );
    let e = err("type Dog @table");
    assert!(e.contains("type Dog has no primary key"), "{e}");
}

#[test]
fn duplicate_primary_keys_and_fields() {
    let e = err("type A @table {\n id: ID @primaryKey\n k: ID @primaryKey\n}");
    assert_eq!(
        e,
        "line 3: expected one @primaryKey in type A, found `k` after `id`"
    );
    let e = err("type A @table {\n id: ID\n id: String\n}");
    assert_eq!(
        e,
        "line 3: expected unique field names in type A, found `id` again"
    );
}

#[test]
fn duplicate_tables_and_exports() {
    let e = err("type A @table(table: \"x\") { id: ID }\ntype B @table(table: \"x\") { id: ID }");
    assert!(
        e.starts_with("line 2: expected a unique table name, found table data.x"),
        "{e}"
    );
    let e = err(
        "type A @table @export(name: \"x\") { id: ID }\ntype B @table @export(name: \"x\") { id: ID }",
    );
    assert!(
        e.starts_with("line 2: expected a unique @export name, found `x`"),
        "{e}"
    );
    ok(
        "type A @table(database: \"one\", table: \"x\") { id: ID }\ntype B @table(database: \"two\", table: \"x\") { id: ID }",
    );
    let e = err("type A @table @table { id: ID }");
    assert_eq!(
        e,
        "line 1: expected at most one @table on type A, found another"
    );
}

#[test]
fn unterminated_braces() {
    let cases = [
        (
            "type Dog @table {\n  id: ID\n  name: String\n",
            "line 4, column 1: expected `}`, got end of input",
        ),
        (
            "enum E { A B",
            "line 1, column 13: expected `}`, got end of input",
        ),
        (
            "schema { query: Query",
            "line 1, column 22: expected `}`, got end of input",
        ),
        (
            "type A @table { id: [ID }",
            "line 1, column 25: expected `]`, got }",
        ),
        (
            "type A @x(v: [1, 2) { id: ID }",
            "line 1, column 19: expected a valid Value, found `)`",
        ),
        (
            "type A @x(v: {a: 1) { id: ID }",
            "line 1, column 19: expected `}`, got )",
        ),
        (
            "type A @table { }",
            "line 1, column 17: expected Field Definition, found `}`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(text), want, "for {text:?}");
    }
}

#[test]
fn unterminated_strings() {
    let e = err("type A @table(table: \"abc) { id: ID }");
    assert_eq!(
        e,
        "line 1, column 22: unterminated string value, found `\"abc) { id: ID }`"
    );
    let e = err("\ntype A @table(table: \"abc\n\") { id: ID }");
    assert_eq!(
        e,
        "line 2, column 22: unexpected line terminator, found `\"abc\\n\"`"
    );
    let e = err("\"\"\"never closed\n\ntype A @table { id: ID }");
    assert!(
        e.starts_with(
            "line 1, column 1: unterminated string value, found `\"\"\"never closed\\n\\n"
        ),
        "{e}"
    );
    // An unterminated string runs to the end: the message shows its first 40 characters.
    let long = format!("type A @table(table: \"{}", "x".repeat(10_000));
    assert!(
        err(&long).ends_with(&format!("`\"{}...`", "x".repeat(39))),
        "{long}"
    );
}

#[test]
fn bad_directive_arguments() {
    let cases = [
        (
            "type A @table(database: 5) { id: ID }",
            "line 1: expected a non-empty string for @table argument `database`, found integer 5",
        ),
        (
            "type A @table(table: dog) { id: ID }",
            "line 1: expected a non-empty string for @table argument `table`, found name `dog`",
        ),
        (
            "type A @table(table: \"\") { id: ID }",
            "line 1: expected a non-empty string for @table argument `table`, found string \"\"",
        ),
        (
            "type A @table(expiration: \"1h\") { id: ID }",
            "line 1: expected an integer for @table argument `expiration`, found string \"1h\"",
        ),
        (
            "type A @table(audit: 1) { id: ID }",
            "line 1: expected a boolean for @table argument `audit`, found integer 1",
        ),
        (
            "type A @table(databse: \"x\") { id: ID }",
            "line 1: expected @table argument database, table, expiration, eviction, scanInterval, audit or replicate, found `databse`",
        ),
        (
            "type A @table @export(name: true) { id: ID }",
            "line 1: expected a non-empty string for @export argument `name`, found boolean true",
        ),
        (
            "type A @table @export(path: \"x\") { id: ID }",
            "line 1: expected @export argument name, found `path`",
        ),
        (
            "type A @table(database) { id: ID }",
            "line 1: expected `name: value` arguments in @table(...)",
        ),
        (
            "type A @table() { id: ID }",
            "line 1, column 15: expected an Argument, found `)`",
        ),
        (
            "type A @table(database: ) { id: ID }",
            "line 1, column 25: expected a valid Value, found `)`",
        ),
        (
            "type A @table(table: \"a\", table: \"b\") { id: ID }",
            "line 1: expected each @table argument once, found `table` again",
        ),
        (
            "type A @ { id: ID }",
            "line 1, column 10: expected a Name, found `{`",
        ),
        (
            "type A @table(database: \"x\"\n{ id: ID }",
            "line 2, column 1: expected `)`, got {",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(text), want, "for {text:?}");
    }
}

#[test]
fn lexical_and_structural_errors() {
    let cases = [
        (
            "type A @table { id: ID % }",
            "line 1, column 24: Unexpected character \"%\"",
        ),
        (
            "type A @x(n: 12abc) { id: ID }",
            "line 1, column 14: Unexpected character `a` as integer suffix, found `12a`",
        ),
        (
            "type A @x(n: -) { id: ID }",
            "line 1, column 14: Unexpected character `)`, found `-)`",
        ),
        (
            "type { id: ID }",
            "line 1, column 6: expected a name, found `{`",
        ),
        (
            "type A @table {\n id ID\n}",
            "line 2, column 5: expected a type, found `ID`",
        ),
        (
            "type A @table { id: }",
            "line 1, column 21: expected a Type, found `}`",
        ),
        (
            "\"dangling description\"",
            "line 1, column 1: expected definition, found `\"dangling description\"`",
        ),
        (
            "directive @x FIELD",
            "line 1, column 14: expected Directive Locations, found `FIELD`",
        ),
        // Directive arguments in a schema are constants, as in Harper's parser.
        (
            "type A @x(v: {y: $v}) { id: ID }",
            "line 1, column 18: unexpected variable value in a Const context, found `$`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(text), want, "for {text:?}");
    }
    assert!(err("query { dogs }").starts_with("line 1: expected a definition"));
    assert!(err("{ id }").starts_with("line 1: expected a definition"));
    assert!(err("\n\nfragment F on Dog { id }").starts_with("line 3: expected a definition"));
    assert!(
        err("extend directive @x on FIELD")
            .starts_with("line 1, column 1: Invalid Type System Extension"),
    );
}

#[test]
fn rejects_excessive_nesting() {
    let deep = format!(
        "type A @table {{ id: {}ID{} }}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(err(&deep).contains("nested at most"));
    let deep = format!(
        "type A @x(v: {}1{}) {{ id: ID }}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(err(&deep).contains("nested at most"));
}

#[test]
fn empty_and_comment_only_documents() {
    assert_eq!(ok(""), vec![]);
    assert_eq!(ok("\u{feff}# only a comment\n\n  ,,\n"), vec![]);
}

/// Comments, both kinds of description, directives with arguments and field arguments
/// are read past; only the table mapping remains.
#[test]
fn parses_comments_descriptions_directives_and_arguments() {
    let t = ok(r#"
# A schema as Harper applications write it. "Quotes", { braces } and @table in a comment.
"""
A dog, described in a block string with "quotes", # hashes, } braces
and an escaped \""" triple quote.
"""
type Dog @table(database: "kennel", table: "dogs", expiration: 3600, audit: true)
    @export(name: "dogs") # trailing comment
{
  "The key, in a string description."
  id: ID! @primaryKey
  name: String @indexed # indexed
  """
  Field with arguments, a default and a directive on an argument.
  """
  friends(first: Int = 10, "filter" where: String @deprecated(reason: "no")): [Dog!] @relationship(to: "ownerId")
  breed: Breed @relationship(from: "breedId") @custom(list: [1, 2.5, "x"], obj: {a: {b: null}}, flag: false, kind: SMALL)
  created: Float @createdTime
  updated: Float @updatedTime
}

"A plain type: no table."
type Breed { name: String }
"#);
    assert_eq!(
        t,
        vec![TableDecl {
            type_name: "Dog".into(),
            database: "kennel".into(),
            table: "dogs".into(),
            export: Some("dogs".into()),
            primary_key: "id".into(),
            attributes: vec![
                attr("id", "ID", false, true),
                attr("name", "String", true, false),
                attr("friends", "[Dog!]", false, false),
                attr("breed", "Breed", false, false),
                attr("created", "Float", false, false),
                attr("updated", "Float", false, false),
            ],
        }]
    );
}

/// Errors name the line and column of what the parser stopped at.
#[test]
fn syntax_errors_give_line_and_column() {
    let e = match parse_schema("# one\ntype Dog @table {\n  id: ID\n  näme: String @ \n}") {
        Ok(t) => panic!("expected an error, got {t:?}"),
        Err(e) => e,
    };
    assert_eq!((e.line, e.column), (4, Some(4)), "{e}");
}

/// Nesting is bounded before it can reach the stack: 64 levels parse, 65 do not, and
/// 100,000 open brackets or braces are refused on a small stack (before the parser
/// sees them: it would spend seconds on its errors).
#[test]
fn adversarial_nesting_is_refused_without_overflow() {
    let nested = |n: usize| {
        format!(
            "type A @table {{ id: {}ID{} }}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let typed = ok(&nested(MAX_DEPTH));
    assert_eq!(typed[0].attributes[0].type_name.len(), 2 + 2 * MAX_DEPTH);
    assert!(err(&nested(MAX_DEPTH + 1)).contains("nested at most 64 deep"));
    let n = 100_000;
    let inputs = [
        nested(n),
        format!("type A @table @x(v: {}1) {{ id: ID }}", "[".repeat(n)),
        format!("type A @table @x(v: {}) {{ id: ID }}", "{a: ".repeat(n)),
        "[".repeat(n),
        "{".repeat(n),
        format!(
            "type A @table {{ id: ID }} extend type A {}",
            "@x(a: [".repeat(n)
        ),
    ];
    // Smaller than a Tokio worker's 2 MiB stack, so a request's parse has room to spare.
    let outcome = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            inputs
                .iter()
                .map(|i| parse_schema(i).map(|_| ()))
                .collect::<Vec<_>>()
        })
        .expect("spawn")
        .join()
        .expect("parser overflowed or panicked");
    for result in outcome {
        let e = result.expect_err("refused");
        assert_eq!(
            e.message,
            "expected types and values nested at most 64 deep"
        );
    }
    // The deepest a schema can mean passes the first check: a value inside a directive
    // on a field argument.
    let deepest = format!(
        "type A @table {{ id: ID f(a: Int @x(v: {}1{})): Int }}",
        "[".repeat(MAX_DEPTH),
        "]".repeat(MAX_DEPTH)
    );
    assert_eq!(ok(&deepest)[0].attributes.len(), 2);
}
