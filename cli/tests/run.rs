//! `engram run` end to end, through the built binary.
//!
//! Two kinds of tests:
//! - with the real libengram_malloc.so (target/release, or $ENGRAM_MALLOC_LIB),
//!   skipped with a message while it has not been built;
//! - hermetic ones where a shell script plays the allocator: it writes report
//!   lines to the `stats_fd` named in its ENGRAM_MALLOC, and the preloaded
//!   library is the C library itself (already loaded, so preloading it changes
//!   nothing). They check the pipe, the environment, parsing and exit codes
//!   whether or not the allocator exists yet.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENGRAM: &str = env!("CARGO_BIN_EXE_engram");

/// The real allocator library, if built.
fn real_library() -> Option<PathBuf> {
    let path = match std::env::var_os("ENGRAM_MALLOC_LIB") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/libengram_malloc.so"),
    };
    // A skipped test proves nothing: the README's test command (ci/test.sh)
    // builds the library first; a bare `cargo test` must say what is missing.
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release -p engram-malloc` first (ci/test.sh does)",
        path.display()
    );
    Some(path)
}

/// The C library this test runs on: a harmless stand-in for LD_PRELOAD.
fn stand_in_library() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let found = maps
        .lines()
        .filter_map(|line| line.split_ascii_whitespace().nth(5))
        .map(PathBuf::from)
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libc.so") || name.starts_with("libc-"))
        });
    if found.is_none() {
        println!("skipped: no shared C library mapped in this process");
    }
    found
}

/// `engram <args>` with a clean allocator environment.
fn engram(args: &[&str]) -> Command {
    let mut command = Command::new(ENGRAM);
    command
        .args(args)
        .env_remove("ENGRAM_MALLOC")
        .env_remove("ENGRAM_MALLOC_LIB")
        .env_remove("LD_PRELOAD");
    command
}

fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("engram starts");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A bash script that writes `lines` to the report pipe, then runs `then`
/// (bash: dash cannot redirect to descriptors past 9, and the pipe sits at 611).
fn fake_allocator_script(lines: &[&str], then: &str) -> String {
    let mut script = String::from("fd=${ENGRAM_MALLOC##*stats_fd=}\nfd=${fd%%,*}\n");
    for line in lines {
        script.push_str(&format!("echo \"{line}\" >&\"$fd\"\n"));
    }
    script.push_str(then);
    script
}

const GOOD_1: &str = "engram-malloc: report pid=$$ allocs=10 frees=8 peak_bytes=2048 faults=0";
const GOOD_2: &str = "engram-malloc: report pid=7 allocs=5 frees=5 peak_bytes=3145728 faults=1";
const BAD: &str = "engram-malloc: report pid=7 allocs=oops";

#[test]
fn real_allocator_on_true() {
    let Some(lib) = real_library() else { return };
    let lib = lib.to_str().unwrap();
    let (code, _, stderr) = run(&mut engram(&["run", "--lib", lib, "--", "/bin/true"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("processes: 1\n"), "{stderr}");
    assert!(stderr.contains("faults caught: 0\n"), "{stderr}");
    assert!(stderr.contains("ended: exit code 0\n"), "{stderr}");
}

// /bin/sh is dash on Debian: its `exit` ends in `_exit(2)`, which skips atexit
// handlers and destructors. `processes: 1` therefore needs the allocator to write
// its report on `_exit`/`_Exit` too, not only from a destructor.
#[test]
fn real_allocator_on_sh_exit_3() {
    let Some(lib) = real_library() else { return };
    let lib = lib.to_str().unwrap();
    let (code, _, stderr) = run(&mut engram(&[
        "run", "--lib", lib, "--", "sh", "-c", "exit 3",
    ]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("processes: 1\n"), "{stderr}");
    assert!(stderr.contains("ended: exit code 3\n"), "{stderr}");
}

/// A program that puts a file of its own under the report pipe's descriptor
/// number must not find the report line in it: the allocator checks that the
/// descriptor is still the pipe (stats_ino) before writing.
#[test]
fn real_allocator_never_writes_into_the_programs_own_file() {
    let Some(lib) = real_library() else { return };
    let lib = lib.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("engram-run-fd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.txt");
    // Opened over whatever number the pipe has (read from ENGRAM_MALLOC).
    let script = format!(
        "fd=${{ENGRAM_MALLOC##*stats_fd=}}; fd=${{fd%%,*}}; eval \"exec $fd>{}\"; echo mine >&$fd",
        out.display()
    );
    let (code, _, stderr) = run(&mut engram(&[
        "run", "--lib", lib, "--", "bash", "-c", &script,
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine\n", "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn real_allocator_reports_every_process() {
    let Some(lib) = real_library() else { return };
    let lib = lib.to_str().unwrap();
    let (code, stdout, stderr) = run(&mut engram(&[
        "run",
        "--json",
        "--lib",
        lib,
        "--",
        "sh",
        "-c",
        "/bin/true; /bin/true; echo done",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let json = stdout.lines().last().unwrap_or_default();
    assert!(stdout.starts_with("done\n"), "{stdout}");
    // The shell (which ends in `_exit`, see above) and its two children; echo is
    // a builtin, so there is no third child.
    let processes = json
        .split_once("\"processes\":")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(processes, Some(3), "{json}");
}

#[test]
fn several_processes_and_malformed_lines() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    let script = fake_allocator_script(&[GOOD_1, BAD, GOOD_2], "exit 5");
    let (code, _, stderr) = run(engram(&["run", "--lib"])
        .arg(&lib)
        .args(["--", "bash", "-c", &script]));
    assert_eq!(code, Some(5), "{stderr}");
    for expected in [
        "processes: 2\n",
        "allocations: 15\n",
        "frees: 13\n",
        "peak bytes: 3.0 MiB (3145728 B)\n",
        "faults caught: 1\n",
        "malformed report lines: 1\n",
        "ended: exit code 5\n",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}

#[test]
fn json_report_on_stdout() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    let script = fake_allocator_script(&[GOOD_2], "echo program output");
    let (code, stdout, stderr) = run(engram(&["run", "--json", "--lib"])
        .arg(&lib)
        .args(["--", "bash", "-c", &script]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("processes:"), "{stderr}");
    assert_eq!(
        stdout,
        "program output\n\
         {\"program\":\"bash\",\"processes\":1,\"allocs\":5,\"frees\":5,\"peak_bytes\":3145728,\
         \"faults\":1,\"malformed_lines\":0,\"exit_code\":0,\"signal\":null,\
         \"core_dumped\":false,\"status\":0}\n"
    );
}

#[test]
fn child_sees_merged_environment() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    let canonical = lib.canonicalize().unwrap();
    let (code, stdout, stderr) = run(engram(&["run", "--quiet", "--opts", "guard=0", "--lib"])
        .arg(&lib)
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$ENGRAM_MALLOC\"; echo \"$LD_PRELOAD\"",
        ])
        .env("ENGRAM_MALLOC", "quarantine=0,stats_fd=1")
        .env("LD_PRELOAD", &lib));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "--quiet printed: {stderr}");
    let mut lines = stdout.lines();
    let options = lines.next().unwrap();
    let ours = options
        .strip_prefix("quarantine=0,guard=0,stats_fd=")
        .unwrap_or_else(|| panic!("{options}"));
    let (fd, ino) = ours
        .split_once(",stats_ino=")
        .unwrap_or_else(|| panic!("{options}"));
    assert!(fd.parse::<u32>().unwrap() > 2, "{options}");
    assert!(ino.parse::<u64>().unwrap() > 0, "{options}");
    assert_eq!(
        lines.next().unwrap(),
        format!("{}:{}", canonical.display(), lib.display())
    );
}

#[test]
fn signals_and_shell_exit_codes() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    let (code, _, stderr) =
        run(engram(&["run", "--lib"])
            .arg(&lib)
            .args(["--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(code, Some(128 + 15), "{stderr}");
    assert!(stderr.contains("ended: killed by SIGTERM\n"), "{stderr}");
    assert!(stderr.contains("processes: 0\n"), "{stderr}");

    let (code, _, stderr) = run(engram(&["run", "--lib"])
        .arg(&lib)
        .args(["--", "/nonexistent/program"]));
    assert_eq!(code, Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot run /nonexistent/program"),
        "{stderr}"
    );
}

#[test]
fn missing_library_is_a_clear_error() {
    let (code, stdout, stderr) = run(&mut engram(&[
        "run",
        "--lib",
        "/nonexistent/libengram_malloc.so",
        "--",
        "/bin/true",
    ]));
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("engram: error: --lib: /nonexistent/libengram_malloc.so is not a file"),
        "{stderr}"
    );

    let (code, _, stderr) = run(engram(&["run", "--", "/bin/true"])
        .env("ENGRAM_MALLOC_LIB", "/nonexistent/libengram_malloc.so"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("ENGRAM_MALLOC_LIB"), "{stderr}");
}

#[test]
fn bad_options_are_refused() {
    let (code, _, stderr) = run(&mut engram(&[
        "run",
        "--opts",
        "stats_fd=1",
        "--lib",
        ENGRAM,
        "--",
        "/bin/true",
    ]));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("stats_fd is set by engram run"), "{stderr}");
}

/// Starts `engram run --quiet --lib LIB -- sleep 2` in a process group of its
/// own, sends SIGINT to the group after 300 ms (a terminal's Ctrl-C), and
/// returns how engram ended. `ignore`: the caller ignores SIGINT, as a
/// background job or `nohup` does.
fn ctrl_c(lib: &Path, ignore: bool) -> std::process::ExitStatus {
    use std::os::unix::process::CommandExt;
    let mut command = engram(&["run", "--quiet", "--lib"]);
    command.arg(lib).args(["--", "sleep", "2"]).process_group(0);
    if ignore {
        // SAFETY: between fork and exec only signal(2), which is
        // async-signal-safe, runs.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("engram starts");
    // Wait until engram has started the program and the program is `sleep`
    // (exec done): a signal sent earlier would hit engram before its handlers
    // or the child before its exec.
    let task = format!("/proc/{0}/task/{0}/children", child.id());
    let started = std::time::Instant::now();
    loop {
        let kids = std::fs::read_to_string(&task).unwrap_or_default();
        let sleeping = kids.split_whitespace().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        if sleeping {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "sleep never started under engram"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the group we just created.
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) }, 0);
    child.wait().expect("engram ends")
}

/// Ctrl-C: the program dies of SIGINT, and so does engram after its report,
/// so a shell looping over `engram run` stops as it would over the program.
/// A SIGINT the caller ignores stays ignored for the program.
#[test]
fn ctrl_c_ends_engram_like_the_program_unless_ignored() {
    use std::os::unix::process::ExitStatusExt;
    let Some(lib) = stand_in_library() else {
        return;
    };
    let status = ctrl_c(&lib, false);
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let status = ctrl_c(&lib, true);
    assert_eq!(
        status.code(),
        Some(0),
        "sleep should have ignored SIGINT: {status:?}"
    );
}

/// --json-file keeps the report apart from the program's output, even output
/// that does not end with a newline (with --json the report would share its
/// last line).
#[test]
fn json_report_in_a_file() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("engram-json-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.json");
    std::fs::write(&path, "stale contents that must go\n".repeat(100)).unwrap();
    let script = fake_allocator_script(&[GOOD_2], "printf 'no newline'");
    let (code, stdout, stderr) = run(engram(&["run", "--json-file"])
        .arg(&path)
        .arg("--lib")
        .arg(&lib)
        .args(["--", "bash", "-c", &script]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "no newline");
    assert!(!stderr.contains("processes:"), "{stderr}");
    let json = std::fs::read_to_string(&path).unwrap();
    assert!(json.starts_with("{\"program\":\"bash\","), "{json}");
    assert!(json.ends_with("}\n") && json.lines().count() == 1, "{json}");
    std::fs::remove_dir_all(&dir).unwrap();

    // Not a regular file: written, and no error for the sync it cannot do
    // (review finding: /dev/null read as a lost report, exit 1).
    let (code, _, stderr) = run(engram(&["run", "--json-file", "/dev/null", "--lib"])
        .arg(&lib)
        .args(["--", "true"]));
    assert_eq!(code, Some(0), "{stderr}");

    // A file that cannot be created fails before the program runs.
    let marker = std::env::temp_dir().join(format!("engram-json-ran-{}", std::process::id()));
    let (code, _, stderr) =
        run(
            engram(&["run", "--json-file", "/nonexistent/dir/r.json", "--lib"])
                .arg(&lib)
                .args(["--", "touch"])
                .arg(&marker),
        );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the JSON report file /nonexistent/dir/r.json"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the program ran");
}

/// A JSON report that cannot be written is an error, not a silent exit 0
/// (review finding: `--json > /dev/full` printed nothing and exited 0).
#[test]
fn a_json_report_that_cannot_be_written_is_an_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("SKIPPED: no /dev/full");
        return;
    };
    let out = engram(&["run", "--json", "--", "true"])
        .stdout(full)
        .output()
        .expect("running engram");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the JSON report"), "{err}");
}

/// Review findings (2026-11-25): a value the allocator cannot read is refused
/// (it would ignore `guard=off` and keep the guard, silently), and every
/// documented key is known (`guard_slabs` drew an "unknown option" warning).
#[test]
fn option_values_must_be_numbers_the_allocator_reads() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    for bad in [
        "guard=off",
        "guard=0 quarantine=0",
        "large_cache=1.5G",
        "tcache=-1",
    ] {
        let (code, _, stderr) = run(engram(&["run", "-q", "--opts", bad, "--lib"])
            .arg(&lib)
            .args(["--", "/bin/true"]));
        assert_eq!(code, Some(1), "{bad}: {stderr}");
        assert!(stderr.contains("reads numbers only"), "{bad}: {stderr}");
    }
    let good = "guard=0, guard_slabs=16,quarantine = 4K,large_cache=64M,thp=1";
    let (code, _, stderr) = run(engram(&["run", "-q", "--opts", good, "--lib"])
        .arg(&lib)
        .args(["--", "/bin/true"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// A script without a `#!` line runs with /bin/sh, as under a shell or `env`
