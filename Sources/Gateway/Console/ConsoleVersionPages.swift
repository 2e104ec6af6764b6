import Foundation
import GRPCCore
import Hummingbird
import RPC
import SwiftProtobuf

/// Agent versions: upload (the file streamed to the store as it arrives, its SHA256 checked when
/// given), delete, and deploy to hosts or tags with rate control.
extension Console {
    /// A multipart upload: the session's CSRF token is checked from the form's text fields before
    /// the file's first byte goes to the store.
    func upload(_ request: Request) async -> Response {
        guard let session = await self.sessions.load(request) else { return Self.toSignIn(request) }
        do {
            let visit = Visit(request: request, session: session)
            try visit.require("UploadPackage", to: "upload packages")
            let type = request.headers[.contentType] ?? ""
            let boundary = Gateway.dispositionParameters(type)["boundary"] ?? ""
            guard type.lowercased().hasPrefix("multipart/form-data"), !boundary.isEmpty else {
                throw AspireError(.badRequest, "an upload is sent as multipart/form-data")
            }
            let package = try await self.gateway.multipartUpload(request, boundary: boundary, metadata: session.metadata, extraFields: ["csrf"]) {
                fields throws(AspireError) in
                guard session.accepts(csrf: fields["csrf"] ?? "") else {
                    throw AspireError(.permissionDenied, "This form was not sent from this console (its CSRF token is missing or wrong), so nothing was stored.")
                }
            }
            return Self.back(to: "/versions", note: "Uploaded \(package.name) \(package.version) (\(package.os)/\(package.arch)), SHA256 \(package.sha256).")
        } catch {
            return await self.failure(error, request: request, session: session)
        }
    }

    func deletePackage(_ visit: Visit, form: FormFields) async throws -> Response {
        guard let id = Int64(form["id"]) else { throw AspireError(.badRequest, "which package? (id)") }
        let answer = try await self.admin.deletePackages(.with { $0.id = id }, metadata: visit.metadata)
        return Self.back(to: "/versions", note: "Deleted \(answer.packages.map { "\($0.name) \($0.version) (\($0.os)/\($0.arch))" }.joined(separator: ", ")).")
    }

    func deployPage(_ visit: Visit) async throws -> Response {
        try visit.require("CreateTask", to: "deploy")
        let query = visit.query
        return self.views.page(
            "deploy", tab: .versions, session: visit.session,
            [
                "title": "Deploy \(query.string("name")) \(query.string("version"))",
                "name": query.string("name"), "version": query.string("version"),
                "action": ["install", "upgrade"].map { ["value": $0, "selected": $0 == (query.string("action").isEmpty ? "install" : query.string("action"))] },
            ]
        )
    }

    /// An install (or upgrade) task of the version on the hosts named or carrying the tags, as
    /// many at once and as many failures as the form says; then its page.
    func deploy(_ visit: Visit, form: FormFields) async throws -> Response {
        try visit.require("CreateTask", to: "deploy")
        var request = Aspire_V1_CreateTaskRequest()
        guard let action = CommandMethod.SubAgentAction(rawValue: form["action"].isEmpty ? "install" : form["action"]),
            action == .install || action == .upgrade
        else {
            throw AspireError(.badRequest, "a deploy installs or upgrades")
        }
        request.command = CommandMethod.subAgent(action).taskName
        request.parameters.fields["name"] = Google_Protobuf_Value(stringValue: form["name"])
        request.parameters.fields["version"] = Google_Protobuf_Value(stringValue: form["version"])
        let run = RunForm(form: form)
        request.agents = run.agents
        request.tags = try run.tags()
        guard request.agents.isEmpty != request.tags.isEmpty else {
            throw AspireError(.badRequest, "name the hosts by AgentSN or by tag (one of the two)")
        }
        if !request.tags.isEmpty {
            let minutes = Int64(form["window"].trimmingCharacters(in: .whitespaces)) ?? 10
            guard (1 ... 10080).contains(minutes) else { throw AspireError(.badRequest, "the window is 1 to 10080 minutes") }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            request.window.startUnixMs = now
            request.window.endUnixMs = now + minutes * 60_000
        }
        request.maxConcurrency = form["max_concurrency"].trimmingCharacters(in: .whitespaces)
        request.maxErrors = form["max_errors"].trimmingCharacters(in: .whitespaces)
        let detail = try await self.admin.createTask(request, metadata: visit.metadata)
        return Self.back(to: "/tasks/\(detail.task.id)", note: "Deploying \(form["name"]) \(form["version"]) on \(detail.task.count) host(s).")
    }
}
