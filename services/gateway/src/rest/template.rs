//! AIP-127 path templates (the `google.api.HttpRule` syntax): parsing, and
//! matching a request path to the request fields its variables bind.
//!
//! ```text
//! Template = "/" Segments [ ":" Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! ```
//!
//! Written here rather than borrowed from a router: axum's own matcher knows
//! neither multi-segment variables (`{name=customers/*}`) nor the `:verb`
//! suffix glued to the last segment.
use std::{cmp::Reverse, fmt};

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

/// One `/`-separated segment of a template, variables flattened into the
/// segments of their pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches itself only.
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Single,
    /// `**`: zero or more segments; only last.
    Multi,
}

/// A `{field.path=pattern}` variable: the request field it sets and the
/// template segments it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variable {
    /// Request field path, e.g. `["customer", "name"]`.
    pub(crate) field_path: Vec<String>,
    /// The variable's own pattern (`customers/*`), as written.
    pub(crate) pattern: Vec<Segment>,
    /// First covered segment of the template.
    start: usize,
}

/// A variable's value taken from a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    /// Request field path.
    pub(crate) field_path: Vec<String>,
    /// Decoded value, e.g. `customers/123`.
    pub(crate) value: String,
}

/// Why a template is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    template: String,
    reason: &'static str,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path template `{}`: {}", self.template, self.reason)
    }
}

impl std::error::Error for TemplateError {}

/// How specific a template is. When several templates match one path the
/// highest rank wins: a `:verb` beats none (so `/v1/customers/1:erase` is never
/// read as the resource `customers/1:erase`), then more literal segments beat
/// fewer, then a template without `**` beats one with, then fewer wildcards
/// beat more.
pub(crate) type Rank = (bool, usize, bool, Reverse<usize>);

impl PathTemplate {
    /// Parses a template such as `/v1/{name=customers/*}:setConsent`.
    pub(crate) fn parse(template: &str) -> Result<Self, TemplateError> {
        let error = |reason| TemplateError {
            template: template.to_owned(),
            reason,
        };
        let Some(rest) = template.strip_prefix('/') else {
            return Err(error("must start with `/`"));
        };
        // The verb follows the last segment; a `:` inside a variable (there
        // is none in the grammar) or an earlier segment is not a verb.
        let tail_start = rest.rfind(['/', '}']).map_or(0, |i| i + 1);
        let (path, verb) = match rest[tail_start..].find(':') {
            Some(i) => {
                let verb = &rest[tail_start + i + 1..];
                if !is_literal(verb) {
                    return Err(error("the verb must be a non-empty literal"));
                }
                (&rest[..tail_start + i], Some(verb.to_owned()))
            }
            None => (rest, None),
        };

        let mut segments = Vec::new();
        let mut variables: Vec<Variable> = Vec::new();
        let mut rest = path;
        loop {
            if let Some(inner) = rest.strip_prefix('{') {
                let close = inner.find('}').ok_or_else(|| error("unclosed `{`"))?;
                let (field, pattern) = match inner[..close].split_once('=') {
                    Some((field, pattern)) => (field, pattern),
                    None => (&inner[..close], "*"),
                };
                let field_path: Vec<String> = field.split('.').map(str::to_owned).collect();
                if !field_path.iter().all(|part| is_identifier(part)) {
                    return Err(error("a variable must name a field path"));
                }
                if variables.iter().any(|v| v.field_path == field_path) {
                    return Err(error("a field is bound twice"));
                }
                let pattern = pattern
                    .split('/')
                    .map(parse_plain_segment)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| error("a variable pattern holds literals, `*` or `**`"))?;
                variables.push(Variable {
                    field_path,
                    start: segments.len(),
                    pattern: pattern.clone(),
                });
                segments.extend(pattern);
                rest = &inner[close + 1..];
            } else {
                let end = rest.find('/').unwrap_or(rest.len());
                let segment = parse_plain_segment(&rest[..end])
                    .ok_or_else(|| error("a segment is a literal, `*`, `**` or a variable"))?;
                segments.push(segment);
                rest = &rest[end..];
            }
            if rest.is_empty() {
                break;
            }
            rest = rest
                .strip_prefix('/')
                .ok_or_else(|| error("a variable must be a whole segment"))?;
        }
        if let Some(i) = segments.iter().position(|s| *s == Segment::Multi)
            && i + 1 != segments.len()
        {
            return Err(error("`**` may only be the last segment"));
        }
        Ok(Self {
            source: template.to_owned(),
            segments,
            variables,
            verb,
        })
    }

    /// The template as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The segments, variables flattened.
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The variables, in template order.
    pub(crate) fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The `:verb` suffix, if any.
    pub(crate) fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// The variable covering a segment, if any.
    pub(crate) fn variable_at(&self, segment: usize) -> Option<&Variable> {
        self.variables
            .iter()
            .find(|v| (v.start..v.start + v.pattern.len()).contains(&segment))
    }

    /// How specific the template is; see [`Rank`].
    pub(crate) fn rank(&self) -> Rank {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (
            self.verb.is_some(),
            literals,
            !self.segments.contains(&Segment::Multi),
            Reverse(self.segments.len() - literals),
        )
    }

    /// Matches a raw (still percent-encoded) request path. Returns the values
    /// of the variables, decoded the way AIP-127 says: a single-segment
    /// variable is fully decoded; a multi-segment one keeps `%2F` encoded so a
    /// decoded `/` never creates a segment the client did not send.
    pub(crate) fn matches(&self, path: &str) -> Option<Vec<Binding>> {
        let mut rest = path.strip_prefix('/')?;
        if let Some(verb) = &self.verb {
            rest = rest.strip_suffix(verb.as_str())?.strip_suffix(':')?;
        }
        let raw: Vec<&str> = rest.split('/').collect();
        let mut covered = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    if percent_decode(raw.get(i)?, false)? != *literal {
                        return None;
                    }
                    covered += 1;
                }
                Segment::Single => {
                    if raw.get(i)?.is_empty() {
                        return None;
                    }
                    covered += 1;
                }
                Segment::Multi => covered = raw.len().max(i),
            }
        }
        if covered != raw.len() {
            return None;
        }
        self.variables
            .iter()
            .map(|variable| {
                let single = variable.pattern == [Segment::Single];
                let end = match variable.pattern.last() {
                    Some(Segment::Multi) => raw.len(),
                    _ => variable.start + variable.pattern.len(),
                };
                let value = raw[variable.start..end]
                    .iter()
                    .map(|s| percent_decode(s, !single))
                    .collect::<Option<Vec<_>>>()?
                    .join("/");
                Some(Binding {
                    field_path: variable.field_path.clone(),
                    value,
                })
            })
            .collect()
    }
}

