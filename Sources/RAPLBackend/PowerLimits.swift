import Logging
import Support

/// One power limit of a domain, as the firmware or the OS set it.
public struct PowerLimit: Sendable, Equatable {
    public var domain: Domain
    /// The powercap name: `long_term` (PL1), `short_term` (PL2), `peak_power` (PL4, sysfs only).
    public var constraint: String
    public var watts: Double
    /// The averaging window the limit applies over (none for `peak_power`).
    public var timeWindowSeconds: Double?
    /// Whether the limit is enforced. sysfs: the zone's `enabled`; MSR: the limit's own enable bit.
    public var enabled: Bool?
    /// MSR only: the clamp bit (the limit may take the cores below the frequency the OS asked for).
    public var clamped: Bool?
    /// MSR only: the lock bit (the register cannot change until the next reset).
    public var locked: Bool?

    public init(
        domain: Domain, constraint: String, watts: Double, timeWindowSeconds: Double? = nil, enabled: Bool? = nil, clamped: Bool? = nil,
        locked: Bool? = nil
    ) {
        self.domain = domain
        self.constraint = constraint
        self.watts = watts
        self.timeWindowSeconds = timeWindowSeconds
        self.enabled = enabled
        self.clamped = clamped
        self.locked = locked
    }
}

/// One number per domain.
public struct DomainFigure: Sendable, Equatable {
    public var domain: Domain
    public var value: Double

    public init(_ domain: Domain, _ value: Double) {
        self.domain = domain
        self.value = value
    }
}

/// What one read of the limits found.
public struct PowerLimitSnapshot: Sendable, Equatable {
    public var limits: [PowerLimit] = []
    /// Thermal design power (package): MSR_PKG_POWER_INFO, else sysfs's `long_term` `max_power_uw`.
    public var tdp: [DomainFigure] = []
    /// Seconds RAPL has throttled the domain since the reader started, wraps accounted exactly.
    public var throttledSeconds: [DomainFigure] = []
    /// Throttle-counter steps that were impossible (more throttled time than time passed), not counted.
    public var throttleGlitches: [DomainFigure] = []

    public init() {}

    public var isEmpty: Bool { limits.isEmpty && tdp.isEmpty && throttledSeconds.isEmpty }
}

/// Reads power limits, TDP and throttle counters at a slow rate, never on the sampling path: powercap's
/// `constraint_N_*` files (re-read each time: `powercap-set`, thermald and firmware change them at run
/// time) and, on Intel with the msr driver and CAP_SYS_RAWIO at start, the limit, power-info and
/// perf-status MSRs (devices opened once, at start, while the capability is held).
///
/// Limits come from sysfs when any constraint can be read there (the kernel's own decoding, and PL4),
/// else from the MSRs. Throttling exists only as MSRs. What is absent, and why, is in ``absent``
/// (`probe` prints it).
public final class PowerLimitReader {
    /// Intel's RAPL power-limit, power-info and perf-status registers (SDM vol. 4, table 2-2x).
    public enum Register {
        public static let packagePowerLimit: UInt32 = 0x610
        public static let packagePerfStatus: UInt32 = 0x613
        public static let packagePowerInfo: UInt32 = 0x614
        public static let dramPowerLimit: UInt32 = 0x618
        public static let dramPerfStatus: UInt32 = 0x61B
        public static let pp0PowerLimit: UInt32 = 0x638
        public static let pp0PerfStatus: UInt32 = 0x63B
    }

    /// The units of MSR_RAPL_POWER_UNIT (0x606): power 1/2^bits[3:0] W, time 1/2^bits[19:16] s.
    public struct Units: Sendable, Equatable {
        public var wattsPerCount: Double
        public var secondsPerCount: Double

        public init(register value: UInt64) {
            wattsPerCount = 1.0 / Double(UInt64(1) << (value & 0xF))
            secondsPerCount = 1.0 / Double(UInt64(1) << ((value >> 16) & 0xF))
        }
    }

    /// Where limits come from: `sysfs`, `msr`, or nil (none readable).
    public private(set) var limitsSource: String?
    /// One line per item that is absent: what, and why.
    public private(set) var absent: [String] = []
    /// The limits and TDP found at start (no throttle figures: those begin at the first ``read(now:)``).
    public private(set) var initial = PowerLimitSnapshot()
    /// The domains whose throttle counter is read.
    public var throttledDomains: [Domain] { throttles.map(\.domain) }
    /// Whether anything at all can be read.
    public var isEmpty: Bool { initial.limits.isEmpty && initial.tdp.isEmpty && throttles.isEmpty }

