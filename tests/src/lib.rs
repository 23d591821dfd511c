//! Shared helpers for engram's cross-crate integration tests.
//!
//! The whole-process tests run real programs under `LD_PRELOAD=libengram_malloc.so`.
//! The library is built by `cargo build --release -p engram-malloc` (the README's
//! test command does that first); [`malloc_so`] finds it next to the test binary's
//! target directory.

use std::path::PathBuf;

/// The cargo target directory the running test binary was built into.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// Path of the release `libengram_malloc.so`; panics with the command to run if missing.
pub fn malloc_so() -> PathBuf {
    let p = target_dir().join("release").join("libengram_malloc.so");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release -p engram-malloc` first (ci/test.sh does)",
        p.display()
    );
    p
}

/// Path of the release `engram` CLI binary; panics with the command to run if missing.
pub fn engram_bin() -> PathBuf {
    let p = target_dir().join("release").join("engram");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release -p engram-cli` first (ci/test.sh does)",
        p.display()
    );
    p
}
pub mod alloc_ops;
pub mod kvcache_ops;
pub mod kvcache_trace;
pub mod malloc_options;
pub mod policy_parse;

/// Compile `tests/c/<name>.c` with the system `cc` into the target directory and
/// return the executable's path. `flags` come before the source, `libs` after it.
/// Builds under a private name and renames, so a concurrent test process running
/// the previous binary is not disturbed.
pub fn compile_c(name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    compile_c_as(name, name, flags, libs)
}

/// [`compile_c`] of `tests/c/{name}.c` into `target/c-tests/{exe}`: one
/// source built more than one way.
pub fn compile_c_as(name: &str, exe: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("c")
        .join(format!("{name}.c"));
    let dir = target_dir().join("c-tests");
    std::fs::create_dir_all(&dir).expect("create target/c-tests");
    let out = dir.join(exe);
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let res = std::process::Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .args(libs)
        .output()
        .expect("running the system `cc` (apt-get install gcc)");
    assert!(
        res.status.success(),
        "cc failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::rename(&tmp, &out).expect("renaming the compiled test program");
    out
}

fn collect(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        // A read error leaves what was read: the status still tells the story.
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Wait for a child whose stdout and stderr are piped; kill it and panic (naming
/// `what`) if it runs longer than `timeout`, so a hung allocator fails the test
/// instead of hanging CI. Returns its status and stderr (then stdout, if any).
pub fn wait_with_timeout(
    mut child: std::process::Child,
    what: &str,
    timeout: std::time::Duration,
) -> (std::process::ExitStatus, String) {
    let out = collect(child.stdout.take().expect("piped stdout"));
    let err = collect(child.stderr.take().expect("piped stderr"));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the child") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap_or_default();
            panic!(
                "{what} still running after {timeout:?} (deadlock?); stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut text = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let stdout = out.join().unwrap_or_default();
    if !stdout.is_empty() {
        text.push_str("\n[stdout]\n");
        text.push_str(&String::from_utf8_lossy(&stdout));
    }
    (status, text)
}

/// A command for `program` under `LD_PRELOAD=libengram_malloc.so` with
/// `ENGRAM_MALLOC=options` (unset when empty), stdin closed, stdout/stderr piped.
pub fn preloaded(program: &std::path::Path, options: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env("LD_PRELOAD", malloc_so())
        .env_remove("ENGRAM_MALLOC")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if !options.is_empty() {
        cmd.env("ENGRAM_MALLOC", options);
    }
    cmd
}

/// Spawn `cmd` (stdout and stderr piped, as [`preloaded`] sets them), wait for
/// it under `timeout`, panic (naming `what`) unless it exits 0, and return its
/// output ([`wait_with_timeout`]'s text).
pub fn run_ok(mut cmd: std::process::Command, what: &str, timeout: std::time::Duration) -> String {
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let (status, out) = wait_with_timeout(child, what, timeout);
    assert!(
        status.success(),
        "{what} {}: {out}",
        describe_status(status)
    );
    out
}

/// "exited with N" / "died of signal N".
pub fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with {c}"),
        (None, Some(s)) => format!("died of signal {s}"),
        _ => "ended somehow".to_string(),
    }
}

/// xorshift64: deterministic sizes, keys and inputs with no crate.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
