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
