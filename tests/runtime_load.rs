//! Loading ONNX Runtime: failures name the path and the loader's reason, and a failed attempt
//! does not poison the process. Its own test binary, since the runtime is loaded once per process.

use specdec::{runtime, Error};

#[test]
fn load_failures_are_errors_then_a_good_path_works() {
    let e = runtime::init(Some("/no/such/libonnxruntime.so".as_ref())).unwrap_err();
    assert!(matches!(e, Error::RuntimeLoad { .. }), "{e}");
    assert!(e.to_string().contains("/no/such/libonnxruntime.so") && e.to_string().contains("no such file"), "{e}");

    // A file that exists but is not a shared library: the dlopen reason must come through.
    let not_a_lib = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let e = runtime::init(Some(not_a_lib.as_ref())).unwrap_err();
    assert!(e.to_string().contains("Cargo.toml") && e.to_string().to_lowercase().contains("elf"), "{e}");

    let loaded = runtime::init(None).expect("default ONNX Runtime location");
    assert_eq!(runtime::init(None).unwrap(), loaded);
    let e = runtime::init(Some("/another/libonnxruntime.so".as_ref())).unwrap_err();
    assert!(e.to_string().contains("already loaded"), "{e}");
}
