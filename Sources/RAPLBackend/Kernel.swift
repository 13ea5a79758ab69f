// The one Swift file that calls C: the perf/MSR shim, libcap, and the few libc calls swift-system lacks
// (directory listing). Everything else in RAPLBackend goes through the functions here, so every
// failure carries the call that failed, the path it failed on, and the errno.

import CLibcap
import CPerfShim
// Linux with glibc only (the calls below are qualified with `Glibc.`; a musl build is not supported).
import Glibc
import SystemPackage

/// A failed system call: which call, on which path, and the `Errno` it returned.
public struct KernelError: Error, Sendable, Equatable, CustomStringConvertible {
    public var call: String
    public var path: String
    public var errno: Errno

    /// Said instead of the errno's text when the call itself succeeded but the file is unsuitable.
    public var detail: String?

    public init(call: String, path: String, errno: Errno, detail: String? = nil) {
        self.call = call
        self.path = path
        self.errno = errno
        self.detail = detail
    }

    public var description: String { "\(call) \(path): \(detail ?? "\(errno)")" }

    /// True for EACCES and EPERM: a capability or file-mode problem rather than a missing file.
    public var isPermission: Bool { errno == .permissionDenied || errno == .notPermitted }
}

/// Owns a set of open file descriptors and closes each exactly once when it goes away.
///
/// Backends keep their counter files open for the life of the process and re-read them with
/// `pread(2)`, so the hot path is one syscall per counter. A descriptor slot is `-1` when closed.
struct DescriptorTable: ~Copyable {
    private var fds: [CInt]

    init(count: Int) { fds = Array(repeating: -1, count: count) }

    deinit {
        for fd in fds where fd >= 0 { _ = Glibc.close(fd) }
    }

    var count: Int { fds.count }

    /// The descriptor at `index`, or -1 when it is closed.
    subscript(_ index: Int) -> CInt { fds[index] }

    /// The descriptor at `index`, opened with `open` first when there is none (on first use, or after a
    /// failed read closed it).
    mutating func descriptor(_ index: Int, open: () throws(KernelError) -> CInt) throws(KernelError) -> CInt {
        if fds[index] >= 0 { return fds[index] }
        let fd = try open()
        fds[index] = fd
        return fd
    }

    mutating func append() -> Int {
        fds.append(-1)
        return fds.count - 1
    }

    /// Stores `fd` in `index`, closing what was there.
    mutating func set(_ index: Int, _ fd: CInt) {
        close(index)
        fds[index] = fd
    }

    mutating func close(_ index: Int) {
        if fds[index] >= 0 { _ = Glibc.close(fds[index]) }
        fds[index] = -1
    }
}

enum Kernel {
    /// `open(2)` read-only with `O_CLOEXEC`.
    static func openReadOnly(_ path: String) throws(KernelError) -> CInt {
        do {
            // Through the C-string overload: FilePath's separator normalisation trapped on "//" in a
            // debug build of swift-system 1.8.1, and a user-supplied root may well contain one.
            return try path.withCString { try FileDescriptor.open($0, .readOnly, options: [.closeOnExec]).rawValue }
        } catch {
            throw KernelError(call: "open", path: path, errno: error as? Errno ?? .ioError)
        }
    }

    /// `pread(2)` at offset 0 into `buffer`; returns the byte count.
    static func preadStart(_ fd: CInt, _ buffer: UnsafeMutableRawBufferPointer, path: @autoclosure () -> String) throws(KernelError) -> Int {
        let n = preadStart(fd, buffer)
        if n < 0 { throw KernelError(call: "pread", path: path(), errno: Errno(rawValue: CInt(-n))) }
        return n
    }

