//! Parser for the subset of GraphQL SDL that Harper applications use to declare tables.
//!
//! The whole SDL grammar is accepted (object, input, interface, enum, scalar, union,
//! schema and directive definitions, `extend`, descriptions, comments, commas), but
//! only `type X @table { ... }` definitions produce output. Of the directives, only
//! `@table`, `@export`, `@primaryKey` and `@indexed` carry meaning; every other
//! directive is parsed and ignored.

use std::collections::HashMap;

/// Database used when `@table` has no `database` argument.
const DEFAULT_DATABASE: &str = "data";

/// Maximum nesting depth of list types and values, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// Message fragment used when a top-level definition was expected.
const DEFINITION: &str =
    "a definition (type, input, interface, enum, scalar, union, schema, directive or extend)";

/// One table declared in a schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableDecl {
    /// GraphQL type name that declares the table.
    pub(crate) type_name: String,
    /// Database holding the table (`@table(database:)`, default `data`).
    pub(crate) database: String,
    /// Table name (`@table(table:)`, default the type name).
    pub(crate) table: String,
    /// REST export name (`@export(name:)`, default the type name); `None` when not exported.
    pub(crate) export: Option<String>,
    /// Name of the primary-key attribute (`@primaryKey`, default the field named `id`).
    pub(crate) primary_key: String,
    /// Declared fields in source order, including the primary key.
    pub(crate) attributes: Vec<AttributeDecl>,
}

/// One field of a table type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttributeDecl {
    /// Field name.
    pub(crate) name: String,
    /// Declared type without the outer `!`, e.g. `String`, `[String]` or `[String!]`.
    pub(crate) type_name: String,
    /// Whether the field carries `@indexed`.
    pub(crate) indexed: bool,
    /// Whether the field type is non-null (outer `!`).
    pub(crate) required: bool,
}

/// Parses a schema document; errors name the line and what was expected.
pub(crate) fn parse_schema(text: &str) -> Result<Vec<TableDecl>, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        toks: tokens,
        pos: 0,
    };
    let tables = parser.document()?;
    check_unique(&tables)?;
    Ok(tables.into_iter().map(|(_, table)| table).collect())
}

