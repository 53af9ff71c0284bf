//! Go `text/template` syntax, parsed into a tree: text, actions with pipelines and
//! variables, comments, whitespace trimming (`{{-`, `-}}`), `if`/`else if`/`else`, `with`,
//! `range` (with `$i, $v :=`), `break`, `continue`. Named templates (`define`,
//! `template`, `block`) are refused by name: Prometheus alert templates cannot share them.

use super::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    Action(Pipeline),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
}

/// `if`, `with` and `range`: the pipeline, its body, and the `else` part.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Branch {
    pub pipe: Pipeline,
    pub body: Vec<Node>,
    pub otherwise: Vec<Node>,
}

/// `$x := cmd | cmd`, or a pipeline without variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Pipeline {
    pub vars: Vec<String>,
    /// `=` (assign an existing variable) rather than `:=`.
    pub assign: bool,
    pub cmds: Vec<Vec<Operand>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Operand {
    /// `.`
    Dot,
    /// `.a.b` on dot.
    Field(Vec<String>),
    /// `$x.a.b` (`$` alone is the data).
    Var(String, Vec<String>),
    Literal(Value),
    /// A function name.
    Func(String),
    /// `(pipeline).a.b`
    Group(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Lit(Value),
    Pipe,
    Open,
    Close(Vec<String>),
    Declare,
    Assign,
    Comma,
}

/// Parses a whole template.
pub(super) fn parse(src: &str) -> Result<Vec<Node>, String> {
    let items = split(src)?;
    let mut parser = Parser { items, at: 0 };
    let (nodes, end) = parser.list()?;
    match end {
        None => Ok(nodes),
        Some(word) => Err(format!("unexpected {{{{{word}}}}}")),
    }
}

/// Text and actions, with trim markers applied.
enum Item {
    Text(String),
    Action(Vec<Tok>),
}

fn split(src: &str) -> Result<Vec<Item>, String> {
    let mut items: Vec<Item> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let body = if trim_before { &after[2..] } else { after };
        let (toks, used, trim_after) = lex_action(body)?;
        if let Some(toks) = toks {
            items.push(Item::Action(toks));
        }
        trim_next = trim_after;
        rest = &body[used..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
    Ok(items)
}

/// Lexes one action up to its `}}`: the tokens (`None` for a comment), the bytes used
/// (closing delimiter included), and whether it ends with `-}}`.
fn lex_action(s: &str) -> Result<(Option<Vec<Tok>>, usize, bool), String> {
    let trimmed = s.trim_start();
    if let Some(comment) = trimmed.strip_prefix("/*") {
        let end = comment.find("*/").ok_or("unclosed comment")?;
        let after = &comment[end + 2..];
        let skipped = s.len() - after.len();
        let rest = after.trim_start();
        let (used, trim) = if let Some(r) = rest.strip_prefix("-}}") {
            (s.len() - r.len(), true)
        } else if let Some(r) = rest.strip_prefix("}}") {
            (s.len() - r.len(), false)
        } else {
            return Err(format!("comment ends in {:?}, not }}}}", &s[skipped..]));
        };
        return Ok((None, used, trim));
    }
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Err("unclosed action".to_string());
        }
        let rest = &s[i..];
        if rest.starts_with("}}") {
            return Ok((Some(toks), i + 2, false));
        }
        if rest.starts_with("-}}") && i > 0 && b[i - 1].is_ascii_whitespace() {
            return Ok((Some(toks), i + 3, true));
        }
        let c = b[i];
        match c {
            b'|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            b'(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            b')' => {
                i += 1;
                let (fields, used) = field_chain(&s[i..]);
                toks.push(Tok::Close(fields));
                i += used;
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            b':' if rest.starts_with(":=") => {
                toks.push(Tok::Declare);
                i += 2;
            }
            b'=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            b'"' | b'`' => {
                let (text, used) = string_literal(rest)?;
                toks.push(Tok::Lit(Value::Str(text)));
                i += used;
            }
            b'\'' => {
                let end = rest[1..].find('\'').ok_or("unclosed character constant")? + 2;
                let (text, _) = string_literal(&format!("\"{}\"", &rest[1..end - 1]))?;
                let ch = text.chars().next().ok_or("empty character constant")?;
                toks.push(Tok::Lit(Value::Int(ch as i64)));
                i += end;
            }
            b'$' => {
                let name_len = rest[1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len() - 1);
                let name = rest[..1 + name_len].to_string();
                i += 1 + name_len;
                let (fields, used) = field_chain(&s[i..]);
                i += used;
                toks.push(Tok::Var(name, fields));
            }
            b'.' if !rest[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                let (fields, used) = field_chain(rest);
                i += used.max(1);
                toks.push(if fields.is_empty() {
                    Tok::Dot
                } else {
                    Tok::Field(fields)
                });
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "+-._".contains(c)))
                    .unwrap_or(rest.len());
                let word = &rest[..len];
                toks.push(Tok::Lit(number(word)?));
                i += len;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let word = &rest[..len];
                toks.push(match word {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "nil" => Tok::Lit(Value::Nil),
                    _ => Tok::Ident(word.to_string()),
                });
                i += len;
            }
            _ => return Err(format!("unexpected {:?} in action", c as char)),
        }
    }
}

