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
    /// The names of the seed — the cpu-pyjoules container this exporter replaces — in its README:
    /// `package-0`, `core`, `uncore`, `dram`, `psys`, plus a `socket` label.
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
