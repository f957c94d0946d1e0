//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no protoc.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut files = Vec::new();
    collect(&root, &root, &mut files)?;
    files.sort();
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    let fds = compiler.file_descriptor_set();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // compile_fds does not write file_descriptor_set_path: reflection needs the set, so write it.
    // Encode through protox, not prost_types: prost drops unknown fields, and the
    // custom method options (scopes, HTTP routes) the gateway reads are exactly that.
    std::fs::write(
        out_dir.join("rapport_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    write_methods(
        &compiler.descriptor_pool(),
        &out_dir.join("rapport_methods.rs"),
    )?;
    let mut config = prost_build::Config::new();
    // Event payloads travel as google.protobuf.Any: messages need their type
    // names, with the conventional type URL prefix.
    config
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");
    tonic_prost_build::configure()
        .build_client(env::var_os("CARGO_FEATURE_CLIENT").is_some())
        .build_server(env::var_os("CARGO_FEATURE_SERVER").is_some())
        .build_transport(env::var_os("CARGO_FEATURE_CLIENT").is_some())
        // BTreeMap keeps map encoding deterministic: request fingerprints for
        // idempotency hash the encoded bytes.
        .btree_map(".")
        .compile_fds_with_config(fds, config)?;
    // compile_fds emits no rerun-if-changed lines of its own.
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}

fn collect(
    root: &PathBuf,
    dir: &PathBuf,
    out: &mut Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
        }
    }
    Ok(())
}

/// Writes the table of every RPC: its gRPC path, its request message and the
/// scope its contract declares (`rapport.api.v1.required_scope`). Services
/// check that scope themselves, behind the gateway (defence in depth), and
/// need it without decoding descriptors at run time.
fn write_methods(
    pool: &protox::prost_reflect::DescriptorPool,
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use protox::prost_reflect::Value;
    let scope_ext = pool.get_extension_by_name("rapport.api.v1.required_scope");
    let mut rows = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let options = method.options();
            let scope = scope_ext
                .as_ref()
                .filter(|ext| options.has_extension(ext))
                .and_then(|ext| match options.get_extension(ext).as_ref() {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            rows.push(format!(
                "    Method {{ path: {:?}, request: {:?}, scope: {:?} }},\n",
                format!("/{}/{}", service.full_name(), method.name()),
                method.input().full_name(),
                scope
            ));
        }
    }
    rows.sort();
    std::fs::write(
        path,
        format!(
            "/// Every RPC of the contracts.\npub const METHODS: &[Method] = &[\n{}];\n",
            rows.concat()
        ),
    )?;
    Ok(())
}
