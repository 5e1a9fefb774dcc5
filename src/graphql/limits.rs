//! What a request may cost, checked before anything recursive or expensive runs.
//!
//! async-graphql's parser and validators recurse into a document, and its depth and complexity
//! limits run only after it has been parsed and validated: a deeply nested literal overflows
//! the stack first, and a chain of fragments that each spread the previous one twice expands
//! exponentially during validation. So every document is first measured here, in linear time
//! and without recursion on its text: how deeply its brackets nest, then (parsed, now safe)
//! how many fields it expands to. Variables are measured the same way.

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, ServerError, Value, Variables};
use std::collections::HashMap;

/// Deepest nesting of `{`, `[` and `(` in a document: selection sets, arguments, list and
/// object literals together. The selection depth limit ([`super::MAX_DEPTH`]) is smaller and
/// decides for ordinary queries; this one exists so that nothing recursive ever sees more.
pub const MAX_DOCUMENT_NESTING: usize = 32;
/// Deepest nesting of lists and objects in a request body or in variables.
pub const MAX_JSON_NESTING: usize = 32;
/// Most fields (aliases and `__typename` included) a document may expand to once every
/// fragment spread is replaced by its fragment, each use counted.
pub const MAX_EXPANDED_SELECTIONS: usize = 2_000;

/// Why a document is refused before it runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooDeep { limit: usize },
    TooManyFields { limit: usize },
    FragmentCycle(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooDeep { limit } => {
                write!(f, "the request nests deeper than {limit} levels")
            }
            Self::TooManyFields { limit } => write!(
                f,
                "the query expands to more than {limit} fields (aliases and fragment uses count)"
            ),
            Self::FragmentCycle(name) => write!(f, "fragment {name} spreads itself"),
        }
    }
}

impl From<Refusal> for ServerError {
    fn from(refusal: Refusal) -> Self {
        bad_input(refusal.to_string())
    }
}

/// A `BAD_USER_INPUT` error raised before the engine runs.
pub fn bad_input(message: String) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", "BAD_USER_INPUT");
    err.extensions = Some(ext);
    err
}

