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

/// Run `python3 -c script` on the allocator under `ulimit -v 3000000` (3 GB of
/// address space, as under some batch schedulers and valgrind); its stdout,
/// trimmed, after asserting it succeeded.
fn python_under_ulimit(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v 3000000 && exec python3 -c '{script}'"))
        .env("LD_PRELOAD", engram_tests::malloc_so())
        .output()
        .expect("run python3 (apt-get install python3)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 failed under ulimit -v: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// With the address space limited, the allocator shrinks its reservations
/// instead of failing every malloc.
#[test]
fn runs_under_a_small_address_space_limit() {
    let out = python_under_ulimit(
        "d = {str(i): [i] * 8 for i in range(200000)}; print(sum(len(v) for v in d.values()))",
    );
    assert_eq!(out, "1600000");
}

/// Freed large blocks keep their address ranges reserved for a while (to catch a
/// double free after the range would have been reused); under `ulimit -v` those
/// reservations must not starve new blocks: they are capped in bytes and given
/// back when a mapping fails. 60 blocks of 50-250 MiB, one at a time, in 3 GB.
#[test]
fn large_block_churn_under_a_small_address_space_limit() {
    let out = python_under_ulimit(
        "print(sum(len(bytearray((50 + 37 * i % 200) << 20)) >> 20 for i in range(60)))",
    );
    let want: u64 = (0..60u64).map(|i| 50 + 37 * i % 200).sum();
    assert_eq!(out, want.to_string());
}

/// A vfork child (Python's subprocess, posix_spawn) shares the parent's memory
/// and skips the atfork handlers. When its exec fails it leaves through `_exit`:
/// under `stats=1` it printed the parent's counters under its own pid and took
/// the parent's one report, so the parent printed none.
#[test]
fn a_vfork_child_leaves_the_report_to_its_parent() {
    // The interpreter itself, not a wrapper script (pyenv shims spawn shells).
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3");
    let out = Command::new(python)
        .arg("-c")
        .arg(
            "import os, subprocess\n\
             print(os.getpid(), flush=True)\n\
             try:\n    subprocess.run(['/nonexistent/engram-vfork-test'])\n\
             except FileNotFoundError:\n    pass\n",
        )
        .env("LD_PRELOAD", engram_tests::malloc_so())
        .env("ENGRAM_MALLOC", "stats=1")
        .output()
        .expect("run python3 (apt-get install python3)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 failed: {stderr}");
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // With vfork (CPython 3.10+ on Linux) the child writes no line; a Python
    // that forks instead lets its child report its own. Either way the
    // parent's line is there, once.
    let mine = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("engram-malloc: report pid={pid} ")))
        .count();
    assert_eq!(
        mine, 1,
        "want the parent's ({pid}) report line once: {stderr}"
    );
}

/// Compiles tests/c/NAME.c, runs it preloaded with `ENGRAM_MALLOC=stats=1`,
/// checks it succeeded and returns its stdout and stderr.
fn run_c_with_stats(name: &str) -> (String, String) {
    let exe = engram_tests::compile_c(name, &["-O1", "-Wall", "-Wextra", "-Werror"], &[]);
    let out = Command::new(&exe)
        .env("LD_PRELOAD", engram_tests::malloc_so())
        .env("ENGRAM_MALLOC", "stats=1")
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// One report line per process under `stats=1`: none from a vfork child that
/// leaves before the parent's first malloc, and forked children count their own
/// allocations, not the parent's again (`engram run` adds the lines up).
#[test]
fn fork_children_report_their_own_allocations() {
    let (stdout, stderr) = run_c_with_stats("fork_report");
    let parent = stdout.trim().to_owned();
    let mut lines: Vec<(String, u64)> = Vec::new();
    for l in stderr
        .lines()
        .filter(|l| l.starts_with("engram-malloc: report "))
    {
        let field = |k: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {l}"))
                .to_owned()
        };
        lines.push((field("pid="), field("allocs=").parse().unwrap()));
    }
    assert_eq!(
        lines.len(),
        4,
        "want the parent's and 3 children's lines: {stderr}"
    );
    let (mine, children): (Vec<_>, Vec<_>) = lines.into_iter().partition(|(p, _)| *p == parent);
    assert_eq!(mine.len(), 1, "one line from the parent {parent}: {stderr}");
    assert!(mine[0].1 >= 1000, "{stderr}");
    for (pid, allocs) in children {
        assert!(allocs < 100, "child {pid} counted {allocs}: {stderr}");
    }
}

