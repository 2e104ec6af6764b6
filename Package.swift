// swift-tools-version:6.1
import PackageDescription

let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let grpc: [Target.Dependency] = [
    .product(name: "GRPCCore", package: "grpc-swift-2"),
    .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
    .product(name: "Logging", package: "swift-log"),
]

let lifecycle: [Target.Dependency] = [
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
    .product(name: "UnixSignals", package: "swift-service-lifecycle"),
]

let package = Package(
    name: "Aspire",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "aspire-server", targets: ["aspire-server"]),
        .executable(name: "boot", targets: ["boot"]),
        .executable(name: "BasicAgentCtl", targets: ["BasicAgentCtl"]),
        .executable(name: "aspirectl", targets: ["aspirectl"]),
        .executable(name: "aspire-bench", targets: ["aspire-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-kit.git", from: "2.17.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/vapor/multipart-kit.git", from: "4.7.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.4"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        .target(
            name: "RPC",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
            ],
            swiftSettings: upcoming
        ),
        .target(name: "Cron", swiftSettings: upcoming),
        // The binaries' options from /etc/aspire files and ASPIRE_* environment variables.
        .target(
            name: "Settings",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: upcoming
        ),
        // Child processes, waiting, loopback addresses and scratch directories for tests and
        // benchmarks; nothing of the product, so agent tests need not link the server.
        .target(name: "TestSupport", swiftSettings: upcoming),
        // A command's first process started straight into its cgroup (clone3), set up between
        // clone and exec: the part that must be C.
        .target(name: "CSpawn"),
        // A call into SQLite that Swift cannot make (variadic), for the store's SQLite engine.
        .target(name: "CSQLiteSupport"),
        .target(
            name: "Agent",
            dependencies: [
                "RPC", "Cron", "CSpawn",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "X509", package: "swift-certificates"),
            ] + grpc,
            swiftSettings: upcoming
        ),
        .target(
            name: "Gateway",
            dependencies: [
                "RPC",
                "Cron",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ] + grpc,
            // The console's templates, style sheet and scripts, compiled into the binary.
            resources: [.embedInCode("Console/Assets")],
            swiftSettings: upcoming
        ),
        .target(
            name: "Server",
            dependencies: [
                "RPC", "Gateway", "Cron", "CSQLiteSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "HeapModule", package: "swift-collections"),
            ] + grpc,
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "aspire-server",
            dependencies: [
                "Server", "Gateway", "Settings",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ] + grpc + lifecycle,
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "boot",
            dependencies: [
                "Agent", "Settings", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
            ] + grpc + lifecycle,
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "BasicAgentCtl",
            dependencies: [
                "Agent", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
            ] + grpc + lifecycle,
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "aspirectl",
            dependencies: ["RPC", "Cron", .product(name: "ArgumentParser", package: "swift-argument-parser")] + grpc + lifecycle,
            swiftSettings: upcoming
        ),
        .target(
            name: "Fleet",
            dependencies: ["RPC", "Agent", "Server", "TestSupport", .product(name: "SQLKit", package: "sql-kit")] + grpc,
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "aspire-bench",
            dependencies: [
                "Fleet", "TestSupport", "RPC", "Server", "Agent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SQLKit", package: "sql-kit"),
            ] + grpc + lifecycle,
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "RPC", "TestSupport", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"), .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(name: "CronTests", dependencies: ["Cron", "TestSupport"], swiftSettings: upcoming),
        .testTarget(
            name: "SettingsTests",
            dependencies: ["Settings", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "AgentTests",
            dependencies: [
                "Agent", "RPC", "TestSupport",
                .product(name: "X509", package: "swift-certificates"), .product(name: "Crypto", package: "swift-crypto"),
            ] + grpc,
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "Server", "Agent", "RPC", "Gateway", "Fleet", "TestSupport",
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ] + grpc + lifecycle,
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "StoreTests",
            dependencies: ["Server", "RPC", "Fleet", "TestSupport", .product(name: "SQLKit", package: "sql-kit")] + grpc + lifecycle,
            swiftSettings: upcoming
        ),
    ]
)
