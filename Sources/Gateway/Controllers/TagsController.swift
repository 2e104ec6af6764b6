import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Tags and regions, and the binding of tags to hosts.
struct TagsController: GatewayController {
    let gateway: Gateway

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        [
            "Tag": .object(
                ["id": .integer, "name": .string, "value": .string, "hosts": .integer, "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time],
                required: ["id", "name", "value"]
            ),
            "Region": .object(["id": .integer, "name": .string], required: ["id", "name"]),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "listTags",
                    rpc: "ListTags", method: "GET", path: "/api/v1/server/tags", summary: "Tags with the number of hosts bound to each.",
                    response: .envelope(["tags": .array(.ref("Tag"))])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.listTags(Aspire_V1_ListTagsRequest(), metadata: metadata)
                return Answer.success(["tags": answer.tags.map(RESTJSON.tag)])
            },
            Endpoint(
                Route(
                    id: "createTag",
                    rpc: "CreateTag", method: "POST", path: "/api/v1/server/tags", summary: "Creates a tag.",
                    body: [(Route.json, .object(["name": .string, "value": .string], required: ["name", "value"]))],
                    response: .envelope(["tag": .ref("Tag")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["name", "value"])
                var message = Aspire_V1_CreateTagRequest()
                message.name = try body.string("name", required: true)
                message.value = try body.string("value", required: true)
                return Answer.success(["tag": RESTJSON.tag(try await self.gateway.admin.createTag(message, metadata: metadata))])
            },
            Endpoint(
                Route(
                    id: "deleteTag",
                    rpc: "DeleteTag", method: "DELETE", path: "/api/v1/server/tags", summary: "Deletes a tag and its bindings.",
                    query: [Route.query("id", .bounded(1 ... Int64.max), "Tag id.", required: true)],
                    response: .envelope([:])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_DeleteTagRequest()
                message.id = try query.integer("id") ?? 0
                _ = try await self.gateway.admin.deleteTag(message, metadata: metadata)
                return Answer.success()
            },
            self.binding(unbind: false),
            self.binding(unbind: true),
            Endpoint(
                Route(
                    id: "listRegions",
                    rpc: "ListRegions", method: "GET", path: "/api/v1/server/regions", summary: "Regions (0 is global).",
                    response: .envelope(["regions": .array(.ref("Region"))])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.listRegions(Aspire_V1_ListRegionsRequest(), metadata: metadata)
                return Answer.success(["regions": answer.regions.map(RESTJSON.region)])
            },
            Endpoint(
                Route(
                    id: "createRegion",
                    rpc: "CreateRegion", method: "POST", path: "/api/v1/server/regions", summary: "Creates a region.",
                    body: [(Route.json, .object(["name": .string], required: ["name"]))],
                    response: .envelope(["region": .ref("Region")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["name"])
                var message = Aspire_V1_CreateRegionRequest()
                message.name = try body.string("name", required: true)
                return Answer.success(["region": RESTJSON.region(try await self.gateway.admin.createRegion(message, metadata: metadata))])
            },
            Endpoint(
                Route(
                    id: "setHostRegion",
                    rpc: "SetHostRegion", method: "POST", path: "/api/v1/server/regions/hosts",
                    summary: "Puts hosts in a region: `region` an id (0 is global) or a name.",
                    body: [(Route.json, .object(["agents": .nonEmptyArray(OpenAPI.agentSN), "region": .oneOf([.bounded(0 ... OpenAPI.maxWhole), .nonEmpty])], required: ["agents", "region"]))],
                    response: .envelope(["changed": .integer, "region": .integer])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["agents", "region"])
                var message = Aspire_V1_SetHostRegionRequest()
                message.agentSns = try body.stringArray("agents")
                switch body.fields["region"]?.kind {
                case .numberValue(let number)? where Int64(exactly: number).map { $0 >= 0 } == true:
                    message.region = Int64(number)
                case .stringValue(let name)?:
                    message.regionName = name
                default:
                    throw AspireError(.badRequest, "\(route.name): 'region' is a region id (a whole number from 0) or name")
                }
                let answer = try await self.gateway.admin.setHostRegion(message, metadata: metadata)
                return Answer.success(["changed": Int(answer.changed), "region": Int(answer.region)])
            },
        ]
    }

    /// `tags/bind` and `tags/unbind`: one body, one Admin call.
    private func binding(unbind: Bool) -> Endpoint {
        Endpoint(
            Route(
                id: unbind ? "unbindTag" : "bindTag",
                rpc: "BindTag", method: "POST", path: unbind ? "/api/v1/server/tags/unbind" : "/api/v1/server/tags/bind",
                summary: unbind ? "Unbinds a tag from hosts." : "Binds a tag (created when missing) to hosts.",
                body: [(Route.json, .object(["name": .string, "value": .string, "agents": .nonEmptyArray(.string)], required: ["name", "value", "agents"]))],
                response: .envelope(["changed": .integer])
            )
        ) { route, request, _, metadata in
            let body = try await self.gateway.objectBody(request, route: route)
            try body.allow(["name", "value", "agents"])
            var message = Aspire_V1_BindTagRequest()
            message.name = try body.string("name", required: true)
            message.value = try body.string("value", required: true)
            message.agentSns = try body.stringArray("agents")
            message.unbind = unbind
            let answer = try await self.gateway.admin.bindTag(message, metadata: metadata)
            return Answer.success(["changed": Int(answer.changed)])
        }
    }
}
