//! MongoDB-style metadata filters: parsed and checked once per query, then
//! evaluated against each candidate's metadata during the scan (a
//! pre-filter, so a filtered query still finds `top_k` matches); and the
//! order of a metadata-only query on one field ([`OrderBy`]).
//!
//! Semantics follow MongoDB: dot-paths reach into nested objects (and through
//! arrays of objects); an array field matches when any element matches;
//! numbers compare by value (`20 == 20.0`); `$ne`, `$nin` and `$not` match a
//! document that lacks the field.

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

#[derive(Debug)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    Field { path: Vec<String>, cond: Cond },
}

#[derive(Debug)]
pub enum Cond {
    /// Several operators on one field, all of which must hold.
    All(Vec<Cond>),
    Eq(Value),
    Ne(Value),
    Cmp(CmpOp, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Not(Box<Cond>),
    Contains(Value),
    Regex(Regex),
}

#[derive(Clone, Copy, Debug)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

const MAX_DEPTH: usize = 32;
const MAX_REGEX_SIZE: usize = 1 << 20;

fn err(at: &str, msg: impl std::fmt::Display) -> Error {
    if at.is_empty() {
        Error::InvalidFilter(msg.to_string())
    } else {
        Error::InvalidFilter(format!("at '{at}': {msg}"))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Filter {
    /// Parses filter JSON text. Errors say where (a path into the filter) and why.
    pub fn parse(text: &str) -> Result<Filter> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::InvalidFilter(format!("not valid JSON: {e}")))?;
        Filter::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Filter> {
        match v {
            Value::Object(map) => parse_doc(map, "", 0),
            other => Err(err("", format!("a filter must be a JSON object, got {}", kind(other)))),
        }
    }

    /// Does `metadata` (None = the item has no metadata) satisfy the filter?
    pub fn matches(&self, metadata: Option<&Value>) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(metadata)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(metadata)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(metadata)),
            Filter::Field { path, cond } => {
                let mut found = Vec::new();
                if let Some(doc) = metadata {
                    resolve(doc, path, &mut found);
                }
                cond.eval(&found)
            }
        }
    }
}

fn parse_doc(map: &Map<String, Value>, at: &str, depth: usize) -> Result<Filter> {
    if depth > MAX_DEPTH {
        return Err(err(at, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let mut parts = Vec::with_capacity(map.len());
    for (key, val) in map {
        let here = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let items = val
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| err(&here, format!("{key} needs a non-empty array of filters")))?;
                let mut subs = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let item_at = format!("{here}[{i}]");
                    let obj = item
                        .as_object()
                        .ok_or_else(|| err(&item_at, format!("expected a filter object, got {}", kind(item))))?;
                    subs.push(parse_doc(obj, &item_at, depth + 1)?);
                }
                parts.push(match key.as_str() {
                    "$and" => Filter::And(subs),
                    "$or" => Filter::Or(subs),
                    _ => Filter::Nor(subs),
                });
            }
            k if k.starts_with('$') => {
                return Err(err(
                    &here,
                    format!("unknown top-level operator '{k}' (expected $and, $or, $nor or a field name)"),
                ))
            }
            "" => return Err(err(at, "empty field name")),
            field => {
                if field.split('.').any(|p| p.is_empty()) {
                    return Err(err(&here, "field path has an empty segment"));
                }
                let path = field.split('.').map(str::to_owned).collect();
                parts.push(Filter::Field { path, cond: parse_cond(val, &here, depth + 1)? });
            }
        }
    }
    Ok(if parts.len() == 1 { parts.pop().unwrap() } else { Filter::And(parts) })
}

fn is_operator_object(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.keys().next().is_some_and(|k| k.starts_with('$')))
}

