/// Which backend reads the counters.
public enum BackendKind: String, Sendable, CaseIterable {
    case perf, msr, sysfs
    /// Not a measurement: energy made up from the machine's CPU time (``SimulatedBackend``), for trying
    /// the pipeline where there is no RAPL. Never chosen by `auto`; marked in every output.
    case simulated

    /// Whether this backend measures anything (false for ``simulated``).
    public var measures: Bool { self != .simulated }
}
