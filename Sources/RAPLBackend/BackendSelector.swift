import Logging

/// Which backend the user asked for.
public enum BackendPreference: String, Sendable, CaseIterable {
    case auto, perf, msr, sysfs
    /// Not a measurement (``SimulatedBackend``): only when asked for by name.
    case simulated

    /// The backends to try, in order.
    public var order: [BackendKind] {
        switch self {
        case .auto: [.perf, .msr, .sysfs]
        case .perf: [.perf]
        case .msr: [.msr]
        case .sysfs: [.sysfs]
        case .simulated: [.simulated]
        }
    }
}

/// What happened to one backend during selection.
public enum BackendVerdict: Sendable, Equatable {
    case chosen
    /// Opened and readable, but no counter moved during the check; used only if nothing better works.
    case staticCounters
    case rejected(BackendUnavailable)
    /// Not tried because an earlier backend was chosen.
    case notTried
}

/// Opens backends from facts: perf first, then MSR, then sysfs (or the one forced), and keeps the
/// first whose counters can be read and move.
public struct BackendSelector {
    public var paths: HardwarePaths
    public var facts: SystemFacts
    /// How long to watch a backend's counters for movement before accepting it.
    public var moveCheck: Duration
    /// Waits between the two snapshots of the move check (blocking: selection runs before any other
    /// thread exists, so that dropping capabilities afterwards covers the whole process); tests inject
    /// one that advances counters.
    public var wait: @Sendable (Duration) -> Void
    /// Open each backend with only the capability it needs in the effective set. On by default;
    /// tests that inject capability sets (and must not change the test process's own) turn it off.
    public var leastPrivilege: Bool
    public var logger: Logger

    public init(
        paths: HardwarePaths,
        facts: SystemFacts,
        moveCheck: Duration = .milliseconds(100),
        wait: @escaping @Sendable (Duration) -> Void = BackendSelector.blockingSleep,
        leastPrivilege: Bool = true,
        logger: Logger = Logger(label: "rapl-exporter.backend")
    ) {
        self.leastPrivilege = leastPrivilege
        self.paths = paths
        self.facts = facts
        self.moveCheck = moveCheck
        self.wait = wait
        self.logger = logger
    }

