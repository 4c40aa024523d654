import GuardPages
/// The two facts a parent process reads from the overflow handler's diagnostic line on a child's
/// standard error: the label of the stack whose guard was hit (the first `fiber "LABEL"`) and how far
/// below its usable bottom the fault was (`is N bytes below the usable bottom`). The rest of the line
/// may change; these two may not.
package struct OverflowDiagnostic: Sendable, Equatable {
    /// The stack's label, or nil for "an unlabelled fiber".
    package let label: String?
    /// Bytes between the faulting address and the usable bottom.
    package let distance: Int

    package init(label: String?, distance: Int) {
        self.label = label
        self.distance = distance
    }

    /// The first diagnostic line in `standardError`, or nil when there is none.
    package init?(in standardError: String) {
        guard let line = standardError.split(separator: "\n").first(where: { $0.contains("stack overflow in ") }),
            let below = line.firstRange(of: " bytes below the usable bottom")
        else { return nil }
        // The distance follows the last " is " before " bytes below".
        let head = line[..<below.lowerBound]
        guard let lastIs = head.ranges(of: " is ").last, let distance = Int(head[lastIs.upperBound...]) else {
            return nil
        }
        self.distance = distance
        if let open = line.firstRange(of: "fiber \""), let close = line[open.upperBound...].firstIndex(of: "\"") {
            label = String(line[open.upperBound..<close])
        } else {
            label = nil
        }
    }
}
