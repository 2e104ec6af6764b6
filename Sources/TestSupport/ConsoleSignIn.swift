import Foundation

/// Signs in to a node's web console as a browser does, with curl and a cookie jar: the sign-in
/// page's form token, then the post. Benchmarks and tests then send the jar with each request.
public enum ConsoleSignIn {
    public static func curl(base: String, token: String, jar: String) async throws {
        let (status, page) = try await ChildProcess.run("curl", ["-s", "-c", jar, "-b", jar, "\(base)/signin"])
        guard status == 0, let range = page.range(of: #"name="csrf" value=""#) else {
            throw HarnessError("no sign-in form at \(base)/signin: \(page.prefix(300))")
        }
        let csrf = String(page[range.upperBound...].prefix { $0 != "\"" })
        let (posted, answer) = try await ChildProcess.run(
            "curl",
            ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-c", jar, "-b", jar, "--data-urlencode", "token=\(token)", "--data-urlencode", "csrf=\(csrf)", "\(base)/signin"]
        )
        guard posted == 0, answer == "303" else { throw HarnessError("sign-in at \(base) answered \(answer)") }
    }
}
