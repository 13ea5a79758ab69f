import Foundation
import RAPLBackend
import Synchronization

/// A fake machine in a temp dir, in the kernel's real layout: `sys/` (powercap zones as symlinks from
/// `class/powercap` into `devices/virtual/powercap`, CPU topology, perf PMUs), `dev/cpu/N/msr` as sparse
/// files written at the register offset, and `proc/` (cpuinfo, perf_event_paranoid).
///
/// Counters are rewritten in place (same inode), because the sysfs backend keeps files open.
public final class FakeTree: @unchecked Sendable {
    public let root: String
    public var sys: String { root + "/sys" }
    public var dev: String { root + "/dev" }
    public var proc: String { root + "/proc" }
    public var paths: HardwarePaths { HardwarePaths(sysfsRoot: sys, devRoot: dev, procRoot: proc) }

    public init() {
        var template = Array("/tmp/rapl-fake-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        root = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Readable by an unprivileged child (permission tests drop to nobody).
        chmod(root, 0o755)
        try! FileManager.default.createDirectory(atPath: sys + "/class/powercap", withIntermediateDirectories: true)
        write("proc/sys/kernel/perf_event_paranoid", "2\n")
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    public func mkdir(_ relative: String) {
        try! FileManager.default.createDirectory(atPath: root + "/" + relative, withIntermediateDirectories: true)
    }

    /// Writes `content` at `relative`, in place when the file exists (keeps its inode).
    public func write(_ relative: String, _ content: String, mode: mode_t = 0o444) {
        let path = root + "/" + relative
        mkdir((relative as NSString).deletingLastPathComponent)
        let fd = open(path, O_WRONLY | O_CREAT, mode)
        precondition(fd >= 0, "open \(path): \(errno)")
        defer { close(fd) }
        let bytes = Array(content.utf8)
        precondition(ftruncate(fd, 0) == 0)
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        precondition(n == bytes.count)
        fchmod(fd, mode)
    }

    public func remove(_ relative: String) { try? FileManager.default.removeItem(atPath: root + "/" + relative) }

    public func symlink(_ relative: String, to target: String) {
        mkdir((relative as NSString).deletingLastPathComponent)
        precondition(Foundation.symlink(target, root + "/" + relative) == 0)
    }

    // MARK: CPUs

    public func cpu(_ n: Int, package: Int, die: Int = 0, core: Int? = nil) {
        let dir = "sys/devices/system/cpu/cpu\(n)/topology"
        write(dir + "/physical_package_id", "\(package)\n")
        write(dir + "/die_id", "\(die)\n")
        write(dir + "/core_id", "\(core ?? n)\n")
    }

    public func cpuinfo(vendor: String, family: Int, model: Int) {
        write(
            "proc/cpuinfo",
            """
            processor\t: 0
            vendor_id\t: \(vendor)
            cpu family\t: \(family)
            model\t\t: \(model)
            model name\t: Fake CPU

            processor\t: 1
            vendor_id\t: \(vendor)

            """)
    }

    // MARK: powercap

    /// Creates zone `id` ("intel-rapl:0", "intel-rapl:0:1", "intel-rapl-mmio:0") with its class symlink.
    public func zone(_ id: String, name: String?, energy: UInt64, max: UInt64 = 262_143_328_850) {
        let control = id.hasPrefix("intel-rapl-mmio") ? "intel-rapl-mmio" : "intel-rapl"
        let parts = id.split(separator: ":")
        let deviceDir: String
        if parts.count == 3 {
            deviceDir = "devices/virtual/powercap/\(control)/\(parts[0]):\(parts[1])/\(id)"
        } else {
            deviceDir = "devices/virtual/powercap/\(control)/\(id)"
        }
        if let name { write("sys/" + deviceDir + "/name", name + "\n") }
        write("sys/" + deviceDir + "/energy_uj", "\(energy)\n", mode: 0o400)
        write("sys/" + deviceDir + "/max_energy_range_uj", "\(max)\n")
        write("sys/" + deviceDir + "/enabled", "1\n")
        if !FileManager.default.fileExists(atPath: sys + "/class/powercap/" + control) {
            symlink("sys/class/powercap/" + control, to: "../../devices/virtual/powercap/" + control)
        }
        symlink("sys/class/powercap/" + id, to: "../../" + deviceDir)
    }

    /// Rewrites a zone's energy_uj in place (same inode), zero-padded to a fixed width and without
    /// truncating first, so a reader racing the write sees the old or the new value, never an empty
    /// or mixed file (the kernel generates the text atomically; a file rewrite is not).
    public func setEnergy(_ id: String, _ value: UInt64) {
        let digits = String(value)
        let padded = String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "\n"
        let path = sys + "/class/powercap/\(id)/energy_uj"
        let fd = open(path, O_WRONLY)
        precondition(fd >= 0, "open \(path): \(errno)")
        defer { close(fd) }
        let bytes = Array(padded.utf8)
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        precondition(n == bytes.count)
    }

    public func setZoneFile(_ id: String, _ file: String, _ content: String) {
        write("sys/class/powercap/\(id)/\(file)", content)
    }

    /// Writes power-limit constraint `n` of zone `id` (powercap's `constraint_N_*` files).
    public func constraint(_ id: String, _ n: Int, name: String, microwatts: UInt64, windowMicroseconds: UInt64? = nil, maxMicrowatts: UInt64? = nil)
    {
        setZoneFile(id, "constraint_\(n)_name", name + "\n")
        setZoneFile(id, "constraint_\(n)_power_limit_uw", "\(microwatts)\n")
        if let windowMicroseconds { setZoneFile(id, "constraint_\(n)_time_window_us", "\(windowMicroseconds)\n") }
        if let maxMicrowatts { setZoneFile(id, "constraint_\(n)_max_power_uw", "\(maxMicrowatts)\n") }
    }

    // MARK: MSR

    /// Writes the 8-byte register `register` of CPU `cpu` (pwrite at offset = register; the file is sparse).
    public func msr(cpu: Int, _ register: UInt32, _ value: UInt64) {
        let path = dev + "/cpu/\(cpu)/msr"
        mkdir("dev/cpu/\(cpu)")
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        precondition(fd >= 0)
        defer { close(fd) }
        var v = value.littleEndian
        let n = withUnsafeBytes(of: &v) { pwrite(fd, $0.baseAddress, 8, off_t(register)) }
        precondition(n == 8)
    }

    /// Reads 8 bytes at offset `register` of CPU `cpu`'s fake msr file (zero where unwritten).
    public func readMSR(cpu: Int, _ register: UInt32) -> UInt64 {
        let fd = open(dev + "/cpu/\(cpu)/msr", O_RDONLY)
        precondition(fd >= 0)
        defer { close(fd) }
        var v: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &v) { pread(fd, $0.baseAddress, 8, off_t(register)) }
        return UInt64(littleEndian: v)
    }

    // MARK: perf

    /// A perf PMU directory named `power` whose events map to (name, config, scale).
    public func perfPMU(type: UInt32, cpumask: String, events: [(String, String, String)]) {
        let dir = "sys/bus/event_source/devices/power"
        write(dir + "/type", "\(type)\n")
        write(dir + "/cpumask", cpumask + "\n")
        for (name, config, scale) in events {
            write(dir + "/events/" + name, config + "\n")
            write(dir + "/events/" + name + ".scale", scale + "\n")
            write(dir + "/events/" + name + ".unit", "Joules\n")
        }
    }

    /// The tree most daemon tests run on: powercap zones only (by default one package), read with
    /// ``sysfsArguments``.
    public static func powercap(
        _ zones: [(id: String, name: String, energy: UInt64)] = [("intel-rapl:0", "package-0", 1)], max: UInt64 = 262_143_328_850
    ) -> FakeTree {
        let tree = FakeTree()
        for zone in zones { tree.zone(zone.id, name: zone.name, energy: zone.energy, max: max) }
        return tree
    }

    /// `--sysfs-root <this tree> --backend sysfs`.
    public var sysfsArguments: [String] { ["--sysfs-root", sys, "--backend", "sysfs"] }

    /// One Intel client machine that every backend can read: CPU 0 on package 0; a perf `power` PMU whose
    /// energy-pkg is this machine's real software PMU (so it opens and moves); MSRs with a 2^-14 J unit;
    /// a powercap package zone. Nil where this machine has no software PMU.
    public static func allBackends() -> FakeTree? {
        guard let software = realPMUType("software") else { return nil }
        let tree = FakeTree()
        tree.cpu(0, package: 0)
        tree.cpuinfo(vendor: "GenuineIntel", family: 6, model: 0x8C)
        tree.perfPMU(type: software, cpumask: "0", events: [("energy-pkg", "event=0x00", "1e-9")])
        tree.msr(cpu: 0, MSRBackend.Register.intelPowerUnit, 0x000A_0E03)
        tree.msr(cpu: 0, MSRBackend.Register.intelPackage, 5)
        tree.zone("intel-rapl:0", name: "package-0", energy: 5)
        return tree
    }

    /// The type number of a real PMU on this machine (`software` always exists).
    public static func realPMUType(_ name: String) -> UInt32? {
        guard let text = try? String(contentsOfFile: "/sys/bus/event_source/devices/\(name)/type", encoding: .utf8) else { return nil }
        return UInt32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// All capabilities, paranoid 2: what root has here.
public let rootFacts = SystemFacts(
    capabilities: [.perfmon, .sysAdmin, .sysRawio, .dacOverride, .dacReadSearch],
    perfParanoid: 2,
    identity: CPUIdentity(vendor: .intel, family: 6, model: 0x8C)
)

/// The one scripted backend: a test sets each counter's raw value directly (`values`), queues values
/// read one per read (`queued`), or lets it advance by a fixed step at every read (`steps`). Reads are
/// counted behind a lock, so a test may look while a sampling thread owns the backend (hence
/// `@unchecked Sendable`: the scripted values are set before the backend is handed over).
public final class ScriptedBackend: EnergyBackend, @unchecked Sendable {
    public let kind = BackendKind.sysfs
    public var counters: [CounterSpec]
    public var notes: [String] = []
    public var values: [Result<UInt64, CounterReadError>]
    /// Values read first, one per read, before `values` (per counter).
    public var queued: [[UInt64]]
    /// Added to the value before each read (per counter, wrapping at the modulus).
    public var steps: [UInt64]
    public var modulus: UInt128
    /// Per counter, the reads (1 for its first) that fail instead.
    public var failing: [Int: Set<Int>] = [:]
    private var readsOf: [Int: Int] = [:]
    private let readCount = Mutex(0)

    public init(_ counters: [CounterSpec], modulus: UInt128, queued: [[UInt64]]? = nil, steps: [UInt64]? = nil, start: [UInt64]? = nil) {
        self.counters = counters
        self.values = (start ?? counters.map { _ in 0 }).map { .success($0) }
        self.queued = queued ?? counters.map { _ in [] }
        self.steps = steps ?? counters.map { _ in 0 }
        self.modulus = modulus
    }

    /// Reads so far, of every counter.
    public var reads: Int { readCount.withLock { $0 } }

    public func read(_ index: Int) throws(CounterReadError) -> RawCount {
        readCount.withLock { $0 += 1 }
        readsOf[index, default: 0] += 1
        if failing[index]?.contains(readsOf[index]!) == true { throw CounterReadError("scripted failure") }
        if !queued[index].isEmpty { return RawCount(value: queued[index].removeFirst(), modulus: modulus) }
        if steps[index] != 0, case .success(let v) = values[index] {
            values[index] = .success(UInt64((UInt128(v) + UInt128(steps[index])) % modulus))
        }
        switch values[index] {
        case .success(let v): return RawCount(value: v, modulus: modulus)
        case .failure(let e): throw e
        }
    }
}

/// A fresh directory under /tmp, removed by the test's end.
public final class TempDirectory: @unchecked Sendable {
    public let path: String
    public init() {
        var template = Array("/tmp/rapl-spool-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil)
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    public var spool: String { path + "/spool" }
    public func files(_ dir: String? = nil) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir ?? spool)) ?? []).sorted() }
    public func segments() -> [String] { files().filter { $0.hasPrefix("segment-") } }
}
