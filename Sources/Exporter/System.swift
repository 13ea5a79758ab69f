import CSnappy

/// Snappy block-format compression (the format remote write requires), through libsnappy's C API.
public enum Snappy {
    /// Compresses `input` with `snappy_compress(3)`.
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        var scratch: [UInt8] = []
        return input.withUnsafeBytes { compress($0, into: &scratch) }
    }

    /// Compresses `input` with `snappy_compress(3)` into `scratch` (grown once to
    /// `snappy_max_compressed_length` and then reused) and returns the compressed bytes.
    public static func compress(_ input: UnsafeRawBufferPointer, into scratch: inout [UInt8]) -> [UInt8] {
        let bound = snappy_max_compressed_length(input.count)
        if scratch.count < bound { scratch.append(contentsOf: repeatElement(0, count: bound - scratch.count)) }
        var length = bound
        let status = scratch.withUnsafeMutableBytes { dst in
            // An empty input still needs a valid pointer; any will do for 0 bytes.
            let source = input.baseAddress ?? UnsafeRawPointer(dst.baseAddress!)
            return snappy_compress(
                source.assumingMemoryBound(to: CChar.self), input.count,
                dst.baseAddress!.assumingMemoryBound(to: CChar.self), &length)
        }
        precondition(status == SNAPPY_OK, "snappy_compress cannot fail with a buffer of snappy_max_compressed_length")
        return Array(scratch[..<length])
    }

    /// Decompresses a snappy block; nil when the input is not valid snappy.
    public static func uncompress(_ input: [UInt8]) -> [UInt8]? {
        var length = 0
        let ok = input.withUnsafeBufferPointer { src in
            src.baseAddress.map { base in
                base.withMemoryRebound(to: CChar.self, capacity: src.count) { snappy_uncompressed_length($0, src.count, &length) }
            }
        }
        guard ok == SNAPPY_OK else { return nil }
        var output = [UInt8](repeating: 0, count: length)
        let status = input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                src.baseAddress!.withMemoryRebound(to: CChar.self, capacity: src.count) { s in
                    dst.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(dst.count, 1)) { d in
                        snappy_uncompress(s, src.count, d, &length)
                    }
                }
            }
        }
        return status == SNAPPY_OK ? output : nil
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// Wall-clock time for sample timestamps. Windows are *timed* on a monotonic clock; only their labels
/// come from the wall clock. Injected in tests.
public protocol WallClock: Sendable {
    /// Microseconds since the Unix epoch.
    func nowMicroseconds() -> Int64
}

/// `clock_gettime(CLOCK_REALTIME)`.
public struct SystemWallClock: WallClock {
    public init() {}
    public func nowMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}

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

/// Writes `text` to an existing file (a `/proc` attribute), opened write-only; false if it cannot.
private func overwrite(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return writeAll(fd, text) == 0
}

/// Writes to standard output, whole lines at once (no stdio buffering to lose at exit).
enum StandardOutput {
    /// 0, or the errno of the failed write (EPIPE, EBADF when closed, ENOSPC on /dev/full, …).
    static func write(_ text: String) -> CInt { writeAll(1, text) }
}

/// Replaces a small file atomically: a temporary file made with `mkstemp(3)` beside it (a new,
/// unpredictable name, opened O_EXCL: no symlink or file planted in a shared directory is followed or
/// reused), then `rename(2)` over it (which replaces a symlink at the path itself, never its target).
enum AtomicFile {
    static func write(_ path: String, _ content: String) -> Bool {
        var template = Array((path + ".XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { return false }
        let temp = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // mkstemp makes it 0600; the health check may run as another user of the same group.
        fchmod(fd, 0o644)
        let ok = writeAll(fd, content) == 0
        close(fd)
        if ok, rename(temp, path) == 0 { return true }
        unlink(temp)
        return false
    }

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

/// The sampler's time source: a monotonic clock and a blocking wait for an absolute deadline on it.
/// The sampler runs on a thread of its own and waits here, not on Swift concurrency's timers: one
/// futex wait per window, no job switch, no timer coalescing. Injected in tests.
public protocol SamplingTimer: Sendable {
    /// Monotonic time since an arbitrary origin.
    func now() -> Duration
    /// Blocks the calling thread until `now() >= deadline`; returns false at once (or as soon as it
    /// happens) when `stop()` has been called.
    func wait(until deadline: Duration) -> Bool
    /// Ends the current wait and every later one.
    func stop()
}

/// `CLOCK_MONOTONIC`, waited on with `pthread_cond_timedwait(3)` on a condition variable set to that
/// clock: the kernel sleeps until the absolute deadline (no drift from computing relative timeouts),
/// and `stop()` wakes the wait at once.
public final class MonotonicTimer: SamplingTimer, @unchecked Sendable {
    // Guarded by `mutex`; the pthread objects live at stable addresses for the timer's lifetime.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var stopped = false

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// `clock_gettime(CLOCK_MONOTONIC)`.
    public func now() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return .seconds(Int64(ts.tv_sec)) + .nanoseconds(Int64(ts.tv_nsec))
    }

    public func wait(until deadline: Duration) -> Bool {
        let (seconds, attoseconds) = deadline.components
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !stopped {
            // ETIMEDOUT once the deadline has passed; 0 on stop() or a spurious wake-up (checked again).
            if pthread_cond_timedwait(condition, mutex, &ts) == ETIMEDOUT { return !stopped }
        }
        return false
    }

    public func stop() {
        pthread_mutex_lock(mutex)
        stopped = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}

/// The calling thread's timer slack: how late the kernel may fire its timers to batch wake-ups (50 µs by
/// default, which at 1 kHz makes most wake-ups 50 µs late). Set by writing `/proc/TID/timerslack_ns`:
/// `prctl(PR_SET_TIMERSLACK)` is variadic, so not callable from Swift, and a thread may set its own
/// slack without privileges. False when `/proc` is not mounted or refuses.
enum TimerSlack {
    static func set(nanoseconds: Int) -> Bool {
        var link = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/thread-self", &link, link.count - 1)
        guard n > 0 else { return false }
        // "TGID/task/TID"
        let target = String(decoding: link[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let tid = target.split(separator: "/").last else { return false }
        return overwrite("/proc/\(tid)/timerslack_ns", String(nanoseconds))
    }
}

/// A detached thread of its own (`pthread_create(3)`), named for `top -H` and `/proc/PID/task` (by
/// writing `/proc/thread-self/comm`: `pthread_setname_np` is not in Swift's Glibc module).
enum DedicatedThread {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread; false (with errno's reason in `error`) when none can be created.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) -> (started: Bool, error: CInt) {
        let named: @Sendable () -> Void = {
            _ = overwrite("/proc/thread-self/comm", String(name.prefix(15)))
            body()
        }
        let context = Unmanaged.passRetained(Body(named)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, CInt(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, &attributes,
            { context in
                let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
                body.run()
                return nil
            }, context)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            return (false, rc)
        }
        return (true, 0)
    }
}
