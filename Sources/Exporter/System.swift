import CSnappy

/// Snappy block-format compression (the format remote write requires), through libsnappy's C API.
public enum Snappy {
    /// Compresses `input` with `snappy_compress(3)`.
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        var length = snappy_max_compressed_length(input.count)
        var output = [UInt8](repeating: 0, count: length)
        let status = input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                src.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(src.count, 1)) { s in
                    dst.baseAddress!.withMemoryRebound(to: CChar.self, capacity: dst.count) { d in
                        snappy_compress(s, src.count, d, &length)
                    }
                }
            }
        }
        precondition(status == SNAPPY_OK, "snappy_compress cannot fail with a buffer of snappy_max_compressed_length")
        output.removeLast(output.count - length)
        return output
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

/// Writes whole text to a file descriptor with `write(2)`, resuming after partial writes and EINTR.
private func writeAll(_ fd: CInt, _ text: String) {
    var t = text
    t.withUTF8 { buffer in
        var offset = 0
        while offset < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
        }
    }
}

/// Writes to standard output, whole lines at once (no stdio buffering to lose at exit).
enum StandardOutput {
    static func write(_ text: String) { writeAll(1, text) }
}

/// Replaces a small file atomically: write a temp file beside it, then `rename(2)` over it.
enum AtomicFile {
    static func write(_ path: String, _ content: String) -> Bool {
        let temp = path + ".\(getpid()).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        var text = content
        let ok = text.withUTF8 { buffer in Glibc.write(fd, buffer.baseAddress, buffer.count) == buffer.count }
        close(fd)
        return ok && rename(temp, path) == 0
    }

    static func processExists(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    static var processID: Int32 { getpid() }
}

/// Writes to standard error (no Foundation).
public enum StandardError {
    public static func write(_ text: String) { writeAll(2, text) }
}
