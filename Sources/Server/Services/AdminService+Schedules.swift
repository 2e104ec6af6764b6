import Cron
import Foundation
public import GRPCCore
import Logging
public import RPC

/// Scheduled commands: stored here, run by the agents they target.
extension AdminService {
    public func createSchedule(request: Aspire_V1_CreateScheduleRequest, context: ServerContext) async throws -> Aspire_V1_ScheduleInfo {
        let record = try Self.scheduleRecord(request.schedule, agents: request.agents, tags: request.tags)
        let stored = try await self.store.createSchedule(record, replace: request.replace)
        self.logger.info(
            "schedule stored",
            metadata: ["schedule": "\(stored.name)", "schedule.expr": "\(stored.expression)", "schedule.enabled": "\(stored.enabled)"]
        )
        await self.distributor.sweep()
        return Aspire_V1_ScheduleInfo(stored, next: 1)
    }

    public func listSchedules(request: Aspire_V1_ListSchedulesRequest, context: ServerContext) async throws -> Aspire_V1_ListSchedulesResponse {
        guard request.next >= 0, request.next <= 100 else { throw AspireError(.badRequest, "next must be from 0 to 100") }
        var records = try await self.store.schedules(name: request.name.isEmpty ? nil : request.name)
        if !request.name.isEmpty, records.isEmpty {
            throw AspireError(.notFound, "no schedule named '\(request.name)'")
        }
        if !request.agentSn.isEmpty {
            let tags = try await self.store.tags(ofAgents: [request.agentSn])[request.agentSn] ?? [:]
            records = records.filter { $0.targets(agentSN: request.agentSn, tags: tags) }
        }
        var response = Aspire_V1_ListSchedulesResponse()
        response.schedules = records.map { Aspire_V1_ScheduleInfo($0, next: request.next == 0 ? 1 : Int(request.next)) }
        return response
    }

    public func deleteSchedule(request: Aspire_V1_DeleteScheduleRequest, context: ServerContext) async throws -> Aspire_V1_ScheduleInfo {
        guard let deleted = try await self.store.deleteSchedule(name: request.name) else {
            throw AspireError(.notFound, "no schedule named '\(request.name)'")
        }
        self.logger.info("schedule deleted", metadata: ["schedule": "\(deleted.name)"])
        await self.distributor.sweep()
        return Aspire_V1_ScheduleInfo(deleted, next: 0)
    }

    public func setScheduleEnabled(request: Aspire_V1_SetScheduleEnabledRequest, context: ServerContext) async throws -> Aspire_V1_ScheduleInfo {
        guard let changed = try await self.store.setScheduleEnabled(name: request.name, request.enabled) else {
            throw AspireError(.notFound, "no schedule named '\(request.name)'")
        }
        self.logger.info("schedule \(request.enabled ? "enabled" : "disabled")", metadata: ["schedule": "\(changed.name)"])
        await self.distributor.sweep()
        return Aspire_V1_ScheduleInfo(changed, next: 1)
    }

    public func importCrontab(request: Aspire_V1_ImportCrontabRequest, context: ServerContext) async throws -> Aspire_V1_ListSchedulesResponse {
        guard [0, 5, 6].contains(request.fields) else { throw AspireError(.badRequest, "fields must be 5, 6 or 0 (either, line by line)") }
        guard PatternText.matches(request.prefix, PathName.prefixPattern) else {
            throw AspireError(.badRequest, "prefix '\(request.prefix.prefix(120))' must be up to 100 letters, digits and . _ + -, not starting with '.' or '-'")
        }
        let prefix = request.prefix.isEmpty ? "crontab" : request.prefix
        let withUser = request.withUser
        let entries: [CrontabEntry]
        do {
            entries = try Crontab.parse(
                request.crontab, fields: request.fields == 0 ? nil : Int(request.fields), isUser: { _ in withUser }, acceptsUser: AccountName.isValid
            )
        } catch {
            throw AspireError(.badRequest, "crontab \(error)")
        }
        guard !entries.isEmpty else { throw AspireError(.badRequest, "the crontab has no schedule lines") }
        let records = try entries.map { entry in
            var schedule = Aspire_V1_Schedule()
            schedule.name = "\(prefix)-\(entry.line)"
            schedule.expr = entry.expression.text
            schedule.tz = request.tz
            schedule.user = entry.user ?? request.user
            schedule.command = Self.command(entry.command, environment: entry.environment)
            schedule.timeout = request.timeout
            return try Self.scheduleRecord(schedule, agents: request.agents, tags: request.tags)
        }
        let stored = try await self.store.createSchedules(records, replace: request.replace)
        self.logger.info("crontab imported", metadata: ["schedules": "\(stored.count)", "schedule.prefix": "\(prefix)"])
        await self.distributor.sweep()
        var response = Aspire_V1_ListSchedulesResponse()
        response.schedules = stored.map { Aspire_V1_ScheduleInfo($0, next: 1) }
        return response
    }

