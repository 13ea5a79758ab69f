import Logging

/// Which backend the user asked for.
public enum BackendPreference: String, Sendable, CaseIterable {
    case auto, perf, msr, sysfs

    /// The backends to try, in order.
    public var order: [BackendKind] {
        switch self {
        case .auto: [.perf, .msr, .sysfs]
        case .perf: [.perf]
        case .msr: [.msr]
        case .sysfs: [.sysfs]
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
    /// Open each backend with only the capability it needs in the effective set (the daemon does;
    /// tests that inject capability sets do not).
    public var leastPrivilege = false
    public var logger: Logger

    public init(
        paths: HardwarePaths,
        facts: SystemFacts,
        moveCheck: Duration = .milliseconds(100),
        wait: @escaping @Sendable (Duration) -> Void = BackendSelector.blockingSleep,
        logger: Logger = Logger(label: "rapl-exporter.backend")
    ) {
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

    /// Tries the backends in order and logs one line per backend: chosen, or rejected with the reason
    /// and the fix. A backend whose counters are readable but static is kept as a fallback: it is
    /// chosen (with a warning) only if no later backend has moving counters.
    public func select(_ preference: BackendPreference) -> Selection {
        var verdicts: [(BackendKind, BackendVerdict)] = []
        var fallback: (any EnergyBackend)?
        var chosen: (any EnergyBackend)?
        logger.info("capabilities: \(facts.capabilities); kernel.perf_event_paranoid: \(facts.perfParanoid.map(String.init) ?? "unknown")")
        for kind in preference.order {
            if chosen != nil {
                verdicts.append((kind, .notTried))
                logger.info("backend \(kind): not tried (\(chosen!.kind) chosen)")
                continue
            }
            switch open(kind) {
            case .failure(let why):
                verdicts.append((kind, .rejected(why)))
                logger.info("backend \(kind): rejected: \(why.reason) — fix: \(why.fix)")
            case .success(let backend):
                let before = Self.snapshot(backend)
                wait(moveCheck)
                let after = Self.snapshot(backend)
                let moving = zip(before, after).contains { b, a in b != nil && a != nil && b != a }
                if moving {
                    chosen = backend
                    verdicts.append((kind, .chosen))
                    logger.info("backend \(kind): chosen, \(backend.counters.count) counters")
                    for note in backend.notes { logger.info("\(kind): \(note)") }
                } else {
                    verdicts.append((kind, .staticCounters))
                    logger.warning("backend \(kind): opens, but no counter moved in \(moveCheck)")
                    if fallback == nil { fallback = backend }
                }
            }
        }
        if chosen == nil, let fallback {
            chosen = fallback
            if let i = verdicts.firstIndex(where: { $0.0 == fallback.kind }) { verdicts[i].1 = .chosen }
            logger.warning(
                "backend \(fallback.kind): chosen although no counter moved; its values may be placeholders (VM guest?) — run 'rapl-exporter probe'"
            )
            for note in fallback.notes { logger.info("\(fallback.kind): \(note)") }
        }
        return Selection(backend: chosen, verdicts: verdicts)
    }
}
