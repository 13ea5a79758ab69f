// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "rapl-exporter",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "rapl-exporter", targets: ["rapl-exporter"]),
        .library(name: "RAPLBackend", targets: ["RAPLBackend"]),
        .library(name: "Exporter", targets: ["Exporter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // The only C in the project: perf_event_open(2) and 8-byte register reads.
        .target(name: "CPerfShim"),
        .systemLibrary(
            name: "CLibcap",
            pkgConfig: "libcap",
            providers: [.apt(["libcap-dev"])]
        ),
        .systemLibrary(
            name: "CSnappy",
            pkgConfig: "snappy",
            providers: [.apt(["libsnappy-dev"])]
        ),
        .target(
            name: "RAPLBackend",
            dependencies: [
                "CPerfShim",
                "CLibcap",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "Exporter",
            dependencies: [
                "RAPLBackend",
                "CSnappy",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "rapl-exporter",
            dependencies: [
                "RAPLBackend",
                "Exporter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RAPLBackendTests",
            dependencies: ["RAPLBackend", "CPerfShim"]
        ),
        .testTarget(
            name: "ExporterTests",
            dependencies: ["Exporter", "RAPLBackend"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
