//! glibc extensions of libengram_malloc.so (malloc_trim, mallinfo2, mallinfo,
//! mallopt), checked by tests/c/abi.c under LD_PRELOAD.

use std::process::Command;

#[test]
fn trim_mallinfo_and_mallopt_tell_the_truth() {
    let out_dir = engram_tests::target_dir().join("abi-test");
    std::fs::create_dir_all(&out_dir).expect("create build dir");
    let exe = out_dir.join("abi");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/c/abi.c");
    let cc = Command::new("cc")
        .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("run cc (apt-get install gcc)");
    assert!(cc.success(), "compiling {src} failed");
    let out = Command::new(&exe)
        .env("LD_PRELOAD", engram_tests::malloc_so())
        .output()
        .expect("run abi test program");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "abi checks failed: {stderr}");
}
