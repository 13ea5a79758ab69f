import CSnappy

/// Snappy block-format compression (the format remote write requires), through libsnappy's C API.
public enum Snappy {
    /// Compresses `input` with `snappy_compress(3)`.
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        var scratch: [UInt8] = []
        return input.withUnsafeBytes { compress($0, into: &scratch) }
    }

    /// Compresses `input` with `snappy_compress(3)` into `scratch` (grown once to
    /// `snappy_max_compressed_length` and then reused) and returns the compressed bytes.
    public static func compress(_ input: UnsafeRawBufferPointer, into scratch: inout [UInt8]) -> [UInt8] {
        let bound = snappy_max_compressed_length(input.count)
        if scratch.count < bound { scratch.append(contentsOf: repeatElement(0, count: bound - scratch.count)) }
        var length = bound
        let status = scratch.withUnsafeMutableBytes { dst in
            // An empty input still needs a valid pointer; any will do for 0 bytes.
            let source = input.baseAddress ?? UnsafeRawPointer(dst.baseAddress!)
            return snappy_compress(
                source.assumingMemoryBound(to: CChar.self), input.count,
                dst.baseAddress!.assumingMemoryBound(to: CChar.self), &length)
        }
        precondition(status == SNAPPY_OK, "snappy_compress cannot fail with a buffer of snappy_max_compressed_length")
        return Array(scratch[..<length])
    }

    /// Decompresses a snappy block; nil when the input is not valid snappy.
    public static func uncompress(_ input: [UInt8]) -> [UInt8]? {
        var length = 0
        let ok = input.withUnsafeBufferPointer { src in
            src.baseAddress.map { base in
                base.withMemoryRebound(to: CChar.self, capacity: src.count) { snappy_uncompressed_length($0, src.count, &length) }
            }
        }
        guard ok == SNAPPY_OK else { return nil }
        var output = [UInt8](repeating: 0, count: length)
        let status = input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                src.baseAddress!.withMemoryRebound(to: CChar.self, capacity: src.count) { s in
                    dst.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(dst.count, 1)) { d in
                        snappy_uncompress(s, src.count, d, &length)
                    }
                }
            }
        }
        return status == SNAPPY_OK ? output : nil
    }
}
