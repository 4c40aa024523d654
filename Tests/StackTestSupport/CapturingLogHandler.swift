import Logging
import Synchronization

/// A log handler that keeps what it is given, to check what an allocator logged.
public struct CapturingLogHandler: LogHandler {
    /// One message.
    public struct Entry: Sendable {
        public let level: Logger.Level
        public let message: String
    }

    /// Everything logged through any copy of this handler.
    public final class Store: Sendable {
        let entries = Mutex<[Entry]>([])
        public func count(_ level: Logger.Level) -> Int { entries.withLock { $0.filter { $0.level == level }.count } }
        public var all: [Entry] { entries.withLock { $0 } }
    }

    let store: Store
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        store.entries.withLock { $0.append(Entry(level: event.level, message: "\(event.message) \(event.metadata ?? [:])")) }
    }

    /// A logger writing into a new store.
    public static func logger() -> (Logger, Store) {
        let store = Store()
        return (Logger(label: "test.capture", factory: { _ in CapturingLogHandler(store: store) }), store)
    }
}
