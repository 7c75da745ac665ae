//! CEL expressions (audience `where`, campaign `trigger.where`): compiled
//! once, within bounds, and evaluated where a deep stack cannot take the
//! process down.
//!
//! Anyone who can publish writes these, and a node evaluates an audience
//! once per session, so what an expression may cost is decided when it is
//! compiled, never discovered while it runs:
//! - its AST is at most [`MAX_DEPTH`] levels deep and [`MAX_NODES`] nodes
//!   (parsing happens on a stack of its own: the parser needs about half a
//!   KiB per level, and a 4 KiB expression can be 2,000 levels deep);
//! - its estimated cost, the nodes one evaluation visits with every
//!   comprehension multiplied by the size of what it iterates, is at most
//!   [`MAX_COST`]. A list or map written in the expression counts its
//!   entries; anything else (`segments`, a list in `props`) counts
//!   [`ASSUMED_RANGE`], which tokens and event frames may not exceed
//!   ([`crate::auth`], [`crate::protocol`]);
//! - `matches` takes a string literal, compiled once with a size limit.
//!
//! Evaluating checks the stack left and grows it when the expression could
//! need more ([`stacker`]), so no expression is evaluated on a stack too
//! small for it.

use crate::error::FieldError;
use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators};
use cel::extractors::This;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest expression, in bytes.
pub const MAX_SOURCE: usize = 4096;
/// Deepest AST accepted.
pub const MAX_DEPTH: usize = 32;
/// Most AST nodes accepted.
pub const MAX_NODES: usize = 1000;
/// Most evaluation steps one evaluation may be estimated to take (about
/// 75 ns each on the benchmark machine, see docs/BENCHMARKS.md).
pub const MAX_COST: u64 = 2000;
/// Entries assumed in a list or map the expression does not write out.
pub const ASSUMED_RANGE: u64 = 64;
/// Largest compiled `matches` pattern (the regex crate's size limit).
const MAX_REGEX_BYTES: usize = 64 * 1024;
/// Cost of one `matches` call: linear in its input, which is bounded.
const MATCH_COST: u64 = 20;

/// Stack each AST level may take while evaluating (about 1.5 KiB measured
/// in debug builds), with room to spare.
const EVAL_STACK_PER_LEVEL: usize = 8 * 1024;
const EVAL_STACK_BASE: usize = 64 * 1024;
/// A stack segment for an evaluation that would not fit where it runs.
const EVAL_STACK_SEGMENT: usize = 1024 * 1024;
/// Parsing needs up to about 1.6 MiB for the worst 4 KiB expression
/// (measured): compiling always has at least this much.
const COMPILE_RED_ZONE: usize = 4 * 1024 * 1024;
const COMPILE_STACK: usize = 8 * 1024 * 1024;

/// A compiled CEL expression with its source, for messages and logs.
pub struct Filter {
    source: String,
    program: cel::Program,
    /// The variables the expression names: only those are bound per
    /// evaluation (building `user` and `segments` costs allocations).
    uses: Vec<String>,
    /// The literal `matches` patterns, compiled once here.
    regexes: Option<Arc<HashMap<String, regex::Regex>>>,
    /// The stack an evaluation may need, from the expression's depth.
    stack: usize,
    cost: u64,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({:?})", self.source)
    }
}

thread_local! {
    /// The standard library environment plus Herald's `matches`, built once
    /// per thread: building it per evaluation would dominate the cost of a
    /// `where` fan-out.
    static CEL_ROOT: cel::Context<'static, 'static> = {
        let mut root = cel::Context::default();
        // The standard `matches` (cel's `regex` feature, off) compiles its
        // pattern at every call.
        let _ = root.add_function("matches", matches);
        root
    };
    /// The patterns of the filter being evaluated on this thread.
    static REGEXES: RefCell<Option<Arc<HashMap<String, regex::Regex>>>> = const { RefCell::new(None) };
}

fn matches(
    This(text): This<Arc<String>>,
    pattern: Arc<String>,
) -> Result<bool, cel::ExecutionError> {
    REGEXES.with(|r| {
        r.borrow()
            .as_ref()
            .and_then(|m| m.get(pattern.as_str()))
            .map(|re| re.is_match(&text))
            .ok_or_else(|| cel::ExecutionError::function_error("matches", "pattern not compiled"))
    })
}

/// Sets this thread's patterns for one evaluation, and clears them after.
struct RegexScope;

