import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Mustache
import NIOCore
import RPC
import Server
import Testing

@testable import Gateway

/// The web console on a node built in-process, through Hummingbird's test client: sessions,
/// CSRF, redirects, and every page rendered from the store (the browser test drives the same
/// pages in chromium).
@Suite("Web console (in-process node)")
struct ConsoleTests {
    /// A browser without a browser: keeps the session cookie, reads the answers.
    struct Browser {
        let client: any TestClientProtocol
        var cookies: [String: String] = [:]

        struct Page {
            let status: Int
            let headers: HTTPFields
            let html: String
            var location: String { self.headers[.location] ?? "" }
        }

        mutating func request(_ method: HTTPRequest.Method, _ path: String, form: [String: String]? = nil) async throws -> Page {
            var headers = HTTPFields()
            if !self.cookies.isEmpty {
                headers[.cookie] = self.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
            }
            var body: ByteBuffer?
            if let form {
                headers[.contentType] = "application/x-www-form-urlencoded"
                var allowed = CharacterSet.alphanumerics
                allowed.insert(charactersIn: "-._~")
                body = ByteBuffer(
                    string: form.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
                )
            }
            let response = try await self.client.executeRequest(uri: path, method: method, headers: headers, body: body)
            for field in response.headers where field.name == .setCookie {
                let pair = field.value.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                let value = pair.count > 1 ? String(pair[1]) : ""
                self.cookies[String(pair[0])] = field.value.contains("Max-Age=0") || value.isEmpty ? nil : value
            }
            return Page(status: Int(response.status.code), headers: response.headers, html: String(buffer: response.body))
        }

        /// The value of the first hidden `csrf` field of a page.
        static func csrf(_ html: String) -> String {
            guard let range = html.range(of: #"name="csrf" value=""#) else { return "" }
            return String(html[range.upperBound...].prefix { $0 != "\"" })
        }

        /// A multipart upload as a browser sends the Agent versions form.
        mutating func upload(csrf: String, name: String, bytes: [UInt8]) async throws -> Page {
            let boundary = "----aspire-test-boundary"
            var text = ""
            for (field, value) in [("csrf", csrf), ("name", name), ("version", "1.0"), ("os", "linux"), ("arch", "x86_64")] {
                text += "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(field)\"\r\n\r\n\(value)\r\n"
            }
            text += "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(name).tar.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            var body = ByteBuffer(string: text)
            body.writeBytes(bytes)
            body.writeString("\r\n--\(boundary)--\r\n")
            var headers = HTTPFields()
            headers[.contentType] = "multipart/form-data; boundary=\(boundary)"
            headers[.cookie] = self.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
            let response = try await self.client.executeRequest(uri: "/versions/upload", method: .post, headers: headers, body: body)
            return Page(status: Int(response.status.code), headers: response.headers, html: String(buffer: response.body))
        }

        mutating func signIn(_ token: String, next: String = "/") async throws -> Page {
            let form = try await self.request(.get, "/signin")
            return try await self.request(.post, "/signin", form: ["token": token, "csrf": Self.csrf(form.html), "next": next])
        }
    }

    @Test("An empty value renders as nothing and hides its section, never as a value of the same name further out")
    func emptyValues() throws {
        var views = ConsoleViews()
        try views.library.register("{{#rows}}[{{role}}|{{#note}}N{{/note}}|{{#hasItems}}I{{/hasItems}}]{{/rows}}", named: "probe")
        let data: [String: Any] = ["role": "admin", "note": "outer", "rows": [["role": "", "note": "", "items": [Int]()], ["role": "viewer", "note": "x", "items": [1]]]]
        let html = views.library.render(ConsoleViews.withoutEmptyStrings(data), withTemplate: "probe")
        #expect(html == "[||][viewer|N|I]")
    }

