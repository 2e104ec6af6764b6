import ArgumentParser

/// The web console's settings, shared by `serve` and `gateway`.
struct ConsoleOptions: ParsableArguments {
    @Option(name: .customLong("console-session-hours"), help: "How long a web console sign-in lasts, in hours (then the operator signs in again).")
    var sessionHours: Double = 12

    func validate() throws {
        guard self.sessionHours > 0, self.sessionHours <= 24 * 30 else { throw ValidationError("--console-session-hours is more than 0 and at most 720") }
    }

    var sessionLifetime: Duration { .milliseconds(Int64(self.sessionHours * 3_600_000)) }
}
