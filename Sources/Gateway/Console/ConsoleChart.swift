import Foundation

/// Small inline SVG charts drawn by the server from numbers: no script, no library, readable by
/// screen readers through their titles. Colours come from the style sheet (classes), so they
/// follow light and dark.
enum ConsoleChart {
    /// One bar split into parts (hosts online / offline / other), each as wide as its share.
    static func split(_ parts: [(name: String, count: Int)], label: String) -> String {
        let total = max(parts.reduce(0) { $0 + max($1.count, 0) }, 1)
        let width = 300.0
        var x = 0.0
        var shapes = ""
        for part in parts where part.count > 0 {
            let w = width * Double(part.count) / Double(total)
            shapes += #"<rect class="part-\#(escape(part.name))" x="\#(format(x))" y="0" width="\#(format(w))" height="18"><title>\#(escape(part.name)): \#(part.count)</title></rect>"#
            x += w
        }
        if shapes.isEmpty {
            shapes = #"<rect class="part-none" x="0" y="0" width="300" height="18"><title>none</title></rect>"#
        }
        return #"<svg class="chart split" viewBox="0 0 300 18" preserveAspectRatio="none" role="img" aria-label="\#(escape(label))">\#(shapes)</svg>"#
    }

    /// One column per task, oldest first: its hosts that succeeded, failed, and have no answer yet.
    static func tasks(_ tasks: [(id: Int64, complete: Int, failed: Int, count: Int)]) -> String {
        guard !tasks.isEmpty else { return "" }
        let most = max(tasks.map(\.count).max() ?? 1, 1)
        let height = 80.0
        let step = 300.0 / Double(tasks.count)
        let barWidth = max(step * 0.7, 1)
        var shapes = ""
        for (index, task) in tasks.enumerated() {
            let x = Double(index) * step + (step - barWidth) / 2
            let succeeded = max(task.complete - task.failed, 0)
            let pending = max(task.count - task.complete, 0)
            var y = height
            for (name, value) in [("ok", succeeded), ("failed", task.failed), ("pending", pending)] where value > 0 {
                let h = height * Double(value) / Double(most)
                y -= h
                shapes += #"<rect class="part-\#(name)" x="\#(format(x))" y="\#(format(y))" width="\#(format(barWidth))" height="\#(format(h))"><title>task \#(task.id): \#(value) \#(name)</title></rect>"#
            }
        }
        return #"<svg class="chart tasks" viewBox="0 0 300 80" preserveAspectRatio="none" role="img" aria-label="Results of the latest tasks">\#(shapes)</svg>"#
    }

    /// Hosts known (a line) and online (the area under it) over the last day, from the samples the
    /// nodes keep every 5 minutes; the day runs from the left edge to `now` at the right.
    static func history(_ samples: [(time: Int64, total: Int, online: Int)], now: Int64) -> String {
        guard samples.count > 1 else { return "" }
        let width = 300.0
        let height = 60.0
        let start = now - 86_400_000
        let most = Double(max(samples.map(\.total).max() ?? 1, 1))
        func x(_ time: Int64) -> String { format(width * Double(max(time - start, 0)) / 86_400_000) }
        func y(_ count: Int) -> String { format(height - height * Double(count) / most) }
        let online = samples.map { "\(x($0.time)),\(y($0.online))" }.joined(separator: " ")
        let area = "\(x(samples[0].time)),\(format(height)) \(online) \(x(samples[samples.count - 1].time)),\(format(height))"
        let total = samples.map { "\(x($0.time)),\(y($0.total))" }.joined(separator: " ")
        let last = samples[samples.count - 1]
        return #"<svg class="chart history" viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="Hosts online over the last day: \#(last.online) of \#(last.total) now">"#
            + #"<polygon class="part-online" points="\#(area)"><title>online</title></polygon>"#
            + #"<polyline class="line-total" points="\#(total)"><title>known hosts</title></polyline></svg>"#
    }

    private static func format(_ value: Double) -> String {
        String(format: "%.2f", value)
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
