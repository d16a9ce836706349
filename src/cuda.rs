//! Getting the CUDA execution provider ready, and saying exactly what is missing when it cannot be.
//!
//! ONNX Runtime's CUDA provider (`libonnxruntime_providers_cuda.so`, which the GPU build of ONNX
//! Runtime ships beside its core library and the CPU build lacks) links the CUDA 13 runtime,
//! cuBLAS/cuBLASLt and cuRAND and loads cuDNN 9 at run time. Those libraries come from the
//! `nvidia-*` wheels on PyPI (`scripts/setup-gpu.sh` puts them in `.deps/nvidia/`) or from a system
//! CUDA install. Nothing here needs `LD_LIBRARY_PATH`: the libraries found under the search roots
//! are loaded by absolute path before the provider is registered, and the dynamic loader then
//! resolves the provider's dependencies by soname to those already-loaded copies.
//!
//! Search roots, in order: the folders in `$SPECDEC_CUDA_LIB_DIRS` (colon-separated), `nvidia/`
//! beside the folder of the loaded ONNX Runtime library (`.deps/nvidia` for
//! `.deps/onnxruntime-gpu/`), `nvidia/` two levels up (the `site-packages/nvidia` of a pip-installed
//! `onnxruntime-gpu`, whose library sits in `site-packages/onnxruntime/capi/`), and this checkout's
//! `.deps/nvidia`. Each root is searched a few levels deep (`nvidia/cu13/lib`, `nvidia/cudnn/lib`).

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Environment variable naming extra folders (colon-separated) to look for the CUDA libraries in.
pub const CUDA_LIB_DIRS_ENV: &str = "SPECDEC_CUDA_LIB_DIRS";

/// Where `scripts/setup-gpu.sh` puts the `nvidia-*` wheels' libraries in a source checkout.
pub const PROJECT_LOCAL_NVIDIA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/nvidia");

/// Where `scripts/setup-gpu.sh` puts the GPU build of ONNX Runtime in a source checkout.
pub const PROJECT_LOCAL_ORT_GPU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/onnxruntime-gpu/libonnxruntime.so");

/// The provider library ONNX Runtime loads from beside its own core library.
pub const PROVIDER_LIB: &str = "libonnxruntime_providers_cuda.so";
const PROVIDERS_SHARED_LIB: &str = "libonnxruntime_providers_shared.so";

/// A library the CUDA provider needs: its soname, what it is and which wheel has it.
struct Needed {
    soname: &'static str,
    what: &'static str,
    required: bool,
}

/// In dependency order (a library before those that link it), so one pass usually loads all.
const LIBS: &[Needed] = &[
    Needed { soname: "libcudart.so.13", what: "CUDA 13 runtime, pip nvidia-cuda-runtime", required: true },
    Needed { soname: "libnvJitLink.so.13", what: "nvJitLink, pip nvidia-nvjitlink", required: false },
    Needed { soname: "libnvrtc.so.13", what: "NVRTC, pip nvidia-cuda-nvrtc", required: false },
    Needed { soname: "libcublasLt.so.13", what: "cuBLASLt 13, pip nvidia-cublas", required: true },
    Needed { soname: "libcublas.so.13", what: "cuBLAS 13, pip nvidia-cublas", required: true },
    Needed { soname: "libcurand.so.10", what: "cuRAND, pip nvidia-curand", required: true },
    Needed { soname: "libcufft.so.12", what: "cuFFT, pip nvidia-cufft", required: false },
    Needed { soname: "libcudnn_graph.so.9", what: "cuDNN 9 graph, pip nvidia-cudnn-cu13", required: false },
    Needed { soname: "libcudnn_engines_precompiled.so.9", what: "cuDNN 9 engines, pip nvidia-cudnn-cu13", required: false },
    Needed { soname: "libcudnn_engines_runtime_compiled.so.9", what: "cuDNN 9 engines, pip nvidia-cudnn-cu13", required: false },
    Needed { soname: "libcudnn_heuristic.so.9", what: "cuDNN 9 heuristics, pip nvidia-cudnn-cu13", required: false },
    Needed { soname: "libcudnn_ops.so.9", what: "cuDNN 9 ops, pip nvidia-cudnn-cu13", required: false },
    Needed { soname: "libcudnn_cnn.so.9", what: "cuDNN 9 cnn, pip nvidia-cudnn-cu13", required: false },
    Needed { soname: "libcudnn_adv.so.9", what: "cuDNN 9 adv, pip nvidia-cudnn-cu13", required: false },
    Needed { soname: "libcudnn.so.9", what: "cuDNN 9, pip nvidia-cudnn-cu13", required: true },
];

