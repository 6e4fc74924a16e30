//! Label selectors as upstream's `k8s.io/apimachinery/pkg/labels` parses,
//! prints and matches them. Entry points: [`parse`] for the `labelSelector`
//! query parameter and [`LabelSelector::from_metav1`] for `spec.selector`.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::validation::{go_quote, is_qualified_name, is_valid_label_value};

/// A parse or validation failure; `Display` is upstream's text, which the
/// apiserver returns verbatim in a 400 Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelSelectorError {
    /// The query-string syntax was malformed; the text is upstream's parser message.
    #[error("{0}")]
    Syntax(String),
    /// A requirement was malformed; upstream wraps it as `unable to parse requirement: ...`.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A requirement built from a `metav1.LabelSelector` was invalid (upstream's aggregate text).
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    InvalidOperator(String),
}

/// A requirement's operator, spelled as upstream's `selection.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// Upstream's string for the operator (`=`, `in`, `gt`, `!` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One `key op values` term. Invariant: built only through [`Requirement::new`],
/// so the key is a qualified name, values are valid label values and their
/// count fits the operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Upstream's `labels.NewRequirement`, with its validation and messages
    /// (field paths `key` and `values[i][key]`).
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, LabelSelectorError> {
        let mut errs: Vec<String> = Vec::new();
        let key_errs = is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(key),
                key_errs.join("; ")
            ));
        }
        let bad_values = |msg: &str| format!("values: Invalid value: {}: {msg}", go_slice(&values));
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(bad_values(
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(bad_values(
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(bad_values(
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(bad_values(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = is_valid_label_value(v);
            if !value_errs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    value_errs.join("; ")
                ));
            }
        }
        if !errs.is_empty() {
            return Err(LabelSelectorError::InvalidRequirement(aggregate(errs)));
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Upstream's `Requirement.Matches`: a missing key fails `=`, `in`, `gt`,
    /// `lt` and `exists`, and satisfies `!=`, `notin` and `!`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, open, close) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", "", ""),
            Operator::DoubleEquals => ("==", "", ""),
            Operator::NotEquals => ("!=", "", ""),
            Operator::In => (" in ", "(", ")"),
            Operator::NotIn => (" notin ", "(", ")"),
            Operator::GreaterThan => (">", "", ""),
            Operator::LessThan => ("<", "", ""),
        };
        let mut values = self.values.clone();
        values.sort();
        write!(f, "{op}{open}{}{close}", values.join(","))
    }
}

/// Go's `%#v` of a `[]string`, as upstream prints bad value lists.
fn go_slice(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Upstream's `utilerrors.Aggregate` text: one error alone, several in brackets.
fn aggregate(errs: Vec<String>) -> String {
    if errs.len() == 1 {
        errs.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

/// A conjunction of requirements, sorted by key as upstream keeps them.
/// The empty selector matches everything; [`LabelSelector::nothing`] matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Matches every object (`labels.Everything()`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Matches no object (`labels.Nothing()`), what a nil `metav1.LabelSelector` means.
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Builds a selector from requirements, sorting them by key.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Parses the query-string syntax (see [`parse`]).
    pub fn parse(selector: &str) -> Result<Self, LabelSelectorError> {
        parse(selector)
    }

    /// Upstream's `metav1.LabelSelectorAsSelector` for a present selector:
    /// `matchLabels` become `=` requirements, `matchExpressions` map their
    /// operators; an empty selector matches everything.
    pub fn from_metav1(selector: &metav1::LabelSelector) -> Result<Self, LabelSelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(LabelSelectorError::InvalidOperator(other.to_string())),
            };
            requirements.push(Requirement::new(
                &expr.key,
                op,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        Ok(Self::from_requirements(requirements))
    }

    /// [`from_metav1`](Self::from_metav1) where an absent selector matches nothing.
    pub fn from_metav1_opt(
        selector: Option<&metav1::LabelSelector>,
    ) -> Result<Self, LabelSelectorError> {
        selector.map_or_else(|| Ok(Self::nothing()), Self::from_metav1)
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True for the selector that matches every object.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True when every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string: requirements sorted by key, joined by `,`, values
    /// sorted; it parses back to the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = LabelSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Upstream's lexer: identifiers run until whitespace or a special symbol;
/// special symbols take the longest operator they spell.
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_whitespace(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() || b[pos] == 0 {
            out.push((Token::EndOfString, String::new()));
            return out;
        }
        let start = pos;
        if is_special_symbol(b[pos]) {
            let mut last: Option<(Token, usize)> = None;
            while pos < b.len() && is_special_symbol(b[pos]) {
                pos += 1;
                match keyword(&s[start..pos]) {
                    Some(t) => last = Some((t, pos)),
                    None if last.is_some() => {
                        pos -= 1;
                        break;
                    }
                    None => {}
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => out.push((
                    Token::Error,
                    format!("error expected: keyword found '{}'", &s[start..pos]),
                )),
            }
        } else {
            while pos < b.len()
                && !is_whitespace(b[pos])
                && !is_special_symbol(b[pos])
                && b[pos] != 0
            {
                pos += 1;
            }
            let lit = &s[start..pos];
            out.push((keyword(lit).unwrap_or(Token::Identifier), lit.to_string()));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn item(&self, at: usize, ctx: Context) -> (Token, String) {
        let (mut tok, lit) = self
            .items
            .get(at)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        // In a values context the keywords `in` and `notin` are plain identifiers.
        if ctx == Context::Values && matches!(tok, Token::In | Token::NotIn) {
            tok = Token::Identifier;
        }
        (tok, lit)
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        self.item(self.position, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let item = self.item(self.position, ctx);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, LabelSelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(LabelSelectorError::Requirement)?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(LabelSelectorError::Syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(LabelSelectorError::Syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(LabelSelectorError::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return Requirement::new(&key, op, Vec::new()).map_err(inner);
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values).map_err(inner)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = is_qualified_name(&lit);
        if !errs.is_empty() {
            // Upstream validates with a nil field path here, which prints as `<nil>`.
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&lit),
                errs.join("; ")
            ));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// Upstream's identifier list: a set, so duplicates collapse and empty
    /// entries (`(,a)`) stand for the empty value.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut set = std::collections::BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set.into_iter().collect()),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set.into_iter().collect());
                    }
                    if tok2 == Token::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

fn inner(e: LabelSelectorError) -> String {
    match e {
        LabelSelectorError::InvalidRequirement(s)
        | LabelSelectorError::Syntax(s)
        | LabelSelectorError::Requirement(s) => s,
        other => other.to_string(),
    }
}

/// Parses upstream's query-string syntax: `a=b`, `a==b`, `a!=b`,
/// `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, joined by `,`
/// (AND). Whitespace around tokens is ignored; the empty string matches
/// everything.
pub fn parse(selector: &str) -> Result<LabelSelector, LabelSelectorError> {
    let mut parser = Parser {
        items: lex(selector),
        position: 0,
    };
    let requirements = parser.parse()?;
    Ok(LabelSelector::from_requirements(requirements))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn empty_and_blank_selectors_match_everything() {
        for s in ["", "  ", "\t"] {
            let sel = parse(s).unwrap();
            assert!(sel.is_empty());
            assert!(sel.matches(&labels(&[])));
            assert_eq!(sel.to_string(), "");
        }
    }

    #[test]
    fn equality_requirements_match_as_upstream() {
        let sel = parse("app=web,tier!=db").unwrap();
        assert!(sel.matches(&labels(&[("app", "web")])));
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!sel.matches(&labels(&[("tier", "fe")])));
        assert!(parse("app==web")
            .unwrap()
            .matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn set_requirements_match_as_upstream() {
        let sel = parse("env in (prod, staging),tier notin (db),canary,!legacy").unwrap();
        assert!(sel.matches(&labels(&[("env", "prod"), ("canary", "")])));
        assert!(!sel.matches(&labels(&[("env", "dev"), ("canary", "")])));
        assert!(!sel.matches(&labels(&[("env", "prod")])));
        assert!(!sel.matches(&labels(&[
            ("env", "prod"),
            ("canary", "1"),
            ("legacy", "1")
        ])));
        assert!(!sel.matches(&labels(&[("env", "prod"), ("canary", "1"), ("tier", "db")])));
    }

    #[test]
    fn numeric_comparisons_need_integer_labels() {
        let sel = parse("replicas>2,replicas<10").unwrap();
        assert!(sel.matches(&labels(&[("replicas", "5")])));
        assert!(!sel.matches(&labels(&[("replicas", "2")])));
        assert!(!sel.matches(&labels(&[("replicas", "five")])));
        assert_eq!(
            err("a>b"),
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
    }

    #[test]
    fn whitespace_is_tolerated_everywhere() {
        let a = parse(" a = b , c in ( x , y ) , ! d ").unwrap();
        let b = parse("a=b,c in (x,y),!d").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn display_is_canonical_and_sorted() {
        let sel = parse("z=1,a in (y,x,x),!m,k,b==2,c!=3").unwrap();
        assert_eq!(sel.to_string(), "a in (x,y),b==2,c!=3,k,!m,z=1");
        assert_eq!(parse(&sel.to_string()).unwrap(), sel);
    }

    #[test]
    fn empty_values_are_allowed() {
        assert!(parse("a=").unwrap().matches(&labels(&[("a", "")])));
        assert!(parse("a in ()").unwrap().matches(&labels(&[("a", "")])));
        assert_eq!(parse("a in (,b)").unwrap().to_string(), "a in (,b)");
    }

    #[test]
    fn in_and_notin_are_identifiers_in_value_position() {
        let sel = parse("in=notin").unwrap();
        assert!(sel.matches(&labels(&[("in", "notin")])));
    }

    #[test]
    fn syntax_errors_use_upstream_wording() {
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(
            err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a=b c=d"),
            "found 'c', expected: ',' or 'end of string'"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("a in x"),
            "unable to parse requirement: found 'x' expected: '('"
        );
        assert_eq!(
            err("a in (x"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("a=(b)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
    }

    #[test]
    fn invalid_keys_and_values_use_upstream_wording() {
        assert_eq!(
            err("a_=b"),
            "unable to parse requirement: <nil>: Invalid value: \"a_\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        assert_eq!(
            err("a=-b"),
            "unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        let long = "x".repeat(64);
        assert!(err(&format!("a={long}"))
            .starts_with("unable to parse requirement: values[0][a]: Invalid value: \"xxxx"));
    }

    fn expr(key: &str, op: &str, values: Option<Vec<&str>>) -> metav1::LabelSelectorRequirement {
        metav1::LabelSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn metav1_selectors_convert_like_label_selector_as_selector() {
        let ps = metav1::LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            match_expressions: Some(vec![
                expr("env", "In", Some(vec!["prod", "qa"])),
                expr("old", "DoesNotExist", None),
                expr("tier", "NotIn", Some(vec!["db"])),
                expr("zone", "Exists", Some(vec![])),
            ]),
        };
        let sel = LabelSelector::from_metav1(&ps).unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,env in (prod,qa),!old,tier notin (db),zone"
        );
        assert!(sel.matches(&labels(&[("app", "web"), ("env", "qa"), ("zone", "a")])));
        assert!(
            LabelSelector::from_metav1(&metav1::LabelSelector::default())
                .unwrap()
                .matches(&labels(&[("x", "y")]))
        );
        assert!(!LabelSelector::from_metav1_opt(None)
            .unwrap()
            .matches(&labels(&[])));
    }

    #[test]
    fn metav1_errors_use_upstream_wording() {
        let bad_op = metav1::LabelSelector {
            match_expressions: Some(vec![expr("a", "Equals", Some(vec!["b"]))]),
            ..Default::default()
        };
        assert_eq!(
            LabelSelector::from_metav1(&bad_op).unwrap_err().to_string(),
            "\"Equals\" is not a valid label selector operator"
        );
        let empty_in = metav1::LabelSelector {
            match_expressions: Some(vec![expr("a", "In", Some(vec![]))]),
            ..Default::default()
        };
        assert_eq!(
            LabelSelector::from_metav1(&empty_in).unwrap_err().to_string(),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        let exists_with_values = metav1::LabelSelector {
            match_expressions: Some(vec![expr("a", "Exists", Some(vec!["x"]))]),
            ..Default::default()
        };
        assert_eq!(
            LabelSelector::from_metav1(&exists_with_values).unwrap_err().to_string(),
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
        );
        let two = metav1::LabelSelector {
            match_expressions: Some(vec![expr("-a", "In", Some(vec!["-x"]))]),
            ..Default::default()
        };
        let text = LabelSelector::from_metav1(&two).unwrap_err().to_string();
        assert!(
            text.starts_with("[key: Invalid value: \"-a\": name part"),
            "{text}"
        );
        assert!(
            text.contains(", values[0][-a]: Invalid value: \"-x\""),
            "{text}"
        );
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips(
            reqs in proptest::collection::vec(
                ("[a-z]{1,5}", 0usize..6, proptest::collection::vec("[a-z0-9]{0,4}", 1..3)),
                0..5,
            )
        ) {
            let terms: Vec<String> = reqs.iter().map(|(k, op, vs)| match op {
                0 => format!("{k}={}", vs[0]),
                1 => format!("{k}!={}", vs[0]),
                2 => format!("{k} in ({})", vs.join(",")),
                3 => format!("{k} notin ({})", vs.join(",")),
                4 => k.clone(),
                _ => format!("!{k}"),
            }).collect();
            let sel = parse(&terms.join(",")).unwrap();
            let again = parse(&sel.to_string()).unwrap();
            prop_assert_eq!(&again, &sel);
            prop_assert_eq!(again.to_string(), sel.to_string());
        }

        #[test]
        fn equality_matches_exactly_the_value(k in "[a-z]{1,8}", v in "[a-z0-9]{0,8}", other in "[a-z0-9]{0,8}") {
            let sel = parse(&format!("{k}={v}")).unwrap();
            let mut l = BTreeMap::new();
            l.insert(k.clone(), other.clone());
            prop_assert_eq!(sel.matches(&l), v == other);
            let not = parse(&format!("{k}!={v}")).unwrap();
            prop_assert_eq!(not.matches(&l), v != other);
        }

        #[test]
        fn parser_never_panics(s in "[a-z=!(), <>in_-]{0,24}") {
            let _ = parse(&s);
        }
    }
}
