import Support

/// Reads the kernel's RAPL perf PMU (`<sysfs>/bus/event_source/devices/power`): one CPU-wide counting
/// event per `energy-*` event per CPU in the PMU's `cpumask` (one CPU per package, or per die).
///
/// perf counts are 64-bit totals in the unit the PMU publishes in `events/energy-*.scale`
/// (joules per count, usually 2^-32); they are converted by ``EnergyMeter`` from the running total.
public final class PerfBackend: EnergyBackend {
    public let kind = BackendKind.perf
    public private(set) var counters: [CounterSpec] = []
    public private(set) var notes: [String] = []

    /// perf event name → domain kind.
    static let eventKinds: [String: DomainKind] = [
        "energy-pkg": .package, "energy-cores": .core, "energy-gpu": .uncore, "energy-ram": .dram, "energy-psys": .psys,
    ]

    private struct Event {
        var type: UInt32
        var config: UInt64
        var cpu: Int
        var label: String
    }

    // Read on every window: unchecked for exclusive access, like `EnergyMeter`'s state (one thread owns
    // a backend; see EnergyMeter.ledger).
    @exclusivity(unchecked) private var events: [Event] = []
    @exclusivity(unchecked) private var fds: DescriptorTable

    /// - Parameters:
    ///   - pmu: the PMU directory name; `power` is the RAPL PMU. Tests point it at other PMUs.
    ///   - facts: capabilities and `perf_event_paranoid`, to refuse early with the right fix.
    public init(paths: HardwarePaths, facts: SystemFacts, pmu: String = "power") throws(BackendUnavailable) {
        fds = DescriptorTable(count: 0)
        let dir = paths.sysfsRoot + "/bus/event_source/devices/" + pmu
        guard Kernel.exists(dir) else {
            throw BackendUnavailable(
                .perf,
                reason: "no RAPL perf PMU: \(dir) does not exist",
                fix:
                    "needs a RAPL CPU and a kernel with the RAPL perf driver (Intel: Linux 3.14+, AMD: 5.8+); VMs rarely expose one; use another backend"
            )
        }
        if let paranoid = facts.perfParanoid, paranoid > 0,
            !facts.capabilities.contains(.perfmon), !facts.capabilities.contains(.sysAdmin)
        {
            throw BackendUnavailable(
                .perf,
                reason:
                    "kernel.perf_event_paranoid is \(paranoid) and the process has neither CAP_PERFMON nor CAP_SYS_ADMIN (held: \(facts.capabilities))",
                fix:
                    "grant CAP_PERFMON (docker run --cap-add PERFMON; setcap cap_perfmon+p; CAP_SYS_ADMIN before Linux 5.8), or sysctl kernel.perf_event_paranoid=0"
            )
        }
        let typePath = dir + "/type"
        guard let typeText = try? Kernel.readText(typePath), let type = UInt32(typeText.trimmingWhitespace()) else {
            throw BackendUnavailable(.perf, reason: "\(typePath) is missing or not a number", fix: "check that sysfs is mounted intact")
        }
        let maskPath = dir + "/cpumask"
        guard let maskText = try? Kernel.readText(maskPath), let cpus = Topology.parseCPUList(maskText), !cpus.isEmpty else {
            throw BackendUnavailable(.perf, reason: "\(maskPath) is missing, empty or malformed", fix: "check that sysfs is mounted intact")
        }
        let eventNames = ((try? Kernel.listDirectory(dir + "/events")) ?? []).filter { $0.hasPrefix("energy-") && !$0.contains(".") }
        var found: [(DomainKind, String, UInt64, EnergyUnit)] = []
        for name in eventNames {
            let path = dir + "/events/" + name
            guard let kind = Self.eventKinds[name] else {
                notes.append("perf: unknown event \(path) skipped (known: \(Self.eventKinds.keys.sorted().joined(separator: ", ")))")
                continue
            }
            guard let configText = try? Kernel.readText(path), let config = Self.parseConfig(configText) else {
                notes.append("perf: \(path) skipped: expected \"event=0x..\"")
                continue
            }
            guard let scaleText = try? Kernel.readText(path + ".scale"), let unit = EnergyUnit(decimalJoules: scaleText) else {
                notes.append("perf: \(path) skipped: \(path).scale is missing or not a decimal number of joules")
                continue
            }
            if let unitName = try? Kernel.readText(path + ".unit"), unitName.trimmingWhitespace() != "Joules" {
                notes.append("perf: \(path) skipped: unit is \(unitName.trimmingWhitespace()), expected Joules")
                continue
            }
            found.append((kind, name, config, unit))
        }
        guard !found.isEmpty else {
            throw BackendUnavailable(
                .perf,
                reason: "\(dir)/events has no usable energy-* event",
                fix: "this CPU or kernel exposes no RAPL energy event through perf; use another backend"
            )
        }
        let places = cpus.map { Topology.place(of: $0, paths: paths) ?? CPUPlace(cpu: $0, package: 0, die: 0, core: 0) }
        let multiDie = Topology.isMultiDie(places)
        var failures: [KernelError] = []
        for (kind, name, config, unit) in found {
            for place in places {
                let label = "perf \(pmu)/\(name)/ cpu \(place.cpu)"
                let index = fds.append()
                events.append(Event(type: type, config: config, cpu: place.cpu, label: label))
                counters.append(CounterSpec(domain: Domain(kind, socket: place.package, die: multiDie ? place.die : nil), unit: unit, source: label))
                do {
                    fds.set(index, try Kernel.perfOpen(type: type, config: config, cpu: place.cpu, path: label))
                } catch {
                    failures.append(error)
                }
            }
        }
        if failures.count == events.count {
            let first = failures[0]
            throw BackendUnavailable(
                .perf,
                reason: "\(first)",
                fix: first.isPermission
                    ? "grant CAP_PERFMON (docker run --cap-add PERFMON) or sysctl kernel.perf_event_paranoid=0; seccomp profiles may also block perf_event_open"
                    : "the kernel refused the event; use another backend"
            )
        }
        for failure in failures { notes.append("perf: \(Self.describe(failure)); retried at each read") }
        notes.append("perf counters are 64-bit: they do not wrap in practice (2^64 counts of \(found[0].3))")
    }

    /// Parses an event file such as `event=0x02` (the only term RAPL events use).
    static func parseConfig(_ text: String) -> UInt64? {
        let t = text.trimmingWhitespace()
        guard t.hasPrefix("event="), !t.contains(",") else { return nil }
        let value = t.dropFirst("event=".count)
        if value.hasPrefix("0x") { return UInt64(value.dropFirst(2), radix: 16) }
        return UInt64(value)
    }

    public func read(_ index: Int) throws(CounterReadError) -> RawCount {
        let event = events[index]
        let fd: CInt
        do {
            fd = try fds.descriptor(index) { () throws(KernelError) in
                try Kernel.perfOpen(type: event.type, config: event.config, cpu: event.cpu, path: event.label)
            }
        } catch {
            throw Self.describe(error)
        }
        do {
            return RawCount(value: try Kernel.perfRead(fd, path: event.label), modulus: UInt128(1) << 64)
        } catch {
            fds.close(index)
            throw Self.describe(error)
        }
    }

    static func describe(_ error: KernelError) -> CounterReadError {
        if error.isPermission {
            return CounterReadError("\(error)", fix: "grant CAP_PERFMON or set kernel.perf_event_paranoid=0")
        }
        return CounterReadError("\(error)")
    }
}
