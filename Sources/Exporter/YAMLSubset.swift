/// The part of YAML that exporter-toolkit's web configuration files use, read strictly: block mappings
/// and block sequences by indentation (spaces), flow sequences of scalars (`[a, "b"]`), plain,
/// single-quoted and double-quoted scalars, literal block scalars (`|`, `|-`, `|+`, for inline PEM),
/// comments and a leading `---`. Anything else (anchors, aliases, tags, flow mappings, folded scalars,
/// several documents, tabs in indentation, a key given twice) is an error naming its line, never a
/// guess. Why not a YAML library: the one available (Yams) links all of Foundation into the daemon —
/// see docs/architecture.md.
enum YAMLNode: Equatable, Sendable {
    case scalar(String)
    case sequence([YAMLNode])
    /// In file order; keys are unique.
    case mapping([(key: String, value: YAMLNode)])
    /// An empty value (`key:` with nothing under it).
    case null

    static func == (a: YAMLNode, b: YAMLNode) -> Bool {
        switch (a, b) {
        case (.scalar(let x), .scalar(let y)): x == y
        case (.sequence(let x), .sequence(let y)): x == y
        case (.mapping(let x), .mapping(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.null, .null): true
        default: false
        }
    }

    /// Parses `text`; a file with nothing but comments is `.null`.
    static func parse(_ text: String) throws(YAMLError) -> YAMLNode {
        var reader = YAMLReader(text)
        return try reader.document()
    }
}

struct YAMLError: Error, Equatable, CustomStringConvertible {
    var line: Int
    var message: String
    var description: String { "line \(line): \(message)" }
}

private struct YAMLReader {
    struct Line {
        var number: Int
        var indent: Int
        /// Without the indentation and without a trailing comment (raw: block scalars keep theirs).
        var content: Substring
        var raw: Substring
    }

    var lines: [Line] = []
    var position = 0

    init(_ text: String) {
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let raw = raw.hasSuffix("\r") ? raw.dropLast() : raw
            let indent = raw.prefix { $0 == " " }.count
            lines.append(Line(number: index + 1, indent: indent, content: Self.stripComment(raw.dropFirst(indent)), raw: raw))
        }
    }

