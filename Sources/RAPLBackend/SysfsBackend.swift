import Support

/// Reads the powercap framework's RAPL zones: `<sysfs>/class/powercap/intel-rapl:N[:M]/energy_uj`.
///
/// The class entries are symlinks into `devices/virtual/powercap/intel-rapl/…`; zone ids are printed by
/// the kernel in hex (`intel-rapl:a` is the eleventh package). Each zone's `energy_uj` is opened once
/// and re-read with `pread(2)`; it wraps at `max_energy_range_uj`. Zones of the `intel-rapl-mmio`
/// interface that duplicate a package already read through `intel-rapl` are skipped.
public final class SysfsBackend: EnergyBackend {
    public let kind = BackendKind.sysfs
    public private(set) var counters: [CounterSpec] = []
    public private(set) var notes: [String] = []

    private struct Zone {
        var energyPath: String
        var maxPath: String
    }

    struct ZoneID: Comparable {
        var mmio: Bool
        var parts: [Int]
        var name: String
        static func < (a: ZoneID, b: ZoneID) -> Bool {
            if a.mmio != b.mmio { return !a.mmio }
            return a.parts.lexicographicallyPrecedes(b.parts)
        }
    }

    private let paths: HardwarePaths
    // Read on every window: unchecked for exclusive access, like `EnergyMeter`'s state (one thread owns
    // a backend; see EnergyMeter.ledger).
    @exclusivity(unchecked) private var zones: [Zone] = []
    /// Each zone's modulus (`max_energy_range_uj` + 1), 0 until loaded: apart from the zones' paths,
    /// so that a read touches 16 bytes per zone here, not the whole zone.
    @exclusivity(unchecked) private var moduli: [UInt128] = []
    @exclusivity(unchecked) private var fds: DescriptorTable
    private let buffer: UnsafeMutableRawBufferPointer
    /// Zones whose `name` could not be read at start; retried by `refresh()`.
    private var pending: [ZoneID] = []
    /// Domains of top-level zones by zone id, to place subzones on their socket.
    private var parents: [[Int]: Domain] = [:]

    /// Discovers the zones. Throws when there is no powercap tree or no RAPL zone in it; a zone that
    /// cannot be read is kept (and retried at each read), a zone without a readable name is retried by
    /// ``refresh()``.
    public init(paths: HardwarePaths) throws(BackendUnavailable) {
        self.paths = paths
        self.fds = DescriptorTable(count: 0)
        self.buffer = .allocate(byteCount: 64, alignment: 8)
        let entries: [String]
        do {
            entries = try Kernel.listDirectory(paths.powercap)
        } catch {
            // Every stored property is set, so deinit runs and frees the buffer.
            throw BackendUnavailable(
                .sysfs,
                reason: "no powercap tree: \(error)",
                fix: "load the RAPL powercap driver (modprobe intel_rapl_msr; AMD needs Linux 5.17+); in a container, "
                    + "Docker masks /sys/devices/virtual/powercap: mount the host's /sys read-only at /host/sys and pass --sysfs-root /host/sys"
            )
        }
        let ids = entries.compactMap(Self.parseZoneID).sorted()
        guard !ids.isEmpty else {
            throw BackendUnavailable(
                .sysfs,
                reason: "\(paths.powercap) has no intel-rapl zone",
                fix: "load the RAPL powercap driver (modprobe intel_rapl_msr, or intel_rapl_mmio) on a CPU with RAPL; VMs usually have none"
            )
        }
        pending = ids
        let problems = discoverPending()
        if counters.isEmpty {
            // Zones are listed but none can be read: in Docker the class symlinks point into
            // devices/virtual/powercap, which the runtime masks.
            throw BackendUnavailable(
                .sysfs,
                reason:
                    "\(paths.powercap) lists \(ids.count) zone\(ids.count == 1 ? "" : "s") but none can be read (\(problems.first ?? "no zone name"))",
                fix:
                    "in a container Docker masks /sys/devices/virtual/powercap: mount the host's /sys read-only at /host/sys and pass --sysfs-root /host/sys (or run with --security-opt systempaths=unconfined)"
            )
        }
    }

