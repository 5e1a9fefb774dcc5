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