/// The NVIDIA driver's library: never in a wheel, it comes with the driver.
const DRIVER_LIB: &str = "libcuda.so.1";

/// What preloading found, kept for the process (libraries stay loaded once loaded).
#[derive(Default)]
struct Preloaded {
    roots: Vec<PathBuf>,
    loaded: Vec<PathBuf>,
}

static PRELOADED: Mutex<Option<Preloaded>> = Mutex::new(None);

/// Make the CUDA provider loadable for the ONNX Runtime library at `ort_lib`: check that the
/// provider library is beside it, load the CUDA libraries found under the search roots, and check
/// that every library the provider needs can be loaded. The error names each missing piece.
pub(crate) fn prepare(ort_lib: &Path) -> Result<(), String> {
    let dir = std::fs::canonicalize(ort_lib)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| ort_lib.parent().map(Path::to_path_buf).unwrap_or_default());
    let missing_provider: Vec<&str> =
        [PROVIDER_LIB, PROVIDERS_SHARED_LIB].into_iter().filter(|f| !dir.join(f).is_file()).collect();
    if !missing_provider.is_empty() {
        let gpu = Path::new(PROJECT_LOCAL_ORT_GPU);
        let hint = if gpu.exists() {
            format!("load {} instead (ORT_DYLIB_PATH or --ort-lib, before any model is loaded)", gpu.display())
        } else {
            "run scripts/setup-gpu.sh (ONNX Runtime GPU 1.31.1 with CUDA 13 and cuDNN 9 from PyPI) and load \
             .deps/onnxruntime-gpu/libonnxruntime.so (ORT_DYLIB_PATH or --ort-lib)"
                .to_string()
        };
        let driver = match probe(DRIVER_LIB) {
            Ok(()) => String::new(),
            Err(_) => format!("; {DRIVER_LIB} (the NVIDIA driver) is missing too"),
        };
        return Err(format!(
            "the CUDA execution provider: {} missing beside the loaded ONNX Runtime {} (the CPU `onnxruntime` package has no CUDA provider); {hint}{driver}",
            missing_provider.join(" and ") + if missing_provider.len() > 1 { " are" } else { " is" },
            ort_lib.display()
        ));
    }
    preload(&dir);
    // "not found" says all; any other loader message (a wrong version, an undefined symbol) is kept.
    let entry = |soname: &str, what: &str, e: String| {
        if e.contains("cannot open shared object file") {
            format!("{soname} ({what})")
        } else {
            format!("{soname} ({what}: {e})")
        }
    };
    let mut missing = Vec::new();
    if let Err(e) = probe(DRIVER_LIB) {
        missing.push(entry(DRIVER_LIB, "the NVIDIA driver; is there an NVIDIA GPU with its driver on this machine?", e));
    }
    let driver_only = missing.len();
    for lib in LIBS.iter().filter(|l| l.required) {
        if let Err(e) = probe(lib.soname) {
            missing.push(entry(lib.soname, lib.what, e));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let hint = if missing.len() > driver_only {
        "; scripts/setup-gpu.sh fetches the CUDA 13 and cuDNN 9 wheels into .deps/nvidia"
    } else {
        ""
    };
    let roots = PRELOADED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|p| p.roots.clone()).unwrap_or_default();
    let searched = if roots.is_empty() {
        format!("no CUDA library folders found ({CUDA_LIB_DIRS_ENV}, {}/../nvidia, {PROJECT_LOCAL_NVIDIA})", dir.display())
    } else {
        format!(
            "searched {} and the system library path",
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    };
    Err(format!("the CUDA execution provider cannot load: missing {}; {searched}{hint}", missing.join(", ")))
}

/// Libraries loaded by absolute path from the search roots (for diagnostics and tests).
pub fn preloaded_libraries() -> Vec<PathBuf> {
    PRELOADED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|p| p.loaded.clone()).unwrap_or_default()
}

