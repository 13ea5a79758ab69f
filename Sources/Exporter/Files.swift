// Writing whole text to descriptors and files without Foundation: standard output and error, and the
// atomic replacement of a small file (the health file).

import Glibc

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
