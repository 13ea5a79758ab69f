// swift-tools-version:6.1
// Benchmarks, in a package of their own so that `swift test` at the top never builds them.
// Run them with scripts/benchmark.
import Foundation
import PackageDescription

// A path dependency's identity is its directory name, which differs between clones.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootIdentity = root.lastPathComponent.lowercased()

let package = Package(
    name: "rapl-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: root.path)],
    targets: [
        .executableTarget(
            name: "rapl-bench",
            dependencies: [
                .product(name: "RAPLBackend", package: rootIdentity),
                .product(name: "Exporter", package: rootIdentity),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