/// A field's condition: a plain value (implicit `$eq`) or an object of operators.
fn parse_cond(val: &Value, at: &str, depth: usize) -> Result<Cond> {
    if depth > MAX_DEPTH {
        return Err(err(at, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let map = match val {
        Value::Object(m) if is_operator_object(val) => m,
        _ => return Ok(Cond::Eq(val.clone())),
    };
    let options = match map.get("$options") {
        None => None,
        Some(Value::String(s)) if s.chars().all(|c| "imsx".contains(c)) => Some(s.as_str()),
        Some(_) => return Err(err(at, "$options must be a string of the flags i, m, s, x")),
    };
    let mut conds = Vec::with_capacity(map.len());
    for (op, arg) in map {
        let here = format!("{at}.{op}");
        let cond = match op.as_str() {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" | "$gte" | "$lt" | "$lte" => {
                if !(arg.is_number() || arg.is_string()) {
                    return Err(err(&here, format!("{op} needs a number or a string, got {}", kind(arg))));
                }
                let cmp = match op.as_str() {
                    "$gt" => CmpOp::Gt,
                    "$gte" => CmpOp::Gte,
                    "$lt" => CmpOp::Lt,
                    _ => CmpOp::Lte,
                };
                Cond::Cmp(cmp, arg.clone())
            }
            "$in" | "$nin" => {
                let list = arg
                    .as_array()
                    .ok_or_else(|| err(&here, format!("{op} needs an array, got {}", kind(arg))))?
                    .clone();
                if op == "$in" {
                    Cond::In(list)
                } else {
                    Cond::Nin(list)
                }
            }
            "$exists" => match arg {
                Value::Bool(b) => Cond::Exists(*b),
                _ => return Err(err(&here, format!("$exists needs true or false, got {}", kind(arg)))),
            },
            "$not" => {
                if !(is_operator_object(arg) || arg.is_string()) {
                    return Err(err(&here, "$not needs an operator object (like {\"$gt\": 5}) or a regex string"));
                }
                let inner = if let Value::String(pattern) = arg {
                    Cond::Regex(compile_regex(pattern, None, &here)?)
                } else {
                    parse_cond(arg, &here, depth + 1)?
                };
                Cond::Not(Box::new(inner))
            }
            "$contains" => {
                if arg.is_object() || arg.is_array() {
                    return Err(err(
                        &here,
                        format!("$contains needs a string, number, boolean or null, got {}", kind(arg)),
                    ));
                }
                Cond::Contains(arg.clone())
            }
            "$regex" => match arg {
                Value::String(pattern) => Cond::Regex(compile_regex(pattern, options, &here)?),
                _ => return Err(err(&here, format!("$regex needs a string, got {}", kind(arg)))),
            },
            "$options" => {
                if !map.contains_key("$regex") {
                    return Err(err(&here, "$options is only allowed beside $regex"));
                }
                continue;
            }
            other if other.starts_with('$') => return Err(err(&here, format!("unknown operator '{other}'"))),
            other => return Err(err(at, format!("cannot mix operators and the plain field '{other}' in one object"))),
        };
        conds.push(cond);
    }
    Ok(if conds.len() == 1 { conds.pop().unwrap() } else { Cond::All(conds) })
}

fn compile_regex(pattern: &str, options: Option<&str>, at: &str) -> Result<Regex> {
    let mut b = regex::RegexBuilder::new(pattern);
    b.size_limit(MAX_REGEX_SIZE);
    for flag in options.unwrap_or("").chars() {
        match flag {
            'i' => b.case_insensitive(true),
            'm' => b.multi_line(true),
            's' => b.dot_matches_new_line(true),
            _ => b.ignore_whitespace(true),
        };
    }
    b.build().map_err(|e| err(at, format!("bad regex: {}", e.to_string().lines().last().unwrap_or("invalid"))))
}

/// Collects every value a dot-path reaches. Arrays met on the way are
/// traversed element by element (MongoDB's implicit array traversal), and a
/// numeric segment indexes into an array.
pub(crate) fn resolve<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Value::Object(m) => {
            if let Some(child) = m.get(first) {
                resolve(child, rest, out);
            }
        }
        Value::Array(items) => {
            if let Ok(i) = first.parse::<usize>() {
                if let Some(child) = items.get(i) {
                    resolve(child, rest, out);
                }
            }
            for item in items.iter().filter(|i| i.is_object()) {
                resolve(item, path, out);
            }
        }
        _ => {}
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// True if `pred` holds for a found value or, when that value is an array,
/// for any of its elements.
fn any_value(found: &[&Value], pred: &dyn Fn(&Value) -> bool) -> bool {
    found.iter().any(|v| pred(v) || matches!(v, Value::Array(items) if items.iter().any(pred)))
}

impl Cond {
    fn eval(&self, found: &[&Value]) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.eval(found)),
            Cond::Eq(x) => eq_matches(found, x),
            Cond::Ne(x) => !eq_matches(found, x),
            Cond::Cmp(op, x) => any_value(found, &|v| {
                compare(v, x).is_some_and(|o| match op {
                    CmpOp::Gt => o.is_gt(),
                    CmpOp::Gte => o.is_ge(),
                    CmpOp::Lt => o.is_lt(),
                    CmpOp::Lte => o.is_le(),
                })
            }),
            Cond::In(list) => list.iter().any(|x| eq_matches(found, x)),
            Cond::Nin(list) => !list.iter().any(|x| eq_matches(found, x)),
            Cond::Exists(want) => found.is_empty() != *want,
            Cond::Not(inner) => !inner.eval(found),
            Cond::Contains(x) => found.iter().any(|v| match (v, x) {
                (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
                (Value::Array(items), _) => items.iter().any(|i| values_equal(i, x)),
                _ => false,
            }),
            Cond::Regex(re) => any_value(found, &|v| v.as_str().is_some_and(|s| re.is_match(s))),
        }
    }
}

