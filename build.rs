use std::env;
use std::path::Path;

fn main() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "windows" && target_env == "gnu" {
        windows_gnu();
    } else {
        napi_build::setup();
    }
    // Cross-linking for macOS without Apple's SDK (zig's linker; README,
    // "Platforms"): the one framework the addon links, CoreFoundation (for
    // chrono's time-zone lookup, which napi's chrono support pulls in), is
    // found as scripts/macos-frameworks/CoreFoundation.framework/
    // CoreFoundation.tbd, a stub in the SDK's own text format naming the
    // install name and the symbols used. The addon binds to the real
    // CoreFoundation of the Mac it runs on. On a Mac the SDK's stub serves.
    let host = env::var("HOST").unwrap_or_default();
    if target_os == "macos" && !host.contains("apple") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/macos-frameworks");
        println!("cargo:rustc-link-search=framework={}", dir.display());
        println!("cargo:rerun-if-changed={}", dir.display());
    }
}

/// What `napi_build::setup` does for a MinGW build, less linking against
/// `libnode.dll`: that DLL exists only in MSYS2's Node. The official
/// node.exe exports N-API from the executable itself, and napi-rs resolves
/// every N-API function from the running process when the addon loads, so
/// the DLL imports nothing from Node and loads in the official node.exe
/// (and in MSYS2's). The other lines keep napi's CLI able to force a rebuild
/// (for its type definitions) and declare napi's cfgs.
fn windows_gnu() {
    println!("cargo::rustc-check-cfg=cfg(napi_wasi_threads)");
    println!("cargo::rustc-check-cfg=cfg(napi_wasi_no_heap_sync)");
    for var in ["DEBUG_GENERATED_CODE", "TYPE_DEF_TMP_PATH", "CARGO_CFG_NAPI_RS_CLI_VERSION", "NAPI_DEBUG_GENERATED_CODE", "NAPI_TYPE_DEF_TMP_FOLDER"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let package = env::var("CARGO_PKG_NAME").unwrap_or_default().to_uppercase().replace('-', "_");
    println!("cargo::rerun-if-env-changed=NAPI_FORCE_BUILD_{package}");
}
