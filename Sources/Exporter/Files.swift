// Writing whole text to descriptors and files without Foundation: standard output and error, the
// atomic replacement of a small file (the health file), and the spool's directory and segment files.

import Glibc
import SystemPackage

/// Writes whole text to a file descriptor with `write(2)`, resuming after partial writes and EINTR;
/// 0, or the errno of the write that failed.
@discardableResult
private func writeAll(_ fd: CInt, _ text: String) -> CInt {
    var t = text
    return t.withUTF8 { buffer in
        var offset = 0
        while offset < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += n
        }
        return 0
    }
}

/// The text of an errno value (`strerror(3)`).
func errorText(_ code: CInt) -> String { String(cString: strerror(code)) }

/// Writes to standard output, whole lines at once (no stdio buffering to lose at exit).
enum StandardOutput {
    /// 0, or the errno of the failed write (EPIPE, ENOSPC on /dev/full, …).
    static func write(_ text: String) -> CInt { writeAll(1, text) }
}

/// Standard input, output and error that the process was started without.
public enum StandardStreams {
    /// Opens /dev/null on each of descriptors 0, 1, 2 that is closed, so that no counter file or socket
    /// opened later takes its number (the JSON lines would go into it); returns the ones that were
    /// closed. Call first thing, before anything opens a file.
    public static func reserveClosed() -> [CInt] {
        var closed: [CInt] = []
        for fd: CInt in 0...2 where fcntl(fd, F_GETFD) < 0 && errno == EBADF {
            closed.append(fd)
            let null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
            if null >= 0, null != fd {
                dup2(null, fd)
                close(null)
            }
        }
        return closed
    }
}

