import ArgumentParser
import Foundation
@testable import Settings
import Testing

/// A command shaped like the binaries': options with defaults, an optional one, a repeatable
/// one, a flag, short names.
struct Sample: ParsableCommand {
    @Option(name: [.customShort("L"), .customLong("log-file")]) var logFile: String?
    @Flag(name: [.customShort("f"), .customLong("foreground")]) var foreground = false
    @Option(name: .customLong("server")) var servers: [String] = ["localhost:8443"]
    @Option(name: .customLong("log-level")) var logLevel = "info"
    @Option(name: .customLong("output-cap")) var outputCap = 1024
    @Flag var insecure = false
    @Option var config: String?
}

@Suite("Options from the configuration file and the environment")
struct OptionSourcesTests {
    let directory: String

    init() throws {
        self.directory = NSTemporaryDirectory() + "option-sources-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
    }

    func sources(file: String) -> OptionSources {
        OptionSources(for: Sample.self, defaultFile: "\(self.directory)/\(file)", environmentPrefix: "ASPIRE_TEST_")
    }

    func write(_ text: String, to name: String = "sample.conf") throws -> String {
        let path = "\(self.directory)/\(name)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func parse(_ commandLine: [String], file: String = "sample.conf", environment: [String: String] = [:]) throws -> Sample {
        let arguments = try self.sources(file: file).arguments(commandLine: commandLine, environment: environment)
        return try Sample.parse(arguments)
    }

    @Test("Reads the command's own options: long names, flags, repeatable ones, short aliases")
    func declared() throws {
        let sources = self.sources(file: "none")
        #expect(sources.options["server"] == .init(isFlag: false, isRepeating: true))
        #expect(sources.options["foreground"] == .init(isFlag: true, isRepeating: false))
        #expect(sources.options["log-level"] == .init(isFlag: false, isRepeating: false))
        #expect(sources.options["config"] == nil)
        #expect(sources.options["help"] == nil)
        #expect(sources.shortNames["L"] == "log-file")
        #expect(sources.environmentVariable(for: "log-level") == "ASPIRE_TEST_LOG_LEVEL")
    }

    @Test("The file sets options; the environment overrides it; the command line overrides both")
    func precedence() throws {
        _ = try self.write(
            """
            # a comment, then a blank line

            server a.example:8443
            server = b.example:8443
            --log-level debug
            log-file /var/log/booter.log
            output-cap 4096
            foreground
            insecure false
            """
        )
        let fromFile = try self.parse([])
        #expect(fromFile.servers == ["a.example:8443", "b.example:8443"])
        #expect(fromFile.logLevel == "debug")
        #expect(fromFile.logFile == "/var/log/booter.log")
        #expect(fromFile.outputCap == 4096)
        #expect(fromFile.foreground)
        #expect(!fromFile.insecure)

        let environment = ["ASPIRE_TEST_LOG_LEVEL": "warning", "ASPIRE_TEST_SERVER": "c.example:8443", "ASPIRE_TEST_INSECURE": "yes"]
        let fromEnvironment = try self.parse([], environment: environment)
        #expect(fromEnvironment.logLevel == "warning")
        #expect(fromEnvironment.servers == ["c.example:8443"])
        #expect(fromEnvironment.insecure)
        #expect(fromEnvironment.outputCap == 4096)

        let fromFlags = try self.parse(["--log-level=error", "-L", "/tmp/x.log", "--server", "d.example:8443"], environment: environment)
        #expect(fromFlags.logLevel == "error")
        #expect(fromFlags.logFile == "/tmp/x.log")
        #expect(fromFlags.servers == ["d.example:8443"])
        #expect(fromFlags.foreground)
    }

    @Test("A missing default file is no error; a named one must exist; 'none' reads none")
    func whichFile() throws {
        #expect(try self.parse([], file: "absent.conf").logLevel == "info")
        #expect(throws: OptionSourceError.self) { try self.parse(["--config", "\(self.directory)/absent.conf"]) }
        #expect(throws: OptionSourceError.self) { try self.parse([], environment: ["ASPIRE_TEST_CONFIG": "\(self.directory)/absent.conf"]) }
        let other = try self.write("log-level trace\n", to: "other.conf")
        _ = try self.write("log-level debug\n")
        #expect(try self.parse(["--config", other]).logLevel == "trace")
        #expect(try self.parse(["--config=\(other)"]).logLevel == "trace")
        #expect(try self.parse([], environment: ["ASPIRE_TEST_CONFIG": other]).logLevel == "trace")
        #expect(try self.parse(["--config", "none"]).logLevel == "info")
        #expect(try self.parse([]).logLevel == "debug")
    }

    @Test("Bad lines and values are refused with where they are and why")
    func refusals() throws {
        func message(_ text: String, environment: [String: String] = [:]) throws -> String {
            let path = try self.write(text)
            do {
                _ = try self.sources(file: "sample.conf").arguments(commandLine: [], environment: environment)
            } catch {
                return error.description.replacingOccurrences(of: path, with: "FILE")
            }
            Issue.record("accepted: \(text)")
            return ""
        }
        #expect(try message("log-level info\nsevrer a:1\n") == "FILE:2: unknown option 'sevrer' (the file takes the long options --help lists, without their dashes)")
        #expect(try message("log-level\n") == "FILE:1: 'log-level' needs a value")
        #expect(try message("foreground maybe\n") == "FILE:1: 'foreground' is a flag: true or false, not 'maybe'")
        #expect(try message("log-level info\nlog-level debug\n") == "FILE:2: 'log-level' is given twice and takes one value")
        #expect(try message("= value\n").hasPrefix("FILE:1: '= value' is not 'name value'"))
        #expect(try message("", environment: ["ASPIRE_TEST_FOREGROUND": "sometimes"]) == "ASPIRE_TEST_FOREGROUND: 'foreground' is a flag: true or false, not 'sometimes'")
        // A value argument-parser refuses is refused as on the command line.
        _ = try self.write("output-cap many\n")
        #expect(throws: (any Error).self) { try self.parse([]) }
    }

    @Test("--help and --version answer whatever the file holds")
    func helpBypasses() throws {
        _ = try self.write("no-such-option 1\n")
        let sources = self.sources(file: "sample.conf")
        #expect(try sources.arguments(commandLine: ["--help"], environment: [:]) == ["--help"])
        #expect(try sources.arguments(commandLine: ["-h"], environment: [:]) == ["-h"])
        #expect(throws: OptionSourceError.self) { try sources.arguments(commandLine: [], environment: [:]) }
    }

    @Test("Arguments after -- are left alone")
    func terminator() throws {
        _ = try self.write("log-level debug\n")
        let arguments = try self.sources(file: "sample.conf").arguments(commandLine: ["--", "--log-level"], environment: [:])
        #expect(arguments == ["--log-level", "debug", "--", "--log-level"])
    }
}
