import Foundation

/// `bench --svg`: every target of a run as a bar against its target line, grouped by section, with the
/// machine and the date in the title. Each bar is the measured value over its bound (ratio over
/// `max_ratio`, or value over `max_value`) on a logarithmic axis, so every target line is the same
/// vertical line at 1: a bar that ends left of it met its target.
struct BenchChart {
    let report: BenchReport

    /// One bar: a target's id, its measured fraction of the bound, its text and status.
    struct Bar {
        let section: String
        let id: String
        let fraction: Double?
        let text: String
        let status: TargetStatus
    }

    static let width = 1100.0
    static let labelWidth = 330.0
    static let plotWidth = 460.0
    static let rowHeight = 20.0
    /// The axis: from 1/50 of the bound to 20 times it.
    static let axis = (low: log10(1.0 / 50), high: log10(20.0))

    var bars: [Bar] {
        report.ratios.map { ratio in
            Bar(
                section: Self.section(of: ratio.ours), id: ratio.id, fraction: ratio.ratio.map { $0 / ratio.maxRatio },
                text: "\(ratio.ratio.map(format) ?? "not run") (at most \(format(ratio.maxRatio)))", status: ratio.status)
        } + report.targets.map { check in
            Bar(
                section: Self.section(of: check.figure), id: check.id, fraction: check.value.map { $0 / check.maxValue },
                text: "\(check.value.map(format) ?? "not run") \(check.unit ?? check.metric) (at most \(format(check.maxValue)))",
                status: check.status)
        }
    }

    /// "ours:stack_alloc/mmap_lightweight size=64K" -> "stack_alloc".
    static func section(of label: String) -> String {
        let path = label.split(separator: ":", maxSplits: 1).last ?? ""
        return String(path.split(separator: "/").first ?? "")
    }

    func svg() -> String {
        let sections = bars.reduce(into: [String]()) { if !$0.contains($1.section) { $0.append($1.section) } }
        var body: [String] = []
        var y = 70.0
        let x0 = Self.labelWidth
        for section in sections {
            body.append(text(10, y + 14, section, bold: true))
            y += Self.rowHeight + 4
            for bar in bars where bar.section == section {
                let color = switch bar.status {
                case .met: "#3a8a3a"
                case .missed: "#c0392b"
                case .notEvaluated: "#999999"
                }
                body.append(text(20, y + 14, bar.id))
                if let fraction = bar.fraction, fraction > 0 {
                    let end = Self.position(fraction)
                    body.append(
                        "<rect x=\"\(x0)\" y=\"\(y + 3)\" width=\"\(String(format: "%.1f", max(end, 1)))\" height=\"\(Self.rowHeight - 6)\" fill=\"\(color)\"/>")
                }
                body.append(text(x0 + Self.plotWidth + 10, y + 14, bar.text + (bar.status == .met ? "" : "  \(bar.status.rawValue)"), color: color))
                y += Self.rowHeight
            }
            y += 8
        }
        let target = x0 + Self.position(1)
        let machine = report.machine
        let title = "fiberstacks bench, \(report.date) UTC: \(machine.cpu), \(machine.cores) cores, \(machine.virtualization), Linux \(machine.kernel), load \(machine.loadAverage.map(format).joined(separator: " "))"
        let ticks = [0.02, 0.1, 1, 10].map { value in
            let x = x0 + Self.position(value)
            return "<line x1=\"\(x)\" y1=\"56\" x2=\"\(x)\" y2=\"\(y)\" stroke=\"#dddddd\"/>" + text(x - 8, 52, format(value), color: "#666666")
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(Self.width))" height="\(Int(y + 30))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            \(text(10, 22, Self.escape(title), bold: true))
            \(text(10, 40, "measured / target bound, log scale; the line at 1 is every target (left of it: met). Green met, red missed, grey not run."))
            \(ticks.joined(separator: "\n"))
            \(body.joined(separator: "\n"))
            <line x1="\(target)" y1="56" x2="\(target)" y2="\(y)" stroke="black" stroke-width="2"/>
            </svg>

            """
    }

    /// Where `fraction` falls on the axis, in pixels from its left end.
    static func position(_ fraction: Double) -> Double {
        let clamped = min(max(log10(fraction), axis.low), axis.high)
        return (clamped - axis.low) / (axis.high - axis.low) * plotWidth
    }

    func text(_ x: Double, _ y: Double, _ content: String, bold: Bool = false, color: String = "black") -> String {
        "<text x=\"\(String(format: "%.1f", x))\" y=\"\(String(format: "%.1f", y))\" fill=\"\(color)\"\(bold ? " font-weight=\"bold\"" : "")>\(Self.escape(content))</text>"
    }

    /// Text safe inside SVG.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