    /// `pread(2)` at offset 0, retried on EINTR: the bytes read, or -errno. Called straight from libc
    /// rather than through swift-system's `FileDescriptor.read(fromAbsoluteOffset:)` (a closure and a
    /// `Result` per call): it runs for every counter at every deadline, where each distinct piece of
    /// code comes back to a cold cache (docs/performance.md).
    @inline(__always)
    static func preadStart(_ fd: CInt, _ buffer: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            let n = Glibc.pread(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            let e = Glibc.errno
            if e != EINTR { return -Int(e) }
        }
    }

    /// Reads a whole small text file (sysfs attribute, procfs file), at most `limit` bytes.
    static func readText(_ path: String, limit: Int = 64 * 1024) throws(KernelError) -> String {
        let fd = try openReadOnly(path)
        defer { _ = Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n: Int
            do {
                n = try chunk.withUnsafeMutableBytes { buf in
                    try FileDescriptor(rawValue: fd).read(into: buf, retryOnInterrupt: true)
                }
            } catch {
                throw KernelError(call: "read", path: path, errno: error as? Errno ?? .ioError)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes of a small regular file, for secrets and other files a user names: opened without
    /// blocking and without becoming a controlling terminal, and refused unless `fstat(2)` says it is a
    /// regular file of at most `limit` bytes (a FIFO would hang the reader, `/dev/zero` never ends).
    static func readRegularFile(_ path: String, limit: Int = 64 * 1024) throws(KernelError) -> [UInt8] {
        let fd: CInt
        do {
            fd = try path.withCString {
                try FileDescriptor.open($0, .readOnly, options: [.closeOnExec, .nonBlocking, .init(rawValue: O_NOCTTY)]).rawValue
            }
        } catch {
            throw KernelError(call: "open", path: path, errno: error as? Errno ?? .ioError)
        }
        defer { _ = Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw KernelError(call: "fstat", path: path, errno: Errno(rawValue: Glibc.errno)) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw KernelError(call: "open", path: path, errno: .invalidArgument, detail: "not a regular file")
        }
        guard st.st_size <= limit else {
            throw KernelError(call: "open", path: path, errno: .fileTooLarge, detail: "larger than \(limit) bytes")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var offset = 0
        while offset < bytes.count {
            let n: Int
            do {
                n = try bytes.withUnsafeMutableBytes { buf in
                    try FileDescriptor(rawValue: fd).read(into: UnsafeMutableRawBufferPointer(rebasing: buf[offset...]), retryOnInterrupt: true)
                }
            } catch {
                throw KernelError(call: "read", path: path, errno: error as? Errno ?? .ioError)
            }
            if n == 0 { break }
            offset += n
        }
        return Array(bytes[..<offset])
    }

    /// `access(2)`-free existence check: `stat(2)` succeeds (follows symlinks).
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// Names in a directory (`opendir(3)`/`readdir(3)`), without "." and "..", sorted.
    static func listDirectory(_ path: String) throws(KernelError) -> [String] {
        guard let dir = opendir(path) else {
            throw KernelError(call: "opendir", path: path, errno: Errno(rawValue: Glibc.errno))
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Blocks the calling thread for `duration` (`nanosleep(2)`, resumed after signals).
    static func sleep(_ duration: Duration) {
        guard duration > .zero else { return }
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && Glibc.errno == EINTR { request = remaining }
    }

    /// Threads of this process (entries of /proc/self/task).
    static func threadCount() -> Int { (try? listDirectory("/proc/self/task").count) ?? 0 }

    // MARK: perf

    /// `perf_event_open(2)` for a CPU-wide counting event, through CPerfShim.
    static func perfOpen(type: UInt32, config: UInt64, cpu: Int, path: String) throws(KernelError) -> CInt {
        let fd = rapl_perf_open_counter(type, config, CInt(cpu))
        if fd < 0 { throw KernelError(call: "perf_event_open", path: path, errno: Errno(rawValue: -fd)) }
        return fd
    }

    /// `read(2)` of a perf counting fd's 64-bit count.
    static func perfRead(_ fd: CInt, path: @autoclosure () -> String) throws(KernelError) -> UInt64 {
        var value: UInt64 = 0
        let n = rapl_perf_read_counter(fd, &value)
        if n < 0 { throw KernelError(call: "read", path: path(), errno: Errno(rawValue: CInt(-n))) }
        if n != 8 { throw KernelError(call: "read", path: path(), errno: .ioError) }
        return value
    }

    // MARK: MSR

    /// Reads MSR `register` from an open `/dev/cpu/N/msr` (`pread(2)` of 8 bytes at offset `register`).
    /// A short read (a file that ends before the register) is reported as `ENODATA`.
    static func msrRead(_ fd: CInt, register: UInt32, path: @autoclosure () -> String) throws(KernelError) -> UInt64 {
        var value: UInt64 = 0
        let n = rapl_msr_read(fd, register, &value)
        if n < 0 { throw KernelError(call: "pread", path: path(), errno: Errno(rawValue: CInt(-n))) }
        if n != 8 { throw KernelError(call: "pread", path: path(), errno: Errno(rawValue: ENODATA)) }
        return value
    }

    // MARK: capabilities

    /// The effective and permitted capabilities of this process that matter here, through libcap's
    /// `cap_get_proc(3)` and `cap_get_flag(3)`.
    static func capabilitySets() -> (effective: CapabilitySet, permitted: CapabilitySet) {
        guard let caps = cap_get_proc() else { return ([], []) }
        defer { cap_free(UnsafeMutableRawPointer(caps)) }
        var effective: CapabilitySet = []
        var permitted: CapabilitySet = []
        for (cap, flag) in CapabilitySet.mapping {
            var value = CAP_CLEAR
            if cap_get_flag(caps, cap_value_t(cap), CAP_EFFECTIVE, &value) == 0, value == CAP_SET { effective.insert(flag) }
            if cap_get_flag(caps, cap_value_t(cap), CAP_PERMITTED, &value) == 0, value == CAP_SET { permitted.insert(flag) }
        }
        return (effective, permitted)
    }

    /// Makes the effective set exactly `wanted` ∩ permitted, every other capability off
    /// (`cap_clear_flag(3)`, `cap_set_flag(3)`, `cap_set_proc(3)`). The permitted set is kept, so a later
    /// call can raise another one.
    static func setEffectiveCapabilities(_ wanted: CapabilitySet) throws(KernelError) {
        guard let caps = cap_get_proc() else { throw KernelError(call: "cap_get_proc", path: "self", errno: Errno(rawValue: Glibc.errno)) }
        defer { cap_free(UnsafeMutableRawPointer(caps)) }
        cap_clear_flag(caps, CAP_EFFECTIVE)
        for (cap, flag) in CapabilitySet.mapping where wanted.contains(flag) {
            var permitted = CAP_CLEAR
            guard cap_get_flag(caps, cap_value_t(cap), CAP_PERMITTED, &permitted) == 0, permitted == CAP_SET else { continue }
            var value = cap_value_t(cap)
            cap_set_flag(caps, CAP_EFFECTIVE, 1, &value, CAP_SET)
        }
        if cap_set_proc(caps) != 0 { throw KernelError(call: "cap_set_proc", path: "self", errno: Errno(rawValue: Glibc.errno)) }
    }

    /// Drops every capability for good: effective, permitted, inheritable (`cap_init(3)` +
    /// `cap_set_proc(3)`) and ambient (`cap_reset_ambient(3)`).
    static func dropAllCapabilities() throws(KernelError) {
        guard let empty = cap_init() else { throw KernelError(call: "cap_init", path: "self", errno: Errno(rawValue: Glibc.errno)) }
        defer { cap_free(UnsafeMutableRawPointer(empty)) }
        _ = cap_reset_ambient()
        if cap_set_proc(empty) != 0 { throw KernelError(call: "cap_set_proc", path: "self", errno: Errno(rawValue: Glibc.errno)) }
    }
}
