import Support

/// Least privilege: each backend is opened with only the capability it needs, and every capability is
/// dropped once the counters are open. Open descriptors keep working without them (the kernel checks
/// capabilities at open, not at read), but a counter that must be reopened later (a vanished zone, say)
/// then can only be reopened if plain file permissions allow it.
public enum Privileges {
    /// The capabilities a backend may use to open its counters: CAP_PERFMON for perf (CAP_SYS_ADMIN only
    /// where CAP_PERFMON is not held, as before Linux 5.8); CAP_SYS_RAWIO plus CAP_DAC_READ_SEARCH (read
    /// access to the root-only device) for MSR; CAP_DAC_READ_SEARCH for sysfs (energy_uj is root-only
    /// since Linux 5.10).
    public static func needed(for kind: BackendKind, permitted: CapabilitySet) -> CapabilitySet {
        switch kind {
        case .perf: permitted.contains(.perfmon) ? .perfmon : .sysAdmin
        case .msr: [.sysRawio, .dacReadSearch]
        case .sysfs: .dacReadSearch
        case .simulated: []
        }
    }

    public static var permitted: CapabilitySet { Kernel.capabilitySets().permitted }
    public static var effective: CapabilitySet { Kernel.capabilitySets().effective }

    /// Sets the effective set to `wanted` ∩ permitted.
    public static func restrictEffective(to wanted: CapabilitySet) throws(KernelError) {
        try Kernel.setEffectiveCapabilities(wanted)
    }

    /// Threads in this process. Capabilities are per thread in Linux: ``dropAll()`` covers the whole
    /// process only while it is the only thread (threads created later inherit the empty sets).
    public static var threadCount: Int { Kernel.threadCount() }

    /// Drops every capability (effective, permitted, inheritable, ambient) for good — for the calling
    /// thread and the threads it creates afterwards.
    public static func dropAll() throws(KernelError) {
        try Kernel.dropAllCapabilities()
    }

    /// The `CapEff:` line of /proc/self/status (hex), what the kernel itself says the process holds.
    public static func effectiveFromProc(procRoot: String = "/proc") -> String? {
        guard let status = try? Kernel.readText(procRoot + "/self/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return line.dropFirst("CapEff:".count).trimmingWhitespace()
        }
        return nil
    }
}

/// Small text files (passwords, tokens, certificates' paths are read by TLS itself): read whole.
package enum TextFile {
    /// Reads at most 64 KiB of `path`; the error names the path and the errno, never the content.
    package static func read(_ path: String) throws(KernelError) -> String {
        try Kernel.readText(path)
    }

    /// The bytes of a regular file of at most `limit` bytes; anything else (a FIFO, a device, a
    /// directory) is refused without blocking. The error names the path, never the content.
    package static func readRegular(_ path: String, limit: Int = 64 * 1024) throws(KernelError) -> [UInt8] {
        try Kernel.readRegularFile(path, limit: limit)
    }
}

/// Directory listings for the exporter's own process figures (`/proc/self/fd`).
package enum DirectoryListing {
    /// The number of entries of `path` (without `.` and `..`); nil when it cannot be listed.
    package static func count(_ path: String) -> Int? {
        try? Kernel.listDirectory(path).count
    }
}
