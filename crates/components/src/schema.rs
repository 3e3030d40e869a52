//! Table declarations from a component's GraphQL schema.
//!
//! `apollo-parser` reads the whole SDL grammar (every kind of type system definition and
//! extension, descriptions, comments, commas); only `type X @table { ... }` definitions
//! declare tables. Of the directives, `@table`, `@export`, `@primaryKey` and `@indexed`
//! carry meaning; every other directive is ignored. Operations and fragments have no
//! place in a schema and are refused.

use std::collections::HashMap;

use apollo_parser::cst::{self, CstNode};
use apollo_parser::{Lexer, Parser, SyntaxKind, SyntaxNode, TokenKind};

/// Database used when `@table` has no `database` argument.
const DEFAULT_DATABASE: &str = "data";

/// Deepest nesting the parser follows (list types, list and object values), so hostile
/// input cannot overflow the stack: past it the schema is refused.
pub const MAX_DEPTH: usize = 64;

/// What may stand at the top of a schema.
const DEFINITION: &str =
    "a definition (type, input, interface, enum, scalar, union, schema, directive or extend)";

/// One table declared in a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDecl {
    /// GraphQL type name that declares the table.
    pub type_name: String,
    /// Database holding the table (`@table(database:)`, default `data`).
    pub database: String,
    /// Table name (`@table(table:)`, default the type name).
    pub table: String,
    /// REST export name (`@export(name:)`, default the type name); `None` when not exported.
    pub export: Option<String>,
    /// Name of the primary-key attribute (`@primaryKey`, default the field named `id`).
    pub primary_key: String,
    /// Declared fields in source order, including the primary key.
    pub attributes: Vec<AttributeDecl>,
}

/// One field of a table type.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDecl {
    /// Field name.
    pub name: String,
    /// Declared type without the outer `!`, e.g. `String`, `[String]` or `[String!]`.
    pub type_name: String,
    /// Whether the field carries `@indexed`.
    pub indexed: bool,
    /// Whether the field type is non-null (outer `!`).
    pub required: bool,
}

/// Why a schema was refused, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}{}: {message}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct SchemaError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters, for syntax errors.
    pub column: Option<usize>,
    /// What was expected and what was found.
    pub message: String,
}

/// The tables a schema document declares, in source order.
pub fn parse_schema(text: &str) -> Result<Vec<TableDecl>, SchemaError> {
    let lines = Lines::new(text);
    if prescan(text, &lines)? == Scanned::Blank {
        return Ok(Vec::new());
    }
    let tree = Parser::new(text).recursion_limit(MAX_DEPTH).parse();
    // Errors are read before anything else: apollo-parser unescapes strings assuming a
    // clean parse.
    if let Some(error) = first_error(&tree) {
        let (line, column) = lines.position(error.index());
        let message = if error.is_limit() {
            too_deep()
        } else if error.data().is_empty() || error.message().contains(error.data()) {
            token_names(error.message())
        } else {
            format!(
                "{}, found `{}`",
                token_names(error.message()),
                excerpt(error.data())
            )
        };
        return Err(SchemaError {
            line,
            column: Some(column),
            message,
        });
    }
    let mut tables = Vec::new();
    for definition in tree.document().definitions() {
        let found = match &definition {
            cst::Definition::ObjectTypeDefinition(def) => {
                tables.extend(table(&lines, def)?);
                continue;
            }
            cst::Definition::OperationDefinition(_) => "an operation",
            cst::Definition::FragmentDefinition(_) => "a fragment",
            _ => continue,
        };
        return Err(lines.error(
            definition.syntax(),
            format!("expected {DEFINITION}, found {found}"),
        ));
    }
    check_unique(&tables)?;
    Ok(tables.into_iter().map(|(_, table)| table).collect())
}

/// The error to report: a limit reached if any (what follows it is noise), else the
/// earliest.
fn first_error(tree: &apollo_parser::SyntaxTree) -> Option<&apollo_parser::Error> {
    tree.errors()
        .find(|e| e.is_limit())
        .or_else(|| tree.errors().min_by_key(|e| e.index()))
}