/// (review finding: it failed with "Exec format error", status 126).
#[test]
fn a_script_without_an_interpreter_line_runs() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("engram-run-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("plain.sh");
    std::fs::write(&script, "echo \"hi $1\"\nexit 4\n").unwrap();
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
    let (code, stdout, stderr) = run(engram(&["run", "-q", "--lib"])
        .arg(&lib)
        .arg("--")
        .arg(&script)
        .arg("there"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(4), "{stderr}");
    assert_eq!(stdout, "hi there\n");
}

/// SIGTERM sent to engram goes on to the program: it ends, engram reports how
/// and exits with its status, and no program is left running (review
/// finding: engram died and the program ran on, re-parented to init).
#[test]
fn sigterm_to_engram_ends_the_program_too() {
    let Some(lib) = stand_in_library() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("engram-run-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let child = engram(&["run", "--lib"])
        .arg(&lib)
        .args(["--", "sh", "-c", "echo $$ > \"$0\"; exec sleep 30"])
        .arg(&pidfile)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start engram run");
    let start = std::time::Instant::now();
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pidfile) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                break pid;
            }
        }
        assert!(start.elapsed().as_secs() < 20, "the program never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // SAFETY: kill with a valid pid and signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().expect("wait for engram");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(128 + 15), "{stderr}");
    assert!(stderr.contains("ended: killed by SIGTERM"), "{stderr}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the program (pid {pid}) outlived engram"
    );
}
