//! Host backend: a memfd page pool mapped with `MAP_FIXED | MAP_SHARED` into a
//! `PROT_NONE` reservation: real demand paging that runs anywhere.
//!
//! ```text
//!   memfd (pool_pages * page_size, committed up front with fallocate)
//!   ├── page 0 ┬── mapped at reservation + off_a   (MAP_SHARED|MAP_FIXED)
//!   ├── page 1 ┘   (file-contiguous pages at contiguous addresses: one VMA)
//!   └── ...
//!   pool view: the whole file mapped once read-write (copies, swap, paged reads)
//! ```
//!
//! Unmapping overlays an anonymous `PROT_NONE` mapping so the reservation stays.
//! Pages are returned to the OS with `fallocate(PUNCH_HOLE)`: `MADV_DONTNEED` frees
//! nothing on shared memory. A punched page is re-allocated (fallocate mode 0) before
//! its next use so an out-of-memory shows up as an error, not as SIGBUS.
//!
//! Invariants: `released[p]` is true only for pages mapped nowhere; every address
//! range handed to the kernel lies inside `[base, base+len)` or the pool view.

use core::ptr;

use engram_alloc::os;

use super::{Backend, Caps};
use crate::error::BackendError;

const HUGE_2M: usize = 2 << 20;

/// Which kind of file backs the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// A plain memfd (4 KiB pages underneath).
    Memfd,
    /// A `MFD_HUGETLB` memfd (needs reserved huge pages).
    Hugetlb,
    /// A file on a tmpfs mounted with `huge=`.
    HugeTmpfs,
}

/// Memfd-backed pool and reservation. See the module docs.
#[derive(Debug)]
pub struct HostBackend {
    fd: i32,
    kind: PoolKind,
    page_size: usize,
    pool_pages: usize,
    /// The whole reservation as mapped (`raw_len` bytes), for `Drop`.
    raw: usize,
    raw_len: usize,
    /// Start of the usable reservation, aligned to `page_size`; `len` bytes, inside raw.
    base: usize,
    len: usize,
    /// Read-write mapping of the whole pool file.
    view: usize,
    /// Pages punched out of the file, to be re-allocated before use.
    released: Vec<bool>,
    /// Pool page + 1 mapped at each page of the reservation (0: none), so reads and
    /// writes through the reservation are checked and the cache can compare.
    mapped: Vec<u32>,
}

fn last_os_error(call: &'static str) -> BackendError {
    BackendError::Os {
        call,
        errno: os::errno(),
    }
}

