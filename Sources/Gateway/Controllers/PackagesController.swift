import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// The package store: versions listed, uploaded, deleted, and their files downloaded.
struct PackagesController: GatewayController {
    let gateway: Gateway

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        [
            "Package": .object(
                [
                    "id": .integer, "name": .string, "os": .string, "arch": .string, "version": .string, "file": .string,
                    "path": .string, "sha256": .string, "size": .integer, "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time,
                ],
                required: ["id", "name", "os", "arch", "version", "file", "path", "sha256", "size", "gmt_create", "gmt_modify"]
            ),
            "PackageUpload": .object(
                [
                    "name": OpenAPI.packageField(maxLength: 64), "version": OpenAPI.packageField(maxLength: 64),
                    "os": OpenAPI.packageField(maxLength: 64), "arch": OpenAPI.packageField(maxLength: 16),
                    "file": OpenAPI.packageField(maxLength: 255), "sha256": OpenAPI.sha256OrEmpty, "content": OpenAPI.base64,
                ],
                required: ["name", "version", "os", "arch", "file"]
            ),
            "PackageForm": .object(
                [
                    "name": OpenAPI.packageField(maxLength: 64), "version": OpenAPI.packageField(maxLength: 64),
                    "os": OpenAPI.packageField(maxLength: 64), "arch": OpenAPI.packageField(maxLength: 16),
                    "sha256": OpenAPI.sha256OrEmpty, "file": .binary,
                ],
                required: ["name", "version", "os", "arch", "file"]
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "listPackages",
                    rpc: "ListPackages", method: "GET", path: "/api/v1/server/package", summary: "Package versions, filtered and paged.",
                    query: [
                        Route.query("name", .string, "Only this package name."),
                        Route.query("version", .string, "Only this version."),
                        Route.query("os", .string, "Only this OS."),
                        Route.query("arch", .string, "Only this architecture."),
                    ] + Route.paging + [
                        Route.query("order", .enumeration(["asc", "desc"]), "Sort direction (default asc)."),
                        Route.query("sortby", .enumeration(["id", "name", "version", "os", "arch", "gmt_create", "gmt_modify"]), "Sort key (default id)."),
                    ],
                    response: .envelope(["count": .integer, "offset": .integer, "limit": .integer, "packages": .array(.ref("Package"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_ListPackagesRequest()
                message.name = query.string("name")
                message.version = query.string("version")
                message.os = query.string("os")
                message.arch = query.string("arch")
                (message.offset, message.limit) = try query.page()
                message.descending = try query.descending()
                message.sortBy = query.string("sortby")
                let answer = try await self.gateway.admin.listPackages(message, metadata: metadata)
                return Answer.success([
                    "count": Int(answer.count), "offset": Int(answer.offset), "limit": Int(answer.limit),
                    "packages": answer.packages.map(RESTJSON.package),
                ])
            },
            Endpoint(
                Route(
                    id: "uploadPackage",
                    rpc: "UploadPackage", method: "POST", path: "/api/v1/server/package",
                    summary: """
                        Stores a package version under packages/{os}/{arch}/{file} and computes its SHA256. The bytes come \
                        as multipart/form-data (text fields and the file part in any order) or base64 in the JSON body's \
                        "content"; the seed's JSON without content registers a file already in the package store. A raw \
                        body goes to /api/v1/server/package/raw.
                        """,
                    body: [
                        (Route.json, .ref("PackageUpload")),
                        ("multipart/form-data", .ref("PackageForm")),
                    ],
                    response: .envelope(["package": .ref("Package")])
                )
            ) { route, request, _, metadata in
                let package = try await self.upload(request, route: route, metadata: metadata)
                return Answer.success(["package": RESTJSON.package(package)])
            },
            Endpoint(
                Route(
                    id: "uploadRawPackage",
                    rpc: "UploadPackage", method: "POST", path: "/api/v1/server/package/raw",
                    summary: """
                        Stores a package version from the raw body (curl --data-binary @FILE), named by the query, \
                        under packages/{os}/{arch}/{file}, and computes its SHA256.
                        """,
                    query: [
                        Route.query("name", OpenAPI.packageField(maxLength: 64), "Package name.", required: true),
                        Route.query("version", OpenAPI.packageField(maxLength: 64), "Version.", required: true),
                        Route.query("os", OpenAPI.packageField(maxLength: 64), "OS, e.g. linux.", required: true),
                        Route.query("arch", OpenAPI.packageField(maxLength: 16), "Architecture, e.g. x86_64.", required: true),
                        Route.query("file", OpenAPI.packageField(maxLength: 255), "File name: no separators, no '..'.", required: true),
                        Route.query("sha256", OpenAPI.sha256, "Expected SHA256 in hex; the upload is refused when it differs."),
                    ],
                    body: [("application/octet-stream", .binary)],
                    response: .envelope(["package": .ref("Package")])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var info = Aspire_V1_PackageInfo()
                info.name = query.string("name")
                info.version = query.string("version")
                info.os = query.string("os")
                info.arch = query.string("arch")
                info.file = query.string("file")
                info.sha256 = query.string("sha256")
                let body = request.body
                let package = try await self.gateway.admin.uploadPackage(metadata: metadata) { [info] writer in
                    try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = info })
                    for try await buffer in body {
                        try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = Data(buffer.readableBytesView) })
                    }
                }
                return Answer.success(["package": RESTJSON.package(package)])
            },
            Endpoint(
                Route(
                    id: "deletePackages",
                    rpc: "DeletePackages", method: "DELETE", path: "/api/v1/server/package",
                    summary: "Deletes package versions and their files: by id, or by name (version, os, arch narrow it).",
                    query: [
                        Route.query("id", .bounded(1 ... Int64.max), "Package id."),
                        Route.query("name", .string, "Package name."),
                        Route.query("version", .string, "Version."),
                        Route.query("os", .string, "OS."),
                        Route.query("arch", .string, "Architecture."),
                    ],
                    response: .envelope(["count": .integer, "packages": .array(.ref("Package"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_DeletePackagesRequest()
                message.id = try query.integer("id") ?? 0
                message.name = query.string("name")
                message.version = query.string("version")
                message.os = query.string("os")
                message.arch = query.string("arch")
                guard message.id != 0 || !message.name.isEmpty else {
                    // Nothing named matches no package (a client may send neither).
                    throw AspireError(.notFound, "no package to delete: name one by id, or by name (with version, os, arch to narrow it)")
                }
                let answer = try await self.gateway.admin.deletePackages(message, metadata: metadata)
                return Answer.success(["count": answer.packages.count, "packages": answer.packages.map(RESTJSON.package)])
            },
            Endpoint(
                Route(
                    id: "downloadPackage",
                    rpc: "PackageStore.Download", method: "GET", path: "/api/v1/server/package/download",
                    summary: """
                        The file of a stored package version, as application/octet-stream with its length. Agents given this \
                        URL over https (a gateway behind a TLS proxy) send their enrollment token; operators may use the admin token. \
                        The seed's plain-HTTP agents, which send no token, get this URL in their install and upgrade jobs \
                        with expires and sig: such a link opens that one file for a day without a token.
                        """,
                    access: .adminOrAgent,
                    query: [
                        Route.query("os", OpenAPI.packageField(maxLength: 64), "OS, e.g. linux.", required: true),
                        Route.query("arch", OpenAPI.packageField(maxLength: 16), "Architecture, e.g. x86_64.", required: true),
                        Route.query("file", OpenAPI.packageField(maxLength: 255), "File name in the store.", required: true),
                        Route.query("expires", .bounded(0 ... Int64.max), "A job's link: when it stops working (seconds since 1970)."),
                        Route.query("sig", .string, "A job's link: its signature (no bearer token needed with it)."),
                    ],
                    response: .binary
                )
            ) { _, request, _, metadata in
                try await self.gateway.download(request, metadata: metadata)
            },
        ]
    }

    /// Streams an upload to the service: a multipart form, or the seed's JSON (with base64
    /// `content`, or naming a file already in the store).
    func upload(_ request: Request, route: Route, metadata: Metadata) async throws -> Aspire_V1_Package {
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        var info = Aspire_V1_PackageInfo()
        if contentType.hasPrefix("application/json") {
            let body = try await self.gateway.objectBody(request, route: route)
            try body.allow(["name", "version", "os", "arch", "file", "sha256", "content"])
            info.name = try body.string("name", required: true)
            info.version = try body.string("version", required: true)
            info.os = try body.string("os", required: true)
            info.arch = try body.string("arch", required: true)
            info.file = try body.string("file", required: true)
            info.sha256 = try body.string("sha256")
            let content = try body.string("content")
            if body.has("content") {
                guard let bytes = OpenAPI.decodeBase64(content) else {
                    throw AspireError(.badRequest, "\(body.context): 'content' must be base64 (padded, no line breaks)")
                }
                return try await self.gateway.admin.uploadPackage(metadata: metadata) { [info] writer in
                    try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = info })
                    var offset = 0
                    repeat {
                        let end = min(offset + (1 << 20), bytes.count)
                        try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = bytes[offset ..< end] })
                        offset = end
                    } while offset < bytes.count
                }
            }
            info.existingFile = true
            return try await self.gateway.admin.uploadPackage(metadata: metadata) { [info] writer in
                try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = info })
            }
        }
        if contentType.hasPrefix("multipart/form-data") {
            // The boundary is case-sensitive: read it from the header as sent.
            let boundary = Gateway.dispositionParameters(request.headers[.contentType] ?? "")["boundary"] ?? ""
            guard !boundary.isEmpty else { throw AspireError(.badRequest, "multipart/form-data without a boundary") }
            return try await self.gateway.multipartUpload(request, boundary: boundary, metadata: metadata)
        }
        throw AspireError(
            .unsupportedMediaType,
            "\(route.name) takes application/json or multipart/form-data; a raw body goes to POST /api/v1/server/package/raw?name=&version=&os=&arch=&file="
        )
    }
}