/// The parser's names for closing tokens, as the schema's author wrote them.
fn token_names(message: &str) -> String {
    [
        ("R_CURLY", "`}`"),
        ("R_BRACK", "`]`"),
        ("R_PAREN", "`)`"),
        ("EOF", "end of input"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (name, shown)| {
        m.replace(name, shown)
    })
}

/// The start of what the parser stopped at (an unterminated string is the whole rest
/// of the document), control characters escaped.
fn excerpt(data: &str) -> String {
    const MAX: usize = 40;
    let mut shown = String::new();
    for c in data.chars().take(MAX) {
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    if data.chars().nth(MAX).is_some() {
        shown.push_str("...");
    }
    shown
}

/// What a first pass over a document's tokens found.
#[derive(PartialEq)]
enum Scanned {
    /// Nothing but white space, commas and comments: a new component's empty schema,
    /// which the parser would refuse.
    Blank,
    /// Something to parse.
    Tokens,
}

/// Refuses brackets nested deeper than any schema within [`MAX_DEPTH`] has them before
/// the parser sees them: past its recursion limit apollo-parser still reads on, one
/// error per token, seconds for a hostile 100 kB.
fn prescan(text: &str, lines: &Lines) -> Result<Scanned, SchemaError> {
    // A field's `{`, its arguments' `(` and a directive's `(` on one of them, then
    // MAX_DEPTH levels of list types or values.
    const MAX_BRACKETS: usize = MAX_DEPTH + 3;
    let mut depth = 0usize;
    let mut scanned = Scanned::Blank;
    for token in Lexer::new(text) {
        let Ok(token) = token else {
            scanned = Scanned::Tokens;
            continue;
        };
        match token.kind() {
            TokenKind::Whitespace | TokenKind::Comment | TokenKind::Comma | TokenKind::Eof => {
                continue;
            }
            TokenKind::LCurly | TokenKind::LBracket | TokenKind::LParen => {
                depth += 1;
                if depth > MAX_BRACKETS {
                    let (line, column) = lines.position(token.index());
                    return Err(SchemaError {
                        line,
                        column: Some(column),
                        message: too_deep(),
                    });
                }
            }
            TokenKind::RCurly | TokenKind::RBracket | TokenKind::RParen => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        scanned = Scanned::Tokens;
    }
    Ok(scanned)
}

fn too_deep() -> String {
    format!("expected types and values nested at most {MAX_DEPTH} deep")
}

/// Rejects two tables with the same database and name, or two tables with the same export name.
fn check_unique(tables: &[(usize, TableDecl)]) -> Result<(), SchemaError> {
    let mut names: HashMap<(&str, &str), &str> = HashMap::new();
    let mut exports: HashMap<&str, &str> = HashMap::new();
    for (line, t) in tables {
        if let Some(first) = names.insert((&t.database, &t.table), &t.type_name) {
            return Err(at_line(
                *line,
                format!(
                    "expected a unique table name, found table {}.{} declared by both {first} and {}",
                    t.database, t.table, t.type_name
                ),
            ));
        }
        if let Some(export) = &t.export
            && let Some(first) = exports.insert(export, &t.type_name)
        {
            return Err(at_line(
                *line,
                format!(
                    "expected a unique @export name, found `{export}` exported by both {first} and {}",
                    t.type_name
                ),
            ));
        }
    }
    Ok(())
}

/// A `type` definition's table, with the line of its name, when it carries `@table`.
fn table(
    lines: &Lines,
    def: &cst::ObjectTypeDefinition,
) -> Result<Option<(usize, TableDecl)>, SchemaError> {
    let name = def
        .name()
        .ok_or_else(|| lines.error(def.syntax(), "expected a name after `type`".into()))?;
    let type_name = name.text().to_string();
    let line = lines.line(name.syntax());
    let directives = directives(lines, def.directives())?;
    let Some(table_dir) = single_directive(&directives, "table", &type_name)? else {
        return Ok(None);
    };
    let mut database = DEFAULT_DATABASE.to_owned();
    let mut table = type_name.clone();
    for arg in &table_dir.args {
        match arg.name.as_str() {
            "database" => database = string_arg("table", arg)?,
            "table" => table = string_arg("table", arg)?,
            "expiration" | "eviction" | "scanInterval" => int_arg("table", arg)?,
            "audit" | "replicate" => bool_arg("table", arg)?,
            other => {
                return Err(at_line(
                    arg.line,
                    format!(
                        "expected @table argument database, table, expiration, eviction, scanInterval, audit or replicate, found `{other}`"
                    ),
                ));
            }
        }
    }
    let export = match single_directive(&directives, "export", &type_name)? {
        None => None,
        Some(dir) => {
            let mut name = type_name.clone();
            for arg in &dir.args {
                if arg.name != "name" {
                    return Err(at_line(
                        arg.line,
                        format!("expected @export argument name, found `{}`", arg.name),
                    ));
                }
                name = string_arg("export", arg)?;
            }
            Some(name)
        }
    };
    let attributes = attributes(lines, def.fields_definition(), &type_name)?;
    let marked = attributes.iter().find(|(_, _, key)| *key);
    let primary_key = match marked {
        Some((a, _, _)) => a.name.clone(),
        None if attributes.iter().any(|(a, _, _)| a.name == "id") => "id".to_owned(),
        None => {
            return Err(at_line(
                line,
                format!(
                    "type {type_name} has no primary key (expected a field marked @primaryKey or named `id`)"
                ),
            ));
        }
    };
    let decl = TableDecl {
        type_name,
        database,
        table,
        export,
        primary_key,
        attributes: attributes.into_iter().map(|(a, _, _)| a).collect(),
    };
    Ok(Some((line, decl)))
}

/// A table type's fields, each with its line and whether it carries `@primaryKey`.
fn attributes(
    lines: &Lines,
    fields: Option<cst::FieldsDefinition>,
    type_name: &str,
) -> Result<Vec<(AttributeDecl, usize, bool)>, SchemaError> {
    let mut out: Vec<(AttributeDecl, usize, bool)> = Vec::new();
    for field in fields.iter().flat_map(|f| f.field_definitions()) {
        let (Some(name), Some(ty)) = (field.name(), field.ty()) else {
            return Err(lines.error(field.syntax(), "expected a field name and type".into()));
        };
        let line = lines.line(name.syntax());
        let name = name.text().to_string();
        if out.iter().any(|(a, _, _)| a.name == name) {
            return Err(at_line(
                line,
                format!("expected unique field names in type {type_name}, found `{name}` again"),
            ));
        }
        let directives = directives(lines, field.directives())?;
        let key = directives.iter().any(|d| d.name == "primaryKey");
        if key && let Some((first, _, _)) = out.iter().find(|(_, _, key)| *key) {
            return Err(at_line(
                line,
                format!(
                    "expected one @primaryKey in type {type_name}, found `{name}` after `{}`",
                    first.name
                ),
            ));
        }
        let (type_name, required) = type_text(&ty)
            .ok_or_else(|| lines.error(ty.syntax(), "expected a type name".into()))?;
        let attribute = AttributeDecl {
            name,
            type_name,
            indexed: directives.iter().any(|d| d.name == "indexed"),
            required,
        };
        out.push((attribute, line, key));
    }
    Ok(out)
}

/// A type's text without the outer `!`, and whether the `!` is there. Recursion is
/// bounded by the parser's [`MAX_DEPTH`].
fn type_text(ty: &cst::Type) -> Option<(String, bool)> {
    match ty {
        cst::Type::NamedType(named) => Some((named.name()?.text().to_string(), false)),
        cst::Type::ListType(list) => Some((list_text(list)?, false)),
        cst::Type::NonNullType(non_null) => {
            let text = match (non_null.named_type(), non_null.list_type()) {
                (Some(named), _) => named.name()?.text().to_string(),
                (None, Some(list)) => list_text(&list)?,
                (None, None) => return None,
            };
            Some((text, true))
        }
    }
}

/// `[Inner]` or `[Inner!]`.
fn list_text(list: &cst::ListType) -> Option<String> {
    let (inner, required) = type_text(&list.ty()?)?;
    Some(format!("[{inner}{}]", if required { "!" } else { "" }))
}

/// One `@name(args)` directive application.
struct Directive {
    /// Directive name without `@`.
    name: String,
    /// Arguments in source order.
    args: Vec<Argument>,
    /// Line of the `@`.
    line: usize,
}

/// One `name: value` argument of a directive.
struct Argument {
    /// Argument name.
    name: String,
    /// Argument value.
    value: cst::Value,
    /// Line of the argument name.
    line: usize,
}

/// The directives applied to a type or field, each argument named once.
fn directives(
    lines: &Lines,
    directives: Option<cst::Directives>,
) -> Result<Vec<Directive>, SchemaError> {
    let mut out = Vec::new();
    for directive in directives.iter().flat_map(|d| d.directives()) {
        let name = directive
            .name()
            .ok_or_else(|| lines.error(directive.syntax(), "expected a directive name".into()))?
            .text()
            .to_string();
        let mut args: Vec<Argument> = Vec::new();
        for arg in directive.arguments().iter().flat_map(|a| a.arguments()) {
            let (Some(arg_name), Some(value)) = (arg.name(), arg.value()) else {
                return Err(lines.error(
                    arg.syntax(),
                    format!("expected `name: value` arguments in @{name}(...)"),
                ));
            };
            let arg_name = arg_name.text().to_string();
            let line = lines.line(arg.syntax());
            if args.iter().any(|a| a.name == arg_name) {
                return Err(at_line(
                    line,
                    format!("expected each @{name} argument once, found `{arg_name}` again"),
                ));
            }
            args.push(Argument {
                name: arg_name,
                value,
                line,
            });
        }
        out.push(Directive {
            name,
            args,
            line: lines.line(directive.syntax()),
        });
    }
    Ok(out)
}

/// Finds the directive `name` on a type, rejecting repeats.
fn single_directive<'a>(
    directives: &'a [Directive],
    name: &str,
    type_name: &str,
) -> Result<Option<&'a Directive>, SchemaError> {
    let mut found = directives.iter().filter(|d| d.name == name);
    let first = found.next();
    if let Some(second) = found.next() {
        return Err(at_line(
            second.line,
            format!("expected at most one @{name} on type {type_name}, found another"),
        ));
    }
    Ok(first)
}

/// Extracts a non-empty string argument of `@directive`.
fn string_arg(directive: &str, arg: &Argument) -> Result<String, SchemaError> {
    if let cst::Value::StringValue(s) = &arg.value {
        let s = String::from(s);
        if !s.trim().is_empty() {
            return Ok(s);
        }
    }
    Err(wrong_value(directive, arg, "a non-empty string"))
}

/// Checks that an argument of `@directive` is an integer (its value is not used).
fn int_arg(directive: &str, arg: &Argument) -> Result<(), SchemaError> {
    match &arg.value {
        cst::Value::IntValue(_) => Ok(()),
        _ => Err(wrong_value(directive, arg, "an integer")),
    }
}

/// Checks that an argument of `@directive` is a boolean (its value is not used).
fn bool_arg(directive: &str, arg: &Argument) -> Result<(), SchemaError> {
    match &arg.value {
        cst::Value::BooleanValue(_) => Ok(()),
        _ => Err(wrong_value(directive, arg, "a boolean")),
    }
}

fn wrong_value(directive: &str, arg: &Argument, expected: &str) -> SchemaError {
    at_line(
        arg.line,
        format!(
            "expected {expected} for @{directive} argument `{}`, found {}",
            arg.name,
            describe(&arg.value)
        ),
    )
}

/// A value as the `found ...` part of a message says it.
fn describe(value: &cst::Value) -> String {
    let text = || first_token(value.syntax()).unwrap_or_default();
    match value {
        cst::Value::Variable(_) => format!("variable {}", value.syntax().text()),
        cst::Value::IntValue(_) => format!("integer {}", text()),
        cst::Value::FloatValue(_) => format!("float {}", text()),
        cst::Value::StringValue(s) => format!("string {}", short_quote(&String::from(s))),
        cst::Value::BooleanValue(_) => format!("boolean {}", text()),
        cst::Value::NullValue(_) => "null".to_owned(),
        cst::Value::EnumValue(_) => format!("name `{}`", text()),
        cst::Value::ListValue(_) => "a list".to_owned(),
        cst::Value::ObjectValue(_) => "an object".to_owned(),
    }
}

/// Quotes a string for an error message, truncating long ones.
fn short_quote(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() > MAX {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}...")
    } else {
        format!("{s:?}")
    }
}

