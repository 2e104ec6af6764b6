import ArgumentParser
import Logging
import RPC

/// `--log-level`, shared by `serve` and `gateway`.
struct LogOptions: ParsableArguments {
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    func validate() throws {
        guard Logger.Level(name: self.logLevel) != nil else { throw ValidationError("unknown log level '\(self.logLevel)'") }
    }

    /// Sends logs to standard error at the level asked for; answers a logger named `label`.
    func bootstrap(label: String) -> Logger {
        LogSetup.bootstrap(level: Logger.Level(name: self.logLevel) ?? .info)
        return Logger(label: label)
    }
}
