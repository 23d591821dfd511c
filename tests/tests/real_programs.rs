//! Real programs from Debian packages on the allocator.
//!
//! Each scenario (python3, sqlite3, git, gcc, perl) runs three times in a fresh
//! directory: natively, under `LD_PRELOAD=libengram_malloc.so`, and under the preload
//! with `ENGRAM_MALLOC=stats=1`. The transcripts (every command's stdout and exit
//! status, in order) must be identical, and the stats run must print a well-formed
//! `engram-malloc: report` line for every command that exits normally
//! (docs/ALLOC_CONTRACT.md).
//!
//! A missing program fails the test and names its apt package: `.ci/run` installs
//! them, and a skipped test proves nothing. Every child runs in its own process group
//! under a timeout guard (120 s, see [`child_timeout`]), so an allocator that deadlocks fails the test
//! instead of hanging CI.
//!
//! `ENGRAM_TEST_PRELOAD=/path/to/lib.so` preloads another library instead of
//! `target/release/libengram_malloc.so`: another build of ours, or a peer such as
//! `/usr/lib/x86_64-linux-gnu/libmimalloc.so.2` to check the harness itself. Report
//! lines are only checked when that file's name starts with `libengram_malloc`.
//! `ENGRAM_TEST_TRANSCRIPTS=/some/dir` writes each transcript there, one file per
//! scenario and mode.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one child (with everything it starts) may run before it is killed;
/// `ENGRAM_TEST_TIMEOUT_S` overrides it (slow machines, sanitizer builds).
fn child_timeout() -> Duration {
    let secs = std::env::var("ENGRAM_TEST_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// Start of the line the allocator prints at exit under `stats=1`.
const REPORT_PREFIX: &str = "engram-malloc: report ";

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[test]
fn python3_matches_native() {
    compare_modes("python3", |s| {
        let python = tool("python3", "python3");
        s.write("workload.py", PYTHON_WORKLOAD);
        let mut cmd = s.command(&python);
        // pymalloc would serve every object under 512 bytes from its own arenas and
        // hide them from the allocator under test; PYTHONMALLOC=malloc sends them all
        // through malloc. -S: no site-packages, so the host's Python setup can't leak in.
        cmd.args(["-S", "-B", "workload.py"])
            .env("PYTHONMALLOC", "malloc")
            .env("PYTHONHASHSEED", "0");
        let ran = s.run_ok("python3 -S -B workload.py", &mut cmd);
        assert!(
            String::from_utf8_lossy(&ran.stdout).contains("\ndigest "),
            "python3 workload printed no digest"
        );
    });
}

#[test]
fn sqlite3_matches_native() {
    compare_modes("sqlite3", |s| {
        let sqlite = tool("sqlite3", "sqlite3");
        s.write("workload.sql", &sqlite_script());
        let mut cmd = s.command(&sqlite);
        cmd.args(["-batch", "-bail", "test.db"])
            .stdin(s.open("workload.sql"));
        s.run_ok("sqlite3 test.db < workload.sql", &mut cmd);
        // Reopen: the file written under the allocator must read back the same.
        let mut cmd = s.command(&sqlite);
        cmd.args(["-batch", "-bail", "test.db", SQLITE_REOPEN]);
        let ran = s.run_ok("sqlite3 test.db <reopen queries>", &mut cmd);
        assert!(
            String::from_utf8_lossy(&ran.stdout).starts_with("ok\n"),
            "sqlite3 integrity_check failed"
        );
    });
}

#[test]
fn git_matches_native() {
    compare_modes("git", git_scenario);
}

#[test]
fn gcc_matches_native() {
    compare_modes("gcc", |s| {
        let gcc = tool("gcc", "gcc");
        s.write("workload.c", C_WORKLOAD);
        s.write("broken.c", C_BROKEN);
        // cc1, as and ld all run under the preload too (LD_PRELOAD is inherited).
        let mut cmd = s.command(&gcc);
        cmd.args([
            "-O2",
            "-fdiagnostics-color=never",
            "-S",
            "-o",
            "-",
            "workload.c",
        ]);
        s.run_ok("gcc -O2 -S -o - workload.c", &mut cmd);
        let mut cmd = s.command(&gcc);
        cmd.args([
            "-O2",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fdiagnostics-color=never",
        ])
        .args(["-o", "workload", "workload.c"]);
        s.run_ok(
            "gcc -O2 -g -Wall -Wextra -Werror -o workload workload.c",
            &mut cmd,
        );
        let mut cmd = s.command(&s.path().join("workload"));
        let ran = s.run_ok("./workload", &mut cmd);
        assert!(
            String::from_utf8_lossy(&ran.stdout).ends_with("misaligned 0\n"),
            "the compiled workload saw misaligned memory"
        );
        // A failing compile: the exit status and the diagnostics must match too.
        let mut cmd = s.command(&gcc);
        cmd.args([
            "-fdiagnostics-color=never",
            "-c",
            "-o",
            "broken.o",
            "broken.c",
        ]);
        let ran = s.run_with_stderr("gcc -c broken.c", &mut cmd);
        assert_eq!(ran.status.code(), Some(1), "gcc accepted broken.c");
    });
}

#[test]
fn perl_matches_native() {
    compare_modes("perl", |s| {
        let perl = tool("perl", "perl");
        s.write("workload.pl", PERL_WORKLOAD);
        let mut cmd = s.command(&perl);
        cmd.arg("workload.pl")
            .env("PERL_HASH_SEED", "0")
            .env("PERL_PERTURB_KEYS", "0");
        let ran = s.run_ok("perl workload.pl", &mut cmd);
        assert!(
            String::from_utf8_lossy(&ran.stdout).contains("\nbig "),
            "perl workload did not finish"
        );
    });
}

/// The loader silently ignores a library it cannot preload (it only warns on
/// stderr); make sure ours is really in the address space.
#[test]
fn preload_library_is_mapped() {
    let lib = PreloadLib::get();
    let cat = tool("cat", "coreutils");
    let mut s = Session::new("maps", Mode::Preload, lib.clone());
    let mut cmd = s.command(&cat);
    cmd.arg("/proc/self/maps");
    let ran = s.run_ok("cat /proc/self/maps", &mut cmd);
    let maps = String::from_utf8_lossy(&ran.stdout);
    let want = lib.path.to_string_lossy();
    assert!(
        maps.lines().any(|l| l.ends_with(&*want)),
        "{want} is not mapped into a preloaded process:\n{maps}"
    );
}

#[test]
fn report_lines_parse() {
    let line = "engram-malloc: report pid=42 allocs=10 frees=9 peak_bytes=4096 faults=0";
    assert_eq!(
        Report::find(line),
        Some(Report {
            pid: 42,
            allocs: 10,
            frees: 9,
            peak_bytes: 4096,
            faults: 0
        })
    );
    // A program's own unterminated stderr output may precede it on the same line.
    assert_eq!(
        Report::find(&format!("partial{line}")).map(|r| r.pid),
        Some(42)
    );
    for bad in [
        "engram-malloc: report pid=42 allocs=10 frees=9 peak_bytes=4096",
        "engram-malloc: report pid=42 allocs=10 frees=9 peak_bytes=4096 faults=0 x=1",
        "engram-malloc: report pid=42 allocs=ten frees=9 peak_bytes=4096 faults=0",
        "engram-malloc: report pid=42 frees=9 allocs=10 peak_bytes=4096 faults=0",
    ] {
        assert_eq!(Report::find(bad), None, "{bad}");
    }
    assert!(!is_report_line(
        "engram-malloc: fatal: double free in free() at 0x10"
    ));
}

// ---------------------------------------------------------------------------
// Comparing modes
// ---------------------------------------------------------------------------

/// What each command of a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The system allocator.
    Native,
    /// The preloaded library.
    Preload,
    /// The preloaded library with `ENGRAM_MALLOC=stats=1`.
    PreloadStats,
}

/// The library put in `LD_PRELOAD`.
#[derive(Clone, Debug)]
struct PreloadLib {
    path: PathBuf,
    /// A build of libengram_malloc, so `stats=1` must print report lines.
    is_engram: bool,
}

impl PreloadLib {
    fn get() -> PreloadLib {
        let path = match std::env::var_os("ENGRAM_TEST_PRELOAD") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => engram_tests::malloc_so(),
        };
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("preload library {}: {e}", path.display()));
        let text = path.to_string_lossy();
        assert!(
            !text.contains([' ', ':']),
            "LD_PRELOAD splits on spaces and colons, move the library: {text}"
        );
        let is_engram = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libengram_malloc"));
        PreloadLib { path, is_engram }
    }
}