    @Test("Pages need a session; a wrong token is refused; sign-in keeps the token on the server and goes back only to a local path")
    func signIn() async throws {
        try await withLocalNode { node in
            try await node.withREST { client in
                var browser = Browser(client: client)
                let anonymous = try await browser.request(.get, "/hosts?status=online")
                #expect(anonymous.status == 302 && anonymous.location == "/signin?next=%2Fhosts%3Fstatus%3Donline")

                let wrong = try await browser.signIn("not-the-token")
                #expect(wrong.status == 401 && wrong.html.contains("not valid"))
                #expect(browser.cookies["aspire_session"] == nil)
                // A sign-in form not from the page (no double-submit cookie) is refused.
                var stranger = Browser(client: client)
                let forged = try await stranger.request(.post, "/signin", form: ["token": node.node.adminToken, "csrf": "x"])
                #expect(forged.status == 403 && stranger.cookies["aspire_session"] == nil)

                let signed = try await browser.signIn(node.node.adminToken, next: "//evil.example/steal")
                #expect(signed.status == 303 && signed.location == "/", "no open redirect: \(signed.location)")
                let cookie = try #require(signed.headers[values: .setCookie].first { $0.hasPrefix("aspire_session=") })
                #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains(node.node.adminToken))
                let dashboard = try await browser.request(.get, "/")
                #expect(dashboard.status == 200 && dashboard.html.contains("Dashboard") && !dashboard.html.contains(node.node.adminToken))
                #expect(dashboard.headers[HTTPField.Name("Content-Security-Policy")!]?.contains("script-src 'self'") == true)
                #expect(dashboard.headers[.cacheControl] == "no-store")

                // Sign-out needs the CSRF token too; then the cookie opens nothing.
                let session = try #require(browser.cookies["aspire_session"])
                let noToken = try await browser.request(.post, "/signout", form: [:])
                #expect(noToken.status == 403)
                let out = try await browser.request(.post, "/signout", form: ["csrf": Browser.csrf(dashboard.html)])
                #expect(out.status == 303 && out.location == "/signin")
                var replay = Browser(client: client, cookies: ["aspire_session": session])
                #expect(try await replay.request(.get, "/").status == 302)
            }
        }
    }

    @Test("A session ends when its lifetime does: the next page asks to sign in again")
    func sessionExpiry() async throws {
        // Long enough that a loaded test machine signs in and reads a page well inside it.
        try await withLocalNode(configure: { $0.consoleSessionLifetime = .seconds(5) }) { node in
            try await node.withREST { client in
                var browser = Browser(client: client)
                #expect(try await browser.signIn(node.node.adminToken).status == 303)
                #expect(try await browser.request(.get, "/tags").status == 200)
                try await Task.sleep(for: .milliseconds(5500))
                let expired = try await browser.request(.get, "/tags")
                #expect(expired.status == 302 && expired.location.hasPrefix("/signin"))
            }
        }
    }

