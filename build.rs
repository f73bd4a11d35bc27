//! Embeds every template under table-templates/ into the binary, so an installed
//! pathfinder-db needs no files beside it (`templates_dir` in the config can still
//! point at a directory on disk).
use std::{env, fs, path::Path};

fn collect(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read table-templates")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.to_string_lossy().ends_with(".tera") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
        }
    }
}

fn main() {
    // Read at run time: a build script binary reused from another checkout (a
    // copied target folder) must still embed this checkout's templates.
    let root =
        Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("table-templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut names = Vec::new();
    collect(&root, &root, &mut names);
    let mut code = String::from("pub static EMBEDDED_TEMPLATES: &[(&str, &str)] = &[\n");
    for name in &names {
        println!("cargo:rerun-if-changed={}", root.join(name).display());
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            root.join(name).display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("templates.rs");
    fs::write(out, code).expect("write templates.rs");
}