/// Runs `body` natively, preloaded, and preloaded with stats, and compares.
fn compare_modes(scenario: &'static str, body: fn(&mut Session)) {
    let lib = PreloadLib::get();
    // Sessions live to the end so their directories are kept if a check fails.
    let mut sessions = Vec::new();
    for mode in [Mode::Native, Mode::Preload, Mode::PreloadStats] {
        let mut s = Session::new(scenario, mode, lib.clone());
        let started = Instant::now();
        body(&mut s);
        eprintln!("{scenario}: {mode:?} took {:.2?}", started.elapsed());
        if let Some(dir) = std::env::var_os("ENGRAM_TEST_TRANSCRIPTS") {
            let p = Path::new(&dir).join(format!("{scenario}-{mode:?}.txt"));
            fs::write(&p, &s.transcript).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        }
        sessions.push(s);
    }
    let native = &sessions[0];
    for s in &sessions[1..] {
        assert!(
            s.transcript == native.transcript,
            "{scenario}: stdout or exit status under {:?} ({}) differ from native\n{}\n\
             stderr under {:?} (tail):\n{}",
            s.mode,
            lib.path.display(),
            first_difference(&native.transcript, &s.transcript),
            s.mode,
            tail(&s.stderr_log),
        );
    }
    let stats = &sessions[2];
    if lib.is_engram {
        assert!(
            stats.reports.iter().any(|r| r.allocs > 0),
            "{scenario}: no report line shows any allocation: {:?}",
            stats.reports
        );
    } else {
        eprintln!(
            "{scenario}: {} is not libengram_malloc (ENGRAM_TEST_PRELOAD): report lines not checked",
            lib.path.display()
        );
    }
}

