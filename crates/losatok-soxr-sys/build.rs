//! Builds libsoxr the way python-soxr's CMake build does, from the libsoxr 0.1.3 C sources
//! that the crates.io package `soxr-sys` 0.1.3 ships (a build-dependency of this crate, so
//! Cargo downloads and checksums it; it is never linked). Nothing of libsoxr is copied into
//! this repository: the sources are found through `cargo metadata --offline`, or in the folder
//! named by `LOSATOK_SOXR_SRC`.
//!
//! python-soxr 1.1 builds its bundled libsoxr (0.1.3 plus fixes that do not touch float32
//! resampling on x86-64) with `add_subdirectory(libsoxr)`, CMake defaults except `WITH_OPENMP=OFF`,
//! `WITH_LSR_BINDINGS=OFF`, `BUILD_TESTS=OFF`, `BUILD_SHARED_LIBS=ON`, and build type
//! Release (scikit-build-core's default). On x86-64 that gives (see libsoxr's `CMakeLists.txt`, `src/CMakeLists.txt`,
//! `cmake/Modules/FindSIMD32.cmake`, `FindSIMD64.cmake`):
//!
//! * engines `cr32`, `cr32s` (SSE, no extra flag), `cr64`, `cr64s` (built with `-mavx`, used
//!   only on CPUs with AVX) and `vr32`; PFFFT as the DFT of the SIMD engines, the Ooura
//!   FFT (`fft4g`) for the scalar ones; no libavcodec;
//! * `-std=gnu99 -DSOXR_LIB -fvisibility=hidden -DSOXR_VISIBILITY`, `-O3 -DNDEBUG` (the
//!   warning flags are left out; `-ffp-contract=off` is added on x86-64, a no-op for the
//!   baseline ISA that only matters if the user's CFLAGS enable FMA);
//! * `soxr-config.h` from `soxr-config.h.in` with the values written by [`config_header`].
//!
//! On aarch64 (GCC/Clang) CMake finds NEON without flags for `cr32s` and no `cr64s`; on
//! other targets this build keeps to the portable engines. The runtime choice between
//! `cr32` and `cr32s` (and `cr64` / `cr64s`) is libsoxr's own: see the crate docs.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// Which optional parts of libsoxr are compiled for the target.
struct Config {
    /// `WITH_CR32S` (and `WITH_PFFFT`): the single-precision SIMD engine.
    cr32s: bool,
    /// `WITH_CR64S`: the double-precision AVX engine (x86-64 only).
    cr64s: bool,
    big_endian: bool,
    /// GCC / Clang style command line (as opposed to MSVC).
    gnu_like: bool,
    x86_64: bool,
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    // Stage the sources in OUT_DIR: soxr-sys ships its own `soxr-config.h` next to them, which
    // a quoted #include would find before ours.
    let pkg_src = soxr_sources(&manifest);
    let src = out_dir.join("libsoxr-src");
    fs::create_dir_all(&src).expect("create OUT_DIR/libsoxr-src");
    for entry in fs::read_dir(&pkg_src).expect("read the libsoxr sources") {
        let path = entry.expect("read the libsoxr sources").path();
        let name = path.file_name().expect("file name").to_owned();
        let is_c = matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "h"));
        if is_c && name != "soxr-config.h" {
            fs::copy(&path, src.join(&name)).expect("stage a libsoxr source");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LOSATOK_SOXR_SRC");

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let msvc = target_env == "msvc";
    let cfg = Config {
        cr32s: arch == "x86_64" || (arch == "aarch64" && !msvc),
        cr64s: arch == "x86_64",
        big_endian: env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() == Ok("big"),
        gnu_like: !msvc,
        x86_64: arch == "x86_64",
    };

    let include = out_dir.join("include");
    fs::create_dir_all(&include).expect("create OUT_DIR/include");
    fs::write(include.join("soxr-config.h"), config_header(&cfg, &os))
        .expect("write soxr-config.h");

    // Same list and order as libsoxr's src/CMakeLists.txt (WITH_PFFFT, no AVCODEC).
    let mut sources = vec![
        "soxr", "data-io", "dbesi0", "filter", "fft4g64", "cr", "cr32", "fft4g32", "cr64", "vr32",
    ];
    if cfg.cr32s {
        sources.extend(["cr32s", "pffft32s", "util32s"]);
    }

    let mut lib = base_build(&cfg, &include, &src);
    for s in &sources {
        lib.file(src.join(format!("{s}.c")));
    }
    if cfg.cr64s {
        // SIMD64_C_FLAGS apply to these three files only (CMake's set_property(SOURCE ...)).
        let mut avx = base_build(&cfg, &include, &src);
        avx.flag(if cfg.gnu_like { "-mavx" } else { "/arch:AVX" });
        for s in ["cr64s", "pffft64s", "util64s"] {
            avx.file(src.join(format!("{s}.c")));
        }
        for obj in avx.compile_intermediates() {
            lib.object(obj);
        }
    }
    lib.compile("soxr");

    if os != "windows" {
        println!("cargo:rustc-link-lib=m");
    }
    println!("cargo:rustc-check-cfg=cfg(soxr_cr32s, soxr_cr64s)");
    if cfg.cr32s {
        println!("cargo:rustc-cfg=soxr_cr32s");
    }
    if cfg.cr64s {
        println!("cargo:rustc-cfg=soxr_cr64s");
    }
}

