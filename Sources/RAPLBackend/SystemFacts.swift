import Support

/// What the process may do and what the machine is: the facts that decide which backend can work.
/// Tests inject them; the daemon reads them with ``current(paths:)``.
public struct SystemFacts: Sendable, Equatable {
    /// The capabilities the process can use: its permitted set (the effective set is raised from it
    /// per backend, see ``Privileges``).
    public var capabilities: CapabilitySet
    /// `kernel.perf_event_paranoid`, or nil when it cannot be read.
    public var perfParanoid: Int?
    public var identity: CPUIdentity?
    /// `kernel.random.boot_id`: tells whether counters read by an earlier run are the same counters
    /// (they restart at boot); nil when it cannot be read.
    public var bootID: String?

    public init(capabilities: CapabilitySet, perfParanoid: Int?, identity: CPUIdentity?, bootID: String? = nil) {
        self.capabilities = capabilities
        self.perfParanoid = perfParanoid
        self.identity = identity
        self.bootID = bootID
    }

    public static func current(paths: HardwarePaths) -> SystemFacts {
        SystemFacts(
            capabilities: Privileges.permitted,
            perfParanoid: Topology.readInt(paths.perfParanoid),
            identity: CPUIdentity.read(paths: paths),
            bootID: (try? Kernel.readText(paths.bootID)).map { $0.trimmingWhitespace() }.flatMap { $0.isEmpty ? nil : $0 }
        )
    }
}