/// One run of a scenario in one mode, in its own directory.
struct Session {
    scenario: &'static str,
    mode: Mode,
    lib: PreloadLib,
    dir: TempDir,
    /// Every command's label, stdout and exit status: what the modes must agree on.
    transcript: String,
    /// Every command's stderr, for failure messages.
    stderr_log: String,
    /// Report lines seen in [`Mode::PreloadStats`].
    reports: Vec<Report>,
}

impl Session {
    fn new(scenario: &'static str, mode: Mode, lib: PreloadLib) -> Session {
        let tag = format!("{scenario}-{mode:?}").to_lowercase();
        Session {
            scenario,
            mode,
            lib,
            dir: TempDir::new(&tag),
            transcript: String::new(),
            stderr_log: String::new(),
            reports: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        &self.dir.0
    }

    fn write(&self, name: &str, contents: &str) {
        let p = self.path().join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    fn open(&self, name: &str) -> fs::File {
        let p = self.path().join(name);
        fs::File::open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
    }

    /// A command in this session's directory and mode, with a neutral environment.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.path())
            .stdin(Stdio::null())
            .env_remove("LD_PRELOAD")
            .env_remove("ENGRAM_MALLOC")
            .env("HOME", self.path())
            .env("LC_ALL", "C")
            .env("TZ", "UTC");
        match self.mode {
            Mode::Native => {}
            Mode::Preload => {
                cmd.env("LD_PRELOAD", &self.lib.path);
            }
            Mode::PreloadStats => {
                cmd.env("LD_PRELOAD", &self.lib.path)
                    .env("ENGRAM_MALLOC", "stats=1");
            }
        }
        cmd
    }

    /// Runs `cmd` and records its stdout and exit status in the transcript.
    fn run(&mut self, label: &str, cmd: &mut Command) -> Ran {
        self.run_inner(label, cmd, false)
    }

    /// [`Session::run`], and the command must succeed.
    fn run_ok(&mut self, label: &str, cmd: &mut Command) -> Ran {
        let ran = self.run(label, cmd);
        assert!(
            ran.status.success(),
            "[{} / {:?}] {label}: {}\nstdout (tail):\n{}\nstderr (tail):\n{}",
            self.scenario,
            self.mode,
            describe(ran.status),
            tail(&String::from_utf8_lossy(&ran.stdout)),
            tail(&String::from_utf8_lossy(&ran.stderr)),
        );
        ran
    }

    /// [`Session::run`], and stderr (less report lines) goes in the transcript too.
    fn run_with_stderr(&mut self, label: &str, cmd: &mut Command) -> Ran {
        self.run_inner(label, cmd, true)
    }

    fn run_inner(&mut self, label: &str, cmd: &mut Command, keep_stderr: bool) -> Ran {
        let what = format!("[{} / {:?}] {label}", self.scenario, self.mode);
        let ran = run_guarded(cmd, &what);
        let stdout = String::from_utf8_lossy(&ran.stdout);
        let stderr = String::from_utf8_lossy(&ran.stderr);
        let t = &mut self.transcript;
        let _ = writeln!(t, "$ {label}");
        push_block(t, &stdout);
        if keep_stderr {
            let _ = writeln!(t, "[stderr]");
            let kept: String = stderr
                .split_inclusive('\n')
                .filter(|l| !is_report_line(l))
                .collect();
            push_block(t, &kept);
        }
        let _ = writeln!(t, "[{}]", describe(ran.status));
        let _ = writeln!(self.stderr_log, "$ {label}\n{stderr}");
        if self.mode != Mode::Native {
            self.check_preloaded(&what, &ran, &stderr);
        }
        ran
    }

    fn check_preloaded(&mut self, what: &str, ran: &Ran, stderr: &str) {
        assert!(
            !stderr.contains("cannot be preloaded"),
            "{what}: the dynamic loader refused {}:\n{}",
            self.lib.path.display(),
            tail(stderr)
        );
        assert!(
            !stderr.contains("engram-malloc: fatal:"),
            "{what}: the allocator reported a fault:\n{}",
            tail(stderr)
        );
        if self.mode != Mode::PreloadStats || !self.lib.is_engram {
            return;
        }
        let mut reports = Vec::new();
        for line in stderr.lines().filter(|l| is_report_line(l)) {
            match Report::find(line) {
                Some(r) => reports.push(r),
                None => panic!("{what}: malformed report line {line:?}"),
            }
        }
        if ran.status.code().is_some() {
            assert!(
                reports.iter().any(|r| r.pid == ran.pid),
                "{what}: no report line for pid {}, which exited normally; report lines: \
                 {reports:?}\nstderr (tail):\n{}",
                ran.pid,
                tail(stderr)
            );
        }
        if let Some(r) = reports.iter().find(|r| r.faults != 0) {
            panic!("{what}: the allocator counted faults: {r:?}");
        }
        self.reports.extend(reports);
    }
}

/// Appends `text` as a block that always ends the line, marking a missing final newline.
fn push_block(t: &mut String, text: &str) {
    t.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        t.push_str("\n\\ no newline at end\n");
    }
}

