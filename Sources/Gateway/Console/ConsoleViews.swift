import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore
import RPC

/// The console's templates and assets, compiled into the binary (`PackageResources`), and the
/// answers made of them. Every `{{value}}` a template shows is HTML-escaped by Mustache; the
/// only raw insertions (`{{{…}}}`) are the SVG charts this module draws from numbers.
struct ConsoleViews: Sendable {
    var library: MustacheLibrary

    /// Each template by name (`{{> name}}` and `{{< name}}` find them by it).
    static let templates: [String: [UInt8]] = [
        "layout": PackageResources.layout_mustache,
        "signin": PackageResources.signin_mustache,
        "error": PackageResources.error_mustache,
        "dashboard": PackageResources.dashboard_mustache,
        "hosts": PackageResources.hosts_mustache,
        "host": PackageResources.host_mustache,
        "versions": PackageResources.versions_mustache,
        "tags": PackageResources.tags_mustache,
        "run": PackageResources.run_mustache,
        "runstatus": PackageResources.runstatus_mustache,
        "tasks": PackageResources.tasks_mustache,
        "task": PackageResources.task_mustache,
        "schedules": PackageResources.schedules_mustache,
        "scheduleruns": PackageResources.scheduleruns_mustache,
        "scheduleruntable": PackageResources.scheduleruntable_mustache,
        "plugins": PackageResources.plugins_mustache,
        "deployments": PackageResources.deployments_mustache,
        "deployment": PackageResources.deployment_mustache,
        "audit": PackageResources.audit_mustache,
        "deploy": PackageResources.deploy_mustache,
        "pager": PackageResources.pager_mustache,
        "resultoutput": PackageResources.resultoutput_mustache,
    ]

    /// Static files under `/console/`, with their content types.
    static let assets: [String: (bytes: [UInt8], type: String)] = [
        "console.css": (PackageResources.console_css, "text/css; charset=utf-8"),
        "console.js": (PackageResources.console_js, "text/javascript; charset=utf-8"),
    ]

    /// The Admin methods behind the pages' buttons and forms.
    static let actions = [
        "RunCommand", "BindTag", "SetHostRegion", "CreateTag", "DeleteTag", "CancelTask", "RunCommandStream", "UploadPackage", "DeletePackages", "CreateTask",
        "ControlDeployment",
    ]

    /// Largest form body read, in bytes.
    static let maxFormBytes = 64 << 10

    /// The templates are part of the binary: one that does not parse is a bug of the build
    /// (ConsoleTests renders each).
    init() {
        var library = MustacheLibrary()
        for (name, bytes) in Self.templates {
            do {
                try library.register(String(decoding: bytes, as: UTF8.self), named: name)
            } catch {
                preconditionFailure("console template \(name) does not parse: \(error)")
            }
        }
        self.library = library
    }

    /// Headers of every page: no caching, no framing, scripts and styles from this site only.
    static func pageHeaders() -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("Content-Security-Policy")!] =
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        return headers
    }

    func render(_ template: String, _ data: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        let html = self.library.render(Self.withoutEmptyStrings(data), withTemplate: template) ?? "template \(template) is missing"
        return Response(status: status, headers: Self.pageHeaders(), body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    /// `data` as the templates read it: each empty string a ``Blank``, so that `{{#text}}…{{/text}}`
    /// shows nothing for an empty one as in other Mustache implementations (swift-mustache
    /// counts "" as a value), and `{{text}}` shows nothing rather than a value of the same name
    /// further out (a missing key would be looked up there); and beside each list `name` a flag
    /// `hasName`, for a table that shows only when it has rows.
    static func withoutEmptyStrings(_ value: Any) -> Any {
        switch value {
        case let object as [String: Any]:
            var result: [String: Any] = [:]
            for (key, item) in object {
                if let text = item as? String, text.isEmpty {
                    result[key] = Blank()
                    continue
                }
                if let list = item as? [Any] {
                    result["has" + key.prefix(1).uppercased() + key.dropFirst()] = !list.isEmpty
                }
                result[key] = withoutEmptyStrings(item)
            }
            return result
        case let list as [[String: Any]]:
            return list.map { withoutEmptyStrings($0) }
        case let list as [Any]:
            return list.map { withoutEmptyStrings($0) }
        default:
            return value
        }
    }

    /// A page of the signed-in console: the navigation, the operator and the CSRF token its
    /// forms carry, with `data`.
    func page(
        _ template: String, tab: ConsoleTab?, session: ConsoleSession, _ data: [String: Any], status: HTTPResponse.Status = .ok
    ) -> Response {
        var all = data
        all["signedIn"] = true
        all["operator"] = session.name
        all["role"] = session.role
        all["csrf"] = session.csrf
        all["tabs"] = ConsoleTab.allCases.filter { session.may($0.rpc) }.map { item in
            ["label": item.rawValue, "href": item.path, "current": item == tab]
        }
        // The actions pages offer, by the Admin method each calls: `{{#may.BindTag}}`.
        all["may"] = Dictionary(uniqueKeysWithValues: Self.actions.map { ($0, session.may($0)) })
        return self.render(template, all, status: status)
    }

    /// A form without this session's CSRF token: nothing is done.
    func forbidden() -> Response {
        self.render(
            "error",
            [
                "title": "Refused",
                "message": "This form was not sent from this console (its CSRF token is missing or wrong), so nothing was changed. Reload the page and try again.",
                "code": "permission_denied",
            ],
            status: .forbidden
        )
    }

    func asset(_ name: String) -> Response {
        guard let asset = Self.assets[name] else {
            return Response(status: .notFound, body: ResponseBody(byteBuffer: ByteBuffer(string: "no such asset\n")))
        }
        var headers = HTTPFields()
        headers[.contentType] = asset.type
        headers[.cacheControl] = "public, max-age=300"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }

    /// The fields of a url-encoded form body (at most `maxFormBytes`).
    func fields(of request: Request) async throws -> FormFields {
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true else {
            throw AspireError(.badRequest, "a form must be sent as application/x-www-form-urlencoded")
        }
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: Self.maxFormBytes)
        } catch is NIOTooManyBytesError {
            throw AspireError(.payloadTooLarge, "the form is larger than \(Self.maxFormBytes) bytes")
        }
        do {
            return FormFields(try URLEncodedFormDecoder().decode([String: String].self, from: String(buffer: buffer)))
        } catch {
            throw AspireError(.badRequest, "the form could not be read (\(error))")
        }
    }
}

/// An empty value as the templates see it: renders as nothing, and a section of it is skipped.
struct Blank: MustacheCustomRenderable {
    var renderText: String { "" }
    var isNull: Bool { true }
}

/// A form's fields; a missing one reads as empty.
struct FormFields: Sendable {
    let values: [String: String]

    init(_ values: [String: String]) {
        self.values = values
    }

    subscript(_ name: String) -> String { self.values[name] ?? "" }
}
