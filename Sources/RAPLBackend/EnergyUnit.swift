import Support

/// The energy of one raw counter step, as an exact fraction of a microjoule.
///
/// Every backend's raw count is converted with integer arithmetic on the *running raw total*
/// (`floor(total × numerator / denominator)`), so no rounding accumulates: the µJ total after a day is
/// exactly what the raw total says, and window deltas of the µJ total add up to it exactly.
public struct EnergyUnit: Sendable, Hashable, CustomStringConvertible {
    /// µJ per count = numerator / denominator, reduced.
    public let numerator: UInt128
    public let denominator: UInt128

    public init?(numerator: UInt128, denominator: UInt128) {
        guard numerator > 0, denominator > 0 else { return nil }
        let g = Self.gcd(numerator, denominator)
        self.numerator = numerator / g
        self.denominator = denominator / g
    }

    /// 1 µJ per count (sysfs powercap `energy_uj`).
    public static let microjoule = EnergyUnit(numerator: 1, denominator: 1)!

    /// 2^-bits J per count: the RAPL energy status unit (ESU) of the unit MSR.
    public static func joulesPowerOfTwo(_ bits: Int) -> EnergyUnit {
        precondition((0..<64).contains(bits))
        return EnergyUnit(numerator: 1_000_000, denominator: UInt128(1) << bits)!
    }

    /// Parses a perf `.scale` file: a decimal number of joules per count such as
    /// `2.3283064365386962890625e-10` (exactly 2^-32). Parsed exactly, without floating point.
    public init?(decimalJoules text: String) {
        let s = text.trimmingWhitespace()
        guard !s.isEmpty else { return nil }
        var mantissaPart = Substring(s)
        var exponent = 0
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissaPart = s[..<e]
            guard let exp = Int(s[s.index(after: e)...]), abs(exp) < 40 else { return nil }
            exponent = exp
        }
        var digits: UInt128 = 0
        var seenDot = false
        var seenDigit = false
        for ch in mantissaPart {
            if ch == "." {
                guard !seenDot else { return nil }
                seenDot = true
            } else if let d = ch.wholeNumberValue, ch.isASCII {
                seenDigit = true
                let (m, o1) = digits.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt128(d))
                guard !o1, !o2 else { return nil }
                digits = a
                if seenDot { exponent -= 1 }
            } else {
                return nil
            }
        }
        guard seenDigit else { return nil }
        // J = digits × 10^exponent; µJ = digits × 10^(exponent + 6).
        exponent += 6
        guard exponent > -39 && exponent < 39 else { return nil }
        let power = Self.pow10(abs(exponent))
        if exponent >= 0 {
            let (n, o) = digits.multipliedReportingOverflow(by: power)
            guard !o else { return nil }
            self.init(numerator: n, denominator: 1)
        } else {
            self.init(numerator: digits, denominator: power)
        }
    }

    /// Exact `floor(raw × numerator / denominator)` in µJ; saturates at `UInt64.max` (≈ 1.8e13 J).
    /// Every RAPL unit reduces to a power-of-two denominator (2^-ESU J, 2^-32 J, 1 µJ), which takes a
    /// shift instead of a 256-by-128-bit division.
    @inline(__always)
    public func microjoules(_ raw: UInt128) -> UInt64 {
        if denominator.nonzeroBitCount == 1 {
            let (product, overflow) = numerator.multipliedReportingOverflow(by: raw)
            if !overflow {
                let q = product >> denominator.trailingZeroBitCount
                return q > UInt128(UInt64.max) ? .max : UInt64(q)
            }
        }
        let product = numerator.multipliedFullWidth(by: raw)
        guard product.high < denominator else { return .max }
        let q = denominator.dividingFullWidth(product).quotient
        return q > UInt128(UInt64.max) ? .max : UInt64(q)
    }

    /// µJ per count as a floating-point number, for display only.
    public var microjoulesPerCount: Double { Self.double(numerator) / Self.double(denominator) }

    private static func double(_ x: UInt128) -> Double {
        Double(UInt64(truncatingIfNeeded: x >> 64)) * 18_446_744_073_709_551_616.0 + Double(UInt64(truncatingIfNeeded: x))
    }

    public var description: String {
        let (scaled, overflow) = denominator.multipliedReportingOverflow(by: 1_000_000)
        if !overflow, let joules = EnergyUnit(numerator: numerator, denominator: scaled),
            joules.numerator == 1, joules.denominator.nonzeroBitCount == 1
        {
            let bits = joules.denominator.trailingZeroBitCount
            return bits == 0 ? "1 J" : "2^-\(bits) J (\(microjoulesPerCount) µJ)"
        }
        return "\(microjoulesPerCount) µJ"
    }

    private static func gcd(_ a: UInt128, _ b: UInt128) -> UInt128 {
        var (x, y) = (a, b)
        while y != 0 { (x, y) = (y, x % y) }
        return x
    }

    private static func pow10(_ n: Int) -> UInt128 {
        var r: UInt128 = 1
        for _ in 0..<n { r *= 10 }
        return r
    }
}