/// Longest `order_by` path accepted.
const MAX_ORDER_PATH_BYTES: usize = 1024;

/// The order of a metadata-only query on one field, MongoDB's way: values of
/// different types order by type (missing and null, then numbers, strings,
/// objects and arrays, booleans), values of one type by value (numbers
/// numerically, strings by bytes); an array field sorts by its smallest
/// element ascending and its largest descending.
#[derive(Debug)]
pub struct OrderBy {
    path: Vec<String>,
    ascending: bool,
}

/// Where one item's field falls in an [`OrderBy`].
#[derive(Clone, Debug)]
pub enum SortKey {
    /// Missing, null or an empty array.
    Null,
    Number(f64),
    String(String),
    /// Objects and nested arrays: ordered after strings, equal among themselves.
    Composite,
    Bool(bool),
}

impl SortKey {
    fn of(v: &Value) -> SortKey {
        match v {
            Value::Null => SortKey::Null,
            Value::Number(n) => n.as_f64().map_or(SortKey::Null, SortKey::Number),
            Value::String(s) => SortKey::String(s.clone()),
            Value::Bool(b) => SortKey::Bool(*b),
            Value::Object(_) | Value::Array(_) => SortKey::Composite,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortKey::Null => 0,
            SortKey::Number(_) => 1,
            SortKey::String(_) => 2,
            SortKey::Composite => 3,
            SortKey::Bool(_) => 4,
        }
    }
}

impl Ord for SortKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        match (self, o) {
            (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
            (SortKey::String(a), SortKey::String(b)) => a.cmp(b),
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&o.rank()),
        }
    }
}
impl PartialOrd for SortKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for SortKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for SortKey {}

impl OrderBy {
    /// `field` is a dot-path as in filters ("date", "doc.year").
    pub fn parse(field: &str, ascending: bool) -> Result<OrderBy> {
        if field.is_empty() || field.len() > MAX_ORDER_PATH_BYTES {
            return Err(Error::invalid(format!(
                "order_by must be a field path of 1 to {MAX_ORDER_PATH_BYTES} bytes, got {}",
                field.len()
            )));
        }
        if field.split('.').any(|p| p.is_empty() || p.starts_with('$')) {
            return Err(Error::invalid(format!("order_by '{field}': a path segment is empty or starts with '$'")));
        }
        Ok(OrderBy { path: field.split('.').map(str::to_owned).collect(), ascending })
    }

    /// The key of an item with `metadata` (None: it has none).
    pub fn key(&self, metadata: Option<&Value>) -> SortKey {
        let mut found = Vec::new();
        if let Some(doc) = metadata {
            resolve(doc, &self.path, &mut found);
        }
        let keys = found.iter().flat_map(|v| match v {
            Value::Array(items) => items.iter().map(SortKey::of).collect::<Vec<_>>(),
            v => vec![SortKey::of(v)],
        });
        let best = if self.ascending { keys.min() } else { keys.max() };
        best.unwrap_or(SortKey::Null)
    }