/// `engram-malloc: report pid=<pid> allocs=<n> frees=<n> peak_bytes=<n> faults=<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Report {
    pid: u32,
    allocs: u64,
    frees: u64,
    peak_bytes: u64,
    faults: u64,
}

impl Report {
    /// Parses the report in `line`, which may start with a program's unterminated output.
    fn find(line: &str) -> Option<Report> {
        let at = line.find(REPORT_PREFIX)?;
        let mut fields = line[at + REPORT_PREFIX.len()..].trim_end().split(' ');
        let mut next = |key: &str| -> Option<u64> {
            let value = fields.next()?.strip_prefix(key)?.strip_prefix('=')?;
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            value.parse().ok()
        };
        let report = Report {
            pid: u32::try_from(next("pid")?).ok()?,
            allocs: next("allocs")?,
            frees: next("frees")?,
            peak_bytes: next("peak_bytes")?,
            faults: next("faults")?,
        };
        fields.next().is_none().then_some(report)
    }
}

fn is_report_line(line: &str) -> bool {
    line.contains(REPORT_PREFIX)
}

// ---------------------------------------------------------------------------
// Processes, tools, directories
// ---------------------------------------------------------------------------

/// What a finished child left.
struct Ran {
    pid: u32,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `cmd` in a new process group, killing the group after [`child_timeout`].
fn run_guarded(cmd: &mut Command, what: &str) -> Ran {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = drain(child.stdout.take(), done_tx.clone());
    let stderr = drain(child.stderr.take(), done_tx);
    let timeout = child_timeout();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group(pid);
                panic!("{what}: waiting for pid {pid}: {e}");
            }
        }
        if Instant::now() >= deadline {
            timed_out = true;
            kill_group(pid);
            break child
                .wait()
                .unwrap_or_else(|e| panic!("{what}: waiting for killed pid {pid}: {e}"));
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    // A grandchild may still hold the pipes. It is in the child's group, and a group id
    // is not reused while one member lives, so killing the group cannot hit a stranger.
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            timed_out = true;
            kill_group(pid);
            break;
        }
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        !timed_out,
        "{what}: killed after {} s (a hung allocator?); stderr (tail):\n{}",
        timeout.as_secs(),
        tail(&String::from_utf8_lossy(&stderr))
    );
    Ran {
        pid,
        status,
        stdout,
        stderr,
    }
}

/// Reads a child's pipe to the end on its own thread, then signals `done`.
fn drain<R: Read + Send + 'static>(
    pipe: Option<R>,
    done: mpsc::Sender<()>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // An error ends the capture; what was read is still compared.
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = done.send(());
        buf
    })
}

/// SIGKILLs the process group `pgid` (a child started with `process_group(0)`).
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) only takes integers and touches no memory of this process; the
    // negative id names the group our child leads (ESRCH if it is already gone).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit {code}");
    }
    let sig = status.signal().unwrap_or(0);
    let name = match sig {
        libc::SIGABRT => " (SIGABRT: a fault the allocator found?)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGKILL => " (SIGKILL)",
        _ => "",
    };
    format!("killed by signal {sig}{name}")
}

