//! Canned response bodies: `{{variable}}` placeholders, with an optional
//! default after `|` (`{{customer.given_name|there}}`), filled at render
//! time. Only known variables may be saved, so a typo is refused when the
//! response is written, not discovered by a customer.
use std::collections::BTreeMap;

/// The variables a body may use.
pub const VARIABLES: &[&str] = &[
    "customer.given_name",
    "customer.family_name",
    "customer.display_name",
    "case_number",
    "agent.display_name",
    "inbox.address",
    "conversation.subject",
];

/// One piece of a parsed body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Variable { name: &'a str, default: &'a str },
}

fn parse(body: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "has a `{{` without its `}}`".to_owned())?;
        let inner = &after[..end];
        let (name, default) = inner.split_once('|').unwrap_or((inner, ""));
        pieces.push(Piece::Variable {
            name: name.trim(),
            default,
        });
        rest = &after[end + 2..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Checks a body: balanced braces, known variables only.
pub fn check(body: &str) -> Result<(), String> {
    for piece in parse(body)? {
        if let Piece::Variable { name, .. } = piece
            && !VARIABLES.contains(&name)
        {
            return Err(format!(
                "uses the unknown variable `{name}` (known: {})",
                VARIABLES.join(", ")
            ));
        }
    }
    Ok(())
}

/// `body` with its variables filled from `values`; a variable without a
/// value renders as its default (or nothing) and is named in the second
/// result.
pub fn render(body: &str, values: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let Ok(pieces) = parse(body) else {
        // Checked when saved; an unparsable body renders as written.
        return (body.to_owned(), Vec::new());
    };
    let mut out = String::with_capacity(body.len());
    let mut missing = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Variable { name, default } => match values.get(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str(default);
                    if !missing.iter().any(|m| m == name) {
                        missing.push(name.to_owned());
                    }
                }
            },
        }
    }
    (out, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_filled_defaulted_or_reported_missing() {
        let values = BTreeMap::from([
            ("case_number".to_owned(), "42".to_owned()),
            ("agent.display_name".to_owned(), "Grace".to_owned()),
        ]);
        let (text, missing) = render(
            "Hi {{customer.given_name|there}}, case {{ case_number }} is with {{agent.display_name}}.",
            &values,
        );
        assert_eq!(text, "Hi there, case 42 is with Grace.");
        assert_eq!(missing, ["customer.given_name"]);
    }

    #[test]
    fn only_known_variables_and_balanced_braces_are_saved() {
        assert!(check("Case {{case_number}}").is_ok());
        assert!(check("no variables").is_ok());
        assert!(
            check("Hi {{customer.first_name}}")
                .unwrap_err()
                .contains("customer.first_name")
        );
        assert!(check("Hi {{case_number").is_err());
    }
}