    /// Constructs one backend: its discovery and capability checks, then one read of every counter.
    /// Rejected when no counter can be read.
    public func open(_ kind: BackendKind) -> Result<any EnergyBackend, BackendUnavailable> {
        if leastPrivilege {
            let wanted = Privileges.needed(for: kind, permitted: Privileges.permitted)
            do {
                try Privileges.restrictEffective(to: wanted)
                logger.debug("backend \(kind): opening with effective capabilities \(Privileges.effective)")
            } catch {
                logger.warning("backend \(kind): could not restrict capabilities to \(wanted): \(error)")
            }
        }
        let backend: any EnergyBackend
        do {
            switch kind {
            case .perf: backend = try PerfBackend(paths: paths, facts: facts)
            case .msr: backend = try MSRBackend(paths: paths, facts: facts)
            case .sysfs: backend = try SysfsBackend(paths: paths)
            case .simulated: backend = try SimulatedBackend(paths: paths)
            }
        } catch {
            return .failure(error)
        }
        var firstError: CounterReadError?
        var readable = 0
        for i in backend.counters.indices {
            do {
                _ = try backend.read(i)
                readable += 1
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if readable == 0 {
            let error = firstError ?? CounterReadError("no counter found")
            return .failure(
                BackendUnavailable(kind, reason: "no counter can be read: \(error.message)", fix: error.fix ?? "see docs/troubleshooting.md"))
        }
        return .success(backend)
    }

    /// `nanosleep(2)`: selection blocks its (only) thread.
    public static let blockingSleep: @Sendable (Duration) -> Void = { Kernel.sleep($0) }

    /// Raw values of every readable counter (nil where a read fails).
    static func snapshot(_ backend: any EnergyBackend) -> [UInt64?] {
        backend.counters.indices.map { try? backend.read($0).value }
    }

    public struct Selection {
        public var backend: (any EnergyBackend)?
        public var verdicts: [(BackendKind, BackendVerdict)]
    }

    /// The one rule of `--backend auto`, for `run` (``select(_:)``) and `probe` alike: in order of
    /// preference, the first backend that opened and whose counters moved; else the first that opened
    /// (its counters may be a VM's placeholders).
    public static func autoChoice(_ candidates: [(kind: BackendKind, opened: Bool, moved: Bool)]) -> BackendKind? {
        candidates.first { $0.opened && $0.moved }?.kind ?? candidates.first { $0.opened }?.kind
    }

    /// Whether a counter moved between two raw snapshots: readable both times, and its value changed.
    public static func moved(_ before: [UInt64?], _ after: [UInt64?]) -> Bool {
        zip(before, after).contains { b, a in b != nil && a != nil && b != a }
    }

    /// Every backend of `preference` that opens (for `top`, which can switch between them), with the one
    /// ``select(_:)`` would choose by the same rule (``autoChoice(_:)``, after one move check).
    public func openAll(_ preference: BackendPreference) -> (
        opened: [(BackendKind, any EnergyBackend)], unavailable: [BackendUnavailable], choice: BackendKind?
    ) {
        var opened: [(BackendKind, any EnergyBackend)] = []
        var unavailable: [BackendUnavailable] = []
        for kind in preference.order {
            switch open(kind) {
            case .success(let backend): opened.append((kind, backend))
            case .failure(let why): unavailable.append(why)
            }
        }
        let before = opened.map { Self.snapshot($0.1) }
        wait(moveCheck)
        let candidates = zip(opened, before).map { (kind: $0.0.0, opened: true, moved: Self.moved($0.1, Self.snapshot($0.0.1))) }
        return (opened, unavailable, Self.autoChoice(candidates))
    }

    /// Tries the backends in order and logs one line per backend: chosen, or rejected with the reason
    /// and the fix. A backend whose counters are readable but static is kept as a fallback: it is
    /// chosen (with a warning) only if no later backend has moving counters (``autoChoice(_:)``).
    public func select(_ preference: BackendPreference) -> Selection {
        var verdicts: [(BackendKind, BackendVerdict)] = []
        var candidates: [(kind: BackendKind, opened: Bool, moved: Bool)] = []
        var opened: [BackendKind: any EnergyBackend] = [:]
        logger.info("capabilities: \(facts.capabilities); kernel.perf_event_paranoid: \(facts.perfParanoid.map(String.init) ?? "unknown")")
        for kind in preference.order {
            if let moving = candidates.first(where: { $0.moved }) {
                verdicts.append((kind, .notTried))
                logger.info("backend \(kind): not tried (\(moving.kind) chosen)")
                continue
            }
            switch open(kind) {
            case .failure(let why):
                verdicts.append((kind, .rejected(why)))
                candidates.append((kind, false, false))
                logger.info("backend \(kind): rejected: \(why.reason) — fix: \(why.fix)")
            case .success(let backend):
                let before = Self.snapshot(backend)
                wait(moveCheck)
                let moved = Self.moved(before, Self.snapshot(backend))
                opened[kind] = backend
                candidates.append((kind, true, moved))
                verdicts.append((kind, moved ? .chosen : .staticCounters))
                if !moved { logger.warning("backend \(kind): opens, but no counter moved in \(moveCheck)") }
            }
        }
        guard let kind = Self.autoChoice(candidates), let chosen = opened[kind] else {
            return Selection(backend: nil, verdicts: verdicts)
        }
        if let i = verdicts.firstIndex(where: { $0.0 == kind }) { verdicts[i].1 = .chosen }
        if candidates.contains(where: { $0.kind == kind && $0.moved }) {
            logger.info("backend \(kind): chosen, \(chosen.counters.count) counters")
        } else {
            logger.warning(
                "backend \(kind): chosen although no counter moved; its values may be placeholders (VM guest?) — run 'rapl-exporter probe'"
            )
        }
        if !kind.measures { logger.warning("\(SimulatedBackend.warning)") }
        for note in chosen.notes { logger.info("\(kind): \(note)") }
        return Selection(backend: chosen, verdicts: verdicts)
    }
}