    deinit { buffer.deallocate() }

    public func refresh() -> [String] {
        guard !pending.isEmpty else { return [] }
        return discoverPending()
    }

    /// Parses `intel-rapl:1f`, `intel-rapl:0:2`, `intel-rapl-mmio:0`.
    static func parseZoneID(_ name: String) -> ZoneID? {
        let mmio: Bool
        let rest: Substring
        if name.hasPrefix("intel-rapl-mmio:") {
            mmio = true
            rest = name.dropFirst("intel-rapl-mmio:".count)
        } else if name.hasPrefix("intel-rapl:") {
            mmio = false
            rest = name.dropFirst("intel-rapl:".count)
        } else {
            return nil
        }
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map { Int($0, radix: 16) }
        guard (1...2).contains(parts.count), parts.allSatisfy({ $0 != nil }) else { return nil }
        return ZoneID(mmio: mmio, parts: parts.map { $0! }, name: name)
    }

    /// Interprets a zone's `name` file.
    static func domain(named name: String, parent: Domain?) -> Domain {
        if name.hasPrefix("package-") {
            let fields = name.split(separator: "-")
            // package-N or package-N-die-M
            if fields.count == 2, let socket = Int(fields[1]) {
                return Domain(.package, socket: socket)
            }
            if fields.count == 4, fields[2] == "die", let socket = Int(fields[1]), let die = Int(fields[3]) {
                return Domain(.package, socket: socket, die: die)
            }
        }
        let kind: DomainKind =
            switch name {
            case "core": .core
            case "uncore": .uncore
            case "dram": .dram
            case "psys": .psys
            default: .other(name)
            }
        return Domain(kind, socket: parent?.socket ?? 0, die: parent?.die)
    }

    private func discoverPending() -> [String] {
        var messages: [String] = []
        var stillPending: [ZoneID] = []
        for id in pending {
            let dir = paths.powercap + "/" + id.name
            let namePath = dir + "/name"
            let name: String
            do {
                name = try Kernel.readText(namePath).trimmingWhitespace()
                guard !name.isEmpty else { throw KernelError(call: "read", path: namePath, errno: .noData) }
            } catch {
                messages.append("sysfs zone \(id.name) skipped: cannot read its name (\(error)); retrying later")
                stillPending.append(id)
                continue
            }
            var parent: Domain?
            if id.parts.count == 2 {
                let parentKey = (id.mmio ? [-1] : []) + [id.parts[0]]
                guard let p = parents[parentKey] else {
                    messages.append("sysfs zone \(id.name) (\(name)) skipped until its parent zone is readable; retrying later")
                    stillPending.append(id)
                    continue
                }
                parent = p
            }
            let domain = Self.domain(named: name, parent: parent)
            if id.parts.count == 1 {
                parents[(id.mmio ? [-1] : []) + [id.parts[0]]] = domain
            }
            if counters.contains(where: { $0.domain == domain }) {
                let note =
                    id.mmio
                    ? "sysfs zone \(id.name) (\(name)) skipped: duplicates \(domain.component()) already read through intel-rapl"
                    : "sysfs zone \(id.name) (\(name)) skipped: a zone for \(domain.component()) socket \(domain.socket) is already read"
                notes.append(note)
                continue
            }
            zones.append(Zone(energyPath: dir + "/energy_uj", maxPath: dir + "/max_energy_range_uj"))
            moduli.append(0)
            _ = fds.append()
            counters.append(CounterSpec(domain: domain, unit: .microjoule, source: dir + "/energy_uj"))
            let index = zones.count - 1
            do throws(CounterReadError) {
                try loadRange(index)
                notes.append(
                    wrapNote(domain, source: id.name, rangeMicrojoules: Double(moduli[index] - 1), bits: "max_energy_range_uj")
                )
            } catch {
                messages.append("\(error); the zone is retried at each read")
            }
        }
        pending = stillPending
        return messages
    }