impl HostBackend {
    /// Create a pool of `pool_pages` pages of `page_size` bytes (a multiple of
    /// 4 KiB) and a reservation of `reserve_len` bytes (a multiple of `page_size`).
    /// With `try_huge`, pages that are multiples of 2 MiB first try a hugetlb memfd,
    /// then a file on a `huge=` tmpfs, then fall back to a plain memfd.
    pub fn new(
        page_size: usize,
        pool_pages: usize,
        reserve_len: usize,
        try_huge: bool,
    ) -> Result<Self, BackendError> {
        if page_size == 0
            || page_size % os::PAGE != 0
            || pool_pages == 0
            || reserve_len == 0
            || reserve_len % page_size != 0
        {
            return Err(BackendError::BadRange);
        }
        let pool_len = pool_pages
            .checked_mul(page_size)
            .ok_or(BackendError::BadRange)?;
        // Ordinary memory (tmpfs, memfd) is checked against what is available
        // first; hugetlb pages come from their own reserve, which counts in
        // neither MemAvailable nor the cgroup, and fallocate fails cleanly when
        // the reserve is short.
        let fits = || match sys::available_memory() {
            Some(available) if pool_len > available => Err(BackendError::OutOfMemory {
                wanted: pool_len,
                available,
            }),
            _ => Ok(()),
        };
        let huge = try_huge && page_size % HUGE_2M == 0;
        let mut opened = None;
        if huge {
            opened = sys::memfd(true).ok().map(|fd| (fd, PoolKind::Hugetlb));
            if let Some((fd, _)) = opened {
                if sys::fallocate(fd, 0, 0, pool_len).is_err() {
                    sys::close(fd);
                    opened = None;
                }
            }
            if opened.is_none() {
                fits()?;
                opened = huge_tmpfs_file(pool_len).map(|fd| (fd, PoolKind::HugeTmpfs));
            }
        }
        let (fd, kind) = match opened {
            Some(x) => x,
            None => {
                fits()?;
                let fd = sys::memfd(false)?;
                if let Err(e) = sys::fallocate(fd, 0, 0, pool_len) {
                    sys::close(fd);
                    return Err(e);
                }
                (fd, PoolKind::Memfd)
            }
        };
        let view = match sys::map_shared(None, fd, 0, pool_len) {
            Ok(v) => v,
            Err(e) => {
                sys::close(fd);
                return Err(e);
            }
        };
        // Over-reserve by one page so the base can be aligned to the page size: 2 MiB
        // pages then start on 2 MiB boundaries (huge TLB entries on hugetlb pools).
        let raw_len = reserve_len
            .checked_add(page_size - os::PAGE)
            .ok_or(BackendError::BadRange)?;
        // The reservation's own errno: `os::reserve` puts the caller's back,
        // so reading it afterwards reported "errno 0" (review finding).
        let raw = match os::try_reserve(raw_len) {
            Ok(p) => p as usize,
            Err(errno) => {
                // SAFETY: `view` is our own mapping of `pool_len` bytes, used by nobody yet.
                unsafe { os::unmap(view as *mut u8, pool_len) };
                sys::close(fd);
                return Err(BackendError::Os {
                    call: "mmap(PROT_NONE)",
                    errno,
                });
            }
        };
        let base = raw.next_multiple_of(page_size);
        Ok(Self {
            fd,
            kind,
            page_size,
            pool_pages,
            raw,
            raw_len,
            base,
            len: reserve_len,
            view,
            released: vec![false; pool_pages],
            mapped: vec![0; reserve_len / page_size],
        })
    }

    /// The kind of file backing the pool.
    pub fn pool_kind(&self) -> PoolKind {
        self.kind
    }

    fn check_virt(&self, off: usize, len: usize, aligned: bool) -> Result<(), BackendError> {
        let end = off.checked_add(len).ok_or(BackendError::BadRange)?;
        if len == 0 || end > self.len || (aligned && (off % self.page_size != 0)) {
            return Err(BackendError::BadRange);
        }
        Ok(())
    }

    /// Every page touched by `[off, off+len)` (inside the reservation) is mapped.
    fn check_mapped(&self, off: usize, len: usize) -> Result<(), BackendError> {
        let first = off / self.page_size;
        let last = (off + len - 1) / self.page_size;
        if self.mapped[first..=last].contains(&0) {
            return Err(BackendError::NotMapped);
        }
        Ok(())
    }

    fn check_phys(&self, phys: usize, n: usize) -> Result<(), BackendError> {
        match phys.checked_add(n) {
            Some(end) if n > 0 && end <= self.pool_pages => Ok(()),
            _ => Err(BackendError::BadRange),
        }
    }

    /// Re-allocate punched pages in `phys..phys+n` before they are used again.
    fn recommit(&mut self, phys: usize, n: usize) -> Result<(), BackendError> {
        for p in phys..phys + n {
            if self.released[p] {
                sys::fallocate(self.fd, 0, p * self.page_size, self.page_size)?;
                self.released[p] = false;
            }
        }
        Ok(())
    }
}

/// Find a tmpfs mounted with `huge=always|within_size` and make an unlinked file there.
fn huge_tmpfs_file(len: usize) -> Option<i32> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    for line in mounts.lines() {
        let mut it = line.split_whitespace();
        let (_, dir, fs, opts) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if fs == "tmpfs" && (opts.contains("huge=always") || opts.contains("huge=within_size")) {
            let path = format!("{dir}/engram-kv-{}", os::pid());
            if let Ok(fd) = sys::open_unlinked(&path) {
                if sys::fallocate(fd, 0, 0, len).is_ok() {
                    return Some(fd);
                }
                sys::close(fd);
            }
        }
    }
    None
}

