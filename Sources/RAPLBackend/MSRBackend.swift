/// Reads RAPL energy-status MSRs through the msr driver: `pread(2)` of 8 bytes at offset = MSR
/// address on `<dev>/cpu/N/msr`, one CPU per package (per die on multi-die parts).
///
/// The counters are 32 bits wide (bits 31:0); ``EnergyMeter`` extends them to 64 bits, which is exact
/// as long as reads come more often than the wrap period logged at start.
public final class MSRBackend: EnergyBackend {
    public let kind = BackendKind.msr
    public private(set) var counters: [CounterSpec] = []
    public private(set) var notes: [String] = []

    /// Intel (SDM vol. 4) and AMD (PPR for family 17h) register numbers.
    public enum Register {
        public static let intelPowerUnit: UInt32 = 0x606
        public static let intelPackage: UInt32 = 0x611
        public static let intelDRAM: UInt32 = 0x619
        public static let intelPP0: UInt32 = 0x639
        public static let intelPP1: UInt32 = 0x641
        public static let intelPlatform: UInt32 = 0x64D
        public static let amdPowerUnit: UInt32 = 0xC001_0299
        public static let amdCore: UInt32 = 0xC001_029A
        public static let amdPackage: UInt32 = 0xC001_029B
    }

    /// Intel family-6 server models whose DRAM domain counts in a fixed 2^-16 J (15.3 µJ) unit instead
    /// of the unit MSR's, as the kernel's perf RAPL driver lists them (RAPL_UNIT_QUIRK_INTEL_HSW/SPR):
    /// Haswell-X, Broadwell-X/D, Xeon Phi KNL/KNM, Skylake-X (and Cascade/Cooper Lake), Ice Lake-X/D,
    /// Sapphire Rapids, Emerald Rapids.
    public static let fixedDRAMUnitModels: Set<Int> = [0x3F, 0x4F, 0x56, 0x57, 0x85, 0x55, 0x6A, 0x6C, 0x8F, 0xCF]
    /// Models whose PSYS domain counts in 1 J units (RAPL_UNIT_QUIRK_INTEL_SPR).
    public static let jouleUnitPsysModels: Set<Int> = [0x8F, 0xCF]

    /// Where counter i is read: which opened CPU's device (an index into `cpus`), which register.
    private struct CounterRegister {
        var cpuIndex: Int
        var register: UInt32
    }

    private let paths: HardwarePaths
    private let identity: CPUIdentity
    private let isAMD: Bool
    private let places: [CPUPlace]
    private let multiDie: Bool
    private let firstLeader: Int
    /// Package leaders not set up yet.
    private var pending: [CPUPlace] = []
    private var cpus: [Int] = []
    // Read on every window: unchecked for exclusive access, like `EnergyMeter`'s state (one thread owns
    // a backend; see EnergyMeter.ledger).
    /// `<dev>/cpu/N/msr` per opened CPU (`cpus`, same index), built once: a read must not format a path.
    @exclusivity(unchecked) private var devices: [String] = []
    @exclusivity(unchecked) private var fds: DescriptorTable
    @exclusivity(unchecked) private var counterRegisters: [CounterRegister] = []