/// Replaces a small file atomically: a temporary file made with `mkstemp(3)` beside it (a new,
/// unpredictable name, opened O_EXCL: no symlink or file planted in a shared directory is followed or
/// reused), then `rename(2)` over it (which replaces a symlink at the path itself, never its target).
enum AtomicFile {
    /// Makes the file at `path` anew with `bytes`, atomically as above, and returns a descriptor open on
    /// it for ``overwrite(_:_:previousLength:)``; nil when it cannot.
    static func create(_ path: String, _ bytes: [UInt8]) -> CInt? {
        var template = Array((path + ".XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { return nil }
        // Kept open for the process's life: not inherited by anything it starts (mkostemp is not in
        // Swift's Glibc module).
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temp = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // mkstemp makes it 0600; the health check may run as another user of the same group.
        fchmod(fd, 0o644)
        if overwrite(fd, bytes, previousLength: 0), rename(temp, path) == 0 { return fd }
        Glibc.close(fd)
        unlink(temp)
        return nil
    }

    /// Writes `bytes` at the start of the open file (one `pwrite(2)`), cutting it to their length when
    /// the last write was longer.
    static func overwrite(_ fd: CInt, _ bytes: [UInt8], previousLength: Int) -> Bool {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard n == bytes.count else { return false }
        return previousLength <= bytes.count || ftruncate(fd, off_t(bytes.count)) == 0
    }

    /// Whether `path` still names the open file `fd` (not removed, not replaced by another file).
    static func isLinked(_ fd: CInt, at path: String) -> Bool {
        var open = stat()
        var named = stat()
        guard fstat(fd, &open) == 0, open.st_nlink > 0, lstat(path, &named) == 0 else { return false }
        return open.st_ino == named.st_ino && open.st_dev == named.st_dev
    }

    static func close(_ fd: CInt) { _ = Glibc.close(fd) }

    /// Makes `path` a directory of this user's, mode 0700, or accepts one that already is: a real
    /// directory (not a symlink) owned by this user and writable by no one else. The reason otherwise.
    static func ownDirectory(_ path: String) -> String? {
        if mkdir(path, 0o700) != 0, errno != EEXIST { return "cannot create \(path): \(errorText(errno))" }
        var st = stat()
        guard lstat(path, &st) == 0 else { return "cannot stat \(path): \(errorText(errno))" }
        guard st.st_mode & S_IFMT == S_IFDIR else { return "\(path) is not a directory (a symlink or file someone else made?)" }
        guard st.st_uid == geteuid() else { return "\(path) belongs to uid \(st.st_uid), not to this process (uid \(geteuid()))" }
        guard st.st_mode & 0o022 == 0 else { return "\(path) is writable by others (mode \(String(st.st_mode & 0o777, radix: 8)))" }
        return nil
    }

    static var userID: UInt32 { geteuid() }

    static func processExists(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    static var processID: Int32 { getpid() }
}

/// Writes to standard error (no Foundation).
public enum StandardError {
    public static func write(_ text: String) { writeAll(2, text) }

    /// `strerror(3)` of `code`.
    public static func describe(errno code: CInt) -> String { errorText(code) }
}

/// What tells that a file was replaced or rewritten: device, inode, size and modification time
/// (`stat(2)`, following symlinks — a Kubernetes secret volume swaps a symlink).
struct FileIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedNanoseconds: Int64

    /// Nil when the path cannot be stat'ed.
    static func of(_ path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(
            device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
            modifiedNanoseconds: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }
}

/// This machine's name, for OTLP's `host.name`.
enum HostName {
    static var current: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The file-system calls of the spool (`Spool`): each `throws(Errno)` with the failed call's errno, in
/// swift-system's style.
enum SpoolFiles {
    private static func check(_ result: CInt) throws(Errno) {
        if result < 0 { throw Errno(rawValue: errno) }
    }

    /// Creates `path` as a directory (mode 0750) unless it exists, with its missing parents (as
    /// `mkdir -p`); EEXIST is not an error.
    static func makeDirectory(_ path: String) throws(Errno) {
        if mkdir(path, 0o750) != 0, errno != EEXIST {
            guard errno == ENOENT, let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")), slash != path.utf8.startIndex else {
                throw Errno(rawValue: errno)
            }
            try makeDirectory(String(path[..<slash]))
            if mkdir(path, 0o750) != 0, errno != EEXIST { throw Errno(rawValue: errno) }
        }
        var st = stat()
        try check(stat(path, &st))
        if st.st_mode & S_IFMT != S_IFDIR { throw Errno.notDirectory }
    }

    /// Opens (creating, 0640) a file for reading and writing, close-on-exec.
    static func openReadWrite(_ path: String, create: Bool, exclusive: Bool = false) throws(Errno) -> CInt {
        var flags = O_RDWR | O_CLOEXEC
        if create { flags |= O_CREAT }
        if exclusive { flags |= O_EXCL }
        let fd = open(path, flags, 0o640)
        try check(fd)
        return fd
    }

    /// An exclusive `flock(2)` without waiting; false when another process holds it.
    static func tryLock(_ fd: CInt) throws(Errno) -> Bool {
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
        if errno == EWOULDBLOCK { return false }
        throw Errno(rawValue: errno)
    }

    /// Writes all of `bytes` at `offset` (resuming after partial writes and EINTR).
    static func write(_ fd: CInt, _ bytes: ArraySlice<UInt8>, at offset: Int) throws(Errno) {
        var done = 0
        let count = bytes.count
        while done < count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            if n == 0 { throw Errno.noSpace }
            done += n
        }
    }

    /// `fdatasync(2)`: the data written so far survives a crash of the machine.
    static func dataSync(_ fd: CInt) throws(Errno) { try check(fdatasync(fd)) }

    /// `fsync(2)` of a directory, so that a new or removed entry in it survives a crash.
    static func syncDirectory(_ path: String) throws(Errno) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try check(fd)
        defer { Glibc.close(fd) }
        try check(fsync(fd))
    }

    static func truncate(_ fd: CInt, to length: Int) throws(Errno) { try check(ftruncate(fd, off_t(length))) }

    /// Sleeps the calling thread (start-up only: waiting for a lock being released).
    static func pause(milliseconds: Int) {
        var request = timespec(tv_sec: 0, tv_nsec: milliseconds * 1_000_000)
        var left = timespec()
        while nanosleep(&request, &left) != 0, errno == EINTR { request = left }
    }

    static func close(_ fd: CInt) { _ = Glibc.close(fd) }

    /// The whole file at `path`.
    static func read(_ path: String) throws(Errno) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try check(fd)
        defer { Glibc.close(fd) }
        var st = stat()
        try check(fstat(fd, &st))
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            if n == 0 { break }
            done += n
        }
        return Array(bytes.prefix(done))
    }

    /// The names in a directory (not `.` and `..`).
    static func list(_ path: String) throws(Errno) -> [String] {
        guard let dir = opendir(path) else { throw Errno(rawValue: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    static func remove(_ path: String) throws(Errno) { try check(unlink(path)) }

    /// Replaces `path` with `bytes` through a temporary file and `rename(2)`: readers see the old or the
    /// new content, never a mix.
    static func replace(_ path: String, with bytes: [UInt8]) throws(Errno) {
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        try check(fd)
        do throws(Errno) {
            try write(fd, bytes[...], at: 0)
        } catch {
            Glibc.close(fd)
            throw error
        }
        Glibc.close(fd)
        try check(rename(temp, path))
    }

    /// The file's size, or nil when it does not exist.
    static func size(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }
}
