//! Runs a parsed template with Go `text/template` semantics: variables scoped to their
//! block, `with`/`range` moving dot, Go's truth, and values printed as Go's `fmt` prints
//! them. Maps are Prometheus' `map[string]string` (a missing key reads as "", as with
//! Prometheus' `missingkey=zero`); records are its structs (a missing field is an error).

use super::funcs;
use super::parse::{Branch, Node, Operand, Pipeline};
pub use super::value::Value;

/// What stops a walk early.
enum Stop {
    Break,
    Continue,
    Error(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Error(e)
    }
}

/// Most iterations of all `range` loops in one expansion (a guard against huge data).
const MAX_RANGE_ITERATIONS: usize = 100_000;

pub(super) struct Exec<'a> {
    /// Variables declared while running, innermost last.
    vars: Vec<(String, Value)>,
    /// Variables every template starts with (`$`, `$labels`, ...), shared by the templates
    /// of one alert.
    base: &'a [(String, Value)],
    env: &'a funcs::Env<'a>,
    iterations: usize,
}

impl<'a> Exec<'a> {
    /// Runs the template on `data` with `vars` declared (Prometheus' `$labels`, ...).
    pub fn run(
        nodes: &[Node],
        data: &Value,
        base: &'a [(String, Value)],
        env: &'a funcs::Env<'a>,
    ) -> Result<String, String> {
        let mut exec = Exec {
            vars: Vec::new(),
            base,
            env,
            iterations: 0,
        };
        let mut out = String::new();
        match exec.walk(nodes, data, &mut out) {
            Ok(()) => Ok(out),
            Err(Stop::Error(e)) => Err(e),
            Err(_) => Err("break or continue outside range".to_string()),
        }
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), Stop> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipeline(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        match v {
                            Value::Nil => out.push_str("<no value>"),
                            v => out.push_str(&v.print()),
                        }
                    }
                }
                Node::If(b) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(&b.pipe, dot)?;
                    let body = if v.truth() { &b.body } else { &b.otherwise };
                    let r = self.walk(body, dot, out);
                    self.vars.truncate(mark);
                    r?;
                }
                Node::With(b) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(&b.pipe, dot)?;
                    let r = if v.truth() {
                        self.walk(&b.body, &v, out)
                    } else {
                        self.walk(&b.otherwise, dot, out)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range(b) => self.range(b, dot, out)?,
                Node::Break => return Err(Stop::Break),
                Node::Continue => return Err(Stop::Continue),
            }
        }
        Ok(())
    }

    fn range(&mut self, b: &Branch, dot: &Value, out: &mut String) -> Result<(), Stop> {
        let mark = self.vars.len();
        let vars = b.pipe.vars.clone();
        let bare = Pipeline {
            vars: Vec::new(),
            assign: false,
            cmds: b.pipe.cmds.clone(),
        };
        let v = self.pipeline(&bare, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::Int(i as i64), x.clone()))
                .collect(),
            Value::Map(m) => m
                .iter()
                .map(|(k, x)| (Value::Str(k.clone()), Value::Str(x.clone())))
                .collect(),
            Value::Record(r) => r
                .iter()
                .map(|(k, x)| (Value::Str(k.clone()), x.clone()))
                .collect(),
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            Value::Nil => Vec::new(),
            other => return Err(format!("range can't iterate over {}", other.print()).into()),
        };
        if items.is_empty() {
            let r = self.walk(&b.otherwise, dot, out);
            self.vars.truncate(mark);
            return r;
        }
        for (key, item) in items {
            self.iterations += 1;
            if self.iterations > MAX_RANGE_ITERATIONS {
                return Err(format!("range: more than {MAX_RANGE_ITERATIONS} iterations").into());
            }
            self.vars.truncate(mark);
            match vars.as_slice() {
                [] => {}
                [v] => self.set(v, item.clone(), b.pipe.assign)?,
                [k, v, ..] => {
                    self.set(k, key, b.pipe.assign)?;
                    self.set(v, item.clone(), b.pipe.assign)?;
                }
            }
            match self.walk(&b.body, &item, out) {
                Ok(()) | Err(Stop::Continue) => {}
                Err(Stop::Break) => break,
                Err(e) => {
                    self.vars.truncate(mark);
                    return Err(e);
                }
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn set(&mut self, name: &str, v: Value, assign: bool) -> Result<(), String> {
        if assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
                return Ok(());
            }
            // A starting variable is shadowed, not changed (the next template sees it anew).
            if !self.base.iter().any(|(n, _)| n == name) {
                return Err(format!("undefined variable: {name}"));
            }
        }
        self.vars.push((name.to_string(), v));
        Ok(())
    }

    fn var(&self, name: &str) -> Result<Value, String> {
        self.vars
            .iter()
            .rev()
            .chain(self.base.iter().rev())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: {name}"))
    }

    fn pipeline(&mut self, pipe: &Pipeline, dot: &Value) -> Result<Value, String> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(cmd, dot, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for name in &pipe.vars {
            self.set(name, value.clone(), pipe.assign)?;
        }
        Ok(value)
    }

    fn command(
        &mut self,
        cmd: &[Operand],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, String> {
        if let Operand::Func(name) = &cmd[0] {
            let mut args = Vec::with_capacity(cmd.len());
            for op in &cmd[1..] {
                args.push(self.operand(op, dot)?);
            }
            args.extend(piped);
            return funcs::call(name, &args, self.env)
                .map_err(|e| format!("error calling {name}: {e}"));
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(format!("can't give argument to non-function {:?}", cmd[0]));
        }
        self.operand(&cmd[0], dot)
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, String> {
        let (base, fields) = match op {
            Operand::Dot => return Ok(dot.clone()),
            Operand::Literal(v) => return Ok(v.clone()),
            Operand::Func(name) => {
                return funcs::call(name, &[], self.env)
                    .map_err(|e| format!("error calling {name}: {e}"))
            }
            Operand::Field(fields) => (dot.clone(), fields),
            Operand::Var(name, fields) => (self.var(name)?, fields),
            Operand::Group(pipe, fields) => (self.pipeline(pipe, dot)?, fields),
        };
        fields.iter().try_fold(base, |v, f| v.field(f))
    }
}
