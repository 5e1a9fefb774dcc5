//! `schema.graphql` is what the server serves, and offers all of the public contract.

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

/// Every type, field, argument and enum value of `../shared/CONTRACT.md` is in the schema
/// with the same name and type (the schema may add more; it must never rename).
#[test]
fn schema_offers_everything_in_the_contract() {
    use async_graphql::parser::parse_schema;
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    use std::collections::BTreeMap;

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/CONTRACT.md");
    let contract =
        std::fs::read_to_string(path).expect("../shared/CONTRACT.md sits beside the repo");
    let sdl: String = contract
        .split("```graphql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect::<Vec<_>>()
        .join("\n");
    // name -> (field or value -> "type(args)")
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
    let want = shape(&sdl);
    let have = shape(&onsale::graphql::sdl());
    let mut missing = Vec::new();
    for (type_name, fields) in &want {
        for (field, ty) in fields {
            match have.get(type_name).and_then(|f| f.get(field)) {
                Some(found) if found == ty => {}
                Some(found) => missing.push(format!(
                    "{type_name}.{field}: contract {ty}, schema {found}"
                )),
                None => missing.push(format!("{type_name}.{field} ({ty}) is missing")),
            }
        }
    }
    assert!(
        want.values().map(BTreeMap::len).sum::<usize>() > 80,
        "the contract was read"
    );
    assert!(
        missing.is_empty(),
        "the schema breaks the contract:\n{}",
        missing.join("\n")
    );
}