    public init(paths: HardwarePaths, facts: SystemFacts) throws(BackendUnavailable) {
        self.paths = paths
        self.fds = DescriptorTable(count: 0)
        guard let cpu = facts.identity else {
            throw BackendUnavailable(.msr, reason: "cannot identify the CPU from \(paths.cpuinfo)", fix: "mount /proc (or pass --proc-root)")
        }
        let isAMD = (cpu.vendor == .amd || cpu.vendor == .hygon) && cpu.family >= 0x17
        guard cpu.vendor == .intel || isAMD else {
            throw BackendUnavailable(
                .msr,
                reason: "no RAPL MSRs known for \(cpu.vendor.rawValue) family \(cpu.family) model \(cpu.model)",
                fix: "RAPL MSRs exist on Intel since Sandy Bridge and AMD family 17h (Zen) and later; use another backend"
            )
        }
        let places = Topology.allPlaces(paths: paths)
        guard !places.isEmpty else {
            throw BackendUnavailable(.msr, reason: "no CPU topology under \(paths.cpuDirectory)", fix: "mount sysfs (or pass --sysfs-root)")
        }
        guard places.contains(where: { Kernel.exists(paths.msrDevice($0.cpu)) }) else {
            let hasCPUDir = Kernel.exists(paths.devRoot + "/cpu/\(places[0].cpu)")
            throw BackendUnavailable(
                .msr,
                reason: "\(paths.msrDevice(places[0].cpu)) does not exist" + (hasCPUDir ? " (the msr driver is not loaded)" : ""),
                fix: "modprobe msr on the host; in a container pass --device /dev/cpu/N/msr for one CPU per package"
            )
        }
        guard facts.capabilities.contains(.sysRawio) else {
            throw BackendUnavailable(
                .msr,
                reason:
                    "the process lacks CAP_SYS_RAWIO (held: \(facts.capabilities)), which the msr driver requires to open \(paths.msrDevice(places[0].cpu))",
                fix: "run as root, or grant CAP_SYS_RAWIO (docker run --cap-add SYS_RAWIO --device /dev/cpu/N/msr; setcap cap_sys_rawio+p)"
            )
        }
        self.identity = cpu
        self.isAMD = isAMD
        self.places = places
        let multiDie = Topology.isMultiDie(places)
        self.multiDie = multiDie
        // One CPU per package (per die where a package has several).
        let leaders = Topology.leaders(places, multiDie: multiDie)
        self.firstLeader = leaders[0].cpu
        self.pending = leaders
        let failures = addPendingPackages()
        guard !counters.isEmpty else {
            throw BackendUnavailable(
                .msr,
                reason: failures.first ?? "no package could be read",
                fix: "the msr device needs CAP_SYS_RAWIO and read access to /dev/cpu/N/msr (root, or --cap-add SYS_RAWIO and --device /dev/cpu/N/msr)"
            )
        }
        notes.append(contentsOf: failures)
        var noted: Set<Domain> = []
        for spec in counters where noted.insert(spec.domain).inserted {
            let range = Double(UInt64(1) << 32) * spec.unit.microjoulesPerCount
            notes.append(wrapNote(spec.domain, source: "MSR (unit \(spec.unit))", rangeMicrojoules: range, bits: "32-bit"))
        }
    }

    public func refresh() -> [String] {
        pending.isEmpty ? [] : addPendingPackages()
    }

    /// Sets up the counters of every package not yet set up; a package whose device cannot be opened
    /// or whose unit register cannot be read stays pending for ``refresh()``.
    private func addPendingPackages() -> [String] {
        var failures: [String] = []
        pending = pending.filter { leader in
            if let failure = addPackage(leader) {
                failures.append("MSR package \(leader.package) skipped: \(failure); retrying later")
                return true
            }
            return false
        }
        return failures
    }