impl Backend for HostBackend {
    fn caps(&self) -> Caps {
        Caps {
            name: match self.kind {
                PoolKind::Memfd => "host-memfd",
                PoolKind::Hugetlb => "host-hugetlb",
                PoolKind::HugeTmpfs => "host-huge-tmpfs",
            },
            granularity: os::PAGE,
            host_accessible: true,
            merges_contiguous: true,
        }
    }

    fn page_size(&self) -> usize {
        self.page_size
    }

    fn pool_pages(&self) -> usize {
        self.pool_pages
    }

    fn reservation(&self) -> (usize, usize) {
        (self.base, self.len)
    }

    fn map(&mut self, off: usize, phys: usize, n: usize) -> Result<(), BackendError> {
        self.check_phys(phys, n)?;
        let len = n.saturating_mul(self.page_size);
        self.check_virt(off, len, true)?;
        self.recommit(phys, n)?;
        sys::map_shared(
            Some(self.base + off),
            self.fd,
            phys * self.page_size,
            n * self.page_size,
        )?;
        let v = off / self.page_size;
        for (i, m) in self.mapped[v..v + n].iter_mut().enumerate() {
            *m = (phys + i + 1) as u32;
        }
        Ok(())
    }

    fn unmap(&mut self, off: usize, n: usize) -> Result<(), BackendError> {
        // A product that overflows is out of range whatever `off` is.
        let len = n.saturating_mul(self.page_size);
        self.check_virt(off, len, true)?;
        sys::overlay_none(self.base + off, n * self.page_size)?;
        let v = off / self.page_size;
        self.mapped[v..v + n].fill(0);
        Ok(())
    }

    fn release(&mut self, phys: usize, n: usize) -> Result<(), BackendError> {
        self.check_phys(phys, n)?;
        sys::fallocate(
            self.fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            phys * self.page_size,
            n * self.page_size,
        )?;
        for r in &mut self.released[phys..phys + n] {
            *r = true;
        }
        Ok(())
    }

    fn copy_page(&mut self, src: usize, dst: usize) -> Result<(), BackendError> {
        self.check_phys(src, 1)?;
        self.check_phys(dst, 1)?;
        self.recommit(src, 1)?;
        self.recommit(dst, 1)?;
        if src != dst {
            let ps = self.page_size;
            sys::copy(self.view + src * ps, self.view + dst * ps, ps);
        }
        Ok(())
    }

    fn read_page(&mut self, phys: usize, out: &mut [u8]) -> Result<(), BackendError> {
        self.check_phys(phys, 1)?;
        if out.len() != self.page_size {
            return Err(BackendError::BadRange);
        }
        sys::read(self.view + phys * self.page_size, out);
        Ok(())
    }

    fn write_page(&mut self, phys: usize, data: &[u8]) -> Result<(), BackendError> {
        self.check_phys(phys, 1)?;
        if data.len() != self.page_size {
            return Err(BackendError::BadRange);
        }
        self.recommit(phys, 1)?;
        sys::write(self.view + phys * self.page_size, data);
        Ok(())
    }

    fn read_virt(&self, off: usize, out: &mut [u8]) -> Result<(), BackendError> {
        self.check_virt(off, out.len(), false)?;
        self.check_mapped(off, out.len())?;
        sys::read(self.base + off, out);
        Ok(())
    }

    fn write_virt(&mut self, off: usize, data: &[u8]) -> Result<(), BackendError> {
        self.check_virt(off, data.len(), false)?;
        self.check_mapped(off, data.len())?;
        sys::write(self.base + off, data);
        Ok(())
    }

    fn pool_view(&self) -> Option<usize> {
        Some(self.view)
    }