/// The last few KiB of `s`, cut at a character boundary.
fn tail(s: &str) -> &str {
    let mut at = s.len().saturating_sub(4096);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// Where two transcripts part, with a few lines of context from each.
fn first_difference(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let at = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = at.saturating_sub(3);
    let mut out = format!(
        "first difference at line {} (native: {} lines, this run: {} lines)\n",
        at + 1,
        e.len(),
        a.len()
    );
    for (name, lines) in [("native", &e), ("this  ", &a)] {
        for (n, line) in lines.iter().enumerate().skip(from).take(8) {
            let mark = if n == at { '>' } else { ' ' };
            let _ = writeln!(out, "{mark} {name} {:>5}: {line}", n + 1);
        }
    }
    out
}

/// The program `name` from Debian package `package`; a missing one fails the test.
fn tool(name: &str, package: &str) -> PathBuf {
    // /usr/bin first: the Debian build, not whatever a version manager put first on PATH.
    let debian = Path::new("/usr/bin").join(name);
    if is_executable(&debian) {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| is_executable(p))
        })
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run `apt-get install {package}` (.ci/run does); \
                 this test fails rather than skips"
            )
        })
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A directory under `std::env::temp_dir()`, removed on drop unless a check failed.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let base = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..1000 {
            let p = base.join(format!(
                "engram-real-{tag}-{}-{nanos:08x}-{attempt}",
                std::process::id()
            ));
            match fs::create_dir(&p) {
                Ok(()) => return TempDir(p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", p.display()),
            }
        }
        panic!("no free temporary directory name under {}", base.display());
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

use engram_tests::Rng;

/// A lowercase word of 2 to 11 letters.
fn word(rng: &mut Rng) -> String {
    let len = 2 + rng.below(10);
    (0..len)
        .map(|_| char::from(b'a' + (rng.below(26) as u8)))
        .collect()
}

// ---------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------

/// Fixed identities and dates make every object id the same in every mode.
fn git_command(s: &Session, git: &Path, tick: u64) -> Command {
    let mut cmd = s.command(git);
    let date = format!("{} +0000", 1_700_000_000 + tick * 3600);
    cmd.current_dir(s.path().join("repo"))
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env("GIT_AUTHOR_NAME", "Ada Engram")
        .env("GIT_AUTHOR_EMAIL", "ada@example.invalid")
        .env("GIT_COMMITTER_NAME", "Bo Engram")
        .env("GIT_COMMITTER_EMAIL", "bo@example.invalid")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat");
    // No background gc or maintenance: nothing may outlive the command or vary by run.
    let config = [
        ("init.defaultBranch", "main"),
        ("gc.auto", "0"),
        ("gc.autoDetach", "false"),
        ("maintenance.auto", "false"),
        ("commit.gpgSign", "false"),
        ("tag.gpgSign", "false"),
        ("core.autocrlf", "false"),
        ("color.ui", "never"),
        ("advice.detachedHead", "false"),
    ];
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    cmd
}

fn git_run(s: &mut Session, git: &Path, tick: u64, args: &[&str]) -> Ran {
    let mut cmd = git_command(s, git, tick);
    cmd.args(args);
    s.run_ok(&format!("git {}", args.join(" ")), &mut cmd)
}

/// Writes a file of `lines` pseudo-random lines under the work tree.
fn write_text(repo: &Path, rel: &str, rng: &mut Rng, lines: u64) {
    let mut text = String::new();
    for n in 0..lines {
        let _ = write!(text, "{n:04}");
        for _ in 0..1 + rng.below(9) {
            text.push(' ');
            text.push_str(&word(rng));
        }
        text.push('\n');
    }
    let p = repo.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn git_scenario(s: &mut Session) {
    let git = tool("git", "git");
    let repo = s.path().join("repo");
    fs::create_dir(&repo).unwrap_or_else(|e| panic!("mkdir {}: {e}", repo.display()));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut files: Vec<String> = Vec::new();
    git_run(s, &git, 0, &["init", "-q"]);

    // Five commits on main: 240 files, then edits, additions, deletions and renames.
    for commit in 0..5_u64 {
        if commit == 0 {
            for i in 0..240 {
                let rel = format!("src/mod{}/file{i:03}.txt", i % 12);
                let lines = 20 + rng.below(120);
                write_text(&repo, &rel, &mut rng, lines);
                files.push(rel);
            }
        } else {
            for _ in 0..40 {
                let rel = files[rng.below(files.len() as u64) as usize].clone();
                let lines = 20 + rng.below(150);
                write_text(&repo, &rel, &mut rng, lines);
            }
            for i in 0..15 {
                let rel = format!("lib/c{commit}/new{i:02}.txt");
                let lines = 10 + rng.below(60);
                write_text(&repo, &rel, &mut rng, lines);
                files.push(rel);
            }
            for _ in 0..6 {
                let rel = files.swap_remove(rng.below(files.len() as u64) as usize);
                let p = repo.join(&rel);
                fs::remove_file(&p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
            }
        }
        if commit == 3 {
            for k in 0..5 {
                let from = files[k * 7].clone();
                let to = format!("moved/{}", from.replace('/', "_"));
                fs::create_dir_all(repo.join("moved")).expect("mkdir moved");
                git_run(s, &git, commit, &["mv", &from, &to]);
                files[k * 7] = to;
            }
        }
        git_run(s, &git, commit, &["add", "-A"]);
        let msg = format!("commit {commit}: {} files", files.len());
        git_run(s, &git, commit, &["commit", "-q", "-m", &msg]);
    }

    // A topic branch merged back, and an annotated tag.
    git_run(s, &git, 10, &["checkout", "-q", "-b", "topic"]);
    for i in 0..20 {
        let lines = 5 + rng.below(40);
        write_text(&repo, &format!("topic/t{i:02}.txt"), &mut rng, lines);
    }
    git_run(s, &git, 11, &["add", "-A"]);
    git_run(s, &git, 11, &["commit", "-q", "-m", "topic work"]);
    git_run(s, &git, 12, &["checkout", "-q", "main"]);
    let edited = files[1].clone();
    write_text(&repo, &edited, &mut rng, 300);
    git_run(s, &git, 13, &["commit", "-q", "-a", "-m", "main work"]);
    git_run(s, &git, 14, &["merge", "-q", "--no-edit", "topic"]);
    git_run(s, &git, 15, &["tag", "-a", "v1.0", "-m", "release 1.0"]);

    // What the modes must agree on.
    git_run(s, &git, 20, &["rev-parse", "HEAD", "HEAD^{tree}", "v1.0"]);
    git_run(s, &git, 20, &["log", "--stat", "--format=fuller", "--all"]);
    git_run(s, &git, 20, &["log", "--oneline", "--graph", "--all"]);
    git_run(s, &git, 20, &["diff", "--stat", "HEAD~4", "HEAD"]);
    git_run(s, &git, 20, &["gc", "-q", "--prune=now"]);
    git_run(
        s,
        &git,
        20,
        &["fsck", "--full", "--strict", "--no-progress"],
    );
    git_run(
        s,
        &git,
        20,
        &["cat-file", "--batch-all-objects", "--batch-check"],
    );
    git_run(s, &git, 20, &["blame", "-s", &edited]);
    git_run(s, &git, 20, &["grep", "-c", "-e", "ab", "v1.0"]);
    git_run(s, &git, 20, &["rev-parse", "HEAD"]);
}

// ---------------------------------------------------------------------------
// sqlite3
// ---------------------------------------------------------------------------

/// Two tables and ~51k INSERT statements in one transaction, then [`SQLITE_QUERIES`].
fn sqlite_script() -> String {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut sql = String::with_capacity(4 << 20);
    sql.push_str(
        "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);\n\
         CREATE TABLE orders(id INTEGER PRIMARY KEY, \
         customer INTEGER NOT NULL REFERENCES customers(id), \
         amount INTEGER NOT NULL, note TEXT NOT NULL);\n\
         BEGIN;\n",
    );
    for id in 1..=1000 {
        let name = word(&mut rng);
        let city = rng.below(37);
        let _ = writeln!(
            sql,
            "INSERT INTO customers VALUES({id}, '{name}', 'city{city}');"
        );
    }
    for id in 1..=50_000 {
        let customer = 1 + rng.below(1000);
        let amount = rng.below(100_000);
        let words = rng.below(8);
        let note: Vec<String> = (0..words).map(|_| word(&mut rng)).collect();
        let _ = writeln!(
            sql,
            "INSERT INTO orders VALUES({id}, {customer}, {amount}, '{}');",
            note.join(" ")
        );
    }
    sql.push_str("COMMIT;\n");
    sql.push_str(SQLITE_QUERIES);
    sql
}

const SQLITE_QUERIES: &str = "\
CREATE INDEX orders_by_customer ON orders(customer);
CREATE INDEX orders_by_note ON orders(note);
SELECT count(*), sum(amount), min(amount), max(amount), printf('%.3f', avg(amount)) FROM orders;
SELECT c.city, count(*), sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer
  GROUP BY c.city ORDER BY c.city;
SELECT c.id, c.name, count(o.id), sum(o.amount) AS total
  FROM customers c JOIN orders o ON o.customer = c.id
  GROUP BY c.id ORDER BY total DESC, c.id LIMIT 25;
SELECT id, customer, amount, note FROM orders ORDER BY note DESC, amount, id LIMIT 20 OFFSET 20000;
SELECT customer, id, amount, rank() OVER (PARTITION BY customer ORDER BY amount DESC, id) AS r
  FROM orders WHERE customer <= 5 ORDER BY customer, r LIMIT 40;
SELECT length(group_concat(note, '|')), count(DISTINCT note) FROM orders;
SELECT substr(note, 1, 1) AS initial, count(*), max(length(note)) FROM orders
  WHERE note <> '' GROUP BY initial ORDER BY initial;
WITH per AS (SELECT customer, sum(amount) AS s FROM orders GROUP BY customer)
  SELECT count(*), max(s) FROM per WHERE s > (SELECT avg(s) FROM per);
UPDATE orders SET amount = amount + 1, note = note || ' updated' WHERE id % 7 = 0;
SELECT changes();
DELETE FROM orders WHERE amount % 5 = 0;
SELECT changes();
CREATE TABLE summary AS SELECT customer, count(*) AS n, sum(amount) AS total,
  group_concat(id) AS ids FROM orders GROUP BY customer;
SELECT count(*), sum(n), sum(total), sum(length(ids)) FROM summary;
VACUUM;
PRAGMA integrity_check;
";

const SQLITE_REOPEN: &str = "\
PRAGMA integrity_check;
SELECT count(*), sum(amount), max(length(note)) FROM orders;
SELECT customer, n, total FROM summary ORDER BY total DESC, customer LIMIT 10;
";

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// Dicts, lists, strings and a JSON round trip: a few hundred thousand live objects.
const PYTHON_WORKLOAD: &str = r##"
import hashlib, json, random
from collections import Counter, defaultdict

rng = random.Random(20240601)
h = hashlib.sha256()

def feed(tag, *xs):
    h.update(repr((tag,) + xs).encode())
    print(tag, *xs)

letters = "abcdefghijklmnopqrstuvwxyz"
words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 12))) for _ in range(20000)]