/// The deepest bracket nesting of a GraphQL document, skipping strings, block strings and
/// comments. Stops counting once past `limit`.
pub fn document_nesting(query: &str, limit: usize) -> Result<(), Refusal> {
    let bytes = query.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    // `\"""` is an escaped triple quote inside a block string.
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limit {
                    return Err(Refusal::TooDeep { limit });
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The deepest nesting of a JSON text (a request body or a WebSocket message), skipping
/// strings. Stops counting once past `limit`; malformed JSON is left to the JSON parser.
pub fn json_nesting(json: &[u8], limit: usize) -> Result<(), Refusal> {
    let (mut i, mut depth) = (0, 0usize);
    while i < json.len() {
        match json[i] {
            b'"' => {
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err(Refusal::TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// How deeply variables nest, without recursion (they arrive parsed, so within serde_json's
/// own recursion limit, but validation would still recurse into them).
pub fn variables_nesting(variables: &Variables, limit: usize) -> Result<(), Refusal> {
    let mut stack: Vec<(&Value, usize)> = variables.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        if depth > limit {
            return Err(Refusal::TooDeep { limit });
        }
        match value {
            Value::List(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(fields) => stack.extend(fields.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// How many fields the document expands to: every field and alias counts once per place it
/// ends up after fragment spreads are replaced, so `fragment F1 { ...F0 ...F0 }` costs twice
/// F0. Each fragment's cost is computed once (linear in the document's size); a fragment that
/// spreads itself, directly or not, is refused here rather than in validation.
pub fn expanded_selections(doc: &ExecutableDocument, limit: usize) -> Result<usize, Refusal> {
    let mut costs = FragmentCosts {
        fragments: &doc.fragments,
        known: HashMap::new(),
        visiting: Vec::new(),
    };
    let mut total = 0usize;
    for (_, operation) in doc.operations.iter() {
        total = total.saturating_add(costs.of_set(&operation.node.selection_set)?);
    }
    // Fragments no operation uses are still validated, so they count too.
    for name in doc.fragments.keys() {
        total = total.saturating_add(costs.of_fragment(name)?);
    }
    if total > limit {
        return Err(Refusal::TooManyFields { limit });
    }
    Ok(total)
}

struct FragmentCosts<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    known: HashMap<&'a str, usize>,
    visiting: Vec<&'a str>,
}

impl<'a> FragmentCosts<'a> {
    /// The cost of a selection set. Selection sets nest at most [`MAX_DOCUMENT_NESTING`]
    /// deep (checked on the text first), so this recursion is bounded.
    fn of_set(&mut self, set: &'a Positioned<SelectionSet>) -> Result<usize, Refusal> {
        let mut total = 0usize;
        for selection in &set.node.items {
            let cost = match &selection.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.of_set(&field.node.selection_set)?)
                }
                Selection::FragmentSpread(spread) => {
                    self.of_fragment(&spread.node.fragment_name.node)?
                }
                Selection::InlineFragment(inline) => self.of_set(&inline.node.selection_set)?,
            };
            total = total.saturating_add(cost);
        }
        Ok(total)
    }

    fn of_fragment(&mut self, name: &'a Name) -> Result<usize, Refusal> {
        if let Some(cost) = self.known.get(name.as_str()) {
            return Ok(*cost);
        }
        // An unknown fragment is validation's to report; it costs nothing here.
        let Some(fragment) = self.fragments.get(name) else {
            return Ok(0);
        };
        if self.visiting.contains(&name.as_str()) {
            return Err(Refusal::FragmentCycle(name.to_string()));
        }
        // A chain of fragments each spreading the next is as deep as it is long; the text
        // check does not see it, so the chain's length is bounded here.
        if self.visiting.len() >= MAX_DOCUMENT_NESTING {
            return Err(Refusal::TooDeep {
                limit: MAX_DOCUMENT_NESTING,
            });
        }
        self.visiting.push(name.as_str());
        let cost = self.of_set(&fragment.node.selection_set);
        self.visiting.pop();
        let cost = cost?;
        self.known.insert(name.as_str(), cost);
        Ok(cost)
    }
}

/// Every check of this module on one request, cheapest first; parses the document (kept in
/// the request for execution).
pub fn check(request: &mut async_graphql::Request) -> Result<(), ServerError> {
    document_nesting(&request.query, MAX_DOCUMENT_NESTING)?;
    variables_nesting(&request.variables, MAX_JSON_NESTING)?;
    // A syntax error is the client's to fix, like every error the engine raises itself.
    let doc = request.parsed_query().map_err(|mut err| {
        err.extensions
            .get_or_insert_with(Default::default)
            .set("code", "BAD_USER_INPUT");
        err
    })?;
    expanded_selections(doc, MAX_EXPANDED_SELECTIONS)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(query: &str) -> Result<usize, Refusal> {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        expanded_selections(&doc, MAX_EXPANDED_SELECTIONS)
    }

    #[test]
    fn nesting_counts_brackets_outside_strings_and_comments() {
        let deep = format!("{{ a(x: {}1{}) }}", "[".repeat(40), "]".repeat(40));
        assert!(document_nesting(&deep, 32).is_err());
        let in_string = format!("{{ a(x: \"{}\") }}", "[".repeat(400));
        assert_eq!(document_nesting(&in_string, 32), Ok(()));
        let in_block = format!(
            "{{ a(x: \"\"\"{} \\\"\"\" {}\"\"\") }}",
            "{".repeat(99),
            "(".repeat(99)
        );
        assert_eq!(document_nesting(&in_block, 32), Ok(()));
        let in_comment = format!("# {}\n{{ a }}", "{".repeat(99));
        assert_eq!(document_nesting(&in_comment, 32), Ok(()));
        let escaped_quote = format!("{{ a(x: \"\\\"{}\") }}", "[".repeat(99));
        assert_eq!(document_nesting(&escaped_quote, 32), Ok(()));
    }

    #[test]
    fn json_nesting_skips_strings() {
        assert_eq!(json_nesting(br#"{"a": "[[[[[[[[", "b": [1]}"#, 2), Ok(()));
        assert!(json_nesting(b"[[[1]]]", 2).is_err());
        assert_eq!(json_nesting(br#"{"a\"[[[": 1}"#, 1), Ok(()));
    }

    #[test]
    fn fragment_fan_out_is_counted_per_use() {
        let mut query = String::from("fragment F0 on Query { __typename }\n");
        for level in 1..=12 {
            let prev = level - 1;
            query.push_str(&format!(
                "fragment F{level} on Query {{ ...F{prev} ...F{prev} }}\n"
            ));
        }
        query.push_str("{ ...F12 }");
        // 2^12 uses of F0 in the query, and each fragment once more for itself.
        assert_eq!(expand(&query), Err(Refusal::TooManyFields { limit: 2_000 }));
        let small = "fragment A on Query { a b } { ...A ...A c }";
        assert_eq!(expand(small), Ok(5 + 2));
    }

    #[test]
    fn aliases_and_typename_count() {
        let aliases: String = (0..2_001).map(|i| format!("a{i}: __typename ")).collect();
        assert_eq!(
            expand(&format!("{{ {aliases} }}")),
            Err(Refusal::TooManyFields { limit: 2_000 })
        );
    }

    #[test]
    fn cycles_are_refused_without_looping() {
        assert_eq!(
            expand("fragment A on Query { ...B } fragment B on Query { ...A } { ...A }"),
            Err(Refusal::FragmentCycle("A".into()))
        );
    }

    #[test]
    fn variables_nesting_is_measured_without_recursion() {
        let mut value = serde_json::json!(1);
        for _ in 0..100 {
            value = serde_json::json!([value]);
        }
        let vars = Variables::from_json(serde_json::json!({ "x": value }));
        assert!(variables_nesting(&vars, 32).is_err());
        let flat = Variables::from_json(serde_json::json!({ "x": [[1]] }));
        assert_eq!(variables_nesting(&flat, 32), Ok(()));
    }
}
