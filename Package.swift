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
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        // No traits: SwiftProtobuf then needs only FoundationEssentials, not all of Foundation.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Only its HummingbirdBcrypt product (OpenBSD's bcrypt in C, no Foundation): basic auth for /metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
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
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CSnappy",
            pkgConfig: "snappy",
            providers: [.apt(["libsnappy-dev"])]
        ),
        // Helpers the modules share (JSON writing, text and Duration helpers), with `package` access.
        .target(name: "Support"),
        .target(
            name: "RAPLBackend",
            dependencies: [
                "Support",
                "CPerfShim",
                "CLibcap",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "Exporter",
            dependencies: [
                "Support",
                "RAPLBackend",
                "CSnappy",
                "CZlib",
                "CPerfShim",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            ]
        ),
        // The generated swift-protobuf types of Protos/remote.proto: the reference the exporter's
        // hand-written encoder is tested against, and the decoder of the test receivers. Not linked into
        // the daemon (see docs/performance.md).
        .target(
            name: "RemoteWriteProtobuf",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["README.md"]
        ),
        .executableTarget(
            name: "rapl-exporter",
            dependencies: [
                "Support",
                "CPerfShim",
                "RAPLBackend",
                "Exporter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Fake hardware trees, a runner for the built binary and remote-write request helpers, shared by
        // the test targets.
        .target(
            name: "TestSupport",
            dependencies: ["RAPLBackend", "Support", "RemoteWriteProtobuf", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "RAPLBackendTests",
            dependencies: ["RAPLBackend", "Support", "TestSupport"]
        ),
        .testTarget(
            name: "ExporterTests",
            dependencies: [
                "Exporter",
                "RAPLBackend",
                "Support",
                "TestSupport",
                "RemoteWriteProtobuf",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Tests that run the built `rapl-exporter` binary (the command line, probe, healthcheck, the
        // daemon against real and scripted receivers, privileges, deploy files): the other targets test
        // the libraries in-process.
        .testTarget(
            name: "BinaryTests",
            dependencies: [
                "Exporter",
                "RAPLBackend",
                "Support",
                "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                "RemoteWriteProtobuf",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