/// `.a.b.c` at the start of `s`: the names and the bytes used.
fn field_chain(s: &str) -> (Vec<String>, usize) {
    let mut fields = Vec::new();
    let mut used = 0;
    while s[used..].starts_with('.') {
        let name_len = s[used + 1..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len() - used - 1);
        if name_len == 0 {
            break;
        }
        fields.push(s[used + 1..used + 1 + name_len].to_string());
        used += 1 + name_len;
    }
    (fields, used)
}

fn number(word: &str) -> Result<Value, String> {
    let bad = || format!("bad number syntax: {word:?}");
    let clean = word.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = |p: &str, r: u32| -> Option<i64> {
        digits
            .strip_prefix(p)
            .or_else(|| digits.strip_prefix(&p.to_uppercase()))
            .and_then(|d| i64::from_str_radix(d, r).ok())
    };
    let int = radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
        .or_else(|| digits.parse::<i64>().ok());
    if let Some(n) = int {
        return Ok(Value::Int(if neg { -n } else { n }));
    }
    let f: f64 = digits.parse().map_err(|_| bad())?;
    Ok(Value::Float(if neg { -f } else { f }))
}

/// A Go string literal (interpreted or raw) at the start of `s`: its value and length.
fn string_literal(s: &str) -> Result<(String, usize), String> {
    if let Some(raw) = s.strip_prefix('`') {
        let end = raw.find('`').ok_or("unclosed raw string")?;
        return Ok((raw[..end].to_string(), end + 2));
    }
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 2)),
            '\n' => break,
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated quoted string")?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String =
                            (0..n).filter_map(|_| chars.next().map(|p| p.1)).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("invalid escape \\{e}{hex}"))?;
                        out.push(code);
                    }
                    other => return Err(format!("unknown escape sequence \\{other}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".to_string())
}

struct Parser {
    items: Vec<Item>,
    at: usize,
}