/// The `src/` folder of the `soxr-sys` 0.1.3 package (libsoxr 0.1.3's C sources).
fn soxr_sources(manifest: &Path) -> PathBuf {
    if let Some(p) = env::var_os("LOSATOK_SOXR_SRC") {
        return PathBuf::from(p);
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // soxr-sys is a build-dependency, so it is in the host platform's graph (the only one
    // whose packages are sure to be downloaded).
    let host = env::var("HOST").expect("HOST");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(&host)
        .arg("--manifest-path")
        .arg(manifest.join("Cargo.toml"))
        .output();
    let found = out.ok().filter(|o| o.status.success()).and_then(|o| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        v["packages"].as_array()?.iter().find_map(|p| {
            (p["name"] == "soxr-sys" && p["version"] == SOXR_SYS_VERSION)
                .then(|| p["manifest_path"].as_str().map(PathBuf::from))
                .flatten()
        })
    });
    match found {
        Some(manifest_path) => manifest_path
            .parent()
            .expect("a manifest has a folder")
            .join("src"),
        None => panic!(
            "cannot locate the libsoxr sources of the soxr-sys {SOXR_SYS_VERSION} package \
             (`cargo metadata --offline` failed); set LOSATOK_SOXR_SRC to its src/ folder"
        ),
    }
}

/// The `soxr-sys` package whose libsoxr sources are compiled (pinned in Cargo.toml).
const SOXR_SYS_VERSION: &str = "0.1.3";

/// A `cc::Build` with the compiler settings CMake gives every libsoxr source.
fn base_build(cfg: &Config, include: &Path, src: &Path) -> cc::Build {
    let mut b = cc::Build::new();
    b.include(include).include(src);
    // CMake Release (scikit-build-core's default build type): -O3 -DNDEBUG, whatever the
    // cargo profile, so that debug and release builds compute the same samples.
    b.opt_level(3).define("NDEBUG", None);
    b.define("SOXR_LIB", None);
    // Third-party code: its warnings are not ours to fix.
    b.warnings(false).extra_warnings(false);
    if cfg.gnu_like {
        b.flag("-std=gnu99")
            .flag("-fvisibility=hidden")
            .define("SOXR_VISIBILITY", None)
            .flag("-Werror=implicit");
        if cfg.x86_64 {
            // No-op on the x86-64 baseline (no FMA instructions), as python-soxr's wheels are
            // built; keeps a user's CFLAGS=-march=... from fusing a*b+c and changing the
            // rounding.
            b.flag("-ffp-contract=off");
        }
    } else {
        b.define("_USE_MATH_DEFINES", None)
            .define("_CRT_SECURE_NO_WARNINGS", None);
    }
    b
}

/// `soxr-config.h` as CMake writes it from `soxr-config.h.in` for this target.
fn config_header(cfg: &Config, os: &str) -> String {
    let b = |v: bool| u8::from(v);
    let entries: [(&str, u8); 17] = [
        ("AVCODEC_FOUND", 0),
        ("AVUTIL_FOUND", 0),
        ("WITH_PFFFT", b(cfg.cr32s)),
        ("HAVE_FENV_H", 1),
        ("HAVE_STDBOOL_H", 1),
        ("HAVE_STDINT_H", 1),
        ("HAVE_GETAUXVAL", b(os == "linux" || os == "android")),
        ("HAVE_LRINT", 1),
        ("HAVE_BIGENDIAN", b(cfg.big_endian)),
        ("WITH_CR32", 1),
        ("WITH_CR32S", b(cfg.cr32s)),
        ("WITH_CR64", 1),
        ("WITH_CR64S", b(cfg.cr64s)),
        ("WITH_VR32", 1),
        ("WITH_HI_PREC_CLOCK", 1),
        ("WITH_FLOAT_STD_PREC_CLOCK", 0),
        ("WITH_DEV_TRACE", 1),
    ];
    let mut h = String::from(
        "/* Generated by losatok-soxr-sys/build.rs: libsoxr's soxr-config.h.in with the\n \
         * values its CMake build (as configured by python-soxr) gives this target. */\n\n\
         #if !defined soxr_config_included\n#define soxr_config_included\n\n",
    );
    for (name, value) in entries {
        h.push_str(&format!("#define {name} {value}\n"));
    }
    h.push_str("\n#endif\n");
    h
}
