/// Which backend reads the counters.
public enum BackendKind: String, Sendable, CaseIterable {
    case perf, msr, sysfs
}