    private struct SysfsZone {
        var directory: String
        var domain: Domain
        var constraints: [Int]
    }

    private struct MSRPackage {
        /// The package's domain (its socket and, on multi-die parts, its die).
        var domain: Domain
        var fd: CInt
        var device: String
        var units: Units
        var limitRegisters: [(DomainKind, UInt32)]
        var hasPowerInfo: Bool
    }

    /// One 32-bit perf-status counter: the same exact accounting as energy (a 128-bit total of raw
    /// steps modulo 2^32), and the same kind of glitch test (a step needing more throttled time than
    /// time passed, plus a grace, is not counted; the counter is re-based).
    private struct ThrottleCounter {
        var domain: Domain
        var package: Int
        var register: UInt32
        var last: UInt64?
        var lastRead: Duration = .zero
        var total: UInt128 = 0
        var glitches: UInt64 = 0
        var failing = false
    }

    private let paths: HardwarePaths
    private let logger: Logger
    private var zones: [SysfsZone] = []
    private var packages: [MSRPackage] = []
    private var throttles: [ThrottleCounter] = []
    private var descriptors: DescriptorTable

    /// The grace added to the time between two reads before a throttle step is judged impossible.
    static let glitchGrace = Duration.milliseconds(100)

    /// Discovers what can be read; opens the MSR devices now (they need CAP_SYS_RAWIO at open, not at
    /// read). With `leastPrivilege`, the effective set is CAP_SYS_RAWIO + CAP_DAC_READ_SEARCH for that.
    public init(paths: HardwarePaths, facts: SystemFacts, leastPrivilege: Bool = true, logger: Logger = Logger(label: "rapl-exporter.limits")) {
        self.paths = paths
        self.logger = logger
        self.descriptors = DescriptorTable(count: 0)
        discoverSysfs()
        discoverMSR(facts: facts, leastPrivilege: leastPrivilege)
        var first = PowerLimitSnapshot()
        readSysfs(into: &first)
        if !first.limits.isEmpty {
            limitsSource = "sysfs"
            readMSR(into: &first, limits: false)
        } else {
            readMSR(into: &first, limits: true)
            if !first.limits.isEmpty { limitsSource = "msr" }
        }
        if limitsSource == nil {
            absent.append(
                "power limits: none readable (sysfs: \(sysfsProblem ?? "no powercap constraint"); MSR: \(msrProblem ?? "no power-limit register"))")
        }
        if throttles.isEmpty {
            absent.append(
                "throttling: \(msrProblem ?? "no perf-status MSR readable") (it exists only as MSRs: the perf and sysfs backends cannot read it)")
        }
        initial = first
        if first.tdp.isEmpty { absent.append("TDP: \(msrProblem ?? "MSR_PKG_POWER_INFO not readable"); no powercap long_term max_power_uw either") }
    }

    private var sysfsProblem: String?
    private var msrProblem: String?

    // MARK: sysfs

    private func discoverSysfs() {
        guard let entries = try? Kernel.listDirectory(paths.powercap) else {
            sysfsProblem = "no powercap tree at \(paths.powercap)"
            return
        }
        var parents: [Int: Domain] = [:]
        for id in entries.compactMap(SysfsBackend.parseZoneID).sorted() where !id.mmio {
            let directory = paths.powercap + "/" + id.name
            guard let name = try? Kernel.readText(directory + "/name").trimmingWhitespace(), !name.isEmpty else { continue }
            let domain = SysfsBackend.domain(named: name, parent: id.parts.count == 2 ? parents[id.parts[0]] : nil)
            if id.parts.count == 1 { parents[id.parts[0]] = domain }
            let constraints = (0..<8).filter { Kernel.exists(directory + "/constraint_\($0)_power_limit_uw") }
            zones.append(SysfsZone(directory: directory, domain: domain, constraints: constraints))
        }
        if !zones.contains(where: { !$0.constraints.isEmpty }) {
            sysfsProblem = "no powercap zone has constraint_N_power_limit_uw"
        }
    }

