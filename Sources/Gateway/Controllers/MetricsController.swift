import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Plugin metrics: the latest values as JSON, and everything in Prometheus text format.
struct MetricsController: GatewayController {
    let gateway: Gateway

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        [
            "Metric": .object(
                [
                    "agentsn": .string, "name": .string, "tags": .object([:], additional: .string), "value": .number,
                    "text": .string, "timestamp": .integer, "received": OpenAPI.time,
                ],
                required: ["agentsn", "name", "tags", "value", "timestamp"]
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "queryMetrics",
                    rpc: "QueryMetrics", method: "GET", path: "/api/v1/server/metric",
                    summary: "The latest value of each metric of each host (one per tag set), by name.",
                    query: [
                        Route.query("agentsn", .string, "Only this host's metrics."),
                        Route.query("prefix", .string, "Only metrics whose name starts with this, e.g. plugin.load."),
                        Route.query("offset", .bounded(0 ... Int64(Int32.max)), "Rows to skip (default 0)."),
                        Route.query("limit", .bounded(1 ... 10_000), "Rows to answer, 1 to 10000 (default 1000)."),
                    ],
                    response: .envelope(["count": .integer, "metrics": .array(.ref("Metric"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_QueryMetricsRequest()
                message.agentSn = query.string("agentsn")
                message.prefix = query.string("prefix")
                message.offset = Int32(try query.integer("offset") ?? 0)
                message.limit = Int32(try query.integer("limit") ?? 0)
                let answer = try await self.gateway.admin.queryMetrics(message, metadata: metadata)
                return Answer.success(["count": Int(answer.count), "metrics": answer.metrics.map(RESTJSON.metric)])
            },
            Endpoint(
                Route(
                    id: "prometheus",
                    rpc: "ExportMetrics", method: "GET", path: "/metrics",
                    summary: """
                        Prometheus text format: each host's latest plugin metrics (gauges named as the metric with '.' as '_',                     labelled agentsn and the metric's tags; values no agent sent within the node's --metrics-max-age are                     left out), then the node's own metrics. Scrape it with the admin token as bearer token.
                        """,
                    response: .string,
                    text: "text/plain; version=0.0.4; charset=utf-8"
                )
            ) { route, _, _, metadata in
                let answer = try await self.gateway.admin.exportMetrics(Aspire_V1_ExportMetricsRequest(), metadata: metadata)
                var headers = HTTPFields()
                headers[.contentType] = route.responseType
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.text)))
            },
        ]
    }
}