    private func loadRange(_ index: Int) throws(CounterReadError) {
        let path = zones[index].maxPath
        let text: String
        do {
            text = try Kernel.readText(path)
        } catch {
            throw Self.describe(error)
        }
        guard let max = UInt64(text.trimmingWhitespace()), max > 0 else {
            throw CounterReadError("\(path): not a positive integer: \(Self.excerpt(text))")
        }
        moduli[index] = UInt128(max) + 1
    }

    public func read(_ index: Int) throws(CounterReadError) -> RawCount {
        // The common case in the fewest instructions and cache lines: the file is open, its range known,
        // and one pread returns a number within it. Anything else takes the path below, which says why.
        let open = fds[index]
        let modulus = moduli[index]
        if open >= 0, modulus != 0 {
            let n = Kernel.preadStart(open, buffer)
            if n > 0, let value = Self.parseDecimal(UnsafeRawBufferPointer(rebasing: buffer[0..<n])), UInt128(value) < modulus {
                return RawCount(value: value, modulus: modulus)
            }
        }
        return try readOrExplain(index)
    }

    /// Opens what is closed, loads the range, reads, and turns every failure into its message.
    private func readOrExplain(_ index: Int) throws(CounterReadError) -> RawCount {
        if moduli[index] == 0 { try loadRange(index) }
        let fd: CInt
        do {
            fd = try fds.descriptor(index) { () throws(KernelError) in try Kernel.openReadOnly(self.zones[index].energyPath) }
        } catch {
            throw Self.describe(error)
        }
        let n: Int
        do {
            n = try Kernel.preadStart(fd, buffer, path: self.zones[index].energyPath)
        } catch {
            fds.close(index)
            throw Self.describe(error)
        }
        guard let value = Self.parseDecimal(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) else {
            let path = zones[index].energyPath
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[0..<n]), as: UTF8.self)
            throw CounterReadError("\(path): not a counter value: \(Self.excerpt(text))")
        }
        let modulus = moduli[index]
        guard UInt128(value) < modulus else {
            throw CounterReadError("\(zones[index].energyPath): \(value) is beyond max_energy_range_uj \(modulus - 1)")
        }
        return RawCount(value: value, modulus: modulus)
    }

    /// ASCII decimal with an optional final newline; nil for empty input or anything else (including
    /// anything after the newline).
    @inline(__always)
    static func parseDecimal(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        var end = bytes.count
        if end > 0 && bytes[end - 1] == 10 { end -= 1 }
        // Up to 19 digits cannot overflow 64 bits; 20 may (UInt64.max has 20).
        guard end > 0, end <= 20 else { return nil }
        var value: UInt64 = 0
        for i in 0..<end {
            let digit = bytes[i] &- 48
            guard digit <= 9 else { return nil }
            if i == 19 {
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(digit))
                return o1 || o2 ? nil : a
            }
            value = value &* 10 &+ UInt64(digit)
        }
        return value
    }

    static func excerpt(_ text: String) -> String {
        let trimmed = text.trimmingWhitespace()
        if trimmed.isEmpty { return "(empty)" }
        let short = trimmed.prefix(32)
        return "\"\(short)\(short.count < trimmed.count ? "…" : "")\""
    }

    static func describe(_ error: KernelError) -> CounterReadError {
        if error.isPermission {
            return CounterReadError(
                "\(error)",
                fix:
                    "energy_uj is readable by root only since Linux 5.10: run as root (or with CAP_DAC_READ_SEARCH), or make it readable with a udev rule / chmod on the host"
            )
        }
        if error.errno == .noSuchFileOrDirectory {
            return CounterReadError("\(error)", fix: "the zone disappeared: is the RAPL driver still loaded and /sys mounted?")
        }
        return CounterReadError("\(error)")
    }
}