    private func readSysfs(into snapshot: inout PowerLimitSnapshot) {
        for zone in zones {
            let enabled = Self.readInteger(zone.directory + "/enabled").map { $0 != 0 }
            for n in zone.constraints {
                let prefix = zone.directory + "/constraint_\(n)_"
                guard let microwatts = Self.readInteger(prefix + "power_limit_uw") else {
                    if sysfsProblem == nil { sysfsProblem = "\(prefix)power_limit_uw not readable" }
                    continue
                }
                let name = (try? Kernel.readText(prefix + "name").trimmingWhitespace()).flatMap { $0.isEmpty ? nil : $0 } ?? "constraint_\(n)"
                let window = Self.readInteger(prefix + "time_window_us").map { Double($0) / 1e6 }
                snapshot.limits.append(
                    PowerLimit(
                        domain: zone.domain, constraint: name, watts: Double(microwatts) / 1e6,
                        timeWindowSeconds: name == "peak_power" ? nil : window, enabled: enabled))
                if name == "long_term", zone.domain.kind == .package, let max = Self.readInteger(prefix + "max_power_uw"), max > 0 {
                    snapshot.tdp.append(DomainFigure(zone.domain, Double(max) / 1e6))
                }
            }
        }
    }

    /// An unsigned decimal file (powercap's µW, µs and flags); Topology.readInt would take a sign too.
    private static func readInteger(_ path: String) -> UInt64? {
        guard let text = try? Kernel.readText(path, limit: 64) else { return nil }
        return UInt64(text.trimmingWhitespace())
    }

    // MARK: MSR

    private func discoverMSR(facts: SystemFacts, leastPrivilege: Bool) {
        guard let cpu = facts.identity else {
            msrProblem = "the CPU cannot be identified from \(paths.cpuinfo)"
            return
        }
        guard cpu.vendor == .intel else {
            msrProblem = "\(cpu.vendor.rawValue.uppercased()) CPUs have no power-limit or perf-status MSRs (their RAPL has energy counters only)"
            return
        }
        let places = Topology.allPlaces(paths: paths)
        let multiDie = Topology.isMultiDie(places)
        let leaders = Topology.leaders(places, multiDie: multiDie)
        guard let firstLeader = leaders.first, Kernel.exists(paths.msrDevice(firstLeader.cpu)) else {
            msrProblem = "\(paths.msrDevice(leaders.first?.cpu ?? 0)) does not exist (modprobe msr; in a container pass --device)"
            return
        }
        guard facts.capabilities.contains(.sysRawio) else {
            msrProblem = "the process lacks CAP_SYS_RAWIO, which opening \(paths.msrDevice(firstLeader.cpu)) requires"
            return
        }
        if leastPrivilege {
            try? Privileges.restrictEffective(to: Privileges.needed(for: .msr, permitted: Privileges.permitted))
        }
        for leader in leaders {
            let device = paths.msrDevice(leader.cpu)
            let fd: CInt
            let units: UInt64
            do {
                fd = try Kernel.openReadOnly(device)
                let slot = descriptors.append()
                descriptors.set(slot, fd)
                units = try Kernel.msrRead(fd, register: MSRBackend.Register.intelPowerUnit, path: device)
            } catch {
                msrProblem = "\(error)"
                continue
            }
            let die = multiDie ? leader.die : nil
            func present(_ register: UInt32) -> Bool { (try? Kernel.msrRead(fd, register: register, path: device)) != nil }
            var limits: [(DomainKind, UInt32)] = []
            for (kind, register) in [
                (DomainKind.package, Register.packagePowerLimit), (.dram, Register.dramPowerLimit), (.core, Register.pp0PowerLimit),
            ]
            where present(register) {
                limits.append((kind, register))
            }
            packages.append(
                MSRPackage(
                    domain: Domain(.package, socket: leader.package, die: die), fd: fd, device: device, units: Units(register: units),
                    limitRegisters: limits,
                    hasPowerInfo: present(Register.packagePowerInfo)))
            for (kind, register) in [
                (DomainKind.package, Register.packagePerfStatus), (.dram, Register.dramPerfStatus), (.core, Register.pp0PerfStatus),
            ]
            where present(register) {
                throttles.append(
                    ThrottleCounter(domain: Domain(kind, socket: leader.package, die: die), package: packages.count - 1, register: register))
            }
        }
    }

    /// The limits one power-limit register holds: PL1 in bits 14:0 (enable 15, clamp 16, window 23:17),
    /// and for the package PL2 in bits 46:32 (enable 47, clamp 48, window 55:49); lock in bit 63 for the
    /// package, bit 31 otherwise. A window is 2^Y × (1 + Z/4) time units, Y = bits 4:0, Z = bits 6:5.
    public static func decodeLimit(_ value: UInt64, domain: Domain, units: Units) -> [PowerLimit] {
        let isPackage = domain.kind == .package
        let locked = isPackage ? value >> 63 & 1 == 1 : value >> 31 & 1 == 1
        func limit(_ shift: UInt64, _ constraint: String) -> PowerLimit {
            let field = value >> shift
            let window = field >> 17 & 0x7F
            let seconds = Double(UInt64(1) << (window & 0x1F)) * (1 + Double(window >> 5 & 0x3) / 4) * units.secondsPerCount
            return PowerLimit(
                domain: domain, constraint: constraint, watts: Double(field & 0x7FFF) * units.wattsPerCount, timeWindowSeconds: seconds,
                enabled: field >> 15 & 1 == 1, clamped: domain.kind == .dram ? nil : field >> 16 & 1 == 1, locked: locked)
        }
        return isPackage ? [limit(0, "long_term"), limit(32, "short_term")] : [limit(0, "long_term")]
    }

