//! Compiles the BPF C programs in `bpf/` with clang (`-target bpf -O2 -g`, BTF included) into
//! `$OUT_DIR`, to be embedded with `include_bytes!`.
//!
//! Without clang the crate still builds: the `xdp_bpf_built` cfg stays unset and
//! `KernelPath::open` reports "kernel path unavailable: built without clang" at runtime. When
//! clang is present but a program fails to compile, the build goes on the same way with the
//! compiler output as cargo warnings, unless `XDP_FORWARDER_REQUIRE_BPF=1` makes it fatal.
//!
//! Environment: `CLANG` picks the compiler (default `clang`); `XDP_FORWARDER_NO_BPF=1` builds as
//! if clang were missing.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: [&str; 3] = ["guard", "fanout", "rewrite"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(xdp_bpf_built)");
    println!("cargo::rerun-if-changed=bpf");
    println!("cargo::rerun-if-env-changed=CLANG");
    println!("cargo::rerun-if-env-changed=XDP_FORWARDER_NO_BPF");
    println!("cargo::rerun-if-env-changed=XDP_FORWARDER_REQUIRE_BPF");

    let require = env::var("XDP_FORWARDER_REQUIRE_BPF").is_ok_and(|v| v == "1");
    let (Some(out_dir), Some(manifest)) =
        (env::var_os("OUT_DIR"), env::var_os("CARGO_MANIFEST_DIR"))
    else {
        panic!("cargo did not set OUT_DIR / CARGO_MANIFEST_DIR");
    };
    let out_dir = PathBuf::from(out_dir);
    let bpf_dir = PathBuf::from(manifest).join("bpf");

    let status = if env::var("XDP_FORWARDER_NO_BPF").is_ok_and(|v| v == "1") {
        Status::NoClang
    } else {
        let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
        if !clang_works(&clang) {
            Status::NoClang
        } else {
            compile_all(&clang, &bpf_dir, &out_dir)
        }
    };

    match status {
        Status::Built => println!("cargo::rustc-cfg=xdp_bpf_built"),
        Status::NoClang => {
            if require {
                panic!("XDP_FORWARDER_REQUIRE_BPF=1 but clang was not found (set CLANG)");
            }
            println!(
                "cargo::warning=clang not found: xdp-forwarder built without its BPF programs \
                 (the SFU serves every leg in userspace)"
            );
            println!("cargo::rustc-env=XDP_FORWARDER_BPF_MISSING=no-clang");
        }
        Status::CompileFailed => {
            if require {
                panic!("XDP_FORWARDER_REQUIRE_BPF=1 but the BPF programs failed to compile");
            }
            println!("cargo::rustc-env=XDP_FORWARDER_BPF_MISSING=compile-failed");
        }
    }
}

enum Status {
    Built,
    NoClang,
    CompileFailed,
}

fn clang_works(clang: &str) -> bool {
    Command::new(clang)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Debian/Ubuntu keep `asm/types.h` (needed by `linux/types.h`) under a multiarch directory.
fn multiarch_include() -> Option<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").ok()?;
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => return None,
    };
    let dir = Path::new("/usr/include").join(triple);
    dir.is_dir().then_some(dir)
}

fn compile_all(clang: &str, bpf_dir: &Path, out_dir: &Path) -> Status {
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    for name in PROGRAMS {
        let src = bpf_dir.join(format!("{name}.c"));
        let obj = out_dir.join(format!("{name}.o"));
        let mut cmd = Command::new(clang);
        cmd.args([
            "-target", target, "-O2", "-g", "-Wall", "-Wextra", "-Werror",
        ])
        .arg("-I")
        .arg(bpf_dir);
        if let Some(dir) = multiarch_include() {
            cmd.arg("-I").arg(dir);
        }
        cmd.arg("-c").arg(&src).arg("-o").arg(&obj);
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                println!("cargo::warning=clang failed on bpf/{name}.c; kernel path disabled:");
                for line in String::from_utf8_lossy(&out.stderr).lines().take(40) {
                    println!("cargo::warning=  {line}");
                }
                return Status::CompileFailed;
            }
            Err(e) => {
                println!("cargo::warning=could not run {clang} for bpf/{name}.c: {e}");
                return Status::CompileFailed;
            }
        }
    }
    Status::Built
}
