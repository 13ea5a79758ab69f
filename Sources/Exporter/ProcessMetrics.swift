import Glibc
import RAPLBackend
import Support

extension ProcessFigures {
    /// This process's figures now: CPU time (`getrusage`), memory (`/proc/self/statm`), open descriptors
    /// (`/proc/self/fd`) and their limit (`RLIMIT_NOFILE`). `startTimeSeconds` is given: when the exporter
    /// started. Nil fields of the kernel's become 0 rather than failing the scrape.
    public static func current(startTimeSeconds: Double) -> ProcessFigures {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let cpu =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec)
            / 1e6
        let page = UInt64(max(sysconf(Int32(_SC_PAGESIZE)), 1))
        var resident: UInt64 = 0
        var virtual: UInt64 = 0
        if let statm = try? TextFile.read("/proc/self/statm") {
            let fields = statm.split(separator: " ")
            if fields.count >= 2 {
                virtual = (UInt64(fields[0]) ?? 0) * page
                resident = (UInt64(fields[1].trimmingWhitespace()) ?? 0) * page
            }
        }
        var limit = rlimit()
        getrlimit(openFilesLimit, &limit)
        // Listing the directory opens one descriptor of its own.
        let open = max((DirectoryListing.count("/proc/self/fd") ?? 1) - 1, 0)
        return ProcessFigures(
            cpuSeconds: cpu, residentBytes: resident, virtualBytes: virtual, startTimeSeconds: startTimeSeconds, openFileDescriptors: open,
            maxFileDescriptors: UInt64(limit.rlim_cur))
    }
}

/// `RLIMIT_NOFILE` as `getrlimit` takes it (Glibc imports the constant as an enum case on Linux).
private let openFilesLimit = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