    private func readMSR(into snapshot: inout PowerLimitSnapshot, limits: Bool) {
        for package in packages {
            if limits {
                for (kind, register) in package.limitRegisters {
                    guard let value = try? Kernel.msrRead(package.fd, register: register, path: package.device) else { continue }
                    snapshot.limits += Self.decodeLimit(
                        value, domain: Domain(kind, socket: package.domain.socket, die: package.domain.die), units: package.units)
                }
            }
            if package.hasPowerInfo, let info = try? Kernel.msrRead(package.fd, register: Register.packagePowerInfo, path: package.device) {
                snapshot.tdp.removeAll { $0.domain == package.domain }
                snapshot.tdp.append(DomainFigure(package.domain, Double(info & 0x7FFF) * package.units.wattsPerCount))
            }
        }
    }

    private func readThrottles(into snapshot: inout PowerLimitSnapshot, now: Duration) {
        for i in throttles.indices {
            let package = packages[throttles[i].package]
            let value: UInt64
            do {
                value = try Kernel.msrRead(package.fd, register: throttles[i].register, path: package.device) & 0xFFFF_FFFF
                if throttles[i].failing {
                    throttles[i].failing = false
                    logger.notice("throttle counter \(throttles[i].domain.component()) is readable again")
                }
            } catch {
                if !throttles[i].failing {
                    throttles[i].failing = true
                    logger.warning(
                        "throttle counter \(throttles[i].domain.component()) (\(package.device) @0x\(String(throttles[i].register, radix: 16))): \(error); its series pauses until it reads again"
                    )
                }
                continue
            }
            if let last = throttles[i].last {
                let step = (UInt128(value) &+ (UInt128(1) << 32) &- UInt128(last)) % (UInt128(1) << 32)
                let seconds = Double(step) * package.units.secondsPerCount
                let allowed = (now - throttles[i].lastRead + Self.glitchGrace).seconds
                if seconds > allowed {
                    throttles[i].glitches += 1
                    logger.warning(
                        "throttle counter \(throttles[i].domain.component()) moved \(last) → \(value): \(formatted(seconds, 3)) s throttled in \(formatted((now - throttles[i].lastRead).seconds, 3)) s is impossible; not counted, counter re-based"
                    )
                } else {
                    throttles[i].total += step
                }
            }
            throttles[i].last = value
            throttles[i].lastRead = now
            snapshot.throttledSeconds.append(DomainFigure(throttles[i].domain, Double(throttles[i].total) * package.units.secondsPerCount))
            snapshot.throttleGlitches.append(DomainFigure(throttles[i].domain, Double(throttles[i].glitches)))
        }
    }

    /// Reads every limit, the TDP and the throttle counters. `now`: monotonic time since any fixed origin.
    public func read(now: Duration) -> PowerLimitSnapshot {
        var snapshot = PowerLimitSnapshot()
        if limitsSource != "msr" { readSysfs(into: &snapshot) }
        readMSR(into: &snapshot, limits: limitsSource == "msr")
        readThrottles(into: &snapshot, now: now)
        return snapshot
    }

    /// One line for the start-up log: every limit, the TDP, whether throttling is counted.
    public func describe(style: NameStyle = .seed) -> String {
        let snapshot = initial
        var parts = snapshot.limits.map { l in
            var text = "\(l.domain.component(style)) \(l.constraint) \(formatted(l.watts, 1)) W"
            if let w = l.timeWindowSeconds { text += " over \(formatted(w, w < 1 ? 4 : 1)) s" }
            if l.enabled == false { text += " (disabled)" }
            return text
        }
        parts += snapshot.tdp.map { "\($0.domain.component(style)) TDP \(formatted($0.value, 1)) W" }
        if !throttles.isEmpty { parts.append("throttling counted for \(throttles.map { $0.domain.component(style) }.joined(separator: ", "))") }
        return "power limits (\(limitsSource ?? "none")): " + (parts.isEmpty ? "nothing readable" : parts.joined(separator: "; "))
    }
}
