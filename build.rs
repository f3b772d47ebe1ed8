use std::env;
use std::path::Path;

fn main() {
    // For MinGW targets this wants MSYS2's libnode.dll: scripts/mingw-libnode.
    napi_build::setup();
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // Cross-linking for macOS without Apple's SDK (zig's linker; README,
    // "Platforms"): the one framework the addon links, CoreFoundation (for
    // chrono's time-zone lookup, which napi's chrono support pulls in), is
    // found as scripts/macos-frameworks/CoreFoundation.framework/
    // CoreFoundation.tbd, a stub in the SDK's own text format naming the
    // install name and the symbols used. The addon binds to the real
    // CoreFoundation of the Mac it runs on. On a Mac the SDK's stub serves.
    // zig's linker also needs telling what Apple's does unasked: the
    // install name (else it is this machine's build path), and to drop
    // libraries no symbol is bound to (libc's `-liconv` and
    // cargo-zigbuild's `-lcharset`), so the addon links only libSystem and
    // CoreFoundation.
    let host = env::var("HOST").unwrap_or_default();
    if target_os == "macos" && !host.contains("apple") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/macos-frameworks");
        println!("cargo:rustc-link-search=framework={}", dir.display());
        println!("cargo:rerun-if-changed={}", dir.display());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/microsandbox.darwin-arm64.node");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-dead_strip_dylibs");
    }
}
