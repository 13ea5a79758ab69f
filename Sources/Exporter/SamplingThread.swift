// The sampler's clocks and its thread: the wall clock for timestamps, the monotonic timer it waits on,
// its timer slack and the dedicated thread itself.

import CPerfShim
import Glibc
import Support
import SystemPackage

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

/// `CLOCK_BOOTTIME`: monotonic, counting suspend, comparable between processes of one boot.
public enum BootClock {
    public static func nowMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
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
    /// ``now()`` in whole nanoseconds, and ``wait(until:)`` for a deadline in them: what the sampling
    /// thread calls at every deadline, without `Duration`'s 128-bit arithmetic (out-of-line standard
    /// library code, docs/performance.md). Both default to the `Duration` versions.
    func nowNanoseconds() -> Int64
    func wait(untilNanoseconds deadline: Int64) -> Bool
}

extension SamplingTimer {
    public func nowNanoseconds() -> Int64 { now().wholeNanoseconds }
    public func wait(untilNanoseconds deadline: Int64) -> Bool { wait(until: Duration(wholeNanoseconds: deadline)) }
}

/// `CLOCK_MONOTONIC`, waited on with one `futex(2)` wait for the absolute deadline (through the C shim):
/// the kernel sleeps until the deadline (no drift from computing relative timeouts), and `stop()` wakes
/// the wait at once by changing the word it waits on.
public final class MonotonicTimer: SamplingTimer, @unchecked Sendable {
    /// 0 while running, 1 once stopped; at a stable address for the timer's lifetime, read and written
    /// only atomically by the shim.
    private let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

    public init() { word.initialize(to: 0) }

    deinit { word.deallocate() }

    /// `clock_gettime(CLOCK_MONOTONIC)`.
    public func now() -> Duration { Duration(wholeNanoseconds: nowNanoseconds()) }

    public func nowNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    public func wait(until deadline: Duration) -> Bool { wait(untilNanoseconds: deadline.wholeNanoseconds) }

    public func wait(untilNanoseconds deadline: Int64) -> Bool {
        // 0 at the deadline, 1 once stopped; -errno only for a bad deadline or word (then stop too,
        // rather than spin).
        rapl_futex_wait_until(word, 0, deadline) == 0
    }

    public func stop() {
        _ = rapl_futex_store_and_wake(word, 1)
    }
}

/// The CPU time the calling thread has used (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`): user and system,
/// the kernel's nanosecond accounting.
enum ThreadCPUTime {
    static func current() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Duration(secondsComponent: Int64(ts.tv_sec), attosecondsComponent: Int64(ts.tv_nsec) * 1_000_000_000)
    }
}

/// The calling thread's timer slack: how late the kernel may fire its timers to batch wake-ups (50 µs by
/// default, which at 1 kHz makes most wake-ups 50 µs late). `prctl(PR_SET_TIMERSLACK)` through the C
/// shim (prctl is variadic); a thread may set its own slack without privileges.
enum TimerSlack {
    static func set(nanoseconds: Int) throws(Errno) {
        let rc = rapl_set_timer_slack(UInt(nanoseconds))
        if rc < 0 { throw Errno(rawValue: -rc) }
    }

    /// The calling thread's slack in nanoseconds.
    static func current() throws(Errno) -> Int {
        let value = rapl_get_timer_slack()
        if value < 0 { throw Errno(rawValue: CInt(-value)) }
        return value
    }
}

/// A detached thread of its own (`pthread_create(3)`), named for `top -H` and `/proc/PID/task`
/// (`pthread_setname_np` through the C shim).
enum DedicatedThread {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread; the error when none can be created.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(Errno) {
        let named: @Sendable () -> Void = {
            // A thread without its name still works; `top -H` then shows the process name.
            _ = name.withCString { rapl_set_thread_name($0) }
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
            throw Errno(rawValue: rc)
        }
    }
}
