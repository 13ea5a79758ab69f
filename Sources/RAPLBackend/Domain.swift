/// What a RAPL counter measures.
public enum DomainKind: Hashable, Sendable, Comparable {
    /// The whole package (socket), or one die of a multi-die package.
    case package
    /// PP0: the cores.
    case core
    /// PP1: the uncore, on client parts the integrated GPU.
    case uncore
    /// DRAM attached to the package.
    case dram
    /// The platform (whole SoC and more), reported once.
    case psys
    /// A zone whose name the kernel gave but that is none of the above; exported under that name.
    case other(String)

    /// The seed's component name (`core`, `uncore`, `dram`, `psys`); packages are named per socket.
    var baseName: String {
        switch self {
        case .package: "package"
        case .core: "core"
        case .uncore: "uncore"
        case .dram: "dram"
        case .psys: "psys"
        case .other(let name): name
        }
    }
}

/// How components are named in every output.
public enum NameStyle: String, Sendable, CaseIterable {
    /// The seed README's names: `package-0`, `core`, `uncore`, `dram`, `psys`, plus a `socket` label.
    case seed
    /// pyJoules' own names, which the Python container emits today: `package_0`, `core_0`, `dram_0`.
    case pyjoules
}

/// One measured domain: a kind on a socket (and a die, on multi-die packages).
///
/// `(component, socket, die)` is unique on every machine, so it identifies a series.
public struct Domain: Hashable, Sendable, Comparable {
    public var kind: DomainKind
    public var socket: Int
    /// Set only on multi-die packages, where the kernel names packages `package-N-die-M`.
    public var die: Int?

    public init(_ kind: DomainKind, socket: Int, die: Int? = nil) {
        self.kind = kind
        self.socket = socket
        self.die = die
    }

    public func component(_ style: NameStyle = .seed) -> String {
        switch style {
        case .seed:
            switch kind {
            case .package:
                if let die { return "package-\(socket)-die-\(die)" }
                return "package-\(socket)"
            default:
                return kind.baseName
            }
        case .pyjoules:
            var name = "\(kind.baseName)_\(socket)"
            if let die { name += "_die_\(die)" }
            return name
        }
    }

    public static func < (a: Domain, b: Domain) -> Bool {
        if a.socket != b.socket { return a.socket < b.socket }
        if a.die != b.die { return (a.die ?? -1) < (b.die ?? -1) }
        return a.kind < b.kind
    }
}

extension Array where Element == Domain {
    /// Per-domain `values` kept for `old` (same order) rearranged for these domains; `fill` for a domain
    /// `old` did not have. For when a refresh finds a domain and the domain order changes.
    public func carrying<T>(_ values: [T], from old: [Domain], fill: T) -> [T] {
        map { d in old.firstIndex(of: d).map { values[$0] } ?? fill }
    }
}

/// Which backend reads the counters.
public enum BackendKind: String, Sendable, CaseIterable, Codable {
    case perf, msr, sysfs
}

/// Where the hardware lives. Every path the backends touch is derived from these roots, so containers
/// can point at a host mount (`--sysfs-root /host/sys`) and tests at fake trees.
public struct HardwarePaths: Sendable, Equatable {
    public var sysfsRoot: String
    public var devRoot: String
    public var procRoot: String

    public init(sysfsRoot: String = "/sys", devRoot: String = "/dev", procRoot: String = "/proc") {
        self.sysfsRoot = Self.trimmed(sysfsRoot)
        self.devRoot = Self.trimmed(devRoot)
        self.procRoot = Self.trimmed(procRoot)
    }

    private static func trimmed(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    var powercap: String { sysfsRoot + "/class/powercap" }
    var powerPMU: String { sysfsRoot + "/bus/event_source/devices/power" }
    func cpuTopology(_ cpu: Int) -> String { sysfsRoot + "/devices/system/cpu/cpu\(cpu)/topology" }
    var cpuDirectory: String { sysfsRoot + "/devices/system/cpu" }
    func msrDevice(_ cpu: Int) -> String { devRoot + "/cpu/\(cpu)/msr" }
    var perfParanoid: String { procRoot + "/sys/kernel/perf_event_paranoid" }
    var cpuinfo: String { procRoot + "/cpuinfo" }
}

/// Effective capabilities that decide which backend can work.
public struct CapabilitySet: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let dacOverride = CapabilitySet(rawValue: 1 << 0)
    public static let dacReadSearch = CapabilitySet(rawValue: 1 << 1)
    public static let sysRawio = CapabilitySet(rawValue: 1 << 2)
    public static let sysAdmin = CapabilitySet(rawValue: 1 << 3)
    public static let perfmon = CapabilitySet(rawValue: 1 << 4)

    /// Linux capability numbers (linux/capability.h) and the flag each sets.
    static let mapping: [(Int32, CapabilitySet)] = [
        (1, .dacOverride), (2, .dacReadSearch), (17, .sysRawio), (21, .sysAdmin), (38, .perfmon),
    ]

    static let names: [(CapabilitySet, String)] = [
        (.dacOverride, "CAP_DAC_OVERRIDE"), (.dacReadSearch, "CAP_DAC_READ_SEARCH"),
        (.sysRawio, "CAP_SYS_RAWIO"), (.sysAdmin, "CAP_SYS_ADMIN"), (.perfmon, "CAP_PERFMON"),
    ]

    public var description: String {
        let held = Self.names.filter { contains($0.0) }.map(\.1)
        return held.isEmpty ? "none" : held.joined(separator: ",")
    }
}
