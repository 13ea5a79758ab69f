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
    var bootID: String { procRoot + "/sys/kernel/random/boot_id" }
    var procStat: String { procRoot + "/stat" }
}
