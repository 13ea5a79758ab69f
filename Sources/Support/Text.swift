// Small helpers the project's modules share; `package` access: they are not part of any module's API.

extension StringProtocol {
    /// Without leading and trailing whitespace (newlines included).
    package func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}

extension Duration {
    /// Seconds as a Double.
    package var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Whole nanoseconds (truncated), without the standard library's generic `BinaryInteger` paths: the
    /// sampler converts on every window, where an unspecialised generic call costs a metadata look-up.
    package var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000
    }

    /// The duration of `nanoseconds` (see ``wholeNanoseconds``).
    package init(wholeNanoseconds nanoseconds: Int64) {
        self.init(
            secondsComponent: nanoseconds / 1_000_000_000, attosecondsComponent: (nanoseconds % 1_000_000_000) &* 1_000_000_000)
    }

    package init(secondsValue: Double) {
        self = .nanoseconds(Int64((secondsValue * 1e9).rounded()))
    }
}

/// `value` rounded to `decimals` places, without a trailing exponent: for log lines and reports.
package func formatted(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    if decimals == 0 { return String(Int64(rounded)) }
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let have = text.distance(from: dot, to: text.endIndex) - 1
        if have < decimals { text += String(repeating: "0", count: decimals - have) }
    }
    return text
}

extension Array {
    /// Makes this array's elements equal to `other`'s, in this array's own storage: element by element
    /// when the counts match (no reallocation, and no sharing of `other`'s buffer, which would make
    /// the next change of either array copy it). Inlinable so that it is specialised where it is used (the
    /// remote writer's intake, at every window): unspecialised, it looks up `Array`'s metadata per call.
    @inlinable
    package mutating func overwrite(with other: [Element]) {
        guard count == other.count else {
            removeAll(keepingCapacity: true)
            append(contentsOf: other)
            return
        }
        withUnsafeMutableBufferPointer { mine in
            other.withUnsafeBufferPointer { theirs in
                for i in theirs.indices { mine[i] = theirs[i] }
            }
        }
    }
}