fn parse_plain_segment(segment: &str) -> Option<Segment> {
    match segment {
        "*" => Some(Segment::Single),
        "**" => Some(Segment::Multi),
        literal if is_literal(literal) => Some(Segment::Literal(literal.to_owned())),
        _ => None,
    }
}

fn is_literal(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is
/// not UTF-8. With `keep_slash`, `%2F` stays encoded.
pub(crate) fn percent_decode(s: &str, keep_slash: bool) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if keep_slash && byte == b'/' {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(byte);
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(field path, value)` of each variable, or `None` for no match.
    type Bound = Option<Vec<(String, String)>>;

    fn bindings(template: &str, path: &str) -> Bound {
        PathTemplate::parse(template)
            .unwrap()
            .matches(path)
            .map(|bs| {
                bs.into_iter()
                    .map(|b| (b.field_path.join("."), b.value))
                    .collect()
            })
    }

    fn bound(pairs: &[(&str, &str)]) -> Bound {
        Some(
            pairs
                .iter()
                .map(|(f, v)| (f.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn parses_variables_patterns_and_verbs() {
        let t = PathTemplate::parse("/v1/{name=customers/*}:setConsent").unwrap();
        assert_eq!(
            t.segments(),
            [
                Segment::Literal("v1".into()),
                Segment::Literal("customers".into()),
                Segment::Single
            ]
        );
        assert_eq!(t.verb(), Some("setConsent"));
        assert_eq!(t.variables()[0].field_path, ["name"]);
        assert_eq!(t.variable_at(1).unwrap().field_path, ["name"]);
        assert!(t.variable_at(0).is_none());

        let t = PathTemplate::parse("/v1/customers:search").unwrap();
        assert_eq!(t.verb(), Some("search"));
        assert!(t.variables().is_empty());

        let t = PathTemplate::parse("/v1/{customer.name=customers/*}").unwrap();
        assert_eq!(t.variables()[0].field_path, ["customer", "name"]);
        assert_eq!(t.verb(), None);

        let t = PathTemplate::parse("/v1/shelves/{shelf}/books/{book}").unwrap();
        assert_eq!(t.variables().len(), 2);
        assert_eq!(t.variables()[1].pattern, [Segment::Single]);
    }

    #[test]
    fn rejects_malformed_templates() {
        for bad in [
            "v1/customers",
            "/v1/{name=customers/*",
            "/v1/{name=customers/*}x",
            "/v1/{=customers/*}",
            "/v1/{1name}",
            "/v1/**/customers",
            "/v1/{name=**}/x",
            "/v1/customers:",
            "/v1//customers",
            "/v1/{name}/{name}",
            "/v1/{name={x}}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn matches_paths_to_field_values() {
        let table: &[(&str, &str, Bound)] = &[
            ("/v1/customers", "/v1/customers", bound(&[])),
            ("/v1/customers", "/v1/customers/", None),
            ("/v1/customers", "/v1/customer", None),
            (
                "/v1/{name=customers/*}",
                "/v1/customers/123",
                bound(&[("name", "customers/123")]),
            ),
            ("/v1/{name=customers/*}", "/v1/customers", None),
            ("/v1/{name=customers/*}", "/v1/customers/", None),
            ("/v1/{name=customers/*}", "/v1/customers/1/x", None),
            ("/v1/{name=customers/*}", "/v1/orders/1", None),
            // The verb is part of the template: without it the path is a
            // different route, and a verb-less template keeps `:` in the id.
            (
                "/v1/{name=customers/*}:setConsent",
                "/v1/customers/123:setConsent",
                bound(&[("name", "customers/123")]),
            ),
            (
                "/v1/{name=customers/*}:setConsent",
                "/v1/customers/123",
                None,
            ),
            (
                "/v1/{name=customers/*}:setConsent",
                "/v1/customers/123:erase",
                None,
            ),
            ("/v1/{name=customers/*}:setConsent", "/v1/:setConsent", None),
            (
                "/v1/{name=customers/*}",
                "/v1/customers/123:erase",
                bound(&[("name", "customers/123:erase")]),
            ),
            ("/v1/customers:search", "/v1/customers:search", bound(&[])),
            ("/v1/customers:search", "/v1/customers", None),
            ("/v1/{name=customers/*}", "/v1/customers:search", None),
            (
                "/v1/{customer.name=customers/*}",
                "/v1/customers/abc",
                bound(&[("customer.name", "customers/abc")]),
            ),
            (
                "/v1/{parent=customers/*}/consentEvents",
                "/v1/customers/9/consentEvents",
                bound(&[("parent", "customers/9")]),
            ),
            (
                "/v1/{parent=customers/*}/consentEvents",
                "/v1/customers/9/lifecycleEvents",
                None,
            ),
            // Single-segment variables decode everything; multi-segment ones
            // keep an encoded slash encoded.
            (
                "/v1/tags/{tag}",
                "/v1/tags/a%2Fb%20c",
                bound(&[("tag", "a/b c")]),
            ),
            (
                "/v1/{name=customers/*}",
                "/v1/customers/a%2Fb%20c",
                bound(&[("name", "customers/a%2Fb c")]),
            ),
            ("/v1/{name=customers/*}", "/v1/customers/%zz", None),
            (
                "/v1/{name=files/**}",
                "/v1/files/a/b/c",
                bound(&[("name", "files/a/b/c")]),
            ),
            (
                "/v1/{name=files/**}",
                "/v1/files",
                bound(&[("name", "files")]),
            ),
            ("/v1/{name=files/**}", "/v1/dirs/a", None),
            (
                "/v1/shelves/{shelf}/books/{book}",
                "/v1/shelves/s1/books/b2",
                bound(&[("shelf", "s1"), ("book", "b2")]),
            ),
            // Literals are compared decoded.
            ("/v1/customers", "/v1/%63ustomers", bound(&[])),
        ];
        for (template, path, expected) in table {
            assert_eq!(
                &bindings(template, path),
                expected,
                "{template} against {path}"
            );
        }
    }

    #[test]
    fn literal_and_verb_routes_outrank_variable_ones() {
        let rank = |t: &str| PathTemplate::parse(t).unwrap().rank();
        assert!(rank("/v1/{name=customers/*}:erase") > rank("/v1/{name=customers/*}"));
        assert!(rank("/v1/customers/me") > rank("/v1/{name=customers/*}"));
        assert!(rank("/v1/{name=customers/*}") > rank("/v1/{name=*/*}"));
        assert!(rank("/v1/{name=customers/*}") > rank("/v1/{name=customers/**}"));
        assert_eq!(rank("/v1/customers"), rank("/v1/customers"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb", false).as_deref(), Some("a/b"));
        assert_eq!(percent_decode("a%2fb", true).as_deref(), Some("a%2fb"));
        assert_eq!(percent_decode("%C3%A9", false).as_deref(), Some("é"));
        assert_eq!(percent_decode("%C3", false), None);
        assert_eq!(percent_decode("%4", false), None);
    }
}