    /// Compares two keys in this order's direction.
    pub fn cmp(&self, a: &SortKey, b: &SortKey) -> std::cmp::Ordering {
        if self.ascending {
            a.cmp(b)
        } else {
            b.cmp(a)
        }
    }
}

fn eq_matches(found: &[&Value], x: &Value) -> bool {
    if x.is_null() && found.is_empty() {
        return true; // MongoDB: {field: null} matches a missing field
    }
    any_value(found, &|v| values_equal(v, x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, doc: Value) -> bool {
        Filter::parse(filter).unwrap().matches(Some(&doc))
    }

    #[test]
    fn equality_and_numbers() {
        assert!(m(r#"{"age": 20}"#, json!({"age": 20.0})));
        assert!(m(r#"{"age": {"$eq": 20.0}}"#, json!({"age": 20})));
        assert!(!m(r#"{"age": 21}"#, json!({"age": 20})));
        assert!(m(r#"{"a.b.c": "x"}"#, json!({"a": {"b": {"c": "x"}}})));
        assert!(m(r#"{"tags": "red"}"#, json!({"tags": ["blue", "red"]})));
        assert!(m(r#"{"tags": ["blue", "red"]}"#, json!({"tags": ["blue", "red"]})));
        assert!(m(r#"{"items.n": 2}"#, json!({"items": [{"n": 1}, {"n": 2}]})));
        assert!(m(r#"{"o": {"k": 1}}"#, json!({"o": {"k": 1.0}})));
        assert!(m(r#"{"arr.1": 5}"#, json!({"arr": [4, 5]})));
    }

    #[test]
    fn comparisons_and_sets() {
        let d = json!({"age": 30, "name": "bob", "tags": [1, 9]});
        assert!(m(r#"{"age": {"$gt": 29, "$lte": 30}}"#, d.clone()));
        assert!(!m(r#"{"age": {"$gt": 30}}"#, d.clone()));
        assert!(m(r#"{"name": {"$gte": "b", "$lt": "c"}}"#, d.clone()));
        assert!(!m(r#"{"name": {"$gt": 1}}"#, d.clone()));
        assert!(m(r#"{"tags": {"$gt": 8}}"#, d.clone()));
        assert!(m(r#"{"age": {"$in": [1, 30]}}"#, d.clone()));
        assert!(!m(r#"{"age": {"$nin": [1, 30]}}"#, d.clone()));
        assert!(m(r#"{"tags": {"$in": [9]}}"#, d.clone()));
    }

    #[test]
    fn missing_fields_follow_mongodb() {
        let d = json!({"a": 1});
        assert!(m(r#"{"b": {"$ne": 5}}"#, d.clone()));
        assert!(m(r#"{"b": {"$nin": [5]}}"#, d.clone()));
        assert!(!m(r#"{"b": {"$gt": 0}}"#, d.clone()));
        assert!(m(r#"{"b": {"$exists": false}}"#, d.clone()));
        assert!(!m(r#"{"b": {"$exists": true}}"#, d.clone()));
        assert!(m(r#"{"b": null}"#, d.clone()));
        assert!(m(r#"{"b": {"$not": {"$gt": 3}}}"#, d.clone()));
        let f = Filter::parse(r#"{"b": {"$ne": 5}}"#).unwrap();
        assert!(f.matches(None));
        assert!(!Filter::parse(r#"{"b": 5}"#).unwrap().matches(None));
    }

    #[test]
    fn logic_contains_regex() {
        let d = json!({"a": 1, "s": "Hello World", "arr": ["x", "y"]});
        assert!(m(r#"{"$or": [{"a": 2}, {"a": 1}]}"#, d.clone()));
        assert!(!m(r#"{"$and": [{"a": 2}, {"a": 1}]}"#, d.clone()));
        assert!(m(r#"{"$nor": [{"a": 2}, {"a": 3}]}"#, d.clone()));
        assert!(m(r#"{"s": {"$contains": "lo W"}}"#, d.clone()));
        assert!(m(r#"{"arr": {"$contains": "y"}}"#, d.clone()));
        assert!(!m(r#"{"arr": {"$contains": "z"}}"#, d.clone()));
        assert!(m(r#"{"s": {"$regex": "^hello", "$options": "i"}}"#, d.clone()));
        assert!(!m(r#"{"s": {"$regex": "^hello"}}"#, d.clone()));
        assert!(m(r#"{"s": {"$not": "^bye"}}"#, d.clone()));
        assert!(m(r#"{"a": 1, "s": {"$exists": true}}"#, d.clone()));
    }

    #[test]
    fn invalid_filters_say_where() {
        let cases = [
            ("[1]", "must be a JSON object"),
            ("{bad", "not valid JSON"),
            (r#"{"$foo": 1}"#, "'$foo'"),
            (r#"{"age": {"$gt": {}}}"#, "at 'age.$gt'"),
            (r#"{"age": {"$bogus": 1}}"#, "unknown operator '$bogus'"),
            (r#"{"$and": []}"#, "non-empty array"),
            (r#"{"$or": [{"a": 1}, 5]}"#, "at '$or[1]'"),
            (r#"{"a": {"$in": 5}}"#, "needs an array"),
            (r#"{"a": {"$exists": 1}}"#, "true or false"),
            (r#"{"a": {"$regex": "("}}"#, "bad regex"),
            (r#"{"a": {"$gt": 1, "b": 2}}"#, "cannot mix"),
            (r#"{"a..b": 1}"#, "empty segment"),
            (r#"{"a": {"$options": "i"}}"#, "only allowed beside $regex"),
            (r#"{"a": {"$not": 5}}"#, "$not needs"),
        ];
        for (text, want) in cases {
            let e = Filter::parse(text).unwrap_err();
            assert!(matches!(e, Error::InvalidFilter(_)), "{text}");
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
        let deep = format!("{}{}{}", r#"{"$and":["#.repeat(40), r#"{"a":1}"#, "]}".repeat(40));
        assert!(Filter::parse(&deep).is_err());
    }

    #[test]
    fn order_follows_mongodb_types_and_arrays() {
        let docs = [
            json!({"v": true}),
            json!({"v": "b"}),
            json!({"v": 10}),
            json!({"v": 2.5}),
            json!({"v": null}),
            json!({"other": 1}),
            json!({"v": {"x": 1}}),
            json!({"v": "a"}),
            json!({"v": [7, 1]}),
            json!({"v": false}),
        ];
        let sorted = |asc: bool| {
            let o = OrderBy::parse("v", asc).unwrap();
            let mut keyed: Vec<(SortKey, usize)> = docs.iter().enumerate().map(|(i, d)| (o.key(Some(d)), i)).collect();
            keyed.sort_by(|a, b| o.cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
            keyed.into_iter().map(|(_, i)| i).collect::<Vec<_>>()
        };
        // null and missing, numbers (the array by its smallest, 1), strings, objects, booleans.
        assert_eq!(sorted(true), [4, 5, 8, 3, 2, 7, 1, 6, 9, 0]);
        // Descending the array sorts by its largest element, 7; ties stay in index order.
        assert_eq!(sorted(false), [0, 9, 6, 1, 7, 2, 8, 3, 4, 5]);
        // Nested paths and items without metadata.
        let o = OrderBy::parse("a.b", true).unwrap();
        assert_eq!(o.key(Some(&json!({"a": {"b": 3}}))), SortKey::Number(3.0));
        assert_eq!(o.key(None), SortKey::Null);
        assert_eq!(o.key(Some(&json!({"a": [{"b": 5}, {"b": 4}]}))), SortKey::Number(4.0));
    }

    #[test]
    fn bad_order_paths_are_refused() {
        for bad in ["", "a..b", ".a", "a.", "$gt", "a.$b"] {
            let e = OrderBy::parse(bad, true).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
            assert!(e.to_string().contains("order_by"), "{bad}: {e}");
        }
        assert!(OrderBy::parse(&"a".repeat(MAX_ORDER_PATH_BYTES + 1), true).is_err());
    }
}