impl Parser {
    /// Nodes up to `{{end}}`, `{{else ...}}` or the end: the nodes and the keyword
    /// action that ended them (with its tokens after the keyword).
    fn list(&mut self) -> Result<(Vec<Node>, Option<String>), String> {
        let mut nodes = Vec::new();
        while self.at < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.at], Item::Text(String::new()));
            self.at += 1;
            let toks = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(toks) => toks,
            };
            let keyword = match toks.first() {
                Some(Tok::Ident(w)) => w.as_str(),
                _ => "",
            };
            match keyword {
                "end" => return Ok((nodes, Some("end".into()))),
                "else" => {
                    // Keep the rest (`else if x`) for the caller.
                    self.at -= 1;
                    self.items[self.at] = Item::Action(toks[1..].to_vec());
                    return Ok((nodes, Some("else".into())));
                }
                "if" | "with" | "range" => {
                    let kw = keyword.to_string();
                    let branch = self.branch(&kw, &toks[1..])?;
                    nodes.push(match kw.as_str() {
                        "if" => Node::If(branch),
                        "with" => Node::With(branch),
                        _ => Node::Range(branch),
                    });
                }
                "break" => nodes.push(Node::Break),
                "continue" => nodes.push(Node::Continue),
                "define" | "template" | "block" => {
                    return Err(format!(
                        "{{{{{keyword}}}}} is not supported: alert templates cannot share named templates"
                    ))
                }
                _ => nodes.push(Node::Action(pipeline(&toks)?)),
            }
        }
        Ok((nodes, None))
    }

    fn branch(&mut self, kw: &str, toks: &[Tok]) -> Result<Branch, String> {
        let pipe = pipeline(toks)?;
        if pipe.cmds.is_empty() {
            return Err(format!("missing value for {kw}"));
        }
        let (body, end) = self.list()?;
        let otherwise = match end.as_deref() {
            Some("end") => Vec::new(),
            Some(_) => {
                // `{{else}}` or `{{else if ...}}` / `{{else with ...}}`: the action left
                // in place holds what follows `else`.
                let Item::Action(rest) =
                    std::mem::replace(&mut self.items[self.at], Item::Text(String::new()))
                else {
                    unreachable!("list() leaves the else action in place")
                };
                self.at += 1;
                match rest.first() {
                    None => {
                        let (nodes, end) = self.list()?;
                        if end.as_deref() != Some("end") {
                            return Err(format!("{kw} without {{{{end}}}}"));
                        }
                        nodes
                    }
                    Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                        let nested = self.branch(k, &rest[1..])?;
                        vec![if k == "if" {
                            Node::If(nested)
                        } else {
                            Node::With(nested)
                        }]
                    }
                    Some(other) => return Err(format!("unexpected {other:?} after else")),
                }
            }
            None => return Err(format!("{kw} without {{{{end}}}}")),
        };
        Ok(Branch {
            pipe,
            body,
            otherwise,
        })
    }
}

/// `[$a[, $b] :=|=] command | command ...`
fn pipeline(toks: &[Tok]) -> Result<Pipeline, String> {
    let mut pipe = Pipeline::default();
    let mut rest = toks;
    // Declarations: `$x :=`, `$i, $v :=`.
    let decl_end = rest
        .iter()
        .position(|t| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(end) = decl_end {
        let names: Vec<&Tok> = rest[..end].iter().filter(|t| **t != Tok::Comma).collect();
        if !names.is_empty()
            && names
                .iter()
                .all(|t| matches!(t, Tok::Var(_, f) if f.is_empty()))
        {
            pipe.vars = names
                .iter()
                .map(|t| match t {
                    Tok::Var(n, _) => n.clone(),
                    _ => unreachable!(),
                })
                .collect();
            pipe.assign = rest[end] == Tok::Assign;
            rest = &rest[end + 1..];
        }
    }
    let mut i = 0;
    pipe.cmds = commands(rest, &mut i, false)?;
    Ok(pipe)
}

/// Commands separated by `|`, up to the end or (when `nested`) a `)`.
fn commands(toks: &[Tok], i: &mut usize, nested: bool) -> Result<Vec<Vec<Operand>>, String> {
    let mut cmds = vec![Vec::new()];
    while *i < toks.len() {
        let t = &toks[*i];
        *i += 1;
        let op = match t {
            Tok::Pipe => {
                if cmds.last().is_some_and(Vec::is_empty) {
                    return Err("missing command before |".to_string());
                }
                cmds.push(Vec::new());
                continue;
            }
            Tok::Close(fields) if nested => {
                let pipe = Pipeline {
                    cmds: finish(cmds)?,
                    ..Pipeline::default()
                };
                return Ok(vec![vec![Operand::Group(Box::new(pipe), fields.clone())]]);
            }
            Tok::Open => commands(toks, i, true)?.remove(0).remove(0),
            Tok::Dot => Operand::Dot,
            Tok::Field(f) => Operand::Field(f.clone()),
            Tok::Var(n, f) => Operand::Var(n.clone(), f.clone()),
            Tok::Ident(n) => Operand::Func(n.clone()),
            Tok::Lit(v) => Operand::Literal(v.clone()),
            other => return Err(format!("unexpected {other:?} in command")),
        };
        cmds.last_mut().expect("one command").push(op);
    }
    if nested {
        return Err("unclosed left paren".to_string());
    }
    if cmds.len() == 1 && cmds[0].is_empty() {
        return Ok(Vec::new());
    }
    finish(cmds)
}

fn finish(cmds: Vec<Vec<Operand>>) -> Result<Vec<Vec<Operand>>, String> {
    if cmds.iter().any(Vec::is_empty) {
        return Err("missing command in pipeline".to_string());
    }
    Ok(cmds)
}