impl RegexScope {
    fn enter(regexes: &Option<Arc<HashMap<String, regex::Regex>>>) -> Option<Self> {
        let regexes = regexes.as_ref()?;
        REGEXES.with(|r| *r.borrow_mut() = Some(regexes.clone()));
        Some(Self)
    }
}

impl Drop for RegexScope {
    fn drop(&mut self) {
        REGEXES.with(|r| *r.borrow_mut() = None);
    }
}

/// The largest `n` up to 4096 for which `shape(n)` compiles over
/// `variables`, and that expression: how benches and tests find the
/// costliest expression of a shape the cost bound accepts (so they follow
/// the cost model instead of hard-coding its limits).
pub fn largest_accepted(variables: &[&str], shape: impl Fn(usize) -> String) -> String {
    let accepted = |n: usize| Filter::compile("to.where", &shape(n), variables).is_ok();
    let (mut lo, mut hi) = (1usize, 4096usize);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if accepted(mid) {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    shape(lo)
}

impl Filter {
    /// Compiles a CEL expression over the given variables, within the
    /// bounds above; anything else it names, and anything over a bound, is
    /// refused here with the reason, never at evaluation time.
    pub fn compile(field: &str, source: &str, variables: &[&str]) -> Result<Self, FieldError> {
        if source.trim().is_empty() || source.len() > MAX_SOURCE {
            return Err(FieldError::new(
                field,
                format!("must be 1 to {MAX_SOURCE} bytes of CEL"),
            ));
        }
        stacker::maybe_grow(COMPILE_RED_ZONE, COMPILE_STACK, || {
            Self::compile_here(source, variables).map_err(|reason| FieldError::new(field, reason))
        })
    }

    fn compile_here(source: &str, variables: &[&str]) -> Result<Self, String> {
        let program = cel::Program::compile(source)
            .map_err(|e| format!("invalid CEL: {}", first_line(&e.to_string())))?;
        let shape = Shape::of(program.expression())?;
        let mut walk = Walk::default();
        let cost = walk.cost(program.expression());
        if let Some(reason) = walk.refused {
            return Err(reason);
        }
        if cost > MAX_COST {
            return Err(format!(
                "too expensive: about {cost} evaluation steps, over the limit of {MAX_COST} \
                 (each comprehension multiplies its body by the size of its list, \
                 {ASSUMED_RANGE} for lists not written in the expression)"
            ));
        }
        for name in &walk.free {
            if !variables.contains(&name.as_str()) {
                return Err(format!(
                    "unknown variable {name:?}; use {}",
                    variables.join(", ")
                ));
            }
        }
        let regexes = if walk.patterns.is_empty() {
            None
        } else {
            let mut compiled = HashMap::new();
            for p in walk.patterns {
                let re = regex::RegexBuilder::new(&p)
                    .size_limit(MAX_REGEX_BYTES)
                    .dfa_size_limit(MAX_REGEX_BYTES)
                    .build()
                    .map_err(|e| format!("matches: {}", first_line(&e.to_string())))?;
                compiled.insert(p, re);
            }
            Some(Arc::new(compiled))
        };
        Ok(Self {
            source: source.to_owned(),
            program,
            uses: walk.free.into_iter().collect(),
            regexes,
            stack: EVAL_STACK_BASE + shape.depth * EVAL_STACK_PER_LEVEL,
            cost,
        })
    }

    /// Does the expression name this variable?
    pub fn uses(&self, name: &str) -> bool {
        self.uses.iter().any(|u| u == name)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The estimated evaluation steps (at most [`MAX_COST`]).
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// True only when the expression evaluates to `true`; errors (a missing
    /// attribute, a type mismatch) count as no match.
    pub fn eval(&self, bind: impl FnOnce(&mut cel::Context<'_, 'static>)) -> bool {
        stacker::maybe_grow(self.stack, EVAL_STACK_SEGMENT, || {
            CEL_ROOT.with(|root| {
                let _patterns = RegexScope::enter(&self.regexes);
                let mut ctx = root.new_inner_scope();
                bind(&mut ctx);
                matches!(self.program.execute(&ctx), Ok(cel::Value::Bool(true)))
            })
        })
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The direct subexpressions of a node.
fn children(e: &cel::IdedExpr) -> Vec<&cel::IdedExpr> {
    match &e.expr {
        Expr::Call(c) => c.target.as_deref().into_iter().chain(&c.args).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => entries(&m.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Select(s) => vec![&s.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn entries(list: &[cel::common::ast::IdedEntryExpr]) -> Vec<&cel::IdedExpr> {
    list.iter()
        .flat_map(|e| match &e.expr {
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })
        .collect()
}

/// Depth and size, measured without recursion: this runs before the depth
/// is known to be small.
struct Shape {
    depth: usize,
}

impl Shape {
    fn of(root: &cel::IdedExpr) -> Result<Self, String> {
        let mut stack = vec![(root, 1usize)];
        let (mut depth, mut nodes) = (0, 0);
        while let Some((e, d)) = stack.pop() {
            nodes += 1;
            depth = depth.max(d);
            if d > MAX_DEPTH {
                return Err(format!(
                    "too deeply nested: more than {MAX_DEPTH} levels (group long chains of + or . into smaller expressions)"
                ));
            }
            if nodes > MAX_NODES {
                return Err(format!("too large: more than {MAX_NODES} terms"));
            }
            stack.extend(children(e).into_iter().map(|c| (c, d + 1)));
        }
        Ok(Self { depth })
    }
}

/// The cost walk (recursive: the depth is known to be at most
/// [`MAX_DEPTH`]), which also collects the free variables and the
/// `matches` patterns.
#[derive(Default)]
struct Walk {
    /// Names bound by the enclosing comprehensions.
    bound: Vec<String>,
    free: std::collections::BTreeSet<String>,
    patterns: Vec<String>,
    refused: Option<String>,
}

impl Walk {
    fn cost(&mut self, e: &cel::IdedExpr) -> u64 {
        match &e.expr {
            Expr::Ident(name) => {
                if !self.bound.iter().any(|b| b == name) {
                    self.free.insert(name.clone());
                }
                1
            }
            Expr::Comprehension(c) => {
                let range = self.cost(&c.iter_range);
                let init = self.cost(&c.accu_init);
                let n = size_bound(&c.iter_range);
                let vars = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)];
                let before = self.bound.len();
                self.bound.extend(vars.into_iter().flatten().cloned());
                let body = self
                    .cost(&c.loop_cond)
                    .saturating_add(self.cost(&c.loop_step));
                let result = self.cost(&c.result);
                self.bound.truncate(before);
                1u64.saturating_add(range)
                    .saturating_add(init)
                    .saturating_add(n.saturating_mul(body))
                    .saturating_add(result)
            }
            Expr::Call(call) => {
                let mut cost = 1u64;
                if call.func_name == "matches" {
                    cost = MATCH_COST;
                    let pattern = match (call.target.is_some(), call.args.as_slice()) {
                        (true, [p]) | (false, [_, p]) => literal_string(p),
                        _ => None,
                    };
                    match pattern {
                        Some(p) => self.patterns.push(p.to_owned()),
                        None => {
                            self.refused.get_or_insert_with(|| {
                                "matches: the pattern must be a string literal".into()
                            });
                        }
                    }
                }
                if call.func_name == operators::IN
                    && let [_, list] = call.args.as_slice()
                {
                    cost = cost.saturating_add(size_bound(list));
                }
                children(e)
                    .into_iter()
                    .fold(cost, |sum, c| sum.saturating_add(self.cost(c)))
            }
            _ => children(e)
                .into_iter()
                .fold(1u64, |sum, c| sum.saturating_add(self.cost(c))),
        }
    }
}

fn literal_string(e: &cel::IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// At most how many entries a list or map expression holds: what it
/// writes out, or [`ASSUMED_RANGE`] for what comes from a variable.
fn size_bound(e: &cel::IdedExpr) -> u64 {
    match &e.expr {
        Expr::List(l) => l.elements.len() as u64,
        Expr::Map(m) => m.entries.len() as u64,
        // map() and filter() give at most what they iterate.
        Expr::Comprehension(c) => size_bound(&c.iter_range),
        Expr::Call(c) if c.func_name == operators::ADD => c
            .args
            .iter()
            .fold(0u64, |sum, a| sum.saturating_add(size_bound(a))),
        Expr::Call(c) if c.func_name == operators::CONDITIONAL => c
            .args
            .iter()
            .skip(1)
            .map(size_bound)
            .max()
            .unwrap_or(ASSUMED_RANGE),
        _ => ASSUMED_RANGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(src: &str) -> String {
        match Filter::compile("to.where", src, &["user", "segments", "attrs"]) {
            Ok(f) => panic!("accepted {src:?} (cost {})", f.cost()),
            Err(e) => e.reason,
        }
    }

    fn accept(src: &str) -> Filter {
        Filter::compile("to.where", src, &["user", "segments", "attrs"])
            .unwrap_or_else(|e| panic!("refused {src:?}: {e}"))
    }

    fn list(n: usize) -> String {
        let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("[{}]", items.join(","))
    }

    #[test]
    fn deep_chains_are_refused_before_evaluation() {
        // About 2.8 KB, well under the length limit: the poison.
        let chain = format!("{} > 0", vec!["1"; 1400].join("+"));
        assert!(refuse(&chain).contains("too deeply nested"));
        let select = format!("attrs{} == 1", ".b".repeat(2000));
        assert!(refuse(&select).contains("too deeply nested"));
        let index = format!("attrs{} == 1", "[0]".repeat(1000));
        assert!(refuse(&index).contains("too deeply nested"));
        // Positive control: a chain within the bound compiles and runs.
        let short = accept(&format!("{} > 0", vec!["1"; 20].join("+")));
        assert!(short.eval(|_| {}));
    }

    #[test]
    fn expensive_comprehensions_are_refused() {
        let l = list(40);
        let nested = format!("{l}.all(a, {l}.all(b, {l}.all(c, a+b+c >= 0)))");
        assert!(nested.len() < 400);
        assert!(refuse(&nested).contains("too expensive"));
        // Over variables: a single pass is fine, a pass inside a pass is not.
        accept("segments.exists(s, s.startsWith('beta'))");
        assert!(refuse("segments.exists(a, segments.exists(b, a == b))").contains("too expensive"));
        // Big literal lists, and what map() builds from them.
        assert!(
            refuse(&format!("{}.map(x, x + 1).size() > 0", list(600))).contains("too expensive")
        );
        assert!(
            refuse(&format!(
                "({l} + {l} + {l} + {l} + {l} + {l}).map(x, [x, x, x]).size() > 0"
            ))
            .contains("too expensive")
        );
        // `in` on a list written out counts its entries.
        accept(&format!("attrs.level in {}", list(100)));
        assert!(
            refuse(&format!("{}.exists(x, x in {})", list(30), list(30))).contains("too expensive")
        );
    }

    #[test]
    fn regexes_must_be_literals_and_are_compiled_once() {
        let f = accept("attrs.email.matches('^[a-z]+@example\\\\.com$')");
        assert_eq!(f.regexes.as_ref().map(|r| r.len()), Some(1));
        let attrs = |email: &str| {
            let mut m = HashMap::new();
            m.insert(
                cel::objects::Key::String(Arc::new("email".into())),
                cel::Value::String(Arc::new(email.into())),
            );
            cel::Value::Map(cel::objects::Map { map: Arc::new(m) })
        };
        assert!(f.eval(|ctx| ctx.add_variable_from_value("attrs", attrs("ada@example.com"))));
        assert!(!f.eval(|ctx| ctx.add_variable_from_value("attrs", attrs("ada@evil.com"))));
        // The global form too.
        assert!(accept("matches(user, '^u[0-9]+$')").eval(|ctx| {
            ctx.add_variable_from_value("user", cel::Value::String(Arc::new("u1".into())))
        }));
        assert!(refuse("user.matches(attrs.pattern)").contains("string literal"));
        // A pattern whose compiled program is huge is refused, not compiled at every call.
        assert!(refuse("user.matches('(a{100}){100}')").starts_with("matches:"));
        // Outside an evaluation no pattern is left on the thread.
        assert!(REGEXES.with(|r| r.borrow().is_none()));
    }

    #[test]
    fn free_variables_are_found_in_the_ast() {
        accept("segments.exists(s, s == 'beta') && attrs.all(k, k != 'x')");
        assert!(refuse("segments.exists(s, s == other)").contains("unknown variable \"other\""));
        // A comprehension's variable is bound only inside it.
        assert!(refuse("segments.exists(s, true) && s == 'x'").contains("unknown variable \"s\""));
    }

    #[test]
    fn evaluation_grows_a_small_stack() {
        // The deepest accepted expression, evaluated on a thread with a
        // stack far smaller than it could need.
        let src = format!("{} > 0", vec!["attrs.level"; MAX_DEPTH - 2].join("+"));
        let f = Arc::new(accept(&src));
        let g = f.clone();
        let ok = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                g.eval(|ctx| {
                    let mut m = HashMap::new();
                    m.insert(
                        cel::objects::Key::String(Arc::new("level".into())),
                        cel::Value::Int(1),
                    );
                    ctx.add_variable_from_value(
                        "attrs",
                        cel::Value::Map(cel::objects::Map { map: Arc::new(m) }),
                    );
                })
            })
            .expect("thread")
            .join()
            .expect("no overflow");
        assert!(ok);
    }
}