    private func addPackage(_ leader: CPUPlace) -> CounterReadError? {
        let domainDie = multiDie ? leader.die : nil
        let leaderIndex = cpuIndex(for: leader.cpu)
        let device = paths.msrDevice(leader.cpu)
        let unitRegister = isAMD ? Register.amdPowerUnit : Register.intelPowerUnit
        let unitValue: UInt64
        do {
            unitValue = try readRegister(cpuIndex: leaderIndex, unitRegister)
        } catch {
            return error
        }
        let unit = EnergyUnit.joulesPowerOfTwo(Int((unitValue >> 8) & 0x1F))
        func add(_ kind: DomainKind, _ register: UInt32, unit: EnergyUnit, required: Bool, cpuIndex: Int, device: String) {
            let domain = Domain(kind, socket: leader.package, die: domainDie)
            if !required {
                do { _ = try readRegister(cpuIndex: cpuIndex, register) } catch {
                    notes.append("MSR \(domain.component()) not present on \(device): \(error)")
                    return
                }
            }
            counterRegisters.append(CounterRegister(cpuIndex: cpuIndex, register: register))
            counters.append(CounterSpec(domain: domain, unit: unit, source: "\(device) @0x\(String(register, radix: 16))"))
        }
        if isAMD {
            add(.package, Register.amdPackage, unit: unit, required: true, cpuIndex: leaderIndex, device: device)
            // The core energy MSR is per core: sum one thread of each core of this package.
            var coresSeen: Set<Int> = []
            for place in places where place.package == leader.package && (!multiDie || place.die == leader.die) {
                guard coresSeen.insert(place.core).inserted else { continue }
                add(.core, Register.amdCore, unit: unit, required: true, cpuIndex: self.cpuIndex(for: place.cpu), device: paths.msrDevice(place.cpu))
            }
        } else {
            let quirkModel = identity.family == 6
            let dramUnit = quirkModel && Self.fixedDRAMUnitModels.contains(identity.model) ? .joulesPowerOfTwo(16) : unit
            let psysUnit = quirkModel && Self.jouleUnitPsysModels.contains(identity.model) ? .joulesPowerOfTwo(0) : unit
            add(.package, Register.intelPackage, unit: unit, required: true, cpuIndex: leaderIndex, device: device)
            add(.core, Register.intelPP0, unit: unit, required: false, cpuIndex: leaderIndex, device: device)
            add(.uncore, Register.intelPP1, unit: unit, required: false, cpuIndex: leaderIndex, device: device)
            add(.dram, Register.intelDRAM, unit: dramUnit, required: false, cpuIndex: leaderIndex, device: device)
            if leader.cpu == firstLeader {
                add(.psys, Register.intelPlatform, unit: psysUnit, required: false, cpuIndex: leaderIndex, device: device)
            }
        }
        return nil
    }

    private func cpuIndex(for cpu: Int) -> Int {
        if let i = cpus.firstIndex(of: cpu) { return i }
        cpus.append(cpu)
        devices.append(paths.msrDevice(cpu))
        _ = fds.append()
        return cpus.count - 1
    }

    private func readRegister(cpuIndex: Int, _ register: UInt32) throws(CounterReadError) -> UInt64 {
        let fd: CInt
        do {
            fd = try fds.descriptor(cpuIndex) { () throws(KernelError) in try Kernel.openReadOnly(self.devices[cpuIndex]) }
        } catch {
            throw Self.describe(error)
        }
        do {
            return try Kernel.msrRead(fd, register: register, path: self.devices[cpuIndex])
        } catch {
            throw Self.describe(error, register: register)
        }
    }

    public func read(_ index: Int) throws(CounterReadError) -> RawCount {
        let counter = counterRegisters[index]
        let value = try readRegister(cpuIndex: counter.cpuIndex, counter.register)
        return RawCount(value: value & 0xFFFF_FFFF, modulus: UInt128(1) << 32)
    }

    static func describe(_ error: KernelError, register: UInt32? = nil) -> CounterReadError {
        let what = register.map { "register 0x\(String($0, radix: 16)): " } ?? ""
        if error.isPermission {
            return CounterReadError(
                "\(what)\(error)",
                fix: "the msr device needs CAP_SYS_RAWIO and read access (root, or --cap-add SYS_RAWIO --device /dev/cpu/N/msr)"
            )
        }
        if error.errno == .noData {
            return CounterReadError("\(what)\(error) (the file ends before the register)")
        }
        if error.errno == .ioError {
            return CounterReadError("\(what)\(error) (the CPU does not implement this register)")
        }
        if error.errno == .noSuchFileOrDirectory || error.errno == .noSuchAddressOrDevice {
            return CounterReadError("\(what)\(error)", fix: "modprobe msr; in a container pass --device for this CPU's msr")
        }
        return CounterReadError("\(what)\(error)")
    }
}