/// quick_exit skips destructors and ends in glibc's internal `_exit`: the
/// report comes from an at_quick_exit handler.
#[test]
fn quick_exit_still_reports() {
    let (_, stderr) = run_c_with_stats("quick_exit");
    let reports = stderr
        .lines()
        .filter(|l| l.starts_with("engram-malloc: report ") && l.contains(" allocs=1 "))
        .count();
    assert_eq!(reports, 1, "{stderr}");
}

/// The report pipe's reader is gone (engram run killed): the program still
/// exits with its own status, not killed by SIGPIPE writing the report.
#[test]
fn a_closed_report_pipe_does_not_kill_the_program() {
    let script = "import os, subprocess, sys\n\
                  r, w = os.pipe()\n\
                  os.close(r)\n\
                  env = dict(os.environ, LD_PRELOAD=sys.argv[1], ENGRAM_MALLOC='stats_fd=%d' % w)\n\
                  print(subprocess.run(['sh', '-c', 'exit 3'], env=env, pass_fds=(w,)).returncode)\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(engram_tests::malloc_so())
        .output()
        .expect("run python3 (apt-get install python3)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3", "{stderr}");
}

/// fork() in a program whose library registered, from its constructor (which
/// runs before the preloaded allocator's), a prepare handler that allocates:
/// that handler runs after engram's has taken every allocator lock, in the
/// forking thread. Review finding: fork hung forever; glibc's malloc runs it.
#[test]
fn fork_with_an_allocating_prepare_handler_does_not_hang() {
    let lib = engram_tests::compile_c(
        "atfork_lib",
        &["-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"],
        &[],
    );
    let dir = lib.parent().expect("c-tests dir").display().to_string();
    let exe = engram_tests::compile_c(
        "atfork_prep",
        &["-O1", "-Wall", "-Wextra", "-Werror", "-Wl,--no-as-needed"],
        &[
            lib.to_str().expect("utf-8 path"),
            &format!("-Wl,-rpath,{dir}"),
        ],
    );
    let out = engram_tests::run_ok(
        engram_tests::preloaded(&exe, ""),
        "atfork_prep",
        std::time::Duration::from_secs(60),
    );
    assert!(out.contains("fork ok"), "{out}");
}

/// With `canary=0`, free_sized checks the size against the slot's class. Once
/// a class's region is full, malloc serves its sizes from a bigger class: a
/// correct free_sized of such a block must pass (review finding: it aborted
/// with a size mismatch). The address-space limit shrinks the regions so the
/// 16-byte class fills after about 4M blocks.
#[test]
fn free_sized_of_a_block_spilled_to_a_bigger_class_is_not_a_mismatch() {
    let exe = engram_tests::compile_c(
        "class_full",
        &["-O1", "-Wall", "-Wextra", "-Werror"],
        &["-ldl"],
    );
    let mut cmd = engram_tests::preloaded(std::path::Path::new("sh"), "canary=0");
    cmd.arg("-c")
        .arg("ulimit -v 6000000 && exec \"$0\"")
        .arg(&exe);
    let out = engram_tests::run_ok(cmd, "class_full", std::time::Duration::from_secs(120));
    assert!(out.contains("free_sized ok"), "{out}");
}