fn search_roots(ort_dir: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::var_os(CUDA_LIB_DIRS_ENV)
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    if let Some(up) = ort_dir.parent() {
        roots.push(up.join("nvidia"));
        if let Some(up2) = up.parent() {
            roots.push(up2.join("nvidia"));
        }
    }
    roots.push(PathBuf::from(PROJECT_LOCAL_NVIDIA));
    let mut seen = Vec::new();
    roots.retain(|r| {
        let key = std::fs::canonicalize(r).ok();
        let keep = key.is_some() && !seen.contains(&key);
        seen.push(key);
        keep
    });
    roots
}

/// Files named like `name` under `root`, at most `depth` folders down.
fn find(root: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut dirs = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            dirs.push(path);
        } else if e.file_name().to_str() == Some(name) {
            out.push(path);
        }
    }
    if depth > 0 {
        dirs.sort();
        for d in dirs {
            find(&d, name, depth - 1, out);
        }
    }
}

/// Load every listed library found under the search roots (once per process). A library whose
/// own dependencies are not loaded yet fails; passes repeat until nothing more loads.
fn preload(ort_dir: &Path) {
    let mut state = PRELOADED.lock().unwrap_or_else(|e| e.into_inner());
    if state.is_some() {
        return;
    }
    let roots = search_roots(ort_dir);
    let mut pending: Vec<PathBuf> = Vec::new();
    for lib in LIBS {
        // Already loadable by soname (preloaded before, or a system install): leave it alone.
        if probe_loaded(lib.soname) {
            continue;
        }
        let mut found = Vec::new();
        for r in &roots {
            find(r, lib.soname, 4, &mut found);
            if !found.is_empty() {
                break;
            }
        }
        pending.extend(found.into_iter().next());
    }
    let mut loaded = Vec::new();
    loop {
        let before = pending.len();
        pending.retain(|p| match ort::util::preload_dylib(p) {
            Ok(()) => {
                loaded.push(p.clone());
                false
            }
            Err(_) => true,
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    *state = Some(Preloaded { roots, loaded });
}

/// Whether a library with this soname is already in the process.
fn probe_loaded(soname: &str) -> bool {
    let Ok(name) = CString::new(soname) else { return false };
    // SAFETY: RTLD_NOLOAD only looks the name up among loaded objects; the handle is released.
    unsafe {
        let h = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if h.is_null() {
            return false;
        }
        libc::dlclose(h);
        true
    }
}

/// Try to load a library by soname the way the provider will (already-loaded copies first, then
/// the system search path); the loader's message on failure. A loaded library stays loaded (the
/// provider will need it).
fn probe(soname: &str) -> Result<(), String> {
    let name = CString::new(soname).map_err(|e| e.to_string())?;
    // SAFETY: dlopen/dlerror with a NUL-terminated name; dlerror's text is copied out at once.
    // The handle is deliberately kept: the provider loads the same library next.
    unsafe {
        let h = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_GLOBAL);
        if h.is_null() {
            let msg = libc::dlerror();
            return Err(if msg.is_null() {
                "cannot be loaded".into()
            } else {
                CStr::from_ptr(msg).to_string_lossy().into_owned()
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_runtime_is_refused_naming_the_provider_library() {
        let dir = std::env::temp_dir().join(format!("specdec-cuda-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libonnxruntime.so");
        std::fs::write(&lib, b"").unwrap();
        let e = prepare(&lib).unwrap_err();
        assert!(e.contains(PROVIDER_LIB) && e.contains("CUDA"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn libraries_are_found_a_few_levels_down() {
        let dir = std::env::temp_dir().join(format!("specdec-find-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("cu13/lib")).unwrap();
        std::fs::write(dir.join("cu13/lib/libcudart.so.13"), b"").unwrap();
        let mut out = Vec::new();
        find(&dir, "libcudart.so.13", 4, &mut out);
        assert_eq!(out, vec![dir.join("cu13/lib/libcudart.so.13")]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
