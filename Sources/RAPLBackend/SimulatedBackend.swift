import Support

/// **Not a measurement.** A plausible energy source for machines without RAPL (VMs, laptops, CI
/// runners), so that the whole pipeline can be tried: `--backend simulated`, never chosen by `auto`,
/// warned about at start and in `probe`, and marked in every output (`backend="simulated"`).
///
/// The counters are a pure function of the machine's own CPU time, the first (`cpu`) line of
/// `<proc>/stat`: per CPU-second busy (user, nice, system, irq, softirq, steal) and idle (idle, iowait)
/// each domain gets a fixed energy (``model``). So the "power" moves with load, the counters only go up
/// (as the kernel's CPU times do), and the exporter's exactness, wrap and glitch handling apply to it as
/// to any backend. One `pread(2)` of /proc/stat per read.
public final class SimulatedBackend: EnergyBackend {
    public let kind = BackendKind.simulated
    public private(set) var counters: [CounterSpec] = []
    public private(set) var notes: [String] = []

    /// Watts per busy and per idle CPU, per domain: a small client part's package, cores and DRAM.
    public static let model: [(domain: Domain, busyWatts: UInt64, idleWatts: UInt64)] = [
        (Domain(.package, socket: 0), 9, 2),
        (Domain(.core, socket: 0), 7, 1),
        (Domain(.dram, socket: 0), 1, 1),
    ]

    /// The warning logged at start and printed by `probe`.
    public static let warning =
        "backend simulated: NOT A MEASUREMENT — energy is made up from this machine's CPU time (/proc/stat) so the pipeline can be tried without RAPL; every output marks it backend=simulated"

    private let path: String
    private var fd: DescriptorTable
    private let buffer: UnsafeMutableRawBufferPointer
    /// USER_HZ: the unit of /proc/stat's times (100 on every Linux architecture that matters).
    private let ticksPerSecond: UInt64 = 100
    /// The CPU times of the current round of reads (read with counter 0).
    private var cached: (busy: UInt64, idle: UInt64)?

    public init(paths: HardwarePaths) throws(BackendUnavailable) {
        path = paths.procStat
        fd = DescriptorTable(count: 1)
        buffer = .allocate(byteCount: 512, alignment: 8)
        counters = Self.model.map { CounterSpec(domain: $0.domain, unit: .microjoule, source: "simulated from \(paths.procStat)") }
        do {
            _ = try times()
        } catch {
            throw BackendUnavailable(.simulated, reason: error.message, fix: "mount /proc (or pass --proc-root)")
        }
        notes = [
            "NOT A MEASUREMENT: "
                + Self.model.map { "\($0.domain.component()) \($0.busyWatts) W per busy CPU, \($0.idleWatts) W per idle one" }
                .joined(separator: "; ")
        ]
    }

    deinit { buffer.deallocate() }

    /// Busy and idle CPU ticks summed over all CPUs, from the `cpu` line.
    func times() throws(CounterReadError) -> (busy: UInt64, idle: UInt64) {
        let descriptor: CInt
        let n: Int
        do {
            descriptor = try fd.descriptor(0) { () throws(KernelError) in try Kernel.openReadOnly(self.path) }
            n = try Kernel.preadStart(descriptor, buffer, path: self.path)
        } catch {
            fd.close(0)
            throw CounterReadError("\(error)")
        }
        guard let times = Self.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) else {
            throw CounterReadError("\(path): no 'cpu' line with user nice system idle … times")
        }
        return times
    }

    /// The first line, `cpu  user nice system idle iowait irq softirq steal …`, as (busy, idle) ticks.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> (busy: UInt64, idle: UInt64)? {
        guard bytes.count > 4, bytes[0] == UInt8(ascii: "c"), bytes[1] == UInt8(ascii: "p"), bytes[2] == UInt8(ascii: "u"),
            bytes[3] == UInt8(ascii: " ")
        else { return nil }
        var fields: [UInt64] = []
        var value: UInt64 = 0
        var inNumber = false
        for byte in bytes[4...] {
            if byte >= 48 && byte <= 57 {
                value = value &* 10 &+ UInt64(byte - 48)
                inNumber = true
            } else {
                if inNumber { fields.append(value) }
                value = 0
                inNumber = false
                if byte == 10 || fields.count == 8 { break }
            }
        }
        guard fields.count >= 4 else { return nil }
        func field(_ i: Int) -> UInt64 { i < fields.count ? fields[i] : 0 }
        return (busy: field(0) + field(1) + field(2) + field(5) + field(6) + field(7), idle: field(3) + field(4))
    }

    public func read(_ index: Int) throws(CounterReadError) -> RawCount {
        // One /proc/stat read per round of reads: counter 0 is read first in every round.
        if index == 0 || cached == nil { cached = try times() }
        let times = cached!
        let model = Self.model[index]
        // µJ = ticks / USER_HZ × W × 1e6.
        let microjoules = (times.busy * model.busyWatts + times.idle * model.idleWatts) * (1_000_000 / ticksPerSecond)
        return RawCount(value: microjoules, modulus: UInt128(1) << 64)
    }
}