# Dicts of tuples of lists.
table = {}
for i in range(120000):
    k = words[i % len(words)] + str(i)
    table[k] = (i, k.upper(), [i, i * 2, str(i)])
feed("table", len(table), sum(v[0] for v in table.values()))

# Churn: delete a third, insert nested dicts with strings of many sizes.
for i in range(0, 120000, 3):
    del table[words[i % len(words)] + str(i)]
for i in range(30000):
    table["#%d" % i] = {"i": i, "s": "x" * (i % 97), "l": list(range(i % 13))}
feed("churn", len(table), sum(len(v["s"]) for k, v in table.items() if k[0] == "#"))

# Strings: join, split, replace, count.
text = " ".join(words[i % len(words)] for i in range(120000))
counts = Counter(text.split())
feed("words", len(counts), counts.most_common(5))
text2 = text.replace("a", "AA").upper()
feed("text", len(text2), text2.count("AA"), hashlib.sha256(text2.encode()).hexdigest()[:16])

# Group and sort.
groups = defaultdict(list)
for w in words:
    groups[len(w)].append(w)
feed("groups", [(n, len(ws), sorted(ws)[0]) for n, ws in sorted(groups.items())])

# JSON round trip.
doc = {
    "rows": [
        {"id": i, "name": words[i % len(words)],
         "tags": [words[(i * 7) % len(words)], words[(i * 13) % len(words)]],
         "score": i * 0.25, "ok": i % 3 == 0, "none": None}
        for i in range(30000)
    ]
}
s = json.dumps(doc, sort_keys=True)
back = json.loads(s)
assert back == doc
s2 = json.dumps(back, sort_keys=True, indent=1)
feed("json", len(s), len(s2), hashlib.sha256(s.encode()).hexdigest()[:16])