    @Test("Every page renders what the store holds, HTML from the fleet escaped; forms need the session's CSRF token")
    func pages() async throws {
        try await withLocalNode { node in
            try await node.withREST { client in
                let store = node.node.store
                let evil = "<script>alert(1)</script>"
                try await store.registerHost(
                    HostRegistration(agentSN: "web-1", hostname: evil, ipaddr: "10.0.0.1", os: "linux", arch: "x86_64", version: "1.0", node: "node")
                )
                try await store.registerHost(
                    HostRegistration(agentSN: "db-1", hostname: "db-1.example", ipaddr: "10.0.0.2", os: "linux", arch: "x86_64", version: "1.0", node: "other")
                )
                try await store.bindTag(name: "role", value: "web", to: "web-1")
                var browser = Browser(client: client)
                _ = try await browser.signIn(node.node.adminToken)

                let hosts = try await browser.request(.get, "/hosts")
                #expect(hosts.status == 200)
                #expect(hosts.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !hosts.html.contains(evil))
                #expect(hosts.html.contains(#"data-count="2""#))
                let filtered = try await browser.request(.get, "/hosts?tag=role%3Dweb&node=node")
                #expect(filtered.html.contains(#"data-sn="web-1""#) && !filtered.html.contains(#"data-sn="db-1""#))
                let byNode = try await browser.request(.get, "/hosts?node=other")
                #expect(byNode.html.contains(#"data-sn="db-1""#) && !byNode.html.contains(#"data-sn="web-1""#))
                // Paged 50 at a time: the links keep the filters, the first page has no page=.
                for index in 0 ..< 55 {
                    let sn = "many-\(index)"
                    try await store.registerHost(
                        HostRegistration(agentSN: sn, hostname: sn, ipaddr: "10.1.0.\(index)", os: "linux", arch: "x86_64", version: "1.0", node: "node")
                    )
                    try await store.bindTag(name: "zone", value: "a", to: sn)
                }
                let first = try await browser.request(.get, "/hosts?tag=zone%3Da")
                #expect(first.html.contains("Page 1 of 2") && first.html.contains(#"href="/hosts?tag=zone%3Da&amp;page=2""#))
                let second = try await browser.request(.get, "/hosts?tag=zone%3Da&page=2")
                #expect(second.html.contains("Page 2 of 2") && second.html.contains(#"rel="prev" href="/hosts?tag=zone%3Da""#))
                #expect(second.html.components(separatedBy: "data-sn=").count - 1 == 5)
                let bad = try await browser.request(.get, "/hosts?tag=novalue")
                #expect(bad.status == 400 && bad.html.contains("name=value"))

                // A task that reached the host is among its recent results.
                let rest = RESTClient(router: client, token: node.node.adminToken)
                let created = try await rest.ok("POST", "/api/v1/server/task", json: ["command": "sync.bash", "agents": ["web-1"], "parameters": ["cmd": "uptime", "user": "root"]])
                let taskID = try #require(created["id"] as? Int)
                let host = try await browser.request(.get, "/hosts/web-1")
                #expect(host.status == 200 && host.html.contains("role=web") && !host.html.contains(evil))
                #expect(host.html.contains(#"<a href="/tasks/\#(taskID)">\#(taskID)</a>"#) && host.html.contains("<code>sync.bash</code>"), "\(host.html)")
                let restHost = try await rest.ok("GET", "/api/v1/server/agent?agentsn=web-1")
                #expect(((restHost["host"] as? [String: Any])?["recent"] as? [[String: Any]])?.first?["task"] as? Int == taskID)
                let missing = try await browser.request(.get, "/hosts/nobody")
                #expect(missing.status == 404)

                // A form without the token changes nothing; with it, the tag is made.
                let csrf = Browser.csrf(host.html)
                #expect(!csrf.isEmpty)
                #expect(try await browser.request(.post, "/tags", form: ["name": "forged", "value": "1"]).status == 403)
                #expect(try await browser.request(.post, "/tags", form: ["name": "forged", "value": "1", "csrf": "guess"]).status == 403)
                #expect(try await store.tags().contains { $0.name == "forged" } == false)
                let made = try await browser.request(.post, "/tags", form: ["name": "made", "value": "1", "csrf": csrf])
                #expect(made.status == 303 && made.location.hasPrefix("/tags?note="))
                #expect(try await store.tags().contains { $0.name == "made" })
                let north = try await store.createRegion(name: "north")
                let moved = try await browser.request(.post, "/hosts/db-1/region", form: ["region": "\(north.id)", "csrf": csrf])
                #expect(moved.status == 303)
                #expect(try await store.host(agentSN: "db-1")?.region == north.id)
                let movedPage = try await browser.request(.get, "/hosts/db-1")
                #expect(movedPage.html.contains(#"<dd id="host-region">north"#))
                let bound = try await browser.request(.post, "/hosts/db-1/tags", form: ["name": "canary", "value": "yes", "csrf": csrf])
                #expect(bound.status == 303)
                #expect(try await store.host(agentSN: "db-1")?.tags.contains { $0.name == "canary" } == true)

                // The Run page: a dry run needs the session's token and names what is wrong.
                #expect(try await browser.request(.post, "/run/preview", form: ["agents": "web-1", "command": "true", "user": "root"]).status == 403)
                let noUser = try await browser.request(.post, "/run/preview", form: ["agents": "web-1", "command": "true", "timeout": "60", "csrf": csrf])
                #expect(noUser.status == 400 && noUser.html.contains("enter the user"))
                let both = try await browser.request(
                    .post, "/run/preview", form: ["agents": "web-1", "tag": "role=web", "command": "true", "user": "root", "timeout": "60", "csrf": csrf]
                )
                #expect(both.status == 400 && both.html.contains("not both"))
                let preview = try await browser.request(
                    .post, "/run/preview", form: ["tag": "role=web", "command": "echo hi", "user": "root", "timeout": "60", "csrf": csrf]
                )
                #expect(preview.status == 200 && preview.html.contains(#"data-online="1""#) && preview.html.contains(#"name="targets" value="web-1""#))
                let badSN = try await browser.request(.post, "/run", form: ["targets": "../etc", "command": "true", "user": "root", "timeout": "60", "csrf": csrf])
                #expect(badSN.status == 400)
                #expect(try await browser.request(.get, "/runs/nope").status == 404)
                #expect(try await browser.request(.get, "/tasks/nope").status == 400)
                #expect(try await browser.request(.get, "/tasks/99").status == 404)

                // The dashboard draws the host counts the node keeps (its first is taken at start).
                let dashboard = try await browser.request(.get, "/")
                #expect(dashboard.html.contains(#"<svg class="chart history""#))

                for path in ["/", "/tags", "/versions", "/tasks", "/run?agents=web-1,db-1&command=uptime"] {
                    let page = try await browser.request(.get, path)
                    #expect(page.status == 200, "\(path): \(page.html.prefix(300))")
                }
                // An upload without the session's token stores nothing; with it, the package is there.
                let forgedUpload = try await browser.upload(csrf: "guess", name: "Forged", bytes: Array(repeating: 7, count: 1000))
                #expect(forgedUpload.status == 403 && forgedUpload.html.contains("CSRF"))
                #expect(try await store.packages(PackageQuery()).items.isEmpty)
                let uploaded = try await browser.upload(csrf: csrf, name: "Real", bytes: Array(repeating: 7, count: 1000))
                #expect(uploaded.status == 303 && uploaded.location.hasPrefix("/versions?note="))
                #expect(try await store.packages(PackageQuery()).items.map(\.name) == ["Real"])
                // Deleted from the page: gone from the store (and not without the token).
                let real = try #require(try await store.packages(PackageQuery()).items.first)
                #expect(try await browser.request(.post, "/versions/delete", form: ["id": "\(real.id)"]).status == 403)
                let deleted = try await browser.request(.post, "/versions/delete", form: ["id": "\(real.id)", "csrf": csrf])
                #expect(deleted.status == 303 && deleted.location.hasPrefix("/versions?note="))
                #expect(try await store.packages(PackageQuery()).items.isEmpty)

                let tags = try await browser.request(.get, "/tags")
                #expect(tags.html.contains("/hosts?tag=role%3Dweb"))

                // Deployments: listed, one with its hosts and state; rolled back from the page.
                let spec: [String: Any] = [
                    "name": "web-agent", "url": "https://files.example.com/a.tar.gz", "checksum": "SHA256:" + String(repeating: "ab", count: 32),
                    "tags": ["role": "web"],
                ]
                _ = try await rest.ok("POST", "/api/v1/server/deployment", json: spec.merging(["version": "1.0"]) { $1 })
                _ = try await rest.ok("POST", "/api/v1/server/deployment", json: spec.merging(["version": "2.0"]) { $1 })
                let deployments = try await browser.request(.get, "/deployments")
                #expect(deployments.status == 200 && deployments.html.contains(#"<a href="/deployments/web-agent">web-agent</a>"#))
                let deployment = try await browser.request(.get, "/deployments/web-agent")
                #expect(deployment.status == 200 && deployment.html.contains(#"id="deployment-state">rolling"#) && deployment.html.contains("carrying role=web: 1"))
                #expect(deployment.html.contains(#"<a href="/hosts/web-1">web-1</a>"#) && deployment.html.contains("Roll back to 1.0"))
                #expect(try await browser.request(.post, "/deployments/control", form: ["name": "web-agent", "action": "rollback"]).status == 403)
                let rolledBack = try await browser.request(.post, "/deployments/control", form: ["name": "web-agent", "action": "rollback", "csrf": csrf])
                #expect(rolledBack.status == 303 && rolledBack.location.hasPrefix("/deployments/web-agent?note="))
                #expect(try await store.deployments(name: "web-agent").first?.state == .rolledBack)
                #expect(try await browser.request(.get, "/deployments/nothing").status == 404)
                let css = try await browser.request(.get, "/console/console.css")
                #expect(css.status == 200 && css.headers[.contentType]?.hasPrefix("text/css") == true)
                #expect(try await browser.request(.get, "/console/../admin.token").status == 404)
            }
        }
    }
}