/// The first token of a node that is not white space, a comment or a comma.
fn first_token(node: &SyntaxNode) -> Option<String> {
    significant(node).map(|t| t.text().to_owned())
}

fn significant(node: &SyntaxNode) -> Option<apollo_parser::SyntaxToken> {
    node.descendants_with_tokens()
        .filter_map(|element| element.into_token())
        .find(|t| {
            !matches!(
                t.kind(),
                SyntaxKind::WHITESPACE | SyntaxKind::COMMENT | SyntaxKind::COMMA
            )
        })
}

fn at_line(line: usize, message: String) -> SchemaError {
    SchemaError {
        line,
        column: None,
        message,
    }
}

/// Where each line of the document starts, to turn byte offsets into lines and columns.
struct Lines<'a> {
    text: &'a str,
    /// Byte offset of each line's first character; `\n`, `\r\n` and `\r` end a line.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                starts.push(i + 1);
            }
        }
        Lines { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    /// The line a node's first significant token is on.
    fn line(&self, node: &SyntaxNode) -> usize {
        let offset =
            significant(node).map_or(node.text_range().start(), |t| t.text_range().start());
        self.position(u32::from(offset) as usize).0
    }

    fn error(&self, node: &SyntaxNode, message: String) -> SchemaError {
        at_line(self.line(node), message)
    }
}

#[cfg(test)]
mod tests;