/// Rejects two tables with the same database and name, or two tables with the same export name.
fn check_unique(tables: &[(usize, TableDecl)]) -> Result<(), String> {
    let mut names: HashMap<(&str, &str), &str> = HashMap::new();
    let mut exports: HashMap<&str, &str> = HashMap::new();
    for (line, t) in tables {
        if let Some(first) = names.insert((&t.database, &t.table), &t.type_name) {
            return Err(format!(
                "line {line}: expected a unique table name, found table {}.{} declared by both {first} and {}",
                t.database, t.table, t.type_name
            ));
        }
        if let Some(export) = &t.export
            && let Some(first) = exports.insert(export, &t.type_name)
        {
            return Err(format!(
                "line {line}: expected a unique @export name, found `{export}` exported by both {first} and {}",
                t.type_name
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

/// Kinds of lexical token.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Identifier or keyword.
    Name(String),
    /// Single punctuator character.
    Punct(char),
    /// String value (regular or block), already unescaped.
    Str(String),
    /// Integer literal text.
    Int(String),
    /// Float literal text.
    Float(String),
    /// End of input.
    Eof,
}

impl Tok {
    /// Describes the token for the `found ...` part of an error message.
    fn describe(&self) -> String {
        match self {
            Tok::Name(n) => format!("`{n}`"),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Str(s) => format!("string {}", short_quote(s)),
            Tok::Int(n) => format!("integer {n}"),
            Tok::Float(n) => format!("float {n}"),
            Tok::Eof => "end of input".to_owned(),
        }
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

/// A token with the line on which it starts.
#[derive(Debug, Clone)]
struct Token {
    /// What the token is.
    tok: Tok,
    /// 1-based line number of the token's first character.
    line: usize,
}

/// Lexer state over the source characters.
struct Lexer {
    /// Source text as characters.
    chars: Vec<char>,
    /// Index of the next unread character.
    pos: usize,
    /// Current 1-based line number.
    line: usize,
}

/// Splits a schema document into tokens, dropping whitespace, commas and comments.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut lx = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    loop {
        lx.skip_ignored();
        let line = lx.line;
        let Some(c) = lx.peek(0) else {
            out.push(Token {
                tok: Tok::Eof,
                line,
            });
            return Ok(out);
        };
        let tok = match c {
            '!' | '$' | '&' | '(' | ')' | ':' | '=' | '@' | '[' | ']' | '{' | '|' | '}' => {
                lx.pos += 1;
                Tok::Punct(c)
            }
            '"' => lx.string()?,
            '-' | '0'..='9' => lx.number()?,
            c if is_name_start(c) => lx.name(),
            '.' if lx.peek(1) == Some('.') && lx.peek(2) == Some('.') => {
                return Err(format!(
                    "line {line}: expected a schema definition token, found `...` (fragments are not allowed in a schema)"
                ));
            }
            other => {
                return Err(format!(
                    "line {line}: expected a token, found character {other:?}"
                ));
            }
        };
        out.push(Token { tok, line });
    }
}

/// Whether `c` may start a GraphQL name.
fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

/// Whether `c` may continue a GraphQL name.
fn is_name_continue(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

impl Lexer {
    /// Character `ahead` positions after the cursor, if any.
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Consumes one line terminator (`\n`, `\r\n` or `\r`) if present; returns whether it did.
    fn eat_newline(&mut self) -> bool {
        match self.peek(0) {
            Some('\n') => {
                self.pos += 1;
            }
            Some('\r') => {
                self.pos += 1;
                if self.peek(0) == Some('\n') {
                    self.pos += 1;
                }
            }
            _ => return false,
        }
        self.line += 1;
        true
    }

    /// Skips whitespace, line terminators, commas, byte-order marks and `#` comments.
    fn skip_ignored(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' | ',' | '\u{feff}' => self.pos += 1,
                '\n' | '\r' => {
                    self.eat_newline();
                }
                '#' => {
                    while let Some(c) = self.peek(0) {
                        if c == '\n' || c == '\r' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Lexes a name starting at the cursor.
    fn name(&mut self) -> Tok {
        let start = self.pos;
        while self.peek(0).is_some_and(is_name_continue) {
            self.pos += 1;
        }
        Tok::Name(self.chars[start..self.pos].iter().collect())
    }

    /// Lexes an integer or float literal starting at the cursor.
    fn number(&mut self) -> Result<Tok, String> {
        let line = self.line;
        let start = self.pos;
        if self.peek(0) == Some('-') {
            self.pos += 1;
        }
        if !self.digits() {
            return Err(format!(
                "line {line}: expected a digit after `-`, found {}",
                self.found_char()
            ));
        }
        let mut float = false;
        if self.peek(0) == Some('.') {
            self.pos += 1;
            float = true;
            if !self.digits() {
                return Err(format!(
                    "line {line}: expected a digit after `.` in number, found {}",
                    self.found_char()
                ));
            }
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            self.pos += 1;
            float = true;
            if matches!(self.peek(0), Some('+' | '-')) {
                self.pos += 1;
            }
            if !self.digits() {
                return Err(format!(
                    "line {line}: expected a digit in number exponent, found {}",
                    self.found_char()
                ));
            }
        }
        if self.peek(0).is_some_and(|c| c == '.' || is_name_start(c)) {
            return Err(format!(
                "line {line}: expected a separator after number, found {}",
                self.found_char()
            ));
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        Ok(if float {
            Tok::Float(text)
        } else {
            Tok::Int(text)
        })
    }

    /// Consumes a run of ASCII digits; returns whether there was at least one.
    fn digits(&mut self) -> bool {
        let start = self.pos;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Describes the character at the cursor for an error message.
    fn found_char(&self) -> String {
        match self.peek(0) {
            Some('\n' | '\r') => "end of line".to_owned(),
            Some(c) => format!("character {c:?}"),
            None => "end of input".to_owned(),
        }
    }

    /// Lexes a regular (`"..."`) or block (`"""..."""`) string starting at the cursor.
    fn string(&mut self) -> Result<Tok, String> {
        if self.peek(1) == Some('"') && self.peek(2) == Some('"') {
            return self.block_string();
        }
        let line = self.line;
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek(0) {
                None | Some('\n' | '\r') => {
                    return Err(format!(
                        "line {line}: expected closing `\"` of string, found {}",
                        self.found_char()
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(Tok::Str(value));
                }
                Some('\\') => {
                    self.pos += 1;
                    value.push(self.escape()?);
                }
                Some(c) => {
                    self.pos += 1;
                    value.push(c);
                }
            }
        }
    }

    /// Decodes the escape sequence after a backslash inside a regular string.
    fn escape(&mut self) -> Result<char, String> {
        let line = self.line;
        let c = self.peek(0);
        self.pos += 1;
        Ok(match c {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let first = self.unicode_code()?;
                if (0xD800..0xDC00).contains(&first)
                    && self.peek(0) == Some('\\')
                    && self.peek(1) == Some('u')
                {
                    let save = self.pos;
                    self.pos += 2;
                    let second = self.unicode_code()?;
                    if (0xDC00..0xE000).contains(&second) {
                        let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        return char::from_u32(combined).ok_or_else(|| {
                            format!(
                                "line {line}: expected a valid unicode escape, found surrogate pair"
                            )
                        });
                    }
                    self.pos = save;
                }
                char::from_u32(first).ok_or_else(|| {
                    format!(
                        "line {line}: expected a valid unicode scalar value, found \\u{first:04X}"
                    )
                })?
            }
            _ => {
                self.pos -= 1;
                return Err(format!(
                    "line {line}: expected an escape sequence (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u), found \\{}",
                    self.peek(0)
                        .map_or_else(|| "end of input".to_owned(), String::from)
                ));
            }
        })
    }

    /// Reads the code after `\u`: four hex digits or `{hex...}`.
    fn unicode_code(&mut self) -> Result<u32, String> {
        let line = self.line;
        let braced = self.peek(0) == Some('{');
        if braced {
            self.pos += 1;
        }
        let start = self.pos;
        while self.peek(0).is_some_and(|c| c.is_ascii_hexdigit())
            && (braced || self.pos - start < 4)
        {
            self.pos += 1;
        }
        let hex: String = self.chars[start..self.pos].iter().collect();
        let closed = !braced || self.peek(0) == Some('}');
        if hex.is_empty() || (!braced && hex.len() != 4) || !closed || hex.len() > 8 {
            return Err(format!(
                "line {line}: expected hex digits in \\u escape, found {}",
                self.found_char()
            ));
        }
        if braced {
            self.pos += 1;
        }
        u32::from_str_radix(&hex, 16).map_err(|_| {
            format!("line {line}: expected a valid unicode escape, found \\u{{{hex}}}")
        })
    }

    /// Lexes a block string (`"""..."""`), applying GraphQL's indentation rules.
    fn block_string(&mut self) -> Result<Tok, String> {
        let line = self.line;
        self.pos += 3;
        let mut raw = String::new();
        loop {
            match self.peek(0) {
                None => {
                    return Err(format!(
                        "line {line}: expected closing `\"\"\"` of block string, found end of input"
                    ));
                }
                Some('"') if self.peek(1) == Some('"') && self.peek(2) == Some('"') => {
                    self.pos += 3;
                    return Ok(Tok::Str(block_string_value(&raw)));
                }
                Some('\\')
                    if self.peek(1) == Some('"')
                        && self.peek(2) == Some('"')
                        && self.peek(3) == Some('"') =>
                {
                    self.pos += 4;
                    raw.push_str("\"\"\"");
                }
                Some('\n' | '\r') => {
                    self.eat_newline();
                    raw.push('\n');
                }
                Some(c) => {
                    self.pos += 1;
                    raw.push(c);
                }
            }
        }
    }
}

/// Removes common indentation and leading/trailing blank lines from a block string.
fn block_string_value(raw: &str) -> String {
    let lines: Vec<&str> = raw.split('\n').collect();
    let indent = lines
        .iter()
        .skip(1)
        .filter_map(|l| {
            let n = l.chars().take_while(|c| *c == ' ' || *c == '\t').count();
            (n < l.chars().count()).then_some(n)
        })
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                (*l).to_owned()
            } else {
                l.chars().skip(indent).collect()
            }
        })
        .collect();
    let blank = |l: &String| l.chars().all(|c| c == ' ' || c == '\t');
    while out.first().is_some_and(blank) {
        out.remove(0);
    }
    while out.last().is_some_and(blank) {
        out.pop();
    }
    out.join("\n")
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// A directive argument or input-object value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// `$name` (not meaningful in a schema, but syntactically allowed).
    Variable(String),
    /// Integer literal text.
    Int(String),
    /// Float literal text.
    Float(String),
    /// String literal.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// Bare name such as `ownerId` in `@relationship(from: ownerId)`.
    Enum(String),
    /// `[v, ...]`.
    List(Vec<Value>),
    /// `{k: v, ...}`.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Describes the value for the `found ...` part of an error message.
    fn describe(&self) -> String {
        match self {
            Value::Variable(n) => format!("variable ${n}"),
            Value::Int(n) => format!("integer {n}"),
            Value::Float(n) => format!("float {n}"),
            Value::Str(s) => format!("string {}", short_quote(s)),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Null => "null".to_owned(),
            Value::Enum(n) => format!("name `{n}`"),
            Value::List(_) => "a list".to_owned(),
            Value::Object(_) => "an object".to_owned(),
        }
    }
}

/// One `name: value` argument of a directive.
#[derive(Debug, Clone)]
struct Argument {
    /// Argument name.
    name: String,
    /// Argument value.
    value: Value,
    /// Line of the argument name.
    line: usize,
}

/// One `@name(args)` directive application.
#[derive(Debug, Clone)]
struct Directive {
    /// Directive name without `@`.
    name: String,
    /// Arguments in source order.
    args: Vec<Argument>,
    /// Line of the `@`.
    line: usize,
}

/// One field of an object, input or interface type.
#[derive(Debug, Clone)]
struct Field {
    /// Field name.
    name: String,
    /// Type text without the outer `!`.
    type_name: String,
    /// Whether the outer type is non-null.
    required: bool,
    /// Directives applied to the field.
    directives: Vec<Directive>,
    /// Line of the field name.
    line: usize,
}

/// Recursive-descent parser over the token list (which always ends with `Eof`).
struct Parser {
    /// Tokens, terminated by `Tok::Eof`.
    toks: Vec<Token>,
    /// Index of the current token.
    pos: usize,
}

impl Parser {
    /// Current token.
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    /// Consumes and returns the current token (never moves past `Eof`).
    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    /// Builds the standard error for the current token.
    fn err<T>(&self, expected: &str) -> Result<T, String> {
        let t = self.peek();
        Err(format!(
            "line {}: expected {expected}, found {}",
            t.line,
            t.tok.describe()
        ))
    }

    /// Whether the current token is punctuator `c`.
    fn is_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }

    /// Whether the current token is the name `n`.
    fn is_name(&self, n: &str) -> bool {
        matches!(&self.peek().tok, Tok::Name(x) if x == n)
    }

    /// Consumes punctuator `c` if present; returns whether it did.
    fn eat_punct(&mut self, c: char) -> bool {
        let hit = self.is_punct(c);
        if hit {
            self.bump();
        }
        hit
    }

    /// Consumes punctuator `c` or fails with `expected <what>`.
    fn expect_punct(&mut self, c: char, what: &str) -> Result<(), String> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// Consumes a name or fails with `expected <what>`; returns the name and its line.
    fn expect_name(&mut self, what: &str) -> Result<(String, usize), String> {
        if let Tok::Name(n) = &self.peek().tok {
            let n = n.clone();
            let line = self.bump().line;
            Ok((n, line))
        } else {
            self.err(what)
        }
    }

    /// Consumes an optional description string; returns whether there was one.
    fn description(&mut self) -> bool {
        let hit = matches!(self.peek().tok, Tok::Str(_));
        if hit {
            self.bump();
        }
        hit
    }

    /// Parses the whole document; returns table declarations with the line of their type name.
    fn document(&mut self) -> Result<Vec<(usize, TableDecl)>, String> {
        let mut tables = Vec::new();
        loop {
            let described = self.description();
            if self.peek().tok == Tok::Eof {
                if described {
                    return self.err(&format!("{DEFINITION} after description"));
                }
                return Ok(tables);
            }
            if let Some(table) = self.definition(false)? {
                tables.push(table);
            }
        }
    }

    /// Parses one top-level definition; `extension` is true after `extend`.
    fn definition(&mut self, extension: bool) -> Result<Option<(usize, TableDecl)>, String> {
        let Tok::Name(keyword) = &self.peek().tok else {
            return self.err(DEFINITION);
        };
        let keyword = keyword.clone();
        match keyword.as_str() {
            "type" => {
                self.bump();
                let table = self.object_like("type", extension)?;
                // Extensions add to a type declared elsewhere; they never declare a table.
                return Ok(if extension { None } else { table });
            }
            "input" | "interface" => {
                self.bump();
                self.object_like(&keyword, extension)?;
            }
            "enum" => {
                self.bump();
                self.enum_def()?;
            }
            "scalar" => {
                self.bump();
                self.expect_name("a scalar name")?;
                self.directives()?;
            }
            "union" => {
                self.bump();
                self.union_def()?;
            }
            "schema" => {
                self.bump();
                self.schema_def()?;
            }
            "directive" if !extension => {
                self.bump();
                self.directive_def()?;
            }
            "extend" if !extension => {
                self.bump();
                self.definition(true)?;
            }
            _ if extension => {
                return self
                    .err("type, input, interface, enum, scalar, union or schema after `extend`");
            }
            _ => return self.err(DEFINITION),
        }
        Ok(None)
    }

    /// Parses the rest of an object, input or interface definition after its keyword.
    ///
    /// Returns a table declaration for `type` definitions carrying `@table`.
    fn object_like(
        &mut self,
        keyword: &str,
        extension: bool,
    ) -> Result<Option<(usize, TableDecl)>, String> {
        let (name, line) = self.expect_name(&format!("a name after `{keyword}`"))?;
        if self.is_name("implements") {
            self.bump();
            self.eat_punct('&');
            self.expect_name("an interface name after `implements`")?;
            while self.eat_punct('&') {
                self.expect_name("an interface name after `&`")?;
            }
        }
        let directives = self.directives()?;
        let fields = if self.is_punct('{') {
            self.fields_block(keyword, &name, line)?
        } else {
            Vec::new()
        };
        if keyword != "type" || extension {
            return Ok(None);
        }
        Ok(build_table(&name, line, &directives, &fields)?.map(|t| (line, t)))
    }

    /// Parses `{ field... }` of an object, input or interface definition.
    fn fields_block(
        &mut self,
        keyword: &str,
        owner: &str,
        open_line: usize,
    ) -> Result<Vec<Field>, String> {
        self.expect_punct('{', "`{`")?;
        let closing =
            format!("a field name or `}}` closing {keyword} {owner} (opened on line {open_line})");
        let mut fields = Vec::new();
        loop {
            if self.eat_punct('}') {
                if fields.is_empty() {
                    let line = self.toks[self.pos.saturating_sub(1)].line;
                    return Err(format!(
                        "line {line}: expected at least one field in {keyword} {owner}, found `}}`"
                    ));
                }
                return Ok(fields);
            }
            let described = self.description();
            let (name, line) = if described {
                self.expect_name(&format!(
                    "a field name after description in {keyword} {owner}"
                ))?
            } else {
                self.expect_name(&closing)?
            };
            if self.is_punct('(') {
                self.arguments_definition(&name)?;
            }
            self.expect_punct(':', &format!("`:` after field `{name}`"))?;
            let (type_name, required) = self.type_ref(0)?;
            if self.eat_punct('=') {
                self.value(0)?;
            }
            let directives = self.directives()?;
            fields.push(Field {
                name,
                type_name,
                required,
                directives,
                line,
            });
        }
    }

    /// Parses `(name: Type = default @dir, ...)` on a field or directive definition.
    fn arguments_definition(&mut self, owner: &str) -> Result<(), String> {
        let open_line = self.peek().line;
        self.expect_punct('(', "`(`")?;
        if self.is_punct(')') {
            return self.err(&format!("an argument name in `{owner}(...)`"));
        }
        while !self.eat_punct(')') {
            self.description();
            let (arg, _) = self.expect_name(&format!(
                "an argument name or `)` closing `{owner}(` (opened on line {open_line})"
            ))?;
            self.expect_punct(':', &format!("`:` after argument `{arg}`"))?;
            self.type_ref(0)?;
            if self.eat_punct('=') {
                self.value(0)?;
            }
            self.directives()?;
        }
        Ok(())
    }

    /// Parses a type reference; returns its text without the outer `!` and whether `!` was present.
    fn type_ref(&mut self, depth: usize) -> Result<(String, bool), String> {
        if depth > MAX_DEPTH {
            return self.err(&format!("list types nested at most {MAX_DEPTH} deep"));
        }
        let text = if self.eat_punct('[') {
            let (inner, inner_required) = self.type_ref(depth + 1)?;
            self.expect_punct(']', "`]` closing list type")?;
            format!("[{inner}{}]", if inner_required { "!" } else { "" })
        } else {
            self.expect_name("a type name")?.0
        };
        Ok((text, self.eat_punct('!')))
    }

    /// Parses zero or more directive applications.
    fn directives(&mut self) -> Result<Vec<Directive>, String> {
        let mut out = Vec::new();
        while self.is_punct('@') {
            let line = self.bump().line;
            let (name, _) = self.expect_name("a directive name after `@`")?;
            let args = if self.is_punct('(') {
                self.arguments(&name)?
            } else {
                Vec::new()
            };
            out.push(Directive { name, args, line });
        }
        Ok(out)
    }

    /// Parses `(name: value, ...)` after a directive name.
    fn arguments(&mut self, directive: &str) -> Result<Vec<Argument>, String> {
        let open_line = self.peek().line;
        self.expect_punct('(', "`(`")?;
        if self.is_punct(')') {
            return self.err(&format!("an argument name in @{directive}(...)"));
        }
        let mut args: Vec<Argument> = Vec::new();
        while !self.eat_punct(')') {
            let (name, line) = self.expect_name(&format!(
                "an argument name or `)` closing @{directive}( (opened on line {open_line})"
            ))?;
            self.expect_punct(':', &format!("`:` after @{directive} argument `{name}`"))?;
            let value = self.value(0)?;
            if args.iter().any(|a| a.name == name) {
                return Err(format!(
                    "line {line}: expected each @{directive} argument once, found `{name}` again"
                ));
            }
            args.push(Argument { name, value, line });
        }
        Ok(args)
    }

    /// Parses a constant (or variable) value.
    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return self.err(&format!("values nested at most {MAX_DEPTH} deep"));
        }
        let tok = self.peek().tok.clone();
        let open_line = self.peek().line;
        let value = match tok {
            Tok::Int(n) => Value::Int(n),
            Tok::Float(n) => Value::Float(n),
            Tok::Str(s) => Value::Str(s),
            Tok::Name(n) => match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::Enum(n),
            },
            Tok::Punct('$') => {
                self.bump();
                return Ok(Value::Variable(
                    self.expect_name("a variable name after `$`")?.0,
                ));
            }
            Tok::Punct('[') => {
                self.bump();
                let mut items = Vec::new();
                while !self.eat_punct(']') {
                    if self.peek().tok == Tok::Eof {
                        return self.err(&format!(
                            "a value or `]` closing list (opened on line {open_line})"
                        ));
                    }
                    items.push(self.value(depth + 1)?);
                }
                return Ok(Value::List(items));
            }
            Tok::Punct('{') => {
                self.bump();
                let mut fields = Vec::new();
                while !self.eat_punct('}') {
                    let (key, _) = self.expect_name(&format!(
                        "a field name or `}}` closing object value (opened on line {open_line})"
                    ))?;
                    self.expect_punct(':', &format!("`:` after object field `{key}`"))?;
                    fields.push((key, self.value(depth + 1)?));
                }
                return Ok(Value::Object(fields));
            }
            _ => return self.err("a value"),
        };
        self.bump();
        Ok(value)
    }

    /// Parses the rest of an enum definition after `enum`.
    fn enum_def(&mut self) -> Result<(), String> {
        let (name, open_line) = self.expect_name("an enum name")?;
        self.directives()?;
        if !self.eat_punct('{') {
            return Ok(());
        }
        let closing =
            format!("an enum value or `}}` closing enum {name} (opened on line {open_line})");
        while !self.eat_punct('}') {
            self.description();
            self.expect_name(&closing)?;
            self.directives()?;
        }
        Ok(())
    }

    /// Parses the rest of a union definition after `union`.
    fn union_def(&mut self) -> Result<(), String> {
        self.expect_name("a union name")?;
        self.directives()?;
        if self.eat_punct('=') {
            self.eat_punct('|');
            self.expect_name("a member type name")?;
            while self.eat_punct('|') {
                self.expect_name("a member type name after `|`")?;
            }
        }
        Ok(())
    }

    /// Parses the rest of a schema definition after `schema`.
    fn schema_def(&mut self) -> Result<(), String> {
        self.directives()?;
        let open_line = self.peek().line;
        if !self.eat_punct('{') {
            return Ok(());
        }
        let closing =
            format!("an operation type or `}}` closing schema (opened on line {open_line})");
        while !self.eat_punct('}') {
            let (op, _) = self.expect_name(&closing)?;
            self.expect_punct(':', &format!("`:` after `{op}`"))?;
            self.expect_name("a type name")?;
        }
        Ok(())
    }

    /// Parses the rest of a directive definition after `directive`.
    fn directive_def(&mut self) -> Result<(), String> {
        self.expect_punct('@', "`@` before directive name")?;
        let (name, _) = self.expect_name("a directive name after `@`")?;
        if self.is_punct('(') {
            self.arguments_definition(&format!("@{name}"))?;
        }
        if self.is_name("repeatable") {
            self.bump();
        }
        if !self.is_name("on") {
            return self.err(&format!("`on` and directive locations after @{name}"));
        }
        self.bump();
        self.eat_punct('|');
        self.expect_name("a directive location")?;
        while self.eat_punct('|') {
            self.expect_name("a directive location after `|`")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Table semantics
// ---------------------------------------------------------------------------

/// Turns a parsed `type` definition into a table declaration when it carries `@table`.
fn build_table(
    type_name: &str,
    line: usize,
    directives: &[Directive],
    fields: &[Field],
) -> Result<Option<TableDecl>, String> {
    let Some(table_dir) = single_directive(directives, "table", type_name)? else {
        return Ok(None);
    };
    let mut database = DEFAULT_DATABASE.to_owned();
    let mut table = type_name.to_owned();
    for arg in &table_dir.args {
        match arg.name.as_str() {
            "database" => database = string_arg("table", arg)?,
            "table" => table = string_arg("table", arg)?,
            "expiration" | "eviction" | "scanInterval" => int_arg("table", arg)?,
            "audit" | "replicate" => bool_arg("table", arg)?,
            other => {
                return Err(format!(
                    "line {}: expected @table argument database, table, expiration, eviction, scanInterval, audit or replicate, found `{other}`",
                    arg.line
                ));
            }
        }
    }
    let export = match single_directive(directives, "export", type_name)? {
        None => None,
        Some(dir) => {
            let mut name = type_name.to_owned();
            for arg in &dir.args {
                if arg.name != "name" {
                    return Err(format!(
                        "line {}: expected @export argument name, found `{}`",
                        arg.line, arg.name
                    ));
                }
                name = string_arg("export", arg)?;
            }
            Some(name)
        }
    };

    let mut attributes: Vec<AttributeDecl> = Vec::with_capacity(fields.len());
    let mut marked_pk: Option<&str> = None;
    for field in fields {
        if attributes.iter().any(|a| a.name == field.name) {
            return Err(format!(
                "line {}: expected unique field names in type {type_name}, found `{}` again",
                field.line, field.name
            ));
        }
        if field.directives.iter().any(|d| d.name == "primaryKey") {
            if let Some(first) = marked_pk {
                return Err(format!(
                    "line {}: expected one @primaryKey in type {type_name}, found `{}` after `{first}`",
                    field.line, field.name
                ));
            }
            marked_pk = Some(&field.name);
        }
        attributes.push(AttributeDecl {
            name: field.name.clone(),
            type_name: field.type_name.clone(),
            indexed: field.directives.iter().any(|d| d.name == "indexed"),
            required: field.required,
        });
    }
    let primary_key = match marked_pk {
        Some(pk) => pk.to_owned(),
        None if attributes.iter().any(|a| a.name == "id") => "id".to_owned(),
        None => {
            return Err(format!(
                "line {line}: type {type_name} has no primary key (expected a field marked @primaryKey or named `id`)"
            ));
        }
    };
    Ok(Some(TableDecl {
        type_name: type_name.to_owned(),
        database,
        table,
        export,
        primary_key,
        attributes,
    }))
}

/// Finds the directive `name` on a type, rejecting repeats.
fn single_directive<'a>(
    directives: &'a [Directive],
    name: &str,
    type_name: &str,
) -> Result<Option<&'a Directive>, String> {
    let mut found = directives.iter().filter(|d| d.name == name);
    let first = found.next();
    if let Some(second) = found.next() {
        return Err(format!(
            "line {}: expected at most one @{name} on type {type_name}, found another",
            second.line
        ));
    }
    Ok(first)
}

/// Extracts a non-empty string argument of `@directive`.
fn string_arg(directive: &str, arg: &Argument) -> Result<String, String> {
    match &arg.value {
        Value::Str(s) if !s.trim().is_empty() => Ok(s.clone()),
        other => Err(format!(
            "line {}: expected a non-empty string for @{directive} argument `{}`, found {}",
            arg.line,
            arg.name,
            other.describe()
        )),
    }
}

/// Checks that an argument of `@directive` is an integer (its value is not used).
fn int_arg(directive: &str, arg: &Argument) -> Result<(), String> {
    match &arg.value {
        Value::Int(_) => Ok(()),
        other => Err(format!(
            "line {}: expected an integer for @{directive} argument `{}`, found {}",
            arg.line,
            arg.name,
            other.describe()
        )),
    }
}

/// Checks that an argument of `@directive` is a boolean (its value is not used).
fn bool_arg(directive: &str, arg: &Argument) -> Result<(), String> {
    match &arg.value {
        Value::Bool(_) => Ok(()),
        other => Err(format!(
            "line {}: expected a boolean for @{directive} argument `{}`, found {}",
            arg.line,
            arg.name,
            other.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
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
            Err(e) => e,
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
            type Post @table @sealed @export(name: "posts") @custom(a: [1, 2.5e3, {x: null, y: $v}], b: ENUM) {
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
        assert!(
            e.starts_with("line 5: expected `:` after field `bad`"),
            "{e}"
        );
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
        assert!(e.starts_with("line 1: expected an escape sequence"), "{e}");
        let e = err(r#"type A @table(table: "\u12") { id: ID }"#);
        assert!(
            e.starts_with("line 1: expected hex digits in \\u escape"),
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
        let e =
            err("type A @table(table: \"x\") { id: ID }\ntype B @table(table: \"x\") { id: ID }");
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
        let e = err("type Dog @table {\n  id: ID\n  name: String\n");
        assert_eq!(
            e,
            "line 4: expected a field name or `}` closing type Dog (opened on line 1), found end of input"
        );
        let e = err("enum E { A B");
        assert!(
            e.contains("closing enum E (opened on line 1), found end of input"),
            "{e}"
        );
        let e = err("schema { query: Query");
        assert!(e.contains("found end of input"), "{e}");
        let e = err("type A @table { id: [ID }");
        assert_eq!(e, "line 1: expected `]` closing list type, found `}`");
        let e = err("type A @x(v: [1, 2) { id: ID }");
        assert!(e.starts_with("line 1: expected a value"), "{e}");
        let e = err("type A @x(v: {a: 1) { id: ID }");
        assert!(e.contains("closing object value"), "{e}");
        let e = err("type A @table { }");
        assert_eq!(
            e,
            "line 1: expected at least one field in type A, found `}`"
        );
    }

    #[test]
    fn unterminated_strings() {
        let e = err("type A @table(table: \"abc) { id: ID }");
        assert_eq!(
            e,
            "line 1: expected closing `\"` of string, found end of input"
        );
        let e = err("\ntype A @table(table: \"abc\n\") { id: ID }");
        assert_eq!(
            e,
            "line 2: expected closing `\"` of string, found end of line"
        );
        let e = err("\"\"\"never closed\n\ntype A @table { id: ID }");
        assert_eq!(
            e,
            "line 1: expected closing `\"\"\"` of block string, found end of input"
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
                "line 1: expected `:` after @table argument `database`, found `)`",
            ),
            (
                "type A @table() { id: ID }",
                "line 1: expected an argument name in @table(...), found `)`",
            ),
            (
                "type A @table(database: ) { id: ID }",
                "line 1: expected a value, found `)`",
            ),
            (
                "type A @table(table: \"a\", table: \"b\") { id: ID }",
                "line 1: expected each @table argument once, found `table` again",
            ),
            (
                "type A @ { id: ID }",
                "line 1: expected a directive name after `@`, found `{`",
            ),
            (
                "type A @table(database: \"x\"\n{ id: ID }",
                "line 2: expected an argument name or `)` closing @table( (opened on line 1), found `{`",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), want, "for {text:?}");
        }
    }

    #[test]
    fn lexical_and_structural_errors() {
        assert_eq!(
            err("type A @table { id: ID % }"),
            "line 1: expected a token, found character '%'"
        );
        assert_eq!(
            err("type A @x(n: 12abc) { id: ID }"),
            "line 1: expected a separator after number, found character 'a'"
        );
        assert_eq!(
            err("type A @x(n: -) { id: ID }"),
            "line 1: expected a digit after `-`, found character ')'"
        );
        assert!(err("query { dogs }").starts_with("line 1: expected a definition"));
        assert!(err("{ id }").starts_with("line 1: expected a definition"));
        assert_eq!(
            err("type { id: ID }"),
            "line 1: expected a name after `type`, found `{`"
        );
        assert_eq!(
            err("type A @table {\n id ID\n}"),
            "line 2: expected `:` after field `id`, found `ID`"
        );
        assert_eq!(
            err("type A @table { id: }"),
            "line 1: expected a type name, found `}`"
        );
        assert!(err("\"dangling description\"").contains("after description, found end of input"));
        assert!(err("extend directive @x on FIELD").starts_with("line 1: expected type, input"));
        assert!(err("directive @x FIELD").starts_with("line 1: expected `on`"));
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
}