# Big list growth and sort.
big = [rng.random() for _ in range(200000)]
big.sort()
feed("floats", repr(big[0]), repr(big[-1]), repr(sum(big)))

# bytearray growth past a few MiB.
buf = bytearray()
for i in range(100000):
    buf += words[i % len(words)].encode()
feed("bytes", len(buf), hashlib.sha1(buf).hexdigest())

del table, doc, back, big
print("digest", h.hexdigest())
"##;

/// Hashes, regexes with captures and /e substitutions, sorts, big strings.
const PERL_WORKLOAD: &str = r##"use strict;
use warnings;

my $seed = 12345;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed >> 4; }

my @letters = ('a' .. 'z');
my @words = map { join '', map { $letters[rnd() % 26] } 1 .. (3 + rnd() % 10) } 1 .. 20000;

# Hashes: counts, appends, arrays of arrays.
my (%count, %concat, %lists);
for my $i (1 .. 120000) {
    my $w = $words[rnd() % @words];
    $count{$w}++;
    $concat{ substr($w, 0, 2) } .= chr(97 + $i % 26);
    push @{ $lists{ length $w } }, [$i, $w];
}
printf "hash %d %d %d\n", scalar(keys %count), scalar(keys %concat), scalar(keys %lists);

# Delete and reinsert.
for my $w (grep { $count{$_} % 2 } sort keys %count) { delete $count{$w} }
$count{"re$_"} = $_ for 1 .. 30000;
my $total = 0;
$total += $_ for values %count;
printf "churn %d %d\n", scalar(keys %count), $total;