    public func listScheduleRuns(request: Aspire_V1_ListScheduleRunsRequest, context: ServerContext) async throws -> Aspire_V1_ListScheduleRunsResponse {
        let page = try Self.page(offset: request.offset, limit: request.limit, descending: true)
        let listing = try await self.store.scheduleRuns(
            name: request.name.isEmpty ? nil : request.name,
            agentSN: request.agentSn.isEmpty ? nil : request.agentSn,
            page: page
        )
        var response = Aspire_V1_ListScheduleRunsResponse()
        response.count = Int32(clamping: listing.count)
        response.runs = listing.items.map { run in
            var message = Aspire_V1_ScheduleRun()
            message.name = run.name
            message.agentSn = run.agentSN
            message.dueUnixMs = run.due
            message.result = run.result
            return message
        }
        return response
    }

    // MARK: Checking

    /// A schedule as stored, after every check an agent would make that does not depend on the
    /// host: name, expression, zone, command, timeout, targets.
    static func scheduleRecord(_ schedule: Aspire_V1_Schedule, agents: [String], tags: [String: String]) throws(AspireError) -> ScheduleRecord {
        try PathName.check(schedule.name, field: "schedule name", code: .badRequest)
        do {
            _ = try CronSchedule(schedule.expr, timeZone: schedule.tz)
        } catch {
            throw AspireError(.badRequest, "schedule '\(schedule.name)': \(error)")
        }
        guard !CommandText.isBlank(schedule.command) else {
            throw AspireError(.badRequest, "schedule '\(schedule.name)' has no command")
        }
        guard schedule.timeout >= 0 else { throw AspireError(.badRequest, "schedule '\(schedule.name)': timeout must not be negative") }
        let user = schedule.user.isEmpty ? "root" : schedule.user
        try AccountName.check([user, schedule.group], owner: "schedule '\(schedule.name)'")
        try Self.checkTargets(agents: agents, tags: tags, owner: "schedule '\(schedule.name)'")
        return ScheduleRecord(
            name: schedule.name, expression: schedule.expr, timeZone: schedule.tz, user: user, group: schedule.group,
            command: schedule.command, timeout: Int(schedule.timeout), agents: Array(Set(agents)).sorted(), selector: tags,
            enabled: !schedule.disabled
        )
    }

    /// The hosts a schedule or plugin is for: AgentSNs and/or tags, at least one.
    static func checkTargets(agents: [String], tags: [String: String], owner: String) throws(AspireError) {
        guard !agents.isEmpty || !tags.isEmpty else {
            throw AspireError(.badRequest, "\(owner) targets nothing: give agents (AgentSNs) or tags")
        }
        for agent in agents {
            try AgentIdentity.validate(agentSN: agent)
        }
        for (name, value) in tags {
            try SQLStore.validateTag(name: name, value: value)
        }
    }

    /// A crontab line's command with the `NAME=value` lines above it exported first.
    static func command(_ command: String, environment: [String: String]) -> String {
        let exports = environment.sorted { $0.key < $1.key }.map { "export \($0.key)='\($0.value.replacingOccurrences(of: "'", with: "'\\''"))'; " }
        return exports.joined() + command
    }
}

extension Aspire_V1_ScheduleInfo {
    /// The record, with its next `next` fire times when enabled.
    init(_ record: ScheduleRecord, next: Int) {
        self.init()
        self.schedule = Aspire_V1_Schedule(record)
        self.agents = record.agents
        self.tags = record.selector
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
        if record.enabled, next > 0, let schedule = try? CronSchedule(record.expression, timeZone: record.timeZone) {
            self.nextUnixMs = schedule.next(after: Date(), count: next).map(\.unixMilliseconds)
        }
    }
}
