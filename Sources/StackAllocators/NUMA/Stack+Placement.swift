extension Stack {
    /// Where the pages of the usable range are now, from move_pages (no side effects), one query per page
    /// of the stack's page size. `verify(on: [node])` on the result proves a bound stack's placement.
    public func placementReport() throws(StackError) -> PlacementReport {
        try PlacementReport(range: descriptor.layout.usableRange, pageSize: descriptor.layout.pageSize)
    }
}
