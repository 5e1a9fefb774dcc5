//! `schema.graphql` is what the server serves, and offers all of the public contract.

use std::collections::BTreeMap;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

#[test]
fn committed_schema_matches_export() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql exists");
    let exported = onsale::graphql::sdl();
    assert!(
        committed == exported,
        "schema.graphql is stale: run `cargo run -- export-schema > schema.graphql`"
    );
}

/// The public contract, kept in the repository (`docs/CONTRACT.md`; `scripts/test.sh` checks
/// that it matches the shared copy where one sits beside the checkout).
const CONTRACT: &str = include_str!("../../docs/CONTRACT.md");

/// The SDL of every block of the contract fenced with ```` ```{fence} ````, joined.
fn contract_sdl(fence: &str) -> String {
    let opening = format!("```{fence}\n");
    CONTRACT
        .split(opening.as_str())
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Type name -> field, argument list or enum value -> its type, for every definition and
/// extension in `doc`.
fn shape(doc: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for def in parse_schema(doc).expect("valid SDL").definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let entry = out.entry(t.node.name.node.to_string()).or_default();
        match &t.node.kind {
            TypeKind::Object(o) => {
                for f in &o.fields {
                    let args: Vec<String> = f
                        .node
                        .arguments
                        .iter()
                        .map(|a| format!("{}:{}", a.node.name.node, a.node.ty.node))
                        .collect();
                    entry.insert(
                        f.node.name.node.to_string(),
                        format!("{}({})", f.node.ty.node, args.join(",")),
                    );
                }
            }
            TypeKind::InputObject(o) => {
                for f in &o.fields {
                    entry.insert(f.node.name.node.to_string(), f.node.ty.node.to_string());
                }
            }
            TypeKind::Enum(e) => {
                for v in &e.values {
                    entry.insert(v.node.value.node.to_string(), "value".into());
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a field the schema offers as `found` serves clients written against `wanted`: the
/// same type, every argument of the contract with its type, and any further argument optional
/// (adding an optional argument breaks no client).
fn offers(found: &str, wanted: &str) -> bool {
    fn split(shape: &str) -> (&str, Vec<&str>) {
        match shape.split_once('(') {
            Some((ty, args)) => (
                ty,
                args.trim_end_matches(')')
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .collect(),
            ),
            None => (shape, Vec::new()),
        }
    }
    let (found_ty, found_args) = split(found);
    let (wanted_ty, wanted_args) = split(wanted);
    found_ty == wanted_ty
        && wanted_args.iter().all(|a| found_args.contains(a))
        && found_args
            .iter()
            .all(|a| wanted_args.contains(a) || !a.ends_with('!'))
}

/// What of `want` the schema lacks or offers with another type, one line each.
fn missing_from_schema(want: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let have = shape(&onsale::graphql::sdl());
    let mut missing = Vec::new();
    for (type_name, fields) in want {
        for (field, ty) in fields {
            match have.get(type_name).and_then(|f| f.get(field)) {
                Some(found) if offers(found, ty) => {}
                Some(found) => missing.push(format!(
                    "{type_name}.{field}: contract {ty}, schema {found}"
                )),
                None => missing.push(format!("{type_name}.{field} ({ty}) is missing")),
            }
        }
    }
    missing
}

/// Every type, field, argument and enum value of the contract's ```` ```graphql ```` blocks is
/// in the schema with the same name and type (the schema may add more; it must never rename).
#[test]
fn schema_offers_everything_in_the_contract() {
    let want = shape(&contract_sdl("graphql"));
    assert!(
        want.values().map(BTreeMap::len).sum::<usize>() > 80,
        "the contract was read"
    );
    let missing = missing_from_schema(&want);
    assert!(
        missing.is_empty(),
        "the schema breaks the contract:\n{}",
        missing.join("\n")
    );
}

/// The contract's "Organizer features" block is fenced ```` ```sdl ````; it must stay valid SDL,
/// so that the check below can read it.
#[test]
fn organizer_features_block_is_valid_sdl() {
    let want = shape(&contract_sdl("sdl"));
    for name in ["Category", "Area", "Ticket", "SalesReport", "Mutation"] {
        assert!(want.contains_key(name), "the sdl block defines {name}");
    }
}

/// Every Organizer feature of the contract (its ```sdl block) is in the schema.
#[test]
fn schema_offers_the_organizer_features() {
    let missing = missing_from_schema(&shape(&contract_sdl("sdl")));
    assert!(
        missing.is_empty(),
        "the schema lacks {} Organizer features of the contract:\n{}",
        missing.len(),
        missing.join("\n")
    );
}