/// `__tls_get_addr` may grow a thread's DTV with malloc (when a library with
/// TLS was dlopen'ed after the thread started): a malloc that reached its own
/// thread cache through `__tls_get_addr` would re-enter itself from there.
/// The preloaded library keeps its cache in initial-exec TLS, so none of its
/// own code calls `__tls_get_addr` (review, 2026-11-25: `tc_slow` did, once
/// per thread; glibc 2.36 happened to cope). Read from the machine code:
/// objdump is in binutils, which gcc pulls in.
#[test]
fn no_allocator_code_calls_tls_get_addr() {
    let so = engram_tests::malloc_so();
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(&so)
        .output()
        .expect("run objdump (apt-get install binutils)");
    assert!(out.status.success(), "objdump failed on {}", so.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut func = "";
    let mut callers = Vec::new();
    let mut seen_malloc = false;
    for line in text.lines() {
        if let Some(name) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")) {
            func = name.1;
            seen_malloc |= func == "malloc";
            continue;
        }
        let ours = func.contains("engram_alloc")
            || func.contains("engram_malloc")
            || matches!(func, "malloc" | "free" | "calloc" | "realloc" | "cfree");
        if ours && line.contains("__tls_get_addr") && !callers.contains(&func) {
            callers.push(func);
        }
    }
    assert!(
        seen_malloc,
        "no malloc in the disassembly of {}",
        so.display()
    );
    assert!(
        callers.is_empty(),
        "allocator functions calling __tls_get_addr: {callers:?}"
    );
}

/// The case above, run: a thread that has not called malloc yet while the
/// program dlopens libraries with TLS variables (so its DTV is stale) makes
/// its first malloc afterwards. It must return, not recurse or deadlock.
#[test]
fn a_first_malloc_after_dlopen_of_tls_libraries_returns() {
    let dir = std::env::temp_dir().join(format!("engram-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=8 {
        let src = dir.join(format!("m{i}.c"));
        std::fs::write(
            &src,
            format!("__thread char big{i}[4096]; __thread int v{i} = {i}; int get{i}(void) {{ return v{i} + big{i}[0]; }}\n"),
        )
        .unwrap();
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.join(format!("libm{i}.so")))
            .arg(&src)
            .status()
            .expect("run cc (apt-get install gcc)");
        assert!(st.success());
    }
    let exe = engram_tests::compile_c(
        "tls_dlopen",
        &["-O1", "-Wall", "-Wextra", "-Werror"],
        &["-ldl"],
    );
    let out = Command::new(&exe)
        .arg(&dir)
        .env("LD_PRELOAD", engram_tests::malloc_so())
        .output()
        .expect("run tls_dlopen");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("first malloc: ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The staticlib, linked into a program (dynamic PIE and fully static): its
/// malloc is the one in use (the report line at exit says so) and its
/// initial-exec thread cache works in every thread.
#[test]
fn the_static_library_links_into_programs() {
    let lib = engram_tests::malloc_so().with_file_name("libengram_malloc.a");
    assert!(lib.exists(), "{} is missing", lib.display());
    let lib = lib.to_str().unwrap();
    for (name, extra) in [
        ("static_link", &[][..]),
        ("static_link_full", &["-static"][..]),
    ] {
        let mut flags = vec!["-O1", "-Wall", "-Wextra", "-Werror"];
        flags.extend_from_slice(extra);
        let exe = engram_tests::compile_c_as(
            "static_link",
            name,
            &flags,
            &[lib, "-lpthread", "-ldl", "-lm"],
        );
        let out = Command::new(&exe)
            .env("ENGRAM_MALLOC", "stats=1")
            .output()
            .expect("run the statically linked program");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.trim() == "ok",
            "{name}: {stdout}{stderr}"
        );
        assert!(
            stderr.contains("engram-malloc: report") && stderr.contains("allocs=4000"),
            "{name}: no report line from engram's malloc: {stderr}"
        );
    }
}
