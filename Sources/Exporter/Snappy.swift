import CSnappy

/// Snappy block-format compression (the format remote write requires), through libsnappy's C API.
public enum Snappy {
    /// Compresses `input` with `snappy_compress(3)`.
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        var length = snappy_max_compressed_length(input.count)
        var output = [UInt8](repeating: 0, count: length)
        let status = input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                src.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(src.count, 1)) { s in
                    dst.baseAddress!.withMemoryRebound(to: CChar.self, capacity: dst.count) { d in
                        snappy_compress(s, src.count, d, &length)
                    }
                }
            }
        }
        precondition(status == SNAPPY_OK, "snappy_compress cannot fail with a buffer of snappy_max_compressed_length")
        output.removeLast(output.count - length)
        return output
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