# Regexes: captures, global matches, substitutions with /e, split.
my $text = join ' ', map { $words[$_ % @words] . ($_ % 1000) } 1 .. 80000;
my @caps = $text =~ /\b([aeiou][a-z]{2,4})(\d+)\b/g;
(my $subst = $text) =~ s/([a-z]+)(\d+)/$2 . uc($1)/ge;
my @parts = split /[aeiou]+/, $text;
printf "regex %d %d %d %d\n", scalar(@caps), length($subst), scalar(@parts), unpack('%32W*', $subst);

# Sorts: by hash value, Schwartzian transform, nested.
my @by_count = (sort { $count{$b} <=> $count{$a} or $a cmp $b } keys %count)[0 .. 9];
print "top @by_count\n";
my @st = map { $_->[1] } sort { $a->[0] <=> $b->[0] or $a->[1] cmp $b->[1] }
    map { [length($concat{$_}), $_] } keys %concat;
printf "st %s %s %d\n", $st[0], $st[-1], unpack('%32W*', join('', @st));
for my $len (sort { $a <=> $b } keys %lists) {
    my @s = sort { $a->[1] cmp $b->[1] or $a->[0] <=> $b->[0] } @{ $lists{$len} };
    printf "len %d %d %s %d\n", $len, scalar(@s), $s[0][1], $s[-1][0];
}

# sprintf, reverse and join into one big string.
my $big = join "\n", map { sprintf '%08d:%s', $_, scalar reverse $words[$_ % @words] } 1 .. 60000;
printf "big %d %d\n", length($big), unpack('%32W*', $big);
"##;

/// A hash table of malloc'd nodes, realloc growth past a few MiB, aligned blocks.
const C_WORKLOAD: &str = r##"#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    char *key;
    unsigned long value;
    struct node *next;
};

static unsigned long hash(const char *s)
{
    unsigned long h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

int main(void)
{
    enum { NBUCKETS = 1 << 12 };
    struct node **buckets = calloc(NBUCKETS, sizeof *buckets);
    unsigned long x = 88172645463325252UL, checksum = 0;
    size_t nodes = 0;
    char key[64];

    if (!buckets)
        return 2;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int len = snprintf(key, sizeof key, "k%lu", x % 50000);
        struct node **slot = &buckets[hash(key) & (NBUCKETS - 1)];
        struct node *n = *slot;
        while (n && strcmp(n->key, key) != 0)
            n = n->next;
        if (n) {
            n->value += (unsigned long)i;
            continue;
        }
        n = xmalloc(sizeof *n);
        n->key = xmalloc((size_t)len + 1);
        memcpy(n->key, key, (size_t)len + 1);
        n->value = (unsigned long)i;
        n->next = *slot;
        *slot = n;
        nodes++;
    }

    /* Grow one buffer with realloc past several MiB. */
    size_t cap = 16, used = 0;
    char *buf = xmalloc(cap);
    for (int b = 0; b < NBUCKETS; b++) {
        for (struct node *n = buckets[b]; n; n = n->next) {
            size_t len = strlen(n->key);
            while (used + len + 2 > cap) {
                cap *= 2;
                char *grown = realloc(buf, cap);
                if (!grown)
                    return 2;
                buf = grown;
            }
            memcpy(buf + used, n->key, len);
            used += len;
            buf[used++] = ',';
            buf[used] = '\0';
            checksum += n->value;
        }
    }
    printf("nodes %zu buf %zu checksum %lu hash %lu\n", nodes, used, checksum, hash(buf));
    free(buf);

    for (int b = 0; b < NBUCKETS; b++) {
        struct node *n = buckets[b];
        while (n) {
            struct node *next = n->next;
            free(n->key);
            free(n);
            n = next;
        }
    }
    free(buckets);

    /* Aligned allocations. */
    unsigned misaligned = 0;
    for (int i = 0; i < 2000; i++) {
        size_t align = (size_t)64 << (i % 7);
        void *p = NULL;
        if (posix_memalign(&p, align, 100 + (size_t)i * 3) != 0)
            return 3;
        misaligned += ((uintptr_t)p % align) != 0;
        memset(p, 0xab, 100 + (size_t)i * 3);
        free(p);
    }
    void *page = aligned_alloc(4096, 3 * 4096);
    if (!page)
        return 3;
    misaligned += ((uintptr_t)page % 4096) != 0;
    memset(page, 0, 3 * 4096);
    free(page);
    printf("misaligned %u\n", misaligned);
    return misaligned == 0 ? 0 : 1;
}
"##;

/// Does not compile: gcc must exit 1 with the same diagnostics in every mode.
const C_BROKEN: &str = "int main(void)\n{\n    int x = ;\n    return undeclared + x;\n}\n";
