//! glibc extensions of libengram_malloc.so (malloc_trim, mallinfo2, mallinfo,
//! mallopt), checked by tests/c/abi.c under LD_PRELOAD.

use std::process::Command;

#[test]
fn trim_mallinfo_and_mallopt_tell_the_truth() {
    let exe = engram_tests::compile_c("abi", &["-O1", "-Wall", "-Wextra", "-Werror"], &[]);
    let out = Command::new(&exe)
        .env("LD_PRELOAD", engram_tests::malloc_so())
        .output()
        .expect("run abi test program");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "abi checks failed: {stderr}");
}

/// With the address space limited (`ulimit -v`, as under some batch schedulers and
/// valgrind), the allocator shrinks its reservations instead of failing every malloc.
#[test]
fn runs_under_a_small_address_space_limit() {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "ulimit -v 3000000 && exec python3 -c \
             'd = {str(i): [i] * 8 for i in range(200000)}; print(sum(len(v) for v in d.values()))'",
        )
        .env("LD_PRELOAD", engram_tests::malloc_so())
        .output()
        .expect("run python3 (apt-get install python3)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 failed under ulimit -v: {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1600000");
}