    /// The text before a comment: `#` at the start or after a space, outside quotes.
    static func stripComment(_ text: Substring) -> Substring {
        var quote: Character?
        var previous: Character = " "
        for index in text.indices {
            let c = text[index]
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" {
                if previous == " " || previous == "[" || previous == "," || previous == ":" { quote = c }
            } else if c == "#", previous == " " || previous == "\t" {
                return trimTrailing(text[..<index])
            }
            previous = c
        }
        return trimTrailing(text)
    }

    static func trimTrailing(_ text: Substring) -> Substring {
        var t = text
        while let last = t.last, last == " " || last == "\t" { t = t.dropLast() }
        return t
    }

    func fail(_ line: Line, _ message: String) -> YAMLError { YAMLError(line: line.number, message: message) }

    /// The next line with content, skipping blank and comment-only lines.
    mutating func nextLine() -> Line? {
        while position < lines.count, lines[position].content.isEmpty { position += 1 }
        return position < lines.count ? lines[position] : nil
    }

    mutating func document() throws(YAMLError) -> YAMLNode {
        if let first = nextLine(), first.indent == 0, first.content == "---" { position += 1 }
        for line in lines[position...] where !line.content.isEmpty {
            if line.raw.dropFirst(line.indent).first == "\t" { throw fail(line, "a tab in the indentation: YAML indents with spaces") }
            if line.content == "---" { throw fail(line, "several documents: the file holds one") }
        }
        guard let first = nextLine() else { return .null }
        let node = try block(indent: first.indent)
        if let extra = nextLine() { throw fail(extra, "unexpected indentation or content") }
        return node
    }

    /// A block mapping or sequence whose lines start at column `indent`.
    mutating func block(indent: Int) throws(YAMLError) -> YAMLNode {
        guard let first = nextLine() else { return .null }
        if first.content == "-" || first.content.hasPrefix("- ") { return try sequence(indent: indent) }
        return try mapping(indent: indent)
    }

    mutating func sequence(indent: Int) throws(YAMLError) -> YAMLNode {
        var items: [YAMLNode] = []
        while let line = nextLine(), line.indent == indent, line.content == "-" || line.content.hasPrefix("- ") {
            position += 1
            let rest = line.content.dropFirst(1).drop { $0 == " " }
            if rest.isEmpty {
                items.append(try nested(after: line, parentIndent: indent))
            } else if rest.contains(": ") || rest.hasSuffix(":") {
                throw fail(line, "a mapping inside a sequence item is not supported here")
            } else {
                items.append(try scalarOrFlow(rest, line: line))
            }
        }
        try checkDedent(indent)
        return .sequence(items)
    }

    mutating func mapping(indent: Int) throws(YAMLError) -> YAMLNode {
        var entries: [(key: String, value: YAMLNode)] = []
        while let line = nextLine(), line.indent == indent {
            guard !(line.content == "-" || line.content.hasPrefix("- ")) else { throw fail(line, "a sequence item where a key was expected") }
            position += 1
            let (key, rest) = try keyAndRest(line)
            guard !entries.contains(where: { $0.key == key }) else { throw fail(line, "the key '\(key)' is given twice") }
            let value: YAMLNode
            if rest.isEmpty {
                value = try nested(after: line, parentIndent: indent)
            } else if rest == "|" || rest == "|-" || rest == "|+" {
                value = .scalar(literal(after: line, parentIndent: indent, chomp: rest.last!))
            } else {
                value = try scalarOrFlow(rest, line: line)
            }
            entries.append((key, value))
        }
        try checkDedent(indent)
        return .mapping(entries)
    }

    /// After a block ends, the next line must belong to an enclosing block (less indented).
    mutating func checkDedent(_ indent: Int) throws(YAMLError) {
        if let line = nextLine(), line.indent > indent { throw fail(line, "unexpected indentation") }
    }

    /// The block under `key:` or `-`: more indented lines, or (a sequence under a key) the same indent.
    mutating func nested(after line: Line, parentIndent: Int) throws(YAMLError) -> YAMLNode {
        guard let next = nextLine() else { return .null }
        if next.indent > parentIndent { return try block(indent: next.indent) }
        if next.indent == parentIndent, next.content == "-" || next.content.hasPrefix("- "), !line.content.hasPrefix("-") {
            return try sequence(indent: parentIndent)
        }
        return .null
    }

    mutating func keyAndRest(_ line: Line) throws(YAMLError) -> (String, Substring) {
        let text = line.content
        if let first = text.first, first == "\"" || first == "'" {
            let (key, after) = try quoted(text, line: line)
            guard after.first == ":" else { throw fail(line, "expected ':' after the quoted key") }
            return (key, after.dropFirst().drop { $0 == " " })
        }
        guard let colon = text.firstRange(of: ": ")?.lowerBound ?? (text.hasSuffix(":") ? text.index(before: text.endIndex) : nil) else {
            throw fail(line, "expected 'key: value'")
        }
        let key = Self.trimTrailing(text[..<colon])
        try checkPlain(key, line: line)
        return (String(key), text[text.index(after: colon)...].drop { $0 == " " })
    }

    /// The lines of a literal block scalar, their common indentation removed.
    mutating func literal(after line: Line, parentIndent: Int, chomp: Character) -> String {
        var body: [Substring] = []
        var indent: Int?
        while position < lines.count {
            let next = lines[position]
            let blank = next.raw.allSatisfy { $0 == " " }
            if !blank {
                if next.indent <= parentIndent { break }
                if indent == nil { indent = next.indent }
                if next.indent < indent! { break }
            }
            body.append(blank ? "" : next.raw.dropFirst(indent!))
            position += 1
        }
        var trailing = 0
        while let last = body.last, last.isEmpty {
            body.removeLast()
            trailing += 1
        }
        let text = body.joined(separator: "\n")
        switch chomp {
        case "-": return text
        case "+": return text + String(repeating: "\n", count: trailing + 1)
        default: return text.isEmpty ? "" : text + "\n"
        }
    }

    func scalarOrFlow(_ text: Substring, line: Line) throws(YAMLError) -> YAMLNode {
        if text.hasPrefix("[") {
            guard text.hasSuffix("]") else { throw fail(line, "a flow sequence must end on its line with ']'") }
            let inner = text.dropFirst().dropLast()
            var items: [YAMLNode] = []
            var rest = inner.drop { $0 == " " }
            while !rest.isEmpty {
                let item: String
                if let first = rest.first, first == "\"" || first == "'" {
                    let (value, after) = try quoted(rest, line: line)
                    item = value
                    rest = after.drop { $0 == " " }
                } else {
                    let end = rest.firstIndex(of: ",") ?? rest.endIndex
                    let plain = Self.trimTrailing(rest[..<end])
                    try checkPlain(plain, line: line)
                    item = String(plain)
                    rest = rest[end...]
                }
                items.append(.scalar(item))
                if rest.first == "," {
                    rest = rest.dropFirst().drop { $0 == " " }
                    if rest.isEmpty { throw fail(line, "an empty item in a flow sequence") }
                } else if !rest.isEmpty {
                    throw fail(line, "expected ',' between the items of a flow sequence")
                }
            }
            return .sequence(items)
        }
        if let first = text.first, first == "\"" || first == "'" {
            let (value, after) = try quoted(text, line: line)
            guard after.isEmpty else { throw fail(line, "text after a quoted value") }
            return .scalar(value)
        }
        if text == "~" || text == "null" { return .null }
        try checkPlain(text, line: line)
        return .scalar(String(text))
    }

    /// A plain scalar may not start with an indicator this reader does not support.
    func checkPlain(_ text: Substring, line: Line) throws(YAMLError) {
        guard let first = text.first else { throw fail(line, "an empty key") }
        if "&*!{}>|%@`".contains(first) {
            throw fail(line, "'\(first)' (anchors, aliases, tags, flow mappings, folded scalars) is not supported in this file")
        }
    }

    /// A single- or double-quoted scalar at the start of `text`: its value and what follows it.
    func quoted(_ text: Substring, line: Line) throws(YAMLError) -> (String, Substring) {
        let quote = text.first!
        var value = ""
        var index = text.index(after: text.startIndex)
        while index < text.endIndex {
            let c = text[index]
            if c == quote {
                let next = text.index(after: index)
                if quote == "'", next < text.endIndex, text[next] == "'" {
                    value.append("'")
                    index = text.index(after: next)
                    continue
                }
                return (value, text[next...])
            }
            if quote == "\"", c == "\\" {
                index = text.index(after: index)
                guard index < text.endIndex else { break }
                switch text[index] {
                case "\\": value.append("\\")
                case "\"": value.append("\"")
                case "/": value.append("/")
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "0": value.append("\0")
                case "x", "u", "U":
                    let width = text[index] == "x" ? 2 : text[index] == "u" ? 4 : 8
                    let digits = text[text.index(after: index)...].prefix(width)
                    guard digits.count == width, let code = UInt32(digits, radix: 16), let scalar = Unicode.Scalar(code) else {
                        throw fail(line, "a bad escape in a double-quoted value")
                    }
                    value.unicodeScalars.append(scalar)
                    index = text.index(index, offsetBy: width)
                default: throw fail(line, "an unknown escape '\\\(text[index])' in a double-quoted value")
                }
                index = text.index(after: index)
                continue
            }
            value.append(c)
            index = text.index(after: index)
        }
        throw fail(line, "a quoted value must end on its line")
    }
}
