//! The committed include/vx.h must be exactly what cbindgen generates from
//! the sources. `VX_BLESS=1 cargo test --test header` rewrites it.

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        // Only the ffi module tree: the C API is what it declares, nothing else.
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen failed");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = root.join("include/vx.h");
    if std::env::var_os("VX_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/vx.h is stale: run `VX_BLESS=1 cargo test --test header` and commit the result"
    );
}

#[test]
fn header_version_macros_match_cargo() {
    let header = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/vx.h")).unwrap();
    let want = [
        ("VX_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("VX_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("VX_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ];
    for (name, value) in want {
        let line = format!("#define {name} {value}");
        assert!(header.contains(&line), "header lacks `{line}`");
    }
}