    fn mapped_at(&self, off: usize) -> Option<Option<usize>> {
        if off % self.page_size != 0 {
            return None;
        }
        let m = *self.mapped.get(off / self.page_size)?;
        Some((m != 0).then(|| m as usize - 1))
    }
}

impl Drop for HostBackend {
    fn drop(&mut self) {
        // SAFETY: both ranges are mappings this backend created and owns; the cache
        // that lent out pointers into them is dropped before its backend.
        unsafe {
            os::unmap(self.raw as *mut u8, self.raw_len);
            os::unmap(self.view as *mut u8, self.pool_pages * self.page_size);
        }
        sys::close(self.fd);
    }
}

/// The raw syscalls, each behind a function whose preconditions the callers above
/// establish (ranges checked by `check_virt` / `check_phys`).
mod sys {
    use super::*;

    /// Bytes of memory this process may still commit: MemAvailable, and its
    /// cgroup's limit less its usage where one is set (v2, or v1's memory
    /// controller). None if /proc/meminfo cannot be read.
    pub(super) fn available_memory() -> Option<usize> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<usize>()
            .ok()?;
        let mut avail = kib.saturating_mul(1024);
        if let Some(room) = cgroup_room() {
            avail = avail.min(room);
        }
        Some(avail)
    }

    fn read_num(path: &str) -> Option<usize> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The least room (limit less usage) over the process's memory cgroup and
    /// every ancestor with a limit (a container's limit is usually set on a
    /// parent of the process's own group), or None if no level sets one.
    fn cgroup_room() -> Option<usize> {
        let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        for line in groups.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            let (root, limit, usage) = if ctrl.is_empty() {
                ("/sys/fs/cgroup", "memory.max", "memory.current")
            } else if ctrl.split(',').any(|c| c == "memory") {
                (
                    "/sys/fs/cgroup/memory",
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                )
            } else {
                continue;
            };
            return tightest(root, path, limit, usage);
        }
        None
    }

    /// The least `limit - usage` over `root/path` and its ancestors up to `root`.
    pub(super) fn tightest(root: &str, path: &str, limit: &str, usage: &str) -> Option<usize> {
        let mut room: Option<usize> = None;
        let mut dir = path.trim_end_matches('/');
        loop {
            let d = format!("{root}{dir}");
            // "max" (v2) or a huge number (v1): no limit at this level.
            if let Some(l) = read_num(&format!("{d}/{limit}")).filter(|&l| l < (1 << 60)) {
                let here = l.saturating_sub(read_num(&format!("{d}/{usage}")).unwrap_or(0));
                room = Some(room.map_or(here, |r| r.min(here)));
            }
            match dir.rfind('/') {
                Some(i) => dir = &dir[..i],
                None => break,
            }
        }
        room
    }

    pub(super) fn memfd(huge: bool) -> Result<i32, BackendError> {
        let mut flags = libc::MFD_CLOEXEC;
        if huge {
            // MFD_HUGE_2MB = 21 << MFD_HUGE_SHIFT
            flags |= libc::MFD_HUGETLB | (21 << 26);
        }
        // SAFETY: the name is a valid NUL-terminated C string; no memory is touched.
        let fd = unsafe { libc::memfd_create(c"engram-kv".as_ptr(), flags) };
        if fd < 0 {
            Err(last_os_error("memfd_create"))
        } else {
            Ok(fd)
        }
    }

    pub(super) fn open_unlinked(path: &str) -> Result<i32, BackendError> {
        let c = std::ffi::CString::new(path).map_err(|_| BackendError::BadRange)?;
        // SAFETY: `c` is a valid C string; O_EXCL makes a fresh file we own.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(last_os_error("open"));
        }
        // SAFETY: as above; the file stays alive through `fd`.
        unsafe { libc::unlink(c.as_ptr()) };
        Ok(fd)
    }

    pub(super) fn fallocate(
        fd: i32,
        mode: i32,
        off: usize,
        len: usize,
    ) -> Result<(), BackendError> {
        loop {
            // SAFETY: plain syscall on our fd; no memory is passed.
            let r = unsafe { libc::fallocate(fd, mode, off as libc::off_t, len as libc::off_t) };
            if r == 0 {
                return Ok(());
            }
            if os::errno() != libc::EINTR {
                return Err(last_os_error("fallocate"));
            }
        }
    }

    pub(super) fn close(fd: i32) {
        // SAFETY: `fd` is a descriptor we opened and close once.
        unsafe { libc::close(fd) };
    }

    /// Map `len` bytes of `fd` at file offset `off`, at `at` (MAP_FIXED) or anywhere.
    pub(super) fn map_shared(
        at: Option<usize>,
        fd: i32,
        off: usize,
        len: usize,
    ) -> Result<usize, BackendError> {
        let (addr, extra) = match at {
            Some(a) => (a as *mut libc::c_void, libc::MAP_FIXED),
            None => (ptr::null_mut(), 0),
        };
        // SAFETY: with MAP_FIXED, `at` lies inside our own reservation (checked by the
        // caller), so only our PROT_NONE or KV mappings are replaced; no Rust reference
        // points into that range (the cache hands out raw pointers only).
        let p = unsafe {
            libc::mmap(
                addr,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | extra,
                fd,
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            Err(last_os_error("mmap(MAP_FIXED|MAP_SHARED)"))
        } else {
            Ok(p as usize)
        }
    }

    /// Replace `[at, at+len)` of our reservation by a fresh PROT_NONE mapping.
    pub(super) fn overlay_none(at: usize, len: usize) -> Result<(), BackendError> {
        // SAFETY: the range lies inside our reservation (checked by the caller); the
        // pages it held stay in the memfd.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            Err(last_os_error("mmap(PROT_NONE overlay)"))
        } else {
            Ok(())
        }
    }

    pub(super) fn copy(src: usize, dst: usize, len: usize) {
        // SAFETY: both are distinct whole pages of the read-write pool view (checked
        // by the caller), so they are valid and do not overlap.
        unsafe { ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, len) };
    }

    pub(super) fn read(src: usize, out: &mut [u8]) {
        // SAFETY: `src..src+out.len()` is mapped readable (checked by the caller:
        // pool view, or reservation range the cache mapped); `out` is a distinct buffer.
        unsafe { ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr(), out.len()) };
    }

    pub(super) fn write(dst: usize, data: &[u8]) {
        // SAFETY: as in `read`, for a writable mapped destination.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), dst as *mut u8, data.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::sys::tightest;

    /// A limit set on a parent group (as a container runtime does) bounds the
    /// room even when the process's own group has none (review finding: only the
    /// process's own group was read).
    #[test]
    fn a_parent_groups_limit_counts() {
        let root = std::env::temp_dir().join(format!("engram-cg-{}", std::process::id()));
        let leaf = root.join("a/b/c");
        std::fs::create_dir_all(&leaf).unwrap();
        let put = |d: &std::path::Path, max: &str, cur: &str| {
            std::fs::write(d.join("memory.max"), max).unwrap();
            std::fs::write(d.join("memory.current"), cur).unwrap();
        };
        put(&root, "max\n", "0\n");
        put(&root.join("a"), "1000000\n", "400000\n");
        put(&root.join("a/b"), "max\n", "100\n");
        put(&leaf, "max\n", "100\n");
        let r = root.to_str().unwrap();
        let room = |p: &str| tightest(r, p, "memory.max", "memory.current");
        assert_eq!(room("/a/b/c"), Some(600_000));
        assert_eq!(room("/a/b/c/"), Some(600_000));
        // A tighter leaf wins over the parent.
        put(&leaf, "50000\n", "20000\n");
        assert_eq!(room("/a/b/c"), Some(30_000));
        // No level sets a limit.
        assert_eq!(room("/"), None);
        put(&root.join("a"), "max\n", "0\n");
        put(&leaf, "max\n", "0\n");
        assert_eq!(room("/a/b/c"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
