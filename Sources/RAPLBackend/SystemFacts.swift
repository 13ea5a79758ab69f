/// What the process may do and what the machine is: the facts that decide which backend can work.
/// Tests inject them; the daemon reads them with ``current(paths:)``.
public struct SystemFacts: Sendable, Equatable {
    /// The capabilities the process can use: its permitted set (the effective set is raised from it
    /// per backend, see ``Privileges``).
    public var capabilities: CapabilitySet
    /// `kernel.perf_event_paranoid`, or nil when it cannot be read.
    public var perfParanoid: Int?
    public var identity: CPUIdentity?

    public init(capabilities: CapabilitySet, perfParanoid: Int?, identity: CPUIdentity?) {
        self.capabilities = capabilities
        self.perfParanoid = perfParanoid
        self.identity = identity
    }

    public static func current(paths: HardwarePaths) -> SystemFacts {
        SystemFacts(
            capabilities: Privileges.permitted,
            perfParanoid: Topology.readInt(paths.perfParanoid),
            identity: CPUIdentity.read(paths: paths)
        )
    }
}
