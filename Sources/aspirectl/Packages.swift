import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRPCCore
import RPC
import SwiftProtobuf

struct Packages: AsyncParsableCommand {
    /// This machine's architecture as uname reports it (x86_64, aarch64, ...).
    static var machine: String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static let configuration = CommandConfiguration(
        abstract: "Upload, list and delete package versions (sub-agents and BootAgent).",
        subcommands: [Upload.self, List.self, Delete.self]
    )

    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a package file; the server stores it under packages/{os}/{arch}/{file} with its SHA256.",
            discussion: "Example: aspirectl packages upload ./MonitorAgent-0.1.2-1.x86_64.rpm --name MonitorAgent --version 0.1.2-1"
        )

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The package file.")
        var path: String

        @Option(help: "Package (sub-agent) name.")
        var name: String

        @Option(help: "Version.")
        var version: String

        @Option(help: "Operating system.")
        var os = "linux"

        @Option(help: "Architecture (default: this machine's).")
        var arch: String = Packages.machine

        @Option(name: .customLong("file-name"), help: "Name to store it under (default: the file's own name).")
        var fileName: String?

        func run() async throws {
            guard let handle = FileHandle(forReadingAtPath: self.path) else {
                throw ValidationError("cannot read \(self.path)")
            }
            defer { try? handle.close() }
            // Hash locally first: the server refuses the upload if what arrives differs.
            let digest = try FileDigest.sha256(atPath: self.path)
            var info = Aspire_V1_PackageInfo()
            info.name = self.name
            info.version = self.version
            info.os = self.os
            info.arch = self.arch
            info.file = self.fileName ?? URL(fileURLWithPath: self.path).lastPathComponent
            info.sha256 = digest.sha256
            let request = info
            let package: Aspire_V1_Package
            do {
                package = try await self.connection.withAdmin { admin in
                    try await admin.uploadPackage { writer in
                        try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = request })
                        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                            try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = chunk })
                        }
                    }
                }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            print("stored \(package.name) \(package.version) \(package.os)/\(package.arch) as \(package.path)")
            print("sha256 \(package.sha256)  \(package.size) bytes  id \(package.id)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List package versions.")

        @OptionGroup var connection: ConnectionOptions

        @Option(help: "Only this name.")
        var name: String?

        @Option(help: "Only this version.")
        var version: String?

        @Option(help: "How many (at most 1000).")
        var limit: Int32 = 100

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var request = Aspire_V1_ListPackagesRequest()
            request.name = self.name ?? ""
            request.version = self.version ?? ""
            request.limit = self.limit
            let listing: Aspire_V1_ListPackagesResponse
            do {
                listing = try await self.connection.withAdmin { try await $0.listPackages(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            var rows = [["ID", "NAME", "VERSION", "OS", "ARCH", "SIZE", "SHA256", "PATH"]]
            for package in listing.packages {
                rows.append([
                    "\(package.id)", package.name, package.version, package.os, package.arch, "\(package.size)",
                    String(package.sha256.prefix(16)), package.path,
                ])
            }
            printTable(rows)
            FileHandle.standardError.write("\(listing.packages.count) of \(listing.count) packages\n")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete package versions and their files: by --id, or --name (with --version, --os, --arch).")

        @OptionGroup var connection: ConnectionOptions

        @Option(help: "Package id.")
        var id: Int64?

        @Option(help: "Package name.")
        var name: String?

        @Option(help: "Version.")
        var version: String?

        @Option(help: "Operating system.")
        var os: String?

        @Option(help: "Architecture.")
        var arch: String?

        func validate() throws {
            guard self.id != nil || self.name != nil else { throw ValidationError("say which: --id, or --name (with --version)") }
        }

        func run() async throws {
            var request = Aspire_V1_DeletePackagesRequest()
            request.id = self.id ?? 0
            request.name = self.name ?? ""
            request.version = self.version ?? ""
            request.os = self.os ?? ""
            request.arch = self.arch ?? ""
            do {
                let answer = try await self.connection.withAdmin { try await $0.deletePackages(request) }
                for package in answer.packages {
                    print("deleted \(package.name) \(package.version) \(package.os)/\(package.arch) (\(package.path))")
                }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
        }
    }
}
