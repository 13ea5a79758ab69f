import Support

/// Where one logical CPU sits.
public struct CPUPlace: Sendable, Equatable {
    public var cpu: Int
    public var package: Int
    public var die: Int
    public var core: Int
}

/// CPU topology from `<sysfs>/devices/system/cpu/cpuN/topology`.
enum Topology {
    /// Parses a kernel CPU list such as `0-3,8,10-11` (the format of `cpumask` and `online`).
    static func parseCPUList(_ text: String) -> [Int]? {
        let trimmed = text.trimmingWhitespace()
        if trimmed.isEmpty { return [] }
        var cpus: [Int] = []
        for part in trimmed.split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2, let lo = Int(bounds[0]), lo >= 0 else { return nil }
            let hi = bounds.count == 2 ? Int(bounds[1]) : lo
            guard let hi, hi >= lo, hi - lo < 65536 else { return nil }
            cpus.append(contentsOf: lo...hi)
        }
        return cpus
    }

    static func readInt(_ path: String) -> Int? {
        guard let text = try? Kernel.readText(path) else { return nil }
        return Int(text.trimmingWhitespace())
    }

    /// The place of one CPU; `nil` when its topology directory is missing or unreadable.
    static func place(of cpu: Int, paths: HardwarePaths) -> CPUPlace? {
        let dir = paths.cpuTopology(cpu)
        guard let package = readInt(dir + "/physical_package_id") else { return nil }
        return CPUPlace(
            cpu: cpu,
            package: package,
            die: readInt(dir + "/die_id") ?? 0,
            core: readInt(dir + "/core_id") ?? cpu
        )
    }

    /// Every CPU that has a topology directory, in CPU order.
    static func allPlaces(paths: HardwarePaths) -> [CPUPlace] {
        let names = (try? Kernel.listDirectory(paths.cpuDirectory)) ?? []
        let cpus = names.compactMap { name -> Int? in
            guard name.hasPrefix("cpu") else { return nil }
            return Int(name.dropFirst(3))
        }.sorted()
        return cpus.compactMap { place(of: $0, paths: paths) }
    }

    /// One CPU per package (per die where a package has several), the first of each in `places`' order:
    /// where the MSR backends read a package's registers.
    static func leaders(_ places: [CPUPlace], multiDie: Bool) -> [CPUPlace] {
        var seen: Set<[Int]> = []
        return places.filter { seen.insert([$0.package, multiDie ? $0.die : 0]).inserted }
    }

    /// True when some package has more than one die among `places`.
    static func isMultiDie(_ places: [CPUPlace]) -> Bool {
        var dies: [Int: Set<Int>] = [:]
        for p in places { dies[p.package, default: []].insert(p.die) }
        return dies.values.contains { $0.count > 1 }
    }
}

/// The processor, from `/proc/cpuinfo` (first CPU).
public struct CPUIdentity: Sendable, Equatable {
    public enum Vendor: String, Sendable { case intel, amd, hygon, other }
    public var vendor: Vendor
    public var family: Int
    public var model: Int

    public init(vendor: Vendor, family: Int, model: Int) {
        self.vendor = vendor
        self.family = family
        self.model = model
    }

    static func read(paths: HardwarePaths) -> CPUIdentity? {
        guard let text = try? Kernel.readText(paths.cpuinfo, limit: 16 * 1024) else { return nil }
        var vendor: Vendor?
        var family: Int?
        var model: Int?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else {
                if line.trimmingWhitespace().isEmpty, vendor != nil { break }
                continue
            }
            let key = parts[0].trimmingWhitespace()
            let value = parts[1].trimmingWhitespace()
            switch key {
            case "vendor_id":
                vendor =
                    switch value {
                    case "GenuineIntel": .intel
                    case "AuthenticAMD": .amd
                    case "HygonGenuine": .hygon
                    default: .other
                    }
            case "cpu family": family = Int(value)
            case "model": model = Int(value)
            default: break
            }
        }
        guard let vendor, let family, let model else { return nil }
        return CPUIdentity(vendor: vendor, family: family, model: model)
    }
}
